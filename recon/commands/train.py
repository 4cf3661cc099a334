"""``recon train SCENE``: capture folder → (SfM if needed) → trained model → evaluation → run folder.

Options come from the config dataclasses (:class:`recon.train.config.TrainConfig` and the method's
``Config``), so every option is settable, booleans are flags (``--pose-opt`` / ``--no-pose-opt``)
and ``--help`` shows the chosen method's options (``recon train --method NAME --help``).
``--preset`` sets defaults that explicit options override. ``--resume`` continues ``--out`` from
its last checkpoint with the run's own options; it may raise ``--steps`` and change
``--max-minutes`` (and options that do not change results, such as ``--threads``); any other
changed option is refused, naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Optional

import tyro

from recon.errors import ReconError
from recon.run import EVAL_BACKGROUND

PresetName = Literal["fast", "quality", "mcmc"]


def _resolve_scene(scene: Path, log) -> Path:
    """Run SfM first when the folder has images or video but no poses."""
    from recon.scene.readers import detect_format

    if not scene.exists():
        raise ReconError(f"scene folder {scene} does not exist")
    fmt = detect_format(scene)
    if fmt in (None, "images", "video"):
        from recon.sfm import needs_processing, process

        if needs_processing(scene):
            log(f"[train] {scene} has no camera poses: running `recon process` first")
            return Path(process(scene))
    return scene


def auto_downscale(scene, max_side: int) -> Optional[float]:
    """The factor that brings the scene's longest image side down to ``max_side`` pixels, or None
    when the images are already that small (or there is no limit)."""
    if max_side <= 0 or not scene.frames:
        return None
    longest = max(max(f.camera.width, f.camera.height) for f in scene.frames)
    return longest / max_side if longest > max_side else None


@dataclass
class TrainArgs:
    """Train a radiance field on a capture, evaluate it on held-out views and write the run folder.

    The training options (``config``: :class:`recon.train.config.TrainConfig` with the method's own
    ``Config`` as ``model``) are added per method by :func:`_args_type`."""

    scene: tyro.conf.Positional[Optional[Path]] = None
    """A scene folder (COLMAP, transforms.json, Blender, LLFF) or plain photos/video (SfM runs first)."""
    out: Optional[Path] = None
    """Run folder (default: runs/<method>-<timestamp> in the current folder)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint (its own options; --steps may be raised)."""
    method: str = "splat"
    """What to train (recon train --method NAME --help lists that method's options)."""
    preset: PresetName = "fast"
    """fast (laptop CPU: 5k steps, SH degree 2, a Gaussian cap), quality (30k steps), or mcmc (fast
    budget with gsplat's MCMC strategy and its regularisers)."""
    view: bool = False
    """Serve the model while it trains (`recon view`'s viewer, on 127.0.0.1)."""
    lpips_weights: Optional[str] = None
    """Local LPIPS weights (docs/metrics.md); without them LPIPS is reported as unavailable."""
    partition: Optional[str] = None
    """Train a large scene as NxM ground-plane blocks in parallel on a local Ray cluster (e.g. 2x2, or
    auto: about one block per 150 training views; splats only), then crop and merge them into one run
    (docs/cluster.md)."""
    address: Optional[str] = None
    """With --partition: train the blocks on the running Ray cluster at HOST:PORT (or ray://HOST:PORT)
    instead of a new local one; every node must see the scene and --out at the same paths."""
    restoration_only: bool = False
    """Refuse generative steps (--edit: exit 2), as recon process --restoration-only does; a scene's
    recon.json {"restoration_only": true} does the same."""


def _args_type(method_config: type) -> type:
    """:class:`TrainArgs` whose ``config`` is a TrainConfig with ``model: method_config`` (flat options)."""
    from recon.train.config import TrainConfig

    cfg_t = dataclasses.make_dataclass(
        "TrainConfig", [("model", tyro.conf.OmitArgPrefixes[method_config], field(default_factory=method_config))],
        bases=(TrainConfig,),
    )
    cfg_t.__doc__ = "training options"
    args_t = dataclasses.make_dataclass(
        "TrainArgs", [("config", tyro.conf.OmitArgPrefixes[cfg_t], field(default_factory=cfg_t))], bases=(TrainArgs,),
    )
    args_t.__doc__ = TrainArgs.__doc__
    return args_t


def _preparse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--method", default=None)
    p.add_argument("--preset", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--resume", action="store_true")
    ns, _ = p.parse_known_args(argv)
    return ns


@dataclass
class TrainRequest:
    args: TrainArgs
    cfg: object
    saved: object = None
    """The run's saved config when resuming."""
    run: object = None
    explicit: frozenset = frozenset()
    """Option names given on the command line (the capture-adapted budget leaves them alone)."""


def parse(argv: list[str], prog: str = "recon train", offline: bool = False) -> TrainRequest:
    """Parse ``recon train`` options (the real parser; ``--help`` prints and exits). ``offline``:
    do not open the ``--out`` run on ``--resume`` (parse the options against the method's defaults)."""
    from recon.methods import get_method
    from recon.run import RunFolder
    from recon.train.config import PRESET_NAMES, TrainConfig, changed_options, preset_config, validate

    pre = _preparse(argv)
    saved = run = None
    if pre.resume and pre.out is not None and not offline and "-h" not in argv and "--help" not in argv:
        run = RunFolder.open(Path(pre.out))
        if not run.is_recon_run:
            raise ReconError(f"cannot resume {pre.out}: it has no run.json (not a run made by this recon version)")
        saved = run.config()
        if pre.method is not None and pre.method != saved.method:
            raise ReconError(f"--method {pre.method}: the run in {pre.out} trains {saved.method}; resume without "
                             "--method or start a new run with another --out")
        if pre.preset is not None and pre.preset != saved.preset:
            raise ReconError(f"--preset {pre.preset}: the run in {pre.out} was made with --preset {saved.preset}; "
                             "resume without --preset or start a new run with another --out")
        method, default_cfg = saved.method, saved
    else:
        method = pre.method or "splat"
        preset = pre.preset or "fast"
        if preset not in PRESET_NAMES:
            raise ReconError(f"--preset {preset}: choose one of {', '.join(PRESET_NAMES)}")
        default_cfg = preset_config(method, preset)
    mcls = get_method(method)
    args_t = _args_type(mcls.Config)
    cfg_cls = [f for f in dataclasses.fields(args_t) if f.name == "config"][0].default_factory
    default = args_t(scene=None, method=method, preset=default_cfg.preset if default_cfg.preset in PRESET_NAMES
                     else "fast", config=cfg_cls(**{f.name: getattr(default_cfg, f.name)
                                                    for f in dataclasses.fields(TrainConfig)}))
    args = tyro.cli(args_t, args=argv, default=default, prog=prog, description=mcls.description or None)
    c = args.config
    cfg = TrainConfig(**{f.name: getattr(c, f.name) for f in dataclasses.fields(TrainConfig)})
    cfg.method, cfg.preset = method, (saved.preset if saved is not None else args.preset)
    validate(cfg)
    if args.lpips_weights is not None and not Path(args.lpips_weights).expanduser().exists():
        raise ReconError(f"--lpips-weights {args.lpips_weights}: no such file or folder (docs/metrics.md says "
                         "where to get the weights; leave the option out to skip LPIPS)")
    if saved is not None:
        changed = changed_options(saved, cfg)
        if changed:
            raise ReconError(
                f"--resume: {', '.join(changed)} differ from the run's own options; resume with the same options "
                f"(only --steps and --max-minutes may change) or start a new run with another --out"
            )
    from recon.train.budget import explicit_options

    return TrainRequest(args=args, cfg=cfg, saved=saved, run=run, explicit=frozenset(explicit_options(argv)))


def cli(argv: list[str]) -> int:
    """``recon train ARGV`` in-process (parse, then train)."""
    return run_request(parse(argv))


def command(req: TrainRequest) -> int:
    """What :mod:`recon.cli` runs for ``recon train`` once :func:`parse` has parsed the options."""
    return run_request(req)


command.parse = parse  # type: ignore[attr-defined]


def main(scene: Path, out: Optional[Path] = None, preset: str = "fast", downscale: Optional[float] = None,
         steps: Optional[int] = None, extra: tuple[str, ...] = ()) -> int:
    """Python entry point used by ``recon demo``: the same as the command line."""
    argv = [str(scene), "--preset", preset] + (["--out", str(out)] if out is not None else [])
    if downscale is not None:
        argv += ["--downscale", str(downscale)]
    if steps is not None:
        argv += ["--steps", str(steps)]
    return cli(argv + list(extra))


def run_request(req: TrainRequest, log=print) -> int:
    from recon.eval.evaluate import evaluate, held_out
    from recon.run import RunFolder, write_outputs
    from recon.scene.readers import load_scene
    from recon.train.trainer import Trainer

    t0 = time.perf_counter()
    args, cfg = req.args, req.cfg
    if getattr(args, "partition", None):
        if cfg.edit:
            raise ReconError("--edit does not combine with --partition (the blocks train in other processes); "
                             "train the scene whole to edit it")
        from recon.cluster.partition import run_partitioned

        return run_partitioned(req, args.partition, log=log, address=getattr(args, "address", None))
    if getattr(args, "address", None):
        raise ReconError("--address names a Ray cluster for --partition; without --partition recon train "
                         "runs here (use recon batch --address for many captures)")
    if args.resume:
        if args.out is None:
            raise ReconError("--resume needs --out RUN (the run folder to continue)")
        run = req.run
        stored_ok = _stored_scene_exists(run)
        if args.scene is not None and stored_ok and not _same_scene(run, args.scene):
            raise ReconError(f"{args.scene}: the run in {args.out} was trained on {run.scene_path()}; resume "
                             "with that scene or start a new run with another --out")
        scene_path = run.scene_path(None if stored_ok else args.scene)
        edit = _edit_callback(cfg, args, Path(scene_path), log)
        sc = load_scene(scene_path, background=EVAL_BACKGROUND, undistort=True)
        run.update(status="training", config=cfg.to_dict(), config_hash=cfg.hash(),
                   scene={"absolute": str(Path(scene_path).resolve())})
    else:
        if args.scene is None:
            raise ReconError("give the scene folder to train on: recon train SCENE [--out RUN]")
        out = args.out or Path("runs") / f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ReconError(f"--out {out} is a file; give a folder for the run")
        if (out / "run.json").exists() or (out / "config.json").exists() or any((out / "checkpoints").glob("*.pt")):
            raise ReconError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        edit = _edit_callback(cfg, args, Path(args.scene), log)
        scene_path = _resolve_scene(Path(args.scene), log)
        sc = load_scene(scene_path, background=EVAL_BACKGROUND, undistort=True)
        if cfg.downscale == 0:
            auto = auto_downscale(sc, cfg.max_side)
            cfg.downscale = auto if auto is not None else 1.0
            if auto is not None:
                log(f"[train] images are up to {round(auto * cfg.max_side)} px: training at 1/{auto:.3g} "
                    f"(longest side {cfg.max_side} px, the {cfg.preset} preset's limit; --downscale overrides)")
        # Fail on a scene the method cannot train before a run folder exists.
        from recon.train.trainer import check_scene

        check_scene(cfg.method, sc)
        from recon.train.budget import apply as apply_budget

        budget = apply_budget(cfg, sc, set(req.explicit), log=log)
        _log_distortion(sc, log)
        from recon.train.init_points import prepare_points

        points = prepare_points(sc, cfg.init_points, sc.indices("train"), log=log)
        created = not out.exists()
        run = RunFolder.create(out, cfg, scene_path, sc.format)
        run.update(init_points=points, undistorted=_distortion_record(sc), **({"budget": budget} if budget else {}))
    out = run.root
    n_held = len(sc.split("test")) or len(sc.split("val"))
    log(f"[train] scene {scene_path} ({sc.format}): {len(sc.split('train'))} train / {n_held} held-out views; "
        f"method {cfg.method}; run folder {out}")
    callbacks = []
    if args.view:
        from viewer.live import LiveViewer

        callbacks.append(LiveViewer(log=log))
    if edit is not None:
        callbacks.append(edit)
    try:
        trainer = Trainer(cfg, sc, out, callbacks=callbacks, log=log)
    except BaseException:
        if not args.resume:
            _discard_new_run(out, created)
        raise
    if args.resume:
        ck = trainer.latest_checkpoint()
        if ck is None:
            raise ReconError(f"cannot resume: no checkpoint in {out / 'checkpoints'}")
        trainer.load_checkpoint(ck)
        log(f"[train] resumed from {ck} at step {trainer.step}")
        if trainer.step >= cfg.steps:
            log(f"[train] the run is already at step {trainer.step} of {cfg.steps}: nothing to train "
                "(raise --steps to train more)")
    else:
        log(f"[train] init: {trainer.method.describe_init()}")
    try:
        result = trainer.train()
    except ReconError:
        if not args.resume and trainer.latest_checkpoint() is None:
            _discard_new_run(out, created)
        raise
    if result.interrupted:
        for cb in callbacks:
            cb.on_end(trainer, {})
        return 130
    res = evaluate(trainer.method.renderer(), sc, cfg.downscale, cfg.eval_views, args.lpips_weights, log=log)
    metrics = write_outputs(run, trainer, sc, res, result)
    if edit is not None:
        run.update(**edit.run_record(trainer))
        log(f"[train] dataset edits: {edit.provenance(trainer)['enhance_dataset_edit_replaced']} "
            f"({edit.seconds:.1f} s rendering and editing)")
    gap = generalisation_warning(result.curves, res)
    if gap is not None:
        log(gap)
        run.update(warnings=[gap])
    for cb in callbacks:
        cb.on_end(trainer, metrics)
    lp = "unavailable" if metrics["lpips"] is None else f"{metrics['lpips']:.4f}"
    what = "held-out views" if held_out(metrics["split"]) else "TRAINING views (the scene has no held-out split)"
    size = "".join(f" | {v:,.0f} {k}" for k, v in trainer.method.stats().items())
    log(
        f"[done] {metrics['eval_views']} {what} ({metrics['split']}): PSNR {metrics['psnr']:.2f} dB, "
        f"SSIM {metrics['ssim']:.4f}, LPIPS {lp}{size} | train {metrics['train_seconds']:.0f} s | "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    ap = metrics.get("appearance_protocol")
    if ap and held_out(metrics["split"]):
        log(f"[done] held-out colour protocol (gain and offset per channel fitted on each view's left half, right half scored): "
            f"PSNR {ap['psnr']:.2f} dB (uncorrected {ap['psnr_uncorrected']:.2f} dB)")
    log(f"[done] run folder: {out}")
    log(f"  model:   {run.path('model')}")
    log(f"  metrics: {out / 'metrics.json'}   renders: {out / 'renders' / 'grid.png'}   curves: {out / 'curves.png'}")
    log(f"  export:  recon export {out} --format all")
    log(f"  view:    recon view {out}        video: recon render {out}")
    return 0


def _edit_callback(cfg, args, scene_dir: Path, log):
    """The dataset-update callback of ``--edit`` (plugin loaded and checked before any work), or None."""
    if not cfg.edit:
        if args.restoration_only:
            log("[train] --restoration-only: no generative step to refuse (training uses the frames as they are)")
        return None
    from recon.enhance.dataset_update import DatasetUpdate, load_edit

    step = load_edit(cfg.edit, args.restoration_only, scene_dir if scene_dir.is_dir() else None)
    log(f"[train] dataset edits: {step.entry.name} on {cfg.edit_views} training view(s) every {cfg.edit_every} "
        f"steps from step {cfg.edit_start} (generative: the run's provenance says so)")
    return DatasetUpdate(step, cfg.edit_every, cfg.edit_start, cfg.edit_views, log=log)


GAP_WARN_DB = 6.0
"""Held-out PSNR this far below training PSNR is reported as over-fitting, with a diagnosis."""


def generalisation_warning(curves: dict, res: dict) -> Optional[str]:
    """A warning with a diagnosis when held-out PSNR falls far below training PSNR (the mean of the
    last tenth of the training curve), else ``None``. Only for a real held-out split."""
    from recon.eval.evaluate import held_out

    tr = [v for v in curves.get("psnr", []) if v == v]
    if not tr or not held_out(res.get("split", "")):
        return None
    tail = tr[-max(1, len(tr) // 10):]
    t = float(sum(tail) / len(tail))
    h = float(res["psnr"])
    if t - h < GAP_WARN_DB:
        return None
    worst = sorted(res.get("per_view", []), key=lambda r: r["psnr"])[:3]
    names = ", ".join(f"{r['name']} {r['psnr']:.1f} dB" for r in worst)
    return (f"[warn] held-out PSNR {h:.1f} dB is {t - h:.1f} dB below training PSNR {t:.1f} dB: the model "
            f"explains the training photos but not new viewpoints. Weakest held-out views: {names}. Usual causes: "
            "too few photos or too little overlap (every part of the scene should be seen by 3+ photos from "
            "different angles), held-out views that look at regions no training photo covers, or exposure "
            "changes between photos (--appearance); per-view figures are in metrics.json")


def _distortion_record(sc) -> list:
    """One entry per distinct distorted camera: its model, coefficients and the pinhole it became."""
    seen, out = set(), []
    for f in sc.frames:
        c = f.source_camera
        if c is None:
            continue
        key = (c.model, tuple(c.dist.tolist()), c.fx, c.width, c.height)
        if key in seen:
            continue
        seen.add(key)
        out.append({"model": c.model, "dist": c.dist.tolist(), "K": c.K.tolist(), "pinhole_K": f.camera.K.tolist(),
                    "frames": sum(1 for g in sc.frames if g.source_camera is not None and
                                  (g.source_camera.model, tuple(g.source_camera.dist.tolist()), g.source_camera.fx,
                                   g.source_camera.width, g.source_camera.height) == key)})
    return out


def _log_distortion(sc, log) -> None:
    from recon.scene.undistort import describe

    rec = [f for f in sc.frames if f.source_camera is not None]
    if rec:
        log(f"[train] lens distortion in {len(rec)}/{len(sc.frames)} frames: {describe(rec[0].source_camera, rec[0].camera)}")


def _discard_new_run(out: Path, created: bool) -> None:
    """Remove what this command wrote for a run that failed before its first checkpoint: the folder
    when this command created it, else only its manifest (nothing it did not create)."""
    import shutil

    if created:
        shutil.rmtree(out, ignore_errors=True)
    else:
        (out / "run.json").unlink(missing_ok=True)


def _stored_scene_exists(run) -> bool:
    try:
        run.scene_path()
        return True
    except ReconError:
        return False


def _same_scene(run, scene: Path) -> bool:
    try:
        return Path(scene).resolve() == run.scene_path().resolve()
    except ReconError:
        return False
