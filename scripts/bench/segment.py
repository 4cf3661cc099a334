"""Segmentation stage (`recon process --segment`): GrabCut propagation against ground truth, and the
speed of SAM 2 propagation and automatic masks with a tiny random model.

    .venv/bin/python scripts/bench/segment.py                         # turntable 16x96, 24x96, 32x128
    .venv/bin/python scripts/bench/segment.py --scenes 32x128 --sam-frames 32

GrabCut: one box around the whole sculpture (ids > 0, 3 px margin) on frame 0 of the built-in
turntable, propagated to every other frame (``--segment-mode keep``), visiting frames by nearest
camera (recon's order) and, for comparison, in file order. IoU against the true object masks of
every frame. SAM 2: a tiny random ``Sam2VideoModel`` (128² input; the shapes of tests/
test_priors_segment.py) saved and loaded through recon's code; seconds per frame for propagation and
for automatic masks, one torch thread. Random weights say nothing about mask quality; the released
checkpoints are much larger and slower.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def grabcut_rows(spec: str, work: Path) -> list[str]:
    from PIL import Image

    import scenes
    from recon.priors import segment as S
    from recon.priors import segment_stage as SS
    from recon.scene.readers import load_scene

    views, res = (int(v) for v in spec.split("x"))
    root = scenes.synth("turntable", work / f"tt{spec}", views=views, res=res)
    sc = load_scene(root)
    ids = [np.asarray(Image.open(root / "masks" / f"{Path(f.image_path).stem}.png")) for f in sc.frames]
    ys, xs = np.nonzero(ids[0] > 0)
    prompt = {0: S.Prompt(box=(xs.min() - 3, ys.min() - 3, xs.max() + 4, ys.max() + 4))}
    c2ws = np.stack([f.camera.c2w for f in sc.frames])
    rows = []
    for name, (order, parent) in (("nearest camera", SS.propagation_order(c2ws, [0])),
                                  ("file order", (list(range(views)), [-1] + list(range(views - 1))))):
        masks: dict[int, np.ndarray] = {}
        t = time.perf_counter()
        for i, m, _ in SS._grabcut_sequence(sc, order, parent, prompt, 0.15, lambda k: None, lambda j: masks[j]):
            masks[i] = m
        dt = time.perf_counter() - t
        iou = np.array([(masks[i] & (ids[i] > 0)).sum() / ((masks[i] | (ids[i] > 0)).sum()) for i in range(views)])
        rows.append(f"| GrabCut, {name} | turntable {views} views, {res} px | {iou.mean():.3f} | {iou.min():.3f} | "
                    f"{dt / views * 1000:.0f} ms |")
    return rows


def sam_rows(frames: int, work: Path) -> list[str]:
    import torch
    import transformers

    from recon.priors import segment as S
    from test_priors_segment import _video_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    folder = work / "sam2-video-tiny"
    transformers.Sam2VideoModel(_video_config()).save_pretrained(folder)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(frames)]
    model = S.Sam2VideoPropagator(str(folder))
    t = time.perf_counter()
    n = sum(1 for _ in model.propagate(frames, 256, 256, lambda k: imgs[k], {0: S.Prompt(points=[(128.0, 128.0)], labels=[1])}))
    prop = (time.perf_counter() - t) / n
    seg = S.load_sam2_image_model(str(folder))
    t = time.perf_counter()
    for k in range(min(frames, 8)):
        S.automatic_masks(seg, imgs[k], S.AutoMaskOptions(points_per_side=16, pred_iou=-1e9, stability=0.0))
    auto = (time.perf_counter() - t) / min(frames, 8)
    return [f"| SAM 2 video propagation (tiny random) | {frames} frames, 256 px | – | – | {prop * 1000:.0f} ms |",
            f"| SAM 2 automatic masks, 16 x 16 clicks (tiny random) | 256 px | – | – | {auto * 1000:.0f} ms |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", default="16x96,24x96,32x128", help="VIEWSxRES,... of the turntable")
    ap.add_argument("--sam-frames", type=int, default=16, help="frames for the SAM 2 timing (0: skip)")
    a = ap.parse_args()
    import recon  # noqa: F401  (torchvision's operators declared before transformers is imported)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in a.scenes.split(","):
            rows += grabcut_rows(spec.strip(), Path(tmp))
        if a.sam_frames:
            rows += sam_rows(a.sam_frames, Path(tmp))
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print("| method | data | mean IoU | worst frame | time per frame |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
