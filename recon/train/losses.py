"""Training losses: L1 and D-SSIM (1 - SSIM), optionally masked."""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=4)
def _gauss_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


@functools.lru_cache(maxsize=16)
def _band(n: int, size: int, sigma: float, dtype: torch.dtype, device: str) -> torch.Tensor:
    """``[n - size + 1, n]`` matrix whose rows are the Gaussian window at each valid offset."""
    g = _gauss_window(size, sigma)
    m = torch.zeros(n - size + 1, n, dtype=torch.float64)
    for i in range(n - size + 1):
        m[i, i : i + size] = g
    return m.to(dtype=dtype, device=device)


def _blur_valid(t: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (valid region) of ``[B, C, H, W]`` as two banded matrix products,
    which BLAS runs much faster on CPU than a grouped 1-D convolution."""
    H, W = t.shape[-2:]
    bv = _band(H, size, sigma, t.dtype, str(t.device))
    bh = _band(W, size, sigma, t.dtype, str(t.device))
    return bv @ t @ bh.T


def ssim_map(pred: torch.Tensor, target: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM ``[B, 3, H', W']`` of images ``[B, H, W, 3]`` in [0, 1] (valid convolution).

    Differentiable; used both as the D-SSIM training loss and as the evaluation metric. The five
    local statistics are blurred together as banded matrix products.
    """
    x = pred.permute(0, 3, 1, 2)
    y = target.permute(0, 3, 1, 2)
    c = x.shape[1]
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5c, H, W]
    blurred = _blur_valid(stats, size, sigma)
    mu_x, mu_y, exx, eyy, exy = blurred.split(c, dim=1)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def photometric_loss(
    pred: torch.Tensor, target: torch.Tensor, ssim_lambda: float = 0.2, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``(1 - λ) L1 + λ (1 - SSIM)`` of ``pred`` vs ``target`` (``[H, W, 3]``).

    ``mask [H, W, 1]`` (1 = used) removes ignored pixels from both terms: masked pixels are set to
    the target in ``pred`` so they add nothing to L1 and SSIM.
    """
    if mask is not None:
        pred = pred * mask + target.detach() * (1 - mask)
        l1 = (pred - target).abs().sum() / (mask.sum().clamp_min(1) * 3)
    else:
        l1 = (pred - target).abs().mean()
    if ssim_lambda <= 0:
        return l1
    s = ssim_map(pred[None], target[None]).mean()
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - s)
