"""Gaussian splats as OpenUSD ``UsdVol.ParticleField3DGaussianSplat`` (usd-core >= 26.03).

Stage layout::

    #usda/usdc  (upAxis = "Y" or "Z", metersPerUnit = 1, defaultPrim = "World",
                 customLayerData = {dictionary recon = {source, method, config_hash, ...}})
    def Xform "World"
        def ParticleField3DGaussianSplat "Splats"
            point3f[] positions              centres
            quatf[]   orientations           unit quaternions (USD stores real part + imaginary)
            float3[]  scales                 linear standard deviations (not log)
            float[]   opacities              linear [0, 1] (sigmoid applied)
            uniform int radiance:sphericalHarmonicsDegree
            float3[]  radiance:sphericalHarmonicsCoefficients   (deg+1)^2 per Gaussian,
                      contiguous per Gaussian, DC first, then degree/order as in 3DGS (raw
                      coefficients: colour = 0.5 + sum c Y, as the schema's (0.5, 0.5, 0.5) DC
                      fallback implies)
            float3[]  extent
            color3f[] primvars:displayColor  (vertex) clamped diffuse colour, for viewers that
                      draw particle fields as points
            uniform token projectionModeHint = "perspective", sortingModeHint = "zDepth"

The Gaussian kernel of this schema has standard deviation 1 before scaling, as in 3DGS. The writer
stores the Gaussians as given; ``recon export`` rotates them into the stage's up axis first.

When the installed usd-core lacks the schema (before 26.03), :func:`write_usd` raises a
:class:`ReconError` saying to upgrade; there is no lossy fallback (a ``UsdGeomPoints`` prim cannot
hold the covariances).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from exporters.atomic import atomic_path
from exporters.splats import SH_C0, as_numpy, num_sh_rest, sh_degree_from_rest
from recon.errors import ReconError

SPLATS_PATH = "/World/Splats"


def _pxr():
    try:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdVol, Vt  # noqa: F401
    except ImportError:
        raise ReconError("USD export needs usd-core: pip install 'usd-core>=26.3' (or the recon[export] extra)") from None
    if not hasattr(UsdVol, "ParticleField3DGaussianSplat"):
        raise ReconError(
            f"usd-core {'.'.join(map(str, Usd.GetVersion()))} has no UsdVol.ParticleField3DGaussianSplat; "
            "upgrade: pip install 'usd-core>=26.3'"
        )
    return Gf, Sdf, Usd, UsdGeom, UsdVol, Vt


def new_stage(up_axis: str = "Y", meters_per_unit: float = 1.0, provenance: Mapping[str, str] | None = None):
    """An in-memory stage with ``upAxis``, ``metersPerUnit``, a ``/World`` default prim and provenance."""
    Gf, Sdf, Usd, UsdGeom, UsdVol, Vt = _pxr()
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y if up_axis == "Y" else UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, float(meters_per_unit))
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    if provenance:
        layer = stage.GetRootLayer()
        data = dict(layer.customLayerData)
        data["recon"] = {str(k): str(v) for k, v in provenance.items()}
        layer.customLayerData = data
    return stage


def build_usd_stage(
    splats: Mapping[str, Any],
    up_axis: str = "Y",
    meters_per_unit: float = 1.0,
    provenance: Mapping[str, str] | None = None,
):
    """An in-memory ``Usd.Stage`` holding the Gaussians at :data:`SPLATS_PATH` (see module doc)."""
    Gf, Sdf, Usd, UsdGeom, UsdVol, Vt = _pxr()
    s = as_numpy(splats)
    n = s["means"].shape[0]
    deg = sh_degree_from_rest(s["shN"].shape[1])
    stage = new_stage(up_axis, meters_per_unit, provenance)
    gs = UsdVol.ParticleField3DGaussianSplat.Define(stage, SPLATS_PATH)

    q = s["quats"].astype(np.float64)
    nrm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(nrm > 0, q / np.where(nrm > 0, nrm, 1), np.array([1.0, 0, 0, 0]))
    xyzw = np.ascontiguousarray(q[:, [1, 2, 3, 0]], dtype=np.float32)  # GfQuatf memory: imaginary, real
    means = np.ascontiguousarray(s["means"], np.float32)
    coeffs = np.ascontiguousarray(np.concatenate([s["sh0"], s["shN"]], axis=1).reshape(-1, 3), np.float32)
    opac = (1.0 / (1.0 + np.exp(-s["opacities"].astype(np.float64)))).astype(np.float32)
    color = np.clip(0.5 + SH_C0 * s["sh0"][:, 0, :], 0, 1).astype(np.float32)

    gs.CreatePositionsAttr().Set(Vt.Vec3fArray.FromNumpy(means))
    gs.CreateOrientationsAttr().Set(Vt.QuatfArray.FromNumpy(xyzw))
    gs.CreateScalesAttr().Set(Vt.Vec3fArray.FromNumpy(np.exp(s["scales"].astype(np.float64)).astype(np.float32)))
    gs.CreateOpacitiesAttr().Set(Vt.FloatArray.FromNumpy(opac))
    gs.CreateRadianceSphericalHarmonicsDegreeAttr().Set(int(deg))
    gs.CreateRadianceSphericalHarmonicsCoefficientsAttr().Set(Vt.Vec3fArray.FromNumpy(coeffs))
    gs.CreateProjectionModeHintAttr().Set("perspective")
    gs.CreateSortingModeHintAttr().Set("zDepth")
    if n:
        lo, hi = means.min(axis=0), means.max(axis=0)
        # pad by 3 sigma of the largest Gaussian so the extent bounds the visible splats
        pad = 3.0 * float(np.exp(s["scales"].max())) if n else 0.0
        extent = np.stack([lo - pad, hi + pad]).astype(np.float32)
    else:
        extent = np.zeros((2, 3), np.float32)
    gs.CreateExtentAttr().Set(Vt.Vec3fArray.FromNumpy(extent))
    pv = UsdGeom.PrimvarsAPI(gs.GetPrim()).CreatePrimvar(
        "displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex
    )
    pv.Set(Vt.Vec3fArray.FromNumpy(color))
    return stage


def write_usd(
    splats: Mapping[str, Any],
    path: str | os.PathLike,
    up_axis: str = "Y",
    meters_per_unit: float = 1.0,
    provenance: Mapping[str, str] | None = None,
) -> Path:
    """Write Gaussians as a ``ParticleField3DGaussianSplat`` stage to ``path`` (atomically).

    The file format follows the suffix: ``.usdc`` (binary crate, the default of ``recon export``),
    ``.usda`` (text) or ``.usd``. ``up_axis`` is "Y" or "Z" and must match the Gaussians' frame.
    """
    if up_axis not in ("Y", "Z"):
        raise ReconError(f"USD upAxis must be 'Y' or 'Z', got {up_axis!r}")
    stage = build_usd_stage(splats, up_axis, meters_per_unit, provenance)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not stage.GetRootLayer().Export(str(tmp)):
            raise ReconError(f"USD could not write {path}")
    return path


def read_usd(path: str | os.PathLike, prim_path: str | None = None) -> dict[str, torch.Tensor]:
    """Read the first (or the given) ``ParticleField3DGaussianSplat`` prim into recon Gaussians."""
    Gf, Sdf, Usd, UsdGeom, UsdVol, Vt = _pxr()
    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such USD file")
    stage = Usd.Stage.Open(str(path))
    prim = stage.GetPrimAtPath(prim_path) if prim_path else None
    if prim is None:
        prim = next((p for p in stage.Traverse() if p.IsA(UsdVol.ParticleField3DGaussianSplat)), None)
    if prim is None or not prim.IsValid():
        raise ReconError(f"{path}: no ParticleField3DGaussianSplat prim")
    gs = UsdVol.ParticleField3DGaussianSplat(prim)
    means = np.asarray(gs.GetPositionsAttr().Get(), np.float32).reshape(-1, 3)
    n = means.shape[0]
    xyzw = np.asarray(gs.GetOrientationsAttr().Get(), np.float32).reshape(n, 4)
    scales = np.asarray(gs.GetScalesAttr().Get(), np.float64).reshape(n, 3)
    opac = np.clip(np.asarray(gs.GetOpacitiesAttr().Get(), np.float64).reshape(n), 1e-7, 1 - 1e-7)
    deg = int(gs.GetRadianceSphericalHarmonicsDegreeAttr().Get())
    coeffs = np.asarray(gs.GetRadianceSphericalHarmonicsCoefficientsAttr().Get(), np.float32)
    coeffs = coeffs.reshape(n, num_sh_rest(deg) + 1, 3)
    out = {
        "means": means,
        "quats": xyzw[:, [3, 0, 1, 2]],
        "scales": np.log(np.maximum(scales, 1e-30)).astype(np.float32),
        "opacities": np.log(opac / (1 - opac)).astype(np.float32),
        "sh0": coeffs[:, :1],
        "shN": coeffs[:, 1:],
    }
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in out.items()}


def validate_usd(path: str | os.PathLike) -> list[str]:
    """Errors found in a USD file: every usd-core validator plus the splat schema's data rules.

    Runs all validators registered with ``UsdValidation`` (what ``usdchecker`` runs: stage metadata
    such as upAxis/metersPerUnit/defaultPrim, composition, attribute types, ...) and, for each
    ``ParticleField3DGaussianSplat``, checks that array lengths agree with ``positions``, the SH
    coefficient count is ``N * (degree+1)^2``, orientations are unit quaternions, scales are
    non-negative and opacities lie in [0, 1]. Returns one line per error (empty when valid).
    """
    Gf, Sdf, Usd, UsdGeom, UsdVol, Vt = _pxr()
    from pxr import UsdValidation

    stage = Usd.Stage.Open(str(path))
    if stage is None:
        return [f"{path}: cannot be opened as a USD stage"]
    reg = UsdValidation.ValidationRegistry()
    ctx = UsdValidation.ValidationContext(reg.GetOrLoadAllValidators())
    errors = [
        f"{e.GetName()}: {e.GetMessage()}"
        for e in ctx.Validate(stage)
        if e.GetType() == UsdValidation.ValidationErrorType.Error
    ]
    for prim in stage.Traverse():
        if not prim.IsA(UsdVol.ParticleField3DGaussianSplat):
            continue
        gs = UsdVol.ParticleField3DGaussianSplat(prim)
        where = str(prim.GetPath())
        pos = gs.GetPositionsAttr().Get()
        if pos is None:
            errors.append(f"{where}: positions not authored")
            continue
        n = len(pos)
        arrays = {
            "orientations": gs.GetOrientationsAttr().Get(),
            "scales": gs.GetScalesAttr().Get(),
            "opacities": gs.GetOpacitiesAttr().Get(),
        }
        for name, arr in arrays.items():
            if arr is None or len(arr) != n:
                errors.append(f"{where}: {name} has {None if arr is None else len(arr)} entries, positions {n}")
        deg = gs.GetRadianceSphericalHarmonicsDegreeAttr().Get()
        sh = gs.GetRadianceSphericalHarmonicsCoefficientsAttr().Get()
        if deg is None or not 0 <= int(deg) <= 3:
            errors.append(f"{where}: SH degree {deg} not in 0..3")
        elif sh is None or len(sh) != n * (int(deg) + 1) ** 2:
            errors.append(f"{where}: {None if sh is None else len(sh)} SH coefficients, expected {n * (int(deg) + 1) ** 2}")
        if arrays["orientations"] is not None and n:
            qn = np.linalg.norm(np.asarray(arrays["orientations"], np.float64).reshape(-1, 4), axis=1)
            if np.abs(qn - 1).max() > 1e-3:
                errors.append(f"{where}: orientations are not unit quaternions (norm off by {np.abs(qn - 1).max():.2g})")
        if arrays["scales"] is not None and n and np.asarray(arrays["scales"]).min() < 0:
            errors.append(f"{where}: negative scales")
        if arrays["opacities"] is not None and n:
            o = np.asarray(arrays["opacities"])
            if o.min() < 0 or o.max() > 1:
                errors.append(f"{where}: opacities outside [0, 1]")
        for name in ("positions", "scales"):
            a = np.asarray(gs.GetPrim().GetAttribute(name).Get() or [], np.float64)
            if a.size and not np.isfinite(a).all():
                errors.append(f"{where}: non-finite {name}")
    return errors
