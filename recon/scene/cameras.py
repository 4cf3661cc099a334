"""Camera models: intrinsics, distortion and OpenCV-axes camera-to-world poses.

Pixel centres sit at (i + 0.5, j + 0.5), as in COLMAP and gsplat: the top-left pixel's centre is
(0.5, 0.5) and a principal point at (W/2, H/2) is the image centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Distortion parameter names per model, in COLMAP/OpenCV order.
CAMERA_MODELS: dict[str, tuple[str, ...]] = {
    "PINHOLE": (),
    "SIMPLE_RADIAL": ("k1",),
    "RADIAL": ("k1", "k2"),
    "OPENCV": ("k1", "k2", "p1", "p2"),
    "FULL_OPENCV": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
    "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"),
}


@dataclass
class Camera:
    """One view's camera.

    Attributes:
        K: ``[3, 3]`` float64 intrinsics (fx, fy, cx, cy; pixel centres at +0.5).
        width, height: image size in pixels at full resolution.
        c2w: ``[4, 4]`` float64 camera-to-world pose, OpenCV axes (x right, y down, z forward).
        model: one of :data:`CAMERA_MODELS`.
        dist: distortion parameters in the order :data:`CAMERA_MODELS` gives for ``model``.
    """

    K: np.ndarray
    width: int
    height: int
    c2w: np.ndarray = field(default_factory=lambda: np.eye(4))
    model: str = "PINHOLE"
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.c2w = np.asarray(self.c2w, dtype=np.float64).reshape(4, 4)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        self.width = int(self.width)
        self.height = int(self.height)
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown camera model {self.model!r}; expected one of {sorted(CAMERA_MODELS)}")

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def viewmat(self) -> np.ndarray:
        """World-to-camera ``[4, 4]`` (gsplat's ``viewmats`` entry)."""
        from recon.scene.conventions import c2w_to_viewmat

        return c2w_to_viewmat(self.c2w)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates ``[3]``."""
        return self.c2w[:3, 3].copy()

    def scaled(self, factor: float) -> "Camera":
        """The same camera for an image resized by ``factor`` (e.g. 0.5 for half resolution).

        With pixel centres at +0.5, scaling the image scales fx, fy, cx, cy by the same factor.
        The new size is rounded, and the factor applied per axis is the exact size ratio.
        """
        w = max(1, int(round(self.width * factor)))
        h = max(1, int(round(self.height * factor)))
        return self.resized(w, h)

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera for the image resized to exactly ``width`` x ``height`` pixels.

        fx and cx scale by ``width / self.width``, fy and cy by ``height / self.height`` (pixel
        centres at +0.5 make this exact). Distortion coefficients are unitless and unchanged.
        """
        sx, sy = int(width) / self.width, int(height) / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 2] *= sx
        K[1, 1] *= sy
        K[1, 2] *= sy
        return Camera(K=K, width=int(width), height=int(height), c2w=self.c2w.copy(), model=self.model, dist=self.dist.copy())

    def copy(self) -> "Camera":
        """A deep copy."""
        return Camera(K=self.K.copy(), width=self.width, height=self.height, c2w=self.c2w.copy(), model=self.model, dist=self.dist.copy())

    def project(self, pts_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points ``[N, 3]`` with the pinhole part (distortion ignored).

        Returns ``(uv [N, 2] in pixels, z [N] camera depth)``; the top-left pixel's centre is (0.5, 0.5).
        """
        w2c = self.viewmat
        p = pts_world @ w2c[:3, :3].T + w2c[:3, 3]
        z = p[:, 2]
        uv = (p[:, :2] / z[:, None]) @ self.K[:2, :2].T + self.K[:2, 2]
        return uv, z


def intrinsics_from_fov(fov_x: float, width: int, height: int, fov_y: float | None = None) -> np.ndarray:
    """``[3, 3]`` K for a centred pinhole camera with horizontal field of view ``fov_x`` (radians)."""
    fx = 0.5 * width / np.tan(0.5 * fov_x)
    fy = fx if fov_y is None else 0.5 * height / np.tan(0.5 * fov_y)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------
# Validation: run by every reader as it builds a camera, so bad values stop the load with one line
# naming the file, the field and the fix, instead of a traceback from deep inside training.

MAX_IMAGE_SIDE = 1 << 17  # 131072 px: larger sizes in a camera header are corrupt values


def _fmt_value(v: float) -> str:
    return f"{v:.6g}" if np.isfinite(v) else str(v)


def check_intrinsics(cam: Camera, where: str, focal_field: str = "the focal length") -> None:
    """Raise :class:`ReconError` unless ``cam`` has a usable size, focal length and principal point.

    Args:
        cam: the camera to check.
        where: the file (and frame or camera) it came from, for the message.
        focal_field: the name of the focal-length field in that file, for the message.
    """
    from recon.errors import ReconError

    if not (0 < cam.width <= MAX_IMAGE_SIDE and 0 < cam.height <= MAX_IMAGE_SIDE):
        raise ReconError(
            f"{where}: image size {cam.width}x{cam.height} is invalid; width and height must be in 1..{MAX_IMAGE_SIDE} pixels"
        )
    for axis, v in (("fx", cam.fx), ("fy", cam.fy)):
        if not (np.isfinite(v) and v > 0):
            raise ReconError(
                f"{where}: focal length {axis} = {_fmt_value(v)} must be a positive finite number of pixels; fix {focal_field}"
            )
    for axis, v in (("cx", cam.cx), ("cy", cam.cy)):
        if not np.isfinite(v):
            raise ReconError(f"{where}: principal point {axis} = {v} is not finite; fix it (the image centre is width/2, height/2)")
    if not np.all(np.isfinite(cam.dist)):
        raise ReconError(f"{where}: distortion coefficients {cam.dist.tolist()} are not all finite; fix them (0 = no distortion)")


def check_rotation(R: np.ndarray, where: str, field: str = "the rotation") -> None:
    """Raise :class:`ReconError` unless ``R [3, 3]`` is a finite orthonormal rotation (tolerance 0.05)."""
    from recon.errors import ReconError

    R = np.asarray(R, dtype=np.float64)
    if not np.all(np.isfinite(R)):
        raise ReconError(f"{where}: {field} has non-finite values (NaN or inf); fix the pose")
    det = float(np.linalg.det(R))
    if abs(det) < 1e-6:
        raise ReconError(f"{where}: {field} is zero or singular (determinant {det:.3g}); fix the pose")
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > 0.05:
        raise ReconError(
            f"{where}: {field} is not a rotation (its columns are scaled or skewed: |R^T R - I| = {err:.3g}); "
            "fix the pose (scale belongs in the translation, not the rotation)"
        )


def check_pose(c2w: np.ndarray, where: str, field: str = "the pose") -> None:
    """Raise :class:`ReconError` unless ``c2w [4, 4]`` is finite with a rotation block (see :func:`check_rotation`)."""
    from recon.errors import ReconError

    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
        raise ReconError(f"{where}: {field} has non-finite values (NaN or inf); fix the pose")
    check_rotation(c2w[:3, :3], where, f"the rotation of {field}")


def check_quaternion(q: np.ndarray, where: str, field: str = "the quaternion") -> None:
    """Raise :class:`ReconError` unless ``q`` is 4 finite numbers of non-zero length."""
    from recon.errors import ReconError

    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ReconError(f"{where}: {field} = {q.tolist()} is not 4 finite numbers; fix or re-export the pose")
    n = float(np.linalg.norm(q))
    if n < 1e-8:
        raise ReconError(f"{where}: {field} = {q.tolist()} has zero length (no rotation); fix or re-export the pose")
    if abs(n - 1.0) > 0.1:
        raise ReconError(
            f"{where}: {field} = {q.tolist()} has length {n:.4g}, not 1 (a corrupt value); fix or re-export the pose"
        )


def check_camera(cam: Camera, where: str, focal_field: str = "the focal length") -> None:
    """:func:`check_intrinsics` and :func:`check_pose` of one camera."""
    check_intrinsics(cam, where, focal_field)
    check_pose(cam.c2w, where, "the camera pose")
