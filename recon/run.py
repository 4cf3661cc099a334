"""The run folder: one versioned manifest, one writer and one reader for eval, view, export and render.

``recon train`` writes ``RUN/``::

    run.json        the manifest (below)
    splats.ply      the method's model artifact(s), named in the manifest (``artifacts``)
    cameras.json    every frame's camera: {"format": "recon-cameras", "version": 2, "cameras": [...]}
    points.ply      sparse SfM points in the model's frame (when the scene has them)
    metrics.json    held-out scores; renders/grid.png, curves.png: pictures of them
    checkpoints/    step_NNNNNNN.pt, for --resume

``run.json``::

    {"format": "recon-run", "version": 1, "status": "training" | "done",
     "method": "splat", "artifacts": {"model": "splats.ply", "cameras": "cameras.json", ...},
     "scene": {"absolute": "/data/lego", "relative": "../../data/lego", "format": "blender"},
     "render": {"antialiased": false, "sh_degree": 3, "background": [1, 1, 1], "downscale": 2.0},
     "config": {...}, "config_hash": "...", "provenance": {...}, "created": "...", "updated": "..."}

The scene is stored both absolute and relative to the run folder, so a run works from any working
folder and after the run and its scene move together. A folder without ``run.json`` is still
readable when it holds a splat PLY (``splats.ply`` or Inria's ``point_cloud/iteration_*``): runs of
recon 0.1 and of other 3DGS tools, with whatever ``config.json`` they carry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recon.errors import ReconError

MANIFEST = "run.json"
RUN_FORMAT = "recon-run"
RUN_VERSION = 1
CAMERAS_FORMAT = "recon-cameras"
CAMERAS_VERSION = 2
EVAL_BACKGROUND = (1.0, 1.0, 1.0)
"""RGBA captures are composited on white for evaluation (the NeRF-synthetic convention)."""


@dataclass
class RunCamera:
    """A frame's camera as the run stores it: OpenCV ``c2w [4, 4]`` (refined when poses were
    optimised; the input pose in ``c2w_input``), ``K [3, 3]`` at ``width x height``."""

    name: str
    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    split: str = "train"
    image: Optional[str] = None
    """The frame's image path relative to the scene folder (absolute when outside it)."""
    time: Optional[float] = None
    c2w_input: Optional[np.ndarray] = None

    @property
    def camera(self):
        from recon.scene.cameras import Camera

        return Camera(K=self.K, width=self.width, height=self.height, c2w=self.c2w)


def camera_entry(cam: RunCamera) -> dict[str, Any]:
    """One ``cameras.json`` entry (OpenCV and OpenGL camera-to-world, K, size, split, image)."""
    from recon.scene.conventions import opencv_to_opengl

    d: dict[str, Any] = {"name": cam.name, "split": cam.split, "width": int(cam.width), "height": int(cam.height),
                         "K": np.asarray(cam.K, np.float64).tolist(),
                         "c2w_opencv": np.asarray(cam.c2w, np.float64).tolist(),
                         "c2w_opengl": opencv_to_opengl(np.asarray(cam.c2w, np.float64)).tolist()}
    if cam.c2w_input is not None:
        d["c2w_input_opencv"] = np.asarray(cam.c2w_input, np.float64).tolist()
    if cam.image is not None:
        d["image"] = cam.image
    if cam.time is not None:
        d["time"] = float(cam.time)
    return d


def write_cameras(path: Path, cameras: list[RunCamera], provenance: dict | None = None) -> None:
    from recon.io_utils import atomic_write_text

    doc = {"format": CAMERAS_FORMAT, "version": CAMERAS_VERSION, "frame": "scene", "units": "scene",
           "convention": "OpenCV camera-to-world (x right, y down, z forward); c2w_opengl: OpenGL axes",
           "provenance": dict(provenance or {}), "cameras": [camera_entry(c) for c in cameras]}
    atomic_write_text(path, json.dumps(doc, indent=1))


