"""The voxel radiance field: a dense vertex grid of raw density and SH colour coefficients over a box,
an occupancy grid of its cells, and the rays that render it.

One model, two executions of the same maths (:mod:`recon.nerf._cpu_kernels` documents it):
:mod:`recon.nerf.cpu` (Numba, sparse gradients and a per-voxel Adam; the CPU path) and
:mod:`recon.nerf.reference` (dense PyTorch with autograd; the CUDA path and the parity reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def num_bases(sh_degree: int) -> int:
    return (sh_degree + 1) ** 2


def density_bias(alpha_init: float, step: float) -> float:
    """The shift ``b`` in ``sigma = softplus(raw + b)`` that makes a sample of length ``step`` with
    ``raw = 0`` have opacity ``alpha_init`` (DVGO's low-density initialisation)."""
    sigma = -math.log(1.0 - alpha_init) / step
    return float(math.log(math.expm1(sigma)))


@dataclass
class Rays:
    """A batch of rays.

    Attributes:
        origins: ``[R, 3]`` float32 world-space origins.
        dirs: ``[R, 3]`` float32 unit directions.
        near: ``[R]`` float32 smallest distance along the ray that is sampled.
        offsets: ``[R]`` float32 in [0, 1): sample ``i`` sits at ``t0 + (i + offset) step``.
        zscale: ``[R]`` float32 cosine between the ray and its camera's optical axis (distance -> z).
    """

    origins: Tensor
    dirs: Tensor
    near: Tensor
    offsets: Tensor
    zscale: Tensor

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def slice(self, a: int, b: int) -> "Rays":
        return Rays(self.origins[a:b], self.dirs[a:b], self.near[a:b], self.offsets[a:b], self.zscale[a:b])


def camera_rays(c2w: Tensor, K: Tensor, us: Tensor, vs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rays through pixel centres ``(us + 0.5, vs + 0.5)``.

    ``c2w [B, 4, 4]`` / ``K [B, 3, 3]`` per ray (OpenCV axes) or ``[4, 4]`` / ``[3, 3]`` for all,
    ``us, vs [R]`` integer pixel columns and rows. Returns origins ``[R, 3]``, unit directions
    ``[R, 3]`` and ``zscale [R]`` (z depth per unit distance)."""
    u = us.to(torch.float32) + 0.5
    v = vs.to(torch.float32) + 0.5
    if K.dim() == 2:
        K = K.expand(u.shape[0], 3, 3)
        c2w = c2w.expand(u.shape[0], 4, 4)
    x = (u - K[:, 0, 2]) / K[:, 0, 0]
    y = (v - K[:, 1, 2]) / K[:, 1, 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], -1)
    norm = d_cam.norm(dim=-1)
    d = torch.einsum("rij,rj->ri", c2w[:, :3, :3], d_cam) / norm[:, None]
    return c2w[:, :3, 3].contiguous(), d.contiguous(), (1.0 / norm).contiguous()


class VoxelField:
    """Raw density ``[N]`` and colour coefficients ``[N, 3 K]`` on an ``nx x ny x nz`` vertex grid
    spanning ``[lo, hi]`` (vertex ``(i, j, k)`` has id ``(i ny + j) nz + k``), with the cell occupancy
    ``occ [(nx-1)(ny-1)(nz-1)]`` (uint8) used for empty-space skipping.

    ``step_ratio``: sample spacing in voxels; ``bias``: the density shift (:func:`density_bias`);
    ``env``: the background at infinity (:class:`recon.nerf.env.EnvMap`) or None (a flat background
    given at render time).

    ``contraction``: None (the grid spans the world box ``[lo, hi]``), or ``(centre [3], radius)``
    for an unbounded scene: the grid then spans contracted space ``[-2, 2]^3``, where the cube of
    half-size ``radius`` about ``centre`` maps linearly onto ``[-1, 1]^3`` and everything beyond it
    into the shell up to 2 (:func:`contract_points`; the kernels' ``_contract``). Densities are per
    world unit inside the cube; samples beyond it are spaced ``max(1, n)^2`` times wider and count as
    segments of the cube's step.
    """

    def __init__(self, lo, hi, res: tuple[int, int, int], sh_degree: int, bias: float, step_ratio: float = 0.5,
                 device: torch.device | str = "cpu", density: Optional[Tensor] = None,
                 feats: Optional[Tensor] = None, occ: Optional[Tensor] = None, env=None, contraction=None):
        self.lo = torch.as_tensor(np.asarray(lo, np.float32)).clone()
        self.hi = torch.as_tensor(np.asarray(hi, np.float32)).clone()
        self.res = tuple(int(r) for r in res)
        if min(self.res) < 2:
            raise ValueError(f"grid resolution {self.res} needs at least 2 vertices per axis")
        self.sh_degree = int(sh_degree)
        self.bias = float(bias)
        self.step_ratio = float(step_ratio)
        self.device = torch.device(device)
        n = self.num_voxels
        C = 3 * num_bases(self.sh_degree)
        self.density = (torch.zeros(n, dtype=torch.float32, device=self.device) if density is None
                        else density.to(self.device, torch.float32).contiguous())
        self.feats = (torch.zeros(n, C, dtype=torch.float32, device=self.device) if feats is None
                      else feats.to(self.device, torch.float32).contiguous())
        self.occ = (torch.ones(self.num_cells, dtype=torch.uint8, device=self.device) if occ is None
                    else occ.to(self.device, torch.uint8).contiguous())
        self.env = env
        self.contraction = None
        if contraction is not None:
            c, r = contraction
            self.contraction = (np.asarray(c, np.float32).reshape(3).copy(), float(r))

    # ---- geometry ---------------------------------------------------------------------------------
    @property
    def num_voxels(self) -> int:
        nx, ny, nz = self.res
        return nx * ny * nz

    @property
    def num_cells(self) -> int:
        nx, ny, nz = self.res
        return (nx - 1) * (ny - 1) * (nz - 1)

    @property
    def K(self) -> int:
        return num_bases(self.sh_degree)

    @property
    def voxel_size(self) -> Tensor:
        """``[3]`` cell edge lengths."""
        return (self.hi - self.lo) / (torch.tensor(self.res, dtype=torch.float32) - 1)

    @property
    def scale(self) -> Tensor:
        """``[3]`` world -> grid-index factors."""
        return 1.0 / self.voxel_size

    @property
    def step(self) -> float:
        """Sample spacing along rays (world units; for a contracted field, inside its cube)."""
        radius = 1.0 if self.contraction is None else self.contraction[1]
        return float(self.step_ratio * self.voxel_size.min()) * radius

    @property
    def far_n(self) -> float:
        """Contracted fields: rays stop where the max-norm of the normalised position reaches this
        (contracted radius within half a voxel of the grid's edge at 2)."""
        return 2.0 / float(self.voxel_size.min())

    def world_points(self, grid_pts: Tensor) -> Tensor:
        """World positions ``[P, 3]`` of points given in the grid's space (the identity unless
        contracted; points on the contracted grid's outer faces map to a finite far distance)."""
        if self.contraction is None:
            return grid_pts
        c, r = self.contraction
        n = grid_pts.abs().amax(-1, keepdim=True).clamp(max=2.0 - 0.5 / self.far_n)
        s = torch.where(n > 1, 1.0 / ((2.0 - n) * n.clamp_min(1e-12)), torch.ones_like(n))
        return grid_pts * s * r + torch.as_tensor(c, dtype=grid_pts.dtype)

    def inner(self) -> "VoxelField":
        """A contracted field's cube as an uncontracted field over the world box ``centre +- radius``
        (same voxel size and values: meshes, point clouds and surface queries work on it); the field
        itself when it is not contracted."""
        if self.contraction is None:
            return self
        c, r = self.contraction
        res = tuple(int(round((n - 1) / 2)) + 1 for n in self.res)
        sub = self.resampled(np.full(3, -1.0, np.float32), np.full(3, 1.0, np.float32), res)
        return VoxelField(c - r, c + r, res, self.sh_degree, self.bias, self.step_ratio, self.device,
                          density=sub.density, feats=sub.feats, env=self.env)

    def occupied_fraction(self) -> float:
        return float(self.occ.float().mean())

    # ---- resampling -------------------------------------------------------------------------------
    def _as_volume(self) -> Tensor:
        """``[1, 1 + 3K, nx, ny, nz]`` density and colour as one volume."""
        nx, ny, nz = self.res
        v = torch.cat([self.density[:, None], self.feats], 1)
        return v.T.reshape(1, -1, nx, ny, nz)

    def resampled(self, lo, hi, res: tuple[int, int, int]) -> "VoxelField":
        """This field trilinearly resampled onto a new box and resolution (occupancy: all cells)."""
        lo_t = torch.as_tensor(np.asarray(lo, np.float32))
        hi_t = torch.as_tensor(np.asarray(hi, np.float32))
        axes = []
        for a, n in enumerate(res):
            x = torch.linspace(float(lo_t[a]), float(hi_t[a]), int(n))
            # grid_sample coordinates in [-1, 1] over the old box (align_corners=True: vertices).
            axes.append(((x - self.lo[a]) / (self.hi[a] - self.lo[a]) * 2 - 1).to(self.device))
        gx, gy, gz = torch.meshgrid(*axes, indexing="ij")
        # grid_sample's last coordinate indexes the innermost (last) volume axis.
        grid = torch.stack([gz, gy, gx], -1)[None]
        vol = F.grid_sample(self._as_volume(), grid, mode="bilinear", padding_mode="border", align_corners=True)
        flat = vol[0].reshape(vol.shape[1], -1).T.contiguous()
        return VoxelField(lo_t, hi_t, res, self.sh_degree, self.bias, self.step_ratio, self.device,
                          density=flat[:, 0].contiguous(), feats=flat[:, 1:].contiguous(), env=self.env,
                          contraction=self.contraction)

    def occupied_box(self, margin_cells: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """The box of the occupied cells grown by ``margin_cells`` (the whole box when none is)."""
        nx, ny, nz = self.res
        occ = self.occ.reshape(nx - 1, ny - 1, nz - 1).bool()
        if not bool(occ.any()):
            return self.lo.numpy().copy(), self.hi.numpy().copy()
        lo, hi = [], []
        vs = self.voxel_size
        for a in range(3):
            other = tuple(b for b in range(3) if b != a)
            idx = torch.nonzero(occ.any(dim=other[1]).any(dim=other[0])).flatten()
            i0 = max(int(idx.min()) - margin_cells, 0)
            i1 = min(int(idx.max()) + 1 + margin_cells, self.res[a] - 1)
            lo.append(float(self.lo[a] + i0 * vs[a]))
            hi.append(float(self.lo[a] + i1 * vs[a]))
        return np.asarray(lo, np.float32), np.asarray(hi, np.float32)

    # ---- occupancy --------------------------------------------------------------------------------
    def update_occupancy(self, thresh: float) -> None:
        """Cells whose highest possible sample opacity is below ``thresh`` become empty."""
        if self.device.type == "cpu":
            from recon.nerf import cpu

            cpu.update_occupancy(self, thresh)
            return
        nx, ny, nz = self.res
        d = self.density.reshape(1, 1, nx, ny, nz)
        mx = F.max_pool3d(d, kernel_size=2, stride=1)[0, 0].reshape(-1)
        a = 1 - torch.exp(-F.softplus(mx + self.bias) * self.step)
        self.occ = (a >= thresh).to(torch.uint8).contiguous()

    # ---- serialisation ----------------------------------------------------------------------------
    def meta(self) -> dict:
        m = {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "res": list(self.res), "sh_degree": self.sh_degree,
             "bias": self.bias, "step_ratio": self.step_ratio}
        if self.contraction is not None:
            m["contraction"] = {"centre": self.contraction[0].tolist(), "radius": self.contraction[1]}
        return m

    def state_dict(self) -> dict:
        return {**self.meta(), "density": self.density.detach().cpu().clone(),
                "feats": self.feats.detach().cpu().clone(), "occ": self.occ.cpu().clone(),
                **({"env": self.env.state()} if self.env is not None else {})}

    @classmethod
    def from_state(cls, s: dict, device="cpu") -> "VoxelField":
        env = None
        if s.get("env") is not None:
            from recon.nerf.env import EnvMap

            env = EnvMap.from_state(s["env"], device)
        return cls(s["lo"], s["hi"], tuple(s["res"]), s["sh_degree"], s["bias"], s["step_ratio"], device,
                   density=s["density"], feats=s["feats"], occ=s["occ"], env=env,
                   contraction=contraction_of(s))

    def to(self, device) -> "VoxelField":
        return VoxelField.from_state(self.state_dict(), device)


def contraction_of(meta: dict):
    """``(centre, radius)`` from a field's :meth:`VoxelField.meta` (None: not contracted)."""
    c = meta.get("contraction")
    return None if c is None else (c["centre"], c["radius"])


def render_rays(field: VoxelField, rays: Rays, Y: Tensor, t_stop: float, train: bool = False):
    """``(C [R, 3], D [R], T [R])`` of ``rays`` (see :mod:`recon.nerf._cpu_kernels`): the CPU kernels
    for a CPU field, the PyTorch reference otherwise. ``Y [R, K]``: SH basis of the ray directions.
    ``train``: keep what the backward pass needs (the CPU path hands gradients to :mod:`recon.nerf.cpu`)."""
    if field.device.type == "cpu":
        from recon.nerf import cpu

        return cpu.render(field, rays, Y, t_stop, train)
    from recon.nerf.reference import render_reference

    return render_reference(field.density, field.feats, field, rays, Y, t_stop)


def sh_basis(dirs: Tensor, sh_degree: int) -> Tensor:
    """``[R, K]`` float32 SH basis values (gsplat's convention) of unit directions ``[R, 3]``."""
    from recon.render.sh import sh_bases

    return sh_bases(num_bases(sh_degree), dirs).to(torch.float32).contiguous()
