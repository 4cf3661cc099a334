"""Writers of textured meshes: glTF binary, Wavefront OBJ + MTL + PNG, OpenUSD and USDZ.

Every writer takes a :class:`exporters.mesh.TexturedMesh` already in the target frame (see
:func:`transform_mesh`) and records provenance in the format's metadata slot:

=============  =========================================================================
format         content
=============  =========================================================================
glTF (GLB)     one node, one indexed ``TRIANGLES`` primitive (``POSITION``, ``NORMAL``,
               ``TEXCOORD_0``), one metallic-roughness material whose ``baseColorTexture``
               is the embedded PNG (sRGB), metallic 0, roughness 1; ``asset.extras.recon``
OBJ            ``v``/``vt``/``vn``/``f`` with one material (``mtllib``, ``usemtl``); the MTL's
               ``map_Kd`` names the PNG; provenance as ``# recon key: value`` comments
USD            ``/World/Mesh`` (``UsdGeom.Mesh``: points, normals, ``primvars:st``) bound to
               ``/World/Looks/Material``: ``UsdPreviewSurface`` (roughness 1, metallic 0) whose
               ``diffuseColor`` reads a ``UsdUVTexture`` (the PNG, sRGB) through a
               ``UsdPrimvarReader_float2`` of ``st``; stage ``upAxis``, ``metersPerUnit = 1``,
               ``defaultPrim = World``, ``customLayerData["recon"]``
USDZ           the USD layer (binary crate) and the PNG zipped by
               ``UsdUtils.CreateNewARKitUsdzPackage`` (AR Quick Look's packaging rules)
=============  =========================================================================

Texture coordinates: :class:`TexturedMesh` keeps glTF's (origin at the image's top-left, v down);
OBJ and USD store ``(u, 1 - v)`` (origin bottom-left). Every file is written atomically.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from exporters.atomic import atomic_path, write_bytes_atomic
from exporters.gltf_splat import pack_glb
from exporters.mesh import TexturedMesh
from recon.errors import ReconError

FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071
MESH_PATH = "/World/Mesh"
MATERIAL_PATH = "/World/Looks/Material"


def transform_mesh(mesh: TexturedMesh, T: np.ndarray) -> TexturedMesh:
    """``mesh`` moved by the similarity ``T [4, 4]`` (``x' = s R x``); a mirroring ``R`` (det < 0)
    also reverses each face's winding so faces stay counter-clockwise seen from outside."""
    T = np.asarray(T, np.float64)
    A = T[:3, :3]
    v = (mesh.vertices.astype(np.float64) @ A.T + T[:3, 3]).astype(np.float32)
    n = mesh.normals.astype(np.float64) @ A.T
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    f = mesh.faces[:, ::-1] if np.linalg.det(A) < 0 else mesh.faces
    return TexturedMesh(v, np.ascontiguousarray(f, np.int32), n.astype(np.float32), mesh.uvs, mesh.texture, dict(mesh.stats))


def png_bytes(texture: np.ndarray) -> bytes:
    """PNG encoding of an ``[H, W, 3]`` uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(texture, np.uint8), "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(texture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write the texture as PNG, atomically."""
    path = Path(path)
    write_bytes_atomic(path, png_bytes(texture))
    return path


def _unit_normals(n: np.ndarray) -> np.ndarray:
    n = np.asarray(n, np.float64)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.where(norm > 1e-12, norm, 1.0), np.array([0.0, 1.0, 0.0]))
    return n.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# glTF
# ---------------------------------------------------------------------------------------------


