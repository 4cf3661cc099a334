"""Synthetic Gaussian scenes for tests and benchmarks (no training needed).

* :func:`awkward_scene`: every case that breaks rasterizers (small, for parity tests);
* :func:`surface_scene`: looks like a trained scene (small Gaussians on object surfaces, mixed opacities);
* :func:`random_splats`: random Gaussians distributed like a trained 3DGS model (splat dict);
* :func:`sphere_splats`: Gaussians on a four-coloured sphere (:data:`QUADRANT_COLOURS`), world up +Z;
* :func:`surface_splats`: flat Gaussians on a triangle mesh, whose surface is known exactly;
* :func:`orbit_viewmats`: gsplat ``viewmats`` and ``Ks`` on a jittered orbit, for the rasterizer.

Fixtures for recon's own tests: not part of the pipeline, never imported by shipped code.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recon.models.quaternions import rotmats_to_quats_np
from recon.models.splats import SH_C0, logit, num_sh_rest
from recon.scene.conventions import look_at_c2w


def orbit_viewmats(C: int, W: int, H: int, radius: float = 4.0, seed: int = 0):
    """``viewmats [C, 4, 4]``, ``Ks [C, 3, 3]`` float32 on an orbit around the origin."""
    rng = np.random.default_rng(seed)
    vms, Ks = [], []
    for c in range(C):
        a = 2 * math.pi * c / C + 0.3
        eye = [radius * math.cos(a), 0.6 * rng.uniform(-1, 1), radius * math.sin(a)]
        vms.append(np.linalg.inv(look_at_c2w(eye, (0.0, 0.0, 0.0), (0.0, -1.0, 0.0))))
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
    quats = rotmats_to_quats_np(R)
    opac = np.where(rng.uniform(size=N) < 0.75, rng.uniform(0.6, 0.99, N), rng.uniform(0.02, 0.6, N))
    nb = (sh_degree + 1) ** 2
    sh = rng.normal(0.0, 0.05, size=(N, nb, 3))
    base = 0.5 + 0.4 * np.sin(pts * np.array([3.0, 5.0, 4.0]) + kinds[:, None])
    sh[:, 0, :] = (base - 0.5) / SH_C0
    f = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return f(pts), f(quats), f(scales), f(opac), f(sh)


def random_splats(n: int, sh_degree: int = 3, seed: int = 0, extent: float = 2.0) -> dict[str, torch.Tensor]:
    """``n`` random Gaussians distributed like a trained 3DGS model.

    Centres ~ N(0, extent/2) per axis; log-scales ~ N(-4.5, 0.7) (about 1 cm); random rotations
    (unnormalised quaternions); opacity logits ~ N(0.5, 2); DC ~ N(0, 0.8); higher SH ~ N(0, 0.05)
    shrinking with degree, as trained models' view-dependent terms are small. Float32 tensors.
    """
    g = torch.Generator().manual_seed(seed)
    k = num_sh_rest(sh_degree)
    band = torch.tensor([1.0] * 3 + [0.6] * 5 + [0.4] * 7 + [0.3] * 9)[:k]
    return {
        "means": torch.randn(n, 3, generator=g) * (extent / 2),
        "quats": torch.randn(n, 4, generator=g) * 1.5,
        "scales": torch.randn(n, 3, generator=g) * 0.7 - 4.5,
        "opacities": torch.randn(n, generator=g) * 2.0 + 0.5,
        "sh0": torch.randn(n, 1, 3, generator=g) * 0.8,
        "shN": torch.randn(n, k, 3, generator=g) * 0.05 * band[None, :, None],
    }


QUADRANT_COLOURS = np.array(
    [[0.9, 0.15, 0.1], [0.1, 0.8, 0.2], [0.15, 0.25, 0.9], [0.95, 0.85, 0.1]], dtype=np.float32
)


def quadrant_colour(points: np.ndarray) -> np.ndarray:
    """Colour ``[N, 3]`` of sphere points ``[N, 3]`` by the quadrant of their (x, y) direction."""
    q = np.where(points[:, 0] >= 0, np.where(points[:, 1] >= 0, 0, 3), np.where(points[:, 1] >= 0, 1, 2))
    return QUADRANT_COLOURS[q]


def sphere_splats(n: int = 4000, radius: float = 1.0, sh_degree: int = 0, seed: int = 0,
                  noise: float = 0.0) -> dict[str, torch.Tensor]:
    """``n`` Gaussians evenly spread (Fibonacci lattice) on a sphere, flattened along the normal.

    Returns recon's splat dict; ``shN`` has ``(sh_degree + 1)**2 - 1`` coefficients of small random
    noise (zeros for degree 0) so files have the size of a trained model of that degree.
    ``noise`` (0..1) jitters positions, sizes, colours, opacities and SH like a trained model's
    irregularity, so compressed sizes (SPZ, gzip) are realistic rather than tiny; 0 keeps the
    clean, exactly coloured sphere that tests compare against.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    normals = np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
    means = radius * normals
    spacing = radius * math.sqrt(4.0 * math.pi / n)
    # Disc-shaped Gaussians tangent to the sphere: rotate the local z axis onto the normal.
    zaxis = np.array([0.0, 0.0, 1.0])
    axis = np.cross(zaxis, normals)
    s = np.linalg.norm(axis, axis=1)
    c = normals[:, 2]
    half = 0.5 * np.arctan2(s, c)
    axis = np.where(s[:, None] > 1e-9, axis / np.maximum(s, 1e-12)[:, None], np.array([1.0, 0.0, 0.0]))
    quats = np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * axis], 1)
    scales = np.log(np.array([0.7 * spacing, 0.7 * spacing, 0.1 * spacing]))[None].repeat(n, 0)
    rgb = quadrant_colour(means)
    k = (sh_degree + 1) ** 2 - 1
    shN = ((0.02 + 0.1 * noise) * rng.standard_normal((n, k, 3))) if k else np.zeros((n, 0, 3))
    opac = np.full(n, math.log(0.97 / 0.03))
    if noise > 0:
        means = means + noise * 0.2 * spacing * rng.standard_normal((n, 3))
        scales = scales + noise * 0.3 * rng.standard_normal((n, 3))
        rgb = np.clip(rgb + noise * 0.08 * rng.standard_normal((n, 3)), 0, 1)
        opac = opac + noise * 1.0 * rng.standard_normal(n)
        quats = quats + noise * 0.05 * rng.standard_normal((n, 4))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {
        "means": t(means),
        "quats": t(quats),
        "scales": t(scales),
        "opacities": t(opac),
        "sh0": t(((rgb - 0.5) / SH_C0)[:, None, :]),
        "shN": t(shN),
    }


