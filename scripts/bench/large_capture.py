"""Peak memory of a large capture: a generated N-frame scene (transforms.json + images) trains a few
steps, is evaluated on all its held-out views and exported, each stage as the real `recon` command;
the peak resident memory of each command is measured by the OS (wait4's ru_maxrss).

    .venv/bin/python scripts/bench/large_capture.py                    # 200 and 2000 frames at 128 px
    .venv/bin/python scripts/bench/large_capture.py --frames 2000 --res 256 --steps 20

Two sizes show what grows with the number of frames: eager loads (every image decoded up front)
grow by the image bytes per frame; lazy loading adds only the per-frame camera bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_measured(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd``; ``(peak RSS in MB, wall seconds)``. Fails loudly with the command's output."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({p.returncode}):\n{log.read_text()[-3000:]}")
    return ru.ru_maxrss / 1024.0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="200,2000", help="comma-separated frame counts")
    ap.add_argument("--res", type=int, default=128, help="image width = height in pixels")
    ap.add_argument("--steps", type=int, default=20, help="training steps")
    ap.add_argument("--work", type=Path, default=None, help="folder for the scenes and runs (default: a temp folder)")
    args = ap.parse_args()
    recon = [sys.executable, "-m", "recon.cli"]
    work = args.work or Path(tempfile.mkdtemp(prefix="recon-large-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in [int(x) for x in args.frames.split(",")]:
        scene, run = work / f"capture-{n}", work / f"run-{n}"
        gen = recon + ["scene", "synth", "turntable", str(scene), "--views", str(n), "--res", str(args.res), "--ss", "1"]
        rss, wall = run_measured(gen, work / f"gen-{n}.log")
        rows.append((n, "generate", rss, wall, gen))
        if run.exists():
            import shutil

            shutil.rmtree(run)
        stages = [
            ("train + eval", recon + ["train", str(scene), "--out", str(run), "--steps", str(args.steps)]),
            ("eval", recon + ["eval", str(run)]),
            ("export ply", recon + ["export", str(run), "--format", "ply"]),
        ]
        for name, cmd in stages:
            rss, wall = run_measured(cmd, work / f"{name.split()[0]}-{n}.log")
            rows.append((n, name, rss, wall, cmd))
    print(f"\nLarge capture, {args.res}x{args.res} images, {args.steps} training steps (held-out views: every 8th)\n")
    print(f"| frames | stage | peak RSS (MB) | wall (s) |\n| ---: | --- | ---: | ---: |")
    for n, name, rss, wall, _ in rows:
        print(f"| {n} | {name} | {rss:,.0f} | {wall:.1f} |")
    sizes = sorted({r[0] for r in rows})
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        for name in ("train + eval", "eval", "export ply"):
            ra = next(r[2] for r in rows if r[0] == a and r[1] == name)
            rb = next(r[2] for r in rows if r[0] == b and r[1] == name)
            print(f"{name}: {(rb - ra) * 1024 / (b - a):.1f} KB more peak memory per frame "
                  f"(one decoded float32 image is {args.res * args.res * 12 / 1024:.0f} KB)")
    print("\ncommands:")
    for n, name, _, _, cmd in rows:
        print("  recon " + shlex.join(cmd[3:]))
    print(f"\nproduced by: python {Path(__file__).relative_to(ROOT)} {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
