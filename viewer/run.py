"""Opening a trained run folder for viewing: splats, cameras and a display frame.

Runs are read through :class:`recon.run.RunFolder` (the one run reader): the splats, the
cameras (``cameras.json``), the training images (found through the scene path the run records)
and the render settings. ``recon view`` also accepts a ``.ply`` file directly.

The *scene frame* is how the viewers show the run: a rigid transform of recon's world so that the
object's centre is at the origin and "up" (the mean of the training cameras' up vectors) is +Z, with
the first training camera looking along +Y. viser shows the scene frame as is (Z up); the WebXR page
turns it to three.js's Y-up convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.errors import ReconError

# Scene frame (Z up) to three.js / WebXR (Y up): (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1.0]])
from recon.scene.conventions import GL_CV_FLIP  # noqa: E402,F401  (re-exported for the server)


@dataclass
class RunCamera:
    """A training camera: OpenCV ``c2w [4,4]`` float64, ``K [3,3]``, image size, and its image if found."""

    name: str
    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    image: Path | None = None
    split: str = "train"
    time: float | None = None
    """Scene time in [0, 1] of a dynamic capture's frame (None: static)."""

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians."""
        return float(2.0 * np.arctan2(0.5 * self.height, self.K[1, 1]))


@dataclass
class SceneFrame:
    """World-to-scene rigid transform ``T [4,4]`` (scene: centred, Z up) and the scene's radius."""

    T: np.ndarray
    radius: float

    @property
    def R(self) -> np.ndarray:
        return self.T[:3, :3]

    @property
    def t(self) -> np.ndarray:
        return self.T[:3, 3]

    def to_scene(self, pts: np.ndarray) -> np.ndarray:
        """World points ``[N, 3]`` to scene-frame points."""
        return pts @ self.R.T + self.t

    def c2w_to_scene(self, c2w: np.ndarray) -> np.ndarray:
        return self.T @ c2w

    def c2w_from_scene(self, c2w_scene: np.ndarray) -> np.ndarray:
        Ti = np.eye(4)
        Ti[:3, :3] = self.R.T
        Ti[:3, 3] = -self.R.T @ self.t
        return Ti @ c2w_scene

    @property
    def to_xr(self) -> np.ndarray:
        """World to three.js/WebXR (Y up) ``[4, 4]``."""
        return Z_UP_TO_Y_UP @ self.T


@dataclass
class Run:
    """A run opened for viewing."""

    folder: Path
    splats_path: Path | None
    """The splat file; None for splats held in memory (a live training view)."""
    splats: dict[str, torch.Tensor]
    cameras: list[RunCamera] = field(default_factory=list)
    cameras_path: Path | None = None
    frame: SceneFrame | None = None
    points: np.ndarray | None = None
    """Sparse (SfM) points ``[P, 3]`` in the splats' frame, from ``RUN/points.ply``; None without."""
    point_colors: np.ndarray | None = None
    """``[P, 3]`` uint8."""
    antialiased: bool = False
    """Whether the model was trained with antialiased rasterization (every renderer honours it)."""
    distilled: dict | None = None
    """NeRF runs: the record of the distillation whose splats are shown (:mod:`exporters.nerf_distill`)."""
    dynamic: object | None = None
    """Dynamic (``splat4d``) runs: the run's own renderer (``render(camera, time=...)``,
    ``gaussians(time)``); ``splats`` is then the model at time 0. None for static runs."""
    times: list[float] = field(default_factory=list)
    """Dynamic runs: the distinct scene times (sorted, in [0, 1]) of the capture's frames."""

    @property
    def plays(self) -> bool:
        """Whether the viewers offer time controls: a dynamic run trained on at least two times."""
        return self.dynamic is not None and len(self.times) >= 2

    @property
    def note(self) -> str:
        """What the viewer shows when it is not the run's own model (empty otherwise)."""
        if not self.distilled:
            return ""
        d = self.distilled
        return (f"NeRF run: showing splats distilled from it ({d['steps']} steps, {d['psnr']:.2f} dB PSNR against "
                f"its renders; {self.splats_path})")

    @property
    def num_gaussians(self) -> int:
        return int(self.splats["means"].shape[0])

    @property
    def sh_degree(self) -> int:
        k = int(self.splats["shN"].shape[1]) if "shN" in self.splats else 0
        return int(round(np.sqrt(k + 1))) - 1


