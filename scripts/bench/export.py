"""Benchmark recon's splat writers/readers: time and size per format, printed as a markdown table.

    python scripts/bench/export.py              # 100k and 1M Gaussians, SH degree 3
    python scripts/bench/export.py --sizes 100000 --sh-degree 0
    python scripts/bench/export.py --run runs/splat-2026...   # + held-out PSNR of each format's model
    python scripts/bench/export.py --sizes --mesh RUN --gt SCENE   # mesh export of RUN vs SCENE/mesh.ply
    python scripts/bench/export.py --sizes --mesh synthetic        # mesh export of Gaussians on the turntable

Gaussians come from :func:`recon.testing.gaussians.random_splats` (distributed like a trained 3DGS
model: ~1 cm Gaussians, small higher-order SH). Columns: ``write`` / ``read`` = wall time of one
call (median of ``--repeat``), ``size`` = file size, ``B/G`` = bytes per Gaussian, ``vs PLY`` =
PLY size / this size. SPZ uses gzip level 6 as the reference library does. Files go to a temporary
folder that is removed afterwards.

With ``--run RUN`` (a folder written by ``recon train``), the run's model is also round-tripped
through each lossy format and rendered on the scene's held-out views with recon's evaluation
(``recon.eval.evaluate``; CPU rasterizer unless CUDA): a second table gives PSNR/SSIM per format
and the change against the PLY, the check behind "SPZ within 0.3 dB".

With ``--mesh RUN --gt SCENE`` the run is meshed as ``recon export --format mesh-glb`` does
(options ``--mesh-faces``, ``--mesh-texture-size``, ``--mesh-voxel``) and compared with the
ground-truth mesh of a built-in scene folder (``SCENE/mesh.ply``, ``SCENE/scene.json``): a table of
stage times, faces, Chamfer distance and F-score at 1% of the scene extent (ground truth that no
camera sees is left out). ``--mesh synthetic`` builds the model instead: flat Gaussians sampled on
the turntable scene's ground-truth mesh (``--mesh-views``, ``--mesh-res`` cameras), as the tests do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _time(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--run", default=None, help="a trained run folder: also compare held-out PSNR per format")
    ap.add_argument("--eval-views", type=int, default=0, help="with --run: at most this many held-out views")
    ap.add_argument("--mesh", default=None, help="a run folder (with --gt), or 'synthetic': mesh export accuracy and time")
    ap.add_argument("--gt", default=None, help="with --mesh RUN: the built-in scene folder the run was trained on")
    ap.add_argument("--mesh-faces", type=int, default=100_000)
    ap.add_argument("--mesh-texture-size", type=int, default=2048)
    ap.add_argument("--mesh-voxel", type=float, default=None)
    ap.add_argument("--mesh-views", type=int, default=32, help="with --mesh synthetic: camera count")
    ap.add_argument("--mesh-res", type=int, default=128, help="with --mesh synthetic: image size")
    args = ap.parse_args()

    from exporters.gltf_splat import read_glb, write_glb
    from exporters.ply import read_ply, write_ply
    from exporters.splat import read_splat, write_splat
    from exporters.spz import read_spz, write_spz
    from recon.testing.gaussians import random_splats

    writers = {
        "ply": ("splats.ply", write_ply, read_ply),
        "spz": ("splats.spz", write_spz, read_spz),
        "splat": ("splats.splat", write_splat, read_splat),
        "splat-glb": ("splats.glb", write_glb, read_glb),
    }
    try:
        from exporters.usd_splat import read_usd, write_usd

        writers["splat-usd"] = ("splats.usdc", write_usd, read_usd)
    except Exception as e:  # pragma: no cover - usd-core missing
        print(f"(splat-usd skipped: {e})", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            s = random_splats(n, sh_degree=args.sh_degree, seed=0)
            ply_size = None
            for fmt, (name, write, read) in writers.items():
                path = os.path.join(tmp, name)
                tw = _time(lambda: write(s, path), args.repeat)
                tr = _time(lambda: read(path), args.repeat)
                size = os.path.getsize(path)
                ply_size = size if fmt == "ply" else ply_size
                rows.append((n, fmt, tw, tr, size))
                print(f"{n} {fmt}: write {tw:.2f} s, read {tr:.2f} s, {size / 1e6:.1f} MB", file=sys.stderr)
                os.remove(path)

    if not rows:
        if args.run:
            quality(args.run, args.eval_views)
        if args.mesh:
            mesh_bench(args)
        return
    print(f"\n`python scripts/bench/export.py {' '.join(sys.argv[1:])}`".rstrip() + f"  (SH degree {args.sh_degree}, {os.cpu_count()} CPUs)\n")
    print("| Gaussians | format | write | read | size | B/G | vs PLY |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    ply = {n: size for n, fmt, _, _, size in rows if fmt == "ply"}
    for n, fmt, tw, tr, size in rows:
        print(f"| {n:,} | {fmt} | {tw:.2f} s | {tr:.2f} s | {size / 1e6:.1f} MB | {size / n:.1f} | {ply[n] / size:.1f}x |")


    if args.run:
        quality(args.run, args.eval_views)
    if args.mesh:
        mesh_bench(args)


def quality(run_dir: str, eval_views: int) -> None:
    """Held-out PSNR/SSIM of the run's model after a round trip through each lossy format."""
    from pathlib import Path

    from exporters.gltf_splat import decode_glb, encode_glb
    from exporters.ply import read_ply
    from exporters.splat import decode_splat, encode_splat
    from exporters.splats import cap_sh_degree, sh_degree
    from exporters.spz import decode_spz, encode_spz
    from recon.eval.evaluate import evaluate
    from recon.models.splats import SplatRenderer
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene

    run = Path(run_dir)
    rf = RunFolder.open(run)
    antialiased, downscale = rf.antialiased, float(rf.render_settings.get("downscale", 1.0))
    scene = load_scene(rf.scene_path(), background=EVAL_BACKGROUND)
    ply = read_ply(rf.require_model())
    deg = sh_degree(ply)
    variants = {
        "ply": ply,
        "spz (SH bits 5/4)": decode_spz(encode_spz(ply))[0],
        "spz (SH bits 7/6)": decode_spz(encode_spz(ply, sh1_bits=7, sh_rest_bits=6))[0],
        "splat-glb": decode_glb(encode_glb(ply)),
        "splat (SH 0)": decode_splat(encode_splat(ply)),
    }
    if deg > 0:
        import torch

        variants["ply --sh-degree 0"] = {k: torch.from_numpy(v) for k, v in cap_sh_degree({k: v.numpy() for k, v in ply.items()}, 0).items()}
    rows = []
    for name, splats in variants.items():
        res = evaluate(SplatRenderer(splats, antialiased=antialiased), scene, downscale, eval_views, log=lambda s: None)
        rows.append((name, res["psnr"], res["ssim"], res["eval_views"], res["split"]))
        print(f"{name}: PSNR {res['psnr']:.3f} dB", file=sys.stderr)
    base = rows[0][1]
    print(f"\nHeld-out views of {run} ({rows[0][3]} views, split {rows[0][4]}, SH degree {deg}, {len(ply['means']):,} Gaussians)\n")
    print("| model | PSNR | change vs PLY | SSIM |")
    print("| --- | ---: | ---: | ---: |")
    for name, p, ss, _, _ in rows:
        print(f"| {name} | {p:.3f} dB | {p - base:+.3f} dB | {ss:.4f} |")


