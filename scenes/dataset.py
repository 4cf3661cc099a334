"""Write a built-in scene as a dataset: images, depth, object masks, GT mesh, transforms.json.

Layout of ``out_dir``::

    images/frame_00000.png   RGB uint8 (plain background colour where nothing is hit)
    masks/frame_00000.png    object id per pixel centre (uint8; uint16 if ids > 255); 0 = background
    depth/frame_00000.npy    float32 [H, W] z-depth along the camera's +z axis, scene units; 0 = no hit
    transforms.json          nerfstudio format (OpenGL camera-to-world), splits, per-frame time
    scene.json               metadata: seed, bounding box, objects, light, conventions
    mesh.ply                 GT mesh at time 0, vertex colours, per-face object_id
    mesh.obj/.mtl, textures/ the same mesh with its textures (``textured_mesh=True``)

Every byte depends only on (name, views, res, seed, ss, textured_mesh): nothing time- or
machine-dependent is written. The folder is built next to ``out_dir`` and renamed into place.
``.recon-synth.json`` lists what was created; a re-run replaces only those entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from recon.errors import ReconError
from recon.scene.cameras import intrinsics_from_fov
from recon.scene.conventions import opencv_to_opengl
from scenes.recipes import RECIPES, RIG_CAMERAS, Recipe, rig_views
from scenes.render import Renderer, TextureAtlas

FORMAT_VERSION = 2  # 2: object masks under object_mask_path (mask_path means "ignore these pixels")
TEST_EVERY = 8
GENERATOR = "recon.scenes"


def frame_name(i: int) -> str:
    return f"frame_{i:05d}"


def build(name: str, seed: int = 0) -> Recipe:
    """The recipe of a built-in scene (raises :class:`ReconError` for an unknown name).

    Recipes are immutable once built; the last few are kept, so rendering a dataset and then a
    video of the same scene generates its textures once.
    """
    if name not in RECIPES:
        raise ReconError(f"unknown scene {name!r}; built-in scenes: {', '.join(RECIPES)}")
    return _build_cached(name, int(seed))


@functools.lru_cache(maxsize=3)
def _build_cached(name: str, seed: int) -> Recipe:
    return RECIPES[name](seed)


def _save_png(path: Path, arr: np.ndarray) -> None:
    if arr.dtype == np.uint16:
        Image.fromarray(arr.astype("<u2"), mode="I;16").save(path, compress_level=3)
    else:
        Image.fromarray(arr).save(path, compress_level=3)


def _round(x) -> list:
    """JSON-friendly nested lists with values rounded to 12 significant digits (stable text)."""
    return [float(f"{v:.12g}") for v in x] if np.ndim(x) == 1 else [_round(r) for r in x]


def _mesh_arrays(recipe: Recipe, time: float = 0.0):
    """World-space merged mesh at ``time``: vertices, faces, per-face object id, per-vertex colour."""
    meshes = recipe.meshes_at(time)
    atlas = TextureAtlas([p.texture for p in recipe.parts])
    verts, faces, fobj, cols = [], [], [], []
    off = 0
    for k, (part, m) in enumerate(zip(recipe.parts, meshes)):
        # Vertex colour = the texture averaged over about one triangle edge around the vertex.
        eu = np.linalg.norm(m.uvs[m.faces[:, 0]] - m.uvs[m.faces[:, 1]], axis=1)
        lod = np.log2(max(float(np.median(eu)) * part.texture.shape[0], 1.0))
        n = len(m.uvs)
        c = atlas.sample(np.full(n, k), m.uvs[:, 0], m.uvs[:, 1], np.full(n, lod, np.float32))
        verts.append(m.vertices)
        faces.append(m.faces + off)
        fobj.append(np.full(len(m.faces), part.object_id, np.uint16))
        cols.append(np.clip(c * 255 + 0.5, 0, 255).astype(np.uint8))
        off += n
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(fobj), np.concatenate(cols)


def write_mesh_ply(path: Path, vertices, faces, face_object, colors) -> None:
    """Binary little-endian PLY: float32 xyz + uchar rgb per vertex; int32 indices + ushort object_id per face."""
    v = np.empty(len(vertices), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v["x"], v["y"], v["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    v["red"], v["green"], v["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    f = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,)), ("object_id", "<u2")])
    f["n"] = 3
    f["i"] = faces
    f["object_id"] = face_object
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment recon.scenes ground-truth mesh\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nproperty ushort object_id\n"
        "end_header\n"
    )
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(v.tobytes())
        fh.write(f.tobytes())


def write_mesh_obj(folder: Path, recipe: Recipe, time: float = 0.0) -> None:
    """``mesh.obj`` + ``mesh.mtl`` + ``textures/<part>.png``: one group and material per part."""
    tex_dir = folder / "textures"
    tex_dir.mkdir(exist_ok=True)
    lines_mtl, chunks = [], ["mtllib mesh.mtl\n"]
    off = 0
    for part, m in zip(recipe.parts, recipe.meshes_at(time)):
        _save_png(tex_dir / f"{part.name}.png", part.texture)
        lines_mtl += [f"newmtl {part.name}", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "illum 1",
                      f"map_Kd textures/{part.name}.png", ""]
        n = len(m.vertices)
        body = [f"o {part.name}\n", f"usemtl {part.name}\n"]
        body.append("".join(f"v {a:.7g} {b:.7g} {c:.7g}\n" for a, b, c in m.vertices))
        body.append("".join(f"vt {a:.7g} {b:.7g}\n" for a, b in m.uvs))
        body.append("".join(f"vn {a:.6g} {b:.6g} {c:.6g}\n" for a, b, c in m.normals))
        fi = m.faces + off + 1
        body.append("".join(f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}\n" for a, b, c in fi))
        chunks += body
        off += n
    (folder / "mesh.mtl").write_text("\n".join(lines_mtl))
    (folder / "mesh.obj").write_text("".join(chunks))


def _config(name: str, seed: int, views: int, res: int, ss: int, textured_mesh: bool, distortion=None) -> dict:
    cfg = {"name": name, "seed": int(seed), "views": views, "res": res, "ss": ss,
           "textured_mesh": textured_mesh, "format_version": FORMAT_VERSION}
    if distortion is not None and any(distortion):
        cfg["distortion"] = [float(v) for v in distortion]
    return cfg


MARKER = ".recon-synth.json"  # written into every output folder: what synth created there
# What a synth output held before the marker existed (format 2 outputs without MARKER).
_LEGACY_ENTRIES = ("images", "masks", "depth", "transforms.json", "scene.json", "mesh.ply", "mesh.obj", "mesh.mtl",
                   "textures", "video.mp4")


def read_marker(folder: Path) -> set[str] | None:
    """The names ``recon scene synth`` created in ``folder`` (None: it did not write this folder).

    A folder written before the marker existed is recognised by its ``scene.json`` (generator
    ``recon.scenes``); its own entries are then the standard layout's names.
    """
    folder = Path(folder)
    m = folder / MARKER
    if m.is_file():
        try:
            d = json.loads(m.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(d, dict) and d.get("generator") == GENERATOR and isinstance(d.get("entries"), list):
            return {str(e) for e in d["entries"] if isinstance(e, str) and e and "/" not in e and e not in (".", "..")}
        return None
    prev = folder / "scene.json"
    if prev.is_file():
        try:
            old = json.loads(prev.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(old, dict) and old.get("generator") == GENERATOR:
            return set(_LEGACY_ENTRIES)
    return None


def marked_files(folder: Path) -> set[str] | None:
    """The files (paths relative to ``folder``) the marker says synth wrote inside its own
    sub-folders; None when the marker does not list them (an older output)."""
    try:
        d = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    files = d.get("files") if isinstance(d, dict) else None
    return {str(f) for f in files} if isinstance(files, list) else None


def write_marker(folder: Path, entries) -> None:
    """Record ``entries`` (top-level names in ``folder``) as created by ``recon scene synth``, with
    every file inside those of them that are folders."""
    from recon.io_utils import atomic_write_text

    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for e in set(entries) if (folder / e).is_dir()
                   for p in (folder / e).rglob("*") if not p.is_dir())
    body = {"generator": GENERATOR, "format_version": FORMAT_VERSION,
            "note": "written by `recon scene synth`; it replaces only these entries when re-run",
            "entries": sorted(set(entries)), "files": files}
    atomic_write_text(Path(folder) / MARKER, json.dumps(body, indent=1) + "\n")


def synth(name: str, out_dir: str | os.PathLike, views: int = 60, res: int = 256, seed: int = 0, ss: int = 2,
          textured_mesh: bool = False, force: bool = False, progress: bool = False,
          also: tuple[str, ...] = (), distortion=None, cameras: int | None = None) -> Path:
    """Render built-in scene ``name`` into ``out_dir`` and return the folder.

    Args:
        name: one of :data:`scenes.SCENES`.
        out_dir: target folder; it must not exist, be empty, or hold an earlier ``recon scene synth``
            output (it holds :data:`MARKER`). Same config as the existing output and not ``force``:
            reused. Otherwise only what synth created there is replaced; anything else in the folder
            (notes, photos, a trained run) is kept. A non-empty folder without the marker is refused.
        views: number of views; every 8th (index % 8 == 0) is a test view.
        res: image width = height in pixels.
        seed: drives the textures and the camera rig's phase and jitter.
        ss: supersampling factor per axis at silhouettes/depth edges (1 disables anti-aliasing).
        textured_mesh: also write ``mesh.obj`` with its texture images.
        force: re-render even when an identical output exists.
        progress: print one line per 10 views.
        also: names the caller will write into the folder afterwards as part of this output (the
            CLI's ``video.mp4``): refused if someone else's file has that name, recorded as own.
        distortion: OPENCV ``(k1, k2, p1, p2)`` of the lens the views are rendered through (written
            to ``transforms.json``; images, masks and depth all follow it). ``None``: a pinhole lens.
        cameras: ``dynamic-rig`` only: fixed cameras of the capture stage (``None``: the recipe's
            :data:`scenes.recipes.RIG_CAMERAS`).
    """
    if views < 1:
        raise ReconError(f"--views must be at least 1, got {views}")
    if views > 100_000:
        raise ReconError(f"--views must be at most 100000, got {views}")
    if res < 8 or res > 8192:
        raise ReconError(f"--res must be between 8 and 8192 pixels, got {res}")
    if ss < 1 or ss > 8:
        raise ReconError(f"--ss must be between 1 and 8, got {ss}")
    if name not in RECIPES:
        raise ReconError(f"unknown scene {name!r}; built-in scenes: {', '.join(RECIPES)}")
    out = Path(out_dir)
    if distortion is not None:
        distortion = [float(v) for v in distortion]
        if len(distortion) != 4 or not all(np.isfinite(distortion)) or max(abs(v) for v in distortion) > 1.0:
            raise ReconError(f"--distortion {distortion}: give four OPENCV coefficients k1 k2 p1 p2, each in [-1, 1]")
    if cameras is not None:
        if name != "dynamic-rig":
            raise ReconError(f"--cameras applies to the dynamic-rig scene (a capture stage of fixed cameras), not {name!r}")
        if not 2 <= cameras <= 1000:
            raise ReconError(f"--cameras must be between 2 and 1000 (a multi-view rig), got {cameras}")
        if cameras == RIG_CAMERAS:
            cameras = None  # the default layout: the same configuration (and bytes) as without the option
    cfg = _config(name, seed, views, res, ss, textured_mesh, distortion)
    if cameras is not None:
        cfg["cameras"] = int(cameras)
    own: set[str] = set()
    present: set[str] = set()
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ReconError(f"{out}: exists and is not a folder; pick another output path")
        present = {p.name for p in out.iterdir()}
        marked = read_marker(out)
        if marked is None:
            if present:
                raise ReconError(f"{out}: folder is not empty and was not written by `recon scene synth` "
                                 f"(no {MARKER}); nothing was changed: pick a new or empty folder")
        else:
            own = marked & present
            listed = marked_files(out)
            if listed is not None:  # someone else's file inside one of our folders is not ours to delete
                for e in sorted(own):
                    if (out / e).is_dir() and not (out / e).is_symlink():
                        for p in sorted((out / e).rglob("*")):
                            if not p.is_dir() and p.relative_to(out).as_posix() not in listed:
                                raise ReconError(f"{p}: not written by `recon scene synth`; re-running would delete it: "
                                                 "move it or pick another folder")
            prev = out / "scene.json"
            try:
                old = json.loads(prev.read_text()) if prev.is_file() else {}
            except (OSError, ValueError):
                old = {}
            if (isinstance(old, dict) and old.get("config") == cfg and (out / "transforms.json").is_file()
                    and not force and not (set(also) & (present - own))):
                return out
        clash = sorted(set(also) & (present - own - {MARKER}))
        if clash:
            raise ReconError(f"{out / clash[0]}: not written by `recon scene synth`; it would be overwritten: "
                             "move it or pick another folder")
    recipe = build(name, seed)
    if cameras is not None:  # the cached recipe is shared: a copy with the other stage
        recipe = dataclasses.replace(recipe, rig=lambda n: rig_views(n, cameras))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.tmp-", dir=out.parent))
    try:
        _write(recipe, tmp, views, res, ss, textured_mesh, cfg, progress)
        write_marker(tmp, [p.name for p in tmp.iterdir() if p.name != MARKER] + list(also))
        _install(tmp, out, own, present)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _install(tmp: Path, out: Path, own: set[str], present: set[str]) -> None:
    """Put the rendered folder ``tmp`` in place of ``out``'s earlier synth output (``own``),
    keeping every other entry of ``out``."""
    foreign = present - own - {MARKER}
    if not present:
        if out.is_dir():
            out.rmdir()  # empty: replaced by the new folder
        os.replace(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.old-", dir=out.parent))
    if not foreign:  # only our own output: swap the whole folder
        os.replace(out, trash / "out")
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(trash / "out", out)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return
    # Someone else's files live beside ours: move only our entries out and the new ones in.
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for n in sorted(own | ({MARKER} & present)):
            os.replace(out / n, trash / n)
            moved_old.append(n)
        for p in sorted(tmp.iterdir()):
            os.replace(p, out / p.name)
            moved_new.append(p.name)
    except BaseException:
        for n in moved_new:
            with contextlib.suppress(OSError):
                os.replace(out / n, tmp / n)
        for n in moved_old:
            with contextlib.suppress(OSError):
                os.replace(trash / n, out / n)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    tmp.rmdir()


def _write(recipe: Recipe, out: Path, views: int, res: int, ss: int, textured_mesh: bool, cfg: dict,
           progress: bool) -> None:
    for sub in ("images", "masks", "depth"):
        (out / sub).mkdir()
    K = intrinsics_from_fov(recipe.fov_x, res, res)
    c2ws, times = recipe.rig(views)
    renderer = Renderer(recipe, ss=ss)
    max_id = max(recipe.objects)
    frames, names = [], []
    for i in range(views):
        tm = 0.0 if times is None else float(times[i])
        r = renderer.render(K, c2ws[i], res, res, tm, dist=cfg.get("distortion"))
        stem = frame_name(i)
        _save_png(out / "images" / f"{stem}.png", r.rgb)
        _save_png(out / "masks" / f"{stem}.png", r.ids.astype(np.uint8) if max_id < 256 else r.ids)
        np.save(out / "depth" / f"{stem}.npy", r.depth)
        fr = {
            "file_path": f"images/{stem}.png",
            "transform_matrix": _round(opencv_to_opengl(c2ws[i])),
            "object_mask_path": f"masks/{stem}.png",  # object ids, not an ignore mask
            "depth_file_path": f"depth/{stem}.npy",
        }
        if times is not None:
            fr["time"] = float(f"{tm:.12g}")
            # Rigid motion of each moving object relative to its pose in mesh.ply (time 0).
            fr["object_transforms"] = {
                str(oid): _round(recipe.object_transform(oid, tm) @ np.linalg.inv(recipe.object_transform(oid, 0.0)))
                for oid in sorted(recipe.motions)
            }
        frames.append(fr)
        names.append(fr["file_path"])
        if progress and ((i + 1) % 10 == 0 or i + 1 == views):
            print(f"  rendered {i + 1}/{views} views", flush=True)

    test = [n for i, n in enumerate(names) if i % TEST_EVERY == 0]
    train = [n for i, n in enumerate(names) if i % TEST_EVERY != 0]
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
        "w": res, "h": res, **dict(zip(("k1", "k2", "p1", "p2"), cfg.get("distortion", (0.0, 0.0, 0.0, 0.0)))),
        "depth_unit_scale_factor": 1.0,
        "frames": frames,
        "train_filenames": train,
        "val_filenames": list(test),
        "test_filenames": test,
    }
    if recipe.background is not None:
        transforms["background_color"] = list(recipe.background)

    v, f, fobj, col = _mesh_arrays(recipe, 0.0)
    write_mesh_ply(out / "mesh.ply", v, f, fobj, col)
    if textured_mesh:
        write_mesh_obj(out, recipe, 0.0)

    lo, hi = v.min(0), v.max(0)
    if recipe.dynamic:  # include the moving objects' sweep
        for tm in np.linspace(0, 1, 33):
            vt = np.concatenate([m.vertices for m in recipe.meshes_at(float(tm))])
            lo, hi = np.minimum(lo, vt.min(0)), np.maximum(hi, vt.max(0))
    centre = 0.5 * (lo + hi)
    meta = {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "config": cfg,
        "name": recipe.name,
        "seed": recipe.seed,
        "kind": recipe.kind,
        "dynamic": recipe.dynamic,
        "world": {"up": [0.0, 0.0, 1.0], "units": "metres (nominal)"},
        "bbox": {"min": _round(lo), "max": _round(hi)},
        "center": _round(centre),
        "radius": float(f"{np.linalg.norm(hi - lo) / 2:.12g}"),
        "objects": [
            {"id": oid, "name": nm, "parts": [p.name for p in recipe.parts if p.object_id == oid],
             "moving": oid in recipe.motions}
            for oid, nm in sorted(recipe.objects.items())
        ],
        "light": recipe.light.to_json(),
        "background": list(recipe.background) if recipe.background is not None else None,
        "camera": {
            "fov_x_deg": float(f"{np.degrees(recipe.fov_x):.12g}"),
            "transforms_json": "transform_matrix is OpenGL camera-to-world (x right, y up, z back); "
                               "OpenCV c2w = transform_matrix @ diag(1, -1, -1, 1)",
            "intrinsics": "pixel centres at (i + 0.5, j + 0.5); cx = w / 2, cy = h / 2",
        },
        "images": "RGB uint8 sRGB; background pixels are the plain background colour",
        "depth": "float32 .npy [H, W]: z-depth along the camera's +z axis in scene units at each pixel "
                 "centre; 0 where the ray hits nothing",
        "masks": "object id of the surface hit at each pixel centre (see objects); 0 = background",
        "time": "per-frame 'time' in [0, 1] in transforms.json; 'object_transforms' maps each moving object "
                "id to the 4x4 world transform from its pose in mesh.ply to its pose at that time"
                if recipe.dynamic else None,
        "mesh": {"ply": "mesh.ply", "time": 0.0, "faces": int(len(f)), "vertices": int(len(v)),
                 "obj": "mesh.obj" if textured_mesh else None},
        "render": {
            "renderer": "open3d RaycastingScene",
            "antialiasing": f"{ss}x{ss} supersampling of pixels at object boundaries and depth edges; "
                            "trilinear mip-mapped textures elsewhere" if ss > 1 else "none (one ray per pixel centre)",
            "shading": "Lambertian + ambient, fixed light, hard shadows",
        },
        "splits": {"test": f"every {TEST_EVERY}th view (index % {TEST_EVERY} == 0); val = test"},
    }
    (out / "transforms.json").write_text(json.dumps(transforms, indent=2) + "\n")
    (out / "scene.json").write_text(json.dumps(meta, indent=2) + "\n")
