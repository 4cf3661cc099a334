"""``recon info PATH``: what a scene folder contains.

Reports the format, frames per split, image resolution(s), camera model(s), whether poses, masks,
depths and times exist (and how many distinct times, with how many frames each), the number of sparse points and any video files. Reads metadata and, for
plain image folders, image headers only; no pixels are decoded.
"""

from __future__ import annotations

import json as _json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import tyro

from recon.errors import ReconError
from recon.scene.readers import (
    _blender_files,
    detect_format,
    find_colmap_model,
    list_videos,
    load_scene,
    unknown_format_message,
)
from recon.scene.scene import SPLITS


def _sources(root: Path, fmt: str) -> list[str]:
    """The files the format was read from, relative to ``root``."""
    if fmt == "nerfstudio":
        return ["transforms.json"]
    if fmt in ("blender", "dnerf"):
        return [p.name for _, p in _blender_files(root)]
    if fmt == "colmap":
        model = find_colmap_model(root)
        if model is None:
            return []
        kind = "binary" if (model / "cameras.bin").is_file() else "text"
        rel = model.relative_to(root).as_posix() if model != root else "."
        return [f"{rel}/ ({kind})"]
    if fmt == "llff":
        return ["poses_bounds.npy", "images/"]
    return []


def time_layout(times: list[Optional[float]]) -> Optional[dict[str, Any]]:
    """How the frames at ``times`` (one entry per frame, ``None`` for a frame without one) cover time.

    Returns ``None`` when no frame has a time, else ``{"times": distinct times, "min_views",
    "max_views": frames per time, "untimed": frames without a time, "kind"}`` with ``kind``
    "monocular" (one frame per time: a moving camera, D-NeRF's teleporting camera, a video),
    "multi-view" (the same number of frames, two or more, at every time: a capture stage) or
    "mixed". Times equal to 1e-6 are the same time."""
    timed = [round(float(t), 6) for t in times if t is not None]
    if not timed:
        return None
    per = Counter(timed)
    lo, hi = min(per.values()), max(per.values())
    kind = "monocular" if hi == 1 else "multi-view" if lo == hi else "mixed"
    return {"times": len(per), "min_views": lo, "max_views": hi, "untimed": len(times) - len(timed), "kind": kind}


def describe_time_layout(layout: dict[str, Any], source: Optional[str] = None) -> str:
    """One line for :func:`time_layout`'s result, e.g. "65 times, 1 view each (monocular video)"
    or "5 times x 8 views (multi-view rig)"."""
    n, lo, hi = layout["times"], layout["min_views"], layout["max_views"]
    if layout["kind"] == "monocular":
        text = f"{n} time{'s' if n != 1 else ''}, 1 view each (monocular{' video' if source == 'video' else ''})"
    elif layout["kind"] == "multi-view":
        text = f"{n} time{'s' if n != 1 else ''} x {lo} views (multi-view rig)"
    else:
        text = f"{n} times, {lo}-{hi} views each (mixed)"
    if layout["untimed"]:
        text += f"; {layout['untimed']} frame(s) without a time"
    return text


def scene_info(path: Path | str) -> dict[str, Any]:
    """A JSON-serialisable summary of the scene at ``path`` (see the module docstring)."""
    from recon.scene.images import image_size

    p = Path(path).expanduser()
    if not p.exists():
        raise ReconError(f"{p}: no such file or folder")
    root = p.parent if p.is_file() else p
    fmt = detect_format(p)
    videos = [v.name for v in list_videos(root)]
    if fmt is None:
        if videos:
            return {
                "path": str(root),
                "format": None,
                "sources": [],
                "frames": 0,
                "splits": {},
                "resolutions": [],
                "camera_models": {},
                "poses": False,
                "masks": 0,
                "depths": 0,
                "times": None,
                "time_layout": None,
                "time_layout_train": None,
                "time_source": None,
                "sparse_points": 0,
                "videos": videos,
            }
        raise ReconError(unknown_format_message(root))

    scene = load_scene(p, format=fmt)
    frames = scene.frames
    splits = {s: sum(1 for f in frames if f.split == s) for s in SPLITS}
    other = Counter(f.split for f in frames if f.split not in SPLITS)
    splits.update(other)
    if scene.has_poses:
        sizes = Counter((f.camera.width, f.camera.height) for f in frames)  # type: ignore[union-attr]
        models = Counter(f.camera.model for f in frames)  # type: ignore[union-attr]
    else:
        sizes = Counter(image_size(f.image_path) for f in frames)
        models = Counter()
    times = [f.time for f in frames if f.time is not None]
    distortion = None
    if scene.has_poses and scene.distorted_frames:
        from recon.scene.undistort import describe, pinhole_for

        k = scene.distorted_frames
        cam = frames[k[0]].camera
        distortion = {"frames": len(k), "model": cam.model, "dist": cam.dist.tolist(),
                      "training": describe(cam, pinhole_for(cam))}
    if scene.points is not None and len(scene.points):
        init = "the scene's sparse points"
    elif scene.has_poses:
        from recon.train.init_points import plain_background

        init = ("random in the box the cameras look at (object on a plain background)"
                if plain_background(scene, scene.indices("train")) else
                "points triangulated from the training images with these poses (cached after the first run)")
    else:
        init = None
    backdrop = None
    if scene.has_poses and scene.indices("train"):
        from recon.scene.backdrop import auto_keyed, detect_backdrop

        colour = detect_backdrop(scene, scene.indices("train"))
        if colour is not None:
            backdrop = {"colour": list(colour), "keyed_by_default": auto_keyed(scene)}
    return {
        "path": str(scene.root),
        "format": scene.format,
        "sources": _sources(root, scene.format),
        "frames": len(frames),
        "splits": splits,
        "resolutions": [{"width": w, "height": h, "frames": n} for (w, h), n in sorted(sizes.items(), key=lambda kv: -kv[1])],
        "camera_models": dict(models),
        "poses": scene.has_poses,
        "masks": sum(1 for f in frames if f.mask_path is not None),
        "depths": sum(1 for f in frames if f.depth_path is not None),
        "times": None if not times else {"frames": len(times), "min": min(times), "max": max(times)},
        "time_layout": time_layout([f.time for f in frames]),
        "time_layout_train": time_layout([f.time for f in frames if f.split == "train"]),
        "time_source": scene.time_source,
        "sparse_points": 0 if scene.points is None else int(len(scene.points)),
        "background": None if scene.background is None else list(scene.background),
        "distortion": distortion,
        "training_init": init,
        "backdrop": backdrop,
        "depth_range": None if scene.depth_range is None else list(scene.depth_range),
        "videos": videos,
    }


