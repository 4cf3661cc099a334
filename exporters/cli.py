"""``recon export``: write a trained run's splats, textured meshes and cameras for engines, VR/AR and USD."""

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
    selection: Optional[str] = None,
    invert_selection: bool = False,
    up: UpChoice = "auto",
    axes: AxesChoice = "auto",
    scale: float = 1.0,
    camera_path: Optional[Path] = None,
    spz_sh_bits: tuple[int, int] = (5, 4),
    mesh_voxel: Optional[float] = None,
    mesh_faces: int = 100_000,
    mesh_texture_size: int = 2048,
    mesh_min_component: float = 0.02,
    mesh_fill_holes: Optional[float] = None,
    mesh_render_size: int = 800,
    time_samples: int = 0,
    fps: float = 24.0,
    distill_steps: int = 5000,
    threads: int = 0,
) -> int:
    """Export a trained run (RUN/splats.ply, optional RUN/config.json and RUN/cameras.json).

    Formats: ply (splats.ply, Inria 3DGS), spz (splats.spz, SPZ v3), splat (splats.splat,
    antimatter15), splat-glb (splats.glb, KHR_gaussian_splatting), splat-usd (splats.usdc,
    UsdVol.ParticleField3DGaussianSplat), cameras (cameras.usda + cameras.json), textured meshes
    mesh-glb (mesh.glb), mesh-obj (mesh.obj + mesh.mtl + mesh.png), mesh-usd (mesh.usdc +
    mesh.png) and mesh-usdz (mesh.usdz, AR Quick Look), or all. Dynamic (splat4d) runs also:
    splat-sequence (sequence/frame_NNNNN.ply + sequence.json), splat4d (canonical model +
    deformation.safetensors + splat4d.json) and splat4d-usd (splats4d.usdc, time-sampled; "all"
    includes them for such runs; docs/splat4d.md). NeRF runs: meshes of the density, points
    (points.ply on the surface; "all" includes it), and the splat formats from splats distilled
    from the NeRF (trained on its renders, cached in RUN/distill; docs/nerf.md). Meshes are fused from depth
    rendered at the training cameras (RUN/cameras.json; without it, from views around the scene);
    the default 100k faces take about 1.5 minutes on a 2-core CPU (fewer --mesh-faces: faster).
    See docs/export.md for each format's axes, units and metadata.

    Args:
        run: The run folder.
        format: Format keys, space or comma separated, or "all".
        out: Output folder (default: RUN/export).
        sh_degree: Cap the spherical-harmonics degree (0 gives the smallest files).
        min_opacity: Drop Gaussians with opacity below this (0..1).
        max_scale: Drop Gaussians whose largest standard deviation exceeds this (scene units).
        crop: Keep Gaussians inside the box XMIN YMIN ZMIN XMAX YMAX ZMAX (scene frame and units).
        selection: Export only the Gaussians of this selection (a name made by `recon select RUN --name NAME`, or its .json path).
        invert_selection: Export the scene without the selection instead.
        up: The scene's up axis; "auto" finds it from the training cameras. Write negative axes as --up=-y.
        axes: "auto": ply/splat keep the training frame, spz/glb/usd/cameras are written +Y up right-handed; "scene": every file in the training frame; "y-up", "z-up" (Blender, Unreal) or "y-up-left" (Unity): every format that can hold it.
        scale: Metres per scene unit (multiplies positions and sizes).
        camera_path: Camera path JSON (nerfstudio's or recon's) to add as a time-sampled USD camera and to cameras.json.
        spz_sh_bits: SPZ quantisation bits for SH degree 1 and degrees 2-3 (SPZ's defaults; more bits give closer renders and larger files).
        mesh_voxel: Mesh fusion voxel size in scene units (default: scene extent / 512, no finer than half a rendered pixel).
        mesh_faces: Face budget of the mesh (decimated to it).
        mesh_texture_size: Mesh colour texture edge in pixels.
        mesh_min_component: Drop mesh pieces with fewer faces than this fraction of the largest piece (0 keeps all, 1 only the largest).
        mesh_fill_holes: Fill mesh holes up to this radius in scene units (default: 4 voxels; 0: off).
        mesh_render_size: Longest side in pixels of the depth and colour renders used to build the mesh.
        time_samples: Dynamic (splat4d) runs: frames of splat-sequence and splat4d-usd, evenly spaced over time [0, 1] (0: the capture's times).
        fps: Dynamic runs: frames per second of the time-sampled USD (splat4d-usd).
        distill_steps: NeRF runs: splat training steps of the distillation behind the splat formats.
        threads: NeRF runs: CPU threads of the distillation's training (0: all cores).
    """
    from exporters.cameras import read_camera_path
    from exporters.export import ExportOptions, export_run, parse_formats, summary_table
    from exporters.mesh import MeshOptions
    from exporters.nerf_distill import DistillOptions
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
        time_samples=time_samples,
        fps=fps,
        distill=DistillOptions(steps=distill_steps, threads=threads),
        mesh=MeshOptions(
            voxel=mesh_voxel,
            faces=mesh_faces,
            texture_size=mesh_texture_size,
            min_component=mesh_min_component,
            fill_holes=mesh_fill_holes,
            render_size=mesh_render_size,
        ),
    )
    if any(k.startswith("mesh-") for k in keys):
        options.mesh.validate()  # before loading the run
    if out is not None and out.exists() and not out.is_dir():
        raise ReconError(f"--out {out} is an existing file, not a folder; pass a folder (default: {Path(run) / 'export'})")
    loaded = load_run(run)
    if any(k.strip().lower() == "all" for item in format for k in str(item).split(",")):
        from exporters.export import DYNAMIC_FILES
        from recon.run import RunFolder

        rf = RunFolder.open(loaded.root)
        if rf.method == "splat4d" and "deformation" in rf.artifacts:  # a dynamic run: its formats too
            keys += [k for k in DYNAMIC_FILES if k not in keys]
    if loaded.method == "nerf" and any(k.strip().lower() == "all" for item in format for k in str(item).split(",")):
        from exporters.export import NERF_FILES

        keys += [k for k in NERF_FILES if k not in keys]  # a NeRF run: its surface points too
    if invert_selection and selection is None:
        raise ReconError("--invert-selection needs --selection NAME")
    if selection is not None and loaded.method == "nerf":
        raise ReconError(f"--selection picks Gaussians of a splat run; {loaded.root} is a NeRF run (use --crop)")
    if selection is not None:
        from recon.models.splats import as_numpy
        from recon.run import RunFolder
        from recon.selection import load_selection

        rf = RunFolder.open(loaded.root)
        g, keep, doc = load_selection(loaded.root, selection, rf.path("model"), loaded.splats)
        refined = bool(doc.get("refined"))
        if refined:  # the model refined around the selection (recon select --refine)
            if rf.method != "splat":
                raise ReconError(f"--selection {selection} holds a refined static model; {loaded.root} is a {rf.method} run")
            loaded.splats = as_numpy(g)
        options.keep = ~keep if invert_selection else keep
        loaded.provenance = loaded.provenance.with_extra(
            selection=f"{'all but ' if invert_selection else ''}{selection} ({int(options.keep.sum())} Gaussians"
                      f"{', boundary refined' if refined else ''})")
    cam_path = read_camera_path(camera_path) if camera_path is not None else None
    out_dir = out if out is not None else loaded.root / "export"
    inputs = [camera_path] if camera_path is not None else []

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = export_run(loaded, keys, out_dir, options, camera_path=cam_path, log=log, inputs=inputs)
    cmd = "recon export " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "recon export"
    print(f"\nWrote {len(results)} format(s) to {out_dir}  ({cmd})\n")
    print(summary_table(results))
    return 0
