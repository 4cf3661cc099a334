"""Thin adapter: ``rasterization(..., backend="gsplat")`` calls ``gsplat.rasterization`` on CUDA."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from recon.errors import ReconError


def rasterization_gsplat(means: Tensor, *args: Any, **kwargs: Any):
    """Forward everything to ``gsplat.rasterization`` (same signature and outputs).

    Raises :class:`ReconError` when the tensors are not on a CUDA device or gsplat's CUDA
    extension cannot be loaded.
    """
    import torch

    if not means.is_cuda or not torch.cuda.is_available():
        where = "no CUDA device is available" if not torch.cuda.is_available() else f"tensors are on {means.device}"
        raise ReconError(
            f"backend 'gsplat' needs a CUDA device; {where}. Use backend='cpu' (or 'auto') on this machine, "
            "or move the Gaussians and cameras to a GPU with .cuda()"
        )
    try:
        import gsplat
    except ImportError as exc:  # pragma: no cover - gsplat is a core dependency
        raise ReconError(f"backend 'gsplat' needs the gsplat package ({exc}); pip install 'gsplat>=1.5,<1.6'") from exc
    return gsplat.rasterization(means, *args, **kwargs)
