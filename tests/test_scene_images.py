"""Lazy images: no decoding at load, sizes that match the cameras, area filter, EXIF, 16-bit, cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import recon.scene.images as images_mod
from recon.errors import ReconError
from recon.scene.cameras import Camera
from recon.scene.images import ImageCache, downscaled_size
from recon.scene.readers import load_scene
from recon.scene.scene import Frame, Scene


def _counting(monkeypatch):
    counts = {"decode": 0, "header": 0}
    real_decode, real_size = images_mod.decode, images_mod.image_size

    def decode(path):
        counts["decode"] += 1
        return real_decode(path)

    def image_size(path):
        counts["header"] += 1
        return real_size(path)

    monkeypatch.setattr(images_mod, "decode", decode)
    monkeypatch.setattr(images_mod, "image_size", image_size)
    import recon.scene.readers as readers_mod

    monkeypatch.setattr(readers_mod, "image_size", image_size)
    return counts


def _write_many(root: Path, n: int, with_size: bool) -> None:
    sources = []
    for k in range(3):
        p = root / "images" / f"src{k}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24, 32, 3), 40 * k, np.uint8)).save(p)
        sources.append(f"images/src{k}.png")
    meta = {"fl_x": 30.0, "fl_y": 30.0, "cx": 16.0, "cy": 12.0, "camera_model": "PINHOLE"}
    if with_size:
        meta.update(w=32, h=24)
    c2w = np.eye(4)
    meta["frames"] = []
    for i in range(n):
        c2w[0, 3] = i * 0.01
        meta["frames"].append({"file_path": sources[i % 3], "transform_matrix": c2w.tolist(), "time": i / n})
    (root / "transforms.json").write_text(json.dumps(meta))


def test_2000_frames_open_fast_without_decoding(tmp_path, monkeypatch):
    _write_many(tmp_path, 2000, with_size=True)
    counts = _counting(monkeypatch)
    t0 = time.perf_counter()
    scene = load_scene(tmp_path)
    elapsed = time.perf_counter() - t0
    assert len(scene) == 2000
    assert elapsed < 5.0, f"opening 2,000 frames took {elapsed:.2f} s"
    assert counts == {"decode": 0, "header": 0}
    assert len(scene.split("test")) == 250
    # Pixels on demand, then from the cache.
    img = scene.image(4)
    assert img.shape == (24, 32, 3) and np.allclose(img, 40 / 255)
    assert counts["decode"] == 1
    scene.image(4)
    assert counts["decode"] == 1
    img[:] = 0  # callers get copies; the cache is unaffected
    assert np.allclose(scene.image(4), 40 / 255)


def test_missing_size_reads_one_header(tmp_path, monkeypatch):
    _write_many(tmp_path, 200, with_size=False)
    counts = _counting(monkeypatch)
    scene = load_scene(tmp_path)
    assert counts == {"decode": 0, "header": 1}
    assert (scene.frames[0].camera.width, scene.frames[0].camera.height) == (32, 24)


def _one_frame_scene(tmp_path: Path, arr: np.ndarray, name: str = "a.png", **save) -> Scene:
    p = tmp_path / name
    Image.fromarray(arr).save(p, **save)
    h, w = arr.shape[:2]
    cam = Camera(K=[[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], width=w, height=h)
    return Scene(frames=[Frame(image_path=p, camera=cam)], root=tmp_path, format="nerfstudio")


@pytest.mark.parametrize("d", [1.0, 2.0, 3.0, 1.5, 2.5, 4.0, 7.0, 0.5])
def test_image_size_matches_camera(tmp_path, d):
    arr = np.random.default_rng(0).integers(0, 256, (75, 101, 3), dtype=np.uint8)
    scene = _one_frame_scene(tmp_path, arr)
    img, cam = scene.image(0, d), scene.camera(0, d)
    assert img.shape == (cam.height, cam.width, 3)
    assert (cam.width, cam.height) == (max(1, round(101 / d)), max(1, round(75 / d)))
    assert (cam.width, cam.height) == downscaled_size(101, 75, d)
    # Intrinsics follow the exact size ratio; the pose is unchanged.
    assert cam.fx == pytest.approx(101 * cam.width / 101) and cam.cy == pytest.approx(75 / 2 * cam.height / 75)
    np.testing.assert_array_equal(cam.c2w, scene.frames[0].camera.c2w)


def test_area_filter(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    scene = _one_frame_scene(tmp_path, arr)
    small = scene.image(0, 4.0)
    expect = (arr.astype(np.float64) / 255).reshape(2, 4, 3, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(small, expect, atol=1e-6)


def test_rgba_alpha_and_background(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255
    arr[:, :2, 3] = 255  # left half opaque red, right half transparent
    scene = _one_frame_scene(tmp_path, arr)
    # No background: RGB as stored, even under transparent pixels.
    np.testing.assert_array_equal(scene.image(0), np.broadcast_to([1.0, 0, 0], (4, 4, 3)))
    scene.background = (0.0, 0.0, 1.0)
    img = scene.image(0)
    np.testing.assert_allclose(img[:, :2], np.broadcast_to([1.0, 0, 0], (4, 2, 3)), atol=1e-7)
    np.testing.assert_allclose(img[:, 2:], np.broadcast_to([0, 0, 1.0], (4, 2, 3)), atol=1e-7)
    a = scene.alpha(0, 2.0)
    np.testing.assert_allclose(a, [[1, 0], [1, 0]])


def test_exif_orientation(tmp_path):
    # Stored 6 x 4 (w x h) with orientation 6 (rotate 90 CW to display): displayed 4 x 6.
    stored = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rot.png"
    Image.fromarray(stored).save(p, exif=exif.tobytes())
    from PIL import ImageOps

    expect = np.asarray(ImageOps.exif_transpose(Image.open(p))).astype(np.float32) / 255
    assert expect.shape == (6, 4, 3)
    assert images_mod.image_size(p) == (4, 6)
    got = images_mod.decode(p)
    np.testing.assert_allclose(got, expect, atol=1e-7)
    # A scene whose camera agrees with the displayed size gets the rotated pixels ...
    cam = Camera(K=np.eye(3), width=4, height=6)
    scene = Scene(frames=[Frame(image_path=p, camera=cam)], root=tmp_path, format="nerfstudio")
    np.testing.assert_allclose(scene.image(0), expect, atol=1e-7)
    # ... one whose camera was calibrated on the stored pixels (COLMAP ignores EXIF) gets those.
    cam2 = Camera(K=np.eye(3), width=6, height=4)
    scene2 = Scene(frames=[Frame(image_path=p, camera=cam2)], root=tmp_path, format="colmap")
    np.testing.assert_allclose(scene2.image(0), stored / 255, atol=1e-7)
    # Any other size is an error naming the file.
    cam3 = Camera(K=np.eye(3), width=5, height=5)
    scene3 = Scene(frames=[Frame(image_path=p, camera=cam3)], root=tmp_path, format="colmap")
    with pytest.raises(ReconError, match="rot.png"):
        scene3.image(0)


def test_exif_orientation_jpeg(tmp_path):
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :8] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CCW to display: the left half goes to the bottom
    p = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(p, exif=exif.tobytes(), quality=100)
    img = images_mod.decode(p)
    assert img.shape == (16, 8, 3)
    assert img[12, 4].min() > 0.9 and img[3, 4].max() < 0.1


def test_16bit_png_and_tiff(tmp_path):
    import cv2

    rng = np.random.default_rng(3)
    rgb16 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    for name in ("c16.png", "c16.tif"):
        cv2.imwrite(str(tmp_path / name), rgb16[..., ::-1])  # OpenCV writes BGR
        got = images_mod.decode(tmp_path / name)
        np.testing.assert_array_equal(got, rgb16.astype(np.float32) / 65535)
    grey16 = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    got = images_mod.decode(tmp_path / "g16.png")
    np.testing.assert_array_equal(got[..., 0], grey16.astype(np.float32) / 65535)
    rgba16 = rng.integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16a.png"), rgba16[..., [2, 1, 0, 3]])
    cam = Camera(K=np.eye(3), width=7, height=5)
    scene = Scene(frames=[Frame(image_path=tmp_path / "c16a.png", camera=cam)], root=tmp_path, format="nerfstudio")
    np.testing.assert_array_equal(scene.image(0), rgba16[..., :3].astype(np.float32) / 65535)
    np.testing.assert_array_equal(scene.alpha(0), rgba16[..., 3].astype(np.float32) / 65535)


def test_mask_and_depth(tmp_path):
    import cv2

    arr = np.zeros((8, 8, 3), np.uint8)
    scene = _one_frame_scene(tmp_path, arr)
    m = np.zeros((8, 8), np.uint8)
    m[:, :4] = 1  # 0/1 masks count too: any nonzero value keeps the pixel
    Image.fromarray(m).save(tmp_path / "m.png")
    d_mm = np.full((8, 8), 1500, np.uint16)
    d_mm[:4] = 2500
    cv2.imwrite(str(tmp_path / "d.png"), d_mm)
    scene.frames[0].mask_path = tmp_path / "m.png"
    scene.frames[0].depth_path = tmp_path / "d.png"
    mask = scene.mask(0)
    assert mask.dtype == np.bool_ and mask[:, :4].all() and not mask[:, 4:].any()
    assert scene.mask(0, 2.0).shape == (4, 4)
    depth = scene.depth(0)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth[:4], 2.5)
    np.testing.assert_allclose(depth[4:], 1.5)
    np.testing.assert_allclose(scene.depth(0, 4.0), [[2.5, 2.5], [1.5, 1.5]])
    np.save(tmp_path / "d.npy", np.arange(64, dtype=np.float32).reshape(8, 8))
    scene.frames[0].depth_path = tmp_path / "d.npy"
    np.testing.assert_array_equal(scene.depth(0), np.arange(64, dtype=np.float32).reshape(8, 8))


def test_cache_is_bounded_lru():
    cache = ImageCache(max_bytes=3 * 400)
    arrays = {k: np.full(100, k, np.float32) for k in range(5)}  # 400 bytes each
    for k in range(3):
        cache.get(k, lambda k=k: arrays[k])
    assert len(cache) == 3 and cache.nbytes == 1200
    cache.get(0, lambda: pytest.fail("0 should be cached"))  # touch 0: 1 is now oldest
    cache.get(3, lambda: arrays[3])
    assert cache.nbytes <= 1200
    found, _ = cache.peek(1)
    assert not found
    assert cache.peek(0)[0] and cache.peek(3)[0]
    cache.get("big", lambda: np.zeros(1000, np.float32))  # larger than the budget: not kept
    assert not cache.peek("big")[0]
    cache.set_max_bytes(400)
    assert len(cache) == 1 and cache.nbytes == 400


def test_scene_cache_budget(tmp_path):
    _write_many(tmp_path, 30, with_size=True)
    scene = load_scene(tmp_path, cache_bytes=2 * 24 * 32 * 3 * 4)
    for i in range(3):
        scene.image(i)
    assert scene.cache.nbytes <= 2 * 24 * 32 * 3 * 4 and len(scene.cache) == 2
    scene.set_cache_bytes(0)
    scene.image(0)
    assert len(scene.cache) == 0


def test_unreadable_image_is_a_recon_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    cam = Camera(K=np.eye(3), width=4, height=4)
    scene = Scene(frames=[Frame(image_path=tmp_path / "bad.png", camera=cam)], root=tmp_path, format="nerfstudio")
    with pytest.raises(ReconError, match="bad.png"):
        scene.image(0)
    # Truncated data (a valid header, pixels cut short).
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    cam = Camera(K=np.eye(3), width=64, height=64)
    scene = Scene(frames=[Frame(image_path=tmp_path / "t.jpg", camera=cam)], root=tmp_path, format="nerfstudio")
    with pytest.raises(ReconError, match="t.jpg"):
        scene.image(0)
