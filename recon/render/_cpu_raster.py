"""Numba kernels of the CPU rasterizer: per-tile compositing, its backward, and the gradient reduction.

Everything is float32 and C-contiguous; integer ids are int32, offsets int64. Callers must pass
exactly these dtypes (see :mod:`recon.render.cpu`) so each kernel compiles once and is then loaded
from Numba's on-disk cache (``cache=True``).

Maths and rules are gsplat 1.5.3's (``rasterize_to_pixels_3dgs_fwd/bwd``): ``sigma = 0.5 (a dx^2 +
c dy^2) + b dx dy`` with ``d = mean - pixel centre``; ``alpha = min(0.999, opacity exp(-sigma))``;
skip when ``sigma < 0`` or ``alpha < 1/255``; a Gaussian that would take the transmittance to
``<= 1e-4`` is not drawn and ends the pixel.

Work layout. One task per tile: a kernel call processes the tile jobs it is given (``jobs``, a
chunk of image-tile ids; :mod:`recon.render.cpu` hands chunks to threads; kernels release the
GIL). A tile's pixel state lives in small flat arrays laid out as [8-column block][row][lane].
For each Gaussian only the rows and 8-column blocks that its ellipse ``sigma <= L'`` crosses are
visited (``L' = log(255 opacity) + 0.05``; outside it alpha < 1/255), and each visited block is
one branch-free loop that LLVM turns into SIMD (unsigned lane indices, selects instead of
branches, a polynomial exp, ``error_model="numpy"`` so divisions carry no exception branch, few
arrays written so its runtime alias checks stay within bounds). Evaluating whole blocks gives
exactly gsplat's per-pixel result, since pixels outside the ellipse fail the alpha test anyway.

Layout of the per-intersection "gathered" array ``gat [n_isect, GAT_F + 4]`` (filled by the
forward kernel in (tile, depth) order, reused by the backward): mean x, mean y, conic a, b, c,
opacity, ``2 a L'``, ``det(conic)``, then 4 colour channels (more channels run as groups of 4).

Layout of the per-intersection gradient array ``gi [n_isect, GI_F + 4]``: d mean x, d mean y,
d conic a, b, c, d opacity, |d mean x|, |d mean y| (per-pixel absolute values summed, for
absgrad), then the 4 colour gradients. One row per (tile, Gaussian) pair, written by exactly one
task; :func:`reduce_grads` sums them per Gaussian in a fixed order (deterministic, no atomics).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from recon.render._cpu_common import ALPHA_THRESHOLD, F0, F1, F2, F05, FM, OPTS  # noqa: F401

ALPHA_MAX = np.float32(0.999)
T_MIN = np.float32(1e-4)
NO_STOP = np.int32(2**31 - 1)  # pixel never terminated: every intersection of its tile counts
SPAN_MARGIN = np.float32(0.05)
LANES = 8  # tile rows are padded to a multiple of this many pixels

GAT_F = 8
GI_F = 8
CH = 4  # colour channels per kernel call

# exp(-s) = 2^-n * 2^-f with n = floor(s log2 e): a degree-5 polynomial for 2^-f on [0, 1)
# (relative error <= 3e-7 for s <= 6, 2e-6 at s = 40) times 2^-n built from its exponent bits.
# Branch-free and vectorisable; forward and backward use the same function.
LOG2E = np.float32(1.4426950408889634)
EXP_ARG_MAX = np.float32(40.0)
E0 = np.float32(0.9999999233032877)
E1 = np.float32(-0.693142172405242)
E2 = np.float32(0.2401715936907699)
E3 = np.float32(-0.055278142905607015)
E4 = np.float32(0.009186878637110889)
E5 = np.float32(-0.0009381168092756021)
I127 = np.int32(127)
I23 = np.int32(23)


@intrinsic
def _bits_to_f32(typingctx, bits):
    """Reinterpret an int32's bits as a float32."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@njit(inline="always", fastmath=FM)
