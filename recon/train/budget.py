"""Training budgets that follow the capture: how many steps and Gaussians a preset gives a scene.

The presets' figures (``recon.train.config.PRESETS``) are the starting point; :func:`plan` adapts
them to the capture and the time budget, and :func:`apply` writes the result into a new run's
config, except for options given on the command line, which always win.

- **fast**: a sparse capture gets a training budget in proportion to its training views:
  ``steps = max(FAST_MIN_STEPS, min(preset steps, FAST_STEPS_PER_VIEW x views))``. Few views
  trained for long over-fit: densification grows Gaussians that explain single photos (measured on
  sceaux, 9 training views: docs/benchmarks.md). Dense captures (fox, beer_can, lego: 58-100 views)
  keep the preset's 5,000 steps.
- **quality**: the Gaussian cap follows the training pixel count (``QUALITY_PX_PER_GAUSSIAN``
  pixels per Gaussian, between :data:`QUALITY_CAP_MIN` and :data:`QUALITY_CAP_MAX`); with
  ``--max-minutes`` the steps follow the time budget through a per-step cost model
  (:data:`STEP_COST`, per device kind): as many steps as fit, at most the preset's 30,000. When the
  budget fits fewer than :data:`QUALITY_MIN_STEPS` steps at that cap, the cap shrinks (not below
  the fast preset's) until it does.

Both figures and how they were derived go to the training log and to ``run.json`` (``budget``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

FAST_STEPS_PER_VIEW = 100
"""fast preset: steps per training view for sparse captures (at most the preset's steps)."""
FAST_MIN_STEPS = 600
"""fast preset: the fewest steps the per-view rule gives."""

QUALITY_PX_PER_GAUSSIAN = 50
"""quality preset: training pixels (all training views, at the training resolution) per Gaussian."""
QUALITY_CAP_MIN = 120_000
"""quality preset: smallest Gaussian cap (the fast preset's)."""
QUALITY_CAP_MAX = 3_000_000
"""quality preset: largest Gaussian cap."""
QUALITY_MIN_STEPS = 10_000
"""quality preset: with a time budget, the cap shrinks (then the resolution) until at least this many
steps fit."""
QUALITY_MIN_SIDE = 640
"""quality preset: the lowest training resolution (longest side, px) a time budget may lead to: the
fast preset's."""
MEAN_FILL = 0.6
"""The cost model's mean Gaussian count over a run, as a fraction of the cap (densification grows
the count over the first half of training)."""

STEP_COST = {
    # seconds per step = base + per_px * pixels of one view + per_gaussian * Gaussians. CPU: recon's
    # Numba rasterizer on 2 shared cores (sceaux at 320 px, 12k-78k Gaussians: docs/training.md);
    # CUDA: gsplat on one data-centre GPU (an order-of-magnitude estimate).
    "cpu": {"base": 0.01, "per_px": 3.5e-7, "per_gaussian": 3.4e-6},
    "cuda": {"base": 0.005, "per_px": 2e-8, "per_gaussian": 1.5e-8},
}


def step_seconds(device: str, px_per_view: float, gaussians: float) -> float:
    """Predicted seconds of one training step."""
    c = STEP_COST["cuda" if device.startswith("cuda") else "cpu"]
    return c["base"] + c["per_px"] * px_per_view + c["per_gaussian"] * gaussians


def plan(preset: str, views: int, px_per_view: float, preset_steps: int, preset_cap: int,
         max_minutes: Optional[float] = None, device: str = "cpu", longest_side: Optional[int] = None) -> dict[str, Any]:
    """The budget of ``preset`` for a capture of ``views`` training views of ``px_per_view`` pixels
    each (at the preset's training resolution, whose longest side is ``longest_side``):
    ``{"steps", "max_gaussians", "rule"}``, ``"max_side"`` when the quality preset lowers the
    resolution to fit the time budget, plus the figures the rule used. Presets without a rule keep
    their own figures."""
    out: dict[str, Any] = {"preset": preset, "views": int(views), "train_pixels": int(round(views * px_per_view)),
                           "steps": int(preset_steps), "max_gaussians": int(preset_cap)}
    if preset == "fast":
        steps = max(FAST_MIN_STEPS, min(preset_steps, FAST_STEPS_PER_VIEW * views))
        out["steps"] = int(min(steps, preset_steps))
        out["rule"] = (f"steps = {FAST_STEPS_PER_VIEW} x {views} training views, a sparse capture"
                       if out["steps"] < preset_steps else f"{views} training views: the preset's {preset_steps:,} steps")
        return out
    if preset != "quality":
        out["rule"] = "the preset's figures"
        return out
    kind = "cuda" if device.startswith("cuda") else "cpu"
    c = STEP_COST[kind]

    def pixel_cap(px: float) -> int:
        return int(min(QUALITY_CAP_MAX, max(QUALITY_CAP_MIN, views * px / QUALITY_PX_PER_GAUSSIAN)))

    cap = pixel_cap(px_per_view)
    rule = f"cap = {views * px_per_view / 1e6:.1f} M training pixels / {QUALITY_PX_PER_GAUSSIAN}"
    steps = int(preset_steps)
    if max_minutes is not None:
        budget = max_minutes * 60.0
        px = px_per_view
        fit = int(budget / step_seconds(kind, px, MEAN_FILL * cap))
        if fit < QUALITY_MIN_STEPS and cap > QUALITY_CAP_MIN:
            room = budget / QUALITY_MIN_STEPS - c["base"] - c["per_px"] * px
            cap = int(max(QUALITY_CAP_MIN, min(cap, room / (MEAN_FILL * c["per_gaussian"]))))
            rule += f", shrunk so that {QUALITY_MIN_STEPS:,} steps fit in {max_minutes:g} min"
            fit = int(budget / step_seconds(kind, px, MEAN_FILL * cap))
        if fit < QUALITY_MIN_STEPS and longest_side and longest_side > QUALITY_MIN_SIDE:
            # Even the smallest cap leaves too few steps: train at a lower resolution (not below the
            # fast preset's), so that the steps fit.
            room = budget / QUALITY_MIN_STEPS - c["base"] - c["per_gaussian"] * MEAN_FILL * QUALITY_CAP_MIN
            scale = math.sqrt(max(room, 1e-12) / (c["per_px"] * px))
            side = int(max(QUALITY_MIN_SIDE, min(longest_side, math.floor(longest_side * scale))))
            px = px_per_view * (side / longest_side) ** 2
            cap = QUALITY_CAP_MIN
            out["max_side"] = side
            rule += f"; resolution lowered to {side} px on the longest side so that the steps fit"
            fit = int(budget / step_seconds(kind, px, MEAN_FILL * cap))
        steps = max(1, min(preset_steps, fit))
        out["step_seconds_predicted"] = round(step_seconds(kind, px, MEAN_FILL * cap), 4)
        rule += (f"; steps = {max_minutes:g} min / {out['step_seconds_predicted']:.3g} s per step ({kind} cost "
                 f"model), at most {preset_steps:,}")
    out.update(steps=int(steps), max_gaussians=int(cap), rule=rule)
    return out


def explicit_options(argv: list[str]) -> set[str]:
    """Option names (underscored) given on a command line, e.g. ``{"steps", "max_gaussians"}``."""
    names = set()
    for a in argv:
        if a.startswith("--") and len(a) > 2:
            names.add(a[2:].split("=", 1)[0].replace("-", "_"))
    return names


def apply(cfg, scene, explicit: set[str], device: Optional[str] = None, log=print) -> Optional[dict]:
    """Adapt a new splat run's ``cfg`` (its preset's figures, ``downscale`` already resolved) to ``scene``:
    steps, ``max_gaussians`` when the method has one, and for the quality preset under a tight
    ``--max-minutes`` the resolution; options in ``explicit`` are left alone. Returns the budget record (for
    ``run.json``), or None for a preset without a rule."""
    if cfg.preset not in ("fast", "quality") or getattr(cfg, "method", "splat") != "splat":
        return None  # the rules were measured on static splats; other methods keep their presets
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    train = scene.indices("train")
    if not train:
        return None
    cams = [scene.camera(i, cfg.downscale) for i in train]
    px = sum(c.width * c.height for c in cams) / len(cams)
    has_cap = hasattr(cfg.model, "max_gaussians")
    longest = max(max(c.width, c.height) for c in cams)
    fixed_res = bool({"downscale", "max_side"} & explicit)
    b = plan(cfg.preset, len(train), px, cfg.steps, getattr(cfg.model, "max_gaussians", 0) if has_cap else 0,
             cfg.max_minutes, device, None if fixed_res else longest)
    kept = []
    if "max_side" in b:
        cfg.downscale = cfg.downscale * longest / b["max_side"]
        cfg.max_side = b["max_side"]
        b["downscale"] = round(cfg.downscale, 4)
    if "steps" in explicit:
        kept.append("--steps")
        b["steps"] = cfg.steps
    else:
        cfg.steps = b["steps"]
    if has_cap:
        if "max_gaussians" in explicit:
            kept.append("--max-gaussians")
            b["max_gaussians"] = cfg.model.max_gaussians
        else:
            cfg.model.max_gaussians = b["max_gaussians"]
    else:
        b.pop("max_gaussians")
    if kept:
        b["given"] = kept
    cap = f", cap {b['max_gaussians']:,} Gaussians" if has_cap else ""
    log(f"[train] budget ({cfg.preset} preset): {b['steps']:,} steps{cap} for {b['views']} training views, "
        f"{b['train_pixels'] / 1e6:.2f} M pixels ({b['rule']}" + (f"; {', '.join(kept)} as given" if kept else "") + ")")
    return b
