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


def load_lpips(weights: Optional[str] = None):
    """An LPIPS (AlexNet) scorer built from local weights, or raise :class:`LPIPSUnavailable`.

    recon never downloads weights. It looks for ``weights`` (a path to a ``.pth`` holding both the
    AlexNet backbone and the LPIPS linear layers, saved from ``lpips.LPIPS(net='alex').state_dict()``),
    else ``$RECON_LPIPS_WEIGHTS``. The ``lpips`` package must be installed.
    """
    path = weights or os.environ.get("RECON_LPIPS_WEIGHTS")
    if not path:
        raise LPIPSUnavailable("no LPIPS weights: pass --lpips-weights or set RECON_LPIPS_WEIGHTS")
    if not Path(path).is_file():
        raise LPIPSUnavailable(f"LPIPS weights not found at {path}")
    try:
        import lpips  # type: ignore
    except Exception as e:  # noqa: BLE001
        raise LPIPSUnavailable(f"the lpips package is not installed ({e})") from e
    model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    model.load_state_dict(torch.load(path, map_location="cpu"), strict=False)
    model.eval()

    def score(pred: torch.Tensor, target: torch.Tensor) -> float:
        with torch.no_grad():
            a = pred.permute(2, 0, 1)[None] * 2 - 1
            b = target.permute(2, 0, 1)[None] * 2 - 1
            return float(model(a, b).mean())

    return score
