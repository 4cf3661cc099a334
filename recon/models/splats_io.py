"""The Inria 3DGS PLY layout: reader and writer.

Layout (binary little endian, one ``vertex`` element, every property ``float``), exactly as the
reference implementation (graphdeco-inria/gaussian-splatting, ``GaussianModel.save_ply``) writes it::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 .. f_rest_{3K-1} opacity scale_0 scale_1 scale_2
    rot_0 rot_1 rot_2 rot_3

* ``nx ny nz`` are zeros (unused normals).
* ``f_dc_c`` is ``sh0[:, 0, c]``; ``f_rest`` is channel-major: all K coefficients of R, then of G,
  then of B, i.e. ``f_rest_{c*K + k} = shN[:, k, c]`` with ``K = (degree+1)^2 - 1`` (45 values
  at degree 3, none at degree 0).
* ``opacity`` is the logit, ``scale_i`` the log standard deviations, ``rot_0..3`` the quaternion
  ``(w, x, y, z)`` as stored (not renormalised).

Coordinates are the training (scene) frame; 3DGS viewers and tools expect exactly that. Provenance
goes in ``comment`` lines. Writing is a header plus one contiguous float32 block (about 0.25 KB per
Gaussian at degree 3), so 1M Gaussians take well under 2 s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from recon.errors import ReconError
from recon.io_utils import atomic_path
from recon.models.splats import as_numpy, num_sh_rest, sh_degree_from_rest

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def property_names(degree: int) -> list[str]:
    """The vertex property names of the Inria layout for an SH ``degree``, in file order."""
    k = num_sh_rest(degree)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _pack(s: Mapping[str, np.ndarray], out: np.ndarray | None = None, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows ``[start:stop]`` as ``[M, 17 + 3K]`` float32 in the Inria property order (into ``out``)."""
    stop = s["means"].shape[0] if stop is None else stop
    m, k = stop - start, s["shN"].shape[1]
    rows = np.empty((m, 17 + 3 * k), dtype="<f4") if out is None else out[:m]
    sl = slice(start, stop)
    rows[:, 0:3] = s["means"][sl]
    rows[:, 3:6] = 0.0
    rows[:, 6:9] = s["sh0"][sl, 0, :]
    # channel-major: column 9 + c*K + kk holds shN[:, kk, c]
    rows[:, 9 : 9 + 3 * k].reshape(m, 3, k)[...] = s["shN"][sl].transpose(0, 2, 1)
    o = 9 + 3 * k
    rows[:, o] = s["opacities"][sl]
    rows[:, o + 1 : o + 4] = s["scales"][sl]
    rows[:, o + 4 : o + 8] = s["quats"][sl]
    return rows


def encode_ply_header(n: int, degree: int, comments: Sequence[str] = ()) -> bytes:
    """The ASCII header of an Inria-layout binary PLY with ``n`` Gaussians."""
    lines = ["ply", "format binary_little_endian 1.0"]
    for c in comments:
        c = str(c).replace("\r", " ").replace("\n", " ")
        lines.append("comment " + c.encode("ascii", "backslashreplace").decode("ascii"))
    lines.append(f"element vertex {n}")
    lines += [f"property float {p}" for p in property_names(degree)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(splats: Mapping[str, Any], path: str | os.PathLike, comments: Sequence[str] = ()) -> Path:
    """Write Gaussians to ``path`` in the Inria 3DGS PLY layout (atomically).

    Args:
        splats: recon Gaussians (``means [N,3]``, ``quats [N,4]`` wxyz, ``scales [N,3]`` log,
            ``opacities [N]`` logit, ``sh0 [N,1,3]``, ``shN [N,K,3]``), torch or numpy.
        path: output file.
        comments: extra header ``comment`` lines (e.g. :meth:`Provenance.comment_lines`); each
            is made single-line ASCII.
    Returns the path written. Values are stored bit-exactly as float32.
    """
    s = as_numpy(splats, copy=False)
    n = s["means"].shape[0]
    degree = sh_degree_from_rest(s["shN"].shape[1])
    header = encode_ply_header(n, degree, comments)
    # pack and write in cache-sized chunks: no full-size temporary (1M Gaussians = 248 MB)
    chunk = 4096
    buf = np.empty((min(chunk, max(n, 1)), 17 + 3 * s["shN"].shape[1]), dtype="<f4")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header)
            for a in range(0, n, chunk):
                f.write(memoryview(_pack(s, buf, a, min(n, a + chunk))))
    return path


