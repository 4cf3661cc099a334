"""Exports of dynamic (``splat4d``) runs: a per-frame splat sequence, the canonical model with its
deformation, and a time-sampled USD.

Three formats of ``recon export`` (:mod:`exporters.export`), each a pure function of the loaded
model (:class:`recon.deform.model.DeformedSplats`), the kept Gaussians and the export transform:

``splat-sequence``  ``sequence/frame_NNNNN.ply`` (Inria 3DGS layout, the model at each time) and
                    ``sequence/sequence.json`` (format ``recon-splat-sequence``: per frame its index,
                    time in [0, 1], file and Gaussian count; the frame, up axis and provenance).
                    Every frame holds the same Gaussians in the same order (Gaussian ``i`` of
                    frame ``k`` is Gaussian ``i`` of every frame), so players can interpolate.
``splat4d``         ``splat4d/canonical.ply`` + ``splat4d/deformation.safetensors`` (the run's own
                    files, :mod:`recon.deform.model`, filtered and moved into the export frame) and
                    ``splat4d/splat4d.json`` (the motion model's formula, tensor shapes, times).
``splat4d-usd``     ``splats4d.usdc``: one ``UsdVol.ParticleField3DGaussianSplat`` whose
                    ``positions``, ``orientations``, ``scales`` and ``extent`` carry one time sample
                    per frame (time code = frame index; ``startTimeCode`` 0, ``endTimeCode``
                    frames - 1, ``timeCodesPerSecond`` = ``framesPerSecond`` = the export fps);
                    opacities and SH are the canonical model's (the motion does not change them).

Frame times: ``time_samples`` evenly spaced times over [0, 1], or (0) the distinct times of the
run's cameras (the capture's frames).
"""

from __future__ import annotations

import json
import math
import time as _time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from exporters.splats import as_numpy, cap_sh_degree, transform_splats
from recon.errors import ReconError

DYNAMIC_FORMATS = ("splat-sequence", "splat4d", "splat4d-usd")
SEQUENCE_FORMAT = "recon-splat-sequence"
SEQUENCE_VERSION = 1
SPLAT4D_FORMAT = "recon-splat4d-export"
SPLAT4D_VERSION = 1
SEQUENCE_DIR = "sequence"
SPLAT4D_DIR = "splat4d"


def frame_file(k: int) -> str:
    return f"frame_{k:05d}.ply"


def load_model(root: Path):
    """The run's :class:`recon.deform.model.DeformedSplats`; :class:`ReconError` when the run is not
    a dynamic (``splat4d``) run."""
    from recon.deform import model as deform_model
    from recon.run import RunFolder

    rf = RunFolder.open(root)
    if rf.method != "splat4d" or "deformation" not in rf.artifacts:
        raise ReconError(f"{rf.root}: a {rf.method} run has no motion; the formats {', '.join(DYNAMIC_FORMATS)} "
                         "need a run trained with --method splat4d on a capture with times")
    rf.require_model()
    return deform_model.load(rf.root, rf.artifacts)


def run_times(root: Path) -> list[float]:
    """Distinct times (sorted) of the run's cameras (``cameras.json``); empty when none carry one."""
    from recon.run import RunFolder

    rf = RunFolder.open(root)
    try:
        cams = rf.cameras()
    except ReconError:
        return []
    return sorted({round(float(c.time), 9) for c in cams if c.time is not None})


def frame_times(root: Path, time_samples: int = 0) -> list[float]:
    """The export's frame times in [0, 1]: ``time_samples`` evenly spaced, or the run's camera times
    (11 evenly spaced when its cameras carry none)."""
    if time_samples < 0:
        raise ReconError(f"--time-samples {time_samples}: give a number of frames >= 1 (0: the capture's times)")
    if time_samples == 1:
        return [0.0]
    if time_samples > 1:
        return [k / (time_samples - 1) for k in range(time_samples)]
    ts = run_times(root)
    return ts if ts else [k / 10 for k in range(11)]


def _frame_splats(model, t: float, idx: np.ndarray, sh_degree: Optional[int], T: np.ndarray) -> dict[str, np.ndarray]:
    s = as_numpy(model.at(float(t)))
    s = {k: v[idx] for k, v in s.items()}
    if sh_degree is not None:
        s = cap_sh_degree(s, sh_degree)
    return transform_splats(s, T)


