"""Synchronised multi-view video: a folder of clips, one per fixed camera, to frames grouped by time.

A clip's frame ``i`` shows the event at ``i / fps + offset`` seconds, where ``offset`` is the
clip's start in event time (from ``offsets.json`` in the folder or ``--offsets FILE``: a JSON
object mapping clip file names to seconds; clips it does not name start at 0; or found from the
clips' sound or a flash, ``--sync audio|flash``, :mod:`recon.capture.sync`). The clips are
sampled on one grid of event times over the interval every clip covers, at the lowest frame rate
of the set, and each clip contributes, for each grid time, its frame nearest to it (within half of
its frame period). Frames go to ``work_dir/rig-<key>/images/<clip>_t<k>.jpg`` (``k``: the grid
index) with a ``manifest.json``; ``<key>`` hashes the clip files, the offsets (with ``--sync``:
the method, since the offsets follow from the clips) and the sampling, so a re-run with the same
inputs reuses the folder without decoding anything (found offsets are kept in the manifest).

What makes a folder a multi-view capture is the caller's choice (``recon process --multi-view``,
``--offsets``, ``--sync audio|flash`` or an ``offsets.json`` beside the clips); :func:`rig_request`
decides it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recon.capture.sync import stream_damaged
from recon.errors import ReconError

RIG_VERSION = 1
OFFSETS_FILE = "offsets.json"
DEFAULT_RIG_TIMES = 60  # time samples when neither a frame count nor a rate is given


@dataclass
class RigClip:
    """One camera's clip.

    Attributes:
        name: the clip's file name (its camera's name in reports).
        source: the clip (absolute path).
        fps: the container's frame rate; ``frames``: its frame count (decoded, not the header's).
        offset_s: event time of its frame 0, in seconds.
        width, height: frame size as displayed.
        prefix: the stem its frames are named after.
    """

    name: str
    source: str
    fps: float
    frames: int
    offset_s: float
    width: int
    height: int
    prefix: str


@dataclass
class RigFrame:
    """One extracted frame: clip ``clip`` (index into :attr:`RigIngest.clips`) at grid time ``k``."""

    name: str
    clip: int
    k: int
    frame_index: int  # in the clip, decode order
    time_s: float  # the frame's own event time: frame_index / fps + offset_s
    sharpness: float


@dataclass
class RigIngest:
    """The output of :func:`ingest_rig`.

    Attributes:
        image_dir: the folder frame names are relative to.
        clips: the cameras, in file-name order.
        grid_s: ``[T]`` event seconds of the time samples.
        frames: every frame, ``T`` per clip, clip-major.
        fps: the grid's frame rate (the lowest clip frame rate).
        ignored: other files in the folder (not videos).
        key: the cache key.
        sync: how the offsets were found (:meth:`recon.capture.sync.SyncResult.to_json`), None
            when they were given.
    """

    image_dir: Path
    clips: list[RigClip]
    grid_s: list[float]
    frames: list[RigFrame]
    fps: float
    ignored: list[str] = field(default_factory=list)
    key: str = ""
    sync: Optional[dict] = None

    def frame(self, clip: int, k: int) -> RigFrame:
        return self.frames[clip * len(self.grid_s) + k]

    def times(self) -> list[float]:
        """Each grid time normalised to [0, 1] (the first sample 0, the last 1)."""
        lo, hi = self.grid_s[0], self.grid_s[-1]
        return [float(f"{(t - lo) / (hi - lo):.9g}") for t in self.grid_s]


def rig_request(scene: Path, multi_view: bool, offsets: Optional[Path], sync: str = "offsets") -> bool:
    """Whether ``scene`` is to be processed as synchronised multi-view video: asked for
    (``multi_view``, an ``offsets`` file or ``sync`` "audio"/"flash"), or a folder holding
    ``offsets.json``."""
    if multi_view or offsets is not None or sync != "offsets":
        return True
    return Path(scene).is_dir() and (Path(scene) / OFFSETS_FILE).is_file()


def read_offsets(path: Path, clips: list[Path]) -> dict[str, float]:
    """Per-clip offsets in seconds from a JSON object ``{"cam1.mp4": 0.5, ...}`` (file names, or
    stems); clips it does not name get 0. One-line :class:`ReconError` for anything else."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ReconError(f"{path}: cannot read the clip offsets ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ReconError(f"{path}: not valid JSON ({e}); expected {{\"CLIP.mp4\": SECONDS, ...}}") from None
    if not isinstance(data, dict):
        raise ReconError(f"{path}: expected a JSON object of clip offsets in seconds, e.g. {{\"cam1.mp4\": 0.5}}")
    by_name = {p.name: p for p in clips}
    by_stem = {p.stem: p for p in clips}
    out = {p.name: 0.0 for p in clips}
    for key, val in data.items():
        clip = by_name.get(key) or by_stem.get(key)
        if clip is None:
            shown = ", ".join(sorted(by_name)[:6]) + (", ..." if len(by_name) > 6 else "")
            raise ReconError(f"{path}: offset for {key!r}, which is not a video in the folder ({shown})")
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise ReconError(f"{path}: the offset of {key!r} must be a number of seconds, got {json.dumps(val)}")
        out[clip.name] = float(val)
    return out


