"""Built-in procedural ground-truth scenes: images + exact cameras + depth + object masks + GT mesh.

    import scenes
    scenes.SCENES                       # ["turntable", "room", "dynamic"]
    scenes.synth("turntable", "out/")   # -> Path("out"), a nerfstudio-format folder
    scenes.render_video("room", "room.mp4", seconds=10)

See ``docs/scenes.md`` for the scenes, the files and their conventions.
"""

from __future__ import annotations

from scenes.recipes import RECIPES, Recipe

SCENES: list[str] = list(RECIPES)


def synth(name, out_dir, views=60, res=256, seed=0, **kwargs):
    """Render scene ``name`` into ``out_dir``; see :func:`scenes.dataset.synth`."""
    from scenes.dataset import synth as _synth

    return _synth(name, out_dir, views=views, res=res, seed=seed, **kwargs)


def render_video(name, out_path, seconds=10.0, fps=24, res=256, **kwargs):
    """Render scene ``name`` along a smooth path into an MP4; see :func:`scenes.video.render_video`."""
    from scenes.video import render_video as _rv

    return _rv(name, out_path, seconds=seconds, fps=fps, res=res, **kwargs)


def build(name: str, seed: int = 0) -> Recipe:
    """The in-memory recipe (parts, textures, light, camera rig) of scene ``name``."""
    from scenes.dataset import build as _build

    return _build(name, seed)


__all__ = ["SCENES", "synth", "render_video", "build", "Recipe"]