def read_cameras(path: Path) -> list[RunCamera]:
    """Cameras of a ``cameras.json``: recon's schema (``c2w_opencv``), recon 0.1's (``c2w``), or a
    list of ``{name, c2w, K, width, height}``; :class:`ReconError` naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ReconError(f"cannot read cameras {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise ReconError(f"cameras {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    items = data.get("cameras", data.get("frames")) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ReconError(f"cameras {path}: expected a list of cameras (or an object with 'cameras')")
    out = []
    for i, it in enumerate(items):
        try:
            c2w = np.asarray(it["c2w_opencv"] if "c2w_opencv" in it else it["c2w"], np.float64).reshape(4, 4)
            K = np.asarray(it["K"], np.float64).reshape(3, 3)
            w, h = int(it["width"]), int(it["height"])
            c2w_in = it.get("c2w_input_opencv", it.get("c2w_input"))
            t = it.get("time")
            cam = RunCamera(name=str(it.get("name", f"{i:05d}")), c2w=c2w, K=K, width=w, height=h,
                            split=str(it.get("split", "train")),
                            image=it.get("image") if isinstance(it.get("image"), str) else None,
                            time=None if t is None else float(t),
                            c2w_input=None if c2w_in is None else np.asarray(c2w_in, np.float64).reshape(4, 4))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ReconError(f"cameras {path}: camera {i} is malformed ({e!s}); expected name, c2w_opencv "
                             "(4x4), K (3x3), width, height") from None
        if not (np.all(np.isfinite(c2w)) and np.all(np.isfinite(K)) and w > 0 and h > 0 and K[0, 0] > 0
                and K[1, 1] > 0):
            raise ReconError(f"cameras {path}: camera {i} ({cam.name}) has a non-finite pose, a non-positive "
                             "focal length or size")
        out.append(cam)
    return out


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def _rel(target: Path, base: Path) -> str:
    try:
        return os.path.relpath(target, base)
    except ValueError:  # another drive (Windows)
        return str(target)


def find_splats_file(folder: Path) -> Optional[Path]:
    """A folder's splat file: ``splats.ply``, else the newest Inria ``point_cloud/iteration_*`` PLY."""
    if (folder / "splats.ply").is_file():
        return folder / "splats.ply"

    def it(p: Path) -> int:
        tail = p.parent.name.split("_")[-1]
        return int(tail) if tail.isdigit() else -1

    its = sorted(folder.glob("point_cloud/iteration_*/point_cloud.ply"), key=it)
    return its[-1] if its else None


