"""Rendered checks with recon's CPU rasterizer: axis conversions are invisible, SPZ stays close."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from recon.render import rasterization  # noqa: E402  (a broken rasterizer fails these tests, not skips them)
from exporters import axes as ax  # noqa: E402
from exporters.spz import decode_spz, encode_spz  # noqa: E402
from exporters.splats import as_numpy, transform_splats  # noqa: E402
from recon.testing.gaussians import random_splats  # noqa: E402
from recon.testing.runs import orbit_cameras  # noqa: E402
from recon.scene.conventions import c2w_to_viewmat  # noqa: E402

BACKEND = os.environ.get("RECON_TEST_RENDER_BACKEND", "cpu")  # "torch": the dense reference
W, H = 64, 48


def _render(s, poses, K) -> torch.Tensor:
    vm = torch.tensor(c2w_to_viewmat(poses), dtype=torch.float32)
    Ks = torch.tensor(K, dtype=torch.float32)[None].repeat(len(poses), 1, 1)
    colors = torch.cat([s["sh0"], s["shN"]], 1)
    out, _, _ = rasterization(
        s["means"], s["quats"], s["scales"].exp(), torch.sigmoid(s["opacities"]), colors, vm, Ks, W, H,
        sh_degree=3, backend=BACKEND,
    )  # fmt: skip
    return out.clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def scene():
    s = random_splats(2000, sh_degree=3, seed=1, extent=2.0)
    s["scales"] = s["scales"] + 1.8  # ~7 cm Gaussians: most pixels see several of them
    poses, K = orbit_cameras(2, radius=4.0, up=(0, -1, 0), size=(W, H))  # COLMAP-like, -y up
    return s, poses, K, _render(s, poses, K)


@pytest.mark.parametrize("target,scale", [("y-up", 1.0), ("z-up", 0.3), ("y-up-left", 2.0)])
def test_axis_conversion_renders_identically(scene, target, scale):
    """Gaussians (positions, covariances, SH) and cameras moved by the same transform: same images."""
    s, poses, K, ref = scene
    T = ax.export_transform("-y", target, scale)
    moved = {k: torch.from_numpy(v) for k, v in transform_splats(as_numpy(s), T).items()}
    poses_t = np.stack([T @ p for p in poses])
    poses_t[:, :3, :3] /= scale  # cameras keep orthonormal axes; only their centres scale
    img = _render(moved, poses_t, K)
    assert _psnr(img, ref) > 60


def test_spz_renders_close_to_ply(scene):
    """SPZ's default quantisation (SH 5/4 bits) keeps renders within 36 dB of the PLY's; with
    7/6 SH bits the PSNR against a ~30 dB reference drops by at most 0.3 dB."""
    s, poses, K, ref = scene
    spz, _ = decode_spz(encode_spz(s))
    assert _psnr(_render(spz, poses, K), ref) > 36.0  # measured 38.2 dB
    g = torch.Generator().manual_seed(0)
    gt = (ref + 0.03 * torch.randn(ref.shape, generator=g)).clamp(0, 1)  # a model ~30 dB from its images
    fine, _ = decode_spz(encode_spz(s, sh1_bits=7, sh_rest_bits=6))
    drop = _psnr(ref, gt) - _psnr(_render(fine, poses, K), gt)
    assert drop <= 0.3, f"SPZ (7/6 SH bits) loses {drop:.2f} dB"  # measured 0.18 dB
