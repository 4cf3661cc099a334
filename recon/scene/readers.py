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
import struct
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from recon.errors import ReconError
from recon.scene.cameras import CAMERA_MODELS, MAX_IMAGE_SIDE, Camera, check_intrinsics, check_quaternion, check_rotation
from recon.scene.conventions import colmap_to_c2w, llff_to_opencv, opencv_to_llff, opengl_to_opencv  # noqa: F401
from recon.scene.images import ImageCache, env_cache_bytes, image_size, is_image_file, is_video_file, load_npy
from recon.scene.scene import SPLITS, Frame, Scene, is_inside, outside_frame_path

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
    except RecursionError:
        raise ReconError(f"{path}: malformed JSON (nested too deeply)") from None


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
    """The COLMAP model folder of ``root``: ``sparse/0``, ``sparse/<first numbered>``, ``sparse`` or ``root`` itself.

    A candidate folder that holds some COLMAP model files but lacks ``cameras`` or ``images``
    (``.bin`` or ``.txt``) raises :class:`ReconError` naming the missing file.
    """
    root = Path(root)
    sparse = root / "sparse"
    cands = [sparse / "0"]
    if sparse.is_dir():
        subs = sorted((p for p in sparse.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
        cands += subs
    cands += [sparse, root]
    for c in cands:
        if not c.is_dir():
            continue
        if _has_colmap_files(c):
            return c
        msg = _incomplete_colmap(c)
        if msg:  # a model is there but cannot be read: say so, rather than ignore it and run SfM again
            raise ReconError(msg)
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
    undistort: bool = False,
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
        undistort: return :meth:`Scene.undistorted` (pinhole cameras, pixels remapped on load) —
            what training, evaluation and rendering use; ``False`` keeps the cameras as stored.

    Splits: those the files give (Blender split files; nerfstudio ``train_filenames`` /
    ``val_filenames`` / ``test_filenames``), else every 8th frame (index % 8 == 0) is "test" and
    the rest "train". Raises :class:`ReconError` for anything wrong with the input; every camera,
    pose and frame path is validated before this returns (:meth:`Scene.validate`): one line naming
    the file, the field and the fix.
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
    scene.validate()
    if undistort:
        scene = scene.undistorted()
    scene._cache = ImageCache(env_cache_bytes() if cache_bytes is None else cache_bytes)
    return scene


def _check_background(bg: Any, what: str = "background") -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in bg)
    except (TypeError, ValueError):
        raise ReconError(f"{what} must be three numbers in [0, 1], got {bg!r}") from None
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        raise ReconError(f"{what} must be three numbers in [0, 1], got {bg!r}")
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


def _scene_path(root: Path, base: Path, rel: str, where: str, field: str = "image") -> Path:
    """``base / rel`` (lexically normalised), refused when it lies outside the scene folder ``root``."""
    p = _resolve(base, rel)
    if not is_inside(root, p):
        raise ReconError(
            f"{where}: {field} {rel!r} points outside the scene folder {root}; "
            "move the file into the scene folder (or link it there) and use a path relative to it"
        )
    return p


def _check_frame_paths(frames: list[Frame], root: Path, where: list[str]) -> None:
    """Refuse a frame whose image, mask or depth points outside the scene folder (see
    :func:`recon.scene.scene.outside_frame_path`), naming the index file's frame and the field."""
    out = outside_frame_path(frames, root)
    if out is not None:
        i, field, p = out
        raise ReconError(
            f"{where[i]}: {field} path {p} points outside the scene folder {root}; "
            "move the file into the scene folder (or link it there) and use a path relative to it"
        )


def _resolve_image(base: Path, rel: Any, where: str) -> Path:
    """An image reference to an existing file; Blender-style paths without extension get ``.png``."""
    if not isinstance(rel, str) or not rel:
        raise ReconError(f"{where}: missing or invalid 'file_path'")
    p = _resolve(base, rel)  # containment is checked over all frames (_check_frame_paths)
    if p.is_file():
        return p
    if not p.suffix or p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff", ".webp", ".bmp"):
        for ext in (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".exr"):
            q = p.with_name(p.name + ext)
            if q.is_file():
                return q
    tried = " (also tried .png, .jpg, .jpeg, .exr)" if not p.suffix else ""
    raise ReconError(f"{p}: image referenced by {where} not found{tried}")


def _matrix(value: Any, where: str, rotation: bool = True) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReconError(f"{where}: transform_matrix is not a numeric matrix") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise ReconError(f"{where}: transform_matrix must be a 4x4 (or 3x4) matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ReconError(f"{where}: transform_matrix has non-finite values (NaN or inf); fix the pose")
    if rotation:
        check_rotation(m[:3, :3], where, "the rotation block of transform_matrix")
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
        for key in ("camera_angle_x", "camera_angle_y"):
            ang = get(key)
            if ang is not None and not (0.0 < float(ang) < np.pi):
                raise ReconError(
                    f"{where}: {key} = {float(ang):.6g} must be a field of view in radians in (0, pi); "
                    f"fix {key} (e.g. 0.69 for a 40-degree lens)"
                )
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
    except (TypeError, ValueError, OverflowError):
        raise ReconError(f"{where}: intrinsics (fl_x, fl_y, cx, cy, w, h, k1..k4, p1, p2) must be numbers") from None
    if not (np.all(np.isfinite(list(d.values())))):
        raise ReconError(f"{where}: distortion coefficients (k1..k4, p1, p2) must be finite numbers; fix them (0 = none)")
    declared = get("camera_model")
    model = _nerfstudio_model(declared, d, where)
    dist = np.array([d[k] for k in CAMERA_MODELS[model]], dtype=np.float64)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    cam = Camera(K=K, width=w, height=h, model=model, dist=dist)
    check_intrinsics(cam, where, focal_field="fl_x / fl_y (or camera_angle_x)")
    return cam


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
    wheres: list[str] = []
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
        wheres.append(where)
    _check_frame_paths(frames, root, wheres)

    _nerfstudio_splits(meta, frames, root, json_path)

    applied = np.eye(4)
    if meta.get("applied_transform") is not None:
        applied = _matrix(meta["applied_transform"], f"{json_path} applied_transform", rotation=False)
    points = colors = None
    if meta.get("ply_file_path"):
        ply = _resolve(root, meta["ply_file_path"])
        points, colors = read_ply_points(ply)
    declared = None
    if meta.get("background_color") is not None:
        declared = _check_background(meta["background_color"], f"{json_path} background_color")
    return Scene(
        frames=frames,
        root=root,
        format="nerfstudio",
        declared_backdrop=declared,
        points=points,
        point_colors=colors,
        background=background,
        applied_transform=applied,
        time_source=_time_source(meta, json_path),
    )


TIME_KEY = "recon_time"
"""Top-level ``transforms.json`` entry describing where the frames' times come from
(``{"source": "video", ...}``, written by ``recon process`` for one video; nerfstudio ignores it)."""


def _time_source(meta: dict, json_path: Path) -> Optional[str]:
    info = meta.get(TIME_KEY)
    if info is None:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("source"), str):
        raise ReconError(f"{json_path}: '{TIME_KEY}' must be an object with a 'source' string (e.g. \"video\"); "
                         "remove it if the frames' times are the capture's own")
    return info["source"]


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


_PLY_SIZES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
_PLY_HEADER_LIMIT = 1 << 20


def check_ply_size(path: Path, what: str = "PLY file") -> None:
    """Refuse a PLY whose header declares more data than the file holds, before any reader allocates.

    Reads the header only (at most 1 MiB). For binary files each element needs ``count x row
    size`` bytes (list properties at least their count field); for ASCII files at least two
    characters per value. Raises :class:`ReconError` naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(min(size, _PLY_HEADER_LIMIT))
    except FileNotFoundError:
        raise ReconError(f"{path}: {what} not found") from None
    except OSError as e:
        raise ReconError(f"{path}: cannot read ({' '.join(str(e).split())})") from None
    if not head.startswith(b"ply"):
        raise ReconError(f"{path}: not a PLY file")
    end = head.find(b"end_header")
    if end < 0:
        raise ReconError(f"{path}: PLY header has no end_header in its first {_PLY_HEADER_LIMIT} bytes: truncated or not a PLY file")
    nl = head.find(b"\n", end)
    body = size - (nl + 1 if nl >= 0 else len(head))
    fmt, need = "", 0
    count = row = 0
    try:
        for line in head[:end].decode("ascii", "replace").splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                need += count * row
                count, row = int(parts[2]), 0
                if count < 0:
                    raise ValueError(f"negative element count {count}")
            elif parts[0] == "property":
                if fmt == "ascii":
                    row += 2
                elif parts[1] == "list":
                    row += _PLY_SIZES[parts[2]]
                else:
                    row += _PLY_SIZES[parts[1]]
    except (IndexError, KeyError, ValueError) as e:
        raise ReconError(f"{path}: malformed PLY header ({e})") from None
    need += count * row
    if need > body:
        raise ReconError(
            f"{path}: PLY header declares at least {need} bytes of data but the file has {body}: "
            "truncated or corrupt; re-export it"
        )


def read_ply_points(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Vertices ``[P, 3]`` float64 and colours ``[P, 3]`` uint8 (or None) of a PLY point cloud."""
    from plyfile import PlyData

    path = Path(path)
    check_ply_size(path, "PLY point cloud")
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
    bad = ~np.all(np.isfinite(pts), axis=1)
    if bad.any():
        raise ReconError(f"{path}: {int(bad.sum())} of {len(pts)} points have non-finite x, y, z (first: vertex {int(np.argmax(bad))}); fix or remove the file")
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
    wheres: list[str] = []
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
            wheres.append(where)
    _check_frame_paths(frames, root, wheres)
    if not frames:
        raise ReconError(f"{root}: the transforms_*.json files list no frames")
    fmt = "dnerf" if any(f.time is not None for f in frames) else "blender"
    baked = _baked_background(frames[0].image_path)
    if baked is not None:
        background = baked
    return Scene(frames=frames, root=root, format=fmt, background=background if background is not None else (1.0, 1.0, 1.0))


def _baked_background(image: Path) -> Optional[tuple[float, float, float]]:
    """The background an RGB (no alpha) Blender/D-NeRF image was saved on, when its border is
    uniformly black or white (e.g. D-NeRF scenes exported on black): renders are composited on
    that colour so they match the images. ``None`` for RGBA images or any other border."""
    from recon.scene.images import decode

    try:
        arr = decode(image)
    except Exception:  # noqa: BLE001 - unreadable images are reported when they are loaded
        return None
    if arr.ndim != 3 or arr.shape[2] != 3:
        return None
    a = arr.astype(np.float32)
    if a.max() > 1.0:
        a /= 255.0 if arr.dtype == np.uint8 or a.max() <= 255 else 65535.0
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    for colour in (0.0, 1.0):
        if np.mean(np.all(np.abs(border - colour) < 0.02, axis=1)) > 0.95:
            return (colour, colour, colour)
    return None


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
    cam = Camera(K=K, width=width, height=height, model=model, dist=np.array(rest, dtype=np.float64))
    check_intrinsics(cam, where, focal_field="params (f / fx, fy)")
    return cam


def _incomplete_colmap(folder: Path) -> Optional[str]:
    """The message for a folder holding some COLMAP model files but not cameras and images, else None."""
    present = [f"{n}{e}" for n in _COLMAP_FILES for e in (".bin", ".txt") if (folder / f"{n}{e}").is_file()]
    if not present or _has_colmap_files(folder):
        return None
    kind = ".bin" if any(p.endswith(".bin") for p in present) else ".txt"
    missing = [f"{n}{kind}" for n in ("cameras", "images") if _model_file(folder, n) is None]
    return (
        f"{folder / missing[0]}: missing from the COLMAP model in {folder} (it has {', '.join(present)}); "
        f"restore {' and '.join(missing)}, or delete the incomplete model to estimate poses again"
    )


def read_colmap(root: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """Read a COLMAP model (binary or text) plus its ``images/`` folder.

    The files are parsed here (:func:`read_colmap_cameras`, :func:`read_colmap_images`,
    :func:`read_colmap_points`) with every count checked against the file size. Every image of
    ``images.bin``/``images.txt`` is registered (COLMAP writes only registered ones); frames are
    sorted by name. Optional per-image masks are looked up in ``masks/`` (``NAME``, ``NAME.png`` or
    ``STEM.png``) and depths in ``depths/`` (``STEM.npy`` or ``STEM.png``) beside ``images/``.
    """
    root = Path(root)
    model_dir = find_colmap_model(root)
    if model_dir is None:
        raise ReconError(f"{root}: no COLMAP model (sparse/0/ or sparse/ with cameras, images, points3D .bin or .txt)")
    cam_file, img_file = _model_file(model_dir, "cameras"), _model_file(model_dir, "images")
    assert cam_file is not None and img_file is not None  # find_colmap_model checked
    images_dir = colmap_images_dir(model_dir)
    scene_root = images_dir.parent
    masks_dir = scene_root / "masks"
    depths_dir = scene_root / "depths"
    has_masks, has_depths = masks_dir.is_dir(), depths_dir.is_dir()

    cams: dict[int, Camera] = {}
    for cid, c in read_colmap_cameras(cam_file).items():
        cams[cid] = camera_from_colmap(c.model, c.width, c.height, c.params, f"{cam_file} camera {cid}")

    frames: list[Frame] = []
    for image in sorted(read_colmap_images(img_file), key=lambda im: im.name):
        where = f"{img_file} image {image.image_id} ({image.name})"
        if image.camera_id not in cams:
            raise ReconError(f"{where}: camera_id {image.camera_id} is not in {cam_file}; fix or re-export the model")
        q, t = np.asarray(image.qvec, np.float64), np.asarray(image.tvec, np.float64)
        check_quaternion(q, where, "qvec (QW QX QY QZ)")
        if not np.all(np.isfinite(t)):
            raise ReconError(f"{where}: tvec (TX TY TZ) = {t.tolist()} is not finite; fix or re-export the model")
        img = _scene_path(scene_root, images_dir, image.name, where)
        if not img.is_file():
            raise ReconError(f"{img}: image {image.name!r} of COLMAP model {model_dir} not found")
        cam = cams[image.camera_id].copy()
        cam.c2w = colmap_to_c2w(q, t)
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
    if _model_file(model_dir, "points3D") is not None:
        points, colors = read_colmap_points(model_dir)
        if len(points) == 0:
            points = colors = None
    return Scene(frames=frames, root=scene_root, format="colmap", points=points, point_colors=colors, background=background)


def read_colmap_points(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sparse points ``[P, 3]`` float64 and colours ``[P, 3]`` uint8 of a COLMAP model, by point id.

    Parsed here rather than through pycolmap's per-point objects, which take seconds for a few
    hundred thousand points. Reads ``points3D.bin`` when present (as COLMAP does), else ``.txt``.
    The point count is checked against the file size before anything is allocated; non-finite
    coordinates are refused.
    """
    model_dir = Path(model_dir)
    binf, txtf = model_dir / "points3D.bin", model_dir / "points3D.txt"
    if binf.is_file():
        b = _Bin(binf)
        n = b.count("points", _PT_HEAD.size)
        ids = np.empty(n, np.int64)
        xyz = np.empty((n, 3), np.float64)
        rgb = np.empty((n, 3), np.uint8)
        data, off, size, unpack, rec = b.data, b.off, len(b.data), _PT_HEAD.unpack_from, _PT_HEAD.size
        for i in range(n):
            if off + rec > size:
                b.off = off
                b.need(rec, f"point {i}")
            pid, x, y, z, r, g, bl, _err, tl = unpack(data, off)
            off += rec + 8 * tl  # track: (image_id uint32, point2D_idx uint32) pairs
            if off > size:
                b.off = off - 8 * tl
                b.need(8 * tl, f"point {pid}'s track of {tl} observations")
            ids[i] = pid
            xyz[i] = (x, y, z)
            rgb[i] = (r, g, bl)
        b.off = off
        b.done()
        where = binf
    elif txtf.is_file():
        # POINT3D_ID X Y Z R G B ERROR TRACK[]: rows differ in length; the first 7 columns suffice.
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": no points
                a = np.loadtxt(txtf, comments="#", usecols=range(7), ndmin=2, dtype=np.float64)
        except (ValueError, IndexError) as e:
            raise ReconError(f"{txtf}: malformed points3D file ({' '.join(str(e).split())[:200]})") from None
        except OSError as e:
            raise ReconError(f"{txtf}: cannot read ({' '.join(str(e).split())})") from None
        ids, xyz = a[:, 0], a[:, 1:4]
        if np.any((a[:, 4:7] < 0) | (a[:, 4:7] > 255)):
            raise ReconError(f"{txtf}: point colours (R G B) must be in 0..255")
        rgb = a[:, 4:7].astype(np.uint8)
        where = txtf
    else:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    bad = ~np.all(np.isfinite(xyz), axis=1)
    if bad.any():
        raise ReconError(f"{where}: {int(bad.sum())} point(s) have non-finite X Y Z (first: point {ids[np.argmax(bad)]:.0f}); fix or re-export the model")
    order = np.argsort(ids, kind="stable")
    return np.ascontiguousarray(xyz[order]), np.ascontiguousarray(rgb[order])


# ----------------------------------------------------------------------------------------------
# COLMAP model files, parsed here with every count checked against the file's real size before
# anything is allocated (a truncated or lying file is one ReconError naming it, never a huge
# allocation). Layouts as COLMAP's ``src/colmap/scene/reconstruction_io.cc`` reads and writes them.

# COLMAP camera model id -> (name, number of parameters).
_COLMAP_MODEL_IDS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}  # fmt: skip


class ColmapCamera(NamedTuple):
    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]


class ColmapImage(NamedTuple):
    image_id: int
    qvec: tuple[float, float, float, float]  # world-to-camera rotation (w, x, y, z)
    tvec: tuple[float, float, float]  # world-to-camera translation
    camera_id: int
    name: str


class _Bin:
    """A bounds-checked little-endian reader over one file's bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data = memoryview(path.read_bytes())
        except FileNotFoundError:
            raise ReconError(f"{path}: file not found") from None
        except OSError as e:
            raise ReconError(f"{path}: cannot read ({' '.join(str(e).split())})") from None
        self.off = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.off

    def need(self, n: int, what: str) -> None:
        if n > self.left:
            raise ReconError(
                f"{self.path}: truncated or corrupt COLMAP file ({what} needs {n} bytes at offset {self.off}, "
                f"{self.left} left of {len(self.data)}); re-export the model"
            )

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        self.need(st.size, what)
        v = st.unpack_from(self.data, self.off)
        self.off += st.size
        return v

    def count(self, what: str, min_record: int) -> int:
        """A uint64 record count, refused when ``count * min_record`` exceeds the bytes left."""
        (n,) = self.unpack(_U64, f"the {what} count")
        if n * min_record > self.left:
            raise ReconError(
                f"{self.path}: header claims {n} {what}, but the file has room for at most "
                f"{self.left // min_record} ({len(self.data)} bytes): truncated or corrupt; re-export the model"
            )
        return n

    def cstring(self, what: str, limit: int = 4096) -> str:
        end = bytes(self.data[self.off : self.off + limit]).find(b"\0")
        if end < 0:
            raise ReconError(f"{self.path}: {what} at offset {self.off} is not terminated: truncated or corrupt COLMAP file")
        raw = bytes(self.data[self.off : self.off + end])
        self.off += end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ReconError(f"{self.path}: {what} at offset {self.off - end - 1} is not UTF-8: corrupt COLMAP file") from None

    def done(self) -> None:
        if self.left:
            raise ReconError(f"{self.path}: {self.left} unexpected bytes after the last record: corrupt COLMAP file")


_U64 = struct.Struct("<Q")
_CAM_HEAD = struct.Struct("<iiQQ")  # camera_id, model_id, width, height
_IMG_HEAD = struct.Struct("<I4d3dI")  # image_id, qvec, tvec, camera_id
_PT_HEAD = struct.Struct("<Q3d3BdQ")  # point id, xyz, rgb, error, track length


def _check_size(path: Path, where: str, w: int, h: int) -> None:
    if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        raise ReconError(f"{path}: {where} has image size {w}x{h}; width and height must be in 1..{MAX_IMAGE_SIDE}")


def read_colmap_cameras(path: Path) -> dict[int, ColmapCamera]:
    """``cameras.bin`` or ``cameras.txt`` to ``{camera_id: ColmapCamera}`` (bounded by the file size)."""
    path = Path(path)
    cams: dict[int, ColmapCamera] = {}
    if path.suffix == ".bin":
        b = _Bin(path)
        n = b.count("cameras", _CAM_HEAD.size)
        for i in range(n):
            cid, mid, w, h = b.unpack(_CAM_HEAD, f"camera {i}")
            if mid not in _COLMAP_MODEL_IDS:
                raise ReconError(f"{path}: camera {cid} has unknown COLMAP model id {mid}: corrupt file or a newer COLMAP model")
            name, k = _COLMAP_MODEL_IDS[mid]
            params = b.unpack(struct.Struct(f"<{k}d"), f"camera {cid} parameters")
            _check_size(path, f"camera {cid}", w, h)
            if cid in cams:
                raise ReconError(f"{path}: camera id {cid} appears twice: corrupt file")
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), tuple(params))
        b.done()
        return cams
    for lineno, parts in _text_rows(path):
        try:
            if len(parts) < 4:
                raise ValueError("expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
            cid, model, w, h = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
            params = tuple(float(v) for v in parts[4:])
        except ValueError as e:
            raise ReconError(f"{path} line {lineno}: malformed camera ({e})") from None
        _check_size(path, f"camera {cid} (line {lineno})", w, h)
        cams[cid] = ColmapCamera(cid, model, w, h, params)
    return cams


def read_colmap_images(path: Path) -> list[ColmapImage]:
    """``images.bin`` or ``images.txt`` to a list of :class:`ColmapImage` (2D points skipped, bounded)."""
    path = Path(path)
    out: list[ColmapImage] = []
    if path.suffix == ".bin":
        b = _Bin(path)
        n = b.count("images", _IMG_HEAD.size + 1 + 8)
        for i in range(n):
            iid, qw, qx, qy, qz, tx, ty, tz, cid = b.unpack(_IMG_HEAD, f"image {i}")
            name = b.cstring(f"image {iid} name")
            (np2,) = b.unpack(_U64, f"image {iid} point count")
            b.need(24 * np2, f"image {iid}'s {np2} 2D points")
            b.off += 24 * np2  # (x, y double, point3D_id int64) each
            out.append(ColmapImage(iid, (qw, qx, qy, qz), (tx, ty, tz), cid, name))
        b.done()
        return out
    rows = _text_rows(path, keep_blank=True)
    for lineno, parts in rows:
        if not parts:
            continue
        try:
            if len(parts) < 10:
                raise ValueError("expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
            v = [float(x) for x in parts[1:8]]
            out.append(ColmapImage(int(parts[0]), tuple(v[:4]), tuple(v[4:7]), int(parts[8]), " ".join(parts[9:])))  # type: ignore[arg-type]
        except ValueError as e:
            raise ReconError(f"{path} line {lineno}: malformed image ({e})") from None
        next(rows, None)  # the POINTS2D line that follows every image line
    return out


def _text_rows(path: Path, keep_blank: bool = False):
    """``(line number, fields)`` of a COLMAP text file, comments skipped (blank lines too unless asked)."""
    try:
        f = open(path, "r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ReconError(f"{path}: file not found") from None
    except OSError as e:
        raise ReconError(f"{path}: cannot read ({' '.join(str(e).split())})") from None

    def gen():
        with f:
            for i, line in enumerate(f, 1):
                s = line.strip()
                if s.startswith("#") or (not s and not keep_blank):
                    continue
                yield i, s.split()

    return gen()


def _model_file(model_dir: Path, stem: str) -> Optional[Path]:
    for ext in (".bin", ".txt"):  # COLMAP prefers the binary file
        p = model_dir / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


# ----------------------------------------------------------------------------------------------
# LLFF


def read_llff(root: Path, background: Optional[tuple[float, float, float]] = None) -> Scene:
    """Read ``poses_bounds.npy`` + ``images/`` (LLFF / NeRF "real forward-facing").

    Each row holds a 3x5 matrix ``[R | t | (H, W, f)]`` (axes down, right, back) and the near/far
    bounds. Poses stay in the file's world frame (no recentring or rescaling). If the images are
    a different size from ``H, W`` the focal length is scaled to them, as LLFF's loader does;
    the principal point is the image centre.
    """
    root = Path(root)
    pb_path = root / "poses_bounds.npy"
    pb = load_npy(pb_path, "poses_bounds.npy")
    if pb.ndim != 2 or pb.shape[1] != 17:
        raise ReconError(f"{pb_path}: expected an [N, 17] array, got shape {pb.shape}")
    if not np.issubdtype(pb.dtype, np.number) or np.issubdtype(pb.dtype, np.complexfloating):
        raise ReconError(f"{pb_path}: expected real numbers, got dtype {pb.dtype}")
    mats = pb[:, :15].reshape(-1, 3, 5).astype(np.float64)
    images = list_images(root / "images")
    if not images:
        raise ReconError(f"{root / 'images'}: no images for poses_bounds.npy")
    if len(images) != len(pb):
        raise ReconError(f"{root}: poses_bounds.npy has {len(pb)} poses but images/ has {len(images)} images")
    for i, m in enumerate(mats):
        if not np.all(np.isfinite(m)):
            raise ReconError(f"{pb_path}: row {i} has non-finite pose values (NaN or inf); fix or regenerate poses_bounds.npy")
        check_rotation(m[:, :3], f"{pb_path} row {i}", "the rotation (columns 0-2 of the 3x5 pose)")
    c2w = llff_to_opencv(mats[:, :, :4])
    img_w, img_h = image_size(images[0])
    frames = []
    for i, (img, m) in enumerate(zip(images, mats)):
        h, w, f = m[:, 4]
        if not (h > 0 and w > 0 and f > 0):
            raise ReconError(
                f"{pb_path}: row {i} has invalid (H, W, f) = ({h}, {w}, {f}); height, width and focal length must be positive"
            )
        sx, sy = img_w / w, img_h / h
        K = np.array([[f * sx, 0.0, img_w / 2.0], [0.0, f * sy, img_h / 2.0], [0.0, 0.0, 1.0]])
        cam = Camera(K=K, width=img_w, height=img_h, c2w=c2w[i])
        check_intrinsics(cam, f"{pb_path} row {i}", "f (row element 14)")
        frames.append(Frame(image_path=img, camera=cam, name=img.stem))
    assign_default_splits(frames)
    bounds = pb[:, 15:17].astype(np.float64)
    depth_range = None
    if np.all(np.isfinite(bounds)) and np.all(bounds > 0) and np.all(bounds[:, 1] > bounds[:, 0]):
        depth_range = (float(bounds[:, 0].min()), float(bounds[:, 1].max()))
    return Scene(frames=frames, root=root, format="llff", background=background, depth_range=depth_range)


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
