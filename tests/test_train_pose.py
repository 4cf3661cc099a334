"""Camera-pose refinement (``--pose-opt``): the correction is exact, and it recovers perturbed poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scenes
from recon.models import splats as splat_model
from recon.scene.conventions import c2w_to_viewmat
from recon.scene.readers import load_scene
from recon.methods.splat import SplatConfig
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("turntable-pose")
    scenes.synth("turntable", out, views=24, res=64)
    return out


def _cfg(steps: int, pose_opt: bool = True, **kw) -> TrainConfig:
    sp = SplatConfig(
        sh_degree=0, init_num_points=4000, refine_start=100, refine_every=50, reset_every=10_000,
        refine_stop_fraction=0.7, max_gaussians=20_000, pose_opt=pose_opt, **kw,
    )
    # As the measurement below was made: the images as they are (no backdrop key; the turntable declares
    # its white backdrop, which --background-key auto keys since 7 Dec).
    return TrainConfig(steps=steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, model=sp,
                       background_key="none")


def _rot_deg(A: np.ndarray, B: np.ndarray) -> float:
    dR = A[:3, :3].T @ B[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))))


def test_correction_equals_moving_the_camera(tiny_scene, tmp_path):
    """Rendering the moved Gaussians from the input camera == the model from the refined camera."""
    tr = Trainer(_cfg(10), load_scene(tiny_scene, background=(1.0, 1.0, 1.0)), tmp_path / "run", log=lambda s: None)
    m = tr.method
    with torch.no_grad():
        m.camera_opt.delta[3] = torch.tensor([0.03, -0.02, 0.05, 0.01, -0.02, 0.015])
    view = tr.views.get(3)
    with torch.no_grad():
        a, alpha_a, _ = splat_model.render_splats(m._posed_params(view, 3), view.viewmat, view.K, view.width,
                                                  view.height, 0, torch.ones(3))
        refined = m.camera_opt.refined_c2w(3, tr.views.cameras[3].c2w)
        vm = torch.as_tensor(c2w_to_viewmat(refined), dtype=torch.float32)
        b, alpha_b, _ = splat_model.render_splats(m.params, vm, view.K, view.width, view.height, 0, torch.ones(3))
    # The correction moves the camera by about 3.5 degrees: far more than the tolerance.
    assert _rot_deg(refined, tr.views.cameras[3].c2w) > 3.0
    assert float((a - b).abs().max()) < 2e-3
    assert float((alpha_a - alpha_b).abs().max()) < 2e-3


def test_pose_refinement_reduces_pose_error(tiny_scene, tmp_path):
    """Perturb the training cameras by ~1.5 degrees; refinement must bring them back towards the truth."""
    rng = np.random.default_rng(0)
    noisy = load_scene(tiny_scene, background=(1.0, 1.0, 1.0))
    truth = {}
    for i in noisy.indices("train"):
        cam = noisy.frames[i].camera
        truth[i] = cam.c2w.copy()
        w = rng.normal(size=3)
        w *= np.radians(1.5) / np.linalg.norm(w)
        K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
        R = np.eye(3) + np.sin(np.linalg.norm(w)) / np.linalg.norm(w) * K + (
            (1 - np.cos(np.linalg.norm(w))) / np.linalg.norm(w) ** 2) * K @ K
        cam.c2w = cam.c2w.copy()
        cam.c2w[:3, :3] = cam.c2w[:3, :3] @ R
    tr = Trainer(_cfg(500, lr_pose=1e-3), noisy, tmp_path / "run", log=lambda s: None)
    tr.train()
    before, after = [], []
    for k, i in enumerate(noisy.indices("train")):
        before.append(_rot_deg(noisy.frames[i].camera.c2w, truth[i]))
        after.append(_rot_deg(tr.method.camera_opt.refined_c2w(k, noisy.frames[i].camera.c2w), truth[i]))
    print(f"mean rotation error {np.mean(before):.3f} -> {np.mean(after):.3f} deg")
    assert np.mean(before) == pytest.approx(1.5, abs=1e-6)
    # Measured: 1.50 -> 0.81 degrees after 500 steps (64x64, 21 views; about 70 s on 2 cores).
    assert np.mean(after) < 0.75 * np.mean(before)
