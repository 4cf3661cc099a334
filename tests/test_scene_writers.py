"""Writers: a scene written as transforms.json or COLMAP text and read back is the same scene."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.scene.cameras import Camera
from recon.scene.conventions import qvec_to_rotmat
from recon.scene.readers import load_scene
from recon.scene.scene import Frame, Scene
from recon.scene.writers import write_colmap_text, write_transforms_json

LEGO = Path(__file__).resolve().parents[2] / "shared" / "data" / "nerf_synthetic" / "lego"


def _png(path: Path, h: int = 12, w: int = 16, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _scene(root: Path, n: int = 10, same_intrinsics: bool = False) -> Scene:
    rng = np.random.default_rng(7)
    models = [("PINHOLE", []), ("OPENCV", [0.01, -0.02, 0.001, 0.002]), ("OPENCV_FISHEYE", [0.1, 0.01, -0.001, 0.0001]),
              ("FULL_OPENCV", [0.1, 0.2, 0.01, 0.02, 0.3, 0.4, 0.5, 0.6]), ("SIMPLE_RADIAL", [0.05]), ("RADIAL", [0.05, 0.01])]
    frames = []
    for i in range(n):
        img = root / "images" / f"f{i:03d}.png"
        _png(img, seed=i)
        model, dist = models[0] if same_intrinsics else models[i % len(models)]
        fy = 40.0 if (same_intrinsics or model in ("SIMPLE_RADIAL", "RADIAL")) else 41.0 + i
        c2w = np.eye(4)
        c2w[:3, :3] = qvec_to_rotmat(rng.normal(size=4))
        c2w[:3, 3] = rng.normal(size=3) * 5
        cam = Camera(K=[[40.0, 0, 8.0 + (0 if same_intrinsics else 0.1 * i)], [0, fy, 6.0], [0, 0, 1]], width=16, height=12,
                     c2w=c2w, model=model, dist=dist)
        mask = depth = None
        if i % 2 == 0:
            mask = root / "masks" / f"f{i:03d}.png"
            mask.parent.mkdir(exist_ok=True)
            Image.fromarray(((np.arange(12 * 16).reshape(12, 16) % 3) > 0).astype(np.uint8) * 255).save(mask)
        if i % 3 == 0:
            depth = root / "depths" / f"f{i:03d}.npy"
            depth.parent.mkdir(exist_ok=True)
            np.save(depth, rng.uniform(1, 5, (12, 16)).astype(np.float32))
        split = ["train", "val", "test"][i % 3]
        frames.append(Frame(image_path=img, camera=cam, split=split, mask_path=mask, depth_path=depth, time=i / (n - 1)))
    applied = np.eye(4)
    applied[:3, :3] = qvec_to_rotmat([1, 0.2, 0.1, 0])
    applied[:3, 3] = [1, 2, 3]
    return Scene(frames=frames, root=root, format="nerfstudio", points=rng.normal(size=(30, 3)),
                 point_colors=rng.integers(0, 256, (30, 3), dtype=np.uint8), applied_transform=applied)


def _assert_identical(a: Scene, b: Scene, tol: float = 1e-9, extras: bool = True) -> None:
    assert len(a) == len(b)
    for fa, fb in zip(a.frames, b.frames):
        assert fb.image_path.resolve() == fa.image_path.resolve()
        ca, cb = fa.camera, fb.camera
        assert (cb.model, cb.width, cb.height) == (ca.model, ca.width, ca.height)
        np.testing.assert_allclose(cb.c2w, ca.c2w, rtol=0, atol=tol)
        np.testing.assert_allclose(cb.K, ca.K, rtol=0, atol=tol)
        np.testing.assert_allclose(cb.dist, ca.dist, rtol=0, atol=tol)
        if extras:
            assert fb.split == fa.split
            assert fb.time == fa.time
            assert (fb.mask_path and fb.mask_path.resolve()) == (fa.mask_path and fa.mask_path.resolve())
            assert (fb.depth_path and fb.depth_path.resolve()) == (fa.depth_path and fa.depth_path.resolve())
    if a.points is None:
        assert b.points is None
    else:
        np.testing.assert_allclose(b.points, a.points, rtol=0, atol=tol)
        np.testing.assert_array_equal(b.point_colors, a.point_colors)


def test_transforms_json_round_trip_per_frame_intrinsics(tmp_path):
    scene = _scene(tmp_path)
    out = write_transforms_json(scene, tmp_path)
    assert out == tmp_path / "transforms.json"
    meta = json.loads(out.read_text())
    assert "fl_x" not in meta and "fl_x" in meta["frames"][0]  # cameras differ: per frame
    assert meta["frames"][0]["file_path"] == "images/f000.png"
    assert set(meta) >= {"train_filenames", "val_filenames", "test_filenames", "applied_transform", "ply_file_path"}
    back = load_scene(tmp_path)
    assert back.format == "nerfstudio"
    _assert_identical(scene, back)
    np.testing.assert_allclose(back.applied_transform, scene.applied_transform, atol=0)
    # Poses as float64 text are exact, not just close.
    assert all(np.array_equal(a.camera.c2w, b.camera.c2w) for a, b in zip(scene.frames, back.frames))
    # No temporary files are left behind.
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_transforms_json_round_trip_shared_intrinsics_elsewhere(tmp_path):
    scene = _scene(tmp_path / "data", same_intrinsics=True)
    scene.points = None
    scene.point_colors = None
    scene.applied_transform = np.eye(4)
    out = write_transforms_json(scene, tmp_path / "out" / "transforms.json")
    meta = json.loads(out.read_text())
    assert meta["fl_x"] == 40.0 and "fl_x" not in meta["frames"][0]
    assert meta["frames"][0]["file_path"] == "../data/images/f000.png"
    assert "applied_transform" not in meta and "ply_file_path" not in meta
    back = load_scene(tmp_path / "out")
    _assert_identical(scene, back)
    # Written a second time over itself: same bytes (stable output).
    before = out.read_bytes()
    write_transforms_json(back, out)
    assert out.read_bytes() == before


def test_colmap_text_round_trip(tmp_path):
    scene = _scene(tmp_path)
    write_colmap_text(scene, tmp_path / "sparse" / "0")
    for n in ("cameras", "images", "points3D"):
        assert (tmp_path / "sparse" / "0" / f"{n}.txt").is_file()
    back = load_scene(tmp_path, format="colmap")
    assert back.format == "colmap"
    # COLMAP holds no splits, times, masks or depths; the reader's default splits apply.
    _assert_identical(scene, back, extras=False)
    assert [f.split for f in back.frames] == ["test" if i % 8 == 0 else "train" for i in range(len(back))]
    # COLMAP round trip: poses through quaternions, to 1e-9.
    err = max(np.abs(a.camera.c2w - b.camera.c2w).max() for a, b in zip(scene.frames, back.frames))
    assert err < 1e-12


def test_lego_to_transforms_json_and_back(tmp_path):
    if not LEGO.is_dir():
        pytest.skip(f"shared test data not found at {LEGO}")
    lego = load_scene(LEGO)
    out = write_transforms_json(lego, tmp_path / "transforms.json")
    back = load_scene(out, background=(1.0, 1.0, 1.0))
    _assert_identical(lego, back)
    i = lego.indices("test")[3]
    np.testing.assert_array_equal(back.image(i, 4.0), lego.image(i, 4.0))


def test_writer_refuses_posless_scene(tmp_path):
    from recon.errors import ReconError

    _png(tmp_path / "a.png")
    scene = load_scene(tmp_path)
    with pytest.raises(ReconError, match="no camera pose"):
        write_transforms_json(scene, tmp_path / "out")
    with pytest.raises(ReconError, match="no camera pose"):
        write_colmap_text(scene, tmp_path / "sparse" / "0")
