#!/usr/bin/env python
"""NeRF speed (issue 14): recon's voxel field beside a nerfacto-style PyTorch hash grid, in one run.

Prints one table:

- recon nerf: training rays/s (sample + forward + backward + sparse Adam through the method's hooks,
  after a warm-up that reaches the final grid and a realistic occupancy) and render ms per frame at
  the scene's resolution (200x200 for lego at --downscale 2), plus samples/s of its kernels;
- hash grid: a multiresolution hash encoding (16 levels x 2 features, 2^19 entries per level,
  resolutions 16..2048, as nerfacto's field) with nerfacto's tiny density and colour MLPs, written
  in PyTorch (the route without tiny-cuda-nn), forward + backward + Adam on random points;
  rays/s counts 48 samples per ray (nerfacto's main-field samples; its proposal networks would
  cost more on top, so this is an upper bound for it).

Usage:

    python scripts/bench/nerf.py [--scene ../shared/data/nerf_synthetic/lego] [--downscale 2]
        [--warm 400] [--steps 40] [--threads 2]
    python scripts/bench/nerf.py --depth RUN   # a NeRF run on a `recon scene synth` scene: held-out
                                               # PSNR and median relative depth error
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


class HashGrid(torch.nn.Module):
    """Multiresolution hash encoding (Mueller et al. 2022) + nerfacto's MLP sizes, plain PyTorch."""

    PRIMES = (1, 2654435761, 805459861)

    def __init__(self, levels=16, feats=2, log2_table=19, base=16, top=2048):
        super().__init__()
        self.levels, self.feats, self.T = levels, feats, 2**log2_table
        b = np.exp((np.log(top) - np.log(base)) / (levels - 1))
        self.res = [int(base * b**i) for i in range(levels)]
        self.table = torch.nn.Parameter(torch.empty(levels, self.T, feats).uniform_(-1e-4, 1e-4))
        self.density = torch.nn.Sequential(torch.nn.Linear(levels * feats, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
        self.color = torch.nn.Sequential(torch.nn.Linear(16 + 16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                         torch.nn.ReLU(), torch.nn.Linear(64, 3))

    def forward(self, x, d):
        outs = []
        for lv, r in enumerate(self.res):
            g = x * r
            i0 = g.floor().long()
            f = g - i0
            acc = 0
            for c in range(8):
                o = torch.tensor([(c >> 2) & 1, (c >> 1) & 1, c & 1])
                idx = i0 + o
                h = (idx[:, 0] * self.PRIMES[0]) ^ (idx[:, 1] * self.PRIMES[1]) ^ (idx[:, 2] * self.PRIMES[2])
                w = torch.where(o.bool(), f, 1 - f).prod(-1, keepdim=True)
                acc = acc + w * self.table[lv][h % self.T]
            outs.append(acc)
        h = self.density(torch.cat(outs, -1))
        sigma = torch.nn.functional.softplus(h[:, :1])
        dir_enc = torch.cat([d, d**2, d[:, :1] * d[:, 1:], torch.zeros(d.shape[0], 16 - 8)], -1)
        rgb = torch.sigmoid(self.color(torch.cat([h, dir_enc], -1)))
        return sigma, rgb


def bench_hash(n_samples: int, reps: int) -> float:
    """Samples/s of the hash-grid field, forward + backward + Adam."""
    torch.manual_seed(0)
    m = HashGrid()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = torch.rand(n_samples, 3)
    d = torch.nn.functional.normalize(torch.randn(n_samples, 3), dim=-1)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        s, c = m(x, d)
        (s.mean() + c.mean()).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return n_samples / float(np.median(times[1:]))


def depth_report(run_path: str, cmd: str) -> None:
    """Held-out PSNR (the run's metrics.json) and the rendered depth against the scene's true depth on
    every held-out view: median relative error over foreground pixels (true depth known, rendered
    alpha > 0.5), the pixels a scene with depth maps (``recon scene synth``) marks."""
    import json

    from recon.eval.evaluate import eval_split
    from recon.run import RunFolder
    from recon.scene.readers import load_scene

    run = RunFolder.open(Path(run_path))
    scene = load_scene(run.scene_path())
    ds = float(run.manifest.get("render", {}).get("downscale") or 1.0)
    r = run.renderer()
    _, idx = eval_split(scene)
    errs = []
    for i in idx:
        gt = scene.depth(i, ds)
        if gt is None:
            raise SystemExit(f"{run.scene_path()} has no depth maps for view {i}")
        out = r.render(scene.camera(i, ds), outputs=("rgb", "alpha", "depth"))
        d, a = out.depth[..., 0].numpy(), out.alpha[..., 0].numpy()
        fg = (gt > 0) & np.isfinite(gt) & (a > 0.5)
        errs.append(np.abs(d[fg] - gt[fg]) / gt[fg])
    e = np.concatenate(errs)
    metrics = json.loads((run.root / "metrics.json").read_text())
    print(f"\n{cmd}")
    print("| run | held-out PSNR | held-out views | median rel. depth error | 90th pct | foreground px |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {run_path} | {metrics['psnr']:.2f} dB | {len(idx)} | {100 * np.median(e):.2f} % | "
          f"{100 * np.percentile(e, 90):.2f} % | {len(e):,} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", metavar="RUN", help="instead of timing: held-out PSNR and depth error of a NeRF "
                    "run on a scene with true depth maps (recon scene synth)")
    ap.add_argument("--scene", default=str(DATA / "nerf_synthetic" / "lego"))
    ap.add_argument("--downscale", type=float, default=2.0)
    ap.add_argument("--warm", type=int, default=400, help="training steps before timing (reaches the final grid)")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hash-samples", type=int, default=1 << 16)
    args = ap.parse_args()
    cmd = "python scripts/bench/nerf.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.depth:
        depth_report(args.depth, cmd)
        return

    from recon.eval.evaluate import eval_split
    from recon.methods.nerf import NerfConfig
    from recon.scene.readers import load_scene
    from recon.train.config import preset_config
    from recon.train.trainer import Trainer, set_threads

    set_threads(args.threads)
    scene = load_scene(Path(args.scene), background=(1.0, 1.0, 1.0))
    cfg = preset_config("nerf", "fast")
    cfg.downscale, cfg.threads, cfg.checkpoint_every, cfg.log_every_seconds = args.downscale, args.threads, 0, 1e9
    total = args.warm + args.steps
    # The fast preset's schedule, compressed so the warm-up ends on the final grid.
    cfg.model.upsample_at = tuple(f * args.warm / total for f in (0.2, 0.45, 0.7))
    cfg.steps = total
    tr = Trainer(cfg, scene, Path("/nonexistent-bench-run"), log=lambda s: None)
    m = tr.method
    t_compile = time.perf_counter()
    b = m.sample(0, tr.gen)
    out = m.forward(b, 0)
    out.rgb.sum().backward()
    m.grads.touched[:] = 0
    m.grads.density[:] = 0
    m.grads.feats[:] = 0
    t_compile = time.perf_counter() - t_compile

    parts = {"sample": 0.0, "forward": 0.0, "loss + backward": 0.0, "TV + sparse Adam + occupancy": 0.0}

    def one_step(step: int) -> int:
        t = [time.perf_counter()]
        batch = m.sample(step, tr.gen)
        t.append(time.perf_counter())
        o = m.forward(batch, step)
        t.append(time.perf_counter())
        loss = tr.terms[0](o, batch, step)
        for v in m.losses(o, batch, step).values():
            loss = loss + v
        loss.backward()
        t.append(time.perf_counter())
        m.after_backward(step, o, step / total)
        t.append(time.perf_counter())
        for k, a, b in zip(parts, t[:-1], t[1:]):
            parts[k] += b - a
        return len(batch.target)

    for s in range(args.warm):
        one_step(s)
    for k in parts:
        parts[k] = 0.0
    t0 = time.perf_counter()
    rays = sum(one_step(args.warm + s) for s in range(args.steps))
    dt = time.perf_counter() - t0
    train_rps = rays / dt
    # Samples per ray at this point (for the kernels' samples/s).
    from recon.nerf import cpu
    from recon.nerf.field import Rays, sh_basis

    bt = m.sample(0, tr.gen)
    rr = Rays(bt.rays["origins"], bt.rays["dirs"], bt.rays["near"], bt.rays["offsets"], bt.rays["zscale"])
    _, _, _, counts = cpu.march(m.field, rr, sh_basis(rr.dirs, m.field.sh_degree), m.nc.t_stop)
    spr = float(counts.mean())

    r = m.renderer()
    _, idx = eval_split(scene)
    cams = [scene.camera(i, args.downscale) for i in idx[:5]]
    r.render(cams[0], background=torch.ones(3))
    rt = []
    for c in cams:
        t1 = time.perf_counter()
        r.render(c, background=torch.ones(3))
        rt.append(time.perf_counter() - t1)
    render_ms = float(np.median(rt) * 1000)

    torch.set_num_threads(args.threads)
    hash_sps = bench_hash(args.hash_samples, 3)
    hash_rps = hash_sps / 48

    W, H = cams[0].width, cams[0].height
    print(f"\n{cmd}")
    print(f"scene {args.scene} at {W}x{H}, {args.threads} threads; grid {'x'.join(map(str, m.field.res))} "
          f"({m.field.num_voxels:,} voxels, {100 * m.field.occupied_fraction():.1f} % cells occupied), "
          f"{spr:.1f} samples/ray counted; first-step compile/cache load {t_compile:.1f} s")
    print("| field | training rays/s | training samples/s | render ms / frame |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| recon nerf (Numba voxel grid) | {train_rps:,.0f} | {train_rps * spr:,.0f} | {render_ms:,.0f} |")
    print(f"| hash grid + MLPs (PyTorch, 48 samples/ray) | {hash_rps:,.0f} | {hash_sps:,.0f} | not measured |")
    print("one recon training step: " + ", ".join(f"{k} {1000 * v / args.steps:,.0f} ms" for k, v in parts.items()))
    print(f"ratio (training rays/s): {train_rps / hash_rps:.1f}x the hash grid; "
          f"{train_rps / 610:.0f}-{train_rps / 450:.0f}x nerfstudio's 450-610 rays/s (measured on these machines)")


if __name__ == "__main__":
    main()
