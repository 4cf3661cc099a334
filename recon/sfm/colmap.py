"""The pycolmap stages: SIFT features, matching and mapping, with a cache for features and matches.

Each stage writes a COLMAP database; the feature database is keyed by the image list and the
options that change features (camera model and grouping, extraction size, feature count), the
match database by that key plus the matching options. A finished database is renamed into place,
so a crash never leaves one that looks complete. Re-running with the same inputs and options
reuses both; changing only the mapper reuses both; changing the matcher reuses the features.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from recon.capture.ingest import CaptureImage
from recon.errors import ReconError
from recon.sfm.options import SfmOptions

Log = Callable[[str], None]

# Verified pairs with fewer inlier matches than this do not count as overlapping (COLMAP's default).
MIN_INLIERS = 15


@dataclass
class CameraGroup:
    """Images that share one camera (intrinsics), with the camera's initial parameters.

    ``params`` are in COLMAP's order for ``model`` at full resolution (``width x height``);
    ``has_prior`` says the focal length came from EXIF and should be trusted at the start.
    """

    model: str
    width: int
    height: int
    params: list[float]
    has_prior: bool
    names: list[str] = field(default_factory=list)


def initial_params(model: str, width: int, height: int, focal: float) -> list[float]:
    """COLMAP parameters for ``model`` with focal ``focal``, the principal point at the centre, no distortion."""
    cx, cy = width / 2.0, height / 2.0
    table = {
        "SIMPLE_PINHOLE": [focal, cx, cy],
        "PINHOLE": [focal, focal, cx, cy],
        "SIMPLE_RADIAL": [focal, cx, cy, 0.0],
        "RADIAL": [focal, cx, cy, 0.0, 0.0],
        "OPENCV": [focal, focal, cx, cy, 0.0, 0.0, 0.0, 0.0],
        "OPENCV_FISHEYE": [focal, focal, cx, cy, 0.0, 0.0, 0.0, 0.0],
    }
    if model not in table:
        raise ReconError(f"unsupported camera model {model!r}; expected one of {', '.join(table)}")
    return table[model]


def camera_groups(images: list[CaptureImage], opts: SfmOptions) -> list[CameraGroup]:
    """Group images into cameras according to ``opts.camera_mode`` (see :class:`SfmOptions`).

    The focal-length prior is the EXIF value when the group has one (the median over its images),
    else COLMAP's default guess ``1.2 * max(width, height)``.
    """
    if opts.camera_mode == "single":
        sizes = {(im.width, im.height) for im in images}
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
            raise ReconError(f"--camera-mode single needs images of one size, but they come in {len(sizes)} sizes ({shown}); use --camera-mode auto")
        keys = [("all",) for _ in images]
    elif opts.camera_mode == "per_image":
        keys = [(im.name,) for im in images]
    else:
        keys = [(im.width, im.height, im.camera_key, round(im.focal_px or 0.0, -1)) for im in images]
    groups: dict[tuple, list[CaptureImage]] = {}
    for k, im in zip(keys, images):
        groups.setdefault(k, []).append(im)
    out = []
    for ims in groups.values():
        w, h = ims[0].width, ims[0].height
        priors = [im.focal_px for im in ims if im.focal_px]
        f = float(np.median(priors)) if priors else 1.2 * max(w, h)
        # Without a focal prior COLMAP verifies pairs with a fundamental matrix, which fisheye
        # images cannot satisfy (every pair fails): fisheye models always treat the guess as a prior.
        prior = bool(priors) or opts.camera_model.endswith("FISHEYE")
        out.append(CameraGroup(opts.camera_model, w, h, initial_params(opts.camera_model, w, h, f), prior, [im.name for im in ims]))
    return out


@contextlib.contextmanager
def colmap_log(verbose: bool) -> Iterator[None]:
    """Silence COLMAP's own log (glog, on stderr) unless ``verbose``."""
    import pycolmap

    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 3  # our own diagnosis replaces its errors
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


def _done(db: Path) -> bool:
    return db.is_file() and db.with_suffix(".done").is_file()


