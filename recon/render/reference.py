"""Dense pure-PyTorch compositing: every projected Gaussian against every pixel, autograd backward.

The slow, obviously-correct reference for the tile kernels (``backend="torch"``); meant for small
images and a few thousand Gaussians. It implements gsplat 1.5.3's compositing rules exactly:

* a Gaussian only touches pixels in the tiles its box overlaps (as gsplat's tile binning);
* front to back by z-depth (ties by index); ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy`` with
  ``d = mean2d - pixel_centre``; ``alpha = min(0.999, opacity * exp(-sigma))``;
  skipped when ``sigma < 0`` or ``alpha < 1/255``;
* termination: a Gaussian that would bring the transmittance to ``<= 1e-4`` is not drawn and ends
  the pixel (so do all later ones);
* ``colour = sum_i c_i alpha_i T_i + T_final * background``, ``alpha = 1 - T_final``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from recon.render.projection import ALPHA_THRESHOLD, n_tiles, tile_ranges

ALPHA_MAX = 0.999
T_MIN = 1e-4


def composite_dense(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    colors: Tensor,  # [M, D]
    opacities: Tensor,  # [M]
    depths: Tensor,  # [M]
    radii: Tensor,  # [M, 2] int32
    image_ids: Tensor,  # [M] int
    n_images: int,
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,  # [I, D]
) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians (flat over (image, Gaussian) pairs) into ``n_images`` images.

    Returns ``render_colors [I, H, W, D]`` and ``render_alphas [I, H, W, 1]``.
    """
    D = colors.shape[-1]
    tw, th = n_tiles(width, height, tile_size)
    dev = means2d.device
    ys, xs = torch.meshgrid(
        torch.arange(height, device=dev), torch.arange(width, device=dev), indexing="ij"
    )
    px = xs.reshape(-1).to(means2d.dtype) + 0.5
    py = ys.reshape(-1).to(means2d.dtype) + 0.5
    ptx = (xs.reshape(-1) // tile_size)[:, None]
    pty = (ys.reshape(-1) // tile_size)[:, None]
    boxes = tile_ranges(means2d, radii, tile_size, tw, th)
    visible = (radii > 0).all(dim=-1)
    outs, alphas = [], []
    for img in range(n_images):
        sel = torch.nonzero(visible & (image_ids == img)).squeeze(-1)
        if sel.numel() == 0:
            col = torch.zeros(height * width, D, dtype=colors.dtype, device=dev)
            T_final = torch.ones(height * width, dtype=colors.dtype, device=dev)
        else:
            order = torch.sort(depths.detach()[sel], stable=True).indices
            sel = sel[order]
            m = means2d[sel]
            cn = conics[sel]
            dx = m[None, :, 0] - px[:, None]  # [P, V]
            dy = m[None, :, 1] - py[:, None]
            sigma = 0.5 * (cn[None, :, 0] * dx * dx + cn[None, :, 2] * dy * dy) + cn[None, :, 1] * dx * dy
            alpha = torch.clamp_max(opacities[sel][None, :] * torch.exp(-sigma), ALPHA_MAX)
            b = boxes[sel]
            in_tile = (ptx >= b[None, :, 0]) & (ptx < b[None, :, 1]) & (pty >= b[None, :, 2]) & (pty < b[None, :, 3])
            with torch.no_grad():
                ok = in_tile & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
                a0 = torch.where(ok, alpha, torch.zeros_like(alpha))
                T_incl = torch.cumprod(1.0 - a0, dim=1)
                drawn = ok & (T_incl > T_MIN)
            a = torch.where(drawn, alpha, torch.zeros_like(alpha))
            T = torch.cumprod(1.0 - a, dim=1)
            T_excl = torch.cat([torch.ones_like(T[:, :1]), T[:, :-1]], dim=1)
            w = a * T_excl
            col = w @ colors[sel]
            T_final = T[:, -1]
        if backgrounds is not None:
            col = col + T_final[:, None] * backgrounds[img][None, :]
        outs.append(col.reshape(height, width, D))
        alphas.append((1.0 - T_final).reshape(height, width, 1))
    return torch.stack(outs, 0), torch.stack(alphas, 0)
