"""Fake run folders for tests and benchmarks: written like the trainer's, without training.

* :func:`make_run`: Gaussians on a four-coloured sphere and a ring of cameras (``recon view`` works on it);
* :func:`write_run`: any splats, optional cameras, a ``config.json``;
* :func:`ring_cameras` (``cameras.json`` entries) and :func:`orbit_cameras` (poses + ``K``).

Fixtures for recon's own tests: not part of the pipeline, never imported by shipped code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from recon.models.splats_io import write_ply
from recon.scene.conventions import look_at_c2w, orbit_c2ws
from recon.testing.gaussians import sphere_splats


def orbit_cameras(count: int = 8, radius: float = 4.0, up: Sequence[float] = (0, 0, 1), size: tuple[int, int] = (64, 48)):
    """OpenCV camera-to-world poses ``[count, 4, 4]`` on a circle around the origin, looking at it,
    upright with respect to ``up``, plus a shared ``K [3, 3]`` for an image ``size = (w, h)``."""
    poses = orbit_c2ws(count, radius, height=0.5 * radius, up=up)
    w, h = size
    K = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1.0]])
    return poses, K


def write_run(
    root: str | Path,
    splats: Mapping[str, Any],
    cameras: tuple[np.ndarray, np.ndarray] | None = None,
    size: tuple[int, int] = (64, 48),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """A run folder like the trainer's: ``splats.ply``, ``config.json``, ``cameras.json``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_ply(splats, root / "splats.ply")
    cfg = dict(config) if config is not None else {"method": "3dgs", "scene": "synthetic://orbit", "iterations": 100}
    (root / "config.json").write_text(json.dumps(cfg))
    if cameras is not None:
        poses, K = cameras
        w, h = size
        entries = [
            {"name": f"frame_{i:03d}", "width": w, "height": h, "K": K.tolist(), "c2w": p.tolist()} for i, p in enumerate(poses)
        ]
        (root / "cameras.json").write_text(json.dumps({"cameras": entries}))
    return root


def ring_cameras(count: int = 8, distance: float = 4.0, height: float = 1.0, width: int = 320, h: int = 240,
                 fov_x_deg: float = 50.0) -> list[dict]:
    """``count`` cameras on a ring around the origin, as ``cameras.json`` entries."""
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    K = [[fx, 0.0, width / 2], [0.0, fx, h / 2], [0.0, 0.0, 1.0]]
    cams = []
    for j in range(count):
        a = 2 * math.pi * j / count + math.radians(20.0)
        eye = np.array([distance * math.cos(a), distance * math.sin(a), height])
        cams.append({"name": f"cam_{j:03d}.png", "c2w": look_at_c2w(eye, np.zeros(3), (0.0, 0.0, 1.0)).tolist(), "K": K,
                     "width": width, "height": h})
    return cams


def make_run(folder: Path, n: int = 4000, sh_degree: int = 0, cameras: int = 8, seed: int = 0,
             noise: float = 0.0) -> Path:
    """Write a synthetic run folder (``splats.ply``, ``cameras.json``, ``config.json``); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_ply(sphere_splats(n, sh_degree=sh_degree, seed=seed, noise=noise), folder / "splats.ply")
    (folder / "cameras.json").write_text(json.dumps(ring_cameras(cameras), indent=1))
    (folder / "config.json").write_text(json.dumps({"method": "splat", "synthetic": "recon.testing.runs.make_run"}))
    return folder


def small_nerf_config(steps: int, **model: Any):
    """A :class:`recon.train.config.TrainConfig` for short NeRF tests on 32-64 px scenes: SH degree
    1, a 32^3 -> 56^3 grid upsampled at 15 % and 35 %, 2,048 rays per step, no checkpoints or logs;
    ``model`` sets further :class:`recon.methods.nerf.NerfConfig` options."""
    from recon.methods.nerf import NerfConfig
    from recon.train.config import TrainConfig

    m = NerfConfig(**{"sh_degree": 1, "res_init": 32, "res_final": 56, "upsample_at": (0.15, 0.35),
                      "rays_per_batch": 2048, **model})
    return TrainConfig(method="nerf", steps=steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9,
                       threads=2, model=m)