def _finish(tmp: Path, db: Path) -> None:
    os.replace(tmp, db)
    db.with_suffix(".done").write_text(time.strftime("%Y-%m-%d %H:%M:%S"))


def extract(
    db: Path, image_dir: Path, groups: list[CameraGroup], opts: SfmOptions, log: Log
) -> bool:
    """SIFT features for every image of ``groups`` into the database ``db``; returns True if cached.

    Images are fed in chunks so progress can be reported; each group's camera is created with
    its initial parameters by the first chunk and reused by the next ones.
    """
    import pycolmap

    if _done(db) and not opts.force:
        log(f"reusing cached features ({db.name})")
        return True
    tmp = db.with_name(db.name + ".tmp")
    tmp.unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    eo = pycolmap.FeatureExtractionOptions()
    eo.max_image_size = int(opts.max_size)
    eo.num_threads = int(opts.num_threads)
    eo.sift.max_num_features = int(opts.num_features)
    total = sum(len(g.names) for g in groups)
    chunk = max(4, math.ceil(total / 10))
    done = 0
    with colmap_log(opts.verbose):
        for g in groups:
            cam_id = -1
            for start in range(0, len(g.names), chunk):
                names = g.names[start : start + chunk]
                if cam_id < 0:
                    ro = pycolmap.ImageReaderOptions(camera_model=g.model, camera_params=",".join(repr(float(p)) for p in g.params))
                else:
                    ro = pycolmap.ImageReaderOptions(existing_camera_id=cam_id)
                pycolmap.extract_features(
                    tmp, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                    reader_options=ro, extraction_options=eo, device=pycolmap.Device.cpu,
                )
                if cam_id < 0:
                    with pycolmap.Database.open(tmp) as d:
                        im = d.read_image_with_name(names[0])
                        if im is None:
                            raise ReconError(f"{image_dir / names[0]}: COLMAP could not read this image")
                        cam_id = int(im.camera_id)
                        if not g.has_prior:
                            cam = d.read_camera(cam_id)
                            cam.has_prior_focal_length = False
                            d.update_camera(cam)
                done += len(names)
                log(f"features {done}/{total}")
    _finish(tmp, db)
    return False


def choose_matcher(n_images: int, from_video: bool, opts: SfmOptions) -> str:
    """The matcher to use: the user's choice, else sequential for video or > 100 photos."""
    if opts.matcher != "auto":
        return opts.matcher
    return "sequential" if from_video or n_images > 100 else "exhaustive"


def loop_pairs(names: list[str], overlap: int, keyframes: int) -> list[tuple[str, str]]:
    """Pairs of evenly spaced key frames (in name order) further apart than the sequential overlap."""
    order = sorted(names)
    n = len(order)
    if n <= overlap + 1 or keyframes < 2:
        return []
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(keyframes, n))})
    pairs = []
    for a in range(len(idx)):
        for b in range(a + 1, len(idx)):
            if idx[b] - idx[a] > overlap:
                pairs.append((order[idx[a]], order[idx[b]]))
    return pairs


