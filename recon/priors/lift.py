"""Lifting 2D object masks to the primitives of a trained model (``recon select``).

Each primitive's *contribution* to a view is its blending weight ``T_i α_i`` summed over pixels;
it is the gradient of the rendered image with respect to the primitive's colour, so one
backward pass of the rasterizer gives every primitive's weight inside the mask and outside it,
with occlusion and footprint accounted for exactly. A primitive belongs to the object when more
of its weight falls inside the masks than outside, over all views. Primitives no view sees
(inside a closed surface) take the visual-hull test: their centre falls inside the mask in every
view where it is in frame.

With a prompt on one view, the selection is grown over the other training views SA3D-style:
render the current selection into the next view, prompt the segmenter there with points deep
inside that footprint and its box, lift the new mask, repeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from recon.priors.segment import Prompt, Segmenter, footprint_box, prompt_points


MIN_WEIGHT = 0.05
"""A primitive is selected only with at least this much blending weight (in pixels) inside the
masks. Primitives hidden behind the object in the views lifted so far get a tiny weight inside the
mask and none outside; without this floor they count as the object until a view sees them, and
while the selection grows from one view, their footprint in the next view (the segmenter's prompt)
takes in the surface behind the object. On a red box over a textured slab, a box prompt from one
of four views drifted to held-out IoU 0.54; with the floor all four give 0.97, and the selections
from complete votes are unchanged."""


@dataclass
class LiftView:
    """A training view: camera (``recon.scene.cameras.Camera``), uint8 image ``[H, W, 3]`` at the
    camera's size, and the key the segmenter knows it by (the image's stem); ``alpha`` (float
    ``[H, W]``) when the image has an alpha channel (the image is then composited on white)."""

    camera: object
    image: Optional[np.ndarray]
    key: str
    alpha: Optional[np.ndarray] = None


@dataclass
class Votes:
    """Per-primitive weights inside / outside the object's masks, summed over views, plus the
    views' masks (for the visual-hull test of unseen primitives)."""

    inside: np.ndarray
    outside: np.ndarray
    masks: list[tuple[object, np.ndarray]] = field(default_factory=list)
    views_inside: Optional[np.ndarray] = None
    """How many views saw each primitive mostly inside their mask."""

    @classmethod
    def empty(cls, n: int) -> "Votes":
        return cls(np.zeros(n, np.float64), np.zeros(n, np.float64), views_inside=np.zeros(n, np.int64))

    def labels(self, threshold: float = 0.5, seen_eps: float = 1e-6) -> np.ndarray:
        """Selected: more weight inside than outside, and (once two views are lifted) inside the
        mask of at least two views, which drops floaters that only one camera ever saw."""
        total = self.inside + self.outside
        seen = total > seen_eps
        lab = np.zeros(len(total), bool)
        lab[seen] = self.inside[seen] > threshold * total[seen]
        lab &= self.inside >= MIN_WEIGHT
        if self.views_inside is not None and len(self.masks) >= 2:
            lab &= self.views_inside >= 2
        return lab


def _raster(renderer, camera, colors: torch.Tensor):
    from recon.render import rasterization

    vm = camera.viewmat
    vm = vm.float() if torch.is_tensor(vm) else torch.from_numpy(np.asarray(vm, np.float32))
    K = camera.K
    K = K.float() if torch.is_tensor(K) else torch.from_numpy(np.asarray(K, np.float32))
    out, alpha, _ = rasterization(
        renderer.means, renderer.quats, renderer.scales, renderer.opacities, colors,
        vm[None], K[None], int(camera.width), int(camera.height), sh_degree=None, packed=False,
        rasterize_mode="antialiased" if renderer.antialiased else "classic",
    )
    return out[0], alpha[0]


