"""Reading a trained run folder for export, through the one run reader (:class:`recon.run.RunFolder`).

A recon run (``run.json``) gives the splats, the cameras, the render settings (antialiased) and the
provenance recorded at training. Folders without a manifest (recon 0.1 runs, other 3DGS tools: a
``splats.ply`` or Inria ``point_cloud/iteration_*``, any ``config.json``, a ``cameras.json`` in any
layout :func:`exporters.cameras.read_cameras_json` reads) are exported too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.cameras import NamedCamera, read_cameras_json
from exporters.ply import read_ply_comments
from exporters.provenance import Provenance, from_run
from exporters.splats import as_numpy
from recon.errors import ReconError


@dataclass
class Run:
    """A loaded run.

    Attributes:
        root: the run folder.
        splats: numpy Gaussians (see :func:`exporters.splats.as_numpy`), scene frame.
        config: the parsed ``config.json`` (``None`` when absent).
        cameras: training cameras from ``cameras.json`` (empty when absent).
        provenance: where the model came from.
    """

    root: Path
    splats: dict[str, np.ndarray]
    config: dict[str, Any] | None = None
    cameras: list[NamedCamera] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)

    antialiased: bool = False
    """Whether the model was trained with antialiased rasterization (from the run's manifest)."""
    method: str = "splat"
    """The run's method; a ``nerf`` run has no Gaussians here (``splats`` is empty): the export
    distils them when a splat format is asked for (:mod:`exporters.nerf_export`)."""


def load_run(path: str | Path) -> Run:
    """Load a run folder; raises :class:`ReconError` (one line) when it is missing or invalid."""
    from recon.run import RunFolder

    root = Path(path)
    if root.exists() and not root.is_dir():
        raise ReconError(f"{root}: not a folder (pass a run folder that holds splats.ply)")
    rf = RunFolder.open(root)
    cams_path = rf.path("cameras") or rf.root / "cameras.json"
    cameras = read_cameras_json(cams_path) if cams_path.is_file() else []
    if rf.method == "nerf":
        from exporters.nerf_export import empty_splats

        rf.require_model()
        splats = empty_splats()
    else:
        splats = as_numpy(rf.gaussians())
    config = rf.config_dict
    if rf.is_recon_run:
        prov = from_run(rf.root, config)
        recorded = rf.provenance()
        for k in ("source", "method", "config_hash"):
            if recorded.get(k):
                setattr(prov, k, recorded[k])
        if "recon_version" in recorded:
            prov.extra["trained_with"] = recorded["recon_version"]
        if "date" in recorded:
            prov.extra["trained_at"] = recorded["date"]
        # Which frames trained it: original, restoration-only or generative (recon.enhance.provenance).
        prov.extra.update({k: v for k, v in recorded.items() if k == "frames" or k.startswith("enhance_")})
    else:
        prov = _provenance(rf.root, config)
    return Run(root=rf.root, splats=splats, config=config, cameras=cameras, provenance=prov,
               antialiased=rf.antialiased, method=rf.method)


_RECORDED = ("source", "method", "config_hash", "recon_version", "date")


def _provenance(root: Path, config: dict[str, Any] | None) -> Provenance:
    """The run's provenance: what the trainer recorded (``splats.ply`` comments ``key: value`` or
    ``recon key: value``, or ``metrics.json["provenance"]``) wins over what ``config.json`` implies.

    ``recon_version`` and ``date`` of the export itself stay the exporter's; the trainer's are kept
    as ``trained_with`` and ``trained_at``.
    """
    prov = from_run(root, config)
    recorded: dict[str, str] = {}
    metrics = root / "metrics.json"
    if metrics.is_file():
        try:
            m = json.loads(metrics.read_text())
            if isinstance(m, dict) and isinstance(m.get("provenance"), dict):
                recorded.update({k: str(v) for k, v in m["provenance"].items() if k in _RECORDED})
        except json.JSONDecodeError:
            pass
    for line in read_ply_comments(root / "splats.ply"):
        text = line[len("recon ") :] if line.startswith("recon ") else line
        if ": " in text:
            k, v = text.split(": ", 1)
            if k in _RECORDED and v.strip():
                recorded[k] = v.strip()
    for k in ("source", "method", "config_hash"):
        if k in recorded:
            setattr(prov, k, recorded[k])
    if "recon_version" in recorded:
        prov.extra["trained_with"] = recorded["recon_version"]
    if "date" in recorded:
        prov.extra["trained_at"] = recorded["date"]
    return prov
