"""Partitioned training of one large scene (VastGaussian / CityGaussian style).

1. The ground plane: ``up`` is the mean of the cameras' up vectors (OpenCV ``-y``); the plane's two
   axes are the principal directions of the scene points projected onto it.
2. Blocks: an ``nx x ny`` grid on that plane, split at quantiles of the points so blocks hold about
   as many points each; a block's **core** is its cell (the outer cells reach to infinity), its
   **expanded** region the core grown by ``margin`` of its size on every side.
3. Cameras: a training view goes to a block when its centre lies in the expanded region or when at
   least ``min_visible`` of the block's points project into its image in front of it.
4. Each block is an ordinary ``recon train`` run on a block scene (a ``transforms.json`` listing
   its views, referring to the original images, with the points of its expanded region as the
   initialisation), trained as a Ray task; blocks run in parallel.
5. Merge: each block's Gaussians are cropped to its core and concatenated into one splat run
   (``run.json``, ``splats.ply``, ``cameras.json``, ``metrics.json`` on the whole scene's held-out
   views), which eval, view, export and render read like any run.

The scene points are the SfM points when the scene has them, else points back-projected from its
depth maps, else random points in the box the splat method would initialise in.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from recon.errors import ReconError

PLAN_FILE = "partition.json"


def parse_grid(spec: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(spec))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1 or int(m.group(1)) * int(m.group(2)) < 2:
        raise ReconError(f"--partition {spec}: give the grid as NxM with at least 2 blocks, e.g. 2x2")
    nx, ny = int(m.group(1)), int(m.group(2))
    if nx * ny > 64:
        raise ReconError(f"--partition {spec}: at most 64 blocks")
    return nx, ny


@dataclass
class Block:
    """One block: grid cell ``(i, j)``, its core and expanded rectangles ``[umin, umax, vmin, vmax]``
    on the ground plane, and the scene frame indices of its training views."""

    i: int
    j: int
    core: list[float]
    expanded: list[float]
    frames: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"block_{self.i}_{self.j}"


@dataclass
class Plan:
    origin: list[float]
    u: list[float]
    v: list[float]
    up: list[float]
    blocks: list[Block]

    def ground(self, xyz: np.ndarray) -> np.ndarray:
        """``[N, 2]`` ground-plane coordinates of points ``[N, 3]``."""
        d = np.asarray(xyz, np.float64) - np.asarray(self.origin)
        return np.stack([d @ np.asarray(self.u), d @ np.asarray(self.v)], axis=1)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Plan":
        return Plan(d["origin"], d["u"], d["v"], d["up"], [Block(**b) for b in d["blocks"]])


def inside(uv: np.ndarray, rect) -> np.ndarray:
    umin, umax, vmin, vmax = rect
    return (uv[:, 0] >= umin) & (uv[:, 0] < umax) & (uv[:, 1] >= vmin) & (uv[:, 1] < vmax)


def scene_points(scene, max_points: int = 200_000, seed: int = 0) -> np.ndarray:
    """``[P, 3]`` points of the scene's content (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if scene.points is not None and len(scene.points) > 0:
        p = np.asarray(scene.points, np.float64)
        return p[rng.choice(len(p), max_points, replace=False)] if len(p) > max_points else p
    idx = [i for i in scene.indices("train") if scene.frames[i].depth_path is not None]
    if idx:
        pts = []
        per = max(1, max_points // len(idx))
        for i in idx:
            cam = scene.camera(i, 4.0)
            d = scene.depth(i, 4.0)
            ys, xs = np.nonzero(d > 0)
            if len(ys) == 0:
                continue
            k = rng.choice(len(ys), min(per, len(ys)), replace=False)
            ys, xs, z = ys[k], xs[k], d[ys[k], xs[k]]
            Kinv = np.linalg.inv(cam.K)
            rays = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], 1) @ Kinv.T
            pc = rays * z[:, None]
            pts.append(pc @ cam.c2w[:3, :3].T + cam.c2w[:3, 3])
        if pts:
            return np.concatenate(pts)
    from recon.methods.splat import estimate_init_box

    c, half = estimate_init_box(scene)
    return c + rng.uniform(-half, half, size=(20_000, 3))


