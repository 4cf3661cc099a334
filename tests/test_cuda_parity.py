"""gsplat on CUDA against recon's CPU backend and the dense reference (issue 18); skipped without CUDA.

The same parity cases as ``scripts/gpu_check.py`` (its ``FORWARD_CASES`` / ``GRAD_CASES`` on the
``awkward_scene`` and ``surface_scene`` parity scenes): forward colours, alphas and depths within
1e-4 (max abs; depths relative to max(1, |depth|); pixels where a Gaussian's alpha is a rounding tie
with gsplat's 1/255 cutoff are counted, not compared), gradients of every trained parameter within
1e-3 (relative L2). Run on a GPU machine with ``pytest -m cuda`` (``scripts/gpu_check.sh`` does).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (gsplat's kernels are CUDA-only)"),
]

PAIRS = {
    "gsplat-vs-reference": (("gsplat", "cuda"), ("torch", "cpu")),
    "cpu-vs-gsplat": (("cpu", "cpu"), ("gsplat", "cuda")),
}


@pytest.fixture(scope="module", autouse=True)
def gsplat_cuda_extension():
    build = gpu_check.gsplat_cuda_build(log=lambda s: None)
    if not build["ok"]:
        pytest.fail(f"gsplat's CUDA extension is unavailable: {build['error']}")


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("case", list(gpu_check.FORWARD_CASES))
def test_forward_parity_cuda(case, pair):
    (ab, ad), (bb, bd) = PAIRS[pair]
    kw = gpu_check.FORWARD_CASES[case]
    a = gpu_check.render(ab, case, kw, ad)
    b = gpu_check.render(bb, case, kw, bd)
    assert a["colors"].shape == b["colors"].shape and a["alphas"].shape == b["alphas"].shape
    assert (b["alphas"] > 0.5).any()
    e = gpu_check.forward_errors(a, b)
    assert e["visibility_mismatch"] == 0, e
    for key in ("colors", "alphas", "depths"):
        assert e.get(key, 0.0) <= gpu_check.FWD_TOL, (key, e)
    assert e["means2d"] <= 1e-3, e  # pixels; float32 projection of points ~4 units away


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("case", list(gpu_check.GRAD_CASES))
def test_gradient_parity_cuda(case, pair):
    (ab, ad), (bb, bd) = PAIRS[pair]
    kw = gpu_check.GRAD_CASES[case]
    a = gpu_check.render(ab, case, kw, ad, grad=True)
    b = gpu_check.render(bb, case, kw, bd, grad=True)
    e = gpu_check.grad_errors(a, b)
    assert "means" in e and "means2d" in e
    if kw.get("absgrad") and "torch" not in (ab, bb):
        assert "means2d_absgrad" in e  # gsplat and the CPU backend both compute AbsGS's absgrad
    for key, err in e.items():
        assert b["grads"][key].abs().sum() > 0, key
        assert err <= gpu_check.GRAD_TOL, (key, err)


def test_gsplat_backend_is_auto_on_cuda():
    """backend="auto" picks gsplat for CUDA tensors and returns CUDA tensors with gsplat's info keys."""
    from recon.render import rasterization

    params, vm, K, W, H = gpu_check.make_scene("awkward/rgb-packed")
    dev = [p.cuda() for p in params]
    colors, alphas, info = rasterization(*dev, vm.cuda(), K.cuda(), W, H)
    assert colors.is_cuda and alphas.is_cuda and colors.shape == (vm.shape[0], H, W, 3)
    for key in ("means2d", "radii", "depths", "conics", "opacities", "camera_ids", "gaussian_ids", "isect_offsets"):
        assert key in info, key
    ref, ref_a, _ = rasterization(*params, vm, K, W, H, backend="cpu")
    assert (alphas.cpu() - ref_a).abs().max() <= 1e-3  # (exact figures: test_forward_parity_cuda)
