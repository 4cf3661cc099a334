"""Alpha for RGB images of an object on a solid backdrop (a synthetic render on black or white, a
studio sweep): a colour key.

Images without an alpha channel leave the empty space around an object unconstrained: a splat that
has the backdrop's colour (black Gaussians on a black render) costs nothing in training views and
occludes the object from new viewpoints. Keying the backdrop gives such images an alpha channel, so
training can use what RGBA captures get: random backgrounds (``--background random``) and the alpha
loss (``--alpha-weight``).

The key (:func:`key_alpha`): a pixel is backdrop when every channel is within ``tolerance`` of the
backdrop colour *and* it is connected to the image border through pixels within ``3 * tolerance``
(so dark or white parts inside the object stay opaque); between ``tolerance`` and ``3 * tolerance``
alpha ramps linearly. The object's anti-aliased edge (opaque pixels next to the backdrop) is matted:
each is taken as a blend of the backdrop and the object colour next to it (the mean of the interior
pixels within 2 px) and gets that blend's alpha, so training on another background does not ask
for a halo of backdrop colour around the object.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from recon.errors import ReconError

KEY_MODES = ("none", "auto", "black", "white")
DEFAULT_TOLERANCE = 4.0 / 255.0
SOFT_FACTOR = 3.0
EDGE_RADIUS = 2
"""How far (pixels) an edge pixel looks into the object for the colour it blends with the backdrop."""
EDGE_MIN_CONTRAST = 0.15
"""Least distance (RGB, in [0, 1]) between that object colour and the backdrop for an edge pixel to be
matted; closer colours cannot be told from the backdrop and the pixel stays opaque."""
AUTO_FORMATS = ("blender", "dnerf")
"""Formats ``--background-key auto`` keys: renders saved as RGB on an exact black or white backdrop.
Other folders are keyed by ``auto`` only when they declare a backdrop (``Scene.declared_backdrop``:
a nerfstudio ``transforms.json`` with ``background_color``, as recon's synthetic scenes write).
Photos of a studio backdrop are never exactly one colour: ask for their key by name."""


def auto_keyed(scene) -> bool:
    """Whether ``--background-key auto`` looks for a backdrop in ``scene`` (:data:`AUTO_FORMATS`)."""
    return scene.format in AUTO_FORMATS or getattr(scene, "declared_backdrop", None) is not None


def key_alpha(rgb: np.ndarray, colour: Sequence[float], tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """Alpha ``[H, W]`` float32 in [0, 1] of ``rgb [H, W, 3]`` (float in [0, 1]) keyed against the
    backdrop ``colour`` (RGB in [0, 1]); see the module docstring."""
    from scipy import ndimage

    rgb = np.asarray(rgb, dtype=np.float32)
    d = np.abs(rgb - np.asarray(colour, dtype=np.float32).reshape(1, 1, 3)).max(axis=2)
    hi = SOFT_FACTOR * tolerance
    near = d < hi
    labels, n = ndimage.label(near)
    if n == 0:
        return np.ones(d.shape, dtype=np.float32)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    outside = np.isin(labels, border)
    ramp = np.clip((d - tolerance) / (hi - tolerance), 0.0, 1.0)
    alpha = np.where(outside, ramp, 1.0).astype(np.float32)
    return _matte_edges(rgb, np.asarray(colour, np.float32), outside, alpha)


def _matte_edges(rgb: np.ndarray, backdrop: np.ndarray, outside: np.ndarray, alpha: np.ndarray,
                 radius: int = EDGE_RADIUS) -> np.ndarray:
    """Fractional alpha for the anti-aliased edge pixels of the object: each opaque pixel next to the
    backdrop is a blend ``C = a F + (1 - a) B`` of the backdrop ``B`` and the object colour ``F`` (the
    mean of the interior pixels within ``radius``), so ``a = (C - B).(F - B) / |F - B|^2``. Pixels
    whose object colour is too close to the backdrop to tell (``|F - B|`` under
    :data:`EDGE_MIN_CONTRAST`) or with no interior pixel near stay opaque."""
    from scipy import ndimage

    band = ~outside & ndimage.binary_dilation(outside, structure=np.ones((3, 3), bool))
    if not band.any():
        return alpha
    interior = (~outside & ~band).astype(np.float32)
    diff = rgb - backdrop.reshape(1, 1, 3)
    size = 2 * radius + 1
    count = ndimage.uniform_filter(interior, size, mode="constant")
    fg = np.stack([ndimage.uniform_filter(diff[..., c] * interior, size, mode="constant") for c in range(3)], axis=2)
    fg /= np.maximum(count, 1e-12)[..., None]
    norm2 = (fg * fg).sum(axis=2)
    ok = band & (count > 0.5 / size ** 2) & (norm2 >= EDGE_MIN_CONTRAST ** 2)
    a = np.clip((diff * fg).sum(axis=2) / np.maximum(norm2, 1e-12), 0.0, 1.0)
    return np.where(ok, a, alpha).astype(np.float32)


def detect_backdrop(scene, frames: list[int], probe: int = 3, tolerance: float = DEFAULT_TOLERANCE
                    ) -> Optional[tuple[float, float, float]]:
    """The solid backdrop colour of ``scene``'s RGB images, or ``None``.

    Probes up to ``probe`` of ``frames`` (at a longest side of about 256 px): each must have no alpha
    channel and at least 95 % of its border pixels within ``tolerance`` of one common colour. Only
    pure black and pure white (within the tolerance) count: a grey or coloured border is usually a
    real wall or floor, which keying would cut away.
    """
    if not frames:
        return None
    pick = [frames[int(round(k))] for k in np.linspace(0, len(frames) - 1, min(probe, len(frames)))]
    found: Optional[tuple[float, float, float]] = None
    for i in pick:
        cam = scene.frames[i].camera
        ds = 1.0 if cam is None else max(1.0, max(cam.width, cam.height) / 256.0)
        if scene.alpha(i, ds) is not None:
            return None
        img = scene.image(i, ds)
        b = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        colour = None
        for c in (0.0, 1.0):
            if np.mean(np.abs(b - c).max(axis=1) <= tolerance) >= 0.95:
                colour = (c, c, c)
        if colour is None or (found is not None and colour != found):
            return None
        found = colour
    return found


def resolve_key(mode: str, scene, frames: list[int]) -> Optional[tuple[float, float, float]]:
    """The backdrop colour ``--background-key mode`` asks for on ``scene`` (``None``: no key): ``auto``
    detects it (:func:`detect_backdrop`) on Blender/D-NeRF folders and folders that declare a backdrop
    (:func:`auto_keyed`)."""
    if mode not in KEY_MODES:
        raise ReconError(f"--background-key {mode}: choose one of {', '.join(KEY_MODES)}")
    if mode == "none":
        return None
    if mode == "black":
        return (0.0, 0.0, 0.0)
    if mode == "white":
        return (1.0, 1.0, 1.0)
    if not auto_keyed(scene) or scene.background_key is not None:
        return scene.background_key
    found = detect_backdrop(scene, frames)
    if scene.format not in AUTO_FORMATS and found != scene.declared_backdrop:
        return None  # the images' border disagrees with the declared backdrop: leave them as they are
    return found


def apply_backdrop_key(scene, mode: str, frames: list[int], log: Callable[[str], None] = print) -> dict:
    """Give ``scene``'s RGB images an alpha channel keyed against their backdrop (``--background-key``).

    Sets ``scene.background_key`` (the images then report an alpha, :meth:`Scene.alpha`) and
    ``scene.background`` to the backdrop colour (the colour the stored pixels are composited on, so
    evaluation renders on it). Images that already have alpha are left alone. Returns a record for
    the run manifest.
    """
    colour = resolve_key(mode, scene, frames)
    if colour is None:
        scene.background_key = None
        return {"mode": mode, "key": None}
    scene.background_key = colour
    scene.background = colour
    name = "black" if colour == (0.0, 0.0, 0.0) else "white" if colour == (1.0, 1.0, 1.0) else str(colour)
    log(f"[data] images on a solid {name} backdrop: keyed to alpha (within {DEFAULT_TOLERANCE * 255:.0f}/255, "
        f"connected to the border); training backgrounds follow --background (--background-key none to keep "
        f"the images as they are)")
    return {"mode": mode, "key": list(colour)}
