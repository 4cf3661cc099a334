"""Exports opened where users open them: Blender imports every mesh, USD and camera export.

A tiny run is trained on the built-in turntable scene, exported with ``recon export`` (meshes in
every format, cameras with a camera path, the splat PLY, at ``--scale 0.5`` so units matter), and
``scripts/check_blender.py`` imports each file into a fresh headless Blender scene with Blender's
own importers. Two Blenders: the ``bpy`` module (Blender 5.0, the official build, with USD) in
``.venv-blender`` and Debian's Blender 3.4 (no USD in Debian's build: its USD files are reported as
skipped). ``make test`` installs both. The checks: every file imports; object, face and vertex
counts; the texture bound to the Base Color; the bounding box in metres with +Z up; every camera's
focal length, principal point, sensor fit and pose; the camera path's frame range and per-frame
lens; and a Cycles render from an imported training camera against recon's own render of the mesh
(silhouette IoU and colour error).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_blender.py"
BPY_PYTHON = Path(os.environ.get("RECON_BPY_PYTHON", ROOT / ".venv-blender" / "bin" / "python"))
SCALE = 0.5  # metres per scene unit in the export
PATH_FRAMES, PATH_W, PATH_H = 12, 48, 64  # a portrait camera path: Blender's vertical sensor fit
MESH_FILES = ("mesh.glb", "mesh.obj", "mesh.usdc", "mesh.usdz")
USD_FILES = ("mesh.usdc", "mesh.usdz", "cameras.usda")
DOC_IMAGE = ROOT / "docs" / "img" / "blender_turntable.png"

pytest.importorskip("pxr", reason="usd-core is not installed")


def _bpy_available() -> bool:
    if not BPY_PYTHON.exists():
        return False
    r = subprocess.run([str(BPY_PYTHON), "-c", "import bpy"], capture_output=True, timeout=120)
    return r.returncode == 0


def _blenders() -> dict[str, list[str]]:
    out = {}
    if _bpy_available():
        out["bpy"] = [str(BPY_PYTHON), str(SCRIPT)]
    exe = shutil.which("blender")
    if exe:
        out["debian"] = [exe, "-b", "--factory-startup", "--python", str(SCRIPT), "--"]
    return out


BLENDERS = _blenders()


def _need_blender(kind: str | None = None):
    have = BLENDERS if kind is None else {k: v for k, v in BLENDERS.items() if k == kind}
    if not have:
        what = {"bpy": f"the bpy module in {BPY_PYTHON.parent.parent} (make test installs it)",
                None: "Blender (make test installs Debian's blender and the bpy module)"}.get(kind, "Blender")
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing on CI")
        pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import scenes
    from recon.cli import run as recon
    from recon.scene.conventions import look_at_c2w

    if not BLENDERS:
        _need_blender()
    root = tmp_path_factory.mktemp("blender")
    scene = scenes.synth("turntable", root / "scene", views=24, res=64, seed=0)
    fast = ["--sh-degree", "0", "--init-num-points", "4000", "--refine-start", "50", "--refine-every", "50",
            "--max-gaussians", "12000", "--checkpoint-every", "0", "--log-every-seconds", "1e9"]
    assert recon(["train", str(scene), "--out", str(root / "run"), "--steps", "700"] + fast) == 0
    # A portrait camera path with a changing focal length and an off-centre principal point.
    frames = []
    for i in range(PATH_FRAMES):
        a = 2 * math.pi * i / PATH_FRAMES
        eye = np.array([3.2 * math.cos(a), 3.2 * math.sin(a), 1.0 + 0.3 * math.sin(a)])
        f = 40.0 + 2.0 * i
        K = [[f, 0, 0.45 * PATH_W], [0, f, 0.55 * PATH_H], [0, 0, 1]]
        frames.append({"c2w": look_at_c2w(eye, np.zeros(3), (0, 0, 1.0)).tolist(), "K": K})
    path = root / "path.json"
    path.write_text(json.dumps({"fps": 12, "width": PATH_W, "height": PATH_H, "frames": frames}))
    out = root / "export"
    argv = ["export", str(root / "run"), "--format", "mesh-glb,mesh-obj,mesh-usd,mesh-usdz,cameras,ply",
            "--camera-path", str(path), "--scale", str(SCALE), "--mesh-faces", "6000", "--mesh-texture-size", "256",
            "--out", str(out)]
    assert recon(argv) == 0
    return out


@pytest.fixture(scope="module")
def reports(exported):
    """Run check_blender.py in every Blender there is; ``{kind: report}``."""
    cams = json.loads((exported / "cameras.json").read_text())["cameras"]
    train = [c["name"] for c in cams if c.get("split", "train") == "train"]
    out = {}
    for kind, prefix in BLENDERS.items():
        folder = exported.parent / f"blender-{kind}"
        args = [str(exported), "--report", str(folder / "report.json"), "--out", str(folder)]
        if kind == "bpy":
            args += ["--render", train[1], "--screenshot", str(folder / "screenshot.png"), "--screenshot-scale", "4",
                     "--samples", "16"]
        r = subprocess.run(prefix + args, capture_output=True, text=True, timeout=600)
        print("\n".join(ln for ln in r.stdout.splitlines() if ln.startswith("[blender")))
        assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
        out[kind] = json.loads((folder / "report.json").read_text())
        out[kind]["render_camera"] = train[1]
    return out


# +90 deg about X: the turntable's +Z up becomes -Y up, the frame COLMAP reconstructions come in
Z_TO_MINUS_Y = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def rotated(exported):
    """The same run re-expressed in a "-y up" (COLMAP-like) training frame, exported and opened in
    Blender 5: ``(export folder, report)``. The object must stand in Blender exactly as before."""
    from exporters.ply import read_ply
    from exporters.splats import as_numpy, transform_splats
    from recon.cli import run as recon
    from recon.testing.runs import write_run

    _need_blender("bpy")
    root = exported.parent
    splats = transform_splats(as_numpy(read_ply(root / "run" / "splats.ply")), Z_TO_MINUS_Y)
    cams = json.loads((root / "run" / "cameras.json").read_text())["cameras"]
    poses = np.stack([Z_TO_MINUS_Y @ np.array(c["c2w_opencv"]) for c in cams])
    assert all(np.allclose(c["K"], cams[0]["K"]) for c in cams)
    run = write_run(root / "run-ydown", splats, (poses, np.array(cams[0]["K"])), size=(cams[0]["width"], cams[0]["height"]),
                    config={"method": "splat", "scene": "turntable, rotated to -y up"})
    out = root / "export-ydown"
    argv = ["export", str(run), "--format", "mesh-glb,mesh-usd,cameras", "--scale", str(SCALE), "--mesh-faces", "6000",
            "--mesh-texture-size", "256", "--out", str(out)]
    assert recon(argv) == 0
    folder = root / "blender-ydown"
    r = subprocess.run(BLENDERS["bpy"] + [str(out), "--report", str(folder / "report.json")], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return out, json.loads((folder / "report.json").read_text())


def _glb(path: Path):
    from exporters.gltf_splat import parse_glb

    doc, binary = parse_glb(path.read_bytes())

    def acc(i, dtype, width):
        a = doc["accessors"][i]
        view = doc["bufferViews"][a["bufferView"]]
        return np.frombuffer(binary, dtype, a["count"] * width, view["byteOffset"]).reshape(a["count"], width)

    prim = doc["meshes"][0]["primitives"][0]
    pos = acc(prim["attributes"]["POSITION"], "<f4", 3).astype(np.float64)
    uv = acc(prim["attributes"]["TEXCOORD_0"], "<f4", 2).astype(np.float64)
    faces = acc(prim["indices"], "<u4", 1).reshape(-1, 3).astype(np.int64)
    return pos, faces, uv


def _cameras_doc(exported: Path) -> dict:
    return json.loads((exported / "cameras.json").read_text())


def _to_blender(exported: Path) -> np.ndarray:
    """Scene frame -> Blender's world: the scene's up onto +Z, metres (--scale)."""
    from exporters import axes as ax

    up = _cameras_doc(exported)["provenance"].get("up") or "+z"
    return ax.export_transform(up, "z-up", SCALE)


def _mesh_in_scene(exported: Path):
    """mesh.glb's vertices back in the scene frame (through the transform cameras.json records)."""
    pos, faces, uv = _glb(exported / "mesh.glb")
    T = np.array(_cameras_doc(exported)["export_transforms"]["mesh-glb"])
    return (pos - T[:3, 3]) @ np.linalg.inv(T[:3, :3]).T, faces, uv


