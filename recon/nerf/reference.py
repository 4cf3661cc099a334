"""Dense PyTorch execution of the voxel field: the same samples, skipping, termination and
compositing as the CPU kernels (:mod:`recon.nerf._cpu_kernels`), differentiable by autograd.

It is the CUDA path (all ops are plain tensor ops) and the reference the CPU kernels are tested
against (forward and gradients, ``tests/test_nerf_kernels.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from recon.nerf.field import Rays, VoxelField


def ray_box(origins: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances ``[R]`` of rays through the box ``[lo, hi]`` (exit < entry: a miss)."""
    d = torch.where(dirs.abs() < 1e-12, torch.where(dirs >= 0, 1e-12, -1e-12).to(dirs), dirs)
    inv = 1.0 / d
    ta = (lo - origins) * inv
    tb = (hi - origins) * inv
    t0 = torch.minimum(ta, tb).amax(-1)
    t1 = torch.maximum(ta, tb).amin(-1)
    return t0, t1


def contract_points(u: Tensor) -> tuple[Tensor, Tensor]:
    """``(contracted [..., 3], n [...])`` of normalised positions ``u``: ``u`` where its max-norm
    ``n <= 1``, else ``(2 - 1/n) u / n``."""
    n = u.abs().amax(-1)
    s = torch.where(n > 1, (2.0 - 1.0 / n.clamp_min(1e-12)) / n.clamp_min(1e-12), torch.ones_like(n))
    return u * s[..., None], n


def contracted_samples(field: VoxelField, o: Tensor, d: Tensor, near: Tensor, offsets: Tensor):
    """``(t [R, S], contracted points [R, S, 3], valid [R, S])``: the sample distances of a
    contracted field (the kernels' ``_contract_start`` and spacing), stepped for all rays at once; a
    ray's samples end at its first one whose max-norm reaches ``far_n``."""
    c, r = field.contraction
    cen = torch.as_tensor(c, dtype=torch.float32, device=o.device)
    step, far_n = float(field.step), float(field.far_n)

    def at(t):
        return contract_points((o + t[:, None] * d - cen) * (1.0 / r))

    _, n0 = at(near)
    m0 = n0.clamp_min(1.0)
    t = near + offsets * step * m0 * m0  # the kernels' order of operations
    ts, ps, alive, valid = [], [], torch.ones(len(o), dtype=torch.bool, device=o.device), []
    while True:
        p, n = at(t)
        alive = alive & (n < far_n)
        if not bool(alive.any()):
            break
        ts.append(t)
        ps.append(p)
        valid.append(alive)
        m = n.clamp_min(1.0)
        t = torch.where(alive, t + step * m * m, t)  # stopped rays stay put (finite points)
    if not ts:
        z = torch.zeros(len(o), 0, device=o.device)
        return z, torch.zeros(len(o), 0, 3, device=o.device), z.bool()
    return torch.stack(ts, 1), torch.stack(ps, 1), torch.stack(valid, 1)


