"""``recon scene``: built-in ground-truth scenes.

    recon scene synth NAME OUT [--views 60] [--res 256] [--seed 0] [--video-seconds 10] [--cameras 8]
    recon scene video NAME OUT.mp4 [--seconds 10] [--fps 24] [--res 256]
    recon scene video dynamic-rig OUT [--cameras 16] [--seconds 2] [--fps 12] [--res 384]
        [--start-frames S0 S1 ...] [--flash-frame N] [--audio] [--no-offsets-file]
    recon scene list
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import tyro

from scenes.recipes import RECIPES

SceneName = Literal[tuple(RECIPES)]  # type: ignore[valid-type]


@dataclass
class Synth:
    """Render a built-in scene into OUT: images/, depth/, masks/, mesh.ply, transforms.json, scene.json."""

    name: tyro.conf.Positional[SceneName]
    """Scene: turntable (360 object), room (forward-facing), dynamic (turntable with motion)."""
    out: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="OUT")]
    """Output folder: new, empty, or an earlier synth output (it holds .recon-synth.json), of which only what synth wrote is replaced."""
    views: int = 60
    """Number of views; every 8th (index % 8 == 0) is held out as test."""
    res: int = 256
    """Image width and height in pixels."""
    seed: int = 0
    """Seed for textures and camera jitter (same seed, same bytes)."""
    ss: int = 2
    """Supersampling per axis at silhouettes and depth edges (1 = none)."""
    textured_mesh: bool = False
    """Also write mesh.obj + mesh.mtl + textures/."""
    distortion: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Render through a lens with OPENCV distortion k1 k2 p1 p2 (written to transforms.json); 0 0 0 0: pinhole."""
    force: bool = False
    """Re-render even if OUT already holds this exact configuration."""
    video_seconds: float = 0.0
    """If > 0, also render OUT/video.mp4 of this many seconds along the scene's smooth path."""
    fps: int = 24
    """Frame rate of the video."""
    cameras: Optional[int] = None
    """dynamic-rig only: fixed cameras of the capture stage (default 8); view i is camera i % cameras
    at time step i // cameras."""


@dataclass
class Video:
    """Render a built-in scene along a smooth camera path to an MP4 (+ OUT.transforms.json cameras);
    dynamic-rig: one clip per fixed camera of the capture stage into the folder OUT (+ offsets.json,
    ground_truth.json), a synchronised multi-view video set for `recon process OUT`."""

    name: tyro.conf.Positional[SceneName]
    """Scene name."""
    out: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="OUT.mp4|OUT")]
    """Output .mp4 file (dynamic-rig: output folder)."""
    seconds: Optional[float] = None
    """Duration in seconds (default 10; dynamic-rig 2)."""
    fps: Optional[int] = None
    """Frames per second (default 24; dynamic-rig 12)."""
    cameras: Optional[int] = None
    """dynamic-rig only: number of fixed cameras (default 16)."""
    res: int = 256
    """Frame width in pixels (even)."""
    height: int = 0
    """Frame height in pixels (even); 0 = same as res."""
    seed: int = 0
    """Seed for textures."""
    start_frames: tuple[int, ...] = ()
    """dynamic-rig only: the event frame each camera's clip starts at, one per camera (default all 0):
    clips that start late, as unsynchronised cameras do (their offsets go to offsets.json and ground_truth.json)."""
    flash_frame: Optional[int] = None
    """dynamic-rig only: at this event frame every camera's image is blended 70 % toward white (a flash to align by: recon process --sync flash)."""
    audio: bool = False
    """dynamic-rig only: each clip carries a mono AAC track of the event's sound from its own start (clicks at irregular times, from the seed, plus noise per camera; recon process --sync audio)."""
    offsets_file: bool = True
    """dynamic-rig only: write offsets.json (--no-offsets-file: leave the offsets to be found, e.g. by recon process --sync audio|flash)."""


@dataclass
class List:
    """List the built-in scenes."""


