"""``recon process SCENE [--out DIR] [--depth --depth-model PATH|ID|sfm] [--enhance STEPS]``: photos
or videos to posed, undistorted frames (SfM), optionally with monocular depth priors
(docs/priors.md) and enhanced frames (docs/enhance.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from recon.sfm.options import SfmOptions


def main(
    scene: tyro.conf.Positional[Path],
    out: Optional[Path] = None,
    sfm: Annotated[SfmOptions, tyro.conf.OmitArgPrefixes] = SfmOptions(),
    quiet: bool = False,
    depth: bool = False,
    depth_model: Optional[str] = None,
    depth_resolution: int = 518,
    depth_batch_size: int = 4,
    depth_align: Literal["auto", "depth", "inverse", "none"] = "auto",
    depth_fill: Literal["none", "nearest"] = "none",
    depth_device: str = "auto",
    enhance: Optional[str] = None,
    enhance_masks: Optional[Path] = None,
    enhance_mask_ids: tuple[int, ...] = (),
    enhance_batch_size: int = 4,
    restoration_only: bool = False,
) -> int:
    """Run structure from motion on a folder of photos and/or videos (or one video file).

    Writes OUT (default SCENE/recon, or a work folder under ~/.cache/recon/work when SCENE cannot
    be written, e.g. photos on read-only media; see docs/sfm.md): images/ (undistorted frames), sparse/0/ (COLMAP model, SfM
    frame), transforms.json + points.ply (nerfstudio format, normalised frame: +z up, cameras in a
    unit sphere unless a metric scale is given), sfm_report.{json,txt,png}. Originals are never
    modified; features and matches are cached in OUT/.cache for re-runs.

    Args:
        scene: folder of photos and/or videos, or a single video file.
        out: output folder (default: SCENE/recon, or a work folder when SCENE is not writable).
        sfm: SfM options.
        quiet: print nothing but errors.
        depth: also write depth priors (docs/priors.md): ``depths/STEM.npy`` (float16, scene units,
            0 = unknown), ``depths_preview/STEM.png``, and ``depth_file_path`` in the processed
            transforms.json, so ``recon train OUT --depth-loss ssi`` uses them. A scene that already
            has poses gets a processed copy in OUT (links to its images); it is never modified.
        depth_model: a Depth Anything V2 folder (save_pretrained layout) or a model ID already in the
            Hugging Face cache (nothing is downloaded), or "sfm": the SfM points densified per image,
            no weights needed. Implies --depth.
        depth_resolution: short side of the depth network's input (rounded to multiples of 14).
        depth_batch_size: images per depth forward pass.
        depth_align: scale/shift fit to the SfM depths: "auto" (inverse depth for relative models,
            depth for metric ones), "depth", "inverse" or "none" (metric models: metres as predicted).
        depth_fill: --depth-model sfm only: pixels outside the SfM points' hull, "none" (unknown) or "nearest".
        depth_device: torch device for the depth model ("auto": CUDA when available, else CPU).
        enhance: 2D steps run on the posed frames before training (docs/enhance.md), comma-separated
            ``NAME[:ARG][:KEY=VALUE]``: e.g. ``denoise,sr:model.pth``; `recon plugins` lists them. The
            processed frames go to ``OUT/enhanced/images`` with ``OUT/enhanced/manifest.json``; the
            originals are never modified and ``recon train OUT`` trains on the processed frames.
        enhance_masks: folder of masks named after the frames (STEM.png, nonzero = region to edit)
            for generative steps (inpaint).
        enhance_mask_ids: only these mask values select the region (e.g. object ids).
        enhance_batch_size: frames per plugin call.
        restoration_only: refuse generative plugins (inpainting, edits): exit 2. Also set per scene
            by ``{"restoration_only": true}`` in SCENE/recon.json.
    """
    from recon.errors import ReconError
    from recon.sfm.pipeline import command_line, print_progress, process

    log = None if quiet else print_progress
    depth = depth or depth_model is not None
    if depth:  # check the model before minutes of SfM
        from recon.priors.depth import MISSING_WEIGHTS_HINT, check_model_folder

        if depth_model is None:
            raise ReconError(f"--depth needs --depth-model: {MISSING_WEIGHTS_HINT}")
        if depth_model.lower() != "sfm":
            check_model_folder(depth_model)
    steps = None
    if enhance is not None:  # load the plugins (and refuse generators) before minutes of SfM
        from recon.enhance.stage import check_masks, check_steps

        steps = check_steps(enhance, restoration_only, scene if scene.is_dir() else None)
        check_masks(steps, enhance_masks)
    elif restoration_only or enhance_masks is not None:
        raise ReconError("--restoration-only and --enhance-masks apply to --enhance STEPS; pass --enhance")
    argv = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "process" else [str(scene)]
    result = process(scene, out, options=sfm, log=log, command=command_line(argv))
    if steps is not None:
        from recon.enhance.stage import EnhanceOptions, enhance_scene

        eopts = EnhanceOptions(steps=enhance, masks=enhance_masks, mask_ids=tuple(enhance_mask_ids),
                               restoration_only=restoration_only, batch_size=enhance_batch_size, force=sfm.force)
        # Like depth: a recon output is updated in place, a posed input scene gets a processed copy.
        result = enhance_scene(result, out if out is not None and Path(result) != Path(out) else None, eopts, steps, log).out_dir
    if depth:
        from recon.priors.stage import DepthStageOptions, write_depth_priors

        dopts = DepthStageOptions(
            model=depth_model, resolution=depth_resolution, batch_size=depth_batch_size, align=depth_align,  # type: ignore[arg-type]
            fill=depth_fill, device=depth_device, force=sfm.force,
        )
        # A recon output is updated in place; a posed input scene (returned unchanged) gets a
        # processed copy in OUT (default: where `process` would write).
        write_depth_priors(result, out if out is not None and Path(result) != Path(out) else None, dopts, log)
    return 0
