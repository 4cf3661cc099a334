"""Held-out evaluation of a trained method: PSNR, SSIM, LPIPS (when available), render time,
plus a side-by-side image grid and training curves."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from recon.eval.metrics import LPIPSUnavailable, load_lpips, psnr, ssim
from recon.scene.scene import Scene
from recon.train.data import Views


def eval_split(scene: Scene) -> tuple[str, list[int]]:
    """The held-out split to evaluate: test, else val. A scene without either is scored on every
    8th *training* view, labelled ``"train (every 8th; no held-out views)"``: those views were
    trained on, so the figure says how well the model fits, not how it generalises."""
    for name in ("test", "val"):
        idx = scene.indices(name)
        if idx:
            return name, idx
    return TRAIN_FALLBACK, scene.indices("train")[::8]


TRAIN_FALLBACK = "train (every 8th; no held-out views)"


def held_out(split: str) -> bool:
    """Whether an evaluated split is truly held out (not the training-view fallback)."""
    return split != TRAIN_FALLBACK


def evaluate(
    renderer,
    scene: Scene,
    downscale: float,
    max_views: int = 0,
    lpips_weights: Optional[str] = None,
    keep_renders: int = 4,
    log: Callable[[str], None] = print,
) -> dict:
    """Render every held-out view with ``renderer`` (:class:`recon.methods.base.Renderer`) and
    score it against the ground truth.

    Returns a dict with mean ``psnr``, ``ssim``, ``lpips`` (``None`` when unavailable, with the reason in
    ``lpips_note``), ``render_ms`` (median per view), ``eval_views``, ``split``, ``per_view`` and the
    first ``keep_renders`` (gt, render) pairs as numpy arrays under ``"_samples"``.
    """
    split, idx = eval_split(scene)
    if max_views and len(idx) > max_views:
        sel = np.linspace(0, len(idx) - 1, max_views).round().astype(int)
        idx = [idx[i] for i in sel]
    views = Views(scene, idx, downscale, preload_bytes=0)
    bg = torch.tensor(scene.background if scene.background is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
    try:
        lp = load_lpips(lpips_weights)
        lp_note = None
    except LPIPSUnavailable as e:
        lp, lp_note = None, str(e)
    per_view, samples, times = [], [], []
    t_last = time.perf_counter()
    for k in range(len(views)):
        v = views.get(k)
        t0 = time.perf_counter()
        with torch.no_grad():
            rgb = renderer.render(v.camera, time=v.time, background=bg).rgb
        times.append(time.perf_counter() - t0)
        rgb = rgb.clamp(0, 1).cpu()
        m = v.mask[..., 0] > 0.5 if v.mask is not None else None
        rec = {"name": v.name, "psnr": psnr(rgb, v.image, m), "ssim": ssim(rgb, v.image)}
        rec["psnr_right_half"], rec["psnr_right_half_colour_fit"] = half_colour_fit_psnr(rgb, v.image, m)
        if lp is not None:
            rec["lpips"] = lp(rgb, v.image)
        per_view.append(rec)
        if len(samples) < keep_renders:
            samples.append((v.image.numpy(), rgb.numpy()))
        if time.perf_counter() - t_last > 5 or k == len(views) - 1:
            log(f"[eval] {k + 1}/{len(views)} views | mean psnr {np.mean([r['psnr'] for r in per_view]):.2f}")
            t_last = time.perf_counter()
    res = {
        "split": split,
        "eval_views": len(per_view),
        "resolution": [views.cameras[0].width, views.cameras[0].height] if len(views) else None,
        "psnr": float(np.mean([r["psnr"] for r in per_view])),
        "ssim": float(np.mean([r["ssim"] for r in per_view])),
        "lpips": float(np.mean([r["lpips"] for r in per_view])) if lp is not None else None,
        "lpips_note": lp_note,
        "render_ms": float(np.median(times) * 1000),
        "appearance_protocol": {
            "protocol": "per-channel gain and offset (matching mean and standard deviation) fitted on the left "
                        "half of each held-out view, PSNR scored on the right half",
            "psnr": float(np.mean([r["psnr_right_half_colour_fit"] for r in per_view])),
            "psnr_uncorrected": float(np.mean([r["psnr_right_half"] for r in per_view])),
        } if per_view else None,
        "per_view": per_view,
        "_samples": samples,
    }
    return res


def half_colour_fit_psnr(pred: torch.Tensor, target: torch.Tensor, mask=None) -> tuple[float, float]:
    """``(PSNR of the right half, PSNR of the right half after a per-channel gain and offset fitted on
    the left half)`` of one view: the held-out appearance protocol for captures whose exposure and
    white balance change from photo to photo (the held-out view's own appearance is unknown to the
    model; fitting it on pixels that are not scored keeps the figure honest).

    The gain and offset match each channel's mean and standard deviation on the left half. A least-
    squares fit would shrink the gain towards zero wherever the render has errors (regression
    dilution) and lower the score of good renders; moment matching recovers an exposure or white-
    balance change exactly and is neutral when there is none."""
    w = pred.shape[1]
    h2 = w // 2
    x = pred[:, :h2].reshape(-1, 3).double()
    y = target[:, :h2].reshape(-1, 3).double()
    mR = None if mask is None else mask[:, h2:]
    if mask is not None:
        keep = mask[:, :h2].reshape(-1)
        x, y = x[keep], y[keep]
    pr = pred[:, h2:]
    if len(x) >= 2:
        sx, sy = x.std(0), y.std(0)
        gain = torch.where(sx > 1e-6, sy / sx.clamp_min(1e-6), torch.ones_like(sx))
        off = y.mean(0) - gain * x.mean(0)
        fitted = (pr.double() * gain + off).float()
    else:
        fitted = pr
    return psnr(pr, target[:, h2:], mR), psnr(fitted, target[:, h2:], mR)


def save_grid(samples: list[tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Rows of ground truth | render | error (|difference| x 4, as a heatmap) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps
    from PIL import Image

    from recon.io_utils import atomic_path

    rows = []
    for gt, pr in samples:
        err = np.clip(np.abs(gt - pr).mean(-1) * 4, 0, 1)
        heat = colormaps["inferno"](err)[..., :3]
        rows.append(np.concatenate([gt, pr, heat], axis=1))
    if not rows:
        return
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows]
    img = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def save_curves(curves: dict, path: Path, eval_psnr: Optional[float] = None) -> None:
    """Training loss, training PSNR and number of primitives against step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.io_utils import atomic_path

    if not curves.get("step"):
        return
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(curves["step"], curves["loss"])
    ax[0].set_title("loss")
    ax[0].set_yscale("log")
    ax[1].plot(curves["step"], curves["psnr"], label="train views")
    if eval_psnr is not None:
        ax[1].axhline(eval_psnr, color="C3", ls="--", label=f"held-out {eval_psnr:.2f} dB")
    ax[1].set_title("PSNR (dB)")
    ax[1].legend()
    ax[2].plot(curves["step"], curves["num"])
    ax[2].set_title("number of Gaussians")
    for a in ax:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def write_metrics(res: dict, extra: dict, path: Path) -> dict:
    from recon.io_utils import atomic_write_text

    out = {k: v for k, v in res.items() if not k.startswith("_")}
    out.update(extra)
    atomic_write_text(path, json.dumps(out, indent=2))
    return out
