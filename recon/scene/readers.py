"""Readers: any supported scene folder to a :class:`recon.scene.Scene`.

Supported formats (see ``docs/formats.md`` for the details and conventions):

==============  ===============================================================================
``nerfstudio``  ``transforms.json`` (OpenGL camera-to-world, intrinsics top level or per frame)
``blender``     NeRF-synthetic ``transforms_{train,val,test}.json`` (``camera_angle_x``)
``dnerf``       ``blender`` plus a per-frame ``time``
``colmap``      ``sparse/0/`` or ``sparse/`` with ``cameras``/``images``/``points3D`` ``.bin``/``.txt``
``llff``        ``poses_bounds.npy`` + ``images/``
``images``      a plain folder of images (no poses)
==============  ===============================================================================

Reading never decodes pixels: image sizes come from the format's metadata, or from one image
header where the format leaves them out. Every referenced image must exist; anything wrong
raises :class:`recon.errors.ReconError` with one line naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from recon.errors import ReconError
from recon.scene.cameras import CAMERA_MODELS, Camera
from recon.scene.conventions import c2w_to_viewmat, opengl_to_opencv
from recon.scene.images import ImageCache, env_cache_bytes, image_size, is_image_file, is_video_file
from recon.scene.scene import SPLITS, Frame, Scene

FORMATS = ("nerfstudio", "blender", "dnerf", "colmap", "llff", "images")
TEST_EVERY = 8  # default hold-out: frames with index % 8 == 0 are "test"

_COLMAP_FILES = ("cameras", "images", "points3D")

# Names used by nerfstudio for distortion coefficients, plus k5/k6 for FULL_OPENCV.
_DIST_KEYS = ("k1", "k2", "k3", "k4", "k5", "k6", "p1", "p2")


# ----------------------------------------------------------------------------------------------
# Small helpers shared by readers, writers and `recon info`


def read_json(path: Path) -> Any:
    """Parse a JSON file; malformed JSON raises :class:`ReconError` with its line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReconError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReconError(f"{path}: cannot read ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ReconError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (not recursive), sorted by name; [] if not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p) and not p.name.startswith(".")), key=lambda p: p.name)


def list_videos(folder: Path) -> list[Path]:
    """Video files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and is_video_file(p)), key=lambda p: p.name)


def _has_colmap_files(folder: Path) -> bool:
    return all((folder / f"{n}.bin").is_file() or (folder / f"{n}.txt").is_file() for n in ("cameras", "images"))


def find_colmap_model(root: Path) -> Optional[Path]:
    """The COLMAP model folder of ``root``: ``sparse/0``, ``sparse/<first numbered>``, ``sparse`` or ``root`` itself."""
    root = Path(root)
    sparse = root / "sparse"
    cands = [sparse / "0"]
    if sparse.is_dir():
        subs = sorted((p for p in sparse.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
        cands += subs
    cands += [sparse, root]
    for c in cands:
        if c.is_dir() and _has_colmap_files(c):
            return c
    return None


def colmap_images_dir(model_dir: Path) -> Path:
    """Where a COLMAP model's image names are relative to.

    The first existing ``images/`` folder in the model folder, its parent or grandparent (so
    ``scene/sparse/0`` finds ``scene/images``); if none exists, ``scene/images`` by the layout.
    """
    model_dir = Path(model_dir)
    for c in (model_dir / "images", model_dir.parent / "images", model_dir.parent.parent / "images"):
        if c.is_dir():
            return c
    if model_dir.parent.name == "sparse":
        return model_dir.parent.parent / "images"
    if model_dir.name == "sparse":
        return model_dir.parent / "images"
    return model_dir / "images"


def _blender_files(root: Path) -> list[tuple[str, Path]]:
    return [(s, root / f"transforms_{s}.json") for s in SPLITS if (root / f"transforms_{s}.json").is_file()]


def _blender_has_time(files: Sequence[tuple[str, Path]]) -> bool:
    for _, jf in files:
        meta = read_json(jf)
        frames = meta.get("frames") if isinstance(meta, dict) else None
        if isinstance(frames, list) and any(isinstance(f, dict) and "time" in f for f in frames):
            return True
    return False


def _split_root(path: Path) -> tuple[Path, Optional[str]]:
    """A path given as a file (``transforms.json``, ``poses_bounds.npy``, ...) to (folder, format hint)."""
    name = path.name
    if name.endswith(".json"):
        if name.startswith("transforms_") and name[len("transforms_") : -len(".json")] in SPLITS:
            return path.parent, "blender"
        return path.parent, "nerfstudio"
    if name == "poses_bounds.npy":
        return path.parent, "llff"
    if name.split(".")[0] in _COLMAP_FILES and path.suffix in (".bin", ".txt"):
        return path.parent, "colmap"
    return path.parent, None


def detect_format(path: Path) -> Optional[str]:
    """The format of a scene folder (one of :data:`FORMATS`), or ``None`` if none is recognised.

    Order of preference when several are present: ``transforms.json`` (nerfstudio), Blender /
    D-NeRF split files, a COLMAP model, ``poses_bounds.npy`` (LLFF), then plain images (in the
    folder itself or in its ``images/``). ``path`` may also name one of those files.
    """
    p = Path(path)
    if p.is_file():
        root, hint = _split_root(p)
        if hint == "blender":
            return "dnerf" if _blender_has_time(_blender_files(root)) else "blender"
        return hint
    if not p.is_dir():
        return None
    if (p / "transforms.json").is_file():
        return "nerfstudio"
    files = _blender_files(p)
    if files:
        return "dnerf" if _blender_has_time(files) else "blender"
    if find_colmap_model(p) is not None:
        return "colmap"
    if (p / "poses_bounds.npy").is_file():
        return "llff"
    if list_images(p) or list_images(p / "images"):
        return "images"
    return None


def unknown_format_message(path: Path) -> str:
    msg = f"{path}: no images, transforms.json, COLMAP model or poses_bounds.npy found in {path}"
    videos = list_videos(path)
    if videos:
        msg += f" (found {len(videos)} video file(s), e.g. {videos[0].name}: extract frames from them first)"
    return msg


def load_scene(
    path: Path | str,
    background: Optional[tuple[float, float, float]] = None,
    format: str = "auto",
    cache_bytes: Optional[int] = None,
) -> Scene:
    """Read a scene folder (or one of its index files) into a :class:`Scene`; no pixels are decoded.

    Args:
        path: a scene folder, or its ``transforms.json`` / ``transforms_train.json`` /
            ``poses_bounds.npy`` / COLMAP model folder.
        background: RGB in [0, 1] to composite RGBA images on. ``None`` keeps RGB as stored,
            except for ``blender``/``dnerf``, whose benchmark convention is white ``(1, 1, 1)``.
        format: ``"auto"`` (see :func:`detect_format`) or one of :data:`FORMATS`.
        cache_bytes: budget of the scene's decoded-image LRU cache (default 1 GiB, or
            ``RECON_IMAGE_CACHE_BYTES``).

    Splits: those the files give (Blender split files; nerfstudio ``train_filenames`` /
    ``val_filenames`` / ``test_filenames``), else every 8th frame (index % 8 == 0) is "test" and
    the rest "train". Raises :class:`ReconError` for anything wrong with the input.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ReconError(f"{p}: no such file or folder")
    if background is not None:
        background = _check_background(background)
    fmt = format
    if fmt == "auto":
        fmt = detect_format(p)
        if fmt is None:
            if p.is_file():
                raise ReconError(f"{p}: not a scene file (expected transforms.json, transforms_train.json, poses_bounds.npy or a COLMAP model)")
            raise ReconError(unknown_format_message(p))
    elif fmt not in FORMATS:
        raise ReconError(f"unknown scene format {fmt!r}; expected one of auto, {', '.join(FORMATS)}")

    if fmt == "nerfstudio":
        json_path = p if p.is_file() else p / "transforms.json"
        scene = read_nerfstudio(json_path, background)
    elif fmt in ("blender", "dnerf"):
        root = p.parent if p.is_file() else p
        scene = read_blender(root, background)
        if fmt == "dnerf" and not scene.has_time:
            raise ReconError(f"{root}: D-NeRF format needs a per-frame 'time'; none of the frames has one")
    elif fmt == "colmap":
        scene = read_colmap(p.parent if p.is_file() else p, background)
    elif fmt == "llff":
        scene = read_llff(p.parent if p.is_file() else p, background)
    else:
        scene = read_images(p.parent if p.is_file() else p, background)
    scene._cache = ImageCache(env_cache_bytes() if cache_bytes is None else cache_bytes)
    return scene


