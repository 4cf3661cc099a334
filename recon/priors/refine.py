"""Boundary refinement of a selection (``recon select --refine STEPS``).

A selection is one label per Gaussian, and a Gaussian that straddles the object's outline (part of
its weight inside the 2D masks, part outside) can only go one way: the object either takes a rim of
its surroundings with it or loses a rim of itself. On thin objects that rim is a large share of the
object: on the turntable's ring, a tube about 5 px wide at 128 px, a quarter of the selected weight
sat in such Gaussians, and even lifting the held-out views' own masks gave a held-out IoU of 0.88.

The refinement fine-tunes the model around the labels, in the manner of Gaussian Grouping's and
SAGA's mask-supervised training, with the labels fixed: for ``steps`` steps, one lifted training
view each, the whole model is fitted to

* the photometric L1 of the training image (composited on white), so the scene still looks the same,
* plus ``mask_weight`` times the L1 between the selection's rendered footprint (the blending weight
  of the selected Gaussians with the rest in place, one more channel of the same rasterization) and
  the view's 2D object mask, so straddlers move or shrink to their own side of the outline,
* plus, when the training images have an alpha channel, the L1 of the rendered alpha against it.

The result is the run's model, refined, with the same labels; ``recon select`` saves it with the
selection (``RUN/selections/NAME.ply``), and export uses it whenever it applies the selection.

Splitting the straddlers first (each into two children sampled from it with scales / 1.6, as 3DGS
splits, relabelled by lifting the masks again) was measured and did not help: 0.944 on the ring
against 0.949 with the fine-tune alone, so the model keeps its Gaussians (count and order).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

DEFAULT_STEPS = 300
"""`recon select`'s default on splat runs. Turntable, one click, held-out IoU of the visible
footprint before / after: blob 0.949 / 0.971, knot 0.953 / 0.962, cube 0.934 / 0.956,
cone 0.903 / 0.939, ring 0.853 / 0.949 (10-20 s on one thread at 128 px, 28 views)."""


@dataclass
class RefineOptions:
    steps: int = DEFAULT_STEPS
    """Fine-tuning steps (one lifted training view each)."""
    mask_weight: float = 1.0
    """Weight of the footprint-vs-mask L1 against the photometric L1 (0: the photometric fine-tune
    alone, which gave the ring 0.898)."""
    seed: int = 0


@dataclass
class RefineView:
    """A lifted training view: camera, uint8 RGB image ``[H, W, 3]`` composited on white, the
    object's mask (bool ``[H, W]``) and, when the image has one, its alpha (float in [0, 1])."""

    camera: object
    image: np.ndarray
    mask: np.ndarray
    alpha: Optional[np.ndarray] = None


