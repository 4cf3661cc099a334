"""Training configuration: one dataclass, presets, and the resolved config saved with each run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from recon.errors import ReconError


@dataclass
class SplatConfig:
    """Gaussian splat model and optimisation options (gsplat's defaults unless noted)."""

    sh_degree: int = 3
    """Final SH degree; raised by one every ``sh_degree_interval`` steps."""
    sh_degree_interval: int = 1000
    init_num_points: int = 50_000
    """Random initial Gaussians when the scene has no sparse points."""
    init_opacity: float = 0.1
    init_scale: float = 1.0
    lr_means: float = 1.6e-4
    """Scaled by the scene extent; decays exponentially to 1% over training."""
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    strategy: Literal["default", "mcmc"] = "default"
    refine_start: int = 500
    refine_stop_fraction: float = 0.5
    """Densification stops at this fraction of the steps."""
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 2e-4
    prune_opacity: float = 0.005
    absgrad: bool = False
    antialiased: bool = False
    max_gaussians: int = 1_000_000
    """Cap on the number of Gaussians (MCMC's cap_max; the default strategy prunes the faintest)."""
    opacity_reg: float = 0.0
    scale_reg: float = 0.0
    appearance: bool = False
    """Learn a per-image affine colour correction (exposure/white balance) for training views."""
    pose_opt: bool = False
    """Refine the training cameras' poses (a small rotation and translation per image)."""
    lr_pose: float = 1e-4
    """Adam learning rate of the pose corrections (radians; translation in scene extents)."""
    pose_reg: float = 1e-6
    """Weight decay pulling pose corrections back towards the input poses."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved as ``RUN/config.json``)."""

    method: Literal["splat"] = "splat"
    preset: Literal["fast", "quality", "none"] = "none"
    steps: int = 30_000
    downscale: float = 1.0
    """Divide image resolution by this factor (training and evaluation)."""
    max_side: int = 0
    """When ``downscale`` is not given: downscale so the longest image side is at most this many
    pixels (0: no limit). Set by the presets: photos straight off a camera are far larger than
    training needs."""
    seed: int = 0
    max_minutes: Optional[float] = None
    """Stop training at this wall time (evaluation and export still run)."""
    ssim_lambda: float = 0.2
    background: Literal["random", "white", "black", "scene"] = "random"
    """Background for RGBA scenes during training (evaluation uses the scene's background)."""
    checkpoint_every: int = 1000
    eval_every: int = 0
    """Evaluate held-out views every N steps (0: only at the end)."""
    max_eval_views: int = 0
    """Evaluate at most this many held-out views (0: all)."""
    log_every_seconds: float = 2.0
    threads: int = 0
    """Torch/Numba threads (0: all cores)."""
    splat: SplatConfig = field(default_factory=SplatConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        d = self.to_dict()
        d.pop("max_minutes", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @staticmethod
    def from_dict(d: dict) -> "TrainConfig":
        d = dict(d)
        splat = SplatConfig(**d.pop("splat", {}))
        return TrainConfig(**d, splat=splat)


# Each preset sets only what differs from the defaults; explicit options override presets.
PRESETS: dict[str, dict] = {
    # Sized for a laptop CPU: ~15 minutes on 2 cores at 200x200.
    "fast": {
        "steps": 5000,
        "max_side": 640,
        "checkpoint_every": 500,
        "splat": {
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
        "splat": {"sh_degree": 3, "max_gaussians": 1_000_000, "init_num_points": 100_000},
    },
    "none": {},
}


def apply_preset(cfg: TrainConfig, preset: str, overrides: dict) -> TrainConfig:
    """Defaults <- preset <- explicit overrides (a nested dict of only the options the user set)."""
    if preset not in PRESETS:
        raise ReconError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    d = cfg.to_dict()

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(d, PRESETS[preset])
    merge(d, overrides)
    d["preset"] = preset
    return TrainConfig.from_dict(d)


def save_config(cfg: TrainConfig, path: Path, extra: dict | None = None) -> None:
    from recon.io_utils import atomic_write_text

    d = {"config": cfg.to_dict(), "config_hash": cfg.hash()}
    if extra:
        d.update(extra)
    atomic_write_text(path, json.dumps(d, indent=2))
