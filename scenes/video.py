"""Render a built-in scene along a smooth camera path into an H.264 MP4 (PyAV), with its cameras."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

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
AUDIO_RATE = 16000
"""Sample rate of the rig clips' sound (``render_rig_videos(audio=True)``)."""
AUDIO_CHUNK = 1024  # samples per encoded audio frame (AAC's frame size)
FLASH_BLEND = 0.7
"""How far the flash frame is blended toward white (``render_rig_videos(flash_frame=N)``)."""


def event_sound(seed: int, seconds: float, rate_hz: float = 6.0) -> list[tuple[float, float, float, float]]:
    """The rig event's soundtrack, deterministic from ``seed``: short tone bursts (clicks and
    chirps a stage would hear) at irregular times, as ``(time_s, frequency_hz, width_s,
    amplitude)``; :func:`sound_at` samples it. ``rate_hz`` bursts per second (at least 3), one
    in each equal stretch of the event at a random place, 600-3000 Hz, 2-6 ms wide, amplitude
    0.2-0.6, so a cross-correlation of two recordings has one clear peak."""
    rng = np.random.default_rng([int(seed), 15])
    n = max(3, int(round(seconds * rate_hz)))
    # One burst at a random place in each of n equal stretches (kept off their ends): spread over
    # the whole event, irregular intervals (no two lags line up several bursts).
    times = (np.arange(n) + rng.uniform(0.15, 0.85, n)) * (seconds / n)
    return [(float(t), float(rng.uniform(600, 3000)), float(rng.uniform(0.002, 0.006)), float(rng.uniform(0.2, 0.6)))
            for t in times]


def sound_at(bursts, t: np.ndarray) -> np.ndarray:
    """The soundtrack of :func:`event_sound` at event seconds ``t`` ``[S]`` (float32 ``[S]``):
    each burst a Gaussian-windowed sine, so any start time samples it exactly."""
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(t.shape, np.float64)
    for tc, f, w, a in bursts:
        lo, hi = np.searchsorted(t, [tc - 5 * w, tc + 5 * w])
        d = t[lo:hi] - tc
        out[lo:hi] += a * np.exp(-0.5 * (d / w) ** 2) * np.sin(2 * np.pi * f * d)
    return out.astype(np.float32)


def _encode(av, path: Path, images, fps: int, width: int, height: int, crf: int, audio=None) -> None:
    """H.264 frames ``images`` (uint8 ``[H, W, 3]``) to ``path``; with ``audio = (samples [S] float32
    in [-1, 1], rate)`` also a mono AAC track whose first sample is at the first frame's time."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.mp4")
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": "medium"}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=int(audio[1]))
                astream.layout = "mono"
            for img in images:
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
            if astream is not None:
                samples = np.ascontiguousarray(audio[0], dtype=np.float32)
                for s in range(0, len(samples), AUDIO_CHUNK):
                    frame = av.AudioFrame.from_ndarray(samples[None, s:s + AUDIO_CHUNK].copy(), format="fltp", layout="mono")
                    frame.sample_rate, frame.pts = int(audio[1]), s
                    for packet in astream.encode(frame):
                        container.mux(packet)
                for packet in astream.encode():
                    container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_rig_videos(out_dir: str | os.PathLike, cameras: int = RIG_VIDEO_CAMERAS, seconds: float = 2.0,
                      fps: int = 12, res: int = 256, height: int | None = None, seed: int = 0, ss: int = 2,
                      crf: int = 18, start_frames=None, flash_frame: int | None = None, audio: bool = False,
                      write_offsets: bool = True) -> Path:
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
      multi-view capture); not written with ``write_offsets=False`` (a set for ``recon process
      --sync audio|flash`` to align by itself);
    * ``ground_truth.json``: the intrinsics (OPENCV, no distortion), each camera's clip, offset and
      OpenGL camera-to-world ``transform_matrix`` (as ``transforms.json``), and per event frame its
      seconds, scene ``time`` and the moving objects' ``object_transforms`` (world transform from
      the time-0 pose, as ``recon scene synth`` writes them); ``flash_frame`` and ``audio`` (the
      sound's rate and bursts) when asked for.

    Cues to align the clips by (all cameras see and hear the same event):

    * ``flash_frame = N``: at event frame ``N`` (exactly that frame) every camera's image is
      blended :data:`FLASH_BLEND` (70 %) toward white, as a photo flash would light the stage;
    * ``audio``: each clip carries a mono AAC track (:data:`AUDIO_RATE`) of the event's sound
      (:func:`event_sound`, from ``seed``) from the clip's own start, its sample ``k`` at event
      second ``s / fps + k / rate``, plus independent noise per camera (standard deviation 0.005,
      as different microphones would add).

    Args:
        out_dir: the output folder.
        cameras: number of fixed cameras (at least 2).
        seconds, fps: length and frame rate of the event.
        res: frame width in pixels; ``height`` defaults to ``res``. Both even, at least 16.
        seed: scene seed (textures).
        ss: silhouette supersampling factor.
        crf: libx264 constant rate factor.
        start_frames: per camera, the event frame its clip starts at (default all 0).
        flash_frame: the event frame of the flash (default none).
        audio: give each clip a sound track of the event.
        write_offsets: write ``offsets.json``.
    """
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
    if flash_frame is not None and not 0 <= int(flash_frame) <= n - 1:
        raise ReconError(f"--flash-frame must be an event frame in 0..{n - 1} ({n} frames: --seconds x --fps), got {flash_frame}")
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
    bursts = event_sound(seed, n / fps) if audio else None
    noise = np.random.default_rng([int(seed), 15, 1])

    def frame(j: int, i: int) -> np.ndarray:
        rgb = renderer.render(K, c2ws[j], width, height, float(times[i])).rgb
        if flash_frame is not None and i == int(flash_frame):
            rgb = np.round(rgb.astype(np.float32) * (1 - FLASH_BLEND) + 255.0 * FLASH_BLEND).astype(np.uint8)
        return rgb

    cams = []
    for j in range(cameras):
        name = f"cam{j:02d}.mp4"
        imgs = (frame(j, i) for i in range(starts[j], n))
        track = None
        if bursts is not None:
            t = starts[j] / fps + np.arange(int(round((n - starts[j]) / fps * AUDIO_RATE))) / AUDIO_RATE
            track = (np.clip(sound_at(bursts, t) + noise.normal(0.0, 0.005, len(t)).astype(np.float32), -1, 1), AUDIO_RATE)
        _encode(av, out / name, imgs, fps, width, height, crf, audio=track)
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
    if flash_frame is not None:
        gt["flash_frame"] = int(flash_frame)
    if bursts is not None:
        gt["audio"] = {"rate": AUDIO_RATE, "codec": "aac", "noise_std": 0.005,
                       "bursts": [{"time_s": b[0], "frequency_hz": b[1], "width_s": b[2], "amplitude": b[3]} for b in bursts]}
    if write_offsets:
        atomic_write_text(out / OFFSETS_FILE, json.dumps({c["video"]: c["offset_s"] for c in cams}, indent=1) + "\n")
    else:
        (out / OFFSETS_FILE).unlink(missing_ok=True)  # an earlier set's offsets would mark the folder
    atomic_write_text(gt_path, json.dumps(gt, indent=1) + "\n")
    return out
