"""3D Gaussian splats: parameters in gsplat's names and parameterisation.

A model is a ``torch.nn.ParameterDict`` with
``means [N,3]``, ``quats [N,4]`` (wxyz, unnormalised), ``scales [N,3]`` (log),
``opacities [N]`` (logit), ``sh0 [N,1,3]`` and ``shN [N,K,3]`` with ``K = (D+1)^2 - 1``,
so gsplat's ``DefaultStrategy`` and ``MCMCStrategy`` apply unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
import torch

from recon.errors import ReconError

SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical-harmonic constant: ``rgb = 0.5 + SH_C0 * sh0``."""
KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")


def num_sh_rest(degree: int) -> int:
    """Number of higher SH coefficients per channel ``K`` for an SH ``degree``."""
    return (degree + 1) ** 2 - 1


def sh_degree_from_rest(k: int) -> int:
    """SH degree whose ``K`` (coefficients beyond DC) is ``k``; raises for counts no degree has."""
    d = int(round(math.sqrt(k + 1))) - 1
    if num_sh_rest(d) != k:
        raise ReconError(f"{k} higher SH coefficients per channel matches no SH degree (expected 0, 3, 8, 15 or 24)")
    return d


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def logit(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).astype(np.float32)


def as_numpy(splats: Mapping[str, Any], copy: bool = True) -> dict[str, np.ndarray]:
    """Float32 numpy arrays of a splats dict (torch tensors or arrays), validated for shape.

    ``shN`` may be missing (degree 0). With ``copy=False`` float32 CPU inputs are viewed, not
    copied (for writers that only read them). Raises :class:`ReconError` naming the bad key.
    """
    out: dict[str, np.ndarray] = {}
    for k in KEYS:
        if k not in splats:
            if k == "shN":
                continue
            raise ReconError(f"splats have no {k!r} (expected keys {', '.join(KEYS)})")
        v = splats[k]
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k] = np.array(v, dtype=np.float32, copy=True) if copy else np.asarray(v, dtype=np.float32)
    n = out["means"].shape[0]
    if "shN" not in out:
        out["shN"] = np.zeros((n, 0, 3), np.float32)
    if out["sh0"].ndim == 2:
        out["sh0"] = out["sh0"][:, None, :]
    if out["opacities"].ndim == 2 and out["opacities"].shape[1] == 1:
        out["opacities"] = out["opacities"][:, 0]
    want = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,), "sh0": (n, 1, 3)}
    for k, shape in want.items():
        if out[k].shape != shape:
            raise ReconError(f"splats[{k!r}] has shape {tuple(out[k].shape)}, expected {shape}")
    if out["shN"].ndim != 3 or out["shN"].shape[0] != n or out["shN"].shape[2] != 3:
        raise ReconError(f"splats['shN'] has shape {tuple(out['shN'].shape)}, expected ({n}, K, 3)")
    sh_degree_from_rest(out["shN"].shape[1])
    return out


def sh_degree(splats: Mapping[str, Any]) -> int:
    """SH degree of a splats dict (0 when ``shN`` is missing or empty)."""
    if "shN" not in splats:
        return 0
    return sh_degree_from_rest(int(splats["shN"].shape[1]))


def count(splats: Mapping[str, Any]) -> int:
    return int(splats["means"].shape[0])


def subset(splats: Mapping[str, np.ndarray], mask_or_index: np.ndarray) -> dict[str, np.ndarray]:
    """The splats selected by a boolean mask ``[N]`` or an index array."""
    return {k: v[mask_or_index] for k, v in splats.items()}





def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] ``[..., 3]`` to the DC SH coefficient that renders it."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """DC SH coefficient ``[..., 3]`` to the view-independent colour it renders."""
    return sh0 * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance of each point ``[N, 3]`` to its ``k`` nearest neighbours ``[N]``."""
    from scipy.spatial import cKDTree

    n = len(points)
    if n < 2:
        return np.ones(n)
    kk = min(k + 1, n)
    d, _ = cKDTree(points).query(points, k=kk)
    d = d[:, 1:]
    return np.sqrt((d**2).mean(axis=1))