def test_every_file_imports(reports):
    """Every export imports without error; only a Blender without USD skips the USD files."""
    assert any(r["usd"] for r in reports.values()) or not BLENDERS.get("bpy"), "no Blender with USD ran"
    for kind, rep in reports.items():
        for name in (*MESH_FILES, "splats.ply", "cameras.usda"):
            r = rep["files"][name]
            assert r["present"], f"{name} was not exported"
            if name in USD_FILES and not rep["usd"]:
                assert "no USD support" in r["skipped"]
                continue
            assert r.get("imported"), f"Blender {rep['blender']} could not import {name}: {r.get('error')}"


def test_mesh_counts_and_texture(exported, reports):
    """One mesh object with the file's faces and vertices; the PNG texture feeds the Base Color."""
    from PIL import Image

    pos, faces, _ = _glb(exported / "mesh.glb")
    tex = np.asarray(Image.open(exported / "mesh.png").convert("RGB"), np.float64) / 255.0
    for kind, rep in reports.items():
        for name in MESH_FILES:
            r = rep["files"][name]
            if "skipped" in r:
                continue
            assert r["mesh_objects"] == 1 and r["types"] in (["MESH"], ["EMPTY", "MESH"]), (kind, name, r["types"])
            assert r["faces"] == len(faces) and r["vertices"] == len(pos), (kind, name)
            (obj,) = r["objects"]
            assert obj["uv_layers"] == 1
            (mat,) = obj["materials"]
            img = mat["base_color_image"]
            assert img is not None, f"{kind} {name}: {mat['why_not']}"
            assert mat["shader"] == {"metallic": 0.0, "roughness": 1.0}, (kind, name, mat["shader"])  # as written
            assert img["size"] == [tex.shape[1], tex.shape[0]] and img["colorspace"] == "sRGB"
            np.testing.assert_allclose(img["mean_rgb"], tex.mean(axis=(0, 1)), atol=2e-3, err_msg=f"{kind} {name}")


