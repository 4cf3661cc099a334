"""Gaussian splats as glTF 2.0 binary (GLB) with ``KHR_gaussian_splatting``.

Follows the Khronos extension (release candidate, KhronosGroup/glTF ``extensions/2.0/Khronos/
KHR_gaussian_splatting``): one mesh with one ``POINTS`` primitive whose ``extensions`` entry is
``{"kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection": "perspective",
"sortingMethod": "cameraDistance"}`` and whose attributes are

==========================================  ======  ======================================
attribute                                   type    content
==========================================  ======  ======================================
``POSITION``                                VEC3 f  centres (with min/max)
``COLOR_0``                                 VEC4 u8n fallback point colour: linear RGB of the
                                                    clamped diffuse colour, alpha = opacity
``KHR_gaussian_splatting:ROTATION``         VEC4 f  unit quaternion, glTF order (x, y, z, w)
``KHR_gaussian_splatting:SCALE``            VEC3 f  linear standard deviations
``KHR_gaussian_splatting:OPACITY``          SCALAR  sigmoid(opacity) in [0, 1]
``KHR_gaussian_splatting:SH_DEGREE_0_COEF_0``  VEC3 f  SH DC (colour = 0.5 + 0.282095 * DC)
``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n``  VEC3 f  degree l, order m = n - l (l = 1..3)
==========================================  ======  ======================================

The extension is listed in ``extensionsUsed`` but not ``extensionsRequired``: viewers without it
show a coloured point cloud. glTF is right-handed, +Y up, metres: the writer stores the Gaussians
as given, so callers convert first (``recon export`` rotates the scene's up axis onto +Y and applies
``--scale``). Provenance goes in ``asset.extras.recon``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from exporters.atomic import write_bytes_atomic
from exporters.splats import SH_C0, as_numpy, sh_degree_from_rest
from recon.errors import ReconError

EXT = "KHR_gaussian_splatting"
FLOAT, UNSIGNED_BYTE = 5126, 5121
ARRAY_BUFFER = 34962
_NCOMP = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def sh_attribute_names(degree: int) -> list[str]:
    """Attribute semantics of the SH coefficients up to ``degree``, in coefficient order."""
    names = [f"{EXT}:SH_DEGREE_0_COEF_0"]
    for l in range(1, degree + 1):
        names += [f"{EXT}:SH_DEGREE_{l}_COEF_{n}" for n in range(2 * l + 1)]
    return names


def encode_glb(splats: Mapping[str, Any], provenance: Mapping[str, str] | None = None, name: str = "splats") -> bytes:
    """GLB bytes holding recon Gaussians as a ``KHR_gaussian_splatting`` point primitive.

    Args:
        splats: recon Gaussians (torch or numpy), already in glTF axes (+Y up, metres), SH <= 3.
        provenance: string fields recorded under ``asset.extras.recon``.
        name: node and mesh name.
    """
    from recon import __version__

    s = as_numpy(splats)
    n = s["means"].shape[0]
    if n == 0:
        raise ReconError("cannot write an empty glTF splat primitive (no Gaussians left after filtering)")
    deg = sh_degree_from_rest(s["shN"].shape[1])
    if deg > 3:
        raise ReconError(f"KHR_gaussian_splatting stores SH up to degree 3, the model has {deg}; pass --sh-degree 3")

    q = s["quats"].astype(np.float64)
    nrm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(nrm > 0, q / np.where(nrm > 0, nrm, 1), np.array([1.0, 0, 0, 0]))
    rot_xyzw = q[:, [1, 2, 3, 0]].astype(np.float32)
    rot_xyzw /= np.linalg.norm(rot_xyzw, axis=1, keepdims=True)  # unit in float32 too
    scale = np.exp(s["scales"].astype(np.float64)).astype(np.float32)
    opacity = (1.0 / (1.0 + np.exp(-s["opacities"].astype(np.float64)))).astype(np.float32)
    rgb = np.clip(0.5 + SH_C0 * s["sh0"][:, 0, :].astype(np.float64), 0.0, 1.0)
    color = np.concatenate([srgb_to_linear(rgb), opacity[:, None].astype(np.float64)], axis=1)
    color_u8 = np.clip(np.round(color * 255.0), 0, 255).astype(np.uint8)
    coeffs = np.concatenate([s["sh0"], s["shN"]], axis=1).astype(np.float32)  # [N, (d+1)^2, 3]

    arrays: list[tuple[str, np.ndarray, str, int, bool]] = [
        ("POSITION", np.ascontiguousarray(s["means"], np.float32), "VEC3", FLOAT, False),
        ("COLOR_0", color_u8, "VEC4", UNSIGNED_BYTE, True),
        (f"{EXT}:ROTATION", rot_xyzw, "VEC4", FLOAT, False),
        (f"{EXT}:SCALE", scale, "VEC3", FLOAT, False),
        (f"{EXT}:OPACITY", opacity, "SCALAR", FLOAT, False),
    ]
    for i, sem in enumerate(sh_attribute_names(deg)):
        arrays.append((sem, np.ascontiguousarray(coeffs[:, i, :]), "VEC3", FLOAT, False))

    blobs, views, accessors, attributes = [], [], [], {}
    offset = 0
    for sem, arr, typ, ctype, normalized in arrays:
        data = arr.astype("<f4" if ctype == FLOAT else "u1").tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": ARRAY_BUFFER})
        acc: dict[str, Any] = {"bufferView": len(views) - 1, "componentType": ctype, "count": n, "type": typ}
        if normalized:
            acc["normalized"] = True
        if sem == "POSITION":
            acc["min"] = [float(v) for v in arr.min(axis=0)]
            acc["max"] = [float(v) for v in arr.max(axis=0)]
        attributes[sem] = len(accessors)
        accessors.append(acc)
        pad = (-len(data)) % 4
        blobs += [data, b"\0" * pad]
        offset += len(data) + pad
    binary = b"".join(blobs)

    extras = {"recon": dict(provenance)} if provenance else {}
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": f"recon {__version__}", **({"extras": extras} if extras else {})},
        "extensionsUsed": [EXT],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [
            {
                "name": name,
                "primitives": [
                    {
                        "attributes": attributes,
                        "mode": 0,
                        "extensions": {
                            EXT: {
                                "kernel": "ellipse",
                                "colorSpace": "srgb_rec709_display",
                                "projection": "perspective",
                                "sortingMethod": "cameraDistance",
                            }
                        },
                    }
                ],
            }
        ],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    return pack_glb(doc, binary)


def write_glb(splats: Mapping[str, Any], path: str | os.PathLike, provenance: Mapping[str, str] | None = None) -> Path:
    """Write :func:`encode_glb` output to ``path`` atomically; returns the path."""
    path = Path(path)
    write_bytes_atomic(path, encode_glb(splats, provenance))
    return path


def parse_glb(data: bytes, name: str = "<bytes>") -> tuple[dict[str, Any], bytes]:
    """Split GLB bytes into ``(json document, BIN chunk)``."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise ReconError(f"{name}: not a GLB file")
    _, version, total = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise ReconError(f"{name}: GLB version {version}, expected 2")
    if total > len(data):
        raise ReconError(f"{name}: GLB header declares {total} bytes but the file has {len(data)}: truncated")
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    if jtype != b"JSON":
        raise ReconError(f"{name}: first GLB chunk is not JSON")
    if 20 + jlen > total:
        raise ReconError(f"{name}: GLB JSON chunk of {jlen} bytes runs past the end of the file: truncated or corrupt")
    try:
        doc = json.loads(bytes(data[20 : 20 + jlen]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ReconError(f"{name}: GLB JSON chunk is malformed ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(doc, dict):
        raise ReconError(f"{name}: GLB JSON chunk is not an object")
    binary = b""
    off = 20 + jlen
    if off + 8 <= total:
        blen, btype = struct.unpack_from("<I4s", data, off)
        if btype == b"BIN\0":
            if off + 8 + blen > total:
                raise ReconError(f"{name}: GLB BIN chunk of {blen} bytes runs past the end of the file: truncated or corrupt")
            binary = data[off + 8 : off + 8 + blen]
    return doc, binary


def decode_glb(data: bytes, name: str = "<bytes>") -> dict[str, torch.Tensor]:
    """Read the first ``KHR_gaussian_splatting`` primitive of a GLB written by :func:`encode_glb`."""
    doc, binary = parse_glb(data, name)
    try:
        return _decode_doc(doc, binary, name)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise ReconError(f"{name}: malformed glTF document ({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None


def _index(doc: Mapping[str, Any], key: str, i: Any, name: str) -> Mapping[str, Any]:
    items = doc.get(key)
    if not isinstance(items, list) or not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(items):
        raise ReconError(f"{name}: glTF {key} index {i!r} is out of range")
    if not isinstance(items[i], dict):
        raise ReconError(f"{name}: glTF {key}[{i}] is not an object")
    return items[i]


def _nonneg(v: Any, what: str, name: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ReconError(f"{name}: glTF {what} must be a non-negative integer, got {v!r}")
    return v


def _decode_doc(doc: Mapping[str, Any], binary: bytes, name: str) -> dict[str, torch.Tensor]:
    count: list[int] = []

    def read(idx: Any) -> np.ndarray:
        # Every offset and length is checked against the BIN chunk before a view is made.
        acc = _index(doc, "accessors", idx, name)
        view = _index(doc, "bufferViews", acc.get("bufferView"), name)
        if acc.get("componentType") not in (FLOAT, UNSIGNED_BYTE):
            raise ReconError(f"{name}: accessor {idx} has unsupported componentType {acc.get('componentType')!r}")
        if acc.get("type") not in _NCOMP:
            raise ReconError(f"{name}: accessor {idx} has unsupported type {acc.get('type')!r}")
        dt = np.dtype("<f4") if acc["componentType"] == FLOAT else np.dtype("u1")
        nc = _NCOMP[acc["type"]]
        n = _nonneg(acc.get("count"), f"accessor {idx} count", name)
        if count and n != count[0]:
            raise ReconError(f"{name}: accessor {idx} has {n} elements, POSITION has {count[0]}")
        count.append(n)
        v_off = _nonneg(view.get("byteOffset", 0), "bufferView byteOffset", name)
        v_len = _nonneg(view.get("byteLength"), "bufferView byteLength", name)
        a_off = _nonneg(acc.get("byteOffset", 0), f"accessor {idx} byteOffset", name)
        stride = view.get("byteStride")
        if stride is not None and stride != dt.itemsize * nc:
            raise ReconError(f"{name}: interleaved bufferView (byteStride {stride}) is not supported")
        if v_off + v_len > len(binary):
            raise ReconError(f"{name}: bufferView [{v_off}, {v_off + v_len}) runs past the {len(binary)}-byte BIN chunk: corrupt")
        if a_off + n * nc * dt.itemsize > v_len:
            raise ReconError(f"{name}: accessor {idx} ({n} x {acc['type']}) runs past its bufferView: corrupt")
        arr = np.frombuffer(binary, dt, n * nc, v_off + a_off)
        return arr.reshape(n, nc) if nc > 1 else arr.copy()

    meshes = doc.get("meshes", [])
    if not isinstance(meshes, list):
        raise ReconError(f"{name}: glTF 'meshes' is not a list")
    for mesh in meshes:
        for prim in mesh["primitives"]:
            if EXT not in prim.get("extensions", {}):
                continue
            at = prim["attributes"]
            for sem in ("POSITION", f"{EXT}:ROTATION", f"{EXT}:SCALE", f"{EXT}:OPACITY", f"{EXT}:SH_DEGREE_0_COEF_0"):
                if sem not in at:
                    raise ReconError(f"{name}: {EXT} primitive has no {sem} attribute")
            means = read(at["POSITION"]).astype(np.float32)
            q = read(at[f"{EXT}:ROTATION"])
            deg = 0
            while f"{EXT}:SH_DEGREE_{deg + 1}_COEF_0" in at:
                deg += 1
            coeffs = np.stack([read(at[sem]) for sem in sh_attribute_names(deg)], axis=1)
            op = np.clip(read(at[f"{EXT}:OPACITY"]).astype(np.float64), 1e-7, 1 - 1e-7)
            out = {
                "means": means,
                "quats": q[:, [3, 0, 1, 2]].astype(np.float32),
                "scales": np.log(np.maximum(read(at[f"{EXT}:SCALE"]).astype(np.float64), 1e-30)).astype(np.float32),
                "opacities": np.log(op / (1 - op)).astype(np.float32),
                "sh0": coeffs[:, :1].astype(np.float32),
                "shN": np.ascontiguousarray(coeffs[:, 1:], dtype=np.float32),
            }
            from recon.models.splats_io import check_finite

            check_finite(out, name)
            return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
    raise ReconError(f"{name}: no {EXT} primitive found")


def read_glb(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a splat GLB file (see :func:`decode_glb`)."""
    path = Path(path)
    if not path.is_file():
        raise ReconError(f"{path}: no such GLB file")
    return decode_glb(path.read_bytes(), str(path))


# ---------------------------------------------------------------------------------------------
# Khronos glTF-Validator (Node.js), installed by `npm ci --prefix tools/js`
# ---------------------------------------------------------------------------------------------


def validator_available() -> str | None:
    """``None`` when the glTF-Validator can run, otherwise the reason it cannot."""
    from exporters.jstools import unavailable

    return unavailable("gltf-validator")


def validate_gltf(path: str | os.PathLike, timeout: float = 120.0) -> dict[str, Any]:
    """Run the Khronos glTF-Validator on ``path``; returns its JSON report.

    ``report["issues"]["numErrors"]`` counts errors; ``report["issues"]["messages"]`` lists them.
    Raises :class:`ReconError` when the validator is not installed.
    """
    from exporters.jstools import run_node

    why = validator_available()
    if why:
        raise ReconError(why)
    proc = run_node("validate-gltf.js", str(Path(path).resolve()), timeout=timeout)
    if proc.returncode not in (0, 1):
        raise ReconError(f"glTF-Validator failed on {path}: {proc.stderr.strip() or proc.stdout.strip()}")
    return json.loads(proc.stdout)


def is_extension_semantic_issue(message: Mapping[str, Any]) -> bool:
    """True for the validator's known false positive on ``KHR_gaussian_splatting:*`` semantics.

    glTF-Validator 2.0.0-dev.3.10 (the newest release, and its main branch as of 2026) only accepts
    core and ``_``-prefixed attribute names and reports ``MESH_PRIMITIVE_INVALID_ATTRIBUTE`` for the
    extension-prefixed semantics that KHR_gaussian_splatting defines (KhronosGroup/glTF-Validator
    issue #252, pending glTF spec PR #2514).
    """
    return message.get("code") == "MESH_PRIMITIVE_INVALID_ATTRIBUTE" and "/attributes/" + EXT + ":" in str(
        message.get("pointer", "")
    )


def validation_errors(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Errors (severity 0) of a validator report, except :func:`is_extension_semantic_issue` ones."""
    msgs = report.get("issues", {}).get("messages", [])
    return [m for m in msgs if m.get("severity") == 0 and not is_extension_semantic_issue(m)]


def with_underscore_semantics(data: bytes) -> bytes:
    """The same GLB with ``KHR_gaussian_splatting:X`` attributes renamed ``_KHR_gaussian_splatting_X``.

    Application-specific (``_``) names are valid core glTF, so the validator checks every accessor
    and buffer of the file without the false positive above; tests use it as a control.
    """
    doc, binary = parse_glb(data)
    for mesh in doc.get("meshes", []):
        for prim in mesh["primitives"]:
            prim["attributes"] = {
                ("_" + k.replace(":", "_") if k.startswith(EXT + ":") else k): v for k, v in prim["attributes"].items()
            }
    return pack_glb(doc, binary)


def pack_glb(doc: Mapping[str, Any], binary: bytes) -> bytes:
    """A GLB container: the JSON chunk (space-padded to 4 bytes) and the BIN chunk (already padded)."""
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(js), b"JSON"),
            js,
            struct.pack("<I4s", len(binary), b"BIN\0"),
            binary,
        ]
    )
