"""Cameras: USD cameras project exactly like recon's OpenCV cameras; cameras.json; camera paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exporters import axes as ax
from exporters.cameras import (
    NamedCamera,
    build_cameras_stage,
    read_camera_path,
    read_cameras_json,
    write_cameras_json,
)
from recon.errors import ReconError
from recon.scene.cameras import Camera
from recon.scene.conventions import opencv_to_opengl

pxr = pytest.importorskip("pxr", reason="usd-core is not installed")
from pxr import Gf, Usd, UsdGeom  # noqa: E402


def _cams() -> list[NamedCamera]:
    rng = np.random.default_rng(14)
    out = []
    for i in range(4):
        A = rng.normal(size=(3, 3))
        R, _ = np.linalg.qr(A)
        R *= np.sign(np.linalg.det(R))
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = R, rng.normal(size=3) * 3
        K = np.array([[300.0 + 10 * i, 0, 170.0 - 7 * i], [0, 310.0, 115.0 + 5 * i], [0, 0, 1]])  # off-centre, fx != fy
        out.append(NamedCamera(f"img-{i}.jpg" if i else "0 bad name", Camera(K=K, width=320, height=240, c2w=c2w)))
    return out


def _usd_project(cam_prim, X: np.ndarray, width: int, height: int, time=Usd.TimeCode.Default()) -> np.ndarray:
    gf = UsdGeom.Camera(cam_prim).GetCamera(time)
    fr = gf.frustum
    M = fr.ComputeViewMatrix() * fr.ComputeProjectionMatrix()
    uv = []
    for x in X:
        p = M.Transform(Gf.Vec3d(*map(float, x)))
        uv.append([(p[0] + 1) / 2 * width, (1 - p[1]) / 2 * height])
    return np.array(uv)


@pytest.mark.parametrize("up,scale", [("-y", 1.0), ("+z", 0.25)])
def test_usd_cameras_project_like_opencv(up, scale):
    cams = _cams()
    T = ax.export_transform(up, "y-up", scale)
    stage = build_cameras_stage(cams, T, up_axis="Y", provenance={"source": "s"})
    prims = list(stage.GetPrimAtPath("/World/TrainingCameras").GetChildren())
    assert [p.GetName() for p in prims] == ["_0_bad_name", "img_1_jpg", "img_2_jpg", "img_3_jpg"]
    rng = np.random.default_rng(15)
    for nc, prim in zip(cams, prims):
        cam = nc.camera
        # points in front of the camera, in the scene frame
        pc = np.c_[rng.uniform(-1, 1, (20, 2)), rng.uniform(2, 6, 20)]
        X = pc @ cam.c2w[:3, :3].T + cam.c2w[:3, 3]
        uv_cv, z = cam.project(X)
        assert (z > 0).all()
        Xe = X @ T[:3, :3].T + T[:3, 3]  # the same points in the export frame
        uv_usd = _usd_project(prim, Xe, cam.width, cam.height)
        np.testing.assert_allclose(uv_usd, uv_cv, atol=1e-3)


def test_camera_path_is_time_sampled(tmp_path):
    cams = _cams()
    path_json = {
        "render_width": 320,
        "render_height": 240,
        "fps": 24,
        "camera_path": [
            {"camera_to_world": opencv_to_opengl(c.camera.c2w).reshape(-1).tolist(), "fov": 50.0, "aspect": 4 / 3}
            for c in cams
        ],
    }
    (tmp_path / "path.json").write_text(json.dumps(path_json))
    cp = read_camera_path(tmp_path / "path.json")
    assert cp.fps == 24 and len(cp.frames) == 4
    np.testing.assert_allclose(cp.frames[2].c2w, cams[2].camera.c2w, atol=1e-12)
    assert cp.frames[0].fy == pytest.approx(120 / np.tan(np.radians(25)))
    T = ax.export_transform("-y", "y-up")
    stage = build_cameras_stage([], T, camera_path=cp)
    prim = stage.GetPrimAtPath("/World/CameraPath")
    assert stage.GetTimeCodesPerSecond() == 24 and stage.GetEndTimeCode() == 3
    xf = UsdGeom.Xformable(prim).GetOrderedXformOps()[0]
    assert xf.GetAttr().GetTimeSamples() == [0.0, 1.0, 2.0, 3.0]
    X = cams[3].camera.c2w[:3, 3] + cams[3].camera.c2w[:3, 2] * 3 + cams[3].camera.c2w[:3, 0] * 0.5
    uv_cv, _ = cp.frames[3].project(X[None])
    uv = _usd_project(prim, (X @ T[:3, :3].T)[None], 320, 240, Usd.TimeCode(3))
    np.testing.assert_allclose(uv, uv_cv, atol=1e-3)


def test_cameras_json_round_trip(tmp_path):
    cams = _cams()
    T = {"splat-glb": ax.export_transform("-y", "y-up")}
    path = write_cameras_json(tmp_path / "cameras.json", cams, export_transforms=T, provenance={"method": "3dgs"})
    doc = json.loads(path.read_text())
    assert doc["frame"] == "scene" and doc["provenance"] == {"method": "3dgs"}
    e = doc["cameras"][1]
    assert set(e) >= {"name", "c2w_opencv", "c2w_opengl", "K", "width", "height"}
    np.testing.assert_allclose(np.array(e["c2w_opengl"]), opencv_to_opengl(cams[1].camera.c2w))
    np.testing.assert_allclose(doc["export_transforms"]["splat-glb"], T["splat-glb"])
    back = read_cameras_json(path)
    assert [c.name for c in back] == [c.name for c in cams]
    for a, b in zip(back, cams):
        np.testing.assert_allclose(a.camera.c2w, b.camera.c2w)
        np.testing.assert_allclose(a.camera.K, b.camera.K)


def test_reads_transforms_json_layout(tmp_path):
    """nerfstudio/Blender layout: OpenGL transform_matrix, shared intrinsics at the top level."""
    c2w = np.eye(4)
    c2w[:3, 3] = [0, 0, 4]
    doc = {"camera_angle_x": 0.69, "w": 400, "h": 400, "frames": [{"file_path": "./train/r_0", "transform_matrix": c2w.tolist()}]}
    (tmp_path / "t.json").write_text(json.dumps(doc))
    (cam,) = read_cameras_json(tmp_path / "t.json")
    assert cam.name == "r_0"
    np.testing.assert_allclose(cam.camera.c2w, c2w @ np.diag([1, -1, -1, 1]))
    assert cam.camera.fx == pytest.approx(200 / np.tan(0.345))
    (tmp_path / "bad.json").write_text(json.dumps({"cameras": [{"width": 4, "height": 4}]}))
    with pytest.raises(ReconError, match="no pose"):
        read_cameras_json(tmp_path / "bad.json")


def test_left_handed_cameras_are_refused():
    with pytest.raises(ReconError, match="left-handed"):
        build_cameras_stage(_cams(), ax.export_transform("+y", "y-up-left"))
