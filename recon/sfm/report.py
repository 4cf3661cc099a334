"""SfM quality report (JSON + text + plot) and plain-language diagnosis of failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from recon.sfm.colmap import MIN_INLIERS

_BAD_CONFIGS = {"UNDEFINED", "DEGENERATE", "WATERMARK"}
_NO_PARALLAX = {"PANORAMIC", "PLANAR_OR_PANORAMIC"}


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices to inclusive runs ``[(first, last), ...]``."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def describe_runs(names: Sequence[str], indices: Sequence[int], limit: int = 3) -> str:
    """"images 5-30 (a.jpg ... z.jpg), 41" style text for 0-based ``indices`` into ``names``."""
    parts = []
    runs = _runs(indices)
    for a, b in runs[:limit]:
        if a == b:
            parts.append(f"{a + 1} ({names[a]})")
        else:
            parts.append(f"{a + 1}–{b + 1} ({names[a]} … {names[b]})")
    more = f" and {len(runs) - limit} more groups" if len(runs) > limit else ""
    word = "image" if len(indices) == 1 else "images"
    return f"{word} " + ", ".join(parts) + more


def _graph(names: Sequence[str], pairs) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {n: set() for n in names}
    for a, b, inl, cfg in pairs:
        if inl >= MIN_INLIERS and cfg not in _BAD_CONFIGS and a in g and b in g:
            g[a].add(b)
            g[b].add(a)
    return g


def _components(g: dict[str, set[str]]) -> dict[str, int]:
    """Connected component id of every node of an undirected graph."""
    comp: dict[str, int] = {}
    for start in g:
        if start in comp:
            continue
        cid = len(comp) and max(comp.values()) + 1
        stack = [start]
        comp[start] = cid
        while stack:
            for nb in g[stack.pop()]:
                if nb not in comp:
                    comp[nb] = cid
                    stack.append(nb)
    return comp


def diagnose(names: Sequence[str], registered: set[str], pairs) -> str:
    """One plain-language sentence on why images did not register.

    Args:
        names: every image given to SfM, in input order.
        registered: names that were registered (empty when mapping failed).
        pairs: ``(name_a, name_b, inliers, config)`` verified pairs from the match database.
    """
    n = len(names)
    g = _graph(names, pairs)
    n_edges = sum(len(v) for v in g.values()) // 2
    if not registered:
        good = [p for p in pairs if p[2] >= MIN_INLIERS and p[3] not in _BAD_CONFIGS]
        if n_edges == 0:
            return (
                f"none of the {n} images could be registered: no two images share enough matching features "
                f"(little or no overlap between them); take photos that overlap their neighbours by 60% or more"
            )
        flat = [p for p in good if p[3] in _NO_PARALLAX]
        if len(flat) >= 0.8 * len(good):
            return (
                f"none of the {n} images could be registered: the images overlap but show almost no parallax "
                f"(the camera turned on the spot or did not move); move the camera between photos"
            )
        isolated = [i for i, nm in enumerate(names) if not g[nm]]
        msg = f"none of the {n} images could be registered: only {n_edges} image pairs overlap, too weakly to start a model"
        if isolated:
            msg += f"; {describe_runs(names, isolated)} overlap no other image"
        return msg
    unreg = [i for i, nm in enumerate(names) if nm not in registered]
    if not unreg:
        return f"all {n} images registered"
    comp = _components(g)
    has_reg = {c for nm, c in comp.items() if nm in registered}
    isolated = [i for i in unreg if not g[names[i]]]
    linked_to_model = [i for i in unreg if g[names[i]] and comp[names[i]] in has_reg]
    separate = [i for i in unreg if g[names[i]] and comp[names[i]] not in has_reg]
    head = f"only {len(registered)} of {n} images registered"
    reasons = []
    if isolated:
        reasons.append(f"little overlap between {describe_runs(names, isolated)} and any other image")
    if separate:
        reasons.append(f"{describe_runs(names, separate)} overlap each other but not the registered images (a separate part of the capture)")
    if linked_to_model:
        reasons.append(f"{describe_runs(names, linked_to_model)} match the registered images (directly or through others) too weakly to be posed")
    return head + ": " + "; ".join(reasons)


def reconstruction_stats(rec) -> dict[str, Any]:
    """Registered images, points, reprojection error, track length and cameras of a pycolmap model."""
    cams = []
    for cid, c in sorted(rec.cameras.items()):
        cams.append({
            "camera_id": int(cid), "model": c.model.name, "width": int(c.width), "height": int(c.height),
            "params": [float(p) for p in c.params], "params_info": c.params_info,
        })
    return {
        "images_registered": int(rec.num_reg_images()),
        "num_points3D": int(rec.num_points3D()),
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "mean_track_length": float(rec.compute_mean_track_length()) if rec.num_points3D() else 0.0,
        "mean_observations_per_image": float(rec.compute_mean_observations_per_reg_image()) if rec.num_reg_images() else 0.0,
        "cameras": cams,
    }


def text_report(r: dict[str, Any]) -> str:
    """The human summary written to ``sfm_report.txt``."""
    L = [f"recon process: structure-from-motion report ({r.get('status', '?')})", ""]
    L.append(f"scene:      {r['scene']}")
    L.append(f"command:    {r.get('command', '')}")
    reg, tot = r["images_registered"], r["images_total"]
    L.append(f"registered: {reg} of {tot} images ({100.0 * reg / max(tot, 1):.0f}%)")
    if r.get("unregistered"):
        shown = ", ".join(r["unregistered"][:10]) + (" …" if len(r["unregistered"]) > 10 else "")
        L.append(f"  not registered: {shown}")
    if r.get("diagnosis") and reg < tot:
        L.append(f"  diagnosis: {r['diagnosis']}")
    L.append(f"reprojection error: {r['mean_reprojection_error_px']:.3f} px mean (full-resolution pixels)")
    L.append(f"track length: {r['mean_track_length']:.2f} images per point on average")
    L.append(f"sparse points: {r['num_points3D']}")
    L.append(f"matcher: {r['matcher']}, mapper: {r['mapper']}, features at max {r['options']['max_size']} px")
    for c in r["cameras"]:
        vals = ", ".join(f"{k}={v:.4g}" for k, v in zip(c["params_info"].split(", "), c["params"]))
        L.append(f"camera {c['camera_id']}: {c['model']} {c['width']}x{c['height']} ({vals}), {c.get('num_images', '?')} images")
    t = r.get("transform", {})
    if t:
        L.append(f"output frame: +z up, origin at the {r['options']['center']} centre, units {t.get('units')}, scale {t.get('scale', 1):.6g} per SfM unit")
    for w in r.get("warnings", []):
        L.append(f"warning: {w}")
    if r.get("timings_s"):
        L.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in r["timings_s"].items()) + f"; peak memory {r.get('peak_rss_mb', 0):.0f} MB")
    L += [
        "",
        "files (frames):",
        "  sparse/0/          COLMAP model of the undistorted (PINHOLE) frames, SfM frame (as COLMAP solved it)",
        "  distorted/sparse/0 COLMAP model before undistortion (the ingested images), SfM frame",
        "  images/            undistorted frames (pinhole, no distortion)",
        "  transforms.json    nerfstudio cameras, output frame (applied_transform maps SfM -> output)",
        "  points.ply         sparse points, output frame",
        "  sfm_transform.json the SfM -> output similarity and how it was chosen",
    ]
    return "\n".join(L) + "\n"


def plot(path: Path, c2w: np.ndarray, points: Optional[np.ndarray], colors: Optional[np.ndarray], title: str) -> None:
    """Top (x-y) and side (x-z) views of camera centres, viewing directions and sparse points."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    C = c2w[:, :3, 3]
    d = c2w[:, :3, 2]
    span = float(np.ptp(C, axis=0).max()) if len(C) > 1 else 1.0
    L = 0.08 * (span if span > 0 else 1.0)
    if points is not None and len(points):
        rng = np.random.default_rng(0)
        sel = rng.choice(len(points), size=min(20000, len(points)), replace=False)
        P = points[sel]
        col = colors[sel] / 255.0 if colors is not None else "0.5"
        lo, hi = np.percentile(P, 1, axis=0), np.percentile(P, 99, axis=0)
        keep = np.all((P >= lo - 0.5 * (hi - lo)) & (P <= hi + 0.5 * (hi - lo)), axis=1)
        P = P[keep]
        col = col[keep] if not isinstance(col, str) else col
    else:
        P = None
    for ax, (i, j, lab) in zip(axes, ((0, 1, "top view (x, y)"), (0, 2, "side view (x, z)"))):
        if P is not None:
            ax.scatter(P[:, i], P[:, j], s=0.5, c=col, linewidths=0)
        ax.scatter(C[:, i], C[:, j], s=12, c="red", zorder=3)
        for c, v in zip(C, d):
            ax.plot([c[i], c[i] + L * v[i]], [c[j], c[j] + L * v[j]], c="red", lw=0.8, zorder=3)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(lab)
        ax.grid(True, lw=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
