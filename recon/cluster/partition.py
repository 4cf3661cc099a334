"""Partitioned training of one large scene (VastGaussian / CityGaussian style).

1. The ground plane: ``up`` is the mean of the cameras' up vectors (OpenCV ``-y``); the plane's two
   axes are the principal directions of the scene points projected onto it.
2. Blocks: an ``nx x ny`` grid on that plane, split at quantiles of the points so blocks hold about
   as many points each; a block's **core** is its cell (the outer cells reach to infinity), its
   **expanded** region the core grown by ``margin`` of its size on every side.
3. Coarse global model (CityGaussian): one ordinary splat training on every training view for the
   first ``coarse_fraction`` of the steps, with the schedules of the whole run (it is the first
   part of the single run it replaces), as a Ray task using every core.
4. Cameras: the coarse model's depth is rendered in every training view (at low resolution) and
   each pixel's surface point placed on the ground plane; a view goes to a block when at least
   ``min_cover`` of its pixels show the block's expanded region (occlusion-aware footprints, so a
   view looking elsewhere or at a wall in front of the block does not count).
5. Blocks: each block continues the coarse model: the Gaussians whose centres lie in its expanded
   region (with their optimiser and densification state) are trained on the block's views for
   ``(steps - coarse) / blocks`` steps, while every other Gaussian of the coarse model stays frozen
   and is rendered with them as context, so a block's renders show the whole scene and it never
   needs floaters to explain other blocks' content. A block's step ``b`` plays the role of step
   ``coarse + b * blocks`` of the whole run in the schedules (learning-rate decay, densification,
   SH degree), so the steps add up to the single run's. Blocks are ordinary run folders (their
   ``splats.ply`` holds the block's own Gaussians), trained as Ray tasks with one CPU each, in
   parallel; a re-run skips finished blocks and resumes the others from their checkpoints.
6. Merge: each block's Gaussians are cropped to its core and concatenated into one splat run
   (``run.json``, ``splats.ply``, ``cameras.json``, ``metrics.json`` on the whole scene's held-out
   views), which eval, view, export and render read like any run.

The scene points are the SfM points when the scene has them, else points back-projected from its
depth maps, else random points in the box the splat method would initialise in.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from recon.errors import ReconError
from recon.methods.base import RenderOutput
from recon.methods.splat import SplatMethod

PLAN_FILE = "partition.json"
MIN_COVER = 0.25
"""Share of a view's pixels a block's expanded region must fill for the view to train the block."""


def parse_grid(spec: str) -> Optional[tuple[int, int]]:
    """``(nx, ny)`` of ``--partition NxM``; ``None`` for ``--partition auto`` (:func:`auto_grid`)."""
    if str(spec).strip().lower() == "auto":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(spec))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1 or int(m.group(1)) * int(m.group(2)) < 2:
        raise ReconError(f"--partition {spec}: give the grid as NxM with at least 2 blocks, e.g. 2x2, or auto")
    nx, ny = int(m.group(1)), int(m.group(2))
    if nx * ny > 64:
        raise ReconError(f"--partition {spec}: at most 64 blocks")
    return nx, ny


@dataclass
class Block:
    """One block: grid cell ``(i, j)``, its core and expanded rectangles ``[umin, umax, vmin, vmax]``
    on the ground plane, and the scene frame indices of its training views."""

    i: int
    j: int
    core: list[float]
    expanded: list[float]
    frames: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"block_{self.i}_{self.j}"


@dataclass
class Plan:
    origin: list[float]
    u: list[float]
    v: list[float]
    up: list[float]
    blocks: list[Block]

    def ground(self, xyz: np.ndarray) -> np.ndarray:
        """``[N, 2]`` ground-plane coordinates of points ``[N, 3]``."""
        d = np.asarray(xyz, np.float64) - np.asarray(self.origin)
        return np.stack([d @ np.asarray(self.u), d @ np.asarray(self.v)], axis=1)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Plan":
        return Plan(d["origin"], d["u"], d["v"], d["up"], [Block(**b) for b in d["blocks"]])


def inside(uv: np.ndarray, rect) -> np.ndarray:
    umin, umax, vmin, vmax = rect
    return (uv[:, 0] >= umin) & (uv[:, 0] < umax) & (uv[:, 1] >= vmin) & (uv[:, 1] < vmax)


def scene_points(scene, max_points: int = 200_000, seed: int = 0) -> np.ndarray:
    """``[P, 3]`` points of the scene's content (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if scene.points is not None and len(scene.points) > 0:
        p = np.asarray(scene.points, np.float64)
        return p[rng.choice(len(p), max_points, replace=False)] if len(p) > max_points else p
    idx = [i for i in scene.indices("train") if scene.frames[i].depth_path is not None]
    if idx:
        pts = []
        per = max(1, max_points // len(idx))
        for i in idx:
            cam = scene.camera(i, 4.0)
            d = scene.depth(i, 4.0)
            ys, xs = np.nonzero(d > 0)
            if len(ys) == 0:
                continue
            k = rng.choice(len(ys), min(per, len(ys)), replace=False)
            ys, xs, z = ys[k], xs[k], d[ys[k], xs[k]]
            Kinv = np.linalg.inv(cam.K)
            rays = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], 1) @ Kinv.T
            pc = rays * z[:, None]
            pts.append(pc @ cam.c2w[:3, :3].T + cam.c2w[:3, 3])
        if pts:
            return np.concatenate(pts)
    from recon.methods.splat import estimate_init_box

    c, half = estimate_init_box(scene)
    return c + rng.uniform(-half, half, size=(20_000, 3))


