"""2D segmentation from prompts: SAM 2 (transformers), GrabCut (OpenCV, no weights) and instance-id
maps, behind one interface used by ``recon select`` (lifting a 2D selection to the 3D model).

A *prompt* is positive/negative points and/or a box in pixel coordinates of one image
(``x`` right, ``y`` down, pixel centres at ``i + 0.5``). A segmenter maps ``(image, prompt)`` to a
boolean mask ``[H, W]``.

* ``sam2:PATH`` — SAM 2 (``Sam2Model``) from a local folder (``save_pretrained`` layout) or a model
  ID already in the Hugging Face cache; nothing downloads. recon does SAM 2's pre- and
  post-processing itself (square resize, ImageNet normalisation, low-resolution mask logits
  upsampled to the image), so the image processor's torchvision dependency is not needed.
* ``grabcut`` — OpenCV's GrabCut from the box (and, after the first view, from the rendered
  footprint of the selection): the offline fallback that needs no weights.
* ``ids:DIR`` — instance-id maps, one PNG per image named by its stem (0 = background), as any
  panoptic or instance model writes them, or a synthetic scene's ground-truth ``objects/``: the
  prompt picks the id under its positive points (the most frequent one inside the box otherwise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np

from recon.errors import ReconError

SAM2_HINT = (
    "pass --segmenter sam2:/path/to/sam2-folder (config.json of model_type 'sam2' and model.safetensors, "
    "e.g. saved by save_pretrained) or sam2:MODEL_ID already in the Hugging Face cache, "
    "or --segmenter grabcut (needs a --box; no weights)"
)
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


@dataclass
class Prompt:
    """Points ``[(x, y), ...]`` with labels (1 = object, 0 = not the object) and/or a box
    ``(x0, y0, x1, y1)``, in pixels of the image it belongs to."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: Optional[tuple[float, float, float, float]] = None
    hint: Optional[np.ndarray] = None
    """Optional ``[H, W]`` float in [0, 1]: where the object is expected (the selection's rendered
    footprint in views after the first); GrabCut starts from it."""
    depth: Optional[np.ndarray] = None
    """Optional ``[H, W]`` depth of the view rendered from the model (0 = nothing): GrabCut models
    inverse depth beside colour, so an object stands out from surfaces behind it even where their
    colours are alike."""

    def check(self, width: int, height: int, where: str) -> None:
        if not self.points and self.box is None:
            raise ReconError(f"{where}: a prompt needs a point or a box")
        for x, y in self.points:
            if not (0 <= x < width and 0 <= y < height):
                raise ReconError(f"{where}: point ({x:g}, {y:g}) is outside the {width}x{height} image")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise ReconError(f"{where}: box {self.box} is empty (pass x0,y0,x1,y1 with x1 > x0 and y1 > y0)")
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                raise ReconError(f"{where}: box {self.box} lies outside the {width}x{height} image")


class Segmenter(Protocol):
    name: str
    """e.g. ``sam2:/models/sam2-tiny``: recorded in the selection's provenance."""

    def segment(self, image: np.ndarray, prompt: Prompt, key: str) -> np.ndarray:
        """``image`` uint8 ``[H, W, 3]``; ``key``: the image's stem (for id maps). Returns bool ``[H, W]``."""
        ...


# ----------------------------------------------------------------------------------------------
# SAM 2
# ----------------------------------------------------------------------------------------------


def check_sam2_folder(spec: str) -> Path:
    """The SAM 2 folder after cheap checks (no torch): exists or is cached, ``config.json`` of model
    type ``sam2``, a weights file. One-line :class:`ReconError` otherwise."""
    from recon.priors.depth import check_model_folder

    return check_model_folder(spec, "sam2", "SAM 2", option="--segmenter sam2:", hint=SAM2_HINT)


