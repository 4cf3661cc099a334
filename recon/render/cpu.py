"""CPU backend: autograd wrappers around recon's Numba kernels.

Kernels: :mod:`recon.render._cpu_project` (projection), :mod:`recon.render._cpu_sh` (SH colours),
:mod:`recon.render._cpu_bin` (tile binning), :mod:`recon.render._cpu_raster` (compositing).

Pipeline of one call (all cameras at once; float32 throughout, zero-copy numpy views of tensors):

1. :class:`ProjectCPU` projects and culls (Numba, parallel over camera x Gaussian) and, when
   packed, compacts the visible pairs. Its hand-written backward mirrors gsplat's projection VJP.
2. :func:`build_bins`: tile boxes, a stable radix sort of the visible pairs by (image, depth), and a
   race-free fill of per-tile lists split into bands of tile rows (no global key sort).
3. :class:`RasterizeCPU` composites front to back per tile and stores each pixel's final
   transmittance and where it stopped; its backward walks each tile back to front, writes one
   gradient row per (tile, Gaussian) intersection and reduces them per Gaussian in fixed order.

Parallelism: the kernels are serial Numba functions compiled with ``nogil=True``; :func:`run_chunks`
runs chunks of their work on a small thread pool (the calling thread included), with
:func:`num_threads` = ``torch.get_num_threads()``. Small calls stay on the calling thread (see
:data:`PARALLEL_MIN_WORK`). Compared with Numba's ``parallel=True`` this compiles ~2.5x faster,
never spin-waits, balances tiles dynamically and is safe to call from several Python threads.
"""

from __future__ import annotations

import math
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from recon.render import _cpu_bin as KB
from recon.render import _cpu_project as KP
from recon.render import _cpu_raster as KR
from recon.render import _cpu_sh as KS


# Below this much work (~2 ms on one core) a kernel runs on the calling thread only: handing
# chunks to other threads costs little on an idle machine but much more on a busy one.
PARALLEL_MIN_WORK = 50_000

_POOL: Optional[ThreadPoolExecutor] = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def num_threads() -> int:
    """Threads the CPU backend uses: ``torch.get_num_threads()`` (one knob for torch and recon)."""
    return max(1, int(torch.get_num_threads()))


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < n:
            old = _POOL
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="recon-raster")
            _POOL_SIZE = n
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def run_chunks(fn: Callable, args: tuple, chunks: Sequence[tuple], work: int) -> None:
    """Call ``fn(*args, *chunk)`` for every chunk, on up to :func:`num_threads` threads.

    The kernels are Numba functions compiled with ``nogil=True`` whose chunks write disjoint
    outputs, so plain Python threads run them in parallel. Threads take chunks from a shared
    iterator (dynamic balance); the calling thread works too. Small ``work`` runs inline.
    """
    nt = num_threads()
    if nt == 1 or len(chunks) <= 1 or work < PARALLEL_MIN_WORK:
        for ch in chunks:
            fn(*args, *ch)
        return
    it = iter(chunks)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                ch = next(it, None)
            if ch is None:
                return
            fn(*args, *ch)

    futures = [_pool(nt - 1).submit(worker) for _ in range(min(nt, len(chunks)) - 1)]
    try:
        worker()
    finally:
        errors = [f.exception() for f in futures]  # waits for every thread before returning
    for e in errors:
        if e is not None:
            raise e


