"""The segmentation stage: per-frame masks written into a processed scene (``recon process --segment``).

    prompts on one frame ─► SAM 2 video (Sam2VideoModel) ─► one object in every frame ─► training masks
        (or: GrabCut from the box, propagated frame to frame; no weights)        (drop it, or keep only it)
    no prompts ─► SAM 2 automatic masks (Sam2Model on a point grid) ─► id maps of every segment

Frames are visited in *propagation order*: from the prompted frames, always the unvisited frame whose
camera is nearest (position and viewing direction) to a visited one, so each frame follows a similar
view. For a video capture this walks the frames in time; for photos it avoids the jumps of file order.

Writes under ``OUT/segmentation/``: ``objects/STEM.png`` (255 = the object), ``masks/STEM.png`` (the
training mask: 255 = pixel used, nerfstudio's convention, combined with any mask the frame already
had), ``ids/STEM.png`` (automatic masks: uint16 id per pixel, 0 = none), ``preview/STEM.png``,
``report.json`` and ``.cache.json``. With prompts, every frame's ``mask_path`` in the processed
``transforms.json`` points at its training mask, so ``recon train OUT`` leaves the dropped pixels out
of the loss. The user's input folder is never modified (see :mod:`recon.priors.stage`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from recon.errors import ReconError
from recon.priors import segment as S

STAGE_VERSION = 1


@dataclass
class SegmentStageOptions:
    """Options of the segmentation stage (``recon process --segment``).

    Attributes:
        model: a SAM 2 folder (``save_pretrained`` layout; ``model_type`` ``sam2_video`` for
            propagation, ``sam2`` or ``sam2_video`` for automatic masks), a model ID already in the
            Hugging Face cache, or "grabcut" (offline fallback: needs a box, no weights).
        prompts: ``FRAME:x,y`` clicks on the object (pixels of that frame's image file). FRAME is the
            image's name, stem or index among the scene's frames. Several clicks on one frame are one
            prompt; clicks on several frames all prompt the same object. A suffix ``@N`` (N = 1, 2,
            ...) says which object the click is for (default 1); with several objects, every object
            needs a prompt on one common frame (SAM 2 starts all of them there).
        negatives: ``FRAME:x,y[@N]`` clicks that are not the object.
        boxes: ``FRAME:x0,y0,x1,y1[@N]``, at most one per frame and object.
        mode: "drop": the object is left out of the training loss (transient people, cars);
            "keep": only the object is trained.
        auto: options of automatic masks (no prompts given).
        grabcut_grow: GrabCut propagation: the previous frame's mask box is grown by this fraction.
        previews: write ``segmentation/preview/STEM.png``.
        device: torch device ("auto": CUDA when available, else CPU).
        force: recompute everything, ignoring the cache.
    """

    model: str = "grabcut"
    prompts: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    boxes: tuple[str, ...] = ()
    mode: str = "drop"
    auto: S.AutoMaskOptions = field(default_factory=S.AutoMaskOptions)
    grabcut_grow: float = 0.15
    previews: bool = True
    device: str = "auto"
    force: bool = False


@dataclass
class SegmentStageResult:
    """What the stage did: ``inferred`` frames ran a segmenter, ``reused`` came from the cache,
    ``masks_written`` training masks were (re)composed; ``frames`` has one entry per frame."""

    out_dir: Path
    kind: str = ""
    inferred: int = 0
    reused: int = 0
    masks_written: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)


def kind_of(opts: SegmentStageOptions) -> str:
    """"propagate" (SAM 2 video), "grabcut" or "auto" (SAM 2 automatic masks)."""
    if str(opts.model).lower() == "grabcut":
        return "grabcut"
    return "propagate" if (opts.prompts or opts.boxes) else "auto"


def check_options(opts: SegmentStageOptions) -> str:
    """Cheap checks before any work (and before SfM): the mode, the prompt syntax, the model folder.
    Returns the kind. One-line :class:`ReconError` otherwise."""
    if opts.mode not in ("drop", "keep"):
        raise ReconError(f"--segment-mode must be drop or keep, got {opts.mode!r}")
    kind = kind_of(opts)
    for what, items, n in (("--segment-prompt", opts.prompts, 2), ("--segment-negative", opts.negatives, 2),
                           ("--segment-box", opts.boxes, 4)):
        for t in items:
            body, _ = split_object(t, what)
            _, vals = S.parse_view_prompt(body, what)
            if len(vals) != n:
                raise ReconError(f"{what} {t!r}: give FRAME:{'x,y' if n == 2 else 'x0,y0,x1,y1'} ({n} numbers)")
    if opts.negatives and not (opts.prompts or opts.boxes):
        raise ReconError("--segment-negative needs a --segment-prompt or --segment-box on the object")
    a = opts.auto
    if a.points_per_side < 1 or a.points_per_side > 128:
        raise ReconError(f"--segment-points-per-side must be between 1 and 128, got {a.points_per_side}")
    if kind == "grabcut":
        if not opts.boxes:
            raise ReconError("--segment-model grabcut needs a box: --segment-box FRAME:x0,y0,x1,y1 (clicks alone need SAM 2)")
        return kind
    if kind == "propagate":
        folder = S.check_segment_model(opts.model, ("sam2_video", "sam2"), "SAM 2")
        if S.has_video_memory(folder) is False:
            raise ReconError(f"--segment-model {opts.model}: {folder} has no video-memory weights (memory_attention.*): "
                             "it is an image-only SAM 2 checkpoint; pass the full SAM 2 checkpoint, or leave out the "
                             "prompts for automatic masks")
    else:
        S.check_segment_model(opts.model, ("sam2", "sam2_video"), "SAM 2")
    return kind


MAX_OBJECTS = 254


def split_object(text: str, what: str) -> tuple[str, int]:
    """``FRAME:x,y@N`` -> (``FRAME:x,y``, N); no suffix: object 1."""
    body, sep, num = text.rpartition("@")
    if not sep:
        return text, 1
    if not num.isdigit() or not 1 <= int(num) <= MAX_OBJECTS:
        raise ReconError(f"{what} {text!r}: the object after @ must be a number from 1 to {MAX_OBJECTS}, e.g. {body}@2")
    return body, int(num)


def parse_prompts(opts: SegmentStageOptions, names: list[str], sizes: list[tuple[int, int]],
                  where: str) -> dict[int, dict[int, S.Prompt]]:
    """Object -> frame index -> :class:`~recon.priors.segment.Prompt` from the ``FRAME:...[@N]`` options."""
    lookup = S.views_of(names)
    prompts: dict[int, dict[int, S.Prompt]] = {}

    def frame(text: str, what: str) -> tuple[int, int, list[float]]:
        body, obj = split_object(text, what)
        view, vals = S.parse_view_prompt(body, what)
        if view not in lookup:
            shown = ", ".join(Path(n).stem for n in names[:4]) + (", ..." if len(names) > 4 else "")
            raise ReconError(f"{what} {text!r}: no frame {view!r} in {where} ({len(names)} frames: {shown}; "
                             "give an image name, stem or index)")
        return obj, lookup[view], vals

    for what, items, label in (("--segment-prompt", opts.prompts, 1), ("--segment-negative", opts.negatives, 0)):
        for t in items:
            obj, i, (x, y) = frame(t, what)
            p = prompts.setdefault(obj, {}).setdefault(i, S.Prompt())
            p.points.append((x, y))
            p.labels.append(label)
    for t in opts.boxes:
        obj, i, vals = frame(t, "--segment-box")
        p = prompts.setdefault(obj, {}).setdefault(i, S.Prompt())
        if p.box is not None:
            raise ReconError(f"--segment-box {t!r}: frame {names[i]} already has a box for object {obj} (one box per frame and object)")
        p.box = tuple(vals)  # type: ignore[assignment]
    for obj, frames in prompts.items():
        for i, p in frames.items():
            w, h = sizes[i]
            p.check(w, h, f"{names[i]}")
            if not any(p.labels) and p.box is None:
                raise ReconError(f"{names[i]}: object {obj} has only negative clicks; add a --segment-prompt or --segment-box on it")
    return dict(sorted(prompts.items()))


def common_frame(prompts: dict[int, dict[int, S.Prompt]], names: list[str]) -> int:
    """The first frame that prompts every object (SAM 2 video starts all objects together)."""
    shared = set.intersection(*(set(f) for f in prompts.values()))
    if not shared:
        objs = ", ".join(f"{o}: {', '.join(Path(names[i]).stem for i in sorted(f))}" for o, f in prompts.items())
        raise ReconError(f"with several objects, prompt every object on one common frame (prompted frames per object: {objs}); "
                         "e.g. add --segment-prompt FRAME:x,y@2 on a frame of object 1")
    return min(shared)


def propagation_order(c2ws: np.ndarray, starts: list[int]) -> tuple[list[int], list[int]]:
    """The order frames are segmented in, and each frame's parent (the visited frame it is nearest
    to; -1 for the prompted frames).

    Distance between cameras: position distance over the cameras' median spacing to their nearest
    neighbour, plus ``1 - cos`` of the angle between the viewing directions, plus a tiny tie-break
    on the frame index (static tripods: file order). Prim's order from the prompted frames.
    """
    n = len(c2ws)
    pos = c2ws[:, :3, 3]
    fwd = c2ws[:, :3, 2]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    if n > 1:
        nn = np.sort(d + np.eye(n) * 1e30, axis=1)[:, 0]
        scale = float(np.median(nn))
        d = d / (scale if scale > 1e-12 else 1.0)
    d = d + (1.0 - np.clip(fwd @ fwd.T, -1, 1)) * 4.0
    idx = np.arange(n)
    d = d + 1e-3 * np.abs(idx[:, None] - idx[None]) / max(n, 1)
    order = list(dict.fromkeys(starts))
    parent = {i: -1 for i in order}
    best = np.full(n, np.inf)
    arg = np.full(n, -1)
    for s in order:
        better = d[s] < best
        best[better], arg[better] = d[s][better], s
    seen = np.zeros(n, bool)
    seen[order] = True
    best[seen] = np.inf
    while len(order) < n:
        j = int(np.argmin(np.where(seen, np.inf, best)))
        order.append(j)
        parent[j] = int(arg[j])
        seen[j] = True
        better = (d[j] < best) & ~seen
        best[better], arg[better] = d[j][better], j
    return order, [parent[i] for i in order]


def load_rgb(scene, i: int) -> np.ndarray:
    """Frame ``i``'s image file as uint8 ``[H, W, 3]``, in the file's own pixels (before any
    undistortion), which is where its mask file lives."""
    from recon.scene.images import decode, match_orientation, split_rgba

    f = scene.frames[i]
    cam = f.source_camera or f.camera
    arr = decode(f.image_path)
    if cam is not None:
        arr = match_orientation(arr, f.image_path, (cam.width, cam.height))
    bg = None if scene.background is None else tuple(float(v) for v in scene.background)
    rgb, _ = split_rgba(arr, bg)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def _png(path: Path, arr: np.ndarray) -> None:
    from recon.priors.stage import _save_png

    _save_png(path, arr)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _grabcut_sequence(scene, order, parent, prompts, grow, progress, read):
    """GrabCut on the prompted frames from their box (and clicks), then on every other frame from its
    parent's mask (``read(parent)``, from the file already written): the mask's bounding box grown
    by ``grow``, the mask itself as "probably object"."""
    seg = S.GrabCutSegmenter()
    for n, (i, p) in enumerate(zip(order, parent)):
        img = load_rgb(scene, i)
        if p < 0:
            m = seg.segment(img, prompts[i], str(i))
        else:
            prev = read(p)
            box = S.footprint_box(prev, grow)
            if box is None or prev.shape != img.shape[:2]:
                m = np.zeros(img.shape[:2], bool)
            else:
                m = seg.segment(img, S.Prompt(box=box, hint=prev.astype(np.float32)), str(i))
        progress(n + 1)
        yield i, m, None


def _sam2_sequence(scene, order, prompts, model: S.Sam2VideoPropagator, size, progress):
    pos = {i: k for k, i in enumerate(order)}
    w, h = size
    seq_prompts = {o: {pos[i]: p for i, p in fr.items()} for o, fr in prompts.items()}
    for k, m, score in model.propagate(len(order), h, w, lambda k: load_rgb(scene, order[k]), seq_prompts, progress):
        yield order[k], m, score


_PALETTE = (np.random.default_rng(7).uniform(40, 255, (4096, 3))).astype(np.uint8)


def _preview_mask(img: np.ndarray, labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Ignored pixels darkened; object 1 tinted red, others in the palette's colours."""
    out = img.astype(np.float32)
    out[~keep] *= 0.3
    obj = labels > 0
    col = np.where((labels == 1)[..., None], np.array([255.0, 40.0, 40.0]), _PALETTE[labels.astype(np.int64)].astype(np.float32))
    out[obj] = 0.5 * out[obj] + 0.5 * col[obj]
    return np.clip(out, 0, 255).astype(np.uint8)


