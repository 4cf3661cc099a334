"""Real spherical harmonics in gsplat's convention (degrees 0..4), in PyTorch.

The basis, its ordering and its signs are those of gsplat 1.5.x ``spherical_harmonics`` (Sloan's
"Efficient Spherical Harmonic Evaluation", JCGT 2013). Directions are normalised here; the caller
passes ``dirs = means - camera_centre``. The +0.5 offset and clamp that make SH values colours are
applied by the rasterizer, not here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recon.models.splats import SH_C0  # noqa: F401  (the one definition; re-exported)


def sh_bases(num_bases: int, dirs: Tensor) -> Tensor:
    """SH basis values ``[..., num_bases]`` at unit directions ``dirs [..., 3]``.

    ``num_bases`` is ``(degree + 1) ** 2`` with degree in 0..4.
    """
    if num_bases not in (1, 4, 9, 16, 25):
        raise ValueError(f"num_bases must be (degree+1)^2 with degree 0..4, got {num_bases}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if num_bases > 1:
        a = 0.48860251190292
        out += [-a * y, a * z, -a * x]
    if num_bases > 4:
        z2 = z * z
        tb = -1.092548430592079 * z
        fc1 = x * x - y * y
        fs1 = 2.0 * x * y
        p6 = 0.9461746957575601 * z2 - 0.3153915652525201
        out += [0.5462742152960395 * fs1, tb * y, p6, tb * x, 0.5462742152960395 * fc1]
    if num_bases > 9:
        tc = -2.285228997322329 * z2 + 0.4570457994644658
        tb1 = 1.445305721320277 * z
        fc2 = x * fc1 - y * fs1
        fs2 = x * fs1 + y * fc1
        p12 = z * (1.865881662950577 * z2 - 1.119528997770346)
        out += [
            -0.5900435899266435 * fs2,
            tb1 * fs1,
            tc * y,
            p12,
            tc * x,
            tb1 * fc1,
            -0.5900435899266435 * fc2,
        ]
    if num_bases > 16:
        td = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tc1 = 3.31161143515146 * z2 - 0.47308734787878
        tb2 = -1.770130769779931 * z
        fc3 = x * fc2 - y * fs2
        fs3 = x * fs2 + y * fc2
        p20 = 1.984313483298443 * z * p12 - 1.006230589874905 * p6
        out += [
            0.6258357354491763 * fs3,
            tb2 * fs2,
            tc1 * fs1,
            td * y,
            p20,
            td * x,
            tc1 * fc1,
            tb2 * fc2,
            0.6258357354491763 * fc3,
        ]
    return torch.stack(out, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH coefficients along view directions, as gsplat's ``spherical_harmonics``.

    Args:
        degree: SH degree to use (0..4); ``(degree + 1) ** 2 <= K``.
        dirs: view directions ``[..., 3]`` (need not be unit; normalised here).
        coeffs: SH coefficients ``[..., K, 3]``; bases beyond ``(degree + 1) ** 2`` are ignored.

    Returns:
        ``[..., 3]`` raw SH values (gsplat adds 0.5 and clamps at 0 afterwards).
    """
    nb = (degree + 1) ** 2
    if nb > coeffs.shape[-2]:
        raise ValueError(f"sh_degree {degree} needs {nb} SH bases, colors has {coeffs.shape[-2]}")
    if degree == 0:
        return SH_C0 * coeffs[..., 0, :]
    d = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bases = sh_bases(nb, d)  # [..., nb]
    return (bases.unsqueeze(-2) @ coeffs[..., :nb, :]).squeeze(-2)