def ground_frame(scene, points: np.ndarray) -> Plan:
    """The ground plane (see the module docstring), as a plan without blocks."""
    train = scene.indices("train")
    c2ws = np.stack([scene.frames[i].camera.c2w for i in train])
    up = -c2ws[:, :3, 1].mean(0)
    up /= max(np.linalg.norm(up), 1e-12)
    origin = np.median(points, axis=0)
    flat = (points - origin) - np.outer((points - origin) @ up, up)
    _, _, vt = np.linalg.svd(flat[:: max(1, len(flat) // 20000)], full_matrices=False)
    u = vt[0] - (vt[0] @ up) * up
    u /= np.linalg.norm(u)
    v = np.cross(up, u)
    return Plan(origin.tolist(), u.tolist(), v.tolist(), up.tolist(), [])


VIEWS_PER_BLOCK = 150
"""``--partition auto``: about one block per this many training views."""


def auto_grid(uv: np.ndarray, views: int, views_per_block: int = VIEWS_PER_BLOCK) -> tuple[int, int]:
    """``(nx, ny)`` for ``--partition auto``: about ``views / views_per_block`` blocks (at least 2,
    at most 64), the grid whose cells are closest to square on the scene's extent on the ground
    plane (``uv [P, 2]``: the points' plane coordinates, 1-99 % range)."""
    n = int(np.clip(round(views / views_per_block), 2, 64))
    lo, hi = np.quantile(uv, [0.01, 0.99], axis=0)
    eu, ev = (float(x) for x in np.maximum(hi - lo, 1e-9))
    best, score = (2, 1), float("inf")
    for nx in range(n, 0, -1):  # on a tie, more blocks along u (the scene's long axis)
        for ny in range(1, n // nx + 1):
            if nx * ny < 2:
                continue
            s = abs(np.log((eu / nx) / (ev / ny))) + 2.0 * abs(np.log(nx * ny / n))
            if s < score - 1e-9:
                best, score = (nx, ny), s
    return best


def make_plan(scene, points: np.ndarray, nx: int, ny: int, margin: float = 0.2) -> Plan:
    """The ground plane and its blocks (see the module docstring); views are assigned later by
    :func:`assign_views`."""
    plan = ground_frame(scene, points)
    uv = plan.ground(points)
    inf = float("inf")
    ucuts = np.quantile(uv[:, 0], np.linspace(0, 1, nx + 1))
    for i in range(nx):
        u0, u1 = (-inf if i == 0 else ucuts[i]), (inf if i == nx - 1 else ucuts[i + 1])
        col = uv[(uv[:, 0] >= u0) & (uv[:, 0] < u1)]
        vcuts = np.quantile(col[:, 1], np.linspace(0, 1, ny + 1)) if len(col) else np.linspace(-1, 1, ny + 1)
        for j in range(ny):
            v0, v1 = (-inf if j == 0 else vcuts[j]), (inf if j == ny - 1 else vcuts[j + 1])
            # the expansion is sized on the finite extent of the cell (points' 1-99 % range at the edges)
            fu0 = ucuts[i] if i else np.quantile(uv[:, 0], 0.01)
            fu1 = ucuts[i + 1] if i < nx - 1 else np.quantile(uv[:, 0], 0.99)
            fv0 = vcuts[j] if j else np.quantile(col[:, 1], 0.01) if len(col) else -1
            fv1 = vcuts[j + 1] if j < ny - 1 else np.quantile(col[:, 1], 0.99) if len(col) else 1
            mu, mv = margin * max(fu1 - fu0, 1e-9), margin * max(fv1 - fv0, 1e-9)
            plan.blocks.append(Block(i, j, [float(u0), float(u1), float(v0), float(v1)],
                                     [float(u0 - mu), float(u1 + mu), float(v0 - mv), float(v1 + mv)]))
    return plan


def block_cover(plan: Plan, cam, depth: np.ndarray, alpha: Optional[np.ndarray] = None) -> np.ndarray:
    """``[blocks]``: the fraction of ``cam``'s pixels whose visible surface lies in each block's
    expanded region. ``depth``: ``[H, W]`` z-depth of the surface at each pixel (0: none), at the
    camera's resolution; ``alpha``: ``[H, W]`` coverage (pixels under 0.5 count as empty)."""
    h, w = depth.shape
    ys, xs = np.nonzero((depth > 0) & (np.ones_like(depth, bool) if alpha is None else alpha > 0.5))
    if len(ys) == 0:
        return np.zeros(len(plan.blocks))
    z = depth[ys, xs]
    rays = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))], 1) @ np.linalg.inv(cam.K).T
    world = (rays * z[:, None]) @ cam.c2w[:3, :3].T + cam.c2w[:3, 3]
    uv = plan.ground(world)
    return np.array([inside(uv, b.expanded).sum() for b in plan.blocks], np.float64) / float(h * w)