def render_reference(density: Tensor, feats: Tensor, field: VoxelField, rays: Rays, Y: Tensor, t_stop: float,
                     chunk_samples: int = 1 << 22):
    """``(C [R, 3], D [R], T [R])`` of ``rays`` through ``field``'s grid geometry and occupancy, with the
    values ``density [N]`` and ``feats [N, 3K]`` (pass tensors that require grad to differentiate).

    ``C``: composited colour without background; ``D``: ``sum w t``; ``T``: final transmittance."""
    dev = density.device
    lo, hi = field.lo.to(dev), field.hi.to(dev)
    scale = field.scale.to(dev)
    nx, ny, nz = field.res
    step = field.step
    o, d = rays.origins.to(dev), rays.dirs.to(dev)
    R = o.shape[0]
    C = torch.zeros(R, 3, device=dev)
    D = torch.zeros(R, device=dev)
    if field.contraction is not None:
        t, p, valid = contracted_samples(field, o, d, rays.near.to(dev), rays.offsets.to(dev))
        S = t.shape[1]
    else:
        t0, t1 = ray_box(o, d, lo, hi)
        t0 = torch.maximum(t0, rays.near.to(dev))
        hit = t1 > t0
        off = rays.offsets.to(dev)
        span = torch.where(hit, t1 - t0, torch.zeros_like(t0))
        S = int(math.ceil(float(span.max()) / step)) + 2 if R and bool(hit.any()) else 0
        if S:
            i = torch.arange(S, device=dev, dtype=torch.float32)
            t = t0[:, None] + (i[None] + off[:, None]) * step  # [R, S]
            valid = hit[:, None] & (t < t1[:, None])
            p = o[:, None] + t[..., None] * d[:, None]
    if S == 0:
        return C + density.sum() * 0, D, torch.ones(R, device=dev)
    top = torch.tensor([nx - 1, ny - 1, nz - 1], device=dev, dtype=torch.float32)
    g = torch.minimum(torch.clamp((p - lo) * scale, min=0.0), top)
    idx = torch.minimum(g.floor().long(), (top - 1).long())
    frac = g - idx.to(torch.float32)
    cell = (idx[..., 0] * (ny - 1) + idx[..., 1]) * (nz - 1) + idx[..., 2]
    valid = valid & (field.occ.to(dev)[cell] > 0)
    rr, ss = torch.nonzero(valid, as_tuple=True)  # samples in ray, then distance order
    base = (idx[rr, ss, 0] * ny + idx[rr, ss, 1]) * nz + idx[rr, ss, 2]
    fx, fy, fz = frac[rr, ss].unbind(-1)
    gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
    w8 = torch.stack([gx * gy * gz, gx * gy * fz, gx * fy * gz, gx * fy * fz,
                      fx * gy * gz, fx * gy * fz, fx * fy * gz, fx * fy * fz], -1)
    offs = torch.tensor([0, 1, nz, nz + 1, ny * nz, ny * nz + 1, ny * nz + nz, ny * nz + nz + 1], device=dev)
    corners = base[:, None] + offs[None]  # [M, 8]
    raw = (density[corners] * w8).sum(-1)
    sig = F.softplus(raw + field.bias, threshold=15.0)
    log_e = -sig * step
    # Exclusive transmittance per ray; samples are grouped by ray in order of distance.
    dense = torch.zeros(R, S, device=dev)
    dense = dense.index_put((rr, ss), log_e)
    cum = torch.cumsum(dense, 1)
    T_before = torch.exp(cum[rr, ss] - log_e)
    keep = T_before.detach() >= t_stop
    rr, ss, corners, w8 = rr[keep], ss[keep], corners[keep], w8[keep]
    log_e, T_before = log_e[keep], T_before[keep]
    wt = T_before * (1 - torch.exp(log_e))
    K = Y.shape[1]
    f = (feats[corners] * w8[..., None]).sum(1).reshape(-1, 3, K)  # [M, 3, K]
    c = torch.sigmoid((f * Y.to(dev)[rr][:, None, :]).sum(-1))
    C = C.index_add(0, rr, wt[:, None] * c)
    D = D.index_add(0, rr, wt * t[rr, ss])
    T = torch.exp(torch.zeros(R, device=dev).index_add(0, rr, log_e))
    return C, D, T


def tv_grad_reference(density: Tensor, feats: Tensor, res: tuple[int, int, int], idx: Tensor, lam_density: float,
                      lam_color: float) -> tuple[Tensor, Tensor]:
    """Gradients ``([N], [N, C])`` of the total variation ``lam / 2 sum_edges (x_i - x_j)^2`` over all
    grid edges, kept at the voxels ``idx`` and zero elsewhere (as the CPU kernel ``tv_grad`` adds)."""
    nx, ny, nz = res

    def lap(x: Tensor) -> Tensor:
        v = x.reshape(nx, ny, nz, -1)
        g = torch.zeros_like(v)
        for a in range(3):
            diff = v.narrow(a, 1, v.shape[a] - 1) - v.narrow(a, 0, v.shape[a] - 1)
            g.narrow(a, 0, v.shape[a] - 1).sub_(diff)
            g.narrow(a, 1, v.shape[a] - 1).add_(diff)
        return g.reshape(x.shape[0], -1)

    keep = torch.zeros(density.shape[0], dtype=torch.bool, device=density.device)
    keep[idx] = True
    gd = torch.where(keep, lap(density.detach()[:, None])[:, 0] * lam_density, torch.zeros_like(density))
    gf = torch.zeros_like(feats)
    if lam_color:
        gf = torch.where(keep[:, None], lap(feats.detach()) * lam_color, gf)
    return gd.detach(), gf.detach()
