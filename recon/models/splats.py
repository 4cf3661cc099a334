"""3D Gaussian splats: parameters in gsplat's names and parameterisation.

A model is a ``torch.nn.ParameterDict`` with
``means [N,3]``, ``quats [N,4]`` (wxyz, unnormalised), ``scales [N,3]`` (log),
``opacities [N]`` (logit), ``sh0 [N,1,3]`` and ``shN [N,K,3]`` with ``K = (D+1)^2 - 1``,
so gsplat's ``DefaultStrategy`` and ``MCMCStrategy`` apply unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

SH_C0 = 0.28209479177387814


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


def splats_to_numpy(splats) -> dict[str, np.ndarray]:
    """Detached float32 numpy copies of every tensor in a splat dict."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in splats.items()}


def count(splats) -> int:
    return int(splats["means"].shape[0])


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
    """A fixed splat model that renders cameras (for evaluation, viewers and exporters)."""

    def __init__(self, splats: dict, antialiased: bool = False):
        self.splats = {k: v.detach() for k, v in splats.items()}
        self.antialiased = antialiased
        self.sh_degree = int(round(math.sqrt(1 + self.splats["shN"].shape[1]))) - 1

    @property
    def num_primitives(self) -> int:
        return int(self.splats["means"].shape[0])

    def render(self, viewmat, K, width, height, background=None, step=None, render_mode="RGB"):
        return render_splats(
            self.splats, viewmat, K, width, height, self.sh_degree, background, render_mode,
            antialiased=self.antialiased,
        )
