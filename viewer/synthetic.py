"""A synthetic run for tests and benchmarks: Gaussians on a four-coloured sphere, a ring of cameras.

``make_run(folder, n)`` writes ``folder/splats.ply`` (Inria layout) and ``folder/cameras.json`` in
the trainer's run layout, so ``recon view folder`` works without training anything.

The sphere (radius 1, centred at the origin, world up +Z) is coloured by quadrant of the horizontal
direction: +x+y red, -x+y green, -x-y blue, +x-y yellow (:data:`QUADRANT_COLOURS`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from viewer.splats import SH_C0, write_splats_ply

QUADRANT_COLOURS = np.array(
    [[0.9, 0.15, 0.1], [0.1, 0.8, 0.2], [0.15, 0.25, 0.9], [0.95, 0.85, 0.1]], dtype=np.float32
)


def quadrant_colour(points: np.ndarray) -> np.ndarray:
    """Colour ``[N, 3]`` of sphere points ``[N, 3]`` by the quadrant of their (x, y) direction."""
    q = np.where(points[:, 0] >= 0, np.where(points[:, 1] >= 0, 0, 3), np.where(points[:, 1] >= 0, 1, 2))
    return QUADRANT_COLOURS[q]


def sphere_splats(n: int = 4000, radius: float = 1.0, sh_degree: int = 0, seed: int = 0,
                  noise: float = 0.0) -> dict[str, torch.Tensor]:
    """``n`` Gaussians evenly spread (Fibonacci lattice) on a sphere, flattened along the normal.

    Returns recon's splat dict; ``shN`` has ``(sh_degree + 1)**2 - 1`` coefficients of small random
    noise (zeros for degree 0) so files have the size of a trained model of that degree.
    ``noise`` (0..1) jitters positions, sizes, colours, opacities and SH like a trained model's
    irregularity, so compressed sizes (SPZ, gzip) are realistic rather than tiny; 0 keeps the
    clean, exactly coloured sphere that tests compare against.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    normals = np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
    means = radius * normals
    spacing = radius * math.sqrt(4.0 * math.pi / n)
    # Disc-shaped Gaussians tangent to the sphere: rotate the local z axis onto the normal.
    zaxis = np.array([0.0, 0.0, 1.0])
    axis = np.cross(zaxis, normals)
    s = np.linalg.norm(axis, axis=1)
    c = normals[:, 2]
    half = 0.5 * np.arctan2(s, c)
    axis = np.where(s[:, None] > 1e-9, axis / np.maximum(s, 1e-12)[:, None], np.array([1.0, 0.0, 0.0]))
    quats = np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * axis], 1)
    scales = np.log(np.array([0.7 * spacing, 0.7 * spacing, 0.1 * spacing]))[None].repeat(n, 0)
    rgb = quadrant_colour(means)
    k = (sh_degree + 1) ** 2 - 1
    shN = ((0.02 + 0.1 * noise) * rng.standard_normal((n, k, 3))) if k else np.zeros((n, 0, 3))
    opac = np.full(n, math.log(0.97 / 0.03))
    if noise > 0:
        means = means + noise * 0.2 * spacing * rng.standard_normal((n, 3))
        scales = scales + noise * 0.3 * rng.standard_normal((n, 3))
        rgb = np.clip(rgb + noise * 0.08 * rng.standard_normal((n, 3)), 0, 1)
        opac = opac + noise * 1.0 * rng.standard_normal(n)
        quats = quats + noise * 0.05 * rng.standard_normal((n, 4))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {
        "means": t(means),
        "quats": t(quats),
        "scales": t(scales),
        "opacities": t(opac),
        "sh0": t(((rgb - 0.5) / SH_C0)[:, None, :]),
        "shN": t(shN),
    }


def look_at_c2w(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """OpenCV camera-to-world ``[4, 4]`` at ``eye`` looking at ``target`` with world ``up``."""
    f = target - eye
    f = f / np.linalg.norm(f)
    x = np.cross(f, up)
    x = x / np.linalg.norm(x)
    y = np.cross(f, x)  # camera y points down
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, f, eye
    return c2w


def ring_cameras(count: int = 8, distance: float = 4.0, height: float = 1.0, width: int = 320, h: int = 240,
                 fov_x_deg: float = 50.0) -> list[dict]:
    """``count`` cameras on a ring around the origin, as ``cameras.json`` entries."""
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    K = [[fx, 0.0, width / 2], [0.0, fx, h / 2], [0.0, 0.0, 1.0]]
    cams = []
    for j in range(count):
        a = 2 * math.pi * j / count + math.radians(20.0)
        eye = np.array([distance * math.cos(a), distance * math.sin(a), height])
        cams.append({"name": f"cam_{j:03d}.png", "c2w": look_at_c2w(eye, np.zeros(3)).tolist(), "K": K,
                     "width": width, "height": h})
    return cams


def make_run(folder: Path, n: int = 4000, sh_degree: int = 0, cameras: int = 8, seed: int = 0,
             noise: float = 0.0) -> Path:
    """Write a synthetic run folder (``splats.ply``, ``cameras.json``, ``config.json``); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_splats_ply(sphere_splats(n, sh_degree=sh_degree, seed=seed, noise=noise), folder / "splats.ply")
    (folder / "cameras.json").write_text(json.dumps(ring_cameras(cameras), indent=1))
    (folder / "config.json").write_text(json.dumps({"method": "splat", "synthetic": "viewer.synthetic.make_run"}))
    return folder
