"""Surface quantities of a voxel radiance field: normals, the density level of its surface, and
points on it (for ``outputs=("normals",)``, mesh and point-cloud exports and splat distillation).

**Normals.** The normal at a point is the negative normalised gradient of the density ``sigma``.
The gradient is taken per grid vertex by central differences of ``sigma = softplus(raw + b)``
(one-sided at the box faces) and interpolated trilinearly between vertices, like every other
quantity of the field. A render composites the per-sample normals with the same weights as the
colour: :func:`normal_field` stores the normals as the SH-degree-0 "colour" of a field with the same
geometry, density and occupancy (``logit((n + 1) / 2) / Y00``, so the kernel's sigmoid gives back
``(n + 1) / 2``), and the one ray-marching kernel renders it. Dividing by the accumulated alpha and
renormalising gives a unit world-space normal per pixel.

**Surface level.** :func:`surface_level` picks the density of the iso-surface from the field: along
training rays it finds where the transmittance crosses 0.5 (the median depth of the ray's weights)
and takes the median density there. A sharp surface crosses T = 0.5 inside the voxel where the
density rises, so the level sits on the rendered surface whatever the field's density scale.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recon.nerf.field import VoxelField

SH_Y00 = 0.28209479177387814
"""The degree-0 spherical-harmonic basis value (gsplat's SH_C0)."""


def sigma_grid(field: VoxelField) -> Tensor:
    """``[nx, ny, nz]`` float32 density ``softplus(raw + bias)`` at the grid vertices (CPU)."""
    nx, ny, nz = field.res
    raw = field.density.detach().float().cpu().reshape(nx, ny, nz)
    return F.softplus(raw + field.bias, threshold=15.0)


def vertex_normals(field: VoxelField, sigma: Optional[Tensor] = None) -> Tensor:
    """``[nx, ny, nz, 3]`` unit normals ``-grad sigma / |grad sigma|`` at the vertices (zero where the
    density is flat)."""
    s = sigma_grid(field) if sigma is None else sigma
    vs = [float(v) for v in field.voxel_size]
    g = torch.stack(torch.gradient(s, spacing=vs), -1)
    norm = g.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-12, -g / norm.clamp_min(1e-12), torch.zeros_like(g))


def normal_field(field: VoxelField) -> VoxelField:
    """A field with ``field``'s box, density and occupancy whose (SH degree 0) colour is its normal,
    encoded so that the renderer's sigmoid returns ``(n + 1) / 2``."""
    n = vertex_normals(field).reshape(-1, 3)
    c = ((n + 1.0) * 0.5).clamp(1e-4, 1.0 - 1e-4)
    feats = torch.logit(c) / SH_Y00
    return VoxelField(field.lo, field.hi, field.res, 0, field.bias, field.step_ratio, field.device,
                      density=field.density.detach(), feats=feats, occ=field.occ, contraction=field.contraction)


def decode_normals(C: Tensor, T: Tensor) -> Tensor:
    """Unit normals ``[R, 3]`` from a normal field's composited colour ``C [R, 3]`` and final
    transmittance ``T [R]`` (zero where nothing was hit)."""
    a = (1.0 - T)[:, None]
    n = 2.0 * C - a  # sum w (2 c - 1) = 2 C - sum w
    norm = n.norm(dim=-1, keepdim=True)
    return torch.where((a > 1e-4) & (norm > 1e-8), n / norm.clamp_min(1e-8), torch.zeros_like(n))


