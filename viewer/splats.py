"""Gaussian splats as the viewer needs them: reading a run's PLY and converting for viser.

Splats follow recon's convention (see ARCHITECTURE.md): a dict of tensors with gsplat's names,
``means [N,3]``, ``quats [N,4]`` (wxyz, unnormalised), ``scales [N,3]`` (log), ``opacities [N]``
(logit), ``sh0 [N,1,3]``, ``shN [N,K,3]``.

Reading prefers ``exporters.ply.read_ply`` (the project's Inria-layout reader) and falls back to a
small ``plyfile`` reader of the same layout, so the viewer works while the exporters evolve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError

SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical-harmonic constant: ``rgb = 0.5 + SH_C0 * sh0``."""


def read_splats(path: Path) -> dict[str, torch.Tensor]:
    """Read an Inria-layout Gaussian PLY into recon's splat dict (float32 tensors on the CPU)."""
    path = Path(path)
    try:
        from exporters.ply import read_ply  # type: ignore[import-not-found]
    except ImportError:
        read_ply = _read_ply_fallback
    try:
        splats = read_ply(path)
    except ReconError:
        raise
    except Exception as e:  # a malformed file: name it and say what is wrong
        raise ReconError(f"cannot read Gaussian splats from {path}: {e}") from e
    missing = {"means", "quats", "scales", "opacities", "sh0"} - set(splats)
    if missing:
        raise ReconError(f"{path} lacks Gaussian properties {sorted(missing)}; expected an Inria-layout 3DGS PLY")
    return splats


def _read_ply_fallback(path: Path) -> dict[str, torch.Tensor]:
    from plyfile import PlyData

    v = PlyData.read(str(path))["vertex"].data
    names = v.dtype.names

    def cols(prefix: str) -> np.ndarray:
        ks = sorted((n for n in names if n.startswith(prefix)), key=lambda n: int(n[len(prefix):]))
        return np.stack([np.asarray(v[k], np.float32) for k in ks], axis=1) if ks else np.zeros((len(v), 0), np.float32)

    n = len(v)
    rest = cols("f_rest_")
    k = rest.shape[1] // 3
    return {
        "means": torch.from_numpy(np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)),
        "quats": torch.from_numpy(cols("rot_")),
        "scales": torch.from_numpy(cols("scale_")),
        "opacities": torch.from_numpy(np.asarray(v["opacity"], np.float32)),
        "sh0": torch.from_numpy(cols("f_dc_")).reshape(n, 1, 3),
        # Inria stores f_rest channel-major: all K coefficients of red, then green, then blue.
        "shN": torch.from_numpy(np.ascontiguousarray(rest.reshape(n, 3, k).transpose(0, 2, 1))),
    }


def write_splats_ply(splats: dict[str, torch.Tensor], path: Path) -> Path:
    """Write splats as an Inria-layout binary PLY (``exporters.ply.write_ply`` when present).

    Used for fixtures and benchmarks; the fallback writes the same layout the Inria code reads.
    """
    path = Path(path)
    try:
        from exporters.ply import write_ply  # type: ignore[import-not-found]
    except ImportError:
        write_ply = _write_ply_fallback
    write_ply(splats, path)
    return path


def _write_ply_fallback(splats: dict[str, torch.Tensor], path: Path) -> None:
    means = _np(splats["means"])
    n = means.shape[0]
    sh0 = _np(splats["sh0"]).reshape(n, 3)
    shN = _np(splats.get("shN", torch.zeros(n, 0, 3)))
    rest = shN.transpose(0, 2, 1).reshape(n, -1)  # channel-major, as Inria stores it
    cols = [means, np.zeros_like(means), sh0, rest, _np(splats["opacities"]).reshape(n, 1),
            _np(splats["scales"]), _np(splats["quats"])]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(rest.shape[1])]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.ascontiguousarray(np.concatenate(cols, axis=1).astype("<f4"))
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % n
    header += "".join(f"property float {name}\n" for name in names) + "end_header\n"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())
    tmp.replace(path)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32) if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)


def quats_to_rotmats(quats: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[N, 3, 3]`` from unnormalised ``wxyz`` quaternions ``[N, 4]``."""
    q = quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    R = np.empty((q.shape[0], 3, 3), dtype=q.dtype)
    R[:, 0, 0] = 1 - 2 * (y * y + z * z)
    R[:, 0, 1] = 2 * (x * y - w * z)
    R[:, 0, 2] = 2 * (x * z + w * y)
    R[:, 1, 0] = 2 * (x * y + w * z)
    R[:, 1, 1] = 1 - 2 * (x * x + z * z)
    R[:, 1, 2] = 2 * (y * z - w * x)
    R[:, 2, 0] = 2 * (x * z - w * y)
    R[:, 2, 1] = 2 * (y * z + w * x)
    R[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def to_viser(splats: dict[str, torch.Tensor], mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Arrays for ``viser``'s ``scene.add_gaussian_splats``.

    Args:
        splats: recon splat dict (see module docstring).
        mask: optional ``[N]`` bool selection (e.g. a crop box).

    Returns:
        ``centers [M,3]``, ``covariances [M,3,3]`` (``R diag(exp(s))^2 R^T``), ``rgbs [M,3]`` in
        [0, 1] from the degree-0 SH term (viser has no view-dependent colour), ``opacities [M,1]``
        (sigmoid of the logits); all float32.
    """
    means = _np(splats["means"])
    quats = _np(splats["quats"])
    scales = _np(splats["scales"])
    opac = _np(splats["opacities"]).reshape(-1)
    sh0 = _np(splats["sh0"]).reshape(-1, 3)
    if mask is not None:
        means, quats, scales, opac, sh0 = means[mask], quats[mask], scales[mask], opac[mask], sh0[mask]
    R = quats_to_rotmats(quats)
    s2 = np.exp(2.0 * scales.astype(np.float64)).astype(np.float32)
    cov = np.einsum("nij,nj,nkj->nik", R, s2, R)
    return {
        "centers": np.ascontiguousarray(means),
        "covariances": np.ascontiguousarray(cov.astype(np.float32)),
        "rgbs": np.clip(0.5 + SH_C0 * sh0, 0.0, 1.0).astype(np.float32),
        "opacities": (1.0 / (1.0 + np.exp(-opac.astype(np.float64)))).astype(np.float32)[:, None],
    }