def test_bounding_box_metres_and_z_up(exported, reports):
    """The mesh's bounding box in Blender is the scene's, in metres, with the scene's up on +Z (1 %)."""
    v_scene, _, _ = _mesh_in_scene(exported)
    B = _to_blender(exported)
    expect = v_scene @ B[:3, :3].T + B[:3, 3]
    lo, hi = expect.min(axis=0), expect.max(axis=0)
    diag = float(np.linalg.norm(hi - lo))
    assert _cameras_doc(exported)["provenance"]["up"] == "+z"  # the turntable is Z-up: Blender shows it as trained
    for kind, rep in reports.items():
        for name in MESH_FILES:
            r = rep["files"][name]
            if "skipped" in r:
                continue
            got = np.array(r["bbox"])
            err = np.abs(got - np.stack([lo, hi])).max() / diag
            print(f"{kind} {name}: bbox {np.round(got, 3).tolist()} (error {100 * err:.3f}% of the diagonal)")
            assert err < 0.01, (kind, name, got, lo, hi)
            assert r["unit_scale"] == 1.0
    # the splat PLY is the scene frame (x --scale): a point cloud of every Gaussian centre
    from exporters.ply import read_ply

    means = np.asarray(read_ply(exported / "splats.ply")["means"], np.float64)
    for kind, rep in reports.items():
        r = rep["files"]["splats.ply"]
        assert r["mesh_objects"] == 1 and r["faces"] == 0 and r["vertices"] == len(means)
        np.testing.assert_allclose(r["bbox"], [means.min(axis=0), means.max(axis=0)], atol=1e-5)


