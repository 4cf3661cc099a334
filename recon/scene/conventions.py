"""Camera axis conventions and pose conversions (the only place they live).

recon uses OpenCV axes inside (x right, y down, z forward) with camera-to-world 4x4 float64 poses.

* OpenGL / Blender / NeRF-synthetic / nerfstudio: x right, y up, z backward (camera looks down -z).
  Converting between the two flips the camera's y and z axes: ``c2w_cv = c2w_gl @ diag(1,-1,-1,1)``.
* COLMAP: world-to-camera rotation as a quaternion ``qvec = (w, x, y, z)`` plus translation
  ``tvec``, in OpenCV axes.
* gsplat: world-to-camera ``viewmats [C, 4, 4]`` in OpenCV axes.
"""

from __future__ import annotations

import numpy as np

# Flips camera y and z; its own inverse.
GL_CV_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_to_opencv(c2w_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world pose(s) ``[..., 4, 4]`` from OpenGL/Blender camera axes to OpenCV axes."""
    return np.asarray(c2w_gl, dtype=np.float64) @ GL_CV_FLIP


def opencv_to_opengl(c2w_cv: np.ndarray) -> np.ndarray:
    """Camera-to-world pose(s) ``[..., 4, 4]`` from OpenCV camera axes to OpenGL/Blender axes."""
    return np.asarray(c2w_cv, dtype=np.float64) @ GL_CV_FLIP


def c2w_to_viewmat(c2w: np.ndarray) -> np.ndarray:
    """World-to-camera ``[..., 4, 4]`` (gsplat's ``viewmats``) from camera-to-world poses.

    Uses the rigid inverse ``[R^T, -R^T t]`` rather than a general matrix inverse.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    R = c2w[..., :3, :3]
    t = c2w[..., :3, 3:]
    out = np.zeros(c2w.shape, dtype=np.float64)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


viewmat_to_c2w = c2w_to_viewmat  # the rigid inverse is its own inverse


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` to a unit quaternion ``(w, x, y, z)`` with ``w >= 0``."""
    R = np.asarray(R, dtype=np.float64)
    # Shepperd's method: pick the largest diagonal term for numerical stability.
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    cands = np.array([tr, R[0, 0], R[1, 1], R[2, 2]])
    i = int(np.argmax(cands))
    if i == 0:
        s = np.sqrt(1.0 + tr) * 2.0
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif i == 1:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2.0
        q = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif i == 2:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2.0
        q = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2.0
        q = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    q = q / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Quaternion ``(w, x, y, z)`` (need not be unit) to a rotation matrix ``[3, 3]``."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def c2w_to_colmap(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV camera-to-world ``[4, 4]`` to COLMAP's world-to-camera ``(qvec wxyz, tvec)``."""
    w2c = c2w_to_viewmat(c2w)
    return rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy()


def colmap_to_c2w(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP's world-to-camera ``(qvec wxyz, tvec)`` to an OpenCV camera-to-world ``[4, 4]``."""
    w2c = np.eye(4)
    w2c[:3, :3] = qvec_to_rotmat(qvec)
    w2c[:3, 3] = np.asarray(tvec, dtype=np.float64)
    return c2w_to_viewmat(w2c)