def init_splats(
    points: np.ndarray,
    colors: Optional[np.ndarray],
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    seed: int = 0,
) -> torch.nn.ParameterDict:
    """Gaussians centred on ``points [N, 3]`` with colours ``colors [N, 3]`` in [0, 1].

    Scales start at the mean distance to the 3 nearest neighbours (times ``init_scale``),
    rotations at identity, opacities at ``init_opacity``, higher SH bands at zero.
    """
    gen = torch.Generator().manual_seed(seed)
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
    n = pts.shape[0]
    if colors is None:
        rgb = torch.rand(n, 3, generator=gen)
    else:
        rgb = torch.as_tensor(np.asarray(colors, dtype=np.float32)).clamp(0, 1)
    dist = torch.as_tensor(knn_mean_distance(pts.numpy().astype(np.float64)), dtype=torch.float32)
    dist = dist.clamp_min(1e-7)
    scales = torch.log(dist * init_scale)[:, None].repeat(1, 3)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    opac = torch.full((n,), float(math.log(init_opacity / (1 - init_opacity))))
    sh0 = rgb_to_sh0(rgb)[:, None, :]
    shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3)
    return torch.nn.ParameterDict(
        {
            "means": torch.nn.Parameter(pts.contiguous()),
            "scales": torch.nn.Parameter(scales.contiguous()),
            "quats": torch.nn.Parameter(quats),
            "opacities": torch.nn.Parameter(opac),
            "sh0": torch.nn.Parameter(sh0.contiguous()),
            "shN": torch.nn.Parameter(shN),
        }
    )


