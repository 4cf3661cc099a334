"""Lens distortion: the pinhole camera a distorted view is trained as, and the pixel remap to it.

Every rasterizer recon uses (and gsplat's) projects with a pinhole camera. A capture whose cameras
carry distortion (OPENCV, FULL_OPENCV, RADIAL, SIMPLE_RADIAL, OPENCV_FISHEYE: COLMAP models and
nerfstudio's ``k1..k4, p1, p2``) is therefore undistorted once per image as it is decoded, and its
camera replaced by a PINHOLE camera of the same size. The new focal length and principal point
are chosen so that every output pixel sees inside the source image (no blank border: the same
policy as COLMAP's image undistorter by default), so nothing needs masking.

Pixel centres sit at +0.5 in recon (and COLMAP) but at integers in OpenCV: intrinsics are shifted
by half a pixel on the way in and out.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

import numpy as np

from recon.scene.cameras import Camera

_MAPS: "OrderedDict[bytes, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_MAPS_MAX = 4
_LOCK = Lock()


def is_distorted(cam: Camera) -> bool:
    """Whether ``cam`` has a non-pinhole model with any non-zero coefficient."""
    return cam.model != "PINHOLE" and bool(np.any(cam.dist != 0.0))


def _opencv_coeffs(cam: Camera) -> np.ndarray:
    """OpenCV's coefficient vector for ``cam`` (``(k1, k2, p1, p2[, k3, k4, k5, k6])``, or fisheye's 4)."""
    d = dict(zip(("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), [0.0] * 8))
    from recon.scene.cameras import CAMERA_MODELS

    names = CAMERA_MODELS[cam.model]
    if cam.model == "OPENCV_FISHEYE":
        return np.asarray(cam.dist, np.float64).reshape(4)
    d.update(zip(names, cam.dist.tolist()))
    order = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6") if cam.model == "FULL_OPENCV" else ("k1", "k2", "p1", "p2")
    return np.array([d[k] for k in order], np.float64)


def _cv_K(K: np.ndarray) -> np.ndarray:
    """recon intrinsics (pixel centres at +0.5) to OpenCV's (centres at integers)."""
    K = np.asarray(K, np.float64).copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def _recon_K(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, np.float64).copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def pinhole_for(cam: Camera) -> Camera:
    """The PINHOLE camera (same size and pose) that ``cam``'s image is undistorted to.

    Its intrinsics are the largest view in which every pixel maps inside the source image
    (OpenCV's ``alpha = 0`` / fisheye ``balance = 0``), with square pixels kept square.
    Returns a copy of ``cam`` if it has no distortion.
    """
    import cv2

    if not is_distorted(cam):
        out = cam.copy()
        out.model, out.dist = "PINHOLE", np.zeros(0)
        return out
    size = (cam.width, cam.height)
    D = _opencv_coeffs(cam)
    if cam.model == "OPENCV_FISHEYE":
        newK = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            _cv_K(cam.K), D.reshape(4, 1), size, np.eye(3), balance=0.0, new_size=size)
    else:
        newK, _ = cv2.getOptimalNewCameraMatrix(_cv_K(cam.K), D, size, 0.0, size, centerPrincipalPoint=False)
    newK = _recon_K(np.asarray(newK, np.float64))
    if abs(cam.fx - cam.fy) <= 1e-9 * cam.fx:  # keep square pixels square
        f = float(max(newK[0, 0], newK[1, 1]))
        newK[0, 0] = newK[1, 1] = f
    if not (np.all(np.isfinite(newK)) and newK[0, 0] > 0 and newK[1, 1] > 0):
        from recon.errors import ReconError

        raise ReconError(f"camera {cam.model} with coefficients {cam.dist.tolist()} cannot be undistorted "
                         "(the distortion folds the image over); check the coefficients")
    return Camera(K=newK, width=cam.width, height=cam.height, c2w=cam.c2w.copy(), model="PINHOLE")


