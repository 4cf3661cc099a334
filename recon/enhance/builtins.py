"""Built-in classical operators (OpenCV): denoise, low light, sharpen, white balance, inpaint, recolour.

Each is a plugin (see :mod:`recon.enhance.registry`): ``Plugin(arg, **params)`` then
``process(images, masks)`` on float32 ``[H, W, 3]`` RGB in [0, 1]. Parameters arrive as strings
from the command line (``denoise:h=12``) and are checked here, one line per bad value.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from recon.errors import ReconError


def _to_u8(im: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(im, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _to_f32(im: np.ndarray) -> np.ndarray:
    return im.astype(np.float32) / 255.0


def estimate_noise_sigma(im: np.ndarray) -> float:
    """Standard deviation of additive Gaussian noise in ``im`` (``[H, W, 3]`` in [0, 1]), on the
    0-255 scale: Immerkaer's estimator (the Laplacian-difference kernel cancels smooth image
    content; edges bias it up a little)."""
    import cv2

    u8 = _to_u8(im).astype(np.float64)
    if min(u8.shape[:2]) < 3:
        return 0.0
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    sig = []
    for c in range(u8.shape[2]):
        ch = u8[..., c]
        r = cv2.filter2D(ch, -1, k)[1:-1, 1:-1]
        # Saturated pixels (clipped noise) carry no noise: leave them out.
        ok = (ch[1:-1, 1:-1] > 2) & (ch[1:-1, 1:-1] < 253)
        if ok.sum() > 16:
            sig.append(np.sqrt(np.pi / 2.0) * np.abs(r[ok]).mean() / 6.0)
    return float(np.median(sig)) if sig else 0.0


class _OpenCV:
    """Shared parameter handling of the built-ins."""

    name = ""
    kind = "restore"
    version = "1"
    needs_masks = False
    takes_arg = False
    defaults: dict[str, Any] = {}

    def __init__(self, arg: Optional[str] = None, **params: str) -> None:
        import cv2

        if arg is not None and not self.takes_arg:
            raise ReconError(f"{self.name}: takes no argument (got {arg!r}); parameters are KEY=VALUE: "
                             + ", ".join(f"{k}={v}" for k, v in self.defaults.items()))
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ReconError(f"{self.name}: unknown parameter {unknown[0]!r}; known: "
                             + ", ".join(f"{k} (default {v})" for k, v in self.defaults.items()))
        self.params: dict[str, Any] = {}
        for k, default in self.defaults.items():
            v = params.get(k, default)
            self.params[k] = self._convert(k, v, default)
        self.version = f"{type(self).version} (OpenCV {cv2.__version__})"
        self.check()

    def _convert(self, key: str, value: Any, default: Any) -> Any:
        if isinstance(default, str):
            return str(value)
        try:
            return type(default)(float(value)) if isinstance(default, int) and not isinstance(default, bool) else type(default)(value)
        except (TypeError, ValueError):
            raise ReconError(f"{self.name}: {key}={value!r} is not a number") from None

    def check(self) -> None:
        """Range checks of :attr:`params` (raise :class:`ReconError`)."""

    def parameters(self) -> dict[str, Any]:
        return dict(self.params)

    def process(self, images: list[np.ndarray], masks: Optional[list[np.ndarray]] = None) -> list[np.ndarray]:
        return [self.one(im, None if masks is None else masks[i]) for i, im in enumerate(images)]

    def one(self, im: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# Opponent colour transform (rows: luminance, red-blue, green-magenta), scaled so each channel
# spans [0, 1] (chroma offset by 0.5). Independent RGB noise of sigma stays independent-ish per
# channel with sigma x the row norm, so one non-local-means pass per channel with h ~ its sigma
# denoises colour without the Lab round trip (which over-smooths chroma at sigma = 25).
_OPP = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, -0.5], [0.25, -0.5, 0.25]])
_OPP_INV = np.linalg.inv(_OPP)
_OPP_GAIN = np.sqrt((_OPP**2).sum(1))


class Denoise(_OpenCV):
    """Non-local-means denoising (OpenCV), per opponent-colour channel; h=auto estimates the noise."""

    name = "denoise"
    defaults = {"h": "auto", "factor": 1.1, "template": 7, "search": 21}

    def check(self) -> None:
        v = self.params["h"]
        if v != "auto":
            try:
                if float(v) <= 0:
                    raise ValueError
            except ValueError:
                raise ReconError(f"denoise: h={v!r} must be 'auto' or the noise sigma (> 0, 0-255 scale)") from None
        if self.params["factor"] <= 0:
            raise ReconError("denoise: factor must be > 0")
        if self.params["template"] < 3 or self.params["template"] % 2 == 0 or self.params["search"] < self.params["template"]:
            raise ReconError("denoise: template must be an odd number >= 3 and search >= template")

    def sigma(self, im: np.ndarray) -> float:
        """The RGB noise sigma (0-255 scale) used for ``im``: ``h``, or estimated when h=auto."""
        return float(self.params["h"]) if self.params["h"] != "auto" else estimate_noise_sigma(im)

    def one(self, im, mask):
        import cv2

        im = np.asarray(im, dtype=np.float32)
        sigma = self.sigma(im)
        if sigma < 0.5:
            return im
        opp = im.reshape(-1, 3).astype(np.float64) @ _OPP.T
        opp[:, 1:] += 0.5
        u8 = _to_u8(opp.reshape(im.shape))
        t, w = int(self.params["template"]), int(self.params["search"])
        chans = [cv2.fastNlMeansDenoising(np.ascontiguousarray(u8[..., c]), None,
                                          float(sigma * _OPP_GAIN[c] * self.params["factor"]), t, w) for c in range(3)]
        d = _to_f32(np.stack(chans, -1)).reshape(-1, 3).astype(np.float64)
        d[:, 1:] -= 0.5
        return np.clip(d @ _OPP_INV.T, 0.0, 1.0).astype(np.float32).reshape(im.shape)


class LowLight(_OpenCV):
    """Low-light enhancement: CLAHE on the lightness channel (CIE Lab), colour kept."""

    name = "lowlight"
    defaults = {"clip": 2.0, "tiles": 8}

    def check(self) -> None:
        if self.params["clip"] <= 0 or self.params["tiles"] < 1:
            raise ReconError("lowlight: clip must be > 0 and tiles >= 1")

    def one(self, im, mask):
        import cv2

        lab = cv2.cvtColor(_to_u8(im), cv2.COLOR_RGB2LAB)
        t = int(self.params["tiles"])
        clahe = cv2.createCLAHE(clipLimit=float(self.params["clip"]), tileGridSize=(t, t))
        lab[..., 0] = clahe.apply(lab[..., 0])
        return _to_f32(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


class Unsharp(_OpenCV):
    """Unsharp masking: image + amount x (image - Gaussian blur(sigma)), where the detail exceeds threshold."""

    name = "unsharp"
    defaults = {"amount": 0.8, "sigma": 1.5, "threshold": 0.0}

    def check(self) -> None:
        if self.params["sigma"] <= 0 or self.params["amount"] < 0 or self.params["threshold"] < 0:
            raise ReconError("unsharp: sigma must be > 0, amount and threshold >= 0")

    def one(self, im, mask):
        import cv2

        im = np.asarray(im, dtype=np.float32)
        blur = cv2.GaussianBlur(im, (0, 0), float(self.params["sigma"]))
        detail = im - blur
        if self.params["threshold"] > 0:
            detail = np.where(np.abs(detail) * 255.0 >= self.params["threshold"], detail, 0.0)
        return np.clip(im + float(self.params["amount"]) * detail, 0.0, 1.0).astype(np.float32)


class WhiteBalance(_OpenCV):
    """White balance: grey-world (channel means equalised) or white-patch (a high percentile to white)."""

    name = "whitebalance"
    defaults = {"method": "grayworld", "percentile": 99.0}

    def check(self) -> None:
        if self.params["method"] not in ("grayworld", "whitepatch"):
            raise ReconError(f"whitebalance: method={self.params['method']!r}; use grayworld or whitepatch")
        if not 50.0 <= self.params["percentile"] <= 100.0:
            raise ReconError("whitebalance: percentile must be in [50, 100]")

    def one(self, im, mask):
        im = np.asarray(im, dtype=np.float32)
        flat = im.reshape(-1, 3).astype(np.float64)
        if self.params["method"] == "grayworld":
            ref = flat.mean(0)
            gain = ref.mean() / np.maximum(ref, 1e-6)
        else:
            ref = np.percentile(flat, self.params["percentile"], axis=0)
            gain = 1.0 / np.maximum(ref, 1e-6)
        return np.clip(im * gain.astype(np.float32), 0.0, 1.0).astype(np.float32)


class Inpaint(_OpenCV):
    """Classical inpainting of masked regions (OpenCV Telea or Navier-Stokes): a generator.

    The region (the mask grown by ``dilate`` pixels, so an object's anti-aliased rim and contact
    shadow go too) is filled from its surroundings: colour for opaque captures. For frames with
    transparency (RGBA, e.g. an object scan on a transparent background), the alpha channel is
    filled the same way (``alpha=fill``): a pixel of the region stays opaque only where the alpha
    filled in from its surroundings is at least ``solid`` (the region is nearly enclosed by
    surfaces there, e.g. an object in front of a wall); elsewhere the frame becomes transparent
    again, so an object that stood in front of the empty background leaves empty background
    instead of a smear of the surrounding colours that training would explain with opaque splats.
    Transparent pixels get the frame's own background colour (the median of its transparent
    pixels, as stored). A lower ``solid`` keeps more of the surfaces the object hid, and more of
    a ghost where it stood against the background (measured in docs/enhance.md). ``alpha=keep``
    keeps the original alpha.
    """

    name = "inpaint"
    kind = "generate"
    version = "2"
    needs_masks = True
    uses_alpha = True
    defaults = {"method": "telea", "radius": 5.0, "dilate": 2, "alpha": "fill", "solid": 0.9}

    def check(self) -> None:
        if self.params["method"] not in ("telea", "ns"):
            raise ReconError(f"inpaint: method={self.params['method']!r}; use telea or ns")
        if self.params["alpha"] not in ("fill", "keep"):
            raise ReconError(f"inpaint: alpha={self.params['alpha']!r}; use fill or keep")
        if not 0.0 < self.params["solid"] <= 1.0:
            raise ReconError(f"inpaint: solid={self.params['solid']:g}; use a value in (0, 1]")
        if self.params["radius"] <= 0 or self.params["dilate"] < 0:
            raise ReconError("inpaint: radius must be > 0 and dilate >= 0")

    def one(self, im, mask):
        import cv2

        if mask is None:
            raise ReconError("inpaint: needs masks (pass --enhance-masks DIR)")
        im = np.asarray(im, dtype=np.float32)
        rgb, alpha = (im[..., :3], im[..., 3]) if im.shape[2] == 4 else (im, None)
        m = np.asarray(mask, dtype=np.uint8) * 255
        if not m.any():
            return im
        d = int(self.params["dilate"])
        if d:
            m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * d + 1, 2 * d + 1)))
        flag = cv2.INPAINT_TELEA if self.params["method"] == "telea" else cv2.INPAINT_NS
        r = float(self.params["radius"])
        out = _to_f32(cv2.inpaint(_to_u8(rgb), m, r, flag))
        if alpha is None:
            return out
        region = m > 0
        clear = (alpha <= 0.5) & ~region
        if self.params["alpha"] == "keep" or not clear.any():
            return np.dstack([out, alpha]).astype(np.float32)
        # Fill alpha from the region's surroundings. Where it stays opaque, the colour comes from the
        # opaque surroundings only (premultiplied colour filled in, divided by the filled alpha);
        # where it comes out transparent, the frame shows its background there (the colour of its
        # other transparent pixels, as stored).
        a_in = _to_f32(cv2.inpaint(_to_u8(alpha), m, r, flag))
        solid = region & (a_in >= float(self.params["solid"]) - 0.5 / 255.0)
        pre = _to_f32(cv2.inpaint(_to_u8(rgb * alpha[..., None]), m, r, flag))
        out[solid] = np.clip(pre[solid] / np.maximum(a_in[solid], 1e-3)[:, None], 0.0, 1.0)
        out[region & ~solid] = np.median(rgb[clear], axis=0).astype(np.float32)
        a = alpha.copy()
        a[region] = solid[region].astype(np.float32)
        return np.dstack([out, a]).astype(np.float32)


# RGB <-> YIQ (luma and two chroma axes): a hue turn is a rotation of the chroma plane.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
_YIQ_INV = np.linalg.inv(_YIQ)


class Recolor(_OpenCV):
    """Recolouring (hue, saturation and value in YIQ, then a colour filter): a generator.

    Hue turned by ``hue`` degrees, chroma scaled by ``saturation``, luma by ``value``, then a colour
    filter ``tint`` (hex RRGGBB multiplied in; ``ffffff``: none), over the whole frame or the masked
    region when masks are given (it changes what the capture shows).

    As a dataset edit (``recon train --edit recolor:...``, :mod:`recon.enhance.dataset_update`) it
    blends the render towards the recoloured original frame, ``(1 - strength) render + strength
    recolor(original)``, so the targets converge instead of turning further each round; on frames
    (``recon process --enhance``) the frame takes that blend with itself."""

    name = "recolor"
    kind = "generate"
    version = "1"
    defaults = {"hue": 0.0, "saturation": 1.0, "value": 1.0, "tint": "ffffff", "strength": 1.0}

    def check(self) -> None:
        t = self.params["tint"].lstrip("#")
        try:
            if len(t) != 6:
                raise ValueError
            self.tint = np.array([int(t[i : i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0
        except ValueError:
            raise ReconError(f"recolor: tint={self.params['tint']!r}; give a hex colour RRGGBB, e.g. ff8040") from None
        if self.params["saturation"] < 0 or self.params["value"] < 0:
            raise ReconError("recolor: saturation and value must be >= 0")
        if not 0.0 < self.params["strength"] <= 1.0:
            raise ReconError(f"recolor: strength={self.params['strength']:g}; use a value in (0, 1]")

    def recolor(self, im: np.ndarray) -> np.ndarray:
        a = -np.radians(self.params["hue"])  # the sign that turns red towards green, as in HSV
        c, s = np.cos(a), np.sin(a)
        sat = self.params["saturation"]
        M = np.diag([self.params["value"], 1.0, 1.0]) @ np.array([[1, 0, 0], [0, c * sat, -s * sat], [0, s * sat, c * sat]])
        T = (_YIQ_INV @ M @ _YIQ).astype(np.float32)
        im = np.asarray(im, dtype=np.float32)
        return np.clip((im @ T.T) * self.tint, 0.0, 1.0).astype(np.float32)

    def _blend(self, base: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
        w = float(self.params["strength"])
        out = (1.0 - w) * np.asarray(base, np.float32) + w * target
        if mask is not None:
            out = np.where(np.asarray(mask, bool)[..., None], out, base)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def one(self, im, mask):
        return self._blend(im, self.recolor(im), mask)

    def edit(self, renders: list[np.ndarray], originals: list[np.ndarray]) -> list[np.ndarray]:
        """Dataset-update targets: each render blended towards its recoloured original frame."""
        return [self._blend(r, self.recolor(o), None) for r, o in zip(renders, originals)]


BUILTINS = {c.name: c for c in (Denoise, LowLight, Unsharp, WhiteBalance, Inpaint, Recolor)}
