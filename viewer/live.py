"""Watch training live: :class:`LiveViewer` is a :class:`recon.train.callbacks.TrainCallback`.

    from viewer.live import LiveViewer
    Trainer(cfg, scene, run_dir, callbacks=[LiveViewer()]).train()

On ``on_start`` it serves the model (as :class:`viewer.server.ViewerServer` does a finished run:
operator UI and WebXR page, same URLs printed); every ``every_seconds`` it copies the Gaussians off
the training thread (a detached CPU copy; the model is never modified) and pushes them to the
operator UI from a background thread, so training waits only for the copy. The WebXR page shows
the latest snapshot when it is (re)loaded.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import torch

from viewer.run import Run, RunCamera, scene_frame
from viewer.server import ViewerOptions, ViewerServer

KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def snapshot(params: Any) -> dict[str, torch.Tensor]:
    """Detached float32 CPU copies of a splat parameter dict (gsplat names)."""
    with torch.no_grad():
        return {k: params[k].detach().to("cpu", torch.float32).clone() for k in KEYS if k in params}


class LiveViewer:
    """Serve the Gaussians being trained; implements ``on_start``/``on_step``/``on_end``."""

    def __init__(self, options: ViewerOptions | None = None, every_seconds: float = 2.0,
                 keep_serving: bool = False, log: Callable[[str], None] = print):
        self.options = options or ViewerOptions()
        self.every_seconds = every_seconds
        self.keep_serving = keep_serving
        self.log = log
        self.server: ViewerServer | None = None
        self._last = 0.0
        self._busy = threading.Event()
        self._thread: threading.Thread | None = None

    def on_start(self, trainer: Any) -> None:
        params = trainer.method.gaussians()
        if params is None or "means" not in params:
            self.log("[view] this method has no Gaussians to show; live viewer off")
            return
        splats = snapshot(params)
        cams = [RunCamera(f.name, f.camera.c2w, f.camera.K, f.camera.width, f.camera.height, image=f.image_path)
                for f in trainer.scene.frames if f.camera is not None and f.split == "train"]
        run = Run(folder=trainer.run_dir, splats_path=None, splats=splats, cameras=cams,
                  antialiased=bool(trainer.method.render_settings().get("antialiased", False)))
        run.frame = scene_frame(splats["means"].numpy().astype("float64"), cams)
        self.server = ViewerServer(run, self.options).start()
        for line in self.server.banner():
            self.log(line)
        self._last = time.monotonic()

    def on_step(self, trainer: Any, step: int, stats: dict) -> None:
        if self.server is None or self._busy.is_set() or time.monotonic() - self._last < self.every_seconds:
            return
        self._last = time.monotonic()
        splats = snapshot(trainer.method.gaussians())
        status = (f"training: step {step:,} · {stats.get('gaussians', len(splats['means'])):,} Gaussians · "
                  f"PSNR {stats.get('psnr', float('nan')):.2f}")
        self._push(splats, status)

    def on_end(self, trainer: Any, metrics: dict) -> None:
        if self.server is None:
            return
        if self._thread is not None:
            self._thread.join()
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))[:200]
        self._push(snapshot(trainer.method.gaussians()), f"training done · {shown}")
        if self._thread is not None:
            self._thread.join()
        if not self.keep_serving:
            self.server.stop()

    def _push(self, splats: dict[str, torch.Tensor], status: str) -> None:
        self._busy.set()

        def work() -> None:
            try:
                self.server.update_splats(splats)
                self.server.ui.set_status(status)
            finally:
                self._busy.clear()

        self._thread = threading.Thread(target=work, name="recon-live-viewer", daemon=True)
        self._thread.start()
