"""Selections of a run's primitives (``recon select`` writes them; export and view read them).

``RUN/selections/NAME.npy`` holds a bool array with one entry per primitive of the run's model, in
the model file's order; ``RUN/selections/NAME.json`` says what it was made from::

    {"format": "recon-selection", "version": 1, "name": "chair", "primitives": 81234,
     "selected": 5120, "model": {"file": "splats.ply", "size": ..., "sha1": "..."},
     "how": {"segmenter": "sam2:/models/sam2", "prompt": {...}, "views_used": 38, ...},
     "created": "2026-12-02T17:00:00Z", "recon_version": "0.2.0"}

A selection is tied to the model file it was made on (its SHA-1): after the run is trained further
it no longer applies, and reading it says so.

A *refined* selection (``recon select --refine``, version 2) also holds ``RUN/selections/NAME.ply``:
the run's model fine-tuned so that the selected Gaussians cover the object's masks
(:mod:`recon.priors.refine`). Its labels belong to that model, and :func:`load_selection` returns
it in place of the run's Gaussians; the .json records it under ``"refined"`` (file, size, SHA-1
and how it was made).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recon.errors import ReconError

FORMAT = "recon-selection"
VERSION = 2
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name.endswith((".json", ".npy")):
        raise ReconError(f"--name {name!r}: use letters, digits, '_', '-' or '.' (at most 64, starting with a letter or digit)")
    return name


def selection_paths(run_root: Path, name: str) -> tuple[Path, Path]:
    d = Path(run_root) / "selections"
    return d / f"{name}.npy", d / f"{name}.json"


def write_selection(run_root: Path, model_file: Path, name: str, labels: np.ndarray, how: dict[str, Any],
                    refined: Optional[dict] = None, refine_report: Optional[dict] = None,
                    model_primitives: Optional[int] = None) -> Path:
    """Write ``labels`` (bool, one per primitive) as selection ``name`` of the run; returns the .json
    path. With ``refined`` (a splat dict) the labels are of that model, which is written beside
    them as NAME.ply; ``model_primitives`` is then the run model's count."""
    from datetime import datetime, timezone

    from recon import __version__
    from recon.io_utils import atomic_path, atomic_write_text

    check_name(name)
    npy, meta = selection_paths(run_root, name)
    labels = np.asarray(labels, bool)
    model = {"file": model_file.name, "size": model_file.stat().st_size, "sha1": _sha1(model_file)}
    ply = meta.with_suffix(".ply")
    ref = None
    if refined is not None:
        from recon.models.splats_io import write_ply

        if int(refined["means"].shape[0]) != labels.size:
            raise ValueError(f"{labels.size} labels for a refined model of {int(refined['means'].shape[0])} Gaussians")
        model["primitives"] = int(labels.size if model_primitives is None else model_primitives)
        write_ply(refined, ply, comments=[f"recon selection {name}: the model of {model_file.name}, refined"])
        ref = {"file": ply.name, "size": ply.stat().st_size, "sha1": _sha1(ply), **(refine_report or {})}
    doc = {
        "format": FORMAT, "version": VERSION if ref is not None else 1, "name": name,
        "primitives": int(labels.size), "selected": int(labels.sum()),
        "model": model,
        **({"refined": ref} if ref is not None else {}),
        "how": how,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "recon_version": __version__,
    }
    buf = io.BytesIO()
    np.save(buf, labels, allow_pickle=False)
    with atomic_path(npy) as tmp:
        tmp.write_bytes(buf.getvalue())
    atomic_write_text(meta, json.dumps(doc, indent=2) + "\n")
    if ref is None and ply.is_file():
        ply.unlink()  # a refined selection of the same name, replaced by an unrefined one
    return meta


def read_selection(run_root: Path, spec: str, model_file: Optional[Path], primitives: int) -> tuple[np.ndarray, dict]:
    """The bool mask of selection ``spec`` (a name under RUN/selections, or a path to its .json),
    checked against the model it is applied to (``primitives``: that model's count). The mask of a
    refined selection is over its own model (``doc["refined"]``): use :func:`load_selection`."""
    p = Path(spec)
    if p.suffix == ".json" or p.is_file():
        meta_path = p if p.suffix == ".json" else p.with_suffix(".json")
    else:
        check_name(spec)
        meta_path = selection_paths(run_root, spec)[1]
    if not meta_path.is_file():
        have = sorted(q.stem for q in (Path(run_root) / "selections").glob("*.json")) if (Path(run_root) / "selections").is_dir() else []
        raise ReconError(f"--selection {spec}: no selection {meta_path} (make one with `recon select {run_root} ...`"
                         + (f"; this run has: {', '.join(have)}" if have else "") + ")")
    try:
        doc = json.loads(meta_path.read_text())
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("not a recon selection")
        if int(doc.get("version", 0)) > VERSION:
            raise ValueError(f"version {doc.get('version')} is newer than this recon reads ({VERSION})")
        arr = np.load(meta_path.with_suffix(".npy"), allow_pickle=False)
    except (OSError, ValueError, TypeError) as e:
        raise ReconError(f"{meta_path}: unreadable selection ({' '.join(str(e).split())[:200]})") from None
    if arr.dtype != bool or arr.ndim != 1:
        raise ReconError(f"{meta_path.with_suffix('.npy')}: not a selection (a 1-D bool array)")
    model = doc.get("model") or {}
    expect = int(model.get("primitives", arr.size)) if doc.get("refined") else arr.size
    if expect != primitives:
        raise ReconError(f"--selection {spec}: made for a model of {expect} primitives, this one has {primitives}; "
                         "the run was trained further: run `recon select` again")
    if model_file is not None and model.get("sha1") and model_file.is_file() and model.get("file") == model_file.name:
        if model_file.stat().st_size != model.get("size") or _sha1(model_file) != model["sha1"]:
            raise ReconError(f"--selection {spec}: made for another version of {model_file}; run `recon select` again")
    return arr, doc


def load_selection(run_root: Path, spec: str, model_file: Optional[Path], gaussians: dict) -> tuple[dict, np.ndarray, dict]:
    """Selection ``spec`` applied to the run's model ``gaussians`` (a splat dict): returns the model
    it selects from (the run's, or the refined model saved with the selection), the bool mask over
    that model, and the .json document."""
    n = int(gaussians["means"].shape[0])
    arr, doc = read_selection(run_root, spec, model_file, n)
    ref = doc.get("refined")
    if not ref:
        return gaussians, arr, doc
    from recon.models.splats_io import read_ply

    p = Path(spec)
    meta_path = p if p.suffix == ".json" else p.with_suffix(".json") if p.is_file() else selection_paths(run_root, spec)[1]
    ply = meta_path.with_name(str(ref.get("file", "")))
    if not ply.is_file() or ply.stat().st_size != ref.get("size"):
        raise ReconError(f"--selection {spec}: its refined model {ply} is missing or changed; run `recon select` again")
    g = read_ply(ply)
    if int(g["means"].shape[0]) != arr.size:
        raise ReconError(f"--selection {spec}: {ply} holds {int(g['means'].shape[0])} Gaussians, the selection {arr.size}; "
                         "run `recon select` again")
    return g, arr, doc
