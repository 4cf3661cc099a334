"""NeRF as an explicit voxel radiance field (DVGO / Plenoxels style), fast on CPUs.

A dense vertex grid over the scene's box holds a raw density and SH colour coefficients per vertex
(:class:`recon.nerf.field.VoxelField`); samples interpolate them trilinearly, cells the occupancy
grid marks empty are skipped and rays stop once nearly opaque. Training draws ray batches across all
training views, starts coarse and upsamples the grid (shrinking the box to the occupied region at
the first upsample), and updates only the voxels the batch touched (a sparse Adam). On CPU the
Numba kernels (:mod:`recon.nerf.cpu`) do the work; on CUDA the same model runs as PyTorch ops
(:mod:`recon.nerf.reference`). The artifact ``nerf.npz`` keeps the voxels of occupied cells only.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import ClassVar, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from recon.errors import ReconError
from recon.methods.base import Batch, Method, RenderOutput
from recon.nerf.field import Rays, VoxelField, camera_rays, contraction_of, density_bias, render_rays, sh_basis
from recon.train.appearance import AppearanceModule
from recon.train.config import training_background

MODEL_FILE = "nerf.npz"
MODEL_FORMAT = "recon-voxel-field"
MODEL_VERSION = 3
"""1: the field; 2: optionally its environment map (``env_logits``, ``env_rot``); 3: optionally a
contracted (unbounded) grid (``contraction`` in the metadata)."""


@dataclass
class NerfConfig:
    """Voxel radiance field options."""

    sh_degree: int = 2
    """Spherical-harmonics degree of the colour (0-3)."""
    res_init: int = 64
    """Starting grid: about this many vertices along each axis of a cube of the same volume."""
    res_final: int = 144
    """Final grid resolution (same measure), reached through the upsamples."""
    upsample_at: tuple[float, ...] = (0.08, 0.16, 0.28)
    """Fractions of training (steps or --max-minutes) at which the grid is upsampled, geometrically from
    --res-init to --res-final."""
    shrink_box: bool = True
    """At the first upsample, shrink the box to the occupied cells (more voxels where the object is)."""
    rays_per_batch: int = 8192
    """Rays per training step, drawn across all training views."""
    step_ratio: float = 0.5
    """Sample spacing along rays, in voxels."""
    alpha_init: float = 0.01
    """Opacity of one sample of the initial (empty) grid."""
    occ_thresh: float = 1e-3
    """Cells where no sample can reach this opacity are skipped (the occupancy grid)."""
    occ_every: int = 16
    """Steps between occupancy updates."""
    t_stop: float = 1e-3
    """A ray stops once its transmittance falls below this (early termination)."""
    lr_density: float = 1.0
    """Adam learning rate of the raw densities. An opaque surface needs raw densities of a few
    hundred and Adam moves a value by about this much per step, so 0.1 left short runs hazy."""
    lr_color: float = 0.05
    """Adam learning rate of the SH colour coefficients."""
    lr_final: float = 0.1
    """Learning rates decay exponentially to this fraction by the end of training."""
    tv_density: float = 0.0
    """Total-variation weight on the raw density (Plenoxels), relative to the photometric loss summed
    over a batch's rays; applied at the voxels each batch touches."""
    tv_color: float = 0.0
    """Total-variation weight on the colour coefficients (same units as --tv-density)."""
    tv_color_every: int = 8
    """The colour TV visits one in this many touched voxels per step (a rotating subset, with the
    weight scaled up to match), since it reads 6 neighbours' coefficients per voxel."""
    box: Optional[tuple[float, float, float, float, float, float]] = None
    """Scene box xmin ymin zmin xmax ymax zmax (default: from the cameras, or the SfM points)."""
    box_scale: float = 1.0
    """Grow the estimated box by this factor about its centre."""
    near: float = 0.0
    """Samples start at least this far from the camera."""
    scene_contraction: Literal["on", "off"] = dc_field(default="off", metadata={"hash_unless": "off"})
    """Unbounded scenes (Mip-NeRF 360 style): on, the grid covers all of space: a cube about the
    scene box's centre (half its largest side) maps linearly onto the grid's central half, and
    everything beyond it is squeezed into the shell around it, sampled about uniformly in inverse
    distance; off, the grid covers the box only. On when the content that matters reaches well
    past the box (--box around the subject of a street or landscape capture, forward-facing
    captures with depth far beyond the SfM points); a box that holds the whole scene does better off
    (the cube gets half the grid's resolution per axis)."""
    background_model: Literal["auto", "env", "flat"] = dc_field(default="auto", metadata={"hash_unless": "auto"})
    """What rays see once they leave the box: env, a learned environment map (the distant scene:
    sky, buildings, the room around an object; :mod:`recon.nerf.env`); flat, the run's background
    colour. auto: env for captures without alpha whose images are not an object on a plain
    backdrop (real photos), flat for RGBA, keyed and plain-backdrop ones."""
    env_width: int = dc_field(default=64, metadata={"hash_unless": 64})
    """Environment-map texels around the horizon (half as many from pole to pole)."""
    lr_env: float = dc_field(default=0.05, metadata={"hash_unless": 0.05})
    """Adam learning rate of the environment map's logits."""
    appearance: bool = dc_field(default=False, metadata={"hash_unless": False})
    """Per-image appearance (exposure, white balance): an affine colour map per training photo
    applied to its rays' colours, kept at zero mean over the photos, so renders of the field itself
    (held-out views, videos, exports) show the photos' average appearance."""
    env_start: float = dc_field(default=0.15, metadata={"hash_unless": 0.15})
    """Fraction of training (steps or --max-minutes) before the map learns: it starts as the median
    colour of the training pixels per direction and stays so while the field forms the objects
    (learning from the start, it soaks up object colours that the field then has to undo)."""

    def validate(self) -> None:
        def bad(name: str, want: str) -> None:
            raise ReconError(f"--{name.replace('_', '-')} {getattr(self, name)}: {want}")

        if not 0 <= self.sh_degree <= 3:
            bad("sh_degree", "must be 0, 1, 2 or 3")
        if not 8 <= self.res_init <= 1024:
            bad("res_init", "must be in 8..1024")
        if not self.res_init <= self.res_final <= 1024:
            bad("res_final", "must be in --res-init..1024")
        if any(not (0 < f < 1) for f in self.upsample_at) or list(self.upsample_at) != sorted(self.upsample_at):
            bad("upsample_at", "must be increasing fractions in (0, 1)")
        if self.rays_per_batch < 1:
            bad("rays_per_batch", "must be at least 1")
        if not 0.05 <= self.step_ratio <= 2:
            bad("step_ratio", "must be in [0.05, 2] voxels")
        if not 0 < self.alpha_init < 1:
            bad("alpha_init", "must be in (0, 1)")
        if not 0 <= self.occ_thresh < 1:
            bad("occ_thresh", "must be in [0, 1)")
        if self.occ_every < 1:
            bad("occ_every", "must be at least 1")
        if self.tv_color_every < 1:
            bad("tv_color_every", "must be at least 1")
        if not 0 <= self.t_stop < 1:
            bad("t_stop", "must be in [0, 1)")
        if not 0 <= self.env_start < 1:
            bad("env_start", "must be in [0, 1)")
        if not 4 <= self.env_width <= 4096:
            bad("env_width", "must be in 4..4096")
        for name in ("lr_density", "lr_color", "near", "tv_density", "tv_color", "lr_env"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, "must be a finite number >= 0")
        if not 0 < self.lr_final <= 1:
            bad("lr_final", "must be in (0, 1]")
        if not self.box_scale > 0:
            bad("box_scale", "must be > 0")
        if self.box is not None and not all(self.box[i] < self.box[i + 3] for i in range(3)):
            bad("box", "needs xmin < xmax, ymin < ymax, zmin < zmax")


