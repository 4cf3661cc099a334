"""Camera axis conventions and pose conversions (the only place they live).

recon uses OpenCV axes inside (x right, y down, z forward) with camera-to-world 4x4 float64 poses.

* OpenGL / Blender / NeRF-synthetic / nerfstudio: x right, y up, z backward (camera looks down -z).
  Converting between the two flips the camera's y and z axes: ``c2w_cv = c2w_gl @ diag(1,-1,-1,1)``.
* COLMAP: world-to-camera rotation as a quaternion ``qvec = (w, x, y, z)`` plus translation
  ``tvec``, in OpenCV axes.
* gsplat: world-to-camera ``viewmats [C, 4, 4]`` in OpenCV axes.
* LLFF (``poses_bounds.npy``): camera-to-world ``[N, 3, 4]`` whose rotation columns are the
  camera's (down, right, back) axes.

Look-at and orbit cameras for recipes, fixtures and renders are built here too
(:func:`look_at_c2w`, :func:`orbit_c2ws`).
"""

from __future__ import annotations

import numpy as np

from recon.models.quaternions import quat_to_rotmat_np, rotmat_to_quat_np

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
    """Rotation matrix ``[3, 3]`` to a unit quaternion ``(w, x, y, z)`` with ``w >= 0``
    (:func:`recon.models.quaternions.rotmat_to_quat_np`)."""
    return rotmat_to_quat_np(R)


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Quaternion ``(w, x, y, z)`` (need not be unit) to a rotation matrix ``[3, 3]`` float64
    (:func:`recon.models.quaternions.quat_to_rotmat_np`)."""
    return quat_to_rotmat_np(np.asarray(q, dtype=np.float64))


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


def look_at_c2w(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` float64 at ``eye [3]`` looking at ``target [3]``.

    The camera's z (forward) points at ``target``, its x (right) is ``forward x up`` and its y
    (down) is ``forward x right``, so world ``up`` appears upward in the image. When ``up`` is
    parallel to the view direction, world x is used in its place.
    """
    eye = np.asarray(eye, dtype=np.float64)
    return _look_along(eye, np.asarray(target, dtype=np.float64) - eye, up)


def _look_along(eye: np.ndarray, z: np.ndarray, up) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` at ``eye`` looking along ``z`` (any length), upright to ``up``."""
    up = np.asarray(up, dtype=np.float64)
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def orbit_axes(up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ``up`` and two unit vectors ``e1, e2`` spanning the plane perpendicular to it (``[3]`` each)."""
    up = np.asarray(up, np.float64)
    up = up / np.linalg.norm(up)
    a = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(up, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return up, e1, e2


def orbit_c2ws(count: int, radius: float, height: float = 0.0, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0),
               phase: float = 0.0, axes=None) -> np.ndarray:
    """``count`` OpenCV camera-to-world poses ``[count, 4, 4]`` on a circle, all looking at ``target``.

    Camera ``i`` sits at ``target + radius (cos a e1 + sin a e2) + height up`` with
    ``a = 2 pi i / count + phase`` (radians), upright with respect to ``up``. ``axes = (e1, e2)``
    fixes the circle's in-plane axes; by default :func:`orbit_axes` picks them from ``up``.
    """
    upn, e1, e2 = orbit_axes(up)
    if axes is not None:
        e1, e2 = (np.asarray(e, np.float64) for e in axes)
    target = np.asarray(target, np.float64)
    poses = []
    for i in range(count):
        a = 2 * np.pi * i / count + phase
        offset = radius * (np.cos(a) * e1 + np.sin(a) * e2) + height * upn
        eye = target + offset if target.any() else offset
        poses.append(_look_along(eye, -offset, upn))
    return np.stack(poses)
