#!/usr/bin/env python
"""4D splat benchmarks (issue 15): step-time split, and quality against static splats.

    python scripts/bench/splat4d.py timing [--sizes 10000,30000,100000] [--threads 1]
    python scripts/bench/splat4d.py lego --run RUN [--static-minutes 14] [--out DIR]
    python scripts/bench/splat4d.py static [--minutes 6] [--steps 5000] [--threads 0] [--res 128] [--warmup 1000] [--out DIR]
    python scripts/bench/splat4d.py short --method splat4d|splat [--steps 1500] [--threads 1] [--background-key auto] [--set NAME=VALUE ...]
    python scripts/bench/splat4d.py synth --scene dynamic-rig|dynamic [--views 160] [--res 128] [--cameras 8] [--steps 5000] [--minutes 12] [--threads 1] [--background-key auto] [--static] [--set NAME=VALUE ...] [--out DIR]

``timing``: one training step's forward + backward, split into the deformation and the
rasterization (200x200 view of random Gaussians), for recon's control nodes (512 nodes x 25
keyframes, 4 nodes per Gaussian) and, as the alternative the issue weighed, a 4D-GS-sized HexPlane
field (six planes at resolutions 64 and 128 in space, 25 in time, 16 features each, a 64-wide
MLP with three heads for position, rotation and scale; bench-only reference, not offered by
``recon train``).

``lego``: scores a ``recon train ../shared/data/dnerf_lego_tiny --method splat4d`` run on the
test *and* val splits, and trains the static ``splat`` method on the same views with their times
dropped (the only way a static method can train them) for the comparison.

``short``: one run of ``--steps`` steps (no time cap, the fast preset) on D-NeRF lego 100x100 with
method options ``--set NAME=VALUE`` (JSON values), scored on test and val: the A/B runs behind the
option choices in docs/splat4d.md (equal steps, so the machine's load changes the time, not the
result).

``static``: a static scene (the built-in turntable, 40 views at 128 px) given per-view times
(a "teleporting" camera on a scene where nothing moves), trained by ``splat`` and by ``splat4d``
for the same number of steps (``--steps``) within the same wall-time cap (``--minutes``): what the
motion model's extra freedom costs when nothing moves. The warm-up must end well before the last
step for the figure to mean anything (the table gives the steps each method reached).

``synth``: the built-in synthetic dynamic scene with exact ground truth (issue 15's "synthetic
dynamic scene" line): ``recon scene synth dynamic-rig`` (8 fixed cameras x ceil(views / 8) times,
camera 0 held out at every time) or ``recon scene synth dynamic`` (monocular "teleporting" camera,
every 8th view held out), trained in process by ``splat4d`` for ``--steps`` steps within
``--minutes``. Scored: held-out PSNR/SSIM (each view at its own time) and the **object position
error** of each moving object (the cube, id 4, and the moon, id 7). The object's Gaussians are
picked by a mask vote: the model is moved to the time of each training view nearest time 0 (the
rig: the 7 training cameras at time 0; monocular: the 8 training views nearest it), its Gaussian
centres are projected into that view, and a centre votes only where it lies on the visible
surface (its camera depth within 2 % of the extent of the ground-truth depth at its pixel); a
Gaussian belongs to object k when it is opaque (opacity > 0.5), got at least 2 such votes (1 for
a monocular capture) and at least 75 % of them name k in the object-id masks. For every
ground-truth time t the centroid of those Gaussians in the learnt motion (``model.at(t)``) is
compared with the centroid of their time-0 positions carried by the object's ground-truth
transform (``object_transforms`` of transforms.json, from time 0 to t); the table gives the max
and median over the times as % of the scene extent, the diagonal of ``scene.json``'s ``bbox``
(all ground-truth geometry over all times), and, for scale, the same error of a model that does
not move (time-0 positions at every time). A second selection checks the vote: the time-0 model's
opaque Gaussians whose nearest ground-truth surface (``mesh.ply``, time 0) belongs to the object
and lies within 1 % of the extent. The last column, the median over the object's Gaussians of
their own error at the worst time, shows whether the turn is learnt (a centroid can sit still
while the object turns about it: the cube turns about its own centre). ``--static`` also trains ``splat`` on the same split
with the times dropped.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


# ---- timing -----------------------------------------------------------------------------------------
class HexPlane(torch.nn.Module):
    """A 4D-GS-sized HexPlane deformation field (bench-only reference): features from the six
    planes (xy, xz, yz, xt, yt, zt) at two spatial resolutions, multiplied per resolution and
    concatenated, then a 64-wide MLP with heads for Δposition, Δrotation and Δscale."""

    def __init__(self, res=(64, 128), t_res=25, feat=16, width=64):
        super().__init__()
        self.planes = torch.nn.ParameterList()
        for r in res:
            for a, b in ((r, r), (r, r), (r, r), (t_res, r), (t_res, r), (t_res, r)):
                self.planes.append(torch.nn.Parameter(torch.empty(1, feat, a, b).uniform_(0.1, 0.5)))
        self.n_res = len(res)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(feat * len(res), width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, width), torch.nn.ReLU())
        self.heads = torch.nn.ModuleList([torch.nn.Linear(width, d) for d in (3, 4, 3)])

    def forward(self, x: torch.Tensor, t: float):
        import torch.nn.functional as F

        n = x.shape[0]
        xt = torch.cat([x.clamp(-1, 1), torch.full((n, 1), 2 * t - 1)], 1)
        pairs = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
        feats = []
        for r in range(self.n_res):
            f = 1.0
            for p, (i, j) in enumerate(pairs):
                grid = xt[:, [i, j]].view(1, n, 1, 2)
                f = f * F.grid_sample(self.planes[6 * r + p], grid, align_corners=True)[0, :, :, 0].T
            feats.append(f)
        h = self.mlp(torch.cat(feats, 1))
        return [head(h) for head in self.heads]


def bench_timing(sizes: list[int], threads: int, reps: int = 5) -> None:
    from recon.deform.nodes import ControlNodes
    from recon.models import splats as splat_model
    from recon.scene.cameras import Camera
    from recon.scene.conventions import look_at_c2w

    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(threads)
    except Exception:  # noqa: BLE001
        pass
    res = 200
    f = 0.5 * res / np.tan(np.radians(20))
    cam = Camera(K=np.array([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]]), width=res, height=res,
                 c2w=look_at_c2w(np.array([0.0, -3.0, 1.0]), np.zeros(3), np.array([0.0, 0.0, 1.0])))
    viewmat = torch.from_numpy(cam.viewmat.astype(np.float32))
    K = torch.from_numpy(cam.K.astype(np.float32))
    rows = []
    for n in sizes:
        pts = np.random.default_rng(0).uniform(-0.7, 0.7, (n, 3))
        params = splat_model.init_splats(pts, None, 2, 0.1, 1.0)
        nodes = ControlNodes.from_gaussians(params["means"], params["opacities"] + 5, 512, 25)
        with torch.no_grad():
            nodes.trans.normal_(0, 0.01)
            nodes.rot.normal_(0, 0.01)
        idx = nodes.bind(params["means"], 4)
        hex_field = HexPlane()
        out = {}
        for name in ("nodes", "hexplane"):
            t_def, t_ras = [], []
            for r in range(reps + 1):
                t0 = time.perf_counter()
                if name == "nodes":
                    m, q, s = nodes.deform(params["means"], params["quats"], params["scales"], idx, 0.37)
                else:
                    dm, dq, ds = hex_field(params["means"], 0.37)
                    m, q, s = params["means"] + dm, params["quats"] + dq, params["scales"] + ds
                t1 = time.perf_counter()
                # Rasterization with the deformed tensors as leaves, so its backward is timed alone.
                leaves = [v.detach().requires_grad_(True) for v in (m, q, s)]
                p = dict(params.items())
                p.update(means=leaves[0], quats=leaves[1], scales=leaves[2])
                img, _, _ = splat_model.render_splats(p, viewmat, K, res, res, 2, torch.ones(3))
                img.mean().backward()
                t2 = time.perf_counter()
                torch.autograd.backward([m, q, s], [v.grad for v in leaves])
                t3 = time.perf_counter()
                for v in list(params.values()) + list(nodes.parameters()) + list(hex_field.parameters()):
                    v.grad = None
                if r:  # the first repetition compiles / warms caches
                    t_def.append((t1 - t0) + (t3 - t2))
                    t_ras.append(t2 - t1)
            out[name] = (1e3 * np.median(t_def), 1e3 * np.median(t_ras))
        rows.append((n, out))
    print(f"command: python scripts/bench/splat4d.py timing --sizes {','.join(map(str, sizes))} --threads {threads}")
    print(f"one training step at {res}x{res}, forward + backward, median of {reps}, {threads} thread(s)\n")
    print("| Gaussians | nodes: deformation (ms) | HexPlane: deformation (ms) | rasterization (ms) | "
          "nodes step (ms) | HexPlane step (ms) | nodes / rasterization |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, out in rows:
        dn, rn = out["nodes"]
        dh, rh = out["hexplane"]
        ras = 0.5 * (rn + rh)
        print(f"| {n:,} | {dn:.1f} | {dh:.1f} | {ras:.1f} | {dn + ras:.1f} | {dh + ras:.1f} | {dn / ras:.2f} |")


# ---- quality ----------------------------------------------------------------------------------------
def score(renderer, scene, downscale: float, split: str, grid: Optional[Path] = None) -> dict:
    """Mean PSNR/SSIM of ``renderer`` on ``split`` (each view at its own time), and each view's PSNR
    (``per_view``: name, PSNR); ``grid``: also save the render grid of the first 8 views there."""
    from recon.eval.evaluate import evaluate, save_grid

    sc = copy.copy(scene)
    sc.frames = [copy.copy(f) for f in scene.frames]
    for f in sc.frames:
        if f.split in ("test", "val") and f.split != split:
            f.split = "unused"
    r = evaluate(renderer, sc, downscale, log=lambda s: None, keep_renders=8 if grid else 0)
    assert r["split"] == split, r["split"]
    if grid is not None:
        grid.parent.mkdir(parents=True, exist_ok=True)
        save_grid(r["_samples"], grid)
    per = [(v["name"], v["psnr"]) for v in r["per_view"]]
    return {"psnr": r["psnr"], "ssim": r["ssim"], "views": r["eval_views"], "per_view": per}


def train_in_process(method: str, scene, out: Path, minutes: Optional[float], steps: int = 5000, threads: int = 0,
                     background_key: str = "auto", **model) -> tuple:
    from recon.train.config import preset_config
    from recon.train.trainer import Trainer

    cfg = preset_config(method, "fast")
    cfg.steps, cfg.max_minutes, cfg.downscale, cfg.log_every_seconds = steps, minutes, 1.0, 30.0
    cfg.threads = threads
    cfg.background_key = background_key
    apply_sets(cfg, model)
    t0 = time.perf_counter()
    tr = Trainer(cfg, scene, out, log=lambda s: print("   ", s, flush=True))
    res = tr.train()
    return tr.method.renderer(), res.steps, time.perf_counter() - t0, tr.method.num_primitives


def drop_times(scene):
    sc = copy.copy(scene)
    sc.frames = [copy.copy(f) for f in scene.frames]
    for f in sc.frames:
        f.time = None
    return sc


def bench_lego(run: Path, static_minutes: float, out: Path, threads: int) -> None:
    from recon.run import EVAL_BACKGROUND
    from recon.scene.readers import load_scene

    scene = load_scene(DATA / "dnerf_lego_tiny", background=EVAL_BACKGROUND)
    print(f"[bench] training splat on {scene.root} with the times dropped ({static_minutes} min)", flush=True)
    rs, steps, secs, n = train_in_process("splat", drop_times(scene), out / "lego-static", static_minutes,
                                          threads=threads)
    static = ("splat (times dropped)", steps, round(secs), n, score(rs, scene, 1.0, "test"),
              score(rs, scene, 1.0, "val"))
    from recon.run import RunFolder

    rf = RunFolder.open(run)
    ds = float(rf.render_settings.get("downscale", 1.0) or 1.0)
    r4 = rf.renderer()
    m = rf.metrics()
    rows = [("splat4d", m.get("steps"), m.get("train_seconds"), r4.stats().get("gaussians"),
             score(r4, scene, ds, "test"), score(r4, scene, ds, "val")), static]
    print(f"\ncommand: python scripts/bench/splat4d.py lego --run {run} --static-minutes {static_minutes} "
          f"--threads {threads}")
    print(f"splat4d run: recon train {scene.root} --method splat4d {' '.join(_run_options(rf))}\n")
    print("| method | steps | train s | Gaussians | test PSNR (dB) | test SSIM | val PSNR (dB) | val SSIM |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, steps, secs, n, te, va in rows:
        print(f"| {name} | {steps} | {secs} | {n:,} | {te['psnr']:.2f} | {te['ssim']:.4f} | {va['psnr']:.2f} | "
              f"{va['ssim']:.4f} |")


def apply_sets(cfg, options: dict) -> None:
    """Set each ``--set`` option on the method's options, or on the training options when the method
    has no such option (``background``, ``alpha_weight``, ...)."""
    import dataclasses

    own = {f.name for f in dataclasses.fields(cfg.model)}
    for k, v in options.items():
        setattr(cfg.model if k in own or not hasattr(cfg, k) else cfg, k, v)


def parse_sets(sets: list[str]) -> dict:
    """``--set NAME=VALUE`` items as method (or training) options (JSON values, else strings)."""
    model = {}
    for item in sets:
        name, _, value = item.partition("=")
        try:
            model[name.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            model[name.replace("-", "_")] = value
    return model


def bench_short(method: str, steps: int, threads: int, key: str, sets: list[str], out: Path) -> None:
    from recon.run import EVAL_BACKGROUND
    from recon.scene.readers import load_scene

    model = parse_sets(sets)
    scene = load_scene(DATA / "dnerf_lego_tiny", background=EVAL_BACKGROUND)
    sc = drop_times(scene) if method == "splat" else scene
    tag = "-".join([method, key] + [f"{k}{v}" for k, v in sorted(model.items())])
    r, done, secs, n = train_in_process(method, sc, out / f"short-{tag}", None, steps, threads,
                                        background_key=key, **model)
    te, va = score(r, scene, 1.0, "test"), score(r, scene, 1.0, "val")
    opts = " ".join(f"--set {s}" for s in sets)
    print(f"\ncommand: python scripts/bench/splat4d.py short --method {method} --steps {steps} --threads {threads} "
          f"--background-key {key} {opts}\n")
    print("| method | options | steps | train s | Gaussians | test PSNR (dB) | test SSIM | val PSNR (dB) | val SSIM |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {method} | {json.dumps(model) if model else '-'} (key {key}) | {done} | {round(secs)} | {n:,} | "
          f"{te['psnr']:.2f} | {te['ssim']:.4f} | {va['psnr']:.2f} | {va['ssim']:.4f} |")


def _run_options(rf) -> list[str]:
    c = rf.manifest.get("config", {})
    return [f"--max-minutes {c['max_minutes']}"] if c.get("max_minutes") else []


def bench_static(minutes: float, out: Path, steps: int = 5000, threads: int = 0, res: int = 128,
                 warmup: int = 1000) -> None:
    from recon.scene.readers import load_scene

    scene_dir = out / ("turntable-40" if res == 128 else f"turntable-40-{res}")
    if not (scene_dir / "transforms.json").exists():
        subprocess.run([sys.executable, "-m", "recon.cli", "scene", "synth", "turntable", str(scene_dir),
                        "--views", "40", "--res", str(res)], check=True)
    scene = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    timed = copy.copy(scene)
    timed.frames = [copy.copy(f) for f in scene.frames]
    n = len(timed.frames)
    for i, f in enumerate(timed.frames):
        f.time = i / max(n - 1, 1)
    rows = []
    for method, sc in (("splat", scene), ("splat4d", timed)):
        print(f"[bench] {method} on {scene_dir} ({minutes} min)", flush=True)
        extra = {"warmup_steps": warmup} if method == "splat4d" else {}
        r, done, secs, ng = train_in_process(method, sc, out / f"static-{method}-{res}", minutes, steps, threads, **extra)
        rows.append((method, done, round(secs), ng, score(r, timed, 1.0, "test")))
    print(f"\ncommand: python scripts/bench/splat4d.py static --minutes {minutes} --steps {steps} --threads {threads} "
          f"--res {res} --warmup {warmup}\n")
    print("| method | steps | train s | Gaussians | test PSNR (dB) | test SSIM |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, steps, secs, ng, te in rows:
        print(f"| {name} | {steps} | {secs} | {ng:,} | {te['psnr']:.2f} | {te['ssim']:.4f} |")
    print(f"\nsplat4d - splat: {rows[1][4]['psnr'] - rows[0][4]['psnr']:+.2f} dB")


def _object_vote(model, scene, root: Path, extent: float, monocular: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Each Gaussian's object id by a vote of the object-id masks of the training views nearest
    time 0 (0: no confident id), its opacity, and how many views voted (see the module doc)."""
    from PIL import Image

    doc = json.loads((root / "transforms.json").read_text())
    masks = {(root / f["file_path"]).resolve(): root / f["object_mask_path"] for f in doc["frames"]}
    depths = {(root / f["file_path"]).resolve(): root / f["depth_file_path"] for f in doc["frames"]}
    train = sorted((f for f in scene.frames if f.split == "train"), key=lambda f: (f.time or 0.0, f.name))
    t0 = train[0].time or 0.0
    views = train[:8] if monocular else [f for f in train if (f.time or 0.0) == t0]
    n = model.splats["means"].shape[0]
    max_id = 16
    votes = np.zeros((n, max_id), np.int32)
    for f in views:
        cam = f.camera
        x = model.at(f.time)["means"].numpy().astype(np.float64)
        uv, z = cam.project(x)
        mask = np.asarray(Image.open(masks[Path(f.image_path).resolve()]))
        depth = np.load(depths[Path(f.image_path).resolve()])
        sy, sx = mask.shape[0] / cam.height, mask.shape[1] / cam.width
        col = np.floor(uv[:, 0] * sx).astype(np.int64)
        row = np.floor(uv[:, 1] * sy).astype(np.int64)
        ok = (z > 0) & (col >= 0) & (col < mask.shape[1]) & (row >= 0) & (row < mask.shape[0])
        idx = np.nonzero(ok)[0]
        d = depth[row[idx], col[idx]]
        on_surface = (d > 0) & (np.abs(z[idx] - d) < 0.02 * extent)
        idx = idx[on_surface]
        ids = mask[row[idx], col[idx]].astype(np.int64)
        keep = ids < max_id
        np.add.at(votes, (idx[keep], ids[keep]), 1)
    total = votes.sum(1)
    best = votes.argmax(1)
    conf = votes[np.arange(n), best] >= 0.75 * np.maximum(total, 1)
    enough = total >= (1 if monocular else 2)
    opacity = torch.sigmoid(model.splats["opacities"]).numpy()
    label = np.where(conf & enough & (opacity > 0.5), best, 0)
    return label, opacity, len(views)


