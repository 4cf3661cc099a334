"""The CPU execution of the voxel field: Numba kernels (:mod:`recon.nerf._cpu_kernels`) run in chunks
on the rasterizer's thread pool (:func:`recon.render.cpu.run_chunks`).

Training does not materialise dense gradients: :class:`_MarchCPU`'s forward stores each sample it
counts, its backward turns them into one gradient record per sample, the records are bucketed by x-slab and scattered into the gradient grids in two race-free
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
        self._store = _Store(1)

    def store(self, n: int) -> "_Store":
        """The sample workspace, grown to at least ``n`` slots (kept between steps)."""
        if len(self._store) < n:
            self._store = _Store(int(n * 1.25) + 1024)
        return self._store

    def touched_ids(self) -> np.ndarray:
        return np.flatnonzero(self.touched).astype(np.int64)

    def add_tv(self, field: VoxelField, idx: np.ndarray, lam_density: float, lam_color: float) -> None:
        """Add the total-variation gradient (:func:`recon.nerf._cpu_kernels.tv_grad`) at voxels ``idx``
        (a zero weight skips that part)."""
        if not len(idx) or not (lam_density or lam_color):
            return
        run_chunks(KN.tv_grad, (idx, field.density.numpy(), field.feats.numpy(), np.asarray(field.res, np.int64),
                                np.float32(lam_density), np.float32(lam_color), self.density, self.feats),
                   _ranges(0, len(idx), 4 * num_threads()), len(idx) * 8)


def _geom(field: VoxelField):
    return (_np(field.lo), _np(field.hi), _np(field.scale), np.asarray(field.res, np.int64), field.occ.numpy(),
            field.density.numpy(), field.feats.numpy())


def _contraction_args(field: VoxelField):
    """The kernels' ``contract, cen, inv_r, far_n`` of a field."""
    if field.contraction is None:
        return False, np.zeros(3, np.float32), np.float32(1.0), np.float32(0.0)
    c, r = field.contraction
    return True, np.asarray(c, np.float32), np.float32(1.0 / r), np.float32(field.far_n)


class _Store:
    """Per-sample slots written by the training forward and read by its backward."""

    def __init__(self, n: int):
        self.base = np.empty(n, np.int64)
        self.frac = np.empty((n, 3), np.float32)
        self.x = np.empty(n, np.float32)
        self.rgb = np.empty((n, 3), np.float32)
        self.t = np.empty(n, np.float32)
        self.ray = np.empty(n, np.int32)
        self.graw = np.empty(n, np.float32)
        self.glogit = np.empty((n, 3), np.float32)

    def __len__(self) -> int:
        return len(self.x)


_NO_STORE = _Store(1)


def _ray_args(rays: Rays, Y: Tensor):
    return _np(rays.origins), _np(rays.dirs), _np(rays.near), _np(rays.offsets), _np(Y)


def march(field: VoxelField, rays: Rays, Y: Tensor, t_stop: float, grads: Optional["GradBuffers"] = None):
    """Forward kernel over all rays; numpy ``(C [R, 3], D [R], T [R], counts [R])``. With ``grads``
    (training) the samples are also stored in ``grads``' workspace for :func:`backward_into`, and the
    return value gains the per-ray slot starts: ``(C, D, T, counts, slot0)``."""
    R = len(rays)
    lo, hi, scale, res, occ, dens, feats = _geom(field)
    o, d, near, off, y = _ray_args(rays, Y)
    C = np.empty((R, 3), np.float32)
    D = np.empty(R, np.float32)
    T = np.empty(R, np.float32)
    n = np.empty(R, np.int32)
    nt = num_threads()
    chunks = _ranges(0, R, 8 * nt)
    step = np.float32(field.step)
    ctr = _contraction_args(field)
    if grads is not None:
        caps = np.empty(R, np.int64)
        run_chunks(KN.ray_caps, (o, d, off, near, lo, hi, step, *ctr, caps), chunks, R * 4)
        slot0 = np.zeros(R, np.int64)
        if R > 1:
            np.cumsum(caps[:-1], out=slot0[1:])
        st = grads.store(int(caps.sum()) if R else 0)
    else:
        slot0, st = np.zeros(1, np.int64), _NO_STORE
    args = (o, d, off, near, lo, hi, scale, res, occ, dens, feats, y, step, np.float32(field.bias),
            np.float32(t_stop), *ctr, C, D, T, n, grads is not None, slot0, st.base, st.frac, st.x, st.rgb, st.t, st.ray)
    run_chunks(KN.march_forward, args, chunks, R * 64)
    return (C, D, T, n) if grads is None else (C, D, T, n, slot0)


