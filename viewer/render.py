"""Server-side rendering of a run with recon's rasterizer (for depth/alpha views and reference images)."""

from __future__ import annotations

import numpy as np
import torch

from recon.scene.conventions import c2w_to_viewmat

MODES = ("RGB (server)", "Depth", "Alpha")


def available() -> bool:
    """Whether ``recon.render.rasterization`` can be imported."""
    try:
        from recon.render import rasterization  # noqa: F401
    except ImportError:
        return False
    return True


class SplatRenderer:
    """Renders one splat set from arbitrary cameras (activations applied once, at construction).

    Args:
        splats: recon splat dict (``means [N,3]``, ``quats [N,4]``, log ``scales [N,3]``, logit
            ``opacities [N]``, ``sh0 [N,1,3]``, ``shN [N,K,3]``).
    """

    def __init__(self, splats: dict[str, torch.Tensor]):
        self.means = splats["means"].detach().float().cpu().contiguous()
        self.quats = splats["quats"].detach().float().cpu().contiguous()
        self.scales = torch.exp(splats["scales"].detach().float().cpu()).contiguous()
        self.opacities = torch.sigmoid(splats["opacities"].detach().float().cpu()).contiguous()
        shN = splats.get("shN")
        sh = splats["sh0"].detach().float().cpu()
        if shN is not None and shN.shape[1] > 0:
            sh = torch.cat([sh, shN.detach().float().cpu()], dim=1)
        self.colors = sh.contiguous()
        self.sh_degree = int(round(np.sqrt(self.colors.shape[1]))) - 1

    def render(self, c2w: np.ndarray, K: np.ndarray, width: int, height: int, mode: str = "RGB (server)",
               background: tuple[float, float, float] = (0.0, 0.0, 0.0),
               mask: np.ndarray | None = None) -> np.ndarray:
        """``uint8 [H, W, 3]`` image: colour, turbo-coloured expected depth, or alpha.

        ``c2w``: OpenCV camera-to-world ``[4, 4]``; ``K``: ``[3, 3]`` for ``width x height``;
        ``mask``: optional ``[N]`` bool subset of Gaussians to draw (e.g. a crop box).
        """
        from recon.render import rasterization

        sel = (lambda t: t) if mask is None else (lambda t: t[torch.from_numpy(np.asarray(mask))])
        viewmat = torch.from_numpy(c2w_to_viewmat(c2w)).float()[None]
        Ks = torch.from_numpy(np.asarray(K, np.float64)).float()[None]
        bg = torch.tensor([list(background)], dtype=torch.float32)
        rmode = "RGB" if mode == "RGB (server)" else "RGB+ED"
        with torch.no_grad():
            colors, alphas, _ = rasterization(
                sel(self.means), sel(self.quats), sel(self.scales), sel(self.opacities), sel(self.colors),
                viewmat, Ks, int(width), int(height), sh_degree=self.sh_degree, render_mode=rmode,
                backgrounds=bg if mode == "RGB (server)" else None,
            )
        if mode == "RGB (server)":
            img = colors[0, ..., :3].clamp(0, 1).numpy()
        elif mode == "Alpha":
            img = np.repeat(alphas[0].clamp(0, 1).numpy(), 3, axis=2)
        else:
            depth = colors[0, ..., 3].numpy()
            alpha = alphas[0, ..., 0].numpy()
            img = colorize_depth(depth, alpha > 0.5, background)
        return (img * 255.0 + 0.5).astype(np.uint8)


def colorize_depth(depth: np.ndarray, valid: np.ndarray, background=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Turbo colour map of ``depth [H, W]`` over its 2nd-98th percentile where ``valid``."""
    from matplotlib import colormaps

    out = np.empty(depth.shape + (3,), np.float32)
    out[:] = np.asarray(background, np.float32)
    if valid.any():
        lo, hi = np.percentile(depth[valid], [2, 98])
        t = np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1)
        out[valid] = colormaps["turbo"](t[valid])[:, :3]
    return out