def _mesh_labels(root: Path, x: np.ndarray, radius: float) -> np.ndarray:
    """Object id of the ground-truth surface (``mesh.ply``, time 0) nearest each point, 0 where
    that surface is farther than ``radius``."""
    import open3d as o3d

    raw = (root / "mesh.ply").read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode().splitlines()
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    v = np.frombuffer(raw, vdt, nv, end)
    fdt = np.dtype([("n", "u1"), ("i", "<i4", 3), ("id", "<u2")])
    f = np.frombuffer(raw, fdt, nf, end + nv * vdt.itemsize)
    assert (f["n"] == 3).all()
    rc = o3d.t.geometry.RaycastingScene()
    rc.add_triangles(o3d.core.Tensor(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)),
                     o3d.core.Tensor(f["i"].astype(np.uint32)))
    q = rc.compute_closest_points(o3d.core.Tensor(x.astype(np.float32)))
    dist = np.linalg.norm(q["points"].numpy() - x, axis=1)
    ids = f["id"][q["primitive_ids"].numpy().astype(np.int64)].astype(np.int64)
    return np.where(dist < radius, ids, 0)


def object_errors(model, scene, root: Path, monocular: bool) -> tuple[dict, float, int]:
    """Per moving object: Gaussians picked, and centroid errors (max, median over the ground-truth
    times, % of the extent) of the learnt motion and of a model that does not move."""
    meta = json.loads((root / "scene.json").read_text())
    extent = float(np.linalg.norm(np.subtract(meta["bbox"]["max"], meta["bbox"]["min"])))
    doc = json.loads((root / "transforms.json").read_text())
    gt = {}
    for f in doc["frames"]:
        gt.setdefault(round(float(f["time"]), 9), f["object_transforms"])
    label, opacity, nviews = _object_vote(model, scene, root, extent, monocular)
    x0 = model.at(0.0)["means"].numpy().astype(np.float64)
    mesh_label = _mesh_labels(root, x0, 0.01 * extent)
    at = {t: model.at(t)["means"].numpy().astype(np.float64) for t in sorted(gt)}
    out = {}
    for obj in meta["objects"]:
        if not obj["moving"]:
            continue
        k = int(obj["id"])
        row = {"id": k, "times": len(gt)}
        for how, sel in (("vote", label == k), ("mesh", (mesh_label == k) & (opacity > 0.5))):
            row[f"n_{how}"] = int(sel.sum())
            if sel.sum() == 0:
                continue
            errs, still, per = [], [], []
            for t, tf in sorted(gt.items()):
                G = np.asarray(tf[str(k)], np.float64)
                want = x0[sel] @ G[:3, :3].T + G[:3, 3]
                errs.append(float(np.linalg.norm(at[t][sel].mean(0) - want.mean(0))))
                still.append(float(np.linalg.norm(x0[sel].mean(0) - want.mean(0))))
                per.append(float(np.median(np.linalg.norm(at[t][sel] - want, axis=1))))
            e, s = 100 * np.array(errs) / extent, 100 * np.array(still) / extent
            row[f"per_{how}"] = 100 * max(per) / extent
            row[f"times_{how}"] = [(t, float(v)) for t, v in zip(sorted(gt), e)]
            row.update({f"max_{how}": float(e.max()), f"median_{how}": float(np.median(e)),
                        f"worst_t_{how}": sorted(gt)[int(e.argmax())], f"still_max_{how}": float(s.max())})
        out[obj["name"]] = row
    return out, extent, nviews


