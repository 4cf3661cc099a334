"""Ray-cast rendering of a :class:`~scenes.recipes.Recipe` with Open3D's ``RaycastingScene``.

One ray through each pixel centre ``(i + 0.5, j + 0.5)`` gives the pixel's depth, object id and
colour. Pixels on a part boundary or a depth jump are re-rendered with ``ss x ss`` supersamples at
offsets ``(k + 0.5) / ss`` inside the pixel and box-filtered (adaptive anti-aliasing of
silhouettes). Every sample is shaded as ``albedo * (ambient + diffuse * max(0, n.l) * unshadowed)``
with the albedo looked up trilinearly in the hit part's texture mip pyramid, the level chosen from
the pixel's footprint on the surface (so minified textures do not alias). Depth and ids are exact
point samples at pixel centres, so they agree with ``K`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from scenes.meshes import face_normals
from scenes.recipes import Recipe
from scenes.textures import mip_pyramid

INVALID = np.uint32(0xFFFFFFFF)


@dataclass
class RenderResult:
    """One rendered view.

    Attributes:
        rgb: ``[H, W, 3]`` uint8 sRGB colour.
        depth: ``[H, W]`` float32 z-depth along the camera's +z axis in scene units; 0 where no hit.
        ids: ``[H, W]`` uint16 object id per pixel centre; 0 = background.
    """

    rgb: np.ndarray
    depth: np.ndarray
    ids: np.ndarray


class TextureAtlas:
    """All mip levels of several square textures in one flat RGBA8 buffer (one ``uint32`` per texel).

    Args:
        textures: ``[T_k, T_k, 3]`` uint8 textures, ``T_k`` a power of two.
    """

    def __init__(self, textures: list[np.ndarray]) -> None:
        chunks, offs, sizes = [], [], []
        off = 0
        n_lv = max(int(np.log2(t.shape[0])) + 1 for t in textures)
        for tex in textures:
            pyr = mip_pyramid(tex)
            o, s = [], []
            for lv in pyr:
                T = lv.shape[0]
                rgba = np.empty((T * T, 4), np.uint8)
                rgba[:, :3] = np.clip(lv.reshape(-1, 3) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                rgba[:, 3] = 255
                chunks.append(rgba.view(np.uint32).reshape(-1))
                o.append(off)
                s.append(T)
                off += T * T
            o += [o[-1]] * (n_lv - len(o))  # levels past the top repeat the 1 x 1 level
            s += [s[-1]] * (n_lv - len(s))
            offs.append(o)
            sizes.append(s)
        self.texels = np.concatenate(chunks)
        self.offset = np.asarray(offs, np.int64)  # [K, L]
        self.size = np.asarray(sizes, np.int64)  # [K, L]
        self.top = self.size.shape[1] - 1

    def _bilinear(self, tex: np.ndarray, lv: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        T = self.size[tex, lv]
        base = self.offset[tex, lv]
        Tf = T.astype(np.float32)
        x = u * Tf - 0.5
        y = (1.0 - v) * Tf - 0.5  # v up: row 0 is v = 1
        x0 = np.floor(x)
        y0 = np.floor(y)
        fx = (x - x0)[:, None]
        fy = (y - y0)[:, None]
        x0 = x0.astype(np.int64)
        y0 = y0.astype(np.int64)
        Tm = T - 1
        xa, xb = np.clip(x0, 0, Tm), np.clip(x0 + 1, 0, Tm)
        ya, yb = base + np.clip(y0, 0, Tm) * T, base + np.clip(y0 + 1, 0, Tm) * T

        def g(idx):
            return self.texels[idx].view(np.uint8).reshape(-1, 4)[:, :3].astype(np.float32)

        top = g(ya + xa) * (1 - fx) + g(ya + xb) * fx
        bot = g(yb + xa) * (1 - fx) + g(yb + xb) * fx
        return top * (1 - fy) + bot * fy

    def sample(self, tex: np.ndarray, u: np.ndarray, v: np.ndarray, lod: np.ndarray) -> np.ndarray:
        """Trilinear lookup: texture index ``tex [N]``, UV ``[N]`` each (v up, clamp to edge), mip
        level ``lod [N]`` (0 = full resolution). Returns ``[N, 3]`` float32 in [0, 1]."""
        u = np.asarray(u, np.float32)
        v = np.asarray(v, np.float32)
        lod = np.clip(np.asarray(lod, np.float32), 0.0, float(self.top))
        l0 = np.floor(lod).astype(np.int64)
        l1 = np.minimum(l0 + 1, self.top)
        f = (lod - l0)[:, None]
        c0 = self._bilinear(tex, l0, u, v)
        c1 = self._bilinear(tex, l1, u, v)
        return (c0 + (c1 - c0) * f) * np.float32(1.0 / 255.0)


class Renderer:
    """Renders a recipe's views. Builds the ray-casting scene once per distinct time.

    Args:
        recipe: the scene.
        ss: supersampling factor per axis at silhouettes and depth edges (1 = one ray per pixel).
    """

    def __init__(self, recipe: Recipe, ss: int = 2) -> None:
        self.recipe = recipe
        self.ss = int(ss)
        parts = recipe.parts
        self.atlas = TextureAtlas([p.texture for p in parts])
        nf = [len(p.mesh.faces) for p in parts]
        nv = [len(p.mesh.vertices) for p in parts]
        voff = np.cumsum([0] + nv[:-1])
        self.faces = np.concatenate([p.mesh.faces + o for p, o in zip(parts, voff)]).astype(np.int64)
        self.face_part = np.repeat(np.arange(len(parts)), nf)
        self.uvs = np.concatenate([p.mesh.uvs for p in parts]).astype(np.float32)
        self.part_object = np.array([p.object_id for p in parts], np.uint16)
        # Texels per world unit of each face (rigid motions keep it).
        rest = np.concatenate([p.mesh.vertices for p in parts])
        area_w = 0.5 * np.linalg.norm(face_normals(rest, self.faces), axis=1)
        uv3 = np.concatenate([self.uvs.astype(np.float64), np.zeros((len(self.uvs), 1))], 1)
        area_uv = 0.5 * np.linalg.norm(face_normals(uv3, self.faces), axis=1)
        tsize = np.array([p.texture.shape[0] for p in parts], np.float64)[self.face_part]
        self.rho = (np.sqrt(area_uv / np.maximum(area_w, 1e-20)) * tsize).astype(np.float32)
        self._time: float | None = None
        self._scene = None
        self._dirs_key = None

    def _prepare(self, time: float) -> None:
        if self._scene is not None and (self._time == time or not self.recipe.dynamic):
            return
        meshes = self.recipe.meshes_at(time)
        self.vertices = np.concatenate([m.vertices for m in meshes])
        self.normals = np.concatenate([m.normals for m in meshes]).astype(np.float32)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(self.vertices.astype(np.float32), self.faces.astype(np.uint32))
        self._scene, self._time = scene, time

    def _camera_dirs(self, K: np.ndarray, width: int, height: int, dist=None) -> np.ndarray:
        """``[H*W, 3]`` camera-space directions ``((u - cx) / fx, (v - cy) / fy, 1)`` through pixel centres;
        with OpenCV ``dist = (k1, k2, p1, p2)`` the pixel centres are undistorted first (a lens that
        bends the rays the way an OPENCV camera model says)."""
        dist = None if dist is None or not np.any(np.asarray(dist, np.float64)) else np.asarray(dist, np.float64)
        key = (K.tobytes(), width, height, None if dist is None else dist.tobytes())
        if self._dirs_key != key:
            u = np.arange(width, dtype=np.float64) + 0.5
            v = np.arange(height, dtype=np.float64) + 0.5
            uu, vv = np.meshgrid(u, v, indexing="xy")
            if dist is None:
                xy = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1]], -1).reshape(-1, 2)
            else:
                from recon.scene.cameras import Camera
                from recon.scene.undistort import undistort_points

                cam = Camera(K=K, width=width, height=height, model="OPENCV", dist=dist)
                xy = undistort_points(cam, np.stack([uu.ravel(), vv.ravel()], -1))
            d = np.concatenate([xy, np.ones((len(xy), 1))], 1)
            self._dirs = d.astype(np.float32)
            self._dirs_key = key
        return self._dirs

    def render(self, K: np.ndarray, c2w: np.ndarray, width: int, height: int, time: float = 0.0,
               dist=None) -> RenderResult:
        """Render one view.

        Args:
            K: ``[3, 3]`` intrinsics (pixel centres at +0.5).
            c2w: ``[4, 4]`` OpenCV camera-to-world.
            width, height: image size in pixels.
            time: scene time in [0, 1] (dynamic scenes).
            dist: optional OPENCV distortion ``(k1, k2, p1, p2)`` of the lens.
        """
        self._prepare(float(time))
        K = np.asarray(K, np.float64)
        c2w = np.asarray(c2w, np.float64)
        fx, fy = K[0, 0], K[1, 1]
        R, t = c2w[:3, :3].astype(np.float32), c2w[:3, 3].astype(np.float32)
        npx = width * height
        bg = np.asarray(self.recipe.background if self.recipe.background is not None else (0.0, 0.0, 0.0), np.float32)

        def colour(d_cam):  # camera-space directions (z = 1) -> colours [N, 3] and the raw hits
            d = d_cam @ R.T
            rays = np.empty((len(d), 6), np.float32)
            rays[:, :3] = t
            rays[:, 3:] = d
            hit = {k: v.numpy() for k, v in self._scene.cast_rays(o3d.core.Tensor(rays)).items()}
            col = np.broadcast_to(bg, (len(d), 3)).copy()
            m = np.nonzero(hit["primitive_ids"] != INVALID)[0]
            if len(m):
                col[m] = self._shade(hit["t_hit"][m], hit["primitive_ids"][m].astype(np.int64), hit["primitive_uvs"][m],
                                     hit["primitive_normals"][m], d[m], t, fx)
            return col, hit

        # 1. The pixel-centre ray: depth (t_hit is z-depth since the camera-z of d is 1), ids, colour.
        dirs = self._camera_dirs(K, width, height, dist)
        rgb, hit = colour(dirs)
        p_c = hit["primitive_ids"]
        ok = p_c != INVALID
        depth = np.where(ok, hit["t_hit"], 0.0).astype(np.float32)
        part = np.full(npx, -1, np.int64)
        part[ok] = self.face_part[p_c[ok]]
        ids = np.zeros(npx, np.uint16)
        ids[ok] = self.part_object[part[ok]]

        # 2. Adaptive supersampling of pixels at a part boundary or a depth jump.
        if self.ss > 1:
            key = part.reshape(height, width)
            dep = depth.reshape(height, width)
            edge = np.zeros((height, width), bool)
            for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                         ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
                e = (key[a] != key[b]) | (np.abs(dep[a] - dep[b]) > 0.03 * np.maximum(dep[a], dep[b]))
                edge[a] |= e
                edge[b] |= e
            ep = np.nonzero(edge.ravel())[0]
            if len(ep):
                ss = self.ss
                offs = (np.arange(ss) - (ss - 1) / 2.0) / ss  # sub-pixel offsets from the centre
                ox, oy = np.meshgrid(offs, offs, indexing="xy")
                sub = np.repeat(dirs[ep], ss * ss, axis=0)
                sub[:, 0] += np.tile(ox.ravel() / fx, len(ep)).astype(np.float32)
                sub[:, 1] += np.tile(oy.ravel() / fy, len(ep)).astype(np.float32)
                col, _ = colour(sub)
                rgb[ep] = col.reshape(len(ep), ss * ss, 3).mean(1)
        rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(height, width, 3)
        return RenderResult(rgb, depth.reshape(height, width), ids.reshape(height, width))

    def _shade(self, th, prim, bary, gn, d, origin, f_pix) -> np.ndarray:
        """Colour ``[N, 3]`` float32 of N hits: ray parameter ``th``, triangle ``prim``, barycentrics
        ``bary``, geometric normal ``gn``, direction ``d`` (camera-z 1), camera centre ``origin``,
        focal length ``f_pix`` in pixels."""
        a, b = bary[:, 0:1], bary[:, 1:2]
        w0 = 1.0 - a - b
        tri = self.faces[prim]
        i0, i1, i2 = tri[:, 0], tri[:, 1], tri[:, 2]
        uv = w0 * self.uvs[i0] + a * self.uvs[i1] + b * self.uvs[i2]
        n = w0 * self.normals[i0] + a * self.normals[i1] + b * self.normals[i2]
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        dn = np.linalg.norm(d, axis=1)
        cosg = np.einsum("ij,ij->i", gn, d) / dn
        s = np.where(cosg > 0, np.float32(-1.0), np.float32(1.0))[:, None]  # both normals face the camera
        gn, n = gn * s, n * s
        p = origin + th[:, None] * d

        light = self.recipe.light
        if light.kind == "directional":
            L = np.broadcast_to(np.asarray(light.vector, np.float32), p.shape)
            far = None
        else:
            L = np.asarray(light.vector, np.float32) - p
            far = np.linalg.norm(L, axis=1)
            L = L / far[:, None]
        ndl = np.clip(np.einsum("ij,ij->i", n, L), 0.0, None)
        ndl[np.einsum("ij,ij->i", gn, L) <= 0] = 0.0
        if light.shadows:
            lit = np.nonzero(ndl > 0)[0]
            if len(lit):
                eps = np.float32(1e-3)
                sr = np.empty((len(lit), 6), np.float32)
                sr[:, :3] = p[lit] + gn[lit] * eps
                sr[:, 3:] = L[lit]
                if far is None:
                    occ = self._scene.test_occlusions(o3d.core.Tensor(sr)).numpy()
                else:
                    occ = self._scene.cast_rays(o3d.core.Tensor(sr))["t_hit"].numpy() < far[lit] - 2 * eps
                ndl[lit[occ.astype(bool)]] = 0.0

        # Mip level from the pixel footprint on the surface, isotropic with a mild obliquity term.
        cos = np.clip(np.abs(cosg), 0.05, 1.0)
        foot = th * dn / np.float32(f_pix) / np.sqrt(cos)
        lod = np.log2(np.maximum(self.rho[prim] * foot, 1e-6))
        albedo = self.atlas.sample(self.face_part[prim], uv[:, 0], uv[:, 1], lod)
        shade = (light.ambient + light.diffuse * ndl).astype(np.float32)
        return albedo * shade[:, None]
