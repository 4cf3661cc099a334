"""Procedural textures: dense, non-repeating detail at every scale, so SIFT finds many features.

A texture is a ``[T, T, 3]`` uint8 sRGB image built from a seeded ``numpy.random.Generator`` only
(same seed, same bytes). Layers, bottom to top: multi-octave value noise through a random colour
palette; Voronoi cells with random tints and dark borders (many junctions and corners); random
filled ellipses and polygons (blobs at many scales); "text-like" labels made of random glyph
strokes; a little per-texel grain. ``T`` must be a power of two (for the mip pyramid).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy.spatial import cKDTree


def value_noise(rng: np.random.Generator, size: int, octaves: int = 6, base_cells: int = 3) -> np.ndarray:
    """``[size, size]`` float32 fractal value noise in [0, 1] (bicubic-upsampled random grids).

    Summed at up to 512 x 512 (the finest octave is still several texels per cell there) and
    bilinearly enlarged to ``size``.
    """
    work = min(size, 512)
    out = np.zeros((work, work), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base_cells * 2**o + 1
        grid = rng.random((cells, cells), dtype=np.float32)
        up = Image.fromarray(grid, mode="F").resize((work, work), Image.BICUBIC)
        out += amp * np.asarray(up, dtype=np.float32)
        total += amp
        amp *= 0.55
    out /= total
    if work != size:
        out = np.asarray(Image.fromarray(out, mode="F").resize((size, size), Image.BILINEAR), dtype=np.float32)
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0, 1)


def random_palette(rng: np.random.Generator, n: int = 5) -> np.ndarray:
    """``[n, 3]`` float32 colours in [0, 1] with a spread of hues and lightness."""
    hue = (rng.random() + np.arange(n) / n + rng.normal(0, 0.05, n)) % 1.0
    sat = rng.uniform(0.3, 0.9, n)
    val = rng.uniform(0.45, 1.0, n)
    return _hsv_to_rgb(hue, sat, val).astype(np.float32)


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    h, s, v = (np.asarray(x, dtype=np.float64) for x in (h, s, v))
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _palette_map(x: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Map scalars in [0, 1] through a piecewise-linear palette ``[n, 3]`` (via a 4096-entry table)."""
    t = np.linspace(0, 1, 4096) * (len(pal) - 1)
    i = np.clip(np.floor(t).astype(int), 0, len(pal) - 2)
    f = (t - i)[:, None]
    lut = (pal[i] * (1 - f) + pal[i + 1] * f).astype(np.float32)
    return lut[np.clip((x * 4095 + 0.5).astype(np.int32), 0, 4095)]


def _glyphs(rng: np.random.Generator, n: int = 48) -> list[list[tuple[tuple[float, float], tuple[float, float]]]]:
    """Random glyphs: each a few strokes between points of a 3 x 5 grid (unit box coordinates)."""
    pts = [(x / 2, y / 4) for x in range(3) for y in range(5)]
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 5))
        strokes = []
        for _ in range(k):
            a, b = rng.choice(len(pts), 2, replace=False)
            strokes.append((pts[a], pts[b]))
        out.append(strokes)
    return out


def _voronoi_labels(seeds: np.ndarray, S: int, step: int = 4) -> np.ndarray:
    """``[S, S]`` index of the nearest seed to each texel centre.

    Labels a coarse grid (one sample per ``step`` x ``step`` block) with a k-d tree, then decides
    texels of blocks near a label change among the labels of the surrounding 3 x 3 blocks (cells
    are much larger than ``step`` texels, so this is exact in practice and always deterministic).
    """
    n = S // step
    c = (np.arange(n) + 0.5) * step
    cy, cx = np.meshgrid(c, c, indexing="ij")
    coarse = cKDTree(seeds).query(np.stack([cx.ravel(), cy.ravel()], 1))[1].reshape(n, n)
    pad = np.pad(coarse, 1, mode="edge")
    nb = np.stack([pad[1 + dy: 1 + dy + n, 1 + dx: 1 + dx + n] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], -1)
    mixed = (nb != coarse[..., None]).any(-1)
    lab = np.repeat(np.repeat(coarse, step, 0), step, 1)
    by, bx = np.nonzero(mixed)
    if len(by):
        oy, ox = np.meshgrid(np.arange(step), np.arange(step), indexing="ij")
        ty = (by[:, None] * step + oy.ravel()[None]).ravel()  # texels of the mixed blocks
        tx = (bx[:, None] * step + ox.ravel()[None]).ravel()
        cand = np.repeat(nb[by, bx], step * step, axis=0)  # [N, 9] candidate labels
        d = (seeds[cand, 0] - (tx[:, None] + 0.5)) ** 2 + (seeds[cand, 1] - (ty[:, None] + 0.5)) ** 2
        lab[ty, tx] = cand[np.arange(len(cand)), np.argmin(d, 1)]
    return lab


