"""Synthetic Gaussians and run folders for tests and benchmarks (no training needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from exporters.splats import num_sh_rest


def random_splats(n: int, sh_degree: int = 3, seed: int = 0, extent: float = 2.0) -> dict[str, torch.Tensor]:
    """``n`` random Gaussians distributed like a trained 3DGS model.

    Centres ~ N(0, extent/2) per axis; log-scales ~ N(-4.5, 0.7) (about 1 cm); random rotations
    (unnormalised quaternions); opacity logits ~ N(0.5, 2); DC ~ N(0, 0.8); higher SH ~ N(0, 0.05)
    shrinking with degree, as trained models' view-dependent terms are small. Float32 tensors.
    """
    g = torch.Generator().manual_seed(seed)
    k = num_sh_rest(sh_degree)
    band = torch.tensor([1.0] * 3 + [0.6] * 5 + [0.4] * 7 + [0.3] * 9)[:k]
    return {
        "means": torch.randn(n, 3, generator=g) * (extent / 2),
        "quats": torch.randn(n, 4, generator=g) * 1.5,
        "scales": torch.randn(n, 3, generator=g) * 0.7 - 4.5,
        "opacities": torch.randn(n, generator=g) * 2.0 + 0.5,
        "sh0": torch.randn(n, 1, 3, generator=g) * 0.8,
        "shN": torch.randn(n, k, 3, generator=g) * 0.05 * band[None, :, None],
    }


def orbit_cameras(count: int = 8, radius: float = 4.0, up: Sequence[float] = (0, 0, 1), size: tuple[int, int] = (64, 48)):
    """OpenCV camera-to-world poses ``[count, 4, 4]`` on a circle around the origin, looking at it,
    upright with respect to ``up``, plus a shared ``K [3, 3]`` for an image ``size = (w, h)``."""
    up = np.asarray(up, np.float64)
    up /= np.linalg.norm(up)
    a = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(up, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    poses = []
    for i in range(count):
        t = 2 * np.pi * i / count
        c = radius * (np.cos(t) * e1 + np.sin(t) * e2) + 0.5 * radius * up
        z = -c / np.linalg.norm(c)  # forward: look at the origin
        x = np.cross(z, up)  # right = forward x up  (OpenCV: y = z x x points down)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        p = np.eye(4)
        p[:3, 0], p[:3, 1], p[:3, 2], p[:3, 3] = x, y, z, c
        poses.append(p)
    w, h = size
    K = np.array([[0.8 * w, 0, w / 2], [0, 0.8 * w, h / 2], [0, 0, 1.0]])
    return np.stack(poses), K


def write_run(
    root: str | Path,
    splats: Mapping[str, Any],
    cameras: tuple[np.ndarray, np.ndarray] | None = None,
    size: tuple[int, int] = (64, 48),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """A run folder like the trainer's: ``splats.ply``, ``config.json``, ``cameras.json``."""
    from exporters.ply import write_ply

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


def surface_splats(
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray,
    count: int,
    seed: int = 0,
    opacity: float = 0.98,
) -> dict[str, np.ndarray]:
    """Flat Gaussians lying on a triangle mesh: a splat model whose surface is known exactly.

    ``count`` centres are sampled uniformly by area; each Gaussian is a disc in the triangle's plane
    (standard deviation 0.8 x the mean sample spacing along the surface, 1/20 of that along the
    normal) with the barycentric interpolation of the vertex ``colors`` ``[V, 3]`` (in [0, 1]) as
    its diffuse colour and SH degree 0. Float32 numpy arrays in recon's layout.
    """
    from exporters.splats import logit, rgb_to_dc

    from exporters.mesh_metrics import sample_triangles

    v = np.asarray(vertices, np.float64)
    idx, b, cr, area = sample_triangles(v, faces, count, seed)
    tri = np.asarray(faces, np.int64)[idx]
    pts = np.einsum("nk,nkc->nc", b, v[tri])
    col = np.einsum("nk,nkc->nc", b, np.asarray(colors, np.float64)[tri])
    n = cr[idx] / np.maximum(np.linalg.norm(cr[idx], axis=1, keepdims=True), 1e-30)
    # rotation taking +z onto the normal: q = (1 + cos, z x n), normalised (half-angle form)
    q = np.concatenate([1.0 + n[:, 2:3], -n[:, 1:2], n[:, 0:1], np.zeros((count, 1))], 1)
    flip = q[:, 0] < 1e-6  # normal = -z: half turn about x
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    spacing = float(np.sqrt(area.sum() / count))
    sig = np.log([0.8 * spacing, 0.8 * spacing, 0.04 * spacing])
    return {
        "means": pts.astype(np.float32),
        "quats": q.astype(np.float32),
        "scales": np.broadcast_to(sig, (count, 3)).astype(np.float32),
        "opacities": np.full(count, logit(np.float32(opacity)), np.float32),
        "sh0": rgb_to_dc(col),
        "shN": np.zeros((count, 0, 3), np.float32),
    }
