"""Camera paths: keyframes, smooth interpolation, and nerfstudio's ``camera_path.json``.

Keyframes are camera poses in recon's world frame (OpenCV camera axes, camera-to-world ``[4, 4]``)
with a vertical field of view. :func:`interpolate` runs a cardinal (Catmull-Rom at tension 0)
spline through positions, through hemisphere-aligned quaternions (renormalised), and through the
field of view, so the path passes exactly through every keyframe with continuous velocity.

:func:`to_nerfstudio` writes the format ``ns-render camera-path`` reads: ``camera_path`` entries
with ``camera_to_world`` (16 numbers, row-major, **OpenGL camera axes**, in the run's world frame,
i.e. the frame of ``RUN/cameras.json``), ``fov`` (vertical, degrees) and ``aspect``, plus
``render_width``/``render_height``, ``fps``, ``seconds``, ``smoothness_value``, ``is_cycle``,
``camera_type`` and the ``keyframes``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import ReconError
from recon.scene.conventions import GL_CV_FLIP, qvec_to_rotmat, rotmat_to_qvec


@dataclass
class Keyframe:
    c2w: np.ndarray  # [4, 4] OpenCV axes, recon world
    fov_y: float  # radians
    aspect: float = 16 / 9


def _spline(values: np.ndarray, u: np.ndarray, tension: float, loop: bool) -> np.ndarray:
    """Evaluate a cardinal spline through ``values [K, D]`` at global parameters ``u [M]`` in [0, 1]."""
    k = values.shape[0]
    segs = k if loop else k - 1
    x = np.clip(u, 0.0, 1.0) * segs
    i = np.minimum(np.floor(x).astype(int), segs - 1)
    t = x - i
    if loop:
        idx = lambda j: values[np.mod(j, k)]  # noqa: E731
    else:
        idx = lambda j: values[np.clip(j, 0, k - 1)]  # noqa: E731
    p0, p1, p2, p3 = idx(i - 1), idx(i), idx(i + 1), idx(i + 2)
    if not loop:
        # Reflect the end points so the curve leaves/arrives along the end segments.
        first, last = i == 0, i + 1 == k - 1
        p0 = np.where(first[:, None], 2 * p1 - p2, p0)
        p3 = np.where(last[:, None], 2 * p2 - p1, p3)
    s = 0.5 * (1.0 - tension)
    t = t[:, None]
    t2, t3 = t * t, t * t * t
    m1, m2 = s * (p2 - p0), s * (p3 - p1)
    return (2 * t3 - 3 * t2 + 1) * p1 + (t3 - 2 * t2 + t) * m1 + (-2 * t3 + 3 * t2) * p2 + (t3 - t2) * m2


def interpolate(keyframes: list[Keyframe], n_frames: int, tension: float = 0.0,
                loop: bool = False) -> list[tuple[np.ndarray, float]]:
    """``n_frames`` poses ``(c2w [4,4] OpenCV, fov_y radians)`` along the path through ``keyframes``.

    Frames are spaced uniformly in spline parameter (each keyframe segment gets equal time); the
    first frame is the first keyframe and, without ``loop``, the last frame is the last keyframe.
    """
    if len(keyframes) == 0:
        raise ReconError("the camera path has no keyframes; add at least two")
    if len(keyframes) == 1 or n_frames <= 1:
        return [(keyframes[0].c2w.copy(), keyframes[0].fov_y)] * max(1, n_frames)
    pos = np.stack([k.c2w[:3, 3] for k in keyframes])
    quats = np.stack([rotmat_to_qvec(k.c2w[:3, :3]) for k in keyframes])
    for j in range(1, len(quats)):  # same hemisphere as the previous one: shortest rotations
        if quats[j] @ quats[j - 1] < 0:
            quats[j] = -quats[j]
    fov = np.array([[k.fov_y] for k in keyframes])
    u = np.arange(n_frames) / (n_frames if loop else n_frames - 1)
    P = _spline(pos, u, tension, loop)
    Q = _spline(quats, u, tension, loop)
    F = _spline(fov, u, tension, loop)[:, 0]
    out = []
    for p, q, f in zip(P, Q, F):
        c2w = np.eye(4)
        c2w[:3, :3] = qvec_to_rotmat(q / np.linalg.norm(q))
        c2w[:3, 3] = p
        out.append((c2w, float(f)))
    return out


def to_nerfstudio(keyframes: list[Keyframe], width: int, height: int, fps: float = 30.0, seconds: float = 4.0,
                  tension: float = 0.0, loop: bool = False) -> dict:
    """nerfstudio ``camera_path.json`` content (see module docstring for axes and frame)."""
    n = max(1, int(round(fps * seconds)))
    aspect = width / height
    path = [
        {"camera_to_world": (c2w @ GL_CV_FLIP).ravel().tolist(), "fov": math.degrees(f), "aspect": aspect}
        for c2w, f in interpolate(keyframes, n, tension, loop)
    ]
    return {
        "camera_type": "perspective",
        "render_height": int(height),
        "render_width": int(width),
        "camera_path": path,
        "fps": float(fps),
        "seconds": float(seconds),
        "smoothness_value": float(1.0 - tension),
        "is_cycle": bool(loop),
        "crop": None,
        "keyframes": [
            {"matrix": (k.c2w @ GL_CV_FLIP).ravel().tolist(), "fov": math.degrees(k.fov_y), "aspect": k.aspect,
             "override_transition_enabled": False, "override_transition_sec": None}
            for k in keyframes
        ],
        "recon": {"frame": "run world (as RUN/cameras.json)", "camera_axes": "opengl", "matrix_order": "row-major"},
    }


def write_camera_path(path: Path, content: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=1))
    tmp.replace(path)
    return path


def read_keyframes(path: Path) -> list[Keyframe]:
    """Keyframes of a ``camera_path.json`` written by :func:`to_nerfstudio` (or nerfstudio's viewer).

    Each keyframe needs a finite 4x4 ``matrix`` whose rotation block is a rotation, a ``fov`` in
    (0, 180) degrees and a positive finite ``aspect``; anything else raises :class:`ReconError`
    naming the file, the keyframe and the field.
    """
    from recon.scene.cameras import check_pose

    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        kfs = d["keyframes"]
        if not isinstance(kfs, list):
            raise TypeError("'keyframes' is not a list")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise ReconError(f"cannot read camera path keyframes from {path}: {' '.join(str(e).split())[:200]}") from None
    out = []
    for i, k in enumerate(kfs):
        where = f"{path} keyframe {i}"
        try:
            m = np.asarray(k["matrix"], np.float64)
            fov = float(k["fov"])
            aspect = float(k.get("aspect", 16 / 9))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ReconError(f"{where}: needs 'matrix' (16 numbers) and 'fov' (degrees): {' '.join(str(e).split())[:120]}") from None
        if m.size != 16:
            raise ReconError(f"{where}: 'matrix' must have 16 numbers, got {m.size}")
        c2w = m.reshape(4, 4) @ GL_CV_FLIP
        check_pose(c2w, where, "'matrix'")
        if not (0.0 < fov < 180.0):
            raise ReconError(f"{where}: fov = {fov} must be a vertical field of view in (0, 180) degrees")
        if not (math.isfinite(aspect) and aspect > 0):
            raise ReconError(f"{where}: aspect = {aspect} must be a positive number (width / height)")
        out.append(Keyframe(c2w, math.radians(fov), aspect))
    return out
