"""``process``: photos or videos to posed, undistorted frames (the stages, in order).

    ingest ─► features ─► matching ─► mapping ─► undistort ─► outputs (frame, transforms.json, report)

Everything is built in ``OUT/.staging`` and moved into ``OUT`` only when every stage succeeded
(``transforms.json`` last), so a failed or interrupted run never leaves output that looks valid;
the previous run's output, if any, stays until then. ``OUT/.cache`` keeps the ingested images and
the feature and match databases for re-runs (see :mod:`recon.sfm.colmap`).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import shutil
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from recon.capture.ingest import OUTPUT_MARKER, IngestOptions, IngestResult, ingest, is_output_dir, list_media
from recon.errors import ReconError
from recon.scene.conventions import opencv_to_opengl
from recon.sfm import colmap as C
from recon.sfm.normalize import Normalization, normalization, transform_c2w
from recon.sfm.options import SfmOptions, options_key
from recon.sfm.report import diagnose, plot, reconstruction_stats, text_report, write_json

PIPELINE_VERSION = 1
POSED_FORMATS = ("nerfstudio", "blender", "dnerf", "colmap", "llff")
# Output entries, in the order they are moved into place (transforms.json last).
OUTPUT_ITEMS = (
    "images", "distorted", "points.ply", "sfm_transform.json", "sfm_report.json", "sfm_report.txt",
    "sfm_report.png", "sparse", "transforms.json",
)
STAGES = ("ingest", "features", "matching", "mapping", "undistort", "outputs")


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def print_progress(msg: str) -> None:
    """Default progress sink: one line on stderr."""
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """Stage-by-stage progress lines (``[2/6] features: 40/120``) plus per-stage wall time."""

    def __init__(self, log: Optional[Callable[[str], None]]) -> None:
        self._log = log
        self.timings: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._stage = ""

    def __call__(self, msg: str) -> None:
        if self._log is not None:
            i = STAGES.index(self._stage) + 1 if self._stage in STAGES else 0
            prefix = f"[{i}/{len(STAGES)}] {self._stage}: " if i else ""
            self._log(prefix + msg)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._stage = name
        t0 = time.perf_counter()
        try:
            yield
            dt = time.perf_counter() - t0
            self.timings[name] = self.timings.get(name, 0.0) + dt
            self.peak_mb[name] = _peak_rss_mb()
            self(f"done in {dt:.1f}s")
        finally:
            self._stage = ""


def needs_processing(path: Path | str) -> bool:
    """True for a plain photo/video folder (or one video file) without camera poses.

    False for scenes that already have poses (nerfstudio ``transforms.json``, Blender/D-NeRF,
    a COLMAP model, LLFF ``poses_bounds.npy``), for a ``recon process`` output folder, and for
    anything holding no images or videos.
    """
    from recon.scene.readers import detect_format

    p = Path(path).expanduser()
    if p.is_file():
        from recon.scene.images import is_video_file

        return is_video_file(p)
    if not p.is_dir() or is_output_dir(p):
        return False
    if detect_format(p) in POSED_FORMATS:
        return False
    images, videos, _ = list_media(p, exclude=(p / "recon",))
    return bool(images or videos)


def default_out_dir(scene: Path) -> Path:
    """Where ``process`` writes when no ``out_dir`` is given.

    ``SCENE/recon`` for a folder (``NAME_recon`` beside a single file) when that place is
    writable; otherwise (photos on read-only media, a folder the user may not write) a work folder
    outside the inputs, :func:`work_dir`. The inputs are never modified either way.
    """
    scene = Path(scene)
    beside = scene.parent / f"{scene.stem}_recon" if scene.is_file() else scene / "recon"
    if is_output_dir(beside) and _writable(beside) or _writable(beside.parent):
        return beside
    return work_dir(scene)


def work_dir(scene: Path) -> Path:
    """The work folder for a scene whose own folder cannot be written:
    ``$RECON_WORK_DIR/<name>-<hash>``, default ``$XDG_CACHE_HOME/recon/work`` (``~/.cache/recon/work``);
    the hash is of the scene's absolute path, so each scene gets its own folder and a re-run finds it."""
    import hashlib

    scene = Path(os.path.abspath(Path(scene).expanduser()))
    root = os.environ.get("RECON_WORK_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "recon", "work")
    digest = hashlib.sha1(str(scene).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return Path(root) / f"{scene.stem[:64] or 'scene'}-{digest}"


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (an existing folder; False on read-only media)."""
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _check_out(scene: Path, out: Path) -> None:
    s, o = Path(os.path.abspath(scene)), Path(os.path.abspath(out))
    if o == s or o in s.parents:
        raise ReconError(f"--out {out} must not be the scene folder or one of its parents; pick a new folder (default: {default_out_dir(scene)})")
    if o.exists() and not o.is_dir():
        raise ReconError(f"--out {out} exists and is not a folder")
    if o.is_dir() and any(o.iterdir()) and not is_output_dir(o):
        raise ReconError(f"--out {out} is a non-empty folder that recon did not write; pick a new or empty folder")


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def _commit(staging: Path, out: Path) -> None:
    """Replace ``out``'s previous outputs with the staged ones, ``transforms.json`` last."""
    for name in reversed(OUTPUT_ITEMS):  # transforms.json and sparse/ go first: no stale valid output
        _remove(out / name)
    for name in OUTPUT_ITEMS:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)


def _prune_cache(cache: Path, keep: set[str]) -> None:
    for p in cache.iterdir():
        if p.name.startswith(("ingest-", "features-", "matches-", ".ingest-")) and p.name not in keep:
            _remove(p)


def _resolve_options(options: Optional[SfmOptions], overrides: dict[str, Any]) -> SfmOptions:
    opts = options or SfmOptions()
    known = {f.name for f in fields(SfmOptions)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise TypeError(f"unknown SfM option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    opts = replace(opts, **overrides)
    if opts.max_size < 64:
        raise ReconError(f"--max-size must be at least 64 pixels, got {opts.max_size}")
    if not 0.0 <= opts.min_registered_fraction <= 1.0:
        raise ReconError(f"--min-registered-fraction must be in [0, 1], got {opts.min_registered_fraction}")
    if opts.metric_scale is not None and not opts.metric_scale > 0:
        raise ReconError(f"--metric-scale must be > 0, got {opts.metric_scale}")
    if opts.metric_distance is not None and not float(opts.metric_distance[2]) > 0:
        raise ReconError(f"--metric-distance: the distance must be > 0, got {opts.metric_distance[2]}")
    return opts


def run_unless_current(out: Path, staging: Path, cache: Path, out_key: str, opts: SfmOptions, prog, log, what: str,
                       t_start: float, run: Callable[[], dict], text: Callable[[dict], str] = text_report) -> Optional[dict]:
    """The common end of :func:`process` and its multi-view branch: None when ``out`` already holds
    the output of ``out_key`` (same inputs and options; ``--force`` reruns), else the report of
    ``run()`` (which writes into ``staging``), with timings and peak memory added, written beside
    the output and committed to ``out`` atomically; the staging folder goes if ``run`` fails."""
    key_file = cache / "output.key"
    if not opts.force and key_file.is_file() and key_file.read_text().strip() == out_key and (out / "transforms.json").is_file():
        if log:
            log(f"{out} is up to date (same {what} and options); use --force to recompute")
        return None
    try:
        result = run()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result["timings_s"] = dict(prog.timings)
    result["timings_s"]["total"] = time.perf_counter() - t_start
    result["peak_rss_mb"] = _peak_rss_mb()
    result["peak_rss_mb_after_stage"] = dict(prog.peak_mb)
    write_json(staging / "sfm_report.json", result)
    (staging / "sfm_report.txt").write_text(text(result))
    _commit(staging, out)
    key_file.write_text(out_key + "\n")
    return result


def process(
    scene_dir: Path | str,
    out_dir: Path | str | None = None,
    *,
    options: Optional[SfmOptions] = None,
    log: Optional[Callable[[str], None]] = print_progress,
    command: Optional[str] = None,
    **overrides: Any,
) -> Path:
    """Photos or videos to posed, undistorted frames; returns the output folder.

    Args:
        scene_dir: a folder of photos and/or videos (or one video file). Never modified.
        out_dir: the output folder (default :func:`default_out_dir`: ``scene_dir/recon``, or a work
            folder outside the inputs when ``scene_dir`` cannot be written).
        options: :class:`SfmOptions`; any of its fields may also be passed as keyword arguments.
        log: receives progress lines (None: silent).
        command: the command line to record in the report.

    The output folder holds (frames as documented in ``docs/sfm.md``):
    ``sparse/0/`` (COLMAP binary model of the undistorted frames, SfM frame), ``images/``
    (undistorted frames), ``distorted/sparse/0/`` (the model before undistortion),
    ``transforms.json`` (nerfstudio cameras in the normalised output frame, with
    ``applied_transform`` from the SfM frame), ``points.ply`` (sparse points, output frame),
    ``sfm_transform.json`` and ``sfm_report.{json,txt,png}``. ``recon.scene.load_scene(out)``
    reads it as format "nerfstudio" (output frame).

    A scene that already has poses is returned unchanged (no SfM) unless ``force``. Raises
    :class:`ReconError` with a plain-language diagnosis when SfM fails.
    """
    opts = _resolve_options(options, overrides)
    scene = Path(scene_dir).expanduser()
    if not scene.exists():
        raise ReconError(f"{scene}: no such file or folder")
    if scene.is_dir() and not opts.force:
        from recon.scene.readers import detect_format

        if is_output_dir(scene):
            return scene
        fmt = detect_format(scene)
        if fmt in POSED_FORMATS:
            if log:
                log(f"{scene} already has camera poses ({fmt}); skipping SfM (use --force to run it anyway)")
            return scene
    out = Path(out_dir).expanduser() if out_dir is not None else default_out_dir(scene)
    _check_out(scene, out)
    if out_dir is None and log and out == work_dir(scene):
        log(f"{scene} is not writable: writing the processed scene to {out} (--out chooses another folder)")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / OUTPUT_MARKER).write_text(json.dumps({"written_by": "recon process", "version": PIPELINE_VERSION}) + "\n")
        cache = out / ".cache"
        cache.mkdir(exist_ok=True)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    staging = out / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    prog = Progress(log)
    t_start = time.perf_counter()
    from recon.capture.multiview import rig_request

    if rig_request(scene, opts.multi_view, opts.offsets, opts.sync):  # synchronised clips of fixed cameras
        from recon.sfm.rig import process_rig

        return process_rig(scene, out, staging, cache, opts, prog, log, command, t_start, created)

    # 1. ingest
    with prog.stage("ingest"):
        try:
            ing = ingest(
                scene, cache,
                IngestOptions(recursive=opts.recursive, video_frames=opts.video_frames, video_fps=opts.video_fps),
                exclude=(out,), log=prog,
            )
        except BaseException:
            if created:  # nothing usable: leave no trace of this run
                shutil.rmtree(out, ignore_errors=True)
            raise
        prog(f"{len(ing.images)} images" + (f" ({len(ing.videos)} video(s))" if ing.videos else ""))
    # One video alone also writes frame times and a time-ordered split (outputs made before that rerun).
    out_key = options_key(opts, extra=[PIPELINE_VERSION, ing.key] + (["video-times-1"] if video_times(ing) else []))
    result = run_unless_current(out, staging, cache, out_key, opts, prog, log, "images", t_start,
                                lambda: _run(scene, out, staging, cache, ing, opts, prog, command))
    if result is None:
        return out
    if log:
        log(
            f"done: {result['images_registered']}/{result['images_total']} images registered, "
            f"{result['mean_reprojection_error_px']:.2f} px mean reprojection error, "
            f"{result['num_points3D']} points -> {out}"
        )
        for w in result["warnings"]:
            log(f"warning: {w}")
    return out


def _run(
    scene: Path, out: Path, staging: Path, cache: Path, ing: IngestResult, opts: SfmOptions, prog: Progress,
    command: Optional[str],
) -> dict[str, Any]:
    import pycolmap

    names = [im.name for im in ing.images]
    n = len(names)
    if opts.metric_distance is not None:  # catch a typo before spending minutes on SfM
        for key in opts.metric_distance[:2]:
            if not any(key in (nm, Path(nm).stem, Path(nm).name) for nm in names):
                raise ReconError(f"--metric-distance: no input image named {key!r} (give a file name or stem, e.g. {Path(names[0]).stem!r})")
    groups = C.camera_groups(ing.images, opts)
    fkey = options_key(
        opts, {"max_size", "num_features", "camera_model", "camera_mode"},
        extra=[ing.key, [(g.model, g.width, g.height, g.params, g.has_prior, g.names) for g in groups]],
    )
    matcher = C.choose_matcher(n, ing.from_video, opts)
    mkey = options_key(opts, {"sequential_overlap", "loop_closure", "loop_keyframes"} if matcher == "sequential" else set(), extra=[fkey, matcher])
    fdb, mdb = cache / f"features-{fkey}.db", cache / f"matches-{mkey}.db"
    _prune_cache(cache, {f"ingest-{ing.key}", fdb.name, fdb.with_suffix(".done").name, mdb.name, mdb.with_suffix(".done").name})
    staging.mkdir(parents=True)

    with prog.stage("features"):
        prog(f"SIFT on {n} images, {len(groups)} camera(s), max {opts.max_size} px")
        C.extract(fdb, ing.image_dir, groups, opts, prog)
    with prog.stage("matching"):
        C.match(mdb, fdb, names, matcher, opts, prog)
        _, pairs = C.verified_pairs(mdb)
        prog(f"{sum(1 for p in pairs if p[2] >= C.MIN_INLIERS)} overlapping image pairs")

    with prog.stage("mapping"):
        rec = C.map_images(mdb, ing.image_dir, staging / "mapper", n, opts, prog)
        registered = {im.name for im in rec.images.values() if im.has_pose} if rec is not None else set()
        diagnosis = diagnose(names, registered, pairs)
        need = max(2, int(np.ceil(opts.min_registered_fraction * n)))
        if len(registered) < need:
            (cache / "last_failure.json").write_text(json.dumps({"registered": sorted(registered), "diagnosis": diagnosis}, indent=1))
            hint = " (lower --min-registered-fraction to keep a partial model)" if registered else ""
            raise ReconError(f"{scene}: structure from motion failed: {diagnosis}{hint}")
        if opts.mapper == "global" or not any(np.any(p.color) for p in list(rec.points3D.values())[:100]):
            rec.extract_colors_for_all_images(str(ing.image_dir))
        prog(f"{len(registered)}/{n} images registered, {rec.num_points3D()} points")
        shutil.rmtree(staging / "mapper", ignore_errors=True)
        dist_dir = staging / "distorted" / "sparse" / "0"
        dist_dir.mkdir(parents=True)
        rec.write_binary(str(dist_dir))

    with prog.stage("undistort"):
        und = staging / "undistort"
        uo = pycolmap.UndistortCameraOptions()
        if opts.output_max_size:
            uo.max_image_size = int(opts.output_max_size)
        prog(f"{len(registered)} frames to pinhole" + (f", max {opts.output_max_size} px" if opts.output_max_size else ""))
        with C.colmap_log(opts.verbose):
            pycolmap.undistort_images(
                str(und), str(dist_dir), str(ing.image_dir), output_type="COLMAP",
                undistort_options=uo, jpeg_quality=95, num_threads=int(opts.num_threads),
            )
        os.replace(und / "images", staging / "images")
        (staging / "sparse" / "0").mkdir(parents=True)
        for f in (und / "sparse").iterdir():
            os.replace(f, staging / "sparse" / "0" / f.name)
        shutil.rmtree(und)

    with prog.stage("outputs"):
        urec = pycolmap.Reconstruction(str(staging / "sparse" / "0"))
        report = _write_outputs(scene, staging, rec, urec, ing, opts, matcher, pairs, diagnosis, prog, command)
    return report


def _c2w(image) -> np.ndarray:
    w2c = np.eye(4)
    w2c[:3, :4] = np.asarray(image.cam_from_world().matrix(), dtype=np.float64)
    out = np.eye(4)
    R = w2c[:3, :3]
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ w2c[:3, 3]
    return out


def _find_image(ims: list, key: str):
    for im in ims:
        if im.name == key or Path(im.name).stem == key or Path(im.name).name == key:
            return im
    return None


def _metric_scale(ims: list, opts: SfmOptions) -> Optional[float]:
    if opts.metric_scale is not None:
        return float(opts.metric_scale)
    if opts.metric_distance is None:
        return None
    a, b, d = opts.metric_distance
    ia, ib = _find_image(ims, str(a)), _find_image(ims, str(b))
    for key, im in ((a, ia), (b, ib)):
        if im is None:
            raise ReconError(f"--metric-distance: no registered image named {key!r}")
    dist = float(np.linalg.norm(_c2w(ia)[:3, 3] - _c2w(ib)[:3, 3]))
    if dist <= 1e-12:
        raise ReconError(f"--metric-distance: cameras {a!r} and {b!r} are at the same place; pick two cameras further apart")
    return float(d) / dist


def _write_outputs(
    scene: Path, staging: Path, rec, urec, ing: IngestResult, opts: SfmOptions, matcher: str, pairs, diagnosis: str,
    prog: Progress, command: Optional[str],
) -> dict[str, Any]:
    from recon.scene.writers import write_ply_points

    ims = sorted((im for im in urec.images.values() if im.has_pose), key=lambda im: im.name)
    c2w_sfm = np.stack([_c2w(im) for im in ims])
    norm: Normalization = normalization(
        c2w_sfm, center=opts.center, orient=opts.orient, normalize_scale=opts.normalize_scale,
        metric_scale=_metric_scale(ims, opts),
    )
    M = norm.matrix
    c2w_out = transform_c2w(M, c2w_sfm)

    # transforms.json (nerfstudio): OpenGL camera-to-world in the output frame, pinhole intrinsics.
    intr = []
    for im in ims:
        cam = urec.cameras[im.camera_id]
        fx, fy, cx, cy = (float(v) for v in cam.params[:4]) if cam.model.name == "PINHOLE" else (
            float(cam.params[0]), float(cam.params[0]), float(cam.params[1]), float(cam.params[2]))
        intr.append({"camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": int(cam.width), "h": int(cam.height)})
    shared = all(i == intr[0] for i in intr)
    tj: dict[str, Any] = dict(intr[0]) if shared else {"camera_model": "PINHOLE"}
    frames = []
    times = video_times(ing)
    for im, c2w, ii in zip(ims, c2w_out, intr):
        fd: dict[str, Any] = {"file_path": f"images/{im.name}"}
        if not shared:
            fd.update(ii)
        fd["transform_matrix"] = opencv_to_opengl(c2w).tolist()
        fd["colmap_im_id"] = int(im.image_id)
        if times and im.name in times:
            fd["time"] = times[im.name]
        frames.append(fd)
    tj["frames"] = frames
    if times:
        _video_time_outputs(tj, ing, frames)
    tj["applied_transform"] = M[:3, :].tolist()
    pts_ids = sorted(urec.points3D.keys())
    P = np.array([urec.points3D[i].xyz for i in pts_ids], dtype=np.float64).reshape(-1, 3)
    cols = np.array([urec.points3D[i].color for i in pts_ids], dtype=np.uint8).reshape(-1, 3)
    P_out = P @ M[:3, :3].T + M[:3, 3] if len(P) else P
    write_ply_points(staging / "points.ply", P_out, cols)
    os.chmod(staging / "points.ply", 0o644)  # the atomic writer's temporary file is private
    tj["ply_file_path"] = "points.ply"
    tj["recon_sfm"] = {
        "world": "+z up; origin and scale as in sfm_transform.json",
        "units": norm.units,
        "applied_transform": "maps points of sparse/0 (SfM frame) to this file's frame: X = applied_transform @ [X_sfm, 1]",
        "colmap_model": "sparse/0",
    }
    (staging / "transforms.json").write_text(json.dumps(tj, indent=2) + "\n")
    tinfo = norm.to_json()
    if opts.metric_distance is not None:
        tinfo["metric_distance"] = list(opts.metric_distance)
    write_json(staging / "sfm_transform.json", tinfo)

    # Report.
    stats = reconstruction_stats(rec)
    per_cam: dict[int, int] = {}
    for im in rec.images.values():
        if im.has_pose:
            per_cam[int(im.camera_id)] = per_cam.get(int(im.camera_id), 0) + 1
    for c in stats["cameras"]:
        c["num_images"] = per_cam.get(c["camera_id"], 0)
    names = [im.name for im in ing.images]
    registered = {im.name for im in rec.images.values() if im.has_pose}
    unreg = [nm for nm in names if nm not in registered]
    warnings = []
    if unreg:
        warnings.append(diagnosis)
    if ing.skipped:
        warnings.append(f"skipped {len(ing.skipped)} unreadable input(s): " + ", ".join(Path(p).name for p, _ in ing.skipped[:5]))
    if ing.duplicates:
        warnings.append(f"skipped {len(ing.duplicates)} duplicate image(s): " + ", ".join(Path(p).name for p, _ in ing.duplicates[:5]))
    if stats["mean_reprojection_error_px"] > 2.0:
        warnings.append(f"high mean reprojection error ({stats['mean_reprojection_error_px']:.2f} px): check for motion blur, rolling shutter or a wrong camera model")
    wide = fov_warning(intr)
    if wide:
        warnings.append(wide)
    if stats["mean_track_length"] and stats["mean_track_length"] < 2.5:
        warnings.append(f"short feature tracks ({stats['mean_track_length']:.2f}): images overlap little; poses may be inaccurate")
    if command is None:
        command = "recon.sfm.process(" + ", ".join([repr(str(scene))] + [f"{k}={v!r}" for k, v in asdict(opts).items() if v != getattr(SfmOptions(), k)]) + ")"
    report: dict[str, Any] = {
        "status": "ok" if not unreg else "partial",
        "scene": str(scene),
        "command": command,
        "images_total": len(names),
        "unregistered": unreg,
        "diagnosis": diagnosis,
        **stats,
        "matcher": matcher,
        "mapper": opts.mapper,
        "overlapping_pairs": sum(1 for p in pairs if p[2] >= C.MIN_INLIERS),
        "inputs": {
            "images": sum(1 for im in ing.images if im.kind == "image"),
            "video_frames": sum(1 for im in ing.images if im.kind == "video"),
            "videos": ing.videos,
            "skipped": [{"file": p, "reason": r} for p, r in ing.skipped],
            "duplicates": [{"file": p, "same_as": s} for p, s in ing.duplicates],
            "ignored": ing.ignored,
        },
        "options": asdict(opts),
        "transform": tinfo,
        "warnings": warnings,
        "frames": {
            "sparse/0": "SfM frame (COLMAP's solution), undistorted PINHOLE cameras for images/",
            "distorted/sparse/0": "SfM frame, estimated camera model, for the ingested images",
            "transforms.json": "output frame (+z up, normalised or metric); applied_transform maps SfM -> output",
            "points.ply": "output frame",
        },
    }
    title = (
        f"{scene.name}: {len(registered)}/{len(names)} registered, {stats['num_points3D']} points, "
        f"{stats['mean_reprojection_error_px']:.2f} px reproj. (output frame, +z up)"
    )
    try:
        plot(staging / "sfm_report.png", c2w_out, P_out, cols, title)
    except Exception as e:  # a plot must never fail the run
        warnings.append(f"could not draw sfm_report.png ({e})")
    return report


MAX_PLAUSIBLE_FOV_DEG = 120.0


def fov_warning(intrinsics: list[dict[str, Any]]) -> Optional[str]:
    """A warning when a solved pinhole camera (``{"fl_x", "w", ...}`` as in ``transforms.json``) sees
    a horizontal field of view wider than 120 degrees, else ``None``.

    Undistorted frames of ordinary lenses stay well below that; a collapsed focal length is the
    mark of a degenerate solution (on a hand-held video of a walking person, 122 px for a 926 px
    frame, every camera at one point and every point at depth 0), which trains into a blur."""
    worst = max(intrinsics, key=lambda i: i["w"] / max(float(i["fl_x"]), 1e-9), default=None)
    if worst is None:
        return None
    fov = float(np.degrees(2 * np.arctan(worst["w"] / (2 * max(float(worst["fl_x"]), 1e-9)))))
    if fov <= MAX_PLAUSIBLE_FOV_DEG:
        return None
    return (f"solved focal length {worst['fl_x']:.0f} px for {worst['w']} px wide frames is a {fov:.0f}-degree field of view: "
            "probably a degenerate solution (a camera moving straight ahead, a large moving subject or a fixed "
            "overlay such as a watermark can cause it); try --matcher exhaustive --mapper global --force")


def video_times(ing: IngestResult) -> dict[str, float]:
    """Scene time in [0, 1] of each ingested frame when the capture is one video alone, else ``{}``.

    Times are the frames' presentation times normalised over the sampled frames (the first kept
    frame is 0, the last is 1), so a variable frame rate keeps real time. A capture with photos,
    several videos (a multi-view rig needs its clips aligned first) or a video whose kept frames
    all share one time gets none."""
    if len(ing.videos) != 1 or not ing.images or any(im.kind != "video" or im.time_s is None for im in ing.images):
        return {}
    t = {im.name: float(im.time_s) for im in ing.images}
    lo, hi = min(t.values()), max(t.values())
    if not hi > lo:
        return {}
    return {name: float(f"{(v - lo) / (hi - lo):.9g}") for name, v in t.items()}


VIDEO_TEST_EVERY = 8
VIDEO_TEST_OFFSET = 4


def video_split(n: int) -> list[bool]:
    """Which of ``n`` time-ordered video frames are held out: every 8th from the 5th (index % 8 == 4),
    never the first or the last, so each held-out time lies between two training times (a
    held-out first or last frame would score extrapolation in time); the middle frame when that
    leaves none and ``n >= 3``."""
    held = [0 < k < n - 1 and k % VIDEO_TEST_EVERY == VIDEO_TEST_OFFSET for k in range(n)]
    if not any(held) and n >= 3:
        held[n // 2] = True
    return held


def _video_time_outputs(tj: dict[str, Any], ing: IngestResult, frames: list[dict[str, Any]]) -> None:
    """Add the time provenance and the time-ordered train/test split of a single video to ``tj``."""
    from recon.scene.readers import TIME_KEY

    timed = sorted((fd for fd in frames if "time" in fd), key=lambda fd: (fd["time"], fd["file_path"]))
    held = video_split(len(timed))
    secs = sorted(float(im.time_s) for im in ing.images)  # type: ignore[arg-type]
    tj[TIME_KEY] = {
        "source": "video",
        "video": Path(ing.videos[0]).name,
        "frames_sampled": len(ing.images),
        "first_s": secs[0],
        "last_s": secs[-1],
        "time": "(t_s - first_s) / (last_s - first_s): the first sampled frame is 0, the last 1",
        "held_out": f"every {VIDEO_TEST_EVERY}th registered frame in time order from the {VIDEO_TEST_OFFSET + 1}th "
                    f"(index % {VIDEO_TEST_EVERY} == {VIDEO_TEST_OFFSET}), never the first or last",
    }
    tj["train_filenames"] = [fd["file_path"] for fd, h in zip(timed, held) if not h]
    tj["test_filenames"] = [fd["file_path"] for fd, h in zip(timed, held) if h]


def command_line(argv: list[str]) -> str:
    """``recon process ...`` as typed, for the report."""
    return "recon process " + " ".join(shlex.quote(a) for a in argv)
