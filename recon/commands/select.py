"""``recon select RUN --prompt VIEW:x,y | --box VIEW:x0,y0,x1,y1 | --masks DIR``: cut one object
out of a trained splat run (docs/priors.md, "Selecting an object")."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import tyro

from recon.errors import ReconError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_views(rf, need_images: bool):
    from recon.priors.lift import LiftView
    from recon.run import EVAL_BACKGROUND
    from recon.scene.images import decode, resize, split_rgba

    cams = [c for c in rf.cameras() if c.split == "train"]
    if not cams:
        raise ReconError(f"{rf.root}: the run has no training cameras (cameras.json); it cannot be selected from")
    views, missing = [], 0
    for c in cams:
        img = alpha = None
        if need_images:
            p = rf.image_path(c)
            if p is None:
                missing += 1
            else:
                rgb, a = split_rgba(decode(p), EVAL_BACKGROUND)
                img = (np.clip(resize(rgb, (c.width, c.height)), 0, 1) * 255 + 0.5).astype(np.uint8)
                if a is not None:
                    alpha = np.clip(resize(np.asarray(a, np.float32), (c.width, c.height)), 0, 1)
        views.append(LiftView(camera=c.camera, image=img, key=Path(c.image or c.name).stem, alpha=alpha))
    return cams, views, missing


def _image_size(rf, cam) -> tuple[int, int]:
    from recon.scene.images import image_size

    p = rf.image_path(cam)
    return image_size(p) if p is not None else (cam.width, cam.height)


def _preview(path: Path, renderer, views, labels, count: int = 4) -> None:
    """Training image beside the selection rendered alone, for a few views spread over the set."""
    import torch
    from PIL import Image

    from recon.io_utils import atomic_path

    sub = renderer.subset(labels)
    idx = np.linspace(0, len(views) - 1, min(count, len(views))).round().astype(int)
    rows = []
    for i in dict.fromkeys(idx.tolist()):
        v = views[i]
        if v.image is None:
            continue
        if sub.num_primitives:
            out = sub.render(v.camera, background=torch.ones(3)).rgb.clamp(0, 1).numpy()
        else:
            out = np.ones(v.image.shape, np.float32)
        rows.append(np.concatenate([v.image, (out * 255 + 0.5).astype(np.uint8)], 1))
    if not rows:
        return
    w = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")


def select_on_view(rf, renderer, cams, views, missing: int, first: int, seg, pts, labs, bx, max_views=None,
                   log=_log):
    """Segment training view ``first`` from points ``pts`` (labels ``labs``) and/or box ``bx``, in
    pixels of that view's image file, and grow the selection over the other training views whose
    images were found. Returns the lift result and the provenance recorded in the selection. The
    operator viewer calls this too, so a box drawn there on a training view gives the same
    selection as ``recon select --box`` with that box."""
    from recon.priors import lift
    from recon.priors.segment import Prompt

    view_key = views[first].key
    if views[first].image is None:
        raise ReconError(f"the image of view {view_key} was not found (scene moved? the run looks in {rf.image_dirs()})")
    iw, ih = _image_size(rf, cams[first])
    sx, sy = cams[first].width / iw, cams[first].height / ih
    p = Prompt(points=[(x * sx, y * sy) for x, y in pts], labels=list(labs),
               box=None if bx is None else (bx[0] * sx, bx[1] * sy, bx[2] * sx, bx[3] * sy))
    p.check(cams[first].width, cams[first].height, f"view {view_key} ({iw}x{ih})")
    usable = [i for i, v in enumerate(views) if v.image is not None]
    if missing:
        log(f"select: {missing} training images not found; growing over the other {len(usable)}")
    keep = [first] + [i for i in usable if i != first]
    res = lift.select_from_prompt(renderer, [views[i] for i in keep], seg, 0, p, max_views=max_views, log=log)
    res.lifted = [keep[k] for k in res.lifted]  # indices into ``views``
    how = {"segmenter": seg.name,
           "prompt": {"view": view_key, "points": [tuple(q) for q in pts], "labels": list(labs),
                      "box": None if bx is None else tuple(bx)},
           "views_used": res.views_used, "views_skipped": res.views_skipped}
    return res, how


def refine_lifted(rf, g, views, res, steps: int, log=_log):
    """The boundary refinement (``--refine``) of lift result ``res`` over the views it lifted:
    returns the refined model and its report."""
    from recon.priors.refine import RefineOptions, RefineView, refine_selection

    rv = [RefineView(views[k].camera, views[k].image, mask, views[k].alpha)
          for k, (_, mask) in zip(res.lifted, res.votes.masks) if views[k].image is not None]
    return refine_selection(g, rf.antialiased, rv, res.labels, RefineOptions(steps=steps), log=log)


def save_selection(rf, model_file: Path, renderer, views, name: str, labels, how: dict, refined=None,
                   refine_report=None) -> Path:
    """Write selection ``name`` of the run and its preview; returns the .json path. With
    ``refined`` (a splat dict from :func:`refine_lifted`) the selection holds that model."""
    from recon.models.splats import SplatRenderer
    from recon.selection import write_selection

    if not np.asarray(labels).any():
        raise ReconError("the selection is empty: no primitive falls mostly inside the masks; prompt inside the object")
    meta = write_selection(rf.root, model_file, name, labels, how, refined=refined, refine_report=refine_report,
                           model_primitives=renderer.num_primitives)
    if refined is not None:
        renderer = SplatRenderer(refined, antialiased=renderer.antialiased)
    _preview(meta.with_suffix(".png"), renderer, views, labels)
    return meta


def main(
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")],
    prompt: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = (),
    negative: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = (),
    box: Optional[str] = None,
    masks: Optional[Path] = None,
    segmenter: Optional[str] = None,
    name: str = "object",
    max_views: Optional[int] = None,
    refine: Optional[int] = None,
    device: str = "auto",
) -> int:
    """Select one object of a trained splat run from a click, a box or per-view masks, lifted to the
    3D model over all training views; writes RUN/selections/NAME.npy/.json and a preview NAME.png.
    `recon export RUN --selection NAME` then exports the object alone (add --invert-selection for
    the scene without it).

    Args:
        run: The run folder (a splat run).
        prompt: Object points VIEW:x,y (a training image's name, stem or index; pixels of that image file). Repeat for more points on the same view.
        negative: Points VIEW:x,y that are not the object (same view as --prompt).
        box: A box VIEW:x0,y0,x1,y1 around the object (pixels of that image file).
        masks: A folder of object masks, one PNG per training image named by its stem (nonzero = object): lifted as given, no segmenter.
        segmenter: sam2:PATH|ID (SAM 2 from local weights), grabcut (a --box; no weights) or ids:DIR (instance-id maps per image, 0 = background). Default: grabcut for a box, required for a click.
        name: The selection's name (RUN/selections/NAME.*).
        max_views: Grow the selection over at most this many training views (default: all).
        refine: Boundary refinement: fine-tune the model this many steps so the selected Gaussians cover the masks and the rest does not (saved with the selection as NAME.ply; export uses it). 0: off. Default: 300 on splat runs.
        device: torch device for SAM 2 ("auto": CUDA when available, else CPU).
    """
    from recon.models.splats import SplatRenderer
    from recon.priors import lift
    from recon.priors.refine import DEFAULT_STEPS
    from recon.priors.segment import load_segmenter, parse_view_prompt, views_of
    from recon.run import RunFolder
    from recon.selection import check_name

    check_name(name)
    given = sum([bool(prompt), box is not None, masks is not None])
    if given == 0:
        raise ReconError("say what to select: --prompt VIEW:x,y (a click), --box VIEW:x0,y0,x1,y1 or --masks DIR")
    if masks is not None and (prompt or box is not None or negative):
        raise ReconError("--masks is lifted as given: pass it without --prompt, --negative or --box")
    if negative and not prompt and box is None:
        raise ReconError("--negative needs a --prompt or --box on the same view")
    if masks is not None and not masks.is_dir():
        raise ReconError(f"--masks {masks}: no such folder (one PNG per training image, named by its stem)")
    if max_views is not None and max_views < 1:
        raise ReconError(f"--max-views must be at least 1, got {max_views}")
    if refine is not None and refine < 0:
        raise ReconError(f"--refine must be 0 (off) or a number of steps, got {refine}")
    if masks is None:
        seg_spec = segmenter or ("grabcut" if not prompt else None)
        if seg_spec is None:
            raise ReconError("a click (--prompt) needs a segmenter: --segmenter sam2:PATH (SAM 2 weights) or ids:DIR; "
                             "or pass a --box for GrabCut")
        seg = load_segmenter(seg_spec, device)
    rf = RunFolder.open(run)
    model_file = rf.require_model()
    if refine and rf.method != "splat":
        raise ReconError(f"--refine fine-tunes a static splat model; {rf.root} is a {rf.method} run (pass --refine 0)")
    steps = (DEFAULT_STEPS if rf.method == "splat" else 0) if refine is None else int(refine)
    g = rf.gaussians()
    renderer = SplatRenderer(g, antialiased=rf.antialiased)
    t0 = time.perf_counter()

    if masks is not None:
        from recon.scene.images import read_mask, resize

        cams, views, _ = _load_views(rf, need_images=True)
        ms = []
        for c, v in zip(cams, views):
            p = next((masks / (v.key + s) for s in (".png", ".PNG") if (masks / (v.key + s)).is_file()), None)
            ms.append(None if p is None else resize(read_mask(p), (c.width, c.height), nearest=True) > 0.5)
        if not any(m is not None for m in ms):
            raise ReconError(f"--masks {masks}: no mask matches a training image (expected e.g. {views[0].key}.png)")
        res = lift.select_from_masks(renderer, views, ms, log=_log)
        how = {"masks": str(masks.resolve()), "views_used": res.views_used}
    else:
        cams, views, missing = _load_views(rf, need_images=True)
        lookup = views_of([v.key for v in views])
        pts, labs, view_key = [], [], None
        for text, lab in [(t, 1) for t in prompt] + [(t, 0) for t in negative]:
            vk, vals = parse_view_prompt(text, "--prompt" if lab else "--negative")
            if len(vals) != 2:
                raise ReconError(f"--{'prompt' if lab else 'negative'} {text!r}: write VIEW:x,y (two numbers)")
            if view_key is not None and vk != view_key:
                raise ReconError(f"prompts name two views ({view_key}, {vk}): give every point on one view")
            view_key = vk
            pts.append(tuple(vals))
            labs.append(lab)
        bx = None
        if box is not None:
            vk, vals = parse_view_prompt(box, "--box")
            if len(vals) != 4:
                raise ReconError(f"--box {box!r}: write VIEW:x0,y0,x1,y1 (four numbers)")
            if view_key is not None and vk != view_key:
                raise ReconError(f"--box names view {vk} and the points view {view_key}: give them on one view")
            view_key = vk
            bx = tuple(vals)
        if view_key not in lookup:
            raise ReconError(f"view {view_key!r} is not a training image of {rf.root} (give a name such as "
                             f"{views[0].key} or an index 0..{len(views) - 1})")
        first = lookup[view_key]
        res, how = select_on_view(rf, renderer, cams, views, missing, first, seg, pts, labs, bx, max_views)
    labels = res.labels
    refined = report = None
    if steps > 0 and labels.any():
        refined, report = refine_lifted(rf, g, views, res, steps)
    meta = save_selection(rf, model_file, renderer, views, name, labels, how, refined, report)
    print(f"selected {int(labels.sum())} of {labels.size} primitives ({100 * labels.mean():.1f} %) from "
          f"{res.views_used} views{', refined' if refined is not None else ''} in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {meta} (+ .npy, preview .png); export it with `recon export {rf.root} --selection {name}`")
    return 0
