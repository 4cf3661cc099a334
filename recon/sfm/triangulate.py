"""Sparse points for a scene that has camera poses but no points: triangulation with the poses fixed.

Many captures arrive posed but without points (instant-ngp / nerfstudio ``transforms.json`` from
phone apps, LLFF folders, Blender exports of real scans, poses from a tracking system). Gaussian
splats initialised at random in such scenes fill the space between the cameras and the subject
with Gaussians that each explain one training view. This module gives them SfM-quality points
without re-solving the poses:

    SIFT features (pycolmap, every training image) ─► matching of pose-neighbour pairs
    ─► triangulation with the given intrinsics and poses held fixed ─► filtered points + colours

The cameras go to COLMAP in their own model (distortion included), so the points are right for
distorted images too. The result is cached in the scene's work folder (never in the scene folder),
keyed by the images (name, size, modification time), the cameras and the options; a re-run with the
same inputs reuses it in milliseconds. Only training frames are used: held-out views stay unseen.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recon.errors import ReconError
from recon.io_utils import atomic_write_text
from recon.scene.cameras import Camera
from recon.scene.scene import Scene

VERSION = 1
MIN_POINTS = 100
"""Fewer triangulated points than this count as a failure (the caller falls back to random init)."""

Log = Callable[[str], None]


@dataclass
class TriangulationOptions:
    max_size: int = 1600
    """Longest image side used for SIFT features."""
    num_features: int = 8192
    """Maximum SIFT features per image."""
    neighbours: int = 20
    """Each image is matched with this many pose neighbours (nearest centres, axes within 90 degrees)."""
    max_reproj_error: float = 2.0
    """Points whose mean reprojection error exceeds this (pixels) are dropped."""
    num_threads: int = -1


@dataclass
class Triangulation:
    points: np.ndarray
    """``[P, 3]`` float64 world points (the scene's world frame)."""
    colors: np.ndarray
    """``[P, 3]`` uint8 colours."""
    report: dict
    """images, pairs, points, mean track length, mean reprojection error, seconds, cached."""

    def describe(self) -> str:
        r = self.report
        how = "cached" if r.get("cached") else f"{r['seconds']:.0f} s"
        return (f"{len(self.points):,} points triangulated from {r['images']} training images with the given poses "
                f"({r['pairs']} pose-neighbour pairs, mean track {r['mean_track']:.1f}, "
                f"reprojection {r['mean_error']:.2f} px; {how})")


def colmap_params(cam: Camera) -> tuple[str, list[float]]:
    """COLMAP's model name and parameter list for ``cam`` (recon's models are COLMAP's)."""
    fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    d = cam.dist.tolist()
    if cam.model in ("SIMPLE_RADIAL", "RADIAL"):
        return cam.model, [0.5 * (fx + fy), cx, cy, *d]
    return cam.model, [fx, fy, cx, cy, *d]


def _pairs(cams: list[Camera], names: list[str], k: int) -> list[tuple[str, str]]:
    """Each image with its ``k`` nearest cameras whose optical axes are within 90 degrees of its own."""
    c = np.stack([cm.center for cm in cams])
    z = np.stack([cm.c2w[:3, 2] for cm in cams])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    d[z @ z.T < 0.0] = np.inf
    np.fill_diagonal(d, np.inf)
    out = set()
    for i in range(len(cams)):
        for j in np.argsort(d[i])[: min(k, len(cams) - 1)]:
            if np.isfinite(d[i, j]):
                out.add((min(i, int(j)), max(i, int(j))))
    return [(names[i], names[j]) for i, j in sorted(out)]


def cache_key(scene: Scene, frames: list[int], opts: TriangulationOptions) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"v": VERSION, "opts": vars(opts) | {"num_threads": 0}}, sort_keys=True).encode())
    for i in frames:
        f = scene.frames[i]
        st = os.stat(f.image_path)
        cam = f.source_camera or f.camera
        h.update(f"{os.path.abspath(f.image_path)}|{st.st_size}|{st.st_mtime_ns}|{cam.model}|{cam.width}x{cam.height}".encode())
        for a in (cam.K, cam.dist, np.round(cam.c2w, 9)):
            h.update(np.ascontiguousarray(a, np.float64).tobytes())
    return h.hexdigest()[:20]


def cache_dir(scene: Scene) -> Path:
    """``<work folder of the scene>/triangulate`` (see :func:`recon.sfm.pipeline.work_dir`)."""
    from recon.sfm.pipeline import work_dir

    return work_dir(scene.root) / "triangulate"


