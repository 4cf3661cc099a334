"""``recon process SCENE [--out DIR] [--depth --depth-model PATH|ID|sfm] [--segment --segment-model PATH|ID|grabcut]
[--enhance STEPS]``: photos or videos to posed, undistorted frames (SfM), optionally with monocular
depth priors, segmentation masks (docs/priors.md) and enhanced frames (docs/enhance.md)."""

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
    segment: bool = False,
    segment_model: Optional[str] = None,
    segment_prompt: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = (),
    segment_negative: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = (),
    segment_box: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = (),
    segment_mode: Literal["drop", "keep"] = "drop",
    segment_points_per_side: int = 16,
    segment_min_score: float = 0.8,
    segment_min_stability: float = 0.9,
    segment_device: str = "auto",
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
        segment: also write segmentation masks (docs/priors.md) under ``segmentation/``. With
            prompts (``--segment-prompt``/``--segment-box`` on one frame), one object is followed
            through every frame and each frame's ``mask_path`` points at a training mask that drops
            the object from the loss (or keeps only it, ``--segment-mode keep``). Without prompts,
            SAM 2's automatic masks are written as id maps (``segmentation/ids/STEM.png``).
        segment_model: a SAM 2 folder (save_pretrained layout, model_type sam2_video for
            propagation) or a model ID already in the Hugging Face cache (nothing is downloaded), or
            "grabcut": GrabCut from the box, propagated frame to frame, no weights. Implies --segment.
        segment_prompt: FRAME:x,y, a click on the object in pixels of that frame's image (FRAME: the
            image's name, stem or index); repeat for more clicks. A suffix @N (FRAME:x,y@2) is for
            object N: several objects are followed at once (prompt each on one common frame).
        segment_negative: FRAME:x,y[@N], a click on what is not the object.
        segment_box: FRAME:x0,y0,x1,y1[@N], a box around the object (one per frame and object).
        segment_mode: "drop": leave the objects out of the training loss (people, cars); "keep":
            train only the objects.
        segment_points_per_side: automatic masks: prompts on an N x N grid.
        segment_min_score: automatic masks: least SAM 2 predicted IoU a mask needs.
        segment_min_stability: automatic masks: least stability score (IoU of the mask at logit
            thresholds +1 and -1).
        segment_device: torch device for SAM 2 ("auto": CUDA when available, else CPU).
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
    segment = segment or segment_model is not None
    sopts = None
    if segment:  # check the model and the prompts' syntax before minutes of SfM
        from recon.priors.segment import SEGMENT_HINT, AutoMaskOptions
        from recon.priors.segment_stage import SegmentStageOptions, check_options

        if segment_model is None:
            raise ReconError(f"--segment needs --segment-model: {SEGMENT_HINT}")
        sopts = SegmentStageOptions(
            model=segment_model, prompts=tuple(segment_prompt), negatives=tuple(segment_negative), boxes=tuple(segment_box),
            mode=segment_mode, device=segment_device, force=sfm.force,
            auto=AutoMaskOptions(points_per_side=segment_points_per_side, pred_iou=segment_min_score,
                                 stability=segment_min_stability),
        )
        check_options(sopts)
    elif segment_prompt or segment_negative or segment_box:
        raise ReconError("--segment-prompt, --segment-negative and --segment-box need --segment-model PATH|ID|grabcut")
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
        result = write_depth_priors(result, out if out is not None and Path(result) != Path(out) else None, dopts, log).out_dir
    if sopts is not None:
        from recon.priors.segment_stage import write_segment_priors

        # After depth: its processed copy (if any) is a recon output, updated in place.
        write_segment_priors(result, out if out is not None and Path(result) != Path(out) else None, sopts, log)
    return 0
