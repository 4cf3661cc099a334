"""Gaussian splats as numpy arrays: validation, SH helpers, filtering and rigid/axis transforms.

Exporters take recon's Gaussians (a dict of torch tensors or numpy arrays with gsplat's names and
parameterisation) and work on float32 numpy copies:

* ``means [N, 3]``: centres in world units.
* ``quats [N, 4]``: rotations, ``(w, x, y, z)``, not necessarily unit length.
* ``scales [N, 3]``: log of the per-axis standard deviations.
* ``opacities [N]``: logit of the opacity.
* ``sh0 [N, 1, 3]``: degree-0 SH coefficient per RGB channel (colour = 0.5 + SH_C0 * sh0).
* ``shN [N, K, 3]``: higher SH coefficients, ``K = (degree + 1)^2 - 1``, ordered by degree then by
  order m = -l..l, the basis of 3DGS/gsplat (real SH with the Condon-Shortley phase, as the glTF
  ``KHR_gaussian_splatting`` appendix lists).

Every function here is pure: it returns new arrays and never modifies its input.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from recon.errors import ReconError

from recon.models.quaternions import quat_mul_np, rotmat_to_quat_np
from recon.models.splats import (  # noqa: F401  (the numpy helpers live with the model)
    KEYS,
    SH_C0,
    as_numpy,
    count,
    logit,
    num_sh_rest,
    sh_degree,
    sh_degree_from_rest,
    sigmoid,
    subset,
)


def cap_sh_degree(splats: Mapping[str, np.ndarray], degree: int) -> dict[str, np.ndarray]:
    """Keep SH up to ``degree`` (truncating higher bands is the least-squares lower-degree fit)."""
    if degree < 0:
        raise ReconError(f"SH degree cap must be >= 0, got {degree}")
    out = dict(splats)
    k = num_sh_rest(degree)
    if splats["shN"].shape[1] > k:
        out["shN"] = np.ascontiguousarray(splats["shN"][:, :k])
    return out


def normalized_quats(quats: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[N, 4]`` (wxyz); a zero quaternion becomes the identity."""
    q = np.asarray(quats, dtype=np.float32)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(n > 0, q / np.where(n > 0, n, 1), np.array([1, 0, 0, 0], np.float32))
    return out.astype(np.float32)


def dc_to_rgb(sh0: np.ndarray) -> np.ndarray:
    """Diffuse colour ``[N, 3]`` (display sRGB, unclamped) from ``sh0 [N, 1, 3]`` or ``[N, 3]``."""
    return (0.5 + SH_C0 * np.asarray(sh0, np.float32).reshape(-1, 3)).astype(np.float32)


