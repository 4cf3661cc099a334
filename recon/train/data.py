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
        self.replaced: dict[int, tuple[torch.Tensor, Optional[torch.Tensor]]] = {}
        """Targets replaced during training (:meth:`replace`): ``k -> (image, alpha)``, in memory only."""
        self._originals: dict[int, View] = {}

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, k: int) -> View:
        """The ``k``-th view of this split."""
        if k in self._cache:
            return self._cache[k]
        v = self._replaced_view(k) if k in self.replaced else self._load(k)
        if self.preload:
            self._cache[k] = v
        return v

    def _load(self, k: int) -> View:
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
        return View(
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

    def original(self, k: int) -> View:
        """The ``k``-th view as the scene stores it (before any :meth:`replace`)."""
        if k not in self.replaced:
            return self.get(k)
        if k not in self._originals:
            self._originals[k] = self._load(k)
        return self._originals[k]

    def replace(self, k: int, image: torch.Tensor, alpha: Optional[torch.Tensor] = None) -> View:
        """Replace the target of the ``k``-th view for the rest of training (in memory: the scene's
        files are never touched). ``image``: ``[H, W, 3]`` float in [0, 1] at this view's size,
        composited on the scene background like :attr:`View.image`; ``alpha``: ``[H, W]`` or
        ``[H, W, 1]`` coverage, or ``None`` to keep the view's own. Both are kept at 8 bits per
        channel, as frames are stored (checkpoints hold them as bytes). Methods that copy targets
        out of the views (ray samplers) must refresh them (:meth:`recon.methods.base.Method.target_replaced`)."""
        if not 0 <= k < len(self):
            raise ReconError(f"replace_target: view {k} is not a training view (0..{len(self) - 1})")
        cam = self.cameras[k]
        img = torch.as_tensor(image, dtype=torch.float32).detach().cpu()
        if tuple(img.shape) != (cam.height, cam.width, 3):
            raise ReconError(f"replace_target: view {k} needs an image of {cam.height}x{cam.width}x3, got "
                             f"{'x'.join(map(str, img.shape))}")
        if k not in self.replaced:
            self._originals[k] = self.get(k)
        if alpha is not None:
            a = _bytes(torch.as_tensor(alpha, dtype=torch.float32).detach().cpu().reshape(cam.height, cam.width, 1))
        else:
            a = self.replaced[k][1] if k in self.replaced else self._originals[k].alpha
        self.replaced[k] = (_bytes(img), a)
        self._cache.pop(k, None)
        return self.get(k)

    def replaced_state(self) -> dict[int, tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """The replaced targets as bytes for a checkpoint: ``k -> (image uint8, alpha uint8 or None)``
        (``None``: the frame's own alpha)."""
        def u8(x):
            return torch.round(x * 255.0).to(torch.uint8)

        return {int(k): (u8(img), None if a is None or a is self._originals[k].alpha else u8(a))
                for k, (img, a) in self.replaced.items()}

    def load_replaced_state(self, state: dict) -> list[int]:
        """Undo every replacement, then apply those of :meth:`replaced_state`; returns the views
        whose targets changed (to refresh)."""
        touched = sorted(set(self.replaced) | {int(k) for k in state})
        for k in list(self.replaced):
            self.restore(k)
        for k, (img, a) in state.items():
            self.replace(int(k), img.float() / 255.0, None if a is None else a.float() / 255.0)
        return touched

    def restore(self, k: int) -> None:
        """Undo :meth:`replace`: view ``k`` trains on its frame again."""
        self.replaced.pop(k, None)
        self._cache.pop(k, None)
        orig = self._originals.pop(k, None)
        if orig is not None and self.preload:
            self._cache[k] = orig

    def _replaced_view(self, k: int) -> View:
        from dataclasses import replace as dc_replace

        image, alpha = self.replaced[k]
        return dc_replace(self.original(k), image=image, alpha=alpha)


def _bytes(x: torch.Tensor) -> torch.Tensor:
    """``x`` clamped to [0, 1] and rounded to 1/255 steps (what an 8-bit frame holds)."""
    return (torch.round(x.clamp(0, 1) * 255.0) / 255.0).contiguous()


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
