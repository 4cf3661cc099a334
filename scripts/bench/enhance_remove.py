"""Remove and retrain (docs/enhance.md): how much of an object inpainted out of every frame is left
in the retrained splats, and how much of the surfaces it hid survive, per setting of the removal.

    .venv/bin/python scripts/bench/enhance_remove.py
    .venv/bin/python scripts/bench/enhance_remove.py --steps 600 --settings 0.9:1,0.7:1,0.5:1,0.9:0.5,0.9:0

The synthetic turntable (16 views, 64x64) made RGBA with exact coverage, the cone (object 5)
inpainted out with ``inpaint:radius=7:dilate=2:solid=S`` from its true masks, splats trained with
``--alpha-weight W`` (the setup of tests/test_enhance_experiments.py, one thread). Columns: the mean
rendered alpha over every view on the cone's footprint where the view shows empty background once
it is gone (``footprint``; the issue's bar: at most 10 % of the model trained on the originals) and
where it hid other surfaces (``hidden``; 1 is a surface kept whole).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--settings", default="0.9:1,0.7:1,0.5:1,0.9:0.5,0.9:0",
                    help="comma-separated SOLID:ALPHA_WEIGHT pairs")
    args = ap.parse_args(argv)
    settings = [tuple(float(v) for v in s.split(":")) for s in args.settings.split(",")]

    from PIL import Image

    import scenes
    from recon.cli import run
    from recon.scene.readers import load_scene
    from scenes.dataset import build
    from test_enhance_experiments import OBJECT, RES, VIEWS, _object_alpha, _train, _with_alpha

    recipe = build("turntable")
    without = replace(recipe, parts=[p for p in recipe.parts if p.object_id != OBJECT])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clean = Path(scenes.synth("turntable", work / "clean", views=VIEWS, res=RES))
        rgba = _with_alpha(clean, work / "rgba")
        frames = [(i, np.asarray(Image.open(clean / "masks" / f"{Path(f.image_path).stem}.png")).astype(np.int64))
                  for i, f in enumerate(load_scene(rgba).frames)]
        base: dict[float, tuple[float, float]] = {}
        for solid, weight in settings:
            if weight not in base:
                t0 = time.perf_counter()
                tr, sc = _train(rgba, work / f"orig-{weight:g}", args.steps, weight)
                base[weight] = _object_alpha(tr, sc, without, frames)
                rows.append(("originals", "", f"{weight:g}", *base[weight], "", time.perf_counter() - t0))
            out = work / f"removed-{solid:g}"
            if not out.exists():
                assert run(["process", str(rgba), "--out", str(out), "--enhance", f"inpaint:radius=7:dilate=2:solid={solid:g}",
                            "--enhance-masks", str(clean / "masks"), "--enhance-mask-ids", str(OBJECT)]) == 0
            t0 = time.perf_counter()
            tr, sc = _train(out, work / f"run-{solid:g}-{weight:g}", args.steps, weight)
            fp, hid = _object_alpha(tr, sc, without, frames)
            drop = f"{1 - fp / base[weight][0]:.1%}"
            rows.append(("inpainted", f"{solid:g}", f"{weight:g}", fp, hid, drop, time.perf_counter() - t0))

    print("command: " + shlex.join([".venv/bin/python", "scripts/bench/enhance_remove.py", *(argv if argv is not None else sys.argv[1:])]))
    print(f"turntable {VIEWS} views {RES}x{RES} RGBA, object {OBJECT} (cone), {args.steps} steps, 1 thread")
    print(f"{'frames':<10} {'solid':>5} {'alpha-w':>7} {'footprint':>9} {'hidden':>7} {'drop':>6} {'train s':>7}")
    for name, solid, w, fp, hid, drop, secs in rows:
        print(f"{name:<10} {solid:>5} {w:>7} {fp:>9.3f} {hid:>7.3f} {drop:>6} {secs:>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
