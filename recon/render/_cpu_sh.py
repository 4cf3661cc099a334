"""Numba kernels of the CPU rasterizer: SH colours of the visible (camera, Gaussian) pairs.

Colours follow gsplat exactly: ``dir = mean - camera_centre`` normalised, SH bases of degree 0..3
(Sloan's constants and ordering, as gsplat's ``spherical_harmonics``), then
``clamp_min(value + 0.5, 0)``. The backward gives the SH-coefficient, mean (through the direction)
and camera-centre gradients; callers run cameras one after another and split one camera's pairs
across threads, so each Gaussian is written by one thread only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from recon.models.splats import SH_C0
from recon.render._cpu_common import F0, F1, F2, F05, FM, OPTS  # noqa: F401

F3 = np.float32(3.0)
F6 = np.float32(6.0)

C0 = np.float32(SH_C0)  # a module constant Numba can fold
C1 = np.float32(0.48860251190292)
C4 = np.float32(0.5462742152960395)
CB = np.float32(-1.092548430592079)
C6A = np.float32(0.9461746957575601)
C6B = np.float32(-0.3153915652525201)
CA3 = np.float32(-0.5900435899266435)
CB3 = np.float32(1.445305721320277)
CC = np.float32(-2.285228997322329)
CC0 = np.float32(0.4570457994644658)
CD = np.float32(1.865881662950577)
CD0 = np.float32(-1.119528997770346)


@njit(inline="always", fastmath=FM)
def _bases(x, y, z, nb):
    """SH bases (16-tuple, zero past ``nb``) at unit direction (x, y, z); nb in 1, 4, 9, 16."""
    b1 = b2 = b3 = b4 = b5 = b6 = b7 = b8 = F0
    b9 = b10 = b11 = b12 = b13 = b14 = b15 = F0
    if nb > 1:
        b1 = -C1 * y
        b2 = C1 * z
        b3 = -C1 * x
    if nb > 4:
        z2 = z * z
        fc1 = x * x - y * y
        fs1 = F2 * x * y
        b4 = C4 * fs1
        b5 = CB * z * y
        b6 = C6A * z2 + C6B
        b7 = CB * z * x
        b8 = C4 * fc1
        if nb > 9:
            tc = CC * z2 + CC0
            tb = CB3 * z
            b9 = CA3 * (x * fs1 + y * fc1)
            b10 = tb * fs1
            b11 = tc * y
            b12 = z * (CD * z2 + CD0)
            b13 = tc * x
            b14 = tb * fc1
            b15 = CA3 * (x * fc1 - y * fs1)
    return (C0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15)


@njit(inline="always", fastmath=FM)
def _wdot(coeffs, cc, g, j, vr, vg, vb):
    return coeffs[cc, g, j, 0] * vr + coeffs[cc, g, j, 1] * vg + coeffs[cc, g, j, 2] * vb


@njit(inline="always", fastmath=FM)
def _dot_bases(b, coeffs, cc, g, ch, nb):
    """sum_j b[j] * coeffs[cc, g, j, ch] over the first nb bases (unrolled; no dynamic tuple index)."""
    s = b[0] * coeffs[cc, g, 0, ch]
    if nb > 1:
        s += b[1] * coeffs[cc, g, 1, ch] + b[2] * coeffs[cc, g, 2, ch] + b[3] * coeffs[cc, g, 3, ch]
    if nb > 4:
        s += (
            b[4] * coeffs[cc, g, 4, ch]
            + b[5] * coeffs[cc, g, 5, ch]
            + b[6] * coeffs[cc, g, 6, ch]
            + b[7] * coeffs[cc, g, 7, ch]
            + b[8] * coeffs[cc, g, 8, ch]
        )
    if nb > 9:
        s += (
            b[9] * coeffs[cc, g, 9, ch]
            + b[10] * coeffs[cc, g, 10, ch]
            + b[11] * coeffs[cc, g, 11, ch]
            + b[12] * coeffs[cc, g, 12, ch]
            + b[13] * coeffs[cc, g, 13, ch]
            + b[14] * coeffs[cc, g, 14, ch]
            + b[15] * coeffs[cc, g, 15, ch]
        )
    return s


@njit(inline="always", fastmath=FM)
def _outer_bases(b, vr, vg, vb, v_coeffs, cc, g, nb):
    """v_coeffs[cc, g, j, :] += b[j] * (vr, vg, vb) for the first nb bases (unrolled)."""
    v_coeffs[cc, g, 0, 0] += b[0] * vr
    v_coeffs[cc, g, 0, 1] += b[0] * vg
    v_coeffs[cc, g, 0, 2] += b[0] * vb
    if nb > 1:
        v_coeffs[cc, g, 1, 0] += b[1] * vr
        v_coeffs[cc, g, 1, 1] += b[1] * vg
        v_coeffs[cc, g, 1, 2] += b[1] * vb
        v_coeffs[cc, g, 2, 0] += b[2] * vr
        v_coeffs[cc, g, 2, 1] += b[2] * vg
        v_coeffs[cc, g, 2, 2] += b[2] * vb
        v_coeffs[cc, g, 3, 0] += b[3] * vr
        v_coeffs[cc, g, 3, 1] += b[3] * vg
        v_coeffs[cc, g, 3, 2] += b[3] * vb
    if nb > 4:
        v_coeffs[cc, g, 4, 0] += b[4] * vr
        v_coeffs[cc, g, 4, 1] += b[4] * vg
        v_coeffs[cc, g, 4, 2] += b[4] * vb
        v_coeffs[cc, g, 5, 0] += b[5] * vr
        v_coeffs[cc, g, 5, 1] += b[5] * vg
        v_coeffs[cc, g, 5, 2] += b[5] * vb
        v_coeffs[cc, g, 6, 0] += b[6] * vr
        v_coeffs[cc, g, 6, 1] += b[6] * vg
        v_coeffs[cc, g, 6, 2] += b[6] * vb
        v_coeffs[cc, g, 7, 0] += b[7] * vr
        v_coeffs[cc, g, 7, 1] += b[7] * vg
        v_coeffs[cc, g, 7, 2] += b[7] * vb
        v_coeffs[cc, g, 8, 0] += b[8] * vr
        v_coeffs[cc, g, 8, 1] += b[8] * vg
        v_coeffs[cc, g, 8, 2] += b[8] * vb
    if nb > 9:
        v_coeffs[cc, g, 9, 0] += b[9] * vr
        v_coeffs[cc, g, 9, 1] += b[9] * vg
        v_coeffs[cc, g, 9, 2] += b[9] * vb
        v_coeffs[cc, g, 10, 0] += b[10] * vr
        v_coeffs[cc, g, 10, 1] += b[10] * vg
        v_coeffs[cc, g, 10, 2] += b[10] * vb
        v_coeffs[cc, g, 11, 0] += b[11] * vr
        v_coeffs[cc, g, 11, 1] += b[11] * vg
        v_coeffs[cc, g, 11, 2] += b[11] * vb
        v_coeffs[cc, g, 12, 0] += b[12] * vr
        v_coeffs[cc, g, 12, 1] += b[12] * vg
        v_coeffs[cc, g, 12, 2] += b[12] * vb
        v_coeffs[cc, g, 13, 0] += b[13] * vr
        v_coeffs[cc, g, 13, 1] += b[13] * vg
        v_coeffs[cc, g, 13, 2] += b[13] * vb
        v_coeffs[cc, g, 14, 0] += b[14] * vr
        v_coeffs[cc, g, 14, 1] += b[14] * vg
        v_coeffs[cc, g, 14, 2] += b[14] * vb
        v_coeffs[cc, g, 15, 0] += b[15] * vr
        v_coeffs[cc, g, 15, 1] += b[15] * vg
        v_coeffs[cc, g, 15, 2] += b[15] * vb


@njit(**OPTS)
def sh_fwd(degree, means, coeffs, per_camera, campos, gids, row_stride_c, colors, cam, k_lo, k_hi):
    """``colors[r] = clamp_min(SH(dir) + 0.5, 0)`` for visible pairs ``k_lo .. k_hi-1`` of camera
    ``cam`` (row r as in project_bwd). ``coeffs`` is ``[Cc, N, K, 3]`` with Cc = C when
    ``per_camera`` else 1.
    """
    nb = (degree + 1) * (degree + 1)
    for c in range(cam, cam + 1):
        cc = c if per_camera else 0
        ox = campos[c, 0]
        oy = campos[c, 1]
        oz = campos[c, 2]
        for k in range(k_lo, k_hi):
            g = gids[k]
            r = c * row_stride_c + g if row_stride_c >= 0 else k
            dx = means[g, 0] - ox
            dy = means[g, 1] - oy
            dz = means[g, 2] - oz
            inv = F1 / np.sqrt(dx * dx + dy * dy + dz * dz)
            b = _bases(dx * inv, dy * inv, dz * inv, nb)
            for ch in range(3):
                colors[r, ch] = max(_dot_bases(b, coeffs, cc, g, ch, nb) + F05, F0)


@njit(**OPTS)
def sh_bwd(
    degree, means, coeffs, per_camera, campos, gids, row_stride_c, colors, v_colors,
    v_coeffs, v_means, want_campos, v_campos_rows, cam, k_lo, k_hi,
):  # fmt: skip
    """Backward of :func:`sh_fwd` for pairs ``k_lo .. k_hi-1`` of camera ``cam``: accumulates into
    ``v_coeffs [Cc, N, K, 3]`` and ``v_means``; per-pair camera-centre gradients go to
    ``v_campos_rows [nnz, 3]`` when ``want_campos``."""
    nb = (degree + 1) * (degree + 1)
    for c in range(cam, cam + 1):
        cc = c if per_camera else 0
        ox = campos[c, 0]
        oy = campos[c, 1]
        oz = campos[c, 2]
        for k in range(k_lo, k_hi):
            g = gids[k]
            r = c * row_stride_c + g if row_stride_c >= 0 else k
            # clamp_min(v + 0.5, 0): the gradient passes where the output is > 0
            vr = v_colors[r, 0] if colors[r, 0] > F0 else F0
            vg = v_colors[r, 1] if colors[r, 1] > F0 else F0
            vb = v_colors[r, 2] if colors[r, 2] > F0 else F0
            dx = means[g, 0] - ox
            dy = means[g, 1] - oy
            dz = means[g, 2] - oz
            inv = F1 / np.sqrt(dx * dx + dy * dy + dz * dz)
            x = dx * inv
            y = dy * inv
            z = dz * inv
            b = _bases(x, y, z, nb)
            _outer_bases(b, vr, vg, vb, v_coeffs, cc, g, nb)
            vx = F0
            vy = F0
            vz = F0
            if degree > 0:
                # d colour / d basis_j = sum_ch coeff[j, ch] * v_ch
                w1 = _wdot(coeffs, cc, g, 1, vr, vg, vb)
                w2 = _wdot(coeffs, cc, g, 2, vr, vg, vb)
                w3 = _wdot(coeffs, cc, g, 3, vr, vg, vb)
                gx = -C1 * w3
                gy = -C1 * w1
                gz = C1 * w2
                if degree > 1:
                    w4 = _wdot(coeffs, cc, g, 4, vr, vg, vb)
                    w5 = _wdot(coeffs, cc, g, 5, vr, vg, vb)
                    w6 = _wdot(coeffs, cc, g, 6, vr, vg, vb)
                    w7 = _wdot(coeffs, cc, g, 7, vr, vg, vb)
                    w8 = _wdot(coeffs, cc, g, 8, vr, vg, vb)
                    gx += F2 * C4 * y * w4 + CB * z * w7 + F2 * C4 * x * w8
                    gy += F2 * C4 * x * w4 + CB * z * w5 - F2 * C4 * y * w8
                    gz += CB * y * w5 + F2 * C6A * z * w6 + CB * x * w7
                    if degree > 2:
                        w9 = _wdot(coeffs, cc, g, 9, vr, vg, vb)
                        w10 = _wdot(coeffs, cc, g, 10, vr, vg, vb)
                        w11 = _wdot(coeffs, cc, g, 11, vr, vg, vb)
                        w12 = _wdot(coeffs, cc, g, 12, vr, vg, vb)
                        w13 = _wdot(coeffs, cc, g, 13, vr, vg, vb)
                        w14 = _wdot(coeffs, cc, g, 14, vr, vg, vb)
                        w15 = _wdot(coeffs, cc, g, 15, vr, vg, vb)
                        tc = CC * z * z + CC0
                        x2my2 = x * x - y * y
                        gx += (
                            CA3 * F6 * x * y * w9
                            + F2 * CB3 * z * y * w10
                            + tc * w13
                            + F2 * CB3 * z * x * w14
                            + CA3 * F3 * x2my2 * w15
                        )
                        gy += (
                            CA3 * F3 * x2my2 * w9
                            + F2 * CB3 * z * x * w10
                            + tc * w11
                            - F2 * CB3 * z * y * w14
                            - CA3 * F6 * x * y * w15
                        )
                        gz += (
                            F2 * CB3 * x * y * w10
                            + F2 * CC * z * y * w11
                            + (F3 * CD * z * z + CD0) * w12
                            + F2 * CC * z * x * w13
                            + CB3 * x2my2 * w14
                        )
                # through the normalisation: v_d = (v_n - (v_n . n) n) / |d|
                dot = gx * x + gy * y + gz * z
                vx = (gx - dot * x) * inv
                vy = (gy - dot * y) * inv
                vz = (gz - dot * z) * inv
                v_means[g, 0] += vx
                v_means[g, 1] += vy
                v_means[g, 2] += vz
            if want_campos:
                v_campos_rows[k, 0] = -vx
                v_campos_rows[k, 1] = -vy
                v_campos_rows[k, 2] = -vz
