"""antimatter15 .splat: 32-byte rows, size x opacity order, round trip within its quantisation."""

from __future__ import annotations

import numpy as np
import torch

from exporters.splat import decode_splat, encode_splat, sort_order, write_splat
from exporters.splats import SH_C0, as_numpy
from recon.testing.gaussians import random_splats


def test_layout_and_order(tmp_path):
    s = random_splats(1000, sh_degree=3, seed=5)
    path = write_splat(s, tmp_path / "s.splat")
    data = path.read_bytes()
    assert len(data) == 32 * 1000
    order = sort_order(as_numpy(s))
    first = order[0]
    row = np.frombuffer(data[:32], np.uint8)
    np.testing.assert_array_equal(np.frombuffer(row[:12].tobytes(), "<f4"), s["means"][first].numpy())
    np.testing.assert_allclose(np.frombuffer(row[12:24].tobytes(), "<f4"), np.exp(s["scales"][first].numpy()), rtol=1e-6)
    key = (s["scales"].sum(1).exp() * torch.sigmoid(s["opacities"])).numpy()
    assert np.all(np.diff(key[order]) <= 1e-12)  # descending volume x opacity


def test_round_trip_within_quantisation():
    s = random_splats(5000, sh_degree=0, seed=6)
    rgb = 0.5 + SH_C0 * s["sh0"]
    s["sh0"] = (rgb.clamp(0, 1) - 0.5) / SH_C0  # .splat colours live in [0, 1]
    order = torch.from_numpy(sort_order(as_numpy(s)))
    r = decode_splat(encode_splat(s))
    ref = {k: v[order] for k, v in s.items()}
    assert torch.equal(r["means"], ref["means"])
    assert (r["scales"] - ref["scales"]).abs().max().item() < 1e-6
    # colour and opacity bytes truncate: error below one step of 1/255
    drgb = ((0.5 + SH_C0 * r["sh0"]) - (0.5 + SH_C0 * ref["sh0"])).abs().max().item()
    assert drgb < 1 / 255 + 1e-6
    da = (torch.sigmoid(r["opacities"]) - torch.sigmoid(ref["opacities"])).abs()
    a = torch.sigmoid(ref["opacities"])
    inner = (a > 0.5 / 255) & (a < 1 - 0.5 / 255)
    assert da[inner].max().item() < 1 / 255 + 1e-6
    q = ref["quats"] / ref["quats"].norm(dim=1, keepdim=True)
    assert (r["quats"] - q).abs().max().item() <= 1 / 128 + 1e-6
    assert r["shN"].shape == (5000, 0, 3)
