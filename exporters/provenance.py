"""Where an exported asset came from: source capture, method, config hash, recon version, date.

Every exporter records the same fields in its format's metadata slot: PLY ``comment`` lines, SPZ
(no metadata slot in v3: a sidecar is not written; the CLI's ``cameras.json`` carries it), glTF
``asset.extras.recon``, USD ``customLayerData["recon"]``, ``cameras.json["provenance"]``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

# Keys of a run's config.json that may name the source capture / the method, first match wins.
_SOURCE_KEYS = ("source", "scene", "scene_dir", "data", "data_dir", "capture", "input", "dataset")
_METHOD_KEYS = ("method", "model", "model_type", "algorithm")


@dataclass
class Provenance:
    """Origin of an export.

    Attributes:
        source: the capture the model was trained on (a path or name; "unknown" if not recorded).
        method: the training method (e.g. "3dgs"; "unknown" if not recorded).
        config_hash: first 16 hex digits of SHA-256 over the run's config.json, canonicalised
            (sorted keys, no whitespace); "none" when the run has no config.
        recon_version: version of recon that wrote the export.
        date: export time, ISO 8601 in UTC.
        run: the run folder the model was read from ("" when exporting in-memory splats).
        extra: more string fields to record (e.g. the export axes).
    """

    source: str = "unknown"
    method: str = "unknown"
    config_hash: str = "none"
    recon_version: str = ""
    date: str = ""
    run: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.recon_version:
            from recon import __version__

            self.recon_version = __version__
        if not self.date:
            self.date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

    def as_dict(self) -> dict[str, str]:
        """Flat ``{field: str}`` (``extra`` merged in), stable order."""
        d = {k: str(v) for k, v in asdict(self).items() if k != "extra"}
        d.update({str(k): str(v) for k, v in self.extra.items()})
        return d

    def with_extra(self, **kw: Any) -> "Provenance":
        """A copy with more ``extra`` fields."""
        extra = dict(self.extra)
        extra.update({k: str(v) for k, v in kw.items()})
        return Provenance(self.source, self.method, self.config_hash, self.recon_version, self.date, self.run, extra)

    def comment_lines(self) -> list[str]:
        """``"recon <key>: <value>"`` lines, single-line and ASCII (for PLY comments); empty values skipped."""
        out = []
        for k, v in self.as_dict().items():
            if not v.strip():
                continue
            text = f"recon {k}: {v}".replace("\r", " ").replace("\n", " ")
            out.append(text.encode("ascii", "backslashreplace").decode("ascii"))
        return out

    @staticmethod
    def from_comment_lines(lines: list[str]) -> "Provenance | None":
        """Parse :meth:`comment_lines` back (``None`` when there are none)."""
        d: dict[str, str] = {}
        for line in lines:
            if line.startswith("recon ") and ": " in line:
                k, v = line[len("recon ") :].split(": ", 1)
                d[k] = v
        if not d:
            return None
        known = {k: d.pop(k) for k in ("source", "method", "config_hash", "recon_version", "date", "run") if k in d}
        return Provenance(**known, extra=d)


def config_hash(config: Mapping[str, Any] | None) -> str:
    """First 16 hex digits of SHA-256 over canonical JSON of ``config`` ("none" for no config)."""
    if config is None:
        return "none"
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _find(config: Mapping[str, Any], keys: tuple[str, ...], depth: int = 0) -> str | None:
    """First string value under one of ``keys``, at the top level first, then in nested sections."""
    for k in keys:
        v = config.get(k)
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v):
            return str(v)
        if isinstance(v, Mapping):  # e.g. {"data": {"path": ...}}
            for sub in ("path", "dir", "root", "name"):
                if isinstance(v.get(sub), str) and v[sub]:
                    return v[sub]
    if depth < 3:
        for v in config.values():
            if isinstance(v, Mapping):
                found = _find(v, keys, depth + 1)
                if found is not None:
                    return found
    return None


def from_run(run_dir: str | Path, config: Mapping[str, Any] | None) -> Provenance:
    """Provenance of a run folder ``runs/<method>-<timestamp>/`` from its ``config.json``.

    The method falls back to the folder name's part before the first "-".
    """
    run_dir = Path(run_dir)
    source = _find(config, _SOURCE_KEYS) if config else None
    method = _find(config, _METHOD_KEYS) if config else None
    if method is None and "-" in run_dir.resolve().name:
        method = run_dir.resolve().name.split("-", 1)[0]
    return Provenance(
        source=source or "unknown",
        method=method or "unknown",
        config_hash=config_hash(config),
        run=str(run_dir.resolve()),
    )