def main(
    cmd: Annotated[
        Union[
            Annotated[Synth, tyro.conf.subcommand("synth", prefix_name=False)],
            Annotated[Video, tyro.conf.subcommand("video", prefix_name=False)],
            Annotated[List, tyro.conf.subcommand("list", prefix_name=False)],
        ],
        tyro.conf.OmitArgPrefixes,
    ],
) -> int:
    """Built-in procedural ground-truth scenes (exact cameras, depth, masks and mesh)."""
    if isinstance(cmd, List):
        for name, fn in RECIPES.items():
            print(f"{name:10s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if isinstance(cmd, Video):
        t0 = time.perf_counter()
        if cmd.name == "dynamic-rig":
            from scenes.video import RIG_VIDEO_CAMERAS, render_rig_videos

            k = RIG_VIDEO_CAMERAS if cmd.cameras is None else cmd.cameras
            if cmd.start_frames and len(cmd.start_frames) != k:
                from recon.errors import ReconError

                raise ReconError(f"--start-frames gives {len(cmd.start_frames)} start(s) for {k} cameras; give one per camera")
            p = render_rig_videos(cmd.out, cameras=k, seconds=2.0 if cmd.seconds is None else cmd.seconds,
                                  fps=12 if cmd.fps is None else cmd.fps, res=cmd.res, height=cmd.height or None, seed=cmd.seed,
                                  start_frames=cmd.start_frames or None, flash_frame=cmd.flash_frame, audio=cmd.audio,
                                  write_offsets=cmd.offsets_file)
            extras = "".join([", a flash" if cmd.flash_frame is not None else "", ", sound" if cmd.audio else ""])
            print(f"wrote {p}: {k} clips{extras}, " + ("offsets.json, " if cmd.offsets_file else "")
                  + f"ground_truth.json ({time.perf_counter() - t0:.1f} s)")
            return 0
        rig_only = [o for o, on in (("--cameras", cmd.cameras is not None), ("--start-frames", bool(cmd.start_frames)),
                                    ("--flash-frame", cmd.flash_frame is not None), ("--audio", cmd.audio),
                                    ("--no-offsets-file", not cmd.offsets_file)) if on]
        if rig_only:
            from recon.errors import ReconError

            raise ReconError(f"{rig_only[0]} applies to the dynamic-rig scene (one clip per fixed camera), not {cmd.name!r}")
        from scenes.video import render_video

        p = render_video(cmd.name, cmd.out, seconds=10.0 if cmd.seconds is None else cmd.seconds,
                         fps=24 if cmd.fps is None else cmd.fps, res=cmd.res, height=cmd.height or None, seed=cmd.seed)
        print(f"wrote {p} ({time.perf_counter() - t0:.1f} s)")
        return 0
    from scenes.dataset import synth

    t0 = time.perf_counter()
    index = cmd.out / "transforms.json"
    before = index.stat().st_mtime_ns if index.is_file() else None
    out = synth(cmd.name, cmd.out, views=cmd.views, res=cmd.res, seed=cmd.seed, ss=cmd.ss,
                textured_mesh=cmd.textured_mesh, force=cmd.force, progress=True,
                also=("video.mp4",) if cmd.video_seconds > 0 else (),
                distortion=cmd.distortion if any(cmd.distortion) else None, cameras=cmd.cameras)
    if before is not None and index.is_file() and index.stat().st_mtime_ns == before:
        print(f"{out} is up to date (same scene, seed and options; --force re-renders)")
    else:
        print(f"wrote {out} ({cmd.views} views at {cmd.res}x{cmd.res}, {time.perf_counter() - t0:.1f} s)")
    if cmd.video_seconds > 0:
        from scenes.video import render_video

        t0 = time.perf_counter()
        p = render_video(cmd.name, out / "video.mp4", seconds=cmd.video_seconds, fps=cmd.fps, res=cmd.res,
                         seed=cmd.seed, ss=cmd.ss)
        print(f"wrote {p} ({time.perf_counter() - t0:.1f} s)")
    return 0
