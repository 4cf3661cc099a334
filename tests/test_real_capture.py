"""Real-capture safeguards: random initialisation stays in the cameras' common viewing volume, LLFF
depth bounds are read, and a large train/held-out gap is reported with a diagnosis."""

from __future__ import annotations

import numpy as np

import scenes
from recon.commands.train import generalisation_warning
from recon.eval.evaluate import TRAIN_FALLBACK
from recon.scene.readers import load_scene
from recon.scene.conventions import opencv_to_llff
from recon.train.init_points import random_init


def test_random_init_fills_the_common_viewing_volume(tmp_path):
    scenes.synth("room", tmp_path / "room", views=12, res=64)
    room = load_scene(tmp_path / "room")
    # The same capture as an LLFF folder: images + poses_bounds.npy with each view's true depth range.
    (tmp_path / "llff").mkdir()
    (tmp_path / "llff" / "images").symlink_to(tmp_path / "room" / "images")
    rows = []
    for i, f in enumerate(room.frames):
        c = f.camera
        m = np.concatenate([opencv_to_llff(c.c2w[None])[0], np.array([[c.height], [c.width], [c.fx]])], 1)
        d = room.depth(i)
        rows.append(np.concatenate([m.ravel(), [d[d > 0].min() * 0.9, d.max() * 1.1]]))
    np.save(tmp_path / "llff" / "poses_bounds.npy", np.array(rows))
    sc = load_scene(tmp_path / "llff")
    assert sc.format == "llff" and sc.depth_range is not None
    near, far = sc.depth_range
    assert 0 < near < far
    train = sc.indices("train")
    pts, how = random_init(sc, train, 5000, seed=0)
    assert len(pts) == 5000 and "viewing volume" in how
    seen = np.zeros(len(pts), int)
    for i in train:
        cam = sc.camera(i)
        uv, z = cam.project(pts)
        # No point sits in front of any camera closer than the near bound.
        assert np.all((z >= near * 0.999) | (z < 0) | (uv[:, 0] < 0) | (uv[:, 0] >= cam.width)
                      | (uv[:, 1] < 0) | (uv[:, 1] >= cam.height))
        seen += (z > near) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
    assert seen.min() >= 2
    z_all = np.concatenate([sc.camera(i).project(pts)[1] for i in train[:3]])
    assert np.percentile(z_all[z_all > 0], 95) <= far * 1.001


def test_overfitting_gap_is_reported_with_the_weakest_views():
    res = {"split": "test", "psnr": 12.6, "per_view": [{"name": "DSC_1", "psnr": 9.8}, {"name": "DSC_2", "psnr": 15.4}]}
    msg = generalisation_warning({"psnr": [15.0] * 50 + [25.0] * 10}, res)
    assert msg is not None and "12.4 dB below training PSNR 25.0 dB" in msg and "DSC_1 9.8 dB" in msg
    assert generalisation_warning({"psnr": [33.0] * 20}, dict(res, psnr=31.7)) is None
    assert generalisation_warning({"psnr": [33.0] * 20}, dict(res, split=TRAIN_FALLBACK)) is None


def test_held_out_colour_protocol_fits_on_one_half_and_scores_the_other():
    import torch

    from recon.eval.evaluate import half_colour_fit_psnr

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(48, 64, 3, generator=g)
    # A held-out photo with another exposure / white balance: the fit on the left half undoes it.
    shifted = gt * torch.tensor([0.8, 0.9, 0.7]) + 0.05
    raw, fit = half_colour_fit_psnr(shifted, gt)
    assert raw < 25 and fit > raw + 10, (raw, fit)
    # Wrong content on the scored half is not hidden by the fit.
    bad = gt.clone()
    bad[:, 32:] = torch.rand(48, 32, 3, generator=g)
    raw, fit = half_colour_fit_psnr(bad, gt)
    assert fit < 12 and abs(fit - raw) < 1.0, (raw, fit)
    # A good render with small errors everywhere is not penalised by the fit (no gain shrinkage).
    noisy = (gt + 0.02 * torch.randn(48, 64, 3, generator=g)).clamp(0, 1)
    raw, fit = half_colour_fit_psnr(noisy, gt)
    assert abs(fit - raw) < 0.3, (raw, fit)
