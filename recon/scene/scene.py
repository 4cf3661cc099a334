"""The one in-memory description of a capture: frames (image + camera + extras) and sparse points.

Readers in ``recon.scene.readers`` build a :class:`Scene` from any supported folder; writers turn
one back into files. Images are not loaded here: :meth:`Scene.image` reads them lazily through a
bounded cache (``recon.scene.images``), so a scene of thousands of frames opens in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from recon.scene.cameras import Camera

SPLITS = ("train", "val", "test")


@dataclass
class Frame:
    """One view.

    Attributes:
        image_path: the image file (never modified).
        camera: intrinsics and OpenCV camera-to-world pose at the image's full resolution.
        split: "train", "val" or "test".
        mask_path: optional mask (white/nonzero = pixel is used, black = ignored).
        depth_path: optional depth map (``.npy`` metres/scene units, or 16-bit PNG in millimetres).
        time: optional timestamp in [0, 1] for dynamic scenes.
        name: a stable name for the frame (file stem by default).
    """

    image_path: Path
    camera: Camera
    split: str = "train"
    mask_path: Optional[Path] = None
    depth_path: Optional[Path] = None
    time: Optional[float] = None
    name: str = ""

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        if not self.name:
            self.name = self.image_path.stem


@dataclass
class Scene:
    """A set of posed frames plus optional sparse points.

    Attributes:
        frames: every frame, in a stable order.
        root: the folder the scene was read from.
        format: the reader that produced it ("colmap", "nerfstudio", "blender", "llff", "dnerf", ...).
        points: optional sparse points ``[P, 3]`` float64 in world units.
        point_colors: optional ``[P, 3]`` uint8 colours of ``points``.
        background: RGB in [0, 1] used to composite RGBA images (``None``: images are RGB).
        applied_transform: ``[4, 4]`` transform already applied to the poses relative to the source
            data (identity when the poses are as stored).
    """

    frames: list[Frame]
    root: Path
    format: str
    points: Optional[np.ndarray] = None
    point_colors: Optional[np.ndarray] = None
    background: Optional[tuple[float, float, float]] = None
    applied_transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    _cache: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.frames)

    def split(self, name: str) -> list[Frame]:
        """Frames of one split ("train", "val" or "test")."""
        return [f for f in self.frames if f.split == name]

    def indices(self, name: str) -> list[int]:
        """Indices into :attr:`frames` of one split."""
        return [i for i, f in enumerate(self.frames) if f.split == name]

    @property
    def has_time(self) -> bool:
        return any(f.time is not None for f in self.frames)

    def camera_centers(self) -> np.ndarray:
        """``[F, 3]`` camera centres in world coordinates."""
        return np.stack([f.camera.center for f in self.frames]) if self.frames else np.zeros((0, 3))

    def extent(self) -> float:
        """Scene radius used for learning-rate scaling: 1.1 x max camera distance from their mean."""
        c = self.camera_centers()
        if len(c) == 0:
            return 1.0
        r = float(np.linalg.norm(c - c.mean(0), axis=1).max()) * 1.1
        return r if r > 0 else 1.0
