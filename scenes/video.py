"""Render a built-in scene along a smooth camera path into an H.264 MP4 (PyAV), with its cameras."""

from __future__ import annotations

import json
import os
from pathlib import Path

from recon.errors import ReconError
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
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.mp4")
    frames = []
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(int(crf)), "preset": "medium"}
            for i in range(n):
                tm = 0.0 if times is None else float(times[i])
                img = renderer.render(K, c2ws[i], width, height, tm).rgb
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
                fr = {"frame_index": i, "transform_matrix": _round(opencv_to_opengl(c2ws[i]))}
                if times is not None:
                    fr["time"] = float(f"{tm:.12g}")
                frames.append(fr)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    cams = {
        "camera_model": "OPENCV", "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]),
        "cy": float(K[1, 2]), "w": width, "h": height, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "fps": int(fps), "video": out.name, "scene": recipe.name, "seed": recipe.seed, "frames": frames,
    }
    side = out.with_name(out.stem + ".transforms.json")
    tmpj = side.with_name(f".{side.name}.tmp-{os.getpid()}")
    tmpj.write_text(json.dumps(cams, indent=2) + "\n")
    os.replace(tmpj, side)
    return out
