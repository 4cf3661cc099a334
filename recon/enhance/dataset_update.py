"""Iterative dataset updates during training (Instruct-NeRF2NeRF style): ``recon train SCENE --edit STEP``.

    every --edit-every steps from --edit-start:
        for the next --edit-views training views (cycling through them in order):
            render the current model at the view ─► plugin(render, original frame) ─► replace the view's target

The model keeps training on the edited targets, so an edit that each view's 2D model makes on its
own is consolidated in 3D: renders of the partly edited model feed the next round. The plugin is
any registered one (:mod:`recon.enhance.registry`); a plugin with an ``edit(renders, originals)``
method gets the renders and the original frames (``sd-edit``: an InstructPix2Pix pipeline is
conditioned on the original frame and the instruction, an img2img pipeline redraws the render;
``recolor``: the render blended towards the recoloured original); any other plugin's
``process(renders, None)`` runs on the renders. Plugins that need masks are refused.

The mode is generative whatever the plugin (a render of the model, edited, becomes what the model
is trained to show), so ``--restoration-only`` and a scene's ``{"restoration_only": true}`` refuse
it. The scene's files are never touched: the trainer's :class:`recon.train.callbacks.TrainHandle`
replaces the targets in memory (kept in checkpoints, so ``--resume`` continues exactly). The run's
provenance (``run.json``, the model file, every export) records ``frames: generative``, the plugin
(version, parameters, model hash), the schedule and how many views were replaced at which steps.
"""

from __future__ import annotations

import inspect
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from recon.enhance.provenance import _step_text
from recon.enhance.registry import LoadedStep, load_steps, parse_steps
from recon.errors import ReconError


def load_edit(spec: str, restoration_only: bool = False, scene_dir: Optional[Path] = None) -> LoadedStep:
    """The plugin of ``--edit spec``, after the refusals (one line each): restoration-only (flag or
    the scene's setting), more than one step, an unknown plugin, a plugin that needs masks."""
    from recon.enhance.stage import SETTINGS_FILE, scene_setting_restoration_only

    why = "--restoration-only" if restoration_only else None
    if why is None and scene_dir is not None and Path(scene_dir).is_dir() and scene_setting_restoration_only(scene_dir):
        why = f"{Path(scene_dir) / SETTINGS_FILE} (restoration_only: true)"
    if why is not None:
        raise ReconError(f"--edit {spec}: dataset edits are generative (edited renders of the model become its "
                         f"training targets); refused by {why}")
    if len(parse_steps(spec)) != 1:
        raise ReconError(f"--edit {spec}: give one plugin (NAME[:ARG][:KEY=VALUE...]); chain 2D steps with "
                         "recon process --enhance before training")
    step = load_steps(spec)[0]
    if step.needs_masks:
        raise ReconError(f"--edit {spec}: plugin {step.entry.name} needs masks, which a dataset update does not "
                         "have; use it through recon process --enhance ... --enhance-masks DIR")
    return step


def _compress(steps: list[int]) -> str:
    """``[10, 20, 30, 45]`` -> ``"10-30 every 10, 45"``."""
    out, i = [], 0
    while i < len(steps):
        j = i
        if i + 1 < len(steps):
            d = steps[i + 1] - steps[i]
            while j + 1 < len(steps) and steps[j + 1] - steps[j] == d:
                j += 1
        if j - i >= 2:
            out.append(f"{steps[i]}-{steps[j]} every {steps[i + 1] - steps[i]}")
            i = j + 1
        else:
            out.append(str(steps[i]))
            i += 1
    return ", ".join(out)


