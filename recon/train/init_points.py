"""Initial points for training: the scene's own, triangulated from its posed images, or none.

Decides ``--init-points`` (see :class:`recon.train.config.TrainConfig`) before the method is built,
attaching points to the scene so every method that initialises from points (splats, NeRF bounds)
gets them the same way.
"""

from __future__ import annotations

from typing import Callable, Optional

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


def random_points_in_view_volume(scene: Scene, frames: list[int], n: int, near: float, far: float,
                                 seed: int = 0, min_views: int = 2) -> np.ndarray:
    """``n`` random points ``[n, 3]`` in the training cameras' common viewing volume.

    Each candidate lies on the ray of a random pixel of a random training camera, at a depth drawn
    uniformly in inverse depth between ``near`` and ``far`` (more points near, as the cameras see
    them), and is kept only if at least ``min_views`` training cameras see it beyond ``near`` and
    no training camera sees it closer than ``near``: no point floats in front of a camera.
    """
    rng = np.random.default_rng(seed)
    cams = [scene.frames[i].camera for i in frames]
    w2c = np.stack([np.linalg.inv(c.c2w) for c in cams])
    Ks = np.stack([c.K for c in cams])
    size = np.array([[c.width, c.height] for c in cams], np.float64)
    out, tries = [], 0
    while sum(len(o) for o in out) < n and tries < 50:
        tries += 1
        m = 4 * n
        k = rng.integers(0, len(cams), m)
        uv = rng.uniform(0, 1, (m, 2)) * size[k]
        x = (uv[:, 0] - Ks[k, 0, 2]) / Ks[k, 0, 0]
        y = (uv[:, 1] - Ks[k, 1, 2]) / Ks[k, 1, 1]
        z = 1.0 / rng.uniform(1.0 / far, 1.0 / near, m)
        pc = np.stack([x * z, y * z, z, np.ones(m)], -1)
        pw = np.einsum("kij,kj->ki", np.stack([cams[j].c2w for j in k]), pc)[:, :3]
        seen = np.zeros(m, np.int64)
        close = np.zeros(m, bool)
        for j in range(len(cams)):
            q = pw @ w2c[j, :3, :3].T + w2c[j, :3, 3]
            zz = q[:, 2]
            front = zz > 1e-9
            u = Ks[j, 0, 0] * q[:, 0] / np.where(front, zz, 1) + Ks[j, 0, 2]
            v = Ks[j, 1, 1] * q[:, 1] / np.where(front, zz, 1) + Ks[j, 1, 2]
            inside = front & (u >= 0) & (u < size[j, 0]) & (v >= 0) & (v < size[j, 1])
            seen += inside & (zz >= near)
            close |= inside & (zz < near)
        out.append(pw[(seen >= min(min_views, len(cams))) & ~close])
    pts = np.concatenate(out) if out else np.zeros((0, 3))
    return pts[:n]


