#!/usr/bin/env python
"""A/B training benchmark: this checkout against an earlier commit, same command, runs interleaved.

Checks out ``--baseline`` (a commit) into a temporary git worktree, then runs
``recon train SCENE --out ... --steps N [extra]`` alternately with the baseline's code and this
checkout's (A B A B ...), and prints the median seconds per step (train_seconds / steps from each
run's metrics.json) and held-out PSNR of each side, plus the ratio. Usage::

    python scripts/bench/ab_train.py --baseline 4a111f2 --scene ../shared/data/nerf_synthetic/lego \\
        --steps 300 --repeats 3 -- --preset fast --downscale 4 --eval-views 10
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_once(code: Path, scene: str, out: Path, steps: int, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-c", "import sys; from recon.cli import main; sys.argv[0] = 'recon'; main()",
           "train", scene, "--out", str(out), "--steps", str(steps)] + extra
    p = subprocess.run(cmd, cwd=str(code), env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{code}: recon train failed:\n{p.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return {"s_per_step": m["train_seconds"] / max(m["steps"], 1), "psnr": m["psnr"], "steps": m["steps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="commit to compare against")
    ap.add_argument("--scene", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("extra", nargs="*", help="more recon train options (after --)")
    a = ap.parse_args()
    scene = str(Path(a.scene).resolve())
    with tempfile.TemporaryDirectory(prefix="recon-ab-") as tmp:
        tmp = Path(tmp)
        base = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), a.baseline],
                       check=True, capture_output=True)
        try:
            res: dict[str, list[dict]] = {"baseline": [], "this": []}
            for r in range(a.repeats):
                for side, code in (("baseline", base), ("this", ROOT)):
                    res[side].append(run_once(code, scene, tmp / f"{side}-{r}", a.steps, a.extra))
                    print(f"{side} run {r + 1}: {res[side][-1]}", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    med = {k: statistics.median(x["s_per_step"] for x in v) for k, v in res.items()}
    psnr = {k: statistics.median(x["psnr"] for x in v) for k, v in res.items()}
    print(f"Command: `python scripts/bench/ab_train.py {shlex.join(sys.argv[1:])}` ({os.cpu_count()} cores)\n")
    print("| code | median s/step | held-out PSNR (median) | runs |")
    print("| --- | --- | --- | --- |")
    for k in ("baseline", "this"):
        name = f"{a.baseline} (baseline)" if k == "baseline" else "this checkout"
        print(f"| {name} | {med[k]:.4f} | {psnr[k]:.3f} dB | {len(res[k])} |")
    print(f"\nstep time ratio this/baseline: {med['this'] / med['baseline']:.3f}; "
          f"PSNR difference: {psnr['this'] - psnr['baseline']:+.3f} dB")


if __name__ == "__main__":
    main()