@dataclass
class RunFolder:
    """A run folder opened through its manifest (or, for foreign runs, what could be inferred)."""

    root: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    foreign_config: Optional[dict] = None
    """``config.json`` of a run without a manifest (recon 0.1 or another tool), as parsed."""

    # ---- writing ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, cfg, scene_path: Path, scene_format: str) -> "RunFolder":
        """Start a run: write ``run.json`` with status ``training``."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        scene_abs = Path(scene_path).resolve()
        m = {
            "format": RUN_FORMAT, "version": RUN_VERSION, "status": "training", "method": cfg.method,
            "artifacts": {},
            "scene": {"absolute": str(scene_abs), "relative": _rel(scene_abs, root.resolve()), "format": scene_format},
            "render": {"background": list(EVAL_BACKGROUND), "downscale": cfg.downscale},
            "config": cfg.to_dict(), "config_hash": cfg.hash(), "created": _now(),
        }
        run = cls(root, m)
        run.write()
        return run

    def write(self) -> None:
        from recon.io_utils import atomic_write_text

        self.manifest["updated"] = _now()
        atomic_write_text(self.root / MANIFEST, json.dumps(self.manifest, indent=2))

    def update(self, **fields: Any) -> None:
        for k, v in fields.items():
            if isinstance(v, dict) and isinstance(self.manifest.get(k), dict):
                self.manifest[k].update(v)
            else:
                self.manifest[k] = v
        self.write()

    # ---- reading ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        """Open a run folder (or a splat ``.ply`` file); :class:`ReconError` naming what is missing."""
        path = Path(path).expanduser()
        if not path.exists():
            raise ReconError(f"run {path} does not exist; pass a folder written by `recon train` (or a splat .ply)")
        if path.is_file():
            if path.suffix.lower() != ".ply":
                raise ReconError(f"{path} is not a run folder or a .ply splat file")
            return cls(path.parent, {"method": "splat", "artifacts": {"model": path.name}, "status": "done",
                                     "render": {}}, None)
        mp = path / MANIFEST
        if mp.is_file():
            try:
                m = json.loads(mp.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ReconError(f"{mp} is not a valid run manifest ({e}); the run's files are still there") from None
            if not isinstance(m, dict) or m.get("format") != RUN_FORMAT:
                raise ReconError(f"{mp} is not a recon run manifest (no \"format\": \"{RUN_FORMAT}\")")
            if int(m.get("version", 0)) > RUN_VERSION:
                raise ReconError(f"{mp} has run format version {m.get('version')}; this recon reads up to "
                                 f"{RUN_VERSION}: upgrade recon")
            return cls(path, m, None)
        return cls._open_foreign(path)

    @classmethod
    def _open_foreign(cls, folder: Path) -> "RunFolder":
        conf = None
        cp = folder / "config.json"
        if cp.is_file():
            try:
                conf = json.loads(cp.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ReconError(f"{cp}: invalid JSON ({e})") from None
            if not isinstance(conf, dict):
                raise ReconError(f"{cp}: expected a JSON object")
        found = find_splats_file(folder)
        if found is None:
            raise ReconError(f"no splats.ply (and no {MANIFEST}) in run folder {folder}; has training finished? "
                             "(`recon train` writes RUN/run.json and RUN/splats.ply)")
        m: dict[str, Any] = {"method": "splat", "status": "done", "render": {},
                             "artifacts": {"model": str(found.relative_to(folder))}}
        if (folder / "cameras.json").is_file():
            m["artifacts"]["cameras"] = "cameras.json"
        if (folder / "points.ply").is_file():
            m["artifacts"]["points"] = "points.ply"
        if conf is not None and isinstance(conf.get("config"), dict):  # recon 0.1: {"config": ..., "scene": ...}
            c = conf["config"]
            m["render"]["antialiased"] = bool((c.get("splat") or {}).get("antialiased", False))
            m["render"]["downscale"] = c.get("downscale", 1.0)
            if isinstance(conf.get("scene"), str):  # relative to the folder training started in
                p = Path(conf["scene"])
                m["scene"] = {"absolute": str(p.resolve()), "relative": _rel(p.resolve(), folder.resolve())}
        elif conf is not None:  # another tool's config: gsplat's rasterize_mode or an antialiased flag
            for d in [conf] + [v for v in conf.values() if isinstance(v, dict)]:
                v = d.get("rasterize_mode", d.get("antialiased"))
                if v is not None and not isinstance(v, dict):
                    m["render"]["antialiased"] = v is True or str(v).lower() == "antialiased"
                    break
        return cls(folder, m, conf)

    # ---- what the run holds ------------------------------------------------------------------------
    @property
    def method(self) -> str:
        return str(self.manifest.get("method", "splat"))

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "done"))

    @property
    def artifacts(self) -> dict[str, str]:
        return dict(self.manifest.get("artifacts", {}))

    @property
    def render_settings(self) -> dict[str, Any]:
        return dict(self.manifest.get("render", {}))

    @property
    def antialiased(self) -> bool:
        return bool(self.render_settings.get("antialiased", False))

    @property
    def is_recon_run(self) -> bool:
        return self.manifest.get("format") == RUN_FORMAT

    @property
    def config_dict(self) -> Optional[dict]:
        """The training config as saved (recon runs), or a foreign run's ``config.json``."""
        return self.manifest.get("config") if self.is_recon_run else self.foreign_config

    def config(self):
        """The :class:`recon.train.config.TrainConfig` of a recon run."""
        from recon.train.config import TrainConfig

        d = self.manifest.get("config")
        if d is None and isinstance(self.foreign_config, dict) and isinstance(self.foreign_config.get("config"), dict):
            d = self.foreign_config["config"]  # a recon 0.1 run: {"config": ..., "scene": ...}
        if not isinstance(d, dict):
            raise ReconError(f"{self.root} has no training config (not a run made by `recon train`)")
        try:
            return TrainConfig.from_dict(d)
        except (TypeError, ValueError) as e:
            raise ReconError(f"{self.root / MANIFEST}: invalid training config ({e})") from None

    def path(self, role: str) -> Optional[Path]:
        name = self.artifacts.get(role)
        return None if name is None else self.root / name

    def require_model(self) -> Path:
        p = self.path("model")
        if p is None or not p.is_file():
            if self.status == "training":
                raise ReconError(f"{self.root}: training has not finished (no model yet); continue it with "
                                 f"`recon train SCENE --out {self.root} --resume`")
            raise ReconError(f"{self.root}: the model file {p} is missing")
        return p

    def scene_path(self, override: Optional[Path] = None) -> Path:
        """The scene the run was trained on: ``override``, else the stored absolute path, else the stored
        path relative to the run folder (a run moved together with its scene)."""
        if override is not None:
            p = Path(override).expanduser()
            if not p.exists():
                raise ReconError(f"--scene {p}: no such folder")
            return p
        s = self.manifest.get("scene") or {}
        cands = []
        if s.get("absolute"):
            cands.append(Path(s["absolute"]))
        if s.get("relative"):
            cands.append((self.root / s["relative"]).resolve())
        for c in cands:
            if c.exists():
                return c
        if not cands:
            raise ReconError(f"{self.root} does not record its scene; pass --scene PATH")
        raise ReconError(f"the scene of run {self.root} is gone ({' or '.join(map(str, cands))}); pass --scene PATH")

    def cameras(self) -> list[RunCamera]:
        p = self.path("cameras") or self.root / "cameras.json"
        return read_cameras(p) if p.is_file() else []

    def image_dirs(self) -> list[Path]:
        """Folders that may hold the training images: the scene's (and its images/), the run's images/."""
        dirs = [self.root / "images"]
        try:
            sp = self.scene_path()
            dirs = [sp, sp / "images"] + dirs
        except ReconError:
            pass
        return [d for d in dirs if d.is_dir()]

    def image_path(self, cam: RunCamera) -> Optional[Path]:
        """The image a camera was trained on, when it can be found."""
        if cam.image:
            p = Path(cam.image)
            if not p.is_absolute():
                try:
                    p = self.scene_path() / p
                except ReconError:
                    p = None
            if p is not None and p.is_file():
                return p
        name = cam.name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts:
            return None
        for d in self.image_dirs():
            for suf in ("", ".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG"):
                p = d / (name + suf)
                if p.is_file():
                    return p
        return None

    def method_class(self):
        from recon.methods import get_method

        return get_method(self.method)

    def renderer(self):
        """The run's :class:`recon.methods.base.Renderer` (the one renderer of its method)."""
        self.require_model()
        return self.method_class().load_renderer(self.root, self.artifacts, self.render_settings)

    def gaussians(self):
        """The model as a splat dict, or :class:`ReconError` when the method's model is not Gaussians."""
        self.require_model()
        g = self.method_class().load_gaussians(self.root, self.artifacts)
        if g is None:
            raise ReconError(f"{self.root}: a {self.method} model is not made of Gaussians; this command needs "
                             "a splat run (use `recon render` for videos of any run)")
        return g

    def metrics(self) -> dict:
        p = self.root / "metrics.json"
        try:
            m = json.loads(p.read_text()) if p.is_file() else {}
        except (OSError, json.JSONDecodeError):
            m = {}
        return m if isinstance(m, dict) else {}

    def provenance(self) -> dict[str, str]:
        return {k: str(v) for k, v in (self.manifest.get("provenance") or {}).items()}


