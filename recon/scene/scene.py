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

from recon.errors import ReconError
from recon.scene.cameras import Camera, check_camera

SPLITS = ("train", "val", "test")


def outside_frame_path(frames: "list[Frame]", root: "str | Path") -> "Optional[tuple[int, str, Path]]":
    """The first ``(frame index, field, path)`` that escapes the scene folder, or ``None``.

    A frame's image, mask and depth must lie inside ``root`` (compared lexically: links inside
    the folder may point anywhere). One exception keeps an index written apart from its images
    working (``write_transforms_json(scene, elsewhere)`` refers back to them with ``../``): when
    *no* frame image is inside ``root``, the files only have to share one folder, which every
    path then trivially does. A mix (some frames inside, one pointing out) is refused.
    """
    import os

    images = [os.path.abspath(f.image_path) for f in frames]
    if images and not any(is_inside(root, p) for p in images):
        return None  # an index apart from its images: the images' own folder is the scene folder
    for i, f in enumerate(frames):
        for what, p in (("image", f.image_path), ("mask", f.mask_path), ("depth", f.depth_path)):
            if p is not None and not is_inside(root, p):
                return i, what, Path(p)
    return None


def is_inside(root: "str | Path", path: "str | Path") -> bool:
    """Whether ``path`` lies inside the folder ``root``, compared lexically (``..`` collapsed,
    symbolic links not followed: a link inside the folder counts as inside)."""
    import os

    r = os.path.normpath(os.path.abspath(root))
    p = os.path.normpath(os.path.abspath(path))
    try:
        return os.path.commonpath([r, p]) == r
    except ValueError:  # different drives on Windows
        return False


