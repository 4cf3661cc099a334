"""World-axis conventions of the export targets and the transforms into them.

recon trains in the scene's own world frame (whatever the capture's SfM or dataset used: COLMAP
scenes are usually "-y up", Blender/NeRF-synthetic scenes "+z up"). Each export target states its
own convention:

=============  ==============================================================================
target         convention
=============  ==============================================================================
``scene``      the training frame, unchanged (3DGS PLY and .splat viewers expect this)
``y-up``       right-handed, +Y up, -Z forward, metres: glTF, three.js/Spark (SPZ "RUB"), USD Y-up
``z-up``       right-handed, +Z up: Blender, USD Z-up stages, Unreal (before its own LH flip)
``y-up-left``  left-handed, +Y up, +Z forward: Unity
=============  ==============================================================================

The scene's up direction is given as a signed axis (``+x``..``-z``) or found from the training
cameras (:func:`detect_up`): the average of the cameras' "up" vectors (OpenCV: ``-y`` of each
camera) snapped to the nearest signed world axis. The transforms here rotate that axis onto the
target's up axis with the smallest axis permutation, so a scene already in the target convention is
left untouched.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from recon.errors import ReconError

Axes = Literal["auto", "scene", "y-up", "z-up", "y-up-left"]
Up = Literal["auto", "+x", "-x", "+y", "-y", "+z", "-z"]
SIGNED_AXES = ("+x", "-x", "+y", "-y", "+z", "-z")

# Rotation taking each signed world axis onto +Y with the smallest turn (rows map old -> new).
_TO_Y_UP: dict[str, np.ndarray] = {
    "+y": np.eye(3),
    "-y": np.diag([1.0, -1.0, -1.0]),  # 180 deg about X (OpenCV/COLMAP "RDF" -> "RUB")
    "+z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # -90 deg about X (Blender -> glTF)
    "-z": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),  # +90 deg about X
    "+x": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # +90 deg about Z
    "-x": np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]),  # -90 deg about Z
}
_Y_UP_TO_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # +90 deg about X (glTF -> Blender)
_MIRROR_Z = np.diag([1.0, 1.0, -1.0])

# The convention each format uses when ``axes="auto"``.
FORMAT_AXES: dict[str, str] = {
    "ply": "scene",
    "splat": "scene",
    "spz": "y-up",
    "splat-glb": "y-up",
    "splat-usd": "y-up",
    "cameras": "y-up",
    "mesh-glb": "y-up",
    "mesh-obj": "y-up",  # what Blender, Maya and most OBJ readers assume
    "mesh-usd": "y-up",
    "mesh-usdz": "y-up",  # AR Quick Look expects +Y up
}


def axis_vector(axis: str) -> np.ndarray:
    """Unit vector ``[3]`` of a signed axis name such as ``"-y"``."""
    if axis not in SIGNED_AXES:
        raise ReconError(f"unknown axis {axis!r}; expected one of {', '.join(SIGNED_AXES)}")
    v = np.zeros(3)
    v["xyz".index(axis[1])] = 1.0 if axis[0] == "+" else -1.0
    return v


def detect_up(c2ws: Sequence[np.ndarray] | np.ndarray) -> tuple[str, float]:
    """Scene up axis from OpenCV camera-to-world poses ``[C, 4, 4]``.

    Returns ``(signed axis, angle in degrees between the mean camera up and that axis)``; with no
    cameras, ``("+y", 0.0)`` (the scene is taken as already Y-up).
    """
    c2ws = np.asarray(c2ws, np.float64).reshape(-1, 4, 4)
    if len(c2ws) == 0:
        return "+y", 0.0
    up = -c2ws[:, :3, 1].sum(axis=0)  # OpenCV camera y points down in the image
    n = np.linalg.norm(up)
    if n < 1e-9:
        return "+y", 0.0
    up /= n
    i = int(np.argmax(np.abs(up)))
    axis = ("+" if up[i] > 0 else "-") + "xyz"[i]
    angle = float(np.degrees(np.arccos(np.clip(abs(up[i]), -1.0, 1.0))))
    return axis, angle


def axes_rotation(up: str, target: str) -> np.ndarray:
    """``[3, 3]`` orthogonal matrix from the scene frame (whose up is ``up``) to ``target`` axes."""
    if target == "scene":
        return np.eye(3)
    if up not in _TO_Y_UP:
        raise ReconError(f"unknown up axis {up!r}; expected one of {', '.join(SIGNED_AXES)}")
    R = _TO_Y_UP[up]
    if target == "y-up":
        return R.copy()
    if target == "z-up":
        return _Y_UP_TO_Z_UP @ R
    if target == "y-up-left":
        return _MIRROR_Z @ R
    raise ReconError(f"unknown axes {target!r}; expected auto, scene, y-up, z-up or y-up-left")


def format_axes(fmt: str, axes: str) -> str:
    """The axes convention a format is written in: its own default under ``axes="auto"``."""
    if axes == "auto":
        return FORMAT_AXES.get(fmt, "scene")
    return axes


def export_transform(up: str, target: str, scale: float = 1.0) -> np.ndarray:
    """``[4, 4]`` similarity ``x' = scale * R x`` from the scene frame to a target convention.

    ``scale`` converts scene units to the target's units (metres per scene unit).
    """
    if not (scale > 0 and np.isfinite(scale)):
        raise ReconError(f"--scale must be a positive number (metres per scene unit), got {scale}")
    T = np.eye(4)
    T[:3, :3] = scale * axes_rotation(up, target)
    return T


def stage_up_axis(target: str) -> str:
    """USD ``upAxis`` token for a target convention (USD stages are right-handed, Y or Z up)."""
    if target == "y-up":
        return "Y"
    if target == "z-up":
        return "Z"
    raise ReconError(
        f"USD stages are right-handed with Y or Z up; --axes {target} cannot be written to USD "
        "(use --axes auto, y-up or z-up)"
    )


def describe(target: str, up: str) -> str:
    """One-line human description of the frame a file is written in."""
    if target == "scene":
        return f"scene frame as trained (up {up})"
    return {"y-up": "right-handed +Y up", "z-up": "right-handed +Z up", "y-up-left": "left-handed +Y up"}[target]