def _key(clips: list[Path], offsets: dict[str, float], sampling: dict) -> str:
    h = hashlib.sha1(json.dumps({"v": RIG_VERSION, "offsets": offsets, "sampling": sampling}, sort_keys=True).encode())
    for p in clips:
        st = p.stat()
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _count_frames(path: Path) -> int:
    """Frames that decode (headers may be wrong); one pass without converting pixels."""
    from recon.capture.video import _open

    container = _open(path)
    n = 0
    try:
        for _ in container.decode(container.streams.video[0]):
            n += 1
    except Exception as e:  # a damaged stream
        raise ReconError(f"{path}: video stream damaged after {n} frames ({' '.join(str(e).split())[:160]})") from None
    finally:
        container.close()
    return n


def time_grid(clips: list[RigClip], n_times: Optional[int], sample_fps: Optional[float]) -> tuple[list[float], float]:
    """``(grid seconds, grid fps)``: event times every clip covers, at the lowest clip frame rate,
    thinned to ``n_times`` evenly spread samples or to ``sample_fps`` per second (default
    :data:`DEFAULT_RIG_TIMES`). Raises when the clips share less than two frames of event time."""
    fps = min(c.fps for c in clips)
    start = max(c.offset_s for c in clips)
    end = min(c.offset_s + (c.frames - 1) / c.fps for c in clips)
    first = min(clips, key=lambda c: c.offset_s + (c.frames - 1) / c.fps)
    last = max(clips, key=lambda c: c.offset_s)
    if end - start < 0.99 / fps:
        raise ReconError(
            f"the clips share {max(end - start, 0.0):.3f} s of event time (clip {last.name} starts at {last.offset_s:g} s, "
            f"{first.name} ends at {first.offset_s + (first.frames - 1) / first.fps:.3f} s): at least 2 frames "
            "must overlap; check the offsets"
        )
    # A hundredth of a frame of slack: offsets found from sound are off by fractions of a
    # millisecond, which must not cost the last sample (each clip's frame nearest to it is used).
    n_all = int(math.floor((end - start) * fps + 0.01)) + 1
    if sample_fps is not None:
        if not sample_fps > 0:
            raise ReconError(f"--video-fps must be > 0, got {sample_fps}")
        step = max(1.0, fps / sample_fps)
        idx = sorted({int(round(i * step)) for i in range(int(math.floor((n_all - 1) / step + 1e-9)) + 1)})
    else:
        n = n_times if n_times is not None else DEFAULT_RIG_TIMES
        n = max(2, min(int(n), n_all))
        idx = sorted({int(round(v)) for v in np.linspace(0, n_all - 1, n)})
    return [float(start + i / fps) for i in idx], float(fps)


