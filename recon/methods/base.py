"""The method interface: what every trainable representation (splats, NeRF, 4D splats, plugins)
implements so that one trainer, one run format and one renderer serve all of them.

A method is a class with a dataclass ``Config`` and the hooks below; the trainer
(:mod:`recon.train.trainer`) knows nothing else about it::

    batch = method.sample(step, gen)            # a whole view (splats), rays (NeRF), view + time (4D)
    out = method.forward(batch, step, need)     # RenderOutput; ``need`` names extra outputs (depth, ...)
    loss = sum(term(out, batch) for term in terms) + sum(method.losses(out, batch, step).values())
    method.before_backward(step, out); loss.backward(); method.after_backward(step, out, progress)

Trained models are saved with :meth:`Method.save` into a run folder and read back, for evaluation,
viewers, exporters and ``recon render``, by :meth:`Method.load_renderer`, which returns a
:class:`Renderer`: ``render(camera, time=None, outputs=("rgb",), background=None) -> RenderOutput``.

Methods are found by name in a registry: the built-in ones, classes registered with
:func:`register_method`, and plugins that declare a ``recon.methods`` entry point
(``name = "package.module:Class"``).
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Protocol, runtime_checkable

import torch

from recon.errors import ReconError

OUTPUTS = ("rgb", "alpha", "depth", "normals")


@dataclass
class RenderOutput:
    """What a method renders.

    Attributes:
        rgb: ``[H, W, 3]`` for a view, ``[R, 3]`` for a ray batch; composited on the background.
        alpha: ``[H, W, 1]`` / ``[R, 1]`` accumulated opacity, or ``None``.
        depth: ``[H, W, 1]`` / ``[R, 1]`` expected z along the camera axis (camera frame), or ``None``.
        normals: ``[H, W, 3]`` world-space unit normals, or ``None``.
        aux: method-specific extras (gsplat's ``info``, sample weights, ...).
    """

    rgb: torch.Tensor
    alpha: Optional[torch.Tensor] = None
    depth: Optional[torch.Tensor] = None
    normals: Optional[torch.Tensor] = None
    aux: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """One training sample.

    Attributes:
        kind: ``"view"`` (a whole image) or ``"rays"``.
        index: training-view number ``k`` (0..n_train-1) the batch comes from (``-1`` for mixed rays).
        target: ``[H, W, 3]`` / ``[R, 3]`` ground-truth colour, composited on ``background``.
        background: ``[3]`` RGB the target and the render are composited on.
        alpha: ``[H, W, 1]`` / ``[R, 1]`` ground-truth coverage of RGBA captures, or ``None``.
        mask: ``[H, W, 1]`` / ``[R, 1]`` 1 = pixel used by the losses, or ``None``.
        view: the :class:`recon.train.data.View` (camera, viewmat, K, time) for view batches.
        rays: method-defined ray tensors for ray batches (origins, directions, ...).
        time: normalised time of the sample for dynamic scenes, or ``None``.
        extras: per-batch data loss terms read (e.g. ``"depth"`` priors).
    """

    kind: str
    index: int
    target: torch.Tensor
    background: torch.Tensor
    alpha: Optional[torch.Tensor] = None
    mask: Optional[torch.Tensor] = None
    view: Any = None
    rays: dict[str, torch.Tensor] = field(default_factory=dict)
    time: Optional[float] = None
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Renderer(Protocol):
    """A trained model that renders any camera (evaluation, viewers, videos, meshes, 2D hooks)."""

    method: str

    def render(self, camera, time: Optional[float] = None, outputs: tuple[str, ...] = ("rgb",),
               background: Optional[torch.Tensor] = None) -> RenderOutput:
        """Render ``camera`` (:class:`recon.scene.cameras.Camera`, OpenCV axes) at ``time``.

        ``background``: ``[3]`` RGB (``None``: black). ``outputs``: which of :data:`OUTPUTS` to fill
        (``rgb`` always). Returns ``[H, W, C]`` tensors on the CPU or the model's device."""
        ...

    def stats(self) -> dict[str, float]:
        """Size figures for reports, e.g. ``{"gaussians": N}``."""
        ...


class Method(abc.ABC):
    """Base class of trainable methods; subclasses override the hooks.

    Class attributes:
        name: registry key (``recon train --method NAME``).
        Config: the method's options dataclass (its fields become ``recon train`` options).
        description: one line for ``--help``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    description: ClassVar[str] = ""
    dynamic: ClassVar[bool] = False
    """Whether the method models time (trains on dynamic captures)."""
    auto_background: ClassVar[str] = "random"
    """What ``--background auto`` trains RGBA captures on: "random" (a colour per step) or "scene" (the
    colour the images are stored on, with an alpha loss; :func:`recon.train.config.training_background`)."""

    def __init__(self, cfg, scene, views, device: torch.device):
        """``cfg``: :class:`recon.train.config.TrainConfig` (``cfg.model`` is this method's Config);
        ``scene``: :class:`recon.scene.scene.Scene`; ``views``: the training
        :class:`recon.train.data.Views`."""
        self.cfg = cfg
        self.scene = scene
        self.views = views
        self.device = device

    # ---- training --------------------------------------------------------------------------------
    def describe_init(self) -> str:
        """One line on how the model was initialised (logged at the start)."""
        return ""

    @abc.abstractmethod
    def sample(self, step: int, gen: torch.Generator) -> Batch:
        ...

    @abc.abstractmethod
    def forward(self, batch: Batch, step: int, need: frozenset[str] = frozenset()) -> RenderOutput:
        ...

    def losses(self, out: RenderOutput, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The method's own regularisers, by name (summed by the trainer)."""
        return {}

    def before_backward(self, step: int, out: RenderOutput) -> None:
        pass

    def after_backward(self, step: int, out: RenderOutput, progress: float) -> None:
        """Optimiser steps and schedules; ``progress`` in [0, 1] (steps or wall-time budget)."""

    def stats(self) -> dict[str, float]:
        """Figures for the progress line and the curves, e.g. ``{"gaussians": N}``."""
        return {}

    # ---- checkpoints and artifacts ---------------------------------------------------------------
    @abc.abstractmethod
    def state_dict(self) -> dict:
        ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        ...

    @abc.abstractmethod
    def renderer(self) -> Renderer:
        """The current model as a :class:`Renderer` (no gradients)."""
        ...

    def render_settings(self) -> dict[str, Any]:
        """Settings every renderer of the saved model must honour (stored in the run manifest)."""
        return {}

    def target_replaced(self, k: int) -> None:
        """Training view ``k``'s target was replaced (:meth:`recon.train.data.Views.replace`, e.g. by a
        dataset-update callback). Methods that read ``views.get(k)`` each step need nothing; methods
        that copied the targets out (ray samplers) refresh that view's pixels here."""

    def refined_cameras(self) -> dict[int, Any]:
        """Training-view number ``k`` -> refined OpenCV c2w ``[4, 4]`` when poses were optimised."""
        return {}

    def gaussians(self) -> Optional[dict[str, torch.Tensor]]:
        """The model as Gaussians in gsplat's names (for viewers and splat exporters), or ``None``
        when the representation is not Gaussians."""
        return None

    @abc.abstractmethod
    def save(self, run_dir: Path, provenance: dict[str, str]) -> dict[str, str]:
        """Write the trained model into ``run_dir`` (recording ``provenance`` where the format has
        room for it); returns ``{role: file name}`` for the manifest
        (``"model"`` is required)."""
        ...

    @classmethod
    @abc.abstractmethod
    def load_renderer(cls, run_dir: Path, artifacts: dict[str, str], render: dict) -> Renderer:
        """Read what :meth:`save` wrote; ``render`` holds the manifest's render settings."""
        ...

    @classmethod
    def load_gaussians(cls, run_dir: Path, artifacts: dict[str, str]) -> Optional[dict[str, torch.Tensor]]:
        """The saved model as Gaussians, or ``None`` when it is not a Gaussian model."""
        return None


# ---- registry -------------------------------------------------------------------------------------
_BUILTIN: dict[str, str] = {
    "splat": "recon.methods.splat:SplatMethod",
    "splat4d": "recon.methods.splat4d:Splat4DMethod",
    "nerf": "recon.methods.nerf:NerfMethod",
}
_REGISTERED: dict[str, type] = {}


def register_method(cls: type) -> type:
    """Register a :class:`Method` subclass under ``cls.name`` (usable as a class decorator)."""
    name = getattr(cls, "name", "")
    if not name or not isinstance(name, str):
        raise ValueError(f"{cls!r} has no name")
    _REGISTERED[name] = cls
    return cls


def unregister_method(name: str) -> None:
    _REGISTERED.pop(name, None)


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep for ep in entry_points(group="recon.methods")}
    except Exception:  # noqa: BLE001 - a broken plugin environment must not break recon
        return {}


def available_methods() -> list[str]:
    names = dict.fromkeys(list(_BUILTIN) + list(_REGISTERED) + list(_entry_points()))
    return list(names)


def get_method(name: str) -> type:
    """The method class registered as ``name``; :class:`ReconError` naming the choices otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    target = _BUILTIN.get(name)
    if target is not None:
        mod, attr = target.split(":")
        return getattr(importlib.import_module(mod), attr)
    eps = _entry_points()
    if name in eps:
        try:
            cls = eps[name].load()
        except Exception as e:  # noqa: BLE001
            raise ReconError(f"method plugin {name!r} ({eps[name].value}) failed to load: {e}") from e
        return cls
    raise ReconError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
