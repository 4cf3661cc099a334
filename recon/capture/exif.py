"""EXIF facts that matter for structure from motion: orientation and a focal-length prior.

The focal-length prior turns a photo's EXIF focal length into pixels, so SfM starts from a good
guess (and trusts it more: COLMAP's ``has_prior_focal_length``). Two sources, best first:

1. ``FocalLengthIn35mmFilm``: the lens's 35 mm-equivalent focal length. "Equivalent" is defined
   by the diagonal, so ``f_px = f35 * hypot(W, H) / hypot(36, 24)`` (43.27 mm is the diagonal of a
   36x24 mm frame). This holds for any aspect ratio and for rotated images.
2. ``FocalLength`` (mm) with ``FocalPlaneXResolution`` (sensor pixels per unit): ``f_px = f_mm *
   pixels_per_mm``, scaled from the sensor's ``ExifImageWidth`` to the stored image width.

A prior whose horizontal field of view falls outside 5..170 degrees is discarded as bogus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

# EXIF tag numbers (TIFF/EXIF 2.3).
TAG_ORIENTATION = 0x0112
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
IFD_EXIF = 0x8769
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405
TAG_FOCAL_PLANE_XRES = 0xA20E
TAG_FOCAL_PLANE_UNIT = 0xA210
TAG_EXIF_WIDTH = 0xA002
TAG_EXIF_HEIGHT = 0xA003

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit: inch, cm, mm, um

# Orientations that swap width and height (rotations by 90 degrees, transpose, transverse).
TRANSPOSING = {5, 6, 7, 8}


@dataclass
class ExifInfo:
    """The EXIF fields recon uses (all optional).

    Attributes:
        orientation: EXIF orientation 1..8 (1 = stored as displayed).
        make, model: camera maker and model strings.
        focal_mm: lens focal length in millimetres.
        focal_35mm: 35 mm-equivalent focal length in millimetres.
        focal_plane_xres_mm: sensor pixels per millimetre along x, at ``exif_width``.
        exif_width: the pixel width the focal-plane resolution refers to.
    """

    orientation: int = 1
    make: str = ""
    model: str = ""
    focal_mm: Optional[float] = None
    focal_35mm: Optional[float] = None
    focal_plane_xres_mm: Optional[float] = None
    exif_width: Optional[int] = None
    exif_height: Optional[int] = None

    def focal_prior_px(self, width: int, height: int) -> Optional[float]:
        """Focal length in pixels for the image as displayed (``width x height``), or ``None``.

        ``width``/``height`` are the oriented (displayed) size. See the module docstring.
        """
        f = None
        if self.focal_35mm and self.focal_35mm > 0:
            f = self.focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
        elif self.focal_mm and self.focal_plane_xres_mm and self.focal_mm > 0 and self.focal_plane_xres_mm > 0:
            # The focal-plane resolution refers to the sensor's unrotated x axis.
            stored_w = height if self.orientation in TRANSPOSING else width
            f = self.focal_mm * self.focal_plane_xres_mm
            if self.exif_width and self.exif_width > 0:
                f *= stored_w / self.exif_width
        if f is None or not math.isfinite(f):
            return None
        fov = 2.0 * math.degrees(math.atan(0.5 * width / f))
        return f if 5.0 <= fov <= 170.0 else None

    @property
    def camera_key(self) -> str:
        """A string that differs between camera bodies or zoom settings (for grouping intrinsics)."""
        parts = [self.make.strip(), self.model.strip()]
        if self.focal_mm:
            parts.append(f"{self.focal_mm:.2f}mm")
        return " ".join(p for p in parts if p)


def _num(v: Any) -> Optional[float]:
    try:
        x = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def read_exif(im: Any) -> ExifInfo:
    """The :class:`ExifInfo` of an opened Pillow image (never raises: damaged EXIF gives defaults)."""
    info = ExifInfo()
    try:
        exif = im.getexif()
    except Exception:
        return info
    try:
        o = int(exif.get(TAG_ORIENTATION, 1))
        info.orientation = o if 1 <= o <= 8 else 1
    except (TypeError, ValueError):
        pass
    for tag, attr in ((TAG_MAKE, "make"), (TAG_MODEL, "model")):
        v = exif.get(tag)
        if isinstance(v, bytes):
            v = v.decode("latin-1", "replace")
        if isinstance(v, str):
            setattr(info, attr, v.strip("\x00 ").strip())
    try:
        sub = exif.get_ifd(IFD_EXIF)
    except Exception:
        sub = {}
    info.focal_mm = _num(sub.get(TAG_FOCAL_LENGTH))
    info.focal_35mm = _num(sub.get(TAG_FOCAL_35MM))
    xres = _num(sub.get(TAG_FOCAL_PLANE_XRES))
    unit = sub.get(TAG_FOCAL_PLANE_UNIT, 2)
    try:
        unit_mm = _UNIT_MM.get(int(unit))
    except (TypeError, ValueError):
        unit_mm = None
    if xres and unit_mm:
        info.focal_plane_xres_mm = xres / unit_mm
    w, h = _num(sub.get(TAG_EXIF_WIDTH)), _num(sub.get(TAG_EXIF_HEIGHT))
    info.exif_width = int(w) if w else None
    info.exif_height = int(h) if h else None
    return info
