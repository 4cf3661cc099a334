"""Training views: images, masks and cameras of one split at one downscale, as tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from recon.errors import ReconError
from recon.scene.cameras import Camera
from recon.scene.scene import Scene


@dataclass
class View:
    """One view ready for the loss.

    Attributes:
        image: ``[H, W, 3]`` float32 in [0, 1] (RGBA sources composited on the scene background).
        alpha: ``[H, W, 1]`` float32 coverage for RGBA sources, else ``None``.
        mask: ``[H, W, 1]`` float32 (1 = pixel used) or ``None``.
        viewmat: ``[4, 4]`` float32 world-to-camera (OpenCV axes).
        K: ``[3, 3]`` float32 intrinsics at this resolution.
    """

    index: int
    image: torch.Tensor
    alpha: Optional[torch.Tensor]
    mask: Optional[torch.Tensor]
    viewmat: torch.Tensor
    K: torch.Tensor
    camera: Camera
    name: str
    time: Optional[float] = None
    depth: Optional[torch.Tensor] = None
    """``[H, W]`` float32 depth map in scene units (0 = unknown), when the views load depth."""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


class Views:
    """The frames ``indices`` of ``scene`` at ``downscale``; images stay in the scene's bounded cache
    unless they fit in ``preload_bytes``, in which case they are decoded once and kept as tensors."""

    def __init__(self, scene: Scene, indices: list[int], downscale: float, preload_bytes: float = 3e9,
                 with_depth: bool = False):
        self.scene = scene
        self.with_depth = with_depth
        self.indices = list(indices)
        self.downscale = float(downscale)
        self.cameras = [scene.camera(i, self.downscale) for i in self.indices]
        self._cache: dict[int, View] = {}
        est = sum(c.width * c.height * 4 * 5 for c in self.cameras)
        self.preload = est <= preload_bytes

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, k: int) -> View:
        """The ``k``-th view of this split."""
        if k in self._cache:
            return self._cache[k]
        i = self.indices[k]
        cam = self.cameras[k]
        img = torch.from_numpy(np.ascontiguousarray(self.scene.image(i, self.downscale), dtype=np.float32))
        a = self.scene.alpha(i, self.downscale)
        alpha = None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[..., None]
        m = self.scene.mask(i, self.downscale)
        mask = None if m is None else torch.from_numpy(np.ascontiguousarray(m)).float()[..., None]
        if img.shape[0] != cam.height or img.shape[1] != cam.width:
            raise ReconError(
                f"image {self.scene.frames[i].image_path} is {img.shape[1]}x{img.shape[0]} but its camera "
                f"says {cam.width}x{cam.height}; fix the width/height (or intrinsics) of that frame"
            )
        depth = None
        if self.with_depth:
            d = self.scene.depth(i, self.downscale)
            depth = None if d is None else torch.from_numpy(np.ascontiguousarray(d, dtype=np.float32))
        v = View(
            depth=depth,
            index=i,
            image=img,
            alpha=alpha,
            mask=mask,
            viewmat=torch.from_numpy(cam.viewmat.astype(np.float32)),
            K=torch.from_numpy(cam.K.astype(np.float32)),
            camera=cam,
            name=self.scene.frames[i].name,
            time=self.scene.frames[i].time,
        )
        if self.preload:
            self._cache[k] = v
        return v


class ViewSampler:
    """Whole training views in a shuffled order (a new permutation each epoch), as
    :class:`recon.methods.base.Batch` es.

    RGBA captures are recomposited from the stored background onto this step's background
    (``background="random"``: a random colour per step, so the model cannot paint the background
    into the scene); other captures keep their pixels. The order is part of the checkpoint.
    """

    def __init__(self, views: Views, background: str, scene_background=None):
        self.views = views
        self.mode = background
        bg = scene_background
        self.scene_bg = torch.tensor(bg if bg is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        self.order: list[int] = []

    def next_index(self, gen: torch.Generator) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.views), generator=gen).tolist()
        return self.order.pop()

    def background(self, has_alpha: bool, gen: torch.Generator) -> torch.Tensor:
        if has_alpha and self.mode == "random":
            return torch.rand(3, generator=gen)
        if self.mode == "white":
            return torch.ones(3)
        if self.mode == "black":
            return torch.zeros(3)
        return self.scene_bg.clone()

    def next(self, gen: torch.Generator, device: torch.device):
        from recon.methods.base import Batch

        k = self.next_index(gen)
        view = self.views.get(k)
        bg = self.background(view.alpha is not None, gen)
        target = view.image
        if view.alpha is not None:
            # Recomposite the stored image (on the scene background) onto this step's background.
            target = target + (bg - self.scene_bg) * (1.0 - view.alpha)
        return Batch(
            kind="view", index=k, target=target.to(device), background=bg.to(device),
            alpha=None if view.alpha is None else view.alpha.to(device),
            mask=None if view.mask is None else view.mask.to(device), view=view, time=view.time,
            extras={} if view.depth is None else {"depth": view.depth.to(device)},
        )

    def state_dict(self) -> dict:
        return {"order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.order = list(state["order"])