class Sam2Segmenter:
    """SAM 2 image predictor on one prompt at a time (points and/or a box; the best of SAM's three
    candidate masks by its predicted IoU when the prompt is a single point)."""

    def __init__(self, spec: str, device: str = "auto") -> None:
        folder = check_sam2_folder(spec)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            import torch
            from transformers import Sam2Model
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise ReconError(f"SAM 2 needs transformers >= 4.56 ({e}): install recon's 'priors' extra, or pass --segmenter grabcut") from None
        hf_logging.disable_progress_bar()
        try:
            model = Sam2Model.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:
            msg = " ".join(str(e).split())[:300]
            raise ReconError(f"--segmenter sam2:{spec}: cannot load {folder} ({type(e).__name__}: {msg})") from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = model.eval().to(device)
        self.device = device
        size = model.config.vision_config.backbone_config.image_size
        self.size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.name = f"sam2:{spec}"
        self._cache: tuple[object, object] | None = None

    def _embed(self, image: np.ndarray, key: str):
        import torch
        import torch.nn.functional as F

        key = (key, image.shape, int(image[::17, ::13].sum()))  # type: ignore[assignment]
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div(255.0).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(SAM_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(SAM_STD).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(self.device)
        with torch.no_grad():
            emb = self.model.get_image_embeddings(pixel_values=x)
        self._cache = (key, emb)
        return emb

    def segment(self, image: np.ndarray, prompt: Prompt, key: str) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        H, W = image.shape[:2]
        sx, sy = self.size / W, self.size / H
        kw: dict = {}
        if prompt.points:
            pts = [[x * sx, y * sy] for x, y in prompt.points]
            kw["input_points"] = torch.tensor([[pts]], dtype=torch.float32, device=self.device)
            kw["input_labels"] = torch.tensor([[list(prompt.labels)]], dtype=torch.long, device=self.device)
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            kw["input_boxes"] = torch.tensor([[[x0 * sx, y0 * sy, x1 * sx, y1 * sy]]], dtype=torch.float32, device=self.device)
        multi = prompt.box is None and len(prompt.points) == 1
        with torch.no_grad():
            out = self.model(image_embeddings=self._embed(image, key), multimask_output=multi, **kw)
        logits = out.pred_masks[0, 0]  # [M, h, w]
        best = int(torch.argmax(out.iou_scores[0, 0])) if logits.shape[0] > 1 else 0
        up = F.interpolate(logits[best][None, None].float(), size=(H, W), mode="bilinear", align_corners=False)
        return (up[0, 0] > 0).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# GrabCut
# ----------------------------------------------------------------------------------------------


class GrabCutSegmenter:
    """OpenCV GrabCut: the box bounds the object; inside it the rendered footprint (when given) or
    the whole box starts as "probably object", points as "surely object / surely not"."""

    name = "grabcut"
    uses_depth = True

    def __init__(self, iterations: int = 5) -> None:
        self.iterations = int(iterations)

    def segment(self, image: np.ndarray, prompt: Prompt, key: str) -> np.ndarray:
        import cv2

        H, W = image.shape[:2]
        if prompt.box is None:
            raise ReconError("--segmenter grabcut needs a box prompt (--box VIEW:x0,y0,x1,y1); for clicks pass --segmenter sam2:PATH")
        x0, y0, x1, y1 = prompt.box
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(W, int(np.ceil(x1))), min(H, int(np.ceil(y1)))
        mask = np.full((H, W), cv2.GC_BGD, np.uint8)
        mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
        if prompt.hint is not None:
            inside = np.zeros((H, W), bool)
            inside[y0:y1, x0:x1] = True
            mask[inside & (prompt.hint < 0.5)] = cv2.GC_PR_BGD
            mask[inside & (prompt.hint >= 0.5)] = cv2.GC_PR_FGD
        for (x, y), lab in zip(prompt.points, prompt.labels):
            cv2.circle(mask, (int(x), int(y)), 2, int(cv2.GC_FGD if lab else cv2.GC_BGD), -1)
        if not ((mask == cv2.GC_PR_FGD) | (mask == cv2.GC_FGD)).any():
            return np.zeros((H, W), bool)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        img = np.ascontiguousarray(image[..., ::-1])  # OpenCV's BGR
        if prompt.depth is not None:
            img = depth_features(image, prompt.depth)
        try:
            cv2.grabCut(img, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            # one colour everywhere (nothing to model): keep the initial guess
            pass
        return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


# ----------------------------------------------------------------------------------------------
# Instance-id maps
# ----------------------------------------------------------------------------------------------


def depth_features(image: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """An 8-bit 3-channel image for GrabCut: inverse depth (1st-99th percentile stretched) twice and
    the grey level once, so depth edges weigh twice as much as colour."""
    import cv2

    d = np.asarray(depth, np.float32).reshape(image.shape[:2])
    valid = d > 1e-6
    inv = np.zeros_like(d)
    inv[valid] = 1.0 / d[valid]
    if valid.any():
        lo, hi = np.percentile(inv[valid], 1), np.percentile(inv[valid], 99)
        q = (np.clip((inv - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)
    else:
        q = np.zeros(d.shape, np.uint8)
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(np.stack([q, q, grey], -1))


class IdMapSegmenter:
    """Masks from instance-id maps ``DIR/STEM.png`` (0 = background). The first prompt picks the id
    (under its positive points, else the most frequent non-zero id in its box); later prompts keep
    that id, so the same instance is followed across views."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise ReconError(f"--segmenter ids:{folder}: no such folder (one id PNG per image, named by the image's stem)")
        self.name = f"ids:{folder}"
        self.target: Optional[int] = None

    def ids(self, key: str, shape: tuple[int, int]) -> np.ndarray:
        from PIL import Image

        for suf in (".png", ".PNG"):
            p = self.folder / (Path(key).stem + suf)
            if p.is_file():
                a = np.asarray(Image.open(p))
                if a.ndim == 3:
                    a = a[..., 0]
                if a.shape != shape:
                    raise ReconError(f"{p}: {a.shape[1]}x{a.shape[0]} id map for a {shape[1]}x{shape[0]} image")
                return a.astype(np.int64)
        raise ReconError(f"--segmenter ids:{self.folder}: no id map {Path(key).stem}.png for image {key}")

    def segment(self, image: np.ndarray, prompt: Prompt, key: str) -> np.ndarray:
        ids = self.ids(key, image.shape[:2])
        if self.target is None:
            picks = [int(ids[int(y), int(x)]) for (x, y), lab in zip(prompt.points, prompt.labels) if lab]
            picks = [p for p in picks if p]
            if not picks and prompt.box is not None:
                x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
                inside = ids[max(0, y0):y1, max(0, x0):x1]
                vals, counts = np.unique(inside[inside > 0], return_counts=True)
                picks = [int(vals[np.argmax(counts)])] if len(vals) else []
            if not picks:
                raise ReconError(f"{self.name}: the prompt on {key} lies on background (id 0); click on the object")
            vals, counts = np.unique(picks, return_counts=True)
            self.target = int(vals[np.argmax(counts)])
        return ids == self.target


def load_segmenter(spec: str, device: str = "auto") -> Segmenter:
    """``sam2:PATH|ID``, ``grabcut`` or ``ids:DIR``."""
    kind, _, arg = spec.partition(":")
    if kind == "sam2":
        if not arg:
            raise ReconError(f"--segmenter {spec}: {SAM2_HINT}")
        return Sam2Segmenter(arg, device)
    if kind == "grabcut" and not arg:
        return GrabCutSegmenter()
    if kind == "ids" and arg:
        return IdMapSegmenter(arg)
    raise ReconError(f"--segmenter {spec}: unknown; pass sam2:PATH, grabcut or ids:DIR")


def prompt_points(mask_like: np.ndarray, count: int = 3) -> list[tuple[float, float]]:
    """Up to ``count`` positive points deep inside a footprint (``[H, W]`` float/bool): the maxima of
    its distance transform, spread out. Empty when the footprint is empty."""
    import cv2

    m = (np.asarray(mask_like) >= 0.5).astype(np.uint8)
    if not m.any():
        return []
    d = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    pts: list[tuple[float, float]] = []
    d = d.copy()
    for _ in range(count):
        i = int(np.argmax(d))
        y, x = divmod(i, d.shape[1])
        r = float(d[y, x])
        if r <= 0 or (pts and r < 1.5):
            break
        pts.append((x + 0.5, y + 0.5))
        cv2.circle(d, (x, y), max(2, int(2 * r)), 0.0, -1)
    return pts


def footprint_box(mask_like: np.ndarray, grow: float = 0.08) -> Optional[tuple[float, float, float, float]]:
    """The bounding box of a footprint, grown by ``grow`` of its size on each side (clipped)."""
    m = np.asarray(mask_like) >= 0.5
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    H, W = m.shape
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    gx, gy = grow * (x1 - x0) + 1, grow * (y1 - y0) + 1
    return (max(0.0, x0 - gx), max(0.0, y0 - gy), min(float(W), x1 + gx), min(float(H), y1 + gy))


def parse_view_prompt(text: str, what: str) -> tuple[str, list[float]]:
    """``VIEW:a,b[,c,d]`` -> (view, numbers). VIEW is a training image's name/stem or its index."""
    view, sep, nums = text.rpartition(":")
    if not sep or not view:
        raise ReconError(f"{what} {text!r}: write VIEW:x,y (a training image's name or index, then pixel coordinates)")
    try:
        vals = [float(v) for v in nums.split(",") if v.strip() != ""]
    except ValueError:
        raise ReconError(f"{what} {text!r}: the coordinates must be numbers, e.g. {view}:120,80") from None
    return view, vals


def views_of(names: Sequence[str]) -> dict[str, int]:
    """Lookup of a view by name, stem or index string."""
    out: dict[str, int] = {}
    for i, n in enumerate(names):
        out.setdefault(str(i), i)
        out.setdefault(n, i)
        out.setdefault(Path(n).name, i)
        out.setdefault(Path(n).stem, i)
    return out
