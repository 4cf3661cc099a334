"""Textured meshes and surface point clouds of a NeRF (voxel radiance field) run.

The ``mesh-*`` formats of a NeRF run (:func:`extract_nerf_mesh`):

1. **Level.** The iso-density of the surface is chosen from the field
   (:func:`recon.nerf.surface.surface_level`): the median density where training rays'
   transmittance crosses 0.5.
2. **Extract.** Marching tetrahedra (:func:`marching_tetrahedra`; each cell split into the six
   tetrahedra around its main diagonal, so neighbouring cells share their faces and the mesh is
   closed) over the density ``softplus(raw + b)`` at the field's own vertices, or resampled to
   ``--mesh-voxel``. The volume is padded with empty space and cropped to the field's box (and
   ``--crop``), so the surface closes where the box cuts it.
3. **Clean, unwrap, bake, write**: the same code as the splat meshes (:mod:`exporters.mesh`,
   :mod:`exporters.mesh_texture`, :mod:`exporters.mesh_io`): small pieces dropped, holes filled,
   quadric decimation to ``--mesh-faces``, an xatlas atlas, and a texture baked from the NeRF's
   renders of the training views (at most :data:`BAKE_VIEWS`, evenly spaced).

``points`` (:func:`surface_point_cloud`): points where random training rays' transmittance crosses
0.5 (where their compositing weights peak on an opaque surface), coloured by the field's colour
seen from that ray, with the field's normals, written as a binary PLY.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from exporters.mesh import MeshOptions, TexturedMesh, fill_holes, keep_components, scaled_camera, vertex_normals
from recon.errors import ReconError

BAKE_VIEWS = 32
"""Training views rendered for the texture bake (NeRF renders cost far more than splat renders)."""
BAKE_SIZE = 512
"""Longest side of those renders (also capped by ``--mesh-render-size`` and the training size)."""

# Kuhn subdivision of the unit cube: six tetrahedra (0, e_i, e_i + e_j, 7) sharing the main diagonal.
# Corner c = 4 dx + 2 dy + dz.
_TETS = np.array([[0, 4, 6, 7], [0, 4, 5, 7], [0, 2, 6, 7], [0, 2, 3, 7], [0, 1, 5, 7], [0, 1, 3, 7]])
_CORNERS = np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)])


def marching_tetrahedra(vol: np.ndarray, level: float, lo: np.ndarray, spacing: np.ndarray):
    """The iso-surface ``vol == level`` of a vertex volume ``[nx, ny, nz]``: ``(vertices [V, 3]
    float64, faces [F, 3] int64)``, faces counter-clockwise seen from the low side (outside, where
    ``vol < level``). Vertex ``(i, j, k)`` sits at ``lo + (i, j, k) * spacing``."""
    v = np.ascontiguousarray(vol, np.float32)
    nx, ny, nz = v.shape
    inside = v > level
    # cells with inside and outside corners
    any_in = np.zeros((nx - 1, ny - 1, nz - 1), bool)
    all_in = np.ones((nx - 1, ny - 1, nz - 1), bool)
    for dx, dy, dz in _CORNERS:
        c = inside[dx:nx - 1 + dx, dy:ny - 1 + dy, dz:nz - 1 + dz]
        any_in |= c
        all_in &= c
    cells = np.argwhere(any_in & ~all_in)
    if len(cells) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    stride = np.array([ny * nz, nz, 1], np.int64)
    base = cells.astype(np.int64) @ stride
    corner_off = _CORNERS @ stride  # [8]
    tet_ids = (base[:, None, None] + corner_off[_TETS][None]).reshape(-1, 4)  # [C*6, 4] vertex ids
    flat = v.reshape(-1)
    vals = flat[tet_ids]
    ins = vals > level
    n_in = ins.sum(1)
    keep = (n_in > 0) & (n_in < 4)
    tet_ids, vals, ins, n_in = tet_ids[keep], vals[keep], ins[keep], n_in[keep]

    edges_a, edges_b, tri_rows = [], [], []  # per triangle: 3 edges (a, b), and the tet row
    # one inside or one outside corner: a triangle on the three edges at that corner
    for odd_inside in (True, False):
        rows = np.flatnonzero(n_in == (1 if odd_inside else 3))
        if len(rows) == 0:
            continue
        flags = ins[rows] if odd_inside else ~ins[rows]
        odd = np.argmax(flags, 1)
        others = np.stack([(odd + k) % 4 for k in (1, 2, 3)], 1)
        r = np.arange(len(rows))
        a = tet_ids[rows, odd]
        edges_a.append(np.repeat(a[:, None], 3, 1))
        edges_b.append(tet_ids[rows[:, None], others])
        tri_rows.append(rows)
    rows = np.flatnonzero(n_in == 2)
    if len(rows):
        order = np.argsort(~ins[rows], axis=1, kind="stable")  # inside corners first
        ids = np.take_along_axis(tet_ids[rows], order, 1)
        a, b, c, d = ids.T  # a, b inside; c, d outside
        # quad (a-c, a-d, b-d, b-c) as two triangles
        edges_a += [np.stack([a, a, b], 1), np.stack([a, b, b], 1)]
        edges_b += [np.stack([c, d, d], 1), np.stack([c, d, c], 1)]
        tri_rows += [rows, rows]
    ea = np.concatenate(edges_a)
    eb = np.concatenate(edges_b)
    trow = np.concatenate(tri_rows)
    lo_id, hi_id = np.minimum(ea, eb), np.maximum(ea, eb)
    key = lo_id * np.int64(nx * ny * nz) + hi_id
    uniq, inv = np.unique(key.reshape(-1), return_inverse=True)
    ua, ub = uniq // np.int64(nx * ny * nz), uniq % np.int64(nx * ny * nz)
    va, vb = flat[ua].astype(np.float64), flat[ub].astype(np.float64)
    t = np.clip((level - va) / np.where(np.abs(vb - va) > 1e-30, vb - va, 1e-30), 0.0, 1.0)

    def pos(ids):
        i, rem = np.divmod(ids, ny * nz)
        j, k = np.divmod(rem, nz)
        return np.stack([i, j, k], 1).astype(np.float64)

    verts = pos(ua) + t[:, None] * (pos(ub) - pos(ua))
    verts = np.asarray(lo, np.float64) + verts * np.asarray(spacing, np.float64)
    faces = inv.reshape(-1, 3).astype(np.int64)
    # orient: the normal points from the tet's inside corners to its outside corners
    P = pos(tet_ids[trow].reshape(-1)).reshape(-1, 4, 3)
    w_in = ins[trow].astype(np.float64)
    c_in = (P * w_in[..., None]).sum(1) / w_in.sum(1, keepdims=True)
    c_out = (P * (1 - w_in)[..., None]).sum(1) / (1 - w_in).sum(1, keepdims=True)
    tri = verts[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("ij,ij->i", n, (c_out - c_in) * np.asarray(spacing)) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    good = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return verts, faces[good]


def load_field(run_root: Path):
    """The :class:`recon.nerf.field.VoxelField` of a NeRF run folder (through its manifest)."""
    from recon.methods.nerf import decode_field
    from recon.run import RunFolder

    rf = RunFolder.open(run_root)
    return decode_field(rf.require_model())


def _volume(field, voxel: Optional[float], crop_min, crop_max, max_cells: float = 512.0**3):
    """``(sigma [nx, ny, nz] padded with one empty layer, lo, spacing)`` over the field's box (cropped),
    at the field's vertices or resampled to ``voxel``."""
    from recon.nerf.surface import sigma_grid, trilinear

    lo, hi = field.lo.numpy().astype(np.float64), field.hi.numpy().astype(np.float64)
    if crop_min is not None:
        lo, hi = np.maximum(lo, crop_min), np.minimum(hi, crop_max)
        if np.any(hi <= lo):
            raise ReconError(f"--crop {list(crop_min) + list(crop_max)} does not overlap the NeRF's box "
                             f"{np.round(field.lo.numpy(), 4).tolist() + np.round(field.hi.numpy(), 4).tolist()}")
    sig = sigma_grid(field)
    if voxel is None and crop_min is None:
        vol, spacing = sig.numpy(), field.voxel_size.numpy().astype(np.float64)
    else:
        spacing_f = float(voxel) if voxel is not None else float(field.voxel_size.min())
        n = np.maximum(np.round((hi - lo) / spacing_f).astype(int) + 1, 2)
        if float(np.prod(n)) > max_cells:
            raise ReconError(f"--mesh-voxel {spacing_f:.4g} is too fine for the NeRF's box ({int(np.prod(n)):,} cells); "
                             "pass a larger --mesh-voxel or --crop a smaller region")
        spacing = (hi - lo) / (n - 1)
        axes = [torch.linspace(float(lo[a]), float(hi[a]), int(n[a])) for a in range(3)]
        X, Y, Z = torch.meshgrid(*axes, indexing="ij")
        pts = torch.stack([X.reshape(-1), Y.reshape(-1), Z.reshape(-1)], 1)
        vol = np.concatenate([trilinear(sig, field, pts[i:i + (1 << 20)]).numpy()
                              for i in range(0, len(pts), 1 << 20)]).reshape(*[int(k) for k in n])
    vol = np.pad(vol, 1, constant_values=0.0)
    return vol, lo - spacing, spacing