def _ranges(lo: int, hi: int, n: int) -> list[tuple[int, int]]:
    """Split ``[lo, hi)`` into at most ``n`` nearly equal, non-empty ranges."""
    total = hi - lo
    n = max(1, min(n, total))
    out = [(lo + total * i // n, lo + total * (i + 1) // n) for i in range(n)]
    return [r for r in out if r[1] > r[0]] or [(lo, lo)]


def _np(t: Tensor) -> np.ndarray:
    """Zero-copy float32/int C-contiguous numpy view of a CPU tensor (copies only if needed)."""
    return t.detach().contiguous().numpy()


def _f32(t: Tensor) -> np.ndarray:
    return _np(t.detach().to(torch.float32))


@dataclass
class Bins:
    """Tile binning of one call (all numpy; rows index the flat [M] arrays of projected splats)."""

    n_images: int
    tile_w: int
    tile_h: int
    tile_size: int
    vis_rows: np.ndarray  # [V] int32, row of each visible splat in the flat [M] arrays
    vis_off: np.ndarray  # [V] int64, start of each visible splat's entries in isect_of_vis
    counts: np.ndarray  # [V] int64, tiles touched by each visible splat
    tile_offsets: np.ndarray  # [I*T + 1] int64
    flatten_ids: np.ndarray  # [n_isect] int32 (row of each intersection, tile then depth order)
    isect_of_vis: np.ndarray  # [n_isect] int64, intersections of each visible splat (from vis_off)

    @property
    def n_isect(self) -> int:
        return int(self.flatten_ids.shape[0])


def build_bins(
    means2d: np.ndarray,  # [M, 2] float32
    radii: np.ndarray,  # [M, 2] int32
    depths: np.ndarray,  # [M] float32
    vis_rows: np.ndarray,  # [V] int32
    vis_img: np.ndarray,  # [V] int32
    n_images: int,
    width: int,
    height: int,
    tile_size: int,
) -> Bins:
    """Assign visible splats to the tiles their boxes overlap, in depth order per tile."""
    tw = math.ceil(width / tile_size)
    th = math.ceil(height / tile_size)
    T = tw * th
    nt = num_threads()
    V = vis_rows.shape[0]
    boxes = np.empty((V, 4), np.int32)
    counts = np.empty(V, np.int64)
    run_chunks(KB.bin_boxes, (means2d, radii, vis_rows, int(tile_size), int(tw), int(th), boxes, counts),
               _ranges(0, V, nt), V)  # fmt: skip
    vis_off = np.zeros(V, np.int64)
    if V > 1:
        np.cumsum(counts[:-1], out=vis_off[1:])
    n_isect = int(vis_off[-1] + counts[-1]) if V else 0
    depth_bits = np.ascontiguousarray(depths[vis_rows]).view(np.uint32)
    order = np.empty(V, np.int32)
    img_start = np.empty(n_images + 1, np.int64)
    KB.sort_by_image_depth(depth_bits, vis_img, int(n_images), order, img_start)
    sb = np.empty((V, 4), np.int32)
    srow = np.empty(V, np.int32)
    soff = np.empty(V, np.int64)
    run_chunks(KB.bin_sorted, (order, boxes, vis_rows, vis_off, sb, srow, soff), _ranges(0, V, nt), V)
    # jobs = (image, band of tile rows); each band owns its tiles. Bands rescan their image's
    # entries, so use few: two per thread (one when the work is small).
    parallel = nt > 1 and n_isect >= PARALLEL_MIN_WORK
    n_bands = int(max(1, min(th, 2 * nt if parallel else 1)))
    jobs = [(j, j + 1) for j in range(n_images * n_bands)]
    tile_counts = np.empty(n_images * T, np.int64)
    run_chunks(KB.bin_count, (img_start, sb, n_bands, int(tw), int(th), tile_counts), jobs, n_isect)
    tile_offsets = np.zeros(n_images * T + 1, np.int64)
    np.cumsum(tile_counts, out=tile_offsets[1:])
    flatten_ids = np.empty(n_isect, np.int32)
    isect_of_vis = np.empty(n_isect, np.int64)
    cursor = np.empty(n_images * T, np.int64)
    run_chunks(KB.bin_write, (img_start, sb, srow, soff, n_bands, int(tw), int(th), tile_offsets, cursor, flatten_ids,
                              isect_of_vis), jobs, n_isect)  # fmt: skip
    return Bins(n_images, tw, th, tile_size, vis_rows, vis_off, counts, tile_offsets, flatten_ids, isect_of_vis)


class ProjectCPU(torch.autograd.Function):
    """Project Gaussians (dense ``[C, N, ...]`` or packed ``[nnz, ...]`` outputs).

    Outputs: means2d, depths, conics, opacities (x compensation when antialiased), radii (int32),
    camera_ids, gaussian_ids (int64, packed only; empty otherwise). ``aux`` (a dict) receives the
    numpy visibility lists used for binning.
    """

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far,
                radius_clip, antialiased, packed, aux):  # fmt: skip
        C = viewmats.shape[0]
        N = means.shape[0]
        m = _f32(means)
        q = _f32(quats)
        s = _f32(scales)
        o = _f32(opacities)
        vm = _f32(viewmats)
        ks = _f32(Ks)
        m2d = np.empty((C, N, 2), np.float32)
        con = np.empty((C, N, 3), np.float32)
        dep = np.empty((C, N), np.float32)
        op = np.empty((C, N), np.float32)
        comp = np.empty((C, N), np.float32)
        rad = np.empty((C, N, 2), np.int32)
        nt = num_threads()
        for c in range(C):
            run_chunks(KP.project_fwd, (m, q, s, o, vm, ks, int(width), int(height), float(eps2d), float(near),
                                        float(far), float(radius_clip), bool(antialiased), m2d, con, dep, op, comp,
                                        rad, c), _ranges(0, N, nt), N)  # fmt: skip
        cam_start = np.empty(C + 1, np.int64)
        gids = np.empty(C * N, np.int32)
        nnz = KP.compact_visible(rad, cam_start, gids)
        gids = gids[:nnz]
        cam_ids = np.repeat(np.arange(C, dtype=np.int32), np.diff(cam_start))
        if packed:
            pm2d = np.empty((nnz, 2), np.float32)
            pcon = np.empty((nnz, 3), np.float32)
            pdep = np.empty(nnz, np.float32)
            pop = np.empty(nnz, np.float32)
            pcomp = np.empty(nnz, np.float32)
            prad = np.empty((nnz, 2), np.int32)
            for c in range(C):
                args = (gids, m2d, con, dep, op, comp, rad, pm2d, pcon, pdep, pop, pcomp, prad, c)
                run_chunks(KP.gather_packed, args, _ranges(int(cam_start[c]), int(cam_start[c + 1]), nt), nnz)
            m2d, con, dep, op, comp, rad = pm2d, pcon, pdep, pop, pcomp, prad
            vis_rows = np.arange(nnz, dtype=np.int32)
            row_stride = -1
        else:
            vis_rows = (cam_ids.astype(np.int64) * N + gids).astype(np.int32)
            row_stride = N
        aux["vis_rows"] = vis_rows
        aux["cam_start"] = cam_start
        aux["gids"] = gids
        aux["row_stride"] = row_stride
        aux["shape"] = (C, N)
        aux["vis_img"] = cam_ids
        aux["radii_np"] = rad
        ctx.cam_start = cam_start
        ctx.gids = gids
        ctx.row_stride = row_stride
        ctx.comps = comp
        ctx.conics_np = con
        ctx.width = int(width)
        ctx.height = int(height)
        ctx.eps2d = float(eps2d)
        ctx.antialiased = bool(antialiased)
        ctx.save_for_backward(means, quats, scales, opacities, viewmats, Ks)
        t_m2d = torch.from_numpy(m2d)
        t_dep = torch.from_numpy(dep)
        t_con = torch.from_numpy(con)
        t_op = torch.from_numpy(op)
        t_rad = torch.from_numpy(rad)
        if packed:
            t_cid = torch.from_numpy(cam_ids.astype(np.int64))
            t_gid = torch.from_numpy(gids.astype(np.int64))
        else:
            t_cid = torch.empty(0, dtype=torch.int64)
            t_gid = torch.empty(0, dtype=torch.int64)
        ctx.mark_non_differentiable(t_rad, t_cid, t_gid)
        return t_m2d, t_dep, t_con, t_op, t_rad, t_cid, t_gid

    @staticmethod
    def backward(ctx, v_m2d, v_dep, v_con, v_op, *_):
        means, quats, scales, opacities, viewmats, Ks = ctx.saved_tensors
        N = means.shape[0]
        C = viewmats.shape[0]
        shape_m2d = ctx.conics_np.shape[:-1]

        def grad_np(g, shape):
            if g is None:
                return np.zeros(shape, np.float32)
            return _f32(g)

        gm2d = grad_np(v_m2d, shape_m2d + (2,))
        gdep = grad_np(v_dep, shape_m2d)
        gcon = grad_np(v_con, shape_m2d + (3,))
        gop = grad_np(v_op, shape_m2d)
        v_means = np.zeros((N, 3), np.float32)
        v_quats = np.zeros((N, 4), np.float32)
        v_scales = np.zeros((N, 3), np.float32)
        v_opac = np.zeros(N, np.float32)
        want_vm = bool(ctx.needs_input_grad[4])
        nnz = ctx.gids.shape[0]
        v_vm_rows = np.zeros((nnz if want_vm else 0, 12), np.float32)
        args = (
            _f32(means), _f32(quats), _f32(scales), _f32(opacities), _f32(viewmats), _f32(Ks),
            ctx.width, ctx.height, ctx.eps2d, ctx.antialiased, ctx.gids, int(ctx.row_stride),
            ctx.conics_np.reshape(-1, 3), ctx.comps.reshape(-1), gm2d.reshape(-1, 2), gcon.reshape(-1, 3),
            gdep.reshape(-1), gop.reshape(-1), v_means, v_quats, v_scales, v_opac, want_vm, v_vm_rows,
        )  # fmt: skip
        cs = ctx.cam_start
        for c in range(C):  # cameras in turn: inside one, each Gaussian appears once (no races)
            run_chunks(KP.project_bwd, args + (c,), _ranges(int(cs[c]), int(cs[c + 1]), num_threads()), nnz)
        v_viewmats = None
        if want_vm:
            vv = np.zeros((C, 4, 4), np.float64)
            for c in range(C):
                rows = v_vm_rows[ctx.cam_start[c] : ctx.cam_start[c + 1]].astype(np.float64).sum(0)
                vv[c, :3, :3] = rows[:9].reshape(3, 3)
                vv[c, :3, 3] = rows[9:]
            v_viewmats = torch.from_numpy(vv).to(viewmats.dtype)
        dt = means.dtype
        return (
            torch.from_numpy(v_means).to(dt) if ctx.needs_input_grad[0] else None,
            torch.from_numpy(v_quats).to(quats.dtype) if ctx.needs_input_grad[1] else None,
            torch.from_numpy(v_scales).to(scales.dtype) if ctx.needs_input_grad[2] else None,
            torch.from_numpy(v_opac).to(opacities.dtype) if ctx.needs_input_grad[3] else None,
            v_viewmats,
            *([None] * 10),
        )


class SHColorsCPU(torch.autograd.Function):
    """Colours ``clamp_min(SH(mean - campos) + 0.5, 0)`` of the visible pairs (degree 0..3).

    Output rows follow the projection's layout: ``[nnz, 3]`` packed or ``[C, N, 3]`` dense (rows of
    culled pairs hold 0.5, as gsplat's masked SH).
    """

    @staticmethod
    def forward(ctx, means, coeffs, campos, degree, aux):
        C, N = aux["shape"]
        per_camera = coeffs.dim() == 4
        co = _f32(coeffs if per_camera else coeffs.unsqueeze(0))
        m = _f32(means)
        cp = _f32(campos)
        row_stride = aux["row_stride"]
        if row_stride >= 0:
            out = np.full((C, N, 3), 0.5, np.float32)
        else:
            out = np.empty((aux["gids"].shape[0], 3), np.float32)
        cs = aux["cam_start"]
        for c in range(C):
            args = (int(degree), m, co, per_camera, cp, aux["gids"], int(row_stride), out.reshape(-1, 3), c)
            work = int(cs[-1]) * (degree + 1) ** 2
            run_chunks(KS.sh_fwd, args, _ranges(int(cs[c]), int(cs[c + 1]), num_threads()), work)
        ctx.degree = int(degree)
        ctx.aux = aux
        ctx.per_camera = per_camera
        ctx.out = out
        ctx.save_for_backward(means, coeffs, campos)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, v_colors):
        means, coeffs, campos = ctx.saved_tensors
        aux = ctx.aux
        co = _f32(coeffs if ctx.per_camera else coeffs.unsqueeze(0))
        v_co = np.zeros(co.shape, np.float32)
        v_m = np.zeros((means.shape[0], 3), np.float32)
        want_cp = bool(ctx.needs_input_grad[2])
        nnz = aux["gids"].shape[0]
        v_cp_rows = np.zeros((nnz if want_cp else 0, 3), np.float32)
        args = (
            ctx.degree, _f32(means), co, ctx.per_camera, _f32(campos), aux["gids"], int(aux["row_stride"]),
            ctx.out.reshape(-1, 3), _f32(v_colors).reshape(-1, 3), v_co, v_m, want_cp, v_cp_rows,
        )  # fmt: skip
        cs = aux["cam_start"]
        for c in range(cs.shape[0] - 1):  # cameras in turn (no races on per-Gaussian gradients)
            run_chunks(KS.sh_bwd, args + (c,), _ranges(int(cs[c]), int(cs[c + 1]), num_threads()),
                       nnz * (ctx.degree + 1) ** 2)  # fmt: skip
        v_campos = None
        if want_cp:
            cs = aux["cam_start"]
            v_campos = torch.from_numpy(
                np.stack([v_cp_rows[cs[c] : cs[c + 1]].astype(np.float64).sum(0) for c in range(cs.shape[0] - 1)])
            ).to(campos.dtype)
        v_coeffs = torch.from_numpy(v_co if ctx.per_camera else v_co[0]).to(coeffs.dtype)
        return torch.from_numpy(v_m).to(means.dtype), v_coeffs, v_campos, None, None


