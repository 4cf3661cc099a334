"""The training losses against independent references."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from recon.train.losses import photometric_loss, ssim_map


def _ssim_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004) with a full 11x11 Gaussian window (sigma 1.5) as one 2-D convolution."""
    a = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(a**2) / (2 * 1.5**2))
    w = torch.outer(g, g)
    w = (w / w.sum()).expand(3, 1, 11, 11)
    x = x.double().permute(0, 3, 1, 2)
    y = y.double().permute(0, 3, 1, 2)
    blur = lambda t: F.conv2d(t, w, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))


def test_ssim_matches_the_2d_window_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 47, 64, 3, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours, ref = ssim_map(x, y), _ssim_reference(x, y)
    assert ours.shape == ref.shape == (1, 3, 37, 54)
    assert float((ours.double() - ref).abs().max()) < 1e-5
    assert 0.3 < float(ref.mean()) < 0.95  # a non-trivial comparison
    assert float(ssim_map(x, x).mean()) > 1 - 1e-6


def test_ssim_gradient_matches_the_reference():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(1, 32, 40, 3, generator=g)
    x = (y + 0.05 * torch.randn(y.shape, generator=g)).clamp(0, 1)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().double().requires_grad_(True)
    ssim_map(xa, y).mean().backward()
    _ssim_reference(xb, y).mean().backward()
    assert torch.allclose(xa.grad.double(), xb.grad, atol=1e-6, rtol=1e-3)


def test_photometric_loss_values_and_mask():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(24, 24, 3, generator=g)
    p = (t + 0.2).clamp(0, 1)
    l1 = float((p - t).abs().mean())
    s = float(ssim_map(p[None], t[None]).mean())
    assert math.isclose(float(photometric_loss(p, t, 0.2)), 0.8 * l1 + 0.2 * (1 - s), rel_tol=1e-6)
    assert math.isclose(float(photometric_loss(p, t, 0.0)), l1, rel_tol=1e-6)
    # Pixels outside the mask count for nothing: wreck them and the loss stays the same.
    m = torch.zeros(24, 24, 1)
    m[:12] = 1
    q = p.clone()
    q[12:] = 1 - q[12:]
    assert math.isclose(float(photometric_loss(p, t, 0.2, m)), float(photometric_loss(q, t, 0.2, m)), rel_tol=1e-6)