def assign_views(plan: Plan, frames: list[int], covers: np.ndarray, min_cover: float = MIN_COVER) -> None:
    """Fill each block's ``frames``: the views ``frames`` (scene indices) whose pixels show the
    block's expanded region for at least ``min_cover`` of the image (``covers``: ``[views, blocks]``
    from :func:`block_cover`), so that occluded content and views looking elsewhere do not count. A
    block no view reaches that share for gets the views that see most of it."""
    for k, b in enumerate(plan.blocks):
        c = covers[:, k]
        sel = np.nonzero(c >= min_cover)[0]
        if len(sel) == 0:
            seen = np.nonzero(c > 0)[0]
            if len(seen) == 0:
                raise ReconError(f"--partition: block {b.i},{b.j} is seen by no training view; use fewer blocks")
            sel = seen[np.argsort(-c[seen])[:max(1, len(frames) // (2 * len(plan.blocks)))]]
        b.frames = sorted(int(frames[i]) for i in sel)


def write_block_scene(scene, plan: Plan, block: Block, points: np.ndarray, folder: Path) -> Path:
    """A block's scene: ``transforms.json`` of its training views (held-out views are scored on the
    merged model) referring to the original images, plus the points of its expanded region."""
    from recon.scene.scene import Scene
    from recon.scene.writers import write_transforms_json

    frames = [scene.frames[i] for i in block.frames]
    pts = points[inside(plan.ground(points), block.expanded)]
    sub = Scene(frames=frames, root=folder, format=scene.format, points=pts if len(pts) else None,
                background=scene.background, declared_backdrop=scene.declared_backdrop, time_source=scene.time_source)
    folder.mkdir(parents=True, exist_ok=True)
    return write_transforms_json(sub, folder / "transforms.json").parent


def crop_to_core(splats: dict, plan: Plan, block: Block) -> dict:
    """The Gaussians of ``splats`` whose centres lie in the block's core."""
    from recon.models.splats import as_numpy, subset

    s = as_numpy(splats)
    return subset(s, inside(plan.ground(s["means"]), block.core))


def merge(parts: list[dict]) -> dict:
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in keys}


COARSE_FRACTION = 0.3
"""Share of the steps the coarse global model trains before the blocks (CityGaussian's prior)."""
COVER_SIDE = 128
"""Longest image side (pixels) at which the coarse model's depth is rendered to assign views."""


def split_steps(steps: int, views: list[int], coarse_fraction: float = COARSE_FRACTION) -> tuple[int, list[int]]:
    """``(coarse, per_block)``: the coarse model's steps and each block's, adding up to ``steps``.
    Blocks get the rest in proportion to their training views (``views``), so every block goes
    over its views about as often (at least one step each)."""
    nb = len(views)
    rest = min(max(int(round(steps * (1.0 - coarse_fraction))), nb), max(steps - 1, nb))
    w = np.asarray(views, np.float64) / max(float(sum(views)), 1.0)
    extra = rest - nb
    per = np.floor(w * extra).astype(int)
    order = np.argsort(-(w * extra - per), kind="stable")
    per[order[: extra - int(per.sum())]] += 1
    return max(steps - rest, 1), [int(p) + 1 for p in per]


def _own_info(info: dict, n: int) -> dict:
    """gsplat's ``info`` of a render of ``[own Gaussians; context]`` reduced to the first ``n``
    (the block's own), for the densification strategy: per-Gaussian tensors ``[C, N_all, ...]`` are
    sliced, and the screen-space gradient of the 2D means comes along."""
    from types import SimpleNamespace

    full = info["means2d"]
    total = int(full.shape[1])
    out = {}
    for k, v in info.items():
        if torch.is_tensor(v) and v.dim() >= 2 and int(v.shape[1]) == total:
            v = v[:, :n].detach()
        out[k] = v
    grad = None if full.grad is None else full.grad[:, :n]
    absgrad = getattr(full, "absgrad", None)
    out["means2d"] = SimpleNamespace(grad=grad, absgrad=None if absgrad is None else absgrad[:, :n])
    return out


def in_some_view(means: torch.Tensor, log_scales: torch.Tensor, cameras, margin: float = 3.0) -> torch.Tensor:
    """``[N]`` bool: Gaussians (``means [N, 3]``, ``log_scales [N, 3]``) whose footprint (centre
    plus ``margin`` times the largest scale) can reach the image of at least one of ``cameras``."""
    seen = torch.zeros(means.shape[0], dtype=torch.bool)
    m = means.detach().double()
    r = margin * torch.exp(log_scales.detach().double().max(dim=1).values)
    for cam in cameras:
        w2c = torch.from_numpy(np.linalg.inv(cam.c2w))
        pc = m @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        front = z + r > 1e-3
        zc = z.clamp_min(1e-3)
        x = cam.K[0, 0] * pc[:, 0] / zc + cam.K[0, 2]
        y = cam.K[1, 1] * pc[:, 1] / zc + cam.K[1, 2]
        rp = r * max(cam.K[0, 0], cam.K[1, 1]) / zc
        near = z <= r  # the camera is inside or right at the Gaussian
        seen |= front & (near | ((x + rp >= 0) & (x - rp <= cam.width) & (y + rp >= 0) & (y - rp <= cam.height)))
    return seen


class BlockSplatMethod(SplatMethod):
    """Splat training of one block on top of a frozen coarse model (see the module docstring).

    ``spec`` (set on a subclass per block): ``coarse_checkpoint`` (the coarse run's checkpoint),
    ``plan`` and ``expanded`` (which coarse Gaussians the block trains), ``scene_scale`` (the whole
    scene's, for the learning rates and densification thresholds), and ``offset``, ``span``,
    ``total``: the block's ``steps`` play steps ``offset`` to ``offset + span`` of a ``total``-step
    run (:meth:`global_step`).
    """

    spec: dict = {}

    def __init__(self, cfg, scene, views, device: torch.device):
        from recon.train.camera_opt import CameraOptModule

        # The splat method's own set-up on the block's views; its Gaussians are replaced below.
        super().__init__(cfg, scene, views, device)
        sp = self.spec
        self.scene_scale = float(sp["scene_scale"])
        self.offset, self.span, self.total = int(sp["offset"]), int(sp["span"]), int(sp["total"])
        try:
            coarse = torch.load(sp["coarse_checkpoint"], map_location="cpu", weights_only=False)["method"]
        except Exception as e:  # noqa: BLE001
            raise ReconError(f"cannot read the coarse model {sp['coarse_checkpoint']}: {e}; delete its folder "
                             "and re-run the same command") from e
        params = coarse["params"]
        n_all = int(params["means"].shape[0])
        plan = Plan.from_dict(sp["plan"])
        sel = torch.from_numpy(inside(plan.ground(params["means"].numpy()), sp["expanded"]))
        n_own = int(sel.sum())
        # The block's share of the Gaussian cap, so the merged model stays within --max-gaussians.
        self.sc = dataclasses.replace(cfg.model, max_gaussians=max(1, int(round(cfg.model.max_gaussians *
                                                                                 n_own / max(n_all, 1)))))
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v[sel].to(device)) for k, v in params.items()})
        ctx = {k: v[~sel].detach() for k, v in params.items()}
        seen = in_some_view(ctx["means"], ctx["scales"], views.cameras)
        self.context = {k: v[seen].to(device) for k, v in ctx.items()}
        self.init_source = (f"{n_own:,} of the coarse model's {n_all:,} Gaussians (cap {self.sc.max_gaussians:,}); "
                            f"{int(seen.sum()):,} of the other {n_all - n_own:,} frozen as context (the rest are "
                            "outside the block's views)")
        self.optimizers = self._make_optimizers()
        for k, o in self.optimizers.items():
            sd = coarse["optimizers"][k]
            st = {pid: {name: (v[sel] if torch.is_tensor(v) and v.dim() > 0 and int(v.shape[0]) == n_all else v)
                        for name, v in s.items()} for pid, s in sd["state"].items()}
            o.load_state_dict({"state": st, "param_groups": o.state_dict()["param_groups"]})
        self.strategy = self._make_strategy()
        # Densification stops where the whole run's would (the strategy read this block's step count).
        self.strategy.refine_stop_iter = int(self.total * self.sc.refine_stop_fraction)
        self.strategy_state = {
            k: (v[sel].to(device) if k in ("grad2d", "count", "radii") and torch.is_tensor(v) else v)
            for k, v in coarse["strategy_state"].items()
        }
        if self.camera_opt is not None:
            self.camera_opt = CameraOptModule(len(views), self.scene_scale, self.sc.lr_pose, self.sc.pose_reg, device)

    def global_step(self, step: int) -> int:
        """The whole run's step that block step ``step`` plays. Blocks stride through the schedule,
        so when a densification (or opacity reset) step of the whole run falls between two of a
        block's steps, the later block step plays it."""
        n = max(int(self.cfg.steps), 1)
        g = self.offset + (step * self.span) // n
        prev = self.offset + ((step - 1) * self.span) // n if step > 0 else g - 1
        for every in (getattr(self.sc, "reset_every", 0), self.sc.refine_every):
            m = (g // every) * every if every > 0 else -1
            if m > prev:
                return m
        return g

    def sh_degree_at(self, step: Optional[int]) -> int:
        return super().sh_degree_at(None if step is None else self.global_step(step))

    def _with_context(self) -> dict:
        return {k: torch.cat([self.params[k], self.context[k]]) for k in self.params.keys()}

    def forward(self, batch, step: int, need: frozenset = frozenset()) -> RenderOutput:
        """Render training view ``batch.index`` with the block's Gaussians and the frozen context."""
        from recon.models import splats as splat_model

        view, k = batch.view, batch.index
        params = self._with_context()
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
        return RenderOutput(rgb=rgb, alpha=alpha, depth=out[..., 3:4] if depth else None, aux={"info": info})

    def before_backward(self, step: int, out: RenderOutput) -> None:
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, self.global_step(step),
                                        out.aux["info"])

    def after_backward(self, step: int, out: RenderOutput, progress: float) -> None:
        frac = (self.offset + progress * (self.total - self.offset)) / max(self.total, 1)
        own = RenderOutput(rgb=out.rgb, aux={"info": _own_info(out.aux["info"], self.num_primitives)})
        super().after_backward(self.global_step(step), own, min(frac, 1.0))


