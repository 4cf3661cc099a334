"""SfM helpers without running SfM: frames, Sim(3) alignment, pairing, diagnosis, folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from recon.errors import ReconError
from recon.scene.conventions import qvec_to_rotmat
from recon.sfm import needs_processing, process
from recon.sfm.colmap import choose_matcher, initial_params, loop_pairs
from recon.sfm.normalize import normalization, pose_errors, sim3_matrix, transform_c2w, umeyama
from recon.sfm.options import SfmOptions
from recon.sfm.report import describe_runs, diagnose


def _look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV camera-to-world looking from ``eye`` at ``target`` with image-up along ``up``."""
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], 1)
    c2w[:3, 3] = eye
    return c2w


def _orbit(n=12, r=3.0, h=1.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([_look_at(np.array([r * np.cos(t), r * np.sin(t), h]), [0, 0, 0]) for t in a])


def test_normalization_gravity_up_centre_and_scale():
    gt = _orbit()
    rng = np.random.default_rng(0)
    R = qvec_to_rotmat(rng.normal(size=4))
    M = sim3_matrix(7.5, R, [1.0, -2.0, 3.0])
    sfm = transform_c2w(M, gt)  # an arbitrary SfM frame
    assert np.allclose(np.linalg.det(sfm[:, :3, :3]), 1.0)
    n = normalization(sfm)
    out = transform_c2w(n.matrix, sfm)
    up = -out[:, :3, 1].mean(0)
    assert np.allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    assert np.allclose(out[:, :3, 3].mean(0), 0, atol=1e-9)
    assert np.linalg.norm(out[:, :3, 3], axis=1).max() == pytest.approx(1.0)
    # The orbit's cameras sit at one height: after orienting they share z.
    assert np.ptp(out[:, 2, 3]) < 1e-9
    # Metric scale: the given factor, not the unit sphere.
    nm = normalization(sfm, metric_scale=2.0)
    assert nm.units == "metres" and nm.scale == 2.0
    # "focus" centres on the point every camera looks at (the origin of the GT orbit).
    nf = normalization(sfm, center="focus")
    f = transform_c2w(nf.matrix, sfm)
    look = f[:, :3, 2]
    dist = np.linalg.norm(np.cross(-f[:, :3, 3], look), axis=1)
    assert dist.max() < 1e-9


def test_umeyama_and_pose_errors_recover_a_similarity():
    gt = _orbit(20)
    rng = np.random.default_rng(1)
    R = qvec_to_rotmat(rng.normal(size=4))
    est = transform_c2w(sim3_matrix(0.3, R, [5, 6, 7]), gt)
    s, R2, t = umeyama(est[:, :3, 3], gt[:, :3, 3])
    assert s == pytest.approx(1 / 0.3)
    r = pose_errors(est, gt)
    assert r["rot_err_deg"].max() < 1e-6 and r["center_err"].max() < 1e-9
    noisy = est.copy()
    noisy[3, :3, 3] += 0.3 * 0.1  # move one camera by 0.1 GT units
    r = pose_errors(noisy, gt)
    assert np.median(r["center_err"]) < 0.02 and r["center_err"].max() > 0.05


def test_loop_pairs_and_matcher_choice():
    names = [f"v_{i:04d}.jpg" for i in range(100)]
    pairs = loop_pairs(names, overlap=10, keyframes=11)
    assert pairs and all(abs(int(a[2:6]) - int(b[2:6])) > 10 for a, b in pairs)
    assert ("v_0000.jpg", "v_0099.jpg") in pairs  # closes the loop
    assert loop_pairs(names[:8], overlap=10, keyframes=11) == []
    assert choose_matcher(50, False, SfmOptions()) == "exhaustive"
    assert choose_matcher(150, False, SfmOptions()) == "sequential"
    assert choose_matcher(20, True, SfmOptions()) == "sequential"
    assert choose_matcher(20, True, SfmOptions(matcher="exhaustive")) == "exhaustive"
    assert initial_params("OPENCV", 100, 50, 80.0) == [80.0, 80.0, 50.0, 25.0, 0, 0, 0, 0]
    with pytest.raises(ReconError):
        initial_params("THIN_PRISM", 1, 1, 1.0)


def test_diagnosis_sentences():
    names = [f"img{i:02d}.jpg" for i in range(1, 31)]
    chain = [(names[i], names[i + 1], 200, "CALIBRATED") for i in range(3)]  # 1-4 overlap
    d = diagnose(names, set(names[:4]), chain)
    assert d.startswith("only 4 of 30 images registered: little overlap between images 5–30 (img05.jpg … img30.jpg)")
    d = diagnose(names, set(), [])
    assert "none of the 30 images could be registered" in d and "no two images share" in d
    flat = [(names[i], names[j], 300, "PANORAMIC") for i in range(10) for j in range(i + 1, 10)]
    assert "no parallax" in diagnose(names, set(), flat)
    sep = chain + [(names[10], names[11], 100, "CALIBRATED")]
    d = diagnose(names, set(names[:4]), sep)
    assert "images 11–12 (img11.jpg … img12.jpg) overlap each other but not the registered images" in d
    assert describe_runs(names, [0, 2, 3]) == "images 1 (img01.jpg), 3–4 (img03.jpg … img04.jpg)"


def test_needs_processing_and_output_folder_guards(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(photos / f"{i}.png")
    assert needs_processing(photos)
    posed = tmp_path / "posed"
    posed.mkdir()
    (posed / "transforms.json").write_text(json.dumps({"frames": []}))
    assert not needs_processing(posed)
    assert not needs_processing(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not needs_processing(empty)
    # A posed scene is returned as is, without SfM and without writing anything.
    assert process(posed, log=None) == posed and not (posed / "recon").exists()
    # The output folder may not be the scene itself, a parent, or someone else's folder.
    with pytest.raises(ReconError, match="must not be the scene folder"):
        process(photos, photos, log=None)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ReconError, match="non-empty folder that recon did not write"):
        process(photos, other, log=None)
    with pytest.raises(TypeError, match="unknown SfM option"):
        process(photos, tmp_path / "o", log=None, max_sise=3)
    # Nothing usable: an error, and no output folder left behind.
    with pytest.raises(ReconError, match="empty folder"):
        process(empty, log=None)
    assert not (empty / "recon").exists()


def test_cli_registered_and_parses(tmp_path, capsys):
    from recon.cli import COMMANDS, run

    assert COMMANDS["process"][0] == "recon.sfm.cli:main"
    empty = tmp_path / "e"
    empty.mkdir()
    assert run(["process", str(empty), "--max-size", "800", "--metric-distance", "a", "b", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty folder" in err[0]


def test_read_only_photos_go_to_a_work_folder(tmp_path, monkeypatch):
    import recon.sfm.pipeline as P
    from recon.sfm import default_out_dir

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert default_out_dir(photos) == photos / "recon"  # writable: beside the photos, as before
    real = P._writable
    monkeypatch.setattr(P, "_writable", lambda d: False if tmp_path / "photos" in (d, *d.parents) else real(d))
    monkeypatch.setenv("RECON_WORK_DIR", str(tmp_path / "work"))
    out = default_out_dir(photos)
    assert out.parent == tmp_path / "work" and out.name.startswith("photos-")
    assert out == default_out_dir(photos)  # stable: a re-run finds its work
    assert needs_processing(photos)
    logs: list[str] = []
    with pytest.raises(ReconError):  # random noise does not register; what matters is where it wrote
        process(photos, log=logs.append)
    assert any("not writable" in m and str(out) in m for m in logs), logs
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # photos untouched, no recon/
    assert (out / ".recon-sfm.json").is_file() and not (out / "transforms.json").exists()
