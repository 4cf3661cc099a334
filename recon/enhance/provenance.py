"""What an enhanced scene records into runs and exports.

``recon train`` on a processed scene copies these string fields into the run's provenance
(``run.json``, ``splats.ply`` comments), and every exporter writes them into its format's metadata
slot (PLY comments, glTF ``asset.extras.recon``, USD ``customLayerData["recon"]``):

* ``frames``: ``original`` (no frame of the training set was changed), ``restoration-only``
  or ``generative`` (at least one generative plugin edited frames);
* ``enhance_steps``: each step as ``plugin version [parameters] model-sha256``;
* ``enhance_frames_changed``: ``changed/total``;
* ``enhance_manifest``: the manifest's path, which lists every frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _step_text(s: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in (s.get("parameters") or {}).items())
    text = f"{s.get('plugin', '?')} {s.get('version', '')} [{params}] ({s.get('kind', '?')})"
    if s.get("model"):
        text += f" model sha256:{s['model'].get('sha256', '?')}"
    return text


def scene_provenance(scene) -> dict[str, str]:
    """Provenance fields of a scene: ``{"frames": "original"}`` unless its frames come from an
    enhancement manifest (``SCENE/enhanced/manifest.json``), then the mode, steps and counts."""
    root = Path(scene.root)
    man_path = root / "enhanced" / "manifest.json"
    edir = os.path.abspath(root / "enhanced" / "images")
    used = [f for f in scene.frames if os.path.abspath(f.image_path).startswith(edir + os.sep)]
    if not man_path.is_file() or not used:
        return {"frames": "original"}
    try:
        man = json.loads(man_path.read_text())
    except (OSError, ValueError):
        return {"frames": "unknown (unreadable enhancement manifest)", "enhance_manifest": str(man_path.resolve())}
    return {
        "frames": str(man.get("mode", "unknown")),
        "enhance_steps": "; ".join(_step_text(s) for s in man.get("steps", [])),
        "enhance_frames_changed": f"{man.get('frames_changed', len(used))}/{man.get('frames_total', len(scene.frames))}",
        "enhance_manifest": str(man_path.resolve()),
    }