class _StopAt:
    """Training callback: stop after step ``step`` (the coarse model is the first part of a run)."""

    def __init__(self, step: int):
        self.step = step

    def on_start(self, trainer) -> None:
        pass

    def on_step(self, trainer, step: int, stats: dict) -> None:
        if step >= self.step:
            trainer.stop_requested = True

    def on_end(self, trainer, metrics: dict) -> None:
        pass


def _finish_run(rf, trainer, steps: int) -> None:
    artifacts = trainer.method.save(rf.root, {"method": "splat", "config_hash": trainer.cfg.hash()})
    rf.update(status="done", artifacts=artifacts, render={"downscale": trainer.cfg.downscale,
                                                          **trainer.method.render_settings()}, steps=steps)


def _train_coarse(spec: dict) -> dict:
    """Ray task: the coarse global model, the first ``spec["stop"]`` steps of a ``--steps`` run
    (resumed from its checkpoint, skipped when done)."""
    import contextlib

    from recon.cluster.task import run_state
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene
    from recon.train.config import TrainConfig
    from recon.train.trainer import Trainer

    run, stop = Path(spec["run"]), int(spec["stop"])
    t0 = time.perf_counter()
    if run_state(run) == "done" and (run / "checkpoints" / f"step_{stop:07d}.pt").is_file():
        return {"name": "coarse", "status": "done", "seconds": 0.0, "skipped": True}
    cfg = TrainConfig.from_dict(spec["config"])
    sc = load_scene(Path(spec["scene"]), background=EVAL_BACKGROUND, undistort=True)
    with open(str(run) + ".log", "a", buffering=1) as fh, contextlib.redirect_stdout(fh), \
            contextlib.redirect_stderr(fh):
        rf = RunFolder.open(run) if (run / "run.json").is_file() else RunFolder.create(run, cfg, Path(spec["scene"]),
                                                                                       sc.format)
        trainer = Trainer(cfg, sc, run, callbacks=[_StopAt(stop)], log=lambda m: print(m, flush=True))
        ck = trainer.latest_checkpoint()
        if ck is not None:
            trainer.load_checkpoint(ck)
        if trainer.step < stop:
            trainer.train()
        if trainer.step != stop or not (run / "checkpoints" / f"step_{stop:07d}.pt").is_file():
            return {"name": "coarse", "status": "failed", "seconds": time.perf_counter() - t0}
        _finish_run(rf, trainer, stop)
    return {"name": "coarse", "status": "done", "seconds": time.perf_counter() - t0,
            "gaussians": trainer.method.num_primitives}