def refine_selection(g: dict, antialiased: bool, views: Sequence[RefineView], labels: np.ndarray,
                     options: RefineOptions = RefineOptions(),
                     log: Callable[[str], None] = lambda s: None) -> tuple[dict[str, torch.Tensor], dict]:
    """Fine-tune the model ``g`` (a splat dict) so that the Gaussians ``labels`` (bool ``[N]``)
    cover the views' masks and the rest does not, while it keeps fitting the images. Returns the
    refined model (float32 tensors, same count and order) and a report."""
    from recon.render import rasterization
    from recon.render.sh import spherical_harmonics

    t0 = time.perf_counter()

    def t(v):
        return (v.detach() if torch.is_tensor(v) else torch.from_numpy(np.ascontiguousarray(v))).float().clone()

    n = int(np.asarray(labels).size)
    sh = t(g["sh0"]).reshape(n, 1, 3)
    if g.get("shN") is not None and g["shN"].shape[1]:
        sh = torch.cat([sh, t(g["shN"]).reshape(n, -1, 3)], 1)
    degree = int(round(math.sqrt(sh.shape[1]))) - 1
    params = {"means": t(g["means"]), "quats": t(g["quats"]), "scales": t(g["scales"]),
              "opacities": t(g["opacities"]).reshape(-1), "sh": sh}
    max_log_scale = float(params["scales"].max())
    for v in params.values():
        v.requires_grad_(True)
    m = params["means"].detach()
    extent = float((m - m.median(0).values).norm(dim=1).median()) or 1.0
    # the trainer's learning rates at the end of a fast run, positions ten times faster (they must
    # move across a pixel or two within a few hundred steps)
    opt = torch.optim.Adam([
        {"params": [params["means"]], "lr": 1.6e-3 * extent},
        {"params": [params["quats"]], "lr": 1e-3},
        {"params": [params["scales"]], "lr": 5e-3},
        {"params": [params["opacities"]], "lr": 2.5e-2},
        {"params": [params["sh"]], "lr": 2.5e-3},
    ], eps=1e-15)
    lab = torch.from_numpy(np.asarray(labels, np.float32).reshape(n, 1))
    bg = torch.ones(3)
    data = []
    for v in views:
        vm = v.camera.viewmat
        vm = vm.float() if torch.is_tensor(vm) else torch.from_numpy(np.asarray(vm, np.float32))
        K = v.camera.K
        K = K.float() if torch.is_tensor(K) else torch.from_numpy(np.asarray(K, np.float32))
        data.append((vm, K, int(v.camera.width), int(v.camera.height), torch.linalg.inv(vm)[:3, 3],
                     torch.from_numpy(np.asarray(v.image, np.float32) / 255.0),
                     torch.from_numpy(np.asarray(v.mask, np.float32)),
                     None if v.alpha is None else torch.from_numpy(np.asarray(v.alpha, np.float32))))
    report = {"steps": int(options.steps), "mask_weight": float(options.mask_weight), "views": len(data)}
    if options.steps <= 0 or not data:
        report["seconds"] = round(time.perf_counter() - t0, 2)
        return {k: t(v) for k, v in g.items()}, report
    order = np.random.default_rng(options.seed).permutation(np.arange(options.steps) % len(data))
    first = last = (0.0, 0.0)
    for step, i in enumerate(order, 1):
        vm, K, W, H, campos, img, mask, alpha_t = data[i]
        rgb = torch.clamp_min(spherical_harmonics(degree, params["means"] - campos, params["sh"]) + 0.5, 0.0)
        out, alpha, _ = rasterization(
            params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
            torch.cat([rgb, lab], 1), vm[None], K[None], W, H, sh_degree=None, packed=False,
            rasterize_mode="antialiased" if antialiased else "classic")
        out, alpha = out[0], alpha[0]
        loss_rgb = (out[..., :3] + (1.0 - alpha) * bg - img).abs().mean()
        loss_mask = (out[..., 3] - mask).abs().mean()
        loss = loss_rgb + options.mask_weight * loss_mask
        if alpha_t is not None:
            loss = loss + (alpha[..., 0] - alpha_t).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            params["scales"].clamp_(max=max_log_scale)
        last = (float(loss_rgb.detach()), float(loss_mask.detach()))
        if step == 1:
            first = last
        if step % 50 == 0 or step == len(order):
            el = time.perf_counter() - t0
            log(f"select: refining {step}/{len(order)} steps, photometric L1 {last[0]:.4f}, footprint L1 {last[1]:.4f}, "
                f"{el:.1f} s elapsed, ETA {el / step * (len(order) - step):.1f} s")
    sh = params["sh"].detach()
    out_g = {"means": params["means"].detach(), "quats": params["quats"].detach(), "scales": params["scales"].detach(),
             "opacities": params["opacities"].detach(), "sh0": sh[:, :1].clone(), "shN": sh[:, 1:].clone()}
    report.update({"photometric_l1": [round(first[0], 5), round(last[0], 5)],
                   "footprint_l1": [round(first[1], 5), round(last[1], 5)],
                   "seconds": round(time.perf_counter() - t0, 2)})
    return out_g, report
