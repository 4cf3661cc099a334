"""Training configuration: the options every method shares, the method's own options
(``TrainConfig.model``, a dataclass owned by the method), presets, validation and the hash that
guards checkpoints.

Options whose field metadata says ``{"hash": False}`` do not change what a run computes (threads,
logging, checkpoint cadence, how many views evaluation uses) or may be extended on ``--resume``
(``steps``, ``max_minutes``); every other option is part of :meth:`TrainConfig.hash`, together with
:data:`CONFIG_VERSION`, so a checkpoint is only resumed with the options that made it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import tyro

from recon.errors import ReconError

CONFIG_VERSION = 2
"""Bumped when the meaning of a saved config changes (part of the checkpoint hash)."""

RESUME_EXTENDABLE = ("steps", "max_minutes")
"""Options ``--resume`` may change (every option with ``hash: False`` may change as well)."""

_NOHASH = {"hash": False}


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in the run's manifest)."""

    method: tyro.conf.Suppress[str] = "splat"
    """What to train (a registered method: splat, or a plugin's)."""
    preset: tyro.conf.Suppress[str] = "none"
    steps: int = field(default=30_000, metadata=_NOHASH)
    """Training steps (may be raised on --resume)."""
    downscale: float = 0.0
    """Divide image resolution by this factor (training and evaluation); 0: automatic, so that the
    longest side is at most --max-side pixels."""
    max_side: int = 0
    """With an automatic --downscale: the longest image side in pixels (0: no limit). Set by the presets."""
    seed: int = 0
    """Random seed; a CPU run with the same seed is repeatable."""
    max_minutes: Optional[float] = field(default=None, metadata=_NOHASH)
    """Stop training after this wall time; evaluation and export still run (may change on --resume)."""
    ssim_lambda: float = 0.2
    """Weight of D-SSIM in the photometric loss ((1-l) L1 + l D-SSIM)."""
    depth_loss: Literal["none", "pearson", "ssi", "l1"] = "none"
    """Supervise rendered depth with the scene's depth maps (synthetic GT, nerfstudio depth_file_path,
    depths/): pearson (1 - correlation: any affine depth prior), ssi (L1 after a per-image least-squares
    scale and shift), l1 (metric depth in scene units). Pixels with depth 0 are ignored."""
    depth_weight: float = 0.1
    """Weight of the depth loss at the start of training."""
    depth_weight_final: Optional[float] = None
    """Weight at the end of training, reached linearly (default: --depth-weight throughout)."""
    init_points: Literal["auto", "scene", "triangulate", "random"] = field(default="auto", metadata={"hash_unless": "auto"})
    """Where initial points come from: auto (the scene's sparse points; a scene with poses but no points
    gets points triangulated from its training images with the poses fixed, cached in its work folder,
    unless its images show an object on a plain or transparent background); scene (the scene's points,
    random without); triangulate (always triangulate when the scene has none); random (ignore points)."""
    background: Literal["auto", "random", "white", "black", "scene"] = "auto"
    """Background for RGBA (and keyed, --background-key) captures during training (evaluation uses the
    scene's). auto: splat methods train on the colour the images are stored on (the scene's background:
    white for RGBA renders, the backdrop for keyed ones) with an alpha loss (--alpha-weight, 0.1 unless
    given) that keeps empty space empty; scenes without a background colour use random. random: a random colour per step; white, black, scene: that colour."""
    background_key: Literal["auto", "none", "black", "white"] = field(default="auto", metadata={"hash_unless": "auto"})
    """Give RGB images of an object on a solid backdrop an alpha channel (a colour key: backdrop-coloured
    pixels connected to the border become transparent), so they train like RGBA captures (--background,
    --alpha-weight) and empty space stays empty. auto: Blender/D-NeRF folders whose RGB
    images are on pure black or white (renders saved without alpha); black/white: key that colour on
    any capture; none: train the images as they are."""
    alpha_weight: Optional[float] = field(default=None, metadata={"hash_unless": None})
    """Weight of an L1 loss between rendered and captured alpha on RGBA views (0: off; views without
    alpha: no effect). Makes splats where the frames are transparent fade fast, e.g. after an object
    was removed by inpainting its masks (docs/enhance.md). Default: 0.1 where --background auto trains
    on the scene's background, else off."""
    edit: str = field(default="", metadata={"hash_unless": ""})
    """Edit the training targets during training (Instruct-NeRF2NeRF-style dataset updates, a generative
    mode): PLUGIN[:ARG][:KEY=VALUE...], e.g. sd-edit:FOLDER:prompt=... (a local diffusers img2img or
    InstructPix2Pix pipeline) or recolor:hue=120; each update renders training views with the current
    model, edits them and trains on the result (docs/enhance.md). Off when empty."""
    edit_every: int = field(default=10, metadata={"hash_unless": 10})
    """With --edit: steps between dataset updates."""
    edit_start: int = field(default=0, metadata={"hash_unless": 0})
    """With --edit: the first update comes at this step (train the unedited scene first)."""
    edit_views: int = field(default=1, metadata={"hash_unless": 1})
    """With --edit: training views edited per update (they cycle through the training views in order)."""
    checkpoint_every: int = field(default=1000, metadata=_NOHASH)
    """Write a checkpoint every N steps (0: only at the end)."""
    eval_views: int = field(default=0, metadata=_NOHASH)
    """Evaluate at most this many held-out views (0: all)."""
    log_every_seconds: float = field(default=2.0, metadata=_NOHASH)
    """Seconds between progress lines."""
    threads: int = field(default=0, metadata=_NOHASH)
    """CPU threads for torch and the CPU rasterizer (0: all cores)."""
    model: tyro.conf.Suppress[Any] = None
    """The method's own options (its ``Config`` dataclass)."""

    def __post_init__(self) -> None:
        if self.model is None:
            from recon.methods import get_method

            self.model = get_method(self.method).Config()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """12 hex digits over the options that change results, plus :data:`CONFIG_VERSION`."""
        return hashlib.sha256(json.dumps(hashed_options(self), sort_keys=True).encode()).hexdigest()[:12]

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        """The inverse of :meth:`to_dict`; unknown keys are refused with their names."""
        from recon.methods import get_method

        d = dict(d)
        method = d.get("method", "splat")
        model = d.pop("model", None)
        if model is None and "splat" in d:  # version-1 configs kept the splat options under "splat"
            model = d.pop("splat")
        d.pop("eval_every", None)
        if "max_eval_views" in d:
            d["eval_views"] = d.pop("max_eval_views")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        extra = sorted(set(d) - known)
        if extra:
            raise ReconError(f"unknown training options {', '.join(extra)}")
        mcls = get_method(method).Config
        mknown = {f.name for f in dataclasses.fields(mcls)}
        model = dict(model or {})
        mextra = sorted(set(model) - mknown)
        if mextra:
            raise ReconError(f"unknown {method} options {', '.join(mextra)}")
        return TrainConfig(**d, model=mcls(**model))


