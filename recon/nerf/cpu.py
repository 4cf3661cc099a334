"""The CPU execution of the voxel field: Numba kernels (:mod:`recon.nerf._cpu_kernels`) run in chunks
on the rasterizer's thread pool (:func:`recon.render.cpu.run_chunks`).

Training does not materialise dense gradients: :class:`_MarchCPU`'s backward writes one record per
sample, the records are bucketed by x-slab and scattered into the gradient grids in two race-free
passes (even slabs, then odd), marking the touched voxels; :class:`SparseAdam` then updates only
those voxels (lazy Adam: a voxel's moments decay only on the steps it has gradients).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from recon.nerf import _cpu_kernels as KN
from recon.nerf.field import Rays, VoxelField
from recon.render.cpu import _ranges, num_threads, run_chunks


def _np(t: Tensor, dtype=np.float32) -> np.ndarray:
    a = t.detach().contiguous().numpy()
    return a if a.dtype == dtype else a.astype(dtype)


class GradBuffers:
    """Gradient grids of a field (zero except where ``touched``), filled by the backward pass."""

    def __init__(self, field: VoxelField):
        n, C = field.feats.shape
        self.density = np.zeros(n, np.float32)
        self.feats = np.zeros((n, C), np.float32)
        self.touched = np.zeros(n, np.uint8)

    def touched_ids(self) -> np.ndarray:
        return np.flatnonzero(self.touched).astype(np.int64)


def _geom(field: VoxelField):
    return (_np(field.lo), _np(field.hi), _np(field.scale), np.asarray(field.res, np.int64), field.occ.numpy(),
            field.density.numpy(), field.feats.numpy())


def march(field: VoxelField, rays: Rays, Y: Tensor, t_stop: float):
    """Forward kernel over all rays; numpy ``(C [R, 3], D [R], T [R], counts [R])``."""
    R = len(rays)
    lo, hi, scale, res, occ, dens, feats = _geom(field)
    o, d, near, off, y = _np(rays.origins), _np(rays.dirs), _np(rays.near), _np(rays.offsets), _np(Y)
    C = np.empty((R, 3), np.float32)
    D = np.empty(R, np.float32)
    T = np.empty(R, np.float32)
    n = np.empty(R, np.int32)
    args = (o, d, off, near, lo, hi, scale, res, occ, dens, feats, y, np.float32(field.step), np.float32(field.bias),
            np.float32(t_stop), C, D, T, n)
    nt = num_threads()
    run_chunks(KN.march_forward, args, _ranges(0, R, 8 * nt), R * 64)
    return C, D, T, n


class _MarchCPU(torch.autograd.Function):
    """``(C, D, T)`` of a ray batch; the backward adds the field's gradients into ``grads``
    (a :class:`GradBuffers`) and returns none for ``anchor`` (a scalar that makes autograd call it)."""

    @staticmethod
    def forward(ctx, anchor, field, rays, Y, t_stop, grads):
        C, D, T, n = march(field, rays, Y, t_stop)
        ctx.field, ctx.rays, ctx.Y, ctx.grads = field, rays, Y, grads
        ctx.outs = (C, D, T, n)
        return torch.from_numpy(C), torch.from_numpy(D), torch.from_numpy(T)

    @staticmethod
    def backward(ctx, gC, gD, gT):
        field, rays, Y, grads = ctx.field, ctx.rays, ctx.Y, ctx.grads
        C, D, T, n = ctx.outs
        R = len(rays)
        zeros = None
        gC = _np(gC) if gC is not None else np.zeros((R, 3), np.float32)
        gD = _np(gD) if gD is not None else np.zeros(R, np.float32)
        gT = _np(gT) if gT is not None else np.zeros(R, np.float32)
        backward_into(field, rays, Y, (C, D, T, n), gC, gD, gT, grads)
        return zeros, None, None, None, None, None


def backward_into(field: VoxelField, rays: Rays, Y: Tensor, outs, gC: np.ndarray, gD: np.ndarray, gT: np.ndarray,
                  grads: GradBuffers) -> int:
    """Add the gradients of a ray batch into ``grads``; returns the number of samples."""
    C, D, T, n = outs
    R = len(rays)
    lo, hi, scale, res, occ, dens, feats = _geom(field)
    starts = np.zeros(R, np.int64)
    if R > 1:
        np.cumsum(n[:-1], out=starts[1:])
    M = int(starts[-1] + n[-1]) if R else 0
    rec_base = np.empty(M, np.int64)
    rec_frac = np.empty((M, 3), np.float32)
    rec_graw = np.empty(M, np.float32)
    rec_gl = np.empty((M, 3), np.float32)
    rec_ray = np.empty(M, np.int32)
    o, d, near, off, y = _np(rays.origins), _np(rays.dirs), _np(rays.near), _np(rays.offsets), _np(Y)
    nt = num_threads()
    args = (o, d, off, near, lo, hi, scale, res, occ, dens, feats, y, np.float32(field.step), np.float32(field.bias),
            n, starts, C, D, T, np.ascontiguousarray(gC, np.float32), np.ascontiguousarray(gD, np.float32),
            np.ascontiguousarray(gT, np.float32), rec_base, rec_frac, rec_graw, rec_gl, rec_ray)
    run_chunks(KN.march_backward, args, _ranges(0, R, 8 * nt), M * 8)
    nx, ny, nz = field.res
    n_slabs = max(1, min(nx - 1, 8 * nt))
    slab_w = int(math.ceil((nx - 1) / n_slabs))
    n_slabs = int(math.ceil((nx - 1) / slab_w))
    order = np.empty(M, np.int64)
    slab_ptr = np.empty(n_slabs + 1, np.int64)
    KN.bucket_by_slab(rec_base, np.int64(ny * nz), np.int64(slab_w), np.int64(n_slabs), order, slab_ptr)
    for parity in (0, 1):
        jobs = [(s, s + 1, parity) for s in range(parity, n_slabs, 2)]
        run_chunks(KN.scatter_slabs, (order, slab_ptr, rec_base, rec_frac, rec_graw, rec_gl, rec_ray, y,
                                      np.int64(ny), np.int64(nz), grads.density, grads.feats, grads.touched),
                   jobs, M * 4)
    return M


def render(field: VoxelField, rays: Rays, Y: Tensor, t_stop: float, train: bool = False,
           grads: Optional[GradBuffers] = None):
    """``(C [R, 3], D [R], T [R])`` tensors; with ``train`` and ``grads`` they carry a backward that
    fills ``grads``."""
    if train and grads is not None:
        anchor = torch.zeros((), requires_grad=True)
        return _MarchCPU.apply(anchor, field, rays, Y, t_stop, grads)
    C, D, T, _ = march(field, rays, Y, t_stop)
    return torch.from_numpy(C), torch.from_numpy(D), torch.from_numpy(T)


def update_occupancy(field: VoxelField, thresh: float) -> None:
    nx = field.res[0]
    occ = np.empty(field.num_cells, np.uint8)
    run_chunks(KN.update_occupancy, (field.density.numpy(), np.asarray(field.res, np.int64), np.float32(field.bias),
                                     np.float32(field.step), np.float32(thresh), occ),
               _ranges(0, nx - 1, 4 * num_threads()), field.num_cells)
    field.occ = torch.from_numpy(occ)


class SparseAdam:
    """Adam over the voxels that received gradients (density and colour with their own learning
    rates); moments are dense arrays the size of the field."""

    def __init__(self, field: VoxelField, lr_density: float, lr_color: float, betas=(0.9, 0.99), eps: float = 1e-15):
        n, C = field.feats.shape
        self.m_d = np.zeros(n, np.float32)
        self.v_d = np.zeros(n, np.float32)
        self.m_f = np.zeros((n, C), np.float32)
        self.v_f = np.zeros((n, C), np.float32)
        self.lr_density, self.lr_color = lr_density, lr_color
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0

    def step(self, field: VoxelField, grads: GradBuffers, scale: float = 1.0) -> int:
        """One step at learning rates times ``scale``; returns the number of voxels updated."""
        idx = grads.touched_ids()
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        run_chunks(KN.sparse_adam, (idx, field.density.numpy(), field.feats.numpy(), grads.density, grads.feats,
                                    self.m_d, self.v_d, self.m_f, self.v_f, grads.touched,
                                    np.float32(self.lr_density * scale), np.float32(self.lr_color * scale),
                                    np.float32(self.b1), np.float32(self.b2), np.float32(c1), np.float32(c2),
                                    np.float32(self.eps)),
                   _ranges(0, len(idx), 4 * num_threads()), len(idx) * 8)
        return len(idx)

    def state_dict(self) -> dict:
        return {"m_d": torch.from_numpy(self.m_d.copy()), "v_d": torch.from_numpy(self.v_d.copy()),
                "m_f": torch.from_numpy(self.m_f.copy()), "v_f": torch.from_numpy(self.v_f.copy()), "t": self.t}

    def load_state_dict(self, s: dict) -> None:
        self.m_d, self.v_d = s["m_d"].numpy().copy(), s["v_d"].numpy().copy()
        self.m_f, self.v_f = s["m_f"].numpy().copy(), s["v_f"].numpy().copy()
        self.t = int(s["t"])
