"""The background at infinity of a voxel radiance field: a learned environment map.

A real capture sees far more than the field's box: sky, distant buildings, the room around a
figurine. Rays that leave the box with transmittance ``T`` left take ``T * env(direction)`` as
their background, where ``env`` is an RGB texture over the sphere of directions (latitude /
longitude, ``height x width`` texels, bilinear, stored as logits behind a sigmoid). It is the
distant part of the scene, seen the same from every camera position: what NeRF++ and Mip-NeRF 360
model with a second field or a contracted space, in its simplest form, which costs one texture
lookup per ray. It is trained with the field (its own Adam) and saved with it.

The map's pole is the capture's up direction (the mean of the training cameras' up vectors), so its
rows are elevations and its finest detail sits at the horizon, where real captures have it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def up_frame(c2ws: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation world -> map frame whose +z is the mean camera up (OpenCV cameras: up is
    ``-y`` of each camera). A capture without a consistent up gets the world frame."""
    up = -np.asarray(c2ws, np.float64)[:, :3, 1].mean(0)
    n = np.linalg.norm(up)
    if n < 0.3:  # cameras looking every which way: no up to trust
        return np.eye(3, dtype=np.float32)
    z = up / n
    a = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(a, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z]).astype(np.float32)


class EnvMap:
    """``logits [3, height, width]`` over (elevation, azimuth) in the frame ``rot`` (world -> map)."""

    def __init__(self, rot, height: int = 32, width: int = 64, logits: Optional[Tensor] = None,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rot = torch.as_tensor(np.asarray(rot, np.float32)).to(self.device)
        if logits is None:
            logits = torch.zeros(3, int(height), int(width))
        self.logits = logits.detach().to(self.device, torch.float32).clone()

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.logits.shape[1]), int(self.logits.shape[2])

    def coords(self, dirs: Tensor) -> Tensor:
        """``[R, 2]`` grid_sample coordinates (azimuth, elevation) in [-1, 1] of unit ``dirs``."""
        d = dirs.to(self.rot) @ self.rot.T
        az = torch.atan2(d[:, 1], d[:, 0]) / torch.pi
        el = torch.asin(d[:, 2].clamp(-1.0, 1.0)) * (2.0 / torch.pi)
        return torch.stack([az, -el], -1)

    def __call__(self, dirs: Tensor, logits: Optional[Tensor] = None) -> Tensor:
        """``[R, 3]`` colours of the directions (``logits``: the parameter to differentiate, default
        the map's own)."""
        lg = self.logits if logits is None else logits
        g = self.coords(dirs)[None, :, None, :]  # [1, R, 1, 2]
        v = F.grid_sample(lg[None], g, mode="bilinear", padding_mode="border", align_corners=False)
        return torch.sigmoid(v[0, :, :, 0].T)

    def fit_median(self, dirs: Tensor, rgb: Tensor) -> None:
        """Start the map at the median colour (by luminance) of the training pixels whose rays point
        into each texel: a direction that sometimes meets the object and mostly meets the distant
        scene starts as the distant scene. Texels no ray points into take the overall median."""
        H, W = self.shape
        g = self.coords(dirs.to(self.device)).cpu()
        ix = ((g[:, 0] + 1) * 0.5 * W).long().clamp(0, W - 1)
        iy = ((g[:, 1] + 1) * 0.5 * H).long().clamp(0, H - 1)
        k = iy * W + ix
        rgb = rgb.to(torch.float32).cpu()
        lum = rgb @ torch.tensor([0.299, 0.587, 0.114])
        order = torch.argsort(k.to(torch.float64) * 4.0 + lum.clamp(0, 1).to(torch.float64))
        cnt = torch.bincount(k, minlength=H * W)
        start = torch.cumsum(cnt, 0) - cnt
        mid = order[(start + cnt // 2).clamp(max=len(order) - 1)]
        overall = rgb[torch.argsort(lum)[len(lum) // 2]]
        col = torch.where(cnt[:, None] > 0, rgb[mid], overall)
        col = col.clamp(0.02, 0.98)
        self.logits = torch.log(col / (1 - col)).T.reshape(3, H, W).contiguous().to(self.device)

    def state(self) -> dict:
        return {"rot": self.rot.cpu().clone(), "logits": self.logits.detach().cpu().clone()}

    @classmethod
    def from_state(cls, s: dict, device="cpu") -> "EnvMap":
        return cls(s["rot"], logits=torch.as_tensor(s["logits"]), device=device)

    def to(self, device) -> "EnvMap":
        return EnvMap.from_state(self.state(), device)
