"""Priors computed beside SfM: monocular depth (Depth Anything V2, or densified SfM points) and
segmentation masks (SAM 2, or GrabCut).

:mod:`recon.priors.depth` holds the model loading, inference, alignment and densification;
:mod:`recon.priors.stage` the stage that writes depth maps into a processed scene
(``recon process SCENE --depth``); :mod:`recon.priors.segment` the segmenters (SAM 2 image and
video, automatic masks, GrabCut) and :mod:`recon.priors.segment_stage` the stage that writes masks
(``recon process SCENE --segment``). See docs/priors.md.
"""

from recon.priors.depth import Alignment, DepthModel, densify, fit_scale_shift, input_size, load_depth_model, predict
from recon.priors.stage import DepthStageOptions, DepthStageResult, write_depth_priors

__all__ = [
    "Alignment", "DepthModel", "DepthStageOptions", "DepthStageResult", "densify", "fit_scale_shift",
    "input_size", "load_depth_model", "predict", "write_depth_priors",
]
