"""Writers: a :class:`recon.scene.Scene` to nerfstudio ``transforms.json`` or COLMAP text files.

Both are lossless for what each format can hold: reading a written scene back gives the same
poses (to float64 round-off), intrinsics, image paths and, for ``transforms.json``, the same
splits, times, masks and depths. Every file is written atomically (a temporary file in the same
folder, then ``os.replace``), so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recon.io_utils import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)
from recon.errors import ReconError
from recon.scene.cameras import CAMERA_MODELS, Camera
from recon.scene.conventions import c2w_to_colmap, opencv_to_opengl
from recon.scene.readers import colmap_images_dir
from recon.scene.scene import SPLITS, Scene


def _relpath(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in posix form (``..`` where needed); absolute if on another drive."""
    try:
        return Path(os.path.relpath(Path(path).absolute(), Path(base).absolute())).as_posix()
    except ValueError:
        return Path(path).absolute().as_posix()


def _require_cameras(scene: Scene, what: str) -> None:
    missing = [f for f in scene.frames if f.camera is None]
    if missing:
        raise ReconError(f"cannot write {what}: {len(missing)} frame(s) have no camera pose, e.g. {missing[0].image_path}")
    if not scene.frames:
        raise ReconError(f"cannot write {what}: the scene has no frames")


# ----------------------------------------------------------------------------------------------
# nerfstudio transforms.json


def _ns_intrinsics(cam: Camera) -> dict[str, Any]:
    """nerfstudio intrinsic keys for one camera: camera_model, fl_x, fl_y, cx, cy, w, h, k*/p*."""
    d: dict[str, Any] = {
        "camera_model": cam.model,
        "fl_x": float(cam.K[0, 0]),
        "fl_y": float(cam.K[1, 1]),
        "cx": float(cam.K[0, 2]),
        "cy": float(cam.K[1, 2]),
        "w": int(cam.width),
        "h": int(cam.height),
    }
    for name, value in zip(CAMERA_MODELS[cam.model], cam.dist):
        d[name] = float(value)
    return d


def write_transforms_json(scene: Scene, path: Path | str) -> Path:
    """Write ``scene`` as nerfstudio ``transforms.json``; returns the file written.

    Args:
        scene: a scene whose every frame has a camera.
        path: the ``.json`` file to write, or a folder (then ``folder/transforms.json``).

    Layout: intrinsics (``camera_model, fl_x, fl_y, cx, cy, w, h`` and the model's ``k1..k4,
    p1, p2``) at the top level when every frame shares them, else in every frame. Each frame
    has ``file_path`` (relative to the JSON's folder), ``transform_matrix`` (OpenGL
    camera-to-world, as nerfstudio expects) and, where present, ``time``, ``mask_path`` and
    ``depth_file_path`` (and ``recon_time`` when the times come from one video). ``train_filenames`` / ``val_filenames`` / ``test_filenames`` record the
    splits; ``applied_transform`` (3x4) is written when not identity; sparse points go to
    ``sparse_pc.ply`` beside it, named by ``ply_file_path``.
    """
    _require_cameras(scene, "transforms.json")
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path / "transforms.json"
    root = path.parent
    intr = [_ns_intrinsics(f.camera) for f in scene.frames]  # type: ignore[arg-type]
    shared = all(i == intr[0] for i in intr)
    out: dict[str, Any] = dict(intr[0]) if shared else {}
    frames = []
    for f, fi in zip(scene.frames, intr):
        fd: dict[str, Any] = {"file_path": _relpath(f.image_path, root)}
        if not shared:
            fd.update(fi)
        fd["transform_matrix"] = opencv_to_opengl(f.camera.c2w).tolist()  # type: ignore[union-attr]
        if f.time is not None:
            fd["time"] = float(f.time)
        if f.mask_path is not None:
            fd["mask_path"] = _relpath(f.mask_path, root)
        if f.depth_path is not None:
            fd["depth_file_path"] = _relpath(f.depth_path, root)
        frames.append(fd)
    out["frames"] = frames
    if not np.allclose(scene.applied_transform, np.eye(4), rtol=0, atol=0):
        out["applied_transform"] = np.asarray(scene.applied_transform, dtype=np.float64)[:3, :].tolist()
    if scene.points is not None and len(scene.points):
        ply = root / "sparse_pc.ply"
        write_ply_points(ply, scene.points, scene.point_colors)
        out["ply_file_path"] = ply.name
    if scene.time_source is not None and any(f.time is not None for f in scene.frames):
        out["recon_time"] = {"source": scene.time_source}
    for split in SPLITS:
        names = [fd["file_path"] for fd, f in zip(frames, scene.frames) if f.split == split]
        if names:
            out[f"{split}_filenames"] = names
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")
    return path


