"""Fuzzing every file reader with truncated, byte-flipped and lying files.

For each reader a small valid file is built here, then mutated with a seeded generator: random
truncations, random byte flips (text files: numbers replaced by nan/inf/negative/huge values,
characters flipped) and, for binary formats, header counts that lie (999,999,999 and more). Each
read must either succeed or raise :class:`recon.errors.ReconError`: any other exception is a
crash. Each read is also bounded: its peak Python/numpy memory (tracemalloc sees numpy's
allocations) stays under ``2 x file size + FIXED_BYTES`` and it takes under ``MAX_SECONDS``.

The number of cases is :data:`TOTAL_CASES`; docs/formats.md ("Robustness") quotes it and a test
below keeps the two in step.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from recon.errors import ReconError

SEED = 20261202
N_TRUNC = 16  # random truncations per reader
N_FLIP = 24  # random corruptions per reader
FIXED_BYTES = 512 << 10  # 512 KiB of parser overhead on top of 2 x file size (the worst read peaks at ~215 KiB)
MAX_SECONDS = 2.0  # per read (the valid files read in milliseconds)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


# ----------------------------------------------------------------------------------------------
# Valid files


def _png(path: Path, w: int = 8, h: int = 6) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


def _splats(n: int = 120, degree: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2 - 1
    return {
        "means": torch.randn(n, 3, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.randn(n, 3, generator=g) - 3.0,
        "opacities": torch.randn(n, generator=g),
        "sh0": torch.randn(n, 1, 3, generator=g) * 0.5,
        "shN": torch.randn(n, k, 3, generator=g) * 0.1,
    }


def _rot(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


N_IMAGES, N_POINTS = 6, 150


def colmap_binary(rng: np.random.Generator) -> dict[str, bytes]:
    """A COLMAP binary model (2 cameras, 6 images with 2D points, 150 points with tracks)."""
    cams = struct.pack("<Q", 2)
    cams += struct.pack("<iiQQ", 1, 1, 8, 6) + struct.pack("<4d", 7.0, 7.5, 4.0, 3.0)  # PINHOLE
    cams += struct.pack("<iiQQ", 2, 2, 8, 6) + struct.pack("<4d", 6.5, 4.0, 3.0, 0.01)  # SIMPLE_RADIAL
    imgs = struct.pack("<Q", N_IMAGES)
    for i in range(N_IMAGES):
        imgs += struct.pack("<I4d3dI", i + 1, *_rot(rng), *rng.normal(size=3), 1 + i % 2)
        imgs += f"img_{i:02d}.png".encode() + b"\0"
        n2 = 10 + i
        imgs += struct.pack("<Q", n2)
        for j in range(n2):
            imgs += struct.pack("<ddq", *rng.uniform(0, 6, 2), j if j < 5 else -1)
    pts = struct.pack("<Q", N_POINTS)
    for p in range(N_POINTS):
        tl = 2 + p % 3
        pts += struct.pack("<Q3d3BdQ", p + 1, *rng.normal(size=3), *rng.integers(0, 256, 3).tolist(), 0.5, tl)
        pts += b"".join(struct.pack("<II", 1 + (p + t) % N_IMAGES, t) for t in range(tl))
    return {"cameras.bin": cams, "images.bin": imgs, "points3D.bin": pts}


def colmap_text(rng: np.random.Generator) -> dict[str, bytes]:
    cams = "# Camera list\n1 PINHOLE 8 6 7 7.5 4 3\n2 SIMPLE_RADIAL 8 6 6.5 4 3 0.01\n"
    imgs = "# Image list\n"
    for i in range(N_IMAGES):
        q, t = _rot(rng), rng.normal(size=3)
        imgs += f"{i + 1} {' '.join(f'{v:.9g}' for v in (*q, *t))} {1 + i % 2} img_{i:02d}.png\n"
        imgs += " ".join(f"{x:.3f} {y:.3f} -1" for x, y in rng.uniform(0, 6, (4, 2))) + "\n"
    pts = "# 3D point list\n"
    for p in range(N_POINTS):
        x = rng.normal(size=3)
        pts += f"{p + 1} {x[0]:.6g} {x[1]:.6g} {x[2]:.6g} 10 20 30 0.5 1 0 2 1\n"
    return {"cameras.txt": cams.encode(), "images.txt": imgs.encode(), "points3D.txt": pts.encode()}


def transforms_json(rng: np.random.Generator) -> bytes:
    frames = []
    for i in range(N_IMAGES):
        c2w = np.eye(4)
        q = _rot(rng)
        from recon.scene.conventions import qvec_to_rotmat

        c2w[:3, :3] = qvec_to_rotmat(q)
        c2w[:3, 3] = rng.normal(size=3)
        frames.append({"file_path": f"images/img_{i:02d}.png", "transform_matrix": np.round(c2w, 6).tolist()})
    meta = {"fl_x": 7.0, "fl_y": 7.5, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "k1": 0.01, "frames": frames}
    return json.dumps(meta, indent=1).encode()


def poses_bounds(rng: np.random.Generator) -> bytes:
    import io

    from recon.scene.conventions import qvec_to_rotmat

    rows = []
    for _ in range(N_IMAGES):
        m = np.zeros((3, 5))
        m[:, :3] = qvec_to_rotmat(_rot(rng))
        m[:, 3] = rng.normal(size=3)
        m[:, 4] = (6, 8, 7.0)
        rows.append(np.concatenate([m.ravel(), [0.5, 10.0]]))
    buf = io.BytesIO()
    np.save(buf, np.asarray(rows))
    return buf.getvalue()


def camera_path_json() -> bytes:
    from viewer.camera_path import Keyframe, to_nerfstudio

    kfs = []
    for a in (0.0, 0.7, 1.4):
        c2w = np.eye(4)
        c2w[:3, :3] = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        c2w[:3, 3] = (np.sin(a) * 3, 0.2, -np.cos(a) * 3)
        kfs.append(Keyframe(c2w, 0.7))
    return json.dumps(to_nerfstudio(kfs, 64, 48, fps=4, seconds=2)).encode()


# ----------------------------------------------------------------------------------------------
# Mutations


def truncations(data: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` distinct truncated copies: empty, one byte, one byte short, and random lengths."""
    cuts = {0, 1, len(data) - 1}
    while len(cuts) < n:
        cuts.add(int(rng.integers(0, len(data))))
    return [data[:c] for c in sorted(cuts)]


