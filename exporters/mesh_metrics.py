"""Mesh accuracy against a ground-truth mesh: Chamfer distance and F-score (as in Tanks and Temples, DTU).

Both meshes are sampled uniformly by area; distances are exact point-to-triangle distances
(Open3D ``RaycastingScene.compute_distance``), not point-to-sample:

* accuracy: distance from each reconstructed sample to the ground-truth surface;
* completeness: distance from each ground-truth sample to the reconstruction;
* Chamfer = (mean accuracy + mean completeness) / 2;
* precision / recall at ``tau``: fraction of accuracy / completeness distances below ``tau``;
  F-score = 2 P R / (P + R).

Ground truth a capture cannot see (the underside of a pedestal, faces resting on each other) is no
fault of the reconstruction: pass ``cameras`` to keep only ground-truth samples that at least one
camera sees (in its image, facing it, unoccluded).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from recon.scene.cameras import Camera


def sample_triangles(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0):
    """Area-uniform samples on a triangle mesh: ``(face index [count], barycentrics [count, 3],
    face cross products [F, 3], face areas [F])``."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    rng = np.random.default_rng(seed)
    cr = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area = 0.5 * np.linalg.norm(cr, axis=1)
    idx = rng.choice(len(f), size=count, p=area / area.sum())
    s, r2 = np.sqrt(rng.random(count)), rng.random(count)
    return idx, np.stack([1 - s, s * (1 - r2), s * r2], 1), cr, area


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(points [count, 3], unit face normals [count, 3])`` uniformly by area over a triangle mesh."""
    idx, b, cr, _ = sample_triangles(vertices, faces, count, seed)
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)[idx]]
    pts = np.einsum("nk,nkc->nc", b, tri)
    n = cr[idx] / np.maximum(np.linalg.norm(cr[idx], axis=1, keepdims=True), 1e-30)
    return pts, n


def _scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    m = o3d.t.geometry.TriangleMesh()
    m.vertex.positions = o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32))
    m.triangle.indices = o3d.core.Tensor(np.ascontiguousarray(faces, np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(m)
    return scene


def visible_mask(points: np.ndarray, normals: np.ndarray, vertices, faces, cameras: Sequence[Camera]) -> np.ndarray:
    """Boolean ``[P]``: points on the mesh that at least one camera sees (inside its image, on the
    side the normal faces, not occluded by the mesh)."""
    import open3d as o3d

    scene = _scene(vertices, faces)
    seen = np.zeros(len(points), bool)
    for cam in cameras:
        c = cam.c2w[:3, 3]
        w2c = np.linalg.inv(cam.c2w)
        pc = points @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = cam.K[0, 0] * pc[:, 0] / z + cam.K[0, 2]
            v = cam.K[1, 1] * pc[:, 1] / z + cam.K[1, 2]
        d = c - points
        dist = np.linalg.norm(d, axis=1)
        cand = (~seen) & (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
        cand &= np.einsum("ij,ij->i", normals, d) > 0
        if not cand.any():
            continue
        idx = np.nonzero(cand)[0]
        dirs = -d[idx] / dist[idx, None]
        rays = np.concatenate([np.broadcast_to(c, dirs.shape), dirs], 1).astype(np.float32)
        t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
        seen[idx[t >= dist[idx] - 1e-3 * max(1.0, float(dist[idx].max()))]] = True
    return seen


def mesh_metrics(
    vertices: np.ndarray,
    faces: np.ndarray,
    gt_vertices: np.ndarray,
    gt_faces: np.ndarray,
    tau: float,
    samples: int = 100_000,
    cameras: Sequence[Camera] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Chamfer distance, precision, recall and F-score at ``tau`` of a mesh against ground truth.

    Args:
        vertices, faces: the reconstruction ``[V, 3]``, ``[F, 3]``.
        gt_vertices, gt_faces: the ground truth, same frame and units.
        tau: distance threshold of the F-score (scene units).
        samples: points sampled on each mesh.
        cameras: when given, ground-truth samples no camera sees are left out of completeness.

    Returns:
        ``{"chamfer", "accuracy", "completeness", "precision", "recall", "fscore", "gt_visible"}``
        (distances in scene units; ``gt_visible``: fraction of ground-truth samples kept).
    """
    p_pts, _ = sample_surface(vertices, faces, samples, seed)
    g_pts, g_n = sample_surface(gt_vertices, gt_faces, samples, seed + 1)
    keep = np.ones(len(g_pts), bool)
    if cameras:
        keep = visible_mask(g_pts, g_n, gt_vertices, gt_faces, cameras)
    g_pts = g_pts[keep]
    import open3d as o3d

    acc = _scene(gt_vertices, gt_faces).compute_distance(o3d.core.Tensor(p_pts.astype(np.float32))).numpy()
    comp = _scene(vertices, faces).compute_distance(o3d.core.Tensor(g_pts.astype(np.float32))).numpy()
    precision = float((acc < tau).mean())
    recall = float((comp < tau).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "chamfer": float(0.5 * (acc.mean() + comp.mean())),
        "accuracy": float(acc.mean()),
        "completeness": float(comp.mean()),
        "precision": precision,
        "recall": recall,
        "fscore": float(f),
        "gt_visible": float(keep.mean()),
    }