def _preview_ids(img: np.ndarray, ids: np.ndarray) -> np.ndarray:
    col = _PALETTE[ids.astype(np.int64) % len(_PALETTE)].astype(np.float32)
    out = img.astype(np.float32)
    on = ids > 0
    out[on] = 0.45 * out[on] + 0.55 * col[on]
    return np.clip(out, 0, 255).astype(np.uint8)


def _point_masks_in_place(out: Path, scene, mask_paths: dict[int, Path]) -> None:
    """Set ``mask_path`` of the frames of ``out/transforms.json`` (a recon output)."""
    from recon.io_utils import atomic_write_text

    tj_path = out / "transforms.json"
    tj = json.loads(tj_path.read_text())
    by_image = {os.path.abspath(f.image_path): i for i, f in enumerate(scene.frames)}
    for fd in tj.get("frames", []):
        i = by_image.get(os.path.abspath(out / fd.get("file_path", "")))
        if i is not None and i in mask_paths:
            fd["mask_path"] = os.path.relpath(mask_paths[i], out)
    atomic_write_text(tj_path, json.dumps(tj, indent=2) + "\n")


def write_segment_priors(
    scene_dir: Path | str,
    out_dir: Path | str | None = None,
    options: Optional[SegmentStageOptions] = None,
    log: Optional[Callable[[str], None]] = None,
) -> SegmentStageResult:
    """Segmentation masks for every frame of a posed scene, written into a processed scene.

    Args:
        scene_dir: a posed scene (a ``recon process`` output, nerfstudio, COLMAP, Blender, ...).
        out_dir: where the processed scene goes; as :func:`recon.priors.stage.write_depth_priors`.
        options: :class:`SegmentStageOptions`.
        log: progress lines.
    """
    from recon.io_utils import atomic_write_text
    from recon.priors import stage as ST
    from recon.priors.depth import ProgressLine, _fingerprint
    from recon.scene.readers import load_scene

    opts = options or SegmentStageOptions()
    kind = check_options(opts)
    src = Path(scene_dir).expanduser()
    scene = load_scene(src)
    if not scene.has_poses:
        raise ReconError(f"{src}: segmentation needs posed frames; run `recon process {src}` first")
    n = len(scene.frames)
    names = [f.name for f in scene.frames]
    sizes = [((f.source_camera or f.camera).width, (f.source_camera or f.camera).height) for f in scene.frames]
    prompts = parse_prompts(opts, names, sizes, str(src)) if kind != "auto" else {}
    if kind == "grabcut":
        for o, fr in prompts.items():
            for i, p in fr.items():
                if p.box is None:
                    raise ReconError(f"--segment-model grabcut: object {o} on {names[i]} has clicks but no box; "
                                     f"add --segment-box {Path(names[i]).stem}:x0,y0,x1,y1" + (f"@{o}" if o > 1 else ""))
    if kind != "auto" and len(set(sizes)) > 1:
        (w0, h0), j = sizes[0], next(k for k, s in enumerate(sizes) if s != sizes[0])
        raise ReconError(f"{scene.frames[j].image_path}: image is {sizes[j][0]}x{sizes[j][1]} but "
                         f"{scene.frames[0].image_path} is {w0}x{h0}; propagating masks needs frames of one size "
                         "(process each size as its own scene)")
    folder = None if kind == "grabcut" else S.check_segment_model(opts.model, ("sam2_video", "sam2"), "SAM 2")
    fp = None if folder is None else _fingerprint(folder)
    out, in_place = ST._prepare_out(scene, src, None if out_dir is None else Path(out_dir), what="segment")
    sdir = out / "segmentation"
    dirs = {k: sdir / k for k in ("objects", "masks", "ids", "preview")}
    cache_file = sdir / ".cache.json"
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() and not opts.force else {}
    except (OSError, ValueError):
        cache = {}
    stems = ST._stems(scene.frames)
    shas = [ST._file_sha(f.image_path) for f in scene.frames]
    res = SegmentStageResult(out_dir=out, kind=kind)
    info: dict[int, dict[str, Any]] = {i: {} for i in range(n)}
    mask_paths: dict[int, Path] = {}
    new_cache: dict[str, Any] = {"kind": kind}

    if kind == "auto":
        a = opts.auto
        keys = [ST._sha(STAGE_VERSION, "auto", fp, asdict(a), shas[i], sizes[i]) for i in range(n)]
        old = cache.get("ids", {}) if cache.get("kind") == "auto" else {}
        todo = [i for i in range(n) if opts.force or old.get(stems[i]) != keys[i] or not (dirs["ids"] / f"{stems[i]}.png").is_file()]
        res.reused = n - len(todo)
        segments = cache.get("segments", {}) if cache.get("kind") == "auto" else {}
        if todo:
            seg = S.load_sam2_image_model(opts.model, opts.device)  # fails before anything is written
            for i in todo:  # an interrupted run must not leave new files under old keys
                old.pop(stems[i], None)
            if cache_file.is_file():
                atomic_write_text(cache_file, json.dumps({**cache, "ids": old}, indent=1, sort_keys=True, default=str) + "\n")
            dirs["ids"].mkdir(parents=True, exist_ok=True)
            if opts.previews:
                dirs["preview"].mkdir(parents=True, exist_ok=True)
            prog = ProgressLine(log, "segment (automatic masks)", len(todo))
            for k, i in enumerate(todo):
                img = load_rgb(scene, i)
                ids, segs = S.automatic_masks(seg, img, a)
                _png(dirs["ids"] / f"{stems[i]}.png", ids)
                if opts.previews:
                    _png(dirs["preview"] / f"{stems[i]}.png", _preview_ids(img, ids))
                segments[stems[i]] = segs
                old[stems[i]] = keys[i]
                res.inferred += 1
                prog(k + 1)
        new_cache["ids"] = {s: old[s] for s in stems if s in old}
        new_cache["segments"] = {s: segments.get(s, []) for s in stems}
        for i, s in enumerate(stems):
            info[i] = {"ids": f"segmentation/ids/{s}.png", "segments": len(new_cache["segments"][s])}
    else:
        # The frames' own masks (before this stage pointed them at its masks) are combined with ours.
        prev_base = cache.get("base", {})
        base: dict[str, Optional[str]] = {}
        for i, f in enumerate(scene.frames):
            mp = f.mask_path
            if mp is not None and os.path.abspath(mp).startswith(os.path.abspath(dirs["masks"]) + os.sep):
                base[stems[i]] = prev_base.get(stems[i])
            else:
                base[stems[i]] = None if mp is None else os.path.abspath(mp)
        c2ws = np.stack([f.camera.c2w for f in scene.frames])
        if kind == "grabcut":  # each object from its own prompted frames
            orders = {o: propagation_order(c2ws, sorted(fr)) for o, fr in prompts.items()}
        else:  # SAM 2 starts every object on a common frame
            first = common_frame(prompts, names)
            starts = [first] + sorted({i for fr in prompts.values() for i in fr} - {first})
            orders = {0: propagation_order(c2ws, starts)}
        order, parent = next(iter(orders.values()))
        pr = {o: {names[i]: {"points": p.points, "labels": p.labels, "box": p.box} for i, p in sorted(fr.items())}
              for o, fr in prompts.items()}
        run_key = ST._sha(STAGE_VERSION, kind, fp, pr, shas, sizes[0], {o: v for o, v in orders.items()},
                          opts.grabcut_grow if kind == "grabcut" else None)
        have = cache.get("run") == run_key and all((dirs["objects"] / f"{s}.png").is_file() for s in stems)
        computed: set[int] = set()  # masks are read back from their files: memory stays bounded
        scores: dict[int, Any] = {}
        if opts.force or not have:
            def obj_file(j: int) -> Path:
                return dirs["objects"] / f"{stems[j]}.png"

            if kind == "grabcut":
                prog = ProgressLine(log, "segment (grabcut)", n * len(prompts))
                seqs = [(o, _grabcut_sequence(scene, orders[o][0], orders[o][1], prompts[o], opts.grabcut_grow,
                                              lambda d, k=k: prog(k * n + d), lambda j, o=o: _read_png(obj_file(j)) == o))
                        for k, o in enumerate(prompts)]
            else:
                model = S.Sam2VideoPropagator(opts.model, opts.device)  # fails before anything is written
                prog = ProgressLine(log, "segment (SAM 2 video)", n)
                seqs = [(0, _sam2_sequence(scene, order, prompts, model, sizes[0], prog))]
            if cache_file.is_file():  # an interrupted run must not leave new objects under the old key
                atomic_write_text(cache_file, json.dumps({k: v for k, v in cache.items() if k not in ("run", "masks")},
                                                         indent=1, sort_keys=True, default=str) + "\n")
            dirs["objects"].mkdir(parents=True, exist_ok=True)
            for o, seq in seqs:
                for i, m, score in seq:
                    if o == 0:  # SAM 2: labels of every object
                        lab = m
                    else:  # GrabCut, one object at a time: later objects are painted over earlier ones
                        lab = _read_png(obj_file(i)).copy() if i in computed else np.zeros(m.shape, np.uint8)
                        lab[m] = o
                    computed.add(i)
                    scores[i] = score
                    _png(obj_file(i), lab.astype(np.uint8))
            res.inferred = n
            cache.pop("masks", None)
        else:
            res.reused = n
            if log:
                log(f"segment: {n}/{n} object masks up to date (same images, model and prompts)")
            scores = {i: cache.get("scores", {}).get(stems[i]) for i in range(n)}
        dirs["masks"].mkdir(parents=True, exist_ok=True)
        if opts.previews:
            dirs["preview"].mkdir(parents=True, exist_ok=True)
        old_masks = cache.get("masks", {}) if cache.get("run") == run_key else {}
        new_masks: dict[str, str] = {}
        for i, s in enumerate(stems):
            b = base[s]
            if b is not None and not Path(b).is_file():
                raise ReconError(f"{b}: the mask of frame {names[i]} is missing; restore it, or run `recon process` on the original scene again")
            bkey = None if b is None else ST._file_sha(Path(b))
            key = ST._sha(run_key, opts.mode, bkey)
            mpath = dirs["masks"] / f"{s}.png"
            if opts.force or old_masks.get(s) != key or not mpath.is_file() or i in computed:
                lab = _read_png(dirs["objects"] / f"{s}.png")
                obj = lab > 0
                keep = ~obj if opts.mode == "drop" else obj.copy()
                if b is not None:
                    from recon.scene.images import read_mask, resize

                    bm = read_mask(Path(b))
                    if bm.shape != keep.shape:
                        bm = resize(bm, (keep.shape[1], keep.shape[0]))
                    keep &= bm >= 0.5
                _png(mpath, keep.astype(np.uint8) * 255)
                if opts.previews:
                    _png(dirs["preview"] / f"{s}.png", _preview_mask(load_rgb(scene, i), lab, keep))
                res.masks_written += 1
                area = float(obj.mean())
                per_object = {int(o): round(float((lab == o).mean()), 5) for o in prompts}
            else:
                area = per_object = None
            new_masks[s] = key
            mask_paths[i] = mpath
            info[i] = {"object": f"segmentation/objects/{s}.png", "mask": f"segmentation/masks/{s}.png",
                       "base_mask": b, "object_score": scores.get(i),
                       "parent": names[parent[order.index(i)]] if parent[order.index(i)] >= 0 else None}
            if area is not None:
                info[i]["object_fraction"] = round(area, 5)
                if len(prompts) > 1:
                    info[i]["object_fractions"] = per_object
        new_cache.update({"run": run_key, "masks": new_masks, "base": base,
                          "scores": {stems[i]: scores.get(i) for i in range(n)}})
        empty = [names[i] for i in range(n) if info[i].get("object_fraction") == 0.0]
        if empty and log:
            log(f"warning: segment: the object was not found in {len(empty)}/{n} frames (e.g. {empty[0]})"
                + ("; those frames train no pixels with --segment-mode keep" if opts.mode == "keep" else ""))

    # files of frames that are no longer in the scene
    recorded = set().union(*(cache.get(k, {}) for k in ("ids", "masks", "base", "scores")))
    for s in sorted(recorded - set(stems)):
        for d in dirs.values():
            p = d / f"{s}.png"
            if p.is_file() and p.resolve().is_relative_to(out.resolve()):
                p.unlink()
    sdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache_file, json.dumps(new_cache, indent=1, sort_keys=True, default=str) + "\n")
    for i, s in enumerate(stems):
        res.frames.append({"frame": s, **info[i]})
    report = {"kind": kind, "model": str(opts.model), "mode": opts.mode if kind != "auto" else None,
              "options": asdict(opts), "inferred": res.inferred, "reused": res.reused,
              "masks_written": res.masks_written, "frames": res.frames}
    atomic_write_text(sdir / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    if in_place:
        if mask_paths:
            _point_masks_in_place(out, scene, mask_paths)
    else:
        ST._write_copy(scene, out, None, mask_paths=mask_paths, written_by="recon process --segment")
    if log:
        what = f"{len(mask_paths)} training masks ({opts.mode} the object)" if mask_paths else f"{n} id maps"
        log(f"segment: {what}, {res.inferred} frames segmented, {res.reused} reused -> {sdir}")
    return res