def test_colmap_frame_stands_up_the_same(exported, reports, rotated):
    """A run trained in a "-y up" frame (found from its cameras) stands in Blender exactly as the
    Z-up original: cameras within 1e-4 m and 1e-5 in rotation; the mesh (extracted again, in the
    other frame) spans the same box within 1 % of its diagonal (measured: 0.28 %)."""
    out, rep = rotated
    assert _cameras_doc(out)["provenance"]["up"] == "-y"
    base = reports["bpy"]["files"]
    for name in ("mesh.glb", "mesh.usdc"):
        a, b = np.array(base[name]["bbox"]), np.array(rep["files"][name]["bbox"])
        err = np.abs(a - b).max() / np.linalg.norm(a[1] - a[0])
        print(f"{name}: -y up run vs +z up run in Blender, box differs by {100 * err:.2f}% of the diagonal")
        assert err < 0.01
    c0, c1 = base["cameras.usda"]["cameras"], rep["files"]["cameras.usda"]["cameras"]
    assert len(c0) == len(c1)
    for e0, e1 in zip(c0.values(), c1.values()):  # same cameras, same order (other names)
        A, B = np.array(e0["matrix_world"]), np.array(e1["matrix_world"])
        np.testing.assert_allclose(B[:3, 3], A[:3, 3], atol=1e-4)
        np.testing.assert_allclose(B[:3, :3], A[:3, :3], atol=1e-5)
        np.testing.assert_allclose(e1["K"], e0["K"], rtol=1e-5)


def test_cameras_match_recon(exported, reports):
    """Every training camera: focal length (mm and pixels), principal point and sensor fit within
    0.5 %, pose in metres and Z-up; Blender's own projection matrix gives recon's K."""
    from exporters.cameras import read_cameras_json
    from recon.scene.conventions import opencv_to_opengl

    _need_blender("bpy")
    B = _to_blender(exported)
    cams = read_cameras_json(exported / "cameras.json")
    rep = reports["bpy"]["files"]["cameras.usda"]
    assert rep["camera_objects"] == len(cams) + 1 and not rep["missing"]  # + the camera path
    ups = []
    for nc in cams:
        cam, got = nc.camera, rep["cameras"][nc.name]
        K = np.array(got["K"])
        assert K[0, 0] == pytest.approx(cam.fx, rel=5e-3) and K[1, 1] == pytest.approx(cam.fy, rel=5e-3)
        assert abs(K[0, 2] - cam.cx) < 5e-3 * cam.width and abs(K[1, 2] - cam.cy) < 5e-3 * cam.height
        assert got["lens_mm"] == pytest.approx(cam.fx * 36.0 / cam.width, rel=5e-3)  # a 36 mm sensor
        assert got["sensor_width_mm"] == pytest.approx(36.0, rel=1e-4)
        assert got["sensor_fit"] == ("HORIZONTAL" if cam.width >= cam.height else "VERTICAL")
        M = np.array(got["matrix_world"])
        gl = opencv_to_opengl(cam.c2w)
        np.testing.assert_allclose(M[:3, 3], B[:3, :3] @ gl[:3, 3], atol=1e-4)
        R_expect = B[:3, :3] / SCALE @ gl[:3, :3]
        angle = np.degrees(np.arccos(np.clip((np.trace(R_expect.T @ M[:3, :3]) - 1) / 2, -1, 1)))
        assert angle < 0.05
        ups.append(M[:3, 1])  # the camera's up in Blender
    up = np.mean(ups, axis=0)
    assert up[2] / np.linalg.norm(up) > 0.9  # the cameras stand upright in Blender's +Z-up world