def _bake_views(field, cameras: Sequence, options: MeshOptions):
    """Up to :data:`BAKE_VIEWS` cameras, evenly spaced, scaled to at most :data:`BAKE_SIZE` pixels."""
    cams = list(cameras)
    if len(cams) > BAKE_VIEWS:
        cams = [cams[int(i)] for i in np.linspace(0, len(cams) - 1, BAKE_VIEWS).round()]
    return [scaled_camera(c, min(options.render_size, BAKE_SIZE)) for c in cams]


def extract_nerf_mesh(field, cameras: Sequence, options: MeshOptions | None = None, crop_min=None, crop_max=None,
                      log: Callable[[str], None] = lambda s: None, renderer=None) -> TexturedMesh:
    """A textured mesh of a NeRF's density iso-surface (see the module doc).

    Args:
        field: the run's :class:`recon.nerf.field.VoxelField`.
        cameras: training cameras (:class:`recon.scene.cameras.Camera`): they set the level and are
            rendered for the texture.
        renderer: the run's :class:`recon.methods.nerf.NerfRenderer` (default: one over ``field``).
    """
    from recon.nerf.surface import point_colors, sigma_grid, surface_level

    options = options or MeshOptions()
    options.validate()
    if not cameras:
        raise ReconError("a NeRF mesh needs the run's cameras (cameras.json) to choose its surface level")
    t_start = time.perf_counter()
    stats: dict = {}
    if renderer is None:
        from recon.methods.nerf import NerfRenderer

        renderer = NerfRenderer(field)
    field = field.inner()  # an unbounded (contracted) field: the mesh covers its central cube
    level = surface_level(field, cameras, sigma=sigma_grid(field))
    vol, lo, spacing = _volume(field, options.voxel, crop_min, crop_max)
    voxel = float(np.min(spacing))
    extent = float(np.linalg.norm(spacing * (np.asarray(vol.shape) - 3)))
    stats.update(level=level, voxel=voxel, extent=extent)
    t0 = time.perf_counter()
    V, F = marching_tetrahedra(vol, level, lo, spacing)
    hi_box = lo + spacing * (np.asarray(vol.shape) - 1)
    V = np.clip(V, lo + spacing, hi_box - spacing)  # cropped to the box
    if len(F) == 0:
        raise ReconError(f"no surface to mesh: the NeRF's density never reaches its surface level {level:.4g} "
                         "inside the box (is the run trained? check --crop)")
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(V), o3d.utility.Vector3iVector(F.astype(np.int32)))
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    mesh.remove_unreferenced_vertices()
    raw = len(mesh.triangles)
    mesh, pieces, kept = keep_components(mesh, options.min_component)
    log(f"mesh: density level {level:.4g} (median density where training rays reach transmittance 0.5); "
        f"marching tetrahedra at voxel {voxel:.4g}: {raw} faces, kept {kept} of {pieces} piece(s) -> "
        f"{len(mesh.triangles)} faces in {time.perf_counter() - t0:.1f} s")
    hole_r = options.fill_holes if options.fill_holes is not None else 4 * voxel
    if hole_r > 0:
        mesh = fill_holes(mesh, hole_r)
    if len(mesh.triangles) > options.faces:
        mesh = mesh.simplify_quadric_decimation(int(options.faces))
        mesh.remove_degenerate_triangles()
        mesh.remove_unreferenced_vertices()
    stats.update(raw_faces=raw, pieces=pieces, pieces_kept=kept, faces=len(mesh.triangles),
                 clean_s=time.perf_counter() - t0)

    from exporters.mesh_texture import bake_texture, unwrap

    V = np.asarray(mesh.vertices, np.float64)
    F = np.asarray(mesh.triangles, np.int64)
    N = vertex_normals(V, F)
    VC = point_colors(field, V, -N)  # the field's colour seen head-on: for texels no view sees
    views = _bake_views(field, cameras, options)
    t0 = time.perf_counter()
    colours = []
    for i, cam in enumerate(views):
        o = renderer.render(cam, outputs=("rgb", "alpha"))
        a = o.alpha[..., 0].numpy()
        rgb = np.clip(o.rgb.numpy() / np.maximum(a, 1e-6)[..., None], 0, 1)
        colours.append(np.ascontiguousarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)))
        if (i + 1) % 8 == 0 and i + 1 < len(views):
            log(f"mesh: rendered {i + 1}/{len(views)} texture views ({time.perf_counter() - t0:.1f} s)")
    stats["render_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    smooth = mesh.filter_smooth_taubin(number_of_iterations=10)
    vmap, faces, uvs = unwrap(V, F, options.texture_size, chart_vertices=np.asarray(smooth.vertices))
    stats["unwrap_s"] = time.perf_counter() - t0
    verts = V[vmap]
    t0 = time.perf_counter()
    texture, coverage = bake_texture(verts, faces, uvs, VC[vmap].astype(np.float64), views, colours,
                                     options.texture_size, voxel)
    stats.update(bake_s=time.perf_counter() - t0, texture_coverage=coverage, views=len(views))
    log(f"mesh: {len(faces)} faces, {len(verts)} vertices; {options.texture_size}x{options.texture_size} texture "
        f"baked from {len(views)} NeRF renders ({views[0].width}x{views[0].height}, {stats['render_s']:.1f} s) "
        f"in {stats['bake_s']:.1f} s ({100 * coverage:.0f}% of surface texels seen)")
    stats["total_s"] = time.perf_counter() - t_start
    return TexturedMesh(vertices=verts.astype(np.float32), faces=faces.astype(np.int32),
                        normals=vertex_normals(verts, faces).astype(np.float32), uvs=uvs.astype(np.float32),
                        texture=texture, stats=stats)


def surface_point_cloud(field, cameras: Sequence, count: int = 200_000, crop_min=None, crop_max=None, seed: int = 0):
    """``(points [P, 3], normals [P, 3], colours [P, 3] uint8)`` on the NeRF's surface (module doc)."""
    from recon.nerf.surface import point_colors, surface_points

    if not cameras:
        raise ReconError("a NeRF point cloud needs the run's cameras (cameras.json): points are found along their rays")
    p, n, d = surface_points(field.inner(), cameras, count, seed)  # contracted: points in the central cube
    if crop_min is not None:
        m = np.all((p >= np.asarray(crop_min)) & (p <= np.asarray(crop_max)), axis=1)
        p, n, d = p[m], n[m], d[m]
    c = point_colors(field, p, d)
    return p, n, np.clip(c * 255 + 0.5, 0, 255).astype(np.uint8)


def write_point_ply(path: Path, points: np.ndarray, normals: np.ndarray, colors: np.ndarray,
                    comments: Sequence[str] = ()) -> Path:
    """Binary little-endian PLY: ``x y z nx ny nz`` float32 and ``red green blue`` uint8 per vertex,
    ``comment`` lines first; written atomically."""
    from recon.io_utils import atomic_write_bytes

    n = len(points)
    head = ["ply", "format binary_little_endian 1.0", *[f"comment {c}" for c in comments], f"element vertex {n}",
            *[f"property float {k}" for k in ("x", "y", "z", "nx", "ny", "nz")],
            *[f"property uchar {k}" for k in ("red", "green", "blue")], "end_header"]
    dt = np.dtype([("p", "<f4", 3), ("n", "<f4", 3), ("c", "u1", 3)])
    rec = np.empty(n, dt)
    rec["p"], rec["n"], rec["c"] = points, normals, colors
    atomic_write_bytes(Path(path), ("\n".join(head) + "\n").encode() + rec.tobytes())
    return Path(path)
