"""SPZ (Niantic's compressed Gaussian splat format), version 3: writer and reader.

Follows nianticlabs/spz (``load-spz.cc``) for version 3, the gzip single-stream layout that Spark
and the other web players read. The gzip stream holds a 16-byte header then six attribute blocks,
each for all Gaussians in turn::

    header   uint32 magic 0x5053474e ("NGSP"), uint32 version (3), uint32 numPoints,
             uint8 shDegree, uint8 fractionalBits, uint8 flags (0x1 antialiased), uint8 reserved
    positions  numPoints x 3 x 24-bit signed fixed point, little endian, 2^-fractionalBits units
    alphas     numPoints x uint8  round(sigmoid(opacity) * 255)
    colors     numPoints x 3 uint8  round(sh0 * 0.15 * 255 + 127.5)   (SH DC, "colorScale" 0.15)
    scales     numPoints x 3 uint8  round((log scale + 10) * 16)
    rotations  numPoints x 4 bytes: "smallest three" of the unit quaternion in (x, y, z, w) order;
               2 bits index of the largest component, then per other component 1 sign bit +
               9-bit magnitude scaled by 1/sqrt(2); the largest is made positive and dropped
    sh         numPoints x K x 3 uint8 (coefficient-major, colour inner, K = (deg+1)^2 - 1),
               round(x * 128) + 128 snapped to 5-bit buckets (degree 1) / 4-bit (degree 2, 3)

All byte values are clamped to [0, 255]. The reader also accepts versions 1 and 2 (gzip).

Coordinates: SPZ stores "RUB" (x right, y up, z back: OpenGL / three.js); Spark renders the stored
values as-is in its Y-up world. The writer stores the Gaussians it is given unchanged, so callers
convert first (``recon export`` applies the scene-to-Y-up rotation of :mod:`exporters.axes`;
``--axes scene`` stores the training frame as-is).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from exporters.atomic import write_bytes_atomic
from exporters.splats import as_numpy, num_sh_rest, sh_degree_from_rest
from recon.errors import ReconError
from recon.models.splats_io import check_finite

MAGIC = 0x5053474E
VERSION = 3
COLOR_SCALE = 0.15
_SQRT1_2 = 0.7071067811865476
FLAG_ANTIALIASED = 0x1
MAX_EXPANSION = 1100  # deflate's largest possible ratio is about 1032:1


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bucket: int) -> np.ndarray:
    q = np.round(x.astype(np.float32) * 128.0) + 128.0
    q = np.floor((q + bucket // 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def choose_fractional_bits(means: np.ndarray, default: int = 12) -> int:
    """Fractional bits for 24-bit positions: 12 (SPZ's default, ~0.24 mm) unless the extent needs fewer."""
    m = float(np.abs(means).max()) if means.size else 0.0
    bits = default
    while bits > 0 and m * (1 << bits) > (1 << 23) - 1:
        bits -= 1
    if m * (1 << bits) > (1 << 23) - 1:
        raise ReconError(f"splat positions reach {m:.3g} units, beyond what SPZ's 24-bit positions hold")
    return bits


def pack_rotations(quats_wxyz: np.ndarray) -> np.ndarray:
    """``[N, 4]`` uint8 "smallest three" encoding of wxyz quaternions (normalised first)."""
    q = quats_wxyz.astype(np.float64)[:, [1, 2, 3, 0]]  # SPZ order x, y, z, w
    nrm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(nrm > 0, q / np.where(nrm > 0, nrm, 1), np.array([0, 0, 0, 1.0]))
    n = q.shape[0]
    il = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(n), il] < 0
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[il]
    comp = il.astype(np.uint32)
    for j in range(3):
        v = q[np.arange(n), others[:, j]]
        negbit = ((v < 0) ^ negate).astype(np.uint32)
        mag = np.minimum(np.floor(511.0 * (np.abs(v) / _SQRT1_2) + 0.5), 511).astype(np.uint32)
        comp = (comp << np.uint32(10)) | (negbit << np.uint32(9)) | mag
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)


