"""Readers: NeRF-synthetic, D-NeRF, nerfstudio, COLMAP (text and binary), LLFF, plain images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.scene.cameras import Camera
from recon.scene.conventions import GL_CV_FLIP, qvec_to_rotmat
from recon.scene.readers import detect_format, load_scene, opencv_to_llff
from recon.scene.scene import Frame, Scene
from recon.scene.writers import write_colmap_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LEGO = DATA / "nerf_synthetic" / "lego"
DNERF = DATA / "dnerf_lego_tiny"


def _need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


def _save_png(path: Path, h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr if channels > 1 else arr[..., 0]).save(path)
    return arr


def _random_c2w(rng: np.random.Generator) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = qvec_to_rotmat(rng.normal(size=4))
    c2w[:3, 3] = rng.normal(size=3) * 3
    return c2w


# ----------------------------------------------------------------------------------------------
# Shared real data


def test_nerf_synthetic_lego():
    root = _need(LEGO)
    assert detect_format(root) == "blender"
    scene = load_scene(root)
    assert scene.format == "blender"
    assert [len(scene.split(s)) for s in ("train", "val", "test")] == [100, 100, 200]
    cam = scene.frames[0].camera
    assert (cam.width, cam.height) == (400, 400)
    meta = json.loads((root / "transforms_train.json").read_text())
    fx = 0.5 * 400 / np.tan(0.5 * meta["camera_angle_x"])
    np.testing.assert_allclose(cam.K, [[fx, 0, 200], [0, fx, 200], [0, 0, 1]], rtol=1e-12)
    # OpenGL transform_matrix -> OpenCV c2w flips the camera's y and z axes.
    gl = np.array(meta["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(scene.frames[0].camera.c2w, gl @ GL_CV_FLIP, atol=1e-12)
    # Cameras look at the object near the origin: the forward (+z) axis points at it.
    c2w = cam.c2w
    to_origin = -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3])
    assert to_origin @ c2w[:3, 2] > 0.9

    # A test image: RGBA composited on white, 400x400x3 float32 in [0, 1].
    i = scene.indices("test")[0]
    img = scene.image(i)
    assert img.shape == (400, 400, 3) and img.dtype == np.float32
    raw = np.asarray(Image.open(scene.frames[i].image_path)).astype(np.float32) / 255
    assert raw.shape[2] == 4
    a = raw[..., 3:]
    np.testing.assert_allclose(img, raw[..., :3] * a + (1 - a), atol=1e-6)
    corner_is_background = raw[0, 0, 3] == 0
    assert corner_is_background and np.all(img[0, 0] == 1.0)
    np.testing.assert_allclose(scene.alpha(i), raw[..., 3], atol=1e-7)
    # Another background on request.
    black = load_scene(root, background=(0, 0, 0))
    np.testing.assert_allclose(black.image(i), raw[..., :3] * a, atol=1e-6)


def test_dnerf_lego_tiny():
    root = _need(DNERF)
    assert detect_format(root) == "dnerf"
    scene = load_scene(root)
    assert scene.format == "dnerf" and scene.has_time
    assert [len(scene.split(s)) for s in ("train", "val", "test")] == [50, 11, 20]
    times = np.array([f.time for f in scene.frames])
    assert np.all((times >= 0) & (times <= 1))
    train_t = [f.time for f in scene.split("train")]
    assert train_t[0] == 0.0 and train_t[-1] == pytest.approx(1.0)
    img = scene.image(0)
    assert img.shape == (100, 100, 3) and img.dtype == np.float32
    assert scene.alpha(0) is None  # RGB on black, as stored


# ----------------------------------------------------------------------------------------------
# nerfstudio


def test_nerfstudio_reader_as_nerfstudio_writes_it(tmp_path):
    _save_png(tmp_path / "images" / "frame_00001.png", 30, 40)
    _save_png(tmp_path / "images" / "frame_00002.png", 30, 40, seed=1)
    _save_png(tmp_path / "masks" / "frame_00001.png", 30, 40, channels=1)
    gl = [np.eye(4).tolist(), [[1, 0, 0, 1], [0, 0, -1, 2], [0, 1, 0, 3], [0, 0, 0, 1]]]
    meta = {
        "camera_model": "OPENCV",
        "fl_x": 50.0, "fl_y": 51.0, "cx": 20.5, "cy": 15.25, "w": 40, "h": 30,
        "k1": 0.01, "k2": -0.002, "p1": 0.0003, "p2": 0.0,
        "applied_transform": [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]],
        "frames": [
            {"file_path": "images/frame_00001.png", "transform_matrix": gl[0], "mask_path": "masks/frame_00001.png"},
            {"file_path": "./images/frame_00002.png", "transform_matrix": gl[1], "fl_x": 60.0},
        ],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert detect_format(tmp_path) == "nerfstudio"
    scene = load_scene(tmp_path)
    f0, f1 = scene.frames
    assert f0.camera.model == "OPENCV"
    np.testing.assert_array_equal(f0.camera.dist, [0.01, -0.002, 0.0003, 0.0])
    np.testing.assert_array_equal(f0.camera.K, [[50, 0, 20.5], [0, 51, 15.25], [0, 0, 1]])
    assert f1.camera.fx == 60.0 and f1.camera.fy == 51.0  # per-frame override
    np.testing.assert_array_equal(f1.camera.c2w, np.array(gl[1]) @ np.diag([1.0, -1, -1, 1]))
    np.testing.assert_array_equal(scene.applied_transform[:3], meta["applied_transform"])
    assert f0.mask_path == tmp_path / "masks" / "frame_00001.png" and f1.mask_path is None
    assert f1.image_path == tmp_path / "images" / "frame_00002.png"
    assert [f.split for f in scene.frames] == ["test", "train"]  # index % 8 == 0 -> test
    assert scene.mask(0).dtype == np.bool_ and scene.mask(0).shape == (30, 40)
    assert scene.mask(1) is None
    # The transforms.json file itself is also accepted.
    assert len(load_scene(tmp_path / "transforms.json")) == 2


def test_nerfstudio_camera_models(tmp_path):
    _save_png(tmp_path / "a.png", 8, 10)
    base = {"fl_x": 5.0, "w": 10, "h": 8, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}

    def model(extra):
        (tmp_path / "transforms.json").write_text(json.dumps({**base, **extra}))
        cam = load_scene(tmp_path).frames[0].camera
        return cam.model, cam.dist.tolist(), cam.K

    assert model({})[0] == "PINHOLE"
    m, d, K = model({"camera_model": "SIMPLE_PINHOLE"})
    assert m == "PINHOLE" and K[1, 1] == 5.0 and K[0, 2] == 5.0 and K[1, 2] == 4.0
    assert model({"camera_model": "OPENCV_FISHEYE", "k1": 0.1, "k4": 0.4})[:2] == ("OPENCV_FISHEYE", [0.1, 0.0, 0.0, 0.4])
    # OPENCV with k3 widens to FULL_OPENCV (k1, k2, p1, p2, k3, k4, k5, k6).
    assert model({"camera_model": "OPENCV", "k1": 0.1, "k3": 0.3, "p2": 0.02})[:2] == (
        "FULL_OPENCV",
        [0.1, 0.0, 0.0, 0.02, 0.3, 0.0, 0.0, 0.0],
    )
    assert model({"camera_model": "SIMPLE_RADIAL", "k1": 0.1})[:2] == ("SIMPLE_RADIAL", [0.1])
    # instant-ngp style: camera_angle_x instead of fl_x.
    b2 = dict(base)
    del b2["fl_x"]
    (tmp_path / "transforms.json").write_text(json.dumps({**b2, "camera_angle_x": 2 * np.arctan(0.5)}))
    assert load_scene(tmp_path).frames[0].camera.fx == pytest.approx(10.0)


def test_nerfstudio_split_lists(tmp_path):
    for i in range(5):
        _save_png(tmp_path / f"im{i}.png", 4, 4, seed=i)
    frames = [{"file_path": f"im{i}.png", "transform_matrix": np.eye(4).tolist()} for i in range(5)]
    meta = {"fl_x": 3.0, "w": 4, "h": 4, "frames": frames, "train_filenames": ["im0.png", "./im1.png"], "test_filenames": ["im3.png"]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path)
    assert [f.split for f in scene.frames] == ["train", "train", "unused", "test", "unused"]


# ----------------------------------------------------------------------------------------------
# LLFF


def test_llff_reader_recovers_known_poses(tmp_path):
    rng = np.random.default_rng(3)
    n, H, W, f = 5, 60, 80, 70.0
    c2w = np.stack([_random_c2w(rng) for _ in range(n)])
    # Build poses_bounds.npy by hand in LLFF's [down, right, back] column order.
    rows = []
    for m in c2w:
        right, down, forward, t = m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3]
        mat = np.stack([down, right, -forward, t, [H, W, f]], axis=1)  # [3, 5]
        rows.append(np.concatenate([mat.ravel(), [0.5, 10.0]]))
    np.save(tmp_path / "poses_bounds.npy", np.array(rows))
    # Images at half the recorded resolution: the focal length must follow.
    for i in range(n):
        _save_png(tmp_path / "images" / f"IMG_{i:03d}.png", H // 2, W // 2, seed=i)
    assert detect_format(tmp_path) == "llff"
    scene = load_scene(tmp_path)
    assert scene.format == "llff" and len(scene) == n
    for i, fr in enumerate(scene.frames):
        np.testing.assert_allclose(fr.camera.c2w, c2w[i], rtol=0, atol=1e-12)
        assert (fr.camera.width, fr.camera.height) == (W // 2, H // 2)
        np.testing.assert_allclose(fr.camera.K, [[f / 2, 0, W / 4], [0, f / 2, H / 4], [0, 0, 1]])
    # The helper used by writers agrees with the hand-built layout.
    np.testing.assert_allclose(opencv_to_llff(c2w), np.array(rows)[:, :15].reshape(-1, 3, 5)[:, :, :4], atol=0)
    assert [f.split for f in scene.frames] == ["test", "train", "train", "train", "train"]


def test_llff_count_mismatch(tmp_path):
    from recon.errors import ReconError

    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 17)))
    _save_png(tmp_path / "images" / "a.png", 4, 4)
    with pytest.raises(ReconError, match="3 poses but images/ has 1"):
        load_scene(tmp_path)


# ----------------------------------------------------------------------------------------------
# COLMAP


def _known_scene(root: Path, n: int = 6, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    frames = []
    cams = [
        Camera(K=[[50.0, 0, 20.5], [0, 52.0, 15.0], [0, 0, 1]], width=40, height=30),
        Camera(K=[[45.0, 0, 20.0], [0, 45.0, 15.0], [0, 0, 1]], width=40, height=30, model="SIMPLE_RADIAL", dist=[0.01]),
        Camera(K=[[48.0, 0, 19.0], [0, 49.0, 16.0], [0, 0, 1]], width=40, height=30, model="OPENCV", dist=[0.01, -0.02, 0.001, 0.002]),
    ]
    for i in range(n):
        img = root / "images" / f"img_{i:02d}.png"
        _save_png(img, 30, 40, seed=i)
        cam = cams[i % 3].copy()
        cam.c2w = _random_c2w(rng)
        frames.append(Frame(image_path=img, camera=cam, name=f"img_{i:02d}"))
    pts = rng.normal(size=(25, 3))
    cols = rng.integers(0, 256, (25, 3), dtype=np.uint8)
    scene = Scene(frames=frames, root=root, format="colmap", points=pts, point_colors=cols)
    for i, fr in enumerate(scene.frames):
        fr.split = "test" if i % 8 == 0 else "train"
    return scene


def _assert_same_cameras(a: Scene, b: Scene, tol: float = 1e-9) -> None:
    assert len(a) == len(b)
    for fa, fb in zip(a.frames, b.frames):
        assert fa.image_path.resolve() == fb.image_path.resolve()
        assert fa.camera.model == fb.camera.model
        assert (fa.camera.width, fa.camera.height) == (fb.camera.width, fb.camera.height)
        np.testing.assert_allclose(fb.camera.c2w, fa.camera.c2w, rtol=0, atol=tol)
        np.testing.assert_allclose(fb.camera.K, fa.camera.K, rtol=0, atol=tol)
        np.testing.assert_allclose(fb.camera.dist, fa.camera.dist, rtol=0, atol=tol)


def test_colmap_text_round_trip_and_pycolmap_agrees(tmp_path):
    import pycolmap

    scene = _known_scene(tmp_path)
    write_colmap_text(scene, tmp_path / "sparse" / "0")
    assert detect_format(tmp_path) == "colmap"
    back = load_scene(tmp_path)
    assert back.format == "colmap"
    _assert_same_cameras(scene, back)
    assert [f.split for f in back.frames] == [f.split for f in scene.frames]
    assert [f.name for f in back.frames] == [f.name for f in scene.frames]
    np.testing.assert_allclose(back.points, scene.points, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back.point_colors, scene.point_colors)
    # Cameras with identical intrinsics share one COLMAP camera.
    rec = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    assert rec.num_cameras() == 3 and rec.num_images() == 6
    # Independent check of the pose convention: COLMAP's own projection of a point matches
    # recon's (pinhole camera: frame 0).
    im = rec.find_image_with_name("img_00.png")
    p = scene.frames[0].camera.c2w @ np.array([0.1, -0.05, 2.0, 1.0])  # in front of camera 0
    uv_colmap = np.asarray(im.project_point(p[:3]))
    uv_recon, z = scene.frames[0].camera.project(p[None, :3])
    assert z[0] == pytest.approx(2.0)
    np.testing.assert_allclose(uv_recon[0], uv_colmap, atol=1e-9)


def test_colmap_binary_and_layouts(tmp_path):
    import pycolmap

    scene = _known_scene(tmp_path / "scene")
    text_dir = tmp_path / "text"
    write_colmap_text(scene, text_dir)
    rec = pycolmap.Reconstruction(str(text_dir))
    # Binary model directly in sparse/ (no 0/), images in scene/images.
    (tmp_path / "scene" / "sparse").mkdir()
    rec.write_binary(str(tmp_path / "scene" / "sparse"))
    assert (tmp_path / "scene" / "sparse" / "cameras.bin").is_file()
    back = load_scene(tmp_path / "scene")
    _assert_same_cameras(scene, back)
    np.testing.assert_allclose(back.points, scene.points, atol=1e-12)


def test_colmap_unsupported_model(tmp_path):
    from recon.errors import ReconError

    _save_png(tmp_path / "images" / "a.png", 8, 10)
    m = tmp_path / "sparse" / "0"
    m.mkdir(parents=True)
    (m / "cameras.txt").write_text("1 FOV 10 8 5 5 5 4 0.1\n")
    (m / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    (m / "points3D.txt").write_text("")
    with pytest.raises(ReconError, match="FOV is not supported"):
        load_scene(tmp_path)


# ----------------------------------------------------------------------------------------------
# Plain images, format detection


def test_plain_image_folder(tmp_path):
    for i in range(10):
        _save_png(tmp_path / "images" / f"p{i:02d}.png", 12, 16, seed=i)
    (tmp_path / "walk.mp4").write_bytes(b"\x00")
    assert detect_format(tmp_path) == "images"
    scene = load_scene(tmp_path)
    assert scene.format == "images" and len(scene) == 10 and not scene.has_poses
    assert [f.split for f in scene.frames].count("test") == 2  # indices 0 and 8
    assert scene.image(3, 2.0).shape == (6, 8, 3)
    from recon.errors import ReconError

    with pytest.raises(ReconError, match="no camera pose"):
        scene.camera(0)


def test_detect_format_preference(tmp_path):
    assert detect_format(tmp_path / "missing") is None
    assert detect_format(tmp_path) is None
    _save_png(tmp_path / "a.png", 4, 4)
    assert detect_format(tmp_path) == "images"
    np.save(tmp_path / "poses_bounds.npy", np.zeros((1, 17)))
    assert detect_format(tmp_path) == "llff"
    (tmp_path / "transforms_train.json").write_text('{"frames": []}')
    assert detect_format(tmp_path) == "blender"
    (tmp_path / "transforms.json").write_text('{"frames": []}')
    assert detect_format(tmp_path) == "nerfstudio"
    assert detect_format(tmp_path / "transforms_train.json") == "blender"
    assert detect_format(tmp_path / "poses_bounds.npy") == "llff"