def _warm_up() -> int:
    """Ray task: load the training code and the rasterizer's compiled kernels (forward and backward)
    into this worker while the coarse model trains, so the blocks it runs start at once."""
    import recon.cluster.task  # noqa: F401  (what a block task imports)
    import recon.run  # noqa: F401
    import recon.scene.readers  # noqa: F401
    from recon.models import splats as splat_model
    from recon.train.trainer import set_threads

    set_threads(1)
    pts = np.random.default_rng(0).uniform([-1, -1, 2], [1, 1, 4], size=(64, 3))
    g = splat_model.init_splats(pts, None, 1)
    K = torch.tensor([[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]])
    out, _, _ = splat_model.render_splats(g, torch.eye(4), K, 16, 16, 1, torch.ones(3))
    out.sum().backward()
    import os

    return os.getpid()


def _train_block(spec: dict) -> dict:
    """Ray task: train one block on top of the frozen coarse model (resumed when it has a checkpoint)."""
    import contextlib
    import shutil

    from recon.cluster.task import run_state
    from recon.methods import register_method, unregister_method
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene
    from recon.train.config import TrainConfig
    from recon.train.trainer import Trainer

    run = Path(spec["run"])
    t0 = time.perf_counter()
    state = run_state(run)
    if state == "done":
        return {"name": spec["name"], "status": "done", "seconds": 0.0, "skipped": True}
    if state == "stale":
        shutil.rmtree(run)
    cfg = TrainConfig.from_dict(spec["config"])
    sc = load_scene(Path(spec["scene"]), background=EVAL_BACKGROUND, undistort=True)
    with open(str(run) + ".log", "a", buffering=1) as fh, contextlib.redirect_stdout(fh), \
            contextlib.redirect_stderr(fh):
        rf = RunFolder.open(run) if state == "resumable" else RunFolder.create(run, cfg, Path(spec["scene"]),
                                                                               sc.format)
        # The block's method is the splat method on top of the frozen coarse model: registered under
        # "splat" for the trainer's construction only (this worker process trains one block at a time).
        register_method(type("BlockSplat", (BlockSplatMethod,), {"spec": spec["block"]}))
        try:
            trainer = Trainer(cfg, sc, run, log=lambda m: print(m, flush=True))
        finally:
            unregister_method("splat")
        print(f"[train] init: {trainer.method.describe_init()}", flush=True)
        ck = trainer.latest_checkpoint()
        if ck is not None:
            trainer.load_checkpoint(ck)
        result = trainer.train()
        if result.interrupted:
            return {"name": spec["name"], "status": "failed", "seconds": time.perf_counter() - t0}
        _finish_run(rf, trainer, trainer.step)
    return {"name": spec["name"], "status": "done", "seconds": time.perf_counter() - t0,
            "gaussians": trainer.method.num_primitives}


