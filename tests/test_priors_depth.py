"""Depth priors (recon/priors): a tiny random Depth Anything built from a config, saved and run by
recon's real loading and inference code (no network); robust scale/shift alignment; the SfM
fallback's accuracy against ground-truth depth; the stage's outputs, cache and bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import scenes
from recon.errors import ReconError
from recon.priors import depth as D
from recon.priors.stage import DepthStageOptions, write_depth_priors
from recon.scene.readers import load_scene
from recon.scene.writers import write_ply_points

transformers = pytest.importorskip("transformers")


def _tiny_config(kind: str = "relative"):
    bb = transformers.Dinov2Config(
        image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False,
    )
    return transformers.DepthAnythingConfig(
        backbone_config=bb, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        head_hidden_size=8, depth_estimation_type=kind, max_depth=20 if kind == "metric" else 1,
    )


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-depth-anything")
    m = transformers.DepthAnythingForDepthEstimation(_tiny_config())
    with torch.no_grad():  # a non-degenerate output: the random head's ReLU would give ~0 everywhere
        m.head.conv3.bias.fill_(1.0)
    m.save_pretrained(folder)
    return folder


def test_tiny_model_loads_and_runs_from_its_folder(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    dm = D.load_depth_model(tiny_model)
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the loading path never reaches the network
    assert dm.kind == "relative" and len(dm.fingerprint) == 16
    seen = []
    dm.model.register_forward_pre_hook(lambda mod, args, kw: seen.append(tuple(kw["pixel_values"].shape)), with_kwargs=True)
    rng = np.random.default_rng(0)
    ims = [rng.random((48, 80, 3), dtype=np.float32) for _ in range(3)]
    lines = []
    out = D.predict(dm, ims, resolution=56, batch_size=2, log=lines.append)
    assert [o.shape for o in out] == [(48, 80)] * 3 and all(o.dtype == np.float32 for o in out)
    assert all(np.isfinite(o).all() for o in out) and float(np.ptp(out[0])) > 0
    # Network input: short side ~56, aspect kept, both sides multiples of 14; two batches (2 + 1).
    assert seen == [(2, 3, 56, 98), (1, 3, 56, 98)]
    assert all(s[2] % 14 == 0 and s[3] % 14 == 0 for s in seen)
    assert D.input_size(480, 640, 518) == (518, 686) and D.input_size(10, 10, 5) == (14, 14)
    assert lines[-1].startswith("depth: 3/3 images") and "ETA" in lines[-1]
    # Deterministic, and the batch size does not change the result.
    again = D.predict(dm, ims, resolution=56, batch_size=3)
    for a, b in zip(out, again):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A metric variant loads as metric.
    mfolder = tmp_path / "metric"
    transformers.DepthAnythingForDepthEstimation(_tiny_config("metric")).save_pretrained(mfolder)
    assert D.load_depth_model(mfolder).kind == "metric"


@pytest.mark.parametrize("mode", ["inverse", "depth"])
def test_alignment_recovers_scale_and_shift_with_noise_and_outliers(mode):
    rng = np.random.default_rng(1)
    n = 3000
    z = rng.uniform(1.0, 6.0, n)  # SfM depths
    y = 1.0 / z if mode == "inverse" else z
    s_true, t_true = (0.37, 0.21) if mode == "inverse" else (2.4, 0.8)
    pred = (y - t_true) / s_true  # the network's output: an unknown affine map of y
    z_obs = z * (1.0 + 0.01 * rng.standard_normal(n))  # 1 % noise on the SfM depths
    bad = rng.random(n) < 0.10  # 10 % outliers: wrong matches anywhere in the depth range
    z_obs[bad] = rng.uniform(0.5, 12.0, bad.sum())
    al = D.fit_scale_shift(pred, z_obs, mode)
    assert abs(al.scale - s_true) / s_true < 0.01
    assert abs(al.shift - t_true) / t_true < 0.01
    assert al.inliers < n and al.inliers > 0.8 * n
    d = al.apply(pred)
    assert np.median(np.abs(d - z) / z) < 0.01
    # Plain least squares is thrown off by the same outliers (the robust fit is doing the work).
    s_ls, _ = D._lsq(pred, 1.0 / z_obs if mode == "inverse" else z_obs)
    assert abs(s_ls - s_true) / s_true > 0.02


def _scene_with_points(root: Path, name: str = "room", views: int = 8, res: int = 64, per_view: int = 300) -> tuple[Path, np.ndarray]:
    """A synthetic scene with GT depth plus sparse 'SfM' points: ``per_view`` surface points
    unprojected from each view's true depth. Returns the folder and the points' view ids."""
    src = scenes.synth(name, root / "scene", views=views, res=res)
    sc = load_scene(src)
    rng = np.random.default_rng(0)
    P, ids = [], []
    for i in range(len(sc)):
        d, cam = sc.depth(i), sc.camera(i)
        ii, jj = np.nonzero(d > 0)
        k = rng.choice(len(ii), min(per_view, len(ii)), replace=False)
        z = d[ii[k], jj[k]].astype(np.float64)
        u, v = jj[k] + 0.5, ii[k] + 0.5
        pc = np.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z, np.ones_like(z)], 1)
        P.append((pc @ cam.c2w.T)[:, :3])
        ids.append(np.full(len(z), i))
    P = np.concatenate(P)
    write_ply_points(src / "points.ply", P)
    tj = json.loads((src / "transforms.json").read_text())
    tj["ply_file_path"] = "points.ply"
    (src / "transforms.json").write_text(json.dumps(tj))
    return src, np.concatenate(ids)


@pytest.fixture(scope="module")
def posed(tmp_path_factory):
    return _scene_with_points(tmp_path_factory.mktemp("depth-priors"))[0]


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sfm_fallback_accuracy_against_ground_truth(tmp_path):
    """Leave-one-out: each view's map comes only from points seen in the *other* views, so its own
    pixels are never sampled. Measured (room, 64 px, 8 views, 300 points a view, default max_edge):
    coverage 0.958, mean relative error 0.019, median 0 (planar walls interpolate exactly in inverse depth; the error is at
    object edges)."""
    src, ids = _scene_with_points(tmp_path, views=8)
    sc = load_scene(src)
    errs, cov = [], []
    for i in range(len(sc)):
        cam, gt = sc.camera(i), sc.depth(i)
        uv, z = cam.project(sc.points[ids != i])
        keep = D.visible_points(uv, z, cam.height, cam.width)
        est = D.densify(uv[keep], z[keep], cam.height, cam.width)
        m = gt > 0
        both = m & (est > 0)
        cov.append(both.sum() / m.sum())
        errs.append(np.abs(est[both] - gt[both]) / gt[both])
    e = np.concatenate(errs)
    assert np.mean(cov) > 0.93
    assert e.mean() < 0.04 and np.median(e) < 0.01


def test_stage_writes_a_processed_scene_and_reuses_its_cache(posed, tmp_path):
    before = _tree(posed)
    out = tmp_path / "processed"
    lines = []
    r = write_depth_priors(posed, out, DepthStageOptions(model="sfm"), log=lines.append)
    n = len(load_scene(posed))
    assert r.inferred == n and r.reused == 0 and r.skipped == 0
    assert _tree(posed) == before  # the input folder is not modified
    sc = load_scene(out)
    assert len(sc) == n and all(f.depth_path is not None for f in sc.frames)
    gt_scene = load_scene(posed)
    for i in (0, n - 1):
        raw = np.load(sc.frames[i].depth_path)
        assert raw.dtype == np.float16 and raw.shape == (64, 64)
        d, gt = sc.depth(i), gt_scene.depth(i)  # the scene reader used by --depth-loss reads them
        m = (d > 0) & (gt > 0)
        assert m.mean() > 0.9 and np.median(np.abs(d[m] - gt[m]) / gt[m]) < 0.01
        assert (out / "depths_preview" / f"{sc.frames[i].image_path.stem}.png").is_file()
        assert sc.frames[i].depth_path == out / "depths" / f"{sc.frames[i].image_path.stem}.npy"
    assert json.loads((out / "depths" / "depth_report.json").read_text())["inferred"] == n
    # Re-run: nothing recomputed.
    r2 = write_depth_priors(posed, out, DepthStageOptions(model="sfm"))
    assert r2.inferred == 0 and r2.reused == n


def test_stage_with_the_tiny_model_and_its_cache(posed, tiny_model, tmp_path):
    out = tmp_path / "processed"
    opts = DepthStageOptions(model=str(tiny_model), resolution=56, batch_size=4)
    r = write_depth_priors(posed, out, opts)
    n = len(load_scene(posed))
    assert r.inferred + r.skipped == n and r.inferred > 0
    info = [f for f in r.frames if f.get("depth")]
    assert all(f["mode"] == "inverse" and f["samples"] >= 20 for f in info)
    sc = load_scene(out)
    assert sum(f.depth_path is not None for f in sc.frames) == r.inferred
    r2 = write_depth_priors(posed, out, opts)
    assert r2.inferred == 0 and r2.reused == r.inferred  # second run: no inference at all
    r3 = write_depth_priors(posed, out, DepthStageOptions(model=str(tiny_model), resolution=70, batch_size=4))
    assert r3.reused == 0  # another option: recomputed


def test_cli_process_depth_on_a_posed_scene(posed, tiny_model, tmp_path):
    from recon.cli import run

    out = tmp_path / "out"
    assert run(["process", str(posed), "--out", str(out), "--depth-model", "sfm", "--quiet"]) == 0
    sc = load_scene(out)
    assert all(f.depth_path is not None for f in sc.frames)
    assert (out / "depths_preview").is_dir()


def _one_line_error(capsys, argv) -> str:
    from recon.cli import run

    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line(posed, tiny_model, tmp_path, capsys):
    # Missing weights: say what to pass.
    with pytest.raises(ReconError, match="--depth-model sfm"):
        D.load_depth_model(tmp_path / "nowhere")
    with pytest.raises(ReconError, match="not in the local Hugging Face cache"):
        D.load_depth_model("nobody/no-such-depth-model")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReconError, match="no config.json"):
        D.load_depth_model(empty)
    # Wrong model type.
    other = tmp_path / "dinov2"
    transformers.Dinov2Model(transformers.Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)).save_pretrained(other)
    with pytest.raises(ReconError, match="'dinov2' model, not Depth Anything"):
        D.load_depth_model(other)
    # Images of mixed sizes in one batch.
    dm = D.load_depth_model(tiny_model)
    with pytest.raises(ReconError, match="mixed sizes"):
        D.predict(dm, [np.zeros((28, 28, 3), np.float32), np.zeros((28, 42, 3), np.float32)])
    # Through the CLI: one line, exit 2, before anything is written.
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["process", str(posed), "--out", str(out), "--depth"])
    assert "--depth-model" in err and "sfm" in err
    err = _one_line_error(capsys, ["process", str(posed), "--out", str(out), "--depth-model", str(tmp_path / "nowhere")])
    assert "no such folder" in err
    err = _one_line_error(capsys, ["process", str(posed), "--out", str(out), "--depth-model", str(other)])
    assert "not Depth Anything" in err
    assert not out.exists()


def test_metric_model_and_a_recon_output_updated_in_place(posed, tmp_path):
    """A metric model aligns in depth (not inverse depth); a folder recon wrote (it holds the
    `recon process` marker) gets its maps and `depth_file_path`s in place, other fields kept."""
    import shutil

    import torch

    from recon.capture.ingest import OUTPUT_MARKER

    torch.manual_seed(1)
    mfolder = tmp_path / "metric"
    m = transformers.DepthAnythingForDepthEstimation(_tiny_config("metric"))
    m.save_pretrained(mfolder)
    proc = tmp_path / "processed"
    shutil.copytree(posed, proc)
    (proc / OUTPUT_MARKER).write_text('{"written_by": "recon process"}\n')
    tj_before = json.loads((proc / "transforms.json").read_text())
    r = write_depth_priors(proc, None, DepthStageOptions(model=str(mfolder), resolution=56))
    assert r.out_dir == proc and r.inferred == len(tj_before["frames"])
    assert all(f["mode"] == "depth" for f in r.frames)
    tj = json.loads((proc / "transforms.json").read_text())
    assert [f["depth_file_path"] for f in tj["frames"]] == [f"depths/{Path(f['file_path']).stem}.npy" for f in tj["frames"]]
    assert {k: v for k, v in tj.items() if k != "frames"} == {k: v for k, v in tj_before.items() if k != "frames"}
    sc = load_scene(proc)
    assert sc.depth(0).shape == (64, 64)
