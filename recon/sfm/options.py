"""Options of ``recon process`` / :func:`recon.sfm.process`, one dataclass passed down explicitly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

CameraModelName = Literal["SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "SIMPLE_PINHOLE", "PINHOLE"]


@dataclass
class SfmOptions:
    """How to turn photos or videos into posed, undistorted frames.

    Attributes:
        max_size: longest image side used for SIFT features (larger images are downscaled for
            extraction only; keypoints, intrinsics and outputs stay at full resolution).
        output_max_size: longest side of the undistorted output frames (None: full resolution).
        camera_model: COLMAP camera model estimated by SfM (undistorted outputs are pinhole).
        camera_mode: "auto" (one camera per image size, camera body/zoom setting and video),
            "single" (one camera for every image; all must share a size) or "per_image".
        matcher: "auto" (exhaustive for up to 100 photos, else sequential; sequential for video),
            "exhaustive" or "sequential".
        sequential_overlap: neighbours each frame is matched with (sequential matcher).
        loop_closure: sequential matcher only: also match every pair of evenly spaced key frames
            (``loop_keyframes`` of them), so a capture that returns to its start closes the loop.
            Works without COLMAP's vocabulary tree, which would be downloaded.
        loop_keyframes: number of key frames for loop closure.
        mapper: "incremental" (COLMAP) or "global" (GLOMAP, ``pycolmap.global_mapping``).
        num_features: maximum SIFT features per image.
        min_registered_fraction: fail (with a diagnosis) when fewer images register than this.
        center: world origin: "poses" (mean camera centre), "focus" (point nearest to every
            optical axis) or "none".
        orient: "up" (rotate so the mean camera up vector is +z) or "none".
        normalize_scale: scale so the camera centres fit in a unit sphere (unless metric).
        metric_distance: ``(image_a, image_b, metres)``: scale the output to metres from the
            known distance between two cameras (image names or stems).
        metric_scale: multiply the SfM units by this to get metres (instead of ``metric_distance``).
        video_frames: total frames taken from all videos (default 150).
        video_fps: frames per second of video to take instead of ``video_frames``.
        recursive: read photos and videos from subfolders too.
        multi_view: the folder's videos are synchronised clips of one event, one per fixed camera
            (docs/splat4d.md, "Synchronised multi-view videos"); implied by ``offsets`` or an
            ``offsets.json`` in the folder. --video-frames then counts frames over all clips
            (default 60 times per clip) and --video-fps time samples per second.
        offsets: JSON file of each clip's start in event seconds (``{"cam1.mp4": 0.5}``; default
            the folder's ``offsets.json``, else all 0).
        sync: multi-view: where the clips' offsets come from: "offsets" (--offsets FILE or the
            folder's ``offsets.json``, else all 0), "audio" (cross-correlating the clips' sound: a
            clap or a slate every camera hears) or "flash" (the frame in which every camera sees
            a flash). audio and flash imply ``multi_view`` and refuse given offsets (use one or
            the other); found offsets are printed, kept with the extracted frames and written
            where given ones are (``sfm_report.json``, ``transforms.json``).
        rig_slices: multi-view: time samples SfM solves the fixed cameras on (the sharpest of
            each of that many stretches of the event).
        num_threads: threads for COLMAP (-1: all cores).
        seed: random seed for COLMAP's RANSAC and mapper.
        verbose: show COLMAP's own log.
        force: ignore cached features, matches and outputs.
    """

    max_size: int = 1600
    output_max_size: Optional[int] = None
    camera_model: CameraModelName = "SIMPLE_RADIAL"
    camera_mode: Literal["auto", "single", "per_image"] = "auto"
    matcher: Literal["auto", "exhaustive", "sequential"] = "auto"
    sequential_overlap: int = 10
    loop_closure: bool = True
    loop_keyframes: int = 24
    mapper: Literal["incremental", "global"] = "incremental"
    num_features: int = 8192
    min_registered_fraction: float = 0.5
    center: Literal["poses", "focus", "none"] = "poses"
    orient: Literal["up", "none"] = "up"
    normalize_scale: bool = True
    metric_distance: Optional[tuple[str, str, float]] = None
    metric_scale: Optional[float] = None
    video_frames: Optional[int] = None
    video_fps: Optional[float] = None
    recursive: bool = False
    multi_view: bool = False
    offsets: Optional[Path] = None
    sync: Literal["offsets", "audio", "flash"] = "offsets"
    rig_slices: int = 1
    num_threads: int = -1
    seed: int = 0
    verbose: bool = False
    force: bool = False


# Fields that change no output (so they are left out of cache keys).
# The multi-view fields are keyed by recon.sfm.rig itself (with the offsets' values), so adding
# them left the keys of earlier single-camera outputs unchanged.
_NOT_IN_KEY = {"verbose", "force", "num_threads", "multi_view", "offsets", "sync", "rig_slices"}


def options_key(opts: SfmOptions, fields: Optional[set[str]] = None, extra: object = None) -> str:
    """A short hash of the named option fields (all that affect outputs when ``fields`` is None)."""
    d = {k: v for k, v in asdict(opts).items() if k not in _NOT_IN_KEY and (fields is None or k in fields)}
    blob = json.dumps({"opts": d, "extra": extra}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]
