"""Synthetic Gaussian scenes and orbit cameras for the rasterizer tests and benchmarks.

``awkward_scene`` holds every case that breaks rasterizers (small, for parity tests);
``surface_scene`` looks like a trained scene (small Gaussians on object surfaces, mixed opacities).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward) looking from ``eye`` at ``target``."""
    eye = np.asarray(eye, float)
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def orbit_cameras(C: int, W: int, H: int, radius: float = 4.0, seed: int = 0):
    """``viewmats [C, 4, 4]``, ``Ks [C, 3, 3]`` float32 on an orbit around the origin."""
    rng = np.random.default_rng(seed)
    vms, Ks = [], []
    for c in range(C):
        a = 2 * math.pi * c / C + 0.3
        eye = [radius * math.cos(a), 0.6 * rng.uniform(-1, 1), radius * math.sin(a)]
        vms.append(np.linalg.inv(look_at(eye)))
        f = W * rng.uniform(0.8, 1.1)
        fy = f * rng.uniform(0.95, 1.05)
        Ks.append([[f, 0, W / 2 + rng.uniform(-2, 2)], [0, fy, H / 2 + rng.uniform(-2, 2)], [0, 0, 1]])
    return torch.tensor(np.array(vms), dtype=torch.float32), torch.tensor(Ks, dtype=torch.float32)


