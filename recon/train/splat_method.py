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
        self.pose_delta = None
        if self.sc.pose_opt:
            # Per training view: a rotation vector (radians) and a translation (in scene extents),
            # both in the camera's own frame; zero is the input pose.
            self.pose_delta = torch.nn.Parameter(torch.zeros(n_train_views, 6, device=device))
            self.pose_optimizer = torch.optim.Adam([self.pose_delta], lr=self.sc.lr_pose,
                                                   weight_decay=self.sc.pose_reg)

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

    def correction(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training view ``k``'s pose correction ``(q [4] wxyz, t [3])``, in its camera frame:
        the refined world-to-camera is ``E @ viewmat`` with ``E = [R(q) | t]``."""
        d = self.pose_delta[k]
        q = torch.cat([torch.ones(1, device=d.device, dtype=d.dtype), 0.5 * d[:3]])
        return q / q.norm(), d[3:] * self.scene_scale

    def refined_c2w(self, k: int, c2w: np.ndarray) -> np.ndarray:
        """Training view ``k``'s camera-to-world (OpenCV) with its learned correction applied."""
        if self.pose_delta is None:
            return c2w
        with torch.no_grad():
            q, t = self.correction(k)
            E = np.eye(4)
            E[:3, :3] = _quat_to_rotmat(q).cpu().double().numpy()
            E[:3, 3] = t.cpu().double().numpy()
        return np.linalg.inv(E @ np.linalg.inv(c2w))

    def _posed_params(self, view: View, k: int):
        """The parameters moved so that rendering with the *input* camera equals rendering the
        original parameters with the *refined* camera: ``x -> V^-1 E V x`` (differentiable in E)."""
        q_e, t_e = self.correction(k)
        V = view.viewmat.to(self.device, torch.float32)
        R_v, t_v = V[:3, :3], V[:3, 3]
        R_e = _quat_to_rotmat(q_e)
        R_m = R_v.T @ R_e @ R_v
        t_m = R_v.T @ (R_e @ t_v + t_e - t_v)
        q_v = _rotmat_to_quat(R_v)
        q_m = _quat_mul(_quat_mul(q_v * torch.tensor([1.0, -1, -1, -1], device=q_v.device), q_e), q_v)
        p = dict(self.params.items())
        p["means"] = self.params["means"] @ R_m.T + t_m
        p["quats"] = _quat_mul(q_m.expand_as(self.params["quats"]), self.params["quats"])
        return p

    def train_render(self, view: View, k: int, step: int, background: torch.Tensor):
        """Render training view number ``k`` (pose and appearance corrections applied) for the loss."""
        if self.pose_delta is None:
            rgb, alpha, info = self.render(view.viewmat, view.K, view.width, view.height, background, step)
        else:
            rgb, alpha, info = splat_model.render_splats(
                self._posed_params(view, k), view.viewmat, view.K, view.width, view.height, self.sh_degree_at(step),
                background, "RGB", absgrad=self.sc.absgrad, antialiased=self.sc.antialiased,
            )
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

    def after_backward(self, step: int, info: dict, progress: Optional[float] = None) -> None:
        """Optimiser and strategy step. ``progress`` in [0, 1] drives the schedules (default:
        ``step / steps``; the trainer passes more when a wall-time budget runs out first)."""
        frac = min(step / max(self.cfg.steps, 1), 1.0) if progress is None else progress
        # Means' learning rate decays exponentially to 1% over training (gsplat's schedule).
        means_lr = self._lrs()["means"] * (0.01**frac)
        if frac >= self.sc.refine_stop_fraction and self.strategy.refine_stop_iter > step:
            # Densification ends at the same fraction of a time budget as of the step count.
            self.strategy.refine_stop_iter = step
        for g in self.optimizers["means"].param_groups:
            g["lr"] = means_lr
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.appearance is not None:
            self.app_optimizer.step()
            self.app_optimizer.zero_grad(set_to_none=True)
        if self.pose_delta is not None:
            self.pose_optimizer.step()
            self.pose_optimizer.zero_grad(set_to_none=True)
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
            "pose_delta": None if self.pose_delta is None else self.pose_delta.detach().cpu().clone(),
            "pose_optimizer": None if self.pose_delta is None else self.pose_optimizer.state_dict(),
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
        if state.get("pose_delta") is not None and self.pose_delta is not None:
            with torch.no_grad():
                self.pose_delta.copy_(state["pose_delta"])
            self.pose_optimizer.load_state_dict(state["pose_optimizer"])

    def export_splats(self) -> dict[str, torch.Tensor]:
        """Detached copies of the parameters (gsplat names) for writers and viewers."""
        return {k: v.detach().cpu().clone() for k, v in self.params.items()}


# ---- quaternion helpers (wxyz, differentiable) ------------------------------------------------------
def _quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def _quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = (q / q.norm()).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
    ])


def _rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """A (constant) rotation matrix as a unit quaternion, wxyz."""
    from recon.scene.conventions import rotmat_to_qvec

    q = rotmat_to_qvec(R.detach().cpu().double().numpy())
    return torch.as_tensor(q, dtype=R.dtype, device=R.device)
