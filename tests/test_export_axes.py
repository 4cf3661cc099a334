"""Axis conversions: transformed Gaussians look the same (covariance, SH colour), up detection."""

from __future__ import annotations

import numpy as np
import pytest

from exporters import axes as ax
from exporters.splats import as_numpy, eval_sh_colors, filter_mask, sigmoid, transform_splats
from recon.testing.gaussians import random_splats
from recon.testing.runs import orbit_cameras
from recon.errors import ReconError
from recon.scene.conventions import qvec_to_rotmat


def _cov(s):
    R = np.stack([qvec_to_rotmat(q) for q in s["quats"].astype(np.float64)])
    S = np.exp(s["scales"].astype(np.float64))
    return R @ (S[:, :, None] ** 2 * np.swapaxes(R, 1, 2))


def _random_transform(proper: bool, scale: float) -> np.ndarray:
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if (np.linalg.det(Q) > 0) != proper:
        Q[:, 0] *= -1
    T = np.eye(4)
    T[:3, :3] = scale * Q
    T[:3, 3] = [0.3, -1.0, 2.0]
    return T


@pytest.mark.parametrize("proper", [True, False])
def test_transform_preserves_appearance(proper):
    s = as_numpy(random_splats(300, sh_degree=3, seed=8))
    s["shN"] *= 10  # make view dependence strong enough to test
    T = _random_transform(proper, scale=2.5)
    t = transform_splats(s, T)
    A, M = T[:3, :3], T[:3, :3] / 2.5
    np.testing.assert_allclose(t["means"], s["means"] @ A.T + T[:3, 3], atol=1e-5)
    # covariances transform as A Sigma A^T, whatever the handedness
    np.testing.assert_allclose(_cov(t), A @ _cov(s) @ A.T, atol=1e-6, rtol=1e-4)
    np.testing.assert_array_equal(t["opacities"], s["opacities"])
    np.testing.assert_array_equal(t["sh0"], s["sh0"])
    # the colour seen along direction d before equals the colour seen along M d after
    rng = np.random.default_rng(9)
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(eval_sh_colors(t, d @ M.T), eval_sh_colors(s, d), atol=2e-5)


def test_identity_and_axis_matrices():
    s = as_numpy(random_splats(50, sh_degree=2))
    t = transform_splats(s, np.eye(4))
    for k in s:
        np.testing.assert_array_equal(t[k], s[k])
    for up in ax.SIGNED_AXES:
        for target, new_up in (("y-up", [0, 1, 0]), ("z-up", [0, 0, 1]), ("y-up-left", [0, 1, 0])):
            R = ax.axes_rotation(up, target)
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
            np.testing.assert_allclose(R @ ax.axis_vector(up), new_up, atol=1e-12)
            assert np.linalg.det(R) == pytest.approx(-1.0 if target == "y-up-left" else 1.0)
    # OpenCV/COLMAP "-y up" to SPZ/three.js RUB is SPZ's RDF -> RUB flip of y and z
    np.testing.assert_array_equal(ax.axes_rotation("-y", "y-up"), np.diag([1.0, -1.0, -1.0]))
    # Blender +Z up to glTF +Y up: (x, y, z) -> (x, z, -y)
    np.testing.assert_array_equal(ax.axes_rotation("+z", "y-up") @ [1, 2, 3], [1, 3, -2])
    assert ax.format_axes("ply", "auto") == "scene" and ax.format_axes("splat-glb", "auto") == "y-up"
    with pytest.raises(ReconError):
        ax.export_transform("+y", "y-up", scale=0)


@pytest.mark.parametrize("up", ["+z", "-y", "+x"])
def test_detect_up_from_cameras(up):
    poses, _ = orbit_cameras(12, up=ax.axis_vector(up))
    got, angle = ax.detect_up(poses)
    assert got == up and angle < 1e-6
    assert ax.detect_up(np.zeros((0, 4, 4))) == ("+y", 0.0)


def test_filters():
    s = as_numpy(random_splats(2000, seed=10))
    keep = filter_mask(s, min_opacity=0.5)
    np.testing.assert_array_equal(keep, sigmoid(s["opacities"]) >= 0.5)
    keep = filter_mask(s, max_scale=0.01)
    np.testing.assert_array_equal(keep, np.exp(s["scales"]).max(1) <= 0.01)
    keep = filter_mask(s, crop_min=(-1, -1, -1), crop_max=(1, 1, 0))
    inside = (s["means"] >= -1).all(1) & (s["means"][:, :2] <= 1).all(1) & (s["means"][:, 2] <= 0)
    np.testing.assert_array_equal(keep, inside)
    s["means"][3, 1] = np.nan
    assert not filter_mask(s)[3]