class _Progress:
    def __init__(self, what: str, total: int, log: Callable[[str], None], every_s: float = 5.0):
        self.what, self.total, self.log, self.every_s = what, total, log, every_s
        self.t0 = self.last = _time.monotonic()

    def update(self, done: int) -> None:
        now = _time.monotonic()
        if done != self.total and now - self.last < self.every_s:
            return
        self.last = now
        per = (now - self.t0) / max(done, 1)
        self.log(f"{self.what}: frame {done}/{self.total} ({100.0 * done / self.total:.0f}%), "
                 f"ETA {per * (self.total - done):.0f} s")


def write_sequence(model, idx: np.ndarray, times: Sequence[float], T: np.ndarray, folder: Path,
                   frame: str, sh_degree: Optional[int] = None, provenance: Optional[dict] = None,
                   log: Callable[[str], None] = lambda s: None) -> list[Path]:
    """Write the model at each of ``times`` as ``folder/frame_NNNNN.ply`` plus
    ``folder/sequence.json`` (see the module doc); ``idx``: indices of the kept canonical Gaussians;
    ``T``: the export transform ``[4, 4]`` (similarity). Returns the files, manifest first."""
    from exporters.ply import write_ply
    from recon.io_utils import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prov = {str(k): str(v) for k, v in (provenance or {}).items()}
    comments = [f"{k}: {v}" for k, v in prov.items()]
    files, entries = [], []
    progress = _Progress("splat-sequence", len(times), log)
    for k, t in enumerate(times):
        s = _frame_splats(model, t, idx, sh_degree, T)
        path = folder / frame_file(k)
        write_ply(s, path, comments=comments + [f"time: {float(t):.9g}", f"frame: {k}"])
        files.append(path)
        entries.append({"index": k, "time": float(t), "file": path.name, "gaussians": int(len(s["means"]))})
        progress.update(k + 1)
    manifest = {
        "format": SEQUENCE_FORMAT, "version": SEQUENCE_VERSION,
        "frames": entries, "time_range": [float(min(times)), float(max(times))],
        "time": "normalised scene time in [0, 1] (the run's time axis; 0 = first frame of the capture)",
        "correspondence": "Gaussian i of every frame is the same Gaussian (same order, same count)",
        "layout": "Inria 3DGS PLY (log scales, logit opacities, SH f_dc/f_rest)",
        "frame": frame, "provenance": prov,
    }
    atomic_write_text(folder / "sequence.json", json.dumps(manifest, indent=1))
    return [folder / "sequence.json"] + files


