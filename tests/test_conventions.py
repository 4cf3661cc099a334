"""Round trips of the axis conventions: OpenGL <-> OpenCV, c2w <-> COLMAP, c2w <-> viewmat, Camera scaling."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recon.scene.cameras import Camera
from recon.scene.conventions import (
    c2w_to_colmap,
    c2w_to_viewmat,
    colmap_to_c2w,
    opencv_to_opengl,
    opengl_to_opencv,
    qvec_to_rotmat,
    rotmat_to_qvec,
    viewmat_to_c2w,
)

TOL = 1e-9

coord = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)
quat = st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 4).filter(lambda q: np.linalg.norm(q) > 1e-3)


@st.composite
def poses(draw) -> np.ndarray:
    """A random rigid camera-to-world 4x4 (uniform-ish rotation from a random quaternion)."""
    q = np.array(draw(quat))
    c2w = np.eye(4)
    c2w[:3, :3] = qvec_to_rotmat(q)
    c2w[:3, 3] = [draw(coord), draw(coord), draw(coord)]
    return c2w


def _is_rotation(R: np.ndarray) -> bool:
    return np.allclose(R.T @ R, np.eye(3), atol=1e-12) and abs(np.linalg.det(R) - 1.0) < 1e-12


@settings(max_examples=200, deadline=None)
@given(poses())
def test_opengl_opencv_round_trip(c2w):
    gl = opencv_to_opengl(c2w)
    np.testing.assert_allclose(opengl_to_opencv(gl), c2w, rtol=0, atol=TOL)
    # The camera centre is shared; y and z camera axes flip; the result is still a rotation.
    np.testing.assert_array_equal(gl[:3, 3], c2w[:3, 3])
    np.testing.assert_array_equal(gl[:3, 0], c2w[:3, 0])
    np.testing.assert_array_equal(gl[:3, 1], -c2w[:3, 1])
    np.testing.assert_array_equal(gl[:3, 2], -c2w[:3, 2])
    assert _is_rotation(gl[:3, :3])


def test_opengl_camera_looks_down_minus_z():
    # An identity OpenGL pose looks down world -z with world +y up: in OpenCV axes its forward
    # (+z) axis is world -z and its down (+y) axis is world -y.
    cv = opengl_to_opencv(np.eye(4))
    np.testing.assert_array_equal(cv[:3, 2], [0, 0, -1])
    np.testing.assert_array_equal(cv[:3, 1], [0, -1, 0])


@settings(max_examples=200, deadline=None)
@given(poses())
def test_colmap_round_trip(c2w):
    q, t = c2w_to_colmap(c2w)
    assert abs(np.linalg.norm(q) - 1.0) < 1e-12 and q[0] >= 0
    np.testing.assert_allclose(colmap_to_c2w(q, t), c2w, rtol=0, atol=TOL)
    # COLMAP's (q, t) is world-to-camera: the camera centre is -R^T t.
    R = qvec_to_rotmat(q)
    np.testing.assert_allclose(-R.T @ t, c2w[:3, 3], rtol=0, atol=TOL)


@settings(max_examples=200, deadline=None)
@given(quat)
def test_qvec_rotmat_round_trip(q):
    q = np.array(q) / np.linalg.norm(q)
    R = qvec_to_rotmat(q)
    assert _is_rotation(R)
    q2 = rotmat_to_qvec(R)
    # q and -q are the same rotation; rotmat_to_qvec picks w >= 0.
    assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < TOL
    np.testing.assert_allclose(qvec_to_rotmat(q2), R, rtol=0, atol=TOL)


@settings(max_examples=200, deadline=None)
@given(poses(), st.tuples(coord, coord, coord))
def test_viewmat_round_trip(c2w, p):
    w2c = c2w_to_viewmat(c2w)
    np.testing.assert_allclose(w2c @ c2w, np.eye(4), rtol=0, atol=TOL)
    np.testing.assert_allclose(viewmat_to_c2w(w2c), c2w, rtol=0, atol=TOL)
    # A world point mapped to the camera and back.
    ph = np.array([*p, 1.0])
    np.testing.assert_allclose(c2w @ (w2c @ ph), ph, rtol=0, atol=TOL)
    # Batched form agrees with the single one.
    np.testing.assert_allclose(c2w_to_viewmat(np.stack([c2w, c2w]))[1], w2c, rtol=0, atol=0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 4000),
    st.integers(2, 4000),
    st.floats(50.0, 5000.0),
    st.floats(0.2, 0.8),
    st.floats(0.2, 0.8),
    st.integers(1, 4000),
    st.integers(1, 4000),
)
def test_camera_resize_round_trip(w, h, f, cxr, cyr, w2, h2):
    K = np.array([[f, 0, cxr * w], [0, f * 1.1, cyr * h], [0, 0, 1.0]])
    cam = Camera(K=K, width=w, height=h)
    small = cam.resized(w2, h2)
    assert (small.width, small.height) == (w2, h2)
    back = small.resized(w, h)
    np.testing.assert_allclose(back.K, cam.K, rtol=1e-12, atol=TOL)
    # Pixel centres at +0.5: a ray through the centre of pixel (i, j) hits the same point in
    # the resized image at the same relative position (u / W, v / H).
    x = np.array([[0.1, -0.2, 1.0]])
    uv, _ = cam.project(x)
    uv2, _ = small.project(x)
    np.testing.assert_allclose(uv2[0] / [w2, h2], uv[0] / [w, h], rtol=1e-9, atol=TOL)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.sampled_from([0.5, 0.25, 2.0, 1 / 3, 0.125]))
def test_camera_scaled_round_trip(w, h, factor):
    cam = Camera(K=[[500.0, 0, w / 2], [0, 400.0, h / 2], [0, 0, 1]], width=w, height=h)
    s = cam.scaled(factor)
    assert s.width == max(1, round(w * factor)) and s.height == max(1, round(h * factor))
    back = s.resized(w, h)
    np.testing.assert_allclose(back.K, cam.K, rtol=1e-12, atol=TOL)
    # scaled(1) is the identity.
    np.testing.assert_array_equal(cam.scaled(1.0).K, cam.K)
    # When the size divides exactly, scaled(f).scaled(1/f) is exact.
    if factor == 0.5 and w % 2 == 0 and h % 2 == 0:
        np.testing.assert_allclose(s.scaled(2.0).K, cam.K, rtol=0, atol=TOL)


# ---- the one home of quaternion maths, look-at/orbit cameras and LLFF poses ----------------------


@settings(max_examples=50, deadline=None)
@given(quat, quat)
def test_quaternion_torch_numpy_agree(q1, q2):
    import torch

    from recon.models.quaternions import quat_mul, quat_mul_np, quat_to_rotmat, quat_to_rotmat_np

    a, b = np.array(q1), np.array(q2)
    np.testing.assert_allclose(quat_to_rotmat(torch.tensor(a)).numpy(), quat_to_rotmat_np(a), atol=1e-12)
    np.testing.assert_allclose(quat_mul(torch.tensor(a), torch.tensor(b)).numpy(), quat_mul_np(a, b), atol=1e-12)
    # the product composes rotations: R(a * b) = R(a) R(b)
    np.testing.assert_allclose(quat_to_rotmat_np(quat_mul_np(a, b)), quat_to_rotmat_np(a) @ quat_to_rotmat_np(b), atol=1e-9)
    batch = np.stack([a, b])
    np.testing.assert_allclose(quat_to_rotmat_np(batch)[1], quat_to_rotmat_np(b), atol=0)
    np.testing.assert_allclose(quat_to_rotmat(torch.tensor(batch)).numpy()[0], quat_to_rotmat(torch.tensor(a)).numpy(), atol=0)


def test_look_at_and_orbit():
    from recon.scene.conventions import look_at_c2w, orbit_c2ws

    eye, target = np.array([3.0, -2.0, 1.5]), np.array([0.2, 0.1, 0.3])
    c2w = look_at_c2w(eye, target, (0.0, 0.0, 1.0))
    np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(c2w[:3, :3]) > 0
    np.testing.assert_allclose(c2w[:3, 2], (target - eye) / np.linalg.norm(target - eye), atol=1e-12)
    assert c2w[2, 1] < 0  # camera y (down) points against world up
    assert np.isfinite(look_at_c2w([0.0, 0.0, 5.0], [0.0, 0.0, 0.0])).all()  # looking along up
    poses = orbit_c2ws(6, 2.0, height=0.5, target=target)
    assert poses.shape == (6, 4, 4)
    for p in poses:
        d = target - p[:3, 3]
        np.testing.assert_allclose(p[:3, 2], d / np.linalg.norm(d), atol=1e-12)
        np.testing.assert_allclose(p[2, 3] - target[2], 0.5, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(poses())
def test_llff_round_trip(c2w):
    from recon.scene.conventions import llff_to_opencv, opencv_to_llff

    np.testing.assert_allclose(llff_to_opencv(opencv_to_llff(c2w[None])), c2w[None], atol=0)
