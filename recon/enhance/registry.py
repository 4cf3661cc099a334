"""The plugin registry: what maps a batch of frames (optional masks, parameters) to frames.

A plugin is a class (or any factory) called as ``Plugin(arg, **params)``, where ``arg`` is the
text after the first ``:`` of a step (a model file for model-backed plugins) and ``params`` the
``key=value`` parts after it, all strings. The instance has:

* ``name`` (str), ``version`` (str), ``kind``: ``"restore"`` (recovers what the camera saw: denoise,
  deblur, low light, super-resolution, colour) or ``"generate"`` (invents content: inpainting,
  instruction edits). ``--restoration-only`` refuses ``"generate"``.
* ``process(images, masks) -> images``: ``images`` a list of float32 ``[H, W, 3]`` RGB in [0, 1]
  (sRGB, as stored); ``masks`` ``None`` or a list of bool ``[H, W]`` (True = the region to edit);
  returns a list of float32 ``[H', W', 3]`` in [0, 1] (super-resolution changes the size; the stage
  scales the cameras' intrinsics to match).
* optional ``needs_masks`` (bool), ``parameters() -> dict`` (what the manifest records),
  ``model_file`` (a path whose SHA-256 the manifest records), ``description`` (str).

Plugins come from three places, later ones overriding earlier ones by name: the built-ins
(:mod:`recon.enhance.builtins`, :mod:`recon.enhance.models`), the ``recon.enhancers`` and
``recon.generators`` entry-point groups of installed packages, and :func:`register` (local
registration in the running process, e.g. from a script or a test).

Steps are written ``NAME[:ARG][:KEY=VALUE...]`` and chained with commas:
``denoise,sr:model.pth`` or ``denoise:h=12,lowlight:clip=3``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

from recon.errors import ReconError

KINDS = ("restore", "generate")
GROUPS = {"recon.enhancers": "restore", "recon.generators": "generate"}


@dataclass(frozen=True)
class PluginEntry:
    """One registered plugin: its name, the factory, where it came from, its declared kind."""

    name: str
    factory: Callable[..., Any]
    source: str  # "built-in", "entry point (DIST VERSION)", "local"
    kind: str  # declared by the class (or the entry-point group); a model-backed plugin may refine it
    description: str = ""
    version: str = ""


@dataclass
class Step:
    """One parsed step: ``name``, optional ``arg``, ``params`` (strings), and the spec text."""

    name: str
    arg: Optional[str] = None
    params: dict[str, str] = field(default_factory=dict)
    spec: str = ""


_local: dict[str, PluginEntry] = {}


def register(name: str, factory: Callable[..., Any], kind: Optional[str] = None, description: str = "") -> None:
    """Register a plugin in this process under ``name`` (overrides a built-in or an entry point).

    ``kind`` defaults to the factory's ``kind`` attribute."""
    k = kind or getattr(factory, "kind", None)
    if k not in KINDS:
        raise ReconError(f"plugin {name!r}: kind must be 'restore' or 'generate', got {k!r}")
    _local[name] = PluginEntry(name, factory, "local", k, description or _doc(factory), str(getattr(factory, "version", "")))


def unregister(name: str) -> None:
    """Remove a locally registered plugin (no-op when absent)."""
    _local.pop(name, None)


def _doc(obj: Any) -> str:
    d = getattr(obj, "description", "") or (obj.__doc__ or "")
    return d.strip().splitlines()[0] if d.strip() else ""


def _builtins() -> dict[str, PluginEntry]:
    from recon.enhance import builtins, models

    out = {}
    for name, cls in {**builtins.BUILTINS, **models.MODEL_PLUGINS}.items():
        out[name] = PluginEntry(name, cls, "built-in", cls.kind, _doc(cls), str(cls.version))
    return out


def _entry_points(errors: Optional[list[str]] = None) -> dict[str, PluginEntry]:
    out: dict[str, PluginEntry] = {}
    eps = metadata.entry_points()
    for group, default_kind in GROUPS.items():
        for ep in eps.select(group=group):
            dist = getattr(ep, "dist", None)
            where = f"entry point {ep.value} ({dist.name} {dist.version})" if dist is not None else f"entry point {ep.value}"
            try:
                factory = ep.load()
            except Exception as e:  # a broken third-party package must not break recon
                if errors is not None:
                    errors.append(f"{ep.name}: {where} failed to load: {type(e).__name__}: {e}")
                continue
            kind = getattr(factory, "kind", default_kind)
            if kind not in KINDS:
                if errors is not None:
                    errors.append(f"{ep.name}: {where} declares kind {kind!r} (expected restore or generate)")
                continue
            version = str(getattr(factory, "version", "") or (dist.version if dist is not None else ""))
            out[ep.name] = PluginEntry(ep.name, factory, where, kind, _doc(factory), version)
    return out