def bench_synth(kind: str, views: int, res: int, steps: int, minutes: float, threads: int, sets: list[str],
                static: bool, out: Path, key: str = "auto", cameras: Optional[int] = None) -> None:
    import os

    from recon.run import EVAL_BACKGROUND
    from recon.scene.readers import load_scene

    model = parse_sets(sets)
    rig_opt = [] if cameras is None else ["--cameras", str(cameras)]
    scene_dir = out / f"{kind}-{views}-{res}{'' if cameras is None else f'-k{cameras}'}"
    subprocess.run([sys.executable, "-m", "recon.cli", "scene", "synth", kind, str(scene_dir), "--views", str(views),
                    "--res", str(res)] + rig_opt, check=True)
    scene = load_scene(scene_dir, background=EVAL_BACKGROUND)
    monocular = kind == "dynamic"
    tag = "-".join([kind, str(views), str(res)] + ([f"k{cameras}"] if cameras else []) + [str(steps), key] + [f"{k}{v}" for k, v in sorted(model.items())])
    load0 = os.getloadavg()
    print(f"[bench] splat4d on {scene_dir} ({steps} steps, {minutes} min cap, load {load0[0]:.1f})", flush=True)
    from recon.train.config import preset_config
    from recon.train.trainer import Trainer

    cfg = preset_config("splat4d", "fast")
    cfg.steps, cfg.max_minutes, cfg.downscale, cfg.log_every_seconds, cfg.threads = steps, minutes, 1.0, 60.0, threads
    cfg.background_key = key
    apply_sets(cfg, model)
    t0 = time.perf_counter()
    tr = Trainer(cfg, scene, out / f"synth-{tag}", log=lambda s: print("   ", s, flush=True))
    res_t = tr.train()
    secs = time.perf_counter() - t0
    load1 = os.getloadavg()
    method = tr.method
    te = score(method.renderer(), scene, 1.0, "test", grid=out / f"synth-{tag}" / "heldout-grid.png")
    errs, extent, nviews = object_errors(method._model(), scene, scene_dir, monocular)
    rows = [("splat4d", res_t.steps, round(secs), method.num_primitives, te)]
    if static:
        print(f"[bench] splat on the same views with the times dropped ({steps} steps, {minutes} min cap)", flush=True)
        rs, done, ss, ng = train_in_process("splat", drop_times(scene), out / f"synth-static-{tag}", minutes, steps,
                                            threads, background_key=key)
        rows.append(("splat (times dropped)", done, round(ss), ng, score(rs, scene, 1.0, "test")))
    opts = "".join(f" --set {s}" for s in sets)
    print(f"\ncommand: python scripts/bench/splat4d.py synth --scene {kind} --views {views} --res {res} "
          f"{' '.join(rig_opt + [''])}--steps {steps} "
          f"--minutes {minutes} --threads {threads} --background-key {key}{' --static' if static else ''}{opts}")
    print(f"scene: recon scene synth {kind} {scene_dir} --views {views} --res {res} {' '.join(rig_opt + [''])}"
          f"({len([f for f in scene.frames if f.split == 'train'])} training / {te['views']} held-out views); "
          f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end of training\n")
    print("| method | options | steps | train s | Gaussians | held-out PSNR (dB) | SSIM |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, done, s, ng, sc in rows:
        print(f"| {name} | key {key}{', ' + json.dumps(model) if model and name == 'splat4d' else ''} | {done} | {s} | {ng:,} | "
              f"{sc['psnr']:.2f} | {sc['ssim']:.4f} |")
    print(f"\nobject position error, % of the extent {extent:.3f} (bbox diagonal); Gaussians voted from {nviews} "
          f"training views nearest time 0, or the time-0 model's opaque Gaussians within 1 % of the extent of the "
          f"object's GT mesh at time 0; over {next(iter(errs.values())).get('times', 0)} ground-truth times\n")
    print("| object | Gaussians picked by | Gaussians | centroid error max (%) | median (%) | worst time | "
          "not moving: max (%) | per-Gaussian median, worst time (%) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, e in errs.items():
        for how, what in (("vote", "mask vote"), ("mesh", "GT mesh at t=0")):
            if e[f"n_{how}"] == 0:
                print(f"| {name} (id {e['id']}) | {what} | 0 | - | - | - | - | - |")
            else:
                print(f"| {name} (id {e['id']}) | {what} | {e[f'n_{how}']:,} | {e[f'max_{how}']:.2f} | "
                      f"{e[f'median_{how}']:.2f} | {e[f'worst_t_{how}']:.3f} | {e[f'still_max_{how}']:.2f} | "
                      f"{e[f'per_{how}']:.2f} |")
    print(f"\nheld-out PSNR per view (grid of the first 8: {out / f'synth-{tag}' / 'heldout-grid.png'}): "
          + ", ".join(f"{n.split('/')[-1]} {p:.1f}" for n, p in te["per_view"]))
    print("\ncentroid error at each ground-truth time (time: % of the extent), GT-mesh selection:")
    for name, e in errs.items():
        if e.get("times_mesh"):
            print(f"- {name}: " + ", ".join(f"{t:.2f}: {v:.1f}" for t, v in e["times_mesh"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="case", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--sizes", default="10000,30000,100000")
    t.add_argument("--threads", type=int, default=1)
    lg = sub.add_parser("lego")
    lg.add_argument("--run", type=Path, required=True)
    lg.add_argument("--static-minutes", type=float, default=14.0)
    lg.add_argument("--out", type=Path, default=Path("bench-runs/splat4d"))
    lg.add_argument("--threads", type=int, default=0)
    st = sub.add_parser("static")
    st.add_argument("--minutes", type=float, default=6.0)
    st.add_argument("--steps", type=int, default=5000)
    st.add_argument("--res", type=int, default=128)
    st.add_argument("--warmup", type=int, default=1000, help="splat4d's static warm-up steps")
    st.add_argument("--threads", type=int, default=0)
    st.add_argument("--out", type=Path, default=Path("bench-runs/splat4d"))
    sh = sub.add_parser("short")
    sh.add_argument("--method", choices=("splat4d", "splat"), default="splat4d")
    sh.add_argument("--steps", type=int, default=1500)
    sh.add_argument("--threads", type=int, default=1)
    sh.add_argument("--background-key", default="auto")
    sh.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    sh.add_argument("--out", type=Path, default=Path("bench-runs/splat4d"))
    sy = sub.add_parser("synth")
    sy.add_argument("--scene", choices=("dynamic-rig", "dynamic"), default="dynamic-rig")
    sy.add_argument("--views", type=int, default=160)
    sy.add_argument("--res", type=int, default=128)
    sy.add_argument("--cameras", type=int, default=None, help="dynamic-rig: fixed cameras of the stage (default 8)")
    sy.add_argument("--steps", type=int, default=5000)
    sy.add_argument("--minutes", type=float, default=12.0)
    sy.add_argument("--threads", type=int, default=1)
    sy.add_argument("--background-key", default="auto", help="recon train's --background-key")
    sy.add_argument("--static", action="store_true", help="also train splat on the same split (times dropped)")
    sy.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    sy.add_argument("--out", type=Path, default=Path("bench-runs/splat4d"))
    a = ap.parse_args()
    if a.case == "synth":
        bench_synth(a.scene, a.views, a.res, a.steps, a.minutes, a.threads, a.set, a.static, a.out, a.background_key, a.cameras)
    elif a.case == "timing":
        bench_timing([int(s) for s in a.sizes.split(",")], a.threads)
    elif a.case == "short":
        bench_short(a.method, a.steps, a.threads, a.background_key, a.set, a.out)
    elif a.case == "lego":
        bench_lego(a.run, a.static_minutes, a.out, a.threads)
    else:
        bench_static(a.minutes, a.out, a.steps, a.threads, a.res, a.warmup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
