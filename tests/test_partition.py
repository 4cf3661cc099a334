"""`recon train SCENE --partition 2x2`: the block plan (cores tile the ground plane, expanded regions
contain them, every block has views), and a tiny partitioned run on the synthetic room whose merged
model keeps every Gaussian inside exactly one block core and works with eval like any run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.errors import ReconError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    from scenes.dataset import synth

    return synth("room", tmp_path_factory.mktemp("part") / "room", views=16, res=32, seed=0)


def test_grid_spec():
    from recon.cluster.partition import parse_grid

    assert parse_grid("2x2") == (2, 2) and parse_grid("3X1") == (3, 1)
    for bad in ("1x1", "2", "0x3", "axb", "9x9"):
        with pytest.raises(ReconError, match="--partition"):
            parse_grid(bad)


def test_plan_tiles_the_ground_plane(room):
    from recon.cluster.partition import inside, make_plan, scene_points
    from recon.scene.readers import load_scene

    sc = load_scene(room, background=(1.0, 1.0, 1.0))
    pts = scene_points(sc)
    assert len(pts) > 500
    # depth back-projection lands on the room's surfaces: within the scene's bounds, in front of cameras
    plan = make_plan(sc, pts, 2, 2)
    uv = plan.ground(pts)
    hits = np.stack([inside(uv, b.core) for b in plan.blocks])
    assert (hits.sum(0) == 1).all()  # the cores tile the plane: every point in exactly one
    counts = hits.sum(1)
    assert counts.min() > 0.15 * len(pts)  # quantile splits: blocks hold comparable shares
    for b in plan.blocks:
        assert inside(uv, b.expanded)[hits[plan.blocks.index(b)]].all()
        assert b.frames and set(b.frames) <= set(sc.indices("train"))
    assert abs(float(np.dot(plan.up, [0, 0, 1]))) > 0.9  # the room is +z up


def test_partitioned_run_merges_cropped_blocks(room, tmp_path):
    pytest.importorskip("ray")
    from recon.cluster.partition import Plan, inside
    from recon.models.splats_io import read_ply
    from recon.run import RunFolder

    out = tmp_path / "merged"
    r = subprocess.run([sys.executable, "-m", "recon.cli", "train", str(room), "--out", str(out), "--steps", "240",
                        "--partition", "2x2"], capture_output=True, text=True, cwd=ROOT, timeout=240,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    plan = Plan.from_dict(json.loads((out / "partition.json").read_text())["plan"])
    g = read_ply(out / "splats.ply")
    uv = plan.ground(g["means"].numpy())
    hits = np.stack([inside(uv, b.core) for b in plan.blocks]).sum(0)
    assert len(uv) > 500 and (hits == 1).all()  # no merged Gaussian outside its block's core
    m = json.loads((out / "metrics.json").read_text())
    kept = sum(b["kept"] for b in m["partition"]["blocks"])
    assert kept == len(uv) == m["num_gaussians"]
    assert all(b["kept"] < b["gaussians"] for b in m["partition"]["blocks"])  # each block was cropped
    # the merged run is an ordinary run: its renderer reproduces the recorded held-out PSNR
    from recon.eval.evaluate import evaluate
    from recon.scene.readers import load_scene

    rf = RunFolder.open(out)
    assert rf.status == "done" and rf.method == "splat"
    sc = load_scene(rf.scene_path(), background=(1.0, 1.0, 1.0))
    res = evaluate(rf.renderer(), sc, float(rf.render_settings["downscale"]), log=lambda *_: None)
    assert res["psnr"] == pytest.approx(m["psnr"], abs=1e-3)
    from recon.eval.metrics import psnr

    const = np.mean([psnr(torch.full_like(im, float(im.mean())), im)
                     for im in (torch.from_numpy(sc.image(i)) for i in sc.indices("test"))])
    assert m["psnr"] > const + 4.0, (m["psnr"], const)