def match(db: Path, features_db: Path, names: list[str], matcher: str, opts: SfmOptions, log: Log) -> bool:
    """Match features (copying ``features_db`` to ``db``); returns True if ``db`` was cached."""
    import pycolmap

    if _done(db) and not opts.force:
        log(f"reusing cached matches ({db.name})")
        return True
    tmp = db.with_name(db.name + ".tmp")
    shutil.copyfile(features_db, tmp)
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = int(opts.num_threads)
    n = len(names)
    with colmap_log(opts.verbose):
        if matcher == "exhaustive":
            log(f"exhaustive matching: {n * (n - 1) // 2} image pairs")
            pycolmap.match_exhaustive(tmp, matching_options=mo, device=pycolmap.Device.cpu)
        elif matcher == "sequential":
            po = pycolmap.SequentialPairingOptions()
            po.overlap = int(opts.sequential_overlap)
            po.quadratic_overlap = True
            po.loop_detection = False  # needs a vocabulary tree, which COLMAP would download
            log(f"sequential matching: each image with its {po.overlap} neighbours (+ quadratic)")
            pycolmap.match_sequential(tmp, matching_options=mo, pairing_options=po, device=pycolmap.Device.cpu)
            if opts.loop_closure:
                pairs = loop_pairs(names, po.overlap, opts.loop_keyframes)
                if pairs:
                    log(f"loop closure: {len(pairs)} key-frame pairs")
                    lst = tmp.with_name(tmp.name + ".pairs.txt")
                    lst.write_text("".join(f"{a} {b}\n" for a, b in pairs))
                    io = pycolmap.ImportedPairingOptions()
                    io.match_list_path = lst
                    pycolmap.match_image_pairs(tmp, matching_options=mo, pairing_options=io, device=pycolmap.Device.cpu)
                    lst.unlink()
        else:
            raise ReconError(f"unknown matcher {matcher!r}; expected auto, exhaustive or sequential")
    _finish(tmp, db)
    return False


def verified_pairs(db: Path) -> tuple[dict[int, str], list[tuple[str, str, int, str]]]:
    """``({image_id: name}, [(name_a, name_b, inliers, config)])`` for every verified pair in ``db``."""
    import pycolmap

    with pycolmap.Database.open(db) as d:
        names = {int(im.image_id): im.name for im in d.read_all_images()}
        pair_ids, geoms = d.read_two_view_geometries()
    out = []
    for pid, g in zip(pair_ids, geoms):
        a, b = pycolmap.pair_id_to_image_pair(pid)
        cfg = g.config
        cfg = cfg.name if hasattr(cfg, "name") else pycolmap.TwoViewGeometryConfiguration(int(cfg)).name
        out.append((names[int(a)], names[int(b)], len(g.inlier_matches), cfg))
    return names, out


LOW_FEATURE_COUNT = 1500  # median keypoints per image below which registration thresholds are relaxed


def median_keypoints(db: Path) -> float:
    """Median number of keypoints per image in the database."""
    import pycolmap

    with pycolmap.Database.open(db) as d:
        counts = [d.num_keypoints_for_image(im.image_id) for im in d.read_all_images()]
    return float(np.median(counts)) if counts else 0.0


def map_images(db: Path, image_dir: Path, out_dir: Path, n_images: int, opts: SfmOptions, log: Log):
    """Run the mapper; returns the reconstruction with the most registered images, or None."""
    import pycolmap

    out_dir.mkdir(parents=True, exist_ok=True)
    min_model = 2 if n_images < 10 else 3
    pycolmap.set_random_seed(int(opts.seed))
    with colmap_log(opts.verbose):
        if opts.mapper == "global":
            go = pycolmap.GlobalPipelineOptions()
            go.min_model_size = min_model
            go.random_seed = int(opts.seed)
            go.num_threads = int(opts.num_threads)
            log("global mapping (rotation averaging, global positioning, bundle adjustment)")
            recs = pycolmap.global_mapping(db, image_dir, out_dir, options=go)
        else:
            io = pycolmap.IncrementalPipelineOptions()
            io.min_model_size = min_model
            io.random_seed = int(opts.seed)
            io.num_threads = int(opts.num_threads)
            io.extract_colors = True
            # Small or weakly textured images give few features: COLMAP's default of 30 inliers to
            # register an image then drops views that 15 well-spread inliers pose accurately.
            kp = median_keypoints(db)
            if kp < LOW_FEATURE_COUNT:
                io.mapper.abs_pose_min_num_inliers = 15
                log(f"few features per image (median {kp:.0f}): registering images from 15 inliers")
            count = [0]
            step = max(5, n_images // 10)

            def on_image() -> None:
                count[0] += 1
                if count[0] % step == 0:
                    log(f"registered {count[0] + 2}/{n_images} images")

            recs = pycolmap.incremental_mapping(db, image_dir, out_dir, options=io, next_image_callback=on_image)
    if not recs:
        return None
    best = max(recs.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))
    return best if best.num_reg_images() > 0 else None
