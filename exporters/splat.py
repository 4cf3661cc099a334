"""antimatter15 ``.splat``: 32 bytes per Gaussian, no header, no SH beyond the diffuse colour.

Layout per Gaussian (little endian), as antimatter15/splat's ``convert.py`` writes it::

    float32 x, y, z            position
    float32 sx, sy, sz         linear scales (exp of the log scales)
    uint8   r, g, b, a         (0.5 + SH_C0 * sh0) * 255 and sigmoid(opacity) * 255, clipped, truncated
    uint8   qw, qx, qy, qz     unit quaternion * 128 + 128, clipped, truncated

Gaussians are sorted by ``exp(sum of log scales) * sigmoid(opacity)`` (volume times opacity),
largest first, which lets viewers stream the most visible ones first. Coordinates are stored as
given; the web viewers that read .splat expect the 3DGS training frame (``recon export`` writes the
scene frame by default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from exporters.atomic import write_bytes_atomic
from exporters.splats import SH_C0, as_numpy
from recon.errors import ReconError
from recon.models.splats_io import check_finite

ROW = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert ROW.itemsize == 32


def sort_order(splats: Mapping[str, np.ndarray]) -> np.ndarray:
    """Indices sorting Gaussians by volume x opacity, descending (antimatter15's order; stable)."""
    key = np.exp(splats["scales"].astype(np.float64).sum(axis=1)) / (1.0 + np.exp(-splats["opacities"].astype(np.float64)))
    return np.argsort(-key, kind="stable")


def encode_splat(splats: Mapping[str, Any]) -> bytes:
    """``.splat`` bytes for recon Gaussians (SH beyond degree 0 is dropped)."""
    s = as_numpy(splats)
    order = sort_order(s)
    n = s["means"].shape[0]
    rows = np.empty(n, ROW)
    rows["pos"] = s["means"][order]
    rows["scale"] = np.exp(s["scales"][order].astype(np.float64)).astype(np.float32)
    rgb = 0.5 + SH_C0 * s["sh0"][order, 0, :].astype(np.float64)
    alpha = 1.0 / (1.0 + np.exp(-s["opacities"][order].astype(np.float64)))
    rows["rgba"] = np.clip(np.concatenate([rgb, alpha[:, None]], axis=1) * 255.0, 0, 255).astype(np.uint8)
    q = s["quats"][order].astype(np.float64)
    nrm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(nrm > 0, q / np.where(nrm > 0, nrm, 1), np.array([1.0, 0, 0, 0]))
    rows["rot"] = np.clip(q * 128.0 + 128.0, 0, 255).astype(np.uint8)
    return rows.tobytes()


def write_splat(splats: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`encode_splat` output to ``path`` atomically; returns the path."""
    path = Path(path)
    write_bytes_atomic(path, encode_splat(splats))
    return path


def decode_splat(data: bytes, name: str = "<bytes>") -> dict[str, torch.Tensor]:
    """Decode ``.splat`` bytes into recon Gaussians (SH degree 0, in file order).

    Opacity bytes of 0 and 255 decode to logits of +-(logit of 0.5/255 from the edge), so the
    result stays finite.
    """
    if len(data) % 32:
        raise ReconError(f"{name}: .splat size {len(data)} is not a multiple of 32 bytes")
    rows = np.frombuffer(data, ROW)
    n = rows.shape[0]
    rgba = rows["rgba"].astype(np.float64) / 255.0
    a = np.clip(rgba[:, 3], 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    out = {
        "means": rows["pos"].astype(np.float32),
        "quats": ((rows["rot"].astype(np.float32) - 128.0) / 128.0),
        "scales": np.log(np.maximum(rows["scale"].astype(np.float64), 1e-30)).astype(np.float32),
        "opacities": np.log(a / (1.0 - a)).astype(np.float32),
        "sh0": ((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32).reshape(n, 1, 3),
        "shN": np.zeros((n, 0, 3), np.float32),
    }
    check_finite(out, name)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def read_splat(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.splat`` file (see :func:`decode_splat`)."""
    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such .splat file")
    return decode_splat(path.read_bytes(), str(path))