def triangulate(scene: Scene, frames: list[int], opts: Optional[TriangulationOptions] = None,
                log: Log = print, cache: Optional[Path] = None) -> Optional[Triangulation]:
    """Points for ``scene`` from the images of ``frames`` with their poses fixed, or ``None`` when
    fewer than :data:`MIN_POINTS` points triangulate (textureless images, no overlap)."""
    opts = opts or TriangulationOptions()
    frames = [i for i in frames if scene.frames[i].camera is not None]
    if len(frames) < 2:
        return None
    root = Path(cache) if cache is not None else cache_dir(scene)
    key = cache_key(scene, frames, opts)
    done = root / key / "points.npz"
    if done.is_file():
        try:
            with np.load(done) as z:
                pts, cols = z["points"], z["colors"]
            report = json.loads((root / key / "report.json").read_text())
            report["cached"] = True
            if len(pts) < MIN_POINTS:
                return None
            return Triangulation(pts, cols, report)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry: recompute it
    t0 = time.perf_counter()
    work = root / f"{key}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        pts, cols, report = _run(scene, frames, opts, work, log)
    finally:
        for p in ("features.db", "matches.db", "pairs.txt", "model"):
            q = work / p
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)
    report["seconds"] = time.perf_counter() - t0
    np.savez(work / "points.npz", points=pts, colors=cols)
    atomic_write_text(work / "report.json", json.dumps(report, indent=1) + "\n")
    final = root / key
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)
    report["cached"] = False
    if len(pts) < MIN_POINTS:
        log(f"[init] triangulation with the given poses found only {len(pts)} points")
        return None
    return Triangulation(pts, cols, report)


def _run(scene: Scene, frames: list[int], opts: TriangulationOptions, work: Path, log: Log):
    import pycolmap

    from recon.sfm import colmap as C
    from recon.sfm.options import SfmOptions

    paths = [Path(os.path.abspath(scene.frames[i].image_path)) for i in frames]
    base = Path(os.path.commonpath([str(p.parent) for p in paths]))
    names = [p.relative_to(base).as_posix() for p in paths]
    cams = [scene.frames[i].source_camera or scene.frames[i].camera for i in frames]
    groups: dict[tuple, C.CameraGroup] = {}
    for name, cam in zip(names, cams):
        model, params = colmap_params(cam)
        g = (model, cam.width, cam.height, tuple(np.round(params, 9)))
        if g not in groups:
            groups[g] = C.CameraGroup(model, cam.width, cam.height, list(params), True)
        groups[g].names.append(name)
    sopts = SfmOptions(max_size=opts.max_size, num_features=opts.num_features, num_threads=opts.num_threads)
    n = len(frames)
    log(f"[init] triangulating points with the given poses: features for {n} training images")
    C.extract(work / "features.db", base, list(groups.values()), sopts, lambda m: log(f"[init] {m}"))
    pairs = _pairs(cams, names, opts.neighbours)
    log(f"[init] matching {len(pairs)} pose-neighbour pairs")
    db = work / "matches.db"
    shutil.copyfile(work / "features.db", db)
    lst = work / "pairs.txt"
    lst.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = int(opts.num_threads)
    po = pycolmap.ImportedPairingOptions()
    po.match_list_path = lst
    with C.colmap_log(False):
        pycolmap.match_image_pairs(db, matching_options=mo, pairing_options=po, device=pycolmap.Device.cpu)

    rec = pycolmap.Reconstruction()
    by_name = dict(zip(names, cams))
    with pycolmap.Database.open(db) as d:
        for cam in d.read_all_cameras():
            rec.add_camera_with_trivial_rig(cam)
        for im in d.read_all_images():
            cam = by_name[im.name]
            w2c = np.linalg.inv(cam.c2w)
            image = pycolmap.Image(name=im.name, camera_id=im.camera_id, image_id=im.image_id)
            rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[:3, :4]))
    io = pycolmap.IncrementalPipelineOptions()
    io.num_threads = int(opts.num_threads)
    (work / "model").mkdir()
    log("[init] triangulating")
    with C.colmap_log(False):
        rec = pycolmap.triangulate_points(rec, db, base, work / "model", clear_points=True, options=io)
    rec.extract_colors_for_all_images(base)
    pts, cols, tracks, errs = [], [], [], []
    for _, p in rec.points3D.items():
        if p.error <= opts.max_reproj_error and p.track.length() >= 2:
            pts.append(p.xyz)
            cols.append(p.color)
            tracks.append(p.track.length())
            errs.append(p.error)
    pts = np.asarray(pts, np.float64).reshape(-1, 3)
    cols = np.asarray(cols, np.uint8).reshape(-1, 3)
    report = {
        "images": n, "pairs": len(pairs), "points": int(len(pts)),
        "mean_track": float(np.mean(tracks)) if tracks else 0.0,
        "mean_error": float(np.mean(errs)) if errs else math.nan,
    }
    return pts, cols, report