def grid_res(lo: np.ndarray, hi: np.ndarray, res: int, contracted: bool = False) -> tuple[int, int, int]:
    """Vertices per axis for about ``res ** 3`` voxels over the box, with cubic cells. A contracted
    grid (``[-2, 2]^3``) gets ``4 k + 1`` vertices per axis, so the cube ``[-1, 1]^3`` starts and ends
    on vertices (:meth:`recon.nerf.field.VoxelField.inner` takes it exactly)."""
    if contracted:
        n = 4 * max(1, int(round((res - 1) / 4))) + 1
        return n, n, n
    ext = np.asarray(hi, np.float64) - np.asarray(lo, np.float64)
    vs = (float(np.prod(ext)) / res**3) ** (1 / 3)
    return tuple(int(max(2, round(e / vs) + 1)) for e in ext)


def depth_points(scene, step: int = 4) -> Optional[np.ndarray]:
    """World points ``[P, 3]`` of the training views' depth maps (every ``step``-th pixel per axis), or
    ``None`` when the capture has no depth maps (an RGB-D capture's depth bounds the content)."""
    pts = []
    for i in scene.indices("train"):
        if scene.frames[i].depth_path is None or scene.frames[i].camera is None:
            continue
        z = scene.depth(i)
        cam = scene.camera(i)
        K, c2w = np.asarray(cam.K, np.float64), np.asarray(cam.c2w, np.float64)
        v, u = np.mgrid[0:z.shape[0]:step, 0:z.shape[1]:step]
        zz = z[v, u].astype(np.float64)
        ok = (zz > 0) & np.isfinite(zz)
        x = (u[ok] + 0.5 - K[0, 2]) / K[0, 0] * zz[ok]
        y = (v[ok] + 0.5 - K[1, 2]) / K[1, 1] * zz[ok]
        pc = np.stack([x, y, zz[ok]], -1)
        pts.append(pc @ c2w[:3, :3].T + c2w[:3, 3])
    return np.concatenate(pts) if pts and sum(map(len, pts)) >= 20 else None


