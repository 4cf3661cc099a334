"""``recon export``: write a trained run's splats and cameras for engines, VR/AR and USD."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from recon.errors import ReconError

UpChoice = Literal["auto", "+x", "-x", "+y", "-y", "+z", "-z", "x", "y", "z"]
AxesChoice = Literal["auto", "scene", "y-up", "z-up", "y-up-left"]


def main(
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")],
    format: tuple[str, ...] = ("all",),
    out: Optional[Path] = None,
    sh_degree: Optional[int] = None,
    min_opacity: float = 0.0,
    max_scale: Optional[float] = None,
    crop: Optional[tuple[float, float, float, float, float, float]] = None,
    up: UpChoice = "auto",
    axes: AxesChoice = "auto",
    scale: float = 1.0,
    camera_path: Optional[Path] = None,
    spz_sh_bits: tuple[int, int] = (5, 4),
) -> int:
    """Export a trained run (RUN/splats.ply, optional RUN/config.json and RUN/cameras.json).

    Formats: ply (splats.ply, Inria 3DGS), spz (splats.spz, SPZ v3), splat (splats.splat,
    antimatter15), splat-glb (splats.glb, KHR_gaussian_splatting), splat-usd (splats.usdc,
    UsdVol.ParticleField3DGaussianSplat), cameras (cameras.usda + cameras.json), or all.
    See docs/export.md for each format's axes, units and metadata.

    Args:
        run: The run folder.
        format: Format keys, space or comma separated, or "all".
        out: Output folder (default: RUN/export).
        sh_degree: Cap the spherical-harmonics degree (0 gives the smallest files).
        min_opacity: Drop Gaussians with opacity below this (0..1).
        max_scale: Drop Gaussians whose largest standard deviation exceeds this (scene units).
        crop: Keep Gaussians inside the box XMIN YMIN ZMIN XMAX YMAX ZMAX (scene frame and units).
        up: The scene's up axis; "auto" finds it from the training cameras. Write negative axes as --up=-y.
        axes: "auto": ply/splat keep the training frame, spz/glb/usd/cameras are written +Y up right-handed; "scene": every file in the training frame; "y-up", "z-up" (Blender, Unreal) or "y-up-left" (Unity): every format that can hold it.
        scale: Metres per scene unit (multiplies positions and sizes).
        camera_path: Camera path JSON (nerfstudio's or recon's) to add as a time-sampled USD camera and to cameras.json.
        spz_sh_bits: SPZ quantisation bits for SH degree 1 and degrees 2-3 (SPZ's defaults; more bits give closer renders and larger files).
    """
    from exporters.cameras import read_camera_path
    from exporters.export import ExportOptions, export_run, parse_formats, summary_table
    from exporters.run import load_run

    keys = parse_formats(format)
    if up in ("x", "y", "z"):
        up = "+" + up  # type: ignore[assignment]
    crop_min = crop_max = None
    if crop is not None:
        crop_min, crop_max = tuple(crop[:3]), tuple(crop[3:])
        if any(a > b for a, b in zip(crop_min, crop_max)):
            raise ReconError(f"--crop min {crop_min} exceeds max {crop_max} on some axis")
    options = ExportOptions(
        sh_degree=sh_degree,
        min_opacity=min_opacity,
        max_scale=max_scale,
        crop_min=crop_min,  # type: ignore[arg-type]
        crop_max=crop_max,  # type: ignore[arg-type]
        up=up,
        axes=axes,
        scale=scale,
        spz_sh_bits=spz_sh_bits,
    )
    loaded = load_run(run)
    cam_path = read_camera_path(camera_path) if camera_path is not None else None
    out_dir = out if out is not None else loaded.root / "export"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = export_run(loaded, keys, out_dir, options, camera_path=cam_path, log=log)
    cmd = "recon export " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "recon export"
    print(f"\nWrote {len(results)} format(s) to {out_dir}  ({cmd})\n")
    print(summary_table(results))
    return 0