def _wait(ray, refs: dict, what: str, log, t0: float) -> list[dict]:
    results, n = [], len(refs)
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=5.0)
        for r in ready:
            name = refs.pop(r)
            res = ray.get(r)
            results.append(res)
            how = "done before (skipped)" if res.get("skipped") else f"{res['status']} in {res['seconds']:.0f} s"
            log(f"[partition] {name}: {how} ({n - len(refs)}/{n} {what}, elapsed {time.perf_counter() - t0:.0f} s)")
    return results


def _stage_config(cfg, **change) -> dict:
    """The coarse model's or a block's training options: the run's, with ``change``. Blocks render
    the frozen coarse model behind their own Gaussians, so neither stage grows a background shell of
    its own (a splat option for sparse captures; partitioned scenes are large)."""
    d = cfg.to_dict()
    d.update(downscale=cfg.downscale, **change)
    if "background_shell" in d.get("model", {}):
        d["model"]["background_shell"] = "off"
    return d


def run_partitioned(req, grid: str, log=print, address: Optional[str] = None) -> int:
    """``recon train SCENE --partition NxM``: plan, coarse model, blocks on Ray, crop, merge, evaluate."""
    import os

    from recon.cluster import ray_env
    from recon.commands.train import _resolve_scene
    from recon.eval.evaluate import evaluate, held_out, save_grid, write_metrics
    from recon.io_utils import atomic_write_text
    from recon.models import splats as splat_model
    from recon.models.splats_io import read_ply, write_ply
    from recon.run import EVAL_BACKGROUND, RunCamera, RunFolder, write_cameras
    from recon.scene.readers import load_scene

    parsed = parse_grid(grid)
    args, cfg = req.args, req.cfg
    ray_env.check_address(address)  # before the coarse model trains, not after
    if cfg.method != "splat":
        raise ReconError(f"--partition trains Gaussian splats (--method splat), not {cfg.method}")
    if args.scene is None or args.out is None:
        raise ReconError("--partition needs the scene and --out RUN")
    if args.view:
        raise ReconError("--partition cannot serve the model while it trains (--view); view the merged run")
    if getattr(args, "resume", False):
        raise ReconError("--partition resumes by re-running the same command (without --resume)")
    out = Path(args.out)
    t0 = time.perf_counter()
    if (out / "run.json").is_file() and RunFolder.open(out).status == "done":
        raise ReconError(f"{out} already holds a finished run; choose another --out")
    scene_path = _resolve_scene(Path(args.scene), log)
    sc = load_scene(scene_path, background=EVAL_BACKGROUND, undistort=True)
    if cfg.downscale == 0:
        from recon.commands.train import auto_downscale

        auto = auto_downscale(sc, cfg.max_side)
        cfg.downscale = auto if auto is not None else 1.0
    plan_path = out / PLAN_FILE
    points = scene_points(sc, seed=cfg.seed)
    if parsed is None:
        nx, ny = auto_grid(ground_frame(sc, points).ground(points), len(sc.indices("train")))
        log(f"[partition] auto: {nx}x{ny} blocks for {len(sc.indices('train'))} training views")
    else:
        nx, ny = parsed
    plan = make_plan(sc, points, nx, ny)
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if old.get("grid") != [nx, ny] or old.get("config_hash") != cfg.hash() or old.get("steps") != cfg.steps:
            raise ReconError(f"{out} holds a partitioned run with another grid or other options; use another --out")
        plan = Plan.from_dict(old["plan"])

    def save_plan() -> None:
        atomic_write_text(plan_path, json.dumps({"grid": [nx, ny], "config_hash": cfg.hash(), "steps": cfg.steps,
                                                 "plan": plan.to_dict()}, indent=1))

    out.mkdir(parents=True, exist_ok=True)
    save_plan()
    nb = len(plan.blocks)
    coarse_steps = split_steps(cfg.steps, [1] * nb)[0]
    ncpu = os.cpu_count() or 1
    blocks_dir = out / "blocks"
    inf = float("inf")
    train = sc.indices("train")
    everything = Block(-1, -1, [-inf, inf, -inf, inf], [-inf, inf, -inf, inf], train)
    coarse_scene = write_block_scene(sc, plan, everything, points, blocks_dir / "coarse.scene")
    ccfg = _stage_config(cfg, threads=cfg.threads or ncpu)
    coarse_run = (blocks_dir / "coarse").resolve()
    coarse_spec = {"run": str(coarse_run), "scene": str(coarse_scene.resolve()), "config": ccfg, "stop": coarse_steps}
    log(f"[partition] {nx}x{ny} blocks on the ground plane; coarse model {coarse_steps} steps on all "
        f"{len(train)} training views ({ccfg['threads']} threads), then the other {cfg.steps - coarse_steps} shared by "
        f"the blocks in proportion to their views")
    # The coarse model trains in a child process on every core while the Ray cluster starts and its
    # workers load the training code (the cluster's start-up is then off the critical path).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        coarse_job = pool.submit(_train_coarse, coarse_spec)
        cluster = ray_env.start(address, log=log)
        import ray

        try:
            warm = ray.remote(_warm_up).options(num_cpus=1)
            warm_refs = [warm.remote() for _ in range(max(1, int(ray.cluster_resources().get("CPU", 1))))]
            res = coarse_job.result()
        except BaseException:
            cluster.shutdown()
            raise
    results = [res]
    how = "done before (skipped)" if res.get("skipped") else f"{res['status']} in {res['seconds']:.0f} s"
    log(f"[partition] coarse model: {how} (elapsed {time.perf_counter() - t0:.0f} s)")
    try:
        ray.get(warm_refs)
        if res["status"] == "done":
            if any(not b.frames for b in plan.blocks):
                coarse = splat_model.SplatRenderer(read_ply(coarse_run / "splats.ply"),
                                                   antialiased=bool(cfg.model.antialiased))
                covers = []
                for i in train:
                    full = sc.camera(i, cfg.downscale)
                    cam = sc.camera(i, max(cfg.downscale, max(full.width, full.height) / COVER_SIDE))
                    r = coarse.render(cam, outputs=("rgb", "depth"))
                    covers.append(block_cover(plan, cam, r.depth[..., 0].numpy().astype(np.float64),
                                              r.alpha[..., 0].numpy()))
                assign_views(plan, train, np.stack(covers))
                save_plan()
            block_steps = split_steps(cfg.steps, [len(b.frames) for b in plan.blocks])[1]
            log(f"[partition] training views per block (the coarse model's footprints): "
                f"{', '.join(str(len(b.frames)) for b in plan.blocks)} of {len(train)}; steps per block "
                f"{', '.join(map(str, block_steps))}")
            specs = []
            for b, steps in zip(plan.blocks, block_steps):
                bcfg = _stage_config(cfg, steps=steps, threads=1)
                bscene = write_block_scene(sc, plan, b, points, blocks_dir / f"{b.name}.scene")
                specs.append({"name": b.name, "scene": str(bscene.resolve()),
                              "run": str((blocks_dir / b.name).resolve()), "config": bcfg,
                              "block": {"coarse_checkpoint": str(coarse_run / "checkpoints" /
                                                                 f"step_{coarse_steps:07d}.pt"),
                                        "plan": plan.to_dict(), "expanded": b.expanded,
                                        "scene_scale": float(sc.extent()), "offset": coarse_steps,
                                        "span": cfg.steps - coarse_steps, "total": cfg.steps}})
            # The largest blocks (most coarse Gaussians to train) first, so the last to finish is a small one.
            uv = plan.ground(read_ply(coarse_run / "splats.ply")["means"].numpy())
            size = {b.name: int(inside(uv, b.expanded).sum()) for b in plan.blocks}
            specs.sort(key=lambda s: -size[s["name"]])
            task = ray.remote(_train_block).options(num_cpus=1, memory=int(2e9), max_retries=1)
            results += _wait(ray, {task.remote(s): s["name"] for s in specs}, "blocks", log, t0)
    finally:
        cluster.shutdown()
    failed = [r for r in results if r["status"] != "done"]
    if failed:
        raise ReconError(f"--partition: {', '.join(r['name'] for r in failed)} failed; see "
                         f"{blocks_dir}/NAME.log and re-run the same command to resume")
    parts, per_block = [], []
    for b in plan.blocks:
        g = read_ply(blocks_dir / b.name / "splats.ply")
        kept = crop_to_core(g, plan, b)
        done = json.loads((blocks_dir / b.name / "run.json").read_text()).get("steps", 0)
        per_block.append({"block": b.name, "gaussians": splat_model.count(g), "kept": splat_model.count(kept),
                          "views": len(b.frames), "steps": int(done)})
        parts.append(kept)
    merged = merge(parts)
    run = RunFolder.create(out, cfg, scene_path, sc.format)
    write_ply(merged, out / "splats.ply", comments=[f"partition: {nx}x{ny}"])
    cams = [RunCamera(name=f.name, c2w=f.camera.c2w, K=f.camera.K, width=f.camera.width, height=f.camera.height,
                      split=f.split) for f in sc.frames]
    write_cameras(out / "cameras.json", cams)
    render = {"background": list(EVAL_BACKGROUND), "downscale": cfg.downscale,
              "antialiased": bool(cfg.model.antialiased), "sh_degree": int(cfg.model.sh_degree)}
    renderer = splat_model.SplatRenderer(merged, antialiased=render["antialiased"])
    res = evaluate(renderer, sc, cfg.downscale, cfg.eval_views, args.lpips_weights, log=log)
    save_grid(res["_samples"], out / "renders" / "grid.png")
    wall = time.perf_counter() - t0
    total = coarse_steps + sum(b["steps"] for b in per_block)
    m = write_metrics(res, {"method": "splat", "num_gaussians": splat_model.count(merged), "steps": total,
                            "train_seconds": round(wall, 2), "model_size_bytes": (out / "splats.ply").stat().st_size,
                            "downscale": cfg.downscale, "preset": cfg.preset,
                            "partition": {"grid": [nx, ny], "coarse_steps": coarse_steps,
                                          "blocks": per_block}}, out / "metrics.json")
    run.update(status="done", artifacts={"model": "splats.ply", "cameras": "cameras.json", "metrics": "metrics.json"},
               render=render, steps=total, partition={"grid": [nx, ny], "plan": PLAN_FILE})
    what = "held-out views" if held_out(m["split"]) else "TRAINING views"
    log(f"[done] merged {nb} blocks: {m['eval_views']} {what}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} | "
        f"{m['num_gaussians']:,} gaussians | wall {wall:.0f} s")
    log(f"[done] run folder: {out}")
    return 0
