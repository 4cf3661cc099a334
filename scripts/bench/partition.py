"""Partitioned training vs one model with the same total steps, on the synthetic room.

    .venv/bin/python scripts/bench/partition.py                      # room, 40 views at 64 px, 1200 steps, 2x2
    .venv/bin/python scripts/bench/partition.py --views 60 --res 96 --steps 2000 --grid 2x2

Both runs start from the same points (the scene's, written beside a copy of its transforms.json
for the single run, since the synthetic scene has depth maps but no SfM points) and train the same
total number of steps: the single run with every core, the partitioned one as one block per core
on a local Ray cluster. Prints held-out PSNR, Gaussians, wall time, and whether every merged
Gaussian lies in its block's core.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def timed(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        r = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def single_scene(scene: Path, out: Path) -> None:
    """A copy of the scene's index with its points (those --partition uses) as sparse_pc.ply."""
    from recon.cluster.partition import Block, Plan, scene_points, write_block_scene
    from recon.run import EVAL_BACKGROUND
    from recon.scene.readers import load_scene

    sc = load_scene(scene, background=EVAL_BACKGROUND)
    inf = float("inf")
    everything = Block(0, 0, [-inf, inf, -inf, inf], [-inf, inf, -inf, inf], list(range(len(sc.frames))))
    write_block_scene(sc, Plan([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], []), everything, scene_points(sc), out)


def cores_ok(run: Path) -> tuple[bool, int]:
    from recon.cluster.partition import Plan, inside
    from recon.models.splats_io import read_ply

    plan = Plan.from_dict(json.loads((run / "partition.json").read_text())["plan"])
    uv = plan.ground(read_ply(run / "splats.ply")["means"].numpy())
    hits = np.stack([inside(uv, b.core) for b in plan.blocks]).sum(0)
    return bool((hits == 1).all()), int(len(uv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--grid", default="2x2")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="recon-partition-"))
    work.mkdir(parents=True, exist_ok=True)
    recon = [sys.executable, "-m", "recon.cli"]
    scene = work / "room"
    subprocess.run(recon + ["scene", "synth", "room", str(scene), "--views", str(args.views), "--res", str(args.res)],
                   check=True, capture_output=True, cwd=ROOT)
    single_scene(scene, work / "room_points")
    rows = []
    for name, cmd in (
        ("single model", recon + ["train", str(work / "room_points"), "--out", str(work / "single"),
                                  "--steps", str(args.steps)]),
        (f"partition {args.grid}", recon + ["train", str(scene), "--out", str(work / "partitioned"),
                                           "--steps", str(args.steps), "--partition", args.grid]),
    ):
        run = Path(cmd[cmd.index("--out") + 1])
        wall = timed(cmd, work / f"{run.name}.log")
        m = json.loads((run / "metrics.json").read_text())
        rows.append((name, m["psnr"], m["ssim"], m["num_gaussians"], wall, "recon " + shlex.join(cmd[3:])))
    ok, n = cores_ok(work / "partitioned")
    print(f"\nroom, {args.views} views at {args.res}x{args.res}, {args.steps} steps in all\n")
    print("| run | held-out PSNR (dB) | SSIM | Gaussians | wall (s) |\n| --- | ---: | ---: | ---: | ---: |")
    for name, p, s, g, w, _ in rows:
        print(f"| {name} | {p:.2f} | {s:.4f} | {g:,} | {w:.0f} |")
    print(f"\nPSNR difference (partition - single): {rows[1][1] - rows[0][1]:+.2f} dB; wall ratio "
          f"{rows[1][4] / rows[0][4]:.2f}; merged Gaussians each in exactly one block core: {ok} ({n:,})")
    print("\ncommands:")
    for *_, c in rows:
        print("  " + c)
    print(f"\nproduced by: python {Path(__file__).relative_to(ROOT)} {shlex.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
