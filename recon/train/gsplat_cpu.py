"""CPU fallbacks for the two CUDA kernels that gsplat's strategies call.

gsplat's ``DefaultStrategy`` is pure PyTorch, but ``MCMCStrategy`` calls two CUDA-only kernels
through ``gsplat.strategy.ops``: ``compute_relocation`` (MCMC paper, eq. 9) and
``quat_scale_to_covar_preci`` (for the position noise). :func:`install` wraps both names in that
module with dispatchers that keep gsplat's CUDA kernels for CUDA tensors and run the PyTorch
versions below for CPU tensors, so both strategies run unchanged on either backend.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from recon.models.quaternions import quat_to_rotmat

_installed = False


def relocation_torch(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> tuple[Tensor, Tensor]:
    """New opacities ``[N]`` and scales ``[N, 3]`` for a Gaussian split into ``ratios [N]`` copies.

    Implements eq. 9 of "3D Gaussian Splatting as Markov Chain Monte Carlo": the new opacity is
    ``1 - (1 - o)^(1/n)`` and the scales shrink so that the ``n`` copies sum to the original.
    ``binoms [n_max, n_max]`` holds binomial coefficients ``C(i, k)``. Like gsplat, ``ratios`` is
    clamped to ``[1, n_max]`` in place.
    """
    n_max = binoms.shape[0]
    ratios.clamp_(min=1, max=n_max)
    n = ratios.long()
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    # coef[m, k] = sum_{i=k+1}^{m} C(i-1, k) * (-1)^k / sqrt(k+1), for m = 0..n_max.
    ks = torch.arange(n_max, dtype=torch.float64, device=opacities.device)
    sign = torch.where(ks % 2 == 0, 1.0, -1.0) / torch.sqrt(ks + 1.0)
    b = binoms.to(torch.float64) * sign[None, :]  # row i-1, column k
    coef = torch.zeros(n_max + 1, n_max, dtype=torch.float64, device=opacities.device)
    coef[1:] = torch.cumsum(b, dim=0)
    powers = torch.pow(new_op.to(torch.float64)[:, None], ks[None, :] + 1.0)  # [N, n_max]
    denom = (coef[n] * powers).sum(dim=1)
    new_scales = (opacities.to(torch.float64) / denom)[:, None] * scales.to(torch.float64)
    return new_op.to(opacities.dtype), new_scales.to(scales.dtype)


def covar_preci_torch(
    quats: Tensor, scales: Tensor, compute_covar: bool = True, compute_preci: bool = True, triu: bool = False
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Covariances ``R S S R^T`` and precisions ``R S^-2 R^T`` ``[..., 3, 3]`` (or ``[..., 6]``
    upper-triangular when ``triu``) from quaternions ``[..., 4]`` (wxyz) and linear scales ``[..., 3]``."""
    R = quat_to_rotmat(quats, eps=1e-12)  # normalised as torch.nn.functional.normalize does

    def pack(M: Tensor) -> Tensor:
        if not triu:
            return M
        return torch.stack([M[..., 0, 0], M[..., 0, 1], M[..., 0, 2], M[..., 1, 1], M[..., 1, 2], M[..., 2, 2]], -1)

    covar = pack((R * scales[..., None, :] ** 2) @ R.transpose(-1, -2)) if compute_covar else None
    preci = pack((R / scales[..., None, :] ** 2) @ R.transpose(-1, -2)) if compute_preci else None
    return covar, preci


def install() -> None:
    """Make gsplat's strategies run on CPU tensors (idempotent; CUDA tensors keep gsplat's kernels)."""
    global _installed
    if _installed:
        return
    import gsplat.strategy.ops as ops

    cuda_reloc = ops.compute_relocation
    cuda_covar = ops.quat_scale_to_covar_preci

    def compute_relocation(opacities, scales, ratios, binoms):
        if opacities.is_cuda:
            return cuda_reloc(opacities, scales, ratios, binoms)
        return relocation_torch(opacities, scales, ratios, binoms)

    def quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=True, triu=False):
        if quats.is_cuda:
            return cuda_covar(quats, scales, compute_covar, compute_preci, triu)
        return covar_preci_torch(quats, scales, compute_covar, compute_preci, triu)

    ops.compute_relocation = compute_relocation
    ops.quat_scale_to_covar_preci = quat_scale_to_covar_preci
    _installed = True


def binomials(n_max: int) -> Tensor:
    """``[n_max, n_max]`` table of C(n, k) (as gsplat's MCMCStrategy builds it)."""
    t = torch.zeros(n_max, n_max)
    for n in range(n_max):
        for k in range(n + 1):
            t[n, k] = math.comb(n, k)
    return t
