"""Gaussian splats as the viewer needs them: reading a run's PLY and converting for viser.

Splats follow recon's convention (see ARCHITECTURE.md): a dict of tensors with gsplat's names,
``means [N,3]``, ``quats [N,4]`` (wxyz, unnormalised), ``scales [N,3]`` (log), ``opacities [N]``
(logit), ``sh0 [N,1,3]``, ``shN [N,K,3]``.

Reading and writing use the project's one Inria-layout codec, :mod:`recon.models.splats_io`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError

from recon.models.quaternions import quat_to_rotmat_np as quats_to_rotmats  # noqa: F401  (re-exported)
from recon.models.splats import SH_C0
from recon.models.splats_io import read_ply, write_ply


def read_splats(path: Path) -> dict[str, torch.Tensor]:
    """Read an Inria-layout Gaussian PLY into recon's splat dict (float32 tensors on the CPU)."""
    path = Path(path)
    try:
        return read_ply(path)
    except ReconError:
        raise
    except (OSError, ValueError) as e:  # a malformed file: name it and say what is wrong
        raise ReconError(f"cannot read Gaussian splats from {path}: {e}") from e


def write_splats_ply(splats: dict[str, torch.Tensor], path: Path) -> Path:
    """Write splats as an Inria-layout binary PLY (:func:`recon.models.splats_io.write_ply`)."""
    return write_ply(splats, Path(path))


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32) if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)


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
