"""Render a built-in scene along a smooth camera path into an H.264 MP4 (PyAV), with its cameras."""

from __future__ import annotations

import json
import os
from pathlib import Path

from recon.errors import ReconError
from recon.io_utils import atomic_write_text
from recon.scene.cameras import intrinsics_from_fov
from recon.scene.conventions import opencv_to_opengl
from scenes.dataset import _round, build
from scenes.render import Renderer


def render_video(name: str, out_path: str | os.PathLike, seconds: float = 10.0, fps: int = 24, res: int = 256,
                 height: int | None = None, seed: int = 0, ss: int = 2, crf: int = 18) -> Path:
    """Render scene ``name`` along its smooth path (one orbit / a forward-facing loop) to ``out_path``.

    Also writes ``<out_path stem>.transforms.json`` beside it: nerfstudio-format cameras (OpenGL
    camera-to-world), one frame per video frame, with ``frame_index`` and, for dynamic scenes,
    ``time`` in [0, 1]. Frame i is shown at ``i / fps`` seconds.

    Args:
        name: one of :data:`scenes.SCENES`.
        out_path: the ``.mp4`` file to write.
        seconds, fps: duration and frame rate (``round(seconds * fps)`` frames).
        res: width in pixels; ``height`` defaults to ``res`` (square). Both must be even (yuv420p).
        seed: scene seed (textures).
        ss: silhouette supersampling factor.
        crf: libx264 constant rate factor (lower = better quality, bigger file).
    Returns:
        the path of the video.
    """
    try:
        import av
    except ImportError:
        raise ReconError("render_video needs PyAV: pip install 'recon[video]' (or pip install av)") from None
    width, height = int(res), int(height or res)
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ReconError(f"video size must be even and at least 16 pixels, got {width}x{height}")
    n = int(round(seconds * fps))
    if n < 1:
        raise ReconError(f"--seconds x --fps gives no frames ({seconds} s at {fps} fps)")
    out = Path(out_path)
    if out.suffix.lower() != ".mp4":
        raise ReconError(f"{out}: video output must end in .mp4")
    recipe = build(name, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    K = intrinsics_from_fov(recipe.fov_x, width, height)  # square pixels, centred
    c2ws, times = recipe.path(n)
    renderer = Renderer(recipe, ss=ss)
    frames = []
    for i in range(n):
        fr = {"frame_index": i, "transform_matrix": _round(opencv_to_opengl(c2ws[i]))}
        if times is not None:
            fr["time"] = float(f"{float(times[i]):.12g}")
        frames.append(fr)
    imgs = (renderer.render(K, c2ws[i], width, height, 0.0 if times is None else float(times[i])).rgb for i in range(n))
    _encode(av, out, imgs, fps, width, height, crf)
    cams = {
        "camera_model": "OPENCV", "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]),
        "cy": float(K[1, 2]), "w": width, "h": height, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "fps": int(fps), "video": out.name, "scene": recipe.name, "seed": recipe.seed, "frames": frames,
    }
    atomic_write_text(out.with_name(out.stem + ".transforms.json"), json.dumps(cams, indent=2) + "\n")
    return out


RIG_VIDEO_CAMERAS = 16
"""Default number of fixed cameras of :func:`render_rig_videos` (the ``dynamic-rig`` stage layout).
Eight (the image rig's count: 45 degrees of azimuth and 30 of elevation between neighbours) is too
sparse for SfM to pose from 256-384 px frames; sixteen registers every camera at 384 px."""

OFFSETS_FILE = "offsets.json"
GROUND_TRUTH_FILE = "ground_truth.json"


def _encode(av, path: Path, images, fps: int, width: int, height: int, crf: int) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.mp4")
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": "medium"}
            for img in images:
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_rig_videos(out_dir: str | os.PathLike, cameras: int = RIG_VIDEO_CAMERAS, seconds: float = 2.0,
                      fps: int = 12, res: int = 256, height: int | None = None, seed: int = 0, ss: int = 2,
                      crf: int = 18, start_frames=None) -> Path:
    """Render the ``dynamic-rig`` event as one H.264 clip per fixed camera (a synchronised
    multi-view video set), with exact ground truth; returns ``out_dir``.

    The event lasts ``n = round(seconds * fps)`` frames; event frame ``i`` is at ``i / fps`` seconds
    and scene time ``i / (n - 1)`` (the time :func:`scenes.synth` and ``transforms.json`` use).
    Camera ``j`` (``stage_rig(cameras)[j]``: a capture stage around the turntable, alternately at
    15 and 45 degrees of elevation) records ``camJJ.mp4``; with ``start_frames[j] = s`` its clip
    starts late, at event frame ``s`` (its frame ``k`` shows event frame ``s + k``), as an
    unsynchronised camera would.

    Writes into ``out_dir`` (new, empty, or an earlier output of this function):

    * ``camJJ.mp4``: the clips;
    * ``offsets.json``: ``{"camJJ.mp4": s / fps}``, each clip's start in event seconds, which
      ``recon process`` reads to align the clips (its presence marks the folder as a synchronised
      multi-view capture);
    * ``ground_truth.json``: the intrinsics (OPENCV, no distortion), each camera's clip, offset and
      OpenGL camera-to-world ``transform_matrix`` (as ``transforms.json``), and per event frame its
      seconds, scene ``time`` and the moving objects' ``object_transforms`` (world transform from
      the time-0 pose, as ``recon scene synth`` writes them).

    Args:
        out_dir: the output folder.
        cameras: number of fixed cameras (at least 2).
        seconds, fps: length and frame rate of the event.
        res: frame width in pixels; ``height`` defaults to ``res``. Both even, at least 16.
        seed: scene seed (textures).
        ss: silhouette supersampling factor.
        crf: libx264 constant rate factor.
        start_frames: per camera, the event frame its clip starts at (default all 0).
    """
    import numpy as np

    try:
        import av
    except ImportError:
        raise ReconError("render_rig_videos needs PyAV: pip install 'recon[video]' (or pip install av)") from None
    from scenes.recipes import stage_rig

    width, height = int(res), int(height or res)
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ReconError(f"video size must be even and at least 16 pixels, got {width}x{height}")
    if cameras < 2:
        raise ReconError(f"--cameras must be at least 2 (a multi-view rig), got {cameras}")
    n = int(round(seconds * fps))
    if n < 2:
        raise ReconError(f"--seconds x --fps gives {n} frame(s); a rig video set needs at least 2 ({seconds} s at {fps} fps)")
    starts = [0] * cameras if start_frames is None else [int(s) for s in start_frames]
    if len(starts) != cameras or any(not 0 <= s <= n - 2 for s in starts):
        raise ReconError(f"start_frames must give each of the {cameras} cameras a start in 0..{n - 2}, got {list(starts)}")
    out = Path(out_dir)
    if out.suffix.lower() == ".mp4":
        raise ReconError(f"{out}: the rig's video set is a folder (one clip per camera); give a folder name")
    gt_path = out / GROUND_TRUTH_FILE
    if out.exists() and not out.is_dir():
        raise ReconError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not gt_path.is_file():
        raise ReconError(f"{out}: folder is not empty and holds no earlier rig video set ({GROUND_TRUTH_FILE}); choose a new folder")
    if gt_path.is_file():  # replace an earlier set: remove the clips it wrote
        try:
            old = json.loads(gt_path.read_text())
            for cam in old.get("cameras", []):
                name = Path(str(cam.get("video", ""))).name
                if name.startswith("cam") and name.endswith(".mp4"):
                    (out / name).unlink(missing_ok=True)
        except (ValueError, AttributeError, TypeError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    recipe = build("dynamic-rig", seed)
    K = intrinsics_from_fov(recipe.fov_x, width, height)
    c2ws = stage_rig(cameras)
    renderer = Renderer(recipe, ss=ss)
    times = np.arange(n) / (n - 1)
    cams = []
    for j in range(cameras):
        name = f"cam{j:02d}.mp4"
        imgs = (renderer.render(K, c2ws[j], width, height, float(times[i])).rgb for i in range(starts[j], n))
        _encode(av, out / name, imgs, fps, width, height, crf)
        cams.append({"video": name, "offset_s": starts[j] / fps, "first_event_frame": starts[j],
                     "frames": n - starts[j], "transform_matrix": _round(opencv_to_opengl(c2ws[j]))})
    events = []
    for i in range(n):
        tm = float(times[i])
        events.append({
            "event_frame": i, "time_s": float(f"{i / fps:.12g}"), "time": float(f"{tm:.12g}"),
            "object_transforms": {str(oid): _round(recipe.object_transform(oid, tm) @ np.linalg.inv(recipe.object_transform(oid, 0.0)))
                                  for oid in sorted(recipe.motions)},
        })
    gt = {
        "scene": recipe.name, "seed": recipe.seed, "fps": int(fps), "event_frames": n, "seconds": n / fps,
        "camera_model": "OPENCV", "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]),
        "cy": float(K[1, 2]), "w": width, "h": height, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "convention": "transform_matrix: OpenGL camera-to-world (nerfstudio); a clip's frame k shows event frame "
                      "first_event_frame + k, at offset_s + k / fps event seconds; time = event_frame / (event_frames - 1)",
        "cameras": cams, "events": events,
    }
    for path, body in ((out / OFFSETS_FILE, {c["video"]: c["offset_s"] for c in cams}), (gt_path, gt)):
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")
    return out
