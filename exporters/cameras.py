"""Training cameras and camera paths: readers, ``cameras.json`` and USD cameras (``cameras.usda``).

``cameras.json`` (written by :func:`write_cameras_json`)::

    {
      "format": "recon-cameras", "version": 1,
      "frame": "scene",              # poses are in the trained scene's world frame (as splats.ply)
      "units": "scene",
      "export_transforms": {"spz": 4x4, "splat-glb": 4x4, ...},   # scene frame -> each file's frame
      "provenance": {...},
      "cameras": [{"name", "width", "height", "K": 3x3 (pixel centres at +0.5),
                   "c2w_opencv": 4x4 (x right, y down, z forward),
                   "c2w_opengl": 4x4 (x right, y up, z backward), "model", "dist"}],
      "camera_path": {"fps", "frames": [same per-camera fields]}     # only with --camera-path
    }

``cameras.usda``: ``UsdGeom.Camera`` prims under ``/World/TrainingCameras`` (static) and, for a
camera path, ``/World/CameraPath`` with time-sampled transform and lens (``timeCodesPerSecond`` =
the path's fps). USD cameras look down -Z with +Y up (OpenGL axes). Lens values describe a 36 mm
wide filmback (a full-frame sensor): in millimetres ``focalLength = fx * 36 / width``,
``verticalAperture = height * focalLength / fy``, and the principal point becomes
``horizontalApertureOffset = (width/2 - cx) * 36 / width``,
``verticalApertureOffset = (cy - height/2) * verticalAperture / height``. USD stores these in
tenths of a stage unit (UsdGeomCamera's units; what Blender's USD reader and writer use), so with
``metersPerUnit = 1`` the file holds millimetres / 100 (a 50 mm lens is ``focalLength = 0.5``).
A camera path writes a lens attribute as time samples only where it changes along the path, and
as a plain value where it is constant. Poses are written in the same frame and units as
``splats.usdc`` so the two stages line up.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from exporters.atomic import atomic_path, write_text_atomic
from recon.errors import ReconError
from recon.scene.cameras import MAX_IMAGE_SIDE, Camera, check_camera
from recon.scene.conventions import opencv_to_opengl, opengl_to_opencv

FILMBACK_WIDTH = 36.0


@dataclass
class NamedCamera:
    """A camera with a name (the frame/image it belongs to)."""

    name: str
    camera: Camera


@dataclass
class CameraPath:
    """A camera trajectory: one camera per frame at ``fps`` frames per second."""

    fps: float
    frames: list[Camera] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def _mat4(v: Any, where: str) -> np.ndarray:
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise ReconError(f"{where}: pose must be a 4x4 (or 3x4) matrix of numbers") from None
    if not np.all(np.isfinite(a)):
        raise ReconError(f"{where}: pose has non-finite values (NaN or inf); fix the pose")
    if a.size == 16:
        return a.reshape(4, 4)
    if a.size == 12:
        return np.vstack([a.reshape(3, 4), [0, 0, 0, 1]])
    raise ReconError(f"{where}: pose must be a 4x4 (or 3x4) matrix, got {a.size} numbers")


def camera_from_entry(e: Mapping[str, Any], where: str, width: int | None = None, height: int | None = None) -> Camera:
    """A :class:`Camera` from one JSON camera entry in any of the layouts recon reads.

    Pose keys (first found): ``c2w_opencv``, ``c2w``, ``camtoworld`` (OpenCV axes);
    ``c2w_opengl``, ``transform_matrix``, ``camera_to_world`` (OpenGL/Blender/nerfstudio axes).
    Size: ``width``/``w``, ``height``/``h`` (else the defaults given). Intrinsics: ``K``, or
    ``fx``/``fl_x``, ``fy``/``fl_y``, ``cx``, ``cy``, or a field of view: ``fov`` (vertical,
    degrees, as nerfstudio camera paths), ``fov_y_deg``, ``fov_x_deg``, ``camera_angle_x`` (radians).

    Every value is validated (finite pose with a rotation block, positive finite focal lengths,
    a field of view inside (0, 180) degrees, a positive size): anything else raises
    :class:`ReconError` naming ``where`` and the field.
    """
    try:
        cam = _camera_from_entry(e, where, width, height)
    except ReconError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError) as err:
        raise ReconError(f"{where}: invalid camera entry ({' '.join(str(err).split())[:160]})") from None
    check_camera(cam, where, "fx/fy (or fov)")
    return cam


def _fov(v: Any, key: str, where: str, degrees: bool) -> float:
    a = float(v)
    lim = 180.0 if degrees else math.pi
    if not (0.0 < a < lim):
        unit = "degrees, in (0, 180)" if degrees else "radians, in (0, pi)"
        raise ReconError(f"{where}: {key} = {a:.6g} must be a field of view in {unit}; fix {key}")
    return math.radians(a) if degrees else a


def _camera_from_entry(e: Mapping[str, Any], where: str, width: int | None, height: int | None) -> Camera:
    c2w = None
    for k in ("c2w_opencv", "c2w", "camtoworld"):
        if k in e:
            c2w = _mat4(e[k], where)
            break
    if c2w is None:
        for k in ("c2w_opengl", "transform_matrix", "camera_to_world"):
            if k in e:
                c2w = opengl_to_opencv(_mat4(e[k], where))
                break
    if c2w is None:
        raise ReconError(f"{where}: camera has no pose (c2w_opencv, c2w, c2w_opengl, transform_matrix, camera_to_world)")
    w = int(e.get("width", e.get("w", width or 0)) or 0)
    h = int(e.get("height", e.get("h", height or 0)) or 0)
    if w <= 0 or h <= 0:
        raise ReconError(f"{where}: camera has no image size (width, height)")
    if "K" in e:
        K = np.asarray(e["K"], np.float64).reshape(3, 3)
    else:
        fx = e.get("fx", e.get("fl_x"))
        fy = e.get("fy", e.get("fl_y", fx))
        if fx is None:
            if "fov" in e or "fov_y_deg" in e:
                key = "fov" if "fov" in e else "fov_y_deg"
                fy = 0.5 * h / math.tan(_fov(e[key], key, where, True) / 2)
                fx = fy
            elif "fov_x_deg" in e or "camera_angle_x" in e:
                if "fov_x_deg" in e:
                    ang = _fov(e["fov_x_deg"], "fov_x_deg", where, True)
                else:
                    ang = _fov(e["camera_angle_x"], "camera_angle_x", where, False)
                fx = fy = 0.5 * w / math.tan(ang / 2)
            else:
                raise ReconError(f"{where}: camera has no intrinsics (K, fx/fy/cx/cy or fov)")
        K = np.array([[float(fx), 0, float(e.get("cx", w / 2))], [0, float(fy), float(e.get("cy", h / 2))], [0, 0, 1]])
    model = str(e.get("model", "PINHOLE"))
    dist = np.asarray(e.get("dist", []), np.float64)
    try:
        return Camera(K=K, width=w, height=h, c2w=c2w, model=model, dist=dist)
    except ValueError as err:
        raise ReconError(f"{where}: {err}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReconError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ReconError(f"{path}: invalid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise ReconError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise ReconError(f"{path}: invalid JSON (nested too deeply)") from None
    except OSError as e:
        raise ReconError(f"{path}: cannot read ({' '.join(str(e).split())})") from None


def read_cameras_json(path: str | os.PathLike) -> list[NamedCamera]:
    """Cameras of a run's ``cameras.json`` (or a nerfstudio/Blender ``transforms.json``).

    Accepts a list of camera entries, or an object with ``cameras`` or ``frames`` (entries as
    :func:`camera_from_entry` reads; top-level ``w``/``h``/``fl_x``/... apply to every frame as in
    nerfstudio). Names come from ``name``, else ``file_path``'s stem, else the index.
    """
    path = Path(path)
    data = _load_json(path)
    shared: dict[str, Any] = {}
    if isinstance(data, Mapping):
        entries = data.get("cameras", data.get("frames"))
        shared = {k: v for k, v in data.items() if k not in ("cameras", "frames", "camera_path") and not isinstance(v, (list, dict))}
        if "camera_angle_x" in data:
            shared["camera_angle_x"] = data["camera_angle_x"]
    else:
        entries = data
    if not isinstance(entries, list):
        raise ReconError(f"{path}: expected a list of cameras (or an object with 'cameras' or 'frames')")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise ReconError(f"{path}: camera {i} is not an object")
        merged = {**shared, **e}
        name = str(e.get("name") or (Path(str(e["file_path"])).stem if "file_path" in e else f"camera_{i:05d}"))
        out.append(NamedCamera(name, camera_from_entry(merged, f"{path} camera {i}")))
    return out


def read_camera_path(path: str | os.PathLike, width: int = 1920, height: int = 1080) -> CameraPath:
    """A camera path JSON: nerfstudio's (``camera_path`` list with OpenGL ``camera_to_world``,
    ``fov`` and ``render_width``/``render_height``/``fps``) or recon's (``fps`` plus ``frames``
    entries as :func:`camera_from_entry` reads). Poses are in the run's scene frame."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, Mapping):
        raise ReconError(f"{path}: a camera path must be a JSON object")
    entries = data.get("camera_path", data.get("frames"))
    if not isinstance(entries, list) or not entries:
        raise ReconError(f"{path}: camera path has no 'camera_path' or 'frames' list")
    try:
        w = int(data.get("render_width", data.get("width", width)))
        h = int(data.get("render_height", data.get("height", height)))
        fps = float(data.get("fps", 30.0))
    except (TypeError, ValueError, OverflowError):
        raise ReconError(f"{path}: render_width, render_height and fps must be numbers") from None
    if not (math.isfinite(fps) and fps > 0):
        raise ReconError(f"{path}: fps must be a positive number, got {fps}")
    if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
        raise ReconError(f"{path}: render size {w}x{h} is invalid; width and height must be in 1..{MAX_IMAGE_SIDE}")
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise ReconError(f"{path} frame {i}: expected an object")
    frames = [camera_from_entry(e, f"{path} frame {i}", w, h) for i, e in enumerate(entries)]
    return CameraPath(fps=fps, frames=frames)