_HEADER_LIMIT = 1 << 20  # a PLY header longer than 1 MiB is not a splat file
_LINE_LIMIT = 1 << 16


def _read_header(f) -> tuple[str, int, list[tuple[str, str]], list[str], int]:
    """Parse a PLY header: ``(format, vertex count, [(name, dtype)], comments, header bytes)``."""
    magic = f.readline(_LINE_LIMIT)
    if magic.strip() != b"ply":
        raise ReconError(f"{f.name}: not a PLY file (first line is {magic[:20]!r})")
    fmt, n, props, comments = "", -1, [], []
    element = None
    while True:
        line = f.readline(_LINE_LIMIT)
        if not line:
            raise ReconError(f"{f.name}: PLY header has no end_header")
        if f.tell() > _HEADER_LIMIT:
            raise ReconError(f"{f.name}: PLY header is longer than {_HEADER_LIMIT} bytes: corrupt, or not a PLY file")
        text = line.decode("ascii", "replace").rstrip("\r\n")
        parts = text.split()
        if not parts:
            continue
        try:
            if parts[0] == "end_header":
                break
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "comment":
                comments.append(text[len("comment ") :] if text.startswith("comment ") else "")
            elif parts[0] == "element":
                if element == "vertex":
                    break  # the vertex data comes first; later elements are not read
                element = parts[1]
                if element == "vertex":
                    n = int(parts[2])
                    if n < 0:
                        raise ValueError(f"negative vertex count {n}")
                elif n < 0:
                    raise ReconError(f"{f.name}: element {element!r} comes before the vertex element; not a 3DGS PLY")
            elif parts[0] == "property" and element == "vertex":
                if parts[1] == "list":
                    raise ReconError(f"{f.name}: list property {parts[-1]!r} in vertex element is not a 3DGS PLY")
                if parts[1] not in _PLY_TYPES:
                    raise ReconError(f"{f.name}: unknown PLY property type {parts[1]!r}")
                props.append((parts[2], _PLY_TYPES[parts[1]]))
        except (IndexError, ValueError) as e:
            raise ReconError(f"{f.name}: malformed PLY header line {text[:80]!r} ({e})") from None
    if len({p for p, _ in props}) != len(props):
        raise ReconError(f"{f.name}: PLY vertex element repeats a property name")
    while parts[0] != "end_header":  # skip the headers of later elements
        line = f.readline(_LINE_LIMIT)
        if not line or f.tell() > _HEADER_LIMIT:
            raise ReconError(f"{f.name}: PLY header has no end_header")
        parts = line.split() or [b""]
        parts = [parts[0].decode("ascii", "replace")]
    return fmt, n, props, comments, f.tell()


def read_ply_comments(path: str | os.PathLike) -> list[str]:
    """The header ``comment`` lines of a PLY file (without the word ``comment``)."""
    with open(path, "rb") as f:
        return _read_header(f)[3]


