"""Numba kernels of the CPU rasterizer: tile binning (boxes, radix sort by depth, per-tile lists).

gsplat sorts one (image | tile | depth) key per intersection; here the visible splats are sorted
once by (image, depth) with a stable radix sort, and per-tile lists are filled in that order by
bands of tile rows (each band owns its tiles: no races, no per-intersection sort). Kernels take
explicit work ranges; :mod:`recon.render.cpu` runs the chunks on threads (all kernels release
the GIL).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from recon.render._cpu_common import ALPHA_THRESHOLD, F0, F1, F2, F05, FM, OPTS  # noqa: F401


@njit(**OPTS)
def bin_boxes(means2d, radii, vis_rows, tile_size, tile_w, tile_h, boxes, counts, v_lo, v_hi):
    """Tile box (x0, x1, y0, y1; max exclusive) and tile count of visible entries v_lo .. v_hi-1,
    as gsplat's ``intersect_tile``."""
    ts = np.float32(tile_size)
    for v in range(v_lo, v_hi):
        r = vis_rows[v]
        rx = np.float32(radii[r, 0]) / ts
        ry = np.float32(radii[r, 1]) / ts
        tx = means2d[r, 0] / ts
        ty = means2d[r, 1] / ts
        x0 = min(max(0, int(math.floor(tx - rx))), tile_w)
        x1 = min(max(0, int(math.ceil(tx + rx))), tile_w)
        y0 = min(max(0, int(math.floor(ty - ry))), tile_h)
        y1 = min(max(0, int(math.ceil(ty + ry))), tile_h)
        boxes[v, 0] = x0
        boxes[v, 1] = x1
        boxes[v, 2] = y0
        boxes[v, 3] = y1
        counts[v] = (x1 - x0) * (y1 - y0)


@njit(**OPTS)
def sort_by_image_depth(depth_bits, vis_img, n_images, order, img_start):
    """Stable LSD radix sort of the visible rows by (image id, depth).

    ``depth_bits`` are the float32 depths reinterpreted as uint32; they are mapped to an
    order-preserving key (so negative depths sort correctly too). Ties keep row order, like
    gsplat's stable radix sort of (tile | depth) keys. Keys travel with their indices so every
    pass reads sequentially. Fills ``order`` and ``img_start [I+1]``.
    """
    V = depth_bits.shape[0]
    keys = np.empty(V, np.uint32)
    for i in range(V):
        b = depth_bits[i]
        if b & np.uint32(0x80000000):
            keys[i] = ~b
        else:
            keys[i] = b | np.uint32(0x80000000)
    cur = np.empty(V, np.int32)
    for i in range(V):
        cur[i] = i
    tmp = np.empty(V, np.int32)
    ktmp = np.empty(V, np.uint32)
    hist = np.empty(2048, np.int64)
    for p in range(3):
        sh = np.uint32(11 * p)
        hist[:] = 0
        for i in range(V):
            hist[(keys[i] >> sh) & np.uint32(2047)] += 1
        # skip passes where every key has the same digit
        skip = False
        for j in range(2048):
            if hist[j] == V:
                skip = True
                break
        if skip:
            continue
        acc = 0
        for j in range(2048):
            h = hist[j]
            hist[j] = acc
            acc += h
        for i in range(V):
            kv = keys[i]
            d = (kv >> sh) & np.uint32(2047)
            pos = hist[d]
            tmp[pos] = cur[i]
            ktmp[pos] = kv
            hist[d] = pos + 1
        cur, tmp = tmp, cur
        keys, ktmp = ktmp, keys
    # stable counting sort by image id
    cnt = np.zeros(n_images + 1, np.int64)
    for i in range(V):
        cnt[vis_img[i] + 1] += 1
    for j in range(n_images):
        cnt[j + 1] += cnt[j]
    for j in range(n_images + 1):
        img_start[j] = cnt[j]
    if n_images == 1:
        for i in range(V):
            order[i] = cur[i]
        return
    for i in range(V):
        e = cur[i]
        im = vis_img[e]
        order[cnt[im]] = e
        cnt[im] += 1


@njit(**OPTS)
def bin_sorted(order, boxes, vis_rows, vis_off, sb, srow, soff, s_lo, s_hi):
    """Copy boxes, rows and offsets into (image, depth) order (so band scans read sequentially)."""
    for s in range(s_lo, s_hi):
        v = order[s]
        sb[s, 0] = boxes[v, 0]
        sb[s, 1] = boxes[v, 1]
        sb[s, 2] = boxes[v, 2]
        sb[s, 3] = boxes[v, 3]
        srow[s] = vis_rows[v]
        soff[s] = vis_off[v]


@njit(**OPTS)
def bin_count(img_start, sb, n_bands, tile_w, tile_h, counts, job_lo, job_hi):
    """Per-tile intersection counts for band jobs ``job_lo .. job_hi-1``.

    A job is (image, band of tile rows); each job scans its image's depth-sorted entries and
    counts only its own tiles, so jobs never write the same tile.
    """
    T = tile_w * tile_h
    rows_per_band = (tile_h + n_bands - 1) // n_bands
    for job in range(job_lo, job_hi):
        im = job // n_bands
        band = job - im * n_bands
        r0 = band * rows_per_band
        r1 = min(tile_h, r0 + rows_per_band)
        if r0 >= r1:
            continue
        base = im * T
        for t in range(base + r0 * tile_w, base + r1 * tile_w):
            counts[t] = 0
        for s in range(img_start[im], img_start[im + 1]):
            y0 = max(sb[s, 2], r0)
            y1 = min(sb[s, 3], r1)
            if y0 >= y1:
                continue
            x0 = sb[s, 0]
            x1 = sb[s, 1]
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    counts[base + ty * tile_w + tx] += 1


@njit(**OPTS)
def bin_write(
    img_start, sb, srow, soff, n_bands, tile_w, tile_h, tile_offsets, cursor, flatten_ids, isect_of_vis,
    job_lo, job_hi,
):  # fmt: skip
    """Fill the per-tile lists of band jobs ``job_lo .. job_hi-1`` in depth order.

    ``flatten_ids[k]`` = row of intersection k; ``isect_of_vis[vis_off[v] + j] = k`` for the j-th
    tile (row-major in its box) of visible entry v (how the gradient reduction finds a Gaussian's
    intersections). ``cursor`` is scratch of the size of ``tile_offsets``.
    """
    T = tile_w * tile_h
    rows_per_band = (tile_h + n_bands - 1) // n_bands
    for job in range(job_lo, job_hi):
        im = job // n_bands
        band = job - im * n_bands
        r0 = band * rows_per_band
        r1 = min(tile_h, r0 + rows_per_band)
        if r0 >= r1:
            continue
        base = im * T
        for t in range(base + r0 * tile_w, base + r1 * tile_w):
            cursor[t] = tile_offsets[t]
        for s in range(img_start[im], img_start[im + 1]):
            y0 = max(sb[s, 2], r0)
            y1 = min(sb[s, 3], r1)
            if y0 >= y1:
                continue
            x0 = sb[s, 0]
            x1 = sb[s, 1]
            bw = x1 - x0
            row = srow[s]
            off = soff[s] - sb[s, 2] * bw - x0
            for ty in range(y0, y1):
                for tx in range(x0, x1):
                    t = base + ty * tile_w + tx
                    k = cursor[t]
                    cursor[t] = k + 1
                    flatten_ids[k] = row
                    isect_of_vis[off + ty * bw + tx] = k