# ---------------------------------------------------------------------------------------------
# cameras.json
# ---------------------------------------------------------------------------------------------


def _entry(name: str | None, cam: Camera) -> dict[str, Any]:
    d: dict[str, Any] = {} if name is None else {"name": name}
    d.update(
        {
            "width": cam.width,
            "height": cam.height,
            "K": cam.K.tolist(),
            "c2w_opencv": cam.c2w.tolist(),
            "c2w_opengl": opencv_to_opengl(cam.c2w).tolist(),
            "model": cam.model,
            "dist": cam.dist.tolist(),
        }
    )
    return d


def cameras_document(
    cameras: Sequence[NamedCamera],
    export_transforms: Mapping[str, np.ndarray] | None = None,
    provenance: Mapping[str, str] | None = None,
    camera_path: CameraPath | None = None,
) -> dict[str, Any]:
    """The ``cameras.json`` object (see module doc)."""
    doc: dict[str, Any] = {
        "format": "recon-cameras",
        "version": 1,
        "frame": "scene",
        "units": "scene",
        "export_transforms": {k: np.asarray(v, np.float64).tolist() for k, v in (export_transforms or {}).items()},
        "provenance": dict(provenance or {}),
        "cameras": [_entry(c.name, c.camera) for c in cameras],
    }
    if camera_path is not None:
        doc["camera_path"] = {"fps": camera_path.fps, "frames": [_entry(None, c) for c in camera_path.frames]}
    return doc


