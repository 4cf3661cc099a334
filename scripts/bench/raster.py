"""Benchmark recon's CPU rasterizer (forward and forward+backward) and print a markdown table.

    python scripts/bench/raster.py            # full table (256², 512², 800² x 10k, 100k, 500k + 256²/50k)
    python scripts/bench/raster.py --quick    # a subset
    python scripts/bench/raster.py --compile  # also: compile time in a fresh cache, then cached start

Scenes come from :func:`recon.testing.gaussians.surface_scene` (small flattened Gaussians on object
surfaces, mixed opacities, SH degree 3) seen from an orbit camera. Each configuration runs in its
own process so that the peak RSS column is that configuration's.

Columns: ``fwd`` and ``fwd+bwd`` median wall time of one ``rasterization`` call (projection, SH,
binning, compositing, Python glue; fwd+bwd adds ``loss.backward()``); ``it/s`` = 1000 / fwd+bwd;
``pairs/px`` = Gaussian-pixel pairs a tile rasterizer considers (each Gaussian against every pixel
of each tile it touches, as gsplat) per image pixel; ``box/px`` = those inside each Gaussian's
own 2D box (about what this rasterizer evaluates: it visits only the 8-pixel row blocks the
Gaussian's alpha >= 1/255 ellipse crosses, before early termination); ``Mpairs/s`` = tile pairs
per second of fwd+bwd wall time; ``CPU ms/it`` = process CPU time of one fwd+bwd (all threads;
robust to other load on the machine); ``peak RSS`` = peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FULL = [(r, n) for r in (256, 512, 800) for n in (10_000, 100_000, 500_000)] + [(256, 50_000), (200, 100_000)]
QUICK = [(256, 50_000), (200, 100_000), (256, 10_000), (512, 100_000)]


def _scene(n: int, res: int, seed: int = 0):
    import numpy as np
    import torch

    from recon.scene.conventions import look_at_c2w
    from recon.testing.gaussians import surface_scene

    means, quats, scales, opac, sh = surface_scene(n, seed=seed, sh_degree=3)
    a = 0.7
    eye = [2.6 * math.cos(a), -0.9, 2.6 * math.sin(a)]
    vm = torch.tensor(np.linalg.inv(look_at_c2w(eye, (0.0, 0.05, 0.0), (0.0, -1.0, 0.0))), dtype=torch.float32)[None]
    f = 0.5 * res / math.tan(math.radians(25))
    K = torch.tensor([[[f, 0, res / 2], [0, f, res / 2], [0, 0, 1]]], dtype=torch.float32)
    return means, quats, scales, opac, sh, vm, K


def run_one(res: int, n: int, repeats: int, packed: bool) -> dict:
    import numpy as np
    import torch

    from recon.render import rasterization

    means, quats, scales, opac, sh, vm, K = _scene(n, res)
    # parameters as a trainer holds them (log scales, logit opacities, sh0/shN split)
    p = {
        "means": means.clone().requires_grad_(True),
        "quats": quats.clone().requires_grad_(True),
        "scales": torch.log(scales).requires_grad_(True),
        "opacities": torch.logit(opac.clamp(1e-4, 1 - 1e-4)).requires_grad_(True),
        "sh0": sh[:, :1].clone().requires_grad_(True),
        "shN": sh[:, 1:].clone().requires_grad_(True),
    }
    target = torch.rand(1, res, res, 3)

    def call():
        colors = torch.cat([p["sh0"], p["shN"]], 1)
        return rasterization(
            p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]), colors, vm, K,
            res, res, sh_degree=3, packed=packed, backend="cpu",
        )  # fmt: skip

    t0 = time.perf_counter()
    img, alpha, info = call()
    first = time.perf_counter() - t0
    (img - target).abs().mean().backward()
    fwd, fb, fb_cpu = [], [], []
    for _ in range(repeats):
        with torch.no_grad():
            t0 = time.perf_counter()
            call()
            fwd.append(time.perf_counter() - t0)
    for _ in range(repeats):
        for v in p.values():
            v.grad = None
        t0 = time.perf_counter()
        c0 = time.process_time()
        img, alpha, info = call()
        info["means2d"].retain_grad()
        (img - target).abs().mean().backward()
        fb.append(time.perf_counter() - t0)
        fb_cpu.append(time.process_time() - c0)
    # work statistics from the binning of the last call
    offs = info["isect_offsets"].reshape(-1).numpy().astype(np.int64)
    n_isect = int(info["flatten_ids"].shape[0])
    per_tile = np.diff(np.append(offs, n_isect))
    ts = 16
    tw = math.ceil(res / ts)
    tiles = np.arange(per_tile.shape[0])
    tile_px = np.minimum(ts, res - (tiles % tw) * ts) * np.minimum(ts, res - (tiles // tw) * ts)
    pairs = float((per_tile * tile_px).sum())
    box = _box_pairs(info, res, ts)
    fwd_ms = 1000 * statistics.median(fwd)
    fb_ms = 1000 * statistics.median(fb)
    return dict(
        res=res, n=n, first_s=first, fwd_ms=fwd_ms, fb_ms=fb_ms, pairs_px=pairs / res**2, box_px=box / res**2,
        mpairs_s=pairs / (fb_ms / 1000) / 1e6, cpu_ms=1000 * statistics.median(fb_cpu),
        rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        visible=int((info["radii"] > 0).all(-1).sum()),
        n_isect=n_isect,
    )  # fmt: skip


def _box_pairs(info, res: int, ts: int) -> float:
    """Sum over intersections of |Gaussian box (+1 px) ∩ tile| in pixels."""
    import numpy as np

    fl = info["flatten_ids"].numpy().astype(np.int64)
    offs = info["isect_offsets"].reshape(-1).numpy().astype(np.int64)
    tile_of = np.repeat(np.arange(offs.shape[0]), np.diff(np.append(offs, fl.shape[0])))
    m2d = info["means2d"].detach().reshape(-1, 2).numpy()[fl]
    rad = info["radii"].reshape(-1, 2).numpy()[fl]
    tw = math.ceil(res / ts)
    tx0 = (tile_of % tw) * ts
    ty0 = (tile_of // tw) * ts
    x0 = np.maximum(tx0, np.floor(m2d[:, 0] - rad[:, 0]) - 1)
    x1 = np.minimum(np.minimum(tx0 + ts, res), np.ceil(m2d[:, 0] + rad[:, 0]) + 1)
    y0 = np.maximum(ty0, np.floor(m2d[:, 1] - rad[:, 1]) - 1)
    y1 = np.minimum(np.minimum(ty0 + ts, res), np.ceil(m2d[:, 1] + rad[:, 1]) + 1)
    return float((np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)).sum())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def measure_compile() -> dict:
    """First call in a fresh Numba cache (compile), then a second process reusing it."""
    code = f"""
