"""Selecting an object in the operator viewer: a box dragged on the view (GrabCut, or the
segmentation model given by ``recon view --segment-model``) or a click (with a segmentation model),
lifted to the run's Gaussians by the same code as ``recon select`` and saved as a named selection
of the run (``RUN/selections/NAME.*``), which ``recon export RUN --selection NAME`` reads.

The prompt is drawn in the browser's current view. When that view is a training camera (click its
frustum to go there), the prompt is mapped to that training image's pixels and the selection is the
one ``recon select RUN --box VIEW:x0,y0,x1,y1`` (or ``--prompt VIEW:x,y``) makes. From any other
viewpoint the view is rendered from the model and segmented, then grown over the training views.

Independent of viser: the operator UI passes camera poses and screen positions in, so the logic is
tested without a browser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from recon.errors import ReconError

# A browser camera "is" a training camera when it sits within this fraction of the scene radius of
# it and looks the same way to within this angle (clicking a frustum puts it there exactly).
POSE_POS_TOL = 1e-3
POSE_ANGLE_TOL_DEG = 0.2


@dataclass
class ViewPose:
    """The browser's camera: OpenCV camera-to-world in recon's world frame, vertical field of view
    (radians) and the viewport's aspect ratio (width / height)."""

    c2w: np.ndarray
    fov_y: float
    aspect: float


def load_viewer_segmenter(spec: Optional[str], device: str = "auto"):
    """``--segment-model``: ``sam2:PATH|ID`` (a bare PATH means SAM 2) or ``ids:DIR``; None: none."""
    if spec is None:
        return None
    from recon.priors.segment import load_segmenter

    s = str(spec)
    if not s.startswith(("sam2:", "ids:")):
        s = "sam2:" + s
    try:
        return load_segmenter(s, device)
    except ReconError as e:
        raise ReconError(str(e).replace("--segmenter ", "--segment-model ")) from None


