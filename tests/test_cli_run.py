"""The run cycle through the real commands on a small synthetic scene: `recon train` with bare
boolean flags -> `recon eval` from another working folder -> `--resume --steps` trains exactly the
added steps -> `recon export` -> `recon render --split test` -> the viewer's run loader finds every
training image; changed options on resume are refused with one line and exit 2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import scenes
from recon.cli import run as recon


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return scenes.synth("turntable", tmp_path_factory.mktemp("cli-scene"), views=16, res=48)


FAST = ["--sh-degree", "1", "--init-num-points", "3000", "--refine-start", "30", "--refine-every", "30",
        "--max-gaussians", "8000", "--checkpoint-every", "20", "--log-every-seconds", "1e9"]


def test_train_eval_resume_export_render_view(scene_dir, tmp_path, monkeypatch, capsys):
    from recon.run import RunFolder
    from viewer.run import open_run

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # A scene path relative to the training folder: the run must still work from anywhere else.
    rel_scene = os.path.relpath(scene_dir, work)
    assert recon(["train", rel_scene, "--out", "run", "--steps", "60", "--pose-opt", "--appearance"] + FAST) == 0
    run = work / "run"
    rf = RunFolder.open(run)
    assert rf.status == "done" and rf.method == "splat"
    assert rf.manifest["scene"]["absolute"] == str(scene_dir.resolve())
    assert (run / rf.manifest["scene"]["relative"]).resolve() == scene_dir.resolve()
    cfg = rf.config()
    assert cfg.model.pose_opt and cfg.model.appearance and cfg.steps == 60
    m1 = json.loads((run / "metrics.json").read_text())
    assert m1["steps"] == 60 and m1["split"] == "test" and "pose_refinement" in m1
    cams = json.loads((run / "cameras.json").read_text())
    assert cams["format"] == "recon-cameras"
    train_cams = [c for c in cams["cameras"] if c["split"] == "train"]
    assert train_cams and all("c2w_input_opencv" in c for c in train_cams)

    # eval from a different working folder finds the scene; the score is the one training wrote.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert recon(["eval", str(run)]) == 0
    m2 = json.loads((run / "metrics.json").read_text())
    assert m2["psnr"] == pytest.approx(m1["psnr"], abs=1e-6)
    assert m2["pose_refinement"] == m1["pose_refinement"]

    # --resume --steps N trains exactly the added steps (the checkpoint holds the step count).
    capsys.readouterr()
    assert recon(["train", str(scene_dir), "--out", str(run), "--resume", "--steps", "90"]) == 0
    assert "resumed from" in capsys.readouterr().out
    m3 = json.loads((run / "metrics.json").read_text())
    assert m3["steps"] == 90
    ck = torch.load(sorted((run / "checkpoints").glob("step_*.pt"))[-1], weights_only=False)
    assert ck["step"] == 90

    # A changed option on resume: exit 2, one line naming it, nothing trained.
    capsys.readouterr()
    assert recon(["train", str(scene_dir), "--out", str(run), "--resume", "--steps", "120", "--sh-degree", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sh-degree" in err[0] and "Traceback" not in err[0]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 90
    assert recon(["train", str(scene_dir), "--out", str(run), "--resume", "--preset", "quality"]) == 2
    # A new run over an existing one is refused too.
    assert recon(["train", str(scene_dir), "--out", str(run), "--steps", "10"]) == 2

    # export reads the run through the same reader.
    assert recon(["export", str(run), "--format", "ply,cameras", "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "splats.ply").is_file()

    # render --split test: one PNG per held-out view, named after its frame, scoring as eval did.
    from PIL import Image

    from recon.eval.metrics import psnr
    from recon.scene.readers import load_scene

    out = tmp_path / "renders"
    assert recon(["render", str(run), "--split", "test", "--out", str(out)]) == 0
    sc = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    scores = []
    for i in sc.indices("test"):
        png = out / (sc.frames[i].image_path.stem + ".png")
        pr = torch.from_numpy(np.asarray(Image.open(png), np.float32) / 255.0)
        scores.append(psnr(pr, torch.from_numpy(sc.image(i))))
    assert len(list(out.iterdir())) == len(sc.indices("test"))
    assert np.mean(scores) == pytest.approx(m3["psnr"], abs=0.1)

    # The viewer's loader finds every training image (through the scene path the run records).
    v = open_run(run)
    train = [c for c in v.cameras if c.split == "train"]
    assert len(train) == len(sc.indices("train")) and all(c.image is not None and c.image.is_file() for c in train)


def test_bare_boolean_flags_parse():
    from recon.cli import parse_only

    req = parse_only(["train", "photos/", "--pose-opt", "--max-minutes", "30"])
    assert req.cfg.model.pose_opt is True and req.cfg.max_minutes == 30
    req = parse_only(["train", "photos/", "--preset", "mcmc", "--no-pose-opt", "--antialiased"])
    assert req.cfg.model.strategy == "mcmc" and req.cfg.model.opacity_reg == 0.01 and req.cfg.model.antialiased
    # An explicit option beats the preset.
    req = parse_only(["train", "photos/", "--preset", "quality", "--sh-degree", "1", "--steps", "7"])
    assert req.cfg.model.sh_degree == 1 and req.cfg.steps == 7 and req.cfg.model.max_gaussians == 1_000_000


def test_checkpoint_hash_ignores_options_that_do_not_change_results():
    from recon.train.config import preset_config

    a, b = preset_config("splat", "fast"), preset_config("splat", "fast")
    b.threads, b.log_every_seconds, b.checkpoint_every, b.eval_views, b.steps, b.max_minutes = 1, 9.0, 7, 3, 10, 2.0
    assert a.hash() == b.hash()
    b.model.sh_degree = 1
    assert a.hash() != b.hash()
