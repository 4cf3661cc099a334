"""Server-side rendering of a run with recon's rasterizer (for depth/alpha views and reference images)."""

from __future__ import annotations

import numpy as np
import torch


MODES = ("RGB (server)", "Depth", "Alpha")


class SplatRenderer:
    """The viewer's server-side modes over the run's one renderer
    (:class:`recon.models.splats.SplatRenderer`), honouring the run's antialiased setting.

    Args:
        splats: recon splat dict (``means [N,3]``, ``quats [N,4]``, log ``scales [N,3]``, logit
            ``opacities [N]``, ``sh0 [N,1,3]``, ``shN [N,K,3]``).
        antialiased: whether the model was trained with antialiased rasterization.
        dynamic: a dynamic run's own renderer (:class:`recon.deform.model.Splat4DRenderer`, the
            Gaussians at a time via ``at(time)``); :meth:`render` then draws the model at its
            ``time`` (``splats`` is the model at time 0, the same Gaussians in the same order).
    """

    def __init__(self, splats: dict[str, torch.Tensor], antialiased: bool = False, dynamic=None):
        from recon.models.splats import SplatRenderer as ModelRenderer

        self.model = ModelRenderer({k: v.detach().float().cpu() for k, v in splats.items()}, antialiased=antialiased)
        self.sh_degree = self.model.sh_degree
        self.dynamic = dynamic

    def render(self, c2w: np.ndarray, K: np.ndarray, width: int, height: int, mode: str = "RGB (server)",
               background: tuple[float, float, float] = (0.0, 0.0, 0.0),
               mask: np.ndarray | None = None, time: float | None = None) -> np.ndarray:
        """``uint8 [H, W, 3]`` image: colour, turbo-coloured expected depth, or alpha.

        ``c2w``: OpenCV camera-to-world ``[4, 4]``; ``K``: ``[3, 3]`` for ``width x height``;
        ``mask``: optional ``[N]`` bool subset of Gaussians to draw (e.g. a crop box);
        ``time``: scene time in [0, 1] for a dynamic run (ignored by a static one; None: 0).
        """
        from recon.scene.cameras import Camera

        model = self.model if self.dynamic is None else self.dynamic.at(0.0 if time is None else float(time))
        model = model if mask is None else model.subset(np.asarray(mask, bool))
        cam = Camera(K=np.asarray(K, np.float64), width=int(width), height=int(height), c2w=np.asarray(c2w, np.float64))
        rgb_mode = mode == "RGB (server)"
        out = model.render(cam, outputs=("rgb",) if rgb_mode else ("rgb", "depth"),
                           background=torch.tensor(background, dtype=torch.float32) if rgb_mode else None)
        if rgb_mode:
            img = out.rgb.clamp(0, 1).numpy()
        elif mode == "Alpha":
            img = np.repeat(out.alpha.clamp(0, 1).numpy(), 3, axis=2)
        else:
            img = colorize_depth(out.depth[..., 0].numpy(), out.alpha[..., 0].numpy() > 0.5, background)
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
