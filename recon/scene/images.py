"""Reading images, masks and depth maps lazily, and a bounded LRU cache for them.

Everything here works on one file at a time and never on a whole scene, so opening a scene of
thousands of frames reads no pixels: :func:`image_size` reads a header only, and the decoders run
when :meth:`recon.scene.Scene.image` (or ``alpha``/``mask``/``depth``) asks for a frame.

Decoding:

* EXIF orientation is honoured (read from the header with Pillow, applied to the pixels here).
* 8-bit, 16-bit and float images are normalised to float32 in [0, 1] (16-bit PNG/TIFF keep their
  full precision: they are decoded with OpenCV, since Pillow truncates 16-bit colour to 8 bits).
* Grey images become 3 identical channels; an alpha channel is kept separate.

Resizing uses an area (box) filter when shrinking, so a downscale by an integer factor is the
exact mean of each block of pixels.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Optional

import numpy as np

from recon.errors import ReconError

DEFAULT_CACHE_BYTES = 1 << 30  # 1 GiB

# Images above this many pixels (16k x 16k) are refused as unreadable before any pixel is decoded
# (Pillow's own decompression-bomb limit, about 179 megapixels, applies first to the files it
# opens). A decoded 16k x 16k RGBA float32 image already takes 4 GiB.
MAX_IMAGE_PIXELS = 16384 * 16384

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".exr", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mts", ".insv", ".360")

# EXIF orientation values (tag 0x0112) that swap width and height.
_TRANSPOSING = {5, 6, 7, 8}


def is_image_file(path: Path) -> bool:
    """Whether ``path``'s suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_file(path: Path) -> bool:
    """Whether ``path``'s suffix is one of :data:`VIDEO_SUFFIXES` (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def downscaled_size(width: int, height: int, downscale: float) -> tuple[int, int]:
    """Image size ``(w, h)`` after dividing by ``downscale``: ``(round(W / d), round(H / d))``, at least 1.

    This is the one rule used by :meth:`Scene.image` and :meth:`Scene.camera`, so images and
    intrinsics always agree.
    """
    if not downscale > 0:
        raise ReconError(f"downscale must be > 0, got {downscale!r}")
    if downscale == 1:
        return int(width), int(height)
    return max(1, int(round(width / downscale))), max(1, int(round(height / downscale)))


# ----------------------------------------------------------------------------------------------
# Headers


def _orientation(im) -> int:
    """EXIF orientation (1..8) of an opened Pillow image without decoding its pixels."""
    try:
        if im.format == "PNG":
            # Pillow's PNG getexif() decodes the whole image to find a late eXIf chunk; the PNG
            # spec puts eXIf before the pixel data, so the header read has it when it exists.
            raw = im.info.get("exif")
            if not raw:
                return 1
            from PIL import Image

            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = im.getexif()
        value = int(exif.get(0x0112, 1))
        return value if 1 <= value <= 8 else 1
    except Exception:  # a damaged EXIF block must not make the image unreadable
        return 1


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as displayed (EXIF orientation applied), from its header only.

    Raises :class:`ReconError` naming the file when it is missing or not an image.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    try:
        with _open_pil(path) as im:
            w, h = im.size
            if _orientation(im) in _TRANSPOSING:
                w, h = h, w
            return int(w), int(h)
    except FileNotFoundError:
        raise ReconError(f"{path}: image file not found") from None
    except ReconError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as e:
        # Pillow cannot identify some formats OpenCV reads (e.g. EXR); fall back to a decode.
        try:
            arr = _decode_cv2(path)
        except ReconError:
            why = "not a recognised image file" if isinstance(e, UnidentifiedImageError) else _one_line(e)
            raise ReconError(f"{path}: unreadable image ({why})") from None
        return int(arr.shape[1]), int(arr.shape[0])


def _too_large(path: Path, w: int, h: int) -> ReconError:
    return ReconError(
        f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the limit of "
        f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels (16384x16384); downscale it"
    )


def _open_pil(path: Path):
    """``PIL.Image.open`` with the pixel limit applied: an image above :data:`MAX_IMAGE_PIXELS`
    (or Pillow's decompression-bomb limit) raises :class:`ReconError` before decoding."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ReconError(f"{path}: image is too large to decode ({_one_line(e)}); downscale it") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise _too_large(path, w, h)
    if w <= 0 or h <= 0:
        im.close()
        raise ReconError(f"{path}: image has an invalid size {w}x{h}")
    return im


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ----------------------------------------------------------------------------------------------
# Decoding


def _to_float(arr: np.ndarray) -> np.ndarray:
    """Integer or float pixels to float32 in [0, 1] (integers are divided by their type's max)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    return arr.astype(np.float32, copy=False)


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip ``[H, W, ...]`` pixels stored with EXIF ``orientation`` into display order."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:  # transpose
        return np.swapaxes(arr, 0, 1)
    if orientation == 6:  # rotate 90 clockwise
        return np.swapaxes(arr, 0, 1)[:, ::-1]
    if orientation == 7:  # transverse
        return np.swapaxes(arr, 0, 1)[::-1, ::-1]
    if orientation == 8:  # rotate 90 counter-clockwise
        return np.swapaxes(arr, 0, 1)[::-1]
    return arr


def _decode_cv2(path: Path) -> np.ndarray:
    """Decode with OpenCV, unchanged (any depth, alpha kept, orientation not applied); RGB(A) order."""
    import cv2

    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ReconError(f"{path}: image file not found") from None
    except OSError as e:
        raise ReconError(f"{path}: cannot read file ({_one_line(e)})") from None
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error as e:  # e.g. OpenCV's own pixel limit
        raise ReconError(f"{path}: unreadable image ({_one_line(e)[:200]})") from None
    if arr is not None and arr.shape[0] * arr.shape[1] > MAX_IMAGE_PIXELS:
        raise _too_large(path, arr.shape[1], arr.shape[0])
    if arr is None:
        raise ReconError(f"{path}: unreadable image (not a supported image file, or truncated)")
    if arr.ndim == 3:
        if arr.shape[2] == 3:
            arr = arr[..., ::-1]
        elif arr.shape[2] == 4:
            arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _needs_cv2(im) -> bool:
    """Whether Pillow would lose precision on this file (16-bit colour PNG, >8-bit colour TIFF)."""
    if im.format == "PNG":
        # Pillow reads 16-bit greyscale exactly (mode I;16) but truncates 16-bit RGB(A)/LA; the
        # raw mode of its decoder tile ("RGB;16B") tells the file's bit depth without decoding.
        if im.mode not in ("RGB", "RGBA", "LA") or not im.tile:
            return False
        args = im.tile[0].args if hasattr(im.tile[0], "args") else im.tile[0][3]
        rawmode = args[0] if isinstance(args, tuple) else args
        return ";16" in str(rawmode)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258) if hasattr(im, "tag_v2") else None
        if bits is None:
            return False
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(int(b) for b in bits) > 8
    return False


def decode(path: Path) -> np.ndarray:
    """Decode one image file to float32 ``[H, W, C]`` in [0, 1], EXIF orientation applied.

    ``C`` is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). Float files (e.g. EXR, float TIFF)
    keep their values. Raises :class:`ReconError` naming the file on any failure.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    try:
        im = _open_pil(path)
    except FileNotFoundError:
        raise ReconError(f"{path}: image file not found") from None
    except ReconError:
        raise
    except (UnidentifiedImageError, OSError, ValueError):
        arr = _decode_cv2(path)
        return _shape_hwc(_to_float(arr))
    with im:
        orientation = _orientation(im)
        try:
            if _needs_cv2(im):
                arr = _decode_cv2(path)
            else:
                im.load()
                arr = _pil_to_array(im)
        except ReconError:
            raise
        except Exception as e:  # truncated or corrupt data surfaces here, not at open()
            raise ReconError(f"{path}: unreadable image ({_one_line(e)})") from None
    arr = _shape_hwc(_to_float(arr))
    return _apply_orientation(arr, orientation)