def read_ply(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a 3DGS PLY (Inria layout, any property order) into recon Gaussians.

    Returns float32 tensors ``means [N,3]``, ``quats [N,4]`` (wxyz as stored), ``scales [N,3]``
    (log), ``opacities [N]`` (logit), ``sh0 [N,1,3]``, ``shN [N,K,3]`` (``K = 0`` at degree 0).
    Binary little/big endian and ASCII PLYs are accepted; a file written by :func:`write_ply` reads
    back bit-exactly. Raises :class:`ReconError` naming the file when it is not a 3DGS PLY.
    """
    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such PLY file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        fmt, n, props, _, offset = _read_header(f)
        if n < 0:
            raise ReconError(f"{path}: PLY has no vertex element")
        names = [p for p, _ in props]
        body = size - offset
        if fmt == "ascii":
            # every value takes at least two characters (a digit and a separator)
            if n * 2 * max(1, len(props)) > body:
                raise ReconError(
                    f"{path}: PLY header claims {n} vertices, but the file has {body} bytes of ASCII data "
                    f"(room for at most {body // (2 * max(1, len(props)))}): truncated or corrupt"
                )
            try:
                data = np.loadtxt(f, dtype=np.float64, max_rows=n, ndmin=2) if n else np.zeros((0, len(props)))
            except ValueError as e:
                raise ReconError(f"{path}: malformed ASCII PLY data ({' '.join(str(e).split())[:200]})") from None
            if data.shape[0] != n:
                raise ReconError(f"{path}: PLY is truncated ({data.shape[0]} of {n} vertices)")
            if n and data.shape[1] < len(props):
                raise ReconError(f"{path}: ASCII PLY rows have {data.shape[1]} values, expected {len(props)}")
            cols = {p: data[:, i] for i, p in enumerate(names)} if n else {p: np.zeros(0) for p in names}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            end = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(p, end + t) for p, t in props])
            if n * dtype.itemsize > body:  # checked before allocating: a lying header must not cost memory
                raise ReconError(
                    f"{path}: PLY header claims {n} vertices ({n * dtype.itemsize} bytes), but the file holds "
                    f"{body} bytes of vertex data ({body // max(1, dtype.itemsize)} vertices): truncated or corrupt; re-export it"
                )
            data = np.fromfile(f, dtype=dtype, count=n)
            if data.shape[0] != n:
                raise ReconError(f"{path}: PLY is truncated ({data.shape[0]} of {n} vertices)")
            cols = {p: data[p] for p in names}
        else:
            raise ReconError(f"{path}: unknown PLY format {fmt!r}")
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    need += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [p for p in need if p not in cols]
    if missing:
        raise ReconError(f"{path}: not a 3DGS PLY (missing properties {', '.join(missing)})")
    n_rest = sum(1 for p in names if p.startswith("f_rest_"))
    if n_rest % 3:
        raise ReconError(f"{path}: {n_rest} f_rest properties is not a multiple of 3")
    k = n_rest // 3
    sh_degree_from_rest(k)

    flat = None
    if fmt != "ascii" and _all_f4(props):
        flat = data.view(end + "f4").reshape(n, len(props))  # [N, P] view, no copy

    def stack(keys: list[str]) -> np.ndarray:
        if not keys:
            return np.zeros((n, 0), np.float32)
        if flat is not None and _contiguous(props, keys):
            first = names.index(keys[0])
            return np.array(flat[:, first : first + len(keys)], dtype=np.float32)
        return np.stack([np.asarray(cols[p], np.float32) for p in keys], axis=1)

    means = stack(["x", "y", "z"])
    sh0 = stack([f"f_dc_{i}" for i in range(3)]).reshape(n, 1, 3)
    rest = stack([f"f_rest_{i}" for i in range(3 * k)]).reshape(n, 3, k).transpose(0, 2, 1)
    opac = np.asarray(cols["opacity"], np.float32).copy()
    scales = stack([f"scale_{i}" for i in range(3)])
    quats = stack([f"rot_{i}" for i in range(4)])
    out = {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opac,
        "sh0": sh0,
        "shN": np.ascontiguousarray(rest, dtype=np.float32),
    }
    check_finite(out, path)
    return {k_: torch.from_numpy(np.ascontiguousarray(v)) for k_, v in out.items()}


def check_finite(s: Mapping[str, np.ndarray], name: Any) -> None:
    """Refuse Gaussians with NaN in any attribute or an infinite position, quaternion or colour.

    (``-inf``/``+inf`` opacities and scales stand for fully transparent/opaque and zero/huge
    Gaussians and are kept.) Raises :class:`ReconError` naming ``name``, the attribute and how many.
    """
    for key, arr in s.items():
        a = np.asarray(arr)
        bad = np.isnan(a) if key in ("opacities", "scales") else ~np.isfinite(a)
        if bad.any():
            rows = bad.reshape(a.shape[0], -1).any(axis=1) if a.ndim > 1 else bad
            what = "NaN" if key in ("opacities", "scales") else "non-finite (NaN or inf)"
            raise ReconError(
                f"{name}: {int(rows.sum())} of {a.shape[0]} Gaussians have {what} {key} (first: {int(np.argmax(rows))}); "
                "the model is corrupt: re-export it, or retrain from a checkpoint"
            )


def _contiguous(props: list[tuple[str, str]], keys: list[str]) -> bool:
    names = [p for p, _ in props]
    try:
        i = names.index(keys[0])
    except ValueError:
        return False
    return names[i : i + len(keys)] == keys


def _all_f4(props: list[tuple[str, str]]) -> bool:
    return all(t == "f4" for _, t in props)
