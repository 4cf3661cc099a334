"""Triangle-mesh primitives with texture coordinates and shading normals, as plain numpy arrays.

Every primitive maps its whole surface once into the unit UV square (no tiling), so a unique
procedural texture gives every surface point a unique appearance. UVs follow the OBJ/OpenGL
convention: ``v`` grows upwards, texture row = ``(1 - v) * T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MeshData:
    """A triangle mesh.

    Attributes:
        vertices: ``[V, 3]`` float64 positions.
        faces: ``[F, 3]`` int64 vertex indices, counter-clockwise seen from outside.
        uvs: ``[V, 2]`` float64 texture coordinates in [0, 1] (v up).
        normals: ``[V, 3]`` float64 unit shading normals (smooth or per-face, as the primitive chose).
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    normals: np.ndarray

    def transformed(self, T: np.ndarray) -> "MeshData":
        """The mesh under a rigid (or uniformly scaled) 4x4 transform ``T``."""
        T = np.asarray(T, dtype=np.float64)
        R = T[:3, :3]
        n = self.normals @ np.linalg.inv(R).T
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        return MeshData(self.vertices @ R.T + T[:3, 3], self.faces.copy(), self.uvs.copy(), n)


def merge(meshes: list[MeshData]) -> MeshData:
    """Concatenate meshes (keeping each one's normals and UVs)."""
    offs = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return MeshData(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + o for m, o in zip(meshes, offs)]),
        np.concatenate([m.uvs for m in meshes]),
        np.concatenate([m.normals for m in meshes]),
    )


