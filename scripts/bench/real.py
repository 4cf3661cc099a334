#!/usr/bin/env python
"""Real-capture benchmarks (issue 20): held-out quality of `recon train` on the real captures in
../shared/data, from the poses they ship with, from SfM, from photos and from video.

Each case runs in its own process(es); wall time and peak memory (max RSS of the children, via
wait4) are measured here, quality is read from the run's metrics.json, the render grid is copied to
--grids (default docs/img) as real_<case>.png. Usage:

    python scripts/bench/real.py [--cases fox,beer-poses,beer-sfm,...] [--out bench-real] [--preset fast]
    python scripts/bench/real.py --cases sceaux,beer-sfm --method nerf   # runs and grids named CASE-nerf

Cases (every 8th photo held out; --preset fast trains at 640 px on the longest side):
    fox           fox as shipped: transforms.json (OPENCV distortion) without points
    fox-sfm       the same 67 photos through `recon process` (SfM points), then trained
    beer-poses    beer_can given only as images/ + poses_bounds.npy (LLFF, no points)
    beer-sfm      beer_can's COLMAP model as shipped (SIMPLE_RADIAL, 4,414 SfM points)
    beer-video    beer_can from Beer.mp4 through `recon process` (frames sampled from the video); its
                  held-out views are every 8th *video frame*, so it is not comparable with the photo runs
    beer-video-photos
                  the fair comparison with beer-poses/beer-sfm: Beer.mp4 plus the photo runs' 9
                  held-out photos through one `recon process` (exhaustive matching, so the photos
                  register among the frames), then trained on video frames only and scored on those
                  9 photos. The photos are frames 10*i of the video (found by thumbnail matching);
                  video frames closer in time to a held-out photo than its nearest training photo
                  (10 frames) are left out of training, so no training view is nearer to a held-out
                  view than in the photo runs.
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


BEER_HELD_OUT = [f"{i:04d}.jpg" for i in range(0, 71, 8)]  # the photo runs' held-out photos (every 8th)


def video_frame_of(video: Path, photos: list[Path]) -> list[int]:
    """The video frame each photo was taken from: nearest 64-pixel grey thumbnail (decode order)."""
    import numpy as np
    from PIL import Image

    from recon.capture.video import _open, _rotate, thumbnail

    c = _open(video)
    thumbs = []
    try:
        for fr in c.decode(c.streams.video[0]):
            thumbs.append(thumbnail(_rotate(fr.to_ndarray(format="rgb24"), getattr(fr, "rotation", 0) or 0)))
    finally:
        c.close()
    T = np.stack(thumbs)
    return [int(np.abs(T - thumbnail(np.asarray(Image.open(p).convert("RGB")))).mean((1, 2)).argmin()) for p in photos]


def beer_video_split(scene: Path, dst: Path) -> None:
    """``dst``: ``scene`` (video frames + held-out photos, processed) with explicit splits in its
    transforms.json: test = the held-out photos, train = the video frames no nearer in time to a
    held-out photo than that photo's nearest training photo, the other frames unused."""
    photos = sorted((DATA / "beer_can" / "images").glob("*.jpg"))
    at = dict(zip((p.name for p in photos), video_frame_of(DATA / "beer_can" / "Beer.mp4", photos)))
    held = {n: at[n] for n in BEER_HELD_OUT}
    train_at = sorted(v for n, v in at.items() if n not in held)
    gap = {n: min(abs(v - t) for t in train_at) for n, v in held.items()}  # nearest training photo, in frames
    meta = json.loads((scene / "transforms.json").read_text())
    train, test, unused = [], [], []
    for fr in meta["frames"]:
        name = Path(fr["file_path"]).name
        if name.startswith("photo_"):
            test.append(fr["file_path"])
            continue
        idx = int(Path(name).stem.rsplit("_", 1)[1])
        (unused if any(abs(idx - v) < gap[n] for n, v in held.items()) else train).append(fr["file_path"])
    if len(test) != len(held):
        raise SystemExit(f"beer-video-photos: {len(test)} of the {len(held)} held-out photos registered")
    meta["train_filenames"], meta["test_filenames"] = train, test
    dst.mkdir(parents=True, exist_ok=True)
    for item in scene.iterdir():
        if item.name != "transforms.json" and not (dst / item.name).exists():
            os.symlink(item, dst / item.name)
    (dst / "transforms.json").write_text(json.dumps(meta, indent=2))
    print(f"beer-video-photos split: {len(train)} training frames, {len(unused)} left out (within "
          f"{min(gap.values())}-{max(gap.values())} frames of a held-out photo), {len(test)} held-out photos "
          f"(video frames {sorted(held.values())})", flush=True)


def plan(name: str, out: Path, preset: str, extra: list[str], method: str = "splat") -> list:
    """The steps of one case (commands, or Python callables run here); the last one is the training
    run (its --out is the run folder: ``out/name``, ``out/name-METHOD`` for another method than
    splat). Scenes made by `recon process` are shared by the methods."""
    run = out / (name if method == "splat" else f"{name}-{method}")
    train = ["recon", "train"] + ([] if method == "splat" else ["--method", method])
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
    if name == "beer-video-photos":
        src = _links(out / "inputs" / "beer-video-photos",
                     {"Beer.mp4": DATA / "beer_can" / "Beer.mp4",
                      **{f"photo_{n}": DATA / "beer_can" / "images" / n for n in BEER_HELD_OUT}})
        scene, split = out / "beer-video-photos-scene", out / "beer-video-photos-split"
        return [["recon", "process", str(src), "--out", str(scene), "--matcher", "exhaustive"],
                lambda: beer_video_split(scene, split),
                [*train, str(split), *tail]]
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
    ap.add_argument("--method", default="splat", help="recon train --method (runs and grids named CASE-METHOD)")
    ap.add_argument("--grids", default=str(ROOT / "docs" / "img"))
    ap.add_argument("extra", nargs="*", help="more `recon train` options, after --")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.cases.split(","):
        cmds = plan(name, out, a.preset, a.extra, a.method)
        name = name if a.method == "splat" else f"{name}-{a.method}"
        run_dir = out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        rc, wall, peak = 0, 0.0, 0.0
        for cmd in cmds:
            if callable(cmd):
                cmd()
                continue
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
        rows.append((name, " && ".join(shlex.join(c) for c in cmds if not callable(c)), rc, wall, peak, m, init_txt,
                     "yes" if man.get("undistorted") else "no"))
    print()
    meth = "" if a.method == "splat" else f" --method {a.method}"
    print(f"Command: `python scripts/bench/real.py --cases {a.cases} --preset {a.preset}{meth}` ({os.cpu_count()} cores)")
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
