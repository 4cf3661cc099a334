"""`recon info` and bad input: one line naming the path, exit code 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.cli import run
from recon.errors import ReconError
from recon.scene.readers import load_scene

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _png(path: Path, h: int = 6, w: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def _run_error(capsys, args: list[str]) -> str:
    code = run(args)
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err
    return lines[0]


def _transforms(root: Path, frames: list[dict], **top) -> None:
    meta = {"fl_x": 5.0, "w": 8, "h": 6, **top, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta, indent=1))


def test_info_lego_text_and_json(capsys):
    lego = DATA / "nerf_synthetic" / "lego"
    if not lego.is_dir():
        pytest.skip(f"shared test data not found at {lego}")
    assert run(["info", str(lego)]) == 0
    out = capsys.readouterr().out
    assert "blender" in out and "train 100, val 100, test 200" in out and "400x400" in out and "PINHOLE" in out
    assert run(["info", str(lego), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "blender" and info["frames"] == 400
    assert info["splits"] == {"train": 100, "val": 100, "test": 200}
    assert info["resolutions"] == [{"width": 400, "height": 400, "frames": 400}]
    assert info["poses"] is True and info["times"] is None and info["sparse_points"] == 0


def test_info_reports_everything(tmp_path, capsys):
    for i in range(3):
        _png(tmp_path / f"im{i}.png", 6, 8 if i < 2 else 10)
    _png(tmp_path / "m0.png")
    np.save(tmp_path / "d1.npy", np.ones((6, 8), np.float32))
    frames = [
        {"file_path": "im0.png", "transform_matrix": np.eye(4).tolist(), "mask_path": "m0.png", "time": 0.25},
        {"file_path": "im1.png", "transform_matrix": np.eye(4).tolist(), "depth_file_path": "d1.npy", "time": 0.75},
        {"file_path": "im2.png", "transform_matrix": np.eye(4).tolist(), "w": 10, "camera_model": "OPENCV", "k1": 0.1},
    ]
    _transforms(tmp_path, frames, test_filenames=["im2.png"], train_filenames=["im0.png", "im1.png"])
    (tmp_path / "capture.MOV").write_bytes(b"")
    assert run(["info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "nerfstudio"
    assert info["splits"] == {"train": 2, "val": 0, "test": 1}
    assert {(r["width"], r["height"], r["frames"]) for r in info["resolutions"]} == {(8, 6, 2), (10, 6, 1)}
    assert info["camera_models"] == {"PINHOLE": 2, "OPENCV": 1}
    assert info["masks"] == 1 and info["depths"] == 1
    assert info["times"] == {"frames": 2, "min": 0.25, "max": 0.75}
    assert info["videos"] == ["capture.MOV"]
    assert run(["info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "8x6 (2), 10x6 (1)" in text and "capture.MOV" in text and "1 of 3 frames" in text


def test_info_plain_images_and_videos_only(tmp_path, capsys):
    _png(tmp_path / "photos" / "a.jpg", 6, 8)
    _png(tmp_path / "photos" / "b.jpg", 8, 6)
    assert run(["info", str(tmp_path / "photos"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "images" and info["poses"] is False
    assert {(r["width"], r["height"]) for r in info["resolutions"]} == {(8, 6), (6, 8)}
    (tmp_path / "vid").mkdir()
    (tmp_path / "vid" / "walk.mp4").write_bytes(b"")
    assert run(["info", str(tmp_path / "vid")]) == 0
    assert "walk.mp4" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Bad input


def test_missing_folder(tmp_path, capsys):
    p = tmp_path / "nope"
    line = _run_error(capsys, ["info", str(p)])
    assert str(p) in line and "no such" in line


def test_unknown_format(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert line.endswith(f"no images, transforms.json, COLMAP model or poses_bounds.npy found in {tmp_path}")


def test_malformed_json(tmp_path, capsys):
    (tmp_path / "transforms.json").write_text('{\n  "fl_x": 5,\n  "frames": [,]\n}\n')
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert str(tmp_path / "transforms.json") in line and "line 3, column" in line


def test_referenced_image_missing(tmp_path, capsys):
    _png(tmp_path / "a.png")
    _transforms(tmp_path, [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()},
                           {"file_path": "images/missing.png", "transform_matrix": np.eye(4).tolist()}])
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert str(tmp_path / "images" / "missing.png") in line and "not found" in line


def test_unreadable_image(tmp_path, capsys):
    _png(tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert str(tmp_path / "broken.jpg") in line and "unreadable" in line


def test_blender_missing_image_and_bad_matrix(tmp_path, capsys):
    (tmp_path / "transforms_train.json").write_text(json.dumps(
        {"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}))
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert str(tmp_path / "train" / "r_0") in line
    _png(tmp_path / "train" / "r_0.png")
    (tmp_path / "transforms_train.json").write_text(json.dumps(
        {"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0", "transform_matrix": [[1, 2], [3, 4]]}]}))
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert str(tmp_path / "transforms_train.json") in line and "4x4" in line


def test_bad_colmap_model(tmp_path, capsys):
    m = tmp_path / "sparse" / "0"
    m.mkdir(parents=True)
    (m / "cameras.bin").write_bytes(b"\x01\x02")
    (m / "images.bin").write_bytes(b"\x01")
    (m / "points3D.bin").write_bytes(b"")
    line = _run_error(capsys, ["info", str(tmp_path)])
    assert str(m) in line


def test_load_scene_errors(tmp_path):
    with pytest.raises(ReconError, match="unknown scene format"):
        load_scene(tmp_path, format="bogus")
    _png(tmp_path / "a.png")
    with pytest.raises(ReconError, match="background"):
        load_scene(tmp_path, background=(2, 0, 0))
    with pytest.raises(ReconError, match="transforms.json"):
        load_scene(tmp_path, format="nerfstudio")