def procedural_texture(rng: np.random.Generator, size: int = 1024, detail: float = 1.0, muted: float = 0.0) -> np.ndarray:
    """A rich ``[size, size, 3]`` uint8 texture.

    ``detail`` scales the number of blobs, cells and labels; ``muted`` in [0, 1) blends the result
    towards a light tone (lower contrast, for backgrounds such as walls).
    """
    if size & (size - 1):
        raise ValueError(f"texture size must be a power of two, got {size}")
    S = size
    pal = random_palette(rng, 5)
    img = _palette_map(value_noise(rng, S), pal)
    # A second noise field modulates brightness at a different scale.
    img *= (0.75 + 0.5 * value_noise(rng, S, octaves=5, base_cells=6))[..., None]

    # Voronoi cells: random tints and dark borders.
    n_cells = int(80 * detail * S / 1024) + 12
    lab = _voronoi_labels(rng.random((n_cells, 2)) * S, S)
    tint = random_palette(rng, n_cells)
    alpha = rng.uniform(0.15, 0.55, n_cells).astype(np.float32)[lab][..., None]
    img = img * (1 - alpha) + tint[lab] * alpha
    border = np.zeros((S, S), bool)
    border[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    border[1:, :] |= lab[1:, :] != lab[:-1, :]
    img[border] *= 0.35

    pil = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)

    # A bank of fill colours: mostly random hues, some near-black and near-white.
    bank = [tuple(int(x) for x in c) for c in (random_palette(rng, 64) * 255).astype(int)]
    grey = [(13, 13, 13), (242, 242, 242)]

    def col() -> tuple[int, int, int]:
        return bank[int(rng.integers(64))] if rng.random() < 0.7 else grey[int(rng.integers(2))]

    # Blobs: ellipses and polygons, radius log-uniform from ~S/250 to ~S/14.
    n_blobs = int(700 * detail * S / 1024) + 20
    for _ in range(n_blobs):
        cx, cy = rng.random(2) * S
        r = np.exp(rng.uniform(np.log(S / 250), np.log(S / 14)))
        if rng.random() < 0.6:
            ax = r * rng.uniform(0.5, 1.5, 2)
            outline = col() if rng.random() < 0.5 else None
            draw.ellipse([cx - ax[0], cy - ax[1], cx + ax[0], cy + ax[1]], fill=col(), outline=outline,
                         width=max(1, int(r / 6)))
        else:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.random(k)) * 2 * np.pi
            rad = r * rng.uniform(0.5, 1.3, k)
            draw.polygon([(float(cx + a * np.cos(b)), float(cy + a * np.sin(b))) for a, b in zip(rad, ang)], fill=col())

    # Text-like labels: a light plate with rows of random glyphs.
    glyphs = _glyphs(rng)
    n_labels = int(20 * detail * S / 1024) + 2
    for _ in range(n_labels):
        gh = float(rng.uniform(S / 90, S / 28))  # glyph height in texels
        gw = gh * 0.6
        cols, rows = int(rng.integers(4, 14)), int(rng.integers(1, 4))
        x0, y0 = rng.random(2) * S * 0.85
        plate = tuple(int(x) for x in rng.integers(200, 256, 3))
        ink = tuple(int(x) for x in rng.integers(0, 70, 3))
        draw.rectangle([x0 - gw * 0.5, y0 - gh * 0.4, x0 + cols * gw * 1.3 + gw * 0.2, y0 + rows * gh * 1.5],
                       fill=plate)
        lw = max(1, int(gh / 7))
        for rr in range(rows):
            for cc in range(cols):
                if rng.random() < 0.12:
                    continue  # word gap
                g = glyphs[int(rng.integers(len(glyphs)))]
                ox, oy = x0 + cc * gw * 1.3, y0 + rr * gh * 1.5
                for (ax_, ay_), (bx_, by_) in g:
                    draw.line([(ox + ax_ * gw, oy + ay_ * gh), (ox + bx_ * gw, oy + by_ * gh)], fill=ink, width=lw)

    out = np.asarray(pil, dtype=np.float32) / 255.0
    out += 0.03 * rng.standard_normal((S, S, 1), dtype=np.float32)  # fine grain
    if muted > 0:
        tone = 0.8 + 0.15 * rng.random(3).astype(np.float32)
        out = (1 - muted) * out + muted * tone
    return np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)


def mip_pyramid(tex: np.ndarray) -> list[np.ndarray]:
    """Box-filtered mip levels of a ``[T, T, 3]`` uint8 texture, as float32 in [0, 1], down to 1 x 1."""
    lv = [np.ascontiguousarray(tex, dtype=np.float32) / 255.0]
    while lv[-1].shape[0] > 1:
        a = lv[-1]
        lv.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
    return lv