def contributions(renderer, camera, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each primitive's summed blending weight inside ``mask`` (bool ``[H, W]``) and outside it."""
    n = renderer.num_primitives
    colors = torch.zeros(n, 3, requires_grad=True)
    img, _ = _raster(renderer, camera, colors)
    m = torch.from_numpy(np.asarray(mask, np.float32))
    (img[..., 0] * m).sum().add_((img[..., 1] * (1.0 - m)).sum()).backward()
    g = colors.grad.double().numpy()
    return g[:, 0].copy(), g[:, 1].copy()


def footprint(renderer, camera, labels: np.ndarray) -> np.ndarray:
    """The selection's visible footprint in ``camera`` with the rest of the model in place:
    the rendered weight of selected primitives per pixel, ``[H, W]`` in [0, 1]."""
    c = torch.zeros(renderer.num_primitives, 3)
    c[torch.from_numpy(np.asarray(labels, bool)), 0] = 1.0
    with torch.no_grad():
        img, _ = _raster(renderer, camera, c)
    return img[..., 0].clamp(0, 1).numpy()


def model_depth(renderer, camera) -> np.ndarray:
    """Expected depth of the whole model in ``camera`` (0 where nothing is), ``[H, W]``."""
    out = renderer.render(camera, outputs=("rgb", "depth"))
    a = out.alpha[..., 0].numpy()
    d = out.depth[..., 0].numpy() / np.maximum(a, 1e-6)
    return np.where(a > 0.5, d, 0.0).astype(np.float32)


def colour_depth_image(image: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """The 3-channel 8-bit image a colour model (GrabCut) segments when the model's depth is known:
    inverse depth (1st-99th percentile stretched) and the two chroma channels of CIE Lab. Chroma
    keeps an object whose colour differs from its surroundings apart, depth one that stands in
    front of surfaces that look alike; brightness, which shading changes across one surface, is
    left out. (Inverse depth twice and grey once lost colour-distinct objects: on a red box over a
    textured slab GrabCut's IoU fell from 0.95 to 0 in half of the views.)"""
    import cv2

    d = np.asarray(depth, np.float32).reshape(image.shape[:2])
    valid = d > 1e-6
    inv = np.zeros_like(d)
    inv[valid] = 1.0 / d[valid]
    q = np.zeros(d.shape, np.uint8)
    if valid.any():
        lo, hi = np.percentile(inv[valid], 1), np.percentile(inv[valid], 99)
        q = (np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
    lab = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2LAB)
    return np.ascontiguousarray(np.dstack([q, lab[..., 1], lab[..., 2]]))


def _segment(segmenter, image: np.ndarray, prompt: Prompt, key: str, renderer, camera) -> np.ndarray:
    """Run ``segmenter``; one that models depth (GrabCut) gets :func:`colour_depth_image` of the
    view and the model's rendered depth instead of the photo."""
    if getattr(segmenter, "uses_depth", False):
        import cv2

        depth = prompt.depth if prompt.depth is not None else model_depth(renderer, camera)
        prompt = Prompt(points=list(prompt.points), labels=list(prompt.labels), box=prompt.box, hint=prompt.hint)
        image = colour_depth_image(image, depth)
        # GrabCut seeds its colour models with k-means on OpenCV's global random generator: reseed
        # it so the same prompt gives the same selection however many were made before in this
        # process (the viewer's selections match `recon select`'s).
        cv2.setRNGSeed(0)
        return main_components(segmenter.segment(image, prompt, key))
    return segmenter.segment(image, prompt, key)


def main_components(mask: np.ndarray, min_fraction: float = 0.25) -> np.ndarray:
    """The mask's largest connected region and those at least ``min_fraction`` of its size.

    GrabCut labels stray islands elsewhere in its box whose colour and depth resemble the object's.
    Lifted, they select Gaussians off the object, which then show in the next view's footprint, the
    next prompt, and so stay. (A ball on a post from one of four views: held-out IoU 0.79 with the
    islands, 0.92 without.) Parts of one object that an occluder splits apart are of a size and
    are kept."""
    import cv2

    m = np.asarray(mask, bool)
    if not m.any():
        return m
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(area >= min_fraction * area.max()) + 1
    return np.isin(lab, keep)


def add_view(votes: Votes, renderer, camera, mask: np.ndarray) -> None:
    i, o = contributions(renderer, camera, mask)
    votes.inside += i
    votes.outside += o
    if votes.views_inside is not None:
        votes.views_inside += (i > 1e-6) & (i > o)
    votes.masks.append((camera, np.asarray(mask, bool)))


def hull_labels(renderer, votes: Votes, seen_eps: float = 1e-6) -> np.ndarray:
    """Selection with the visual-hull rule for primitives no view sees."""
    lab = votes.labels(seen_eps=seen_eps)
    unseen = (votes.inside + votes.outside) <= seen_eps
    if not unseen.any() or not votes.masks:
        return lab
    pts = renderer.means.detach().double().numpy()[unseen]
    inside_all = np.ones(len(pts), bool)
    counted = np.zeros(len(pts), np.int64)
    for cam, mask in votes.masks:
        vm = np.asarray(cam.viewmat, np.float64)
        K = np.asarray(cam.K, np.float64)
        pc = pts @ vm[:3, :3].T + vm[:3, 3]
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * pc[:, 0] / z + K[0, 2]
            v = K[1, 1] * pc[:, 1] / z + K[1, 2]
        H, W = mask.shape
        ok = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        hit = np.zeros(len(pts), bool)
        hit[ok] = mask[v[ok].astype(np.int64), u[ok].astype(np.int64)]
        inside_all &= ~ok | hit
        counted += ok
    lab[np.flatnonzero(unseen)] = inside_all & (counted > 0)
    return lab


def view_order(cameras: Sequence[object], first: int) -> list[int]:
    """Views by growing angle from the first view's viewing direction (then distance)."""
    def fwd(c):
        c2w = np.asarray(c.c2w, np.float64)
        return c2w[:3, 2], c2w[:3, 3]

    d0, p0 = fwd(cameras[first])
    keys = []
    for i, c in enumerate(cameras):
        d, p = fwd(c)
        keys.append((-float(np.dot(d, d0)), float(np.linalg.norm(p - p0)), i))
    return [i for *_, i in sorted(keys)]


@dataclass
class LiftResult:
    labels: np.ndarray
    views_used: int
    views_skipped: int
    seconds: float
    per_view: list[dict] = field(default_factory=list)
    votes: Optional[Votes] = None
    """The votes the labels came from; ``votes.masks[k]`` is the mask of ``views[lifted[k]]``."""
    lifted: list[int] = field(default_factory=list)


def select_from_prompt(
    renderer,
    views: Sequence[LiftView],
    segmenter: Segmenter,
    first: int,
    prompt: Prompt,
    max_views: Optional[int] = None,
    min_footprint_px: int = 12,
    log: Callable[[str], None] = lambda s: None,
) -> LiftResult:
    """Segment ``views[first]`` from ``prompt``, then grow the selection over the other views."""
    t0 = time.perf_counter()
    votes = Votes.empty(renderer.num_primitives)
    v0 = views[first]
    mask0 = _segment(segmenter, v0.image, prompt, v0.key, renderer, v0.camera)
    if not mask0.any():
        from recon.errors import ReconError

        raise ReconError(f"{segmenter.name}: the prompt on {v0.key} gave an empty mask; prompt inside the object")
    add_view(votes, renderer, v0.camera, mask0)
    lifted = [first]
    per_view = [{"view": v0.key, "mask_px": int(mask0.sum()), "prompted_by": "user"}]
    order = [i for i in view_order([v.camera for v in views], first) if i != first]
    if max_views is not None:
        order = order[: max(0, max_views - 1)]
    used, skipped = 1, 0
    last = -1.0
    labels = votes.labels()
    for k, i in enumerate(order, 1):
        v = views[i]
        fp = footprint(renderer, v.camera, labels)
        if int((fp >= 0.5).sum()) < min_footprint_px:
            skipped += 1
            per_view.append({"view": v.key, "skipped": "selection not visible"})
            continue
        p = Prompt(points=prompt_points(fp), box=footprint_box(fp), hint=fp)
        p.labels = [1] * len(p.points)
        mask = _segment(segmenter, v.image, p, v.key, renderer, v.camera)
        add_view(votes, renderer, v.camera, mask)
        lifted.append(i)
        labels = votes.labels()
        used += 1
        per_view.append({"view": v.key, "mask_px": int(mask.sum()), "footprint_px": int((fp >= 0.5).sum())})
        el = time.perf_counter() - t0
        if el - last >= 1.0 or k == len(order):
            last = el
            log(f"select: {k}/{len(order)} views, {int(labels.sum())} primitives selected, "
                f"{el:.1f} s elapsed, ETA {el / k * (len(order) - k):.1f} s")
    return LiftResult(hull_labels(renderer, votes), used, skipped, time.perf_counter() - t0, per_view, votes, lifted)


def select_from_masks(renderer, views: Sequence[LiftView], masks: Sequence[Optional[np.ndarray]],
                      log: Callable[[str], None] = lambda s: None) -> LiftResult:
    """Lift given per-view masks (``None``: no mask for that view)."""
    t0 = time.perf_counter()
    votes = Votes.empty(renderer.num_primitives)
    used = 0
    last = -1.0
    todo = [(v, m) for v, m in zip(views, masks) if m is not None]
    lifted = [i for i, m in enumerate(masks) if m is not None]
    for k, (v, m) in enumerate(todo, 1):
        add_view(votes, renderer, v.camera, m)
        used += 1
        el = time.perf_counter() - t0
        if el - last >= 1.0 or k == len(todo):
            last = el
            log(f"select: {k}/{len(todo)} masks lifted, {el:.1f} s elapsed, ETA {el / k * (len(todo) - k):.1f} s")
    return LiftResult(hull_labels(renderer, votes), used, len(views) - used, time.perf_counter() - t0, [], votes, lifted)
