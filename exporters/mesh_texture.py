"""UV unwrapping (xatlas) and colour texture baking from rendered views.

:func:`unwrap` cuts the mesh into charts and packs them into one square texture with xatlas.
:func:`bake_texture` fills it: every texel covered by a triangle gets the 3D point under its centre;
each view whose own ray-cast depth of the mesh agrees with that point's distance (so the point is
not hidden by other geometry) contributes the view's colour there, bilinearly sampled and weighted
by ``cos(angle to the view)^2 * (focal length / distance)^2`` (sharp, frontal, close views count
most). Texels no view sees take the interpolated vertex colour; empty texels next to charts are
filled from their neighbours (so bilinear filtering and mipmaps do not bleed background into the
charts' borders): each takes the colour of the nearest covered texel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

from recon.errors import ReconError
from recon.scene.cameras import Camera


def unwrap(
    vertices: np.ndarray, faces: np.ndarray, size: int, chart_vertices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charts packed into one ``size`` x ``size`` atlas with xatlas.

    Args:
        vertices: ``[V, 3]`` positions; faces: ``[F, 3]`` vertex indices.
        size: texture edge in pixels (charts are padded by ``max(2, size // 512)`` texels).
        chart_vertices: ``[V, 3]`` positions to segment and flatten instead of ``vertices``
            (e.g. a smoothed copy: fused meshes are bumpy at the voxel scale, which makes xatlas
            cut thousands of tiny charts and run for minutes).

    Returns:
        ``vmap [V']`` (original vertex of each output vertex; vertices on seams are split),
        ``faces [F, 3]`` into the output vertices (same order and winding as the input), and
        ``uvs [V', 2]`` in [0, 1], origin top-left, v down (texel row = v * size).
    """
    import xatlas

    if len(faces) == 0:
        raise ReconError("cannot unwrap an empty mesh")
    src = vertices if chart_vertices is None else chart_vertices
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(src, np.float32), np.ascontiguousarray(faces, np.uint32))
    chart = xatlas.ChartOptions()
    chart.max_iterations = 0  # one growing pass: several times faster, charts barely differ
    pack = xatlas.PackOptions()
    pack.resolution = int(size)
    pack.padding = max(2, int(size) // 512)
    pack.bilinear = True
    pack.create_image = False
    atlas.generate(chart, pack)
    if atlas.atlas_count != 1:
        raise ReconError(f"the UV charts do not fit one {size}x{size} texture; pass a larger --mesh-texture-size")
    vmap, idx, uvs = atlas[0]
    # xatlas normalises by the atlas's own width and height, which can differ from each other and
    # from the requested resolution: keep texels square and scale the atlas into the texture
    w, h = float(atlas.width), float(atlas.height)
    uvs = np.asarray(uvs, np.float64) * np.array([w, h]) / max(w, h)
    return np.asarray(vmap, np.int64), np.asarray(idx, np.int64).reshape(-1, 3), uvs


@njit(cache=True, nogil=True)
def _raster_uv(uv_px, faces, size, face_id, bary):  # pragma: no cover - compiled
    """For each texel centre inside a triangle in texel space: its face and barycentrics."""
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ax, ay = uv_px[a, 0], uv_px[a, 1]
        bx, by = uv_px[b, 0], uv_px[b, 1]
        cx, cy = uv_px[c, 0], uv_px[c, 1]
        det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
        if abs(det) < 1e-12:
            continue
        x0 = max(int(np.floor(min(ax, bx, cx))), 0)
        x1 = min(int(np.ceil(max(ax, bx, cx))), size - 1)
        y0 = max(int(np.floor(min(ay, by, cy))), 0)
        y1 = min(int(np.ceil(max(ay, by, cy))), size - 1)
        for y in range(y0, y1 + 1):
            py = y + 0.5
            for x in range(x0, x1 + 1):
                px = x + 0.5
                w1 = ((px - ax) * (cy - ay) - (cx - ax) * (py - ay)) / det
                w2 = ((bx - ax) * (py - ay) - (px - ax) * (by - ay)) / det
                w0 = 1.0 - w1 - w2
                if w0 >= -1e-6 and w1 >= -1e-6 and w2 >= -1e-6:
                    face_id[y, x] = f
                    bary[y, x, 0] = w0
                    bary[y, x, 1] = w1
                    bary[y, x, 2] = w2


@njit(cache=True, nogil=True, fastmath=True)
def _accumulate_view(points, normals, R, t, centre, fx, fy, cx, cy, hit, img, tol_abs, acc, wsum):  # pragma: no cover
    """Add one view's colour, weighted, to every texel point that view sees unoccluded."""
    H, W = hit.shape
    for i in range(points.shape[0]):
        px, py, pz = points[i, 0], points[i, 1], points[i, 2]
        xc = R[0, 0] * px + R[0, 1] * py + R[0, 2] * pz + t[0]
        yc = R[1, 0] * px + R[1, 1] * py + R[1, 2] * pz + t[1]
        zc = R[2, 0] * px + R[2, 1] * py + R[2, 2] * pz + t[2]
        if zc <= 1e-6:
            continue
        u = fx * xc / zc + cx
        v = fy * yc / zc + cy
        if u < 0.0 or v < 0.0 or u >= W or v >= H:
            continue
        dx, dy, dz = centre[0] - px, centre[1] - py, centre[2] - pz
        dist = np.sqrt(dx * dx + dy * dy + dz * dz)
        cosv = (normals[i, 0] * dx + normals[i, 1] * dy + normals[i, 2] * dz) / dist
        if cosv <= 0.05:
            continue
        ix, iy = int(u), int(v)
        tol = tol_abs + 2.0 * dist / fx / max(cosv, 0.2)
        if not abs(hit[iy, ix] - dist) <= tol:  # hidden by other geometry (or nothing hit)
            continue
        # bilinear colour at (u, v); pixel centres at +0.5
        fu, fv = u - 0.5, v - 0.5
        x0, y0 = int(np.floor(fu)), int(np.floor(fv))
        ax, ay = fu - x0, fv - y0
        x0c, x1c = min(max(x0, 0), W - 1), min(max(x0 + 1, 0), W - 1)
        y0c, y1c = min(max(y0, 0), H - 1), min(max(y0 + 1, 0), H - 1)
        w = cosv * cosv * (fx / dist) * (fx / dist)
        for ch in range(3):
            c = (
                (1 - ax) * (1 - ay) * img[y0c, x0c, ch]
                + ax * (1 - ay) * img[y0c, x1c, ch]
                + (1 - ax) * ay * img[y1c, x0c, ch]
                + ax * ay * img[y1c, x1c, ch]
            )
            acc[i, ch] += w * c
        wsum[i] += w


def _ray_distances(scene, cam: Camera) -> np.ndarray:
    """``[H, W]`` distance from the camera centre to the first mesh hit along each pixel-centre ray (inf: none)."""
    import open3d as o3d

    W, H = cam.width, cam.height
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(cam.K).T @ cam.c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(cam.c2w[:3, 3], d.shape), d], -1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    return np.ascontiguousarray(hit, np.float32)


