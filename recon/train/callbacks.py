"""Training callbacks: how a viewer (or anything else) watches training without the trainer knowing it,
and the handle through which a callback may change what training fits.

The trainer calls each callback's hooks. A callback must not change the model; it may render it and
replace training targets through ``trainer.handle`` (a :class:`TrainHandle`): the hook for
dataset updates (Instruct-NeRF2NeRF-style edits, :mod:`recon.enhance.dataset_update`) and other 2D
work on renders of training views. A viewer implements :class:`TrainCallback` and renders the
current model through ``method.render``.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class TrainCallback(Protocol):
    def on_start(self, trainer: Any) -> None:
        """Called once before the first step (``trainer.method`` holds the model)."""

    def on_step(self, trainer: Any, step: int, stats: dict) -> None:
        """Called after every step with ``stats`` (loss, psnr, num_gaussians, it/s, ...)."""

    def on_end(self, trainer: Any, metrics: dict) -> None:
        """Called once after evaluation with the final metrics."""


class TrainHandle:
    """What callbacks may do to a training run besides watching it (``trainer.handle``).

    * :meth:`render`: the current model at a training view (its refined pose when poses are
      optimised) or any camera, through the method's renderer, on the scene background (the
      background :attr:`recon.train.data.View.image` is composited on);
    * :meth:`replace_target`: from the next step on, training view ``k`` fits ``image`` (and
      ``alpha``) instead of its frame; the scene's files are never touched. Every replacement is
      recorded in :attr:`history` and kept in checkpoints, so ``--resume`` continues exactly.

    Method-agnostic: it goes through :meth:`recon.methods.base.Method.renderer` and the trainer's
    :class:`recon.train.data.Views`; methods that copy targets out of the views are told by
    :meth:`recon.methods.base.Method.target_replaced`.
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer
        self.history: list[tuple[int, int]] = []
        """``(step, k)`` of every replacement, in order (``step``: steps trained before it)."""

    @property
    def step(self) -> int:
        return int(self._trainer.step)

    @property
    def num_views(self) -> int:
        return len(self._trainer.views)

    def name(self, k: int) -> str:
        return self._trainer.views.get(k).name

    def target(self, k: int):
        """The view ``k`` as training sees it now (:class:`recon.train.data.View`)."""
        return self._trainer.views.get(k)

    def original(self, k: int):
        """The view ``k`` as the scene stores it, before any replacement."""
        return self._trainer.views.original(k)

    def camera(self, k: int):
        """Training view ``k``'s camera, with its refined pose when poses are optimised."""
        cam = self._trainer.views.cameras[k]
        refined = self._trainer.method.refined_cameras()
        if k in refined:
            c2w = refined[k]
            c2w = c2w.detach().cpu().numpy() if torch.is_tensor(c2w) else c2w
            cam = dataclasses.replace(cam, c2w=c2w)
        return cam

    def render(self, view: Any, time: Optional[float] = None, outputs: tuple[str, ...] = ("rgb", "alpha"),
               background: Optional[torch.Tensor] = None):
        """Render the current model: ``view`` a training-view number ``k`` (its camera and time) or a
        :class:`recon.scene.cameras.Camera`. ``background``: default the scene's. Returns a
        :class:`recon.methods.base.RenderOutput` (``[H, W, C]`` CPU tensors, no gradients)."""
        t = self._trainer
        if isinstance(view, numbers.Integral):
            cam, time = self.camera(view), (t.views.get(view).time if time is None else time)
        else:
            cam = view
        if background is None:
            bg = t.scene.background
            background = torch.tensor(bg if bg is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        with torch.no_grad():
            out = t.method.renderer().render(cam, time=time, outputs=outputs, background=background)
        for f in dataclasses.fields(out):
            v = getattr(out, f.name)
            if torch.is_tensor(v):
                setattr(out, f.name, v.detach().float().cpu())
        return out

    def replace_target(self, k: int, image: Any, alpha: Any = None) -> None:
        """Train view ``k`` on ``image`` (``[H, W, 3]`` in [0, 1], array or tensor, composited on the
        scene background) and, when given, ``alpha`` (``[H, W]``; default: the view's own alpha)
        from the next step on."""
        t = self._trainer
        t.views.replace(k, torch.as_tensor(image), None if alpha is None else torch.as_tensor(alpha))
        t.method.target_replaced(k)
        self.history.append((self.step, int(k)))

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> Optional[dict]:
        """The replaced targets (8-bit) and the history (``None`` when nothing was replaced)."""
        views = self._trainer.views
        if not views.replaced:
            return None
        return {"history": list(self.history), "targets": views.replaced_state()}

    def load_state_dict(self, state: Optional[dict]) -> None:
        t = self._trainer
        for k in t.views.load_replaced_state(state["targets"] if state else {}):
            t.method.target_replaced(k)
        self.history = [(int(s), int(k)) for s, k in state["history"]] if state else []