def rgb_to_dc(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dc_to_rgb`: ``sh0 [N, 1, 3]`` from colours ``[N, 3]``."""
    return ((np.asarray(rgb, np.float32) - 0.5) / SH_C0).reshape(-1, 1, 3).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# filtering
# ---------------------------------------------------------------------------------------------


def filter_mask(
    splats: Mapping[str, np.ndarray],
    min_opacity: float = 0.0,
    max_scale: float | None = None,
    crop_min: tuple[float, float, float] | None = None,
    crop_max: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Boolean ``[N]``: Gaussians that pass every test.

    Args:
        min_opacity: drop Gaussians whose opacity (after the sigmoid) is below this.
        max_scale: drop Gaussians whose largest standard deviation (world units) exceeds this.
        crop_min, crop_max: keep only centres inside this axis-aligned box (world units); either
            bound may be given alone.
    Non-finite Gaussians (NaN/inf in any attribute) are always dropped.
    """
    n = count(splats)
    keep = np.ones(n, bool)
    for k, v in splats.items():
        keep &= np.isfinite(v.reshape(n, -1)).all(axis=1)
    if min_opacity > 0:
        keep &= sigmoid(splats["opacities"]) >= min_opacity
    if max_scale is not None:
        keep &= np.exp(splats["scales"].max(axis=1).astype(np.float64)) <= max_scale
    if crop_min is not None:
        keep &= (splats["means"] >= np.asarray(crop_min, np.float32)).all(axis=1)
    if crop_max is not None:
        keep &= (splats["means"] <= np.asarray(crop_max, np.float32)).all(axis=1)
    return keep


# ---------------------------------------------------------------------------------------------
# SH basis and rotation
# ---------------------------------------------------------------------------------------------


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """Real SH basis ``[M, (degree+1)^2]`` of 3DGS/gsplat at unit directions ``dirs [M, 3]``.

    Supports degree <= 3 (the degrees every splat format here stores).
    """
    if degree > 3:
        raise ReconError(f"SH degree {degree} cannot be rotated (at most 3 is supported); pass --sh-degree 3")
    d = np.asarray(dirs, np.float64)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    cols = [np.full_like(x, SH_C0)]
    if degree >= 1:
        c1 = 0.4886025119029199
        cols += [-c1 * y, c1 * z, -c1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        cols += [
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.31539156525252005 * (2 * zz - xx - yy),
            -1.0925484305920792 * xz,
            0.5462742152960396 * (xx - yy),
        ]
    if degree >= 3:
        cols += [
            -0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * xy * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy),
            0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    return np.stack(cols, axis=1)


def transform_splats(splats: Mapping[str, np.ndarray], T: np.ndarray) -> dict[str, np.ndarray]:
    """Apply a similarity transform ``x' = s R x + t`` to every Gaussian.

    Args:
        splats: numpy splats (see :func:`as_numpy`).
        T: ``[4, 4]`` with upper-left ``s * M``, ``M`` orthogonal (``det M = +-1``, so reflections
            such as a handedness change are allowed), ``s > 0`` a uniform scale, and translation ``t``.

    Centres map by ``T``; log-scales gain ``log s``; rotations become ``sign(det M) M R`` (a
    reflection of an ellipsoid equals a rotation of it); SH coefficients are re-expressed so
    view-dependent colour follows the new directions. The identity returns the input arrays
    themselves (callers must not modify them).
    """
    T = np.asarray(T, np.float64)
    A = T[:3, :3]
    s = float(np.cbrt(abs(np.linalg.det(A))))
    if s <= 0:
        raise ReconError("export transform is singular")
    M = A / s
    if not np.allclose(M @ M.T, np.eye(3), atol=1e-6):
        raise ReconError("export transform must be a rotation/reflection times a uniform scale")
    if np.array_equal(T, np.eye(4)):
        return dict(splats)  # the same arrays: nothing to change
    out = dict(splats)
    means = splats["means"].astype(np.float64)
    out["means"] = (means @ A.T + T[:3, 3]).astype(np.float32)
    if s != 1.0:
        out["scales"] = (splats["scales"].astype(np.float64) + math.log(s)).astype(np.float32)
    det = np.linalg.det(M)
    Mp = M if det > 0 else -M
    if not np.allclose(Mp, np.eye(3), atol=1e-12):
        qm = rotmat_to_quat_np(Mp)
        q = splats["quats"].astype(np.float64)
        out["quats"] = quat_mul_np(qm, q).astype(np.float32)
    deg = sh_degree_from_rest(splats["shN"].shape[1])
    if deg > 0 and not np.allclose(M, np.eye(3), atol=1e-12):
        X = _sh_coeff_matrix(M, deg)
        out["shN"] = np.einsum("jk,nkc->njc", X, splats["shN"].astype(np.float64)).astype(np.float32)
    return out


def _sh_coeff_matrix(M: np.ndarray, degree: int) -> np.ndarray:
    """``[K, K]`` with ``c'_j = sum_k W[j, k] c_k`` for directions mapped by ``M``.

    The colour must satisfy ``sum_j c'_j Y_j(M d) = sum_k c_k Y_k(d)``. Fitting
    ``Y(M^T d) = D Y(d)`` at many ``d`` gives ``c' = D^T c``.
    """
    rng = np.random.default_rng(0)
    d = rng.normal(size=(256, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    A = sh_basis(d, degree)[:, 1:]  # Y(d)        [S, K]
    B = sh_basis(d @ M, degree)[:, 1:]  # Y(M^T d)  (row d @ M == (M^T d)^T)
    Dt, *_ = np.linalg.lstsq(A, B, rcond=None)  # B = A @ D^T
    W = Dt  # c' = D^T c  ->  W = D^T
    W[np.abs(W) < 1e-12] = 0.0
    return W


def eval_sh_colors(splats: Mapping[str, np.ndarray], dirs: np.ndarray) -> np.ndarray:
    """View-dependent colour ``[N, 3]`` (before clamping) of each Gaussian seen along ``dirs [N, 3]``.

    ``dirs`` point from the camera to the Gaussian, unit length; used by tests and checks.
    """
    deg = sh_degree_from_rest(splats["shN"].shape[1])
    Y = sh_basis(dirs, deg)  # [N, (d+1)^2]
    coeffs = np.concatenate([splats["sh0"], splats["shN"]], axis=1).astype(np.float64)
    return (np.einsum("nk,nkc->nc", Y, coeffs) + 0.5).astype(np.float32)
