"""``recon eval RUN``: score a trained run on its held-out views (PSNR, SSIM, LPIPS when available)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import tyro

from recon.errors import ReconError


def main(
    run: tyro.conf.Positional[Path],
    /,
    eval_views: int = 0,
    lpips_weights: Optional[str] = None,
    scene: Optional[Path] = None,
) -> int:
    """Evaluate a trained run on its held-out views and rewrite RUN/metrics.json and the render grid.

    Args:
        run: the run folder (holds run.json and the model).
        eval_views: evaluate at most this many held-out views (0: all).
        lpips_weights: local LPIPS weights (docs/metrics.md); without them LPIPS is reported as unavailable.
        scene: the scene folder, when it moved since training (default: the one the run records).
    """
    from recon.eval.evaluate import evaluate, held_out, save_grid, write_metrics
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene

    if eval_views < 0:
        raise ReconError(f"--eval-views {eval_views}: must be >= 0 (0: all held-out views)")
    if Path(run).is_file():
        raise ReconError(f"{run} is a file; pass the run folder that `recon train` wrote (it holds run.json)")
    rf = RunFolder.open(run)
    cfg = rf.config()  # runs of other tools have none: `recon eval` scores runs made by `recon train`
    renderer = rf.renderer()
    sc = load_scene(rf.scene_path(scene), background=EVAL_BACKGROUND, undistort=True)
    downscale = float(rf.render_settings.get("downscale", cfg.downscale) or 1.0)
    res = evaluate(renderer, sc, downscale, eval_views, lpips_weights)
    old = rf.metrics()
    keep = ("method", "train_seconds", "steps", "downscale", "preset", "provenance", "pose_refinement",
            "model_size_bytes")
    extra = {k: old[k] for k in keep if k in old}
    for k, v in renderer.stats().items():
        extra["num_gaussians" if k == "gaussians" else k] = v
    save_grid(res["_samples"], rf.root / "renders" / "grid.png")
    mp = rf.root / "metrics.json"
    m = write_metrics(res, extra, mp)
    lp = "unavailable" if m["lpips"] is None else f"{m['lpips']:.4f}"
    what = "views" if held_out(m["split"]) else "TRAINING views"
    print(f"[eval] {m['eval_views']} {what} ({m['split']}): PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}, "
          f"LPIPS {lp}, {m['render_ms']:.1f} ms/view -> {mp}")
    ap = m.get("appearance_protocol")
    if ap and held_out(m["split"]):
        print(f"[eval] colour protocol (gain and offset per channel fitted on each view's left half, right half scored): "
              f"PSNR {ap['psnr']:.2f} dB (uncorrected {ap['psnr_uncorrected']:.2f} dB)")
    if m["lpips"] is None and m.get("lpips_note"):
        print(f"[eval] LPIPS unavailable: {m['lpips_note']}")
    return 0