def write_cameras_json(path: str | os.PathLike, cameras: Sequence[NamedCamera], **kw: Any) -> Path:
    """Write :func:`cameras_document` to ``path`` atomically."""
    path = Path(path)
    write_text_atomic(path, json.dumps(cameras_document(cameras, **kw), indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# USD cameras
# ---------------------------------------------------------------------------------------------


def usd_lens(cam: Camera, meters_per_unit: float = 1.0) -> dict[str, float]:
    """USD camera lens attributes for a pinhole :class:`Camera`: a 36 mm filmback, values in tenths
    of a stage unit (``mm / (100 * meters_per_unit)``; see module doc)."""
    tenth = 1.0 / (100.0 * meters_per_unit)  # stage tenths per millimetre
    focal = cam.fx * FILMBACK_WIDTH / cam.width
    vap = cam.height * focal / cam.fy
    return {
        "focalLength": focal * tenth,
        "horizontalAperture": FILMBACK_WIDTH * tenth,
        "verticalAperture": vap * tenth,
        "horizontalApertureOffset": (cam.width / 2 - cam.cx) * FILMBACK_WIDTH / cam.width * tenth,
        "verticalApertureOffset": (cam.cy - cam.height / 2) * vap / cam.height * tenth,
    }


def export_pose(c2w_opencv: np.ndarray, T: np.ndarray) -> np.ndarray:
    """OpenGL-axes camera-to-world ``[4, 4]`` in the export frame ``x' = s R x + t`` (``T``).

    The rotation part stays orthonormal (the uniform scale moves the camera centre only). Raises
    for a reflecting ``T``: a camera cannot be mirrored by a rigid transform.
    """
    A = np.asarray(T, np.float64)[:3, :3]
    s = float(np.cbrt(np.linalg.det(A)))
    if s <= 0:
        raise ReconError("cameras cannot be exported into a left-handed frame (use --axes auto, y-up or z-up)")
    R = A / s
    gl = opencv_to_opengl(c2w_opencv)
    out = np.eye(4)
    out[:3, :3] = R @ gl[:3, :3]
    out[:3, 3] = A @ gl[:3, 3] + np.asarray(T)[:3, 3]
    return out


def _valid_names(names: Sequence[str]) -> list[str]:
    from pxr import Tf

    seen: set[str] = set()
    out = []
    for n in names:
        base = Tf.MakeValidIdentifier(n if n[:1].isalpha() or n[:1] == "_" else "_" + n) or "camera"
        cand, i = base, 1
        while cand in seen:
            cand, i = f"{base}_{i}", i + 1
        seen.add(cand)
        out.append(cand)
    return out


def _set_lens(cam_prim, lens: Mapping[str, float], time=None) -> None:
    from pxr import Usd

    t = Usd.TimeCode.Default() if time is None else Usd.TimeCode(time)
    cam_prim.GetFocalLengthAttr().Set(float(lens["focalLength"]), t)
    cam_prim.GetHorizontalApertureAttr().Set(float(lens["horizontalAperture"]), t)
    cam_prim.GetVerticalApertureAttr().Set(float(lens["verticalAperture"]), t)
    cam_prim.GetHorizontalApertureOffsetAttr().Set(float(lens["horizontalApertureOffset"]), t)
    cam_prim.GetVerticalApertureOffsetAttr().Set(float(lens["verticalApertureOffset"]), t)


def build_cameras_stage(
    cameras: Sequence[NamedCamera],
    T: np.ndarray,
    up_axis: str = "Y",
    provenance: Mapping[str, str] | None = None,
    camera_path: CameraPath | None = None,
    clipping_range: tuple[float, float] = (0.01, 10000.0),
):
    """In-memory stage with the training cameras (and camera path) in the export frame ``T``."""
    from pxr import Gf, Usd, UsdGeom

    from exporters.usd_splat import new_stage

    stage = new_stage(up_axis, 1.0, provenance)
    UsdGeom.Scope.Define(stage, "/World/TrainingCameras")
    for name, nc in zip(_valid_names([c.name for c in cameras]), cameras):
        cam = UsdGeom.Camera.Define(stage, f"/World/TrainingCameras/{name}")
        cam.CreateProjectionAttr().Set(UsdGeom.Tokens.perspective)
        cam.CreateClippingRangeAttr().Set(Gf.Vec2f(*clipping_range))
        cam.AddTransformOp().Set(Gf.Matrix4d(export_pose(nc.camera.c2w, T).T.tolist()))
        _set_lens(cam, usd_lens(nc.camera))
    if camera_path is not None and camera_path.frames:
        cam = UsdGeom.Camera.Define(stage, "/World/CameraPath")
        cam.CreateProjectionAttr().Set(UsdGeom.Tokens.perspective)
        cam.CreateClippingRangeAttr().Set(Gf.Vec2f(*clipping_range))
        op = cam.AddTransformOp()
        for i, c in enumerate(camera_path.frames):
            op.Set(Gf.Matrix4d(export_pose(c.c2w, T).T.tolist()), Usd.TimeCode(i))
        lenses = [usd_lens(c) for c in camera_path.frames]
        for key in lenses[0]:
            attr = getattr(cam, f"Create{key[0].upper()}{key[1:]}Attr")()
            values = np.array([ln[key] for ln in lenses])
            attr.Set(float(values[0]))  # the value readers that ignore time samples use
            if np.ptp(values) > 1e-9 * max(1.0, float(np.abs(values).max())):  # changes along the path
                for i, v in enumerate(values):
                    attr.Set(float(v), Usd.TimeCode(i))
        stage.SetStartTimeCode(0)
        stage.SetEndTimeCode(len(camera_path.frames) - 1)
        stage.SetTimeCodesPerSecond(camera_path.fps)
        stage.SetFramesPerSecond(camera_path.fps)
    return stage


def write_cameras_usd(path: str | os.PathLike, cameras: Sequence[NamedCamera], T: np.ndarray, **kw: Any) -> Path:
    """Write :func:`build_cameras_stage` to ``path`` (``.usda`` text) atomically."""
    stage = build_cameras_stage(cameras, T, **kw)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not stage.GetRootLayer().Export(str(tmp)):
            raise ReconError(f"USD could not write {path}")
    return path
