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

    def __init__(self, spec: str, device: str = "auto", _checked: bool = False, option: str = "--segmenter sam2:") -> None:
        folder = Path(spec) if _checked else check_sam2_folder(spec)
        if _checked:  # `recon process --segment-model`: a sam2 or sam2_video folder, checked by the caller
            model, missing = _load_transformers_model("Sam2Model", folder, spec, option)
            if any(k.startswith(("vision_encoder", "mask_decoder", "prompt_encoder")) for k in missing):
                raise ReconError(f"{option} {spec}: {folder} lacks SAM 2 image weights ({missing[0]}, ...); {SEGMENT_HINT}")
            import torch
        else:
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


# ----------------------------------------------------------------------------------------------
# Models for `recon process --segment`: SAM 2 video propagation and automatic masks
# ----------------------------------------------------------------------------------------------

SEGMENT_HINT = (
    "pass --segment-model /path/to/sam2-folder (config.json of model_type 'sam2_video' or 'sam2' and "
    "model.safetensors, e.g. saved by save_pretrained) or a model ID already in the Hugging Face cache, "
    "or --segment-model grabcut with --segment-box (no weights)"
)


def check_segment_model(spec: str, model_types: Sequence[str], label: str, option: str = "--segment-model",
                        hint: str = SEGMENT_HINT) -> Path:
    """The SAM 2 folder for ``--segment-model`` after cheap checks (no torch): it exists or is cached,
    has ``config.json`` of one of ``model_types`` and a weights file. One-line :class:`ReconError`
    naming the option otherwise."""
    import json

    from recon.priors.depth import resolve_model_folder

    folder = resolve_model_folder(spec, option=option, hint=hint)
    given = f"{option} {spec}"
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ReconError(f"{given}: {folder} has no config.json; {hint}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ReconError(f"{cfg_path}: unreadable model config ({e}); {hint}") from None
    mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
    if mtype not in model_types:
        want = " or ".join(repr(t) for t in model_types)
        raise ReconError(f"{given}: {cfg_path} is a {mtype!r} model, not {label} (model_type {want}); {hint}")
    if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        raise ReconError(f"{given}: {folder} has no weights (model.safetensors); {hint}")
    return folder


def has_video_memory(folder: Path) -> Optional[bool]:
    """Whether the checkpoint in ``folder`` holds SAM 2's video-memory weights (memory attention and
    encoder), read from the safetensors header only; None when that cannot be told cheaply."""
    import json

    names: list[str] = []
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            names = list(json.loads(index.read_text()).get("weight_map", {}))
        elif (folder / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(str(folder / "model.safetensors"), framework="np") as f:
                names = list(f.keys())
    except Exception:
        return None
    if not names:
        return None
    return any(n.startswith(("memory_attention.", "memory_encoder.")) for n in names)


def _load_transformers_model(cls_name: str, folder: Path, spec: str, option: str):
    """``transformers.<cls_name>.from_pretrained(folder)`` offline, with one-line errors. Returns
    ``(model, missing_keys)``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
        from transformers.utils import logging as hf_logging

        cls = getattr(transformers, cls_name)
    except (ImportError, AttributeError) as e:
        raise ReconError(f"{option} needs transformers >= 4.56 with {cls_name} ({e}): install recon's 'priors' extra, "
                         "or pass --segment-model grabcut") from None
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a sam2 config loaded as sam2_video warns; we check the weights ourselves
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)
    except Exception as e:
        msg = " ".join(str(e).split())[:300]
        raise ReconError(f"{option} {spec}: cannot load {folder} ({type(e).__name__}: {msg})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, list(info.get("missing_keys", []))


def _device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def sam_input(image: np.ndarray, size: int):
    """uint8 ``[H, W, 3]`` -> SAM 2's input ``[1, 3, size, size]``: antialiased bilinear resize to the
    square, ImageNet normalisation (what SAM 2's image and video processors do)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image)).float().div(255.0).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(SAM_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class _LazyFrames(dict):
    """The video session's frame store, filled on demand: ``frames[k]`` decodes and preprocesses frame
    ``k`` when SAM 2 asks for it (two kept), so a long capture never sits in memory at 1024²."""

    def __init__(self, count: int, load) -> None:
        super().__init__({k: None for k in range(count)})
        self._load = load
        self._recent: dict[int, object] = {}

    def __getitem__(self, k):
        if k not in self._recent:
            if len(self._recent) >= 2:
                self._recent.pop(next(iter(self._recent)))
            self._recent[k] = self._load(k)
        return self._recent[k]


class Sam2VideoPropagator:
    """SAM 2 video predictor (transformers' ``Sam2VideoModel``): prompts on one or more frames of a
    sequence, for one or more objects, propagated through the sequence with SAM 2's memory.

    recon builds the inference session itself (frames resized to the model's square input and
    normalised as SAM 2's video processor does; prompts scaled to that square, a box as SAM 2's two
    corner points), so the processor and its torchvision dependency are not needed.
    """

    def __init__(self, spec: str, device: str = "auto") -> None:
        folder = check_segment_model(spec, ("sam2_video", "sam2"), "SAM 2")
        model, missing = _load_transformers_model("Sam2VideoModel", folder, spec, "--segment-model")
        memory = [k for k in missing if k.startswith(("memory_", "mask_downsample", "temporal_positional", "no_memory",
                                                     "occlusion_spatial", "no_object_pointer"))]
        if memory:
            raise ReconError(f"--segment-model {spec}: {folder} has no video-memory weights ({memory[0]}, ...): it is an "
                             "image-only SAM 2 checkpoint; pass the full SAM 2 checkpoint, or leave out the prompts "
                             "for automatic masks")
        self.device = _device(device)
        self.model = model.eval().to(self.device)
        size = model.config.image_size
        self.size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.name = f"sam2-video:{spec}"
        self.folder = folder

    def propagate(self, count: int, height: int, width: int, load, prompts: dict[int, dict[int, Prompt]], progress=None):
        """Labels of one or more objects over a sequence of ``count`` frames (all ``height × width``).

        Args:
            load: ``load(k)`` -> uint8 ``[H, W, 3]`` image of sequence position ``k``.
            prompts: object number (1, 2, ...) -> sequence position -> :class:`Prompt` (points and/or a
                box). Every object must be prompted at the earliest prompted position, where tracking
                starts for all of them; propagation runs forward from there and backward before it.
            progress: called with the number of frames done.

        Yields ``(position, uint8 [H, W] labels, {object: score logit})``: each pixel holds the
        object whose mask logit is highest there among those above 0, or 0.
        """
        import torch
        import torch.nn.functional as F
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        sess = Sam2VideoInferenceSession(video=None, video_height=height, video_width=width, inference_device=self.device,
                                         inference_state_device=self.device, video_storage_device="cpu", dtype=torch.float32)
        sess.processed_frames = _LazyFrames(count, lambda k: sam_input(load(k), self.size)[0])
        sx, sy = self.size / width, self.size / height
        objs = sorted(prompts)
        by_frame: dict[int, list[int]] = {}
        for obj in objs:
            idx = sess.obj_id_to_idx(obj)
            for k, p in sorted(prompts[obj].items()):
                pts = [[x * sx, y * sy] for x, y in p.points]
                labels = list(p.labels)
                if p.box is not None:
                    x0, y0, x1, y1 = p.box
                    pts = [[x0 * sx, y0 * sy], [x1 * sx, y1 * sy]] + pts
                    labels = [2, 3] + labels  # SAM 2's box corners
                sess.add_point_inputs(idx, k, {
                    "point_coords": torch.tensor([[pts]], dtype=torch.float32),
                    "point_labels": torch.tensor([[labels]], dtype=torch.int32),
                })
                by_frame.setdefault(k, []).append(obj)
        start = min(by_frame)
        if sorted(by_frame[start]) != objs:
            raise ReconError("SAM 2 video: every object needs a prompt on the first prompted frame")
        done = 0

        def result(o):
            logits = F.interpolate(o.pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
            best, arg = logits.max(0)
            ids = torch.tensor(o.object_ids, dtype=torch.uint8, device=logits.device)[arg]
            lab = torch.where(best > 0, ids, torch.zeros_like(ids)).cpu().numpy()
            sc = o.object_score_logits.flatten().tolist()
            return lab, {int(i): float(v) for i, v in zip(o.object_ids, sc)}

        with torch.inference_mode():
            for k in sorted(by_frame):  # the prompted frames first: they condition everything else
                sess.obj_with_new_inputs = list(by_frame[k])
                lab, sc = result(self.model(sess, frame_idx=k))
                done += 1
                if progress:
                    progress(done)
                yield k, lab, sc
            passes = [False] + ([True] if start > 0 else [])
            for reverse in passes:
                for o in self.model.propagate_in_video_iterator(sess, start_frame_idx=start, reverse=reverse):
                    if o.frame_idx in by_frame:
                        continue
                    lab, sc = result(o)
                    done += 1
                    if progress:
                        progress(done)
                    yield o.frame_idx, lab, sc


@dataclass
class AutoMaskOptions:
    """SAM 2 automatic masks: a ``points_per_side²`` grid of single-point prompts, each giving SAM's
    three candidate masks; kept when SAM's predicted IoU >= ``pred_iou`` and the stability score
    (IoU of the mask thresholded at logit +1 and at -1) >= ``stability``; de-duplicated by mask IoU
    > ``nms_iou`` (the higher predicted IoU wins); masks smaller than ``min_area`` of the image dropped."""

    points_per_side: int = 16
    pred_iou: float = 0.8
    stability: float = 0.9
    nms_iou: float = 0.7
    min_area: float = 0.001
    batch: int = 64


def mask_nms(masks: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression on boolean masks ``[N, h, w]``: indices kept, best score first;
    a mask is dropped when its IoU with a kept one exceeds ``iou``."""
    n = len(masks)
    if n == 0:
        return []
    flat = masks.reshape(n, -1).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(1)
    union = area[:, None] + area[None, :] - inter
    ious = inter / np.maximum(union, 1.0)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if all(ious[i, j] <= iou for j in keep):
            keep.append(int(i))
    return keep


def automatic_masks(seg: "Sam2Segmenter", image: np.ndarray, opts: AutoMaskOptions) -> tuple[np.ndarray, list[dict]]:
    """Every segment SAM 2 finds in ``image`` (uint8 ``[H, W, 3]``), as an id map.

    Returns ``(ids uint16 [H, W], segments)``: 0 = no segment; segment ``k`` (1-based, in the order
    of ``segments``) has ``{"id", "pred_iou", "stability", "area", "bbox": [x0, y0, x1, y1]}``.
    Overlaps are painted largest first, so a smaller segment on top of a larger one stays visible.
    """
    import torch
    import torch.nn.functional as F

    H, W = image.shape[:2]
    n = int(opts.points_per_side)
    g = (np.arange(n) + 0.5) / n * seg.size
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)  # (x, y) in the model's square
    emb = seg._embed(image, "auto")
    lows, scores, stab = [], [], []
    with torch.no_grad():
        for b in range(0, len(grid), opts.batch):
            pts = torch.tensor(grid[b : b + opts.batch], dtype=torch.float32, device=seg.device)[None, :, None, :]
            lab = torch.ones(pts.shape[:3], dtype=torch.long, device=seg.device)
            out = seg.model(image_embeddings=emb, input_points=pts, input_labels=lab, multimask_output=True)
            logits = out.pred_masks[0].float()  # [P, 3, h, w]
            hi, lo = (logits > 1.0).flatten(2).sum(-1), (logits > -1.0).flatten(2).sum(-1)
            stab.append((hi.float() / lo.clamp_min(1).float()).flatten().cpu().numpy())
            scores.append(out.iou_scores[0].float().flatten().cpu().numpy())
            lows.append(logits.flatten(0, 1).cpu())
    logits = torch.cat(lows)
    score, stability = np.concatenate(scores), np.concatenate(stab)
    low = (logits > 0).numpy()
    ok = (score >= opts.pred_iou) & (stability >= opts.stability) & (low.reshape(len(low), -1).mean(1) >= opts.min_area)
    idx = np.nonzero(ok)[0]
    keep = [int(idx[k]) for k in mask_nms(low[idx], score[idx], opts.nms_iou)]
    masks = []
    for i in keep:
        up = F.interpolate(logits[i][None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0] > 0
        m = up.numpy()
        if m.mean() >= opts.min_area:
            masks.append((i, m))
    masks.sort(key=lambda t: -int(t[1].sum()))
    ids = np.zeros((H, W), np.uint16)
    segments = []
    for k, (i, m) in enumerate(masks[:65535]):
        ids[m] = k + 1
        cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
        segments.append({"id": k + 1, "pred_iou": round(float(score[i]), 4), "stability": round(float(stability[i]), 4),
                         "area": int(m.sum()), "bbox": [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]})
    for s in segments:  # what is left visible after the smaller segments were painted on top
        s["visible_area"] = int((ids == s["id"]).sum())
    return ids, segments


def load_sam2_image_model(spec: str, device: str = "auto") -> "Sam2Segmenter":
    """``Sam2Model`` for automatic masks from ``--segment-model`` (a ``sam2`` or ``sam2_video`` folder)."""
    folder = check_segment_model(spec, ("sam2", "sam2_video"), "SAM 2")
    return Sam2Segmenter(str(folder), device, _checked=True, option="--segment-model")
