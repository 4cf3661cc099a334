"""The depth stage: depth maps for every frame of a posed scene, written into a processed scene.

    posed scene ─► SfM samples per frame ─► Depth Anything (batched) ─► robust scale/shift ─► depths/
                                     └──────── or: densified SfM points (``--depth-model sfm``) ──┘

Writes ``depths/STEM.npy`` (float16, scene units, 0 = unknown), ``depths_preview/STEM.png`` and
``depths/depth_report.json``, and points each frame's ``depth_file_path`` at its map in the
processed ``transforms.json``. The user's input folder is never modified: a ``recon process``
output is updated in place (recon wrote it); any other posed scene gets a processed copy in a new
folder (``transforms.json`` + links to the original images). ``depths/.cache.json`` records each
map's key (image content, model, options, SfM samples), so a re-run reuses unchanged maps.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from recon.errors import ReconError
from recon.priors import depth as D

STAGE_VERSION = 1
MIN_SAMPLES = 20  # SfM points an image needs for a trustworthy scale/shift


@dataclass
class DepthStageOptions:
    """Options of the depth stage (``recon process --depth``).

    Attributes:
        model: a Depth Anything folder or a model ID in the Hugging Face cache, or "sfm" for the
            offline fallback (SfM points densified per image, no weights).
        resolution: short side of the network input (both sides rounded to multiples of 14).
        batch_size: images per forward pass.
        align: "auto" (inverse depth for relative models, depth for metric ones), "depth",
            "inverse", or "none" (metric models only: write metres as predicted).
        fill: fallback only: pixels no kept triangle of SfM points covers, "none" (0 = unknown) or "nearest".
        max_edge: fallback only: drop triangles with an edge longer than this many times the
            median edge (they bridge holes such as sky or gaps between objects); None: keep all.
        previews: write coloured ``depths_preview/STEM.png``.
        device: torch device for the model ("auto": CUDA when available, else CPU).
        force: recompute every map, ignoring the cache.
    """

    model: str = "sfm"
    resolution: int = 518
    batch_size: int = 4
    align: str = "auto"
    fill: str = "none"
    max_edge: Optional[float] = 6.0
    previews: bool = True
    device: str = "auto"
    force: bool = False


@dataclass
class DepthStageResult:
    """What the stage did. ``inferred`` counts frames that ran the model (or the densifier),
    ``reused`` those taken from the cache; ``frames`` has one entry per frame."""

    out_dir: Path
    inferred: int = 0
    reused: int = 0
    skipped: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)


def _sha(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def _file_sha(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sfm_samples(scene, folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame ``(uv [N, 2], z [N])``: the SfM points seen in that image, in pixels and camera
    depth in scene units.

    From the COLMAP model ``folder/sparse/0`` when it has the frame (its tracks say exactly which
    points each image saw; points mapped to the scene frame by ``applied_transform``), else from
    the scene's sparse points projected into the frame with a coarse occlusion test.
    """
    tracks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    model = folder / "sparse" / "0"
    if (model / "images.bin").is_file() or (model / "images.txt").is_file():
        try:
            import pycolmap

            rec = pycolmap.Reconstruction(str(model))
            M = np.asarray(scene.applied_transform, dtype=np.float64)
            for im in rec.images.values():
                xy, X = [], []
                for p in im.points2D:
                    if p.has_point3D():
                        xy.append(p.xy)
                        X.append(rec.points3D[p.point3D_id].xyz)
                if xy:
                    X = np.asarray(X, dtype=np.float64)
                    tracks[im.name] = (np.asarray(xy, dtype=np.float64), X @ M[:3, :3].T + M[:3, 3])
        except Exception:  # unreadable model: fall back to projection
            tracks = {}
    out = []
    for f in scene.frames:
        cam = f.camera
        rel = None
        try:
            rel = str(Path(f.image_path).relative_to(folder / "images"))
        except ValueError:
            pass
        if rel is not None and rel in tracks:
            uv, Xw = tracks[rel]
            _, z = cam.project(Xw)
            keep = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
            out.append((uv[keep], z[keep]))
        elif scene.points is not None and len(scene.points):
            uv, z = cam.project(np.asarray(scene.points, dtype=np.float64))
            keep = D.visible_points(uv, z, cam.height, cam.width)
            out.append((uv[keep], z[keep]))
        else:
            out.append((np.zeros((0, 2)), np.zeros(0)))
    return out


