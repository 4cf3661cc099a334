"""Numba kernels of the CPU voxel radiance field: ray marching with occupancy skipping, volume
rendering forward and backward, the race-free gradient scatter, sparse Adam and the occupancy update.

Everything is float32 and C-contiguous; voxel and cell ids are int64, per-ray counts int32. The
callers (:mod:`recon.nerf.cpu`) pass exactly these dtypes, so each kernel compiles once and is then
loaded from Numba's on-disk cache. Kernels are serial and release the GIL; the callers run chunks of
rays / slabs / voxels on :func:`recon.render.cpu.run_chunks`' thread pool.

The model (see :mod:`recon.nerf.field`): a grid of ``nx x ny x nz`` vertices spanning the box
``[lo, hi]``; per vertex a raw density and ``3 K`` colour coefficients (SH degree ``d``, ``K = (d+1)^2``,
laid out ``[channel][basis]``). A sample at ``x`` interpolates both trilinearly, then
``sigma = softplus(raw + bias)``, ``alpha = 1 - exp(-sigma step)``, ``rgb = sigmoid(sum_k Y_k(dir) f_k)``.
Samples are ``t_i = t0 + (i + offset) step`` for the part of the ray inside the box (``t0`` at least
``near``); a sample whose grid cell is not occupied is skipped; compositing is front to back and
stops once the transmittance drops below ``t_stop`` (that sample still counts).

Per ray the forward returns the composited colour ``C = sum w_i c_i`` (no background), the
accumulated ``D = sum w_i t_i``, the final transmittance ``T`` and the number of samples that
counted; in training it also stores each counted sample (cell, fractions, shifted raw density,
colour, distance), and the backward turns those into one gradient record per sample (``d raw``,
``d logit[3]``) without a second pass through the grid. With ``T_{i+1} = T_i exp(-s_i dt)``:

    dC/ds_i = dt (T_{i+1} c_i - (C - C_{<=i})),  dD/ds_i = dt (T_{i+1} t_i - (D - D_{<=i})),
    dT/ds_i = -dt T.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from recon.render._cpu_common import OPTS

F0 = np.float32(0.0)
F1 = np.float32(1.0)


@njit(inline="always", **OPTS)
def _softplus(x):
    if x > np.float32(15.0):
        return x
    return np.float32(math.log1p(math.exp(x)))


@njit(inline="always", **OPTS)
def _sigmoid(x):
    return F1 / (F1 + np.float32(math.exp(-x)))


@njit(inline="always", **OPTS)
def _box(o, d, lo, hi):
    """Entry and exit distance of the ray ``o + t d`` through the box (exit < entry: a miss)."""
    t0 = np.float32(-3.0e38)
    t1 = np.float32(3.0e38)
    for a in range(3):
        da = d[a]
        if abs(da) < np.float32(1e-12):
            da = np.float32(1e-12) if da >= 0 else np.float32(-1e-12)
        inv = F1 / da
        ta = (lo[a] - o[a]) * inv
        tb = (hi[a] - o[a]) * inv
        if ta > tb:
            ta, tb = tb, ta
        t0 = max(t0, ta)
        t1 = min(t1, tb)
    return t0, t1


@njit(inline="always", **OPTS)
def _cell(px, py, pz, lo, scale, nx, ny, nz):
    """Cell ``(ix, iy, iz)`` and fractions of the grid-space point ``p`` (clamped into the grid)."""
    gx = min(max((px - lo[0]) * scale[0], F0), np.float32(nx - 1))
    gy = min(max((py - lo[1]) * scale[1], F0), np.float32(ny - 1))
    gz = min(max((pz - lo[2]) * scale[2], F0), np.float32(nz - 1))
    ix = min(int(gx), nx - 2)
    iy = min(int(gy), ny - 2)
    iz = min(int(gz), nz - 2)
    return ix, iy, iz, gx - np.float32(ix), gy - np.float32(iy), gz - np.float32(iz)


@njit(inline="always", **OPTS)
def _locate(o, d, t, lo, scale, nx, ny, nz):
    """Cell ``(ix, iy, iz)`` and fractions of the point ``o + t d`` (clamped into the grid)."""
    return _cell(o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2], lo, scale, nx, ny, nz)


@njit(inline="always", **OPTS)
def _contract(o, d, t, cen, inv_r):
    """The contracted coordinates ``(x, y, z)`` of the point ``o + t d`` and the max-norm ``n`` of its
    normalised position ``u = (p - cen) / r``: ``u`` itself where ``n <= 1``, else ``(2 - 1/n) u / n``
    (the cube ``[-1, 1]^3`` unchanged, all of space beyond it squeezed into ``[-2, 2]^3``)."""
    ux = (o[0] + t * d[0] - cen[0]) * inv_r
    uy = (o[1] + t * d[1] - cen[1]) * inv_r
    uz = (o[2] + t * d[2] - cen[2]) * inv_r
    n = max(abs(ux), max(abs(uy), abs(uz)))
    if n > F1:
        s = (np.float32(2.0) - F1 / n) / n
        ux *= s
        uy *= s
        uz *= s
    return ux, uy, uz, n


@njit(inline="always", **OPTS)
def _contract_start(o, d, near, offset, step, cen, inv_r):
    """First sample distance of a ray through a contracted field: ``near`` plus ``offset`` of the
    spacing there. Spacing at a sample of max-norm ``n``: ``step max(1, n)^2`` (uniform inside the
    cube, uniform in ``1/n`` beyond it, i.e. about uniform in the contracted coordinates)."""
    _, _, _, n = _contract(o, d, near, cen, inv_r)
    m = max(F1, n)
    return near + offset * step * m * m


@njit(inline="always", **OPTS)
def _weights(fx, fy, fz, w):
    """Trilinear weights of the 8 corners, in the order of :func:`_corners`."""
    gx, gy, gz = F1 - fx, F1 - fy, F1 - fz
    w[0] = gx * gy * gz
    w[1] = gx * gy * fz
    w[2] = gx * fy * gz
    w[3] = gx * fy * fz
    w[4] = fx * gy * gz
    w[5] = fx * gy * fz
    w[6] = fx * fy * gz
    w[7] = fx * fy * fz


@njit(inline="always", **OPTS)
def _corners(base, ny, nz, c):
    syz = ny * nz
    c[0] = base
    c[1] = base + 1
    c[2] = base + nz
    c[3] = base + nz + 1
    c[4] = base + syz
    c[5] = base + syz + 1
    c[6] = base + syz + nz
    c[7] = base + syz + nz + 1


@njit(**OPTS)
def march_forward(origins, dirs, offsets, near, lo, hi, scale, res, occ, density, feats, Y,
                  step, bias, t_stop, contract, cen, inv_r, far_n, out_c, out_d, out_t, out_n, store, slot0,
                  st_base, st_frac, st_x, st_rgb, st_t, st_ray, r0, r1):
    """Render rays ``r0..r1``: ``out_c [R, 3]`` colour without background, ``out_d [R]`` the
    accumulated ``sum w t``, ``out_t [R]`` final transmittance, ``out_n [R]`` samples that counted.

    With ``store`` (training), sample ``i`` of ray ``r`` is also written at slot ``slot0[r] + i`` (slots
    from :func:`ray_caps`): its lowest corner ``st_base``, fractions ``st_frac [S, 3]``, shifted raw
    density ``st_x`` (``raw + bias``), colour ``st_rgb [S, 3]``, distance ``st_t`` and ray ``st_ray``, so
    the backward pass (:func:`grad_records`) needs no second pass through the grid.

    With ``contract`` the grid spans contracted space (:func:`_contract`, centre ``cen``, radius
    ``1 / inv_r``): samples start at ``near`` (:func:`_contract_start`), advance by ``step max(1,
    n)^2`` and stop where ``n`` reaches ``far_n``; each still counts as a segment of length ``step``."""
    nx, ny, nz = res[0], res[1], res[2]
    K = Y.shape[1]
    C3 = feats.shape[1]
    f = np.empty(C3, np.float32)
    w = np.empty(8, np.float32)
    cn = np.empty(8, np.int64)
    for r in range(r0, r1):
        o = origins[r]
        d = dirs[r]
        if contract:
            t0, t1 = near[r], np.float32(3.0e38)
            tc = _contract_start(o, d, near[r], offsets[r], step, cen, inv_r)
        else:
            t0, t1 = _box(o, d, lo, hi)
            t0 = max(t0, near[r])
            tc = F0
        T = F1
        c0 = F0
        c1 = F0
        c2 = F0
        dd = F0
        n = 0
        if t1 > t0:
            imax = 1 << 30 if contract else int(math.ceil((t1 - t0) / step - offsets[r])) + 1
            for i in range(imax):
                if contract:
                    t = tc
                    px, py, pz, nn = _contract(o, d, t, cen, inv_r)
                    if nn >= far_n:
                        break
                    mm = max(F1, nn)
                    tc = t + step * mm * mm
                    ix, iy, iz, fx, fy, fz = _cell(px, py, pz, lo, scale, nx, ny, nz)
                else:
                    t = t0 + (np.float32(i) + offsets[r]) * step
                    if t >= t1:
                        break
                    ix, iy, iz, fx, fy, fz = _locate(o, d, t, lo, scale, nx, ny, nz)
                if occ[(ix * (ny - 1) + iy) * (nz - 1) + iz] == 0:
                    continue
                _weights(fx, fy, fz, w)
                _corners((ix * ny + iy) * nz + iz, ny, nz, cn)
                raw = F0
                for j in range(8):
                    raw += w[j] * density[cn[j]]
                sig = _softplus(raw + bias)
                e = np.float32(math.exp(-sig * step))
                wt = T * (F1 - e)
                for q in range(C3):
                    f[q] = F0
                for j in range(8):
                    wj = w[j]
                    row = feats[cn[j]]
                    for q in range(C3):
                        f[q] += wj * row[q]
                lg0 = F0
                lg1 = F0
                lg2 = F0
                for k in range(K):
                    yk = Y[r, k]
                    lg0 += yk * f[k]
                    lg1 += yk * f[K + k]
                    lg2 += yk * f[2 * K + k]
                s0 = _sigmoid(lg0)
                s1 = _sigmoid(lg1)
                s2 = _sigmoid(lg2)
                c0 += wt * s0
                c1 += wt * s1
                c2 += wt * s2
                dd += wt * t
                if store:
                    m = slot0[r] + n
                    st_base[m] = (ix * ny + iy) * nz + iz
                    st_frac[m, 0] = fx
                    st_frac[m, 1] = fy
                    st_frac[m, 2] = fz
                    st_x[m] = raw + bias
                    st_rgb[m, 0] = s0
                    st_rgb[m, 1] = s1
                    st_rgb[m, 2] = s2
                    st_t[m] = t
                    st_ray[m] = r
                T = T * e
                n += 1
                if T < t_stop:
                    break
        out_c[r, 0] = c0
        out_c[r, 1] = c1
        out_c[r, 2] = c2
        out_d[r] = dd
        out_t[r] = T
        out_n[r] = n


@njit(**OPTS)
def ray_caps(origins, dirs, offsets, near, lo, hi, step, contract, cen, inv_r, far_n, caps, r0, r1):
    """``caps[r]``: the number of sample positions of ray ``r`` inside the box (contracted: before
    ``far_n``), an upper bound of the samples :func:`march_forward` counts (it loops over exactly
    these positions)."""
    for r in range(r0, r1):
        o, d = origins[r], dirs[r]
        if contract:
            t = _contract_start(o, d, near[r], offsets[r], step, cen, inv_r)
            k = 0
            while True:
                _, _, _, nn = _contract(o, d, t, cen, inv_r)
                if nn >= far_n:
                    break
                mm = max(F1, nn)
                t = t + step * mm * mm
                k += 1
            caps[r] = k
            continue
        t0, t1 = _box(o, d, lo, hi)
        t0 = max(t0, near[r])
        caps[r] = int(math.ceil((t1 - t0) / step - offsets[r])) + 1 if t1 > t0 else 0


@njit(**OPTS)
def grad_records(counts, slot0, st_x, st_rgb, st_t, step, out_c, out_d, out_t, g_c, g_d, g_t,
                 rec_graw, rec_glogit, r0, r1):
    """Backward of :func:`march_forward` from its stored samples: for sample slot ``m``,
    ``rec_graw[m]`` (d loss / d raw density) and ``rec_glogit [m, 3]`` (d loss / d colour logits).
    Same maths as :func:`march_backward`."""
    for r in range(r0, r1):
        n_r = counts[r]
        if n_r == 0:
            continue
        gc0, gc1, gc2 = g_c[r, 0], g_c[r, 1], g_c[r, 2]
        gd = g_d[r]
        gtT = g_t[r] * out_t[r]
        C0, C1, C2, DD = out_c[r, 0], out_c[r, 1], out_c[r, 2], out_d[r]
        T = F1
        a0 = F0
        a1 = F0
        a2 = F0
        ad = F0
        for m in range(slot0[r], slot0[r] + n_r):
            x = st_x[m]
            sig = _softplus(x)
            e = np.float32(math.exp(-sig * step))
            wt = T * (F1 - e)
            s0, s1, s2, t = st_rgb[m, 0], st_rgb[m, 1], st_rgb[m, 2], st_t[m]
            a0 += wt * s0
            a1 += wt * s1
            a2 += wt * s2
            ad += wt * t
            Tn = T * e
            gs = step * (gc0 * (Tn * s0 - (C0 - a0)) + gc1 * (Tn * s1 - (C1 - a1)) + gc2 * (Tn * s2 - (C2 - a2))
                         + gd * (Tn * t - (DD - ad)) - gtT)
            rec_graw[m] = gs * _sigmoid(x)
            rec_glogit[m, 0] = gc0 * wt * s0 * (F1 - s0)
            rec_glogit[m, 1] = gc1 * wt * s1 * (F1 - s1)
            rec_glogit[m, 2] = gc2 * wt * s2 * (F1 - s2)
            T = Tn


@njit(**OPTS)
def bucket_slots_by_slab(counts, slot0, st_base, syz, slab_w, n_slabs, order, slab_ptr):
    """:func:`bucket_by_slab` over the stored sample slots (ray ``r``'s are ``slot0[r] ..
    slot0[r] + counts[r]``): ``order`` lists slot ids, stable in ray then sample order."""
    R = counts.shape[0]
    cnt = np.zeros(n_slabs + 1, np.int64)
    for r in range(R):
        for m in range(slot0[r], slot0[r] + counts[r]):
            cnt[(st_base[m] // syz) // slab_w + 1] += 1
    for s in range(n_slabs):
        cnt[s + 1] += cnt[s]
    for s in range(n_slabs + 1):
        slab_ptr[s] = cnt[s]
    for r in range(R):
        for m in range(slot0[r], slot0[r] + counts[r]):
            s = (st_base[m] // syz) // slab_w
            order[cnt[s]] = m
            cnt[s] += 1


@njit(**OPTS)
def tv_grad(idx, density, feats, res, lam_d, lam_f, g_density, g_feats, i0, i1):
    """Total variation (Plenoxels): adds ``lam * sum_n (x_v - x_n)`` over the up to 6 grid neighbours
    ``n`` of each voxel ``v = idx[i]`` to its gradients: the exact gradient at ``v`` of
    ``lam / 2 sum_edges (x_i - x_j)^2`` over all grid edges, for density (``lam_d``) and the colour
    coefficients (``lam_f``). Writes only the rows of ``idx`` (race-free across chunks)."""
    nx, ny, nz = res[0], res[1], res[2]
    syz = ny * nz
    C3 = feats.shape[1]
    nb = np.empty(6, np.int64)
    for j in range(i0, i1):
        v = idx[j]
        ix = v // syz
        iy = (v // nz) % ny
        iz = v % nz
        k = 0
        if ix > 0:
            nb[k] = v - syz
            k += 1
        if ix < nx - 1:
            nb[k] = v + syz
            k += 1
        if iy > 0:
            nb[k] = v - nz
            k += 1
        if iy < ny - 1:
            nb[k] = v + nz
            k += 1
        if iz > 0:
            nb[k] = v - 1
            k += 1
        if iz < nz - 1:
            nb[k] = v + 1
            k += 1
        if lam_d != F0:
            dv = density[v]
            acc = F0
            for q in range(k):
                acc += dv - density[nb[q]]
            g_density[v] += lam_d * acc
        if lam_f != F0:
            row = feats[v]
            grow = g_feats[v]
            for c in range(C3):
                fc = row[c]
                acc = F0
                for q in range(k):
                    acc += fc - feats[nb[q], c]
                grow[c] += lam_f * acc


@njit(**OPTS)
def scatter_slabs(order, slab_ptr, rec_base, rec_frac, rec_graw, rec_glogit, rec_ray, Y,
                  ny, nz, g_density, g_feats, touched, s0, s1, parity):
    """Add the records of slabs ``s0..s1`` with ``s % 2 == parity`` into the voxel gradients.

    A record of slab ``s`` writes x-planes of slab ``s`` and the first plane of ``s + 1`` only, so
    slabs of one parity never write the same voxel: the two parity passes are race-free, and each
    voxel receives its records in a fixed order (deterministic)."""
    K = Y.shape[1]
    w = np.empty(8, np.float32)
    cn = np.empty(8, np.int64)
    g = np.empty(3 * K, np.float32)
    for s in range(s0, s1):
        if s % 2 != parity:
            continue
        for j in range(slab_ptr[s], slab_ptr[s + 1]):
            m = order[j]
            _weights(rec_frac[m, 0], rec_frac[m, 1], rec_frac[m, 2], w)
            _corners(rec_base[m], ny, nz, cn)
            r = rec_ray[m]
            for ch in range(3):
                gl = rec_glogit[m, ch]
                for k in range(K):
                    g[ch * K + k] = gl * Y[r, k]
            gr = rec_graw[m]
            for c in range(8):
                v = cn[c]
                wc = w[c]
                g_density[v] += wc * gr
                row = g_feats[v]
                for q in range(3 * K):
                    row[q] += wc * g[q]
                touched[v] = 1


@njit(**OPTS)
def sparse_adam(idx, params_d, params_f, g_d, g_f, m_d, v_d, m_f, v_f, touched,
                lr_d, lr_f, b1, b2, c1, c2, eps, i0, i1):
    """Adam on the voxels ``idx[i0:i1]`` (the ones with gradients this step); zeroes their gradients.
    ``c1, c2``: the bias corrections ``1 - b^t`` of the global step."""
    C3 = params_f.shape[1]
    for j in range(i0, i1):
        v = idx[j]
        g = g_d[v]
        m = b1 * m_d[v] + (F1 - b1) * g
        s = b2 * v_d[v] + (F1 - b2) * g * g
        m_d[v] = m
        v_d[v] = s
        params_d[v] -= lr_d * (m / c1) / (np.float32(math.sqrt(s / c2)) + eps)
        g_d[v] = F0
        for q in range(C3):
            g = g_f[v, q]
            m = b1 * m_f[v, q] + (F1 - b1) * g
            s = b2 * v_f[v, q] + (F1 - b2) * g * g
            m_f[v, q] = m
            v_f[v, q] = s
            params_f[v, q] -= lr_f * (m / c1) / (np.float32(math.sqrt(s / c2)) + eps)
            g_f[v, q] = F0
        touched[v] = 0


@njit(**OPTS)
def update_occupancy(density, res, bias, step, thresh, occ, x0, x1):
    """Cells ``x0..x1`` (x index) are occupied when the largest alpha any point inside them can
    reach (the largest corner raw density: trilinear weights are convex, softplus is monotonic)
    is at least ``thresh``. Returns nothing; writes ``occ``."""
    nx, ny, nz = res[0], res[1], res[2]
    for ix in range(x0, x1):
        for iy in range(ny - 1):
            for iz in range(nz - 1):
                base = (ix * ny + iy) * nz + iz
                mx = density[base]
                mx = max(mx, density[base + 1])
                mx = max(mx, density[base + nz])
                mx = max(mx, density[base + nz + 1])
                b2 = base + ny * nz
                mx = max(mx, density[b2])
                mx = max(mx, density[b2 + 1])
                mx = max(mx, density[b2 + nz])
                mx = max(mx, density[b2 + nz + 1])
                a = F1 - np.float32(math.exp(-_softplus(mx + bias) * step))
                occ[(ix * (ny - 1) + iy) * (nz - 1) + iz] = 1 if a >= thresh else 0
