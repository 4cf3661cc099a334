"""``recon demo``: the whole job on the built-in scene: generate → train → evaluate → export."""

from __future__ import annotations

import time
from pathlib import Path



def main(
    out: Path = Path("demo"),
    scene: str = "turntable",
    views: int = 60,
    res: int = 256,
    downscale: float = 2.0,
    steps: int = 2000,
    formats: str = "ply,spz,splat,splat-glb,cameras",
) -> int:
    """Generate a built-in ground-truth scene, train splats on it with the fast preset, evaluate on
    held-out views and export, printing where everything is.

    Args:
        out: folder for the scene, the run and the exports.
        scene: built-in scene name.
        views: number of rendered views.
        res: rendered image size in pixels.
        downscale: training resolution divisor.
        steps: training steps.
        formats: export formats (comma-separated keys of `recon export`).
    """
    import scenes as builtin

    from recon.commands import train as train_cmd

    from exporters.export import parse_formats

    parse_formats(tuple(formats.split(",")))  # a bad format fails now, not after training
    t0 = time.perf_counter()
    out = Path(out)
    scene_dir = out / "scene"
    if not (scene_dir / "transforms.json").is_file():
        print(f"[demo] generating the built-in '{scene}' scene ({views} views, {res}x{res}) in {scene_dir}")
        builtin.synth(scene, scene_dir, views=views, res=res)
    run = out / "run"
    if (run / "checkpoints").exists():
        import shutil

        shutil.rmtree(run)
    rc = train_cmd.main(scene_dir, preset="fast", out=run, downscale=downscale, steps=steps)
    if rc:
        return rc
    from exporters.cli import main as export_main

    rc = int(export_main(run, format=tuple(formats.split(",")), out=out / "exports") or 0)
    if rc:
        return rc
    import json

    m = json.loads((run / "metrics.json").read_text())
    print(
        f"[demo] done in {time.perf_counter() - t0:.0f} s: held-out PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} "
        f"on {m['eval_views']} views, {m['num_gaussians']:,} Gaussians, {m['steps']} steps in {m['train_seconds']:.0f} s"
    )
    print(f"[demo] scene {scene_dir} | run {run} | exports {out / 'exports'}")
    print(f"[demo] look at it: recon view {run}   (or open {run / 'renders' / 'grid.png'})")
    return 0
