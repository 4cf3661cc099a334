#!/usr/bin/env python
"""How much held-out PSNR a trained run loses when its splats go through SPZ (issue 6).

Evaluates the run's own model (splats.ply) and the same model after an SPZ encode/decode round
trip, at SPZ's default quantisation and with more SH bits, on the run's held-out views, and prints
a table with the command line. Usage:

    python scripts/bench/spz_quality.py RUN [--downscale D] [--max-views N]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--downscale", type=float, default=None, help="default: the run's")
    ap.add_argument("--max-views", type=int, default=0)
    a = ap.parse_args()

    from exporters.ply import read_ply
    from exporters.spz import decode_spz, encode_spz
    from recon.eval.evaluate import evaluate
    from recon.models.splats import SplatRenderer
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene

    rf = RunFolder.open(a.run)
    scene = load_scene(rf.scene_path(), background=EVAL_BACKGROUND)
    downscale = a.downscale or float(rf.render_settings.get("downscale", 1.0))
    antialiased = rf.antialiased
    ply = read_ply(rf.require_model())
    rows = []
    variants = [("PLY (original)", None, ply), ]
    for bits in [(5, 4), (6, 5), (7, 6)]:
        data = encode_spz(ply, antialiased=antialiased, sh1_bits=bits[0], sh_rest_bits=bits[1])
        variants.append((f"SPZ, SH bits {bits[0]}/{bits[1]}", len(data), decode_spz(data)[0]))
    for name, size, splats in variants:
        res = evaluate(SplatRenderer(splats, antialiased=antialiased), scene, downscale, max_views=a.max_views,
                       keep_renders=0, log=lambda s: None)
        rows.append((name, size, res["psnr"], res["ssim"], res["eval_views"]))
    ply_size = (a.run / "splats.ply").stat().st_size
    print(f"Command: `python scripts/bench/spz_quality.py {shlex.join(sys.argv[1:])}` ({os.cpu_count()} cores)")
    print()
    print("| model | size | vs PLY size | held-out PSNR (dB) | change (dB) | SSIM | views |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = rows[0][2]
    for name, size, psnr, ssim, n in rows:
        size = size or ply_size
        print(f"| {name} | {size / 1e6:.2f} MB | {ply_size / size:.1f}x smaller | {psnr:.2f} | {psnr - base:+.2f} | "
              f"{ssim:.4f} | {n} |")


if __name__ == "__main__":
    main()