def write_ply_points(path: Path, points: np.ndarray, colors: Optional[np.ndarray] = None) -> None:
    """Write points ``[P, 3]`` (float64, exact) and colours ``[P, 3]`` uint8 as a binary PLY, atomically."""
    import io

    from plyfile import PlyData, PlyElement

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cols = np.full((len(pts), 3), 128, np.uint8) if colors is None else np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    v = np.empty(len(pts), dtype=[("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v["x"], v["y"], v["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    v["red"], v["green"], v["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    buf = io.BytesIO()
    PlyData([PlyElement.describe(v, "vertex")], text=False, byte_order="<").write(buf)
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------
# COLMAP text


def _fmt(x: float) -> str:
    """Shortest text that parses back to the same float64."""
    return repr(float(x))


def colmap_camera_params(cam: Camera) -> tuple[str, list[float]]:
    """COLMAP model name and parameter list for a recon camera.

    PINHOLE, OPENCV, OPENCV_FISHEYE and FULL_OPENCV map one to one. SIMPLE_RADIAL and RADIAL
    need ``fx == fy``; otherwise they are written as OPENCV with the same coefficients.
    """
    fx, fy, cx, cy = float(cam.K[0, 0]), float(cam.K[1, 1]), float(cam.K[0, 2]), float(cam.K[1, 2])
    dist = [float(v) for v in cam.dist]
    if cam.model in ("SIMPLE_RADIAL", "RADIAL"):
        if fx == fy:
            return cam.model, [fx, cx, cy, *dist]
        k = dist + [0.0] * (2 - len(dist))
        return "OPENCV", [fx, fy, cx, cy, k[0], k[1], 0.0, 0.0]
    return cam.model, [fx, fy, cx, cy, *dist]


def write_colmap_text(scene: Scene, folder: Path | str) -> Path:
    """Write ``scene`` as a COLMAP text model: ``cameras.txt``, ``images.txt``, ``points3D.txt``.

    Args:
        scene: a scene whose every frame has a camera.
        folder: the model folder (e.g. ``scene/sparse/0``); created if missing.

    Cameras with identical intrinsics share one COLMAP camera. Image names are relative to the
    folder :func:`recon.scene.readers.colmap_images_dir` finds for ``folder`` (``scene/images``
    for ``scene/sparse/0``), so reading the model back finds the same files. Observations
    (POINTS2D and tracks) are left empty. Splits, times, masks and depths have no place in the
    COLMAP format and are not written. Returns ``folder``.
    """
    _require_cameras(scene, "a COLMAP model")
    folder = Path(folder)
    # A binary model in the folder would shadow the text one (COLMAP and pycolmap prefer .bin).
    stale = [folder / f"{n}.bin" for n in ("cameras", "images", "points3D") if (folder / f"{n}.bin").exists()]
    if stale:
        raise ReconError(f"{folder}: already holds a binary COLMAP model ({stale[0].name}); remove it or write to another folder")
    folder.mkdir(parents=True, exist_ok=True)
    images_dir = colmap_images_dir(folder)

    cam_ids: dict[tuple, int] = {}
    cam_lines = []
    img_lines = []
    for i, f in enumerate(scene.frames, start=1):
        cam = f.camera
        assert cam is not None
        model, params = colmap_camera_params(cam)
        key = (model, cam.width, cam.height, tuple(params))
        if key not in cam_ids:
            cam_ids[key] = len(cam_ids) + 1
            cam_lines.append(" ".join([str(cam_ids[key]), model, str(cam.width), str(cam.height), *map(_fmt, params)]))
        name = _relpath(f.image_path, images_dir)
        if any(c.isspace() for c in name):
            raise ReconError(f"{f.image_path}: COLMAP text files cannot hold image names with spaces ({name!r})")
        q, t = c2w_to_colmap(cam.c2w)
        img_lines.append(" ".join([str(i), *map(_fmt, q), *map(_fmt, t), str(cam_ids[key]), name]))
        img_lines.append("")  # no 2D observations

    n_pts = 0 if scene.points is None else len(scene.points)
    pts_lines = []
    if n_pts:
        pts = np.asarray(scene.points, dtype=np.float64).reshape(-1, 3)
        cols = np.full((n_pts, 3), 128, np.uint8) if scene.point_colors is None else np.asarray(scene.point_colors, np.uint8).reshape(-1, 3)
        # Python floats (not numpy scalars) keep this fast: repr() is the shortest exact text.
        for k, ((x, y, z), (r, g, b)) in enumerate(zip(pts.tolist(), cols.tolist()), start=1):
            pts_lines.append(f"{k} {x!r} {y!r} {z!r} {r} {g} {b} 0")

    atomic_write_text(
        folder / "cameras.txt",
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: {len(cam_lines)}\n" + "\n".join(cam_lines) + "\n",
    )
    atomic_write_text(
        folder / "images.txt",
        "# Image list with two lines of data per image:\n"
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"# Number of images: {len(scene.frames)}, mean observations per image: 0\n" + "\n".join(img_lines) + "\n",
    )
    atomic_write_text(
        folder / "points3D.txt",
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {n_pts}, mean track length: 0\n" + "".join(line + "\n" for line in pts_lines),
    )
    return folder
