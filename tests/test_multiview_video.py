"""Synchronised multi-view video (`recon process FOLDER` on one clip per fixed camera) against the
rig's exact ground truth (`recon scene video dynamic-rig OUT`, scenes.video.render_rig_videos).

* 16 fixed cameras x 3 times at 512 px through `recon process`: every camera registers; after a
  similarity alignment the solved cameras are within 1 degree and 1 % of the rig's extent of the
  truth (measured: at most 0.11 deg and 0.22 %, medians 0.07 deg and 0.09 %); every frame of a clip reuses its clip's pose and
  intrinsics; 3 times x 16 views with the renderer's times; camera 0 is the held-out camera;
  `recon info` reports the layout; static methods refuse the capture, splat4d takes it.
* Grouping (no SfM, 64 px): a clip that starts 3 frames late is aligned by its offset (of renders
  of every event frame, each grouped frame is nearest the true one; unaligned, 3 frames off), and
  a clip at half the frame rate is grouped within half of its frame period.
* Bad inputs: one line on stderr, exit 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recon.cli import run

pytest.importorskip("av")


def _clip_stem(name: str) -> str:
    return Path(name).stem.rsplit("_t", 1)[0]


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> tuple[Path, Path]:
    """(video set, processed scene): 16 cameras x 3 frames at 512 px."""
    from recon.sfm import process
    from scenes.video import render_rig_videos

    root = tmp_path_factory.mktemp("rigvid")
    src = render_rig_videos(root / "rig", cameras=16, seconds=0.25, fps=12, res=512)
    return src, process(src, root / "out", log=None, num_threads=1)


def test_rig_cameras_match_ground_truth(rig):
    from recon.scene.conventions import opengl_to_opencv
    from recon.scene.readers import load_scene
    from recon.sfm.normalize import pose_errors

    src, out = rig
    gt = json.loads((src / "ground_truth.json").read_text())
    rep = json.loads((out / "sfm_report.json").read_text())
    assert rep["rig"]["cameras_registered"] == 16 and rep["images_registered"] == rep["images_total"] == 48
    sc = load_scene(out)
    by: dict[str, list] = {}
    for f in sc.frames:
        by.setdefault(_clip_stem(f.name), []).append(f)
    assert sorted(by) == [f"cam{j:02d}" for j in range(16)] and all(len(v) == 3 for v in by.values())
    # One fixed camera per clip: every frame of a clip has its pose and intrinsics exactly.
    for frames in by.values():
        for f in frames[1:]:
            assert np.array_equal(f.camera.c2w, frames[0].camera.c2w) and np.array_equal(f.camera.K, frames[0].camera.K)
    names = sorted(by)
    est = np.stack([by[n][0].camera.c2w for n in names])
    truth = {Path(c["video"]).stem: opengl_to_opencv(np.array(c["transform_matrix"])) for c in gt["cameras"]}
    e = pose_errors(est, np.stack([truth[n] for n in names]))
    rot, ctr = e["rot_err_deg"], 100 * e["center_err"] / e["extent"]
    print(f"rig poses: rotation max {rot.max():.3f} median {np.median(rot):.3f} deg; "
          f"centre max {ctr.max():.3f} median {np.median(ctr):.3f} % of the rig extent")
    assert rot.max() < 1.0 and np.median(rot) < 0.25
    assert ctr.max() < 1.0 and np.median(ctr) < 0.3
    # Focal length (shared by the clips: one camera model on the stage) within 2 % of the truth.
    fx = np.array([by[n][0].camera.K[0, 0] for n in names])
    assert np.all(np.abs(fx / gt["fl_x"] - 1) < 0.02), fx


def test_rig_times_split_and_info(rig, capsys):
    from recon.errors import ReconError
    from recon.scene.readers import load_scene
    from recon.train.trainer import check_scene

    src, out = rig
    gt = json.loads((src / "ground_truth.json").read_text())
    sc = load_scene(out)
    assert sc.time_source == "multi-view video"
    truth = [ev["time"] for ev in gt["events"]]  # all 3 event frames are the 3 samples
    for f in sc.frames:
        k = int(Path(f.name).stem.rsplit("_t", 1)[1])
        assert abs(f.time - truth[k]) < 1e-6
    times = sorted({f.time for f in sc.frames})
    assert len(times) == 3 and all(sum(f.time == t for f in sc.frames) == 16 for t in times)
    test = [f for f in sc.frames if f.split == "test"]
    assert {_clip_stem(f.name) for f in test} == {"cam00"} and len(test) == 3
    assert run(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "per time       3 times x 16 views (multi-view rig)" in text
    with pytest.raises(ReconError, match="static"):
        check_scene("splat", sc)
    assert check_scene("splat4d", sc).name == "splat4d"


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _reencode_half_rate(src: Path, dst: Path) -> None:
    """Every second frame of ``src`` into ``dst`` at half its frame rate (a slower camera)."""
    import av

    with av.open(str(src)) as inp:
        st = inp.streams.video[0]
        rate = int(round(float(st.average_rate)))
        imgs = [f.to_ndarray(format="rgb24") for f in inp.decode(st)]
    with av.open(str(dst), mode="w") as out:
        s = out.add_stream("libx264", rate=rate // 2)
        s.width, s.height, s.pix_fmt = imgs[0].shape[1], imgs[0].shape[0], "yuv420p"
        for img in imgs[::2]:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def test_offsets_and_frame_rates_group_frames(tmp_path):
    from PIL import Image

    from recon.capture.multiview import ingest_rig
    from scenes.dataset import build
    from scenes.recipes import stage_rig
    from scenes.render import Renderer
    from scenes.video import render_rig_videos
    from recon.scene.cameras import intrinsics_from_fov

    fps, res = 12, 64
    src = render_rig_videos(tmp_path / "set", cameras=3, seconds=1.0, fps=fps, res=res, start_frames=[0, 3, 0])
    gt = json.loads((src / "ground_truth.json").read_text())
    assert json.loads((src / "offsets.json").read_text())["cam01.mp4"] == pytest.approx(0.25)
    n_ev = gt["event_frames"]
    recipe = build("dynamic-rig", 0)
    renderer, K, cams = Renderer(recipe, ss=2), intrinsics_from_fov(recipe.fov_x, res, res), stage_rig(3)

    def render(j: int, ev: int) -> np.ndarray:
        return renderer.render(K, cams[j], res, res, ev / (n_ev - 1)).rgb

    ing = ingest_rig(src, tmp_path / "work")  # offsets.json read from the folder
    # The clips overlap over event frames 3..11: 9 samples, each clip's frame of that event frame.
    assert len(ing.grid_s) == n_ev - 3 and ing.grid_s[0] == pytest.approx(0.25)
    for k, t in enumerate(ing.grid_s):
        evs = {round(ing.frame(ci, k).time_s * fps) for ci in range(3)}
        assert evs == {k + 3}
        assert all(abs(ing.frame(ci, k).time_s - t) <= 0.5 / fps + 1e-9 for ci in range(3))
    # Content: of the renders of every event frame, the one nearest each grouped frame of the late
    # clip is the sample's event frame.
    renders = [render(1, ev) for ev in range(n_ev)]

    def best(img_path: Path) -> int:
        img = np.asarray(Image.open(img_path).convert("RGB"))
        return int(np.argmin([_mad(img, r) for r in renders]))

    assert [best(ing.image_dir / ing.frame(1, k).name) for k in range(len(ing.grid_s))] == [k + 3 for k in range(len(ing.grid_s))]
    # Without the offset (all clips start at 0) the late clip is grouped 3 frames off.
    plain = tmp_path / "plain"
    plain.mkdir()
    for p in src.glob("*.mp4"):
        shutil.copy(p, plain / p.name)
    ing0 = ingest_rig(plain, tmp_path / "work0")
    assert len(ing0.grid_s) == n_ev - 3  # the late clip is 3 frames shorter
    assert best(ing0.image_dir / ing0.frame(1, 0).name) == 3 and round(ing0.frame(0, 0).time_s * fps) == 0

    # A camera at half the frame rate: the grid follows the slower clip (6 fps), every grouped
    # frame within half of its clip's frame period of the sample's time.
    half = tmp_path / "half"
    half.mkdir()
    for p in src.glob("*.mp4"):
        shutil.copy(p, half / p.name)
    _reencode_half_rate(src / "cam02.mp4", half / "cam02.mp4")
    (half / "offsets.json").write_text(json.dumps({"cam01.mp4": 0.25}))
    ing2 = ingest_rig(half, tmp_path / "work2")
    assert ing2.fps == pytest.approx(fps / 2)
    assert np.allclose(np.diff(ing2.grid_s), 2 / fps)
    for k, t in enumerate(ing2.grid_s):
        for ci, c in enumerate(ing2.clips):
            assert abs(ing2.frame(ci, k).time_s - t) <= 0.5 / c.fps + 1e-9


def _one_line_exit_2(capsys, argv: list[str], *needles: str) -> str:
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for s in needles:
        assert s in err[0], err[0]
    return err[0]


def test_bad_inputs_exit_2(tmp_path, capsys):
    from scenes.video import render_rig_videos

    src = render_rig_videos(tmp_path / "set", cameras=2, seconds=0.5, fps=8, res=32)
    # One video only.
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(src / "cam00.mp4", one / "cam00.mp4")
    _one_line_exit_2(capsys, ["process", str(one), "--multi-view", "--out", str(tmp_path / "o1")], "at least 2 video files", "found 1")
    assert not (tmp_path / "o1").exists()
    # Offsets naming a file that is not there.
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    (bad / "offsets.json").write_text(json.dumps({"cam07.mp4": 0.5}))
    _one_line_exit_2(capsys, ["process", str(bad), "--out", str(tmp_path / "o2")], "offsets.json", "cam07.mp4", "not a video")
    (bad / "offsets.json").write_text(json.dumps({"cam01.mp4": "late"}))
    _one_line_exit_2(capsys, ["process", str(bad), "--out", str(tmp_path / "o2")], "must be a number of seconds")
    # Clips that do not overlap in event time.
    (bad / "offsets.json").write_text(json.dumps({"cam01.mp4": 5.0}))
    _one_line_exit_2(capsys, ["process", str(bad), "--out", str(tmp_path / "o2")], "overlap")
    # An unreadable clip.
    (bad / "offsets.json").unlink()
    (bad / "cam01.mp4").write_bytes(b"\x00not a video" * 100)
    _one_line_exit_2(capsys, ["process", str(bad), "--multi-view", "--out", str(tmp_path / "o3")], "cam01.mp4", "not a readable video")
    # Photos beside the clips; a missing --offsets file.
    mixed = tmp_path / "mixed"
    shutil.copytree(src, mixed)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(mixed / "photo.jpg")
    _one_line_exit_2(capsys, ["process", str(mixed), "--out", str(tmp_path / "o4")], "photos", "photo.jpg")
    _one_line_exit_2(capsys, ["process", str(src), "--offsets", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o5")],
                     "nope.json", "cannot read")