def _sample(pred: np.ndarray, uv: np.ndarray) -> np.ndarray:
    H, W = pred.shape
    j = np.clip(np.floor(uv[:, 0]).astype(int), 0, W - 1)
    i = np.clip(np.floor(uv[:, 1]).astype(int), 0, H - 1)
    return pred[i, j]


def _save_npy(path: Path, arr: np.ndarray) -> None:
    from recon.io_utils import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr))
    atomic_write_bytes(path, buf.getvalue())


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    from recon.io_utils import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _stems(frames) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for f in frames:
        s = Path(f.image_path).stem  # Frame.name may hold a folder ("images/x")
        k = seen.get(s, 0)
        seen[s] = k + 1
        out.append(s if k == 0 else f"{s}_{k}")
    return out


def _prepare_out(scene, src: Path, out_dir: Optional[Path], what: str = "depth") -> tuple[Path, bool]:
    """The processed folder to write into, and whether it is ``src`` itself (a recon output).
    ``what`` names the stage in errors."""
    from recon.capture.ingest import is_output_dir

    if out_dir is None and is_output_dir(src):
        return src, True
    if out_dir is None:
        from recon.sfm.pipeline import default_out_dir

        out_dir = default_out_dir(src)
    out = Path(out_dir).expanduser()
    s, o = Path(os.path.abspath(src)), Path(os.path.abspath(out))
    if o == s or o in s.parents:
        raise ReconError(f"{what}: output folder {out} must not be the scene folder or one of its parents")
    if is_output_dir(o):
        return o, o == s
    if o.exists() and (not o.is_dir() or any(o.iterdir())):
        raise ReconError(f"{what}: {out} is a non-empty folder that recon did not write; pick a new or empty folder")
    return o, False


def _write_copy(scene, out: Path, depth_paths: Optional[dict[int, Path]], mask_paths: Optional[dict[int, Path]] = None,
                written_by: str = "recon process --depth") -> None:
    """A processed copy of a posed scene in ``out``: links to its images (and masks) under
    ``out/images`` (``out/masks``), its cameras in ``out/transforms.json``, the depth maps.

    ``depth_paths``: the frames' new depth maps (``None``: keep the scene's own depths, linked under
    ``out/depths``); ``mask_paths``: new masks for some frames (the segmentation stage), which
    replace the scene's own (the stage has combined them into its masks)."""
    from recon.capture.ingest import OUTPUT_MARKER
    from recon.io_utils import atomic_write_text
    from recon.scene.writers import write_transforms_json

    frames = []
    for i, f in enumerate(scene.frames):
        g = type(f)(**{**f.__dict__})
        links = [("image_path", "images"), ("mask_path", "masks")] + ([("depth_path", "depths")] if depth_paths is None else [])
        for attr, sub in links:
            p = getattr(f, attr)
            if p is None or (attr == "mask_path" and mask_paths is not None and i in mask_paths):
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
        if depth_paths is not None:
            g.depth_path = depth_paths.get(i)
        if mask_paths is not None and i in mask_paths:
            g.mask_path = mask_paths[i]
        frames.append(g)
    from dataclasses import replace

    copy = replace(scene, frames=frames, root=out)
    atomic_write_text(out / OUTPUT_MARKER, json.dumps({"written_by": written_by, "source": str(scene.root)}) + "\n")
    write_transforms_json(copy, out / "transforms.json")


def _point_in_place(out: Path, scene, depth_paths: dict[int, Path]) -> None:
    """Set ``depth_file_path`` of the frames of ``out/transforms.json`` (a recon output)."""
    from recon.io_utils import atomic_write_text

    tj_path = out / "transforms.json"
    tj = json.loads(tj_path.read_text())
    by_image = {os.path.abspath(f.image_path): i for i, f in enumerate(scene.frames)}
    for fd in tj.get("frames", []):
        i = by_image.get(os.path.abspath(out / fd.get("file_path", "")))
        if i is None:
            continue
        if i in depth_paths:
            fd["depth_file_path"] = os.path.relpath(depth_paths[i], out)
        else:
            fd.pop("depth_file_path", None)
    atomic_write_text(tj_path, json.dumps(tj, indent=2) + "\n")


