"""Rasterization of 3D Gaussians: one gsplat-compatible entry point with CPU, gsplat and torch backends.

>>> from recon.render import rasterization
>>> colors, alphas, info = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, W, H)
"""

from recon.render.rasterization import rasterization

__all__ = ["rasterization"]