def open_run(path: Path, distill_nerf: bool = False, log=print) -> Run:
    """Open a run folder (or a splat ``.ply`` file) through :class:`recon.run.RunFolder`; raises
    :class:`ReconError` naming what is missing.

    ``distill_nerf``: a NeRF run is opened as the splats distilled from it (trained on its renders
    and cached in ``RUN/distill``, :mod:`exporters.nerf_distill`; the viewers and the WebXR page
    draw splats); without it a NeRF run is refused with one line."""
    from recon.run import RunFolder

    rf = RunFolder.open(path)
    distilled = None
    if rf.method == "nerf" and distill_nerf:
        from exporters.nerf_distill import DISTILL_DIR, distilled_splats

        g, distilled = distilled_splats(rf.root, log=log)
        splats = {k: v.float() for k, v in g.items()}
        splats_path = rf.root / DISTILL_DIR / "run" / "splats.ply"
    else:
        splats = {k: v.float() for k, v in rf.gaussians().items()}
        splats_path = rf.path("model")
    if int(splats["means"].shape[0]) == 0:
        raise ReconError(f"{splats_path} holds no Gaussians")
    import torch

    if not all(bool(torch.isfinite(v).all()) for v in splats.values()):
        raise ReconError(f"{splats_path} holds non-finite values (NaN or inf); re-export or retrain the run")
    cams_path = rf.path("cameras") or rf.root / "cameras.json"
    cameras = [RunCamera(c.name, c.c2w, c.K, c.width, c.height, image=rf.image_path(c), split=c.split,
                         time=None if c.time is None else float(c.time))
               for c in rf.cameras()] if cams_path.is_file() else []
    run = Run(folder=rf.root, splats_path=splats_path, splats=splats, cameras=cameras,
              cameras_path=cams_path if cams_path.is_file() else None, antialiased=rf.antialiased,
              distilled=distilled)
    if distilled is None and bool(getattr(rf.method_class(), "dynamic", False)):
        run.dynamic = rf.renderer()
        run.times = sorted({round(c.time, 9) for c in cameras if c.time is not None})
    run.frame = scene_frame(splats["means"].detach().cpu().numpy().astype(np.float64), cameras)
    points = rf.path("points") or rf.root / "points.ply"
    if points.is_file():
        run.points, run.point_colors = read_points(points)
    return run


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(points [P, 3] float32, colours [P, 3] uint8)`` of a PLY point cloud (grey without colours)."""
    from recon.scene.readers import read_ply_points

    try:
        pts, col = read_ply_points(path)
    except ReconError as e:
        raise ReconError(f"cannot read sparse points {path}: {e}; delete it or re-run training") from None
    col = np.full((len(pts), 3), 160, np.uint8) if col is None else col
    return pts.astype(np.float32), col


def scene_frame(means: np.ndarray, cameras: list[RunCamera]) -> SceneFrame:
    """Estimate the display frame from Gaussian centres ``[N, 3]`` and the training cameras.

    Up is the mean of the cameras' up vectors (``-y`` in OpenCV axes; world +Z without cameras).
    The centre is the point closest to all optical axes when the cameras look inward at an object,
    else the median Gaussian centre. The radius is the 90th percentile of distances to the centre.
    """
    median = np.median(means, axis=0)
    lo, hi = np.percentile(means, 2, axis=0), np.percentile(means, 98, axis=0)
    up = np.array([0.0, 0.0, 1.0])
    fwd = None
    centre = median
    if cameras:
        c2w = np.stack([c.c2w for c in cameras])
        u = -c2w[:, :3, 1].mean(0)
        if np.linalg.norm(u) > 0.3:
            up = u / np.linalg.norm(u)
        fwd = c2w[0, :3, 2]
        # Least-squares point nearest to every optical axis: sum (I - d d^T) (p - o) = 0.
        d = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
        o = c2w[:, :3, 3]
        A = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
        M, b = A.sum(0), np.einsum("nij,nj->i", A, o)
        if len(cameras) >= 2 and np.linalg.cond(M) < 1e3:
            p = np.linalg.solve(M, b)
            margin = 0.25 * (hi - lo)
            if np.all(p >= lo - margin) and np.all(p <= hi + margin):
                centre = p
    radius = float(np.percentile(np.linalg.norm(means - centre, axis=1), 90))
    radius = radius if np.isfinite(radius) and radius > 0 else 1.0
    if fwd is None or np.linalg.norm(fwd - (fwd @ up) * up) < 1e-3:
        # Any horizontal direction.
        fwd = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    h = fwd - (fwd @ up) * up
    h /= np.linalg.norm(h)
    R = np.stack([np.cross(h, up), h, up])  # rows: scene x, y (forward), z (up) in world coordinates
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ centre
    return SceneFrame(T=T, radius=radius)
