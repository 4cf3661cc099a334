"""``recon train SCENE``: capture folder → (SfM if needed) → trained model → evaluation → exports."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import tyro

from recon.errors import ReconError

# RGBA captures are composited on white for evaluation (the NeRF-synthetic convention), and pixels
# no Gaussian covers render white; training uses random backgrounds for RGBA data (--background).
WHITE = (1.0, 1.0, 1.0)


def _resolve_scene(scene: Path, log) -> Path:
    """Run SfM first when the folder has images or video but no poses."""
    from recon.scene.readers import detect_format

    if not scene.exists():
        raise ReconError(f"scene folder {scene} does not exist")
    fmt = detect_format(scene)
    if fmt in (None, "images", "video"):
        try:
            from recon.sfm import needs_processing, process
        except ImportError as e:  # pragma: no cover - sfm is part of the core install
            raise ReconError(f"{scene} has no camera poses and SfM is unavailable ({e})") from e
        if needs_processing(scene):
            log(f"[train] {scene} has no camera poses: running `recon process` first")
            return Path(process(scene))
    return scene


def build_config(
    preset: str,
    method: str,
    overrides: dict,
):
    from recon.train.config import TrainConfig, apply_preset

    base = TrainConfig(method=method)  # type: ignore[arg-type]
    return apply_preset(base, preset, overrides)


def auto_downscale(scene, max_side: int) -> Optional[float]:
    """The factor that brings the scene's longest image side down to ``max_side`` pixels, or None
    when the images are already that small (or there is no limit)."""
    if max_side <= 0 or not scene.frames:
        return None
    longest = max(max(f.camera.width, f.camera.height) for f in scene.frames)
    return longest / max_side if longest > max_side else None


def write_run_outputs(run: Path, method, scene, cfg, res: dict, result, scene_path: Path, log) -> dict:
    """Write metrics.json, splats.ply, cameras.json, the render grid and the curves PNG."""
    from exporters.ply import write_ply

    from recon import __version__
    from recon.eval.evaluate import save_curves, save_grid, write_metrics
    from recon.io_utils import atomic_write_text

    splats = method.export_splats()
    provenance = {
        "source": str(scene_path),
        "method": cfg.method,
        "config_hash": cfg.hash(),
        "recon_version": __version__,
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    write_ply(splats, run / "splats.ply", comments=[f"{k}: {v}" for k, v in provenance.items()])
    cams = []
    train_k = {i: k for k, i in enumerate(scene.indices("train"))}
    rot_deg, trans = [], []
    for i, f in enumerate(scene.frames):
        c = f.camera
        cam = {"name": f.name, "split": f.split, "width": c.width, "height": c.height, "K": c.K.tolist(),
               "c2w": c.c2w.tolist()}
        if getattr(method, "pose_delta", None) is not None and i in train_k:
            # Refined pose (what the model was fitted to); the input pose is kept beside it.
            refined = method.refined_c2w(train_k[i], c.c2w)
            cam["c2w"], cam["c2w_input"] = refined.tolist(), c.c2w.tolist()
            dR = refined[:3, :3].T @ c.c2w[:3, :3]
            rot_deg.append(float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1)))))
            trans.append(float(np.linalg.norm(refined[:3, 3] - c.c2w[:3, 3])))
        cams.append(cam)
    atomic_write_text(run / "cameras.json", json.dumps({"convention": "OpenCV camera-to-world", "cameras": cams}))
    if scene.points is not None and len(scene.points) > 0:
        # The sparse (SfM) points, in the same frame as the splats, for viewers.
        from recon.scene.writers import write_ply_points

        write_ply_points(run / "points.ply", scene.points, scene.point_colors)
    save_grid(res.get("_samples", []), run / "renders" / "grid.png")
    save_curves(result.curves, run / "curves.png", res.get("psnr"))
    extra = {
        "num_gaussians": method.num_primitives,
        "train_seconds": round(result.train_seconds, 2),
        "steps": result.steps,
        "model_size_bytes": (run / "splats.ply").stat().st_size,
        "downscale": cfg.downscale,
        "preset": cfg.preset,
        "provenance": provenance,
    }
    if rot_deg:
        extent = max(scene.extent(), 1e-12)
        extra["pose_refinement"] = {
            "views": len(rot_deg),
            "mean_rotation_deg": round(float(np.mean(rot_deg)), 4),
            "max_rotation_deg": round(float(np.max(rot_deg)), 4),
            "mean_translation_of_extent": round(float(np.mean(trans)) / extent, 6),
        }
    return write_metrics(res, extra, run / "metrics.json")


def main(
    scene: tyro.conf.Positional[Path],
    /,
    method: Literal["splat"] = "splat",
    preset: Literal["fast", "quality"] = "fast",
    out: Optional[Path] = None,
    downscale: Optional[float] = None,
    steps: Optional[int] = None,
    seed: Optional[int] = None,
    max_minutes: Optional[float] = None,
    resume: bool = False,
    strategy: Optional[Literal["default", "mcmc"]] = None,
    max_gaussians: Optional[int] = None,
    sh_degree: Optional[int] = None,
    background: Optional[Literal["random", "white", "black", "scene"]] = None,
    appearance: Optional[bool] = None,
    antialiased: Optional[bool] = None,
    pose_opt: Optional[bool] = None,
    eval_views: int = 0,
    lpips_weights: Optional[str] = None,
    threads: int = 0,
    view: bool = False,
) -> int:
    """Train a radiance field on a capture, evaluate it on held-out views and write the default exports.

    Args:
        scene: a scene folder (COLMAP, transforms.json, Blender, LLFF, D-NeRF) or plain photos/video
            (SfM runs first).
        method: what to train.
        preset: fast (laptop CPU: fewer steps, SH degree 2, a Gaussian cap) or quality.
        out: run folder (default: runs/<method>-<timestamp> in the current directory).
        downscale: divide image resolution by this factor (default: 1, or whatever brings the
            longest side down to the preset's limit, 640 px for fast and 1600 px for quality).
        steps: training steps (overrides the preset).
        seed: random seed; a CPU run with the same seed is repeatable.
        max_minutes: stop training after this wall time; evaluation and export still run.
        resume: continue the run in --out from its last checkpoint (same options).
        strategy: densification: gsplat's default (clone/split/prune) or MCMC.
        max_gaussians: cap on the number of Gaussians.
        sh_degree: final spherical-harmonics degree (0-3).
        background: background for RGBA captures during training.
        appearance: learn per-image exposure/white-balance compensation.
        antialiased: gsplat's antialiased (mip) rasterization.
        pose_opt: refine the training cameras' poses; refined poses go to cameras.json (input
            poses beside them) and their change to metrics.json.
        eval_views: evaluate at most this many held-out views (0: all).
        lpips_weights: local LPIPS weights (.pth); without them LPIPS is reported as unavailable.
        threads: CPU threads (0: all cores).
        view: serve the scene while it trains (`recon view`'s viewer, on 127.0.0.1).
    """
    from recon.eval.evaluate import evaluate
    from recon.scene.readers import load_scene
    from recon.train.config import TrainConfig, save_config
    from recon.train.trainer import Trainer

    log = print
    t0 = time.perf_counter()
    if resume and out is None:
        raise ReconError("--resume needs --out RUN (the run folder to continue)")
    if out is None:
        out = Path("runs") / f"{method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    cfg_path = out / "config.json"
    if resume:
        if not cfg_path.is_file():
            raise ReconError(f"cannot resume: {cfg_path} not found (was {out} made by `recon train`?)")
        saved = json.loads(cfg_path.read_text())
        cfg = TrainConfig.from_dict(saved["config"])
        if max_minutes is not None:
            cfg.max_minutes = max_minutes
        scene_path = Path(saved["scene"])
    else:
        if cfg_path.exists() and any((out / "checkpoints").glob("*.pt")):
            raise ReconError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        ov: dict = {}
        for k, v in {"downscale": downscale, "steps": steps, "seed": seed, "max_minutes": max_minutes,
                     "background": background, "threads": threads or None,
                     "max_eval_views": eval_views or None}.items():
            if v is not None:
                ov[k] = v
        sp = {k: v for k, v in {"strategy": strategy, "max_gaussians": max_gaussians, "sh_degree": sh_degree,
                                "appearance": appearance, "antialiased": antialiased,
                                "pose_opt": pose_opt}.items() if v is not None}
        if sp:
            ov["splat"] = sp
        cfg = build_config(preset, method, ov)
        if cfg.downscale <= 0:
            raise ReconError(f"--downscale must be > 0 (got {cfg.downscale})")
        if not 0 <= cfg.splat.sh_degree <= 3:
            raise ReconError(f"--sh-degree must be 0..3 (got {cfg.splat.sh_degree})")
        scene_path = _resolve_scene(Path(scene), log)
    sc = load_scene(scene_path, background=WHITE)
    if not resume:
        auto = None if downscale is not None else auto_downscale(sc, cfg.max_side)
        if auto is not None:
            cfg.downscale = auto
            log(f"[train] images are up to {round(auto * cfg.max_side)} px: training at 1/{auto:.3g} "
                f"(longest side {cfg.max_side} px, the {cfg.preset} preset's limit; --downscale overrides)")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg_path, {"scene": str(scene_path)})
    log(f"[train] scene {scene_path} ({sc.format}): {len(sc.split('train'))} train / "
        f"{len(sc.split('test')) or len(sc.split('val'))} held-out views; run folder {out}")
    callbacks = []
    if view:
        from viewer.live import LiveViewer

        callbacks.append(LiveViewer(log=log))
    trainer = Trainer(cfg, sc, out, callbacks=callbacks, log=log)
    if resume:
        ck = trainer.latest_checkpoint()
        if ck is None:
            raise ReconError(f"cannot resume: no checkpoint in {out / 'checkpoints'}")
        trainer.load_checkpoint(ck)
        log(f"[train] resumed from {ck} at step {trainer.step}")
    else:
        log(f"[train] init: {getattr(trainer.method, 'init_source', '')}")
    result = trainer.train()
    if result.interrupted:
        for cb in callbacks:
            cb.on_end(trainer, {})
        return 130
    res = evaluate(trainer.method, sc, cfg.downscale, cfg.max_eval_views, lpips_weights, log=log)
    metrics = write_run_outputs(out, trainer.method, sc, cfg, res, result, scene_path, log)
    for cb in callbacks:
        cb.on_end(trainer, metrics)
    lp = "unavailable" if metrics["lpips"] is None else f"{metrics['lpips']:.4f}"
    log(
        f"[done] {metrics['eval_views']} held-out views ({metrics['split']}): PSNR {metrics['psnr']:.2f} dB, "
        f"SSIM {metrics['ssim']:.4f}, LPIPS {lp} | {metrics['num_gaussians']:,} Gaussians | "
        f"train {metrics['train_seconds']:.0f} s | total {time.perf_counter() - t0:.0f} s"
    )
    log(f"[done] run folder: {out}")
    log(f"  splats:  {out / 'splats.ply'}")
    log(f"  metrics: {out / 'metrics.json'}   renders: {out / 'renders' / 'grid.png'}   curves: {out / 'curves.png'}")
    log(f"  export:  recon export {out} --format all")
    log(f"  view:    recon view {out}        video: recon render {out}")
    return 0