def available(errors: Optional[list[str]] = None) -> dict[str, PluginEntry]:
    """Every plugin by name: built-ins, then entry points, then local registrations."""
    return {**_builtins(), **_entry_points(errors), **_local}


def parse_steps(text: str) -> list[Step]:
    """``"denoise,sr:model.pth:tile=256"`` -> steps; a bad spec is a :class:`ReconError`."""
    steps = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise ReconError(f"--enhance/--post {text!r}: empty step (steps are NAME[:ARG][:KEY=VALUE], comma-separated)")
        name, *rest = part.split(":")
        arg, params = None, {}
        for r in rest:
            if "=" in r:
                k, v = r.split("=", 1)
                if not k:
                    raise ReconError(f"step {part!r}: parameter {r!r} has no name (write KEY=VALUE)")
                params[k] = v
            elif arg is None:
                arg = r
            else:
                raise ReconError(f"step {part!r}: more than one argument ({arg!r}, {r!r}); parameters are KEY=VALUE")
        steps.append(Step(name.strip(), arg, params, part))
    return steps


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tree_sha256(path: Path) -> str:
    """SHA-256 of a model folder: each file's relative path and content hash, sorted."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + file_sha256(p).encode())
    return h.hexdigest()


@dataclass
class LoadedStep:
    """A step with its plugin instantiated, and what the manifest records about it."""

    step: Step
    plugin: Any
    entry: PluginEntry

    @property
    def kind(self) -> str:
        return str(getattr(self.plugin, "kind", self.entry.kind))

    @property
    def needs_masks(self) -> bool:
        return bool(getattr(self.plugin, "needs_masks", False))

    def record(self) -> dict[str, Any]:
        """The manifest's entry: step, plugin, kind, version, source, parameters, model file + hash."""
        params = self.plugin.parameters() if hasattr(self.plugin, "parameters") else dict(self.step.params)
        rec: dict[str, Any] = {
            "step": self.step.spec, "plugin": self.entry.name, "kind": self.kind,
            "version": str(getattr(self.plugin, "version", self.entry.version) or ""),
            "source": self.entry.source, "parameters": params,
        }
        model = getattr(self.plugin, "model_file", None)
        if model is not None:
            p = Path(model)
            rec["model"] = {"path": str(p.resolve()), "sha256": _tree_sha256(p) if p.is_dir() else file_sha256(p)}
        return rec


def load_steps(text: str, restoration_only: bool = False, why: str = "--restoration-only") -> list[LoadedStep]:
    """Parse and instantiate the steps of ``text``; refuses generators when ``restoration_only``.

    Every error is one line: an unknown plugin lists the installed ones; a generator under
    restoration-only names the step and ``why`` (the flag or the scene setting)."""
    reg = available()
    out = []
    for st in parse_steps(text):
        entry = reg.get(st.name)
        if entry is None:
            names = ", ".join(sorted(reg)) or "none"
            raise ReconError(f"unknown enhancement plugin {st.name!r} in {st.spec!r}; installed: {names} (see `recon plugins`)")
        if restoration_only and entry.kind == "generate":
            raise ReconError(f"{st.spec!r} is a generative plugin ({entry.name}: it invents content); refused by {why}")
        try:
            plugin = entry.factory(st.arg, **st.params)
        except ReconError:
            raise
        except TypeError as e:
            raise ReconError(f"step {st.spec!r}: {e}") from None
        ls = LoadedStep(st, plugin, entry)
        if ls.kind not in KINDS:
            raise ReconError(f"plugin {entry.name!r} declares kind {ls.kind!r} (expected restore or generate)")
        if restoration_only and ls.kind == "generate":  # e.g. a spandrel inpainting model behind "restore:"
            raise ReconError(f"{st.spec!r} is a generative model ({entry.name}: it invents content); refused by {why}")
        out.append(ls)
    return out


def mode_of(steps: list[LoadedStep]) -> str:
    """"generative" when any step generates, else "restoration-only"."""
    return "generative" if any(s.kind == "generate" for s in steps) else "restoration-only"
