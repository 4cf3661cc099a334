"""Capture ingest: EXIF orientation and focal priors, bit depths, bad files, videos (no SfM here)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.capture.exif import read_exif
from recon.capture.ingest import IngestOptions, ingest, list_media
from recon.capture.video import extract_frames, laplacian_variance
from recon.errors import ReconError
from recon.sfm.colmap import camera_groups
from recon.sfm.options import SfmOptions


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random colour texture (uint8 [h, w, 3])."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _jpeg(path: Path, arr: np.ndarray, orientation: int = 1, f35: float | None = None) -> Path:
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "ACME"
    if f35 is not None:
        ifd = ex.get_ifd(0x8769)
        ifd[0xA405] = f35
        ifd[0x920A] = 4.2
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95, exif=ex)
    return path


def _sha(p: Path) -> str:
    return hashlib.sha1(p.read_bytes()).hexdigest()


def test_exif_focal_prior_35mm_equivalent(tmp_path):
    p = _jpeg(tmp_path / "a.jpg", _texture(60, 80), f35=35)
    with Image.open(p) as im:
        info = read_exif(im)
    assert info.focal_35mm == 35 and info.camera_key.startswith("ACME")
    # 35 mm equivalence is by the diagonal: f = 35 * diag_px / 43.27 mm.
    f = info.focal_prior_px(2832, 2128)
    assert f == pytest.approx(35 * math.hypot(2832, 2128) / math.hypot(36, 24))
    assert abs(f - 2905.9) / 2905.9 < 0.02  # sceaux_castle's known focal length (same EXIF)
    # A rotated image has the same focal length in pixels.
    assert info.focal_prior_px(2128, 2832) == pytest.approx(f)
    assert info.focal_prior_px(80, 60) is not None
    info.focal_35mm = 0.5  # absurd: a field of view over 170 degrees is discarded
    assert info.focal_prior_px(80, 60) is None


def test_orientation_copies_and_originals_untouched(tmp_path):
    scene = tmp_path / "scene"
    arr = _texture(40, 64, 1)
    a = _jpeg(scene / "a.jpg", arr, orientation=6, f35=28)  # stored landscape, displayed portrait
    b = _jpeg(scene / "b.jpg", _texture(40, 64, 2))
    before = {p: _sha(p) for p in (a, b)}
    res = ingest(scene, tmp_path / "work")
    assert [im.name for im in res.images] == ["a.jpg", "b.jpg"]
    ia, ib = res.images
    assert (ia.width, ia.height) == (40, 64) and not ia.linked  # rotated copy
    assert ib.linked and (res.image_dir / "b.jpg").is_symlink()  # upright JPEG: used as is
    with Image.open(res.image_dir / "a.jpg") as im:
        assert im.size == (40, 64)
        rot = np.asarray(im.convert("RGB"), dtype=np.float32)
        assert int(im.getexif().get(0x0112, 1)) == 1
    # orientation 6 = rotate 90 degrees clockwise for display
    # (twice JPEG-compressed, so compare against the wrong rotation rather than exactly)
    err = np.abs(rot - np.rot90(arr, -1)).mean()
    assert err < 8.0 and np.abs(rot - np.rot90(arr, 1)).mean() > 3 * err
    assert ia.focal_px == pytest.approx(28 * math.hypot(40, 64) / math.hypot(36, 24))
    assert ib.focal_px is None
    assert {p: _sha(p) for p in (a, b)} == before
    # Re-ingest reuses the manifest (same key, nothing rewritten).
    mtime = (res.image_dir / "a.jpg").stat().st_mtime_ns
    res2 = ingest(scene, tmp_path / "work")
    assert res2.key == res.key and (res2.image_dir / "a.jpg").stat().st_mtime_ns == mtime


def test_16bit_png_and_tiff_become_8bit(tmp_path):
    cv2 = pytest.importorskip("cv2")
    scene = tmp_path / "s"
    scene.mkdir()
    g16 = np.linspace(0, 65535, 32 * 48).reshape(32, 48).astype(np.uint16)
    rgb16 = np.stack([g16, g16[::-1], np.full_like(g16, 30000)], -1)
    cv2.imwrite(str(scene / "grey16.png"), g16)
    cv2.imwrite(str(scene / "rgb16.tif"), rgb16[..., ::-1])  # OpenCV writes BGR
    Image.fromarray(_texture(32, 48, 3)).save(scene / "rgb8.tif")
    res = ingest(scene, tmp_path / "w")
    assert sorted(im.name for im in res.images) == ["grey16.png", "rgb16.png", "rgb8.png"]
    assert not any(im.linked for im in res.images)
    for im in res.images:
        with Image.open(res.image_dir / im.name) as pil:
            assert pil.mode == "RGB" and pil.size == (48, 32)
            a = np.asarray(pil).astype(np.int32)
        if im.name == "grey16.png":
            assert np.abs(a[..., 0] - np.round(g16 / 257.0)).max() <= 1
        if im.name == "rgb16.png":
            assert np.abs(a - np.round(rgb16 / 257.0)).max() <= 1


def test_bad_files_skipped_ignored_and_errors(tmp_path):
    scene = tmp_path / "mix"
    _jpeg(scene / "good1.jpg", _texture(48, 64, 1))
    _jpeg(scene / "good2.jpg", _texture(48, 64, 2))
    data = (scene / "good1.jpg").read_bytes()
    (scene / "broken.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    (scene / "garbage.png").write_bytes(b"not an image at all" * 10)
    (scene / "notes.txt").write_text("hello")
    (scene / ".DS_Store").write_bytes(b"x")
    msgs: list[str] = []
    res = ingest(scene, tmp_path / "w", log=msgs.append)
    assert [im.name for im in res.images] == ["good1.jpg", "good2.jpg"]
    assert sorted(Path(p).name for p, _ in res.skipped) == ["broken.jpg", "garbage.png"]
    assert [Path(p).name for p in res.ignored] == ["notes.txt"]
    assert any("warning: skipping" in m and "broken.jpg" in m for m in msgs)
    assert any("note: ignoring 1 file" in m for m in msgs)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReconError, match="empty folder"):
        ingest(empty, tmp_path / "w2")
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "a.txt").write_text("x")
    (only_text / "b.pdf").write_bytes(b"%PDF")
    with pytest.raises(ReconError, match="no images or videos.*ignored 2 other file"):
        ingest(only_text, tmp_path / "w3")
    one = tmp_path / "one"
    _jpeg(one / "x.jpg", _texture(48, 64))
    with pytest.raises(ReconError, match="only 1 usable image"):
        ingest(one, tmp_path / "w4")
    same = tmp_path / "same"
    for i in range(4):
        _jpeg(same / f"c{i}.jpg", _texture(48, 64, 7))
    with pytest.raises(ReconError, match="all 4 images are identical"):
        ingest(same, tmp_path / "w5")
    bad_only = tmp_path / "badonly"
    bad_only.mkdir()
    (bad_only / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ReconError, match="no usable images"):
        ingest(bad_only, tmp_path / "w6")


def test_listing_skips_outputs_and_uses_images_subfolder(tmp_path):
    scene = tmp_path / "scene"
    _jpeg(scene / "images" / "a.jpg", _texture(32, 32))
    out = scene / "recon"
    _jpeg(out / "images" / "z.jpg", _texture(32, 32))
    imgs, vids, other = list_media(scene, exclude=(out,))
    assert [p.name for p in imgs] == ["a.jpg"] and not vids
    imgs, _, _ = list_media(scene, exclude=(out,), recursive=True)
    assert [p.name for p in imgs] == ["a.jpg"]


def test_mixed_sizes_get_one_camera_per_size(tmp_path):
    scene = tmp_path / "s"
    for i in range(3):
        _jpeg(scene / f"l{i}.jpg", _texture(48, 64, i))
    for i in range(2):
        _jpeg(scene / f"p{i}.jpg", _texture(64, 40, 10 + i), f35=26)
    res = ingest(scene, tmp_path / "w")
    groups = camera_groups(res.images, SfmOptions())
    assert sorted((g.width, g.height, len(g.names), g.has_prior) for g in groups) == [(40, 64, 2, True), (64, 48, 3, False)]
    g_prior = next(g for g in groups if g.has_prior)
    assert g_prior.params[0] == pytest.approx(26 * math.hypot(40, 64) / math.hypot(36, 24))
    assert g_prior.model == "SIMPLE_RADIAL" and g_prior.params[1:] == [20.0, 32.0, 0.0]
    with pytest.raises(ReconError, match="one size"):
        camera_groups(res.images, SfmOptions(camera_mode="single"))
    assert len(camera_groups(res.images, SfmOptions(camera_mode="per_image", camera_model="OPENCV"))) == 5


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    av = pytest.importorskip("av")
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "12"}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def _blur(a: np.ndarray, k: int = 7) -> np.ndarray:
    from PIL import ImageFilter

    return np.asarray(Image.fromarray(a).filter(ImageFilter.BoxBlur(k)))


def test_video_sharpest_frame_per_window_and_duplicates(tmp_path):
    big = np.asarray(Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 400, 3), dtype=np.uint8)).resize((800, 240), Image.NEAREST))
    frames, sharp = [], []
    for i in range(40):  # pan right; in every window of 4 frames only frame 4k+2 is sharp
        crop = big[:, 8 * i : 8 * i + 160]
        is_sharp = i % 4 == 2
        frames.append(crop if is_sharp else _blur(crop))
        sharp.append(is_sharp)
    frames += [frames[-2]] * 20  # the camera stops: 20 identical frames
    vid = tmp_path / "pan.mp4"
    _write_video(vid, frames)
    out = extract_frames(vid, tmp_path / "f", "pan", frames=15)
    idx = [f.index for f in out]
    assert all(sharp[i] for i in idx if i < 40), idx  # the sharp frame of each panning window
    assert len([i for i in idx if i < 40]) == 10
    assert len([i for i in idx if i >= 40]) <= 1  # the static tail adds at most one frame
    assert laplacian_variance(frames[2].mean(2)) > 3 * laplacian_variance(frames[1].mean(2))
    # Through ingest: frames named after the video, one camera for the video.
    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "pan.mp4").write_bytes(vid.read_bytes())
    res = ingest(scene, tmp_path / "w", IngestOptions(video_fps=2.5))
    assert res.from_video and len(res.images) >= 8
    assert all(im.name.startswith("pan_") and (im.width, im.height) == (160, 240) for im in res.images)
    assert len(camera_groups(res.images, SfmOptions())) == 1


def test_undecodable_video(tmp_path):
    pytest.importorskip("av")
    scene = tmp_path / "v"
    scene.mkdir()
    (scene / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(ReconError, match="no usable images.*broken.mp4"):
        ingest(scene, tmp_path / "w")


def test_several_videos_one_camera_each(tmp_path):
    scene = tmp_path / "two"
    scene.mkdir()
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, (200, 600, 3), dtype=np.uint8)
    _write_video(scene / "a.mp4", [big[:96, 4 * i : 4 * i + 128] for i in range(30)])
    _write_video(scene / "b.mov", [big[50:178, 5 * i : 5 * i + 96] for i in range(60)])
    res = ingest(scene, tmp_path / "w", IngestOptions(video_frames=18, dup_threshold=0))
    by_video = {}
    for im in res.images:
        by_video.setdefault(Path(im.source).name, []).append(im)
    assert sorted(by_video) == ["a.mp4", "b.mov"]
    # 18 frames split by duration (3 s and 6 s at 10 fps): 6 and 12
    assert len(by_video["a.mp4"]) == 6 and len(by_video["b.mov"]) == 12
    assert {(im.width, im.height) for im in by_video["b.mov"]} == {(96, 128)}
    assert len(camera_groups(res.images, SfmOptions())) == 2
