"""Video to frames for SfM: the sharpest frame per time window, near-duplicates skipped.

One decoding pass with PyAV (the ``video`` extra). The video is cut into equal windows of
frames, ``frames`` windows for a target count or one window per ``1 / fps`` seconds for a target
rate, and from each window the frame with the largest variance of the Laplacian (a standard focus
measure; motion blur lowers it) is kept. A kept frame that differs from the previous kept one by
less than ``dup_threshold`` (mean absolute difference of 64-pixel grey thumbnails, in [0, 1]) is
dropped: the camera did not move, so the frame adds no parallax. Rotation metadata (phones) is
applied, so frames are stored as displayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recon.errors import ReconError

# Frames above this many pixels (16k x 16k, as for images) are refused before decoding.
MAX_FRAME_PIXELS = 16384 * 16384


@dataclass
class VideoInfo:
    """What the container says about its first video stream (``frames`` may be an estimate)."""

    fps: float
    frames: int
    duration_s: float
    width: int
    height: int


@dataclass
class VideoFrame:
    """One frame written by :func:`extract_frames`."""

    name: str
    path: Path
    index: int  # frame number in the video (0-based, decode order)
    time_s: float
    sharpness: float


def _av():
    try:
        import av
    except ImportError:
        raise ReconError("reading video needs PyAV: pip install 'recon[video]' (or pip install av)") from None
    return av


def _open(path: Path):
    av = _av()
    try:
        container = av.open(str(path))
    except Exception as e:  # av.error.* (InvalidDataError, ...) and OSError
        raise ReconError(f"{path}: not a readable video ({' '.join(str(e).split())[:200]})") from None
    if not container.streams.video:
        container.close()
        raise ReconError(f"{path}: no video stream")
    return container


def probe_video(path: Path) -> VideoInfo:
    """Frame rate, frame count (from the header, else by counting packets), duration and size."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        w, h = int(stream.width or 0), int(stream.height or 0)
        if w * h > MAX_FRAME_PIXELS:
            raise ReconError(
                f"{path}: video frames are {w}x{h} ({w * h / 1e6:.0f} megapixels), above the limit of "
                f"{MAX_FRAME_PIXELS / 1e6:.0f}; a corrupt header, or re-encode it smaller"
            )
        try:
            rate = stream.average_rate or stream.guessed_rate or 30
            fps = float(rate) if rate else 30.0
        except (ZeroDivisionError, ValueError, TypeError):
            fps = 30.0
        if not (math.isfinite(fps) and 0 < fps <= 10000):
            fps = 30.0  # a corrupt or absent rate: assume a common one
        n = max(0, int(stream.frames or 0))
        try:
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        except (ValueError, TypeError):
            duration = 0.0
        if not duration and container.duration:
            duration = container.duration / 1e6
        if not (math.isfinite(duration) and duration >= 0):
            duration = 0.0
        if n <= 0:
            try:
                n = sum(1 for pkt in container.demux(stream) if pkt.size)
            except Exception:
                n = int(round(duration * fps))
        if not duration and n:
            duration = n / fps
        return VideoInfo(fps=fps, frames=n, duration_s=duration, width=w, height=h)
    finally:
        container.close()


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image ``[H, W]`` (float, any range)."""
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def _gray_small(frame, max_side: int) -> np.ndarray:
    """A decoded frame to grey float32 ``[h, w]`` with its long side at most ``max_side``."""
    im = frame.to_image().convert("L")
    k = max(1, int(np.ceil(max(im.size) / max_side)))
    if k > 1:
        im = im.reduce(k)
    return np.asarray(im, dtype=np.float32) / 255.0


def thumbnail(rgb: np.ndarray, side: int = 64) -> np.ndarray:
    """A grey float32 thumbnail in [0, 1] whose long side is ``side`` (for near-duplicate tests)."""
    from PIL import Image

    im = Image.fromarray(rgb).convert("L")
    w, h = im.size
    s = side / max(w, h)
    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def _rotate(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, PyAV's ``frame.rotation``)."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def extract_frames(
    path: Path,
    out_dir: Path,
    prefix: str,
    frames: Optional[int] = None,
    fps: Optional[float] = None,
    dup_threshold: float = 0.01,
    quality: int = 95,
    log: Optional[Callable[[str], None]] = None,
) -> list[VideoFrame]:
    """Write the sharpest frame of each window of ``path`` to ``out_dir/{prefix}_{index:06d}.jpg``.

    Args:
        path: the video file.
        out_dir: folder for the JPEG frames (created).
        prefix: file-name prefix (e.g. the video's stem).
        frames: target number of frames (windows of equal length over the whole video).
        fps: target rate in frames per second (used when ``frames`` is None); default 2.
        dup_threshold: drop a frame whose thumbnail differs from the previous kept frame's by less
            than this mean absolute difference (0 keeps everything).
        quality: JPEG quality of the written frames.

    Returns the frames written, in time order. Raises :class:`ReconError` when the file is not a
    video or no frame decodes.
    """
    from PIL import Image

    path = Path(path)
    info = probe_video(path)
    if frames is not None and frames > 0:
        window = max(1.0, info.frames / frames) if info.frames else 1.0
    else:
        window = max(1.0, info.fps / (fps if fps and fps > 0 else 2.0))
    out_dir.mkdir(parents=True, exist_ok=True)
    container = _open(path)
    written: list[VideoFrame] = []
    last_thumb: Optional[np.ndarray] = None
    n_decoded = 0
    n_dups = 0
    best = None  # (sharpness, index, time, frame)
    cur = -1

    def flush() -> None:
        nonlocal best, last_thumb, n_dups
        if best is None:
            return
        sharp, idx, t, frame = best
        best = None
        rgb = frame.to_ndarray(format="rgb24")
        rot = getattr(frame, "rotation", 0) or 0
        rgb = _rotate(rgb, rot)
        th = thumbnail(rgb)
        if last_thumb is not None and th.shape == last_thumb.shape and dup_threshold > 0:
            if float(np.abs(th - last_thumb).mean()) < dup_threshold:
                n_dups += 1
                return
        last_thumb = th
        name = f"{prefix}_{idx:06d}.jpg"
        p = out_dir / name
        Image.fromarray(rgb).save(p, quality=quality)
        written.append(VideoFrame(name=name, path=p, index=idx, time_s=t, sharpness=sharp))

    error = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            idx = n_decoded
            n_decoded += 1
            w = int(idx // window)
            if w != cur:
                flush()
                cur = w
            s = laplacian_variance(_gray_small(frame, 640))
            if best is None or s > best[0]:
                t = float(frame.time) if frame.time is not None else idx / info.fps
                best = (s, idx, t, frame)
    except Exception as e:  # a damaged stream: keep what decoded so far
        error = " ".join(str(e).split())[:200]
    finally:
        try:
            flush()
        finally:
            container.close()
    if not written:
        why = f" ({error})" if error else ""
        raise ReconError(f"{path}: no decodable video frames{why}")
    if log:
        msg = f"{path.name}: {n_decoded} frames decoded, kept {len(written)} sharpest"
        if n_dups:
            msg += f", skipped {n_dups} near-duplicates"
        if error:
            msg += f"; stopped early at a decoding error ({error})"
        log(msg)
    return written
