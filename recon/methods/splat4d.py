"""4D Gaussian splats for dynamic captures: canonical 3D Gaussians moved by sparse control nodes.

The static splat method (:class:`recon.methods.splat.SplatMethod`) supplies everything but the
motion: initialisation, parameters, optimisers, gsplat's densification strategies, pose and
appearance modules, SH schedule. This method adds a time-conditioned deformation
(:class:`recon.deform.nodes.ControlNodes`: keyframed rigid node motions blended onto each Gaussian
by its nearest nodes; Δposition, Δrotation, Δscale):

1. **Static warm-up** (``--warmup-steps``): the canonical Gaussians train alone, on every view of
   a monocular capture, or, for a multi-view rig (at least ``--warmup-rig-views`` views share the
   first time), on the views of the first time only: the canonical model is then that instant's
   sharp geometry instead of a blur of the motion.
2. The nodes are then placed by farthest-point sampling on the visible Gaussians, every Gaussian is
   bound to its ``--node-knn`` nearest nodes, and the motion trains jointly with the Gaussians,
   regularised by temporal smoothness (``--smooth-weight``) and node-graph rigidity
   (``--rigid-weight``).
3. Densification clones/splits/prunes the canonical Gaussians exactly as for static splats; the
   binding follows (recomputed after every change and every ``--rebind-every`` steps).

Each view renders the Gaussians at its own time (views without a time: time 0). Artifacts:
``canonical.ply`` + ``deformation.safetensors`` (:mod:`recon.deform.model`), rendered at any time
by :class:`recon.deform.model.Splat4DRenderer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from recon.deform import model as deform_model
from recon.deform.nodes import ControlNodes
from recon.errors import ReconError
from recon.methods.base import Batch, RenderOutput
from recon.methods.splat import SplatConfig, SplatMethod
from recon.models import splats as splat_model
from recon.scene.scene import Scene


@dataclass
class Splat4DConfig(SplatConfig):
    """Gaussian splat options (as ``splat``) plus the motion model's."""

    num_nodes: int = 512
    """Control nodes that carry the motion (fewer than Gaussians: all of them when there are fewer)."""
    node_knn: int = 4
    """Nodes each Gaussian blends its motion from."""
    keyframes: int = 0
    """Keyframes of each node's motion over time [0, 1] (0: one per 10 training views, at most half the
    distinct training times, 2-64)."""
    keyframe_interp: Literal["linear", "cubic"] = "linear"
    """How each node's motion is interpolated between keyframes: linear, or cubic (a Catmull-Rom
    spline through the keyframes: curved paths such as an orbit or a swing are followed between
    keyframes instead of cut short along the chord)."""
    warmup_steps: int = 1000
    """Static warm-up: steps that train the canonical Gaussians before the motion starts."""
    deform_scale: bool = True
    """Let the nodes also change the Gaussians' scales over time."""
    lr_node_pos: float = 1.6e-4
    """Learning rate of the node positions, times the scene extent (decays to 1 % like the means')."""
    lr_node_trans: float = 2e-3
    """Learning rate of the node translations, times the scene extent (decays to 1 %)."""
    lr_node_rot: float = 2e-3
    """Learning rate of the node rotations (quaternion offsets; decays to 1 %)."""
    lr_node_scale: float = 1e-3
    """Learning rate of the node log-scale offsets (decays to 1 %)."""
    lr_node_radius: float = 1e-3
    """Learning rate of the nodes' log radii."""
    smooth_weight: float = 1.0
    """Weight of the temporal smoothness regulariser (squared second differences of the keyframes)."""
    rigid_weight: float = 1.0
    """Weight of the rigidity regulariser (neighbouring nodes move as one rigid body)."""
    rebind_every: int = 100
    """Steps between re-binding the Gaussians to their nearest nodes (also after every densification)."""
    sparse_keyframes: bool = True
    """Each step moves only the keyframes the view's time blends (the others keep their values)."""
    motion_ramp_steps: int = 100
    """Steps over which the motion's learning rates ramp up linearly after the warm-up (Adam's first
    steps are full-size steps in noisy directions: without a ramp they tear the fresh model apart)."""
    warmup_window: float = 0.0
    """Monocular captures (fewer than ``--warmup-rig-views`` views at the first time): the warm-up
    trains on the views in the first this fraction of the time range only (at least 3 views), so a
    fast-moving object is still where those views saw it instead of averaged away over the sequence
    (0: every view)."""
    warmup_rig_views: int = 3
    """Rigs: when at least this many training views share the first time, the warm-up trains on those
    views only (0: always on every view)."""
    time_curriculum: Literal["auto", "on", "off"] = "auto"
    """Train the motion forward in time, as a tracker does: after the warm-up the training times open
    from the first to the last over ``--curriculum-fraction`` of the motion's training, half of the
    views come from the two newest open times, keyframes not reached yet continue the newest one's
    motion at its last velocity, and the motion's learning rates decay only after the curriculum, so
    each new time starts from the previous times' solution instead of from no motion (an object that
    moves more than its own size between times is otherwise lost). auto: on for multi-view rigs
    (when the warm-up trains on the first time's views), off for monocular captures."""
    curriculum_fraction: float = 0.5
    """Fraction of the motion's training (after the warm-up) over which the time curriculum opens the
    times; the rest trains on every time."""
    curriculum_balance: bool = False
    """After the time curriculum, half of the views come from the time that has trained least so far
    (the last times open last and would otherwise end with the fewest steps)."""

    def validate(self) -> None:
        super().validate()

        def bad(name: str, want: str) -> None:
            raise ReconError(f"--{name.replace('_', '-')} {getattr(self, name)}: {want}")

        if self.num_nodes < 1:
            bad("num_nodes", "must be at least 1")
        if not 1 <= self.node_knn <= 16:
            bad("node_knn", "must be in 1-16")
        if self.keyframes < 0 or self.keyframes == 1:
            bad("keyframes", "must be 0 (automatic) or at least 2")
        if self.warmup_steps < 0:
            bad("warmup_steps", "must be >= 0")
        if self.rebind_every < 1:
            bad("rebind_every", "must be at least 1")
        if self.motion_ramp_steps < 0:
            bad("motion_ramp_steps", "must be >= 0")
        if not (math.isfinite(self.warmup_window) and 0.0 <= self.warmup_window <= 1.0):
            bad("warmup_window", "must be in [0, 1]")
        if self.warmup_rig_views < 0:
            bad("warmup_rig_views", "must be >= 0")
        if self.keyframe_interp not in ("linear", "cubic"):
            bad("keyframe_interp", "choose linear or cubic")
        if self.time_curriculum not in ("auto", "on", "off"):
            bad("time_curriculum", "choose auto, on or off")
        if not (math.isfinite(self.curriculum_fraction) and 0.0 < self.curriculum_fraction <= 1.0):
            bad("curriculum_fraction", "must be in (0, 1]")
        for name in ("lr_node_pos", "lr_node_trans", "lr_node_rot", "lr_node_scale", "lr_node_radius",
                     "smooth_weight", "rigid_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, "must be a finite number >= 0")


def auto_keyframes(times: list[Optional[float]]) -> int:
    """Keyframes for training views at ``times`` (one entry per view): one per 10 timed views, at most
    half the number of distinct times, clamped to 2-64 (2 for captures without times).

    A keyframe's motion is learnt from the views whose times it blends: a monocular capture (one
    view per time) needs several views per keyframe, or each keyframe fits its two or three views
    and the motion between them is a guess. Measured on D-NeRF lego (50 views, 50 times, 1,500
    steps): 25 keyframes val 19.09 dB, 8: 20.18 dB, 5: 20.75 dB (docs/splat4d.md)."""
    timed = [round(float(t), 6) for t in times if t is not None]
    per_views = max(len(timed) // 10, 2)
    return int(min(max(len(set(timed)) // 2, 2), per_views, 64))


class Splat4DMethod(SplatMethod):
    """4D Gaussian splats: canonical Gaussians + control-node motion (see the module docstring)."""

    name = "splat4d"
    Config = Splat4DConfig
    description = "4D Gaussian splats for dynamic captures (canonical Gaussians moved by control nodes over time)"
    dynamic = True

    def __init__(self, cfg, scene: Scene, views, device: torch.device):
        super().__init__(cfg, scene, views, device)
        self.dc: Splat4DConfig = cfg.model
        times = [scene.frames[i].time for i in views.indices]
        self.has_time = any(t is not None for t in times)
        self.num_keyframes = self.dc.keyframes or auto_keyframes(times)
        self.nodes: Optional[ControlNodes] = None
        self.node_opt: Optional[torch.optim.Optimizer] = None
        self.binding: Optional[torch.Tensor] = None
        # Training views (numbers k) at the first time, for a rig's warm-up; empty: every view.
        self.warm_views: list[int] = []
        self._motion_p0: Optional[float] = None  # training progress when the motion started
        timed = [(round(float(t), 6), k) for k, t in enumerate(times) if t is not None]
        if timed and self.dc.warmup_rig_views > 0:
            t0 = min(t for t, _ in timed)
            first = [k for t, k in timed if t == t0]
            if len(first) >= self.dc.warmup_rig_views and len(first) < len(times):
                self.warm_views = first
        if timed and not self.warm_views and self.dc.warmup_window > 0:
            t0, t1 = min(t for t, _ in timed), max(t for t, _ in timed)
            order = sorted(timed)
            early = [k for t, k in order if t <= t0 + self.dc.warmup_window * (t1 - t0)]
            if len(early) < 3:
                early = [k for _, k in order[:3]]
            if len(early) < len(times):
                self.warm_views = sorted(early)
        # The time curriculum: each training view's time, and the distinct times in order.
        view_times = [None if t is None else round(float(t), 6) for t in times]
        self.distinct_times = sorted({t for t in view_times if t is not None})
        # Training views (numbers k) at each distinct time, and those without a time (always open).
        self.views_at = [[k for k, t in enumerate(view_times) if t == u] for u in self.distinct_times]
        self._time_index = {u: i for i, u in enumerate(self.distinct_times)}
        self.untimed = [k for k, t in enumerate(view_times) if t is None]
        mode = self.dc.time_curriculum
        self.curriculum = len(self.distinct_times) > 1 and (mode == "on" or (mode == "auto" and bool(self.warm_views)))
        self._progress = 0.0  # training progress at the last step (the curriculum follows it)
        self._time_steps = [0] * len(self.distinct_times)  # motion-phase steps drawn at each time

    def describe_init(self) -> str:
        text = super().describe_init()
        text += (f"; motion: {self.dc.num_nodes} control nodes x {self.num_keyframes} keyframes after "
                 f"{self.dc.warmup_steps} static warm-up steps")
        if not self.has_time:
            text += "; the training views carry no times: every view is time 0 (a static model with extra freedom)"
        elif self.warm_views and self.dc.warmup_window > 0 and len(self.views_at[0]) < self.dc.warmup_rig_views:
            text += f" on the {len(self.warm_views)} views in the first {self.dc.warmup_window:g} of the time range"
        elif self.warm_views:
            text += f" on the {len(self.warm_views)} views of the first time (a multi-view rig)"
        if self.curriculum:
            text += (f"; time curriculum: the {len(self.distinct_times)} times open in order over "
                     f"{self.dc.curriculum_fraction:g} of the motion's training")
        return text

    def frontier(self) -> Optional[float]:
        """The newest time the curriculum has opened (``None``: every time is open)."""
        if not self.curriculum or self._motion_p0 is None:
            return None
        p0 = min(self._motion_p0, 0.999)
        f = (self._progress - p0) / (self.dc.curriculum_fraction * (1.0 - p0))
        if f >= 1.0:
            return None
        ts = self.distinct_times
        return ts[min(int(max(f, 0.0) * len(ts)), len(ts) - 1)]

    def sample(self, step: int, gen: torch.Generator) -> Batch:
        """A training view; during a rig's warm-up, one of the first time's views; during the time
        curriculum, half from the two newest open times and half from every open time."""
        if self.warm_views and step < self.dc.warmup_steps and not self.sampler.order:
            perm = torch.randperm(len(self.warm_views), generator=gen).tolist()
            self.sampler.order = [self.warm_views[i] for i in perm]
        elif step >= self.dc.warmup_steps:
            tf = self.frontier()
            if tf is not None:
                i = self.distinct_times.index(tf)
                older = 0 if torch.rand(1, generator=gen).item() >= 0.5 else max(i - 1, 0)
                pool = sorted([k for ks in self.views_at[older:i + 1] for k in ks] + (self.untimed if older == 0 else []))
                # One view at a time (popped at once), so the sampler's own permutation resumes after.
                self.sampler.order = [pool[int(torch.randint(len(pool), (1,), generator=gen))]]
            elif self.curriculum and self.dc.curriculum_balance and torch.rand(1, generator=gen).item() < 0.5:
                i = min(range(len(self._time_steps)), key=lambda j: (self._time_steps[j], j))
                pool = self.views_at[i]
                self.sampler.order = [pool[int(torch.randint(len(pool), (1,), generator=gen))]]
        batch = super().sample(step, gen)
        if step >= self.dc.warmup_steps and self.distinct_times and batch.time is not None:
            t = round(float(batch.time), 6)
            if t in self._time_index:
                self._time_steps[self._time_index[t]] += 1
        return batch

    # ---- the motion -------------------------------------------------------------------------------
    def _node_lrs(self) -> dict[str, float]:
        d = self.dc
        return {"pos": d.lr_node_pos * self.scene_scale, "trans": d.lr_node_trans * self.scene_scale,
                "rot": d.lr_node_rot, "dscale": d.lr_node_scale, "log_radius": d.lr_node_radius}

    def _make_node_opt(self) -> torch.optim.Optimizer:
        lrs = self._node_lrs()
        groups = [{"params": [getattr(self.nodes, k)], "lr": lr, "name": k} for k, lr in lrs.items()]
        return torch.optim.Adam(groups, eps=1e-15)

    def _start_motion(self) -> None:
        """End of the warm-up: place the nodes on the canonical Gaussians and bind them."""
        self.nodes = ControlNodes.from_gaussians(self.params["means"], self.params["opacities"], self.dc.num_nodes,
                                                 self.num_keyframes, seed=self.cfg.seed,
                                                 interp=self.dc.keyframe_interp).to(self.device)
        self.node_opt = self._make_node_opt()
        self._rebind()

    def _rebind(self) -> None:
        self.binding = self.nodes.bind(self.params["means"], self.dc.node_knn)

    def deformed(self, time: Optional[float], params=None) -> dict:
        """The (differentiable) Gaussians at ``time`` (``None``: 0) as a splat dict."""
        params = self.params if params is None else params
        if self.nodes is None:
            return params
        m, q, s = self.nodes.deform(params["means"], params["quats"], params["scales"], self.binding,
                                    0.0 if time is None else float(time), self.dc.deform_scale)
        p = dict(params.items())
        p.update(means=m, quats=q, scales=s)
        return p

    # ---- training ---------------------------------------------------------------------------------
    def forward(self, batch: Batch, step: int, need: frozenset[str] = frozenset()) -> RenderOutput:
        """Render training view ``batch.index`` at its time (pose and appearance corrections applied)."""
        if self.nodes is None and step >= self.dc.warmup_steps:
            self._start_motion()
        view, k = batch.view, batch.index
        params = self.deformed(batch.time)
        if self.camera_opt is not None:
            params = self._posed_params(view, k, params)
        depth = "depth" in need
        out, alpha, info = splat_model.render_splats(
            params, view.viewmat, view.K, view.width, view.height, self.sh_degree_at(step),
            batch.background, "RGB+ED" if depth else "RGB", absgrad=self.sc.absgrad,
            antialiased=self.sc.antialiased,
        )
        rgb = out[..., :3] if depth else out
        if self.appearance is not None:
            rgb = self.appearance.apply(rgb, k)
        return RenderOutput(rgb=rgb, alpha=alpha, depth=out[..., 3:4] if depth else None,
                            aux={"info": info, "time": batch.time})

    def losses(self, out: RenderOutput, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        terms = super().losses(out, batch, step)
        if self.nodes is not None:
            if self.dc.smooth_weight > 0:
                terms["smooth"] = self.dc.smooth_weight * self.nodes.smoothness(self.scene_scale)
            if self.dc.rigid_weight > 0:
                t = 0.0 if batch.time is None else float(batch.time)
                terms["rigid"] = self.dc.rigid_weight * self.nodes.rigidity(t, self.scene_scale)
        return terms

    def _extrapolate(self, tf: float) -> None:
        """Keyframes after the newest open time ``tf`` continue its motion: translations and
        rotations at the velocity of its last keyframe interval (constant when there is none yet),
        scale offsets held."""
        kf = self.nodes.keyframes
        j = min(int(math.ceil(min(max(tf, 0.0), 1.0) * (kf - 1) - 1e-9)), kf - 1)
        if j + 1 >= kf:
            return
        steps = torch.arange(1, kf - j, dtype=torch.float32, device=self.device).view(1, -1, 1)
        with torch.no_grad():
            for n in ("trans", "rot", "dscale"):
                x = getattr(self.nodes, n)
                v = x[:, j:j + 1] - x[:, j - 1:j] if (j > 0 and n != "dscale") else torch.zeros_like(x[:, j:j + 1])
                x[:, j + 1:] = x[:, j:j + 1] + steps * v

    def after_backward(self, step: int, out: RenderOutput, progress: float) -> None:
        self._progress = float(progress)
        if self.node_opt is not None:
            # The motion's learning rates decay to 1 % over the steps it trains (from the warm-up's end).
            if self._motion_p0 is None:
                self._motion_p0 = float(progress)
            p0 = min(self._motion_p0, 0.999)
            if self.curriculum:
                # Under the time curriculum the motion keeps its full rate while times open (a tracker
                # must move each new time's keyframe as far as the scene moved) and decays after.
                p0 = min(p0 + self.dc.curriculum_fraction * (1.0 - p0), 0.999)
            decay = 0.01 ** (max(float(progress) - p0, 0.0) / (1.0 - p0))
            ramp = self.dc.motion_ramp_steps
            if ramp > 0:
                decay *= min(1.0, (step + 1 - self.dc.warmup_steps) / ramp)
            base = self._node_lrs()
            for g in self.node_opt.param_groups:
                g["lr"] = base[g["name"]] * (decay if g["name"] != "log_radius" else 1.0)
            # Only the keyframes this view's time blends move: Adam would otherwise keep stepping
            # every other keyframe by about the learning rate on stale momentum and on the
            # regularisers' tiny gradients (measured on D-NeRF lego 400 steps after a 500-step
            # warm-up: training PSNR 20.5 dB stepping every keyframe, 23.0 dB with the motion frozen,
            # 24.4 dB stepping only the active keyframes).
            t = out.aux.get("time")
            held = None
            if self.dc.sparse_keyframes:
                active = self.nodes.keyframes_at(0.0 if t is None else float(t))
                idle = [k for k in range(self.nodes.keyframes) if k not in active]
                if idle:
                    held = {n: getattr(self.nodes, n).detach()[:, idle].clone() for n in ("trans", "rot", "dscale")}
            self.node_opt.step()
            self.node_opt.zero_grad(set_to_none=True)
            if held is not None:
                with torch.no_grad():
                    for n, v in held.items():
                        getattr(self.nodes, n)[:, idle] = v
            tf = self.frontier()
            if tf is not None:
                self._extrapolate(tf)
        n_before = self.num_primitives
        super().after_backward(step, out, progress)
        if self.nodes is not None and (self.num_primitives != n_before or (step + 1) % self.dc.rebind_every == 0):
            if (step + 1) % self.dc.rebind_every == 0:
                self.nodes.update_graph()
            self._rebind()

    def stats(self) -> dict[str, float]:
        st = super().stats()
        if self.nodes is not None:
            st["nodes"] = self.nodes.num_nodes
        return st

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["motion"] = None if self.nodes is None else {
            "nodes": self.nodes.tensors(), "optimizer": self.node_opt.state_dict(),
            "binding": self.binding.detach().cpu().clone(), "progress0": self._motion_p0,
            "interp": self.nodes.interp,
        }
        state["curriculum"] = {"progress": self._progress, "time_steps": list(self._time_steps)}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        c = state.get("curriculum") or {}
        self._progress = float(c.get("progress", 0.0))
        counts = c.get("time_steps")
        if counts is not None and len(counts) == len(self.distinct_times):
            self._time_steps = [int(v) for v in counts]
        m = state.get("motion")
        if m is None:
            self.nodes = self.node_opt = self.binding = None
            return
        self.nodes = ControlNodes.from_tensors(m["nodes"], interp=m.get("interp", "linear")).to(self.device)
        self.node_opt = self._make_node_opt()
        self.node_opt.load_state_dict(m["optimizer"])
        self.binding = m["binding"].to(self.device)
        self._motion_p0 = m.get("progress0")

    # ---- the trained model ------------------------------------------------------------------------
    def _model(self) -> deform_model.DeformedSplats:
        nodes = None
        if self.nodes is not None:
            nodes = ControlNodes.from_tensors(self.nodes.tensors(), interp=self.nodes.interp)
        return deform_model.DeformedSplats(
            {k: v.detach().cpu() for k, v in self.params.items()}, nodes,
            None if self.binding is None else self.binding.cpu(), self.dc.deform_scale)

    def gaussians(self) -> dict[str, torch.Tensor]:
        """The Gaussians at time 0 (detached CPU copies, gsplat names)."""
        return {k: v.clone() for k, v in self._model().at(0.0).items()}

    def renderer(self):
        return deform_model.Splat4DRenderer(self._model(), antialiased=self.sc.antialiased)

    def save(self, run_dir: Path, provenance: dict[str, str]) -> dict[str, str]:
        return deform_model.save(self._model(), run_dir, comments=[f"{k}: {v}" for k, v in provenance.items()])

    @classmethod
    def load_gaussians(cls, run_dir: Path, artifacts: dict[str, str]) -> dict[str, torch.Tensor]:
        """The saved model at time 0."""
        return deform_model.load(run_dir, artifacts).at(0.0)

    @classmethod
    def load_renderer(cls, run_dir: Path, artifacts: dict[str, str], render: dict):
        return deform_model.Splat4DRenderer(deform_model.load(run_dir, artifacts),
                                            antialiased=bool(render.get("antialiased", False)))
