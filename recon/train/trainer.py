"""The one training loop every method plugs into (:class:`recon.methods.base.Method`).

Each step the method samples a batch (a whole view, rays, a view at a time), renders it
(``forward``), the trainer sums the loss terms (:class:`recon.train.losses.LossTerm`: photometric
L1 + D-SSIM with masks, and any extra terms such as depth priors) and the method's own
regularisers, and the method steps its optimisers and schedules. The loop owns what is common to all
methods: seeding, progress, checkpoints (atomic, resumable exactly), Ctrl-C handling, a wall-time
budget and callbacks. It knows nothing method-specific.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from recon.errors import ReconError
from recon.scene.scene import Scene
from recon.train.callbacks import TrainCallback, TrainHandle
from recon.train.config import TrainConfig
from recon.train.data import Views
from recon.train.losses import LossTerm, Photometric

CHECKPOINT_GLOB = "step_*.pt"


def make_method(cfg: TrainConfig, scene: Scene, views: Views, device: torch.device):
    """An instance of the registered method ``cfg.method`` for ``scene``'s training ``views``."""
    cls = check_scene(cfg.method, scene)
    return cls(cfg, scene, views, device)


def default_terms(cfg: TrainConfig, scene: Scene, train_idx: list[int], has_alpha: bool = True) -> list[LossTerm]:
    """The loss terms the options ask for beyond the photometric one (depth and alpha losses);
    ``has_alpha``: whether the training views carry alpha (RGBA or keyed; without, the alpha loss
    is only added when ``--alpha-weight`` asks for it)."""
    from recon.train.config import alpha_weight
    from recon.train.losses import AlphaLoss

    w = alpha_weight(cfg, scene.background) if (has_alpha or cfg.alpha_weight is not None) else 0.0
    alpha = [AlphaLoss(w)] if w > 0 else []
    if cfg.depth_loss == "none":
        return alpha
    have = sum(1 for i in train_idx if scene.frames[i].depth_path is not None)
    if have == 0:
        raise ReconError(f"--depth-loss {cfg.depth_loss}: {scene.root} has no depth maps for its training views "
                         "(depth_file_path in transforms.json, or depths/STEM.npy|png beside images/)")
    from recon.train.losses import DepthLoss

    return [DepthLoss(cfg.depth_loss, cfg.depth_weight, cfg.depth_weight_final)] + alpha


def check_scene(method: str, scene: Scene):
    """The class of ``method``, after checking it can train ``scene`` (a static method refuses a
    dynamic capture rather than blur its motion into one model; one video's frame times, which may
    film a still subject, are left to the static method to ignore)."""
    from recon.methods import get_method

    cls = get_method(method)
    if scene.has_time and not getattr(cls, "dynamic", False) and scene.time_source != "video":
        raise ReconError(
            f"{scene.root}: the frames carry times (a dynamic capture) but method {method!r} is static; "
            "it would blur the motion into one model. Train a static capture, or drop the frames' times "
            "to train one anyway"
        )
    return cls


def capture_notes(method_cls: type, scene: Scene, train_idx: list[int]) -> list[str]:
    """Warnings about what ``scene``'s capture lets ``method_cls`` learn, one line each.

    A dynamic method on a monocular capture (one training view per time, such as a moving-camera
    video) is told what a single camera cannot resolve; a static method on a video's frame times is
    told they are ignored."""
    from recon.scene.info import time_layout

    notes = []
    dynamic = bool(getattr(method_cls, "dynamic", False))
    layout = time_layout([scene.frames[i].time for i in train_idx])
    if dynamic and layout is not None and layout["kind"] == "monocular" and layout["times"] >= 2:
        text = (f"[warn] monocular capture: each of the {layout['times']} training times is seen by one camera, so motion "
                "along the viewing direction and any part seen from one side only are guessed by the motion model, "
                "not measured")
        if scene.time_source == "video":
            text += ("; the held-out frames are other times along the same camera path, not other viewpoints of one "
                     "instant, so their PSNR measures interpolation in time, not novel views")
        notes.append(text)
    if not dynamic and scene.time_source == "video" and scene.has_time:
        notes.append("[train] the frames' times (from the video) are ignored by this static method, which assumes the "
                     "subject does not move; --method splat4d trains a moving subject")
    return notes


