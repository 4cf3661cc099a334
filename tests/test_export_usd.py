"""OpenUSD ParticleField3DGaussianSplat: usd-core validation, stage metadata, round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pxr = pytest.importorskip("pxr", reason="usd-core is not installed (pip install usd-core)")
from pxr import Usd, UsdGeom, UsdVol  # noqa: E402

from recon.testing.gaussians import random_splats  # noqa: E402
from exporters.usd_splat import SPLATS_PATH, read_usd, validate_usd, write_usd  # noqa: E402

if not hasattr(UsdVol, "ParticleField3DGaussianSplat"):
    pytest.skip("usd-core lacks UsdVol.ParticleField3DGaussianSplat (needs >= 26.03)", allow_module_level=True)


@pytest.mark.parametrize("suffix,up", [(".usdc", "Y"), (".usda", "Z")])
def test_stage_validates_and_round_trips(tmp_path, suffix, up):
    s = random_splats(3000, sh_degree=3, seed=13)
    path = write_usd(s, tmp_path / f"splats{suffix}", up_axis=up, provenance={"source": "cap", "config_hash": "c0ffee"})
    assert validate_usd(path) == []
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == up
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert stage.GetDefaultPrim().GetPath() == "/World"
    assert stage.GetRootLayer().customLayerData["recon"]["config_hash"] == "c0ffee"
    prim = stage.GetPrimAtPath(SPLATS_PATH)
    assert prim.GetTypeName() == "ParticleField3DGaussianSplat"
    gs = UsdVol.ParticleField3DGaussianSplat(prim)
    assert gs.GetRadianceSphericalHarmonicsDegreeAttr().Get() == 3
    assert len(gs.GetRadianceSphericalHarmonicsCoefficientsAttr().Get()) == 3000 * 16
    sh = np.asarray(gs.GetRadianceSphericalHarmonicsCoefficientsAttr().Get()).reshape(3000, 16, 3)
    np.testing.assert_array_equal(sh[:, 0], s["sh0"][:, 0].numpy())  # DC first, per Gaussian
    np.testing.assert_array_equal(sh[:, 1:], s["shN"].numpy())
    op = np.asarray(gs.GetOpacitiesAttr().Get())
    np.testing.assert_allclose(op, torch.sigmoid(s["opacities"]).numpy(), atol=1e-6)  # linear
    np.testing.assert_allclose(np.asarray(gs.GetScalesAttr().Get()), s["scales"].exp().numpy(), rtol=1e-6)
    q0 = gs.GetOrientationsAttr().Get()[0]
    qn = (s["quats"][0] / s["quats"][0].norm()).numpy()
    np.testing.assert_allclose([q0.GetReal(), *q0.GetImaginary()], qn, atol=1e-6)
    lo, hi = np.asarray(gs.GetExtentAttr().Get())
    assert (s["means"].numpy() >= lo).all() and (s["means"].numpy() <= hi).all()
    r = read_usd(path)
    assert torch.equal(r["means"], s["means"]) and torch.equal(r["shN"], s["shN"])
    assert (r["quats"] - s["quats"] / s["quats"].norm(dim=1, keepdim=True)).abs().max() < 1e-6


def test_validation_reports_real_problems(tmp_path):
    s = random_splats(10, sh_degree=1)
    path = write_usd(s, tmp_path / "s.usda")
    stage = Usd.Stage.Open(str(path))
    stage.GetRootLayer().ClearDefaultPrim()
    gs = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath(SPLATS_PATH))
    gs.GetOpacitiesAttr().Set([2.0] * 10)
    gs.GetRadianceSphericalHarmonicsDegreeAttr().Set(2)
    stage.GetRootLayer().Save()
    errors = validate_usd(path)
    text = "\n".join(errors)
    assert "MissingDefaultPrim" in text  # from usd-core's own validators
    assert "opacities outside [0, 1]" in text
    assert "SH coefficients, expected" in text