def surface_splats(
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray,
    count: int,
    seed: int = 0,
    opacity: float = 0.98,
) -> dict[str, np.ndarray]:
    """Flat Gaussians lying on a triangle mesh: a splat model whose surface is known exactly.

    ``count`` centres are sampled uniformly by area; each Gaussian is a disc in the triangle's plane
    (standard deviation 0.8 x the mean sample spacing along the surface, 1/20 of that along the
    normal) with the barycentric interpolation of the vertex ``colors`` ``[V, 3]`` (in [0, 1]) as
    its diffuse colour and SH degree 0. Float32 numpy arrays in recon's layout.
    """
    from exporters.mesh_metrics import sample_triangles  # (moves to recon/eval with the mesh metrics)

    v = np.asarray(vertices, np.float64)
    idx, b, cr, area = sample_triangles(v, faces, count, seed)
    tri = np.asarray(faces, np.int64)[idx]
    pts = np.einsum("nk,nkc->nc", b, v[tri])
    col = np.einsum("nk,nkc->nc", b, np.asarray(colors, np.float64)[tri])
    n = cr[idx] / np.maximum(np.linalg.norm(cr[idx], axis=1, keepdims=True), 1e-30)
    # rotation taking +z onto the normal: q = (1 + cos, z x n), normalised (half-angle form)
    q = np.concatenate([1.0 + n[:, 2:3], -n[:, 1:2], n[:, 0:1], np.zeros((count, 1))], 1)
    flip = q[:, 0] < 1e-6  # normal = -z: half turn about x
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    spacing = float(np.sqrt(area.sum() / count))
    sig = np.log([0.8 * spacing, 0.8 * spacing, 0.04 * spacing])
    return {
        "means": pts.astype(np.float32),
        "quats": q.astype(np.float32),
        "scales": np.broadcast_to(sig, (count, 3)).astype(np.float32),
        "opacities": np.full(count, logit(np.float32(opacity)), np.float32),
        "sh0": ((col.astype(np.float32) - 0.5) / SH_C0).reshape(-1, 1, 3).astype(np.float32),
        "shN": np.zeros((count, 0, 3), np.float32),
    }
