"""Inria 3DGS PLY: exact round trip, reference layout, provenance comments."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest
import torch

from exporters.ply import property_names, read_ply, read_ply_comments, write_ply
from exporters.provenance import Provenance
from recon.testing.gaussians import random_splats
from recon.errors import ReconError


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_is_bit_exact(tmp_path, degree):
    s = random_splats(777, sh_degree=degree, seed=degree)
    path = write_ply(s, tmp_path / "s.ply")
    r = read_ply(path)
    assert set(r) == set(s)
    for k in s:
        assert r[k].dtype == torch.float32
        assert r[k].shape == s[k].shape, k
        assert torch.equal(r[k], s[k]), k


def test_layout_matches_reference_3dgs(tmp_path):
    s = random_splats(50, sh_degree=3)
    path = write_ply(s, tmp_path / "s.ply")
    ply = plyfile.PlyData.read(str(path))
    assert ply.header.splitlines()[1] == "format binary_little_endian 1.0"
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    expect = (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(45)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    assert names == expect == property_names(3)
    assert all(p.val_dtype in ("f4", "float32") for p in v.properties)
    assert v.count == 50
    # f_rest channel-major: all 15 R coefficients, then G, then B
    shN = s["shN"].numpy()
    for c in range(3):
        for k in range(15):
            np.testing.assert_array_equal(v[f"f_rest_{c * 15 + k}"], shN[:, k, c])
    np.testing.assert_array_equal(v["opacity"], s["opacities"].numpy())  # logit, as stored
    np.testing.assert_array_equal(v["scale_1"], s["scales"][:, 1].numpy())  # log
    np.testing.assert_array_equal(v["rot_0"], s["quats"][:, 0].numpy())  # w first
    np.testing.assert_array_equal(v["nx"], np.zeros(50, np.float32))
    assert path.stat().st_size == len(ply.header) + 1 + 50 * 62 * 4


def test_reads_foreign_property_order_and_types(tmp_path):
    """A 3DGS PLY written by another tool (doubles, shuffled order, extra property) still reads."""
    s = random_splats(20, sh_degree=1)
    n = 20
    cols = {
        "x": s["means"][:, 0], "y": s["means"][:, 1], "z": s["means"][:, 2],
        "opacity": s["opacities"], "red": torch.zeros(n),
    }  # fmt: skip
    for i in range(3):
        cols[f"f_dc_{i}"] = s["sh0"][:, 0, i]
        cols[f"scale_{i}"] = s["scales"][:, i]
    for i in range(4):
        cols[f"rot_{i}"] = s["quats"][:, i]
    for c in range(3):
        for k in range(3):
            cols[f"f_rest_{c * 3 + k}"] = s["shN"][:, k, c]
    order = sorted(cols, reverse=True)
    arr = np.empty(n, dtype=[(k, "f8") for k in order])
    for k in order:
        arr[k] = cols[k].numpy()
    plyfile.PlyData([plyfile.PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "f.ply"))
    r = read_ply(tmp_path / "f.ply")
    for k in s:
        assert torch.equal(r[k], s[k]), k


def test_provenance_comments(tmp_path):
    prov = Provenance(source="scenes/lego", method="3dgs", config_hash="abc123")
    path = write_ply(random_splats(5), tmp_path / "s.ply", comments=prov.comment_lines() + ["multi\nline é"])
    comments = read_ply_comments(path)
    assert "recon source: scenes/lego" in comments
    assert "recon config_hash: abc123" in comments
    assert any(c.startswith("recon date: ") for c in comments)
    assert comments[-1] == "multi line \\xe9"  # single-line ASCII
    back = Provenance.from_comment_lines(comments)
    assert back is not None and back.source == "scenes/lego" and back.method == "3dgs"
    assert plyfile.PlyData.read(str(path)).comments == comments


def test_bad_files_raise_recon_error(tmp_path):
    with pytest.raises(ReconError, match="no such PLY"):
        read_ply(tmp_path / "missing.ply")
    (tmp_path / "x.ply").write_bytes(b"not a ply\n")
    with pytest.raises(ReconError, match="not a PLY"):
        read_ply(tmp_path / "x.ply")
    arr = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    plyfile.PlyData([plyfile.PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(ReconError, match="not a 3DGS PLY"):
        read_ply(tmp_path / "pts.ply")
    good = write_ply(random_splats(10), tmp_path / "g.ply")
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ReconError, match="truncated"):
        read_ply(good)


def test_empty_model_round_trips(tmp_path):
    s = random_splats(0, sh_degree=0)
    r = read_ply(write_ply(s, tmp_path / "e.ply"))
    assert r["means"].shape == (0, 3) and r["shN"].shape == (0, 0, 3)