def unpack_rotations(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rotations`: unit quaternions ``[N, 4]`` wxyz."""
    comp = packed.reshape(-1, 4).copy().view("<u4").reshape(-1).astype(np.uint32)
    n = comp.shape[0]
    il = (comp >> np.uint32(30)).astype(np.int64)
    q = np.zeros((n, 4), np.float64)
    ss = np.zeros(n)
    rest = comp.copy()
    for i in (3, 2, 1, 0):
        sel = il != i
        mag = (rest & np.uint32(511)).astype(np.float64)
        neg = (rest >> np.uint32(9)) & np.uint32(1)
        val = _SQRT1_2 * mag / 511.0
        val = np.where(neg == 1, -val, val)
        q[sel, i] = val[sel]
        ss[sel] += val[sel] ** 2
        rest = np.where(sel, rest >> np.uint32(10), rest)
    q[np.arange(n), il] = np.sqrt(np.maximum(0.0, 1.0 - ss))
    return q[:, [3, 0, 1, 2]].astype(np.float32)


def _logit_clipped(a: np.ndarray) -> np.ndarray:
    """Logit of alphas clipped to [0.5/255, 1 - 0.5/255] (finite for the end bytes)."""
    a = np.clip(a, 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    return np.log(a / (1.0 - a)).astype(np.float32)


def encode_spz(
    splats: Mapping[str, Any],
    antialiased: bool = False,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    fractional_bits: int | None = None,
    compresslevel: int = 6,
) -> bytes:
    """SPZ v3 bytes (gzip) for recon Gaussians (stored as given: convert axes first).

    Args:
        splats: recon Gaussians (torch or numpy), SH degree <= 3.
        antialiased: set the header flag for models trained with antialiased (Mip-Splatting-style)
            rasterization.
        sh1_bits, sh_rest_bits: SH quantisation bits for degree 1 and degrees 2-3 (SPZ's 5 and 4).
        fractional_bits: fixed-point fraction bits for positions (default: 12, fewer when needed).
        compresslevel: gzip level; 6 is zlib's default, which the reference library uses (1 is
            about 4x faster and about 10% larger).
    """
    s = as_numpy(splats)
    n = s["means"].shape[0]
    deg = sh_degree_from_rest(s["shN"].shape[1])
    if deg > 3:
        raise ReconError(f"SPZ v3 stores SH up to degree 3, the model has degree {deg}; pass --sh-degree 3")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ReconError(f"SPZ SH bits must be in 1..8, got {sh1_bits} and {sh_rest_bits}")
    fb = choose_fractional_bits(s["means"]) if fractional_bits is None else int(fractional_bits)

    fixed = np.round(s["means"].astype(np.float64) * (1 << fb)).astype(np.int64)
    fixed = np.clip(fixed, -(1 << 23), (1 << 23) - 1).astype("<i4")
    positions = fixed.view(np.uint8).reshape(n, 3, 4)[:, :, :3].reshape(-1)

    alphas = _u8(1.0 / (1.0 + np.exp(-s["opacities"].astype(np.float64))) * 255.0)
    colors = _u8(s["sh0"][:, 0, :].astype(np.float64) * (COLOR_SCALE * 255.0) + 0.5 * 255.0)
    scales = _u8((s["scales"].astype(np.float64) + 10.0) * 16.0)
    rotations = pack_rotations(s["quats"])
    k = s["shN"].shape[1]
    sh = np.empty((n, k, 3), np.uint8)
    if k:
        n1 = min(3, k)
        sh[:, :n1] = _quantize_sh(s["shN"][:, :n1], 1 << (8 - sh1_bits))
        if k > 3:
            sh[:, 3:] = _quantize_sh(s["shN"][:, 3:], 1 << (8 - sh_rest_bits))

    header = struct.pack("<IIIBBBB", MAGIC, VERSION, n, deg, fb, FLAG_ANTIALIASED if antialiased else 0, 0)
    raw = b"".join(
        [header, positions.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(), rotations.tobytes(), sh.tobytes()]
    )
    return gzip.compress(raw, compresslevel=compresslevel, mtime=0)


def write_spz(splats: Mapping[str, Any], path: str | os.PathLike, **kw: Any) -> Path:
    """Write :func:`encode_spz` output to ``path`` atomically; returns the path."""
    path = Path(path)
    write_bytes_atomic(path, encode_spz(splats, **kw))
    return path


def _inflate(d: "zlib._Decompress", data: bytes, want: int) -> bytes:
    """Up to ``want`` decompressed bytes from ``d`` (fed ``data``, then its unconsumed input)."""
    out, got = [], 0
    chunk = d.decompress(data, want) if want else b""
    while chunk:
        out.append(chunk)
        got += len(chunk)
        if got >= want or d.eof:
            break
        chunk = d.decompress(d.unconsumed_tail, want - got)
    return b"".join(out)


def decode_spz(data: bytes, name: str = "<bytes>") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Decode SPZ versions 1-3 into recon Gaussians plus the header fields.

    Returns ``(splats, header)``; ``splats`` as :func:`exporters.ply.read_ply` returns them
    (``quats`` unit length, wxyz), ``header`` with ``version, num_points, sh_degree,
    fractional_bits, antialiased``.
    """
    if data[:4] == b"NGSP":
        raise ReconError(f"{name}: SPZ version 4 (zstd streams) is not supported by this reader; export with recon")
    if data[:2] != b"\x1f\x8b":
        raise ReconError(f"{name}: not a gzip SPZ file (no gzip signature)")
    # Decompress in two bounded steps: the 16-byte header first, then exactly the bytes it
    # declares (plus one to detect trailing data), so a lying count or a gzip bomb cannot make
    # the reader allocate more than the declared model, itself capped relative to the file size.
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        head = _inflate(d, data, 16)
    except zlib.error as e:
        raise ReconError(f"{name}: not a gzip SPZ file ({e})") from None
    if len(head) < 16:
        raise ReconError(f"{name}: SPZ header is truncated")
    magic, version, n, deg, fb, flags, _ = struct.unpack_from("<IIIBBBB", head, 0)
    if magic != MAGIC:
        raise ReconError(f"{name}: bad SPZ magic 0x{magic:08x}")
    if version not in (1, 2, 3):
        raise ReconError(f"{name}: SPZ version {version} is not supported (1-3 are)")
    if deg > 3:
        raise ReconError(f"{name}: SPZ SH degree {deg} is not supported (at most 3)")
    if version >= 2 and fb > 24:
        raise ReconError(f"{name}: SPZ fractional bits {fb} is out of range (0-24)")
    k = num_sh_rest(deg)
    pos_bytes = 6 if version == 1 else 9
    rot_bytes = 4 if version >= 3 else 3
    sizes = [n * pos_bytes, n, 3 * n, 3 * n, n * rot_bytes, n * k * 3]
    total = sum(sizes)
    # deflate compresses at most about 1032:1; quantised splat data compresses far less
    if total > MAX_EXPANSION * len(data) + 1024:
        raise ReconError(
            f"{name}: SPZ header claims {n} Gaussians ({total} bytes), more than a {len(data)}-byte file can hold: "
            "truncated or corrupt"
        )
    try:
        body = _inflate(d, d.unconsumed_tail, total)
        extra = _inflate(d, d.unconsumed_tail, 1)
    except zlib.error as e:
        raise ReconError(f"{name}: corrupt SPZ gzip stream ({e})") from None
    if len(body) < total:
        raise ReconError(f"{name}: SPZ data is truncated ({len(body)} of {total} bytes)")
    if extra:
        raise ReconError(f"{name}: SPZ data is longer than its header declares ({n} Gaussians): corrupt file")
    if not d.eof:
        raise ReconError(f"{name}: SPZ gzip stream is truncated (no end of stream after the declared data)")
    raw = head + body
    off = 16
    blocks = []
    for sz in sizes:
        blocks.append(np.frombuffer(raw, np.uint8, sz, off))
        off += sz
    pos_b, alpha_b, color_b, scale_b, rot_b, sh_b = blocks

    if version == 1:
        means = pos_b.view("<f2").astype(np.float32).reshape(n, 3)
    else:
        p = pos_b.reshape(n * 3, 3).astype(np.int32)
        fixed = p[:, 0] | (p[:, 1] << 8) | (p[:, 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = (fixed.astype(np.float64) / (1 << fb)).astype(np.float32).reshape(n, 3)
    # bytes 0 and 255 stand for the end half-steps; keep their logits finite (the reference library
    # returns +-inf there, which would make Gaussians non-finite downstream)
    opac = _logit_clipped(alpha_b.astype(np.float64) / 255.0)
    sh0 = ((color_b.astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE).astype(np.float32).reshape(n, 1, 3)
    scales = (scale_b.astype(np.float64) / 16.0 - 10.0).astype(np.float32).reshape(n, 3)
    if version >= 3:
        quats = unpack_rotations(rot_b.reshape(n, 4))
    else:
        xyz = rot_b.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz**2).sum(1)))
        quats = np.concatenate([w[:, None], xyz], axis=1).astype(np.float32)
    shN = ((sh_b.astype(np.float32) - 128.0) / 128.0).reshape(n, k, 3)
    splats = {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opac,
        "sh0": sh0,
        "shN": np.ascontiguousarray(shN),
    }
    check_finite(splats, name)
    header = {
        "version": version,
        "num_points": n,
        "sh_degree": deg,
        "fractional_bits": fb,
        "antialiased": bool(flags & FLAG_ANTIALIASED),
    }
    return {k_: torch.from_numpy(np.ascontiguousarray(v)) for k_, v in splats.items()}, header


def read_spz(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an SPZ file (versions 1-3) into recon Gaussians (see :func:`decode_spz`)."""
    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such SPZ file")
    return decode_spz(path.read_bytes(), str(path))[0]


def quantisation_bounds(sh1_bits: int = 5, sh_rest_bits: int = 4, fractional_bits: int = 12) -> dict[str, float]:
    """Worst-case absolute round-trip errors per attribute inside SPZ's representable ranges.

    ``means`` in world units, ``scales`` in log units, ``alpha`` in opacity (after sigmoid),
    ``sh0`` in SH DC units, ``sh1``/``shrest`` in SH units for |x| <= 1 - bucket/128 (bucket = 2^(8 - bits)),
    ``quat`` per component of the unit quaternion (sign-aligned).
    """
    return {
        "means": 0.5 / (1 << fractional_bits) + 1e-6,
        "scales": 0.5 / 16.0 + 1e-6,
        "alpha": 0.5 / 255.0 + 1e-6,
        "sh0": 0.5 / (COLOR_SCALE * 255.0) + 1e-6,
        "sh1": (1 << (8 - sh1_bits)) / 256.0 + 0.5 / 128.0 + 1e-6,
        "shrest": (1 << (8 - sh_rest_bits)) / 256.0 + 0.5 / 128.0 + 1e-6,
        "quat": 2.0 * _SQRT1_2 / 511.0 + 1e-4,
    }



def decode_with_reference(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Decode ``path`` with Niantic's own SPZ library (WASM build, ``tools/js/spz-decode.mjs``).

    Returns recon Gaussians like :func:`read_spz`, for checking this module against the reference.
    Raises :class:`ReconError` when Node.js or the package is missing, or the library rejects the file.
    """
    import json

    from exporters.jstools import run_node, unavailable

    why = unavailable("@spz-loader/core")
    if why:
        raise ReconError(why)
    proc = run_node("spz-decode.mjs", str(Path(path).resolve()))
    if proc.returncode != 0:
        raise ReconError(f"the reference SPZ library could not read {path}: {proc.stderr.strip()[-300:]}")
    g = json.loads(proc.stdout)
    n = int(g["numPoints"])
    k = num_sh_rest(int(g["shDegree"]))
    xyzw = np.asarray(g["rotations"], np.float32).reshape(n, 4)
    out = {
        "means": np.asarray(g["positions"], np.float32).reshape(n, 3),
        "quats": xyzw[:, [3, 0, 1, 2]],
        "scales": np.asarray(g["scales"], np.float32).reshape(n, 3),
        "opacities": _logit_clipped(np.asarray(g["alphas"], np.float64).reshape(n)),
        "sh0": np.asarray(g["colors"], np.float32).reshape(n, 1, 3),
        "shN": np.asarray(g["sh"], np.float32).reshape(n, k, 3),
    }
    return {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in out.items()}