def hashed_options(cfg: TrainConfig) -> dict:
    """The options that decide what a run computes, as a JSON-able dict."""
    out: dict[str, Any] = {"config_version": CONFIG_VERSION}
    for f in dataclasses.fields(cfg):
        if f.name == "model" or not f.metadata.get("hash", True) or f.name == "preset":
            continue
        # Options added after runs existed hash only away from the value that reproduces those runs.
        if "hash_unless" in f.metadata and getattr(cfg, f.name) == f.metadata["hash_unless"]:
            continue
        out[f.name] = getattr(cfg, f.name)
    out["model"] = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)
                    if f.metadata.get("hash", True)
                    and not ("hash_unless" in f.metadata and getattr(cfg.model, f.name) == f.metadata["hash_unless"])}
    return out


def changed_options(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Names (``--flag`` style) of hashed options that differ between two configs."""
    a, b = hashed_options(old), hashed_options(new)
    names = [k for k in a if k != "model" and a[k] != b.get(k)]
    names += [k for k in a["model"] if a["model"][k] != b["model"].get(k)]
    return ["--" + n.replace("_", "-") for n in names]


# Each preset sets only what differs from the defaults; explicit options override presets. Method
# options sit under "model" and apply to the method that has them.
PRESETS: dict[str, dict] = {
    # Sized for a laptop CPU: ~15 minutes on 2 cores at 200x200.
    "fast": {
        "steps": 5000,
        "max_side": 640,
        "checkpoint_every": 500,
        "model": {
            "sh_degree": 2,
            "init_num_points": 30_000,
            "refine_start": 300,
            "refine_stop_fraction": 0.6,
            "reset_every": 2000,
            "max_gaussians": 120_000,
        },
    },
    "quality": {
        "steps": 30_000,
        "max_side": 1600,
        "checkpoint_every": 2000,
        "model": {"sh_degree": 3, "max_gaussians": 1_000_000, "init_num_points": 100_000},
    },
    # gsplat's MCMC recipe (Kheradmand et al. 2024) at the fast preset's budget: relocation instead of
    # clone/split, opacity and scale regularisers, denser random initialisation.
    "mcmc": {
        "steps": 5000,
        "max_side": 640,
        "checkpoint_every": 500,
        "model": {
            "strategy": "mcmc",
            "sh_degree": 2,
            "init_num_points": 30_000,
            "refine_start": 300,
            "refine_stop_fraction": 0.6,
            "max_gaussians": 120_000,
            "init_opacity": 0.5,
            "init_scale": 0.1,
            "opacity_reg": 0.01,
            "scale_reg": 0.01,
        },
    },
    "none": {},
}
PRESET_NAMES = ("fast", "quality", "mcmc")


AUTO_ALPHA_WEIGHT = 0.1
"""The alpha loss's weight when ``--background auto`` trains on the scene's background (measured:
docs/training.md, "Training background")."""


def training_background(cfg: TrainConfig, scene_background) -> str:
    """What ``--background`` means for ``cfg.method`` on a scene whose images are stored on
    ``scene_background`` (``None``: no colour): ``auto`` resolves to the method's ``auto_background``
    ("scene" for splat and nerf), and to "random" without a scene colour."""
    if cfg.background != "auto":
        return cfg.background
    from recon.methods import get_method

    mode = getattr(get_method(cfg.method), "auto_background", "random")
    return "random" if scene_background is None else mode


def alpha_weight(cfg: TrainConfig, scene_background) -> float:
    """The alpha loss's weight: ``--alpha-weight`` when given, else :data:`AUTO_ALPHA_WEIGHT` where
    ``--background auto`` trains on the scene's background, else 0."""
    if cfg.alpha_weight is not None:
        return float(cfg.alpha_weight)
    auto_scene = cfg.background == "auto" and training_background(cfg, scene_background) == "scene"
    return AUTO_ALPHA_WEIGHT if auto_scene else 0.0


def preset_config(method: str, preset: str) -> TrainConfig:
    """Defaults of ``method`` with ``preset`` applied (preset keys a method lacks are skipped); the
    method's own ``presets`` entry replaces :data:`PRESETS`' when it has one."""
    if preset not in PRESETS:
        raise ReconError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    from recon.methods import get_method

    cfg = TrainConfig(method=method)
    # A method may define its own presets (a class attribute ``presets``: name -> the same layout).
    p = getattr(get_method(method), "presets", {}).get(preset, PRESETS[preset])
    for k, v in p.items():
        if k != "model":
            setattr(cfg, k, v)
    mfields = {f.name for f in dataclasses.fields(cfg.model)}
    for k, v in p.get("model", {}).items():
        if k in mfields:
            setattr(cfg.model, k, v)
    cfg.preset = preset
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Refuse option values that cannot train, naming the option (before any work starts)."""

    def bad(name: str, value: Any, want: str) -> None:
        raise ReconError(f"--{name.replace('_', '-')} {value}: {want}")

    if cfg.steps < 1:
        bad("steps", cfg.steps, "must be at least 1")
    if not (math.isfinite(cfg.downscale) and cfg.downscale >= 0):
        bad("downscale", cfg.downscale, "must be > 0 (or 0 for automatic)")
    if 0 < cfg.downscale < 1e-3:
        bad("downscale", cfg.downscale, "must be a factor like 1, 2 or 4")
    if cfg.max_side < 0:
        bad("max_side", cfg.max_side, "must be >= 0 pixels")
    if cfg.max_minutes is not None and not (math.isfinite(cfg.max_minutes) and cfg.max_minutes > 0):
        bad("max_minutes", cfg.max_minutes, "must be > 0 minutes")
    if not (0.0 <= cfg.ssim_lambda <= 1.0):
        bad("ssim_lambda", cfg.ssim_lambda, "must be in [0, 1]")
    if cfg.checkpoint_every < 0:
        bad("checkpoint_every", cfg.checkpoint_every, "must be >= 0 (0: only at the end)")
    if cfg.eval_views < 0:
        bad("eval_views", cfg.eval_views, "must be >= 0 (0: all held-out views)")
    for name in ("depth_weight", "depth_weight_final", "alpha_weight"):
        v = getattr(cfg, name)
        if v is not None and not (math.isfinite(v) and v >= 0):
            bad(name, v, "must be a finite number >= 0")
    if cfg.edit_every < 1:
        bad("edit_every", cfg.edit_every, "must be at least 1 step")
    if cfg.edit_start < 0:
        bad("edit_start", cfg.edit_start, "must be >= 0")
    if cfg.edit_views < 1:
        bad("edit_views", cfg.edit_views, "must be at least 1 view")
    if cfg.threads < 0:
        bad("threads", cfg.threads, "must be >= 0 (0: all cores)")
    if not (math.isfinite(cfg.log_every_seconds) and cfg.log_every_seconds >= 0):
        bad("log_every_seconds", cfg.log_every_seconds, "must be >= 0")
    check = getattr(cfg.model, "validate", None)
    if check is not None:
        check()


def save_config(cfg: TrainConfig, path: Path, extra: dict | None = None) -> None:
    """Write ``{"config": ..., "config_hash": ...}`` (+ ``extra``) as JSON, atomically."""
    from recon.io_utils import atomic_write_text

    d = {"config": cfg.to_dict(), "config_hash": cfg.hash()}
    if extra:
        d.update(extra)
    atomic_write_text(path, json.dumps(d, indent=2))