def _exp_neg(s):
    """exp(-s) for float32 s (s < 0 is treated as 0; s > 40 as 40)."""
    t = min(max(s, F0), EXP_ARG_MAX) * LOG2E
    n = np.int32(t)
    f = t - np.float32(n)
    p = E0 + f * (E1 + f * (E2 + f * (E3 + f * (E4 + f * E5))))
    return p * _bits_to_f32((I127 - n) << I23)


@njit(inline="always", fastmath=FM)
def _span(mx, my, ca, cc, l2a, detc, x_lo_t, y_lo_t, x_hi_t, y_hi_t, ts):
    """Rows [r0, r1) and 8-lane column blocks [b0, b1) of a tile (relative to its corner) that
    hold the part of the ellipse ``sigma <= L'`` inside the tile; empty if none. The row count is
    made even (within the tile's padded rows) so each SIMD loop runs whole 16-lane iterations."""
    if not detc > F0:
        return 0, 0, 0, 0
    ey = np.sqrt(l2a / detc)
    ex = np.sqrt(l2a * cc / (ca * detc))
    y0 = max(y_lo_t, int(math.ceil(my - ey - F05)))
    y1 = min(y_hi_t, int(math.floor(my + ey - F05)) + 1)
    x0 = max(x_lo_t, int(math.ceil(mx - ex - F05)))
    x1 = min(x_hi_t, int(math.floor(mx + ex - F05)) + 1)
    if y0 >= y1 or x0 >= x1:
        return 0, 0, 0, 0
    r0 = y0 - y_lo_t
    r1 = y1 - y_lo_t
    if (r1 - r0) & 1:
        if r1 < ts:
            r1 += 1
        elif r0 > 0:
            r0 -= 1
    return r0, r1, (x0 - x_lo_t) // LANES, (x1 - 1 - x_lo_t) // LANES + 1