def mesh_bench(args) -> None:
    """Mesh a run (or a synthetic surface model) and score it against a built-in scene's ground truth."""
    import json
    from pathlib import Path

    import numpy as np
    from plyfile import PlyData

    from exporters.mesh import MeshOptions, extract_mesh
    from exporters.mesh_metrics import mesh_metrics
    from exporters.run import load_run
    from recon.scene.cameras import Camera
    from recon.scene.conventions import opengl_to_opencv

    tmp = None
    if args.mesh == "synthetic":
        import scenes
        from recon.testing.gaussians import surface_splats

        tmp = tempfile.TemporaryDirectory()
        gt = scenes.synth("turntable", Path(tmp.name) / "scene", views=args.mesh_views, res=args.mesh_res, seed=0)
    else:
        if not args.gt:
            raise SystemExit("--mesh RUN needs --gt SCENE (the built-in scene folder the run was trained on)")
        gt = Path(args.gt)
    ply = PlyData.read(str(gt / "mesh.ply"))
    v = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    f = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    meta = json.loads((gt / "scene.json").read_text())
    extent = float(np.linalg.norm(np.subtract(meta["bbox"]["max"], meta["bbox"]["min"])))
    tj = json.loads((gt / "transforms.json").read_text())
    K = np.array([[tj["fl_x"], 0, tj["cx"]], [0, tj["fl_y"], tj["cy"]], [0, 0, 1.0]])
    gt_cams = [Camera(K=K, width=tj["w"], height=tj["h"], c2w=opengl_to_opencv(np.array(fr["transform_matrix"]))) for fr in tj["frames"]]
    if args.mesh == "synthetic":
        c = np.stack([ply["vertex"][k] for k in ("red", "green", "blue")], 1) / 255.0
        splats = surface_splats(v, f, c, 36_000, seed=1)
        cams, label = gt_cams, f"surface Gaussians on turntable ({args.mesh_views} views, {args.mesh_res} px)"
    else:
        run = load_run(args.mesh)
        splats, cams, label = run.splats, [c.camera for c in run.cameras], str(args.mesh)
    opts = MeshOptions(voxel=args.mesh_voxel, faces=args.mesh_faces, texture_size=args.mesh_texture_size)
    t0 = time.perf_counter()
    mesh = extract_mesh(splats, cams, opts, log=lambda s: print(s, file=sys.stderr))
    total = time.perf_counter() - t0
    m = mesh_metrics(mesh.vertices, mesh.faces, v, f, 0.01 * extent, cameras=gt_cams)
    st = mesh.stats
    print(f"\nMesh export of {label}: {len(splats['means']):,} Gaussians, {st['views']} views, {os.cpu_count()} CPUs\n")
    print("| voxel | raw faces | faces | fuse | clean+decimate | unwrap | bake | total | Chamfer / extent | F@1% | precision | recall |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {st['voxel']:.4g} | {st['raw_faces']:,} | {st['faces']:,} | {st['fuse_s']:.1f} s | {st['clean_s']:.1f} s | "
        f"{st['unwrap_s']:.1f} s | {st['bake_s']:.1f} s | {total:.1f} s | {100 * m['chamfer'] / extent:.2f}% | "
        f"{m['fscore']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} |"
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