def scene_box(scene, cfg: NerfConfig) -> tuple[np.ndarray, np.ndarray]:
    """The box the field covers: ``--box``; else the 1-99 % range of the SfM points grown by 10 %;
    else the range of the training views' depth maps grown by 5 %; else the region every camera
    looks at (:func:`recon.methods.splat.estimate_init_box`)."""
    if cfg.box is not None:
        b = np.asarray(cfg.box, np.float64)
        return b[:3], b[3:]
    dp = None if scene.points is not None and len(scene.points) >= 20 else depth_points(scene)
    if scene.points is not None and len(scene.points) >= 20:
        p = np.asarray(scene.points, np.float64)
        lo, hi = np.percentile(p, 1, axis=0), np.percentile(p, 99, axis=0)
        c, h = (lo + hi) / 2, (hi - lo) / 2 * 1.1
    elif dp is not None:
        lo, hi = dp.min(0), dp.max(0)
        c, h = (lo + hi) / 2, (hi - lo) / 2 * 1.05
    else:
        from recon.methods.splat import estimate_init_box

        c, half = estimate_init_box(scene)
        h = np.full(3, half)
    h = h * cfg.box_scale
    return c - h, c + h


class RaySampler:
    """Random pixels across all training views (uniform over pixels), as ray :class:`Batch` es.

    RGBA captures are recomposited on the step's background as :class:`recon.train.data.ViewSampler`
    does (``--background random``: one random colour per step)."""

    def __init__(self, views, background: str, scene_background=None):
        self.mode = background
        self.scene_bg = torch.tensor(scene_background if scene_background is not None else (0.0, 0.0, 0.0),
                                     dtype=torch.float32)
        rgb, alpha, mask, depth, vid, us, vs = [], [], [], [], [], [], []
        c2w, K = [], []
        self.any_alpha = False
        have_mask = have_depth = False
        for k in range(len(views)):
            v = views.get(k)
            H, W = v.height, v.width
            rgb.append(v.image.reshape(-1, 3))
            alpha.append(v.alpha.reshape(-1) if v.alpha is not None else torch.ones(H * W))
            self.any_alpha |= v.alpha is not None
            mask.append(v.mask.reshape(-1) if v.mask is not None else torch.ones(H * W))
            have_mask |= v.mask is not None
            depth.append(v.depth.reshape(-1) if v.depth is not None else torch.zeros(H * W))
            have_depth |= v.depth is not None
            vv, uu = torch.meshgrid(torch.arange(H, dtype=torch.int32), torch.arange(W, dtype=torch.int32), indexing="ij")
            us.append(uu.reshape(-1))
            vs.append(vv.reshape(-1))
            vid.append(torch.full((H * W,), k, dtype=torch.int32))
            c2w.append(torch.from_numpy(np.asarray(v.camera.c2w, np.float32)))
            K.append(v.K)
        self.rgb = torch.cat(rgb)
        self.alpha = torch.cat(alpha)
        self.mask = torch.cat(mask) if have_mask else None
        self.depth = torch.cat(depth) if have_depth else None
        self.vid = torch.cat(vid)
        self.us = torch.cat(us)
        self.vs = torch.cat(vs)
        self.c2w = torch.stack(c2w)
        self.K = torch.stack(K)

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def all_dirs_and_colours(self, every: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
        """Directions ``[P, 3]`` and colours ``[P, 3]`` of every ``every``-th training pixel."""
        idx = torch.arange(0, len(self), every)
        vid = self.vid[idx].long()
        _, d, _ = camera_rays(self.c2w[vid], self.K[vid], self.us[idx], self.vs[idx])
        return d, self.rgb[idx]

    def refresh(self, views, k: int) -> None:
        """Copy training view ``k``'s current target (colour, alpha) back into the ray pool (after
        :meth:`recon.train.data.Views.replace`)."""
        v = views.get(k)
        a = sum(c.width * c.height for c in views.cameras[:k])
        b = a + v.width * v.height
        self.rgb[a:b] = v.image.reshape(-1, 3)
        if v.alpha is not None:
            self.alpha[a:b] = v.alpha.reshape(-1)
            self.any_alpha = True
        else:
            self.alpha[a:b] = 1.0

    def background(self, gen: torch.Generator) -> torch.Tensor:
        if self.any_alpha and self.mode == "random":
            return torch.rand(3, generator=gen)
        if self.mode == "white":
            return torch.ones(3)
        if self.mode == "black":
            return torch.zeros(3)
        return self.scene_bg.clone()

    def next(self, n: int, gen: torch.Generator, device: torch.device, near: float) -> Batch:
        idx = torch.randint(0, len(self), (n,), generator=gen)
        offsets = torch.rand(n, generator=gen)
        bg = self.background(gen)
        vid = self.vid[idx].long()
        o, d, z = camera_rays(self.c2w[vid], self.K[vid], self.us[idx], self.vs[idx])
        a = self.alpha[idx][:, None]
        target = self.rgb[idx] + (bg - self.scene_bg) * (1.0 - a) if self.any_alpha else self.rgb[idx]
        rays = {"origins": o, "dirs": d, "near": torch.full((n,), float(near)), "offsets": offsets, "zscale": z}
        return Batch(kind="rays", index=-1, target=target.to(device), background=bg.to(device),
                     alpha=a.to(device) if self.any_alpha else None,
                     mask=None if self.mask is None else self.mask[idx][:, None].to(device),
                     rays={k: v.to(device) for k, v in rays.items()},
                     extras={"vid": vid.to(device),
                             **({} if self.depth is None else {"depth": self.depth[idx].to(device)})})


def compose(C: torch.Tensor, D: torch.Tensor, T: torch.Tensor, zscale: torch.Tensor, background: torch.Tensor):
    """RGB on ``background`` ``[R, 3]``, alpha ``[R, 1]`` and expected z depth ``[R, 1]``."""
    alpha = (1.0 - T)[:, None]
    rgb = C + T[:, None] * background.to(C)
    depth = (D * zscale.to(D))[:, None] / alpha.clamp_min(1e-6)
    return rgb, alpha, depth


class NerfRenderer:
    """Renders a :class:`VoxelField` for any camera (the one renderer of NeRF runs)."""

    method = "nerf"

    def __init__(self, field: VoxelField, t_stop: float = 1e-3, chunk: int = 1 << 16):
        self.field = field
        self.t_stop = float(t_stop)
        self.chunk = int(chunk)

    def render(self, camera, time=None, outputs=("rgb",), background=None) -> RenderOutput:
        f = self.field
        H, W = int(camera.height), int(camera.width)
        vv, uu = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        c2w = torch.from_numpy(np.asarray(camera.c2w, np.float32))
        K = torch.from_numpy(np.asarray(camera.K, np.float32))
        bg = torch.zeros(3) if background is None else torch.as_tensor(background, dtype=torch.float32)
        o, d, z = camera_rays(c2w, K, uu.reshape(-1), vv.reshape(-1))
        n = H * W
        rays = Rays(o, d, torch.zeros(n), torch.full((n,), 0.5), z)
        rgbs, alphas, depths = [], [], []
        with torch.no_grad():
            for a in range(0, n, self.chunk):
                r = rays.slice(a, a + self.chunk)
                if f.device.type != "cpu":
                    r = Rays(*(t.to(f.device) for t in (r.origins, r.dirs, r.near, r.offsets, r.zscale)))
                C, D, T = render_rays(f, r, sh_basis(r.dirs, f.sh_degree), self.t_stop)
                # A field with an environment map shows it (the distant scene is part of the model).
                rgb, alpha, depth = compose(C, D, T, r.zscale, bg if f.env is None else f.env(r.dirs))
                rgbs.append(rgb.cpu())
                alphas.append(alpha.cpu())
                depths.append(depth.cpu())
        out = RenderOutput(rgb=torch.cat(rgbs).reshape(H, W, 3))
        if "alpha" in outputs or "depth" in outputs:
            out.alpha = torch.cat(alphas).reshape(H, W, 1)
        if "depth" in outputs:
            out.depth = torch.cat(depths).reshape(H, W, 1)
        if "normals" in outputs:
            out.normals = self._normals(rays, H, W)
        return out

    def _normals(self, rays: Rays, H: int, W: int) -> torch.Tensor:
        """``[H, W, 3]`` world-space unit normals composited with the colour's weights
        (:mod:`recon.nerf.surface`); zero where nothing is hit."""
        from recon.nerf.surface import decode_normals, normal_field

        if getattr(self, "_normal_field", None) is None:
            self._normal_field = normal_field(self.field)
        nf, out = self._normal_field, []
        with torch.no_grad():
            for a in range(0, len(rays), self.chunk):
                r = rays.slice(a, a + self.chunk)
                if nf.device.type != "cpu":
                    r = Rays(*(t.to(nf.device) for t in (r.origins, r.dirs, r.near, r.offsets, r.zscale)))
                C, _, T = render_rays(nf, r, sh_basis(r.dirs, 0), self.t_stop)
                out.append(decode_normals(C, T).cpu())
        return torch.cat(out).reshape(H, W, 3)

    def stats(self) -> dict[str, float]:
        return {"voxels": float(self.field.num_voxels)}


class NerfMethod(Method):
    """Voxel radiance field trained on ray batches."""

    name = "nerf"
    Config = NerfConfig
    description = "NeRF: a voxel radiance field (density + SH colour), Numba kernels on CPU, PyTorch on CUDA"
    # Measured (docs/training.md, "Training background"): lego 200x200 fast 31.93 -> 32.46 dB against
    # random backgrounds.
    auto_background = "scene"
    presets: ClassVar[dict] = {
        # Both are time-boxed: the schedules (upsampling, learning-rate decay) follow the step count or
        # the wall-time budget, whichever is further along, so a slow or busy machine still anneals.
        # lego at 200x200 on 2 idle cores: 5,000 steps in about 11 minutes.
        "fast": {"steps": 5000, "max_minutes": 14.0, "max_side": 640, "checkpoint_every": 1000,
                 "model": {"res_final": 144, "sh_degree": 2}},
        "quality": {"steps": 12000, "max_minutes": 58.0, "max_side": 1600, "checkpoint_every": 2000,
                    "model": {"res_final": 224, "sh_degree": 2}},
    }

    def __init__(self, cfg, scene, views, device: torch.device):
        super().__init__(cfg, scene, views, device)
        self.nc: NerfConfig = cfg.model
        self.sampler = RaySampler(views, training_background(cfg, scene.background), scene.background)
        lo, hi = scene_box(scene, self.nc)
        contraction = None
        if self.nc.scene_contraction == "on":
            contraction = ((lo + hi) / 2, float(np.max(hi - lo)) / 2)
            lo, hi = np.full(3, -2.0), np.full(3, 2.0)
        res = grid_res(lo, hi, self.nc.res_init, contraction is not None)
        self.field = VoxelField(lo, hi, res, self.nc.sh_degree, 0.0, self.nc.step_ratio, device,
                                contraction=contraction)
        self.field.bias = density_bias(self.nc.alpha_init, self.field.step)
        if self.nc.background_model == "env" or (self.nc.background_model == "auto" and self._distant_background(scene)):
            from recon.nerf.env import EnvMap, up_frame

            w = self.nc.env_width
            self.field.env = EnvMap(up_frame(self.sampler.c2w.numpy()), max(w // 2, 2), w, device=device)
            self.field.env.fit_median(*self.sampler.all_dirs_and_colours())
        self.upsamples = 0
        self.visible = self._visible_cells()
        self._make_optimizer()
        self._make_env_optimizer()
        self.appearance = AppearanceModule(len(views), device) if self.nc.appearance else None

    def _distant_background(self, scene) -> bool:
        """auto: a capture without alpha whose images do not show an object on a plain backdrop (a
        real capture: the surroundings reach past the box) gets an environment map."""
        if self.sampler.any_alpha:
            return False
        from recon.train.init_points import plain_background

        return not plain_background(scene, scene.indices("train"))

    def describe_init(self) -> str:
        lo, hi = self.field.lo.numpy(), self.field.hi.numpy()
        env = self.field.env
        bg = f"environment map {env.shape[0]}x{env.shape[1]}" if env is not None else "flat background"
        ctr = self.field.contraction
        where = (f"box {np.round(lo, 3).tolist()} - {np.round(hi, 3).tolist()}" if ctr is None else
                 f"all of space (contracted; cube of radius {ctr[1]:.3g} about {np.round(ctr[0], 3).tolist()} "
                 "at full resolution)")
        return (f"voxel grid {'x'.join(map(str, self.field.res))} over {where}, SH degree {self.nc.sh_degree}, {bg}, {len(self.sampler):,} training rays; "
                f"{'per-photo appearance; ' if self.appearance is not None else ''}"
                f"{'Numba CPU kernels' if self.device.type == 'cpu' else 'PyTorch ops on ' + str(self.device)}")

    def _visible_cells(self) -> torch.Tensor:
        """``[cells]`` bool: cells whose centre some training camera sees (within a cell's radius of
        its image). No ray crosses the others, so they would keep their initial density, stay
        "occupied" and keep the box from shrinking; they are marked empty at every update."""
        f = self.field
        nx, ny, nz = f.res
        vs = f.voxel_size
        axes = [f.lo[a] + (torch.arange(n - 1, dtype=torch.float32) + 0.5) * vs[a] for a, n in enumerate(f.res)]
        X, Y, Z = torch.meshgrid(*axes, indexing="ij")
        pts = torch.stack([X.reshape(-1), Y.reshape(-1), Z.reshape(-1)], -1)
        vis = torch.zeros(len(pts), dtype=torch.bool)
        rad = 0.87 * float(vs.max())
        if f.contraction is not None:  # world centres; a cell at max-norm n spans about n^2 radii
            n = pts.abs().amax(-1)
            rad = rad * f.contraction[1] / (2.0 - n.clamp(1.0, 2.0 - 0.5 / f.far_n)) ** 2
            pts = f.world_points(pts)
        sizes = [(v.width, v.height) for v in self.views.cameras]
        for k in range(len(self.sampler.c2w)):
            c2w, K = self.sampler.c2w[k], self.sampler.K[k]
            pc = (pts - c2w[:3, 3]) @ c2w[:3, :3]
            z = pc[:, 2]
            zs = z.clamp_min(1e-6)
            m = rad * K[0, 0] / zs
            u = K[0, 0] * pc[:, 0] / zs + K[0, 2]
            v = K[1, 1] * pc[:, 1] / zs + K[1, 2]
            W, H = sizes[k]
            vis |= (z > -rad) & (u > -m) & (u < W + m) & (v > -m) & (v < H + m)
        return vis.to(self.device)

    def _update_occupancy(self) -> None:
        with torch.no_grad():
            self.field.update_occupancy(self.nc.occ_thresh)
            self.field.occ = (self.field.occ.bool() & self.visible.to(self.field.occ.device)).to(torch.uint8)

    # ---- optimisation -------------------------------------------------------------------------------
    def _make_env_optimizer(self) -> None:
        """The environment map's own Adam (kept across grid upsamples)."""
        env = self.field.env
        self.env_param = self.env_opt = None
        if env is not None:
            self.env_param = torch.nn.Parameter(env.logits)
            env.logits = self.env_param.data  # one storage: the optimiser's steps are the map's
            self.env_opt = torch.optim.Adam([self.env_param], lr=self.nc.lr_env, betas=(0.9, 0.99), eps=1e-8)

    def _make_optimizer(self) -> None:
        if self.device.type == "cpu":
            from recon.nerf import cpu

            self.grads = cpu.GradBuffers(self.field)
            self.opt = cpu.SparseAdam(self.field, self.nc.lr_density, self.nc.lr_color, eps=1e-8)
        else:
            self.field.density = torch.nn.Parameter(self.field.density.detach())
            self.field.feats = torch.nn.Parameter(self.field.feats.detach())
            self.grads = None
            self.opt = torch.optim.Adam([{"params": [self.field.density], "lr": self.nc.lr_density},
                                         {"params": [self.field.feats], "lr": self.nc.lr_color}],
                                        betas=(0.9, 0.99), eps=1e-8)

    def sample(self, step: int, gen: torch.Generator) -> Batch:
        return self.sampler.next(self.nc.rays_per_batch, gen, self.device, self.nc.near)

    def forward(self, batch: Batch, step: int, need: frozenset[str] = frozenset()) -> RenderOutput:
        r = batch.rays
        rays = Rays(r["origins"], r["dirs"], r["near"], r["offsets"], r["zscale"])
        Y = sh_basis(rays.dirs, self.field.sh_degree)
        if self.device.type == "cpu":
            from recon.nerf import cpu

            C, D, T = cpu.render(self.field, rays, Y, self.nc.t_stop, True, self.grads)
        else:
            C, D, T = render_rays(self.field, rays, Y, self.nc.t_stop, True)
        bg = batch.background if self.env_param is None else self.field.env(rays.dirs, self.env_param)
        rgb, alpha, depth = compose(C, D, T, rays.zscale, bg)
        if self.appearance is not None:
            rgb = self.appearance.apply_rays(rgb, batch.extras["vid"])
        return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)

    def after_backward(self, step: int, out: RenderOutput, progress: float) -> None:
        scale = self.nc.lr_final ** progress
        if self.appearance is not None:
            self.appearance.step()
        if self.env_opt is not None:
            if progress >= self.nc.env_start:
                self.env_opt.param_groups[0]["lr"] = self.nc.lr_env * scale
                self.env_opt.step()
            self.env_opt.zero_grad(set_to_none=True)
        # TV weights are relative to the loss summed over rays; the photometric loss is a mean.
        lam_d = self.nc.tv_density / self.nc.rays_per_batch
        lam_f = self.nc.tv_color / self.nc.rays_per_batch
        if self.device.type == "cpu":
            idx = self.grads.touched_ids()
            self.grads.add_tv(self.field, idx, lam_d, 0.0)
            k = self.nc.tv_color_every
            self.grads.add_tv(self.field, idx[step % k::k], 0.0, lam_f * k)
            self.opt.step(self.field, self.grads, scale, idx)
        else:
            if lam_d or lam_f:
                from recon.nerf.reference import tv_grad_reference

                d, c = self.field.density, self.field.feats
                gd = d.grad if d.grad is not None else torch.zeros_like(d)
                gf = c.grad if c.grad is not None else torch.zeros_like(c)
                idx = torch.nonzero((gd != 0) | (gf != 0).any(1)).flatten()
                k = self.nc.tv_color_every
                td, _ = tv_grad_reference(d, c, self.field.res, idx, lam_d, 0.0)
                _, tc = tv_grad_reference(d, c, self.field.res, idx[step % k::k], 0.0, lam_f * k)
                d.grad, c.grad = gd + td, gf + tc
            for g, lr in zip(self.opt.param_groups, (self.nc.lr_density, self.nc.lr_color)):
                g["lr"] = lr * scale
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        if self.upsamples < len(self.nc.upsample_at) and progress >= self.nc.upsample_at[self.upsamples]:
            self._upsample()
        elif (step + 1) % self.nc.occ_every == 0:
            self._update_occupancy()

    def _upsample(self) -> None:
        n = len(self.nc.upsample_at)
        self.upsamples += 1
        res = self.nc.res_init * (self.nc.res_final / self.nc.res_init) ** (self.upsamples / n)
        self._update_occupancy()
        with torch.no_grad():
            if self.upsamples == 1 and self.nc.shrink_box and self.field.contraction is None:
                # The box of the cells that became clearly opaque (3x the initial opacity): cells
                # that rays only graze (the box's faces) still sit near the initial density.
                kept = self.field.occ
                self.field.update_occupancy(max(self.nc.occ_thresh, 3 * self.nc.alpha_init))
                lo, hi = self.field.occupied_box(margin_cells=3)
                self.field.occ = kept
            else:
                lo, hi = self.field.lo.numpy(), self.field.hi.numpy()
            self.field = self.field.resampled(lo, hi, grid_res(lo, hi, int(round(res)),
                                                                self.field.contraction is not None))
        self.visible = self._visible_cells()
        self._update_occupancy()
        self._make_optimizer()

    def target_replaced(self, k: int) -> None:
        self.sampler.refresh(self.views, k)

    def stats(self) -> dict[str, float]:
        return {"voxels": float(self.field.num_voxels), "occupied %": 100.0 * self.field.occupied_fraction()}

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"field": self.field.state_dict(), "opt": self.opt.state_dict(), "upsamples": self.upsamples,
                **({"env_opt": self.env_opt.state_dict()} if self.env_opt is not None else {}),
                **({"appearance": self.appearance.state_dict()} if self.appearance is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        self.field = VoxelField.from_state(state["field"], self.device)  # with its map, if it has one
        self.upsamples = int(state["upsamples"])
        self.visible = self._visible_cells()
        self._make_optimizer()
        self.opt.load_state_dict(state["opt"])
        self._make_env_optimizer()
        if self.env_opt is not None and "env_opt" in state:
            self.env_opt.load_state_dict(state["env_opt"])
        if self.appearance is not None and "appearance" in state:
            self.appearance.load_state_dict(state["appearance"])

    # ---- the trained model --------------------------------------------------------------------------
    def renderer(self) -> NerfRenderer:
        return NerfRenderer(self.field.to(self.device), self.nc.t_stop)

    def render_settings(self) -> dict:
        return {"t_stop": float(self.nc.t_stop)}

    def save(self, run_dir: Path, provenance: dict[str, str]) -> dict[str, str]:
        from recon.io_utils import atomic_write_bytes

        atomic_write_bytes(Path(run_dir) / MODEL_FILE, encode_field(self.field, provenance))
        return {"model": MODEL_FILE}

    @classmethod
    def load_renderer(cls, run_dir: Path, artifacts: dict[str, str], render: dict) -> NerfRenderer:
        field = decode_field(Path(run_dir) / artifacts.get("model", MODEL_FILE))
        return NerfRenderer(field, float(render.get("t_stop", 1e-3)))


def used_voxels(field: VoxelField) -> torch.Tensor:
    """Ids of the vertices of occupied cells (the only ones a render reads)."""
    nx, ny, nz = field.res
    occ = field.occ.reshape(1, 1, nx - 1, ny - 1, nz - 1).float().cpu()
    used = F.max_pool3d(occ, kernel_size=2, stride=1, padding=1)[0, 0].reshape(-1)
    return torch.nonzero(used > 0).flatten()


def encode_field(field: VoxelField, provenance: dict[str, str]) -> bytes:
    """``nerf.npz``: the field's metadata and the values of the vertices of occupied cells (exact
    for rendering: no other vertex is read)."""
    ids = used_voxels(field)
    # The lowest version that holds what the file has, so older recon still reads what it can.
    version = 3 if field.contraction is not None else 2 if field.env is not None else 1
    meta = {"format": MODEL_FORMAT, "version": version, **field.meta(), "provenance": dict(provenance)}
    buf = io.BytesIO()
    env = {}
    if field.env is not None:
        env = {"env_logits": field.env.logits.detach().cpu().numpy(), "env_rot": field.env.rot.cpu().numpy()}
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), ids=ids.numpy().astype(np.int64),
                        density=field.density.detach().cpu()[ids].numpy(),
                        feats=field.feats.detach().cpu()[ids].numpy(), occ=np.packbits(field.occ.cpu().numpy()), **env)
    return buf.getvalue()


def decode_field(path: Path, device="cpu") -> VoxelField:
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            ids, dens, feats, occ = z["ids"], z["density"], z["feats"], z["occ"]
            env = (z["env_logits"], z["env_rot"]) if "env_logits" in z.files else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise ReconError(f"cannot read NeRF model {path}: {e}") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ReconError(f"{path} is not a recon voxel field (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > MODEL_VERSION:
        raise ReconError(f"{path} has voxel-field version {meta.get('version')}; upgrade recon to read it")
    res = tuple(meta["res"])
    f = VoxelField(meta["lo"], meta["hi"], res, meta["sh_degree"], meta["bias"], meta["step_ratio"],
                   contraction=contraction_of(meta))
    f.density.fill_(-1e4)
    ids_t = torch.from_numpy(ids)
    f.density[ids_t] = torch.from_numpy(dens)
    f.feats[ids_t] = torch.from_numpy(feats)
    f.occ = torch.from_numpy(np.unpackbits(occ)[: f.num_cells].copy())
    if env is not None:
        from recon.nerf.env import EnvMap

        f.env = EnvMap(env[1], logits=torch.from_numpy(np.asarray(env[0], np.float32)))
    return f.to(device) if str(device) != "cpu" else f
