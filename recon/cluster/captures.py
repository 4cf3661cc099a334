"""Which captures a batch holds: every sub-folder of a folder, or the entries of a manifest file.

A manifest is JSON::

    {"options": ["--steps", "2000"],                  # for every capture (optional)
     "captures": [
        "shoe",                                        # a path (relative to the manifest)
        {"path": "/data/chair", "name": "chair-hq",    # a name for its run folder (default: folder name)
         "options": {"preset": "quality", "pose-opt": true}}   # or ["--preset", "quality", "--pose-opt"]
     ]}

Options are ``recon train`` options; later ones win (command line, then the manifest's, then the
capture's own).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from recon.errors import ReconError

RESERVED = ("_batch",)
"""Names a capture may not have (the batch's own folder inside RUNS/)."""
FORBIDDEN_OPTIONS = ("--out", "--resume", "--view", "--no-resume", "--no-view")
"""``recon train`` options the batch sets itself (each capture's run folder and resume state)."""


@dataclass
class Capture:
    """One capture of a batch: its folder, the name of its run folder, its extra train options."""

    name: str
    path: Path
    options: list[str] = field(default_factory=list)


def options_list(opts, where: str) -> list[str]:
    """Train options as command-line words, from a list of words or a ``{name: value}`` mapping."""
    if opts is None:
        return []
    if isinstance(opts, list) and all(isinstance(o, (str, int, float)) for o in opts):
        return [str(o) for o in opts]
    if isinstance(opts, dict):
        out: list[str] = []
        for k, v in opts.items():
            flag = "--" + str(k).lstrip("-").replace("_", "-")
            if v is True:
                out.append(flag)
            elif v is False:
                out.append("--no-" + flag[2:])
            elif isinstance(v, list):
                out += [flag] + [str(x) for x in v]
            else:
                out += [flag, str(v)]
        return out
    raise ReconError(f"{where}: options must be a list of command-line words or an object of option: value")


def check_options(words: list[str], where: str) -> None:
    """Refuse options the batch sets itself."""
    for w in words:
        flag = w.split("=", 1)[0]
        if flag in FORBIDDEN_OPTIONS:
            raise ReconError(f"{where}: {flag} is set by `recon batch` itself (run folders are RUNS/NAME; re-running "
                             "the batch resumes); leave it out")


def _check_name(name: str, where: str) -> None:
    if not name or name in (".", "..") or name in RESERVED or not re.fullmatch(r"[A-Za-z0-9._+-][A-Za-z0-9._+ -]*", name):
        raise ReconError(f"{where}: capture name {name!r} cannot name a run folder; use letters, digits, '.', '_', "
                         "'-' (not '_batch')")


def discover(source: Path) -> list[Capture]:
    """The captures of a folder (each non-hidden sub-folder) or a manifest ``.json`` file."""
    source = Path(source).expanduser()
    if not source.exists():
        raise ReconError(f"{source} does not exist; pass a folder of captures (one sub-folder each) or a manifest .json")
    if source.is_file():
        return _read_manifest(source)
    subs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise ReconError(f"{source} has no sub-folders; each capture of a batch is one sub-folder of CAPTURES "
                         "(or list them in a manifest .json)")
    caps = []
    for p in subs:
        _check_name(p.name, str(p))
        caps.append(Capture(p.name, p.resolve()))
    return caps


def _read_manifest(path: Path) -> list[Capture]:
    if path.suffix.lower() != ".json":
        raise ReconError(f"{path} is a file but not a .json manifest; pass a folder of captures or a manifest .json")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ReconError(f"cannot read manifest {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ReconError(f"manifest {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(doc, list):
        doc = {"captures": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("captures"), list) or not doc["captures"]:
        raise ReconError(f"manifest {path}: expected {{\"captures\": [PATH or {{\"path\": ..., \"name\": ..., "
                         "\"options\": ...}}, ...]}} with at least one capture")
    common = options_list(doc.get("options"), f"manifest {path} options")
    check_options(common, f"manifest {path} options")
    caps, seen = [], set()
    for i, item in enumerate(doc["captures"]):
        where = f"manifest {path} capture {i}"
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise ReconError(f"{where}: expected a path or an object with \"path\"")
        unknown = sorted(set(item) - {"path", "name", "options"})
        if unknown:
            raise ReconError(f"{where}: unknown keys {', '.join(unknown)} (path, name, options)")
        p = Path(item["path"]).expanduser()
        p = (p if p.is_absolute() else path.parent / p).resolve()
        if not p.exists():
            raise ReconError(f"{where}: {p} does not exist")
        name = str(item.get("name") or p.name)
        _check_name(name, where)
        if name in seen:
            raise ReconError(f"{where}: two captures are named {name!r}; give one a \"name\"")
        seen.add(name)
        own = options_list(item.get("options"), f"{where} options")
        check_options(own, where)
        caps.append(Capture(name, p, common + own))
    return caps