import sys, time
sys.path.insert(0, {ROOT!r})
t = time.perf_counter()
import torch
from recon.render import rasterization
from recon.testing.gaussians import awkward_scene, orbit_viewmats
vm, K = orbit_viewmats(1, 64, 48)
ps = [x.requires_grad_(True) for x in awkward_scene(200, sh_degree=3)]
times = [time.perf_counter()]
for _ in range(2):
    img, a, info = rasterization(*ps, vm, K, 64, 48, sh_degree=3, backend="cpu")
    img.sum().backward()
    times.append(time.perf_counter())
print(times[0] - t, times[1] - times[0], times[2] - times[1])
"""
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for name in ("fresh", "cached"):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            imp, first, second = (float(x) for x in r.stdout.split())
            out[name] = dict(import_s=imp, first_call_s=first, second_call_s=second)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="run a subset")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--unpacked", action="store_true", help="packed=False")
    ap.add_argument("--compile", action="store_true", help="measure compile time and cached start")
    ap.add_argument(
        "--passive", action="store_true",
        help="run the measurements with OMP_WAIT_POLICY=PASSIVE (helps on a machine shared with other jobs)",
    )  # fmt: skip
    ap.add_argument("--one", nargs=2, type=int, metavar=("RES", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.repeats, not args.unpacked)))
        return

    import numba
    import torch

    cmd = "python scripts/bench/raster.py " + " ".join(argv if argv is not None else sys.argv[1:])
    configs = QUICK if args.quick else FULL
    env = dict(os.environ)
    if args.passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    load = os.getloadavg()[0]
    print(f"`{cmd.strip()}`  ")
    print(
        f"CPU: {os.cpu_count()} cores ({_cpu_name()}), load average {load:.1f} at start; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numba {numba.__version__} ({numba.get_num_threads()} threads), "
        f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset')}; SH degree 3, packed={not args.unpacked}, "
        f"median of {args.repeats}\n"
    )
    print(
        "| image | Gaussians | visible | pairs/px | box/px | fwd ms | fwd+bwd ms | it/s | Mpairs/s | CPU ms/it "
        "| peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for res, n in configs:
        extra = ["--unpacked"] if args.unpacked else []
        r = subprocess.run(
            [sys.executable, __file__, "--one", str(res), str(n), "--repeats", str(args.repeats)] + extra,
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if r.returncode != 0:
            print(f"| {res}² | {n:,} | failed: {r.stderr.strip().splitlines()[-1]} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(
            f"| {res}² | {n:,} | {d['visible']:,} | {d['pairs_px']:.0f} | {d['box_px']:.0f} | {d['fwd_ms']:.1f} | "
            f"{d['fb_ms']:.1f} | {1000 / d['fb_ms']:.1f} | {d['mpairs_s']:.0f} | {d['cpu_ms']:.0f} "
            f"| {d['rss_mb']:.0f} |",
            flush=True,
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")
    if args.compile:
        c = measure_compile()
        print()
        for k, v in c.items():
            print(
                f"- {k} Numba cache: import {v['import_s']:.1f} s, first call (fwd+bwd) {v['first_call_s']:.1f} s, "
                f"second call {1000 * v['second_call_s']:.0f} ms"
            )


if __name__ == "__main__":
    main()