def test_camera_path_frames(exported, reports):
    """The camera path imports as one animated camera: frames 0..N-1, lens and pose at every frame."""
    from recon.scene.conventions import opencv_to_opengl

    _need_blender("bpy")
    B = _to_blender(exported)
    doc = _cameras_doc(exported)["camera_path"]
    rep = reports["bpy"]["files"]["cameras.usda"]["path"]
    assert rep["found"] and rep["animated_lens"]
    assert (rep["frame_start"], rep["frame_end"]) == (0, PATH_FRAMES - 1)
    print(f"camera path: frames {rep['frame_start']}..{rep['frame_end']}, Blender fps {rep['fps']} (path: {doc['fps']})")
    assert len(rep["frames"]) == PATH_FRAMES
    for fr, got in zip(doc["frames"], rep["frames"]):
        K, Kb = np.array(fr["K"]), np.array(got["K"])
        assert got["sensor_fit"] == "VERTICAL"  # portrait
        assert Kb[0, 0] == pytest.approx(K[0, 0], rel=5e-3) and Kb[1, 1] == pytest.approx(K[1, 1], rel=5e-3)
        assert abs(Kb[0, 2] - K[0, 2]) < 5e-3 * PATH_W and abs(Kb[1, 2] - K[1, 2]) < 5e-3 * PATH_H
        gl = opencv_to_opengl(np.array(fr["c2w_opencv"]))
        M = np.array(got["matrix_world"])
        np.testing.assert_allclose(M[:3, 3], B[:3, :3] @ gl[:3, 3], atol=1e-4)
        np.testing.assert_allclose(M[:3, :3], B[:3, :3] / SCALE @ gl[:3, :3], atol=1e-4)


def _recon_render(exported: Path, name: str):
    from PIL import Image

    from exporters.cameras import read_cameras_json
    from exporters.mesh_texture import render_mesh

    v, faces, uv = _mesh_in_scene(exported)
    tex = np.asarray(Image.open(exported / "mesh.png").convert("RGB"))
    cam = {c.name: c.camera for c in read_cameras_json(exported / "cameras.json")}[name]
    return render_mesh(v, faces, uv, tex, cam)


def test_blender_render_matches_recon(exported, reports):
    """Cycles from an imported training camera sees recon's mesh render: silhouette IoU >= 0.95,
    base colour within 0.03 (mean absolute error, sRGB 0..1) for every mesh format."""
    from PIL import Image

    _need_blender("bpy")
    rep = reports["bpy"]
    rgb, covered = _recon_render(exported, rep["render_camera"])
    assert covered.mean() > 0.05  # the object fills a fair part of the view
    for name in MESH_FILES:
        r = rep["renders"][name]
        assert "error" not in r, r
        b = np.asarray(Image.open(r["png"]).convert("RGBA"), np.float64) / 255.0
        assert b.shape[:2] == covered.shape
        mask = b[..., 3] > 0.5
        iou = (mask & covered).sum() / (mask | covered).sum()
        both = mask & covered
        err = float(np.abs(b[..., :3][both] - rgb[both]).mean())
        print(f"{name}: silhouette IoU {iou:.4f}, colour error {err:.4f} over {both.sum()} pixels")
        assert iou >= 0.95
        assert err < 0.03


def test_screenshot(exported, reports, tmp_path):
    """The lit Blender render for docs/export.md (Cycles, headless): the mesh is there and shaded.
    RECON_WRITE_DOC_IMAGES=1 writes it (beside recon's render) to docs/img/."""
    from PIL import Image

    _need_blender("bpy")
    rep = reports["bpy"]
    shot = np.asarray(Image.open(rep["screenshot"]["png"]).convert("RGB"))
    rgb, covered = _recon_render(exported, rep["render_camera"])
    big = np.kron(covered, np.ones((4, 4), bool))
    assert shot.shape[:2] == big.shape
    fg, bg = shot[big].astype(float), shot[~big].astype(float)
    assert fg.std() > 10 and abs(fg.mean() - bg.mean()) > 5  # shaded object on the sky, not a blank frame
    if os.environ.get("RECON_WRITE_DOC_IMAGES"):
        white = np.where(covered[..., None], rgb, 1.0)
        ours = Image.fromarray((white * 255 + 0.5).astype(np.uint8)).resize(shot.shape[1::-1], Image.NEAREST)
        albedo = Image.open(rep["renders"]["mesh.usdz"]["png"]).convert("RGBA").resize(shot.shape[1::-1], Image.NEAREST)
        canvas = Image.new("RGB", (shot.shape[1] * 3 + 8, shot.shape[0]), (255, 255, 255))
        canvas.paste(Image.fromarray(shot), (0, 0))
        flat = Image.new("RGB", albedo.size, (255, 255, 255))
        flat.paste(albedo, (0, 0), albedo)
        canvas.paste(flat, (shot.shape[1] + 4, 0))
        canvas.paste(ours, (2 * shot.shape[1] + 8, 0))
        DOC_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        canvas.save(buf, format="PNG", optimize=True)
        DOC_IMAGE.write_bytes(buf.getvalue())


