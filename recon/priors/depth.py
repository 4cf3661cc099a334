"""Monocular depth priors: Depth Anything V2 (transformers), robust alignment to SfM depth, and an
offline fallback that densifies the SfM points per image.

Nothing here downloads: models load from a local folder, or from an existing Hugging Face cache
with ``local_files_only=True`` and the hub's offline switch set. Missing weights are one
:class:`ReconError` line saying what to pass.

Conventions: images are float32 ``[H, W, 3]`` in [0, 1]; depth maps float32 ``[H, W]`` in scene
units, 0 = unknown; pixel centres at ``(i + 0.5, j + 0.5)``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from recon.errors import ReconError

PATCH = 14  # Depth Anything's ViT patch size: input sides are multiples of it
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MISSING_WEIGHTS_HINT = (
    "pass --depth-model /path/to/depth-anything-v2-small (a folder with config.json and model.safetensors, "
    "e.g. saved by save_pretrained) or a model ID already in the Hugging Face cache, "
    "or --depth-model sfm for the offline fallback (SfM points densified per image)"
)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


@dataclass
class DepthModel:
    """A loaded Depth Anything model.

    Attributes:
        model: the ``DepthAnythingForDepthEstimation`` module (eval mode, CPU or the given device).
        kind: "relative" (output ~ inverse depth, unknown scale/shift) or "metric" (metres).
        source: the folder or model ID it was loaded from.
        fingerprint: a short hash of its config and weight files (the cache key's model part).
        mean, std: input normalisation (from ``preprocessor_config.json`` when present).
    """

    model: object
    kind: str
    source: str
    fingerprint: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _offline() -> None:
    # Never reach the network from this code path, whatever the caller's environment says.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _fingerprint(folder: Path) -> str:
    import hashlib

    h = hashlib.sha1()
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"):
            st = p.stat()
            h.update(p.name.encode())
            if p.suffix == ".json":
                h.update(p.read_bytes())
            else:
                h.update(f"{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def resolve_model_folder(spec: str | os.PathLike, option: str = "--depth-model", hint: str = MISSING_WEIGHTS_HINT) -> Path:
    """The local folder for ``--depth-model`` (or ``option``): an existing folder, or a model ID
    found in the Hugging Face cache (never downloaded). Raises a one-line :class:`ReconError`
    ending with ``hint`` otherwise."""
    s = str(spec)
    given = f"{option}{s}" if option.endswith(":") else f"{option} {s}"
    p = Path(s).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise ReconError(f"{given}: not a folder; {hint}")
    is_model_id = s.count("/") == 1 and not s.startswith((".", "/", "~")) and all(s.split("/"))
    if not is_model_id:
        raise ReconError(f"{given}: no such folder; {hint}")
    _offline()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(s, local_files_only=True))
    except Exception:
        raise ReconError(f"{given}: not in the local Hugging Face cache (nothing is downloaded); {hint}") from None


def load_depth_model(spec: str | os.PathLike, device: str = "auto") -> DepthModel:
    """Load Depth Anything (V1/V2, relative or metric) from a local folder or the HF cache.

    Raises :class:`ReconError` (one line) for a missing folder, a folder without ``config.json``,
    a config of another model type, missing or unreadable weights, or transformers not installed.
    """
    folder = check_model_folder(spec)
    _offline()
    try:
        from transformers import DepthAnythingForDepthEstimation
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise ReconError(
            f"Depth Anything needs transformers ({e}): install recon's 'priors' extra "
            "(make install, or pip install -e '.[priors]' torch==2.13.0), or pass --depth-model sfm"
        ) from None
    hf_logging.disable_progress_bar()
    try:
        model = DepthAnythingForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # corrupt weights, shape mismatch, ...
        msg = " ".join(str(e).split())[:300]
        raise ReconError(f"--depth-model {spec}: cannot load {folder} ({type(e).__name__}: {msg})") from None
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model.eval().to(device)
    except (RuntimeError, AssertionError, ValueError) as e:
        raise ReconError(f"--depth-device {device}: cannot use it ({' '.join(str(e).split())[:200]}); pass --depth-device cpu") from None
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    pp = folder / "preprocessor_config.json"
    if pp.is_file():
        try:
            d = json.loads(pp.read_text())
            mean = tuple(float(v) for v in d.get("image_mean", mean))  # type: ignore[assignment]
            std = tuple(float(v) for v in d.get("image_std", std))  # type: ignore[assignment]
        except (OSError, ValueError, TypeError):
            pass
    kind = str(getattr(model.config, "depth_estimation_type", "relative") or "relative")
    return DepthModel(model=model, kind=kind, source=str(spec), fingerprint=_fingerprint(folder), mean=mean, std=std)


def check_model_folder(spec: str | os.PathLike, model_type: str = "depth_anything", label: str = "Depth Anything",
                       option: str = "--depth-model", hint: str = MISSING_WEIGHTS_HINT) -> Path:
    """The model folder for ``spec`` after cheap checks (no torch, no transformers): it exists
    (or is cached), has ``config.json`` of ``model_type`` and a weights file. Raises a one-line
    :class:`ReconError` naming ``option`` and ending with ``hint`` otherwise."""
    folder = resolve_model_folder(spec, option=option, hint=hint)
    given = f"{option}{spec}" if option.endswith(":") else f"{option} {spec}"
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ReconError(f"{given}: {folder} has no config.json; {hint}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ReconError(f"{cfg_path}: unreadable model config ({e}); {hint}") from None
    mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
    if mtype != model_type:
        raise ReconError(f"{given}: {cfg_path} is a {mtype!r} model, not {label} (model_type {model_type!r}); {hint}")
    if not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        raise ReconError(f"{given}: {folder} has no weights (model.safetensors); {hint}")
    return folder


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------


def input_size(height: int, width: int, resolution: int = 518) -> tuple[int, int]:
    """The network input size for an ``height × width`` image: the short side scaled to about
    ``resolution``, aspect ratio kept, both sides rounded to a multiple of 14 (at least 14)."""
    s = resolution / float(min(height, width))
    return (max(PATCH, int(round(height * s / PATCH)) * PATCH), max(PATCH, int(round(width * s / PATCH)) * PATCH))


class ProgressLine:
    """``depth: 12/40 images, 3.1 s elapsed, ETA 7.2 s`` lines for a stage."""

    def __init__(self, log: Optional[Callable[[str], None]], stage: str, total: int, every_s: float = 1.0) -> None:
        self.log, self.stage, self.total, self.t0 = log, stage, total, time.perf_counter()
        self.every_s, self._last = every_s, -float("inf")

    def __call__(self, done: int) -> None:
        """Report ``done`` images: at most one line per ``every_s`` seconds, and always the last."""
        if self.log is None:
            return
        now = time.perf_counter()
        if done < self.total and now - self._last < self.every_s:
            return
        self._last = now
        dt = now - self.t0
        eta = dt / done * (self.total - done) if done else float("nan")
        self.log(f"{self.stage}: {done}/{self.total} images, {dt:.1f} s elapsed, ETA {eta:.1f} s")


def predict(
    dm: DepthModel,
    images: Sequence[np.ndarray],
    resolution: int = 518,
    batch_size: int = 4,
    log: Optional[Callable[[str], None]] = None,
) -> list[np.ndarray]:
    """Run Depth Anything on images of one size.

    Args:
        dm: a :class:`DepthModel`.
        images: float32 ``[H, W, 3]`` in [0, 1], all the same ``H, W``.
        resolution: short side of the network input (rounded so both sides are multiples of 14).
        batch_size: images per forward pass.
        log: progress lines (stage, count, ETA).

    Returns:
        float32 ``[H, W]`` per image, at the image's resolution: relative models give a
        disparity-like map (larger = nearer, unknown scale and shift), metric models metres.
    """
    import torch

    if not images:
        return []
    sizes = {tuple(np.asarray(im).shape[:2]) for im in images}
    if len(sizes) > 1:
        raise ReconError(
            f"depth: images of mixed sizes in one batch ({', '.join(f'{w}x{h}' for h, w in sorted(sizes))}); "
            "resize them to one size or run each size separately"
        )
    H, W = sizes.pop()
    h, w = input_size(H, W, resolution)
    dev = next(dm.model.parameters()).device  # type: ignore[attr-defined]
    mean = torch.tensor(dm.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(dm.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    prog = ProgressLine(log, "depth", len(images))
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for b in range(0, len(images), max(1, int(batch_size))):
            chunk = np.stack([np.asarray(im, dtype=np.float32)[..., :3] for im in images[b : b + batch_size]])
            x = torch.from_numpy(chunk).to(dev).permute(0, 3, 1, 2)
            x = torch.nn.functional.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
            x = (x.clamp(0.0, 1.0) - mean) / std
            y = dm.model(pixel_values=x).predicted_depth  # type: ignore[operator]
            y = torch.nn.functional.interpolate(y[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            out.extend(np.ascontiguousarray(y.float().cpu().numpy()))
            prog(len(out))
    return out


# ----------------------------------------------------------------------------------------------
# Alignment
# ----------------------------------------------------------------------------------------------


@dataclass
class Alignment:
    """``target ≈ scale * pred + shift`` (in depth, or in inverse depth when ``mode="inverse"``).

    Attributes:
        scale, shift: the fitted affine map.
        mode: "depth" or "inverse".
        inliers: number of sparse samples kept by the robust fit.
        samples: number of sparse samples given.
        residual: median absolute residual of the inliers, relative to the median target.
    """

    scale: float
    shift: float
    mode: str
    inliers: int
    samples: int
    residual: float

    def apply(self, pred: np.ndarray, max_depth: Optional[float] = None) -> np.ndarray:
        """The aligned depth map (float32, 0 where the map says "behind the camera" or beyond ``max_depth``)."""
        v = self.scale * np.asarray(pred, dtype=np.float64) + self.shift
        if self.mode == "inverse":
            with np.errstate(divide="ignore", invalid="ignore"):
                d = np.where(v > 1e-12, 1.0 / np.maximum(v, 1e-12), 0.0)
        else:
            d = np.where(v > 0, v, 0.0)
        if max_depth is not None:
            d = np.where(d <= max_depth, d, 0.0)
        return np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _lsq(x: np.ndarray, y: np.ndarray, w: Optional[np.ndarray] = None) -> tuple[float, float]:
    w = np.ones_like(x) if w is None else w
    sw = w.sum()
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    vx = (w * (x - mx) ** 2).sum()
    s = (w * (x - mx) * (y - my)).sum() / vx if vx > 0 else 0.0
    return float(s), float(my - s * mx)


def fit_scale_shift(
    pred: np.ndarray, target: np.ndarray, mode: str = "inverse", iters: int = 10, trials: int = 256, seed: int = 0,
) -> Alignment:
    """Robust ``scale, shift`` with ``scale * pred + shift ≈ t`` where ``t = target`` (``mode="depth"``)
    or ``1 / target`` (``mode="inverse"``, for relative models that predict disparity).

    Args:
        pred: ``[N]`` predicted values at the sparse samples.
        target: ``[N]`` SfM depths there (> 0; others are ignored).
        mode: "depth" or "inverse".

    Least median of squares over random 2-point fits finds the inliers (robust to up to ~50 %
    outliers), then iteratively reweighted least squares with Tukey weights at 4.7 robust sigmas refines.
    """
    if mode not in ("depth", "inverse"):
        raise ReconError(f"depth alignment mode must be 'depth' or 'inverse', got {mode!r}")
    x = np.asarray(pred, dtype=np.float64).ravel()
    z = np.asarray(target, dtype=np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(z) & (z > 0)
    x, z = x[ok], z[ok]
    n = len(x)
    if n < 3:
        raise ReconError(f"depth alignment needs at least 3 SfM points in the image, got {n}")
    y = 1.0 / z if mode == "inverse" else z
    rng = np.random.default_rng(seed)
    best, best_med = _lsq(x, y), np.inf
    i, j = rng.integers(0, n, trials), rng.integers(0, n, trials)
    dx = x[i] - x[j]
    good = np.abs(dx) > 1e-12 * (np.abs(x).max() + 1e-30)
    for a, b in zip(i[good], j[good]):
        s = (y[a] - y[b]) / (x[a] - x[b])
        t = y[a] - s * x[a]
        med = float(np.median(np.abs(s * x + t - y)))
        if med < best_med:
            best, best_med = (float(s), float(t)), med
    s, t = best
    w = np.ones(n)
    for _ in range(iters):
        r = s * x + t - y
        sigma = 1.4826 * np.median(np.abs(r)) + 1e-12 * np.median(np.abs(y))
        u = r / (4.685 * sigma)
        w = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if w.sum() < 3:
            break
        s, t = _lsq(x, y, w)
    r = np.abs(s * x + t - y)
    inl = w > 0
    resid = float(np.median(r[inl]) / np.median(np.abs(y))) if inl.any() else float("nan")
    return Alignment(scale=s, shift=t, mode=mode, inliers=int(inl.sum()), samples=n, residual=resid)


# ----------------------------------------------------------------------------------------------
# SfM points per image, and the offline fallback
# ----------------------------------------------------------------------------------------------


def visible_points(uv: np.ndarray, z: np.ndarray, height: int, width: int, cell: Optional[int] = None, tol: float = 0.1) -> np.ndarray:
    """A mask of projected points that are in the image, in front of the camera, and not hidden:
    a point more than ``tol`` (relative) behind the nearest point of its ``cell``-pixel cell and
    the 8 neighbouring cells is dropped (a cheap z-buffer for sparse points). ``cell`` defaults to
    the mean spacing of the points in the image (larger cells also drop visible background points
    beside foreground edges: measured worse on the synthetic room).

    Args:
        uv: ``[N, 2]`` pixel coordinates (pixel centres at i + 0.5).
        z: ``[N]`` camera depths.
    """
    uv = np.asarray(uv, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z) & (z > 0) & np.all(np.isfinite(uv), axis=1)
    ok &= (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    if not ok.any():
        return ok
    if cell is None:
        cell = max(1, int(round(np.sqrt(height * width / ok.sum()))))
    gh, gw = -(-height // cell), -(-width // cell)
    zmin = np.full((gh + 2, gw + 2), np.inf)
    ci = (uv[ok, 1] // cell).astype(int) + 1
    cj = (uv[ok, 0] // cell).astype(int) + 1
    np.minimum.at(zmin, (ci, cj), z[ok])
    near = zmin.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            near[1:-1, 1:-1] = np.minimum(near[1:-1, 1:-1], zmin[1 + di : gh + 1 + di, 1 + dj : gw + 1 + dj])
    keep = ok.copy()
    keep[ok] = z[ok] <= near[ci, cj] * (1.0 + tol)
    return keep


def densify(
    uv: np.ndarray, z: np.ndarray, height: int, width: int, fill: str = "none", max_edge: Optional[float] = 6.0,
) -> np.ndarray:
    """Depth map ``[H, W]`` float32 from sparse samples: linear interpolation of inverse depth over
    the samples' Delaunay triangulation (exact for planes, since inverse depth is affine in the
    image for a plane).

    Args:
        uv: ``[N, 2]`` pixel coordinates of the samples (pixel centres at i + 0.5).
        z: ``[N]`` depths (> 0).
        fill: pixels not covered by a kept triangle: "none" (0 = unknown) or "nearest" (the
            nearest sample's depth).
        max_edge: triangles with an edge longer than this many times the median edge are dropped
            (they bridge holes: sky, gaps between objects); None keeps the whole convex hull.
    """
    from scipy.spatial import Delaunay, QhullError, cKDTree

    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(z, dtype=np.float64).ravel()
    out = np.zeros((height, width), np.float32)
    if len(z) < 3:
        return out
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    q = np.stack([jj.ravel(), ii.ravel()], axis=1)
    inv = np.full(len(q), np.nan)
    try:
        tri = Delaunay(uv)
    except (QhullError, ValueError):  # degenerate (collinear) samples
        tri = None
    if tri is not None:
        simp = tri.find_simplex(q)
        good = np.ones(len(tri.simplices), bool)
        if max_edge is not None:
            v = uv[tri.simplices]  # [T, 3, 2]
            edges = np.linalg.norm(v - np.roll(v, 1, axis=1), axis=2).max(axis=1)
            good = edges <= max_edge * np.median(edges)
        ok = simp >= 0
        ok[ok] = good[simp[ok]]
        t = tri.transform[simp[ok]]
        b = np.einsum("nij,nj->ni", t[:, :2], q[ok] - t[:, 2])
        bary = np.concatenate([b, 1.0 - b.sum(axis=1, keepdims=True)], axis=1)
        inv[ok] = (bary * (1.0 / z)[tri.simplices[simp[ok]]]).sum(axis=1)
    if fill == "nearest":
        miss = ~np.isfinite(inv)
        if miss.any():
            _, k = cKDTree(uv).query(q[miss])
            inv[miss] = 1.0 / z[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(np.isfinite(inv) & (inv > 0), 1.0 / inv, 0.0)
    return d.reshape(height, width).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Previews
# ----------------------------------------------------------------------------------------------


def preview_rgb(depth: np.ndarray) -> np.ndarray:
    """A colour preview ``[H, W, 3]`` uint8 of a depth map: turbo colours of inverse depth between
    its 2nd and 98th percentiles (near = red, far = blue), unknown (0) pixels black."""
    from matplotlib import colormaps

    d = np.asarray(depth, dtype=np.float32)
    known = np.isfinite(d) & (d > 0)
    rgb = np.zeros(d.shape + (3,), np.uint8)
    if not known.any():
        return rgb
    inv = np.where(known, 1.0 / np.where(known, d, 1.0), 0.0)
    lo, hi = np.percentile(inv[known], [2, 98])
    v = np.clip((inv - lo) / max(hi - lo, 1e-12), 0, 1)
    c = (colormaps["turbo"](v)[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[known] = c[known]
    return rgb
