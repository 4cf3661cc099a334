"""Scene-boundary validation: every bad camera, pose or path stops `load_scene` with one line
naming the file, the frame and the field, before any work; bad capture inputs are skipped."""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.errors import ReconError
from recon.scene.conventions import GL_CV_FLIP, qvec_to_rotmat
from recon.scene.readers import detect_format, load_scene, read_colmap_cameras, read_colmap_images

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _png(path: Path, w: int = 8, h: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ----------------------------------------------------------------------------------------------
# nerfstudio transforms.json / Blender


def _c2w(seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    m = np.eye(4)
    m[:3, :3] = qvec_to_rotmat(rng.normal(size=4))
    m[:3, 3] = rng.normal(size=3)
    return m.tolist()


def _nerfstudio(root: Path, top: dict | None = None, frame0: dict | None = None, n: int = 3) -> Path:
    frames = []
    for i in range(n):
        _png(root / "images" / f"f{i}.png", seed=i)
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": _c2w(i)})
    if frame0:
        frames[0].update(frame0)
    meta = {"fl_x": 7.0, "fl_y": 7.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "frames": frames}
    meta.update(top or {})
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


BAD_NERFSTUDIO = [
    # (top-level changes, frame-0 changes, fields the message must name)
    ({"fl_x": 0.0}, None, ["transforms.json", "frame 0", "fx", "fl_x"]),
    ({"fl_x": -5.0}, None, ["transforms.json", "fx = -5", "positive"]),
    ({"fl_y": float("nan")}, None, ["transforms.json", "fy = nan"]),
    ({"fl_x": float("inf")}, None, ["transforms.json", "fx = inf"]),
    ({"fl_x": None, "fl_y": None, "camera_angle_x": 0.0}, None, ["camera_angle_x = 0", "(0, pi)"]),
    ({"fl_x": None, "fl_y": None, "camera_angle_x": 3.5}, None, ["camera_angle_x = 3.5", "(0, pi)"]),
    ({"fl_x": None, "fl_y": None, "camera_angle_x": -0.7}, None, ["camera_angle_x = -0.7"]),
    ({"camera_angle_y": math.pi}, None, ["camera_angle_y"]),
    ({"w": 0}, None, ["image size 0x6"]),
    ({"h": -4}, None, ["image size 8x-4"]),
    ({"cx": float("nan")}, None, ["principal point cx"]),
    ({"k1": float("nan")}, None, ["distortion"]),
    (None, {"transform_matrix": [[float("nan")] * 4] * 4}, ["frame 0", "transform_matrix", "non-finite"]),
    (None, {"transform_matrix": [[0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 0, 3], [0, 0, 0, 1]]}, ["frame 0", "zero or singular"]),
    (None, {"transform_matrix": (np.diag([3.0, 3.0, 3.0, 1.0])).tolist()}, ["frame 0", "not a rotation"]),
    (None, {"file_path": "../outside.png"}, ["transforms.json frame 0 (../outside.png)", "image path", "outside the scene folder"]),
    (None, {"file_path": "images/../../outside.png"}, ["frame 0 (images/../../outside.png)", "outside the scene folder"]),
    (None, {"mask_path": "../m.png"}, ["frame 0", "mask path", "m.png points outside the scene folder"]),
    (None, {"time": float("nan")}, ["frame 0", "time"]),
]


@pytest.mark.parametrize("top,frame0,needles", BAD_NERFSTUDIO)
def test_nerfstudio_bad_values(tmp_path, top, frame0, needles):
    root = tmp_path / "scene"
    _png(tmp_path / "outside.png")  # exists, so only the containment check can refuse it
    _png(tmp_path / "m.png")
    if top:
        top = {k: v for k, v in top.items()}
    _nerfstudio(root, top, frame0)
    if top and top.get("fl_x", 1) is None:  # drop focal keys so the angle is used
        meta = json.loads((root / "transforms.json").read_text())
        for k in [k for k, v in meta.items() if v is None]:
            del meta[k]
        (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ReconError) as e:
        load_scene(root)
    msg = _one_line(e)
    for n in needles:
        assert n in msg, (n, msg)


def test_nerfstudio_valid_scene_still_loads(tmp_path):
    scene = load_scene(_nerfstudio(tmp_path / "scene"))
    assert len(scene) == 3 and scene.frames[0].camera.fx == 7.0


def test_absolute_path_outside_is_refused(tmp_path):
    outside = _png(tmp_path / "elsewhere" / "x.png")
    root = _nerfstudio(tmp_path / "scene", frame0={"file_path": str(outside)})
    with pytest.raises(ReconError, match=r"transforms\.json frame 0 \(.*x\.png\): image path .*x\.png points outside the scene folder"):
        load_scene(root)


def test_index_written_apart_from_its_images_still_loads(tmp_path):
    """Every frame outside (an index that refers back to a read-only dataset) is one scene, not an escape."""
    _nerfstudio(tmp_path / "data")
    meta = json.loads((tmp_path / "data" / "transforms.json").read_text())
    for f in meta["frames"]:
        f["file_path"] = "../data/" + f["file_path"]
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "transforms.json").write_text(json.dumps(meta))
    assert len(load_scene(tmp_path / "index")) == 3
    meta["frames"][1]["file_path"] = "../index/transforms.json"  # now one frame is inside: a mix
    (tmp_path / "index" / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ReconError, match=r"frame 0 \(\.\./data/images/f0\.png\): image path .* points outside"):
        load_scene(tmp_path / "index")


def test_symlink_inside_the_scene_is_accepted(tmp_path):
    """Containment is lexical: a link inside the folder may point anywhere (ingest relies on it)."""
    real = _png(tmp_path / "photos" / "p.png")
    root = _nerfstudio(tmp_path / "scene")
    (root / "images" / "f0.png").unlink()
    os.symlink(real, root / "images" / "f0.png")
    assert load_scene(root).frames[0].image_path == root / "images" / "f0.png"


def test_blender_camera_angle_out_of_range(tmp_path):
    _png(tmp_path / "train" / "r_0.png")
    meta = {"camera_angle_x": 4.0, "frames": [{"file_path": "./train/r_0", "transform_matrix": _c2w(0)}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(ReconError) as e:
        load_scene(tmp_path)
    msg = _one_line(e)
    assert "transforms_train.json frame 0" in msg and "camera_angle_x = 4" in msg and "(0, pi)" in msg


# ----------------------------------------------------------------------------------------------
# LLFF


def _llff(root: Path, n: int = 3) -> np.ndarray:
    rows = []
    for i in range(n):
        _png(root / "images" / f"i{i}.png", seed=i)
        c2w = np.asarray(_c2w(i))
        m = np.zeros((3, 5))
        m[:, 0], m[:, 1], m[:, 2], m[:, 3] = c2w[:3, 1], c2w[:3, 0], -c2w[:3, 2], c2w[:3, 3]
        m[:, 4] = (6, 8, 7.0)
        rows.append(np.concatenate([m.ravel(), [0.5, 10.0]]))
    return np.asarray(rows)


@pytest.mark.parametrize(
    "index,value,needle",
    [
        ((1, 3), np.nan, "row 1 has non-finite pose values"),
        ((0, 0), np.inf, "row 0 has non-finite pose values"),
        ((2, slice(0, 3)), 0.0, "row 2: the rotation"),
        ((0, 14), 0.0, "row 0 has invalid (H, W, f)"),
        ((0, 14), -7.0, "row 0 has invalid (H, W, f)"),
    ],
)
def test_llff_bad_values(tmp_path, index, value, needle):
    pb = _llff(tmp_path)
    if index[1] == slice(0, 3):  # zero the whole rotation block of that row
        r = pb[index[0], :15].reshape(3, 5)
        r[:, :3] = 0.0
        pb[index[0], :15] = r.ravel()
    else:
        pb[index] = value
    np.save(tmp_path / "poses_bounds.npy", pb)
    with pytest.raises(ReconError) as e:
        load_scene(tmp_path)
    msg = _one_line(e)
    assert "poses_bounds.npy" in msg and needle in msg, msg


def test_llff_lying_npy_header(tmp_path):
    pb = _llff(tmp_path)
    np.save(tmp_path / "poses_bounds.npy", pb)
    data = (tmp_path / "poses_bounds.npy").read_bytes().replace(b"(3, 17)", b"(999999999, 17)")
    (tmp_path / "poses_bounds.npy").write_bytes(data)
    with pytest.raises(ReconError, match=r"poses_bounds\.npy: poses_bounds\.npy declares an array of shape \(999999999, 17\)"):
        load_scene(tmp_path)


# ----------------------------------------------------------------------------------------------
# COLMAP


def _colmap_text(root: Path, cameras: str, images: str, n_images: int = 2) -> Path:
    for i in range(n_images):
        _png(root / "images" / f"a{i}.png", seed=i)
    m = root / "sparse" / "0"
    m.mkdir(parents=True)
    (m / "cameras.txt").write_text(cameras)
    (m / "images.txt").write_text(images)
    (m / "points3D.txt").write_text("")
    return m


GOOD_CAM = "1 PINHOLE 8 6 7 7 4 3\n"
GOOD_IMG = "1 1 0 0 0 0 0 1 1 a0.png\n\n2 1 0 0 0 0.5 0 1 1 a1.png\n\n"


@pytest.mark.parametrize(
    "cameras,images,needles",
    [
        ("1 PINHOLE 8 6 -7 7 4 3\n", GOOD_IMG, ["cameras.txt camera 1", "fx = -7", "params"]),
        ("1 SIMPLE_PINHOLE 8 6 0 4 3\n", GOOD_IMG, ["cameras.txt camera 1", "fx = 0"]),
        ("1 PINHOLE 8 6 nan 7 4 3\n", GOOD_IMG, ["cameras.txt camera 1", "fx = nan"]),
        ("1 PINHOLE 0 6 7 7 4 3\n", GOOD_IMG, ["cameras.txt", "camera 1", "image size 0x6"]),
        (GOOD_CAM, "1 0 0 0 0 0 0 1 1 a0.png\n\n", ["images.txt image 1 (a0.png)", "qvec", "zero length"]),
        (GOOD_CAM, "1 nan 0 0 0 0 0 1 1 a0.png\n\n", ["images.txt image 1 (a0.png)", "qvec", "not 4 finite"]),
        (GOOD_CAM, "1 3 0 0 0 0 0 1 1 a0.png\n\n", ["images.txt image 1", "length 3"]),
        (GOOD_CAM, "1 1 0 0 0 inf 0 1 1 a0.png\n\n", ["images.txt image 1 (a0.png)", "tvec"]),
        (GOOD_CAM, "1 1 0 0 0 0 0 1 7 a0.png\n\n", ["images.txt image 1", "camera_id 7"]),
        (GOOD_CAM, "1 1 0 0 0 0 0 1 1 ../../x.png\n\n", ["images.txt image 1", "'../../x.png'", "outside the scene folder"]),
        (GOOD_CAM, "1 1 0 0 0 zero 0 1 1 a0.png\n\n", ["images.txt line 1", "malformed image"]),
    ],
)
def test_colmap_bad_values(tmp_path, cameras, images, needles):
    _png(tmp_path / "x.png")
    _colmap_text(tmp_path / "scene", cameras, images)
    with pytest.raises(ReconError) as e:
        load_scene(tmp_path / "scene")
    msg = _one_line(e)
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("missing", ["cameras", "images"])
@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_colmap_model_missing_a_file_is_an_error_not_ignored(tmp_path, missing, ext):
    """Before: the model was silently ignored, the folder read as plain images and SfM re-ran."""
    m = _colmap_text(tmp_path / "scene", GOOD_CAM, GOOD_IMG)
    if ext == ".bin":
        import pycolmap

        pycolmap.Reconstruction(str(m)).write_binary(str(m))
        for n in ("cameras", "images", "points3D"):
            (m / f"{n}.txt").unlink()
    (m / f"{missing}{ext}").unlink()
    for call in (detect_format, load_scene):
        with pytest.raises(ReconError) as e:
            call(tmp_path / "scene")
        msg = _one_line(e)
        assert f"{m / (missing + ext)}: missing from the COLMAP model" in msg, msg
        assert "delete the incomplete model" in msg


def test_colmap_binary_parser_matches_pycolmap():
    """recon's own bounded parser gives pycolmap's cameras and poses on a real model."""
    import pycolmap

    model = DATA / "beer_can" / "sparse" / "0"
    if not model.is_dir():
        pytest.skip(f"shared test data not found at {model}")
    rec = pycolmap.Reconstruction(str(model))
    cams = read_colmap_cameras(model / "cameras.bin")
    imgs = read_colmap_images(model / "images.bin")
    assert len(cams) == rec.num_cameras() == 71 and len(imgs) == rec.num_reg_images() == 71
    for cid, c in rec.cameras.items():
        assert cams[cid].model == c.model.name and (cams[cid].width, cams[cid].height) == (c.width, c.height)
        np.testing.assert_array_equal(cams[cid].params, np.asarray(c.params))
    for im in imgs:
        ref = rec.images[im.image_id]
        assert im.name == ref.name and im.camera_id == ref.camera_id
        R = qvec_to_rotmat(np.asarray(im.qvec))
        np.testing.assert_allclose(R, np.asarray(ref.cam_from_world().rotation.matrix()), atol=1e-12)
        np.testing.assert_allclose(im.tvec, np.asarray(ref.cam_from_world().translation), atol=1e-12)
    scene = load_scene(DATA / "beer_can", format="colmap")
    assert len(scene) == 71 and scene.points.shape == (rec.num_points3D(), 3) == (4414, 3)
    p = rec.points3D[min(rec.points3D)]
    np.testing.assert_allclose(scene.points[0], np.asarray(p.xyz), atol=1e-12)


def test_colmap_truncated_points_is_one_line_before_allocating(tmp_path):
    import tracemalloc

    model = DATA / "beer_can" / "sparse" / "0"
    if not model.is_dir():
        pytest.skip(f"shared test data not found at {model}")
    m = tmp_path / "scene" / "sparse" / "0"
    m.mkdir(parents=True)
    os.symlink(DATA / "beer_can" / "images", tmp_path / "scene" / "images")
    for n in ("cameras.bin", "images.bin"):
        (m / n).write_bytes((model / n).read_bytes())
    data = (model / "points3D.bin").read_bytes()
    (m / "points3D.bin").write_bytes(data[: len(data) // 3])
    tracemalloc.start()
    with pytest.raises(ReconError) as e:
        load_scene(tmp_path / "scene")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = _one_line(e)
    assert "points3D.bin: header claims 4414 points, but the file has room for at most" in msg and "truncated" in msg
    assert peak < 2 * (len(data) + (model / "images.bin").stat().st_size) + (1 << 20)
    (m / "points3D.bin").write_bytes(data[:-5])  # cut inside the last point's track
    with pytest.raises(ReconError, match=r"points3D\.bin: truncated or corrupt COLMAP file \(point \d+'s track"):
        load_scene(tmp_path / "scene")


# ----------------------------------------------------------------------------------------------
# Camera paths and splat files


def test_camera_path_nan_is_refused(tmp_path):
    from exporters.cameras import read_camera_path
    from viewer.camera_path import read_keyframes

    m = (np.eye(4) @ GL_CV_FLIP).ravel().tolist()
    bad = list(m)
    bad[3] = float("nan")
    doc = {
        "render_width": 64, "render_height": 48, "fps": 10,
        "camera_path": [{"camera_to_world": m, "fov": 50}, {"camera_to_world": bad, "fov": 50}],
        "keyframes": [{"matrix": m, "fov": 50}, {"matrix": bad, "fov": 50}],
    }  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(ReconError, match=r"p\.json frame 1: pose has non-finite"):
        read_camera_path(tmp_path / "p.json")
    with pytest.raises(ReconError, match=r"p\.json keyframe 1: 'matrix' has non-finite"):
        read_keyframes(tmp_path / "p.json")
    doc["camera_path"][1]["camera_to_world"] = m
    doc["camera_path"][1]["fov"] = 180
    doc["keyframes"][1] = {"matrix": m, "fov": -3}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(ReconError, match=r"p\.json frame 1: fov = 180 must be a field of view"):
        read_camera_path(tmp_path / "p.json")
    with pytest.raises(ReconError, match=r"p\.json keyframe 1: fov = -3"):
        read_keyframes(tmp_path / "p.json")


def test_splat_ply_with_nan_positions_is_refused(tmp_path):
    import torch

    from recon.models.splats_io import read_ply, write_ply

    s = {
        "means": torch.zeros(4, 3), "quats": torch.tensor([[1.0, 0, 0, 0]] * 4), "scales": torch.zeros(4, 3),
        "opacities": torch.zeros(4), "sh0": torch.zeros(4, 1, 3), "shN": torch.zeros(4, 0, 3),
    }  # fmt: skip
    s["means"][2, 1] = float("nan")
    write_ply(s, tmp_path / "s.ply")
    with pytest.raises(ReconError, match=r"s\.ply: 1 of 4 Gaussians have non-finite \(NaN or inf\) means \(first: 2\)"):
        read_ply(tmp_path / "s.ply")
    s["means"][2, 1] = 0.0
    s["opacities"][0] = float("-inf")  # fully transparent: kept
    write_ply(s, tmp_path / "s.ply")
    assert read_ply(tmp_path / "s.ply")["opacities"][0] == float("-inf")


# ----------------------------------------------------------------------------------------------
# Capture inputs: bombs, corrupt JPEGs and symlink cycles are skipped, not fatal


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose IHDR claims ``w x h`` with almost no pixel data (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _texture(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), np.uint8))


@pytest.mark.parametrize("size", [(20000, 20000), (17000, 16000)])
def test_huge_image_is_skipped_with_a_warning(tmp_path, size):
    from recon.capture.ingest import ingest
    from recon.scene.images import image_size

    scene = tmp_path / "photos"
    scene.mkdir()
    for i in range(3):
        Image.fromarray(_texture(i)).save(scene / f"p{i}.jpg", quality=92)
    bomb = _png_header_only(scene / "bomb.png", *size)
    with pytest.raises(ReconError) as e:
        image_size(bomb)
    msg = _one_line(e)
    assert msg.startswith(f"{bomb}: image is") and ("too large" in msg or "megapixels" in msg), msg
    logs: list[str] = []
    res = ingest(scene, tmp_path / "work", log=logs.append)
    assert len(res.images) == 3
    assert [Path(p).name for p, _ in res.skipped] == ["bomb.png"]
    assert any(line.startswith(f"warning: skipping {bomb}") for line in logs)


def test_corrupt_jpeg_entropy_data_is_unreadable_at_ingest(tmp_path):
    from recon.capture.ingest import ingest, jpeg_problem

    scene = tmp_path / "photos"
    scene.mkdir()
    for i in range(3):
        Image.fromarray(_texture(i)).save(scene / f"p{i}.jpg", quality=92)
    data = bytearray((scene / "p1.jpg").read_bytes())
    sos = data.find(b"\xff\xda")
    for j in (sos + 60, sos + 400, sos + 900):
        data[j] ^= 0xFF
    (scene / "p1.jpg").write_bytes(bytes(data))
    with Image.open(scene / "p1.jpg") as im:
        im.load()  # Pillow decodes it without complaint: that is the bug being guarded against
    assert jpeg_problem(scene / "p0.jpg") is None
    assert "Corrupt JPEG data" in (jpeg_problem(scene / "p1.jpg") or "")
    res = ingest(scene, tmp_path / "work")
    assert sorted(Path(im.source).name for im in res.images) == ["p0.jpg", "p2.jpg"]
    assert [(Path(p).name, r.split(" (")[0]) for p, r in res.skipped] == [("p1.jpg", "corrupt JPEG data")]


def test_recursive_walk_survives_symlink_cycles(tmp_path):
    from recon.capture.ingest import list_media

    scene = tmp_path / "photos"
    (scene / "a" / "b").mkdir(parents=True)
    for p in (scene / "x.png", scene / "a" / "y.png", scene / "a" / "b" / "z.png"):
        _png(p)
    os.symlink(scene, scene / "a" / "b" / "back_to_top")  # a cycle
    os.symlink(scene / "a", scene / "again")  # a second way into the same folder
    os.symlink(scene / "a" / "b" / "self", scene / "a" / "b" / "self")  # a link to itself
    images, videos, ignored = list_media(scene, recursive=True)
    assert sorted(p.relative_to(scene).as_posix() for p in images) == ["a/b/z.png", "a/y.png", "x.png"]
