"""Initial points for training: the scene's own, triangulated from its posed images, or none.

Decides ``--init-points`` (see :class:`recon.train.config.TrainConfig`) before the method is built,
attaching points to the scene so every method that initialises from points (splats, NeRF bounds)
gets them the same way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from recon.scene.scene import Scene


def plain_background(scene: Scene, frames: list[int], probe: int = 3) -> bool:
    """Whether the training images show an object on a transparent or plain background.

    True when the images have an alpha channel, or when at least 95 % of the pixels on the border of
    each probed image are within 3/255 of one colour (a synthetic render or a studio turntable):
    random initialisation in the cameras' common volume works there, and triangulating features of
    a flat backdrop adds nothing. Probes up to ``probe`` frames at a longest side of about 256 px.
    """
    if not frames:
        return False
    pick = [frames[int(round(k))] for k in np.linspace(0, len(frames) - 1, min(probe, len(frames)))]
    for i in pick:
        cam = scene.frames[i].camera
        ds = max(1.0, max(cam.width, cam.height) / 256.0)
        if scene.alpha(i, ds) is not None:
            continue
        img = scene.image(i, ds)
        b = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3),
                            img[:, -2:].reshape(-1, 3)])
        ref = np.median(b, axis=0)
        if np.mean(np.abs(b - ref).max(1) <= 3.0 / 255.0) < 0.95:
            return False
    return True


def prepare_points(scene: Scene, mode: str, train_idx: list[int], log: Callable[[str], None] = print) -> dict:
    """Attach initial points to ``scene`` according to ``mode``; returns a record for the run manifest.

    ``auto``/``triangulate`` triangulate from the training images when the scene has poses and no
    points (``auto`` skips images on a plain background); a failed triangulation leaves the scene
    without points (the method then initialises at random) and says so. ``random`` drops the scene's
    points. ``scene`` leaves the scene as it is.
    """
    has = scene.points is not None and len(scene.points) > 0
    if mode == "random":
        if has:
            scene.points, scene.point_colors = None, None
        return {"source": "random"}
    if has:
        return {"source": "scene", "points": int(len(scene.points))}
    if mode == "scene" or not scene.has_poses:
        return {"source": "random"}
    if mode == "auto" and plain_background(scene, train_idx):
        log("[init] images show an object on a plain background: random initialisation "
            "(--init-points triangulate to triangulate anyway)")
        return {"source": "random", "reason": "plain background"}
    from recon.sfm.triangulate import triangulate

    tri = triangulate(scene, train_idx, log=log)
    if tri is None:
        log("[init] triangulation with the given poses found too few points (little texture or overlap): "
            "random initialisation")
        return {"source": "random", "reason": "triangulation found too few points"}
    scene.points, scene.point_colors = tri.points, tri.colors
    log(f"[init] {tri.describe()}")
    return {"source": "triangulated", **{k: v for k, v in tri.report.items()}}