def trilinear(vol: Tensor, field: VoxelField, pts: Tensor) -> Tensor:
    """Values ``[P, C]`` of a vertex volume ``[nx, ny, nz, C]`` (or ``[nx, ny, nz]``) at world points
    ``[P, 3]`` (clamped to the box)."""
    squeeze = vol.dim() == 3
    v = vol[..., None] if squeeze else vol
    nx, ny, nz, C = v.shape
    g = (pts.float() - field.lo) / (field.hi - field.lo) * 2 - 1  # [-1, 1] over the box
    grid = g[:, [2, 1, 0]].reshape(1, -1, 1, 1, 3)  # grid_sample's x indexes the last axis
    out = F.grid_sample(v.permute(3, 0, 1, 2)[None].float(), grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    out = out[0].reshape(C, -1).T
    return out[:, 0] if squeeze else out


def _march(field: VoxelField, sigma: Tensor, origins: Tensor, dirs: Tensor, samples_per_voxel: float = 2.0,
           chunk: int = 2048):
    """Per ray: ``(t_half, sigma_half)``, the distance where the transmittance falls to 0.5 and the
    density there (NaN for rays that stay more than half transparent)."""
    from recon.nerf.reference import ray_box

    step = float(field.voxel_size.min()) / samples_per_voxel
    t_out, s_out = [], []
    for a in range(0, len(origins), chunk):
        o, d = origins[a:a + chunk], dirs[a:a + chunk]
        t0, t1 = ray_box(o, d, field.lo, field.hi)
        t0 = t0.clamp_min(0.0)
        hit = t1 > t0
        S = int(math.ceil(float((t1 - t0)[hit].max()) / step)) + 1 if bool(hit.any()) else 1
        t = t0[:, None] + (torch.arange(S, dtype=torch.float32)[None] + 0.5) * step
        inside = hit[:, None] & (t < t1[:, None])
        p = o[:, None] + t[..., None] * d[:, None]
        s = trilinear(sigma, field, p.reshape(-1, 3)).reshape(p.shape[:2]) * inside
        logT = -torch.cumsum(s * step, 1)
        crossed = logT < math.log(0.5)
        k = torch.where(crossed.any(1), crossed.float().argmax(1), torch.full((len(o),), -1))
        ok = k >= 0
        kk = k.clamp_min(0)
        rows = torch.arange(len(o))
        t_out.append(torch.where(ok, t[rows, kk], torch.full_like(t0, float("nan"))))
        s_out.append(torch.where(ok, s[rows, kk], torch.full_like(t0, float("nan"))))
    return torch.cat(t_out), torch.cat(s_out)


def training_rays(cameras, count: int, seed: int = 0, max_side: int = 0) -> tuple[Tensor, Tensor]:
    """``count`` random pixel rays (origins, unit directions ``[count, 3]``) spread over ``cameras``
    (anything with ``c2w``, ``K``, ``width``, ``height``)."""
    from recon.nerf.field import camera_rays

    gen = np.random.default_rng(seed)
    cams = list(cameras)
    ks = gen.integers(0, len(cams), count)
    os_, ds = [], []
    for k in np.unique(ks):
        c = cams[int(k)]
        m = int((ks == k).sum())
        u = torch.from_numpy(gen.integers(0, int(c.width), m))
        v = torch.from_numpy(gen.integers(0, int(c.height), m))
        o, d, _ = camera_rays(torch.from_numpy(np.asarray(c.c2w, np.float32)),
                              torch.from_numpy(np.asarray(c.K, np.float32)), u, v)
        os_.append(o)
        ds.append(d)
    return torch.cat(os_), torch.cat(ds)


def surface_level(field: VoxelField, cameras, rays: int = 20000, seed: int = 0,
                  sigma: Optional[Tensor] = None) -> float:
    """The density of the field's surface: the median density where training rays' transmittance
    crosses 0.5 (see the module doc). Falls back to the density at which one voxel is half opaque
    when fewer than 100 rays hit anything."""
    s = sigma_grid(field) if sigma is None else sigma
    o, d = training_rays(cameras, rays, seed)
    _, sh = _march(field, s, o, d)
    sh = sh[torch.isfinite(sh)]
    if len(sh) < 100:
        return math.log(2.0) / float(field.voxel_size.min())
    return float(sh.median())


def surface_points(field: VoxelField, cameras, count: int, seed: int = 0, sigma: Optional[Tensor] = None):
    """``(points [P, 3], normals [P, 3], view directions [P, 3])`` float32: where ``count`` random
    training rays' transmittance crosses 0.5 (the peak of their weights on an opaque surface); rays
    that stay mostly transparent give none."""
    s = sigma_grid(field) if sigma is None else sigma
    o, d = training_rays(cameras, count, seed)
    t, _ = _march(field, s, o, d)
    ok = torch.isfinite(t)
    p = o[ok] + t[ok, None] * d[ok]
    n = trilinear(vertex_normals(field, s), field, p)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return p.numpy().astype(np.float32), n.numpy().astype(np.float32), d[ok].numpy().astype(np.float32)


def point_colors(field: VoxelField, points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """``[P, 3]`` float32 colours in [0, 1] of the field at ``points`` seen along ``dirs`` (the SH
    colour of the field's interpolated coefficients)."""
    from recon.nerf.field import sh_basis

    nx, ny, nz = field.res
    feats = field.feats.detach().float().cpu().reshape(nx, ny, nz, -1)
    p = torch.from_numpy(np.asarray(points, np.float32))
    f = trilinear(feats, field, p).reshape(len(p), 3, field.K)
    d = torch.from_numpy(np.asarray(dirs, np.float32))
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    Y = sh_basis(d, field.sh_degree)
    return torch.sigmoid((f * Y[:, None, :]).sum(-1)).numpy().astype(np.float32)
