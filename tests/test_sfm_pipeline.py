"""End-to-end SfM (`recon process`) on ground-truth synthetic scenes, a rendered video and real photos.

Bars (see docs/sfm.md for the measured figures): on the 60-view synthetic turntable, after a Sim(3)
(Umeyama) alignment to the true cameras, median rotation error <= 0.5 degrees and median camera
centre error <= 1% of the scene extent (the largest distance of a true camera from their mean).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon.errors import ReconError
from recon.scene.readers import load_scene
from recon.sfm import needs_processing, process
from recon.sfm.normalize import pose_errors, transform_c2w

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCEAUX = DATA / "sceaux_castle"


@pytest.fixture(scope="module")
def turntable(tmp_path_factory) -> tuple[Path, Path]:
    """(ground-truth scene folder, plain photo folder) of the 60-view turntable at 256x256."""
    import scenes

    root = tmp_path_factory.mktemp("turntable")
    gt = scenes.synth("turntable", root / "gt", views=60, res=256)
    photos = root / "photos"
    photos.mkdir()
    for p in sorted((gt / "images").glob("*.png")):
        shutil.copy(p, photos / p.name)
    return gt, photos


def _by_stem(scene) -> dict[str, np.ndarray]:
    return {Path(f.image_path).stem: f.camera.c2w for f in scene.frames}


def _digest(folder: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_poses_match_ground_truth(turntable):
    gt_dir, photos = turntable
    before = _digest(photos)
    assert needs_processing(photos)
    out = process(photos, log=None)
    assert out == photos / "recon" and not needs_processing(out)
    assert _digest(photos) == before  # originals untouched

    rep = json.loads((out / "sfm_report.json").read_text())
    assert rep["images_registered"] >= 54 and rep["images_total"] == 60
    assert rep["mean_reprojection_error_px"] < 1.0
    for f in ("sfm_report.txt", "sfm_report.png", "points.ply", "sfm_transform.json", "distorted/sparse/0/images.bin"):
        assert (out / f).is_file(), f

    est = load_scene(out)
    assert est.format == "nerfstudio" and len(est) == rep["images_registered"]
    g, e = _by_stem(load_scene(gt_dir)), _by_stem(est)
    common = sorted(set(g) & set(e))
    r = pose_errors(np.stack([e[k] for k in common]), np.stack([g[k] for k in common]))
    med_rot = float(np.median(r["rot_err_deg"]))
    med_ctr = float(np.median(r["center_err"])) / r["extent"]
    print(f"turntable 60 views: {len(common)}/60 registered, median rotation error {med_rot:.3f} deg, "
          f"median centre error {100 * med_ctr:.3f}% of extent")
    assert med_rot <= 0.5
    assert med_ctr <= 0.01

    # Output frame: gravity up (the true world is +z up), cameras in a unit sphere.
    c = est.camera_centers()
    assert np.linalg.norm(c, axis=1).max() == pytest.approx(1.0)
    assert np.allclose(c.mean(0), 0, atol=1e-9)
    up = -np.mean([f.camera.c2w[:3, 1] for f in est.frames], axis=0)
    assert up[2] / np.linalg.norm(up) > 0.999
    aligned_up = r["sim3"][:3, :3] @ np.array([0.0, 0.0, 1.0])  # output +z seen in the true frame
    assert aligned_up[2] / np.linalg.norm(aligned_up) > 0.99

    # sparse/0 (SfM frame) and transforms.json (output frame) agree through applied_transform.
    col = load_scene(out / "sparse" / "0", format="colmap")
    M = est.applied_transform
    for a, b in zip(est.frames, col.frames):
        assert a.image_path.resolve() == b.image_path.resolve()
        assert np.allclose(transform_c2w(M, b.camera.c2w), a.camera.c2w, atol=1e-9)
        assert np.allclose(a.camera.K, b.camera.K) and a.camera.model == "PINHOLE"
    assert np.allclose(col.points @ M[:3, :3].T + M[:3, 3], est.points, atol=1e-9)
    with Image.open(est.frames[0].image_path) as im:
        assert im.size == (est.frames[0].camera.width, est.frames[0].camera.height)


def test_rerun_reuses_cache_and_outputs(turntable):
    _, photos = turntable
    out = photos / "recon"
    if not (out / "transforms.json").is_file():
        pytest.skip("needs test_synthetic_poses_match_ground_truth's output")
    logs: list[str] = []
    assert process(photos, log=logs.append) == out
    assert any("up to date" in m for m in logs), logs
    logs.clear()
    # New frame options: features and matches come from the cache; metric scale from two cameras.
    process(photos, log=logs.append, center="focus", metric_distance=("frame_00010", "frame_00020.png", 2.5))
    text = "\n".join(logs)
    assert "reusing cached features" in text and "reusing cached matches" in text
    rep = json.loads((out / "sfm_report.json").read_text())
    assert rep["options"]["center"] == "focus" and rep["transform"]["units"] == "metres"
    c = {Path(f.image_path).stem: f.camera.center for f in load_scene(out).frames}
    assert np.linalg.norm(c["frame_00010"] - c["frame_00020"]) == pytest.approx(2.5)
    with pytest.raises(ReconError, match="no input image named 'nope'"):
        process(photos, log=None, metric_distance=("nope", "frame_00020", 1.0))
    assert (out / "transforms.json").is_file()  # the failed run left the previous output alone


def test_partial_overlap_bad_files_and_no_overlap(turntable, tmp_path):
    _, photos = turntable
    scene = tmp_path / "mixed"
    scene.mkdir()
    for p in sorted(photos.glob("*.png"))[:30]:
        shutil.copy(p, scene / p.name)
    rng = np.random.default_rng(0)
    for i in range(4):  # unrelated images: overlap nothing
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(scene / f"zz_noise{i}.png")
    good = (scene / "frame_00000.png").read_bytes()
    (scene / "frame_00099.png").write_bytes(good[: len(good) // 2])  # truncated: skipped
    (scene / "readme.txt").write_text("not an image")  # ignored
    out = process(scene, tmp_path / "out", log=None, min_registered_fraction=0.5)
    rep = json.loads((out / "sfm_report.json").read_text())
    assert rep["status"] == "partial" and rep["images_total"] == 34
    assert {f"zz_noise{i}.png" for i in range(4)} <= set(rep["unregistered"])
    assert "little overlap between images 31–34 (zz_noise0.png … zz_noise3.png)" in rep["diagnosis"]
    assert [Path(s["file"]).name for s in rep["inputs"]["skipped"]] == ["frame_00099.png"]
    assert [Path(p).name for p in rep["inputs"]["ignored"]] == ["readme.txt"]
    assert "not registered" in (out / "sfm_report.txt").read_text()

    noise = tmp_path / "noise"
    noise.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(noise / f"n{i}.png")
    with pytest.raises(ReconError, match="none of the 5 images could be registered: no two images share"):
        process(noise, log=None)
    left = noise / "recon"
    assert not (left / "transforms.json").exists() and not (left / "sparse").exists() and not (left / "images").exists()
    assert not needs_processing(left)
    with pytest.raises(ReconError):
        load_scene(left)

    # Near-identical photos (same viewpoint, sensor noise): no parallax.
    still = tmp_path / "still"
    still.mkdir()
    a = np.asarray(Image.open(photos / "frame_00005.png")).astype(np.float32)
    for i in range(4):
        Image.fromarray(np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)).save(still / f"s{i}.png")
    with pytest.raises(ReconError, match="almost no parallax"):
        process(still, log=None)


def test_video_frames_register(tmp_path):
    import scenes

    pytest.importorskip("av")
    vid = scenes.render_video("turntable", tmp_path / "orbit.mp4", seconds=10, fps=6, res=256)
    out = process(vid, log=None, video_frames=40)
    assert out == tmp_path / "orbit_recon"
    rep = json.loads((out / "sfm_report.json").read_text())
    n, reg = rep["images_total"], rep["images_registered"]
    print(f"video: {reg}/{n} selected frames registered ({rep['matcher']} matcher)")
    assert rep["inputs"]["video_frames"] == n and n >= 30 and rep["matcher"] == "sequential"
    assert reg >= 0.9 * n
    # Poses agree with the renderer's cameras (frame names carry the video frame index).
    gt = json.loads((tmp_path / "orbit.transforms.json").read_text())
    from recon.scene.conventions import opengl_to_opencv

    G = {f["frame_index"]: opengl_to_opencv(np.array(f["transform_matrix"])) for f in gt["frames"]}
    est = load_scene(out)
    E = {int(Path(f.image_path).stem.rsplit("_", 1)[1]): f.camera.c2w for f in est.frames}
    k = sorted(E)
    r = pose_errors(np.stack([E[i] for i in k]), np.stack([G[i] for i in k]))
    print(f"video: median rotation error {np.median(r['rot_err_deg']):.3f} deg, "
          f"median centre error {100 * np.median(r['center_err']) / r['extent']:.3f}%")
    assert np.median(r["rot_err_deg"]) < 1.5 and np.median(r["center_err"]) < 0.02 * r["extent"]


def test_sceaux_castle_registers_all(tmp_path):
    if not SCEAUX.is_dir():
        pytest.skip(f"shared data not found at {SCEAUX}")
    out = process(SCEAUX, tmp_path / "sceaux", log=None, max_size=1000, output_max_size=1000)
    rep = json.loads((out / "sfm_report.json").read_text())
    print(f"sceaux_castle @1000 px: {rep['images_registered']}/11, {rep['mean_reprojection_error_px']:.3f} px")
    assert rep["images_registered"] == 11 and rep["unregistered"] == []
    assert rep["mean_reprojection_error_px"] <= 1.0
    cam = rep["cameras"][0]
    assert cam["width"] == 2832 and abs(cam["params"][0] - 2905.9) / 2905.9 < 0.05  # f near the known value
    scene = load_scene(out)
    assert max(scene.frames[0].camera.width, scene.frames[0].camera.height) <= 1000
    assert not (SCEAUX / "recon").exists()
