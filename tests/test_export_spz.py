"""SPZ v3: byte layout, round trip within SPZ's quantisation, size against PLY."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from exporters.ply import write_ply
from exporters.jstools import unavailable
from exporters.spz import (
    decode_spz,
    decode_with_reference,
    encode_spz,
    pack_rotations,
    quantisation_bounds,
    read_spz,
    unpack_rotations,
    write_spz,
)
from recon.testing.gaussians import random_splats
from recon.errors import ReconError


def _unit(q: torch.Tensor) -> torch.Tensor:
    return q / q.norm(dim=1, keepdim=True)


def test_header_and_block_layout():
    s = random_splats(10, sh_degree=2)
    raw = gzip.decompress(encode_spz(s, antialiased=True))
    magic, version, n, deg, fb, flags, reserved = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, deg, fb, flags, reserved) == (0x5053474E, 3, 10, 2, 12, 1, 0)
    assert raw[:4] == b"NGSP"
    assert len(raw) == 16 + 10 * (9 + 1 + 3 + 3 + 4 + 8 * 3)
    # first position component: 24-bit little-endian fixed point with 12 fractional bits
    x = s["means"][0, 0].item()
    b = raw[16:19]
    v = b[0] | (b[1] << 8) | (b[2] << 16)
    v = v - (1 << 24) if v & 0x800000 else v
    assert v == round(x * 4096)
    # alpha / colour / scale encodings of the first Gaussian
    off = 16 + 10 * 9
    assert raw[off] == round(torch.sigmoid(s["opacities"][0]).item() * 255)
    off += 10
    assert raw[off] == min(255, max(0, round(s["sh0"][0, 0, 0].item() * 0.15 * 255 + 127.5)))
    off += 30
    assert raw[off] == min(255, max(0, round((s["scales"][0, 0].item() + 10) * 16)))


def test_smallest_three_rotations():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5000, 4)).astype(np.float32)
    q[:4] = [[1, 0, 0, 0], [0, 0, 0, 1], [0.5, -0.5, 0.5, -0.5], [0, -1, 0, 0]]
    packed = pack_rotations(q)
    assert packed.shape == (5000, 4) and packed.dtype == np.uint8
    # identity (w largest, SPZ index 3) packs to index 3 in the top two bits and zero magnitudes
    assert int.from_bytes(packed[0].tobytes(), "little") == 3 << 30
    back = unpack_rotations(packed)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    err = np.minimum(np.abs(back - qn).max(1), np.abs(back + qn).max(1))
    assert err.max() < quantisation_bounds()["quat"]
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-6)


def test_round_trip_within_quantisation(tmp_path):
    s = random_splats(20000, sh_degree=3, seed=3)
    s["sh0"] = s["sh0"].clamp(-3.3, 3.3)  # SPZ colours hold DC in about [-3.33, 3.33]
    s["shN"] = s["shN"].clamp(-0.87, 0.87)  # and higher SH in [-1, 1) minus a bucket
    path = write_spz(s, tmp_path / "s.spz")
    r, header = decode_spz(path.read_bytes())
    assert header == {"version": 3, "num_points": 20000, "sh_degree": 3, "fractional_bits": 12, "antialiased": False}
    B = quantisation_bounds()
    errs = {
        "means": (r["means"] - s["means"]).abs().max().item(),
        "scales": (r["scales"] - s["scales"]).abs().max().item(),
        "alpha": (torch.sigmoid(r["opacities"]) - torch.sigmoid(s["opacities"])).abs().max().item(),
        "sh0": (r["sh0"] - s["sh0"]).abs().max().item(),
        "sh1": (r["shN"][:, :3] - s["shN"][:, :3]).abs().max().item(),
        "shrest": (r["shN"][:, 3:] - s["shN"][:, 3:]).abs().max().item(),
        "quat": torch.minimum(
            (r["quats"] - _unit(s["quats"])).abs().amax(1), (r["quats"] + _unit(s["quats"])).abs().amax(1)
        ).max().item(),
    }
    for k, e in errs.items():
        assert e <= B[k], f"{k}: {e} > {B[k]}"
    # the bounds are tight (within a factor 2 of what random data reaches), not vacuous
    assert errs["means"] > B["means"] / 2 and errs["scales"] > B["scales"] / 2
    assert errs["sh0"] > B["sh0"] / 2 and errs["alpha"] > B["alpha"] / 2
    assert torch.equal(read_spz(path)["means"], r["means"])


def test_spz_at_least_8x_smaller_than_ply(tmp_path):
    s = random_splats(100_000, sh_degree=3, seed=4)
    ply = write_ply(s, tmp_path / "s.ply").stat().st_size
    spz = write_spz(s, tmp_path / "s.spz").stat().st_size
    assert ply / spz >= 8.0, f"PLY {ply} B / SPZ {spz} B = {ply / spz:.2f}"


def test_large_extent_lowers_fractional_bits():
    s = random_splats(100, sh_degree=0)
    s["means"][0, 0] = 5000.0  # beyond 2^11 units: 12 fractional bits would overflow 24 bits
    r, header = decode_spz(encode_spz(s))
    assert header["fractional_bits"] == 10
    assert abs(r["means"][0, 0].item() - 5000.0) <= 0.5 / 1024


def test_rejects_bad_input():
    with pytest.raises(ReconError, match="gzip"):
        decode_spz(b"not gzip at all")
    with pytest.raises(ReconError, match="magic"):
        decode_spz(gzip.compress(b"\0" * 32))
    with pytest.raises(ReconError, match="version 4"):
        decode_spz(b"NGSP" + b"\0" * 28)
    with pytest.raises(ReconError, match="truncated"):
        decode_spz(gzip.compress(gzip.decompress(encode_spz(random_splats(10)))[:-5]))


@pytest.mark.skipif(unavailable("@spz-loader/core") is not None, reason=str(unavailable("@spz-loader/core")))
def test_reference_library_reads_our_files(tmp_path):
    """Niantic's C++ SPZ library (WASM) decodes recon's files to the same values as recon's reader."""
    s = random_splats(3000, sh_degree=3, seed=22)
    path = write_spz(s, tmp_path / "s.spz", antialiased=True)
    ours = read_spz(path)
    ref = decode_with_reference(path)
    assert torch.equal(ref["means"], ours["means"])
    assert torch.equal(ref["shN"], ours["shN"])
    for k in ("scales", "sh0", "quats"):
        assert (ref[k] - ours[k]).abs().max().item() < 1e-5, k
    # compare opacity after the sigmoid: the library decodes bytes 0/255 to -inf/+inf logits
    assert (torch.sigmoid(ref["opacities"]) - torch.sigmoid(ours["opacities"])).abs().max().item() <= 0.5 / 255 + 1e-6
