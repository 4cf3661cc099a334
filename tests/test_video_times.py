"""Frame times from one moving-camera video (`recon process VIDEO`) and `recon info`'s frames per time.

A rendered video of the `dynamic` scene (time = frame / (frames - 1), as the renderer moves its
objects) goes through `recon process`: every registered frame gets the video's time normalised over
the sampled frames, the held-out frames are every 8th in time order from the 5th (never the first or
last), and `recon info` says "N times, 1 view each (monocular video)". The synthetic monocular and
multi-view scenes give the other two layouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.cli import run
from recon.scene.info import describe_time_layout, scene_info, time_layout
from recon.scene.readers import load_scene
from recon.sfm.pipeline import video_split


def _frame_index(name: str) -> int:
    return int(Path(name).stem.rsplit("_", 1)[1])


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> tuple[Path, Path]:
    """(video, processed scene) of a 24-frame orbit of the dynamic scene at 256x256."""
    pytest.importorskip("av")
    import scenes
    from recon.sfm import process

    root = tmp_path_factory.mktemp("video")
    vid = scenes.render_video("dynamic", root / "clip.mp4", seconds=4, fps=6, res=256)
    return vid, process(vid, log=None)


def test_video_frames_get_normalised_times(processed):
    vid, out = processed
    gt = json.loads(vid.with_name("clip.transforms.json").read_text())
    gt_time = {f["frame_index"]: f["time"] for f in gt["frames"]}
    manifest = json.loads((out / "transforms.json").read_text())
    info = manifest["recon_time"]
    assert info["source"] == "video" and info["video"] == "clip.mp4"
    sc = load_scene(out)
    assert sc.time_source == "video"
    rep = json.loads((out / "sfm_report.json").read_text())
    n_reg = rep["images_registered"]
    print(f"video: {n_reg}/{rep['images_total']} frames registered")
    assert n_reg >= 0.8 * rep["images_total"] >= 16
    idx = [_frame_index(f.name) for f in sc.frames]
    times = np.array([f.time for f in sc.frames], dtype=np.float64)
    assert np.all((times >= 0) & (times <= 1))
    order = np.argsort(idx)
    assert np.all(np.diff(times[order]) > 0), "times must increase with the frame index"
    # The renderer's time of each frame, normalised over the sampled frames (first 0, last 1).
    first, last = info["first_s"] * gt["fps"], info["last_s"] * gt["fps"]
    t0, t1 = gt_time[round(first)], gt_time[round(last)]
    want = np.array([(gt_time[i] - t0) / (t1 - t0) for i in idx])
    assert np.abs(times - want).max() < 1e-6
    # Held out: every 8th registered frame in time order from the 5th, never the first or last.
    split = [sc.frames[k].split for k in order]
    assert split == ["test" if h else "train" for h in video_split(len(split))]
    assert split[0] == split[-1] == "train" and split.count("test") == len(range(4, len(split) - 1, 8))


def test_info_and_methods_on_a_video_scene(processed, capsys):
    from recon.methods import get_method
    from recon.train.trainer import capture_notes, check_scene

    _, out = processed
    assert run(["info", str(out)]) == 0
    text = capsys.readouterr().out
    sc = load_scene(out)
    n = len(sc.frames)
    assert f"per time       {n} times, 1 view each (monocular video)" in text
    assert "(from the video's frame times)" in text
    # A static method trains the same scene (times ignored, said once); splat4d is warned once.
    assert check_scene("splat", sc).name == "splat"
    notes = capture_notes(get_method("splat"), sc, sc.indices("train"))
    assert len(notes) == 1 and "ignored" in notes[0]
    notes = capture_notes(get_method("splat4d"), sc, sc.indices("train"))
    assert len(notes) == 1 and notes[0].startswith("[warn] monocular capture") and "not other viewpoints" in notes[0]


def test_time_layouts_of_synthetic_scenes(tmp_path):
    import scenes

    rig = scenes.synth("dynamic-rig", tmp_path / "rig", views=40, res=16)
    info = scene_info(rig)
    assert info["time_layout"] == {"times": 5, "min_views": 8, "max_views": 8, "untimed": 0, "kind": "multi-view"}
    assert describe_time_layout(info["time_layout"]) == "5 times x 8 views (multi-view rig)"
    mono = scenes.synth("dynamic", tmp_path / "mono", views=12, res=16)
    info = scene_info(mono)
    assert info["time_layout"]["kind"] == "monocular" and info["time_layout"]["times"] == 12
    assert describe_time_layout(info["time_layout"]) == "12 times, 1 view each (monocular)"
    assert time_layout([None, None]) is None
    mixed = time_layout([0.0, 0.0, 0.5, None])
    assert mixed["kind"] == "mixed" and describe_time_layout(mixed) == "2 times, 1-2 views each (mixed); 1 frame(s) without a time"
    # Static methods still refuse a dynamic capture whose times are its own (not a video's).
    from recon.errors import ReconError
    from recon.train.trainer import check_scene

    with pytest.raises(ReconError, match="static"):
        check_scene("splat", load_scene(mono))


def test_video_split_rule():
    assert video_split(2) == [False, False]
    assert video_split(3) == [False, True, False]
    assert [k for k, h in enumerate(video_split(65)) if h] == [4, 12, 20, 28, 36, 44, 52, 60]
    assert [k for k, h in enumerate(video_split(13)) if h] == [4]  # 12 is the last frame: kept for training


def test_degenerate_focal_is_flagged():
    from recon.sfm.pipeline import fov_warning

    # The default SfM run on the real walking-lady video once solved 122 px for 926 px frames (150 degrees).
    msg = fov_warning([{"fl_x": 122.1, "fl_y": 122.1, "w": 926, "h": 489}])
    assert msg is not None and "150-degree" in msg and "--mapper global" in msg
    assert fov_warning([{"fl_x": 655.3, "fl_y": 655.3, "w": 866, "h": 481}]) is None  # 67 degrees
    assert fov_warning([{"fl_x": 500.0, "w": 1000}, {"fl_x": 250.0, "w": 1000}]) is not None  # the widest counts


def test_malformed_time_source_is_one_line(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "a.png")
    meta = {"fl_x": 5.0, "w": 8, "h": 6, "recon_time": "video",
            "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist(), "time": 0.0}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert run(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recon_time" in err[0] and "transforms.json" in err[0] and "Traceback" not in err[0]
    # Written back by the writer (a round trip keeps the time source).
    from recon.scene.writers import write_transforms_json

    meta["recon_time"] = {"source": "video"}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    sc = load_scene(tmp_path)
    write_transforms_json(sc, tmp_path / "copy" / "transforms.json")
    assert load_scene(tmp_path / "copy").time_source == "video"


def test_partition_blocks_keep_the_video_time_source(processed, tmp_path):
    """A block of `recon train --partition` on a video scene stays trainable by static splats."""
    from recon.cluster.partition import Block, Plan, write_block_scene
    from recon.train.trainer import check_scene

    _, out = processed
    sc = load_scene(out)
    train = sc.indices("train")
    block = Block(i=0, j=0, core=[-1e9, 1e9, -1e9, 1e9], expanded=[-1e9, 1e9, -1e9, 1e9], frames=train[:6])
    plan = Plan(origin=[0.0, 0.0, 0.0], u=[1.0, 0.0, 0.0], v=[0.0, 1.0, 0.0], up=[0.0, 0.0, 1.0], blocks=[block])
    folder = write_block_scene(sc, plan, block, sc.points, tmp_path / "block")
    sub = load_scene(folder)
    assert sub.time_source == "video" and sub.has_time and len(sub.frames) == 6
    assert check_scene("splat", sub).name == "splat"
