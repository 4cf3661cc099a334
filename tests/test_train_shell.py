"""Background shell for sparse unbounded captures: sky that no SfM point explains is learned on a
distant sphere behind the scene instead of as floaters, and held-out views see it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from recon.eval.evaluate import evaluate
from recon.methods.splat import SplatConfig
from recon.models import splats as splat_model
from recon.scene.conventions import look_at_c2w, opencv_to_opengl
from recon.scene.readers import load_scene
from recon.scene.writers import write_ply_points
from recon.train.config import TrainConfig
from recon.train.init_points import shell_points, sparse_unbounded
from recon.train.trainer import Trainer

W, H, F = 48, 36, 40.0


def _gt_model(rng: np.random.Generator) -> dict:
    """An object (a box of 400 opaque Gaussians at the origin) under a sky: 6,000 Gaussians on a
    sphere of radius 60 whose colour goes from white at the horizon to blue overhead."""
    obj = rng.uniform(-0.6, 0.6, (400, 3))
    d = rng.normal(size=(6000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sky = 60.0 * d
    up = np.clip(d[:, 2], 0, 1)[:, None]
    sky_rgb = (1 - up) * np.array([0.95, 0.95, 0.9]) + up * np.array([0.25, 0.45, 0.9])
    means = np.concatenate([obj, sky])
    rgb = np.concatenate([rng.uniform(0.1, 0.9, (400, 3)), sky_rgb])
    scales = np.concatenate([np.full((400, 3), 0.12), np.full((6000, 3), 2.5)])
    n = len(means)
    return {
        "means": torch.tensor(means, dtype=torch.float32),
        "scales": torch.log(torch.tensor(scales, dtype=torch.float32)),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "opacities": torch.full((n,), 4.0),
        "sh0": splat_model.rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
        "shN": torch.zeros(n, 0, 3),
    }, obj, rgb[:400]


def make_sky_scene(root):
    """10 photos on an arc looking at the object from 5 units (every 8th held out: the first is at the
    arc's end, turned further than any training view), SfM-like points on the object only."""
    rng = np.random.default_rng(0)
    gt, obj, obj_rgb = _gt_model(rng)
    K = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]], dtype=torch.float32)
    (root / "images").mkdir()
    frames = []
    for i, az in enumerate(np.linspace(-50, 40, 10)):
        a = np.radians(az)
        eye = np.array([5 * np.sin(a), -5 * np.cos(a), 0.8])
        c2w = look_at_c2w(eye, (0.0, 0.0, 0.6))
        with torch.no_grad():
            rgb, _, _ = splat_model.render_splats(gt, torch.tensor(np.linalg.inv(c2w), dtype=torch.float32), K,
                                                  W, H, 0, torch.zeros(3))
        Image.fromarray((rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(root / "images" / f"{i:02d}.png")
        frames.append({"file_path": f"images/{i:02d}.png", "transform_matrix": opencv_to_opengl(c2w).tolist()})
    write_ply_points(root / "points.ply", obj, (obj_rgb * 255).astype(np.uint8))
    meta = {"fl_x": F, "fl_y": F, "cx": W / 2, "cy": H / 2, "w": W, "h": H, "camera_model": "PINHOLE",
            "ply_file_path": "points.ply", "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return load_scene(root)


@pytest.fixture(scope="module")
def sky_scene(tmp_path_factory):
    return make_sky_scene(tmp_path_factory.mktemp("sky"))


def _train(scene, tmp_path, shell: str):
    sp = SplatConfig(sh_degree=0, init_opacity=0.5, refine_start=60, refine_every=60, reset_every=10_000,
                     refine_stop_fraction=0.7, max_gaussians=6000, background_shell=shell, shell_points=2500)
    cfg = TrainConfig(steps=150, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, model=sp, threads=1)
    tr = Trainer(cfg, scene, tmp_path / f"run-{shell}", log=lambda s: None)
    tr.train()
    return tr, evaluate(tr.method.renderer(), scene, 1.0, log=lambda s: None, keep_renders=0)


def test_shell_geometry(sky_scene):
    """The shell lies beyond every scene point, only where training views look (with a margin), and
    starts with the colours those views see there."""
    idx = sky_scene.indices("train")
    cams = [sky_scene.camera(i) for i in idx]
    pts, cols, radius = shell_points(cams, lambda j: sky_scene.image(idx[j]), sky_scene.points, 3000)
    c = np.stack([cam.c2w[:3, 3] for cam in cams]).mean(0)
    assert np.allclose(np.linalg.norm(pts - c, axis=1), radius)
    assert radius >= 3 * np.linalg.norm(sky_scene.points - c, axis=1).max() * 0.99
    assert 2000 < len(pts) < 4500
    # Nothing below the horizon behind the cameras: every direction is within 1.3x a training frustum.
    fwd = np.stack([cam.c2w[:3, 2] for cam in cams]).mean(0)
    assert np.mean((pts - c) @ fwd > 0) > 0.99
    # Sky colours: points above the cameras start blue-ish (blue > red), near the horizon white-ish.
    up = (pts - c)[:, 2] / radius
    assert cols[up > 0.4, 2].mean() > cols[up > 0.4, 0].mean() + 0.15
    assert cols[np.abs(up) < 0.1].mean() > 0.7


def test_auto_rule(sky_scene):
    """auto: on for a sparse capture not on a plain background."""
    assert sparse_unbounded(sky_scene, sky_scene.indices("train"))
    assert not sparse_unbounded(sky_scene, sky_scene.indices("train"), max_views=5)


def test_shell_raises_held_out_psnr(sky_scene, tmp_path):
    tr_off, off = _train(sky_scene, tmp_path, "off")
    tr_on, on = _train(sky_scene, tmp_path, "on")
    print(f"held-out PSNR without shell {off['psnr']:.2f} dB, with {on['psnr']:.2f} dB "
          f"({tr_on.method.stats()})")
    # Measured (150 steps at 48x36): 3.2 dB without (nothing but the object's 400 points: the sky
    # renders black) -> 21.8 dB with. A shell that stopped training, sat in front of the object or
    # started from the wrong colours would fall far below.
    assert on["psnr"] > off["psnr"] + 10.0
    assert on["psnr"] > 19.0
    # The shell is saved with the model: the union renders what training composited.
    g = tr_on.method.gaussians()
    assert len(g["means"]) == tr_on.method.stats()["gaussians"] + tr_on.method.stats()["shell"]
    b = tr_on.method.sampler.next(tr_on.gen, tr_on.method.device)
    with torch.no_grad():
        a = tr_on.method.forward(b, 10_000).rgb
        r = tr_on.method.renderer().render(tr_on.method.views.cameras[b.index], background=b.background).rgb
    assert float((a - r).abs().max()) < 5e-3 and float((a - r).abs().mean()) < 1e-4


def test_shell_options_keep_old_checkpoints_resumable():
    """Runs made before the shell existed (shell off, default size) keep their config hash."""
    from recon.train.config import hashed_options, preset_config

    cfg = preset_config("splat", "fast")
    model = hashed_options(cfg)["model"]
    assert "background_shell" not in model and "shell_points" not in model
    h = cfg.hash()
    cfg.model.background_shell = "on"
    assert hashed_options(cfg)["model"]["background_shell"] == "on" and cfg.hash() != h