def random_init(scene: Scene, frames: list[int], n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """Random initial points when the scene has none: inside the common viewing volume between the
    scene's depth bounds (LLFF's) when it has them; for object-centric captures (optical axes
    meeting in front of the cameras) in the box around the object; otherwise in the viewing volume
    between 5 % and 100 % of the camera spread in front of the cameras."""
    from recon.methods.splat import estimate_init_box, object_centric_box

    box = object_centric_box(scene)
    if scene.depth_range is None and box is not None:
        center, half = box
        from recon.models.splats import random_points_in_box

        return (random_points_in_box(center, half, n, seed=seed),
                f"{n} random points in a box of half-size {half:.3g} around {np.round(center, 3).tolist()}")
    if scene.depth_range is not None:
        near, far = scene.depth_range
        why = "the scene's depth bounds"
    else:
        _, half = estimate_init_box(scene)
        near, far = 0.05 * half, 2.0 * half
        why = "a depth range from the camera spread"
    pts = random_points_in_view_volume(scene, frames, n, near, far, seed=seed)
    if len(pts) < max(1, n // 10):
        center, half = estimate_init_box(scene)
        from recon.models.splats import random_points_in_box

        return (random_points_in_box(center, half, n, seed=seed),
                f"{n} random points in a box of half-size {half:.3g} (the cameras share too little view)")
    return pts, (f"{len(pts)} random points in the viewing volume seen by 2+ training cameras, depth "
                 f"{near:.3g}-{far:.3g} ({why})")


def sparse_unbounded(scene: Scene, frames: list[int], max_views: int = 30) -> bool:
    """Whether a capture gets a background shell under ``--background-shell auto``: at most
    ``max_views`` training views (a sparse capture, where sky and far background become floaters
    that only explain one view) whose images are not an object on a plain background."""
    return 0 < len(frames) <= max_views and not plain_background(scene, frames)


def shell_points(cams: list, image: Callable[[int], np.ndarray], points: Optional[np.ndarray], n: int,
                 margin: float = 1.3) -> tuple[np.ndarray, np.ndarray, float]:
    """Points ``[m, 3]`` (about ``n``) on a distant sphere around the training cameras, their
    colours ``[m, 3]`` in [0, 1] and the sphere's radius.

    The sphere is centred on the mean camera centre, 10 camera spreads away and at least 3 times
    farther than 99 % of the scene's points. Only directions some training camera sees are kept, with
    a margin (its field of view widened ``margin`` times) so a held-out view turned a little further
    still finds background. A point's colour is the pixel it falls on in the training view that sees
    it most centrally (clamped to that view's border for margin points). ``cams``: the training
    views' pinhole cameras; ``image(j)``: view ``j``'s ``[H, W, 3]`` image in [0, 1] at its camera's
    size; ``points``: the scene's points (or None).
    """
    centres = np.stack([c.c2w[:3, 3] for c in cams])
    c = centres.mean(0)
    spread = max(float(np.linalg.norm(centres - c, axis=1).max()), 1e-6)
    radius = 10.0 * spread
    if points is not None and len(points):
        far = float(np.percentile(np.linalg.norm(np.asarray(points, np.float64) - c, axis=1), 99))
        radius = max(radius, 3.0 * far)
    w2c = np.stack([np.linalg.inv(cam.c2w) for cam in cams])

    def project(dirs: np.ndarray):
        p = c + radius * dirs
        q = np.einsum("kij,nj->kni", w2c[:, :3, :3], p) + w2c[:, None, :3, 3]
        z = q[..., 2]
        zs = np.where(z > 1e-9, z, 1.0)
        u = np.stack([cam.K[0, 0] * q[j, :, 0] / zs[j] + cam.K[0, 2] for j, cam in enumerate(cams)])
        v = np.stack([cam.K[1, 1] * q[j, :, 1] / zs[j] + cam.K[1, 2] for j, cam in enumerate(cams)])
        size = np.array([[cam.width, cam.height] for cam in cams], np.float64)
        # Normalised image coordinates: [-1, 1] inside the frame.
        x = 2 * u / size[:, :1] - 1
        y = 2 * v / size[:, 1:] - 1
        score = np.where(z > 1e-9, np.maximum(np.abs(x), np.abs(y)), np.inf)
        return u, v, score, p

    def fib(k: int) -> np.ndarray:
        i = np.arange(k) + 0.5
        phi = np.arccos(1 - 2 * i / k)
        theta = np.pi * (1 + 5**0.5) * i
        return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)

    # Estimate the seen fraction of the sphere, then sample densely enough to keep about n points.
    probe = fib(4000)
    frac = max(float(np.mean(project(probe)[2].min(0) <= margin)), 1e-3)
    dirs = fib(int(min(n / frac, 50 * n)))
    u, v, score, pts = project(dirs)
    best = score.argmin(0)
    keep = score[best, np.arange(len(dirs))] <= margin
    u, v, best, pts = u[:, keep], v[:, keep], best[keep], pts[keep]
    cols = np.zeros((len(pts), 3), np.float64)
    for j in np.unique(best):
        sel = np.nonzero(best == j)[0]
        img = np.asarray(image(int(j)), np.float64)
        h, w = img.shape[:2]
        cu = np.clip(np.floor(u[j, sel]), 0, w - 1).astype(np.int64)
        cv = np.clip(np.floor(v[j, sel]), 0, h - 1).astype(np.int64)
        cols[sel] = img[cv, cu, :3]
    return pts, np.clip(cols, 0, 1), radius
