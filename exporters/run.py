"""Reading a trained run folder.

A run folder (``runs/<method>-<timestamp>/``) holds:

* ``splats.ply``: the trained Gaussians in the Inria 3DGS layout (required);
* ``config.json``: the training config (optional; hashed into provenance, and read for the source
  capture, the method and whether rasterization was antialiased);
* ``cameras.json``: the training cameras (optional; any layout :func:`read_cameras_json` reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.cameras import NamedCamera, read_cameras_json
from exporters.ply import read_ply, read_ply_comments
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

    @property
    def antialiased(self) -> bool:
        """Whether the config says rasterization was antialiased: ``antialiased: true`` or gsplat's
        ``rasterize_mode: "antialiased"``, at any depth (e.g. ``{"config": {"splat": {...}}}``)."""

        def find(d: Any) -> bool | None:
            if isinstance(d, dict):
                for k in ("rasterize_mode", "antialiased"):
                    if k in d and not isinstance(d[k], dict):
                        return d[k] is True or str(d[k]).lower() == "antialiased"
                for v in d.values():
                    r = find(v)
                    if r is not None:
                        return r
            return None

        return bool(find(self.config or {}))


def load_run(path: str | Path) -> Run:
    """Load a run folder; raises :class:`ReconError` (one line) when it is missing or invalid."""
    root = Path(path)
    if not root.exists():
        raise ReconError(f"{root}: no such run folder")
    if not root.is_dir():
        raise ReconError(f"{root}: not a folder (pass a run folder that holds splats.ply)")
    ply = root / "splats.ply"
    if not ply.is_file():
        raise ReconError(f"{root}: no splats.ply in the run folder (train first: recon train SCENE)")
    config = None
    cfg_path = root / "config.json"
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise ReconError(f"{cfg_path}: invalid JSON ({e})") from None
        if not isinstance(config, dict):
            raise ReconError(f"{cfg_path}: expected a JSON object")
    cameras = read_cameras_json(root / "cameras.json") if (root / "cameras.json").is_file() else []
    splats = as_numpy(read_ply(ply))
    return Run(root=root, splats=splats, config=config, cameras=cameras, provenance=_provenance(root, config))


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