def _tile_chunks(n_jobs: int) -> list[tuple[np.ndarray]]:
    """Tile jobs in chunks of consecutive tiles: several per thread, taken dynamically."""
    jobs = np.arange(n_jobs, dtype=np.int32)
    n = 1 if num_threads() == 1 else min(n_jobs, 4 * num_threads())
    return [(jobs[a:b],) for a, b in _ranges(0, n_jobs, n)]


def _group4(a: np.ndarray, g: int) -> np.ndarray:
    """Channels ``4g .. 4g+3`` of ``a [..., D]`` as a C-contiguous ``[..., 4]`` array (zero-padded)."""
    D = a.shape[-1]
    lo, hi = 4 * g, min(4 * g + 4, D)
    if lo == 0 and hi == D == 4:
        return np.ascontiguousarray(a)
    out = np.zeros(a.shape[:-1] + (4,), np.float32)
    out[..., : hi - lo] = a[..., lo:hi]
    return out


class RasterizeCPU(torch.autograd.Function):
    """Tile compositing of projected splats (flat over the M rows of ``means2d`` & co).

    The kernels composite 4 channels at a time; D channels run as ceil(D / 4) groups that share
    the binning (the alpha and its gradient come from the first group, as gsplat's channel chunks).
    """

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, bins: Bins, width, height, absgrad):  # fmt: skip
        I = bins.n_images
        D = colors.shape[-1]
        m2d = _f32(means2d).reshape(-1, 2)
        con = _f32(conics).reshape(-1, 3)
        col = _f32(colors).reshape(-1, D)
        op = _f32(opacities).reshape(-1)
        has_bg = backgrounds is not None
        bg = _f32(backgrounds) if has_bg else np.zeros((I, D), np.float32)
        n_isect = bins.n_isect
        n_groups = (D + KR.CH - 1) // KR.CH
        gats, bgs = [], []
        render = np.empty((I, height, width, D), np.float32)
        alpha = np.empty((I, height, width), np.float32)
        last = np.empty((I, height, width), np.int32)
        for g in range(n_groups):
            gat = np.empty((n_isect, KR.GAT_F + KR.CH), np.float32)
            bg_g = _group4(bg, g)
            out = np.empty((I, height, width, KR.CH), np.float32)
            args = (
                bins.tile_offsets, bins.flatten_ids, m2d, con, op, _group4(col, g), bg_g, has_bg, int(width),
                int(height), int(bins.tile_size), int(bins.tile_w), int(bins.tile_h), int(I), gat, out, alpha, last,
            )  # fmt: skip
            run_chunks(KR.raster_fwd, args, _tile_chunks(I * bins.tile_w * bins.tile_h), 4 * n_isect)
            lo, hi = KR.CH * g, min(KR.CH * g + KR.CH, D)
            render[..., lo:hi] = out[..., : hi - lo]
            gats.append(gat)
            bgs.append(bg_g)
        ctx.bins = bins
        ctx.gats = gats
        ctx.bgs = bgs
        ctx.alpha = alpha
        ctx.last = last
        ctx.has_bg = has_bg
        ctx.width = int(width)
        ctx.height = int(height)
        ctx.M = m2d.shape[0]
        ctx.D = D
        ctx.absgrad = bool(absgrad)
        # weak reference: the backward sets ``.absgrad`` on the caller's means2d (gsplat's API)
        ctx.means2d_ref = weakref.ref(means2d) if absgrad else None
        ctx.shapes = (means2d.shape, conics.shape, colors.shape, opacities.shape)
        ctx.dtypes = (means2d.dtype, conics.dtype, colors.dtype, opacities.dtype)
        t_alpha = torch.from_numpy(alpha).unsqueeze(-1)
        if has_bg:
            ctx.save_for_backward(t_alpha)
        return torch.from_numpy(render), t_alpha

    @staticmethod
    def backward(ctx, v_render, v_alpha):
        bins: Bins = ctx.bins
        I = bins.n_images
        D = ctx.D
        H, W = ctx.height, ctx.width
        vr = np.zeros((I, H, W, D), np.float32) if v_render is None else _f32(v_render)
        va = np.zeros((I, H, W), np.float32) if v_alpha is None else _f32(v_alpha).reshape(I, H, W)
        M = ctx.M
        v_m2d = np.zeros((M, 2), np.float32)
        v_con = np.zeros((M, 3), np.float32)
        v_op = np.zeros(M, np.float32)
        v_col = np.zeros((M, D), np.float32)
        v_abs = np.zeros((M, 2), np.float32)
        gi = np.empty((bins.n_isect, KR.GI_F + KR.CH), np.float32)
        tiles = _tile_chunks(I * bins.tile_w * bins.tile_h)
        V = bins.vis_rows.shape[0]
        for g, (gat, bg_g) in enumerate(zip(ctx.gats, ctx.bgs)):
            args = (
                bins.tile_offsets, gat, bg_g, ctx.has_bg, g == 0, W, H, int(bins.tile_size), int(bins.tile_w),
                int(bins.tile_h), int(I), ctx.alpha, ctx.last, _group4(vr, g), va, gi,
            )  # fmt: skip
            run_chunks(KR.raster_bwd, args, tiles, 4 * bins.n_isect)
            if g == 0:
                t_m2d, t_con, t_op, t_abs = v_m2d, v_con, v_op, v_abs
            else:
                t_m2d, t_con, t_op, t_abs = (np.zeros_like(x) for x in (v_m2d, v_con, v_op, v_abs))
            t_col = np.zeros((M, KR.CH), np.float32)
            run_chunks(KR.reduce_grads, (gi, bins.vis_rows, bins.vis_off, bins.counts, bins.isect_of_vis, t_m2d, t_con,
                                         t_op, t_col, t_abs), _ranges(0, V, num_threads()), bins.n_isect)  # fmt: skip
            if g > 0:
                v_m2d += t_m2d
                v_con += t_con
                v_op += t_op
                v_abs += t_abs
            lo, hi = KR.CH * g, min(KR.CH * g + KR.CH, D)
            v_col[:, lo:hi] = t_col[:, : hi - lo]
        s_m2d, s_con, s_col, s_op = ctx.shapes
        d_m2d, d_con, d_col, d_op = ctx.dtypes
        if ctx.absgrad and ctx.means2d_ref is not None:
            target = ctx.means2d_ref()
            if target is not None:
                target.absgrad = torch.from_numpy(v_abs).reshape(s_m2d).to(d_m2d)
        v_bg = None
        if ctx.has_bg and ctx.needs_input_grad[4]:
            (t_alpha,) = ctx.saved_tensors
            v_bg = (torch.from_numpy(vr) * (1.0 - t_alpha)).sum(dim=(1, 2))
        return (
            torch.from_numpy(v_m2d).reshape(s_m2d).to(d_m2d),
            torch.from_numpy(v_con).reshape(s_con).to(d_con),
            torch.from_numpy(v_col).reshape(s_col).to(d_col),
            torch.from_numpy(v_op).reshape(s_op).to(d_op),
            v_bg,
            None, None, None, None,
        )  # fmt: skip


