"""`recon export`: every format from a run folder, options, provenance, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from exporters import axes as ax
from exporters.export import FORMAT_FILES
from exporters.gltf_splat import read_glb
from exporters.ply import read_ply, read_ply_comments
from exporters.spz import decode_spz, quantisation_bounds
from exporters.splat import decode_splat
from recon.testing.gaussians import random_splats
from recon.testing.runs import orbit_cameras, write_run
from recon.cli import run as cli

pxr = pytest.importorskip("pxr", reason="usd-core is not installed")


@pytest.fixture
def run_dir(tmp_path):
    s = random_splats(3000, sh_degree=3, seed=16)
    return write_run(tmp_path / "3dgs-20260101-000000", s, orbit_cameras(6, up=(0, 0, 1)), config={"scene": "/data/garden", "iterations": 7})


def test_all_formats(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["export", str(run_dir), "--format", "all", "--out", str(out), "--mesh-texture-size", "256"]) == 0
    captured = capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted({n for files in FORMAT_FILES.values() for n in files})  # no temp files left
    assert "| mesh-usdz | mesh.usdz |" in captured.out and "mesh: " in captured.err
    assert "| splat-glb | splats.glb |" in captured.out and "recon export" in captured.out
    assert "scene up +z (from 6 cameras)" in captured.err

    src = read_ply(run_dir / "splats.ply")
    ply = read_ply(out / "splats.ply")
    for k in src:  # default axes keep the PLY in the training frame, bit-exact
        assert torch.equal(ply[k], src[k]), k
    R = ax.axes_rotation("+z", "y-up")
    glb = read_glb(out / "splats.glb")
    np.testing.assert_allclose(glb["means"].numpy(), src["means"].numpy() @ R.T, atol=1e-6)
    spz, header = decode_spz((out / "splats.spz").read_bytes())
    assert header["sh_degree"] == 3
    assert np.abs(spz["means"].numpy() - src["means"].numpy() @ R.T).max() <= quantisation_bounds()["means"]
    assert len(decode_splat((out / "splats.splat").read_bytes())["means"]) == 3000

    from exporters.usd_splat import read_usd, validate_usd

    assert validate_usd(out / "splats.usdc") == [] and validate_usd(out / "cameras.usda") == []
    usd = read_usd(out / "splats.usdc")
    np.testing.assert_allclose(usd["means"].numpy(), glb["means"].numpy(), atol=1e-6)

    cams = json.loads((out / "cameras.json").read_text())
    assert len(cams["cameras"]) == 6 and cams["frame"] == "scene"
    np.testing.assert_allclose(np.array(cams["export_transforms"]["splat-glb"])[:3, :3], R)
    # the same provenance everywhere
    prov = cams["provenance"]
    assert prov["source"] == "/data/garden" and prov["method"] == "3dgs" and len(prov["config_hash"]) == 16
    assert f"recon config_hash: {prov['config_hash']}" in read_ply_comments(out / "splats.ply")
    from exporters.gltf_splat import parse_glb

    assert parse_glb((out / "splats.glb").read_bytes())[0]["asset"]["extras"]["recon"]["config_hash"] == prov["config_hash"]
    stage = pxr.Usd.Stage.Open(str(out / "splats.usdc"))
    assert stage.GetRootLayer().customLayerData["recon"]["source"] == "/data/garden"


def test_options(run_dir, tmp_path):
    out = tmp_path / "o"
    argv = ["export", str(run_dir), "--format", "ply,splat-glb", "--out", str(out), "--sh-degree", "1"]
    argv += ["--min-opacity", "0.5", "--crop", "-1", "-1", "-1", "1", "1", "1", "--scale", "0.5", "--axes", "y-up"]
    assert cli(argv) == 0
    src = read_ply(run_dir / "splats.ply")
    keep = (torch.sigmoid(src["opacities"]) >= 0.5) & (src["means"].abs() <= 1).all(1)
    ply = read_ply(out / "splats.ply")
    assert len(ply["means"]) == int(keep.sum()) > 0
    assert ply["shN"].shape[1] == 3  # degree 1
    R = ax.axes_rotation("+z", "y-up")
    np.testing.assert_allclose(ply["means"].numpy(), 0.5 * src["means"][keep].numpy() @ R.T, atol=1e-6)
    np.testing.assert_allclose(ply["scales"].numpy(), src["scales"][keep].numpy() + np.log(0.5), atol=1e-6)
    assert read_glb(out / "splats.glb")["shN"].shape[1] == 3
    assert sorted(p.name for p in out.iterdir()) == ["splats.glb", "splats.ply"]


def test_default_out_and_explicit_up(run_dir, capsys):
    assert cli(["export", str(run_dir), "--format", "spz", "--up=-y"]) == 0
    assert (run_dir / "export" / "splats.spz").is_file()
    assert "scene up -y (given)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["export", "{tmp}/missing"], "does not exist"),
        (["export", "{tmp}"], "no splats.ply"),
        (["export", "{run}", "--format", "ply,gltf"], "unknown export format 'gltf'"),
        (["export", "{run}", "--format", "splat-glb", "--axes", "z-up"], "glTF is right-handed and +Y up"),
        (["export", "{run}", "--min-opacity", "1.5"], "--min-opacity"),
        (["export", "{run}", "--crop", "1", "1", "1", "0", "0", "0"], "--crop"),
        (["export", "{run}", "--camera-path", "{tmp}/nope.json"], "nope.json: no such file"),
        (["export", "{run}", "--format", "mesh-obj", "--mesh-faces", "0"], "--mesh-faces must be a face budget"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [a.format(tmp=empty, run=run_dir) for a in argv]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recon export: error:") and message in err
    assert len(err.splitlines()) == 1
    assert not (run_dir / "export").exists()  # nothing written


def test_camera_path_option(run_dir, tmp_path):
    poses, K = orbit_cameras(5, up=(0, 0, 1))
    path = {"fps": 10, "width": 64, "height": 48, "frames": [{"c2w": p.tolist(), "K": K.tolist()} for p in poses]}
    (tmp_path / "path.json").write_text(json.dumps(path))
    out = tmp_path / "c"
    assert cli(["export", str(run_dir), "--format", "cameras", "--out", str(out), "--camera-path", str(tmp_path / "path.json")]) == 0
    doc = json.loads((out / "cameras.json").read_text())
    assert doc["camera_path"]["fps"] == 10 and len(doc["camera_path"]["frames"]) == 5
    stage = pxr.Usd.Stage.Open(str(out / "cameras.usda"))
    assert stage.GetPrimAtPath("/World/CameraPath").IsValid() and stage.GetEndTimeCode() == 4


def test_reads_the_trainers_run_layout(tmp_path):
    """recon train's run folder: provenance in PLY comments, nested config, cameras with splits."""
    from exporters.ply import write_ply

    run = tmp_path / "run"
    run.mkdir()
    s = random_splats(500, sh_degree=2)
    prov = {"source": "/scenes/lego", "method": "splat", "config_hash": "0123456789ab", "recon_version": "0.0.9", "date": "2026-01-02T03:04:05"}
    write_ply(s, run / "splats.ply", comments=[f"{k}: {v}" for k, v in prov.items()])
    (run / "config.json").write_text(json.dumps({"method": "splat", "steps": 10, "splat": {"sh_degree": 2, "antialiased": True}}))
    poses, K = orbit_cameras(4, up=(0, 0, 1))
    cams = [{"name": f"r_{i}", "split": "train", "width": 64, "height": 48, "K": K.tolist(), "c2w": p.tolist()} for i, p in enumerate(poses)]
    (run / "cameras.json").write_text(json.dumps({"convention": "OpenCV camera-to-world", "cameras": cams}))
    out = tmp_path / "out"
    assert cli(["export", str(run), "--format", "spz,cameras", "--out", str(out)]) == 0
    _, header = decode_spz((out / "splats.spz").read_bytes())
    assert header["antialiased"] and header["sh_degree"] == 2
    doc = json.loads((out / "cameras.json").read_text())
    assert [c["name"] for c in doc["cameras"]] == ["r_0", "r_1", "r_2", "r_3"]
    p = doc["provenance"]
    assert (p["source"], p["method"], p["config_hash"]) == ("/scenes/lego", "splat", "0123456789ab")
    assert p["trained_with"] == "0.0.9" and p["trained_at"] == "2026-01-02T03:04:05" and p["up"] == "+z"


def test_outputs_never_replace_the_runs_own_files(run_dir, capsys):
    before = (run_dir / "splats.ply").read_bytes(), (run_dir / "cameras.json").read_bytes()
    for _ in range(2):  # an earlier export in RUN/export is an output: replaced
        assert cli(["export", str(run_dir), "--format", "ply,cameras"]) == 0
    assert cli(["export", str(run_dir), "--out", str(run_dir), "--format", "spz"]) == 0  # a new file: fine
    capsys.readouterr()
    assert cli(["export", str(run_dir), "--out", str(run_dir), "--format", "ply", "--min-opacity", "0.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "splats.ply" in err and "input of this export" in err
    # The splats.spz now in the run folder was not written by this export: not replaced either.
    assert cli(["export", str(run_dir), "--out", str(run_dir), "--format", "spz"]) == 2
    assert "splats.spz, a file of the run folder" in capsys.readouterr().err
    assert ((run_dir / "splats.ply").read_bytes(), (run_dir / "cameras.json").read_bytes()) == before