def awkward_scene(N: int = 300, seed: int = 0, sh_degree=None, D: int = 3, viewmat0=None):
    """Gaussians with the cases that break rasterizers.

    Mostly ordinary random Gaussians near the origin, plus: behind camera 0 and straddling its near
    plane, far off-screen, huge, needle-thin, zero and near-zero opacity, exactly opaque stacks
    (early termination), equal depths, and a few that cover many tiles.
    Returns ``means, quats, scales, opacities, colors`` (float32; scales/opacities activated).
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g) * 0.9
    quats = torch.randn(N, 4, generator=g)
    scales = torch.exp(torch.randn(N, 3, generator=g) * 0.5 - 2.3)
    opac = torch.rand(N, generator=g)
    n = N // 20
    i = 0
    if viewmat0 is not None:
        c2w = torch.linalg.inv(viewmat0.double()).float()
        cam, fwd = c2w[:3, 3], c2w[:3, 2]
        means[i : i + n] = cam - fwd * torch.rand(n, 1, generator=g) * 2  # behind camera 0
        i += n
        means[i : i + n] = cam + fwd * torch.rand(n, 1, generator=g) * 0.012  # around the near plane
        i += n
    means[i : i + n] += torch.tensor([25.0, 0.0, 0.0])  # far off-screen
    i += n
    scales[i : i + n] = 1.5 + torch.rand(n, 3, generator=g)  # huge
    opac[i : i + n] = 0.05 * torch.rand(n, generator=g)
    i += n
    scales[i : i + n] = torch.tensor([0.6, 1e-4, 2e-4])  # needle-thin
    i += n
    opac[i : i + n] = 0.0  # zero opacity
    opac[i + n // 2 : i + n] = 0.5 / 255.0  # just below the alpha threshold
    i += n
    # a stack of nearly opaque Gaussians on one line of sight: early termination
    means[i : i + n] = torch.tensor([0.1, 0.05, 0.0]) + 0.01 * torch.randn(n, 3, generator=g)
    opac[i : i + n] = 0.995
    scales[i : i + n] = 0.15
    i += n
    means[i : i + 3] = means[i + 3 : i + 6]  # equal depths (ties)
    i += 6
    scales[i : i + n] = torch.tensor([0.5, 0.5, 0.02])  # flat discs over many tiles
    i += n
    if sh_degree is None:
        colors = torch.rand(N, D, generator=g)
    else:
        colors = torch.randn(N, (sh_degree + 1) ** 2, 3, generator=g) * 0.3
    return means, quats, scales, opac, colors


def surface_scene(N: int, seed: int = 0, sh_degree: int = 3, extent: float = 1.0):
    """Gaussians that look like a trained scene: small, flattened splats on object surfaces.

    Points are spread over a few spheres, boxes and a ground plane of size ~``extent``; each
    Gaussian is a disc tangent to its surface with a size from the local point spacing
    (log-normal), opacities mostly high with a tail of faint ones, and SH coefficients
    ``[N, (sh_degree+1)^2, 3]`` with a coloured DC term and small higher bands.
    Returns ``means, quats, scales, opacities, sh`` (float32; scales/opacities activated).
    """
    rng = np.random.default_rng(seed)
    kinds = rng.choice(4, size=N, p=[0.35, 0.25, 0.25, 0.15])
    pts = np.zeros((N, 3))
    nrm = np.zeros((N, 3))
    # sphere
    m = kinds == 0
    d = rng.normal(size=(m.sum(), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts[m] = np.array([0.0, -0.1, 0.0]) + 0.45 * extent * d
    nrm[m] = d
    # small sphere
    m = kinds == 1
    d = rng.normal(size=(m.sum(), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts[m] = np.array([0.55, 0.2, 0.35]) * extent + 0.22 * extent * d
    nrm[m] = d
    # box faces
    m = kinds == 2
    k = m.sum()
    face = rng.integers(0, 6, size=k)
    axis = face // 2
    sign = np.where(face % 2 == 0, -1.0, 1.0)
    u = rng.uniform(-1, 1, size=(k, 3))
    u[np.arange(k), axis] = sign
    half = np.array([0.25, 0.3, 0.25]) * extent
    pts[m] = np.array([-0.55, 0.1, -0.3]) * extent + u * half
    nn = np.zeros((k, 3))
    nn[np.arange(k), axis] = sign
    nrm[m] = nn
    # ground plane (y down is +y in OpenCV-style scenes)
    m = kinds == 3
    k = m.sum()
    pts[m] = np.stack([rng.uniform(-1.2, 1.2, k), np.full(k, 0.45), rng.uniform(-1.2, 1.2, k)], 1) * extent
    nrm[m] = np.array([0.0, -1.0, 0.0])
    # Gaussian size from the point density (~ area / N), log-normal spread
    area = 4 * np.pi * 0.45**2 + 4 * np.pi * 0.22**2 + 2 * (0.5 * 0.6 * 2 + 0.5 * 0.5) + 2.4 * 2.4
    spacing = np.sqrt(area * extent**2 / N)
    s_t = spacing * np.exp(rng.normal(0.0, 0.35, size=(N, 2))) * 0.7
    s_n = s_t.min(axis=1, keepdims=True) * 0.15
    scales = np.concatenate([s_t, s_n], axis=1)
    # rotation whose third axis is the normal
    a = np.where(np.abs(nrm[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = np.cross(nrm, a)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(nrm, t1)
    theta = rng.uniform(0, 2 * np.pi, size=(N, 1))
    e1 = np.cos(theta) * t1 + np.sin(theta) * t2
    e2 = np.cross(nrm, e1)
    R = np.stack([e1, e2, nrm], axis=2)  # columns
    quats = _rotmats_to_quats(R)
    opac = np.where(rng.uniform(size=N) < 0.75, rng.uniform(0.6, 0.99, N), rng.uniform(0.02, 0.6, N))
    nb = (sh_degree + 1) ** 2
    sh = rng.normal(0.0, 0.05, size=(N, nb, 3))
    base = 0.5 + 0.4 * np.sin(pts * np.array([3.0, 5.0, 4.0]) + kinds[:, None])
    sh[:, 0, :] = (base - 0.5) / 0.28209479177387814
    f = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return f(pts), f(quats), f(scales), f(opac), f(sh)


def _rotmats_to_quats(R: np.ndarray) -> np.ndarray:
    """Vectorised rotation matrices [N, 3, 3] -> quaternions wxyz [N, 4] (w >= 0)."""
    tr = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]
    w = np.sqrt(np.maximum(0.0, 1.0 + tr)) / 2
    x = np.sqrt(np.maximum(0.0, 1.0 + R[:, 0, 0] - R[:, 1, 1] - R[:, 2, 2])) / 2
    y = np.sqrt(np.maximum(0.0, 1.0 - R[:, 0, 0] + R[:, 1, 1] - R[:, 2, 2])) / 2
    z = np.sqrt(np.maximum(0.0, 1.0 - R[:, 0, 0] - R[:, 1, 1] + R[:, 2, 2])) / 2
    x = np.copysign(x, R[:, 2, 1] - R[:, 1, 2])
    y = np.copysign(y, R[:, 0, 2] - R[:, 2, 0])
    z = np.copysign(z, R[:, 1, 0] - R[:, 0, 1])
    return np.stack([w, x, y, z], axis=1)