def _check_background(bg: Any) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in bg)
    except (TypeError, ValueError):
        raise ReconError(f"background must be three numbers in [0, 1], got {bg!r}") from None
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        raise ReconError(f"background must be three numbers in [0, 1], got {bg!r}")
    return vals  # type: ignore[return-value]


def assign_default_splits(frames: list[Frame], every: int = TEST_EVERY) -> None:
    """Every ``every``-th frame (index % every == 0) becomes "test", the rest "train" (in place)."""
    for i, f in enumerate(frames):
        f.split = "test" if i % every == 0 else "train"


def _rel_name(path: Path, base: Path) -> str:
    """Frame name: ``path`` relative to ``base`` without suffix (posix), or the stem if outside."""
    try:
        rel = Path(os.path.relpath(path, base))
    except ValueError:  # different drives on Windows
        return path.stem
    if rel.parts and rel.parts[0] == "..":
        return path.stem
    return rel.with_suffix("").as_posix()


def _resolve(base: Path, rel: str) -> Path:
    """``base / rel`` normalised lexically (``..`` collapsed, symlinks kept); absolute ``rel`` kept."""
    p = Path(rel).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _resolve_image(base: Path, rel: Any, where: str) -> Path:
    """An image reference to an existing file; Blender-style paths without extension get ``.png``."""
    if not isinstance(rel, str) or not rel:
        raise ReconError(f"{where}: missing or invalid 'file_path'")
    p = _resolve(base, rel)
    if p.is_file():
        return p
    if not p.suffix or p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".webp", ".bmp"):
        for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".exr"):
            q = p.with_name(p.name + ext)
            if q.is_file():
                return q
    tried = " (also tried .png, .jpg, .jpeg, .exr)" if not p.suffix else ""
    raise ReconError(f"{p}: image referenced by {where} not found{tried}")


