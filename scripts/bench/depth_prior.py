"""Depth priors on a sparse-view synthetic scene: does a monocular-like depth prior help held-out depth
without costing held-out PSNR?

    .venv/bin/python scripts/bench/depth_prior.py                    # room, 40 views at 64 px, 10 train, 1500 steps
    .venv/bin/python scripts/bench/depth_prior.py --views 48 --train 8 --res 96 --steps 2000
    .venv/bin/python scripts/bench/depth_prior.py --threads 1 --train 8

The scene is the built-in ``room``; every ``views / train``-th view trains, the rest are held out.
Every run starts from the same "SfM points": surface points back-projected from the training views'
true depth at random pixels (``--points`` per view, 0.5 % depth noise), as SfM would triangulate
them. The depth priors of the training views are:

* **mono-like**: the true depth turned into what a relative monocular model gives: inverse depth
  times an unknown per-image scale plus an unknown shift, with a smooth low-frequency distortion
  (5 %) and per-pixel noise (2 %); then aligned to the SfM points seen in that view by recon's robust
  scale/shift fit (``recon.priors.depth.fit_scale_shift``, inverse-depth mode), as
  ``recon process --depth-model`` does;
* **sfm fallback**: the SfM points densified per view (``recon.priors.depth.densify``), as
  ``recon process --depth-model sfm`` does.

Each prior is trained with ``--depth-loss ssi`` (and ``l1`` for the mono-like one). Prints held-out
PSNR and held-out depth error (mean |d - d_gt| / d_gt over pixels the render covers) per run.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def backproject(cam, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """World points ``[N, 3]`` of pixels ``uv`` (pixel-centre coordinates) at camera depth ``z``."""
    x = (uv[:, 0] - cam.K[0, 2]) / cam.K[0, 0] * z
    y = (uv[:, 1] - cam.K[1, 2]) / cam.K[1, 1] * z
    pc = np.stack([x, y, z, np.ones_like(z)], 1)
    return (pc @ cam.c2w.T)[:, :3]


def sfm_points(scene, train: list[int], per_view: int, rng) -> np.ndarray:
    pts = []
    for i in train:
        d = scene.depth(i)
        ys, xs = np.nonzero(d > 0)
        pick = rng.choice(len(xs), size=min(per_view, len(xs)), replace=False)
        uv = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1).astype(np.float64)
        z = d[ys[pick], xs[pick]].astype(np.float64) * (1 + 0.005 * rng.standard_normal(len(pick)))
        pts.append(backproject(scene.camera(i), uv, z))
    return np.concatenate(pts)


def smooth_field(h: int, w: int, rng, cells: int = 4) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    g = torch.from_numpy(rng.standard_normal((1, 1, cells, cells)).astype(np.float32))
    return F.interpolate(g, size=(h, w), mode="bicubic", align_corners=True)[0, 0].numpy()


def mono_like(gt: np.ndarray, rng) -> np.ndarray:
    """What a relative monocular model predicts for true depth ``gt``: affine in inverse depth with an
    unknown scale and shift, a smooth distortion and per-pixel noise (0 stays unknown)."""
    inv = np.where(gt > 0, 1.0 / np.maximum(gt, 1e-9), 0.0)
    valid = gt > 0
    spread = float(inv[valid].std())
    s, t = rng.uniform(0.3, 3.0), rng.uniform(-1.0, 1.0) * float(inv[valid].mean())
    pred = s * (inv + spread * (0.05 * smooth_field(*gt.shape, rng) + 0.02 * rng.standard_normal(gt.shape))) + t
    return np.where(valid, pred, float(np.min(pred[valid]))).astype(np.float32)


def held_out(tr, scene, test: list[int], truth) -> tuple[float, float, float]:
    """Mean PSNR, mean abs-rel depth error and coverage over the held-out views."""
    import torch

    r = tr.method.renderer()
    psnr, err, cov = [], [], []
    for i in test:
        out = r.render(scene.camera(i), outputs=("rgb", "depth"))
        gt_rgb = torch.from_numpy(scene.image(i))
        mse = float(((out.rgb.clamp(0, 1) - gt_rgb) ** 2).mean())
        psnr.append(-10 * math.log10(max(mse, 1e-12)))
        gt = torch.from_numpy(truth.depth(i))
        ok = (gt > 0) & (out.alpha[..., 0] > 0.5)
        err.append(float(((out.depth[..., 0] - gt).abs() / gt)[ok].mean()))
        cov.append(float(ok.sum()) / max(1, int((gt > 0).sum())))
    return float(np.mean(psnr)), float(np.mean(err)), float(np.mean(cov))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--train", type=int, default=10, help="training views (8-12 for the sparse-view setting)")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--points", type=int, default=300, help="SfM points per training view")
    ap.add_argument("--weight", type=float, default=0.2, help="--depth-weight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="none,mono-ssi,mono-l1,sfm-ssi")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch and CPU rasterizer threads (0: all)")
    args = ap.parse_args()
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import scenes
    from recon.methods.splat import SplatConfig
    from recon.priors import depth as D
    from recon.priors.stage import _sample, sfm_samples
    from recon.scene.readers import load_scene
    from recon.train.config import TrainConfig
    from recon.train.trainer import Trainer

    work = args.work or Path(tempfile.mkdtemp(prefix="recon-depth-prior-"))
    work.mkdir(parents=True, exist_ok=True)
    root = scenes.synth("room", work / "room", views=args.views, res=args.res, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    base = load_scene(root)
    n = len(base.frames)
    train = sorted({int(round(k * n / args.train)) for k in range(args.train)})
    test = [i for i in range(n) if i not in train]
    points = sfm_points(base, train, args.points, rng)
    base.points = points
    samples = sfm_samples(base, Path("/nonexistent"))  # projected points with the stage's occlusion test

    priors: dict[str, dict[int, np.ndarray]] = {"mono": {}, "sfm": {}}
    prior_err: dict[str, list[float]] = {"mono": [], "sfm": [], "mono_cov": [], "sfm_cov": []}
    for i in train:
        gt = base.depth(i)
        uv, z = samples[i]
        pred = mono_like(gt, rng)
        al = D.fit_scale_shift(_sample(pred, uv), z, "inverse")
        priors["mono"][i] = al.apply(pred, max_depth=float(z.max()) * 10)
        priors["sfm"][i] = D.densify(uv, z, gt.shape[0], gt.shape[1], "none", 6.0)
        for k in ("mono", "sfm"):
            m = priors[k][i]
            ok = (m > 0) & (gt > 0)
            prior_err[k].append(float((np.abs(m[ok] - gt[ok]) / gt[ok]).mean()))
            prior_err[k + "_cov"].append(float(ok.sum()) / max(1, int((gt > 0).sum())))
    for k, maps in priors.items():
        (work / k).mkdir(exist_ok=True)
        for i, m in maps.items():
            np.save(work / k / f"{i:05d}.npy", m.astype(np.float16))

    rows = []
    for name in args.runs.split(","):
        kind, _, loss = name.partition("-")
        sc = load_scene(root)
        sc.points = points
        for i, f in enumerate(sc.frames):
            f.split = "train" if i in train else "test"
            f.depth_path = (work / kind / f"{i:05d}.npy") if (kind != "none" and i in train) else None
        sp = SplatConfig(sh_degree=1, refine_start=100, refine_every=100, reset_every=100_000, refine_stop_fraction=0.7,
                         max_gaussians=30_000)
        cfg = TrainConfig(steps=args.steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, model=sp, seed=args.seed,
                          depth_loss=loss or "none", depth_weight=args.weight, background="scene")
        t0 = time.perf_counter()
        tr = Trainer(cfg, sc, work / f"run-{name}", log=lambda s: None)
        tr.train()
        wall = time.perf_counter() - t0
        p, e, c = held_out(tr, sc, test, base)
        rows.append((name, p, e, c, wall))
        print(f"{name}: held-out PSNR {p:.2f} dB, depth error {e:.4f}, coverage {c:.3f}, {wall:.0f} s", flush=True)

    cmd = shlex.join([".venv/bin/python", "scripts/bench/depth_prior.py"] + sys.argv[1:])
    print()
    print(f"command: {cmd}")
    print(f"room: {n} views at {args.res} px, {len(train)} training views, {len(test)} held out, {args.steps} steps, "
          f"{len(points)} SfM points, --depth-weight {args.weight}")
    print(f"training priors vs truth: mono-like aligned mean abs-rel {np.mean(prior_err['mono']):.4f} "
          f"(coverage {np.mean(prior_err['mono_cov']):.3f}); sfm fallback {np.mean(prior_err['sfm']):.4f} "
          f"(coverage {np.mean(prior_err['sfm_cov']):.3f})")
    print()
    print("| run | held-out PSNR (dB) | held-out depth error (abs rel) | vs no prior | coverage | wall (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    ref = next((r for r in rows if r[0] == "none"), None)
    for name, p, e, c, wall in rows:
        rel = "" if ref is None or name == "none" else f"{100 * (e - ref[2]) / ref[2]:+.1f} %, PSNR {p - ref[1]:+.2f} dB"
        print(f"| {name} | {p:.2f} | {e:.4f} | {rel} | {c:.3f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