def _pil_to_array(im) -> np.ndarray:
    mode = im.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "F"):
        if mode.startswith("I;16"):
            return np.asarray(im).astype(np.uint16)
        return np.asarray(im)
    if mode == "I":  # 32-bit integer greyscale: usually 16-bit data
        arr = np.asarray(im)
        return arr.astype(np.uint16) if arr.max(initial=0) <= 65535 else arr.astype(np.float32) / 4294967295.0
    if mode == "P" and ("transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    if mode in ("PA", "RGBa", "La"):
        return np.asarray(im.convert("RGBA"))
    return np.asarray(im.convert("RGB"))


def _shape_hwc(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unexpected image array shape {arr.shape}")
    return arr


def resize(arr: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize ``[H, W]`` or ``[H, W, C]`` float32 to ``size = (w, h)``.

    Shrinking uses an area (box) filter (OpenCV ``INTER_AREA``); enlarging is bilinear;
    ``nearest=True`` picks nearest pixels (for depth maps, where blending would invent depths).
    """
    import cv2

    w, h = int(size[0]), int(size[1])
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    if nearest:
        interp = cv2.INTER_NEAREST
    elif w <= arr.shape[1] and h <= arr.shape[0]:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    squeeze = arr.ndim == 3 and arr.shape[2] == 1
    src = arr[..., 0] if squeeze else arr
    if src.ndim == 3 and src.shape[2] > 4:
        out = np.stack([cv2.resize(np.ascontiguousarray(src[..., c]), (w, h), interpolation=interp) for c in range(src.shape[2])], -1)
    else:
        out = cv2.resize(np.ascontiguousarray(src), (w, h), interpolation=interp)
    if src.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing axis of length 1
        out = out[..., None]
    return out[..., None] if squeeze else out


def match_orientation(arr: np.ndarray, path: Path, expected: Optional[tuple[int, int]]) -> np.ndarray:
    """Check a decoded image against the camera's ``(width, height)``.

    Tools that ignore EXIF orientation (COLMAP among them) report the stored size; when the
    displayed size does not match ``expected`` but the stored one does, the stored pixels are used
    (undoing the rotation) so the image agrees with its intrinsics. Any other mismatch raises.
    """
    if expected is None:
        return arr
    w, h = expected
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    with _open_pil(path) as im:
        o = _orientation(im)
        raw_w, raw_h = im.size
    if o != 1 and (raw_w, raw_h) == (w, h):
        return decode_unoriented(path)
    raise ReconError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]} but its camera says {w}x{h}")


def decode_unoriented(path: Path) -> np.ndarray:
    """Like :func:`decode` but ignoring EXIF orientation (pixels as stored)."""
    with _open_pil(path) as im:
        if _needs_cv2(im):
            arr = _decode_cv2(path)
        else:
            im.load()
            arr = _pil_to_array(im)
    return _shape_hwc(_to_float(arr))


def split_rgba(
    arr: np.ndarray, background: Optional[tuple[float, float, float]]
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """``[H, W, C]`` decoded pixels to ``(rgb [H, W, 3], alpha [H, W] or None)``.

    With an alpha channel and a ``background``, RGB is composited over it:
    ``rgb * a + background * (1 - a)`` (straight alpha, as PNG stores it). Without ``background``
    RGB is returned as stored.
    """
    c = arr.shape[2]
    if c in (1, 2):
        rgb = np.repeat(arr[..., :1], 3, axis=2)
    else:
        rgb = arr[..., :3]
    alpha = arr[..., -1] if c in (2, 4) else None
    if alpha is not None and background is not None:
        bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
        a = alpha[..., None]
        rgb = rgb * a + bg * (np.float32(1.0) - a)
    return np.ascontiguousarray(rgb, dtype=np.float32), (None if alpha is None else np.ascontiguousarray(alpha, dtype=np.float32))


def read_mask(path: Path) -> np.ndarray:
    """A mask file to float32 ``[H, W]`` with 1 where the pixel is used (any nonzero value), 0 where not.

    Single-channel masks use their value; colour masks use the largest colour channel; an alpha
    channel, when the file has one, is ignored unless the file is otherwise one colour.
    """
    arr = decode(path)
    c = arr.shape[2]
    if c == 1:
        m = arr[..., 0]
    elif c == 2:
        m = arr[..., 0]
    else:
        m = arr[..., :3].max(axis=2)
        if c == 4 and m.min() == m.max():
            m = arr[..., 3]
    return (m > 0).astype(np.float32)


def read_depth(path: Path) -> np.ndarray:
    """A depth map to float32 ``[H, W]`` in scene units; 0 (or non-finite) means unknown.

    ``.npy``/``.npz`` hold depth as stored; 16-bit PNG/TIFF hold millimetres (divided by 1000, as
    nerfstudio's ``depth_unit_scale_factor`` does); float images hold depth as stored.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        data = load_npy(path, "depth file")
        if data.dtype.kind not in "biuf":
            raise ReconError(f"{path}: depth array has dtype {data.dtype}, expected numbers")
        arr = np.asarray(data, dtype=np.float32)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        elif arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise ReconError(f"{path}: depth array has shape {arr.shape}, expected [H, W]")
        return arr
    raw = _decode_cv2(path)
    if raw.ndim == 3:
        raw = raw[..., 0]
    if np.issubdtype(raw.dtype, np.integer):
        if raw.dtype == np.uint8:
            raise ReconError(f"{path}: 8-bit depth image; expected 16-bit PNG (millimetres), float TIFF/EXR or .npy")
        return raw.astype(np.float32) / np.float32(1000.0)
    return raw.astype(np.float32)


def _npy_header(fp, path: Path, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npf.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # noqa: BLE001 - numpy parses the header with tokenize/literal_eval
        raise ReconError(f"{path}: unreadable {what} (not a .npy array: {_one_line(e)[:200]})") from None
    if dtype.hasobject:
        raise ReconError(f"{path}: {what} holds Python objects, which recon does not load; save a numeric array")
    return tuple(int(v) for v in shape), bool(fortran), dtype


def load_npy(path: Path, what: str = "array") -> np.ndarray:
    """Load a ``.npy`` (or the first array of a ``.npz``), checking the declared shape against the
    bytes really there before anything is allocated. Object arrays (pickles) are refused.

    Raises :class:`ReconError` naming the file on a missing, truncated or lying file.
    """
    import zipfile

    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(4)
            f.seek(0)
            if magic.startswith(b"PK"):
                with zipfile.ZipFile(f) as z:
                    names = [n for n in z.namelist() if n.endswith(".npy")]
                    if not names:
                        raise ReconError(f"{path}: {what} (.npz) holds no arrays")
                    info = z.getinfo(names[0])
                    with z.open(info) as m:
                        shape, fortran, dtype = _npy_header(m, path, what)
                        avail = info.file_size - m.tell()
                        cap = MAX_IMAGE_PIXELS * 8
                        need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                        if need > avail or need > cap:
                            raise ReconError(f"{path}: {what} declares {need} bytes of array data but holds {avail}: truncated or corrupt")
                        arr = np.frombuffer(m.read(need), dtype=dtype)
            else:
                shape, fortran, dtype = _npy_header(f, path, what)
                avail = size - f.tell()
                need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if need > avail:
                    raise ReconError(
                        f"{path}: {what} declares an array of shape {shape} ({need} bytes) but holds {avail} bytes: truncated or corrupt"
                    )
                arr = np.fromfile(f, dtype=dtype, count=int(np.prod(shape)))
    except FileNotFoundError:
        raise ReconError(f"{path}: {what} not found") from None
    except ReconError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ReconError(f"{path}: unreadable {what} ({_one_line(e)[:200]})") from None
    if arr.size != int(np.prod(shape)):
        raise ReconError(f"{path}: {what} is truncated")
    return arr.reshape(shape[::-1]).T if fortran and len(shape) > 1 else arr.reshape(shape)


# ----------------------------------------------------------------------------------------------
# Cache


class ImageCache:
    """A thread-safe least-recently-used cache of arrays, bounded by total bytes.

    Args:
        max_bytes: budget for the arrays held (default :data:`DEFAULT_CACHE_BYTES`, 1 GiB);
            0 disables caching. An array larger than the budget is returned but not kept.

    :meth:`get` returns a copy, so callers may modify what they receive.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()
            self.nbytes = 0

    def set_max_bytes(self, max_bytes: int) -> None:
        """Change the budget, evicting the least recently used entries if needed."""
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict()

    def _evict(self) -> None:
        while self.nbytes > self.max_bytes and self._items:
            key, _ = self._items.popitem(last=False)
            self.nbytes -= self._sizes.pop(key)

    def peek(self, key: Hashable) -> tuple[bool, object]:
        """``(found, value)`` without copying; marks the entry as recently used."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key]
            self.misses += 1
            return False, None

    def put(self, key: Hashable, value: object) -> None:
        """Store ``value`` (an array, a tuple of arrays, or None); evicts old entries to stay within the budget."""
        size = _nbytes(value)
        with self._lock:
            if key in self._items:
                self.nbytes -= self._sizes.pop(key)
                del self._items[key]
            if size > self.max_bytes:
                return
            self._items[key] = value
            self._sizes[key] = size
            self.nbytes += size
            self._evict()

    def get(self, key: Hashable, load: Callable[[], object]) -> object:
        """The value for ``key``, calling ``load()`` on a miss; arrays come back as copies."""
        found, value = self.peek(key)
        if not found:
            value = load()
            self.put(key, value)
        return value.copy() if isinstance(value, np.ndarray) else value


def _nbytes(value: object) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


def env_cache_bytes() -> int:
    """The default cache budget: ``RECON_IMAGE_CACHE_BYTES`` if set, else 1 GiB."""
    v = os.environ.get("RECON_IMAGE_CACHE_BYTES")
    if v:
        try:
            return int(float(v))
        except ValueError:
            raise ReconError(f"RECON_IMAGE_CACHE_BYTES={v!r} is not a number of bytes") from None
    return DEFAULT_CACHE_BYTES
