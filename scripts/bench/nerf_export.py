"""Score a NeRF run's mesh against a synthetic scene's true mesh (Chamfer, F-score as % of extent).

    python scripts/bench/nerf_export.py RUN SCENE [--faces N]

RUN: a NeRF run trained on SCENE (`recon scene synth turntable SCENE` writes SCENE/mesh.ply and
scene.json). Prints one markdown row per measure with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def read_ply_mesh(path: Path):
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    v = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    f = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    return v, f


def distill_main(argv) -> None:
    ap = argparse.ArgumentParser(prog="nerf_export.py distill")
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-views", type=int, default=0)
    ap.add_argument("--extra-views", type=float, default=1.0)
    args = ap.parse_args(argv)
    from exporters.nerf_distill import DistillOptions, distill
    from recon.eval.evaluate import evaluate
    from recon.models.splats import SplatRenderer
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene

    t0 = time.perf_counter()
    rec = distill(args.run, DistillOptions(steps=args.steps, threads=args.threads, extra_views=args.extra_views), log=lambda s: print(s, file=sys.stderr))
    secs = time.perf_counter() - t0
    rf = RunFolder.open(args.run)
    scene = load_scene(rf.scene_path(), background=EVAL_BACKGROUND, undistort=True)
    ds = float(rf.render_settings.get("downscale", 1.0))
    quiet = lambda s: None  # noqa: E731
    nerf = evaluate(rf.renderer(), scene, ds, args.eval_views, keep_renders=0, log=quiet)
    g = RunFolder.open(args.run / "distill" / "run").gaussians()
    splat = evaluate(SplatRenderer(g), scene, ds, args.eval_views, keep_renders=0, log=quiet)
    print(f"command: python scripts/bench/nerf_export.py distill {args.run} --steps {args.steps} "
          f"--threads {args.threads} --eval-views {args.eval_views} --extra-views {args.extra_views:g}\n")
    print("| model | held-out PSNR (dB) | SSIM | views |\n| --- | ---: | ---: | ---: |")
    print(f"| NeRF | {nerf['psnr']:.2f} | {nerf['ssim']:.4f} | {nerf['eval_views']} |")
    print(f"| splats distilled from it ({rec['steps']} steps, {rec['gaussians']:,} Gaussians) | {splat['psnr']:.2f} | "
          f"{splat['ssim']:.4f} | {splat['eval_views']} |")
    print(f"| gap | {nerf['psnr'] - splat['psnr']:.2f} | | |")
    print(f"\ndistillation: {rec['seconds']:.0f} s ({'cached' if secs < 0.5 * rec['seconds'] else 'this run'}); "
          f"splats vs NeRF renders on {rec['held_out_views']} held-out extra views: {rec['psnr']:.2f} dB")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "distill":
        return distill_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "mesh":
        sys.argv.pop(1)
    ap = argparse.ArgumentParser(prog="nerf_export.py mesh")
    ap.add_argument("run", type=Path)
    ap.add_argument("scene", type=Path)
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--texture-size", type=int, default=1024)
    args = ap.parse_args()
    from exporters.mesh import MeshOptions
    from exporters.mesh_metrics import mesh_metrics
    from exporters.nerf_export import NerfSources
    from exporters.run import load_run

    run = load_run(args.run)
    t0 = time.perf_counter()
    mesh = NerfSources(run, log=lambda s: print(s, file=sys.stderr)).mesh(
        MeshOptions(faces=args.faces, texture_size=args.texture_size))
    secs = time.perf_counter() - t0
    gv, gf = read_ply_mesh(args.scene / "mesh.ply")
    meta = json.loads((args.scene / "scene.json").read_text())
    extent = float(np.linalg.norm(np.subtract(meta["bbox"]["max"], meta["bbox"]["min"])))
    cams = [c.camera for c in run.cameras]
    m = mesh_metrics(mesh.vertices, mesh.faces, gv, gf, 0.01 * extent, samples=60_000, cameras=cams)
    print(f"command: python scripts/bench/nerf_export.py mesh {args.run} {args.scene} --faces {args.faces}\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| Chamfer (% of extent {extent:.3g}) | {100 * m['chamfer'] / extent:.2f}% (accuracy {100 * m['accuracy'] / extent:.2f}%, "
          f"completeness {100 * m['completeness'] / extent:.2f}%) |")
    print(f"| F-score at 1% (precision / recall) | {m['fscore']:.3f} ({m['precision']:.3f} / {m['recall']:.3f}) |")
    print(f"| density level | {mesh.stats['level']:.4g} |")
    print(f"| faces | {len(mesh.faces)} (raw {mesh.stats['raw_faces']}) |")
    print(f"| time | {secs:.1f} s |")


if __name__ == "__main__":
    main()