def read_sequence(manifest: Path) -> list[tuple[float, dict[str, torch.Tensor]]]:
    """``[(time, splats)]`` of a ``sequence.json`` written by :func:`write_sequence`."""
    from exporters.ply import read_ply

    manifest = Path(manifest)
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReconError(f"{manifest}: not a readable sequence manifest ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != SEQUENCE_FORMAT:
        raise ReconError(f"{manifest}: not a recon splat sequence (format {SEQUENCE_FORMAT!r} expected)")
    return [(float(e["time"]), read_ply(manifest.parent / e["file"])) for e in doc["frames"]]


# ---- canonical model + deformation --------------------------------------------------------------
def transform_model(model, idx: np.ndarray, T: np.ndarray, sh_degree: Optional[int] = None):
    """The model restricted to the canonical Gaussians ``idx`` and moved by the similarity ``T``
    (``x' = s R x + t``, ``R`` a rotation: a reflection cannot be expressed by the nodes' rigid
    motions). The result at any time ``t`` equals ``transform_splats(model.at(t)[idx], T)``:

    node positions ``p' = s R p + t``, radii ``r' = s r``, translations ``T'_j = s R T_j``,
    rotation offsets conjugated ``rot' = q_R rot q_R^-1`` (so ``R'_j = R R_j R^T``); the
    log-scale offsets act in each Gaussian's own axes and stay as they are.
    """
    from recon.deform.model import DeformedSplats
    from recon.deform.nodes import ControlNodes
    from recon.models.quaternions import quat_mul_np, rotmat_to_quat_np

    T = np.asarray(T, np.float64)
    A = T[:3, :3]
    det = float(np.linalg.det(A))
    if det <= 0:
        raise ReconError("the splat4d format cannot hold a left-handed frame (--axes y-up-left); "
                         "use the splat-sequence format or another --axes")
    s = float(np.cbrt(det))
    R = A / s
    canon = {k: v[idx] for k, v in as_numpy(model.splats).items()}
    if sh_degree is not None:
        canon = cap_sh_degree(canon, sh_degree)
    canon = transform_splats(canon, T)
    if model.nodes is None:
        return DeformedSplats(canon, None, None)
    t = {k: v.detach().cpu().double().numpy() for k, v in model.nodes.tensors().items()}
    qR = rotmat_to_quat_np(R)
    qRi = qR * np.array([1.0, -1.0, -1.0, -1.0])
    rot = t["rot"]
    rot2 = quat_mul_np(quat_mul_np(np.broadcast_to(qR, rot.shape), rot), np.broadcast_to(qRi, rot.shape))
    new = {
        "pos": torch.from_numpy((t["pos"] @ A.T + T[:3, 3]).astype(np.float32)),
        "log_radius": torch.from_numpy((t["log_radius"] + math.log(s)).astype(np.float32)),
        "trans": torch.from_numpy((t["trans"] @ A.T).astype(np.float32)),
        "rot": torch.from_numpy(np.ascontiguousarray(rot2, dtype=np.float32)),
        "dscale": torch.from_numpy(t["dscale"].astype(np.float32)),
        "graph": model.nodes.graph.detach().cpu().clone(),
    }
    nodes = ControlNodes.from_tensors(new, interp=model.nodes.interp)
    return DeformedSplats(canon, nodes, model.binding[torch.as_tensor(idx, dtype=torch.long)], model.with_scale)


def write_deformation(model, idx: np.ndarray, T: np.ndarray, folder: Path, frame: str, times: Sequence[float],
                      sh_degree: Optional[int] = None, provenance: Optional[dict] = None) -> list[Path]:
    """Write ``folder/canonical.ply``, ``folder/deformation.safetensors`` (the run's formats, in the
    export frame: :func:`transform_model`) and ``folder/splat4d.json``; returns the files."""
    from recon.deform import model as deform_model
    from recon.io_utils import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    moved = transform_model(model, idx, T, sh_degree)
    prov = {str(k): str(v) for k, v in (provenance or {}).items()}
    arts = deform_model.save(moved, folder, comments=[f"{k}: {v}" for k, v in prov.items()])
    nodes = moved.nodes
    manifest = {
        "format": SPLAT4D_FORMAT, "version": SPLAT4D_VERSION,
        "files": {"canonical": arts["model"], "deformation": arts.get("deformation")},
        "gaussians": moved.num_primitives,
        "nodes": None if nodes is None else nodes.num_nodes,
        "keyframes": None if nodes is None else nodes.keyframes,
        "interp": None if nodes is None else nodes.interp,
        "with_scale": moved.with_scale,
        "times": [float(t) for t in times],
        "frame": frame,
        "model": {
            "time": "normalised t in [0, 1]; keyframe k at t = k / (keyframes - 1), interpolated in between as "
                    "'interp' says (linear, or cubic: uniform Catmull-Rom, end segments with the missing "
                    "neighbour extrapolated linearly)",
            "node_motion": "q_j(t) = normalize((1, 0, 0, 0) + rot[j](t)) (wxyz), T_j(t) = trans[j](t), "
                           "dS_j(t) = dscale[j](t)",
            "weights": "w_j = softmax over the Gaussian's nodes binding[i] of -|x - pos_j|^2 / (2 exp(log_radius_j)^2)",
            "position": "x(t) = sum_j w_j (R(q_j(t)) (x - pos_j) + pos_j + T_j(t))",
            "rotation": "q(t) = normalize(sum_j w_j q_j(t)) * q  (Hamilton product)",
            "log_scale": "log s(t) = log s + sum_j w_j dS_j(t)  (when with_scale)",
            "tensors": {"pos": "[M, 3]", "log_radius": "[M]", "trans": "[M, K, 3]", "rot": "[M, K, 4]",
                        "dscale": "[M, K, 3]", "graph": "[M, G] (node neighbours, regulariser only)",
                        "binding": "[N, k] node indices of each canonical Gaussian"},
        },
        "provenance": prov,
    }
    atomic_write_text(folder / "splat4d.json", json.dumps(manifest, indent=1))
    return [folder / "splat4d.json", folder / arts["model"]] + ([folder / arts["deformation"]] if "deformation" in arts else [])


def read_deformation(folder: Path):
    """The :class:`recon.deform.model.DeformedSplats` of a folder written by :func:`write_deformation`."""
    from recon.deform import model as deform_model

    folder = Path(folder)
    mp = folder / "splat4d.json"
    try:
        doc = json.loads(mp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReconError(f"{mp}: not a readable splat4d manifest ({e})") from None
    files = doc.get("files", {})
    arts = {"model": files.get("canonical", deform_model.CANONICAL_FILE)}
    if files.get("deformation"):
        arts["deformation"] = files["deformation"]
    return deform_model.load(folder, arts)


# ---- time-sampled USD -----------------------------------------------------------------------------
def write_usd_sequence(model, idx: np.ndarray, times: Sequence[float], T: np.ndarray, path: Path,
                       up_axis: str = "Y", fps: float = 24.0, sh_degree: Optional[int] = None,
                       provenance: Optional[dict] = None, log: Callable[[str], None] = lambda s: None) -> Path:
    """Write one ``ParticleField3DGaussianSplat`` with time samples on positions, orientations,
    scales and extent (time code ``k`` = frame ``k`` at ``times[k]``) to ``path`` atomically."""
    from exporters.atomic import atomic_path
    from exporters.usd_splat import SPLATS_PATH, _pxr, build_usd_stage

    Gf, Sdf, Usd, UsdGeom, UsdVol, Vt = _pxr()
    if not (math.isfinite(fps) and fps > 0):
        raise ReconError(f"--fps {fps}: give a positive frame rate")
    from exporters.splats import sh_degree_from_rest

    model_deg = sh_degree_from_rest(int(model.splats["shN"].shape[1]))
    sh_degree = min(3, model_deg if sh_degree is None else sh_degree)  # the schema holds up to degree 3
    prov = dict(provenance or {})
    prov["times"] = json.dumps([round(float(t), 9) for t in times])
    first = _frame_splats(model, times[0], idx, sh_degree, T)
    stage = build_usd_stage(first, up_axis, 1.0, prov)
    n = len(times)
    stage.SetStartTimeCode(0.0)
    stage.SetEndTimeCode(float(n - 1))
    stage.SetTimeCodesPerSecond(float(fps))
    stage.SetFramesPerSecond(float(fps))
    gs = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath(SPLATS_PATH))
    pos_a, ori_a, sca_a, ext_a = (gs.GetPositionsAttr(), gs.GetOrientationsAttr(), gs.GetScalesAttr(),
                                  gs.GetExtentAttr())
    progress = _Progress("splat4d-usd", n, log)
    for k, t in enumerate(times):
        s = first if k == 0 else _frame_splats(model, t, idx, sh_degree, T)
        q = s["quats"].astype(np.float64)
        nrm = np.linalg.norm(q, axis=1, keepdims=True)
        q = np.where(nrm > 0, q / np.where(nrm > 0, nrm, 1), np.array([1.0, 0, 0, 0]))
        means = np.ascontiguousarray(s["means"], np.float32)
        code = Usd.TimeCode(float(k))
        pos_a.Set(Vt.Vec3fArray.FromNumpy(means), code)
        ori_a.Set(Vt.QuatfArray.FromNumpy(np.ascontiguousarray(q[:, [1, 2, 3, 0]], np.float32)), code)
        sca_a.Set(Vt.Vec3fArray.FromNumpy(np.exp(s["scales"].astype(np.float64)).astype(np.float32)), code)
        if len(means):
            pad = 3.0 * float(np.exp(s["scales"].max()))
            ext = np.stack([means.min(0) - pad, means.max(0) + pad]).astype(np.float32)
        else:
            ext = np.zeros((2, 3), np.float32)
        ext_a.Set(Vt.Vec3fArray.FromNumpy(ext), code)
        progress.update(k + 1)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not stage.GetRootLayer().Export(str(tmp)):
            raise ReconError(f"USD could not write {path}")
    return path
