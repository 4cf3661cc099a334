"""``recon render RUN``: a video (and optional colour, depth and alpha frames) along a camera path.

The path is nerfstudio's ``camera_path.json`` (what the operator UI's *Camera path* panel saves, see
:mod:`viewer.camera_path`, and what nerfstudio's viewer writes): ``camera_path`` entries with
``camera_to_world`` (16 numbers, row-major, OpenGL camera axes, in the run's world frame, i.e.
the frame of ``RUN/cameras.json``), ``fov`` (vertical, degrees), plus ``render_width``,
``render_height``, ``fps`` and ``camera_type`` (only ``perspective`` is rendered). A file with
``keyframes`` but no ``camera_path`` entries is interpolated at ``fps * seconds`` frames. The
path name ``orbit`` instead makes a smooth 360-degree orbit around the scene at the training
cameras' mean distance, height and field of view.

Dynamic (``splat4d``) runs render each frame at a scene time in [0, 1]: a camera-path entry's
``render_time`` (nerfstudio's field), or ``--time T`` for every frame (a fixed-time orbit or
path); an orbit without ``--time`` plays the sequence once over the orbit.

Frames are rendered by the run's one renderer (:class:`recon.models.splats.SplatRenderer`,
honouring the antialiased setting the run records), as ``recon eval`` renders, and the MP4
(H.264, yuv420p) is written through PyAV to a temporary file renamed at the end. ``--frames DIR``
also writes, per frame, ``rgb/NNNNN.png`` (over the background, as in the video),
``alpha/NNNNN.png`` (8-bit), ``depth/NNNNN.png`` (16-bit; depth = value x ``depth_png_scale``
in ``DIR/frames.json``, 0 where alpha < 0.5) and ``depth/NNNNN.npy`` (float32 expected depth
along the camera's z axis in run units; ``.exr`` with ``--depth-float exr`` when OpenCV can write
it), and ``frames.json`` with every frame's camera (OpenCV camera-to-world and K).

``--split test --out DIR`` instead writes the views of one split of the run's scene (``train``,
``test``, ``val``, or ``held-out``: what ``recon eval`` scores) as ``DIR/<frame stem>.png`` at
the evaluation resolution, so any tool can score any run.

This module imports neither viser nor the viewer's server.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import tyro
from typing_extensions import Annotated

from recon.errors import ReconError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
NAMED_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "grey": (0.5, 0.5, 0.5),
                     "gray": (0.5, 0.5, 0.5)}


@dataclass
class PathCamera:
    """One frame's camera: OpenCV camera-to-world ``c2w [4, 4]`` (run world) and vertical FOV (radians)."""

    c2w: np.ndarray
    fov_y: float
    time: Optional[float] = None
    """Scene time in [0, 1] for dynamic runs (nerfstudio's ``render_time``), or ``None``."""


@dataclass
class CameraPath:
    cameras: list[PathCamera]
    width: int
    height: int
    fps: float
    source: str


