#!/usr/bin/env python
"""A dynamic run on one moving-camera video: what it reaches, as a table and a strip of frames.

    python scripts/bench/splat4d_video.py RUN [RUN ...] [--strip docs/img/x.jpg] [--columns 5] [--tile 284]

For each run (a ``recon train VIDEO_SCENE --method splat4d`` or ``--method splat`` run) it prints:
registered frames out of those the video was sampled to (from the processed scene's
``recon_time`` / ``sfm_report.json``), the time range they cover, the held-out frames' PSNR each at
its own time, the steps reached and the training wall time (``metrics.json``), and how much the
motion model moves: the share of pixels of each held-out render that differ by more than 0.1
(any channel) from the same camera rendered at the first training time (0 for a static run).

``--strip`` writes a JPEG of the first run: one column per held-out frame (up to ``--columns``, in
time order), rows ground truth | render at the frame's time | the same camera rendered at the
first training time (what the motion model moved) | absolute error of the render (x3).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _scene_facts(scene_dir: Path) -> dict:
    tj = json.loads((scene_dir / "transforms.json").read_text())
    rep_p = scene_dir / "sfm_report.json"
    rep = json.loads(rep_p.read_text()) if rep_p.is_file() else {}
    return {"sampled": (tj.get("recon_time") or {}).get("frames_sampled", rep.get("images_total")),
            "registered": len(tj["frames"]), "matcher": rep.get("matcher"), "mapper": rep.get("mapper")}


def _rows(run_dir: Path):
    """(facts, per-held-out-frame records with images) of one run."""
    from recon.eval.metrics import psnr
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene
    from recon.train.data import Views

    run = RunFolder.open(run_dir)
    scene_dir = run.scene_path()
    sc = load_scene(scene_dir, background=EVAL_BACKGROUND, undistort=True)
    met = run.metrics()
    ds = float(run.render_settings.get("downscale") or 1.0)
    test = sorted(sc.indices("test"), key=lambda i: sc.frames[i].time or 0.0)
    train_t = sorted(sc.frames[i].time for i in sc.indices("train") if sc.frames[i].time is not None)
    views = Views(sc, test, ds, preload_bytes=0)
    rend = run.renderer()
    bg = torch.tensor(sc.background if sc.background is not None else EVAL_BACKGROUND, dtype=torch.float32)
    recs = []
    for k in range(len(views)):
        v = views.get(k)
        with torch.no_grad():
            rgb = rend.render(v.camera, time=v.time, background=bg).rgb.clamp(0, 1).cpu()
            at0 = rend.render(v.camera, time=train_t[0] if train_t else 0.0, background=bg).rgb.clamp(0, 1).cpu()
        recs.append({"name": v.name, "time": v.time, "psnr": psnr(rgb, v.image), "gt": v.image.numpy(),
                     "render": rgb.numpy(), "at_first": at0.numpy(),
                     "moved": float((rgb - at0).abs().mean()) * 255.0,
                     "moved_px": float(((rgb - at0).abs().amax(-1) > 0.1).float().mean()) * 100.0})
    facts = _scene_facts(Path(scene_dir))
    facts.update(method=run.method, steps=met.get("steps"), train_s=met.get("train_seconds"),
                 psnr=float(np.mean([r["psnr"] for r in recs])) if recs else float("nan"),
                 run_psnr=met.get("psnr"), times=(train_t[0], train_t[-1]) if train_t else None,
                 res=f"{views.cameras[0].width}x{views.cameras[0].height}" if len(views) else "-",
                 gaussians=(met.get("stats") or {}).get("gaussians") or met.get("num_gaussians"))
    return facts, recs


def _strip(recs: list[dict], path: Path, columns: int, tile: int) -> None:
    from PIL import Image

    sel = recs if len(recs) <= columns else [recs[i] for i in np.linspace(0, len(recs) - 1, columns).round().astype(int)]
    h0, w0 = sel[0]["gt"].shape[:2]
    th = max(2, round(h0 * tile / w0))
    rows = []
    for key in ("gt", "render", "at_first", "err"):
        tiles = []
        for r in sel:
            a = np.clip(np.abs(r["render"] - r["gt"]) * 3.0, 0, 1) if key == "err" else r[key]
            im = Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((tile, th), Image.LANCZOS)
            tiles.append(np.asarray(im))
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.jpg")
    Image.fromarray(grid).save(tmp, quality=82, optimize=True)
    tmp.replace(path)
    print(f"strip: {path} ({path.stat().st_size / 1024:.0f} KB): columns = held-out frames at times "
          + ", ".join(f"{r['time']:.3f}" for r in sel)
          + "; rows = ground truth | render at its time | same camera at the first training time | |error| x3")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--strip", type=Path, default=None, help="JPEG strip of the first run's held-out frames")
    ap.add_argument("--columns", type=int, default=5)
    ap.add_argument("--tile", type=int, default=284, help="tile width in pixels")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("command: python scripts/bench/splat4d_video.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    print()
    print("| run | method | registered / sampled | SfM | training times | held-out frames | held-out PSNR (dB) | steps | train s | eval res | motion: pixels changed vs first time |")
    print("| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |")
    first = None
    for r in args.runs:
        facts, recs = _rows(r)
        first = first or recs
        t = facts["times"]
        print(f"| {r.name} | {facts['method']} | {facts['registered']} / {facts['sampled']} | {facts['matcher']}, "
              f"{facts['mapper']} | {'-' if not t else f'{t[0]:.3f}-{t[1]:.3f}'} | {len(recs)} | {facts['psnr']:.2f} | "
              f"{facts['steps']} | {facts['train_s'] and round(facts['train_s'])} | {facts['res']} | "
              f"{np.mean([x['moved_px'] for x in recs]):.1f} % |")
        print("  per frame (name, time, PSNR dB, % of pixels that differ by > 0.1 from the same camera at the first "
              "training time): " + ", ".join(f"{Path(x['name']).name} t={x['time']:.3f} {x['psnr']:.2f} {x['moved_px']:.1f}%"
                                            for x in recs))
    if args.strip and first:
        _strip(first, args.strip, args.columns, args.tile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