class ViewerSelector:
    """Lifts prompts drawn in the viewer to a selection of the run in ``folder``.

    The run's model file, cameras and training images are read on first use (``recon select``
    reads the same), so opening the viewer costs nothing until something is selected.
    """

    def __init__(self, folder: Path, segmenter=None, log: Callable[[str], None] = lambda s: None,
                 max_views: Optional[int] = None):
        self.folder = Path(folder)
        self.segmenter = segmenter
        self.log = log
        self.max_views = max_views
        self._loaded = None

    # ------------------------------------------------------------------ run
    def _load(self):
        if self._loaded is None:
            from recon.commands.select import _load_views
            from recon.models.splats import SplatRenderer
            from recon.run import RunFolder

            rf = RunFolder.open(self.folder)
            model_file = rf.require_model()
            renderer = SplatRenderer(rf.gaussians(), antialiased=rf.antialiased)
            cams, views, missing = _load_views(rf, need_images=True)
            self._loaded = (rf, model_file, renderer, cams, views, missing)
        return self._loaded

    def training_view(self, pose: ViewPose, radius: float) -> Optional[int]:
        """Index of the training camera the browser's camera sits at (same pose and vertical field
        of view), else None."""
        _, _, _, cams, _, _ = self._load()
        for i, c in enumerate(cams):
            c2w = np.asarray(c.c2w, np.float64)
            if np.linalg.norm(c2w[:3, 3] - pose.c2w[:3, 3]) > POSE_POS_TOL * max(radius, 1e-9):
                continue
            cosang = (np.trace(c2w[:3, :3].T @ pose.c2w[:3, :3]) - 1.0) / 2.0
            if math.degrees(math.acos(min(1.0, max(-1.0, cosang)))) > POSE_ANGLE_TOL_DEG:
                continue
            fov_y = 2.0 * math.atan2(0.5 * c.height, float(np.asarray(c.K)[1, 1]))
            if abs(fov_y - pose.fov_y) <= 1e-3 * max(fov_y, 1e-9):
                return i
        return None

    @staticmethod
    def screen_to_pixels(pose: ViewPose, uv: tuple[float, float], K: np.ndarray) -> tuple[float, float]:
        """A screen position (0..1, OpenCV image axes, as viser reports it) to pixels of a camera
        with intrinsics ``K`` and the same pose and vertical field of view."""
        t = math.tan(0.5 * pose.fov_y)
        tx = (float(uv[0]) - 0.5) * 2.0 * t * pose.aspect
        ty = (float(uv[1]) - 0.5) * 2.0 * t
        return float(K[0, 0] * tx + K[0, 2]), float(K[1, 1] * ty + K[1, 2])

    # ------------------------------------------------------------------ prompts
    def select(self, pose: ViewPose, radius: float, name: str, box: Optional[tuple] = None,
               points: tuple = (), labels: tuple = ()) -> tuple[np.ndarray, Path, str]:
        """Select from a box ``((u0, v0), (u1, v1))`` and/or points ``[(u, v), ...]`` given in
        screen coordinates of ``pose``; write selection ``name``. Returns (labels, .json path, a
        line saying what was done)."""
        from recon.commands.select import save_selection, select_on_view
        from recon.priors.segment import GrabCutSegmenter
        from recon.selection import check_name

        check_name(name)
        if box is None and not points:
            raise ReconError("draw a box or click the object")
        seg = self.segmenter
        if seg is None:
            if box is None:
                raise ReconError("a click needs a segmentation model (recon view RUN --segment-model PATH); "
                                 "drag a box instead (GrabCut)")
            seg = GrabCutSegmenter()
        if hasattr(seg, "target"):
            seg.target = None  # id maps: the new prompt picks the id again
        rf, model_file, renderer, cams, views, missing = self._load()
        labels = list(labels) if labels else [1] * len(points)
        i = self.training_view(pose, radius)
        if i is not None:
            from recon.commands.select import _image_size

            K = np.asarray(cams[i].K, np.float64)
            iw, ih = _image_size(rf, cams[i])
            fx, fy = iw / cams[i].width, ih / cams[i].height  # camera pixels -> image-file pixels
            pts = [self._to_file(self.screen_to_pixels(pose, p, K), fx, fy) for p in points]
            bx = None
            if box is not None:
                x0, y0 = self._to_file(self.screen_to_pixels(pose, box[0], K), fx, fy)
                x1, y1 = self._to_file(self.screen_to_pixels(pose, box[1], K), fx, fy)
                bx = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            res, how = select_on_view(rf, renderer, cams, views, missing, i, seg, pts, labels, bx,
                                      self.max_views, log=self.log)
            how["made_in"] = "recon view"
            where = f"training view {views[i].key}"
        else:
            res, how = self._select_rendered(renderer, views, seg, pose, box, points, labels)
            where = "the viewer's view (rendered)"
        meta = save_selection(rf, model_file, renderer, views, name, res.labels, how)
        n = int(res.labels.sum())
        msg = (f"selection {name}: {n:,} of {res.labels.size:,} Gaussians from {where}, grown over "
               f"{res.views_used} views; export with `recon export {rf.root} --selection {name}`")
        return res.labels, meta, msg

    @staticmethod
    def _to_file(px: tuple[float, float], fx: float, fy: float) -> tuple[float, float]:
        return (px[0] * fx, px[1] * fy)

    def _select_rendered(self, renderer, views, seg, pose: ViewPose, box, points, labels):
        """The prompt on a view that is no training camera: render it from the model, segment the
        render, then grow over the training views."""
        import torch

        from recon.priors import lift
        from recon.priors.segment import Prompt
        from recon.run import EVAL_BACKGROUND
        from recon.scene.cameras import Camera

        if hasattr(seg, "ids"):
            raise ReconError("id maps exist only for the training images: go to a training camera "
                             "(click its frustum) and prompt there")
        h = int(max((v.camera.height for v in views), default=512))
        w = max(16, int(round(h * pose.aspect)))
        f = 0.5 * h / math.tan(0.5 * pose.fov_y)
        cam = Camera(K=np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]), width=w, height=h, c2w=pose.c2w)
        bg = torch.tensor(EVAL_BACKGROUND, dtype=torch.float32)
        with torch.no_grad():
            rgb = renderer.render(cam, background=bg).rgb.clamp(0, 1).numpy()
        img = (rgb * 255 + 0.5).astype(np.uint8)
        px = lambda uv: (float(uv[0]) * w, float(uv[1]) * h)  # noqa: E731 - the camera matches the viewport
        p = Prompt(points=[px(q) for q in points], labels=list(labels))
        if box is not None:
            (x0, y0), (x1, y1) = px(box[0]), px(box[1])
            p.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        p.check(w, h, f"the viewer's view ({w}x{h})")
        first = lift.LiftView(camera=cam, image=img, key="viewer")
        usable = [v for v in views if v.image is not None]
        res = lift.select_from_prompt(renderer, [first] + usable, seg, 0, p, max_views=self.max_views, log=self.log)
        how = {"segmenter": seg.name, "made_in": "recon view",
               "prompt": {"view": "rendered", "c2w_opencv": np.asarray(pose.c2w).tolist(), "K": cam.K.tolist(),
                          "width": w, "height": h, "points": [list(q) for q in p.points], "labels": list(p.labels),
                          "box": None if p.box is None else list(p.box)},
               "views_used": res.views_used, "views_skipped": res.views_skipped}
        return res, how
