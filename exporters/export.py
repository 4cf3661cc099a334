"""The export pipeline behind ``recon export``: filter, convert axes, write each requested format.

Format keys and the files they write (in the output folder):

=============  =========================================  ================================
key            file(s)                                    frame under ``--axes auto``
=============  =========================================  ================================
``ply``        ``splats.ply`` (Inria 3DGS layout)         scene (training) frame
``spz``        ``splats.spz`` (SPZ v3)                    +Y up right-handed (SPZ "RUB")
``splat``      ``splats.splat`` (antimatter15)            scene (training) frame
``splat-glb``  ``splats.glb`` (KHR_gaussian_splatting)    +Y up, metres (glTF)
``splat-usd``  ``splats.usdc`` (ParticleField3DGaussianSplat)  +Y up stage (upAxis "Y")
``cameras``    ``cameras.usda`` + ``cameras.json``        usda: as splats.usdc; json: scene
``mesh-glb``   ``mesh.glb`` (textured, PBR base colour)   +Y up, metres (glTF)
``mesh-obj``   ``mesh.obj`` + ``mesh.mtl`` + ``mesh.png``     +Y up right-handed
``mesh-usd``   ``mesh.usdc`` + ``mesh.png`` (UsdPreviewSurface)  +Y up stage (upAxis "Y")
``mesh-usdz``  ``mesh.usdz`` (AR Quick Look package)      +Y up stage (upAxis "Y")
=============  =========================================  ================================

Dynamic (``splat4d``) runs add (:mod:`exporters.sequence`): ``splat-sequence``
(``sequence/frame_NNNNN.ply`` + ``sequence/sequence.json``, frame as ``ply``), ``splat4d``
(``splat4d/canonical.ply`` + ``deformation.safetensors`` + ``splat4d.json``, frame as ``ply``) and
``splat4d-usd`` (``splats4d.usdc`` with time samples, frame as ``splat-usd``).

The ``mesh-*`` formats share one mesh, extracted once per export from the filtered Gaussians
(:func:`exporters.mesh.extract_mesh`: TSDF fusion of rendered depth, cleanup, decimation, UV
unwrap, texture baked from the training views).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from exporters import axes as ax
from exporters.cameras import CameraPath, NamedCamera, write_cameras_json, write_cameras_usd
from exporters.mesh import MeshOptions
from exporters.nerf_distill import DistillOptions
from exporters.run import Run
from exporters.splats import cap_sh_degree, filter_mask, sh_degree, subset, transform_splats
from recon.errors import ReconError

FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "ply": ("splats.ply",),
    "spz": ("splats.spz",),
    "splat": ("splats.splat",),
    "splat-glb": ("splats.glb",),
    "splat-usd": ("splats.usdc",),
    "cameras": ("cameras.usda", "cameras.json"),
    "mesh-glb": ("mesh.glb",),
    "mesh-obj": ("mesh.obj", "mesh.mtl", "mesh.png"),
    "mesh-usd": ("mesh.usdc", "mesh.png"),
    "mesh-usdz": ("mesh.usdz",),
}
MESH_FORMATS = ("mesh-glb", "mesh-obj", "mesh-usd", "mesh-usdz")
FORMATS = tuple(FORMAT_FILES)
# Dynamic (splat4d) runs only (exporters.sequence); "all" adds them for such runs (exporters.cli).
DYNAMIC_FILES: dict[str, tuple[str, ...]] = {
    "splat-sequence": ("sequence/sequence.json",),
    "splat4d": ("splat4d/splat4d.json", "splat4d/canonical.ply", "splat4d/deformation.safetensors"),
    "splat4d-usd": ("splats4d.usdc",),
}
# NeRF runs only (exporters.nerf_export); "all" adds them for such runs (exporters.cli).
NERF_FILES: dict[str, tuple[str, ...]] = {"points": ("points.ply",)}
ALL_FILES = {**FORMAT_FILES, **DYNAMIC_FILES, **NERF_FILES}
DYNAMIC_BASE = {"splat-sequence": "ply", "splat4d": "ply", "splat4d-usd": "splat-usd", "points": "ply"}
"""The static format whose frame (under ``--axes auto``) and rules each dynamic (or NeRF-only) format follows."""


@dataclass
class ExportOptions:
    """Options shared by every format.

    Attributes:
        sh_degree: cap the SH degree (``None``: keep the model's).
        min_opacity: drop Gaussians whose opacity (after the sigmoid) is below this.
        max_scale: drop Gaussians whose largest standard deviation exceeds this (scene units).
        crop_min, crop_max: keep Gaussians whose centre lies in this box (scene frame and units).
        up: the scene's up direction, a signed axis, or "auto" (from the training cameras;
            "+y" when the run has none).
        axes: target convention, "auto" (each format's own: see module doc), "scene", "y-up",
            "z-up" or "y-up-left".
        scale: metres per scene unit, applied to positions and sizes of every file.
        spz_sh_bits: SPZ quantisation bits for SH degree 1 and for degrees 2-3 (SPZ's defaults
            5 and 4; more bits: closer renders, larger files).
        mesh: options of the mesh extraction shared by the ``mesh-*`` formats.
        keep: bool per Gaussian of the run (a ``recon select`` selection, possibly inverted):
            only these are exported (``None``: all).
    """

    sh_degree: int | None = None
    min_opacity: float = 0.0
    max_scale: float | None = None
    crop_min: tuple[float, float, float] | None = None
    crop_max: tuple[float, float, float] | None = None
    up: str = "auto"
    axes: str = "auto"
    scale: float = 1.0
    spz_sh_bits: tuple[int, int] = (5, 4)
    mesh: MeshOptions = field(default_factory=MeshOptions)
    distill: "DistillOptions | None" = None
    """NeRF runs: how splats are distilled for the splat formats (``None``: the defaults)."""
    keep: np.ndarray | None = None
    time_samples: int = 0
    """Dynamic runs: frames of the splat sequence / USD time samples (0: the capture's times)."""
    fps: float = 24.0
    """Dynamic runs: frames per second of the time-sampled USD."""


@dataclass
class ExportResult:
    """What one format wrote."""

    format: str
    paths: list[Path]
    seconds: float
    gaussians: int  # items written: Gaussians, cameras, or faces for meshes
    frame: str
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


def parse_formats(items: Sequence[str]) -> list[str]:
    """Format keys from CLI items (space and/or comma separated; "all" expands), deduplicated."""
    keys: list[str] = []
    for item in items:
        for k in str(item).split(","):
            k = k.strip().lower()
            if not k:
                continue
            if k == "all":
                keys.extend(FORMATS)
            elif k in ALL_FILES:
                keys.append(k)
            else:
                raise ReconError(f"unknown export format {k!r}; choose from {', '.join(ALL_FILES)} or all")
    if not keys:
        raise ReconError(f"no export format given; choose from {', '.join(ALL_FILES)} or all")
    return list(dict.fromkeys(keys))


def resolve_up(options: ExportOptions, cameras: Sequence[NamedCamera]) -> tuple[str, str]:
    """``(up axis, how it was found)`` for the options and the run's cameras."""
    if options.up != "auto":
        ax.axis_vector(options.up)  # validates
        return options.up, "given"
    if not cameras:
        return "+y", "assumed (run has no cameras.json; pass --up)"
    up, angle = ax.detect_up([c.camera.c2w for c in cameras])
    how = f"from {len(cameras)} cameras"
    if angle > 30:
        how += f", {angle:.0f} deg off the axis: check it or pass --up"
    return up, how


def _target_for(fmt: str, axes: str) -> str:
    target = ax.format_axes(fmt, axes)
    if fmt in ("splat-glb", "mesh-glb") and target in ("z-up", "y-up-left"):
        raise ReconError(f"glTF is right-handed and +Y up; --axes {axes} cannot be used for {fmt}")
    if fmt == "spz" and target in ("z-up", "y-up-left"):
        raise ReconError(f"SPZ stores a right-handed +Y-up (RUB) frame; --axes {axes} cannot be used for spz")
    if fmt in ("splat-usd", "cameras", "mesh-usd", "mesh-usdz") and target == "y-up-left":
        raise ReconError(f"USD stages are right-handed; --axes {axes} cannot be used for {fmt}")
    return target


def _usd_up_axis(target: str, up: str) -> str:
    if target == "scene":
        if up in ("+y", "+z"):
            return up[1].upper()
        raise ReconError(f"--axes scene with up {up}: USD needs +Y or +Z up; use --axes auto for the USD formats")
    return ax.stage_up_axis(target)


# Files of a run folder that are its inputs whatever else the folder holds (the run reader's and
# the trainer's); every other file directly in the run folder counts as an input too.
RUN_INPUTS = ("splats.ply", "cameras.json", "config.json", "run.json", "metrics.json", "points.ply")


def check_outputs(run: Run, formats: Sequence[str], out_dir: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse (one :class:`ReconError` naming the file) before anything is written when an output
    would replace one of its own inputs, or cannot be written where it is asked to go.

    Inputs are the files directly in the run folder (``splats.ply``, ``cameras.json``,
    ``config.json``, ``metrics.json``, ...), and ``inputs`` (e.g. the ``--camera-path`` file).
    Paths are compared as files (symbolic and hard links to an input count as the input).
    Files in an earlier export folder (default ``RUN/export``) are outputs and are replaced.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReconError(f"--out {out_dir} is an existing file, not a folder; pass a folder (default: {run.root / 'export'})")
    held: dict[tuple[int, int], Path] = {}
    candidates: list[Path] = [Path(p) for p in inputs]
    root = Path(run.root)
    if root.is_dir():
        candidates += [root / n for n in RUN_INPUTS]
        candidates += [p for p in root.iterdir() if p.is_file()]
    for p in candidates:
        try:
            st = p.stat()
        except OSError:
            continue
        held.setdefault((st.st_dev, st.st_ino), p)
    for fmt in formats:
        for name in ALL_FILES[fmt]:
            target = out_dir / name
            try:
                st = target.stat()
            except OSError:
                continue
            if target.is_dir():
                raise ReconError(f"cannot write {target}: a folder is in the way of the {fmt} output; remove it or choose another --out")
            src = held.get((st.st_dev, st.st_ino))
            if src is not None:
                what = ("an input of this export" if src.name in RUN_INPUTS or src.parent != root
                        else "a file of the run folder that this export did not write")
                raise ReconError(
                    f"--out {out_dir} would overwrite {src}, {what} ({fmt} writes {name}); "
                    f"choose another --out (default: {root / 'export'})"
                )


def export_run(
    run: Run,
    formats: Sequence[str],
    out_dir: str | Path,
    options: ExportOptions | None = None,
    camera_path: CameraPath | None = None,
    log: Callable[[str], None] = lambda s: None,
    inputs: Sequence[str | Path] = (),
) -> list[ExportResult]:
    """Write the requested formats of a loaded run into ``out_dir``.

    Every file is written atomically; provenance is recorded in each format's metadata. Returns one
    :class:`ExportResult` per format, in the order given. Raises :class:`ReconError` for bad options
    (before writing anything), among them an output that would replace one of the run's own files
    or ``inputs`` (:func:`check_outputs`).
    """
    options = options or ExportOptions()
    formats = parse_formats(formats)
    out_dir = Path(out_dir)
    check_outputs(run, formats, out_dir, inputs)
    up, up_how = resolve_up(options, run.cameras)
    targets = {fmt: _target_for(DYNAMIC_BASE.get(fmt, fmt), options.axes) for fmt in formats}
    transforms = {fmt: ax.export_transform(up, targets[fmt], options.scale) for fmt in formats}
    for fmt in formats:  # fail early on frames USD cannot hold
        if fmt in ("splat-usd", "cameras", "mesh-usd", "mesh-usdz", "splat4d-usd"):
            _usd_up_axis(targets[fmt], up)
    nerf = None
    if getattr(run, "method", "splat") == "nerf":  # meshes, points and distilled splats of the NeRF
        from exporters.nerf_export import NerfSources

        bad = [f for f in formats if f in DYNAMIC_FILES]
        if bad:
            raise ReconError(f"{', '.join(bad)}: a NeRF run is static; choose from {', '.join(list(FORMAT_FILES) + list(NERF_FILES))}")
        (options.distill or DistillOptions()).validate()
        nerf = NerfSources(run, log)
    elif any(f in NERF_FILES for f in formats):
        raise ReconError(f"--format points is for NeRF runs (points on the density's surface); {run.root} is a "
                         f"{getattr(run, 'method', 'splat')} run: export ply for its Gaussians")
    dynamic = None
    if any(f in DYNAMIC_FILES for f in formats):  # the motion model, before anything is written
        from exporters import sequence as seq

        dynamic = seq.load_model(run.root)
        if dynamic.num_primitives != int(run.splats["means"].shape[0]):
            raise ReconError(f"{run.root}: the deformation holds {dynamic.num_primitives} Gaussians, the run "
                             f"{int(run.splats['means'].shape[0])}")
        dyn_times = seq.frame_times(run.root, options.time_samples)
    meshing = any(f in MESH_FORMATS for f in formats)
    if meshing:
        options.mesh.validate()
    if options.min_opacity < 0 or options.min_opacity > 1:
        raise ReconError(f"--min-opacity must be in [0, 1], got {options.min_opacity}")
    if not all(1 <= b <= 8 for b in options.spz_sh_bits):
        raise ReconError(f"--spz-sh-bits must be two numbers in 1..8, got {options.spz_sh_bits}")
    if options.max_scale is not None and options.max_scale <= 0:
        raise ReconError(f"--max-scale must be positive, got {options.max_scale}")

    if nerf is not None and any(f in nerf_splat_formats() for f in formats):
        run = nerf.distilled_run(options.distill or DistillOptions())  # cached in RUN/distill
    splats = run.splats
    n_in = int(splats["means"].shape[0])
    kept_idx = np.arange(n_in)  # canonical Gaussians kept (the dynamic formats' filter)
    if options.keep is not None:
        if options.keep.shape != (n_in,):
            raise ReconError(f"the selection has {options.keep.size} entries, the run {n_in} Gaussians")
        splats = subset(splats, options.keep)
        kept_idx = kept_idx[options.keep]
    if options.sh_degree is not None:
        splats = cap_sh_degree(splats, options.sh_degree)
    keep = (filter_mask(splats, options.min_opacity, options.max_scale, options.crop_min, options.crop_max) if n_in
            else np.zeros(0, bool))
    if not keep.all():
        splats = subset(splats, keep)
        kept_idx = kept_idx[keep]
    n = int(splats["means"].shape[0])
    if nerf is not None and n_in == 0:
        log(f"NeRF run ({nerf.field.num_voxels:,} voxels); scene up {up} ({up_how})")
    else:
        log(f"{n_in} Gaussians, {n} kept, SH degree {sh_degree(splats)}{' (distilled from the NeRF)' if nerf else ''}; "
            f"scene up {up} ({up_how})")
    if n == 0 and any(f != "cameras" and not (nerf is not None and f not in nerf_splat_formats()) for f in formats):
        raise ReconError("no Gaussians left after filtering (loosen --min-opacity, --max-scale, the crop box or the selection)")

    base_prov = run.provenance.with_extra(up=up, scale=options.scale)
    cache: dict[str, dict[str, np.ndarray]] = {}

    mesh = None
    if meshing:  # one mesh for every mesh format, before anything is written
        from exporters.mesh import extract_mesh

        if nerf is not None:
            mesh = nerf.mesh(options.mesh, options.crop_min, options.crop_max)
        else:
            mesh = extract_mesh(splats, [c.camera for c in run.cameras], options.mesh, up=ax.axis_vector(up), log=log,
                                antialiased=run.antialiased)
    mesh_cache: dict[str, object] = {}
    png_written: set[Path] = set()

    def mesh_in(target: str):
        from exporters.mesh_io import transform_mesh

        if target not in mesh_cache:
            mesh_cache[target] = transform_mesh(mesh, ax.export_transform(up, target, options.scale))
        return mesh_cache[target]

    def write_texture(path: Path) -> None:
        from exporters.mesh_io import write_png

        if path not in png_written:
            write_png(mesh.texture, path)
            png_written.add(path)

    def splats_in(target: str) -> dict[str, np.ndarray]:
        if target not in cache:
            cache[target] = transform_splats(splats, ax.export_transform(up, target, options.scale))
        return cache[target]

    results: list[ExportResult] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, fmt in enumerate(formats, 1):
        target = targets[fmt]
        frame = ax.describe(target, up)
        prov = base_prov.with_extra(frame=frame)
        t0 = time.perf_counter()
        paths = [out_dir / name for name in ALL_FILES[fmt]]
        notes: list[str] = []
        count = n
        if fmt == "ply":
            from exporters.ply import write_ply

            write_ply(splats_in(target), paths[0], comments=prov.comment_lines())
        elif fmt == "spz":
            from exporters.spz import write_spz

            s = splats_in(target)
            if sh_degree(s) > 3:
                s = cap_sh_degree(s, 3)
                notes.append("SH capped at degree 3")
            write_spz(
                s, paths[0], antialiased=run.antialiased, sh1_bits=options.spz_sh_bits[0], sh_rest_bits=options.spz_sh_bits[1]
            )
        elif fmt == "splat":
            from exporters.splat import write_splat

            write_splat(splats_in(target), paths[0])
            if sh_degree(splats) > 0:
                notes.append("diffuse colour only")
        elif fmt == "splat-glb":
            from exporters.gltf_splat import write_glb

            s = splats_in(target)
            if sh_degree(s) > 3:
                s = cap_sh_degree(s, 3)
                notes.append("SH capped at degree 3")
            write_glb(s, paths[0], provenance=prov.as_dict())
        elif fmt == "splat-usd":
            from exporters.usd_splat import write_usd

            s = splats_in(target)
            if sh_degree(s) > 3:
                s = cap_sh_degree(s, 3)
                notes.append("SH capped at degree 3")
            write_usd(s, paths[0], up_axis=_usd_up_axis(target, up), provenance=prov.as_dict())
        elif fmt == "cameras":
            if not run.cameras and camera_path is None:
                notes.append("run has no cameras.json: no training cameras")
            write_cameras_usd(
                paths[0],
                run.cameras,
                transforms[fmt],
                up_axis=_usd_up_axis(target, up),
                provenance=prov.as_dict(),
                camera_path=camera_path,
            )
            export_transforms = {f: transforms[f] for f in formats if f != "cameras"}
            export_transforms["cameras.usda"] = transforms[fmt]
            write_cameras_json(
                paths[1],
                run.cameras,
                export_transforms=export_transforms,
                provenance=base_prov.as_dict(),
                camera_path=camera_path,
            )
            count = len(run.cameras) + (len(camera_path.frames) if camera_path else 0)
            frame = f"usda: {frame}; json: scene frame"
        elif fmt in MESH_FORMATS:
            from exporters import mesh_io

            m = mesh_in(target)
            mprov = prov.with_extra(mesh_faces=len(m.faces), mesh_voxel=f"{mesh.stats['voxel']:.6g}")
            if "level" in mesh.stats:
                mprov = mprov.with_extra(mesh_from="nerf density iso-surface", mesh_density_level=f"{mesh.stats['level']:.6g}")
            mprov = mprov.as_dict()
            if fmt == "mesh-glb":
                mesh_io.write_mesh_glb(m, paths[0], provenance=mprov)
            elif fmt == "mesh-obj":
                write_texture(paths[2])
                mesh_io.write_mesh_obj(m, paths[0], texture_name=paths[2].name, provenance=mprov)
            elif fmt == "mesh-usd":
                write_texture(paths[1])
                mesh_io.write_mesh_usd(m, paths[0], paths[1].name, up_axis=_usd_up_axis(target, up), provenance=mprov)
            else:
                mesh_io.write_mesh_usdz(m, paths[0], up_axis=_usd_up_axis(target, up), provenance=mprov)
            count = len(m.faces)
        elif fmt == "points":
            from exporters.nerf_mesh import write_point_ply

            p, nrm, col = nerf.points(options.crop_min, options.crop_max)
            T = transforms[fmt]
            p = p.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
            nrm = nrm.astype(np.float64) @ T[:3, :3].T
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
            write_point_ply(paths[0], p.astype(np.float32), nrm.astype(np.float32), col,
                            comments=prov.with_extra(points_from="nerf surface (transmittance 0.5)").comment_lines())
            count = len(p)
        elif fmt in DYNAMIC_FILES:
            from exporters import sequence as seq

            T = transforms[fmt]
            if fmt == "splat-sequence":
                paths = seq.write_sequence(dynamic, kept_idx, dyn_times, T, out_dir / seq.SEQUENCE_DIR, frame,
                                           options.sh_degree, prov.as_dict(), log=log)
                notes.append(f"{len(dyn_times)} frames")
            elif fmt == "splat4d":
                paths = seq.write_deformation(dynamic, kept_idx, T, out_dir / seq.SPLAT4D_DIR, frame, dyn_times,
                                              options.sh_degree, prov.as_dict())
            else:
                seq.write_usd_sequence(dynamic, kept_idx, dyn_times, T, paths[0], _usd_up_axis(target, up),
                                       options.fps, options.sh_degree, prov.as_dict(), log=log)
                notes.append(f"{len(dyn_times)} time samples at {options.fps:g} fps")
        res = ExportResult(fmt, paths, time.perf_counter() - t0, count, frame, notes)
        results.append(res)
        log(f"[{i}/{len(formats)}] {fmt:<9} {_names(paths)}  {human_size(res.bytes)}  {res.seconds:.2f} s")
    return results


def nerf_splat_formats() -> tuple[str, ...]:
    """Formats that need Gaussians (a NeRF run distils them)."""
    from exporters.nerf_export import SPLAT_FORMATS

    return SPLAT_FORMATS


def _names(paths: Sequence[Path]) -> str:
    """File names for the log and the table; long lists (a frame sequence) shortened."""
    if len(paths) <= 4:
        return ", ".join(p.name for p in paths)
    return f"{paths[0].name}, {paths[1].name} ... {paths[-1].name} ({len(paths)} files)"


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def summary_table(results: Sequence[ExportResult]) -> str:
    """A markdown table of what was written."""
    rows = ["| format | file(s) | size | items | time | frame |", "| --- | --- | --- | --- | --- | --- |"]
    # items: Gaussians (splat formats), cameras (cameras), faces (mesh formats)
    for r in results:
        extra = f" ({'; '.join(r.notes)})" if r.notes else ""
        rows.append(
            f"| {r.format} | {_names(r.paths)} | {human_size(r.bytes)} | {r.gaussians} | "
            f"{r.seconds:.2f} s | {r.frame}{extra} |"
        )
    return "\n".join(rows)

