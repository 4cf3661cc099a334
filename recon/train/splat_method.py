"""The 3D Gaussian splat method: model, optimisers, densification strategy and rendering.

A method is what the one training loop (:mod:`recon.train.trainer`) plugs in. It exposes:
``render(view_or_camera, ...)``, ``train_render(view, step, background)``, ``before_backward``,
``after_backward`` (optimiser step and strategy), ``num_primitives``, and ``state_dict`` /
``load_state_dict`` for checkpoints.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from recon.models import splats as splat_model
from recon.scene.scene import Scene
from recon.train import gsplat_cpu
from recon.train.config import TrainConfig
from recon.train.data import View

PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def estimate_init_box(scene: Scene) -> tuple[np.ndarray, float]:
    """Centre ``[3]`` and half-size of a box the scene's content is likely to occupy.

    Object-centric captures: the least-squares meeting point of the optical axes, with the half-size
    seen by the narrowest view at the median camera distance. Otherwise (forward-facing, or axes
    nearly parallel): a box in front of the mean camera, as wide as the camera spread.
    """
    c2ws = np.stack([f.camera.c2w for f in scene.frames])
    origins = c2ws[:, :3, 3]
    dirs = c2ws[:, :3, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(origins, dirs):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
    extent = scene.extent()
    w = np.linalg.eigvalsh(A)
    if w[0] > 0.05 * len(origins):
        center = np.linalg.solve(A, b)
        dist = np.linalg.norm(origins - center, axis=1)
        # Only use it if the point is in front of most cameras.
        if np.mean(np.einsum("ij,ij->i", center - origins, dirs) > 0) > 0.9:
            half_fov = min(
                min(math.atan(0.5 * f.camera.width / f.camera.fx), math.atan(0.5 * f.camera.height / f.camera.fy))
                for f in scene.frames
            )
            return center, float(np.median(dist) * math.tan(half_fov))
    center = origins.mean(0) + dirs.mean(0) * extent
    return center, float(extent)


class SplatMethod:
    """3D Gaussian splatting (Kerbl et al. 2023) on gsplat's parameters and strategies."""

    name = "splat"

    def __init__(self, cfg: TrainConfig, scene: Scene, n_train_views: int, device: torch.device):
        self.cfg = cfg
        self.sc = cfg.splat
        self.device = device
        self.scene_scale = scene.extent()
        if scene.points is not None and len(scene.points) > 0:
            pts = np.asarray(scene.points, dtype=np.float64)
            cols = None if scene.point_colors is None else np.asarray(scene.point_colors, dtype=np.float64) / 255.0
            self.init_source = f"{len(pts)} sparse points"
        else:
            center, half = estimate_init_box(scene)
            pts = splat_model.random_points_in_box(center, half, self.sc.init_num_points, seed=cfg.seed)
            cols = None
            self.init_source = f"{len(pts)} random points in a box of half-size {half:.3g} around {np.round(center, 3).tolist()}"
        self.params = splat_model.init_splats(
            pts, cols, self.sc.sh_degree, self.sc.init_opacity, self.sc.init_scale, seed=cfg.seed
        ).to(device)
        self.optimizers = self._make_optimizers()
        self.strategy = self._make_strategy()
        if self.sc.strategy == "mcmc":
            self.strategy_state = self.strategy.initialize_state()
        else:
            self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        self.appearance = None
        if self.sc.appearance:
            self.appearance = torch.nn.Parameter(torch.zeros(n_train_views, 3, 4, device=device))
            self.app_optimizer = torch.optim.Adam([self.appearance], lr=1e-3)

    # ---- set-up -------------------------------------------------------------------------------
    def _lrs(self) -> dict[str, float]:
        s = self.sc
        return {
            "means": s.lr_means * self.scene_scale,
            "scales": s.lr_scales,
            "quats": s.lr_quats,
            "opacities": s.lr_opacities,
            "sh0": s.lr_sh0,
            "shN": s.lr_shN,
        }

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lrs = self._lrs()
        return {
            # The fused Adam kernel is ~3x faster on CPU than the per-op implementation.
            k: torch.optim.Adam([{"params": self.params[k], "lr": lrs[k], "name": k}], eps=1e-15, fused=True)
            for k in PARAM_KEYS
        }

    def _make_strategy(self):
        from gsplat.strategy import DefaultStrategy, MCMCStrategy

        gsplat_cpu.install()
        s = self.sc
        stop = int(self.cfg.steps * s.refine_stop_fraction)
        if s.strategy == "mcmc":
            return MCMCStrategy(
                cap_max=s.max_gaussians,
                refine_start_iter=s.refine_start,
                refine_stop_iter=stop,
                refine_every=s.refine_every,
            )
        return DefaultStrategy(
            prune_opa=s.prune_opacity,
            grow_grad2d=s.grow_grad2d,
            refine_start_iter=s.refine_start,
            refine_stop_iter=stop,
            reset_every=s.reset_every,
            refine_every=s.refine_every,
            absgrad=s.absgrad,
            verbose=False,
        )

    # ---- rendering ------------------------------------------------------------------------------
    def sh_degree_at(self, step: Optional[int]) -> int:
        if step is None:
            return self.sc.sh_degree
        return min(step // max(self.sc.sh_degree_interval, 1), self.sc.sh_degree)

    def render(
        self,
        viewmat: torch.Tensor,
        K: torch.Tensor,
        width: int,
        height: int,
        background: Optional[torch.Tensor] = None,
        step: Optional[int] = None,
        render_mode: str = "RGB",
    ):
        """Render one camera.

        Args:
            viewmat: ``[4, 4]`` world-to-camera (OpenCV axes). K: ``[3, 3]`` intrinsics.
            background: ``[3]`` RGB (``None``: black).
            step: training step (sets the active SH degree; ``None``: all bands).
        Returns:
            ``(colors [H, W, D], alphas [H, W, 1], info)`` as :func:`recon.render.rasterization`.
        """
        return splat_model.render_splats(
            self.params, viewmat, K, width, height, self.sh_degree_at(step), background, render_mode,
            absgrad=self.sc.absgrad, antialiased=self.sc.antialiased,
        )

    def train_render(self, view: View, k: int, step: int, background: torch.Tensor):
        """Render training view number ``k`` (its appearance correction applied) for the loss."""
        rgb, alpha, info = self.render(view.viewmat, view.K, view.width, view.height, background, step)
        if self.appearance is not None:
            A = self.appearance[k]
            rgb = rgb + rgb @ A[:, :3].T + A[:, 3]
        return rgb, alpha, info

    # ---- optimisation ---------------------------------------------------------------------------
    def regularisation(self) -> torch.Tensor:
        r = torch.zeros((), device=self.device)
        if self.sc.opacity_reg > 0:
            r = r + self.sc.opacity_reg * torch.sigmoid(self.params["opacities"]).mean()
        if self.sc.scale_reg > 0:
            r = r + self.sc.scale_reg * torch.exp(self.params["scales"]).mean()
        return r

    def before_backward(self, step: int, info: dict) -> None:
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)

    def after_backward(self, step: int, info: dict) -> None:
        # Means' learning rate decays exponentially to 1% over training (gsplat's schedule).
        frac = min(step / max(self.cfg.steps, 1), 1.0)
        means_lr = self._lrs()["means"] * (0.01**frac)
        for g in self.optimizers["means"].param_groups:
            g["lr"] = means_lr
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.appearance is not None:
            self.app_optimizer.step()
            self.app_optimizer.zero_grad(set_to_none=True)
        if self.sc.strategy == "mcmc":
            self.strategy.step_post_backward(
                self.params, self.optimizers, self.strategy_state, step, info, lr=means_lr
            )
        else:
            self.strategy.step_post_backward(
                self.params, self.optimizers, self.strategy_state, step, info, packed=False
            )
            self._enforce_cap()

    def _enforce_cap(self) -> None:
        n = self.num_primitives
        cap = self.sc.max_gaussians
        if n <= cap:
            return
        from gsplat.strategy.ops import remove

        op = self.params["opacities"].detach()
        drop = torch.zeros(n, dtype=torch.bool, device=op.device)
        drop[torch.argsort(op)[: n - cap]] = True
        remove(self.params, self.optimizers, self.strategy_state, drop)

    @property
    def num_primitives(self) -> int:
        return int(self.params["means"].shape[0])

    # ---- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {
                k: (v.detach().cpu().clone() if torch.is_tensor(v) else v) for k, v in self.strategy_state.items()
            },
            "appearance": None if self.appearance is None else self.appearance.detach().cpu().clone(),
            "app_optimizer": None if self.appearance is None else self.app_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(self.device)) for k, v in state["params"].items()}
        )
        self.optimizers = self._make_optimizers()
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.strategy_state = {
            k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in state["strategy_state"].items()
        }
        if state.get("appearance") is not None and self.appearance is not None:
            with torch.no_grad():
                self.appearance.copy_(state["appearance"])
            self.app_optimizer.load_state_dict(state["app_optimizer"])

    def export_splats(self) -> dict[str, torch.Tensor]:
        """Detached copies of the parameters (gsplat names) for writers and viewers."""
        return {k: v.detach().cpu().clone() for k, v in self.params.items()}