@dataclass
class Frame:
    """One view.

    Attributes:
        image_path: the image file (never modified).
        camera: intrinsics and OpenCV camera-to-world pose at the image's full resolution;
            ``None`` for a plain image folder that has no poses yet.
        split: "train", "val" or "test" ("unused" for frames a file's split lists leave out).
        mask_path: optional mask (white/nonzero = pixel is used, black = ignored).
        depth_path: optional depth map (``.npy`` metres/scene units, or 16-bit PNG in millimetres).
        time: optional timestamp in [0, 1] for dynamic scenes.
        name: a stable name for the frame (file stem by default).
    """

    image_path: Path
    camera: Optional[Camera]
    split: str = "train"
    mask_path: Optional[Path] = None
    depth_path: Optional[Path] = None
    time: Optional[float] = None
    name: str = ""
    source_camera: Optional[Camera] = None
    """The distorted camera the image was taken with, when :meth:`Scene.undistorted` replaced
    :attr:`camera` by a pinhole one: image, mask and depth are remapped to :attr:`camera` on load."""

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
        depth_range: ``(near, far)`` depth bounds of the content (LLFF's), or ``None``.
    """

    frames: list[Frame]
    root: Path
    format: str
    points: Optional[np.ndarray] = None
    point_colors: Optional[np.ndarray] = None
    background: Optional[tuple[float, float, float]] = None
    applied_transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    depth_range: Optional[tuple[float, float]] = None
    """``(near, far)`` scene depths the content lies between, when the format gives them (LLFF bounds)."""
    background_key: Optional[tuple[float, float, float]] = None
    """Backdrop colour of RGB images keyed to alpha (:mod:`recon.scene.backdrop`; ``None``: no key)."""
    declared_backdrop: Optional[tuple[float, float, float]] = None
    """The plain backdrop colour the format declares for its RGB images (a nerfstudio
    ``background_color``, as recon's synthetic scenes write); ``--background-key auto`` then keys them."""
    time_source: Optional[str] = None
    """Where the frames' times come from when they are not a dynamic capture's own: ``"video"``
    for one video's frame times (``recon process VIDEO``), which static methods ignore (the subject
    may not move) and dynamic methods train on; ``None`` otherwise."""
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

    @property
    def has_poses(self) -> bool:
        """Whether every frame has a camera (false for a plain image folder)."""
        return bool(self.frames) and all(f.camera is not None for f in self.frames)

    def camera_centers(self) -> np.ndarray:
        """``[F, 3]`` camera centres in world coordinates (frames without a camera are skipped)."""
        c = [f.camera.center for f in self.frames if f.camera is not None]
        return np.stack(c) if c else np.zeros((0, 3))

    def validate(self) -> "Scene":
        """Check every frame before any work; raise :class:`ReconError` naming the frame and field.

        Checks: each camera (size in 1..131072 px, positive finite focal lengths, finite principal
        point, distortion and pose, a rotation block that is a rotation: see
        :func:`recon.scene.cameras.check_camera`); frame times finite; image, mask and depth paths
        inside :attr:`root` (see :func:`outside_frame_path`); sparse points finite. Readers run the same checks with the exact field of
        their format as they read; this is the backstop for scenes built in code. Returns self.
        """
        out = outside_frame_path(self.frames, self.root)
        if out is not None:
            i, what, p = out
            raise ReconError(
                f"{self.root} frame {i} ({self.frames[i].name}): {what} path {p} is outside the scene folder {self.root}; "
                "move the file into the scene folder (or link it there) and reference it by a relative path"
            )
        for i, f in enumerate(self.frames):
            where = f"{self.root} frame {i} ({f.name})"
            if f.camera is not None:
                check_camera(f.camera, where)
            if f.time is not None and not np.isfinite(f.time):
                raise ReconError(f"{where}: time = {f.time} is not finite; use a number in [0, 1]")
        if self.points is not None and len(self.points) and not np.all(np.isfinite(self.points)):
            raise ReconError(f"{self.root}: sparse points have non-finite coordinates; fix or remove the point cloud")
        return self

    @property
    def distorted_frames(self) -> list[int]:
        """Indices of frames whose camera carries lens distortion (see :mod:`recon.scene.undistort`)."""
        from recon.scene.undistort import is_distorted

        return [i for i, f in enumerate(self.frames) if f.camera is not None and is_distorted(f.camera)]

    def undistorted(self) -> "Scene":
        """This scene with every distorted camera replaced by its pinhole camera
        (:func:`recon.scene.undistort.pinhole_for`); images, masks and depth maps are remapped as
        they are decoded. Returns ``self`` when no camera is distorted. The files are untouched."""
        import dataclasses

        from recon.scene.undistort import pinhole_for

        todo = set(self.distorted_frames)
        if not todo:
            return self
        pins: dict[bytes, Camera] = {}
        frames = []
        for i, f in enumerate(self.frames):
            if i not in todo:
                frames.append(dataclasses.replace(f))
                continue
            cam = f.camera
            key = b"".join(a.tobytes() for a in (cam.K, cam.dist)) + f"{cam.model}{cam.width}x{cam.height}".encode()
            if key not in pins:
                pins[key] = pinhole_for(cam)
            pin = pins[key].copy()
            pin.c2w = cam.c2w.copy()
            frames.append(dataclasses.replace(f, camera=pin, source_camera=cam))
        return dataclasses.replace(self, frames=frames, _cache=None)

    # ------------------------------------------------------------------------------------------
    # Lazy pixels. Nothing is decoded until asked for; results go through a bounded LRU cache.

    @property
    def cache(self):
        """The :class:`recon.scene.images.ImageCache` behind :meth:`image` and friends."""
        if self._cache is None:
            from recon.scene.images import ImageCache, env_cache_bytes

            self._cache = ImageCache(env_cache_bytes())
        return self._cache

    def set_cache_bytes(self, max_bytes: int) -> None:
        """Set the image cache budget in bytes (0 disables caching)."""
        self.cache.set_max_bytes(max_bytes)

    def _frame(self, i: int) -> Frame:
        try:
            return self.frames[i]
        except (IndexError, TypeError):
            raise IndexError(f"frame index {i!r} out of range for a scene of {len(self.frames)} frames") from None

    def _size(self, i: int, downscale: float) -> tuple[int, int]:
        """``(w, h)`` of frame ``i`` after ``downscale``, from its camera or (no camera) its header."""
        from recon.scene.images import downscaled_size, image_size

        f = self._frame(i)
        if f.camera is not None:
            w, h = f.camera.width, f.camera.height
        else:
            w, h = image_size(f.image_path)
        return downscaled_size(w, h, downscale)

    def _rgba(self, i: int, downscale: float) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Cached ``(rgb [h, w, 3], alpha [h, w] or None)``; not copies: callers copy."""
        from recon.scene.images import decode, match_orientation, resize, split_rgba

        f = self._frame(i)
        size = self._size(i, downscale)
        bg = None if self.background is None else tuple(float(v) for v in self.background)
        bkey = None if self.background_key is None else tuple(float(v) for v in self.background_key)
        key = ("rgba", str(f.image_path), size, bg, bkey)
        found, value = self.cache.peek(key)
        if found:
            return value  # type: ignore[return-value]
        arr = decode(f.image_path)
        if f.camera is not None:
            arr = match_orientation(arr, f.image_path, (f.camera.width, f.camera.height))
        if f.source_camera is not None:
            from recon.scene.undistort import undistort_array

            arr = undistort_array(arr, f.source_camera, f.camera)
        rgb, alpha = split_rgba(arr, bg)
        if alpha is None and bkey is not None:
            from recon.scene.backdrop import key_alpha

            alpha = key_alpha(rgb, bkey)
        rgb = resize(rgb, size)
        alpha = None if alpha is None else resize(alpha, size)
        value = (rgb, alpha)
        self.cache.put(key, value)
        return value

    def image(self, i: int, downscale: float = 1.0) -> np.ndarray:
        """Frame ``i``'s image as float32 ``[H, W, 3]`` in [0, 1] (sRGB, as stored).

        ``H, W = round(height / downscale), round(width / downscale)``, matching
        :meth:`camera` ``(i, downscale)`` exactly; shrinking uses an area (box) filter. RGBA
        sources are composited on :attr:`background` when it is set, else their RGB is returned
        as stored. EXIF orientation is honoured. Returns a new array each call.
        """
        rgb, _ = self._rgba(i, downscale)
        return rgb.copy()

    def alpha(self, i: int, downscale: float = 1.0) -> Optional[np.ndarray]:
        """Frame ``i``'s alpha channel as float32 ``[H, W]`` in [0, 1], or ``None`` if it has none."""
        _, a = self._rgba(i, downscale)
        return None if a is None else a.copy()

    def mask(self, i: int, downscale: float = 1.0) -> Optional[np.ndarray]:
        """Frame ``i``'s mask as bool ``[H, W]`` (True = pixel is used), or ``None`` without one.

        The mask is area-resized to the image size and thresholded at 0.5.
        """
        from recon.scene.images import read_mask, resize

        f = self._frame(i)
        if f.mask_path is None:
            return None
        size = self._size(i, downscale)

        def load() -> np.ndarray:
            m = read_mask(f.mask_path)
            if f.source_camera is not None:
                from recon.scene.undistort import undistort_array

                m = undistort_array(m, f.source_camera, f.camera)
            return resize(m, size) >= 0.5

        return self.cache.get(("mask", str(f.mask_path), size), load)  # type: ignore[return-value]

    def depth(self, i: int, downscale: float = 1.0) -> Optional[np.ndarray]:
        """Frame ``i``'s depth as float32 ``[H, W]`` in scene units (0 = unknown), or ``None``.

        Resized to the image size with nearest-neighbour sampling (blending depths across an
        edge would invent surfaces). See :func:`recon.scene.images.read_depth` for file units.
        """
        from recon.scene.images import read_depth, resize

        f = self._frame(i)
        if f.depth_path is None:
            return None
        size = self._size(i, downscale)

        def load() -> np.ndarray:
            d = read_depth(f.depth_path)
            if f.source_camera is not None:
                from recon.scene.undistort import undistort_array

                d = undistort_array(d, f.source_camera, f.camera, nearest=True)
            return resize(d, size, nearest=True)

        return self.cache.get(("depth", str(f.depth_path), size), load)  # type: ignore[return-value]

    def camera(self, i: int, downscale: float = 1.0) -> Camera:
        """Frame ``i``'s camera for the image :meth:`image` ``(i, downscale)`` returns.

        Intrinsics scale by the exact ratio of the rounded size; the pose is unchanged.
        Raises :class:`ReconError` for a frame without a camera (a plain image folder).
        """
        from recon.scene.images import downscaled_size

        f = self._frame(i)
        if f.camera is None:
            raise ReconError(
                f"{f.image_path}: no camera pose (scene {self.root} is a {self.format!r} folder); "
                "estimate poses first, e.g. with structure-from-motion"
            )
        w, h = downscaled_size(f.camera.width, f.camera.height, downscale)
        return f.camera.resized(w, h)

    def extent(self) -> float:
        """Scene radius used for learning-rate scaling: 1.1 x max camera distance from their mean."""
        c = self.camera_centers()
        if len(c) == 0:
            return 1.0
        r = float(np.linalg.norm(c - c.mean(0), axis=1).max()) * 1.1
        return r if r > 0 else 1.0