class _MarchCPU(torch.autograd.Function):
    """``(C, D, T)`` of a ray batch; the backward adds the field's gradients into ``grads``
    (a :class:`GradBuffers`) and returns none for ``anchor`` (a scalar that makes autograd call it)."""

    @staticmethod
    def forward(ctx, anchor, field, rays, Y, t_stop, grads):
        C, D, T, n, slot0 = march(field, rays, Y, t_stop, grads)
        ctx.field, ctx.rays, ctx.Y, ctx.grads = field, rays, Y, grads
        ctx.outs = (C, D, T, n, slot0)
        return torch.from_numpy(C), torch.from_numpy(D), torch.from_numpy(T)

    @staticmethod
    def backward(ctx, gC, gD, gT):
        field, rays, Y, grads = ctx.field, ctx.rays, ctx.Y, ctx.grads
        R = len(rays)
        gC = _np(gC) if gC is not None else np.zeros((R, 3), np.float32)
        gD = _np(gD) if gD is not None else np.zeros(R, np.float32)
        gT = _np(gT) if gT is not None else np.zeros(R, np.float32)
        backward_into(field, rays, Y, ctx.outs, gC, gD, gT, grads)
        return None, None, None, None, None, None


def backward_into(field: VoxelField, rays: Rays, Y: Tensor, outs, gC: np.ndarray, gD: np.ndarray, gT: np.ndarray,
                  grads: GradBuffers) -> int:
    """Add the gradients of a ray batch into ``grads``; ``outs``: what :func:`march` returned with
    ``grads`` (its samples are in ``grads``' workspace). Returns the number of samples."""
    C, D, T, n, slot0 = outs
    R = len(rays)
    st = grads.store(0)
    M = int(n.sum())
    y = _np(Y)
    nt = num_threads()
    run_chunks(KN.grad_records, (n, slot0, st.x, st.rgb, st.t, np.float32(field.step), C, D, T,
                                 np.ascontiguousarray(gC, np.float32), np.ascontiguousarray(gD, np.float32),
                                 np.ascontiguousarray(gT, np.float32), st.graw, st.glogit),
               _ranges(0, R, 8 * nt), M * 4)
    nx, ny, nz = field.res
    n_slabs = max(1, min(nx - 1, 8 * nt))
    slab_w = int(math.ceil((nx - 1) / n_slabs))
    n_slabs = int(math.ceil((nx - 1) / slab_w))
    order = np.empty(M, np.int64)
    slab_ptr = np.empty(n_slabs + 1, np.int64)
    KN.bucket_slots_by_slab(n, slot0, st.base, np.int64(ny * nz), np.int64(slab_w), np.int64(n_slabs), order,
                            slab_ptr)
    for parity in (0, 1):
        jobs = [(s, s + 1, parity) for s in range(parity, n_slabs, 2)]
        run_chunks(KN.scatter_slabs, (order, slab_ptr, st.base, st.frac, st.graw, st.glogit, st.ray, y,
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

    def step(self, field: VoxelField, grads: GradBuffers, scale: float = 1.0, idx: Optional[np.ndarray] = None) -> int:
        """One step at learning rates times ``scale`` on the voxels ``idx`` (default: the touched
        ones); returns the number of voxels updated."""
        idx = grads.touched_ids() if idx is None else idx
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
