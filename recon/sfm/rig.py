"""``recon process`` on synchronised multi-view video: fixed cameras, one pose and intrinsics per clip.

    clips ─► frames grouped by event time (recon.capture.multiview)
          ─► SfM on one or more time slices (one COLMAP camera per clip)
          ─► one pose per clip (the consensus of its slice images)
          ─► every frame undistorted with its clip's camera ─► transforms.json with times

Each clip is one fixed camera, so every frame of a clip reuses the camera solved from its slice
images. The slices are the sharpest time samples (with ``rig_slices`` > 1, the sharpest of each of
that many equal stretches of the event); several slices give SfM the moving parts at several
places and report how far apart their poses of one camera came out (``pose_spread`` in the
report), a check that the cameras did not move.

The output folder is laid out as :func:`recon.sfm.pipeline.process` writes it; ``sparse/0`` and
``distorted/sparse/0`` hold the solved slice images only (with the sparse points), while
``images/`` and ``transforms.json`` hold every frame of every registered clip.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from recon.capture.ingest import CaptureImage
from recon.capture.multiview import RigIngest, ingest_rig
from recon.errors import ReconError
from recon.scene.conventions import opencv_to_opengl
from recon.sfm import colmap as C
from recon.sfm.normalize import normalization, rotation_angle_deg, transform_c2w
from recon.sfm.options import SfmOptions, options_key
from recon.sfm.report import diagnose, plot, reconstruction_stats, text_report, write_json

RIG_OUTPUT_VERSION = 1
TIME_SOURCE = "multi-view video"


def choose_slices(ing: RigIngest, n: int) -> list[int]:
    """The time samples SfM solves: the sharpest of each of ``n`` equal stretches of the grid.

    A sample's sharpness is the sum over clips of its frame's variance of the Laplacian divided by
    that clip's median (so no one camera decides), which favours instants without motion blur."""
    T = len(ing.grid_s)
    n = max(1, min(int(n), T))
    score = np.zeros(T)
    for ci in range(len(ing.clips)):
        s = np.array([ing.frame(ci, k).sharpness for k in range(T)], dtype=np.float64)
        score += s / max(float(np.median(s)), 1e-12)
    edges = np.linspace(0, T, n + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        lo, hi = int(round(a)), max(int(round(b)), int(round(a)) + 1)
        out.append(lo + int(np.argmax(score[lo:hi])))
    return sorted(set(out))


def medoid(c2ws: np.ndarray) -> int:
    """Index of the pose whose rotation is nearest (summed angle) to all others of ``[n, 4, 4]``."""
    R = c2ws[:, :3, :3]
    ang = rotation_angle_deg(np.swapaxes(R[:, None], -1, -2) @ R[None])
    return int(np.argmin(ang.sum(1)))


def mean_pose(c2ws: np.ndarray, ref: np.ndarray, max_deg: float = 2.0, max_dist: float = np.inf) -> tuple[np.ndarray, float, float, int]:
    """``(c2w, rotation spread in degrees, centre spread, poses used)`` of poses ``[n, 4, 4]`` of
    one fixed camera: the chordal mean rotation and mean centre of the poses within ``max_deg``
    and ``max_dist`` of ``ref`` (a robust pick such as the :func:`medoid`: a slice registered
    wrongly is left out), and their largest deviation from the mean."""
    dev_r = rotation_angle_deg(np.swapaxes(c2ws[:, :3, :3], -1, -2) @ ref[:3, :3])
    dev_c = np.linalg.norm(c2ws[:, :3, 3] - ref[:3, 3], axis=1)
    use = c2ws[(dev_r <= max_deg) & (dev_c <= max_dist)]
    if not len(use):
        use = ref[None]
    Rs = use[:, :3, :3]
    U, _, Vt = np.linalg.svd(Rs.sum(0))
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    c = use[:, :3, 3].mean(0)
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R, c
    rot = float(rotation_angle_deg(np.swapaxes(Rs, -1, -2) @ R).max())
    ctr = float(np.linalg.norm(use[:, :3, 3] - c, axis=1).max())
    return out, rot, ctr, len(use)


def rig_split(n_clips: int, n_times: int) -> tuple[Optional[int], list[bool]]:
    """``(held-out clip, held-out times)``: with 3 or more registered cameras the first one (in
    file-name order) is held out at every time (novel views of every instant); with 2, both
    cameras at every 8th time from the 5th (:func:`recon.sfm.pipeline.video_split`)."""
    from recon.sfm.pipeline import video_split

    if n_clips >= 3:
        return 0, [False] * n_times
    return None, video_split(n_times)


def _c2w(image) -> np.ndarray:
    from recon.sfm.pipeline import _c2w as c2w

    return c2w(image)


def process_rig(
    scene: Path, out: Path, staging: Path, cache: Path, opts: SfmOptions, prog, log: Optional[Callable[[str], None]],
    command: Optional[str], t_start: float, created: bool,
) -> Path:
    """The multi-view branch of :func:`recon.sfm.pipeline.process` (called by it with the output
    folder, its staging and cache folders made and the options resolved)."""
    from recon.sfm.pipeline import PIPELINE_VERSION, run_unless_current

    if int(opts.rig_slices) < 1:
        raise ReconError(f"--rig-slices must be at least 1, got {opts.rig_slices}")
    with prog.stage("ingest"):
        try:
            ing = ingest_rig(scene, cache, opts.offsets, total_frames=opts.video_frames, sample_fps=opts.video_fps,
                             exclude=(out,), log=prog, sync=opts.sync)
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        prog(f"{len(ing.clips)} cameras x {len(ing.grid_s)} times = {len(ing.frames)} frames")
    if ing.ignored:
        prog(f"note: ignoring {len(ing.ignored)} file(s) that are not videos ({', '.join(Path(p).name for p in ing.ignored[:3])})")
    offsets = {c.name: c.offset_s for c in ing.clips}
    out_key = options_key(opts, extra=[PIPELINE_VERSION, "rig", RIG_OUTPUT_VERSION, ing.key, opts.rig_slices, offsets])
    result = run_unless_current(out, staging, cache, out_key, opts, prog, log, "clips, offsets", t_start,
                                lambda: _run(scene, out, staging, cache, ing, opts, prog, command),
                                lambda r: text_report(r) + _rig_text(r["rig"]))
    if result is None:
        return out
    if log:
        rig = result["rig"]
        log(f"done: {rig['cameras_registered']}/{len(rig['cameras'])} cameras registered "
            f"({result['images_registered']}/{result['images_total']} frames, {len(ing.grid_s)} times), "
            f"{result['mean_reprojection_error_px']:.2f} px mean reprojection error, {result['num_points3D']} points -> {out}")
        for w in result["warnings"]:
            log(f"warning: {w}")
    return out


def _rig_text(rig: dict) -> str:
    L = ["", "multi-view video (one fixed camera per clip):"]
    for c in rig["cameras"]:
        state = "registered" if c["registered"] else "NOT registered"
        spread = (f", {c['slice_images_used']}/{c['slice_images']} slice poses used, within "
                  f"{c['rotation_spread_deg']:.3f} deg / {c['centre_spread']:.4g} units" if c["registered"] and c["slice_images"] > 1 else "")
        L.append(f"  {c['video']}: {c['fps']:g} fps, offset {c['offset_s']:g} s, {state}{spread}")
    if rig.get("sync"):
        L.append(f"  offsets found by {rig['sync']['method']}: " + "; ".join(f"{c['name']} {c['detail']}" for c in rig["sync"]["clips"]))
    L.append(f"  times: {rig['times']} samples over {rig['first_s']:.3f}-{rig['last_s']:.3f} s at {rig['fps']:g} fps; "
             f"SfM slices {rig['slices']}")
    L.append("  sparse/0 and distorted/sparse/0 hold the solved slice images; images/ and transforms.json every frame")
    return "\n".join(L) + "\n"


def _run(scene: Path, out: Path, staging: Path, cache: Path, ing: RigIngest, opts: SfmOptions, prog, command) -> dict[str, Any]:
    import pycolmap

    from recon.sfm.pipeline import _prune_cache

    slices = choose_slices(ing, opts.rig_slices)
    sl_frames = [ing.frame(ci, k) for k in slices for ci in range(len(ing.clips))]
    names = [f.name for f in sl_frames]
    # One COLMAP camera per clip (every frame of a clip shares it). --camera-mode auto shares one
    # camera between clips of the same size (a capture stage is usually one camera model: measured,
    # 16 cameras at 512 px, per-clip focal lengths put centres up to 4.9 % of the rig off, shared
    # ones 0.76 %); per_image keeps one per clip; single one for all.
    shared = opts.camera_mode == "auto"
    cimgs = [CaptureImage(name=f.name, source=ing.clips[f.clip].source, kind="video", width=ing.clips[f.clip].width,
                          height=ing.clips[f.clip].height, camera_key="rig" if shared else f"rig:{ing.clips[f.clip].prefix}",
                          frame_index=f.frame_index, time_s=f.time_s) for f in sl_frames]
    groups = C.camera_groups(cimgs, replace(opts, camera_mode="auto") if opts.camera_mode == "per_image" else opts)
    matcher = "cross-camera"
    # Every pair of slice images from different cameras: two frames of one fixed camera see the
    # scene from one place (no parallax), and starting a model from such a pair breaks it.
    pair_list = [(a.name, b.name) for i, a in enumerate(sl_frames) for b in sl_frames[i + 1:] if a.clip != b.clip]
    fkey = options_key(opts, {"max_size", "num_features", "camera_model", "camera_mode"},
                       extra=["rig", ing.key, [(g.model, g.width, g.height, g.params, g.has_prior, g.names) for g in groups]])
    mkey = options_key(opts, set(), extra=[fkey, matcher])
    fdb, mdb = cache / f"features-{fkey}.db", cache / f"matches-{mkey}.db"
    _prune_cache(cache, {f"rig-{ing.key}", fdb.name, fdb.with_suffix(".done").name, mdb.name, mdb.with_suffix(".done").name})
    for p in cache.iterdir():  # earlier extractions of other clips or offsets
        if p.name.startswith(("rig-", ".rig-")) and p.name != f"rig-{ing.key}":
            shutil.rmtree(p, ignore_errors=True)
    staging.mkdir(parents=True)
    n = len(names)
    with prog.stage("features"):
        prog(f"SIFT on {n} images ({len(slices)} time slice(s) x {len(ing.clips)} cameras), max {opts.max_size} px")
        C.extract(fdb, ing.image_dir, groups, opts, prog)
    with prog.stage("matching"):
        _match_pairs(mdb, fdb, pair_list, opts, prog)
        _, pairs = C.verified_pairs(mdb)
        prog(f"{sum(1 for p in pairs if p[2] >= C.MIN_INLIERS)} overlapping image pairs")
    with prog.stage("mapping"):
        rec = C.map_images(mdb, ing.image_dir, staging / "mapper", n, opts, prog)
        reg_ims = {im.name: im for im in rec.images.values() if im.has_pose} if rec is not None else {}
        diagnosis = diagnose(names, set(reg_ims), pairs)
        reg_clips = sorted({f.clip for f in sl_frames if f.name in reg_ims})
        need = max(2, int(np.ceil(opts.min_registered_fraction * len(ing.clips))))
        if len(reg_clips) < need:
            unreg = [c.name for i, c in enumerate(ing.clips) if i not in reg_clips]
            shown = ", ".join(unreg[:4]) + (", ..." if len(unreg) > 4 else "")
            hint = " (lower --min-registered-fraction to keep the registered cameras)" if len(reg_clips) >= 2 else ""
            raise ReconError(f"{scene}: structure from motion posed {len(reg_clips)} of {len(ing.clips)} cameras "
                             f"(not {shown}): {diagnosis}; more cameras, closer together, or --rig-slices 3 may help{hint}")
        if opts.mapper == "global" or not any(np.any(p.color) for p in list(rec.points3D.values())[:100]):
            rec.extract_colors_for_all_images(str(ing.image_dir))
        prog(f"{len(reg_clips)}/{len(ing.clips)} cameras registered ({len(reg_ims)}/{n} slice images), {rec.num_points3D()} points")
        shutil.rmtree(staging / "mapper", ignore_errors=True)
        dist_dir = staging / "distorted" / "sparse" / "0"
        dist_dir.mkdir(parents=True)
        rec.write_binary(str(dist_dir))

    # One pose and one camera per clip: the mean of its slice poses that agree with their medoid
    # (within 2 degrees and 2 % of the rig's extent).
    poses, cams, spreads = {}, {}, {}
    per_clip = {}
    for ci in reg_clips:
        ims = [reg_ims[f.name] for f in sl_frames if f.clip == ci and f.name in reg_ims]
        per_clip[ci] = (ims, np.stack([_c2w(im) for im in ims]))
    refs = {ci: c2w[medoid(c2w)] for ci, (_, c2w) in per_clip.items()}
    centres = np.stack([r[:3, 3] for r in refs.values()])
    extent = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0
    for ci, (ims, c2w) in per_clip.items():
        poses[ci], rot, ctr, used = mean_pose(c2w, refs[ci], 2.0, 0.02 * extent)
        spreads[ci] = (rot, ctr, len(ims), used)
        cams[ci] = rec.cameras[ims[0].camera_id]

    with prog.stage("undistort"):
        und = staging / "undistort"
        uo = pycolmap.UndistortCameraOptions()
        if opts.output_max_size:
            uo.max_image_size = int(opts.output_max_size)
        with C.colmap_log(opts.verbose):
            pycolmap.undistort_images(str(und), str(dist_dir), str(ing.image_dir), output_type="COLMAP",
                                      undistort_options=uo, jpeg_quality=95, num_threads=int(opts.num_threads))
        (staging / "sparse" / "0").mkdir(parents=True)
        for f in (und / "sparse").iterdir():
            os.replace(f, staging / "sparse" / "0" / f.name)
        shutil.rmtree(und)
        intr = _undistort_all(ing, reg_clips, cams, uo, staging / "images", prog)

    with prog.stage("outputs"):
        urec = pycolmap.Reconstruction(str(staging / "sparse" / "0"))
        return _write_outputs(scene, staging, rec, urec, ing, opts, matcher, pairs, diagnosis, slices, reg_clips,
                              poses, intr, spreads, prog, command)


def _match_pairs(db: Path, features_db: Path, pair_list: list[tuple[str, str]], opts: SfmOptions, prog) -> None:
    """Match the listed image pairs (copying ``features_db`` to ``db``), cached like :func:`recon.sfm.colmap.match`."""
    import pycolmap

    if C._done(db) and not opts.force:
        prog(f"reusing cached matches ({db.name})")
        return
    tmp = db.with_name(db.name + ".tmp")
    shutil.copyfile(features_db, tmp)
    mo = pycolmap.FeatureMatchingOptions()
    mo.num_threads = int(opts.num_threads)
    lst = tmp.with_name(tmp.name + ".pairs.txt")
    lst.write_text("".join(f"{a} {b}\n" for a, b in pair_list))
    prog(f"matching {len(pair_list)} pairs of images from different cameras")
    io = pycolmap.ImportedPairingOptions()
    io.match_list_path = lst
    with C.colmap_log(opts.verbose):
        pycolmap.match_image_pairs(tmp, matching_options=mo, pairing_options=io, device=pycolmap.Device.cpu)
    lst.unlink()
    C._finish(tmp, db)


def _undistort_all(ing: RigIngest, reg_clips: list[int], cams: dict, uo, dst: Path, prog) -> dict[int, dict]:
    """Every frame of the registered clips through its clip's camera to a pinhole image in ``dst``;
    returns each clip's pinhole intrinsics (``transforms.json`` keys)."""
    import pycolmap
    from PIL import Image

    dst.mkdir(parents=True)
    intr: dict[int, dict] = {}
    T = len(ing.grid_s)
    for ci in reg_clips:
        for k in range(T):
            f = ing.frame(ci, k)
            with Image.open(ing.image_dir / f.name) as im:
                rgb = np.asarray(im.convert("RGB"))
            bmp, cam = pycolmap.undistort_image(uo, pycolmap.Bitmap.from_array(rgb), cams[ci])
            Image.fromarray(np.asarray(bmp.to_array(), dtype=np.uint8)).save(dst / f.name, quality=95)
            if ci not in intr:
                p = [float(v) for v in cam.params]
                fx, fy, cx, cy = p[:4] if cam.model.name == "PINHOLE" else (p[0], p[0], p[1], p[2])
                intr[ci] = {"camera_model": "PINHOLE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy,
                            "w": int(cam.width), "h": int(cam.height)}
    prog(f"{len(reg_clips) * T} frames of {len(reg_clips)} cameras undistorted")
    return intr


def _write_outputs(scene, staging, rec, urec, ing: RigIngest, opts: SfmOptions, matcher, pairs, diagnosis, slices,
                   reg_clips, poses, intr, spreads, prog, command) -> dict[str, Any]:
    from recon.scene.readers import TIME_KEY
    from recon.scene.writers import write_ply_points
    from recon.sfm.pipeline import _metric_scale, fov_warning

    sfm_c2w = np.stack([poses[ci] for ci in reg_clips])
    ims = sorted((im for im in urec.images.values() if im.has_pose), key=lambda im: im.name)
    norm = normalization(sfm_c2w, center=opts.center, orient=opts.orient, normalize_scale=opts.normalize_scale,
                         metric_scale=_metric_scale(ims, opts))
    M = norm.matrix
    out_c2w = dict(zip(reg_clips, transform_c2w(M, sfm_c2w)))
    T = len(ing.grid_s)
    times = ing.times()
    held_clip, held_times = rig_split(len(reg_clips), T)
    held_ci = reg_clips[held_clip] if held_clip is not None else None
    shared = all(intr[ci] == intr[reg_clips[0]] for ci in reg_clips)
    tj: dict[str, Any] = dict(intr[reg_clips[0]]) if shared else {"camera_model": "PINHOLE"}
    frames, train, test = [], [], []
    for k in range(T):
        for ci in reg_clips:
            f = ing.frame(ci, k)
            fd: dict[str, Any] = {"file_path": f"images/{f.name}"}
            if not shared:
                fd.update(intr[ci])
            fd["transform_matrix"] = opencv_to_opengl(out_c2w[ci]).tolist()
            fd["time"] = times[k]
            frames.append(fd)
            (test if ci == held_ci or held_times[k] else train).append(fd["file_path"])
    tj["frames"] = frames
    held_txt = (f"camera {ing.clips[held_ci].name} (the first registered clip) at every time" if held_ci is not None
                else "both cameras at every 8th time from the 5th (index % 8 == 4), never the first or last")
    tj[TIME_KEY] = {
        "source": TIME_SOURCE,
        "videos": [c.name for c in ing.clips],
        "offsets_s": {c.name: c.offset_s for c in ing.clips},
        **({"offsets_by": ing.sync["method"]} if ing.sync else {}),
        "fps": ing.fps,
        "times": T,
        "first_s": ing.grid_s[0],
        "last_s": ing.grid_s[-1],
        "time": "(t_s - first_s) / (last_s - first_s) of the event time t_s = frame / fps + offset; each clip's frame nearest to each sample",
        "held_out": held_txt,
    }
    tj["train_filenames"], tj["test_filenames"] = train, test
    tj["applied_transform"] = M[:3, :].tolist()
    pts_ids = sorted(urec.points3D.keys())
    P = np.array([urec.points3D[i].xyz for i in pts_ids], dtype=np.float64).reshape(-1, 3)
    cols = np.array([urec.points3D[i].color for i in pts_ids], dtype=np.uint8).reshape(-1, 3)
    P_out = P @ M[:3, :3].T + M[:3, 3] if len(P) else P
    write_ply_points(staging / "points.ply", P_out, cols)
    os.chmod(staging / "points.ply", 0o644)
    tj["ply_file_path"] = "points.ply"
    tj["recon_sfm"] = {
        "world": "+z up; origin and scale as in sfm_transform.json",
        "units": norm.units,
        "applied_transform": "maps points of sparse/0 (SfM frame) to this file's frame: X = applied_transform @ [X_sfm, 1]",
        "colmap_model": "sparse/0 (the solved time slices; every frame of a clip shares that clip's camera)",
    }
    (staging / "transforms.json").write_text(json.dumps(tj, indent=2) + "\n")
    tinfo = norm.to_json()
    write_json(staging / "sfm_transform.json", tinfo)

    stats = reconstruction_stats(rec)
    per_cam: dict[int, int] = {}
    for im in rec.images.values():
        if im.has_pose:
            per_cam[int(im.camera_id)] = per_cam.get(int(im.camera_id), 0) + 1
    for c in stats["cameras"]:
        c["num_images"] = per_cam.get(c["camera_id"], 0)
    all_names = [f.name for f in ing.frames]
    unreg = [f.name for f in ing.frames if f.clip not in reg_clips]
    warnings = []
    lost = [c.name for i, c in enumerate(ing.clips) if i not in reg_clips]
    if lost:
        warnings.append(f"{len(lost)} camera(s) not registered, their frames left out: {', '.join(lost[:6])}; {diagnosis}")
    if stats["mean_reprojection_error_px"] > 2.0:
        warnings.append(f"high mean reprojection error ({stats['mean_reprojection_error_px']:.2f} px): check for motion blur, rolling shutter or a wrong camera model")
    wide = fov_warning(list(intr.values()))
    if wide:
        warnings.append(wide)
    # A fixed camera's poses from several slices must agree; a large spread means it moved or SfM erred.
    scale_ref = float(np.linalg.norm(sfm_c2w[:, :3, 3] - sfm_c2w[:, :3, 3].mean(0), axis=1).max()) or 1.0
    moved = [ing.clips[ci].name for ci in reg_clips
             if spreads[ci][3] < spreads[ci][2] or spreads[ci][0] > 1.0 or spreads[ci][1] > 0.01 * scale_ref]
    if moved:
        warnings.append(f"the time slices disagree on where {', '.join(moved[:5])} stood (over 1 degree or 1 % of the rig, or "
                        "a slice left out): a camera that moved, or a weak solution; its frames use the mean of the agreeing slices")
    rig = {
        "cameras": [{"video": c.name, "fps": c.fps, "frames": c.frames, "offset_s": c.offset_s,
                     "registered": i in reg_clips, "slice_images": spreads[i][2] if i in reg_clips else 0,
                     "slice_images_used": spreads[i][3] if i in reg_clips else 0,
                     "rotation_spread_deg": spreads[i][0] if i in reg_clips else None,
                     "centre_spread": spreads[i][1] * norm.scale if i in reg_clips else None}
                    for i, c in enumerate(ing.clips)],
        "cameras_registered": len(reg_clips),
        "times": T, "fps": ing.fps, "first_s": ing.grid_s[0], "last_s": ing.grid_s[-1],
        "slices": slices, "slice_times_s": [ing.grid_s[k] for k in slices],
        "held_out": held_txt,
    }
    if ing.sync:
        rig["sync"] = ing.sync
    if command is None:
        from recon.sfm.options import SfmOptions as _O

        command = "recon.sfm.process(" + ", ".join([repr(str(scene))] + [f"{k}={v!r}" for k, v in asdict(opts).items() if v != getattr(_O(), k)]) + ")"
    report: dict[str, Any] = {
        "status": "ok" if not unreg else "partial",
        "scene": str(scene),
        "command": command,
        **stats,
        "images_total": len(all_names),
        "images_registered": len(all_names) - len(unreg),
        "slice_images_registered": stats["images_registered"],
        "unregistered": unreg,
        "diagnosis": diagnosis,
        "matcher": matcher,
        "mapper": opts.mapper,
        "overlapping_pairs": sum(1 for p in pairs if p[2] >= C.MIN_INLIERS),
        "inputs": {"images": 0, "video_frames": len(all_names), "videos": [c.source for c in ing.clips],
                   "skipped": [], "duplicates": [], "ignored": ing.ignored},
        "options": asdict(opts),
        "transform": tinfo,
        "warnings": warnings,
        "rig": rig,
        "frames": {
            "sparse/0": "SfM frame, undistorted PINHOLE cameras of the solved slice images",
            "distorted/sparse/0": "SfM frame, estimated camera model, the solved slice images",
            "transforms.json": "output frame (+z up, normalised or metric); every frame, one camera per clip",
            "points.ply": "output frame",
        },
    }
    title = (f"{scene.name}: {len(reg_clips)}/{len(ing.clips)} cameras x {T} times, {stats['num_points3D']} points "
             "(output frame, +z up)")
    try:
        plot(staging / "sfm_report.png", np.stack([out_c2w[ci] for ci in reg_clips]), P_out, cols, title)
    except Exception as e:  # a plot must never fail the run
        warnings.append(f"could not draw sfm_report.png ({e})")
    return json.loads(json.dumps(report, default=str))