def write_depth_priors(
    scene_dir: Path | str,
    out_dir: Path | str | None = None,
    options: Optional[DepthStageOptions] = None,
    log: Optional[Callable[[str], None]] = None,
) -> DepthStageResult:
    """Depth maps for every frame of a posed scene, written into a processed scene.

    Args:
        scene_dir: a posed scene (a ``recon process`` output, nerfstudio, COLMAP, Blender, ...).
        out_dir: where the processed scene goes. Default: ``scene_dir`` itself when it is a
            ``recon process`` output, else the folder ``recon process`` would use
            (``scene_dir/recon`` or a work folder when ``scene_dir`` is read-only).
        options: :class:`DepthStageOptions`.
        log: progress lines.

    Returns a :class:`DepthStageResult`; ``recon train OUT --depth-loss ssi`` then reads the maps.
    """
    from recon.scene.readers import load_scene

    opts = options or DepthStageOptions()
    if opts.align not in ("auto", "depth", "inverse", "none"):
        raise ReconError(f"--depth-align must be auto, depth, inverse or none, got {opts.align!r}")
    if opts.fill not in ("none", "nearest"):
        raise ReconError(f"--depth-fill must be none or nearest, got {opts.fill!r}")
    if opts.resolution < D.PATCH or opts.batch_size < 1:
        raise ReconError(f"--depth-resolution must be >= {D.PATCH} and --depth-batch-size >= 1")
    src = Path(scene_dir).expanduser()
    scene = load_scene(src)
    if not scene.has_poses:
        raise ReconError(f"{src}: depth priors need posed frames; run `recon process {src}` first")
    use_sfm = str(opts.model).lower() == "sfm"
    dm = None if use_sfm else D.load_depth_model(opts.model, opts.device)  # fails before writing anything
    out, in_place = _prepare_out(scene, src, None if out_dir is None else Path(out_dir))
    ddir, pdir = out / "depths", out / "depths_preview"
    ddir.mkdir(parents=True, exist_ok=True)
    if opts.previews:
        pdir.mkdir(exist_ok=True)
    cache_file = ddir / ".cache.json"
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() and not opts.force else {}
    except (OSError, ValueError):
        cache = {}

    samples = sfm_samples(scene, src)
    stems = _stems(scene.frames)
    kind = "sfm" if use_sfm else dm.kind  # type: ignore[union-attr]
    mode = {"auto": "inverse" if kind == "relative" else "depth"}.get(opts.align, opts.align)
    if kind == "relative" and mode == "none":
        raise ReconError("--depth-align none needs a metric model: a relative model's output has no scale")
    opt_key = {"v": STAGE_VERSION, "kind": kind, "model": None if use_sfm else dm.fingerprint,  # type: ignore[union-attr]
               "res": opts.resolution, "align": mode, "fill": [opts.fill, opts.max_edge] if use_sfm else None}
    keys = [
        _sha(opt_key, _file_sha(f.image_path), [f.camera.width, f.camera.height], uv.round(3).tobytes(), z.astype(np.float32).tobytes())
        for f, (uv, z) in zip(scene.frames, samples)
    ]
    res = DepthStageResult(out_dir=out)
    todo = [i for i, s in enumerate(stems) if opts.force or cache.get(s) != keys[i] or not (ddir / f"{s}.npy").is_file()]
    res.reused = len(stems) - len(todo)
    if log and res.reused:
        log(f"depth: {res.reused}/{len(stems)} maps up to date (same images, model and options)")

    maps: dict[int, Optional[np.ndarray]] = {}
    info: dict[int, dict[str, Any]] = {}
    if use_sfm:
        prog = D.ProgressLine(log, "depth (sfm fallback)", len(todo))
        for n, i in enumerate(todo):
            uv, z = samples[i]
            cam = scene.frames[i].camera
            maps[i] = D.densify(uv, z, cam.height, cam.width, opts.fill, opts.max_edge) if len(z) >= 3 else None
            info[i] = {"samples": int(len(z))}
            prog(n + 1)
    else:
        prog = D.ProgressLine(log, "depth", len(todo))
        done = 0
        by_size: dict[tuple[int, int], list[int]] = {}
        for i in todo:  # one batch per image size
            by_size.setdefault((scene.frames[i].camera.height, scene.frames[i].camera.width), []).append(i)
        for (h, w), idx in by_size.items():
            preds = []
            step = 4 * opts.batch_size
            for b in range(0, len(idx), step):  # decode a few batches at a time: bounded memory
                ims = []
                for i in idx[b : b + step]:
                    im = scene.image(i)
                    if im.shape[:2] != (h, w):
                        raise ReconError(f"{scene.frames[i].image_path}: image is {im.shape[1]}x{im.shape[0]}, its camera says {w}x{h}")
                    ims.append(im)
                preds += D.predict(dm, ims, opts.resolution, opts.batch_size)  # type: ignore[arg-type]
                done += len(ims)
                prog(done)
            for i, pred in zip(idx, preds):
                uv, z = samples[i]
                if mode == "none":
                    maps[i], info[i] = np.where(pred > 0, pred, 0).astype(np.float32), {"samples": int(len(z)), "aligned": False}
                    continue
                if len(z) < MIN_SAMPLES:
                    maps[i], info[i] = None, {"samples": int(len(z)), "reason": f"fewer than {MIN_SAMPLES} SfM points"}
                    continue
                al = D.fit_scale_shift(_sample(pred, uv), z, mode)
                zmax = float(np.max(z)) * 10.0
                maps[i] = al.apply(pred, max_depth=zmax)
                info[i] = {"samples": al.samples, "inliers": al.inliers, "scale": al.scale, "shift": al.shift,
                           "mode": al.mode, "relative_residual": al.residual}

    for i in todo:
        s = stems[i]
        m = maps.get(i)
        if m is None:
            for p in (ddir / f"{s}.npy", pdir / f"{s}.png"):
                if p.exists():
                    p.unlink()
            cache.pop(s, None)
            res.skipped += 1
            if log:
                log(f"warning: depth: no map for {s} ({info.get(i, {}).get('reason', 'too few SfM points')})")
            continue
        _save_npy(ddir / f"{s}.npy", m.astype(np.float16))
        if opts.previews:
            _save_png(pdir / f"{s}.png", D.preview_rgb(m))
        cache[s] = keys[i]
        res.inferred += 1
    for s in sorted(set(cache) - set(stems)):  # maps of frames no longer in the scene (recorded by us)
        for p in (ddir / f"{s}.npy", pdir / f"{s}.png"):
            if p.is_file() and p.resolve().is_relative_to(out.resolve()):
                p.unlink()
        cache.pop(s)
    from recon.io_utils import atomic_write_text

    atomic_write_text(cache_file, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    depth_paths = {i: ddir / f"{s}.npy" for i, s in enumerate(stems) if (ddir / f"{s}.npy").is_file() and cache.get(s) == keys[i]}
    for i, s in enumerate(stems):
        res.frames.append({"frame": s, "depth": f"depths/{s}.npy" if i in depth_paths else None, "reused": i not in todo, **info.get(i, {})})
    report = {"model": "sfm" if use_sfm else str(opts.model), "kind": kind, "align": mode, "options": asdict(opts),
              "inferred": res.inferred, "reused": res.reused, "skipped": res.skipped, "frames": res.frames}
    atomic_write_text(ddir / "depth_report.json", json.dumps(report, indent=1, default=str) + "\n")
    if in_place:
        _point_in_place(out, scene, depth_paths)
    else:
        _write_copy(scene, out, depth_paths)
    if log:
        log(f"depth: {len(depth_paths)}/{len(stems)} maps ({res.inferred} computed, {res.reused} reused) -> {ddir}")
    return res