@njit(inline="always", fastmath=FM)
def _pix(ry, j, ts):
    """Flat index of tile pixel (row ry, column j) in the blocked layout [block][row][lane]."""
    return (j // LANES) * (ts * LANES) + ry * LANES + (j % LANES)


@njit(inline="always", fastmath=FM)
def _tile_centres(x_lo_t, y_lo_t, ts, nblk):
    """Pixel-centre coordinates of a tile's padded pixels in the blocked layout."""
    pxc = np.empty(nblk * ts * LANES, np.float32)
    pyc = np.empty(nblk * ts * LANES, np.float32)
    for blk in range(nblk):
        for ry in range(ts):
            for ln in range(LANES):
                i = blk * ts * LANES + ry * LANES + ln
                pxc[i] = np.float32(x_lo_t + blk * LANES + ln) + F05
                pyc[i] = np.float32(y_lo_t + ry) + F05
    return pxc, pyc


@njit(**OPTS)
def raster_fwd(
    tile_offsets, flatten_ids, means2d, conics, opac, colors, backgrounds, has_bg,
    width, height, tile_size, tile_w, tile_h, n_images,
    gat, render, alpha_out, last_ids, jobs,
):  # fmt: skip
    """Front-to-back compositing of 4 colour channels for the tiles in ``jobs``.

    ``colors [M, 4]``, ``backgrounds [I, 4]``, ``render [I, H, W, 4]`` (callers pad or split
    channels into groups of 4). Also gathers the attributes of each intersection into ``gat``
    (reused by the backward) and stores in ``last_ids`` the index of the intersection that ended
    each pixel (it and all later ones are not drawn), or ``NO_STOP`` if none did. (gsplat stores
    the last drawn index instead; for the backward the two are equivalent, since intersections in
    between failed the alpha test.)
    """
    T = tile_w * tile_h
    ts = tile_size
    nblk = (ts + LANES - 1) // LANES
    npx = nblk * ts * LANES
    bstride = ts * LANES
    for jj in range(jobs.shape[0]):
        job = jobs[jj]
        im = job // T
        tile = job - im * T
        tyi = tile // tile_w
        txi = tile - tyi * tile_w
        start = tile_offsets[job]
        end = tile_offsets[job + 1]
        x_lo_t = txi * ts
        y_lo_t = tyi * ts
        x_hi_t = min(x_lo_t + ts, width)
        y_hi_t = min(y_lo_t + ts, height)
        # gather (contiguous, in depth order)
        for k in range(start, end):
            r = flatten_ids[k]
            ca = conics[r, 0]
            gat[k, 0] = means2d[r, 0]
            gat[k, 1] = means2d[r, 1]
            gat[k, 2] = ca
            gat[k, 3] = conics[r, 1]
            gat[k, 4] = conics[r, 2]
            gat[k, 5] = opac[r]
            lp = np.log(max(opac[r], ALPHA_THRESHOLD) / ALPHA_THRESHOLD) + SPAN_MARGIN
            gat[k, 6] = F2 * ca * lp
            gat[k, 7] = ca * conics[r, 2] - conics[r, 1] * conics[r, 1]
            gat[k, 8] = colors[r, 0]
            gat[k, 9] = colors[r, 1]
            gat[k, 10] = colors[r, 2]
            gat[k, 11] = colors[r, 3]
        pxc, pyc = _tile_centres(x_lo_t, y_lo_t, ts, nblk)
        # Tile state, flat over [block][row][lane]. Transmittance is negated once a pixel is done
        # (terminated, or outside the image): one array holds both, and few arrays written in the
        # SIMD loop keep LLVM vectorising it.
        Tr = np.full(npx, -F1, np.float32)
        stop = np.full(npx, NO_STOP, np.int32)
        acc = np.zeros((4, npx), np.float32)
        for py in range(y_lo_t, y_hi_t):
            for px in range(x_lo_t, x_hi_t):
                Tr[_pix(py - y_lo_t, px - x_lo_t, ts)] = F1
        n_active = (x_hi_t - x_lo_t) * (y_hi_t - y_lo_t)
        for k in range(start, end):
            if n_active <= 0:
                break
            mx = gat[k, 0]
            my = gat[k, 1]
            hca = F05 * gat[k, 2]
            cb = gat[k, 3]
            hcc = F05 * gat[k, 4]
            op = gat[k, 5]
            c0 = gat[k, 8]
            c1 = gat[k, 9]
            c2 = gat[k, 10]
            c3 = gat[k, 11]
            r0, r1, b0, b1 = _span(
                mx, my, gat[k, 2], gat[k, 4], gat[k, 6], gat[k, 7], x_lo_t, y_lo_t, x_hi_t, y_hi_t, ts
            )
            if b0 >= b1:
                continue
            for blk in range(b0, b1):
                # unsigned flat indices: no negative-index wraparound, so LLVM vectorises the loop
                i0 = np.uint64(blk * bstride + r0 * LANES)
                i1 = np.uint64(blk * bstride + r1 * LANES)
                nterm = F0
                for i in range(i0, i1):
                    dx = mx - pxc[i]
                    dy = my - pyc[i]
                    sigma = dx * (hca * dx + cb * dy) + hcc * dy * dy
                    alpha = min(ALPHA_MAX, op * _exp_neg(sigma))
                    t = Tr[i]
                    nt = t * (F1 - alpha)
                    ok = (sigma >= F0) & (alpha >= ALPHA_THRESHOLD) & (t > F0)
                    draw = ok & (nt > T_MIN)
                    term = ok & (nt <= T_MIN)
                    w = alpha * t if draw else F0
                    acc[0, i] += w * c0
                    acc[1, i] += w * c1
                    acc[2, i] += w * c2
                    acc[3, i] += w * c3
                    Tr[i] = nt if draw else (-t if term else t)
                    nterm += F1 if term else F0
                if nterm > F0:
                    # rare: record where the newly finished pixels stopped (outside the SIMD loop)
                    n_active -= int(nterm)
                    kk = np.int32(k)
                    for i in range(i0, i1):
                        if Tr[i] < F0 and stop[i] == NO_STOP:
                            stop[i] = kk
        for py in range(y_lo_t, y_hi_t):
            for px in range(x_lo_t, x_hi_t):
                i = _pix(py - y_lo_t, px - x_lo_t, ts)
                t = abs(Tr[i])
                alpha_out[im, py, px] = F1 - t
                last_ids[im, py, px] = stop[i]
                for ch in range(4):
                    if has_bg:
                        render[im, py, px, ch] = acc[ch, i] + t * backgrounds[im, ch]
                    else:
                        render[im, py, px, ch] = acc[ch, i]


@njit(**OPTS)
def raster_bwd(
    tile_offsets, gat, backgrounds, has_bg, with_alpha, width, height, tile_size, tile_w,
    tile_h, n_images, alpha_out, last_ids, v_render, v_alpha, gi, jobs,
):  # fmt: skip
    """Backward of :func:`raster_fwd` for the tiles in ``jobs``: each tile walks its list back to
    front (gsplat's maths, transmittance recovered by division) and writes one gradient row per
    intersection to ``gi``.

    ``with_alpha``: include the ``v_alpha`` term (only for the first group of 4 channels)."""
    T = tile_w * tile_h
    ts = tile_size
    nblk = (ts + LANES - 1) // LANES
    npx = nblk * ts * LANES
    bstride = ts * LANES
    for jj in range(jobs.shape[0]):
        job = jobs[jj]
        im = job // T
        tile = job - im * T
        tyi = tile // tile_w
        txi = tile - tyi * tile_w
        start = tile_offsets[job]
        end = tile_offsets[job + 1]
        if end <= start:
            continue
        x_lo_t = txi * ts
        y_lo_t = tyi * ts
        x_hi_t = min(x_lo_t + ts, width)
        y_hi_t = min(y_lo_t + ts, height)
        pxc, pyc = _tile_centres(x_lo_t, y_lo_t, ts, nblk)
        Tr = np.ones(npx, np.float32)
        # T_final * (dL/dalpha_out - background . dL/dcolour): the alpha-path term of v_alpha / ra
        Tfv = np.zeros(npx, np.float32)
        stop = np.full(npx, -1, np.int32)
        vout = np.zeros((4, npx), np.float32)
        # sum over the Gaussians behind (already walked) of colour . dL/dcolour * weight: gsplat's
        # per-channel ``buffer`` contracted with this pixel's dL/dcolour (one array, not four)
        bdot = np.zeros(npx, np.float32)
        max_stop = -1
        for py in range(y_lo_t, y_hi_t):
            for px in range(x_lo_t, x_hi_t):
                i = _pix(py - y_lo_t, px - x_lo_t, ts)
                t = F1 - alpha_out[im, py, px]
                Tr[i] = t
                li = last_ids[im, py, px]
                stop[i] = li
                max_stop = max(max_stop, li)
                s = v_alpha[im, py, px] if with_alpha else F0
                for ch in range(4):
                    vo = v_render[im, py, px, ch]
                    vout[ch, i] = vo
                    if has_bg:
                        s -= backgrounds[im, ch] * vo
                Tfv[i] = t * s
        for k in range(end - 1, start - 1, -1):
            g_x = F0
            g_y = F0
            g_a = F0
            g_b = F0
            g_c = F0
            g_o = F0
            g_ax = F0
            g_ay = F0
            vc0 = F0
            vc1 = F0
            vc2 = F0
            vc3 = F0
            r0, r1, b0, b1 = _span(
                gat[k, 0], gat[k, 1], gat[k, 2], gat[k, 4], gat[k, 6], gat[k, 7], x_lo_t, y_lo_t, x_hi_t, y_hi_t, ts
            )
            if k < max_stop and b0 < b1:
                mx = gat[k, 0]
                my = gat[k, 1]
                ca = gat[k, 2]
                cb = gat[k, 3]
                cc = gat[k, 4]
                op = gat[k, 5]
                c0 = gat[k, 8]
                c1 = gat[k, 9]
                c2 = gat[k, 10]
                c3 = gat[k, 11]
                hca = F05 * ca
                hcc = F05 * cc
                kk = np.int32(k)
                for blk in range(b0, b1):
                    i0 = np.uint64(blk * bstride + r0 * LANES)
                    i1 = np.uint64(blk * bstride + r1 * LANES)
                    for i in range(i0, i1):
                        dx = mx - pxc[i]
                        dy = my - pyc[i]
                        sigma = dx * (hca * dx + cb * dy) + hcc * dy * dy
                        vis = _exp_neg(sigma)
                        alpha = min(ALPHA_MAX, op * vis)
                        ok = (sigma >= F0) & (alpha >= ALPHA_THRESHOLD) & (kk < stop[i])
                        ra = F1 / (F1 - alpha)
                        t0 = Tr[i]
                        t = t0 * ra
                        Tr[i] = t if ok else t0
                        fac = alpha * t if ok else F0
                        vo0 = vout[0, i]
                        vo1 = vout[1, i]
                        vo2 = vout[2, i]
                        vo3 = vout[3, i]
                        cdot = c0 * vo0 + c1 * vo1 + c2 * vo2 + c3 * vo3
                        bd = bdot[i]
                        v_al = cdot * t + (Tfv[i] - bd) * ra
                        bdot[i] = bd + cdot * fac
                        vc0 += fac * vo0
                        vc1 += fac * vo1
                        vc2 += fac * vo2
                        vc3 += fac * vo3
                        m = ok & (op * vis <= ALPHA_MAX)
                        v_sigma = -op * vis * v_al if m else F0
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        g_x += gx
                        g_y += gy
                        g_ax += abs(gx)
                        g_ay += abs(gy)
                        g_a += F05 * v_sigma * dx * dx
                        g_b += v_sigma * dx * dy
                        g_c += F05 * v_sigma * dy * dy
                        g_o += vis * v_al if m else F0
            q = k
            gi[q, 0] = g_x
            gi[q, 1] = g_y
            gi[q, 2] = g_a
            gi[q, 3] = g_b
            gi[q, 4] = g_c
            gi[q, 5] = g_o
            gi[q, 6] = g_ax
            gi[q, 7] = g_ay
            gi[q, 8] = vc0
            gi[q, 9] = vc1
            gi[q, 10] = vc2
            gi[q, 11] = vc3


@njit(**OPTS)
def reduce_grads(gi, vis_rows, vis_off, counts, isect_of_vis, v_means2d, v_conics, v_opac, v_colors, v_abs, v_lo, v_hi):
    """Sum each visible row's gradient rows ``gi[isect_of_vis[vis_off[v] + j]]``, j < counts[v], in a
    fixed order (deterministic) into the per-row gradients (``v_colors [M, 4]``), for visible
    entries ``v_lo .. v_hi-1``."""
    for v in range(v_lo, v_hi):
        r = vis_rows[v]
        o = vis_off[v]
        gx = F0
        gy = F0
        ga = F0
        gb = F0
        gc = F0
        go = F0
        ax = F0
        ay = F0
        c0 = F0
        c1 = F0
        c2 = F0
        c3 = F0
        for j in range(o, o + counts[v]):
            q = isect_of_vis[j]
            gx += gi[q, 0]
            gy += gi[q, 1]
            ga += gi[q, 2]
            gb += gi[q, 3]
            gc += gi[q, 4]
            go += gi[q, 5]
            ax += gi[q, 6]
            ay += gi[q, 7]
            c0 += gi[q, 8]
            c1 += gi[q, 9]
            c2 += gi[q, 10]
            c3 += gi[q, 11]
        v_means2d[r, 0] = gx
        v_means2d[r, 1] = gy
        v_conics[r, 0] = ga
        v_conics[r, 1] = gb
        v_conics[r, 2] = gc
        v_opac[r] = go
        v_abs[r, 0] = ax
        v_abs[r, 1] = ay
        v_colors[r, 0] = c0
        v_colors[r, 1] = c1
        v_colors[r, 2] = c2
        v_colors[r, 3] = c3
