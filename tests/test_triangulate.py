"""Points for posed scenes without points: triangulated with the poses fixed, on the true surfaces,
cached, and chosen by ``--init-points auto`` only where they help."""

from __future__ import annotations

import time

import numpy as np
import pytest

import scenes
from recon.scene.readers import load_scene
from recon.sfm.triangulate import triangulate
from recon.train.init_points import plain_background, prepare_points


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    out = tmp_path_factory.mktemp("room")
    scenes.synth("room", out, views=16, res=192)
    return out


def test_triangulated_points_lie_on_the_true_surfaces(room, tmp_path):
    sc = load_scene(room, background=(1, 1, 1))
    assert sc.points is None
    train = sc.indices("train")
    tri = triangulate(sc, train, log=lambda s: None, cache=tmp_path / "cache")
    assert tri is not None and not tri.report["cached"]
    pts = tri.points
    # Project into every held-out view and compare each point's depth with the true depth map there.
    rel = []
    for i in sc.indices("test"):
        cam = sc.camera(i)
        uv, z = cam.project(pts)
        gt = sc.depth(i)
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        u, v = uv[ok].astype(int).T
        d = gt[v, u]
        good = d > 0
        rel.append(np.abs(z[ok][good] - d[good]) / d[good])
    rel = np.concatenate(rel)
    print(f"{len(pts)} points; depth error vs truth in held-out views: median {np.median(rel):.4f}, "
          f"90th percentile {np.percentile(rel, 90):.4f}")
    # Measured: 1,130 points, median 0.65 %, 90th percentile 4.5 % (occlusion edges at nearest-pixel lookup).
    assert len(pts) > 500
    assert np.median(rel) < 0.01
    assert np.percentile(rel, 75) < 0.03

    t0 = time.perf_counter()
    again = triangulate(sc, train, log=lambda s: None, cache=tmp_path / "cache")
    assert again.report["cached"] and time.perf_counter() - t0 < 2.0
    assert np.array_equal(again.points, pts)


def test_auto_init_triangulates_only_real_looking_captures(room, tmp_path_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("RECON_WORK_DIR", str(tmp_path / "work"))
    turn = tmp_path_factory.mktemp("turn")
    scenes.synth("turntable", turn, views=8, res=64)
    ts = load_scene(turn, background=(1, 1, 1))
    assert plain_background(ts, ts.indices("train"))
    rec = prepare_points(ts, "auto", ts.indices("train"), log=lambda s: None)
    assert rec["source"] == "random" and ts.points is None

    rs = load_scene(room, background=(1, 1, 1))
    assert not plain_background(rs, rs.indices("train"))
    rec = prepare_points(rs, "auto", rs.indices("train"), log=lambda s: None)
    assert rec["source"] == "triangulated" and len(rs.points) == rec["points"] > 500
    # The cache lives in the work folder, never in the scene folder.
    assert (tmp_path / "work").is_dir() and not (room / "recon").exists()
    rs2 = load_scene(room, background=(1, 1, 1))
    assert prepare_points(rs2, "random", rs2.indices("train"), log=lambda s: None)["source"] == "random"
    assert rs2.points is None