# ---------------------------------------------------------------------------------------- paths
def read_camera_path(path: Path) -> CameraPath:
    """Read a nerfstudio ``camera_path.json``; raises :class:`ReconError` naming what is wrong."""
    path = Path(path)
    hint = ("expected nerfstudio's camera_path.json (saved from `recon view`'s Camera path panel or "
            "nerfstudio's viewer), or pass --camera-path orbit")
    if not path.is_file():
        raise ReconError(f"camera path {path} not found; {hint}")
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ReconError(f"cannot read camera path {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise ReconError(f"camera path {path} is not valid JSON ({e.msg} at line {e.lineno}); {hint}") from e
    if not isinstance(d, dict):
        raise ReconError(f"camera path {path} holds a {type(d).__name__}, not an object; {hint}")
    ctype = str(d.get("camera_type", "perspective")).lower()
    if ctype != "perspective":
        raise ReconError(f"camera path {path} has camera_type {ctype!r}; only 'perspective' is rendered")
    try:
        width, height = int(d.get("render_width", 0)), int(d.get("render_height", 0))
        fps = float(d.get("fps", 30.0))
        entries = d.get("camera_path") or []
        cams = [_entry_camera(e) for e in entries]
        if not cams and d.get("keyframes"):
            from viewer.camera_path import interpolate, read_keyframes

            n = max(1, int(round(fps * float(d.get("seconds", 4.0)))))
            tension = 1.0 - float(d.get("smoothness_value", 1.0))
            cams = [PathCamera(c2w, f) for c2w, f in interpolate(read_keyframes(path), n, tension,
                                                                 bool(d.get("is_cycle", False)))]
        if width <= 0 or height <= 0:  # derive the missing size from the path's aspect ratio
            first = (entries or d.get("keyframes") or [{}])[0]
            aspect = float(first.get("aspect", 16 / 9)) if isinstance(first, dict) else 16 / 9
            if height <= 0:
                height = int(round(width / aspect)) if width > 0 else 1080
            if width <= 0:
                width = int(round(height * aspect))
    except ReconError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ReconError(f"camera path {path} is malformed ({e}); {hint}") from e
    if not cams:
        raise ReconError(f"camera path {path} has no frames (empty camera_path and no keyframes); "
                         "add keyframes in `recon view` and save the path again")
    if not (math.isfinite(fps) and fps > 0):
        raise ReconError(f"camera path {path} has fps {fps}; expected a positive number")
    return CameraPath(cams, width, height, fps, str(path))


def _entry_camera(e: dict) -> PathCamera:
    m = np.asarray(e["camera_to_world"], dtype=np.float64).ravel()
    if m.size == 12:  # 3x4
        m = np.concatenate([m, [0.0, 0.0, 0.0, 1.0]])
    if m.size != 16 or not np.all(np.isfinite(m)):
        raise ValueError(f"camera_to_world must hold 16 (or 12) finite numbers, got {m.size}")
    fov = float(e.get("fov", 50.0))
    if not 0.0 < fov < 180.0:
        raise ValueError(f"fov {fov} is not a vertical field of view in degrees (0-180)")
    from recon.scene.conventions import opengl_to_opencv

    t = e.get("render_time")
    if t is not None:
        t = float(t)
        if not (math.isfinite(t) and 0.0 <= t <= 1.0):
            raise ValueError(f"render_time {t} is not a time in [0, 1]")
    return PathCamera(opengl_to_opencv(m.reshape(4, 4)), math.radians(fov), t)


def orbit_path(run, n_frames: int, fps: float) -> CameraPath:
    """A level 360-degree orbit around the scene centre, at the training cameras' median distance,
    height and vertical FOV, starting at the first training camera (``run``: :class:`viewer.run.Run`)."""
    from recon.scene.conventions import look_at_c2w

    frame = run.frame
    cams = run.cameras
    if cams:
        pos = np.stack([frame.c2w_to_scene(c.c2w)[:3, 3] for c in cams])
        horiz = np.linalg.norm(pos[:, :2], axis=1)
        dist, z = float(np.median(horiz)), float(np.median(pos[:, 2]))
        fov = float(np.median([c.fov_y for c in cams]))
        a0 = float(math.atan2(pos[0, 1], pos[0, 0]))
        width, height = cams[0].width, cams[0].height
    else:
        fov = math.radians(50.0)
        dist = 1.2 * frame.radius / math.sin(fov / 2)
        z, a0 = 0.35 * dist, -math.pi / 2
        width, height = 960, 540
    if dist < 1e-6:  # cameras on the vertical axis: back off to see the whole scene
        dist = 1.2 * frame.radius / math.sin(fov / 2)
    out = []
    for i in range(n_frames):
        a = a0 + 2.0 * math.pi * i / n_frames
        eye = np.array([dist * math.cos(a), dist * math.sin(a), z])
        target = np.zeros(3)
        if abs(z) > 20 * dist:  # straight above/below: keep the look-at well defined
            target = np.array([0.0, 1e-3 * abs(z), 0.0])
        out.append(PathCamera(frame.c2w_from_scene(look_at_c2w(eye, target)), fov))
    return CameraPath(out, width, height, fps, "orbit")


def intrinsics(fov_y: float, width: int, height: int) -> np.ndarray:
    """``K [3, 3]`` with square pixels for a vertical FOV (radians), as nerfstudio renders paths."""
    f = 0.5 * height / math.tan(0.5 * fov_y)
    return np.array([[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]])


def parse_background(value: str) -> tuple[float, float, float]:
    """``white``/``black``/``grey``, ``#rrggbb``, or ``R,G,B`` (0-1 floats or 0-255 integers)."""
    v = value.strip().lower()
    if v in NAMED_BACKGROUNDS:
        return NAMED_BACKGROUNDS[v]
    try:
        if v.startswith("#") and len(v) == 7:
            return tuple(int(v[i:i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [float(p) for p in v.split(",")]
        if len(parts) == 3:
            scale = 255.0 if any(p > 1.0 for p in parts) else 1.0
            rgb = tuple(p / scale for p in parts)
            if all(0.0 <= c <= 1.0 for c in rgb):
                return rgb  # type: ignore[return-value]
    except ValueError:
        pass
    raise ReconError(f"--background {value!r}: use white, black, grey, #rrggbb or R,G,B (0-1 or 0-255)")


# ---------------------------------------------------------------------------------------- output
class Progress:
    """``render: frame i/n (p%), s/frame, ETA`` on stderr: rewritten in place on a terminal,
    otherwise a line every few seconds (and the last frame)."""

    def __init__(self, total: int, stream=None, every_s: float = 5.0):
        self.total, self.stream, self.every_s = total, stream or sys.stderr, every_s
        self.t0 = self.last = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not (self.tty or done == self.total or done == 1 or now - self.last >= self.every_s):
            return
        self.last = now
        per = (now - self.t0) / max(done, 1)
        eta = per * (self.total - done)
        msg = (f"render: frame {done}/{self.total} ({100.0 * done / self.total:.0f}%), {per:.2f} s/frame, "
               f"ETA {_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + msg + ("\n" if done == self.total else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class VideoWriter:
    """H.264 (libx264) through PyAV into ``path`` (a temporary file the caller renames).

    ``yuv420p`` (the default) plays everywhere (browsers, phones, QuickTime) but halves the colour
    resolution, which costs fine saturated edges; ``yuv444p`` keeps full colour (High 4:4:4 profile,
    fewer players)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 18,
                 pix_fmt: str = "yuv420p"):
        try:
            import av
        except ImportError as e:
            raise ReconError("writing video needs PyAV: pip install av (the `video` extra)") from e
        self._av = av
        self.container = av.open(str(path), mode="w", format={".mov": "mov", ".mkv": "matroska"}.get(
            path.suffix.lower(), "mp4"), options={"movflags": "+faststart"} if path.suffix.lower() == ".mp4" else {})
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate, options={"crf": str(int(crf)),
                                                                              "preset": "medium"})
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt

    def write(self, rgb: np.ndarray) -> None:
        """``rgb``: ``uint8 [H, W, 3]``."""
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def _write_image(path: Path, array: np.ndarray) -> None:
    """PNG (8- or 16-bit) / EXR via OpenCV, written beside the target and renamed."""
    import cv2

    img = array[..., ::-1] if array.ndim == 3 else array  # OpenCV wants BGR
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(img))
    if not ok:
        raise ReconError(f"OpenCV could not encode {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def _write_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _exr_available() -> bool:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # read by OpenCV when it is first imported
    import cv2

    return bool(cv2.haveImageWriter(".exr"))


def depth_png_scale(path: CameraPath, run) -> float:
    """Run units per step of the 16-bit depth PNGs: a round number (1, 2 or 5 x 10^k) that fits
    the farthest plausible depth (camera distance to the scene centre + 3 scene radii) in 65535."""
    frame = run.frame
    far = max(float(np.linalg.norm(frame.c2w_to_scene(c.c2w)[:3, 3])) for c in path.cameras) + 3.0 * frame.radius
    raw = max(far, 1e-6) / 65535.0
    e = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0 ** e >= raw:
            return m * 10.0 ** e
    return 10.0 ** (e + 1)


# ---------------------------------------------------------------------------------------- command
def render_path(run, path: CameraPath, out: Path, frames_dir: Path | None = None,
                background: tuple[float, float, float] = (1.0, 1.0, 1.0), crf: int = 18,
                depth_float: str = "npy", pix_fmt: str = "yuv420p", log=None, post=None,
                time_renderer=None, field_renderer=None) -> dict:
    """Render every camera of ``path`` from ``run`` (:class:`viewer.run.Run`) into the video ``out``
    (and, with ``frames_dir``, colour/alpha/depth frames). ``post``: loaded 2D steps
    (:func:`load_post`) applied to each colour frame before it is written (super-resolution
    enlarges the video and rgb/ frames; alpha/ and depth/ stay at the render size).
    ``time_renderer``: the run's own renderer for dynamic runs (``render(camera, time=...)``): each
    frame is rendered at its camera's ``time`` (``None``: time 0). ``field_renderer``: the run's own
    renderer for runs that are not Gaussians (NeRF, :func:`field_run`). Returns a summary dict."""
    import torch

    from recon.io_utils import atomic_path, atomic_write_text

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    W, H = int(path.width), int(path.height)
    from recon.models.splats import SplatRenderer
    from recon.scene.cameras import Camera

    renderer = time_renderer if time_renderer is not None else field_renderer
    if renderer is None:
        renderer = SplatRenderer(run.splats, antialiased=run.antialiased)
    sh_degree = getattr(renderer, "sh_degree", None)
    if sh_degree is None:
        sh_degree = getattr(field_renderer, "field", None).sh_degree if field_renderer is not None else run.sh_degree
    aa = run.antialiased
    bg = torch.tensor(background, dtype=torch.float32)
    n = len(path.cameras)
    scale = depth_png_scale(path, run) if frames_dir is not None else None
    if frames_dir is not None:
        for sub in ("rgb", "alpha", "depth"):
            (frames_dir / sub).mkdir(parents=True, exist_ok=True)
    ext = ".exr" if depth_float == "exr" else ".npy"
    what = (f"{getattr(renderer, 'method', 'field')} field (SH degree {sh_degree})" if field_renderer is not None else
            f"{run.num_gaussians:,} Gaussians (SH degree {sh_degree}{', antialiased' if aa else ''})")
    log(f"render: {n} frames at {W}x{H}, {path.fps:g} fps, {what} from {path.source}"
        f"{_times_note(path, time_renderer)} -> {out}")
    progress = Progress(n)
    t0 = time.monotonic()
    records = []
    with atomic_path(out) as tmp:
        video = None if post else VideoWriter(tmp, W, H, path.fps, crf, pix_fmt)
        try:
            for i, cam in enumerate(path.cameras):
                K = intrinsics(cam.fov_y, W, H)
                o = renderer.render(Camera(K=K, width=W, height=H, c2w=cam.c2w),
                                    time=cam.time if time_renderer is not None else None,
                                    outputs=("rgb", "depth") if frames_dir is not None else ("rgb",), background=bg)
                out_c = o.rgb if o.depth is None else torch.cat([o.rgb, o.depth], dim=-1)
                out_a = o.alpha
                rgb = (out_c[..., :3].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
                if post:
                    rgb = apply_post(post, rgb)
                    if video is None:  # sized by the first processed frame
                        video = VideoWriter(tmp, rgb.shape[1] - rgb.shape[1] % 2, rgb.shape[0] - rgb.shape[0] % 2,
                                            path.fps, crf, pix_fmt)
                    rgb_v = rgb[: rgb.shape[0] - rgb.shape[0] % 2, : rgb.shape[1] - rgb.shape[1] % 2]
                    video.write(np.ascontiguousarray(rgb_v))
                else:
                    video.write(rgb)
                if frames_dir is not None:
                    alpha = out_a[..., 0].clamp(0, 1).numpy()
                    depth = np.where(alpha > 1e-4, out_c[..., 3].numpy(), 0.0).astype(np.float32)
                    name = f"{i:05d}"
                    _write_image(frames_dir / "rgb" / f"{name}.png", rgb)
                    _write_image(frames_dir / "alpha" / f"{name}.png", (alpha * 255.0 + 0.5).astype(np.uint8))
                    d16 = np.where(alpha >= 0.5, np.clip(np.round(depth / scale), 0, 65535), 0).astype(np.uint16)
                    _write_image(frames_dir / "depth" / f"{name}.png", d16)
                    if ext == ".exr":
                        _write_image(frames_dir / "depth" / f"{name}.exr", depth)
                    else:
                        _write_npy(frames_dir / "depth" / f"{name}.npy", depth)
                    rec = {"index": i, "c2w": cam.c2w.tolist(), "K": K.tolist()}
                    if time_renderer is not None:
                        rec["time"] = 0.0 if cam.time is None else float(cam.time)
                    records.append(rec)
                progress.update(i + 1)
        finally:
            if video is not None:
                video.close()
    if frames_dir is not None:
        atomic_write_text(frames_dir / "frames.json", json.dumps({
            "convention": "OpenCV camera-to-world, run world frame (as RUN/cameras.json)",
            "width": W, "height": H, "fps": path.fps, "background": list(background),
            "depth_png_scale": scale,
            "depth": "expected depth along the camera z axis in run units; depth/N.png x depth_png_scale "
                     "(0 where alpha < 0.5); depth/N" + ext + " float32 (0 where nothing is drawn)",
            "frames": records,
            **({"post": [st.record() for st in post]} if post else {}),
        }, indent=1))
    dt = time.monotonic() - t0
    log(f"render: wrote {out} ({n} frames, {W}x{H} @ {path.fps:g} fps, {out.stat().st_size / 1e6:.2f} MB) "
        f"in {_duration(dt)}" + (f"; frames in {frames_dir}" if frames_dir is not None else ""))
    return {"frames": n, "width": W, "height": H, "fps": path.fps, "seconds": dt, "out": str(out)}


def _times_note(path: CameraPath, time_renderer) -> str:
    if time_renderer is None:
        return ""
    ts = [0.0 if c.time is None else float(c.time) for c in path.cameras]
    lo, hi = min(ts), max(ts)
    return f", time {lo:g}" if lo == hi else f", times {lo:g}-{hi:g}"


def dynamic_renderer(run: Path):
    """The run's own renderer when its method models time (``splat4d``), else ``None``."""
    from recon.run import RunFolder

    rf = RunFolder.open(run)
    try:
        dynamic = bool(getattr(rf.method_class(), "dynamic", False))
    except ReconError:
        return None
    return rf.renderer() if dynamic else None


def field_run(run: Path):
    """``(Run, renderer)`` for a run whose model is not made of Gaussians (a NeRF), else ``None``.

    The :class:`viewer.run.Run` carries the cameras and a display frame estimated from them and from
    the centres of the field's occupied cells (what an orbit needs); frames come from the run's own
    renderer, as ``recon eval`` scores them."""
    from recon.run import RunFolder
    from viewer.run import Run, RunCamera, scene_frame

    rf = RunFolder.open(run)
    if rf.method == "splat" or bool(getattr(rf.method_class(), "dynamic", False)):
        return None
    rf.require_model()
    if rf.method_class().load_gaussians(rf.root, rf.artifacts) is not None:
        return None
    renderer = rf.renderer()
    cameras = [RunCamera(c.name, c.c2w, c.K, c.width, c.height, image=rf.image_path(c), split=c.split)
               for c in rf.cameras()]
    pts = _occupied_centres(renderer)
    run_v = Run(folder=rf.root, splats_path=None, splats={"means": torch_tensor(pts)}, cameras=cameras)
    run_v.frame = scene_frame(pts.astype(np.float64), cameras)
    return run_v, renderer


def torch_tensor(a: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def _occupied_centres(renderer, most: int = 50_000) -> np.ndarray:
    """Centres ``[P, 3]`` of a voxel field's occupied cells (at most ``most``, evenly strided); the
    box corners when the renderer has no such field."""
    f = getattr(renderer, "field", None)
    if f is None or not hasattr(f, "occ"):
        return np.zeros((1, 3), np.float32)
    nx, ny, nz = (int(v) - 1 for v in f.res)
    ids = np.flatnonzero(f.occ.detach().cpu().numpy())
    lo, hi = f.lo.cpu().numpy().astype(np.float64), f.hi.cpu().numpy().astype(np.float64)
    if len(ids) == 0:
        return np.stack([lo, hi]).astype(np.float32)
    ids = ids[:: max(1, len(ids) // most)]
    ijk = np.stack(np.unravel_index(ids, (nx, ny, nz)), axis=1).astype(np.float64) + 0.5
    return (lo + ijk / np.array([nx, ny, nz]) * (hi - lo)).astype(np.float32)


def apply_times(path: CameraPath, time: Optional[float], dynamic: bool, orbit: bool, log=None) -> None:
    """Give every camera of ``path`` its render time: ``time`` (``--time``) for all of them when
    given; otherwise the path's own ``render_time`` entries (nerfstudio), and for an orbit of a
    dynamic run the sequence played once over the orbit (time ``i / (n - 1)``)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if time is not None:
        if not dynamic:
            raise ReconError(f"--time {time}: this run is a static model; --time needs a dynamic run "
                             "(trained with --method splat4d)")
        if not (math.isfinite(time) and 0.0 <= time <= 1.0):
            raise ReconError(f"--time {time}: give a scene time in [0, 1] (0 = first frame, 1 = last)")
        for c in path.cameras:
            c.time = float(time)
        return
    if not dynamic:
        if any(c.time is not None for c in path.cameras):
            log("render: the camera path has render_time entries but the run is static; times ignored")
        return
    if orbit:
        n = len(path.cameras)
        for i, c in enumerate(path.cameras):
            c.time = i / max(n - 1, 1)
    elif all(c.time is None for c in path.cameras):
        log("render: the camera path has no render_time entries: every frame at time 0 (pass --time T)")


def load_post(steps: str):
    """The ``--post`` steps (recon.enhance plugins, docs/enhance.md), loaded before rendering.
    Steps that edit masked regions are refused: rendered frames have no masks."""
    from recon.enhance.registry import load_steps

    loaded = load_steps(steps)
    for st in loaded:
        if st.needs_masks:
            raise ReconError(f"--post {st.step.spec!r}: {st.entry.name} edits masked regions; rendered frames have no masks")
    return loaded


def apply_post(post, rgb: np.ndarray) -> np.ndarray:
    """``rgb`` uint8 ``[H, W, 3]`` through the loaded steps; uint8 ``[H', W', 3]``."""
    x = rgb.astype(np.float32) / 255.0
    for st in post:
        x = np.clip(np.asarray(st.plugin.process([x], None)[0], dtype=np.float32), 0.0, 1.0)
    return (x * 255.0 + 0.5).astype(np.uint8)


def render_split(run: Path, split: str, out: Path, background: tuple[float, float, float],
                 scene: Optional[Path] = None, log=None, post=None) -> list[Path]:
    """Write every view of ``split`` of the run's scene as ``out/<frame stem>.png`` (8-bit sRGB, on
    ``background``), at the run's evaluation resolution; returns the files written."""
    import torch
    from PIL import Image

    from recon.eval.evaluate import eval_split
    from recon.io_utils import atomic_path
    from recon.run import EVAL_BACKGROUND, RunFolder
    from recon.scene.readers import load_scene

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    rf = RunFolder.open(run)
    renderer = rf.renderer()
    sc = load_scene(rf.scene_path(scene), background=EVAL_BACKGROUND, undistort=True)
    if split == "held-out":
        split, idx = eval_split(sc)
    else:
        idx = sc.indices(split)
    if not idx:
        have = sorted({f.split for f in sc.frames})
        raise ReconError(f"--split {split}: the scene {sc.root} has no {split} views (it has: {', '.join(have)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReconError(f"--out {out} is a file; with --split give a folder for the PNGs")
    downscale = float(rf.render_settings.get("downscale", 1.0) or 1.0)
    names: dict[str, int] = {}
    bg = torch.tensor(background, dtype=torch.float32)
    progress = Progress(len(idx))
    written = []
    for n, i in enumerate(idx):
        f = sc.frames[i]
        stem = Path(f.image_path).stem if f.image_path is not None else Path(f.name).stem
        if stem in names:  # two frames with one stem (different folders): keep both
            names[stem] += 1
            stem = f"{stem}_{names[stem]}"
        names.setdefault(stem, 0)
        cam = sc.camera(i, downscale)
        rgb = renderer.render(cam, time=f.time, background=bg).rgb.clamp(0, 1).cpu().numpy()
        path = out / f"{stem}.png"
        out.mkdir(parents=True, exist_ok=True)
        u8 = (rgb * 255.0 + 0.5).astype(np.uint8)
        if post:
            u8 = apply_post(post, u8)
        with atomic_path(path) as tmp:
            Image.fromarray(u8).save(tmp, format="PNG")
        written.append(path)
        progress.update(n + 1)
    log(f"render: wrote {len(written)} {split} views of {rf.root} to {out} "
        f"({cam.width}x{cam.height}, 1/{downscale:g} of the images)")
    return written


def main(
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")],
    camera_path: str = "orbit",
    out: Optional[Path] = None,
    frames: Optional[Path] = None,
    width: Optional[int] = None,
    height: Optional[int] = None,
    fps: Optional[float] = None,
    seconds: float = 6.0,
    downscale: float = 1.0,
    background: str = "white",
    crf: int = 18,
    depth_float: Literal["npy", "exr"] = "npy",
    pix_fmt: Literal["yuv420p", "yuv444p"] = "yuv420p",
    split: Optional[Literal["train", "test", "val", "held-out"]] = None,
    scene: Optional[Path] = None,
    post: Optional[str] = None,
    time: Optional[float] = None,
) -> int:
    """Render RUN along a camera path into an H.264 MP4 (and optionally PNG colour, depth and alpha frames).

    Args:
        run: run folder (holding splats.ply and cameras.json) or a splat .ply file.
        camera_path: nerfstudio camera_path.json (from `recon view`'s Camera path panel), or "orbit" (360 degrees).
        out: video file, .mp4 (default: RUN/renders/<path name>.mp4).
        frames: also write rgb/, alpha/ and depth/ frames and frames.json into this folder.
        width: output width (default: the path's; orbit: the first training camera's); one of the two keeps the aspect.
        height: output height.
        fps: frames per second (default: the path's; 30 for orbit).
        seconds: length of an orbit (ignored for a camera_path.json, whose frames are given).
        downscale: divide the output resolution by this factor (fast previews).
        background: white (as `recon eval` scores), black, grey, #rrggbb or R,G,B.
        crf: H.264 quality (lower is better and larger; 18 is visually lossless).
        depth_float: float depth frames as .npy, or .exr (needs an OpenCV built with OpenEXR).
        pix_fmt: yuv420p plays everywhere; yuv444p keeps full colour resolution (fewer players).
        split: instead of a video, write this split's views of the run's scene as OUT/<frame stem>.png
            (held-out: the views `recon eval` scores), at the evaluation resolution.
        scene: with --split, the scene folder when it moved since training.
        post: 2D steps applied to every rendered colour frame (video, rgb/ frames, --split PNGs), e.g.
            ``denoise`` or ``sr:model.pth`` (docs/enhance.md; `recon plugins` lists them).
        time: dynamic (splat4d) runs: render every frame at this scene time in [0, 1] (default: the
            path's render_time entries; an orbit plays the sequence once).
    """
    from viewer.run import open_run

    bg = parse_background(background)
    post_steps = load_post(post) if post is not None else None
    if split is not None:
        if time is not None:
            raise ReconError("--split renders each view at its own time; drop --time")
        if out is None:
            raise ReconError("--split needs --out DIR (the folder for the PNGs)")
        render_split(run, split, Path(out).expanduser(), bg, scene, post=post_steps)
        return 0
    if downscale <= 0 or not math.isfinite(downscale):
        raise ReconError(f"--downscale must be > 0 (got {downscale})")
    for name, v in (("--width", width), ("--height", height)):
        if v is not None and v <= 0:
            raise ReconError(f"{name} must be a positive number of pixels (got {v})")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ReconError(f"--fps must be > 0 (got {fps})")
    if not 0 <= crf <= 51:
        raise ReconError(f"--crf must be 0-51 (got {crf})")
    if depth_float == "exr" and frames is not None and not _exr_available():
        raise ReconError("--depth-float exr: this OpenCV build cannot write EXR; use --depth-float npy")
    is_orbit = camera_path.strip().lower() == "orbit"
    path = None if is_orbit else read_camera_path(Path(camera_path).expanduser())
    field = field_run(run)
    r = open_run(run) if field is None else field[0]
    if is_orbit:
        if not (math.isfinite(seconds) and seconds > 0):
            raise ReconError(f"--seconds must be > 0 (got {seconds})")
        f = fps or 30.0
        path = orbit_path(r, max(1, int(round(f * seconds))), f)
    assert path is not None
    time_renderer = dynamic_renderer(run)
    if field is not None and time is not None:
        raise ReconError(f"--time renders dynamic (splat4d) runs at a scene time; {run} is a static NeRF run: drop --time")
    apply_times(path, time, time_renderer is not None, is_orbit)
    if fps is not None:
        path.fps = fps
    # Resolution: explicit size, else the path's, keeping the aspect ratio when only one is given.
    aspect = path.width / path.height
    w, h = width, height
    if w is None and h is None:
        w, h = path.width, path.height
    elif w is None:
        w = int(round(h * aspect))
    elif h is None:
        h = int(round(w / aspect))
    w, h = int(round(w / downscale)), int(round(h / downscale))
    even_w, even_h = max(2, w - w % 2), max(2, h - h % 2)  # H.264 in yuv420p needs even sizes
    if (even_w, even_h) != (w, h):
        print(f"render: {w}x{h} rounded down to {even_w}x{even_h} (H.264 needs even sizes)", file=sys.stderr)
    path.width, path.height = even_w, even_h
    if out is None:
        stem = "orbit" if is_orbit else Path(camera_path).stem
        out = r.folder / "renders" / f"{stem}.mp4"
    out = Path(out).expanduser()
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ReconError(f"--out {out}: give a video file name ending in .mp4 (or .mov/.mkv)")
    if out.is_dir():
        raise ReconError(f"--out {out} is a folder; give a file name ending in .mp4")
    render_path(r, path, out, Path(frames).expanduser() if frames is not None else None, bg, crf, depth_float,
                pix_fmt, post=post_steps, time_renderer=time_renderer,
                field_renderer=None if field is None else field[1])
    return 0
