#!/usr/bin/env python
"""Real-capture benchmarks (issue 20): held-out quality of `recon train` on the real captures in
../shared/data, from the poses they ship with, from SfM, from photos and from video.

Each case runs in its own process(es); wall time and peak memory (max RSS of the children, via
wait4) are measured here, quality is read from the run's metrics.json, the render grid is copied to
--grids (default docs/img) as real_<case>.png. Usage:

    python scripts/bench/real.py [--cases fox,beer-poses,beer-sfm,...] [--out bench-real] [--preset fast]

Cases (every 8th photo held out; --preset fast trains at 640 px on the longest side):
    fox           fox as shipped: transforms.json (OPENCV distortion) without points
    fox-sfm       the same 67 photos through `recon process` (SfM points), then trained
    beer-poses    beer_can given only as images/ + poses_bounds.npy (LLFF, no points)
    beer-sfm      beer_can's COLMAP model as shipped (SIMPLE_RADIAL, 4,414 SfM points)
    beer-video    beer_can from Beer.mp4 through `recon process` (frames sampled from the video)
    sceaux        the 11 Sceaux photos through `recon process`, then trained
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def _links(dst: Path, items: dict[str, Path]) -> Path:
    """A folder of links to read-only inputs (so a processed output can be written beside them)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name, src in items.items():
        if not (dst / name).exists():
            os.symlink(src, dst / name)
    return dst


def plan(name: str, out: Path, preset: str, extra: list[str]) -> list[list[str]]:
    """The commands of one case; the last one is the training run (its --out is the run folder)."""
    run = out / name
    train = ["recon", "train"]
    tail = ["--preset", preset, "--out", str(run), *extra]
    if name == "fox":
        return [[*train, str(DATA / "fox"), *tail]]
    if name == "fox-sfm":
        src = _links(out / "inputs" / "fox-photos", {p.name: p for p in sorted((DATA / "fox" / "images").iterdir())})
        return [["recon", "process", str(src), "--out", str(out / "fox-sfm-scene")],
                [*train, str(out / "fox-sfm-scene"), *tail]]
    if name == "beer-poses":
        src = _links(out / "inputs" / "beer-poses", {"images": DATA / "beer_can" / "images",
                                                     "poses_bounds.npy": DATA / "beer_can" / "poses_bounds.npy"})
        return [[*train, str(src), *tail]]
    if name == "beer-sfm":
        return [[*train, str(DATA / "beer_can"), *tail]]
    if name == "beer-video":
        return [["recon", "process", str(DATA / "beer_can" / "Beer.mp4"), "--out", str(out / "beer-video-scene")],
                [*train, str(out / "beer-video-scene"), *tail]]
    if name == "sceaux":
        src = _links(out / "inputs" / "sceaux", {p.name: p for p in sorted((DATA / "sceaux_castle").iterdir()) if p.is_file()})
        return [["recon", "process", str(src), "--out", str(out / "sceaux-scene")], [*train, str(out / "sceaux-scene"), *tail]]
    raise SystemExit(f"unknown case {name!r}")


def run(cmd: list[str]) -> tuple[int, float, float]:
    """(exit code, wall s, peak RSS GB) of one command."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, time.perf_counter() - t0, ru.ru_maxrss / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="fox,beer-poses,beer-sfm,beer-video,sceaux")
    ap.add_argument("--out", default="bench-real")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--grids", default=str(ROOT / "docs" / "img"))
    ap.add_argument("extra", nargs="*", help="more `recon train` options, after --")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.cases.split(","):
        cmds = plan(name, out, a.preset, a.extra)
        run_dir = out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        rc, wall, peak = 0, 0.0, 0.0
        for cmd in cmds:
            rc, w, pk = run(cmd)
            wall, peak = wall + w, max(peak, pk)
            if rc:
                break
        m = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
        man = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
        init = man.get("init_points", {})
        init_txt = init.get("source", "-") + (f" {init['points']:,}" if init.get("points") else "")
        if rc == 0 and (run_dir / "renders" / "grid.png").exists() and a.grids:
            Path(a.grids).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / "renders" / "grid.png", Path(a.grids) / f"real_{name}.png")
        rows.append((name, " && ".join(shlex.join(c) for c in cmds), rc, wall, peak, m, init_txt,
                     "yes" if man.get("undistorted") else "no"))
    print()
    print(f"Command: `python scripts/bench/real.py --cases {a.cases} --preset {a.preset}` ({os.cpu_count()} cores)")
    print()
    print("| case | exit | PSNR (dB) | SSIM | LPIPS | held-out views | resolution | init points | undistorted | Gaussians | steps | train s | wall s | peak RSS (GB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    nan = float("nan")
    for name, cmd, rc, wall, peak, m, init_txt, und in rows:
        res = "x".join(map(str, m.get("resolution") or [])) or "-"
        lp = "n/a" if m.get("lpips") is None else f"{m['lpips']:.3f}"
        print(f"| {name} | {rc} | {m.get('psnr', nan):.2f} | {m.get('ssim', nan):.4f} | {lp} | {m.get('eval_views', '-')} | "
              f"{res} | {init_txt} | {und} | {m.get('num_gaussians', 0):,} | {m.get('steps', '-')} | "
              f"{m.get('train_seconds', nan):.0f} | {wall:.0f} | {peak:.2f} |")
    print()
    for name, cmd, *_ in rows:
        print(f"- {name}: `{cmd}`")
    sys.exit(max((r[2] for r in rows), default=0))


if __name__ == "__main__":
    main()