def make_plan(scene, points: np.ndarray, nx: int, ny: int, margin: float = 0.2,
              min_visible: float = 0.15) -> Plan:
    """Blocks and their training views (see the module docstring)."""
    train = scene.indices("train")
    c2ws = np.stack([scene.frames[i].camera.c2w for i in train])
    up = -c2ws[:, :3, 1].mean(0)
    up /= max(np.linalg.norm(up), 1e-12)
    origin = np.median(points, axis=0)
    flat = (points - origin) - np.outer((points - origin) @ up, up)
    _, _, vt = np.linalg.svd(flat[:: max(1, len(flat) // 20000)], full_matrices=False)
    u = vt[0] - (vt[0] @ up) * up
    u /= np.linalg.norm(u)
    v = np.cross(up, u)
    plan = Plan(origin.tolist(), u.tolist(), v.tolist(), up.tolist(), [])
    uv = plan.ground(points)
    inf = float("inf")
    ucuts = np.quantile(uv[:, 0], np.linspace(0, 1, nx + 1))
    for i in range(nx):
        u0, u1 = (-inf if i == 0 else ucuts[i]), (inf if i == nx - 1 else ucuts[i + 1])
        col = uv[(uv[:, 0] >= u0) & (uv[:, 0] < u1)]
        vcuts = np.quantile(col[:, 1], np.linspace(0, 1, ny + 1)) if len(col) else np.linspace(-1, 1, ny + 1)
        for j in range(ny):
            v0, v1 = (-inf if j == 0 else vcuts[j]), (inf if j == ny - 1 else vcuts[j + 1])
            # the expansion is sized on the finite extent of the cell (points' 1-99 % range at the edges)
            fu0 = ucuts[i] if i else np.quantile(uv[:, 0], 0.01)
            fu1 = ucuts[i + 1] if i < nx - 1 else np.quantile(uv[:, 0], 0.99)
            fv0 = vcuts[j] if j else np.quantile(col[:, 1], 0.01) if len(col) else -1
            fv1 = vcuts[j + 1] if j < ny - 1 else np.quantile(col[:, 1], 0.99) if len(col) else 1
            mu, mv = margin * max(fu1 - fu0, 1e-9), margin * max(fv1 - fv0, 1e-9)
            plan.blocks.append(Block(i, j, [float(u0), float(u1), float(v0), float(v1)],
                                     [float(u0 - mu), float(u1 + mu), float(v0 - mv), float(v1 + mv)]))
    cam_uv = plan.ground(c2ws[:, :3, 3])
    for b in plan.blocks:
        bp = points[inside(uv, b.core)]
        if len(bp) > 4000:
            bp = bp[np.linspace(0, len(bp) - 1, 4000).astype(int)]
        in_exp = inside(cam_uv, b.expanded)
        for k, fi in enumerate(train):
            if in_exp[k] or (len(bp) and _visible_fraction(scene.frames[fi].camera, bp) >= min_visible):
                b.frames.append(fi)
        if not b.frames:
            raise ReconError(f"--partition: block {b.i},{b.j} is seen by no training view; use fewer blocks")
    return plan


def _visible_fraction(cam, pts: np.ndarray) -> float:
    w2c = np.linalg.inv(cam.c2w)
    pc = pts @ w2c[:3, :3].T + w2c[:3, 3]
    front = pc[:, 2] > 1e-6
    if not front.any():
        return 0.0
    pix = pc[front] @ cam.K.T
    x, y = pix[:, 0] / pix[:, 2], pix[:, 1] / pix[:, 2]
    ok = (x >= 0) & (x < cam.width) & (y >= 0) & (y < cam.height)
    return float(ok.sum()) / len(pts)


def write_block_scene(scene, plan: Plan, block: Block, points: np.ndarray, folder: Path) -> Path:
    """A block's scene: ``transforms.json`` of its training views (held-out views are scored on the
    merged model) referring to the original images, plus the points of its expanded region."""
    from recon.scene.scene import Scene
    from recon.scene.writers import write_transforms_json

    frames = [scene.frames[i] for i in block.frames]
    pts = points[inside(plan.ground(points), block.expanded)]
    sub = Scene(frames=frames, root=folder, format=scene.format, points=pts if len(pts) else None,
                background=scene.background)
    folder.mkdir(parents=True, exist_ok=True)
    return write_transforms_json(sub, folder / "transforms.json").parent


def crop_to_core(splats: dict, plan: Plan, block: Block) -> dict:
    """The Gaussians of ``splats`` whose centres lie in the block's core."""
    from recon.models.splats import as_numpy, subset

    s = as_numpy(splats)
    return subset(s, inside(plan.ground(s["means"]), block.core))


def merge(parts: list[dict]) -> dict:
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in keys}


def _train_block(spec: dict) -> dict:
    """Ray task: train one block as an ordinary run (resumed when it has a checkpoint)."""
    import contextlib

    from recon.cluster.task import run_state
    from recon.commands.train import TrainArgs, TrainRequest, run_request
    from recon.run import RunFolder
    from recon.train.config import TrainConfig

    run = Path(spec["run"])
    t0 = time.perf_counter()
    state = run_state(run)
    if state == "done":
        return {"name": spec["name"], "status": "done", "seconds": 0.0, "skipped": True}
    if state == "stale":
        import shutil

        shutil.rmtree(run)
    cfg = TrainConfig.from_dict(spec["config"])
    resume = state == "resumable"
    args = TrainArgs(scene=Path(spec["scene"]), out=run, resume=resume, method=cfg.method)
    req = TrainRequest(args=args, cfg=cfg, run=RunFolder.open(run) if resume else None)
    with open(str(run) + ".log", "a", buffering=1) as fh, contextlib.redirect_stdout(fh), \
            contextlib.redirect_stderr(fh):
        code = run_request(req, log=lambda m: print(m, flush=True))
    return {"name": spec["name"], "status": "done" if code == 0 else "failed", "code": code,
            "seconds": time.perf_counter() - t0}


def run_partitioned(req, grid: str, log=print, address: Optional[str] = None) -> int:
    """``recon train SCENE --partition NxM``: plan, train the blocks on Ray, crop, merge, evaluate."""
    from recon.cluster import ray_env
    from recon.commands.train import _resolve_scene
    from recon.eval.evaluate import evaluate, held_out, save_grid, write_metrics
    from recon.io_utils import atomic_write_text
    from recon.models import splats as splat_model
    from recon.models.splats_io import read_ply, write_ply
    from recon.run import EVAL_BACKGROUND, RunCamera, RunFolder, write_cameras
    from recon.scene.readers import load_scene

    nx, ny = parse_grid(grid)
    args, cfg = req.args, req.cfg
    if cfg.method != "splat":
        raise ReconError(f"--partition trains Gaussian splats (--method splat), not {cfg.method}")
    if args.scene is None or args.out is None:
        raise ReconError("--partition needs the scene and --out RUN")
    if args.view:
        raise ReconError("--partition cannot serve the model while it trains (--view); view the merged run")
    out = Path(args.out)
    t0 = time.perf_counter()
    if (out / "run.json").is_file() and RunFolder.open(out).status == "done":
        raise ReconError(f"{out} already holds a finished run; choose another --out")
    scene_path = _resolve_scene(Path(args.scene), log)
    sc = load_scene(scene_path, background=EVAL_BACKGROUND, undistort=True)
    if cfg.downscale == 0:
        from recon.commands.train import auto_downscale

        auto = auto_downscale(sc, cfg.max_side)
        cfg.downscale = auto if auto is not None else 1.0
    plan_path = out / PLAN_FILE
    points = scene_points(sc, seed=cfg.seed)
    plan = make_plan(sc, points, nx, ny)
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old.get("grid") != [nx, ny] or old.get("config_hash") != cfg.hash():
            raise ReconError(f"{out} holds a partitioned run with another grid or other options; use another --out")
        plan = Plan.from_dict(old["plan"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan_path, json.dumps({"grid": [nx, ny], "config_hash": cfg.hash(), "plan": plan.to_dict()},
                                            indent=1))
    nb = len(plan.blocks)
    steps = max(1, cfg.steps // nb)
    bcfg = cfg.to_dict()
    bcfg.update(steps=steps, threads=1, downscale=cfg.downscale)
    # A block trains 1/nb of the steps: its step-counted schedules shrink with it, so each block
    # densifies, raises its SH degree and resets opacities as a whole run would.
    frac = steps / max(cfg.steps, 1)
    for k in ("refine_start", "refine_every", "reset_every", "sh_degree_interval"):
        if k in bcfg["model"]:
            bcfg["model"][k] = max(1, int(round(bcfg["model"][k] * frac)))
    specs = []
    for b in plan.blocks:
        bscene = write_block_scene(sc, plan, b, points, out / "blocks" / f"{b.name}.scene")
        specs.append({"name": b.name, "scene": str(bscene.resolve()), "run": str((out / "blocks" / b.name).resolve()),
                      "config": bcfg})
    log(f"[partition] {nx}x{ny} blocks on the ground plane; training views per block: "
        f"{', '.join(str(len(b.frames)) for b in plan.blocks)} of {len(sc.indices('train'))}; {steps} steps each "
        f"({cfg.steps} in all)")
    cluster = ray_env.start(address, log=log)
    import ray

    try:
        task = ray.remote(_train_block).options(num_cpus=1, memory=int(2e9), max_retries=1)
        refs = {task.remote(s): s["name"] for s in specs}
        results = []
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=5.0)
            for r in ready:
                name = refs.pop(r)
                res = ray.get(r)
                results.append(res)
                log(f"[partition] {name}: {res['status']} in {res['seconds']:.0f} s ({nb - len(refs)}/{nb} blocks, "
                    f"elapsed {time.perf_counter() - t0:.0f} s)")
    finally:
        cluster.shutdown()
    failed = [r for r in results if r["status"] != "done"]
    if failed:
        raise ReconError(f"--partition: block(s) {', '.join(r['name'] for r in failed)} failed; see "
                         f"{out / 'blocks'}/NAME.log and re-run the same command to resume")
    parts, per_block = [], []
    for b in plan.blocks:
        g = read_ply(out / "blocks" / b.name / "splats.ply")
        kept = crop_to_core(g, plan, b)
        per_block.append({"block": b.name, "gaussians": splat_model.count(g), "kept": splat_model.count(kept),
                          "views": len(b.frames)})
        parts.append(kept)
    merged = merge(parts)
    run = RunFolder.create(out, cfg, scene_path, sc.format)
    write_ply(merged, out / "splats.ply", comments=[f"partition: {nx}x{ny}"])
    cams = [RunCamera(name=f.name, c2w=f.camera.c2w, K=f.camera.K, width=f.camera.width, height=f.camera.height,
                      split=f.split) for f in sc.frames]
    write_cameras(out / "cameras.json", cams)
    render = {"background": list(EVAL_BACKGROUND), "downscale": cfg.downscale,
              "antialiased": bool(cfg.model.antialiased), "sh_degree": int(cfg.model.sh_degree)}
    renderer = splat_model.SplatRenderer(merged, antialiased=render["antialiased"])
    res = evaluate(renderer, sc, cfg.downscale, cfg.eval_views, args.lpips_weights, log=log)
    save_grid(res["_samples"], out / "renders" / "grid.png")
    wall = time.perf_counter() - t0
    m = write_metrics(res, {"method": "splat", "num_gaussians": splat_model.count(merged), "steps": steps * nb,
                            "train_seconds": round(wall, 2), "model_size_bytes": (out / "splats.ply").stat().st_size,
                            "downscale": cfg.downscale, "preset": cfg.preset,
                            "partition": {"grid": [nx, ny], "blocks": per_block}}, out / "metrics.json")
    run.update(status="done", artifacts={"model": "splats.ply", "cameras": "cameras.json", "metrics": "metrics.json"},
               render=render, steps=steps * nb, partition={"grid": [nx, ny], "plan": PLAN_FILE})
    what = "held-out views" if held_out(m["split"]) else "TRAINING views"
    log(f"[done] merged {nb} blocks: {m['eval_views']} {what}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} | "
        f"{m['num_gaussians']:,} gaussians | wall {wall:.0f} s")
    log(f"[done] run folder: {out}")
    return 0
