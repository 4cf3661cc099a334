"""The capture-adapted training budget (recon.train.budget): the fast preset's steps follow the number
of training views, the quality preset's Gaussian cap follows the pixel count and its steps the time
budget; the figures reach the log and run.json, and options given on the command line win."""

from __future__ import annotations

import json

import pytest

from recon.train import budget


def test_fast_steps_follow_the_training_views():
    # sceaux (9 views) gets a short run, dense captures (fox 58, beer_can 62, lego 100) the preset's 5,000.
    assert budget.plan("fast", 9, 640 * 472, 5000, 120_000)["steps"] == 900
    for views in (58, 62, 100, 292):
        b = budget.plan("fast", views, 360 * 640, 5000, 120_000)
        assert b["steps"] == 5000 and b["max_gaussians"] == 120_000
    assert budget.plan("fast", 2, 100, 5000, 120_000)["steps"] == budget.FAST_MIN_STEPS
    # Never more than the preset's steps, monotone in the views.
    s = [budget.plan("fast", v, 1e5, 5000, 120_000)["steps"] for v in range(1, 80)]
    assert s == sorted(s) and max(s) == 5000


def test_quality_cap_follows_pixels_and_steps_follow_the_time_budget():
    def plan(views, px, minutes=None, dev="cpu", longest=None):
        return budget.plan("quality", views, px, 30_000, 1_000_000, minutes, dev, longest)

    # Without a time budget: the preset's steps; the cap grows with the training pixels, within its bounds.
    small, fox, huge = plan(20, 200 * 200), plan(58, 900 * 1600), plan(2000, 1600 * 1200)
    assert small["steps"] == fox["steps"] == huge["steps"] == 30_000
    assert small["max_gaussians"] == budget.QUALITY_CAP_MIN
    assert fox["max_gaussians"] == round(58 * 900 * 1600 / budget.QUALITY_PX_PER_GAUSSIAN)
    assert huge["max_gaussians"] == budget.QUALITY_CAP_MAX
    # A 60-minute budget on the CPU: 1,600 px leaves fewer than 10,000 steps even at the smallest cap,
    # so the resolution comes down (not below the fast preset's 640 px) until they fit, and they do.
    b = plan(58, 900 * 1600, 60, longest=1600)
    assert budget.QUALITY_MIN_SIDE <= b["max_side"] < 1600
    assert b["max_gaussians"] >= budget.QUALITY_CAP_MIN
    assert budget.QUALITY_MIN_STEPS <= b["steps"] < 30_000
    px = 900 * 1600 * (b["max_side"] / 1600) ** 2
    assert b["steps"] * budget.step_seconds("cpu", px, budget.MEAN_FILL * b["max_gaussians"]) <= 60 * 60 + 1
    # Where the pixels fit, the cap shrinks first: 1,000 px views, 90 minutes.
    m = plan(58, 1000 * 560, 90, longest=1000)
    assert "max_side" not in m and budget.QUALITY_CAP_MIN < m["max_gaussians"] < plan(58, 1000 * 560)["max_gaussians"]
    assert m["steps"] == budget.QUALITY_MIN_STEPS or m["steps"] == budget.QUALITY_MIN_STEPS + 1
    # More time: more steps, a larger cap and a higher resolution (monotone), up to the pixel cap and
    # the preset's steps.
    figs = [plan(58, 900 * 1600, m, longest=1600) for m in (30, 60, 120, 240, 100_000)]
    steps = [f["steps"] for f in figs]
    assert steps[0] < budget.QUALITY_MIN_STEPS <= min(steps[1:]) and max(steps[1:4]) < 1.01 * budget.QUALITY_MIN_STEPS
    assert [f["max_gaussians"] for f in figs] == sorted(f["max_gaussians"] for f in figs)
    sides = [f.get("max_side", 1600) for f in figs]
    assert sides == sorted(sides)
    assert figs[-1]["steps"] == 30_000 and figs[-1]["max_gaussians"] == fox["max_gaussians"] and sides[-1] == 1600
    # A GPU fits the whole preset in an hour.
    g = plan(58, 900 * 1600, 60, "cuda", longest=1600)
    assert g["steps"] == 30_000 and g["max_gaussians"] == fox["max_gaussians"] and "max_side" not in g
    # So tight a budget that nothing fits 10,000 steps: the fast preset's resolution and cap, fewer steps.
    t = plan(58, 900 * 1600, 5, longest=1600)
    assert t["max_gaussians"] == budget.QUALITY_CAP_MIN and t["max_side"] == budget.QUALITY_MIN_SIDE
    assert 0 < t["steps"] < budget.QUALITY_MIN_STEPS
    # Presets without a rule keep their figures.
    assert budget.plan("mcmc", 9, 1e5, 5000, 120_000)["steps"] == 5000


def test_explicit_options_are_found():
    assert budget.explicit_options(["s/", "--steps", "7", "--max-gaussians=9", "--preset", "quality"]) == {
        "steps", "max_gaussians", "preset"}


def test_train_applies_logs_and_records_the_budget(tmp_path, capsys):
    import scenes
    from recon.commands.train import parse
    from recon.scene.readers import load_scene

    scenes.synth("turntable", tmp_path / "tt", views=12, res=32)
    sc = load_scene(tmp_path / "tt")
    n = len(sc.indices("train"))
    # The fast preset's steps follow the views when --steps is not given ...
    req = parse([str(tmp_path / "tt"), "--preset", "fast"])
    req.cfg.downscale = 1.0
    b = budget.apply(req.cfg, sc, set(req.explicit), "cpu", log=lambda m: None)
    assert req.cfg.steps == b["steps"] == max(budget.FAST_MIN_STEPS, budget.FAST_STEPS_PER_VIEW * n)
    # ... the quality preset's cap and steps follow pixels and --max-minutes ...
    req = parse([str(tmp_path / "tt"), "--preset", "quality", "--max-minutes", "1", "--downscale", "1"])
    b = budget.apply(req.cfg, sc, set(req.explicit), "cpu", log=lambda m: None)
    assert req.cfg.model.max_gaussians == b["max_gaussians"] == budget.QUALITY_CAP_MIN
    assert req.cfg.steps == b["steps"] < 30_000
    # ... and a real run logs the figures and keeps them in run.json, with --steps as given.
    from recon.commands.train import cli

    assert cli([str(tmp_path / "tt"), "--steps", "3", "--out", str(tmp_path / "run"), "--threads", "1",
                "--checkpoint-every", "0"]) == 0
    log = capsys.readouterr().out
    assert "[train] budget (fast preset): 3 steps, cap 120,000 Gaussians" in log and "--steps as given" in log
    rec = json.loads((tmp_path / "run" / "run.json").read_text())["budget"]
    assert rec["steps"] == 3 and rec["given"] == ["--steps"] and rec["views"] == n
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["steps"] == 3
