"""``recon eval RUN``: score a trained run on its held-out views (PSNR, SSIM, LPIPS when available)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import tyro

from recon.errors import ReconError


def load_run_model(run: Path):
    """``(config, scene_path, renderer)`` of a run folder written by ``recon train``."""
    from exporters.ply import read_ply

    from recon.models.splats import SplatRenderer
    from recon.train.config import TrainConfig

    run = Path(run)
    if not run.is_dir():
        raise ReconError(f"run folder {run} does not exist")
    cfg_path, ply = run / "config.json", run / "splats.ply"
    if not cfg_path.is_file():
        raise ReconError(f"{cfg_path} not found: is {run} a folder made by `recon train`?")
    if not ply.is_file():
        raise ReconError(f"{ply} not found: the run has not finished; resume it with `recon train ... --resume`")
    try:
        saved = json.loads(cfg_path.read_text())
        cfg = TrainConfig.from_dict(saved["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ReconError(f"{cfg_path} is not a valid run config ({e})") from e
    return cfg, Path(saved["scene"]), SplatRenderer(read_ply(ply), antialiased=cfg.splat.antialiased)


def main(
    run: tyro.conf.Positional[Path],
    /,
    eval_views: int = 0,
    lpips_weights: Optional[str] = None,
) -> int:
    """Evaluate a trained run on its held-out views and rewrite RUN/metrics.json, the grid and curves.

    Args:
        run: the run folder (holds config.json and splats.ply).
        eval_views: evaluate at most this many held-out views (0: all).
        lpips_weights: local LPIPS weights (.pth); without them LPIPS is reported as unavailable.
    """
    from recon.eval.evaluate import evaluate, save_grid, write_metrics
    from recon.scene.readers import load_scene

    cfg, scene_path, model = load_run_model(run)
    from recon.commands.train import WHITE

    scene = load_scene(scene_path, background=WHITE)
    res = evaluate(model, scene, cfg.downscale, eval_views, lpips_weights)
    old = {}
    mp = Path(run) / "metrics.json"
    if mp.is_file():
        try:
            old = json.loads(mp.read_text())
        except json.JSONDecodeError:
            old = {}
    extra = {k: old[k] for k in ("train_seconds", "steps", "downscale", "preset", "provenance") if k in old}
    extra["num_gaussians"] = model.num_primitives
    extra["model_size_bytes"] = (Path(run) / "splats.ply").stat().st_size
    save_grid(res["_samples"], Path(run) / "renders" / "grid.png")
    m = write_metrics(res, extra, mp)
    lp = "unavailable" if m["lpips"] is None else f"{m['lpips']:.4f}"
    print(f"[eval] {m['eval_views']} views ({m['split']}): PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, "
          f"LPIPS {lp}, {m['render_ms']:.1f} ms/view, {m['num_gaussians']:,} Gaussians -> {mp}")
    return 0
