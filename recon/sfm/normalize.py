"""World-frame normalisation (centre, gravity-up, scale) and Sim(3) alignment (Umeyama).

A similarity transform maps a world point ``X`` to ``M @ [X, 1]`` with ``M = [s R | t]`` (a
``[4, 4]`` matrix whose top-left block is ``s`` times a rotation). Applied to an OpenCV
camera-to-world pose it rotates the camera and maps its centre, but keeps the rotation
orthonormal: ``R_new = R @ R_cam``, ``C_new = s R C + t`` (see :func:`transform_c2w`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Normalization:
    """The transform from the SfM frame to recon's output frame, and how it was chosen.

    Attributes:
        matrix: ``[4, 4]`` similarity ``[s R | t]``: ``X_out = matrix @ [X_sfm, 1]``.
        scale, rotation ``[3, 3]``, translation ``[3]``: its parts.
        up: the mean camera up vector in the SfM frame (mapped to +z when orienting).
        center: the SfM-frame point mapped to the origin.
        units: "metres" when a metric scale was given, else "normalized" or "sfm".
    """

    matrix: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    up: np.ndarray
    center: np.ndarray
    units: str

    def to_json(self) -> dict:
        return {
            "matrix": self.matrix.tolist(),
            "scale": float(self.scale),
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
            "up_in_sfm_frame": self.up.tolist(),
            "center_in_sfm_frame": self.center.tolist(),
            "units": self.units,
            "maps": "X_out = matrix @ [X_sfm, 1]",
        }


def sim3_matrix(scale: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[4, 4]`` similarity ``[s R | t]``."""
    M = np.eye(4)
    M[:3, :3] = float(scale) * np.asarray(R, dtype=np.float64)
    M[:3, 3] = np.asarray(t, dtype=np.float64)
    return M


def transform_c2w(M: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Apply the similarity ``M`` ``[4, 4]`` to OpenCV camera-to-world poses ``[..., 4, 4]``."""
    M = np.asarray(M, dtype=np.float64)
    c2w = np.asarray(c2w, dtype=np.float64)
    s = np.cbrt(np.linalg.det(M[:3, :3]))
    R = M[:3, :3] / s
    out = np.array(c2w, copy=True)
    out[..., :3, :3] = R @ c2w[..., :3, :3]
    out[..., :3, 3] = (M[:3, :3] @ c2w[..., :3, 3:])[..., 0] + M[:3, 3]
    return out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation ``[3, 3]`` taking unit direction ``a`` to unit direction ``b``."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1.0 + 1e-12:  # opposite: rotate 180 degrees about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def focus_point(c2w: np.ndarray) -> np.ndarray:
    """The point nearest (least squares) to every camera's optical axis ``[3]``."""
    C = c2w[:, :3, 3]
    d = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    A = P.sum(0)
    b = (P @ C[:, :, None]).sum(0)[:, 0]
    if np.linalg.cond(A) > 1e8:  # parallel axes (e.g. a straight forward-facing sweep)
        return C.mean(0)
    return np.linalg.solve(A, b)


def normalization(
    c2w: np.ndarray,
    center: str = "poses",
    orient: str = "up",
    normalize_scale: bool = True,
    metric_scale: Optional[float] = None,
) -> Normalization:
    """Choose the output frame for cameras ``c2w`` ``[N, 4, 4]`` (OpenCV, SfM frame).

    * up: the mean of the cameras' up vectors (``-y`` axis in OpenCV), rotated onto +z
      (``orient="up"``). Works for captures held roughly level, the usual case.
    * centre: mean camera centre (``"poses"``), the point nearest every optical axis
      (``"focus"``) or none.
    * scale: ``metric_scale`` when given (units: metres); else 1 / the largest camera distance
      from the centre, so the cameras fit in a unit sphere (``normalize_scale``); else 1.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    up = -c2w[:, :3, 1].mean(0)
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-9 else np.array([0.0, 0.0, 1.0])
    R = rotation_between(up, [0.0, 0.0, 1.0]) if orient == "up" else np.eye(3)
    if center == "poses":
        c = c2w[:, :3, 3].mean(0)
    elif center == "focus":
        c = focus_point(c2w)
    else:
        c = np.zeros(3)
    if metric_scale is not None:
        s, units = float(metric_scale), "metres"
    elif normalize_scale:
        r = float(np.linalg.norm(c2w[:, :3, 3] - c, axis=1).max()) if len(c2w) else 0.0
        s, units = (1.0 / r if r > 1e-12 else 1.0), "normalized"
    else:
        s, units = 1.0, "sfm"
    t = -s * (R @ c)
    return Normalization(sim3_matrix(s, R, t), s, R, t, up, c, units)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity with ``dst ≈ s R src + t`` (Umeyama 1991).

    Args:
        src, dst: ``[N, 3]`` corresponding points, N >= 3 not all collinear.
    Returns ``(s, R [3, 3], t [3])``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle in degrees of rotation matrices ``[..., 3, 3]``."""
    tr = np.trace(np.asarray(R), axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def pose_errors(est_c2w: np.ndarray, gt_c2w: np.ndarray) -> dict:
    """Align estimated poses to ground truth with Sim(3) on the camera centres, then compare.

    Args:
        est_c2w, gt_c2w: ``[N, 4, 4]`` OpenCV camera-to-world poses of the same N views.
    Returns a dict with ``rot_err_deg [N]``, ``center_err [N]`` (ground-truth units),
    ``extent`` (ground-truth camera extent: largest distance from their mean), the aligned
    estimate ``aligned [N, 4, 4]`` and the similarity ``sim3 [4, 4]``.
    """
    est_c2w = np.asarray(est_c2w, dtype=np.float64)
    gt_c2w = np.asarray(gt_c2w, dtype=np.float64)
    s, R, t = umeyama(est_c2w[:, :3, 3], gt_c2w[:, :3, 3])
    M = sim3_matrix(s, R, t)
    aligned = transform_c2w(M, est_c2w)
    rel = np.swapaxes(gt_c2w[:, :3, :3], -1, -2) @ aligned[:, :3, :3]
    rot = rotation_angle_deg(rel)
    cerr = np.linalg.norm(aligned[:, :3, 3] - gt_c2w[:, :3, 3], axis=1)
    gc = gt_c2w[:, :3, 3]
    extent = float(np.linalg.norm(gc - gc.mean(0), axis=1).max())
    return {"rot_err_deg": rot, "center_err": cerr, "extent": extent, "aligned": aligned, "sim3": M}
