"""Distilling a NeRF run into Gaussian splats (the splat formats and ``recon view`` of a NeRF run).

:func:`distilled_splats` renders the NeRF from its training cameras and from extra views between
them, writes those renders as a scene (``RUN/distill/scene``: RGBA PNGs, ``transforms.json`` and the
NeRF's surface points as ``sparse_pc.ply``, the splats' initial points), and trains the splat
method on it through the one trainer (``recon train``'s own code path, :func:`recon.commands.train.
run_request`), into a splat run ``RUN/distill/run``. A few of the extra views are held out: the
PSNR of the splats against the NeRF's renders on them is recorded in ``RUN/distill/distill.json``
and in every exported file's provenance (``distilled_from: nerf``, ``distill_steps``,
``distill_psnr_vs_nerf``).

The result is cached: a second export (or ``recon view``) of the same NeRF with the same
distillation options reuses ``RUN/distill/run/splats.ply``. The cache key hashes ``nerf.npz`` and
the options.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recon.errors import ReconError

DISTILL_DIR = "distill"
DISTILL_VERSION = 1


@dataclass
class DistillOptions:
    """How a NeRF is distilled into splats.

    Attributes:
        steps: splat training steps (the ``fast`` preset's other settings).
        extra_views: extra views rendered between training cameras, as a multiple of the number
            of training views (their poses interpolate two random training cameras).
        held_out: extra views held out to measure the splats against the NeRF's renders.
        points: NeRF surface points that initialise the splats.
        threads: CPU threads of the training (0: all cores).
        max_side: longest side of the renders (0: the NeRF's training resolution).
    """

    steps: int = 5000
    extra_views: float = 1.0
    held_out: int = 8
    points: int = 50_000
    threads: int = 0
    max_side: int = 0
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 100:
            raise ReconError(f"--distill-steps {self.steps}: must be at least 100")
        if not (0 <= self.extra_views <= 10):
            raise ReconError(f"distill extra views {self.extra_views}: must be in [0, 10] times the training views")
        if self.held_out < 1:
            raise ReconError(f"distill held-out views {self.held_out}: must be at least 1")
        if self.threads < 0:
            raise ReconError(f"--threads {self.threads}: must be >= 0")

    def key(self) -> dict:
        d = asdict(self)
        d.pop("threads")  # does not change the result's meaning
        return d


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _slerp_rot(Ra: np.ndarray, Rb: np.ndarray, t: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation, Slerp

    s = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([Ra, Rb])))
    return s([t]).as_matrix()[0]


def extra_cameras(cams: list, count: int, centre: np.ndarray, seed: int = 0) -> list:
    """``count`` cameras between random pairs of ``cams`` (:class:`recon.scene.cameras.Camera`):
    the rotation slerped, the position slerped around ``centre`` (radius interpolated), the
    intrinsics of the first of the pair."""
    from recon.scene.cameras import Camera

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        i, j = rng.choice(len(cams), 2, replace=len(cams) < 2)
        a, b = cams[int(i)], cams[int(j)]
        t = float(rng.uniform(0.25, 0.75))
        pa, pb = a.c2w[:3, 3] - centre, b.c2w[:3, 3] - centre
        ra, rb = np.linalg.norm(pa), np.linalg.norm(pb)
        ua, ub = pa / max(ra, 1e-12), pb / max(rb, 1e-12)
        ang = math.acos(float(np.clip(ua @ ub, -1, 1)))
        if ang < 1e-6 or ang > math.pi - 1e-3:
            u = (1 - t) * ua + t * ub
        else:
            u = (math.sin((1 - t) * ang) * ua + math.sin(t * ang) * ub) / math.sin(ang)
        c2w = np.eye(4)
        c2w[:3, :3] = _slerp_rot(a.c2w[:3, :3], b.c2w[:3, :3], t)
        c2w[:3, 3] = centre + u / max(np.linalg.norm(u), 1e-12) * ((1 - t) * ra + t * rb)
        out.append(Camera(K=a.K.copy(), width=a.width, height=a.height, c2w=c2w))
    return out


def distill_dir(run_root: Path) -> Path:
    return Path(run_root) / DISTILL_DIR


def cached(run_root: Path, options: Optional[DistillOptions] = None) -> Optional[dict]:
    """The record of a finished distillation of this run's current NeRF (with ``options``, or any
    options when ``None``), or ``None``."""
    d = distill_dir(run_root)
    try:
        rec = json.loads((d / "distill.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    from recon.run import RunFolder

    rf = RunFolder.open(run_root)
    model = rf.require_model()
    if (not isinstance(rec, dict) or rec.get("version") != DISTILL_VERSION or rec.get("nerf_hash") != _file_hash(model)
            or not (d / "run" / "splats.ply").is_file()):
        return None
    if options is not None and rec.get("options") != options.key():
        return None
    return rec


def distill(run_root: Path, options: Optional[DistillOptions] = None, log: Callable[[str], None] = print) -> dict:
    """Distil the NeRF run at ``run_root`` into splats (or reuse a cached distillation: with
    ``options`` ``None``, one made with any options, else the defaults are trained); returns the
    record written to ``RUN/distill/distill.json`` (``splats``: the splat file, ``psnr``: splats vs
    NeRF renders on the held-out extra views, ``steps``, ``views``, ...)."""
    from recon.run import RunFolder

    run_root = Path(run_root)
    rf = RunFolder.open(run_root)
    if rf.method != "nerf":
        raise ReconError(f"{run_root} is a {rf.method} run, not a NeRF run: nothing to distil")
    rec = cached(run_root, options)  # options None: any finished distillation of this NeRF
    options = options or DistillOptions()
    options.validate()
    if rec is not None:
        log(f"distill: reusing the splats distilled from this NeRF ({rec['steps']} steps, "
            f"{rec['psnr']:.2f} dB against its renders) in {distill_dir(run_root) / 'run'}")
        return rec
    model = rf.require_model()
    t_start = time.perf_counter()
    from recon.methods.nerf import NerfRenderer, decode_field

    field = decode_field(model)
    renderer = NerfRenderer(field, float(rf.render_settings.get("t_stop", 1e-3)))
    run_cams = rf.cameras()
    if not run_cams:
        raise ReconError(f"{run_root} has no cameras.json: distillation renders the NeRF from its training cameras")
    downscale = float(rf.render_settings.get("downscale", 1.0) or 1.0)
    from exporters.mesh import scaled_camera

    def sized(c):
        side = max(c.width, c.height) / downscale
        if options.max_side:
            side = min(side, options.max_side)
        return scaled_camera(c, int(round(side)))

    train = [sized(c.camera) for c in run_cams if c.split == "train"] or [sized(c.camera) for c in run_cams]
    centre = 0.5 * (field.lo.numpy() + field.hi.numpy()).astype(np.float64)
    n_extra = int(round(options.extra_views * len(train)))
    extra = extra_cameras(train, n_extra + options.held_out, centre, options.seed)
    views = [("train", c) for c in train] + [("train", c) for c in extra[:n_extra]] + [("test", c) for c in extra[n_extra:]]

    d = distill_dir(run_root)
    scene_dir = d / "scene"
    nerf_hash = _file_hash(model)
    scene_key = {"nerf_hash": nerf_hash, **{k: v for k, v in options.key().items() if k != "steps"}}
    try:
        renders_ok = json.loads((scene_dir / "renders.json").read_text()) == scene_key
    except (OSError, json.JSONDecodeError):
        renders_ok = False
    if d.exists():  # a stale distillation (another NeRF or other options); the renders when they still fit
        for p in d.iterdir():
            if not (renders_ok and p.name == "scene"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    if renders_ok:
        log(f"distill: reusing the NeRF renders in {scene_dir} (same NeRF and views)")
    else:
        _render_scene(renderer, field, views, len(train), scene_dir, options, log)
        from recon.io_utils import atomic_write_text

        atomic_write_text(scene_dir / "renders.json", json.dumps(scene_key))
    log(f"distill: training {options.steps} steps of the fast splat preset on the renders")
    out = d / "run"
    _train(scene_dir, out, options, log)
    metrics = json.loads((out / "metrics.json").read_text())
    rec = {
        "version": DISTILL_VERSION,
        "nerf_hash": nerf_hash,
        "options": options.key(),
        "splats": str((out / "splats.ply").relative_to(run_root)),
        "steps": int(metrics.get("steps", options.steps)),
        "psnr": float(metrics["psnr"]),
        "ssim": float(metrics["ssim"]),
        "held_out_views": int(metrics.get("eval_views", options.held_out)),
        "train_views": len(train) + n_extra,
        "gaussians": int(metrics.get("num_gaussians", 0)),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    from recon.io_utils import atomic_write_text

    atomic_write_text(d / "distill.json", json.dumps(rec, indent=2))
    log(f"distill: {rec['gaussians']:,} Gaussians in {rec['seconds']:.0f} s; {rec['psnr']:.2f} dB PSNR against the "
        f"NeRF's renders on {rec['held_out_views']} held-out views (cached in {d})")
    return rec


def _render_scene(renderer, field, views, n_train: int, scene_dir: Path, options: DistillOptions, log) -> None:
    """The NeRF's renders of ``views`` (``(split, camera)``) as a nerfstudio scene in ``scene_dir``:
    RGBA PNGs, ``transforms.json`` and its surface points (``sparse_pc.ply``)."""
    from exporters.nerf_mesh import surface_point_cloud

    if scene_dir.exists():
        shutil.rmtree(scene_dir)
    (scene_dir / "images").mkdir(parents=True)
    cam0 = views[0][1]
    log(f"distill: rendering the NeRF from {n_train} training views, {len(views) - n_train - options.held_out} extra "
        f"views and {options.held_out} held-out views at {cam0.width}x{cam0.height}")
    from recon.scene.scene import Frame, Scene

    frames = []
    t0 = time.perf_counter()
    bg = np.zeros(3, np.float32)
    import cv2

    for i, (split, cam) in enumerate(views):
        o = renderer.render(cam, outputs=("rgb", "alpha"), background=bg)
        a = o.alpha.numpy()
        rgb = np.clip(o.rgb.numpy() / np.maximum(a, 1e-6), 0, 1)
        rgba = np.concatenate([rgb, a], -1)
        img = np.clip(rgba * 255 + 0.5, 0, 255).astype(np.uint8)
        path = scene_dir / "images" / f"{split}_{i:05d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA))
        frames.append(Frame(image_path=path, camera=cam, split=split, name=path.stem))
        if (i + 1) % 20 == 0 or i + 1 == len(views):
            el = time.perf_counter() - t0
            log(f"distill: rendered {i + 1}/{len(views)} views ({el:.0f} s, about "
                f"{el / (i + 1) * (len(views) - i - 1):.0f} s left)")
    pts, _, cols = surface_point_cloud(field, [c for _, c in views[:n_train]], options.points, seed=options.seed)
    scene = Scene(frames=frames, root=scene_dir, format="nerfstudio", points=pts.astype(np.float64),
                  point_colors=cols)
    from recon.scene.writers import write_transforms_json

    write_transforms_json(scene, scene_dir / "transforms.json")
    log(f"distill: {len(pts):,} NeRF surface points initialise the splats")


def _train(scene_dir: Path, out: Path, options: DistillOptions, log) -> None:
    """``recon train SCENE --method splat --preset fast ...`` into ``out``, in a child process (its
    own threads, seeds and thread pools; the caller's state is left alone), its lines relayed to
    ``log`` with a ``distill:`` prefix."""
    import os
    import subprocess
    import sys

    argv = [str(scene_dir), "--out", str(out), "--method", "splat", "--preset", "fast", "--steps",
            str(options.steps), "--downscale", "1", "--init-points", "scene", "--seed", str(options.seed),
            "--threads", str(options.threads), "--log-every-seconds", "10", "--checkpoint-every", "0"]
    code = "import sys; from recon.cli import main; sys.argv[0] = 'recon'; main()"
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-c", code, "train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-5:]
            log("distill: " + line)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0 or not (out / "metrics.json").is_file():
        raise ReconError(f"distillation training stopped (exit {rc}: {tail[-1] if tail else 'no output'}); "
                         "run the export again to restart it (the NeRF renders are kept)")


def provenance_fields(rec: dict) -> dict[str, str]:
    """What every file exported from distilled splats records about the distillation."""
    return {"distilled_from": "nerf", "distill_steps": str(rec["steps"]),
            "distill_psnr_vs_nerf": f"{rec['psnr']:.2f} dB on {rec['held_out_views']} held-out views",
            "distill_views": str(rec["train_views"])}


def distilled_splats(run_root: Path, options: Optional[DistillOptions] = None, log: Callable[[str], None] = print):
    """``(splats as torch tensors in gsplat's names, record)``: the cached or new distillation."""
    from recon.run import RunFolder

    rec = distill(run_root, options, log)
    g = RunFolder.open(Path(run_root) / DISTILL_DIR / "run").gaussians()
    return g, rec