def _count(n: int, total: int) -> str:
    if n == 0:
        return "none"
    return "all frames" if n == total else f"{n} of {total} frames"


def format_info(info: dict[str, Any]) -> str:
    """Human-readable lines for :func:`scene_info`'s result."""
    lines = [info["path"]]

    def row(key: str, value: str) -> None:
        lines.append(f"  {key:<15}{value}")

    fmt: Optional[str] = info["format"]
    src = f" ({', '.join(info['sources'])})" if info.get("sources") else ""
    row("format", (fmt or "none (no images or poses)") + src)
    total = info["frames"]
    split_txt = ", ".join(f"{k} {v}" for k, v in info["splits"].items() if v or k in SPLITS)
    row("frames", f"{total}" + (f" ({split_txt})" if total else ""))
    if info["resolutions"]:
        res = info["resolutions"]
        if len(res) == 1:
            row("resolution", f"{res[0]['width']}x{res[0]['height']}")
        else:
            row("resolutions", ", ".join(f"{r['width']}x{r['height']} ({r['frames']})" for r in res))
    if info["camera_models"]:
        row("camera model", ", ".join(f"{m} ({n})" if len(info["camera_models"]) > 1 else m for m, n in info["camera_models"].items()))
    if fmt is not None:
        row("poses", "yes" if info["poses"] else "no (run structure-from-motion to estimate them)")
        row("masks", _count(info["masks"], total))
        row("depths", _count(info["depths"], total))
        t = info["times"]
        row("times", "none" if not t else f"{_count(t['frames'], total)}, {t['min']:.4g} to {t['max']:.4g}"
            + (" (from the video's frame times)" if info.get("time_source") == "video" else ""))
        if info.get("time_layout"):
            text = describe_time_layout(info["time_layout"], info.get("time_source"))
            tr = info.get("time_layout_train")
            if tr and tr != info["time_layout"] and tr["kind"] != info["time_layout"]["kind"]:
                text += f"; training split: {describe_time_layout(tr, info.get('time_source'))}"
            row("per time", text)
        row("sparse points", str(info["sparse_points"]) if info["sparse_points"] else "none")
        d = info.get("distortion")
        if info["poses"]:
            row("distortion", "none (pinhole)" if not d else f"{_count(d['frames'], total)}: {d['training']}")
        if info.get("training_init"):
            row("training init", info["training_init"])
        b = info.get("backdrop")
        if b:
            name = "black" if b["colour"] == [0.0, 0.0, 0.0] else "white"
            row("backdrop", f"solid {name} (RGB images): " + (
                "training keys it to alpha (--background-key auto; none keeps the images as they are)"
                if b["keyed_by_default"] else f"--background-key {name} keys it to alpha for training"))
        if info.get("depth_range"):
            row("depth bounds", "{:.4g} to {:.4g}".format(*info["depth_range"]))
        if info.get("background") is not None:
            row("background", "(" + ", ".join(f"{v:g}" for v in info["background"]) + ") behind transparent pixels")
    vids = info["videos"]
    row("videos", "none" if not vids else f"{len(vids)}: " + ", ".join(vids[:5]) + (" ..." if len(vids) > 5 else ""))
    return "\n".join(lines)


def main(path: tyro.conf.Positional[Path], json: bool = False) -> int:
    """Show what a scene folder contains: format, frames per split, resolution(s), camera models,
    poses, masks, depths, times, sparse points and video files.

    Args:
        path: a scene folder (or its transforms.json / poses_bounds.npy).
        json: print the summary as JSON instead of text.
    """
    info = scene_info(path)
    print(_json.dumps(info, indent=2) if json else format_info(info))
    return 0
