"""`recon train SCENE --partition 2x2`: the block plan (cores tile the ground plane, expanded regions
contain them), views assigned by the footprint of each block in them, the step split and the block
schedules, the frozen context culled to the block's views, and a tiny partitioned run on the
synthetic room (coarse model, blocks on top of it, merge) whose merged model keeps every Gaussian
inside exactly one block core, beats the coarse model it started from and a PSNR bar the old
blocks-alone training missed, and works with eval like any run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    plan = make_plan(sc, pts, 2, 2)
    uv = plan.ground(pts)
    hits = np.stack([inside(uv, b.core) for b in plan.blocks])
    assert (hits.sum(0) == 1).all()  # the cores tile the plane: every point in exactly one
    counts = hits.sum(1)
    assert counts.min() > 0.15 * len(pts)  # quantile splits: blocks hold comparable shares
    for k, b in enumerate(plan.blocks):
        assert inside(uv, b.expanded)[hits[k]].all()
        assert inside(uv, b.expanded).sum() > hits[k].sum()  # the expansion reaches into the neighbours
    assert abs(float(np.dot(plan.up, [0, 0, 1]))) > 0.9  # the room is +z up


def _strip_plan():
    """Two blocks split at u = 0 on the z = 0 plane (x = u, y = v), each core grown by 0.5."""
    from recon.cluster.partition import Block, Plan

    inf = float("inf")
    return Plan([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                [Block(0, 0, [-inf, 0, -inf, inf], [-inf, 0.5, -inf, inf]),
                 Block(1, 0, [0, inf, -inf, inf], [-0.5, inf, -inf, inf])])


def _down_camera(x: float, h: float = 2.0, size: int = 32):
    """A camera ``h`` above (x, 0, 0) looking straight down, 90 degree field of view."""
    from recon.scene.cameras import Camera, intrinsics_from_fov
    from recon.scene.conventions import look_at_c2w

    c2w = look_at_c2w(np.array([x, 0.0, h]), np.array([x, 0.0, 0.0]), up=(0.0, 1.0, 0.0))
    return Camera(K=intrinsics_from_fov(np.pi / 2, size, size), width=size, height=size, c2w=c2w)


def test_views_go_to_the_blocks_their_pixels_show():
    from recon.cluster.partition import assign_views, block_cover

    plan = _strip_plan()
    covers = []
    for x in (-5.0, 5.0, 0.0, 1.5):  # footprints: [-7, -3], [3, 7], [-2, 2], [-0.5, 3.5]
        cam = _down_camera(x)
        depth = np.full((cam.height, cam.width), 2.0)
        covers.append(block_cover(plan, cam, depth))
    covers = np.array(covers)
    np.testing.assert_allclose(covers[0], [1.0, 0.0])
    np.testing.assert_allclose(covers[1], [0.0, 1.0])
    np.testing.assert_allclose(covers[2], [0.625, 0.625], atol=0.04)  # the expanded regions overlap by 1 of 4
    np.testing.assert_allclose(covers[3], [0.25, 1.0], atol=0.04)
    # empty pixels (no depth, or transparent) count for no block
    cam = _down_camera(5.0)
    alpha = np.zeros((32, 32))
    alpha[:, :16] = 1.0
    np.testing.assert_allclose(block_cover(plan, cam, np.full((32, 32), 2.0), alpha), [0.0, 0.5])
    assign_views(plan, [10, 11, 12, 13], covers, min_cover=0.3)
    assert plan.blocks[0].frames == [10, 12] and plan.blocks[1].frames == [11, 12, 13]
    # a block no view shows enough of still gets the views that show most of it
    assign_views(plan, [10, 11], np.array([[0.05, 0.9], [0.02, 0.95]]), min_cover=0.3)
    assert plan.blocks[0].frames == [10] and plan.blocks[1].frames == [10, 11]
    with pytest.raises(ReconError, match="seen by no training view"):
        assign_views(plan, [10, 11], np.array([[0.0, 0.9], [0.0, 0.95]]))


def test_steps_add_up_and_blocks_play_the_whole_schedule():
    from recon.cluster.partition import BlockSplatMethod, split_steps

    coarse, per = split_steps(2000, [50, 32, 60, 34], coarse_fraction=0.3)
    assert coarse == 600 and coarse + sum(per) == 2000
    assert per[2] > per[0] > per[3] > per[1]  # in proportion to the views
    assert abs(per[2] / per[1] - 60 / 32) < 0.05
    c, p = split_steps(240, [14] * 4)
    assert c + sum(p) == 240 and len(set(p)) == 1
    # block step b plays the whole run's steps offset .. offset + span; every densification step of
    # the whole run (multiples of refine_every) is played exactly once, the opacity resets too
    for steps in (397, 255, 100):
        blk = SimpleNamespace(offset=600, span=1400, total=2000, cfg=SimpleNamespace(steps=steps),
                              sc=SimpleNamespace(refine_every=100, reset_every=500))
        g = [BlockSplatMethod.global_step(blk, b) for b in range(steps)]
        assert g[0] == 600 and max(g) < 2000 and all(b > a for a, b in zip(g, g[1:]))
        assert [s for s in g if s % 100 == 0] == list(range(600, 2000, 100))


def test_context_is_culled_to_the_views():
    from recon.cluster.partition import in_some_view

    cam = _down_camera(0.0, h=2.0)  # sees [-2, 2] x [-2, 2] on z = 0
    means = torch.tensor([[0.0, 0.0, 0.0], [1.5, -1.5, 0.0], [6.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 5.0],
                          [0.0, 0.0, 1.9]])
    scales = torch.log(torch.tensor([0.01, 0.01, 0.01, 2.0, 0.01, 0.2]))[:, None].expand(-1, 3)
    # in view; in a corner; off to the side; off to the side but large enough to reach in; behind
    # the camera; right at the camera
    assert in_some_view(means, scales, [cam]).tolist() == [True, True, False, True, False, True]
    assert in_some_view(means, scales, [cam, _down_camera(6.0)]).tolist() == [True, True, True, True, False, True]


_HOLD_CLUSTER = """
import sys, ray
ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("extra, says", [
    (["--partition", "2x2", "--address", "127.0.0.1:{port}"], "nothing answers at 127.0.0.1:{port}"),
    (["--partition", "2x2", "--address", "head:notaport"], "'notaport' is not a port"),
    (["--address", "127.0.0.1:{port}"], "--address names a Ray cluster for --partition"),
])
def test_address_fails_fast_with_one_line(room, tmp_path, extra, says, capsys):
    """A wrong --address says so in one line within seconds (not after Ray's two-minute connect
    timeout, nor after the coarse model trained), and without --partition it is refused."""
    import time

    from recon.cli import run as cli

    port = _closed_port()
    extra = [a.format(port=port) for a in extra]
    t0 = time.monotonic()
    rc = cli(["train", str(room), "--out", str(tmp_path / "r"), "--steps", "50", *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("recon train: error: ") and says.format(port=port) in last, last
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "r" / "blocks").exists()


def test_partitioned_run_merges_cropped_blocks(room, tmp_path):
    pytest.importorskip("ray")
    from recon.cluster.partition import Plan, inside
    from recon.eval.evaluate import evaluate
    from recon.models.splats import SplatRenderer
    from recon.models.splats_io import read_ply
    from recon.run import RunFolder
    from recon.scene.readers import load_scene

    out = tmp_path / "merged"
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    # The blocks train on a cluster that was already running (--address), as on a real cluster: a
    # separate driver holds a loopback-only local cluster and prints its address (recon batch's
    # tests cover the cluster recon starts itself).
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_CLUSTER], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                              text=True, cwd=ROOT, env=env)
    try:
        address = holder.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        r = subprocess.run([sys.executable, "-m", "recon.cli", "train", str(room), "--out", str(out), "--steps", "240",
                            "--partition", "2x2", "--address", address], capture_output=True, text=True, cwd=ROOT,
                           timeout=300, env=env)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"cluster at {address}" in r.stdout + r.stderr
    plan = Plan.from_dict(json.loads((out / "partition.json").read_text())["plan"])
    g = read_ply(out / "splats.ply")
    uv = plan.ground(g["means"].numpy())
    hits = np.stack([inside(uv, b.core) for b in plan.blocks]).sum(0)
    assert len(uv) > 500 and (hits == 1).all()  # no merged Gaussian outside its block's core
    m = json.loads((out / "metrics.json").read_text())
    part = m["partition"]
    kept = sum(b["kept"] for b in part["blocks"])
    assert kept == len(uv) == m["num_gaussians"]
    assert all(b["kept"] < b["gaussians"] for b in part["blocks"])  # each block was cropped
    assert part["coarse_steps"] + sum(b["steps"] for b in part["blocks"]) == m["steps"] == 240
    assert all(b.frames for b in plan.blocks)
    # the merged run is an ordinary run: its renderer reproduces the recorded held-out PSNR
    rf = RunFolder.open(out)
    assert rf.status == "done" and rf.method == "splat"
    sc = load_scene(rf.scene_path(), background=(1.0, 1.0, 1.0))
    res = evaluate(rf.renderer(), sc, float(rf.render_settings["downscale"]), log=lambda *_: None)
    assert res["psnr"] == pytest.approx(m["psnr"], abs=1e-3)
    # the blocks improved on the coarse model they started from (measured: 21.86 vs 20.65 dB), and
    # the merged model clears a bar that blocks trained alone from the points missed (19.79 dB;
    # one model with the same 240 steps: 24.00 dB; every camera of the room sees every block)
    coarse = evaluate(SplatRenderer(read_ply(out / "blocks" / "coarse" / "splats.ply")), sc, 1.0,
                      log=lambda *_: None)["psnr"]
    assert m["psnr"] > coarse + 0.6, (m["psnr"], coarse)
    assert m["psnr"] > 21.0, m["psnr"]


def test_auto_grid_follows_the_views_and_the_extent():
    from recon.cluster.partition import auto_grid, parse_grid

    assert parse_grid("auto") is None and parse_grid(" AUTO ") is None
    rng = np.random.default_rng(0)

    def grid(extent, views):
        return auto_grid(rng.uniform(0, 1, (4000, 2)) * extent, views)

    assert grid((24, 8), 84) == (2, 1)  # few views: the fewest blocks, along the long axis
    assert grid((24, 8), 600) == (4, 1)
    assert grid((10, 10), 600) == (2, 2)
    assert grid((100, 10), 900) == (6, 1)
    assert grid((10, 10), 20000) == (8, 8)  # at most 64 blocks
    assert grid((5, 5), 35) == (2, 1)