def ingest_rig(
    scene: Path,
    work_dir: Path,
    offsets_file: Optional[Path] = None,
    total_frames: Optional[int] = None,
    sample_fps: Optional[float] = None,
    exclude: tuple[Path, ...] = (),
    jpeg_quality: int = 95,
    log: Optional[Callable[[str], None]] = None,
    sync: str = "offsets",
) -> RigIngest:
    """Extract the frames of the synchronised clips in ``scene`` (see the module docstring).

    Args:
        scene: a folder holding two or more video files, one per fixed camera, and nothing else
            to process (other files are ignored, photos are refused).
        work_dir: cache folder; the result goes to ``work_dir/rig-<key>/``.
        offsets_file: the offsets JSON (default ``scene/offsets.json`` when present).
        total_frames: frames to take over all clips (``total_frames // clips`` time samples,
            at least 2); default :data:`DEFAULT_RIG_TIMES` time samples; at most every frame.
        sample_fps: time samples per second instead of a count.
        exclude: folders not to read media from (the output folder).
        log: one-line progress messages.
        sync: "offsets" (given, or all 0), or "audio"/"flash": find them from the clips
            (:func:`recon.capture.sync.sync_clips`); then an offsets file is refused (given
            offsets and found ones would disagree silently).

    Raises :class:`ReconError` (one line) for: not a folder, fewer than two videos, photos beside
    the videos, an unreadable or empty clip, offsets naming unknown files, clips that do not overlap,
    offsets given with ``sync``, a clip ``sync`` cannot place.
    """
    from PIL import Image

    from recon.capture.ingest import _unique, list_media
    from recon.capture.video import _open, _rotate, laplacian_variance, probe_video

    say = log or (lambda s: None)
    scene = Path(scene)
    if not scene.is_dir():
        raise ReconError(f"{scene}: multi-view video needs a folder of clips (one video file per fixed camera), not a file")
    images, videos, ignored = list_media(scene, exclude)
    if images:
        raise ReconError(f"{scene}: holds photos ({images[0].name}, ...) beside the clips; multi-view video takes only "
                         "video files, one per fixed camera: move the photos elsewhere")
    if len(videos) < 2:
        found = f"found {len(videos)} ({videos[0].name})" if videos else "found none"
        raise ReconError(f"{scene}: multi-view video needs at least 2 video files, one per fixed camera; {found}")
    off_path = Path(offsets_file) if offsets_file is not None else scene / OFFSETS_FILE
    found = None
    if sync not in ("offsets", "audio", "flash"):
        raise ReconError(f"--sync must be offsets, audio or flash, got {sync!r}")
    if sync != "offsets":
        from recon.capture.sync import SYNC_VERSION

        if offsets_file is not None or off_path.is_file():
            raise ReconError(f"{off_path}: clip offsets given and --sync {sync} asked to find them; use one: "
                             + ("drop --offsets" if offsets_file is not None else f"move {OFFSETS_FILE} out of the folder")
                             + f", or drop --sync {sync}")
        offsets = {"sync": sync, "version": SYNC_VERSION}  # the key's: the offsets follow from the clips
    else:
        offsets = read_offsets(off_path, videos) if off_path.is_file() or offsets_file is not None else {v.name: 0.0 for v in videos}
    n_times = None if total_frames is None else max(2, int(total_frames) // len(videos))
    sampling = {"n_times": n_times, "fps": sample_fps, "quality": jpeg_quality}
    key = _key(videos, offsets, sampling)
    out = Path(work_dir) / f"rig-{key}"
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            res = _load(manifest)
            if res.sync is not None:
                from recon.capture.sync import SyncResult

                say(SyncResult.from_json(res.sync).describe() + " (found earlier)")
            say(f"reusing {len(res.frames)} extracted frames from {out}")
            return res
        except (KeyError, TypeError, ValueError):
            pass
    if sync != "offsets":
        from recon.capture.sync import sync_clips

        found = sync_clips(videos, sync)  # type: ignore[arg-type]
        offsets = found.offsets
        say(found.describe())
    ignored_names = [str(p) for p in ignored if p.name != OFFSETS_FILE]

    clips: list[RigClip] = []
    taken: set[str] = set()
    for v in videos:
        info = probe_video(v)  # refuses unreadable files with one line
        n = _count_frames(v)
        if n < 2:
            raise ReconError(f"{v}: {n} decodable frame(s); a multi-view clip needs at least 2")
        clips.append(RigClip(name=v.name, source=os.path.abspath(v), fps=float(info.fps), frames=n,
                             offset_s=offsets[v.name], width=info.width, height=info.height,
                             prefix=_unique(v.stem, taken)))
    rates = sorted({round(c.fps, 3) for c in clips})
    try:
        grid, fps = time_grid(clips, n_times, sample_fps)
    except ReconError as e:
        raise ReconError(f"{scene}: {e}") from None
    say(f"{len(clips)} clips, " + (f"{rates[0]:g} fps" if len(rates) == 1 else f"{', '.join(f'{r:g}' for r in rates)} fps (grid at {fps:g})")
        + f"; {len(grid)} time samples over {grid[0]:.3f}-{grid[-1]:.3f} s of event time")

    if out.exists():
        shutil.rmtree(out)
    tmp = Path(work_dir) / f".rig-{key}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    frames: list[RigFrame] = []
    for ci, c in enumerate(clips):
        want: dict[int, list[int]] = {}
        for k, t in enumerate(grid):
            i = int(round((t - c.offset_s) * c.fps))
            want.setdefault(min(max(i, 0), c.frames - 1), []).append(k)
        got: dict[int, RigFrame] = {}
        container = _open(Path(c.source))
        try:
            for idx, frame in enumerate(container.decode(container.streams.video[0])):
                if idx in want:
                    rgb = _rotate(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
                    if idx == min(want):
                        c.height, c.width = rgb.shape[:2]  # as displayed (rotation metadata can swap)
                    sharp = laplacian_variance(np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255.0)
                    for k in want[idx]:
                        name = f"{c.prefix}_t{k:05d}.jpg"
                        Image.fromarray(rgb).save(tmp / "images" / name, quality=jpeg_quality)
                        got[k] = RigFrame(name=name, clip=ci, k=k, frame_index=idx,
                                          time_s=float(idx / c.fps + c.offset_s), sharpness=sharp)
                if idx >= max(want):
                    break
        except ReconError:
            raise
        except Exception as e:
            raise stream_damaged(c.source, "video stream damaged", e) from None
        finally:
            container.close()
        missing = [k for k in range(len(grid)) if k not in got]
        if missing:
            raise ReconError(f"{c.source}: frames for {len(missing)} time sample(s) did not decode")
        frames += [got[k] for k in range(len(grid))]
    late = [f"{c.name} {c.offset_s:+g} s" for c in clips if c.offset_s]
    say(f"{len(frames)} frames extracted" + (f"; offsets: {', '.join(late[:6])}" + (" ..." if len(late) > 6 else "") if late else ""))
    res = RigIngest(image_dir=out / "images", clips=clips, grid_s=grid, frames=frames, fps=fps,
                    ignored=ignored_names, key=key, sync=found.to_json() if found is not None else None)
    body = {"version": RIG_VERSION, "key": key, "fps": fps, "grid_s": grid, "ignored": ignored_names,
            "clips": [asdict(c) for c in clips], "frames": [asdict(f) for f in frames]}
    if res.sync is not None:
        body["sync"] = res.sync
    (tmp / "manifest.json").write_text(json.dumps(body, indent=1))
    os.replace(tmp, out)
    return res


def _load(path: Path) -> RigIngest:
    d = json.loads(path.read_text())
    if d.get("version") != RIG_VERSION:
        raise ValueError("old manifest")
    frames = [RigFrame(**f) for f in d["frames"]]
    image_dir = path.parent / "images"
    for f in frames:
        if not (image_dir / f.name).is_file():
            raise ValueError(f"missing {f.name}")
    return RigIngest(image_dir=image_dir, clips=[RigClip(**c) for c in d["clips"]], grid_s=list(d["grid_s"]),
                     frames=frames, fps=float(d["fps"]), ignored=list(d["ignored"]), key=d["key"], sync=d.get("sync"))