def write_outputs(run: RunFolder, trainer, scene, res: dict, result) -> dict:
    """Finish a run: the model artifact(s), cameras.json (refined poses with the input poses
    beside them), points.ply, metrics.json, the render grid and curves, and the manifest (status
    ``done``). Returns the metrics written."""
    from recon import __version__
    from recon.eval.evaluate import save_curves, save_grid, write_metrics

    cfg, method = trainer.cfg, trainer.method
    provenance = {
        "source": str(Path(run.scene_path()).resolve()),
        "method": cfg.method,
        "config_hash": cfg.hash(),
        "recon_version": __version__,
        "date": _now(),
    }
    from recon.enhance.provenance import scene_provenance

    provenance.update(scene_provenance(scene))  # original, restoration-only or generative frames
    for cb in getattr(trainer, "callbacks", []):  # e.g. dataset edits (recon.enhance.dataset_update)
        if callable(getattr(cb, "provenance", None)):
            provenance.update(cb.provenance(trainer))
    artifacts = dict(method.save(run.root, provenance))
    refined = method.refined_cameras()
    train_k = {i: k for k, i in enumerate(scene.indices("train"))}
    cams, rot_deg, trans = [], [], []
    root = Path(scene.root).resolve() if getattr(scene, "root", None) is not None else None
    for i, f in enumerate(scene.frames):
        c = f.camera
        image = None
        if f.image_path is not None:
            ip = Path(f.image_path).resolve()
            image = _rel(ip, root) if root is not None and ip.is_relative_to(root) else str(ip)
        cam = RunCamera(name=f.name, c2w=c.c2w, K=c.K, width=c.width, height=c.height, split=f.split,
                        image=image, time=f.time)
        k = train_k.get(i)
        if k is not None and k in refined:
            r = refined[k]
            cam.c2w, cam.c2w_input = r, c.c2w
            dR = r[:3, :3].T @ c.c2w[:3, :3]
            rot_deg.append(float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1)))))
            trans.append(float(np.linalg.norm(r[:3, 3] - c.c2w[:3, 3])))
        cams.append(cam)
    write_cameras(run.root / "cameras.json", cams, provenance)
    artifacts["cameras"] = "cameras.json"
    if scene.points is not None and len(scene.points) > 0:
        from recon.scene.writers import write_ply_points

        write_ply_points(run.root / "points.ply", scene.points, scene.point_colors)
        artifacts["points"] = "points.ply"
    save_grid(res.get("_samples", []), run.root / "renders" / "grid.png")
    save_curves(result.curves, run.root / "curves.png", res.get("psnr"))
    model_bytes = sum((run.root / a).stat().st_size for r, a in artifacts.items() if r == "model")
    extra = {
        "method": cfg.method,
        **{k: v for k, v in method.stats().items()},
        "train_seconds": round(result.train_seconds, 2),
        "steps": result.steps,
        "model_size_bytes": model_bytes,
        "downscale": cfg.downscale,
        "preset": cfg.preset,
        "provenance": provenance,
    }
    if "gaussians" in extra:
        extra["num_gaussians"] = extra.pop("gaussians")
    if rot_deg:
        extent = max(scene.extent(), 1e-12)
        extra["pose_refinement"] = {
            "views": len(rot_deg),
            "mean_rotation_deg": round(float(np.mean(rot_deg)), 4),
            "max_rotation_deg": round(float(np.max(rot_deg)), 4),
            "mean_translation_of_extent": round(float(np.mean(trans)) / extent, 6),
        }
    metrics = write_metrics(res, extra, run.root / "metrics.json")
    artifacts["metrics"] = "metrics.json"
    render = {"background": list(EVAL_BACKGROUND), "downscale": cfg.downscale, **method.render_settings()}
    run.update(status="done", artifacts=artifacts, render=render, provenance=provenance, steps=result.steps)
    return metrics
