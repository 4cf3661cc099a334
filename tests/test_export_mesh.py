"""Textured meshes from splats: accuracy against a ground-truth scene, validators, texture, options.

The model is built, not trained: flat opaque Gaussians sampled on the ground-truth mesh of the
built-in turntable scene (so the true surface is known), with the scene's cameras as training
cameras. One export of all four mesh formats is shared by the tests.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from exporters import axes as ax
from exporters.gltf_splat import parse_glb, validate_gltf, validator_available
from exporters.mesh import MeshOptions, extract_mesh
from exporters.mesh_metrics import mesh_metrics
from recon.testing.gaussians import surface_splats
from recon.testing.runs import write_run
from recon.cli import run as cli
from recon.errors import ReconError
from recon.scene.cameras import Camera
from recon.scene.conventions import opengl_to_opencv

pxr = pytest.importorskip("pxr", reason="usd-core is not installed")

RES, VIEWS, GAUSSIANS = 128, 32, 36_000
MESH_ARGS = ["--mesh-faces", "20000", "--mesh-texture-size", "512"]


def _read_ply_mesh(path):
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    v = np.stack([ply["vertex"][k] for k in "xyz"], 1).astype(np.float64)
    c = np.stack([ply["vertex"][k] for k in ("red", "green", "blue")], 1) / 255.0
    f = np.stack(ply["face"]["vertex_indices"]).astype(np.int64)
    return v, f, c


def _glb_mesh(path):
    """(positions, faces, uvs, texture, doc) of a GLB written by write_mesh_glb."""
    from PIL import Image

    doc, binary = parse_glb(path.read_bytes())

    def accessor(i, dtype, width):
        a = doc["accessors"][i]
        view = doc["bufferViews"][a["bufferView"]]
        return np.frombuffer(binary, dtype, a["count"] * width, view["byteOffset"]).reshape(a["count"], width)

    prim = doc["meshes"][0]["primitives"][0]
    pos = accessor(prim["attributes"]["POSITION"], "<f4", 3)
    uv = accessor(prim["attributes"]["TEXCOORD_0"], "<f4", 2)
    idx = accessor(prim["indices"], "<u4", 1).reshape(-1, 3)
    img_view = doc["bufferViews"][doc["images"][0]["bufferView"]]
    png = binary[img_view["byteOffset"] : img_view["byteOffset"] + img_view["byteLength"]]
    tex = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return pos.astype(np.float64), idx.astype(np.int64), uv.astype(np.float64), tex, doc


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    import scenes

    root = tmp_path_factory.mktemp("mesh")
    gt = scenes.synth("turntable", root / "scene", views=VIEWS, res=RES, seed=0)
    v, f, c = _read_ply_mesh(gt / "mesh.ply")
    tj = json.loads((gt / "transforms.json").read_text())
    K = np.array([[tj["fl_x"], 0, tj["cx"]], [0, tj["fl_y"], tj["cy"]], [0, 0, 1.0]])
    poses = np.stack([opengl_to_opencv(np.array(fr["transform_matrix"])) for fr in tj["frames"]])
    splats = surface_splats(v, f, c, GAUSSIANS, seed=1)
    run = write_run(root / "3dgs-20260101-000000", splats, (poses, K), size=(RES, RES), config={"scene": str(gt), "method": "3dgs"})
    meta = json.loads((gt / "scene.json").read_text())
    extent = float(np.linalg.norm(np.subtract(meta["bbox"]["max"], meta["bbox"]["min"])))
    cams = [Camera(K=K, width=RES, height=RES, c2w=p) for p in poses]
    return {"root": root, "run": run, "v": v, "f": f, "c": c, "extent": extent, "cams": cams, "splats": splats}


@pytest.fixture(scope="module")
def exported(scene):
    out = scene["root"] / "out"
    argv = ["export", str(scene["run"]), "--format", "mesh-glb,mesh-obj,mesh-usd,mesh-usdz", "--out", str(out)]
    assert cli(argv + MESH_ARGS) == 0
    return out


def test_files_and_provenance(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == ["mesh.glb", "mesh.mtl", "mesh.obj", "mesh.png", "mesh.usdc", "mesh.usdz"]  # no temp files left
    *_, doc = _glb_mesh(exported / "mesh.glb")
    prov = doc["asset"]["extras"]["recon"]
    assert prov["method"] == "3dgs" and len(prov["config_hash"]) == 16 and prov["up"] == "+z"
    obj_head = (exported / "mesh.obj").read_text().splitlines()[:20]
    assert f"# recon config_hash: {prov['config_hash']}" in obj_head and "mtllib mesh.mtl" in obj_head
    assert "map_Kd mesh.png" in (exported / "mesh.mtl").read_text().splitlines()
    for name in ("mesh.usdc", "mesh.usdz"):
        stage = pxr.Usd.Stage.Open(str(exported / name))
        assert stage.GetRootLayer().customLayerData["recon"]["config_hash"] == prov["config_hash"]
        assert pxr.UsdGeom.GetStageUpAxis(stage) == "Y"


def test_mesh_matches_ground_truth(scene, exported):
    """Chamfer <= 1% of the scene extent and F-score at 1% >= 0.8 (ground truth no camera sees excluded)."""
    pos, faces, *_ = _glb_mesh(exported / "mesh.glb")
    R = ax.axes_rotation("+z", "y-up")  # glb = R @ scene
    verts = pos @ R  # back to the scene frame
    assert 5_000 <= len(faces) <= 20_000
    tau = 0.01 * scene["extent"]
    m = mesh_metrics(verts, faces, scene["v"], scene["f"], tau, samples=60_000, cameras=scene["cams"])
    print(f"chamfer {100 * m['chamfer'] / scene['extent']:.2f}% of extent, F@1% {m['fscore']:.3f} "
          f"(P {m['precision']:.3f}, R {m['recall']:.3f}), GT visible {m['gt_visible']:.2f}")  # fmt: skip
    assert m["chamfer"] <= tau
    assert m["fscore"] >= 0.8
    # same mesh in the OBJ (y-up too), with (u, 1 - v) texture coordinates
    lines = (exported / "mesh.obj").read_text().splitlines()
    v_obj = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    vt = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("vt ")])
    np.testing.assert_allclose(v_obj, pos, atol=1e-4 * scene["extent"])
    assert sum(ln.startswith("f ") for ln in lines) == len(faces)
    _, _, uv, _, _ = _glb_mesh(exported / "mesh.glb")
    np.testing.assert_allclose(vt, np.stack([uv[:, 0], 1 - uv[:, 1]], 1), atol=2e-6)


def test_faces_point_at_the_cameras(scene, exported):
    """Front faces (counter-clockwise) are what the training cameras see."""
    import open3d as o3d

    pos, faces, *_ = _glb_mesh(exported / "mesh.glb")
    verts = pos @ ax.axes_rotation("+z", "y-up")
    m = o3d.t.geometry.TriangleMesh()
    m.vertex.positions = o3d.core.Tensor(verts.astype(np.float32))
    m.triangle.indices = o3d.core.Tensor(faces.astype(np.int32))
    rs = o3d.t.geometry.RaycastingScene()
    rs.add_triangles(m)
    front = total = 0
    for cam in scene["cams"][::4]:
        u, v = np.meshgrid(np.arange(0, RES, 2) + 0.5, np.arange(0, RES, 2) + 0.5)
        d = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(cam.K).T @ cam.c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hit = rs.cast_rays(o3d.core.Tensor(np.concatenate([np.broadcast_to(cam.c2w[:3, 3], d.shape), d], 1).astype(np.float32)))
        ok = np.isfinite(hit["t_hit"].numpy())
        n = hit["primitive_normals"].numpy()[ok]
        front += int(((n * d[ok]).sum(1) < 0).sum())
        total += int(ok.sum())
    assert total > 1000 and front / total > 0.95


def test_texture_holds_the_surface_colours(scene, exported):
    """The baked texture at each mesh vertex matches the ground-truth colour there (not blank)."""
    from scipy.spatial import cKDTree

    pos, faces, uv, tex, _ = _glb_mesh(exported / "mesh.glb")
    verts = pos @ ax.axes_rotation("+z", "y-up")
    S = tex.shape[0]
    texel = tex[np.clip((uv[:, 1] * S).astype(int), 0, S - 1), np.clip((uv[:, 0] * S).astype(int), 0, S - 1)] / 255.0
    # ground-truth colour: the splats' (they carry the mesh colours), averaged over a few neighbours
    sp = scene["splats"]
    cols = 0.5 + 0.28209479177387814 * sp["sh0"][:, 0, :]
    _, nn = cKDTree(sp["means"]).query(verts, k=8)
    truth = cols[nn].mean(axis=1)
    err = np.abs(texel - truth).mean(axis=1)
    blank = np.abs(truth - truth.mean(axis=0)).mean(axis=1)  # what a one-colour texture would score
    print(f"texture error {np.median(err):.3f} (one colour: {np.median(blank):.3f})")
    assert np.median(err) < 0.5 * np.median(blank)
    assert np.median(err) < 0.08
    assert tex.std() > 0.05 * 255


def test_validators_report_no_errors(exported):
    if validator_available() is None:
        report = validate_gltf(exported / "mesh.glb")
        assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]
        assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"][:5]
        assert report["info"]["totalTriangleCount"] > 0 and report["info"]["materialCount"] == 1
    from exporters.usd_splat import validate_usd

    assert validate_usd(exported / "mesh.usdc") == []
    assert validate_usd(exported / "mesh.usdz") == []
    if validator_available() is not None:
        pytest.skip(str(validator_available()))


def test_usdz_holds_the_texture(exported):
    from PIL import Image
    from pxr import Ar, Sdf, Usd, UsdShade

    path = exported / "mesh.usdz"
    assert zipfile.ZipFile(path).namelist() == ["mesh.usdc", "mesh.png"]
    stage = Usd.Stage.Open(str(path))
    mesh = stage.GetPrimAtPath("/World/Mesh")
    material, _ = UsdShade.MaterialBindingAPI(mesh).ComputeBoundMaterial()
    assert material.GetPath() == "/World/Looks/Material"
    asset = stage.GetPrimAtPath("/World/Looks/Material/BaseColor").GetAttribute("inputs:file").Get()
    assert isinstance(asset, Sdf.AssetPath) and asset.resolvedPath.endswith("mesh.usdz[mesh.png]")
    data = Ar.GetResolver().OpenAsset(Ar.ResolvedPath(asset.resolvedPath)).GetBuffer()
    packed = np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
    np.testing.assert_array_equal(packed, np.asarray(Image.open(exported / "mesh.png").convert("RGB")))
    # the loose USD layer reads the PNG beside it
    loose = Usd.Stage.Open(str(exported / "mesh.usdc"))
    f = loose.GetPrimAtPath("/World/Looks/Material/BaseColor").GetAttribute("inputs:file").Get()
    assert f.path == "./mesh.png" and f.resolvedPath == str((exported / "mesh.png").resolve())


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--mesh-faces", "0"], "--mesh-faces must be a face budget of at least 4, got 0"),
        (["--mesh-texture-size", "8"], "--mesh-texture-size must be between 64 and 16384"),
        (["--mesh-voxel", "-1"], "--mesh-voxel must be a positive size"),
        (["--mesh-min-component", "2"], "--mesh-min-component must be a fraction in [0, 1]"),
        (["--axes", "z-up"], "glTF is right-handed and +Y up; --axes z-up cannot be used for mesh-glb"),
    ],
)
def test_bad_options_are_one_line_errors(scene, tmp_path, capsys, argv, message):
    out = tmp_path / "bad"
    assert cli(["export", str(scene["run"]), "--format", "mesh-glb", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon export: error:") and message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_api_errors(scene):
    with pytest.raises(ReconError, match="--mesh-faces must be a face budget of at least 4, got 0"):
        extract_mesh(scene["splats"], scene["cams"], MeshOptions(faces=0))
    far = {k: v.copy() for k, v in scene["splats"].items()}
    far["means"] = far["means"] + np.float32(1e4)  # nothing in front of any camera
    with pytest.raises(ReconError, match="no surface to mesh"):
        extract_mesh(far, scene["cams"][:2], MeshOptions(texture_size=64))


def test_run_without_cameras_uses_orbit_views(scene):
    """No cameras.json: views on a sphere around the scene still give an accurate mesh."""
    opts = MeshOptions(faces=5000, texture_size=128, render_size=128, orbit_views=24)
    mesh = extract_mesh(scene["splats"], [], opts, up=np.array([0.0, 0.0, 1.0]))
    assert mesh.stats["views"] == 24 and len(mesh.faces) <= 5000 and mesh.texture.shape == (128, 128, 3)
    tau = 0.01 * scene["extent"]
    m = mesh_metrics(mesh.vertices, mesh.faces, scene["v"], scene["f"], tau, samples=30_000, cameras=scene["cams"])
    print(f"orbit views: chamfer {100 * m['chamfer'] / scene['extent']:.2f}% of extent, F@1% {m['fscore']:.3f}")
    assert m["chamfer"] <= tau and m["fscore"] >= 0.8, m