def project_cpu(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                radius_clip, antialiased, packed) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Run :class:`ProjectCPU`; returns (projection tensors, numpy aux for binning)."""
    aux: dict[str, Any] = {}
    m2d, dep, con, op, rad, cid, gid = ProjectCPU.apply(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
        radius_clip, antialiased, packed, aux,
    )  # fmt: skip
    out = dict(means2d=m2d, depths=dep, conics=con, opacities=op, radii=rad)
    if packed:
        out["camera_ids"] = cid
        out["gaussian_ids"] = gid
    return out, aux


def rasterize_cpu(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    backgrounds: Optional[Tensor],
    aux: dict[str, Any],
    n_images: int,
    width: int,
    height: int,
    tile_size: int,
    absgrad: bool,
) -> tuple[Tensor, Tensor, Bins]:
    """Bin and composite; ``aux`` comes from :func:`project_cpu`."""
    bins = build_bins(
        _f32(means2d).reshape(-1, 2), aux["radii_np"].reshape(-1, 2), _f32(depths).reshape(-1),
        aux["vis_rows"], aux["vis_img"], n_images, width, height, tile_size,
    )  # fmt: skip
    render, alpha = RasterizeCPU.apply(means2d, conics, colors, opacities, backgrounds, bins, width, height, absgrad)
    return render, alpha, bins