def set_threads(n: int) -> None:
    import os

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # noqa: BLE001
        pass


@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    interrupted: bool
    curves: dict = field(default_factory=dict)


class _Interrupt:
    """First Ctrl-C: finish the current step, save, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\n[train] interrupt: saving a checkpoint after this step (Ctrl-C again to abort)", file=sys.stderr)

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class Trainer:
    """Trains ``cfg.method`` on ``scene``'s training split; writes checkpoints under ``run_dir``."""

    def __init__(
        self,
        cfg: TrainConfig,
        scene: Scene,
        run_dir: Path,
        device: Optional[torch.device] = None,
        callbacks: Optional[list[TrainCallback]] = None,
        log: Callable[[str], None] = print,
        terms: Optional[list[LossTerm]] = None,
    ):
        self.cfg = cfg
        self.scene = scene
        self.run_dir = Path(run_dir)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.callbacks = list(callbacks or [])
        self.log = log
        train_idx = scene.indices("train")
        if not train_idx:
            raise ReconError(f"{scene.root}: no training views (every frame is held out)")
        set_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        from recon.scene.backdrop import apply_backdrop_key

        self.backdrop = apply_backdrop_key(scene, cfg.background_key, train_idx, log=log)
        self.views = Views(scene, train_idx, cfg.downscale, with_depth=cfg.depth_loss != "none")
        self.method = make_method(cfg, scene, self.views, self.device)
        for note in capture_notes(type(self.method), scene, train_idx):
            log(note)
        self.handle = TrainHandle(self)
        """What callbacks may do beyond watching: render training views, replace their targets."""
        has_alpha = len(self.views) > 0 and self.views.get(0).alpha is not None  # one capture, one format
        self.terms: list[LossTerm] = [Photometric(cfg.ssim_lambda)] + default_terms(cfg, scene, train_idx, has_alpha)
        self.terms += list(terms or [])
        self.need = frozenset().union(*(t.needs for t in self.terms))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.curves: dict[str, list] = {"step": [], "loss": [], "psnr": [], "num": [], "time": []}
        self.elapsed = 0.0
        self.stop_requested = False
        """Set (e.g. by a callback or a viewer) to stop after the current step, like Ctrl-C."""

    # ---- checkpoints ------------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def latest_checkpoint(self) -> Optional[Path]:
        c = sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB))
        return c[-1] if c else None

    def save_checkpoint(self) -> Path:
        from recon.io_utils import atomic_path

        path = self.ckpt_dir / f"step_{self.step:07d}.pt"
        state = {
            "step": self.step,
            "config_hash": self.cfg.hash(),
            "method": self.method.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "curves": self.curves,
            "elapsed": self.elapsed,
        }
        targets = self.handle.state_dict()
        if targets is not None:  # training targets replaced by a callback (dataset updates)
            state["targets"] = targets
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        for old in sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB))[:-2]:
            old.unlink()
        return path

    def load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise ReconError(f"cannot read checkpoint {path}: {e}; delete it to resume from the one before") from e
        if state.get("config_hash") != self.cfg.hash():
            raise ReconError(
                f"checkpoint {path} was made with different options (or by another recon version); resume "
                "with the run's own options or start a new run with a different --out"
            )
        self.method.load_state_dict(state["method"])
        self.handle.load_state_dict(state.get("targets"))
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.curves = state["curves"]
        self.elapsed = float(state["elapsed"])
        self.step = int(state["step"])

    # ---- the loop -----------------------------------------------------------------------------------
    def _size(self) -> float:
        st = self.method.stats()
        return float(next(iter(st.values()))) if st else 0.0

    def _size_text(self) -> str:
        return "".join(f"{k} {v:,.0f} | " for k, v in self.method.stats().items())

    def progress(self, budget: Optional[float] = None) -> float:
        """How far training is, in [0, 1]: the larger of the step fraction and the fraction of the
        wall-time budget used. Schedules (learning-rate decay, end of densification) follow it, so a
        run cut short by ``--max-minutes`` still anneals and stops densifying in time."""
        p = self.step / max(self.cfg.steps, 1)
        if budget:
            p = max(p, self.elapsed / budget)
        return min(p, 1.0)

    def train(self) -> TrainResult:
        cfg = self.cfg
        for cb in self.callbacks:
            cb.on_start(self)
        budget = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        t_start = time.perf_counter() - self.elapsed
        last_log = 0.0
        win_loss, win_psnr, win_t0, win_steps = 0.0, 0.0, time.perf_counter(), 0
        interrupted = False
        stop_reason = "done"
        with _Interrupt() as intr:
            while self.step < cfg.steps:
                for term in self.terms:
                    if hasattr(term, "progress"):
                        term.progress = self.progress(budget)
                batch = self.method.sample(self.step, self.gen)
                out = self.method.forward(batch, self.step, self.need)
                loss = self.terms[0](out, batch, self.step)
                for term in self.terms[1:]:
                    loss = loss + term(out, batch, self.step)
                for value in self.method.losses(out, batch, self.step).values():
                    loss = loss + value
                l = float(loss.detach())
                if not math.isfinite(l):
                    raise ReconError(f"training diverged at step {self.step + 1} (loss {l}); try a lower learning "
                                     "rate or check the capture's poses")
                self.method.before_backward(self.step, out)
                loss.backward()
                self.method.after_backward(self.step, out, self.progress(budget))
                self.step += 1
                with torch.no_grad():
                    mse = float(((out.rgb.detach().clamp(0, 1) - batch.target) ** 2).mean())
                win_loss += l
                win_psnr += -10 * math.log10(max(mse, 1e-12))
                win_steps += 1
                now = time.perf_counter()
                self.elapsed = now - t_start
                stats = {
                    "step": self.step,
                    "loss": l,
                    "psnr": -10 * math.log10(max(mse, 1e-12)),
                    "elapsed": self.elapsed,
                    **self.method.stats(),
                }
                for cb in self.callbacks:
                    cb.on_step(self, self.step, stats)
                if now - last_log >= cfg.log_every_seconds or self.step == cfg.steps:
                    rate = win_steps / max(now - win_t0, 1e-9)
                    self.curves["step"].append(self.step)
                    self.curves["loss"].append(win_loss / win_steps)
                    self.curves["psnr"].append(win_psnr / win_steps)
                    self.curves["num"].append(self._size())
                    self.curves["time"].append(self.elapsed)
                    eta = (cfg.steps - self.step) / max(rate, 1e-9)
                    if budget is not None:
                        eta = min(eta, max(budget - self.elapsed, 0.0))
                    self.log(
                        f"[train] step {self.step}/{cfg.steps} | loss {win_loss / win_steps:.4f} | "
                        f"psnr {win_psnr / win_steps:.2f} | {self._size_text()}"
                        f"{rate:.1f} it/s | elapsed {_fmt(self.elapsed)} | ETA {_fmt(eta)}"
                    )
                    last_log = now
                    win_loss, win_psnr, win_t0, win_steps = 0.0, 0.0, now, 0
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                    self.save_checkpoint()
                if intr.requested or self.stop_requested:
                    interrupted = True
                    stop_reason = "interrupted"
                    break
                if budget is not None and self.elapsed >= budget:
                    stop_reason = f"wall-time budget of {cfg.max_minutes} min reached"
                    break
        path = self.save_checkpoint()
        if interrupted:
            self.log(f"[train] stopped at step {self.step}; checkpoint {path}; continue with --resume")
        elif stop_reason != "done":
            self.log(f"[train] {stop_reason} at step {self.step}")
        return TrainResult(self.step, self.elapsed, interrupted, self.curves)


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