def random_points_in_box(center: np.ndarray, half_size: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniform in the cube of ``half_size`` around ``center`` ``[n, 3]``."""
    rng = np.random.default_rng(seed)
    return center[None, :] + rng.uniform(-half_size, half_size, size=(n, 3))


def render_splats(
    splats,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    sh_degree: int,
    background: Optional[torch.Tensor] = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    antialiased: bool = False,
    backend: str = "auto",
):
    """Render one camera of a splat dict with :func:`recon.render.rasterization`.

    Args:
        splats: dict with ``means [N,3]``, ``quats [N,4]``, ``scales [N,3]`` (log),
            ``opacities [N]`` (logit), ``sh0 [N,1,3]``, ``shN [N,K,3]``.
        viewmat: ``[4, 4]`` world-to-camera (OpenCV axes). K: ``[3, 3]`` intrinsics.
        sh_degree: SH degree to evaluate (at most the model's).
        background: ``[3]`` RGB, or ``None`` for black.
        render_mode: "RGB", "D", "ED", "RGB+D" or "RGB+ED".
    Returns:
        ``(colors [H, W, D], alphas [H, W, 1], info)``.
    """
    from recon.render import rasterization

    dev = splats["means"].device
    colors = torch.cat([splats["sh0"], splats["shN"]], dim=1)
    max_deg = int(round(math.sqrt(colors.shape[1]))) - 1
    bg = None
    if background is not None and render_mode not in ("D", "ED"):
        # RGB background; rasterization appends the depth channel's (zero) background itself.
        bg = background.reshape(1, -1).to(dev)
    out, alphas, info = rasterization(
        means=splats["means"],
        quats=splats["quats"],
        scales=torch.exp(splats["scales"]),
        opacities=torch.sigmoid(splats["opacities"]),
        colors=colors,
        viewmats=viewmat[None].to(dev),
        Ks=K[None].to(dev),
        width=width,
        height=height,
        sh_degree=min(sh_degree, max_deg),
        packed=False,
        absgrad=absgrad,
        rasterize_mode="antialiased" if antialiased else "classic",
        backgrounds=bg,
        render_mode=render_mode,
        backend=backend,
    )
    return out[0], alphas[0], info


class SplatRenderer:
    """A fixed splat model that renders any camera: the one renderer of splat runs, used by
    evaluation, the viewer's server-side modes, ``recon render``, mesh extraction and 2D hooks.

    Activations (exp of scales, sigmoid of opacities, SH concatenation) are applied once here.

    Args:
        splats: dict with ``means [N,3]``, ``quats [N,4]``, ``scales [N,3]`` (log),
            ``opacities [N]`` (logit), ``sh0 [N,1,3]``, ``shN [N,K,3]`` (tensors or arrays).
        antialiased: gsplat's antialiased rasterization (as the model was trained).
        sh_degree: SH degree to evaluate (default: the model's).
    """

    method = "splat"

    def __init__(self, splats, antialiased: bool = False, sh_degree: Optional[int] = None):
        def t(v):
            v = v.detach() if torch.is_tensor(v) else torch.from_numpy(np.ascontiguousarray(v))
            return v.float()

        self.means = t(splats["means"]).contiguous()
        self.quats = t(splats["quats"]).contiguous()
        self.log_scales = t(splats["scales"])
        self.scales = torch.exp(self.log_scales).contiguous()
        self.opacity_logits = t(splats["opacities"]).reshape(-1)
        self.opacities = torch.sigmoid(self.opacity_logits).contiguous()
        sh = t(splats["sh0"]).reshape(-1, 1, 3)
        shN = splats.get("shN")
        if shN is not None and shN.shape[1] > 0:
            sh = torch.cat([sh, t(shN)], dim=1)
        self.colors = sh.contiguous()
        self.max_sh_degree = int(round(math.sqrt(self.colors.shape[1]))) - 1
        self.sh_degree = self.max_sh_degree if sh_degree is None else min(int(sh_degree), self.max_sh_degree)
        self.antialiased = bool(antialiased)

    @property
    def num_primitives(self) -> int:
        return int(self.means.shape[0])

    def stats(self) -> dict[str, float]:
        return {"gaussians": self.num_primitives}

    def gaussians(self) -> dict[str, torch.Tensor]:
        """The model as a splat dict (log scales, logit opacities)."""
        return {"means": self.means, "quats": self.quats, "scales": self.log_scales,
                "opacities": self.opacity_logits, "sh0": self.colors[:, :1], "shN": self.colors[:, 1:]}

    def subset(self, mask) -> "SplatRenderer":
        """A renderer of the Gaussians selected by ``mask [N]`` (bool), e.g. a crop box."""
        m = torch.as_tensor(np.asarray(mask)) if not torch.is_tensor(mask) else mask
        g = {k: v[m] for k, v in self.gaussians().items()}
        return SplatRenderer(g, self.antialiased, self.sh_degree)

    def render(self, camera, time: Optional[float] = None, outputs: tuple[str, ...] = ("rgb",),
               background: Optional[torch.Tensor] = None):
        """Render ``camera`` (:class:`recon.scene.cameras.Camera`, OpenCV axes; or anything with
        ``viewmat``/``K``/``width``/``height``). Returns a :class:`recon.methods.base.RenderOutput`
        with ``rgb [H, W, 3]`` composited on ``background`` (``[3]``; ``None``: black),
        ``alpha [H, W, 1]`` and, when asked, ``depth [H, W, 1]`` (expected z). ``time`` is ignored
        (static model)."""
        from recon.methods.base import RenderOutput
        from recon.render import rasterization

        viewmat = camera.viewmat
        viewmat = viewmat.float() if torch.is_tensor(viewmat) else torch.from_numpy(np.asarray(viewmat, np.float32))
        K = camera.K
        K = K.float() if torch.is_tensor(K) else torch.from_numpy(np.asarray(K, np.float32))
        depth = "depth" in outputs
        bg = None
        if background is not None:
            bg = torch.as_tensor(background, dtype=torch.float32).reshape(1, 3).to(self.means.device)
        with torch.no_grad():
            out, alphas, info = rasterization(
                self.means, self.quats, self.scales, self.opacities, self.colors,
                viewmat[None].to(self.means.device), K[None].to(self.means.device), int(camera.width), int(camera.height), sh_degree=self.sh_degree,
                packed=False, rasterize_mode="antialiased" if self.antialiased else "classic",
                backgrounds=bg, render_mode="RGB+ED" if depth else "RGB",
            )
        out = out[0]
        return RenderOutput(rgb=out[..., :3], alpha=alphas[0], depth=out[..., 3:4] if depth else None,
                            aux={"info": info})
