"""The processed-frames stage (``recon process SCENE --enhance STEPS``).

    posed scene ─► frames (+ masks) ─► step 1 ─► step 2 ─► ... ─► OUT/enhanced/images/STEM.png
                                                               └─► OUT/enhanced/manifest.json

The user's frames are never modified. The processed scene is a ``recon process`` output folder:

* a ``recon process`` output (SfM) is updated in place: its ``transforms.json`` as SfM wrote it is
  kept as ``transforms.source.json``, and ``transforms.json`` points the changed frames at
  ``enhanced/images/``; a re-run starts again from the source frames, never from enhanced ones;
* any other posed scene (nerfstudio, Blender, COLMAP, ...) gets a processed copy in OUT
  (``transforms.json`` pointing at the enhanced frames, and at the originals of unchanged frames
  and of masks and depth maps).

``recon train OUT`` then trains on the processed frames. ``enhanced/manifest.json`` records the
mode (``restoration-only`` or ``generative``), each step (plugin, kind, version, source,
parameters, model file and its SHA-256), and each frame: its original, its output, whether it
changed and by how much. Super-resolution scales each changed frame's intrinsics with its size.
``enhanced/.cache.json`` keys each output by the frame's content, its mask and the steps, so an
interrupted or repeated run redoes only what changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from recon.enhance.registry import LoadedStep, file_sha256, load_steps, mode_of
from recon.errors import ReconError

MANIFEST_FORMAT = "recon-enhance"
MANIFEST_VERSION = 1
STAGE_VERSION = 1
ENHANCED = "enhanced"
SOURCE_TRANSFORMS = "transforms.source.json"
SETTINGS_FILE = "recon.json"
"""Per-scene settings file: ``{"restoration_only": true}`` makes every enhancement of that scene
refuse generative plugins (digital-twin and measurement captures)."""
CHANGED_TOL = 0.5 / 255.0  # a frame whose every pixel moved less than half a grey level is unchanged


@dataclass
class EnhanceOptions:
    """Options of the stage.

    Attributes:
        steps: ``NAME[:ARG][:KEY=VALUE],...`` (see :mod:`recon.enhance.registry`).
        masks: folder of masks named after the frames (``STEM.png``; nonzero = region to edit),
            for generators (inpainting).
        mask_ids: only these mask values select the region (object ids, e.g. a synthetic scene's
            ``masks/``); empty: every nonzero pixel.
        restoration_only: refuse generative plugins.
        batch_size: frames per plugin call.
        force: recompute every frame, ignoring the cache.
    """

    steps: str = ""
    masks: Optional[Path] = None
    mask_ids: tuple[int, ...] = ()
    restoration_only: bool = False
    batch_size: int = 4
    force: bool = False


@dataclass
class EnhanceResult:
    out_dir: Path
    mode: str
    changed: int = 0
    computed: int = 0
    reused: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)


def scene_setting_restoration_only(folder: Path | str) -> bool:
    """Whether ``folder/recon.json`` asks for restoration only."""
    p = Path(folder) / SETTINGS_FILE
    if not p.is_file():
        return False
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ReconError(f"{p}: not valid JSON ({e}); expected e.g. {{\"restoration_only\": true}}") from None
    v = d.get("restoration_only", False) if isinstance(d, dict) else False
    if not isinstance(v, bool):
        raise ReconError(f"{p}: restoration_only must be true or false, got {v!r}")
    return v


def check_steps(steps: str, restoration_only: bool, scene_dir: Optional[Path] = None) -> list[LoadedStep]:
    """Load the plugins of ``steps`` before any work; refuses generators under restoration-only
    (the flag, or ``recon.json`` in ``scene_dir``)."""
    why = "--restoration-only"
    if not restoration_only and scene_dir is not None and Path(scene_dir).is_dir() and scene_setting_restoration_only(scene_dir):
        restoration_only, why = True, f"{Path(scene_dir) / SETTINGS_FILE} (restoration_only: true)"
    return load_steps(steps, restoration_only=restoration_only, why=why)


def check_masks(steps: list[LoadedStep], masks: Optional[Path]) -> None:
    """Generators that edit masked regions need a mask folder; the folder must exist."""
    if masks is not None and not Path(masks).is_dir():
        raise ReconError(f"--enhance-masks {masks}: not a folder (masks are STEM.png files named after the frames)")
    if any(s.needs_masks for s in steps) and masks is None:
        names = ", ".join(s.step.spec for s in steps if s.needs_masks)
        raise ReconError(f"{names}: edits masked regions; pass --enhance-masks DIR (STEM.png per frame, nonzero = region)")


def _sha(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def _stems(frames) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for f in frames:
        s = Path(f.image_path).stem
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.append(s if k == 0 else f"{s}_{k}")
    return out


def _straight(rgb: np.ndarray, alpha: Optional[np.ndarray], bg: Optional[np.ndarray]) -> np.ndarray:
    """Colour composited on ``bg`` (what :meth:`Scene.image` returns for a scene with a
    background) back to straight (unassociated) colour, as RGBA files store it."""
    if alpha is None or bg is None:
        return rgb
    a = alpha[..., None]
    return np.where(a > 0, np.clip((rgb - bg * (1.0 - a)) / np.maximum(a, 1e-6), 0.0, 1.0), rgb).astype(np.float32)


def _over(rgb: np.ndarray, alpha: Optional[np.ndarray], bg: Optional[np.ndarray]) -> np.ndarray:
    """Straight colour composited on ``bg`` (the inverse of :func:`_straight`)."""
    if alpha is None or bg is None:
        return rgb
    a = alpha[..., None]
    return (rgb * a + bg * (1.0 - a)).astype(np.float32)


def _png_bytes(rgb: np.ndarray, alpha: Optional[np.ndarray]) -> bytes:
    from PIL import Image

    u8 = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    if alpha is not None:
        a = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
        im = Image.fromarray(np.dstack([u8, a[..., None] if a.ndim == 2 else a]), "RGBA")
    else:
        im = Image.fromarray(u8, "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def read_mask(folder: Path, stem: str, shape: tuple[int, int], ids: tuple[int, ...]) -> Optional[np.ndarray]:
    """``folder/STEM.png`` (or another image suffix) as bool ``[H, W]``: pixels whose value is in
    ``ids`` (any nonzero when empty); ``None`` when the frame has no mask file."""
    from recon.scene.images import decode_unoriented

    for suf in (".png", ".PNG", ".jpg", ".jpeg", ".tif", ".tiff", ".exr"):
        p = folder / f"{stem}{suf}"
        if p.is_file():
            break
    else:
        return None
    import cv2

    raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if raw is None:
        arr = decode_unoriented(p)
        raw = np.rint(arr[..., 0] * 255).astype(np.int64) if arr.ndim == 3 else arr
    if raw.ndim == 3:
        raw = raw[..., 0]
    if raw.shape[:2] != shape:
        raise ReconError(f"{p}: mask is {raw.shape[1]}x{raw.shape[0]}, its frame is {shape[1]}x{shape[0]}")
    return np.isin(raw, ids) if ids else raw > 0


def _source_scene(src: Path, in_place: bool):
    """The scene to enhance: for an in-place output, the transforms SfM wrote (never enhanced frames)."""
    from recon.io_utils import atomic_write_bytes
    from recon.scene.readers import load_scene

    if not in_place:
        return load_scene(src), None
    tj = src / "transforms.json"
    man = src / ENHANCED / "manifest.json"
    source = src / SOURCE_TRANSFORMS
    ours = False
    if man.is_file() and source.is_file():
        try:
            ours = json.loads(man.read_text()).get("transforms_sha256") == file_sha256(tj)
        except (OSError, ValueError):
            ours = False
    if not ours:  # SfM (re)wrote transforms.json: that is the new source
        atomic_write_bytes(source, tj.read_bytes())
    return load_scene(source), source


def _prepare_out(src: Path, out_dir: Optional[Path]) -> tuple[Path, bool]:
    from recon.capture.ingest import is_output_dir

    if out_dir is None and is_output_dir(src):
        return src, True
    if out_dir is None:
        from recon.sfm.pipeline import default_out_dir

        out_dir = default_out_dir(src)
    out = Path(out_dir).expanduser()
    s, o = Path(os.path.abspath(src)), Path(os.path.abspath(out))
    if o == s and is_output_dir(o):
        return o, True
    if o == s or o in s.parents:
        raise ReconError(f"enhance: output folder {out} must not be the scene folder or one of its parents")
    if is_output_dir(o):
        return o, False
    if o.exists() and (not o.is_dir() or any(o.iterdir())):
        raise ReconError(f"enhance: {out} is a non-empty folder that recon did not write; pick a new or empty folder")
    return o, False


def _link_inputs(scene, f, out: Path):
    """``f`` with its original image / mask / depth files linked under ``out/images``, ``out/masks``,
    ``out/depth`` (same relative names as in the source scene)."""
    g = replace(f)
    for attr, sub in (("image_path", "images"), ("mask_path", "masks"), ("depth_path", "depth")):
        p = getattr(f, attr)
        if p is None or Path(os.path.abspath(p)).is_relative_to(Path(os.path.abspath(out))):
            continue
        try:
            rel = Path(os.path.relpath(os.path.abspath(p), os.path.abspath(scene.root)))
        except ValueError:
            rel = Path(Path(p).name)
        if rel.parts and rel.parts[0] == sub:
            rel = Path(*rel.parts[1:])
        if ".." in rel.parts:
            rel = Path(Path(p).name)
        link = out / sub / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.abspath(p), link)
        setattr(g, attr, link)
    return g


class _Progress:
    def __init__(self, log, total: int) -> None:
        self.log, self.total, self.t0, self.last = log, total, time.perf_counter(), 0.0

    def __call__(self, done: int) -> None:
        if self.log is None:
            return
        now = time.perf_counter()
        if done < self.total and now - self.last < 1.0:
            return
        self.last = now
        el = now - self.t0
        eta = el / done * (self.total - done) if done else 0.0
        self.log(f"enhance: {done}/{self.total} frames, {el:.1f}s elapsed, ETA {eta:.0f}s")


def enhance_scene(
    scene_dir: Path | str,
    out_dir: Path | str | None = None,
    options: Optional[EnhanceOptions] = None,
    steps: Optional[list[LoadedStep]] = None,
    log: Optional[Callable[[str], None]] = None,
) -> EnhanceResult:
    """Run the enhancement steps on every frame of a posed scene into a processed scene.

    Args:
        scene_dir: a posed scene (a ``recon process`` output, nerfstudio, Blender, COLMAP, ...).
        out_dir: where the processed scene goes (default: ``scene_dir`` itself when it is a
            ``recon process`` output, else where ``recon process`` would write).
        options: :class:`EnhanceOptions`.
        steps: already loaded steps (:func:`check_steps`); loaded from ``options.steps`` when None.
        log: progress lines.
    """
    from recon.capture.ingest import OUTPUT_MARKER
    from recon.io_utils import atomic_write_bytes, atomic_write_text
    from recon.scene.writers import write_transforms_json

    opts = options or EnhanceOptions()
    src = Path(scene_dir).expanduser()
    if steps is None:
        steps = check_steps(opts.steps, opts.restoration_only, src)
    if not steps:
        raise ReconError("--enhance: no steps given")
    if opts.batch_size < 1:
        raise ReconError("--enhance-batch-size must be >= 1")
    check_masks(steps, opts.masks)
    out, in_place = _prepare_out(src, None if out_dir is None else Path(out_dir))
    scene, source_json = _source_scene(src, in_place)
    if not scene.has_poses:
        raise ReconError(f"{src}: enhancement needs posed frames; run `recon process {src}` first")
    edir = out / ENHANCED
    idir = edir / "images"
    idir.mkdir(parents=True, exist_ok=True)
    cache_file = edir / ".cache.json"
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() and not opts.force else {}
    except (OSError, ValueError):
        cache = {}
    records = [s.record() for s in steps]
    mode = mode_of(steps)
    stems = _stems(scene.frames)
    mask_dir = None if opts.masks is None else Path(opts.masks)

    def mask_sha(stem: str) -> Optional[str]:
        if mask_dir is None:
            return None
        for suf in (".png", ".PNG", ".jpg", ".jpeg", ".tif", ".tiff", ".exr"):
            if (mask_dir / f"{stem}{suf}").is_file():
                return file_sha256(mask_dir / f"{stem}{suf}")
        return None

    key_steps = [{k: r[k] for k in ("plugin", "kind", "version", "parameters", "model") if k in r} for r in records]
    keys = [_sha(STAGE_VERSION, key_steps, list(opts.mask_ids), file_sha256(f.image_path), mask_sha(s))
            for f, s in zip(scene.frames, stems)]
    res = EnhanceResult(out_dir=out, mode=mode)
    todo = [i for i, s in enumerate(stems)
            if opts.force or (cache.get(s) or {}).get("key") != keys[i]
            or ((cache.get(s) or {}).get("changed") and not (idir / f"{s}.png").is_file())]
    res.reused = len(stems) - len(todo)
    if log and res.reused:
        log(f"enhance: {res.reused}/{len(stems)} frames up to date (same frames, masks and steps)")
    prog = _Progress(log, len(todo))
    # RGBA frames of a scene with a background (Blender: white) are read composited on it; they
    # are written back with straight colour, as they were stored, so reading composites once.
    bg = None if scene.background is None else np.asarray(scene.background, np.float32).reshape(1, 1, 3)
    done = 0
    for b in range(0, len(todo), opts.batch_size):
        idx = todo[b : b + opts.batch_size]
        ims = [scene.image(i) for i in idx]
        alphas = [scene.alpha(i) for i in idx]
        masks = None
        if mask_dir is not None:
            masks = []
            for i, im in zip(idx, ims):
                m = read_mask(mask_dir, stems[i], im.shape[:2], tuple(opts.mask_ids))
                masks.append(np.zeros(im.shape[:2], bool) if m is None else m)
        cur = [np.asarray(im, dtype=np.float32) for im in ims]
        cur_a = list(alphas)  # alpha per frame (None: opaque), updated by plugins that use alpha
        for st in steps:
            import cv2

            if masks is not None and cur[0].shape[:2] != masks[0].shape:  # after super-resolution
                masks = [cv2.resize(m.astype(np.uint8), (c.shape[1], c.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
                         for m, c in zip(masks, cur)]
            cur_a = [a if a is None or a.shape == c.shape[:2] else cv2.resize(a, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR)
                     for a, c in zip(cur_a, cur)]
            rgba = bool(getattr(st.plugin, "uses_alpha", False))
            # Plugins that use alpha get straight RGBA (opaque frames: alpha 1); the others get the
            # frames as the scene shows them (composited on its background, if it has one).
            ins = [np.dstack([_straight(c, a, bg), np.ones(c.shape[:2], np.float32) if a is None else a])
                   for c, a in zip(cur, cur_a)] if rgba else cur
            outs = st.plugin.process(ins, masks if st.needs_masks else None)
            if len(outs) != len(cur):
                raise ReconError(f"plugin {st.entry.name}: returned {len(outs)} images for {len(cur)}")
            ok = (3, 4) if rgba else (3,)
            for o in outs:
                o = np.asarray(o)
                if o.ndim != 3 or o.shape[2] not in ok:
                    raise ReconError(f"plugin {st.entry.name}: returned an image of shape {o.shape}; expected [H, W, {' or '.join(map(str, ok))}]")
            outs = [np.clip(np.asarray(o, dtype=np.float32), 0, 1) for o in outs]
            for k, o in enumerate(outs if rgba else ()):
                if o.shape[2] == 4:  # the plugin set alpha; an opaque result of an opaque frame stays opaque
                    cur_a[k] = None if cur_a[k] is None and o[..., 3].min() >= 1.0 - CHANGED_TOL else np.ascontiguousarray(o[..., 3])
                outs[k] = _over(np.ascontiguousarray(o[..., :3]), cur_a[k], bg)  # straight -> as the scene shows it
            cur = [np.ascontiguousarray(o[..., :3]) for o in outs]
        for i, im0, a0, y, a in zip(idx, ims, alphas, cur, cur_a):
            s = stems[i]
            same_size = y.shape[:2] == im0.shape[:2]
            diff = float(np.abs(y - im0).max()) if same_size else float("inf")
            if same_size and (a0 is None) != (a is None):
                diff = max(diff, 1.0)
            elif same_size and a is not None and a.shape == a0.shape:
                diff = max(diff, float(np.abs(a - a0).max()))
            changed = diff >= CHANGED_TOL
            entry: dict[str, Any] = {"key": keys[i], "changed": changed, "size": [int(y.shape[1]), int(y.shape[0])]}
            if same_size:
                entry["max_abs_change"] = round(diff, 6)
                entry["mean_abs_change"] = round(float(np.abs(y - im0).mean()), 6)
                if masks is not None:
                    entry["masked_pixels"] = int(np.asarray(masks[idx.index(i)]).sum()) if masks[idx.index(i)].shape == im0.shape[:2] else None
            if changed:
                if a is not None and a.shape != y.shape[:2]:
                    import cv2

                    a = cv2.resize(a, (y.shape[1], y.shape[0]), interpolation=cv2.INTER_LINEAR)
                atomic_write_bytes(idir / f"{s}.png", _png_bytes(_straight(y, a, bg), a))
            elif (idir / f"{s}.png").is_file():
                (idir / f"{s}.png").unlink()
            cache[s] = entry
            res.computed += 1
        done += len(idx)
        prog(done)
        atomic_write_text(cache_file, json.dumps(cache, indent=1, sort_keys=True) + "\n")  # resumable
    for s in sorted(set(cache) - set(stems)):  # frames no longer in the scene (written by us)
        p = idir / f"{s}.png"
        if p.is_file():
            p.unlink()
        cache.pop(s)
    atomic_write_text(cache_file, json.dumps(cache, indent=1, sort_keys=True) + "\n")

    frames = []
    for i, (f, s) in enumerate(zip(scene.frames, stems)):
        c = cache[s]
        g = replace(f)
        if c["changed"]:
            g.image_path = idir / f"{s}.png"
            w, h = c["size"]
            if (w, h) != (f.camera.width, f.camera.height):
                g.camera = f.camera.resized(int(w), int(h))
            res.changed += 1
        frames.append(g)
        res.frames.append({"frame": s, "original": str(Path(f.image_path).resolve()),
                           "output": os.path.relpath(g.image_path, out) if c["changed"] else None,
                           "changed": bool(c["changed"]), "reused": i not in todo,
                           **{k: v for k, v in c.items() if k not in ("key", "changed")}})
    if not in_place:  # the copy links what it does not replace (readers keep paths inside the scene)
        frames = [_link_inputs(scene, g, out) for g in frames]
    new_scene = replace(scene, frames=frames, root=out)
    if not in_place:
        atomic_write_text(out / OUTPUT_MARKER, json.dumps({"written_by": "recon process --enhance", "source": str(scene.root)}) + "\n")
    tj = write_transforms_json(new_scene, out / "transforms.json")
    if scene.background is not None:  # the reader's background setting travels with the copy
        d = json.loads(Path(tj).read_text())
        d.setdefault("background_color", list(scene.background))
        atomic_write_text(tj, json.dumps(d, indent=2) + "\n")
    from datetime import datetime, timezone

    from recon import __version__

    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "mode": mode,
        "restoration_only": bool(opts.restoration_only),
        "source": str(Path(scene.root).resolve()),
        "source_transforms": None if source_json is None else str(source_json.name),
        "steps": records, "masks": None if mask_dir is None else {"folder": str(mask_dir.resolve()), "ids": list(opts.mask_ids)},
        "frames_total": len(stems), "frames_changed": res.changed,
        "recon_version": __version__, "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "transforms_sha256": file_sha256(out / "transforms.json"),
        "frames": res.frames,
    }
    atomic_write_text(edir / "manifest.json", json.dumps(manifest, indent=1, default=str) + "\n")
    if log:
        log(f"enhance ({mode}): {res.changed}/{len(stems)} frames changed ({res.computed} computed, {res.reused} reused) -> {idir}")
    return res