def encode_mesh_glb(mesh: TexturedMesh, provenance: Mapping[str, str] | None = None, name: str = "mesh") -> bytes:
    """GLB bytes of a textured mesh (positions in glTF axes: +Y up, metres)."""
    from recon import __version__

    if len(mesh.faces) == 0:
        raise ReconError("cannot write an empty mesh")
    png = png_bytes(mesh.texture)
    chunks: list[tuple[bytes, int | None]] = [
        (np.ascontiguousarray(mesh.vertices, "<f4").tobytes(), ARRAY_BUFFER),
        (_unit_normals(mesh.normals).astype("<f4").tobytes(), ARRAY_BUFFER),
        (np.ascontiguousarray(mesh.uvs, "<f4").tobytes(), ARRAY_BUFFER),
        (np.ascontiguousarray(mesh.faces, "<u4").tobytes(), ELEMENT_ARRAY_BUFFER),
        (png, None),
    ]
    views, blobs, offset = [], [], 0
    for data, target in chunks:
        view: dict[str, Any] = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        pad = (-len(data)) % 4
        blobs += [data, b"\0" * pad]
        offset += len(data) + pad
    binary = b"".join(blobs)
    nv = len(mesh.vertices)
    accessors = [
        {
            "bufferView": 0, "componentType": FLOAT, "count": nv, "type": "VEC3",
            "min": [float(x) for x in mesh.vertices.min(axis=0)], "max": [float(x) for x in mesh.vertices.max(axis=0)],
        },
        {"bufferView": 1, "componentType": FLOAT, "count": nv, "type": "VEC3"},
        {"bufferView": 2, "componentType": FLOAT, "count": nv, "type": "VEC2"},
        {"bufferView": 3, "componentType": UNSIGNED_INT, "count": int(mesh.faces.size), "type": "SCALAR"},
    ]  # fmt: skip
    extras = {"recon": {str(k): str(v) for k, v in provenance.items()}} if provenance else {}
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": f"recon {__version__}", **({"extras": extras} if extras else {})},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [
            {
                "name": name,
                "primitives": [
                    {"attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}, "indices": 3, "material": 0, "mode": 4}
                ],
            }
        ],
        "materials": [
            {
                "name": f"{name}_material",
                "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0, "roughnessFactor": 1.0},
            }
        ],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}],
        "images": [{"bufferView": 4, "mimeType": "image/png", "name": f"{name}_basecolor"}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    return pack_glb(doc, binary)


def write_mesh_glb(mesh: TexturedMesh, path: str | os.PathLike, provenance: Mapping[str, str] | None = None) -> Path:
    """Write :func:`encode_mesh_glb` output atomically."""
    path = Path(path)
    write_bytes_atomic(path, encode_mesh_glb(mesh, provenance, name=path.stem))
    return path


# ---------------------------------------------------------------------------------------------
# OBJ
# ---------------------------------------------------------------------------------------------


def _rows(fmt: str, a: np.ndarray) -> str:
    """``fmt % row`` for each row of ``a``, newline-terminated (fast enough for millions of rows)."""
    if len(a) == 0:
        return ""
    return ((fmt + "\n") * len(a)) % tuple(np.asarray(a).ravel().tolist())


def write_mesh_obj(
    mesh: TexturedMesh,
    obj_path: str | os.PathLike,
    texture_name: str = "mesh.png",
    provenance: Mapping[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.obj`` and ``NAME.mtl`` (the MTL names ``texture_name`` as ``map_Kd``); returns both paths.

    The PNG itself is written by :func:`write_png`. Faces reference ``v/vt/vn`` with the same index.
    """
    obj_path = Path(obj_path)
    mtl_path = obj_path.with_suffix(".mtl")
    mat = f"{obj_path.stem}_material"
    head = [f"# {line}" for line in _comment_lines(provenance)]
    mtl = "\n".join(head + [f"newmtl {mat}", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1", f"map_Kd {texture_name}", ""])
    uv = np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], 1)
    f1 = mesh.faces.astype(np.int64) + 1
    parts = [
        "\n".join(head + [f"# {len(mesh.vertices)} vertices, {len(mesh.faces)} faces", f"mtllib {mtl_path.name}", f"o {obj_path.stem}", ""]),
        _rows("v %.6g %.6g %.6g", mesh.vertices),
        _rows("vt %.6f %.6f", uv),
        _rows("vn %.5f %.5f %.5f", _unit_normals(mesh.normals)),
        f"usemtl {mat}\ns off\n",
        _rows("f %d/%d/%d %d/%d/%d %d/%d/%d", np.repeat(f1, 3, axis=1)),
    ]
    with atomic_path(mtl_path) as tmp:
        tmp.write_text(mtl, encoding="utf-8")
    with atomic_path(obj_path) as tmp:
        tmp.write_text("".join(parts), encoding="utf-8")
    return obj_path, mtl_path


def _comment_lines(provenance: Mapping[str, str] | None) -> list[str]:
    if not provenance:
        return []
    from exporters.provenance import Provenance

    d = dict(provenance)
    known = {k: d.pop(k) for k in ("source", "method", "config_hash", "recon_version", "date", "run") if k in d}
    return Provenance(**known, extra=d).comment_lines()


# ---------------------------------------------------------------------------------------------
# USD / USDZ
# ---------------------------------------------------------------------------------------------


def build_mesh_stage(
    mesh: TexturedMesh,
    texture_path: str,
    up_axis: str = "Y",
    meters_per_unit: float = 1.0,
    provenance: Mapping[str, str] | None = None,
):
    """An in-memory ``Usd.Stage`` with the mesh at :data:`MESH_PATH` and its preview material.

    ``texture_path`` is the asset path the ``UsdUVTexture`` reads (relative to the layer, e.g.
    ``"./mesh.png"``).
    """
    from pxr import Sdf, UsdGeom, UsdShade, Vt

    from exporters.usd_splat import new_stage

    if up_axis not in ("Y", "Z"):
        raise ReconError(f"USD upAxis must be 'Y' or 'Z', got {up_axis!r}")
    stage = new_stage(up_axis, meters_per_unit, provenance)
    m = UsdGeom.Mesh.Define(stage, MESH_PATH)
    pts = np.ascontiguousarray(mesh.vertices, np.float32)
    m.CreatePointsAttr().Set(Vt.Vec3fArray.FromNumpy(pts))
    m.CreateFaceVertexCountsAttr().Set(Vt.IntArray.FromNumpy(np.full(len(mesh.faces), 3, np.int32)))
    m.CreateFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(np.ascontiguousarray(mesh.faces, np.int32).ravel()))
    m.CreateNormalsAttr().Set(Vt.Vec3fArray.FromNumpy(_unit_normals(mesh.normals)))
    m.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    m.CreateSubdivisionSchemeAttr().Set(UsdGeom.Tokens.none)
    m.CreateOrientationAttr().Set(UsdGeom.Tokens.rightHanded)
    m.CreateDoubleSidedAttr().Set(False)
    m.CreateExtentAttr().Set(Vt.Vec3fArray.FromNumpy(np.stack([pts.min(axis=0), pts.max(axis=0)]).astype(np.float32)))
    st = np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], 1).astype(np.float32)
    pv = UsdGeom.PrimvarsAPI(m.GetPrim()).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
    pv.Set(Vt.Vec2fArray.FromNumpy(st))

    UsdGeom.Scope.Define(stage, "/World/Looks")
    material = UsdShade.Material.Define(stage, MATERIAL_PATH)
    surface = UsdShade.Shader.Define(stage, MATERIAL_PATH + "/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(1.0)
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    reader = UsdShade.Shader.Define(stage, MATERIAL_PATH + "/StReader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    st_name = material.CreateInput("frame:stPrimvarName", Sdf.ValueTypeNames.String)
    st_name.Set("st")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).ConnectToSource(st_name)
    tex = UsdShade.Shader.Define(stage, MATERIAL_PATH + "/BaseColor")
    tex.CreateIdAttr("UsdUVTexture")
    tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(texture_path))
    tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
    tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("clamp")
    tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("clamp")
    tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
    rgb = tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(rgb)
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    UsdShade.MaterialBindingAPI.Apply(m.GetPrim()).Bind(material)
    return stage


def write_mesh_usd(
    mesh: TexturedMesh,
    path: str | os.PathLike,
    texture_name: str = "mesh.png",
    up_axis: str = "Y",
    meters_per_unit: float = 1.0,
    provenance: Mapping[str, str] | None = None,
) -> Path:
    """Write the mesh stage (format from the suffix: ``.usdc``, ``.usda``, ``.usd``) atomically;
    its material reads ``./<texture_name>`` (written by :func:`write_png` beside it)."""
    stage = build_mesh_stage(mesh, f"./{texture_name}", up_axis, meters_per_unit, provenance)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not stage.GetRootLayer().Export(str(tmp)):
            raise ReconError(f"USD could not write {path}")
    return path


def write_mesh_usdz(
    mesh: TexturedMesh,
    path: str | os.PathLike,
    up_axis: str = "Y",
    meters_per_unit: float = 1.0,
    provenance: Mapping[str, str] | None = None,
) -> Path:
    """Write a USDZ package (binary USD layer + PNG texture) for AR Quick Look, atomically.

    The package holds ``<stem>.usdc`` (the default layer) and ``<stem>.png``.
    """
    from pxr import UsdUtils

    path = Path(path)
    stem = path.stem
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{stem}.usdz-", dir=path.parent if path.parent.exists() else None))
    try:
        write_png(mesh.texture, tmpdir / f"{stem}.png")
        write_mesh_usd(mesh, tmpdir / f"{stem}.usdc", f"{stem}.png", up_axis, meters_per_unit, provenance)
        with atomic_path(path) as tmp:
            tmp.unlink()  # the packager refuses to overwrite
            if not UsdUtils.CreateNewARKitUsdzPackage(str(tmpdir / f"{stem}.usdc"), str(tmp)):
                raise ReconError(f"USD could not package {path}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
