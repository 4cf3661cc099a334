"""Training callbacks: how a viewer (or anything else) watches training without the trainer knowing it.

The trainer calls each callback's hooks; a callback must not change the model. A viewer implements
:class:`TrainCallback` and renders the current model through ``method.render``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TrainCallback(Protocol):
    def on_start(self, trainer: Any) -> None:
        """Called once before the first step (``trainer.method`` holds the model)."""

    def on_step(self, trainer: Any, step: int, stats: dict) -> None:
        """Called after every step with ``stats`` (loss, psnr, num_gaussians, it/s, ...)."""

    def on_end(self, trainer: Any, metrics: dict) -> None:
        """Called once after evaluation with the final metrics."""