def _grid_faces(nu: int, nv: int) -> np.ndarray:
    """Faces of a (nu+1) x (nv+1) vertex grid (index = j * (nu + 1) + i), CCW for u right, v up."""
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="xy")
    a = (j * (nu + 1) + i).ravel()
    b, c, d = a + 1, a + nu + 2, a + nu + 1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int64)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``[F, 3]`` unnormalised face normals (length = 2 x area)."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    return np.cross(v1 - v0, v2 - v0)


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, welded across vertices at the same position (UV seams)."""
    key = np.round(vertices, 9)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    fn = face_normals(vertices, faces)
    acc = np.zeros((inv.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, inv[faces[:, k]], fn)
    n = acc[inv]
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def quad(corner: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray, nu: int = 8, nv: int = 8,
         uv_rect: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> MeshData:
    """A subdivided parallelogram ``corner + s * edge_u + t * edge_v``, s, t in [0, 1].

    The front side (normal ``edge_u x edge_v``) is counter-clockwise. ``uv_rect`` = (u0, v0, u1, v1)
    is the texture rectangle it maps to.
    """
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="xy")
    s, t = s.ravel(), t.ravel()
    corner, edge_u, edge_v = (np.asarray(x, dtype=np.float64) for x in (corner, edge_u, edge_v))
    verts = corner + s[:, None] * edge_u + t[:, None] * edge_v
    u0, v0, u1, v1 = uv_rect
    uvs = np.stack([u0 + s * (u1 - u0), v0 + t * (v1 - v0)], 1)
    n = np.cross(edge_u, edge_v)
    n = np.broadcast_to(n / np.linalg.norm(n), verts.shape).copy()
    return MeshData(verts, _grid_faces(nu, nv), uvs, n)


def box(size=(1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0), seg: int = 8) -> MeshData:
    """An axis-aligned box, flat-shaded, each face on its own cell of a 3 x 2 texture atlas."""
    sx, sy, sz = (0.5 * float(x) for x in size)
    c = np.asarray(center, dtype=np.float64)
    # (corner, edge_u, edge_v) with edge_u x edge_v pointing outwards.
    specs = [
        ((-sx, -sy, -sz), (2 * sx, 0, 0), (0, 0, 2 * sz)),  # -y
        ((sx, sy, -sz), (-2 * sx, 0, 0), (0, 0, 2 * sz)),  # +y
        ((sx, -sy, -sz), (0, 2 * sy, 0), (0, 0, 2 * sz)),  # +x
        ((-sx, sy, -sz), (0, -2 * sy, 0), (0, 0, 2 * sz)),  # -x
        ((-sx, -sy, sz), (2 * sx, 0, 0), (0, 2 * sy, 0)),  # +z
        ((-sx, sy, -sz), (2 * sx, 0, 0), (0, -2 * sy, 0)),  # -z
    ]
    parts = []
    for k, (o, eu, ev) in enumerate(specs):
        cu, cv = k % 3, k // 3
        rect = (cu / 3 + 0.005, cv / 2 + 0.005, (cu + 1) / 3 - 0.005, (cv + 1) / 2 - 0.005)
        parts.append(quad(c + np.asarray(o), eu, ev, seg, seg, rect))
    return merge(parts)


def uv_sphere(radius: float = 1.0, nu: int = 96, nv: int = 48, center=(0.0, 0.0, 0.0),
              displace=None) -> MeshData:
    """A UV sphere (u = longitude, v = latitude). ``displace(dirs [N,3]) -> [N]`` scales the radius."""
    u, v = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="xy")
    u, v = u.ravel(), v.ravel()
    lon, lat = 2 * np.pi * u, np.pi * (v - 0.5)
    d = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1)
    r = radius * (displace(d) if displace is not None else 1.0)
    verts = np.asarray(center, dtype=np.float64) + d * np.reshape(r, (-1, 1))
    faces = _grid_faces(nu, nv)
    # Drop the degenerate triangles at the poles.
    fn = face_normals(verts, faces)
    faces = faces[np.linalg.norm(fn, axis=1) > 1e-12 * radius * radius]
    normals = d.copy() if displace is None else smooth_normals(verts, faces)
    return MeshData(verts, faces, np.stack([u, v], 1), normals)


def torus(major: float = 1.0, minor: float = 0.3, nu: int = 96, nv: int = 32, center=(0.0, 0.0, 0.0)) -> MeshData:
    """A torus around the z axis."""
    u, v = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="xy")
    u, v = u.ravel(), v.ravel()
    th, ph = 2 * np.pi * u, 2 * np.pi * v
    radial = np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], 1)
    n = radial * np.cos(ph)[:, None] + np.array([0.0, 0.0, 1.0]) * np.sin(ph)[:, None]
    verts = np.asarray(center, dtype=np.float64) + major * radial + minor * n
    return MeshData(verts, _grid_faces(nu, nv), np.stack([u, v], 1), n)


def frustum(r_bottom: float, r_top: float, height: float, n: int = 64, center=(0.0, 0.0, 0.0),
            caps: bool = True) -> MeshData:
    """A capped cylinder / cone frustum along z, base at ``center``.

    The side maps to the top 3/4 of the texture, the caps to the two left squares of the bottom quarter.
    """
    c = np.asarray(center, dtype=np.float64)
    u, t = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, 9), indexing="xy")
    u, t = u.ravel(), t.ravel()
    th = 2 * np.pi * u
    r = r_bottom + (r_top - r_bottom) * t
    verts = c + np.stack([r * np.cos(th), r * np.sin(th), height * t], 1)
    slope = (r_bottom - r_top) / height
    nrm = np.stack([np.cos(th), np.sin(th), np.full_like(th, slope)], 1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    side = MeshData(verts, _grid_faces(n, 8), np.stack([u, 0.25 + 0.75 * t], 1), nrm)
    parts = [side]
    if caps:
        for top, rad, u0 in ((False, r_bottom, 0.0), (True, r_top, 0.25)):
            if rad <= 0:
                continue
            ang = 2 * np.pi * np.arange(n) / n
            ring = np.stack([rad * np.cos(ang), rad * np.sin(ang), np.full(n, height if top else 0.0)], 1)
            v = np.concatenate([[[0.0, 0.0, height if top else 0.0]], ring]) + c
            uv = np.concatenate([[[0.5, 0.5]], 0.5 + 0.48 * np.stack([np.cos(ang), np.sin(ang)], 1)])
            uv = np.stack([u0 + 0.25 * uv[:, 0], 0.25 * uv[:, 1]], 1)
            k = np.arange(n)
            f = np.stack([np.zeros(n, np.int64), 1 + k, 1 + (k + 1) % n], 1)
            if not top:
                f = f[:, [0, 2, 1]]
            nz = np.zeros((n + 1, 3))
            nz[:, 2] = 1.0 if top else -1.0
            parts.append(MeshData(v, f, uv, nz))
    return merge(parts)


def tube(curve, radius: float, n_along: int = 256, n_around: int = 24, closed: bool = True) -> MeshData:
    """A tube of constant ``radius`` around ``curve(s [N]) -> [N, 3]``, s in [0, 1].

    Uses parallel-transported frames; for a closed curve the frame twist is spread along the tube so
    the seam matches.
    """
    s = np.linspace(0, 1, n_along + 1)
    p = curve(s)
    tang = np.gradient(p, axis=0)
    if closed:
        tang[0] = tang[-1] = p[1] - p[-2]
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    ref = np.array([0.0, 0.0, 1.0]) if abs(tang[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    nrm = np.zeros_like(p)
    nrm[0] = np.cross(tang[0], np.cross(ref, tang[0]))
    nrm[0] /= np.linalg.norm(nrm[0])
    for k in range(1, len(s)):
        q = nrm[k - 1] - tang[k] * np.dot(nrm[k - 1], tang[k])
        nrm[k] = q / np.linalg.norm(q)
    if closed:  # remove the accumulated twist so the end frame equals the start frame
        b0 = np.cross(tang[-1], nrm[-1])
        twist = np.arctan2(np.dot(nrm[0], b0), np.dot(nrm[0], nrm[-1]))
        binorm = np.cross(tang, nrm)
        a = twist * s
        nrm = np.cos(a)[:, None] * nrm + np.sin(a)[:, None] * binorm
    binorm = np.cross(tang, nrm)
    u, v = np.meshgrid(s, np.linspace(0, 1, n_around + 1), indexing="xy")
    ph = 2 * np.pi * v.ravel()
    idx = np.tile(np.arange(n_along + 1), n_around + 1)
    d = nrm[idx] * np.cos(ph)[:, None] + binorm[idx] * np.sin(ph)[:, None]
    verts = p[idx] + radius * d
    faces = _grid_faces(n_along, n_around)[:, [0, 2, 1]]  # (along x around) points inwards: flip
    return MeshData(verts, faces, np.stack([u.ravel(), v.ravel()], 1), d)


def torus_knot(p: int = 2, q: int = 3, scale: float = 0.35, tube_radius: float = 0.08,
               center=(0.0, 0.0, 0.0)) -> MeshData:
    """A (p, q) torus knot tube."""
    c = np.asarray(center, dtype=np.float64)

    def curve(s):
        t = 2 * np.pi * s
        r = 2.0 + np.cos(q * t)
        return c + scale * np.stack([r * np.cos(p * t), r * np.sin(p * t), np.sin(q * t)], 1)

    return tube(curve, tube_radius, n_along=384, n_around=20, closed=True)


def rotation(axis, angle: float) -> np.ndarray:
    """4x4 rotation by ``angle`` radians about the unit ``axis`` through the origin."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    T = np.eye(4)
    T[:3, :3] = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
    return T


def translation(t) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T