_TEXT_VALUES = ["nan", "NaN", "inf", "-inf", "-1", "0", "1e309", "-0", "abc", "999999999999", "1e-320", ""]


_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def flips(data: bytes, rng: np.random.Generator, n: int, text: bool) -> list[bytes]:
    """``n`` corrupted copies: text files get 1-3 numbers replaced by hostile values (every other
    case), every file gets 1-8 random bytes set to random values otherwise."""
    out = []
    for i in range(n):
        b = bytes(data)
        if text and i % 2 == 0:
            for _ in range(int(rng.integers(1, 4))):
                spans = [m.span() for m in _NUMBER.finditer(b)]
                if not spans:
                    break
                s, e = spans[int(rng.integers(len(spans)))]
                b = b[:s] + _TEXT_VALUES[int(rng.integers(len(_TEXT_VALUES)))].encode() + b[e:]
        else:
            ba = bytearray(b)
            for _ in range(int(rng.integers(1, 9))):
                ba[int(rng.integers(len(ba)))] = int(rng.integers(256))
            b = bytes(ba)
        out.append(b)
    return out


def with_u64(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<Q", value) + data[offset + 8 :]


# ----------------------------------------------------------------------------------------------
# The harness


class Result:
    def __init__(self) -> None:
        self.cases = 0
        self.crashes: list[str] = []
        self.over_memory: list[str] = []
        self.too_slow: list[str] = []
        self.refused = 0
        self.worst_ratio = 0.0


def run_cases(name: str, path: Path, cases: list[tuple[str, bytes]], read: Callable[[Path], object]) -> Result:
    """Write each case to ``path`` and read it; record crashes, memory and time."""
    res = Result()
    for label, data in cases:
        path.write_bytes(data)
        size = len(data)
        tracemalloc.start()
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        try:
            read(path)
        except ReconError as e:
            res.refused += 1
            msg = str(e)
            assert "\n" not in msg.strip(), f"{name} {label}: multi-line error {msg!r}"
        except Exception as e:  # noqa: BLE001 - anything else is a crash
            res.crashes.append(f"{name} {label}: {type(e).__name__}: {str(e)[:200]}")
        finally:
            dt = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        res.cases += 1
        bound = 2 * size + FIXED_BYTES
        res.worst_ratio = max(res.worst_ratio, peak / bound)
        if peak > bound:
            res.over_memory.append(f"{name} {label}: peak {peak} B > 2 x {size} + {FIXED_BYTES}")
        if dt > MAX_SECONDS:
            res.too_slow.append(f"{name} {label}: {dt:.2f} s")
    return res


def mutated(data: bytes, rng: np.random.Generator, text: bool) -> list[tuple[str, bytes]]:
    cases = [(f"truncated to {len(d)} B", d) for d in truncations(data, rng, N_TRUNC)]
    cases += [(f"corruption {i}", d) for i, d in enumerate(flips(data, rng, N_FLIP, text))]
    return cases


# ----------------------------------------------------------------------------------------------
# The readers


def _colmap_dir(tmp: Path, files: dict[str, bytes]) -> Path:
    for i in range(N_IMAGES):
        _png(tmp / "images" / f"img_{i:02d}.png")
    model = tmp / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    for n, d in files.items():
        (model / n).write_bytes(d)
    return model


def _load_scene(root: Path) -> Callable[[Path], object]:
    from recon.scene.readers import load_scene

    return lambda _path: load_scene(root)


def _colmap_lies(name: str, data: bytes) -> list[tuple[str, bytes]]:
    lies = [(f"count {v}", with_u64(data, 0, v)) for v in (999_999_999, 2**32, 2**63 - 1)]
    if name == "images.bin":  # the first image's 2D point count, after its name
        off = data.index(b"\0", 8 + struct.calcsize("<I4d3dI")) + 1
        lies.append(("2D point count 999999999", with_u64(data, off, 999_999_999)))
    if name == "points3D.bin":  # the first point's track length
        off = 8 + struct.calcsize("<Q3d3Bd")
        lies.append(("track length 2^40", with_u64(data, off, 2**40)))
    if name == "cameras.bin":
        lies.append(("model id 99", data[:12] + struct.pack("<i", 99) + data[16:]))
    return lies


def _reader_cases(kind: str, tmp: Path, rng: np.random.Generator):
    """``(path, valid bytes, cases, read)`` for one reader."""
    if kind in ("cameras.bin", "images.bin", "points3D.bin"):
        files = colmap_binary(rng)
        model = _colmap_dir(tmp, files)
        data = files[kind]
        return model / kind, data, mutated(data, rng, False) + _colmap_lies(kind, data), _load_scene(tmp)
    if kind in ("cameras.txt", "images.txt", "points3D.txt"):
        files = colmap_text(rng)
        model = _colmap_dir(tmp, files)
        return model / kind, files[kind], mutated(files[kind], rng, True), _load_scene(tmp)
    if kind == "splats.ply":
        from recon.models.splats_io import read_ply, write_ply

        write_ply(_splats(), tmp / "v.ply")
        data = (tmp / "v.ply").read_bytes()
        lies = [(f"vertex count {v}", data.replace(b"element vertex 120", f"element vertex {v}".encode(), 1)) for v in (999_999_999, 121)]
        return tmp / "s.ply", data, mutated(data, rng, False) + lies, read_ply
    if kind == "points.ply":
        from recon.scene.readers import read_ply_points
        from recon.scene.writers import write_ply_points

        pts = rng.normal(size=(300, 3))
        write_ply_points(tmp / "v.ply", pts, rng.integers(0, 256, (300, 3)).astype(np.uint8))
        data = (tmp / "v.ply").read_bytes()
        lies = [(f"vertex count {v}", data.replace(b"element vertex 300", f"element vertex {v}".encode(), 1)) for v in (999_999_999, 301)]
        return tmp / "p.ply", data, mutated(data, rng, False) + lies, read_ply_points
    if kind == "spz":
        from exporters.spz import encode_spz, read_spz

        data = encode_spz(_splats())
        raw = gzip.decompress(data)
        lies = [
            (f"numPoints {v}", gzip.compress(raw[:8] + struct.pack("<I", v) + raw[12:], mtime=0))
            for v in (2**32 - 1, 999_999_999, 121)
        ]
        lies.append(("gzip bomb: 64 MiB of zeros after a valid header", gzip.compress(raw[:16] + bytes(64 << 20), mtime=0)))
        return tmp / "s.spz", data, mutated(data, rng, False) + lies, read_spz
    if kind == "splat":
        from exporters.splat import encode_splat, read_splat

        data = encode_splat(_splats())
        return tmp / "s.splat", data, mutated(data, rng, False), read_splat
    if kind == "glb":
        from exporters.gltf_splat import encode_glb, pack_glb, parse_glb, read_glb

        data = encode_glb(_splats())
        doc, binary = parse_glb(data)
        lies = []
        for field, value in (("count", 999_999_999), ("byteOffset", 2**40), ("count", -5), ("bufferView", 99)):
            d = json.loads(json.dumps(doc))
            d["accessors"][0][field] = value
            lies.append((f"accessor {field} {value}", pack_glb(d, binary)))
        d = json.loads(json.dumps(doc))
        d["bufferViews"][2]["byteLength"] = 2**40
        lies.append(("bufferView byteLength 2^40", pack_glb(d, binary)))
        lies.append(("JSON chunk length 2^31", data[:12] + struct.pack("<I", 2**31) + data[16:]))
        return tmp / "s.glb", data, mutated(data, rng, False) + lies, read_glb
    if kind == "poses_bounds.npy":
        for i in range(N_IMAGES):
            _png(tmp / "images" / f"img_{i:02d}.png")
        data = poses_bounds(rng)
        lies = [("shape (999999999, 17)", data.replace(b"(6, 17)", b"(999999999, 17)", 1))]
        return tmp / "poses_bounds.npy", data, mutated(data, rng, False) + lies, _load_scene(tmp)
    if kind == "transforms.json":
        for i in range(N_IMAGES):
            _png(tmp / "images" / f"img_{i:02d}.png")
        data = transforms_json(rng)
        lies = [("file_path outside the scene", data.replace(b"images/img_03.png", b"../../etc/img_03.png"))]
        return tmp / "transforms.json", data, mutated(data, rng, True) + lies, _load_scene(tmp)
    if kind == "camera_path.json":
        from exporters.cameras import read_camera_path

        data = camera_path_json()
        return tmp / "camera_path.json", data, mutated(data, rng, True), read_camera_path
    if kind == "keyframes.json":
        from viewer.camera_path import read_keyframes

        data = camera_path_json()
        return tmp / "keyframes.json", data, mutated(data, rng, True), read_keyframes
    raise AssertionError(kind)


READERS = [
    "cameras.bin", "images.bin", "points3D.bin", "cameras.txt", "images.txt", "points3D.txt",
    "splats.ply", "points.ply", "spz", "splat", "glb", "poses_bounds.npy", "transforms.json",
    "camera_path.json", "keyframes.json",
]  # fmt: skip

# Cases per reader beyond the random ones (the header lies above), to count them without I/O.
_LIES = {"cameras.bin": 4, "images.bin": 4, "points3D.bin": 4, "splats.ply": 2, "points.ply": 2, "spz": 4,
         "glb": 6, "poses_bounds.npy": 1, "transforms.json": 1}  # fmt: skip
TOTAL_CASES = sum(N_TRUNC + N_FLIP + _LIES.get(k, 0) for k in READERS)

_results: dict[str, Result] = {}


@pytest.mark.parametrize("kind", READERS)
def test_fuzz_reader(kind, tmp_path):
    rng = np.random.default_rng([SEED, READERS.index(kind)])
    path, valid, cases, read = _reader_cases(kind, tmp_path, rng)
    name = kind
    assert len(cases) == N_TRUNC + N_FLIP + _LIES.get(kind, 0)
    # the unmodified file reads (and warms imports, so they do not count as the reader's memory)
    path.write_bytes(valid)
    read(path)
    res = run_cases(name, path, cases, read)
    _results[kind] = res
    assert res.crashes == [], "\n".join(res.crashes)
    assert res.over_memory == [], "\n".join(res.over_memory)
    assert res.too_slow == [], "\n".join(res.too_slow)
    # Truncations must be refused (except those that cut nothing a reader needs: text files cut
    # at a line end can be complete files), and every lying header must be refused.
    assert res.refused >= N_TRUNC // 2, f"{name}: only {res.refused} of {res.cases} bad files refused"


def test_lying_headers_are_refused_without_allocating(tmp_path):
    """The issue's examples: a points3D.bin, PLY and .npy claiming ~1e9 records are refused at once."""
    from recon.models.splats_io import read_ply, write_ply
    from recon.scene.readers import load_scene, read_colmap_points

    rng = np.random.default_rng(SEED)
    files = colmap_binary(rng)
    model = _colmap_dir(tmp_path / "c", files)
    (model / "points3D.bin").write_bytes(files["points3D.bin"][: len(files["points3D.bin"]) // 2])
    tracemalloc.start()
    with pytest.raises(ReconError, match=r"points3D\.bin.*truncated"):
        read_colmap_points(model)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * len(files["points3D.bin"]) + FIXED_BYTES
    (model / "points3D.bin").write_bytes(with_u64(files["points3D.bin"], 0, 999_999_999))
    with pytest.raises(ReconError, match=r"points3D\.bin: header claims 999999999 points"):
        load_scene(tmp_path / "c")

    write_ply(_splats(), tmp_path / "s.ply")
    data = (tmp_path / "s.ply").read_bytes().replace(b"element vertex 120", b"element vertex 999999999", 1)
    (tmp_path / "s.ply").write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ReconError, match=r"s\.ply: PLY header claims 999999999 vertices"):
        read_ply(tmp_path / "s.ply")
    assert time.perf_counter() - t0 < 0.5
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * len(data) + FIXED_BYTES


def test_docs_quote_the_case_count():
    text = DOCS.read_text()
    m = re.search(r"(\d[\d,]*) fuzz cases", text)
    assert m, "docs/formats.md must quote the number of fuzz cases"
    assert int(m.group(1).replace(",", "")) == TOTAL_CASES