def _matrix(value: Any, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReconError(f"{where}: transform_matrix is not a numeric matrix") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ReconError(f"{where}: transform_matrix must be a finite 4x4 (or 3x4) matrix, got shape {m.shape}")
    return m


# ----------------------------------------------------------------------------------------------
# nerfstudio transforms.json


def _camera_from_nerfstudio(
    get, where: str, size_of_first: "_LazySize", image_path: Path
) -> Camera:
    """Intrinsics from nerfstudio keys (``get(key)`` looks per frame, then top level)."""
    w, h = get("w"), get("h")
    if w is None or h is None:
        sw, sh = size_of_first(image_path)
        w = sw if w is None else w
        h = sh if h is None else h
    try:
        w, h = int(w), int(h)
        fx, fy = get("fl_x"), get("fl_y")
        if fx is None and get("camera_angle_x") is not None:
            fx = 0.5 * w / np.tan(0.5 * float(get("camera_angle_x")))
        if fy is None and get("camera_angle_y") is not None:
            fy = 0.5 * h / np.tan(0.5 * float(get("camera_angle_y")))
        if fx is None and fy is not None:
            fx = fy
        if fx is None:
            raise ReconError(f"{where}: no focal length (need fl_x/fl_y or camera_angle_x)")
        fx = float(fx)
        fy = fx if fy is None else float(fy)
        cx = float(get("cx")) if get("cx") is not None else w / 2.0
        cy = float(get("cy")) if get("cy") is not None else h / 2.0
        d = {k: float(get(k) or 0.0) for k in _DIST_KEYS}
    except (TypeError, ValueError):
        raise ReconError(f"{where}: intrinsics (fl_x, fl_y, cx, cy, w, h, k1..k4, p1, p2) must be numbers") from None
    declared = get("camera_model")
    model = _nerfstudio_model(declared, d, where)
    dist = np.array([d[k] for k in CAMERA_MODELS[model]], dtype=np.float64)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return Camera(K=K, width=w, height=h, model=model, dist=dist)


def _nerfstudio_model(declared: Any, d: dict[str, float], where: str) -> str:
    """The recon camera model for a nerfstudio ``camera_model`` and its coefficients."""
    nonzero = {k for k, v in d.items() if v != 0.0}
    if declared is None:
        declared = "PINHOLE"
    declared = str(declared).upper()
    if declared == "SIMPLE_PINHOLE":
        declared = "PINHOLE"
    if declared == "OPENCV_FISHEYE":
        extra = nonzero - {"k1", "k2", "k3", "k4"}
        if extra:
            raise ReconError(f"{where}: OPENCV_FISHEYE takes k1..k4 only, but {sorted(extra)} are set")
        return "OPENCV_FISHEYE"
    if declared not in CAMERA_MODELS:
        raise ReconError(
            f"{where}: camera_model {declared!r} is not supported "
            f"(supported: {', '.join(sorted(set(CAMERA_MODELS) | {'SIMPLE_PINHOLE'}))})"
        )
    # A perspective model: widen it if the file sets coefficients the declared model lacks.
    for model in (declared, "OPENCV", "FULL_OPENCV"):
        if model == "OPENCV_FISHEYE":
            continue
        if nonzero <= set(CAMERA_MODELS[model]):
            return model
    raise ReconError(f"{where}: distortion coefficients {sorted(nonzero)} do not fit any supported camera model")


class _LazySize:
    """Reads one image header the first time a size is needed, then reuses it."""

    def __init__(self) -> None:
        self.size: Optional[tuple[int, int]] = None
        self.reads = 0

    def __call__(self, path: Path) -> tuple[int, int]:
        if self.size is None:
            self.size = image_size(path)
            self.reads += 1
        return self.size


def read_nerfstudio(json_path: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """Read a nerfstudio ``transforms.json``. See :func:`load_scene`."""
    json_path = Path(json_path)
    meta = read_json(json_path)
    if not isinstance(meta, dict):
        raise ReconError(f"{json_path}: expected a JSON object with a 'frames' list")
    root = json_path.parent
    frames_meta = meta.get("frames")
    if not isinstance(frames_meta, list) or not frames_meta:
        raise ReconError(f"{json_path}: no 'frames' list (or it is empty)")
    lazy = _LazySize()
    frames: list[Frame] = []
    for idx, fm in enumerate(frames_meta):
        where = f"{json_path} frame {idx}"
        if not isinstance(fm, dict):
            raise ReconError(f"{where}: expected an object")
        img = _resolve_image(root, fm.get("file_path"), where)
        where = f"{json_path} frame {idx} ({fm.get('file_path')})"
        if "transform_matrix" not in fm:
            raise ReconError(f"{where}: no 'transform_matrix'")

        def get(key: str, fm: dict = fm) -> Any:
            return fm[key] if key in fm else meta.get(key)

        cam = _camera_from_nerfstudio(get, where, lazy, img)
        cam.c2w = opengl_to_opencv(_matrix(fm["transform_matrix"], where))
        mask = _optional_file(root, fm.get("mask_path"), where, "mask_path")
        depth = _optional_file(root, fm.get("depth_file_path"), where, "depth_file_path")
        t = fm.get("time")
        if t is not None:
            try:
                t = float(t)
            except (TypeError, ValueError):
                raise ReconError(f"{where}: 'time' must be a number, got {t!r}") from None
        frames.append(Frame(image_path=img, camera=cam, mask_path=mask, depth_path=depth, time=t, name=_rel_name(img, root)))

    _nerfstudio_splits(meta, frames, root, json_path)

    applied = np.eye(4)
    if meta.get("applied_transform") is not None:
        applied = _matrix(meta["applied_transform"], f"{json_path} applied_transform")
    points = colors = None
    if meta.get("ply_file_path"):
        ply = _resolve(root, meta["ply_file_path"])
        points, colors = read_ply_points(ply)
    return Scene(
        frames=frames,
        root=root,
        format="nerfstudio",
        points=points,
        point_colors=colors,
        background=background,
        applied_transform=applied,
    )


def _optional_file(root: Path, rel: Any, where: str, key: str) -> Optional[Path]:
    if rel is None or rel == "":
        return None
    if not isinstance(rel, str):
        raise ReconError(f"{where}: '{key}' must be a path string")
    p = _resolve(root, rel)
    if not p.is_file():
        raise ReconError(f"{p}: {key} referenced by {where} not found")
    return p


def _nerfstudio_splits(meta: dict, frames: list[Frame], root: Path, json_path: Path) -> None:
    lists = {s: meta.get(f"{s}_filenames") for s in SPLITS}
    if all(v is None for v in lists.values()):
        assign_default_splits(frames)
        return
    by_path = {str(f.image_path): f for f in frames}
    for f in frames:
        f.split = "unused" if lists["train"] is not None else "train"
    for split in SPLITS:
        names = lists[split]
        if names is None:
            continue
        if not isinstance(names, list):
            raise ReconError(f"{json_path}: '{split}_filenames' must be a list of file paths")
        for n in names:
            p = str(_resolve(root, str(n)))
            f = by_path.get(p)
            if f is None:
                raise ReconError(f"{json_path}: '{split}_filenames' names {n!r}, which is not one of the frames")
            f.split = split


def read_ply_points(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Vertices ``[P, 3]`` float64 and colours ``[P, 3]`` uint8 (or None) of a PLY point cloud."""
    from plyfile import PlyData

    path = Path(path)
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"]
    except FileNotFoundError:
        raise ReconError(f"{path}: point cloud file not found") from None
    except Exception as e:
        raise ReconError(f"{path}: unreadable PLY point cloud ({' '.join(str(e).split())})") from None
    names = v.data.dtype.names or ()
    if not all(n in names for n in ("x", "y", "z")):
        raise ReconError(f"{path}: PLY vertices have no x, y, z")
    pts = np.stack([np.asarray(v[n], dtype=np.float64) for n in ("x", "y", "z")], axis=1)
    colors = None
    if all(n in names for n in ("red", "green", "blue")):
        c = np.stack([np.asarray(v[n]) for n in ("red", "green", "blue")], axis=1)
        if np.issubdtype(c.dtype, np.floating):
            c = np.clip(np.round(c * 255.0), 0, 255)
        colors = c.astype(np.uint8)
    return pts, colors


# ----------------------------------------------------------------------------------------------
# Blender (NeRF-synthetic) and D-NeRF


def read_blender(root: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """Read ``transforms_{train,val,test}.json`` (NeRF-synthetic; D-NeRF when frames carry ``time``).

    RGBA images are composited on ``background``, white by default. Image size comes from the
    header of the first image (all frames of a Blender scene share it).
    """
    root = Path(root)
    files = _blender_files(root)
    if not files:
        raise ReconError(f"{root}: no transforms_train.json, transforms_val.json or transforms_test.json")
    lazy = _LazySize()
    frames: list[Frame] = []
    for split, jf in files:
        meta = read_json(jf)
        if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
            raise ReconError(f"{jf}: expected a JSON object with a 'frames' list")
        for idx, fm in enumerate(meta["frames"]):
            where = f"{jf} frame {idx}"
            if not isinstance(fm, dict):
                raise ReconError(f"{where}: expected an object")
            img = _resolve_image(root, fm.get("file_path"), where)
            where = f"{jf} frame {idx} ({fm.get('file_path')})"
            if "transform_matrix" not in fm:
                raise ReconError(f"{where}: no 'transform_matrix'")

            def get(key: str, fm: dict = fm, meta: dict = meta) -> Any:
                return fm[key] if key in fm else meta.get(key)

            cam = _camera_from_nerfstudio(get, where, lazy, img)
            cam.c2w = opengl_to_opencv(_matrix(fm["transform_matrix"], where))
            t = fm.get("time")
            if t is not None:
                try:
                    t = float(t)
                except (TypeError, ValueError):
                    raise ReconError(f"{where}: 'time' must be a number, got {t!r}") from None
            frames.append(Frame(image_path=img, camera=cam, split=split, time=t, name=_rel_name(img, root)))
    if not frames:
        raise ReconError(f"{root}: the transforms_*.json files list no frames")
    fmt = "dnerf" if any(f.time is not None for f in frames) else "blender"
    return Scene(frames=frames, root=root, format=fmt, background=background if background is not None else (1.0, 1.0, 1.0))


# ----------------------------------------------------------------------------------------------
# COLMAP


def camera_from_colmap(model_name: str, width: int, height: int, params: Sequence[float], where: str) -> Camera:
    """A recon :class:`Camera` (identity pose) from a COLMAP camera model and its parameters."""
    p = [float(v) for v in params]
    n = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8, "OPENCV_FISHEYE": 8, "FULL_OPENCV": 12}
    if model_name not in n:
        raise ReconError(
            f"{where}: COLMAP camera model {model_name} is not supported "
            f"(supported: {', '.join(n)}); undistort the images first (colmap image_undistorter)"
        )
    if len(p) != n[model_name]:
        raise ReconError(f"{where}: COLMAP {model_name} camera needs {n[model_name]} parameters, got {len(p)}")
    if model_name in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        rest = p[3:]
    else:
        fx, fy, cx, cy = p[:4]
        rest = p[4:]
    model = "PINHOLE" if model_name == "SIMPLE_PINHOLE" else model_name
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return Camera(K=K, width=width, height=height, model=model, dist=np.array(rest, dtype=np.float64))


def read_colmap(root: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """Read a COLMAP model (binary or text, through pycolmap) plus its ``images/`` folder.

    Registered images only, sorted by name. Optional per-image masks are looked up in
    ``masks/`` (``NAME``, ``NAME.png`` or ``STEM.png``) and depths in ``depths/`` (``STEM.npy``
    or ``STEM.png``) beside ``images/``.
    """
    import pycolmap

    root = Path(root)
    model_dir = find_colmap_model(root)
    if model_dir is None:
        raise ReconError(f"{root}: no COLMAP model (sparse/0/ or sparse/ with cameras, images, points3D .bin or .txt)")
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as e:
        raise ReconError(f"{model_dir}: unreadable COLMAP model ({' '.join(str(e).split())[:300]})") from None
    images_dir = colmap_images_dir(model_dir)
    scene_root = images_dir.parent
    masks_dir = scene_root / "masks"
    depths_dir = scene_root / "depths"
    has_masks, has_depths = masks_dir.is_dir(), depths_dir.is_dir()

    cams: dict[int, Camera] = {}
    for cid, c in rec.cameras.items():
        cams[cid] = camera_from_colmap(c.model.name, c.width, c.height, c.params, f"{model_dir} camera {cid}")

    frames: list[Frame] = []
    for image in sorted(rec.images.values(), key=lambda im: im.name):
        if not image.has_pose:
            continue
        img = _resolve(images_dir, image.name)
        if not img.is_file():
            raise ReconError(f"{img}: image {image.name!r} of COLMAP model {model_dir} not found")
        w2c = np.eye(4)
        w2c[:3, :4] = np.asarray(image.cam_from_world().matrix(), dtype=np.float64)
        cam = cams[image.camera_id].copy()
        cam.c2w = c2w_to_viewmat(w2c)  # rigid inverse
        mask = depth = None
        if has_masks:
            for c in (masks_dir / image.name, masks_dir / (image.name + ".png"), (masks_dir / image.name).with_suffix(".png")):
                if c.is_file():
                    mask = c
                    break
        if has_depths:
            for c in ((depths_dir / image.name).with_suffix(".npy"), (depths_dir / image.name).with_suffix(".png")):
                if c.is_file():
                    depth = c
                    break
        name = Path(image.name).with_suffix("").as_posix()
        frames.append(Frame(image_path=img, camera=cam, mask_path=mask, depth_path=depth, name=name))
    if not frames:
        raise ReconError(f"{model_dir}: COLMAP model has no registered images")
    assign_default_splits(frames)

    points = colors = None
    if rec.num_points3D():
        points, colors = read_colmap_points(model_dir)
    return Scene(frames=frames, root=scene_root, format="colmap", points=points, point_colors=colors, background=background)


def read_colmap_points(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sparse points ``[P, 3]`` float64 and colours ``[P, 3]`` uint8 of a COLMAP model, by point id.

    Parsed here rather than through pycolmap's per-point objects, which take seconds for a few
    hundred thousand points. Reads ``points3D.bin`` when present (as COLMAP does), else ``.txt``.
    """
    import struct

    model_dir = Path(model_dir)
    ids: list[int] = []
    rows: list[tuple] = []
    binf, txtf = model_dir / "points3D.bin", model_dir / "points3D.txt"
    try:
        if binf.is_file():
            data = binf.read_bytes()
            (n,) = struct.unpack_from("<Q", data, 0)
            rec = struct.Struct("<Q3d3BdQ")  # id, xyz, rgb, error, track length
            off = 8
            for _ in range(n):
                pid, x, y, z, r, g, b, _err, tl = rec.unpack_from(data, off)
                off += rec.size + 8 * tl  # track: (image_id uint32, point2D_idx uint32) pairs
                ids.append(pid)
                rows.append((x, y, z, r, g, b))
        elif txtf.is_file():
            # POINT3D_ID X Y Z R G B ERROR TRACK[]: rows differ in length; the first 7 columns suffice.
            a = np.loadtxt(txtf, comments="#", usecols=range(7), ndmin=2, dtype=np.float64)
            if len(a) == 0:
                return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
            order = np.argsort(a[:, 0], kind="stable")
            a = a[order]
            return np.ascontiguousarray(a[:, 1:4]), a[:, 4:7].astype(np.uint8)
    except (struct.error, ValueError, IndexError) as e:
        raise ReconError(f"{model_dir}: malformed points3D file ({e})") from None
    if not rows:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    arr = np.asarray(rows, dtype=np.float64)[order]
    return np.ascontiguousarray(arr[:, :3]), arr[:, 3:6].astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# LLFF


def llff_to_opencv(poses: np.ndarray) -> np.ndarray:
    """LLFF ``[N, 3, 4]`` camera-to-world poses to OpenCV ``[N, 4, 4]``.

    LLFF's rotation columns are the camera's (down, right, back) axes in world coordinates;
    OpenCV's are (right, down, forward) = (col 1, col 0, -col 2).
    """
    poses = np.asarray(poses, dtype=np.float64)
    out = np.zeros((poses.shape[0], 4, 4))
    out[:, :3, 0] = poses[:, :, 1]
    out[:, :3, 1] = poses[:, :, 0]
    out[:, :3, 2] = -poses[:, :, 2]
    out[:, :3, 3] = poses[:, :, 3]
    out[:, 3, 3] = 1.0
    return out


def opencv_to_llff(c2w: np.ndarray) -> np.ndarray:
    """OpenCV ``[N, 4, 4]`` camera-to-world to LLFF ``[N, 3, 4]`` (down, right, back, translation)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return np.stack([c2w[:, :3, 1], c2w[:, :3, 0], -c2w[:, :3, 2], c2w[:, :3, 3]], axis=-1)


def read_llff(root: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """Read ``poses_bounds.npy`` + ``images/`` (LLFF / NeRF "real forward-facing").

    Each row holds a 3x5 matrix ``[R | t | (H, W, f)]`` (axes down, right, back) and the near/far
    bounds. Poses stay in the file's world frame (no recentring or rescaling). If the images are
    a different size from ``H, W`` the focal length is scaled to them, as LLFF's loader does;
    the principal point is the image centre.
    """
    root = Path(root)
    pb_path = root / "poses_bounds.npy"
    try:
        pb = np.load(pb_path)
    except FileNotFoundError:
        raise ReconError(f"{pb_path}: file not found") from None
    except Exception as e:
        raise ReconError(f"{pb_path}: unreadable ({' '.join(str(e).split())})") from None
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise ReconError(f"{pb_path}: expected an [N, 17] array, got shape {pb.shape}")
    mats = pb[:, :15].reshape(-1, 3, 5).astype(np.float64)
    images = list_images(root / "images")
    if not images:
        raise ReconError(f"{root / 'images'}: no images for poses_bounds.npy")
    if len(images) != len(pb):
        raise ReconError(f"{root}: poses_bounds.npy has {len(pb)} poses but images/ has {len(images)} images")
    c2w = llff_to_opencv(mats[:, :, :4])
    img_w, img_h = image_size(images[0])
    frames = []
    for i, (img, m) in enumerate(zip(images, mats)):
        h, w, f = m[:, 4]
        if not (h > 0 and w > 0 and f > 0):
            raise ReconError(f"{pb_path}: row {i} has invalid (H, W, f) = ({h}, {w}, {f})")
        sx, sy = img_w / w, img_h / h
        K = np.array([[f * sx, 0.0, img_w / 2.0], [0.0, f * sy, img_h / 2.0], [0.0, 0.0, 1.0]])
        cam = Camera(K=K, width=img_w, height=img_h, c2w=c2w[i])
        frames.append(Frame(image_path=img, camera=cam, name=img.stem))
    assign_default_splits(frames)
    return Scene(frames=frames, root=root, format="llff", background=background)


# ----------------------------------------------------------------------------------------------
# Plain images


def read_images(root: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """A plain folder of images (in ``root`` or ``root/images``), sorted by name, without cameras."""
    root = Path(root)
    images = list_images(root) or list_images(root / "images")
    if not images:
        raise ReconError(unknown_format_message(root))
    base = images[0].parent
    frames = [Frame(image_path=p, camera=None, name=_rel_name(p, base)) for p in images]
    assign_default_splits(frames)
    return Scene(frames=frames, root=root, format="images", background=background)
