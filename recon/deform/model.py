"""A trained 4D splat model: canonical Gaussians + control-node deformation, its files and renderer.

Files (written by :func:`save`, read by :func:`load`)::

    canonical.ply            the canonical Gaussians (Inria layout, :mod:`recon.models.splats_io`)
    deformation.safetensors  the nodes (pos, log_radius, trans, rot, dscale, graph) and each
                             Gaussian's node indices ``binding [N, k]``; metadata: format, version,
                             keyframes, with_scale, and (version 2) interp: "cubic" when the
                             keyframes are interpolated by a Catmull-Rom spline (absent: linear,
                             written as version 1)

The canonical PLY alone is a valid (static) splat file; the model at time ``t`` is
``DeformedSplats.at(t)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from recon.deform.nodes import INTERPOLATIONS, ControlNodes
from recon.errors import ReconError

CANONICAL_FILE = "canonical.ply"
DEFORMATION_FILE = "deformation.safetensors"
DEFORMATION_FORMAT = "recon-control-nodes"
DEFORMATION_VERSION = 2


class DeformedSplats:
    """Canonical Gaussians ``splats`` (gsplat names, log scales, logit opacities) moved by
    ``nodes`` through each Gaussian's node indices ``binding [N, k]``; ``nodes=None``: static."""

    def __init__(self, splats: dict, nodes: Optional[ControlNodes], binding: Optional[torch.Tensor],
                 with_scale: bool = True):
        def t(v):
            v = v.detach() if torch.is_tensor(v) else torch.from_numpy(np.ascontiguousarray(v))
            return v.float()

        self.splats = {k: t(v) for k, v in splats.items()}
        self.nodes = nodes
        self.binding = None if binding is None else torch.as_tensor(binding).long()
        self.with_scale = bool(with_scale)
        if nodes is not None:
            n = self.splats["means"].shape[0]
            if self.binding is None or self.binding.shape[0] != n:
                raise ReconError(f"deformation binds {0 if self.binding is None else self.binding.shape[0]} "
                                 f"Gaussians but the canonical model has {n}")
            if self.binding.numel() and int(self.binding.max()) >= nodes.num_nodes:
                raise ReconError(f"deformation binding refers to node {int(self.binding.max())} of {nodes.num_nodes}")

    @property
    def num_primitives(self) -> int:
        return int(self.splats["means"].shape[0])

    def at(self, time: Optional[float]) -> dict[str, torch.Tensor]:
        """The Gaussians at ``time`` in [0, 1] (``None``: 0), as a splat dict (no gradients)."""
        if self.nodes is None:
            return dict(self.splats)
        with torch.no_grad():
            m, q, s = self.nodes.deform(self.splats["means"], self.splats["quats"], self.splats["scales"],
                                        self.binding, 0.0 if time is None else float(time), self.with_scale)
        out = dict(self.splats)
        out.update(means=m, quats=q, scales=s)
        return out


class Splat4DRenderer:
    """The one renderer of ``splat4d`` runs: the Gaussians at the asked time, rendered like a
    static splat model (:class:`recon.models.splats.SplatRenderer`)."""

    method = "splat4d"

    def __init__(self, model: DeformedSplats, antialiased: bool = False, sh_degree: Optional[int] = None):
        self.model = model
        self.antialiased = bool(antialiased)
        self.sh_degree = sh_degree
        self._cache: tuple = (None, None)

    def at(self, time: Optional[float]):
        from recon.models.splats import SplatRenderer

        key = None if time is None else float(time)
        if self._cache[0] != key or self._cache[1] is None:
            self._cache = (key, SplatRenderer(self.model.at(time), self.antialiased, self.sh_degree))
        return self._cache[1]

    def render(self, camera, time: Optional[float] = None, outputs: tuple[str, ...] = ("rgb",),
               background: Optional[torch.Tensor] = None):
        """Render ``camera`` at ``time`` in [0, 1] (``None``: time 0); see
        :meth:`recon.models.splats.SplatRenderer.render` for the outputs."""
        return self.at(time).render(camera, time, outputs, background)

    def gaussians(self, time: Optional[float] = None) -> dict[str, torch.Tensor]:
        """The model at ``time`` as a splat dict (log scales, logit opacities)."""
        return self.model.at(time)

    def stats(self) -> dict[str, float]:
        st = {"gaussians": self.model.num_primitives}
        if self.model.nodes is not None:
            st["nodes"] = self.model.nodes.num_nodes
        return st


def save(model: DeformedSplats, run_dir: Path, comments: Optional[list[str]] = None) -> dict[str, str]:
    """Write ``canonical.ply`` and (when the model deforms) ``deformation.safetensors`` atomically;
    returns ``{role: file name}``."""
    from safetensors.torch import save_file

    from recon.io_utils import atomic_path
    from recon.models.splats_io import write_ply

    run_dir = Path(run_dir)
    write_ply(model.splats, run_dir / CANONICAL_FILE, comments=comments or [])
    out = {"model": CANONICAL_FILE}
    if model.nodes is not None:
        tensors = {k: v.contiguous() for k, v in model.nodes.tensors().items()}
        tensors["binding"] = model.binding.cpu().contiguous()
        cubic = model.nodes.interp != "linear"  # version 1 files (and readers) know linear keyframes only
        meta = {"format": DEFORMATION_FORMAT, "version": str(DEFORMATION_VERSION if cubic else 1),
                "keyframes": str(model.nodes.keyframes), "with_scale": json.dumps(model.with_scale)}
        if cubic:
            meta["interp"] = model.nodes.interp
        with atomic_path(run_dir / DEFORMATION_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        out["deformation"] = DEFORMATION_FILE
    return out


def load(run_dir: Path, artifacts: dict[str, str]) -> DeformedSplats:
    """Read what :func:`save` wrote; :class:`ReconError` naming a missing or bad file."""
    from safetensors import safe_open

    from recon.models.splats_io import read_ply

    run_dir = Path(run_dir)
    splats = read_ply(run_dir / artifacts.get("model", CANONICAL_FILE))
    name = artifacts.get("deformation")
    if name is None:
        return DeformedSplats(splats, None, None)
    path = run_dir / name
    if not path.is_file():
        raise ReconError(f"{path}: the run's deformation file is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any decoding failure is a bad file
        raise ReconError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") != DEFORMATION_FORMAT:
        raise ReconError(f"{path}: not a recon deformation file (format {meta.get('format')!r})")
    if int(meta.get("version", "0")) > DEFORMATION_VERSION:
        raise ReconError(f"{path}: deformation version {meta.get('version')}; this recon reads up to "
                         f"{DEFORMATION_VERSION}: upgrade recon")
    missing = sorted({"pos", "log_radius", "trans", "rot", "dscale", "graph", "binding"} - set(tensors))
    if missing:
        raise ReconError(f"{path}: missing tensors {', '.join(missing)}")
    interp = meta.get("interp", "linear")
    if interp not in INTERPOLATIONS:
        raise ReconError(f"{path}: keyframe interpolation {interp!r} is not one of {', '.join(INTERPOLATIONS)}: upgrade recon")
    nodes = ControlNodes.from_tensors(tensors, interp=interp)
    return DeformedSplats(splats, nodes, tensors["binding"], json.loads(meta.get("with_scale", "true")))