def _maps(src: Camera, dst: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Float32 remap tables ``(map_x, map_y)`` [H, W]: for each ``dst`` pixel, where it lies in ``src``."""
    import cv2

    key = b"".join(np.ascontiguousarray(a, np.float64).tobytes() for a in (src.K, src.dist, dst.K)) + (
        f"{src.model}{src.width}x{src.height}>{dst.width}x{dst.height}".encode())
    with _LOCK:
        if key in _MAPS:
            _MAPS.move_to_end(key)
            return _MAPS[key]
    size = (dst.width, dst.height)
    D = _opencv_coeffs(src)
    if src.model == "OPENCV_FISHEYE":
        mx, my = cv2.fisheye.initUndistortRectifyMap(_cv_K(src.K), D.reshape(4, 1), np.eye(3), _cv_K(dst.K), size, cv2.CV_32FC1)
    else:
        mx, my = cv2.initUndistortRectifyMap(_cv_K(src.K), D, None, _cv_K(dst.K), size, cv2.CV_32FC1)
    with _LOCK:
        _MAPS[key] = (mx, my)
        while len(_MAPS) > _MAPS_MAX:
            _MAPS.popitem(last=False)
    return mx, my


def undistort_array(arr: np.ndarray, src: Camera, dst: Camera, nearest: bool = False) -> np.ndarray:
    """Resample ``arr`` ([H, W] or [H, W, C] float32, at ``src``'s full size) to the pinhole ``dst``.

    Bilinear for images and masks; ``nearest`` for depth maps and ids (blending across an edge would
    invent values). Edge pixels are replicated where a sample falls a fraction of a pixel outside.
    """
    import cv2

    if arr.shape[0] != src.height or arr.shape[1] != src.width:
        from recon.scene.images import resize

        arr = resize(arr, (src.width, src.height), nearest=nearest)
    mx, my = _maps(src, dst)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] > 4:
        return np.stack([cv2.remap(a[..., c], mx, my, interp, borderMode=cv2.BORDER_REPLICATE)
                         for c in range(a.shape[2])], -1)
    out = cv2.remap(a, mx, my, interp, borderMode=cv2.BORDER_REPLICATE)
    if a.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def distort_points(cam: Camera, xy: np.ndarray) -> np.ndarray:
    """Normalised pinhole coordinates ``[N, 2]`` to distorted pixel coordinates of ``cam`` (recon's +0.5 centres)."""
    import cv2

    pts = np.concatenate([xy, np.ones((len(xy), 1))], 1).astype(np.float64).reshape(-1, 1, 3)
    D = _opencv_coeffs(cam)
    if cam.model == "OPENCV_FISHEYE":
        uv = cv2.fisheye.distortPoints(np.asarray(xy, np.float64).reshape(-1, 1, 2), _cv_K(cam.K), D.reshape(4, 1))
    else:
        uv, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), _cv_K(cam.K), D)
    return uv.reshape(-1, 2) + 0.5


def undistort_points(cam: Camera, uv: np.ndarray) -> np.ndarray:
    """Distorted pixel coordinates ``[N, 2]`` of ``cam`` (+0.5 centres) to normalised pinhole coordinates."""
    import cv2

    p = (np.asarray(uv, np.float64) - 0.5).reshape(-1, 1, 2)
    D = _opencv_coeffs(cam)
    if cam.model == "OPENCV_FISHEYE":
        out = cv2.fisheye.undistortPoints(p, _cv_K(cam.K), D.reshape(4, 1))
    else:
        out = cv2.undistortPoints(p, _cv_K(cam.K), D, None, None,
                                  criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12))
    return out.reshape(-1, 2)


def describe(cam: Camera, pin: Camera) -> str:
    """One line: the source model and the pinhole it is trained as."""
    coeffs = ", ".join(f"{n} {v:.4g}" for n, v in zip(_names(cam), cam.dist.tolist()) if v != 0)
    return (f"{cam.model} ({coeffs}) undistorted on load to PINHOLE fx {pin.fx:.1f} fy {pin.fy:.1f} "
            f"(source fx {cam.fx:.1f}), no blank border")


def _names(cam: Camera) -> tuple[str, ...]:
    from recon.scene.cameras import CAMERA_MODELS

    return CAMERA_MODELS[cam.model]
