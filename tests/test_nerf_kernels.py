"""The CPU kernels of the voxel radiance field against the dense PyTorch reference
(:mod:`recon.nerf.reference`): colour, depth and transmittance to 1e-4 and the gradients of
density and colour coefficients to 1e-3, with occupancy skipping and early termination active;
the sparse Adam against torch's Adam; the occupancy grid never skips a visible sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.nerf import cpu
from recon.nerf.field import Rays, VoxelField, density_bias, render_rays, sh_basis
from recon.nerf.reference import render_reference, tv_grad_reference


def _field(res=(9, 10, 11), deg=1, mean=0.0, thresh=0.0, seed=0) -> VoxelField:
    """Random values plus ``mean`` inside a ball of radius 0.6 (``-mean`` outside)."""
    g = torch.Generator().manual_seed(seed)
    f = VoxelField([-1.0, -1.0, -1.0], [1.0, 1.2, 0.9], res, deg, density_bias(0.05, 0.1), 0.5)
    axes = [torch.linspace(float(f.lo[a]), float(f.hi[a]), res[a]) for a in range(3)]
    X, Y, Z = torch.meshgrid(*axes, indexing="ij")
    inside = ((X**2 + Y**2 + Z**2) < 0.36).reshape(-1).float()
    f.density.copy_(torch.randn(f.num_voxels, generator=g) * 2 + mean * (2 * inside - 1))
    f.feats.copy_(torch.randn(f.feats.shape, generator=g))
    f.update_occupancy(thresh)
    return f


def _rays(R=400, seed=1) -> Rays:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(R, 3, generator=g) * 0.3 + torch.tensor([0.2, -0.1, -3.0])
    d = torch.randn(R, 3, generator=g) * 0.5 - o
    d = d / d.norm(dim=-1, keepdim=True)
    return Rays(o, d, torch.full((R,), 0.1), torch.rand(R, generator=g), torch.ones(R))


def _both(f: VoxelField, rays: Rays, t_stop: float, seed: int = 2):
    """Forward outputs and gradients of a random linear loss, from the kernels and the reference."""
    Y = sh_basis(rays.dirs, f.sh_degree)
    R = len(rays)
    g = torch.Generator().manual_seed(seed)
    wC, wD, wT = torch.randn(R, 3, generator=g), torch.randn(R, generator=g), torch.randn(R, generator=g)
    grads = cpu.GradBuffers(f)
    C, D, T = cpu.render(f, rays, Y, t_stop, True, grads)
    ((C * wC).sum() + (D * wD).sum() + (T * wT).sum()).backward()
    dens = f.density.clone().requires_grad_(True)
    feats = f.feats.clone().requires_grad_(True)
    C2, D2, T2 = render_reference(dens, feats, f, rays, Y, t_stop)
    ((C2 * wC).sum() + (D2 * wD).sum() + (T2 * wT).sum()).backward()
    return (C, D, T, grads), (C2, D2, T2, dens.grad, feats.grad)


@pytest.mark.parametrize("deg, thresh, t_stop, mean", [(0, 0.0, 0.0, 0.0), (1, 0.3, 1e-2, 1.0), (2, 0.1, 1e-2, 6.0)])
def test_forward_and_gradients_match_the_reference(deg, thresh, t_stop, mean):
    f = _field(deg=deg, thresh=thresh, mean=mean)
    rays = _rays()
    (C, D, T, grads), (C2, D2, T2, gd, gf) = _both(f, rays, t_stop)
    assert float((C - C2).abs().max().detach()) <= 1e-4
    assert float((D - D2).abs().max().detach()) <= 1e-4
    assert float((T - T2).abs().max().detach()) <= 1e-4
    assert np.abs(grads.density - gd.numpy()).max() <= 1e-3
    assert np.abs(grads.feats - gf.numpy()).max() <= 1e-3
    # The gradients are not trivially small, and touched marks exactly the voxels with gradients.
    assert np.abs(gd.numpy()).max() > 0.05 and np.abs(gf.numpy()).max() > 0.01
    assert set(np.flatnonzero(grads.touched)) >= set(np.flatnonzero(gd.numpy() != 0))
    hit = (1 - T) > 0.01
    assert int(hit.sum()) > 100  # most rays see the volume


def test_skipping_and_termination_are_active_and_exact():
    """With occupancy skipping and early termination the kernels evaluate fewer samples, and the
    result stays within the termination threshold of the full integral."""
    f = _field(mean=6.0, thresh=0.2)
    rays = _rays()
    Y = sh_basis(rays.dirs, f.sh_degree)
    full = VoxelField.from_state({**f.state_dict(), "occ": torch.ones(f.num_cells, dtype=torch.uint8)})
    C0, D0, T0, n0 = cpu.march(full, rays, Y, 0.0)
    C1, D1, T1, n1 = cpu.march(f, rays, Y, 0.0)
    C2, D2, T2, n2 = cpu.march(f, rays, Y, 1e-2)
    assert 0.2 < f.occupied_fraction() < 0.9
    assert n1.sum() < 0.6 * n0.sum() and n2.sum() < n1.sum()
    assert int((n2 < n1).sum()) >= 20  # rays that stopped early
    # Skipped cells cannot hold a sample with alpha >= thresh: the skipped part of the integral is small.
    assert np.abs(C1 - C0).max() < 0.25
    # Early termination changes colour by at most the remaining transmittance.
    assert np.all(np.abs(C2 - C1).max(1) <= T2 + 1e-5)
    assert np.all(T2[n2 < n1] < 1e-2)


def test_occupancy_is_conservative():
    """No cell marked empty contains a point whose opacity reaches the threshold."""
    f = _field(mean=0.0, thresh=0.15)
    nx, ny, nz = f.res
    g = torch.Generator().manual_seed(3)
    p = f.lo + torch.rand(20000, 3, generator=g) * (f.hi - f.lo)
    gi = (p - f.lo) * f.scale
    idx = torch.minimum(gi.floor().long(), torch.tensor([nx - 2, ny - 2, nz - 2]))
    fr = gi - idx
    cell = (idx[:, 0] * (ny - 1) + idx[:, 1]) * (nz - 1) + idx[:, 2]
    d = f.density.reshape(nx, ny, nz)
    raw = torch.zeros(len(p))
    for cx in (0, 1):
        for cy in (0, 1):
            for cz in (0, 1):
                w = (fr[:, 0] if cx else 1 - fr[:, 0]) * (fr[:, 1] if cy else 1 - fr[:, 1]) * (fr[:, 2] if cz else 1 - fr[:, 2])
                raw += w * d[idx[:, 0] + cx, idx[:, 1] + cy, idx[:, 2] + cz]
    alpha = 1 - torch.exp(-torch.nn.functional.softplus(raw + f.bias) * f.step)
    empty = f.occ[cell] == 0
    assert int(empty.sum()) > 1000
    assert float(alpha[empty].max()) < 0.15


def test_sparse_adam_matches_torch_adam_on_touched_voxels():
    f = _field(deg=1)
    rays = _rays(200)
    Y = sh_basis(rays.dirs, f.sh_degree)
    d0, f0 = f.density.clone(), f.feats.clone()
    opt = cpu.SparseAdam(f, lr_density=0.1, lr_color=0.05, eps=1e-8)
    dens = d0.clone().requires_grad_(True)
    feats = f0.clone().requires_grad_(True)
    ref = torch.optim.Adam([{"params": [dens], "lr": 0.1}, {"params": [feats], "lr": 0.05}], betas=(0.9, 0.99), eps=1e-8)
    for _ in range(3):
        grads = cpu.GradBuffers(f)
        C, D, T = cpu.render(f, rays, Y, 0.0, True, grads)
        C.sum().backward()
        touched = grads.touched.copy()
        opt.step(f, grads)
        assert grads.touched.sum() == 0 and np.abs(grads.density).max() == 0  # gradients consumed
        ref.zero_grad()
        C2, _, _ = render_reference(dens, feats, f.to("cpu"), rays, Y, 0.0)
        C2.sum().backward()
        ref.step()
    # Every voxel here is touched each step (same rays), so lazy Adam equals Adam.
    assert touched.sum() > 100
    m = torch.from_numpy(touched.astype(bool))
    assert float((f.density[m] - dens.detach()[m]).abs().max()) < 1e-4
    assert float((f.feats[m] - feats.detach()[m]).abs().max()) < 1e-4
    assert float((f.density[m] - d0[m]).abs().max()) > 0.1  # it did move
    assert torch.equal(f.density[~m], d0[~m])


def test_resampling_keeps_the_field():
    """Upsampling onto a sub-box reproduces the trilinear field at the new vertices, so renders agree."""
    f = _field(res=(6, 7, 8), mean=-1.0)
    lo, hi = f.lo + 0.2, f.hi - 0.1
    g = f.resampled(lo, hi, (11, 12, 13))
    rays = _rays(300)
    Y = sh_basis(rays.dirs, f.sh_degree)
    # Compare on the new box: restrict the old field to it by clipping its rays' samples there.
    g_occ_all = g.num_cells == int(g.occ.sum())
    assert g_occ_all
    # A smooth (linear) field is reproduced exactly by trilinear resampling.
    h = VoxelField(f.lo, f.hi, f.res, 0, f.bias, 0.5)
    nx, ny, nz = f.res
    ii, jj, kk = torch.meshgrid(torch.arange(nx), torch.arange(ny), torch.arange(nz), indexing="ij")
    h.density.copy_((0.3 * ii - 0.2 * jj + 0.1 * kk).reshape(-1).float())
    h2 = h.resampled(lo, hi, (11, 12, 13))
    x = torch.linspace(float(lo[0]), float(hi[0]), 11)
    y = torch.linspace(float(lo[1]), float(hi[1]), 12)
    z = torch.linspace(float(lo[2]), float(hi[2]), 13)
    X, Yy, Z = torch.meshgrid(x, y, z, indexing="ij")
    s = h.scale
    expect = 0.3 * (X - h.lo[0]) * s[0] - 0.2 * (Yy - h.lo[1]) * s[1] + 0.1 * (Z - h.lo[2]) * s[2]
    assert float((h2.density - expect.reshape(-1)).abs().max()) < 1e-4
    C, _, _ = render_rays(g, rays, Y, 0.0)
    assert torch.isfinite(C).all()


def test_total_variation_gradient_matches_autograd():
    """The TV kernel adds, at the chosen voxels, the exact gradient of lam/2 sum_edges (x_i - x_j)^2
    (autograd of the energy), and the PyTorch version (the CUDA path) agrees."""
    f = _field(res=(7, 8, 9), deg=1, mean=2.0)
    g = torch.Generator().manual_seed(5)
    idx = torch.randperm(f.num_voxels, generator=g)[:150].sort().values
    lam_d, lam_f = 0.7, 0.3
    grads = cpu.GradBuffers(f)
    grads.density[:] = 1.0  # TV adds to what the backward left
    grads.add_tv(f, idx.numpy().astype(np.int64), lam_d, lam_f)
    nx, ny, nz = f.res

    def energy(x):
        v = x.reshape(nx, ny, nz, -1)
        return 0.5 * sum(((v.narrow(a, 1, v.shape[a] - 1) - v.narrow(a, 0, v.shape[a] - 1)) ** 2).sum()
                         for a in range(3))

    d = f.density.clone().requires_grad_(True)
    c = f.feats.clone().requires_grad_(True)
    (lam_d * energy(d) + lam_f * energy(c)).backward()
    mask = np.zeros(f.num_voxels, bool)
    mask[idx.numpy()] = True
    assert np.abs(grads.density[mask] - 1.0 - d.grad.numpy()[mask]).max() <= 1e-3
    assert np.abs(grads.feats[mask] - c.grad.numpy()[mask]).max() <= 1e-3
    assert np.all(grads.density[~mask] == 1.0) and np.all(grads.feats[~mask] == 0)
    assert np.abs(d.grad.numpy()[mask]).max() > 1.0  # a real signal, not zeros
    gd, gf = tv_grad_reference(f.density, f.feats, f.res, idx, lam_d, lam_f)
    assert float((gd[idx] - d.grad[idx]).abs().max()) <= 1e-3
    assert float((gf[idx] - c.grad[idx]).abs().max()) <= 1e-3
    assert float(gd[torch.from_numpy(~mask)].abs().max()) == 0.0


def _contracted_field(res=(17, 17, 17), deg=1, seed=3) -> VoxelField:
    """A contracted field (cube of radius 0.8 about (0.1, 0, 0)) with random values: dense in the
    cube and a shell of density far out (contracted radius 1.6-1.8)."""
    g = torch.Generator().manual_seed(seed)
    f = VoxelField([-2.0] * 3, [2.0] * 3, res, deg, density_bias(0.05, 0.1), 0.5,
                   contraction=([0.1, 0.0, 0.0], 0.8))
    axes = [torch.linspace(-2.0, 2.0, n) for n in res]
    n = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).abs().amax(-1).reshape(-1)
    shape = ((n < 0.7) | ((n > 1.6) & (n < 1.8))).float()
    f.density.copy_(torch.randn(f.num_voxels, generator=g) + 3.0 * (2 * shape - 1))
    f.feats.copy_(torch.randn(f.feats.shape, generator=g))
    f.update_occupancy(0.05)
    return f


def test_contracted_field_matches_the_reference():
    """Unbounded scenes: samples advance by ``step max(1, n)^2`` through the contracted grid; the
    kernels' samples, compositing and gradients equal the reference's, for rays from inside and
    from outside the cube."""
    f = _contracted_field()
    g = torch.Generator().manual_seed(5)
    R = 300
    o = torch.randn(R, 3, generator=g) * 0.4
    o[R // 2:] *= 6.0  # half the cameras outside the cube
    d = torch.randn(R, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    rays = Rays(o, d, torch.full((R,), 0.05), torch.rand(R, generator=g), torch.ones(R))
    (C, D, T, grads), (C2, D2, T2, gd, gf) = _both(f, rays, 1e-3)
    assert float((C - C2).abs().max().detach()) <= 1e-4
    assert float(((D - D2).abs() / D2.abs().clamp_min(1.0)).max().detach()) <= 1e-4
    assert float((T - T2).abs().max().detach()) <= 1e-4
    assert np.abs(grads.density - gd.numpy()).max() <= 1e-3
    assert np.abs(grads.feats - gf.numpy()).max() <= 1e-3
    assert np.abs(gd.numpy()).max() > 0.05
    # rays reach the far shell: depths beyond the cube, up to ~far_n radii away
    far = D / (1 - T).clamp_min(1e-6)
    assert float(far.max()) > 5 * 0.8 and int(((1 - T) > 0.5).sum()) > R // 4


def test_contraction_spacing_and_inverse():
    """The sample spacing is uniform inside the cube and about uniform in contracted space beyond
    it; world_points inverts the contraction."""
    f = _contracted_field()
    from recon.nerf.reference import contract_points, contracted_samples

    o = torch.zeros(1, 3) + torch.tensor([0.1, 0.0, 0.0])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    t, p, valid = contracted_samples(f, o, d, torch.zeros(1), torch.zeros(1))
    x = p[0, valid[0], 0]
    dx = x[1:] - x[:-1]
    vox = float(f.voxel_size.min())
    # at most the cube's spacing (half a voxel) anywhere, and never below half of it (the spacing
    # s n^2 gives contracted steps s / (1 + s n), and s n <= 1 before far_n)
    assert float(dx.max()) <= 0.5 * vox * 1.01 and float(dx.min()) >= 0.25 * vox * 0.99
    assert abs(float(x[-1]) - 2.0) <= vox  # up to the grid's edge
    u = torch.randn(500, 3) * 3
    c, _ = contract_points(u)
    back = f.world_points(c)
    ok = u.abs().amax(-1) < 20
    assert torch.allclose(back[ok], u[ok] * 0.8 + torch.tensor([0.1, 0.0, 0.0]), atol=1e-3, rtol=1e-3)
