"""Object selection (`recon select`): held-out IoU of each object's selection, with and without the
boundary refinement (`--refine`), on the synthetic scenes of tests/test_select.py.

    .venv/bin/python scripts/bench/select_objects.py                       # train both scenes, then measure
    .venv/bin/python scripts/bench/select_objects.py --turntable-run RUN --turntable-scene SCENE --skip-tabletop

Turntable (32 views at 128 px, 4 held out, `recon train --preset fast --steps 1500`): one click per
object on the first training view, id maps standing in for SAM. Tabletop (24 views at 96 px, 3 held
out, 1,000 steps): a box per object on the first training view, GrabCut. Figures are pooled over the
held-out views: the selection's visible footprint (with the rest of the model in place) against the
visible object mask, and the selection rendered alone against the object's whole silhouette; and
the held-out PSNR of the model the selection applies to (the run's, or the refined one).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _psnr(run: Path, scene: Path, name: str) -> float:
    import test_select as T

    from recon.run import RunFolder
    from recon.selection import load_selection

    rf = RunFolder.open(run)
    g, _, _ = load_selection(run, name, rf.path("model"), rf.gaussians())
    return T._heldout_psnr(g, rf.antialiased, scene)


def measure(run: Path, scene: Path, sil, objects: dict[int, str], prompt, refine: list[str], threads: int) -> list[str]:
    import test_select as T

    from recon.cli import run as cli

    view = T._first_train_view(scene)
    rows = []
    for target, label in objects.items():
        cells = []
        for steps in refine:
            name = f"bench-{target}-{steps}"
            t = time.perf_counter()
            args = ["select", str(run), *prompt(scene, view, target), "--name", name]
            if steps != "default":
                args += ["--refine", steps]
            if cli(args) != 0:
                cells.append("failed")
                continue
            dt = time.perf_counter() - t
            iou, alone = T.heldout_iou(run, scene, name, target, sil)
            cells.append(f"{iou:.3f} / {alone:.3f} ({_psnr(run, scene, name):.2f} dB, {dt:.0f} s)")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turntable-run", type=Path)
    ap.add_argument("--turntable-scene", type=Path)
    ap.add_argument("--skip-tabletop", action="store_true")
    ap.add_argument("--refine", default="0,default", help="comma-separated --refine values to compare")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    import scenes
    import test_select as T
    from recon.cli import run as cli
    from scenes.recipes import RECIPES

    refine = a.refine.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-select-"))
    print(f"command: {' '.join(shlex.quote(x) for x in sys.argv)}   (work folder {work})", flush=True)
    if a.turntable_run is None:
        scene = T._with_alpha(scenes.synth("turntable", work / "turntable", views=T.VIEWS, res=T.RES))
        run = work / "turntable-run"
        assert cli(["train", str(scene), "--preset", "fast", "--steps", "1500", "--threads", str(a.threads),
                    "--out", str(run)]) == 0
    else:
        run, scene = a.turntable_run, a.turntable_scene

    def click(sc, view, target):
        x, y = T._inner_point(T._ids(sc, view), target)
        return ["--prompt", f"{view}:{x},{y}", "--segmenter", f"ids:{sc / 'masks'}"]

    def box(sc, view, target):
        x0, y0, x1, y1 = T._box(T._ids(sc, view), target)
        return ["--box", f"{view}:{x0},{y0},{x1},{y1}"]

    head = "| object | " + " | ".join(f"--refine {s}" for s in refine) + " |\n|" + " --- |" * (len(refine) + 1)
    rows = measure(run, scene, T.Silhouettes(scenes.build("turntable")),
                   {T.BLOB: "turntable blob", T.KNOT: "knot", T.CUBE: "cube", T.CONE: "cone", T.RING: "ring"},
                   click, refine, a.threads)
    if not a.skip_tabletop:
        RECIPES["select-test-tabletop"] = T.tabletop
        tab = T._with_alpha(scenes.synth("select-test-tabletop", work / "tabletop", views=24, res=96))
        trun = work / "tabletop-run"
        assert cli(["train", str(tab), "--preset", "fast", "--steps", "1000", "--threads", str(a.threads),
                    "--out", str(trun)]) == 0
        rows += measure(trun, tab, T.Silhouettes(T.tabletop()), {T.RED_BOX: "tabletop red box (GrabCut)",
                                                               T.BALL: "ball on a post (GrabCut)"}, box, refine, a.threads)
    print("\nheld-out IoU: visible footprint / alone vs the whole silhouette (held-out PSNR of the model, "
          "seconds of `recon select`)\n")
    print(head)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