def dilate(texture: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Every empty texel takes the colour of the nearest filled texel (so bilinear filtering and
    mipmaps near chart borders blend chart colours, not background). ``texture [S, S, 3]``,
    ``filled [S, S]`` bool; an all-empty texture becomes mid-grey."""
    from scipy.ndimage import distance_transform_edt

    if filled.all():
        return texture
    if not filled.any():
        return np.full_like(texture, 0.5)
    iy, ix = distance_transform_edt(~filled, return_distances=False, return_indices=True)
    return texture[iy, ix]


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    vertex_colors: np.ndarray,
    views: Sequence[Camera],
    images: Sequence[np.ndarray],
    size: int,
    voxel: float,
) -> tuple[np.ndarray, float]:
    """Colour texture of a UV-mapped mesh from views of it.

    Args:
        vertices: ``[V, 3]``, faces: ``[F, 3]`` (CCW from outside), uvs: ``[V, 2]`` (from :func:`unwrap`).
        vertex_colors: ``[V, 3]`` in [0, 1], used where no view sees a texel.
        views: cameras of ``images``; images: uint8 ``[H, W, 3]`` sRGB, one per view.
        size: texture edge in pixels.
        voxel: the mesh's resolution (scene units), the depth-test tolerance's floor.

    Returns:
        ``(texture [size, size, 3] uint8, fraction of covered texels that some view saw)``.
    """
    import open3d as o3d

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    face_id = np.full((size, size), -1, np.int64)
    bary = np.zeros((size, size, 3), np.float64)
    _raster_uv(np.ascontiguousarray(uvs * size, np.float64), np.ascontiguousarray(f), size, face_id, bary)
    covered = face_id >= 0
    fid = face_id[covered]
    b = bary[covered]
    tri = v[f[fid]]  # [T, 3, 3]
    points = np.einsum("tk,tkc->tc", b, tri)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)

    tmesh = o3d.t.geometry.TriangleMesh()
    tmesh.vertex.positions = o3d.core.Tensor(v.astype(np.float32))
    tmesh.triangle.indices = o3d.core.Tensor(f.astype(np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(tmesh)

    pts32 = np.ascontiguousarray(points, np.float64)
    nrm = np.ascontiguousarray(fn, np.float64)
    acc = np.zeros((len(points), 3), np.float64)
    wsum = np.zeros(len(points), np.float64)
    for cam, img in zip(views, images):
        hit = _ray_distances(scene, cam)
        w2c = np.linalg.inv(cam.c2w)
        _accumulate_view(
            pts32, nrm, np.ascontiguousarray(w2c[:3, :3]), np.ascontiguousarray(w2c[:3, 3]),
            np.ascontiguousarray(cam.c2w[:3, 3]), float(cam.K[0, 0]), float(cam.K[1, 1]), float(cam.K[0, 2]),
            float(cam.K[1, 2]), hit, np.ascontiguousarray(img), 1.5 * voxel, acc, wsum,
        )  # fmt: skip
    seen = wsum > 0
    col = np.empty((len(points), 3), np.float64)
    col[seen] = acc[seen] / wsum[seen, None] / 255.0
    vc = np.asarray(vertex_colors, np.float64)
    col[~seen] = np.einsum("tk,tkc->tc", b[~seen], vc[f[fid[~seen]]])
    tex = np.zeros((size, size, 3), np.float32)
    tex[covered] = col
    tex = dilate(tex, covered)
    coverage = float(seen.mean()) if len(seen) else 0.0
    return np.clip(tex * 255.0 + 0.5, 0, 255).astype(np.uint8), coverage


def render_mesh(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray, cam: Camera):
    """recon's own render of a textured mesh from ``cam``: one ray through each pixel centre.

    ``uvs`` use glTF's convention (origin top-left, v down; :class:`exporters.mesh.TexturedMesh`),
    ``texture`` is ``[S, S, 3]`` uint8 sRGB, sampled bilinearly with texel centres at +0.5 and
    clamped at the border. Returns ``(rgb [H, W, 3] float32 sRGB in [0, 1], covered [H, W] bool)``;
    uncovered pixels are 0. What the Blender check compares Blender's render against.
    """
    import open3d as o3d

    m = o3d.t.geometry.TriangleMesh()
    m.vertex.positions = o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32))
    m.triangle.indices = o3d.core.Tensor(np.ascontiguousarray(faces, np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(m)
    W, H = cam.width, cam.height
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(cam.K).T @ cam.c2w[:3, :3].T
    rays = np.concatenate([np.broadcast_to(cam.c2w[:3, 3], d.shape), d], -1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    covered = np.isfinite(hit["t_hit"].numpy())
    tri = hit["primitive_ids"].numpy()[covered].astype(np.int64)
    b = hit["primitive_uvs"].numpy()[covered].astype(np.float64)  # weights of vertices 1 and 2
    f = np.asarray(faces, np.int64)[tri]
    uv = np.asarray(uvs, np.float64)
    st = (1 - b[:, :1] - b[:, 1:]) * uv[f[:, 0]] + b[:, :1] * uv[f[:, 1]] + b[:, 1:] * uv[f[:, 2]]
    img = np.asarray(texture, np.float32) / 255.0
    S_h, S_w = img.shape[:2]
    x = np.clip(st[:, 0] * S_w - 0.5, 0, S_w - 1)
    y = np.clip(st[:, 1] * S_h - 0.5, 0, S_h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, S_w - 1), np.minimum(y0 + 1, S_h - 1)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    col = ((1 - ax) * (1 - ay) * img[y0, x0] + ax * (1 - ay) * img[y0, x1]
           + (1 - ax) * ay * img[y1, x0] + ax * ay * img[y1, x1])
    rgb = np.zeros((H, W, 3), np.float32)
    rgb[covered] = col
    return rgb, covered