class DatasetUpdate:
    """The training callback of ``--edit``: every ``every`` steps from ``start``, ``views`` training
    views (cycling) are rendered, edited by the plugin and replaced as targets."""

    def __init__(self, step: LoadedStep, every: int, start: int = 0, views: int = 1, log=print) -> None:
        if every < 1 or start < 0 or views < 1:
            raise ReconError("--edit-every and --edit-views must be >= 1, --edit-start >= 0")
        self.step, self.every, self.start, self.views, self.log = step, int(every), int(start), int(views), log
        self.plugin = step.plugin
        edit = getattr(self.plugin, "edit", None)
        self._edit = edit if callable(edit) else None
        self._edit_seed = self._edit is not None and "seed" in inspect.signature(self._edit).parameters
        self.seconds = 0.0

    # ---- schedule ---------------------------------------------------------------------------------
    def due(self, step: int, total: int) -> bool:
        return step >= max(self.start, 1) and (step - self.start) % self.every == 0 and step < total

    def chosen(self, step: int, n: int) -> list[int]:
        """The training views edited at ``step``: the next ``views`` in order, cycling."""
        first = self.start if self.start >= 1 else self.every
        r = (step - first) // self.every  # updates before this one
        k = min(self.views, n)
        return sorted({(r * k + j) % n for j in range(k)})

    # ---- callback hooks -------------------------------------------------------------------------------
    def on_start(self, trainer: Any) -> None:
        pass

    def on_step(self, trainer: Any, step: int, stats: dict) -> None:
        if not self.due(step, trainer.cfg.steps):
            return
        import time

        t0 = time.perf_counter()
        self.update(trainer.handle, self.chosen(step, trainer.handle.num_views), seed=step)
        self.seconds += time.perf_counter() - t0

    def on_end(self, trainer: Any, metrics: dict) -> None:
        pass

    def update(self, handle, ks: list[int], seed: int = 0) -> None:
        """Render views ``ks``, edit them, replace their targets. Random states (torch, NumPy,
        Python) are left as they were, so training draws the same samples with or without edits."""
        renders = [handle.render(k, outputs=("rgb",)).rgb.numpy() for k in ks]
        originals = [handle.original(k).image.numpy() for k in ks]
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                if self._edit is not None:
                    out = self._edit(renders, originals, seed=seed) if self._edit_seed else self._edit(renders, originals)
                else:
                    out = self.plugin.process(renders, None)
        except ReconError:
            raise
        except Exception as e:  # a plugin's failure, named, instead of a traceback mid-training
            raise ReconError(f"--edit {self.step.step.spec}: the plugin failed at step {handle.step} "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        if len(out) != len(ks):
            raise ReconError(f"--edit {self.step.step.spec}: the plugin returned {len(out)} images for {len(ks)}")
        for k, r, y in zip(ks, renders, out):
            y = np.asarray(y, np.float32)
            if y.ndim != 3 or y.shape[2] not in (3, 4):
                raise ReconError(f"--edit {self.step.step.spec}: the plugin returned an image of shape {y.shape}")
            y = y[..., :3]
            if y.shape[:2] != r.shape[:2]:  # e.g. a super-resolution model: back to the view's size
                import cv2

                y = cv2.resize(y, (r.shape[1], r.shape[0]), interpolation=cv2.INTER_AREA)
            handle.replace_target(k, np.clip(y, 0.0, 1.0))

    # ---- records ------------------------------------------------------------------------------------
    def provenance(self, trainer: Any) -> dict[str, str]:
        """String fields for the run's provenance (run.json, model file, exports)."""
        hist = trainer.handle.history
        rec = self.step.record()
        out = {
            "enhance_dataset_edit": _step_text(rec),
            "enhance_dataset_edit_schedule": f"every {self.every} steps from step {self.start}, {self.views} view(s) at a time",
        }
        if not hist:
            out["enhance_dataset_edit_replaced"] = "0 (training ended before the first update)"
            return out
        steps = sorted({s for s, _ in hist})
        per = {s: sum(1 for t, _ in hist if t == s) for s in steps}
        counts = sorted(set(per.values()))
        each = f", {counts[0]} view(s) each" if len(counts) == 1 else ""
        n = trainer.handle.num_views
        out["frames"] = "generative"
        out["enhance_dataset_edit_replaced"] = (f"{len(hist)} replacements of {len({k for _, k in hist})}/{n} training views "
                                        f"at steps {_compress(steps)}{each}")
        return out

    def run_record(self, trainer: Any) -> dict[str, Any]:
        """What run.json keeps beside the provenance: the plugin's record and every update."""
        by_step: dict[int, list[str]] = {}
        for s, k in trainer.handle.history:
            by_step.setdefault(s, []).append(trainer.handle.name(k))
        return {"dataset_edits": {"plugin": self.step.record(), "every": self.every, "start": self.start,
                                  "views": self.views, "seconds": round(self.seconds, 2),
                                  "updates": [{"step": s, "views": v} for s, v in sorted(by_step.items())]}}