# ---- regression tests of the fixes the Blender check found (usd-core only, no Blender) ----------


def test_usd_lens_is_in_tenths_of_a_stage_unit():
    """UsdGeomCamera lens values are tenths of a stage unit: a 50 mm lens on a 36 mm sensor in a
    metres stage is focalLength 0.5, horizontalAperture 0.36 (recon wrote 50 and 36, which Blender
    imported as a 5000 mm lens on a 3600 mm sensor)."""
    from exporters import axes as ax
    from exporters.cameras import NamedCamera, build_cameras_stage
    from pxr import UsdGeom

    from recon.scene.cameras import Camera

    fx = 50.0 * 640 / 36.0
    cam = Camera(K=np.array([[fx, 0, 300.0], [0, fx, 250.0], [0, 0, 1]]), width=640, height=480, c2w=np.eye(4))
    stage = build_cameras_stage([NamedCamera("c", cam)], ax.export_transform("+y", "y-up"))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    c = UsdGeom.Camera(stage.GetPrimAtPath("/World/TrainingCameras/c"))
    assert c.GetFocalLengthAttr().Get() == pytest.approx(0.5, rel=1e-6)
    assert c.GetHorizontalApertureAttr().Get() == pytest.approx(0.36, rel=1e-6)
    assert c.GetVerticalApertureAttr().Get() == pytest.approx(0.27, rel=1e-6)
    assert c.GetHorizontalApertureOffsetAttr().Get() == pytest.approx((320 - 300) * 0.36 / 640, rel=1e-6)
    assert c.GetVerticalApertureOffsetAttr().Get() == pytest.approx((250 - 240) * 0.27 / 480, rel=1e-6)


def test_camera_path_writes_constant_lens_values_once():
    """A path's constant lens attributes are plain values (readers that take only the default, as
    Blender 3.x-4.x did for apertures, get the right sensor); changing ones are time-sampled with the
    first frame as the default."""
    from exporters import axes as ax
    from exporters.cameras import CameraPath, build_cameras_stage
    from pxr import Usd, UsdGeom

    from recon.scene.cameras import Camera

    frames = [Camera(K=np.array([[100.0 + 10 * i, 0, 30], [0, 100.0 + 10 * i, 40], [0, 0, 1]]), width=60, height=80,
                     c2w=np.eye(4)) for i in range(4)]
    stage = build_cameras_stage([], ax.export_transform("+y", "y-up"), camera_path=CameraPath(24.0, frames))
    c = UsdGeom.Camera(stage.GetPrimAtPath("/World/CameraPath"))
    for attr in (c.GetHorizontalApertureAttr(), c.GetVerticalApertureAttr(), c.GetHorizontalApertureOffsetAttr(),
                 c.GetVerticalApertureOffsetAttr()):
        assert attr.GetNumTimeSamples() == 0 and attr.Get() is not None
    f = c.GetFocalLengthAttr()
    assert f.GetTimeSamples() == [0.0, 1.0, 2.0, 3.0]
    assert f.Get() == pytest.approx(100.0 * 0.36 / 60)  # default = frame 0, in tenths of a metre
    assert f.Get(Usd.TimeCode(3)) == pytest.approx(130.0 * 0.36 / 60)
    assert c.GetVerticalApertureAttr().Get() == pytest.approx(80 * 0.36 / 60)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
