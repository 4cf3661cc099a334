"""Numba kernels of the CPU rasterizer: EWA projection (forward and backward) and packing.

float32, C-contiguous inputs only (see :mod:`recon.render.cpu`), so each kernel compiles once and
is then loaded from Numba's on-disk cache. Helpers used by a kernel live in the kernel's own module
(Numba's cache only tracks the defining file).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from recon.render._cpu_common import ALPHA_THRESHOLD, F0, F1, F2, F05, FM, OPTS  # noqa: F401

F03 = np.float32(0.3)
EXTEND_MAX = np.float32(3.33)
COMP_EPS = np.float32(1e-6)


@njit(inline="always", fastmath=FM)
def _quat_rot(qw, qx, qy, qz):
    inv = F1 / np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w = qw * inv
    x = qx * inv
    y = qy * inv
    z = qz * inv
    r00 = F1 - F2 * (y * y + z * z)
    r01 = F2 * (x * y - w * z)
    r02 = F2 * (x * z + w * y)
    r10 = F2 * (x * y + w * z)
    r11 = F1 - F2 * (x * x + z * z)
    r12 = F2 * (y * z - w * x)
    r20 = F2 * (x * z - w * y)
    r21 = F2 * (y * z + w * x)
    r22 = F1 - F2 * (x * x + y * y)
    return r00, r01, r02, r10, r11, r12, r20, r21, r22


@njit(**OPTS)
def project_fwd(
    means, quats, scales, opacities, viewmats, Ks, width, height,
    eps2d, near, far, radius_clip, antialiased,
    means2d, conics, depths, opac_out, comps, radii, cam, g_lo, g_hi,
):  # fmt: skip
    """Project Gaussians ``g_lo .. g_hi-1`` into camera ``cam``: outputs are dense ``[C, N, ...]``;
    radii 0 = culled. (Callers split the Gaussians into chunks across threads.)"""
    fw = np.float32(width)
    fh = np.float32(height)
    eps = np.float32(eps2d)
    near32 = np.float32(near)
    far32 = np.float32(far)
    clip32 = np.float32(radius_clip)
    for c in range(cam, cam + 1):
        # per-camera constants, hoisted out of the loop over Gaussians
        w00 = viewmats[c, 0, 0]
        w01 = viewmats[c, 0, 1]
        w02 = viewmats[c, 0, 2]
        w10 = viewmats[c, 1, 0]
        w11 = viewmats[c, 1, 1]
        w12 = viewmats[c, 1, 2]
        w20 = viewmats[c, 2, 0]
        w21 = viewmats[c, 2, 1]
        w22 = viewmats[c, 2, 2]
        t0 = viewmats[c, 0, 3]
        t1 = viewmats[c, 1, 3]
        t2 = viewmats[c, 2, 3]
        fx = Ks[c, 0, 0]
        fy = Ks[c, 1, 1]
        cx = Ks[c, 0, 2]
        cy = Ks[c, 1, 2]
        tan_fovx = F05 * fw / fx
        tan_fovy = F05 * fh / fy
        lim_x_pos = (fw - cx) / fx + F03 * tan_fovx
        lim_x_neg = cx / fx + F03 * tan_fovx
        lim_y_pos = (fh - cy) / fy + F03 * tan_fovy
        lim_y_neg = cy / fy + F03 * tan_fovy
        for g in range(g_lo, g_hi):
            radii[c, g, 0] = 0
            radii[c, g, 1] = 0
            means2d[c, g, 0] = F0
            means2d[c, g, 1] = F0
            conics[c, g, 0] = F0
            conics[c, g, 1] = F0
            conics[c, g, 2] = F0
            opac_out[c, g] = F0
            comps[c, g] = F0
            px = means[g, 0]
            py = means[g, 1]
            pz = means[g, 2]
            x = w00 * px + w01 * py + w02 * pz + t0
            y = w10 * px + w11 * py + w12 * pz + t1
            z = w20 * px + w21 * py + w22 * pz + t2
            depths[c, g] = z
            if z < near32 or z > far32:
                continue
            r00, r01, r02, r10, r11, r12, r20, r21, r22 = _quat_rot(quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3])
            sx = scales[g, 0]
            sy = scales[g, 1]
            sz = scales[g, 2]
            # M = R diag(s); Sigma = M M^T
            m00 = r00 * sx
            m01 = r01 * sy
            m02 = r02 * sz
            m10 = r10 * sx
            m11 = r11 * sy
            m12 = r12 * sz
            m20 = r20 * sx
            m21 = r21 * sy
            m22 = r22 * sz
            # B = W M (camera-frame square root of the covariance)
            b00 = w00 * m00 + w01 * m10 + w02 * m20
            b01 = w00 * m01 + w01 * m11 + w02 * m21
            b02 = w00 * m02 + w01 * m12 + w02 * m22
            b10 = w10 * m00 + w11 * m10 + w12 * m20
            b11 = w10 * m01 + w11 * m11 + w12 * m21
            b12 = w10 * m02 + w11 * m12 + w12 * m22
            b20 = w20 * m00 + w21 * m10 + w22 * m20
            b21 = w20 * m01 + w21 * m11 + w22 * m21
            b22 = w20 * m02 + w21 * m12 + w22 * m22
            rz = F1 / z
            rz2 = rz * rz
            tx = z * min(lim_x_pos, max(-lim_x_neg, x * rz))
            ty = z * min(lim_y_pos, max(-lim_y_neg, y * rz))
            j00 = fx * rz
            j02 = -fx * tx * rz2
            j11 = fy * rz
            j12 = -fy * ty * rz2
            # A = J B (2x3); cov2d = J W Sigma W^T J^T = A A^T (symmetric by construction)
            e00 = j00 * b00 + j02 * b20
            e01 = j00 * b01 + j02 * b21
            e02 = j00 * b02 + j02 * b22
            e10 = j11 * b10 + j12 * b20
            e11 = j11 * b11 + j12 * b21
            e12 = j11 * b12 + j12 * b22
            v00 = e00 * e00 + e01 * e01 + e02 * e02
            v01 = e00 * e10 + e01 * e11 + e02 * e12
            v11 = e10 * e10 + e11 * e11 + e12 * e12
            mx = fx * x * rz + cx
            my = fy * y * rz + cy
            # det(A A^T) by Cauchy-Binet: a sum of squares, accurate even for needle-thin Gaussians
            # (v00 * v11 - v01^2 cancels catastrophically in float32 there)
            q0 = e00 * e11 - e01 * e10
            q1 = e00 * e12 - e02 * e10
            q2 = e01 * e12 - e02 * e11
            det_orig = q0 * q0 + q1 * q1 + q2 * q2
            v00 += eps
            v11 += eps
            det = v00 * v11 - v01 * v01
            if not det > F0:
                continue
            comp = np.sqrt(max(F0, det_orig / det))
            op = opacities[g]
            if antialiased:
                op = op * comp
            if op < ALPHA_THRESHOLD:
                continue
            extend = min(EXTEND_MAX, np.sqrt(F2 * np.log(op / ALPHA_THRESHOLD)))
            rx = math.ceil(extend * np.sqrt(v00))
            ry = math.ceil(extend * np.sqrt(v11))
            if rx <= clip32 and ry <= clip32:
                continue
            if mx + rx <= F0 or mx - rx >= fw or my + ry <= F0 or my - ry >= fh:
                continue
            inv_det = F1 / det
            radii[c, g, 0] = np.int32(rx)
            radii[c, g, 1] = np.int32(ry)
            means2d[c, g, 0] = mx
            means2d[c, g, 1] = my
            conics[c, g, 0] = v11 * inv_det
            conics[c, g, 1] = -v01 * inv_det
            conics[c, g, 2] = v00 * inv_det
            opac_out[c, g] = op
            comps[c, g] = comp


@njit(**OPTS)
def compact_visible(radii, cam_start, gids):
    """Visible (camera, Gaussian) pairs, camera-major then Gaussian id: fills ``gids`` and
    ``cam_start [C+1]``; returns nnz. ``gids`` must hold C*N entries."""
    C = radii.shape[0]
    N = radii.shape[1]
    k = 0
    for c in range(C):
        cam_start[c] = k
        for g in range(N):
            if radii[c, g, 0] > 0 and radii[c, g, 1] > 0:
                gids[k] = g
                k += 1
    cam_start[C] = k
    return k


@njit(**OPTS)
def gather_packed(
    gids, means2d, conics, depths, opac, comps, radii, o_m2d, o_con, o_dep, o_op, o_comp, o_rad, cam, k_lo, k_hi
):
    """Copy dense ``[C, N, ...]`` projection outputs of visible pairs ``k_lo .. k_hi-1`` (all of
    camera ``cam``) into packed ``[nnz, ...]`` rows."""
    for c in range(cam, cam + 1):
        for k in range(k_lo, k_hi):
            g = gids[k]
            o_m2d[k, 0] = means2d[c, g, 0]
            o_m2d[k, 1] = means2d[c, g, 1]
            o_con[k, 0] = conics[c, g, 0]
            o_con[k, 1] = conics[c, g, 1]
            o_con[k, 2] = conics[c, g, 2]
            o_dep[k] = depths[c, g]
            o_op[k] = opac[c, g]
            o_comp[k] = comps[c, g]
            o_rad[k, 0] = radii[c, g, 0]
            o_rad[k, 1] = radii[c, g, 1]


@njit(**OPTS)
def project_bwd(
    means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, antialiased,
    gids, row_stride_c, conics, comps,
    v_means2d, v_conics, v_depths, v_opac,
    v_means, v_quats, v_scales, v_opacities, want_viewmat, v_vm_rows, cam, k_lo, k_hi,
):  # fmt: skip
    """Backward of :func:`project_fwd` over the visible pairs, mirroring gsplat's maths.

    Handles visible pairs ``k_lo .. k_hi-1``, all of camera ``cam``. Per-pair inputs/gradients are
    addressed by row ``r = c * row_stride_c + g`` (dense layout, row_stride_c = N) or ``r = k``
    (packed layout, row_stride_c = -1). Gradients w.r.t. the Gaussians are accumulated into
    ``v_means/v_quats/v_scales/v_opacities``; callers run cameras one after another and split a
    camera's pairs (each Gaussian at most once per camera) across threads, so there are no races.
    When ``want_viewmat``, per-pair viewmat gradients (9 for R, 3 for t) go to ``v_vm_rows [nnz, 12]``.
    """
    fw = np.float32(width)
    fh = np.float32(height)
    eps = np.float32(eps2d)
    for c in range(cam, cam + 1):
        V = viewmats[c]
        w00 = V[0, 0]
        w01 = V[0, 1]
        w02 = V[0, 2]
        w10 = V[1, 0]
        w11 = V[1, 1]
        w12 = V[1, 2]
        w20 = V[2, 0]
        w21 = V[2, 1]
        w22 = V[2, 2]
        fx = Ks[c, 0, 0]
        fy = Ks[c, 1, 1]
        cx = Ks[c, 0, 2]
        cy = Ks[c, 1, 2]
        tan_fovx = F05 * fw / fx
        tan_fovy = F05 * fh / fy
        lim_x_pos = (fw - cx) / fx + F03 * tan_fovx
        lim_x_neg = cx / fx + F03 * tan_fovx
        lim_y_pos = (fh - cy) / fy + F03 * tan_fovy
        lim_y_neg = cy / fy + F03 * tan_fovy
        for k in range(k_lo, k_hi):
            g = gids[k]
            if row_stride_c >= 0:
                r = c * row_stride_c + g
            else:
                r = k
            # ---- conic -> cov2d (blurred) ----
            ia = conics[r, 0]
            ib = conics[r, 1]
            ic = conics[r, 2]
            ga = v_conics[r, 0]
            gb = v_conics[r, 1] * F05
            gc = v_conics[r, 2]
            # v_cov = -Inv G Inv  (all symmetric)
            t00 = ia * ga + ib * gb
            t01 = ia * gb + ib * gc
            t10 = ib * ga + ic * gb
            t11 = ib * gb + ic * gc
            vc00 = -(t00 * ia + t01 * ib)
            vc01 = -(t00 * ib + t01 * ic)
            vc10 = -(t10 * ia + t11 * ib)
            vc11 = -(t10 * ib + t11 * ic)
            vop = v_opac[r]
            op0 = opacities[g]
            if antialiased:
                comp = comps[r]
                v_comp = vop * op0
                vop = vop * comp
                det_inv = ia * ic - ib * ib
                v_sqr = v_comp * F05 / (comp + COMP_EPS)
                om = F1 - comp * comp
                vc00 += v_sqr * (om * ia - eps * det_inv)
                vc01 += v_sqr * (om * ib)
                vc10 += v_sqr * (om * ib)
                vc11 += v_sqr * (om * ic - eps * det_inv)
            v_opacities[g] += vop
            # ---- recompute forward quantities ----
            px = means[g, 0]
            py = means[g, 1]
            pz = means[g, 2]
            x = w00 * px + w01 * py + w02 * pz + V[0, 3]
            y = w10 * px + w11 * py + w12 * pz + V[1, 3]
            z = w20 * px + w21 * py + w22 * pz + V[2, 3]
            qw = quats[g, 0]
            qx = quats[g, 1]
            qy = quats[g, 2]
            qz = quats[g, 3]
            r00, r01, r02, r10, r11, r12, r20, r21, r22 = _quat_rot(qw, qx, qy, qz)
            sx = scales[g, 0]
            sy = scales[g, 1]
            sz = scales[g, 2]
            m00 = r00 * sx
            m01 = r01 * sy
            m02 = r02 * sz
            m10 = r10 * sx
            m11 = r11 * sy
            m12 = r12 * sz
            m20 = r20 * sx
            m21 = r21 * sy
            m22 = r22 * sz
            s00 = m00 * m00 + m01 * m01 + m02 * m02
            s01 = m00 * m10 + m01 * m11 + m02 * m12
            s02 = m00 * m20 + m01 * m21 + m02 * m22
            s11 = m10 * m10 + m11 * m11 + m12 * m12
            s12 = m10 * m20 + m11 * m21 + m12 * m22
            s22 = m20 * m20 + m21 * m21 + m22 * m22
            a00 = w00 * s00 + w01 * s01 + w02 * s02
            a01 = w00 * s01 + w01 * s11 + w02 * s12
            a02 = w00 * s02 + w01 * s12 + w02 * s22
            a10 = w10 * s00 + w11 * s01 + w12 * s02
            a11 = w10 * s01 + w11 * s11 + w12 * s12
            a12 = w10 * s02 + w11 * s12 + w12 * s22
            a20 = w20 * s00 + w21 * s01 + w22 * s02
            a21 = w20 * s01 + w21 * s11 + w22 * s12
            a22 = w20 * s02 + w21 * s12 + w22 * s22
            c00 = a00 * w00 + a01 * w01 + a02 * w02
            c01 = a00 * w10 + a01 * w11 + a02 * w12
            c02 = a00 * w20 + a01 * w21 + a02 * w22
            c11 = a10 * w10 + a11 * w11 + a12 * w12
            c12 = a10 * w20 + a11 * w21 + a12 * w22
            c22 = a20 * w20 + a21 * w21 + a22 * w22
            rz = F1 / z
            rz2 = rz * rz
            rz3 = rz2 * rz
            ux = x * rz
            uy = y * rz
            tx = z * min(lim_x_pos, max(-lim_x_neg, ux))
            ty = z * min(lim_y_pos, max(-lim_y_neg, uy))
            j00 = fx * rz
            j02 = -fx * tx * rz2
            j11 = fy * rz
            j12 = -fy * ty * rz2
            # ---- persp_proj_vjp ----
            # v_Sigma_c = J^T vC J, J = [[j00, 0, j02], [0, j11, j12]]
            # (use the symmetrised v_cov2d; Sigma_c symmetric)
            vs01 = F05 * (vc01 + vc10)
            e00 = j00 * j00 * vc00
            e01 = j00 * j11 * vs01
            e02 = j00 * (j02 * vc00 + j12 * vs01)
            e11 = j11 * j11 * vc11
            e12 = j11 * (j02 * vs01 + j12 * vc11)
            e22 = j02 * j02 * vc00 + F2 * j02 * j12 * vs01 + j12 * j12 * vc11
            gmx = v_means2d[r, 0]
            gmy = v_means2d[r, 1]
            vmx = fx * rz * gmx
            vmy = fy * rz * gmy
            vmz = -(fx * x * gmx + fy * y * gmy) * rz2
            # v_J = (vC + vC^T) J Sigma_c  -> rows 0,1 ; cols 0..2
            # P = J Sigma_c (2x3)
            p00 = j00 * c00 + j02 * c02
            p01 = j00 * c01 + j02 * c12
            p02 = j00 * c02 + j02 * c22
            p10 = j11 * c01 + j12 * c02
            p11 = j11 * c11 + j12 * c12
            p12 = j11 * c12 + j12 * c22
            q00 = vc00 + vc00
            q01 = vc01 + vc10
            q11 = vc11 + vc11
            vj00 = q00 * p00 + q01 * p10
            vj02 = q00 * p02 + q01 * p12
            vj11 = q01 * p01 + q11 * p11
            vj12 = q01 * p02 + q11 * p12
            if ux <= lim_x_pos and ux >= -lim_x_neg:
                vmx += -fx * rz2 * vj02
            else:
                vmz += -fx * rz3 * vj02 * tx
            if uy <= lim_y_pos and uy >= -lim_y_neg:
                vmy += -fy * rz2 * vj12
            else:
                vmz += -fy * rz3 * vj12 * ty
            vmz += -fx * rz2 * vj00 - fy * rz2 * vj11 + F2 * fx * tx * rz3 * vj02 + F2 * fy * ty * rz3 * vj12
            vmz += v_depths[r]
            # ---- world -> camera ----
            v_means[g, 0] += w00 * vmx + w10 * vmy + w20 * vmz
            v_means[g, 1] += w01 * vmx + w11 * vmy + w21 * vmz
            v_means[g, 2] += w02 * vmx + w12 * vmy + w22 * vmz
            # v_Sigma = W^T E W  (E symmetric)
            b00 = e00 * w00 + e01 * w10 + e02 * w20
            b01 = e00 * w01 + e01 * w11 + e02 * w21
            b02 = e00 * w02 + e01 * w12 + e02 * w22
            b10 = e01 * w00 + e11 * w10 + e12 * w20
            b11 = e01 * w01 + e11 * w11 + e12 * w21
            b12 = e01 * w02 + e11 * w12 + e12 * w22
            b20 = e02 * w00 + e12 * w10 + e22 * w20
            b21 = e02 * w01 + e12 * w11 + e22 * w21
            b22 = e02 * w02 + e12 * w12 + e22 * w22
            # vS = W^T B
            vS00 = w00 * b00 + w10 * b10 + w20 * b20
            vS01 = w00 * b01 + w10 * b11 + w20 * b21
            vS02 = w00 * b02 + w10 * b12 + w20 * b22
            vS11 = w01 * b01 + w11 * b11 + w21 * b21
            vS12 = w01 * b02 + w11 * b12 + w21 * b22
            vS22 = w02 * b02 + w12 * b12 + w22 * b22
            if want_viewmat:
                # v_W += vmc (x) p + E W Sigma + E^T W Sigma = vmc p^T + 2 E A   (A = W Sigma)
                v_vm_rows[k, 0] = vmx * px + F2 * (e00 * a00 + e01 * a10 + e02 * a20)
                v_vm_rows[k, 1] = vmx * py + F2 * (e00 * a01 + e01 * a11 + e02 * a21)
                v_vm_rows[k, 2] = vmx * pz + F2 * (e00 * a02 + e01 * a12 + e02 * a22)
                v_vm_rows[k, 3] = vmy * px + F2 * (e01 * a00 + e11 * a10 + e12 * a20)
                v_vm_rows[k, 4] = vmy * py + F2 * (e01 * a01 + e11 * a11 + e12 * a21)
                v_vm_rows[k, 5] = vmy * pz + F2 * (e01 * a02 + e11 * a12 + e12 * a22)
                v_vm_rows[k, 6] = vmz * px + F2 * (e02 * a00 + e12 * a10 + e22 * a20)
                v_vm_rows[k, 7] = vmz * py + F2 * (e02 * a01 + e12 * a11 + e22 * a21)
                v_vm_rows[k, 8] = vmz * pz + F2 * (e02 * a02 + e12 * a12 + e22 * a22)
                v_vm_rows[k, 9] = vmx
                v_vm_rows[k, 10] = vmy
                v_vm_rows[k, 11] = vmz
            # ---- quat / scale ----
            # v_M = (vS + vS^T) M = 2 vS M
            n00 = F2 * (vS00 * m00 + vS01 * m10 + vS02 * m20)
            n01 = F2 * (vS00 * m01 + vS01 * m11 + vS02 * m21)
            n02 = F2 * (vS00 * m02 + vS01 * m12 + vS02 * m22)
            n10 = F2 * (vS01 * m00 + vS11 * m10 + vS12 * m20)
            n11 = F2 * (vS01 * m01 + vS11 * m11 + vS12 * m21)
            n12 = F2 * (vS01 * m02 + vS11 * m12 + vS12 * m22)
            n20 = F2 * (vS02 * m00 + vS12 * m10 + vS22 * m20)
            n21 = F2 * (vS02 * m01 + vS12 * m11 + vS22 * m21)
            n22 = F2 * (vS02 * m02 + vS12 * m12 + vS22 * m22)
            v_scales[g, 0] += r00 * n00 + r10 * n10 + r20 * n20
            v_scales[g, 1] += r01 * n01 + r11 * n11 + r21 * n21
            v_scales[g, 2] += r02 * n02 + r12 * n12 + r22 * n22
            # v_R = v_M diag(s)
            g00 = n00 * sx
            g01 = n01 * sy
            g02 = n02 * sz
            g10 = n10 * sx
            g11 = n11 * sy
            g12 = n12 * sz
            g20 = n20 * sx
            g21 = n21 * sy
            g22 = n22 * sz
            inv = F1 / np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
            w = qw * inv
            xq = qx * inv
            yq = qy * inv
            zq = qz * inv
            dw = F2 * (xq * (g21 - g12) + yq * (g02 - g20) + zq * (g10 - g01))
            dx = F2 * (-F2 * xq * (g11 + g22) + yq * (g10 + g01) + zq * (g20 + g02) + w * (g21 - g12))
            dy = F2 * (xq * (g10 + g01) - F2 * yq * (g00 + g22) + zq * (g21 + g12) + w * (g02 - g20))
            dz = F2 * (xq * (g20 + g02) + yq * (g21 + g12) - F2 * zq * (g00 + g11) + w * (g10 - g01))
            dot = dw * w + dx * xq + dy * yq + dz * zq
            v_quats[g, 0] += (dw - dot * w) * inv
            v_quats[g, 1] += (dx - dot * xq) * inv
            v_quats[g, 2] += (dy - dot * yq) * inv
            v_quats[g, 3] += (dz - dot * zq) * inv
