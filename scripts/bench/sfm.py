"""Benchmark ``recon process`` (SfM): time per stage and peak memory; prints a markdown table.

    python scripts/bench/sfm.py                 # sceaux_castle (11 real photos) + synthetic turntable (60 views)
    python scripts/bench/sfm.py --quick         # sceaux at 1000 px + turntable
    python scripts/bench/sfm.py --scenes turntable room video --mapper global

Each case runs ``recon process`` in its own process, with ``--force`` into a fresh folder under
``--work`` (default: a temporary folder), so its peak RSS is that case's and nothing is cached.
Synthetic cases render ground truth with :mod:`scenes` first (not timed) and add pose accuracy
after a Sim(3) (Umeyama) alignment to the true cameras: median rotation error and median camera
centre error as a percentage of the scene extent (largest true camera distance from their mean).
The ``video`` case renders a 10 s, 24 fps orbit of the turntable and ingests it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
STAGES = ("ingest", "features", "matching", "mapping", "undistort", "outputs")


def _prepare(name: str, work: Path, views: int) -> tuple[Path, dict]:
    """The input path for a case and what ground truth it has."""
    import scenes

    if name == "sceaux":
        p = DATA / "sceaux_castle"
        if not p.is_dir():
            raise SystemExit(f"shared data not found at {p}")
        return p, {}
    if name == "video":
        vid = work / "gt" / "turntable_orbit.mp4"
        if not vid.is_file():
            scenes.render_video("turntable", vid, seconds=10, fps=24, res=256)
        return vid, {"video_gt": str(vid.with_name(vid.stem + ".transforms.json"))}
    gt = work / "gt" / f"{name}{views}"
    scenes.synth(name, gt, views=views, res=256)
    photos = work / "in" / f"{name}{views}"
    if not photos.is_dir():
        photos.mkdir(parents=True)
        for p in sorted((gt / "images").glob("*.png")):
            shutil.copy(p, photos / p.name)
    return photos, {"gt": str(gt)}


def _accuracy(out: Path, gt: dict) -> dict:
    import numpy as np

    from recon.scene.conventions import opengl_to_opencv
    from recon.scene.readers import load_scene
    from recon.sfm.normalize import pose_errors

    est = load_scene(out)
    if "gt" in gt:
        G = {Path(f.image_path).stem: f.camera.c2w for f in load_scene(gt["gt"]).frames}
        E = {Path(f.image_path).stem: f.camera.c2w for f in est.frames}
    elif "video_gt" in gt:
        meta = json.loads(Path(gt["video_gt"]).read_text())
        G = {f["frame_index"]: opengl_to_opencv(np.array(f["transform_matrix"])) for f in meta["frames"]}
        E = {int(Path(f.image_path).stem.rsplit("_", 1)[1]): f.camera.c2w for f in est.frames}
    else:
        return {}
    k = sorted(set(G) & set(E))
    r = pose_errors(np.stack([E[i] for i in k]), np.stack([G[i] for i in k]))
    return {
        "rot_med_deg": float(np.median(r["rot_err_deg"])),
        "ctr_med_pct": 100.0 * float(np.median(r["center_err"])) / r["extent"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="+", default=["sceaux", "turntable"], help="sceaux, turntable, room, video")
    ap.add_argument("--views", type=int, default=60, help="views of the synthetic scenes")
    ap.add_argument("--quick", action="store_true", help="sceaux at --max-size 1000")
    ap.add_argument("--work", type=Path, default=None, help="keep inputs and outputs here")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: options passed to recon process")
    args = ap.parse_args()
    extra = [a for a in args.extra if a != "--"]
    work = args.work or Path(tempfile.mkdtemp(prefix="recon-bench-sfm-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.scenes:
        src, gt = _prepare(name, work, args.views)
        out = work / "out" / name
        opts = list(extra)
        if name == "sceaux" and args.quick:
            opts += ["--max-size", "1000"]
        if name == "video":
            opts += ["--video-frames", "120"]
        cmd = [sys.executable, "-m", "recon.cli", "process", str(src), "--out", str(out), "--force", "--quiet", *opts]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            rows.append({"name": name, "error": (p.stderr.strip().splitlines() or ["?"])[-1], "cmd": cmd})
            continue
        rep = json.loads((out / "sfm_report.json").read_text())
        rows.append({"name": name, "rep": rep, "wall": wall, "acc": _accuracy(out, gt), "cmd": cmd})

    print("# recon process (SfM) benchmark\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pycolmap {__import__('pycolmap').__version__}; load average {os.getloadavg()[0]:.1f} at the end\n")
    head = ["case", "images", "registered", "reproj px", "points", *STAGES, "total s", "peak RSS MB", "rot err (median)", "centre err (median)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | failed: {r['error']} |")
            continue
        rep, t, acc = r["rep"], r["rep"]["timings_s"], r["acc"]
        cells = [
            r["name"], str(rep["images_total"]), str(rep["images_registered"]), f"{rep['mean_reprojection_error_px']:.3f}",
            str(rep["num_points3D"]), *(f"{t.get(s, 0.0):.1f}" for s in STAGES), f"{t['total']:.1f}",
            f"{rep['peak_rss_mb']:.0f}",
            f"{acc['rot_med_deg']:.3f}°" if acc else "–", f"{acc['ctr_med_pct']:.3f}%" if acc else "–",
        ]
        print("| " + " | ".join(cells) + " |")
    print("\nStage times are wall seconds (pycolmap uses every core). Commands:\n")
    for r in rows:
        print("    recon " + " ".join(shlex.quote(c) for c in r["cmd"][r["cmd"].index("process"):]))
    print(f"\nbench command: python scripts/bench/sfm.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}")


if __name__ == "__main__":
    main()
