"""3D Gaussian splatting (Kerbl et al. 2023) on gsplat's parameters and densification strategies.

Trains on whole views; the artifact is ``splats.ply`` in the Inria layout
(:mod:`recon.models.splats_io`), rendered by :class:`recon.models.splats.SplatRenderer`.
Pose refinement (:class:`recon.train.camera_opt.CameraOptModule`) and per-image appearance
(:class:`recon.train.appearance.AppearanceModule`) are the shared modules any method can use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from recon.errors import ReconError
from recon.methods.base import Batch, Method, RenderOutput
from recon.models import splats as splat_model
from recon.models.quaternions import quat_mul, quat_to_rotmat, rotmat_to_quat
from recon.scene.scene import Scene
from recon.train import gsplat_cpu
from recon.train.appearance import AppearanceModule
from recon.train.camera_opt import CameraOptModule
from recon.train.config import training_background
from recon.train.data import ViewSampler

PARAM_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
MODEL_FILE = "splats.ply"


@dataclass
class SplatConfig:
    """Gaussian splat model and optimisation options (gsplat's defaults unless noted)."""

    sh_degree: int = 3
    """Final spherical-harmonics degree (0-3); raised by one every --sh-degree-interval steps."""
    sh_degree_interval: int = 1000
    """Steps between raising the active SH degree."""
    init_num_points: int = 50_000
    """Random initial Gaussians when the scene has no sparse points."""
    init_opacity: float = 0.1
    """Initial opacity (gsplat's MCMC recipe, --preset mcmc: 0.5)."""
    init_scale: float = 1.0
    """Initial size as a multiple of the distance to the 3 nearest points (MCMC recipe: 0.1)."""
    lr_means: float = 1.6e-4
    """Learning rate of the centres, times the scene extent; decays exponentially to 1% over training."""
    lr_scales: float = 5e-3
    """Learning rate of the log scales."""
    lr_quats: float = 1e-3
    """Learning rate of the rotations."""
    lr_opacities: float = 5e-2
    """Learning rate of the opacity logits."""
    lr_sh0: float = 2.5e-3
    """Learning rate of the base colour."""
    lr_shN: float = 2.5e-3 / 20
    """Learning rate of the higher SH bands."""
    strategy: Literal["default", "mcmc"] = "default"
    """Densification: gsplat's default (clone/split/prune) or MCMC (relocation, Kheradmand et al. 2024)."""
    refine_start: int = 500
    """First step of densification."""
    refine_stop_fraction: float = 0.5
    """Densification stops at this fraction of the steps (or of the --max-minutes budget)."""
    refine_every: int = 100
    """Steps between densification passes."""
    reset_every: int = 3000
    """Default strategy: its reset_every (with gsplat 1.5 it gates pruning of too-large Gaussians)."""
    grow_grad2d: float = 2e-4
    """Default strategy: image-space gradient above which Gaussians are cloned or split."""
    prune_opacity: float = 0.005
    """Default strategy: Gaussians fainter than this are pruned."""
    absgrad: bool = False
    """Use absolute gradients for densification (gsplat's absgrad)."""
    antialiased: bool = False
    """gsplat's antialiased (mip) rasterization; every renderer of the run honours it."""
    max_gaussians: int = 1_000_000
    """Cap on the number of Gaussians (MCMC's cap_max; the default strategy prunes the faintest)."""
    opacity_reg: float = 0.01
    """Weight of the mean-opacity regulariser (MCMC's recipe; 0 turns it off): Gaussians no training view
    needs fade and are pruned instead of floating in front of held-out cameras. On by default since
    measured on real captures at the fast preset: sceaux 14.83 -> 15.59 dB, fox 31.94 -> 32.14 dB,
    lego -0.08 dB, a static turntable +1.3 to +3.0 dB (docs/benchmarks.md)."""
    scale_reg: float = 0.0
    """Weight of the mean-scale regulariser (MCMC recipe: 0.01)."""
    appearance: bool = False
    """Learn a per-image affine colour correction (exposure/white balance) for training views."""
    pose_opt: bool = False
    """Refine the training cameras' poses; refined poses go to cameras.json (input poses beside them)."""
    lr_pose: float = 1e-4
    """Adam learning rate of the pose corrections (radians; translation in scene extents)."""
    pose_reg: float = 1e-6
    """Weight decay pulling pose corrections back towards the input poses."""
    background_shell: Literal["auto", "on", "off"] = field(default="off", metadata={"hash_unless": "off"})
    """A distant sphere of Gaussians for sky and far background, composited behind the scene: its
    centres stay fixed and densification leaves it alone, so sky cannot turn into floaters; saved
    with the model. auto: on for sparse captures (at most 30 training views) not shot on a plain
    background (docs/training.md: measured on real captures before it becomes a default)."""
    shell_points: int = field(default=8_000, metadata={"hash_unless": 8_000})
    """Gaussians in the background shell (about; only directions the training views see)."""

    def validate(self) -> None:
        def bad(name: str, want: str) -> None:
            raise ReconError(f"--{name.replace('_', '-')} {getattr(self, name)}: {want}")

        if not 0 <= self.sh_degree <= 3:
            bad("sh_degree", "must be 0, 1, 2 or 3")
        if self.sh_degree_interval < 1:
            bad("sh_degree_interval", "must be at least 1")
        if self.init_num_points < 1:
            bad("init_num_points", "must be at least 1")
        if self.max_gaussians < 1:
            bad("max_gaussians", "must be at least 1")
        if not 0 < self.init_opacity < 1:
            bad("init_opacity", "must be in (0, 1)")
        if not self.init_scale > 0:
            bad("init_scale", "must be > 0")
        for name in ("lr_means", "lr_scales", "lr_quats", "lr_opacities", "lr_sh0", "lr_shN", "lr_pose",
                     "grow_grad2d", "prune_opacity", "pose_reg", "opacity_reg", "scale_reg"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, "must be a finite number >= 0")
        if not 0 <= self.refine_stop_fraction <= 1:
            bad("refine_stop_fraction", "must be in [0, 1]")
        if self.refine_every < 1:
            bad("refine_every", "must be at least 1")
        if self.refine_start < 0:
            bad("refine_start", "must be >= 0")


def object_centric_box(scene: Scene) -> Optional[tuple[np.ndarray, float]]:
    """Centre ``[3]`` and half-size of the object an object-centric capture looks at: the
    least-squares meeting point of the optical axes, with the half-size seen by the narrowest view at
    the median camera distance; ``None`` when the axes do not meet in front of most cameras
    (forward-facing captures, or axes nearly parallel)."""
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
    return None


def estimate_init_box(scene: Scene) -> tuple[np.ndarray, float]:
    """Centre ``[3]`` and half-size of a box the scene's content is likely to occupy.

    Object-centric captures: :func:`object_centric_box`. Otherwise (forward-facing, or axes nearly
    parallel): a box in front of the mean camera, as wide as the camera spread.
    """
    box = object_centric_box(scene)
    if box is not None:
        return box
    c2ws = np.stack([f.camera.c2w for f in scene.frames])
    dirs = c2ws[:, :3, 2] / np.linalg.norm(c2ws[:, :3, 2], axis=1, keepdims=True)
    extent = scene.extent()
    center = c2ws[:, :3, 3].mean(0) + dirs.mean(0) * extent
    return center, float(extent)


class SplatMethod(Method):
    """3D Gaussian splatting on gsplat's parameters and strategies."""

    name = "splat"
    Config = SplatConfig
    description = "3D Gaussian splats (gsplat on CUDA, recon's CPU rasterizer elsewhere)"
    # Measured (docs/training.md, "Training background"): lego 200x200 31.58 -> 31.89 dB, the rig's
    # time-0 views 27.32 -> 28.50 dB against random backgrounds.
    auto_background = "scene"

    def __init__(self, cfg, scene: Scene, views, device: torch.device):
        super().__init__(cfg, scene, views, device)
        self.sc: SplatConfig = cfg.model
        self.scene_scale = scene.extent()
        self.sampler = ViewSampler(views, training_background(cfg, scene.background), scene.background)
        if scene.points is not None and len(scene.points) > 0:
            pts = np.asarray(scene.points, dtype=np.float64)
            cols = None if scene.point_colors is None else np.asarray(scene.point_colors, dtype=np.float64) / 255.0
            self.init_source = f"{len(pts)} sparse points"
        else:
            from recon.train.init_points import random_init

            pts, self.init_source = random_init(scene, scene.indices("train"), self.sc.init_num_points, seed=cfg.seed)
            cols = None
        self.params = splat_model.init_splats(
            pts, cols, self.sc.sh_degree, self.sc.init_opacity, self.sc.init_scale,
            seed=cfg.seed,
        ).to(device)
        self.optimizers = self._make_optimizers()
        self.shell, self.shell_optimizers, self.shell_note = None, {}, ""
        if self._want_shell(scene):
            self._init_shell(views, pts)
        self.strategy = self._make_strategy()
        if self.sc.strategy == "mcmc":
            self.strategy_state = self.strategy.initialize_state()
        else:
            self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        n = len(views)
        self.appearance = AppearanceModule(n, device) if self.sc.appearance else None
        self.camera_opt = (CameraOptModule(n, self.scene_scale, self.sc.lr_pose, self.sc.pose_reg, device)
                           if self.sc.pose_opt else None)

    def _want_shell(self, scene: Scene) -> bool:
        mode = self.sc.background_shell
        if mode == "off" or getattr(self, "dynamic", False):
            return False
        if mode == "on":
            return True
        from recon.train.init_points import sparse_unbounded

        return sparse_unbounded(scene, scene.indices("train"))

    def _init_shell(self, views, pts: np.ndarray) -> None:
        """The background shell (:func:`recon.train.init_points.shell_points`): SH degree 0 (a colour
        per direction, nothing view-dependent to over-fit), opaque, centres frozen."""
        from recon.train.init_points import shell_points

        spts, cols, radius = shell_points(list(views.cameras), lambda j: views.get(j).image.numpy(), pts,
                                          self.sc.shell_points)
        self.shell = splat_model.init_splats(spts, cols, 0, 0.5, 1.0, seed=self.cfg.seed).to(self.device)
        self.shell["means"].requires_grad_(False)
        lrs = self._lrs()
        self.shell_optimizers = {
            k: torch.optim.Adam([{"params": self.shell[k], "lr": lrs[k], "name": k}], eps=1e-15, fused=True)
            for k in ("scales", "quats", "opacities", "sh0")
        }
        self.shell_note = f"; background shell of {len(spts):,} Gaussians at radius {radius:.3g}"

    def describe_init(self) -> str:
        note = self.shell_note
        if self.sc.strategy == "mcmc" and self.sc.scale_reg == 0:
            note += "; --strategy mcmc without gsplat's MCMC scale regulariser (--preset mcmc sets --scale-reg 0.01)"
        return self.init_source + note

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

    # ---- training ---------------------------------------------------------------------------------
    def sh_degree_at(self, step: Optional[int]) -> int:
        if step is None:
            return self.sc.sh_degree
        return min(step // max(self.sc.sh_degree_interval, 1), self.sc.sh_degree)

    def sample(self, step: int, gen: torch.Generator) -> Batch:
        return self.sampler.next(gen, self.device)

    def _posed_params(self, view, k: int, params=None):
        """The parameters (``params``, default the model's) moved so that rendering with the *input*
        camera equals rendering the original parameters with the *refined* camera: ``x -> V^-1 E V x``
        (differentiable in E)."""
        params = self.params if params is None else params
        q_e, t_e = self.camera_opt.correction(k)
        V = view.viewmat.to(self.device, torch.float32)
        R_v, t_v = V[:3, :3], V[:3, 3]
        R_e = quat_to_rotmat(q_e)
        R_m = R_v.T @ R_e @ R_v
        t_m = R_v.T @ (R_e @ t_v + t_e - t_v)
        q_v = rotmat_to_quat(R_v)
        q_m = quat_mul(quat_mul(q_v * torch.tensor([1.0, -1, -1, -1], device=q_v.device), q_e), q_v)
        p = dict(params.items())
        p["means"] = params["means"] @ R_m.T + t_m
        p["quats"] = quat_mul(q_m.expand_as(params["quats"]), params["quats"])
        return p

    def forward(self, batch: Batch, step: int, need: frozenset[str] = frozenset()) -> RenderOutput:
        """Render training view ``batch.index`` (pose and appearance corrections applied)."""
        view, k = batch.view, batch.index
        params = self.params if self.camera_opt is None else self._posed_params(view, k)
        depth = "depth" in need
        bg = batch.background if self.shell is None else torch.zeros_like(batch.background)
        out, alpha, info = splat_model.render_splats(
            params, view.viewmat, view.K, view.width, view.height, self.sh_degree_at(step),
            bg, "RGB+ED" if depth else "RGB", absgrad=self.sc.absgrad,
            antialiased=self.sc.antialiased,
        )
        rgb = out[..., :3] if depth else out
        if self.shell is not None:
            # The shell lies behind everything: composite the scene over it.
            shell = self.shell if self.camera_opt is None else self._posed_params(view, k, self.shell)
            srgb, salpha, _ = splat_model.render_splats(
                shell, view.viewmat, view.K, view.width, view.height, 0, batch.background, "RGB",
                antialiased=self.sc.antialiased,
            )
            rgb = rgb + (1 - alpha) * srgb
            alpha = alpha + (1 - alpha) * salpha
        if self.appearance is not None:
            rgb = self.appearance.apply(rgb, k)
        return RenderOutput(rgb=rgb, alpha=alpha, depth=out[..., 3:4] if depth else None, aux={"info": info})

    def losses(self, out: RenderOutput, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        terms = {}
        if self.sc.opacity_reg > 0:
            terms["opacity_reg"] = self.sc.opacity_reg * torch.sigmoid(self.params["opacities"]).mean()
        if self.sc.scale_reg > 0:
            terms["scale_reg"] = self.sc.scale_reg * torch.exp(self.params["scales"]).mean()
        return terms

    def before_backward(self, step: int, out: RenderOutput) -> None:
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, out.aux["info"])

    def after_backward(self, step: int, out: RenderOutput, progress: float) -> None:
        """Optimiser and strategy step; ``progress`` in [0, 1] drives the schedules."""
        frac = progress
        info = out.aux["info"]
        # Means' learning rate decays exponentially to 1% over training (gsplat's schedule).
        means_lr = self._lrs()["means"] * (0.01**frac)
        if frac >= self.sc.refine_stop_fraction and self.strategy.refine_stop_iter > step:
            # Densification ends at the same fraction of a time budget as of the step count.
            self.strategy.refine_stop_iter = step
        for g in self.optimizers["means"].param_groups:
            g["lr"] = means_lr
        for opt in [*self.optimizers.values(), *self.shell_optimizers.values()]:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.appearance is not None:
            self.appearance.step()
        if self.camera_opt is not None:
            self.camera_opt.step()
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

    def stats(self) -> dict[str, float]:
        st = {"gaussians": self.num_primitives}
        if self.shell is not None:
            st["shell"] = int(self.shell["means"].shape[0])
        return st

    # ---- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {
                k: (v.detach().cpu().clone() if torch.is_tensor(v) else v) for k, v in self.strategy_state.items()
            },
            "appearance": None if self.appearance is None else self.appearance.state_dict(),
            "camera_opt": None if self.camera_opt is None else self.camera_opt.state_dict(),
            "sampler": self.sampler.state_dict(),
            "shell": None if self.shell is None else {
                "params": {k: v.detach().cpu().clone() for k, v in self.shell.items()},
                "optimizers": {k: o.state_dict() for k, o in self.shell_optimizers.items()},
            },
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
            self.appearance.load_state_dict(state["appearance"])
        if state.get("camera_opt") is not None and self.camera_opt is not None:
            self.camera_opt.load_state_dict(state["camera_opt"])
        self.sampler.load_state_dict(state["sampler"])
        if self.shell is not None and state.get("shell") is not None:
            self.shell = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(v.to(self.device), requires_grad=k != "means")
                 for k, v in state["shell"]["params"].items()})
            lrs = self._lrs()
            self.shell_optimizers = {
                k: torch.optim.Adam([{"params": self.shell[k], "lr": lrs[k], "name": k}], eps=1e-15, fused=True)
                for k in state["shell"]["optimizers"]
            }
            for k, o in self.shell_optimizers.items():
                o.load_state_dict(state["shell"]["optimizers"][k])

    # ---- the trained model ----------------------------------------------------------------------
    def gaussians(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the parameters (gsplat names), the background shell's included (its
        higher SH bands zero)."""
        g = {k: v.detach().cpu().clone() for k, v in self.params.items()}
        if self.shell is not None:
            sh = {k: v.detach().cpu() for k, v in self.shell.items()}
            sh["shN"] = torch.zeros(len(sh["means"]), g["shN"].shape[1], 3)
            g = {k: torch.cat([g[k], sh[k]]) for k in g}
        return g

    def renderer(self):
        if self.shell is not None:  # one model: the shell sorts behind the scene by depth
            return splat_model.SplatRenderer({k: v.to(self.device) for k, v in self.gaussians().items()},
                                             antialiased=self.sc.antialiased)
        return splat_model.SplatRenderer(self.params, antialiased=self.sc.antialiased)

    def render_settings(self) -> dict:
        return {"antialiased": bool(self.sc.antialiased), "sh_degree": int(self.sc.sh_degree)}

    def refined_cameras(self) -> dict[int, np.ndarray]:
        if self.camera_opt is None:
            return {}
        return {k: self.camera_opt.refined_c2w(k, self.views.cameras[k].c2w) for k in range(len(self.views))}

    def save(self, run_dir: Path, provenance: dict[str, str]) -> dict[str, str]:
        from recon.models.splats_io import write_ply

        write_ply(self.gaussians(), Path(run_dir) / MODEL_FILE, comments=[f"{k}: {v}" for k, v in provenance.items()])
        return {"model": MODEL_FILE}

    @classmethod
    def load_gaussians(cls, run_dir: Path, artifacts: dict[str, str]) -> dict[str, torch.Tensor]:
        from recon.models.splats_io import read_ply

        return read_ply(Path(run_dir) / artifacts.get("model", MODEL_FILE))

    @classmethod
    def load_renderer(cls, run_dir: Path, artifacts: dict[str, str], render: dict):
        return splat_model.SplatRenderer(cls.load_gaussians(run_dir, artifacts),
                                         antialiased=bool(render.get("antialiased", False)))
