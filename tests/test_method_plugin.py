"""The method interface holds without splat-specific paths: a toy method defined only in this file
trains, checkpoints, resumes, evaluates and renders through the real commands (`recon train`,
`recon eval`, `recon render --split`), with no change to recon's code."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import scenes
from recon.cli import run as recon
from recon.methods import Method, RenderOutput, register_method, unregister_method
from recon.train.data import ViewSampler


@dataclass
class EnvConfig:
    bins: int = 16
    """Direction bins per axis of the environment map."""
    lr: float = 0.2
    """Adam learning rate."""


class EnvRenderer:
    """Colour as a function of the ray direction only (an environment map over the view sphere)."""

    method = "toy-env"

    def __init__(self, grid: torch.Tensor):
        self.grid = grid  # [1, 3, B, 2B] logits over (elevation, azimuth)

    def render(self, camera, time=None, outputs=("rgb",), background=None):
        return RenderOutput(rgb=env_render(self.grid, camera))

    def stats(self):
        return {"texels": float(self.grid[0, 0].numel())}


def env_render(grid: torch.Tensor, camera) -> torch.Tensor:
    """``[H, W, 3]`` colours of ``camera``'s pixel rays, bilinear in the direction grid."""
    K = np.asarray(camera.K, np.float64)
    c2w = np.asarray(camera.c2w, np.float64)
    v, u = np.meshgrid(np.arange(camera.height) + 0.5, np.arange(camera.width) + 0.5, indexing="ij")
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    az = np.arctan2(d[..., 1], d[..., 0]) / math.pi  # [-1, 1]
    el = np.arcsin(np.clip(d[..., 2], -1, 1)) / (math.pi / 2)
    xy = torch.from_numpy(np.stack([az, el], -1)).float()[None]
    return torch.sigmoid(F.grid_sample(grid, xy, align_corners=False))[0].permute(1, 2, 0)


class EnvMethod(Method):
    name = "toy-env"
    Config = EnvConfig
    description = "test-only: an environment map over ray directions"

    def __init__(self, cfg, scene, views, device):
        super().__init__(cfg, scene, views, device)
        b = cfg.model.bins
        self.grid = torch.nn.Parameter(torch.zeros(1, 3, b, 2 * b))
        self.opt = torch.optim.Adam([self.grid], lr=cfg.model.lr)
        self.sampler = ViewSampler(views, cfg.background, scene.background)

    def sample(self, step, gen):
        return self.sampler.next(gen, self.device)

    def forward(self, batch, step, need=frozenset()):
        return RenderOutput(rgb=env_render(self.grid, batch.view.camera))

    def after_backward(self, step, out, progress):
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def stats(self):
        return {"texels": float(self.grid[0, 0].numel())}

    def state_dict(self):
        return {"grid": self.grid.detach().clone(), "opt": self.opt.state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.grid.copy_(state["grid"])
        self.opt.load_state_dict(state["opt"])
        self.sampler.load_state_dict(state["sampler"])

    def renderer(self):
        return EnvRenderer(self.grid.detach().clone())

    def save(self, run_dir, provenance):
        torch.save({"grid": self.grid.detach().clone(), "provenance": provenance}, Path(run_dir) / "env.pt")
        return {"model": "env.pt"}

    @classmethod
    def load_renderer(cls, run_dir, artifacts, render):
        return EnvRenderer(torch.load(Path(run_dir) / artifacts["model"], weights_only=True)["grid"])


@pytest.fixture()
def toy_method():
    register_method(EnvMethod)
    yield EnvMethod
    unregister_method(EnvMethod.name)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return scenes.synth("turntable", tmp_path_factory.mktemp("toy-scene"), views=16, res=32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def test_toy_method_through_the_real_commands(toy_method, scene_dir, tmp_path, monkeypatch):
    from PIL import Image

    from recon.run import RunFolder
    from recon.scene.readers import load_scene

    run = tmp_path / "run"
    base = ["--method", "toy-env", "--out", str(run), "--checkpoint-every", "20", "--log-every-seconds", "1e9",
            "--background", "white"]
    assert recon(["train", str(scene_dir), "--steps", "40", "--bins", "12"] + base) == 0
    rf = RunFolder.open(run)
    assert rf.method == "toy-env" and rf.status == "done" and (run / "env.pt").is_file()
    m1 = json.loads((run / "metrics.json").read_text())
    assert m1["steps"] == 40 and m1["texels"] == 12 * 24

    # Resume extends training by exactly the added steps; a changed method option is refused.
    assert recon(["train", str(scene_dir), "--steps", "70", "--resume"] + base) == 0
    m2 = json.loads((run / "metrics.json").read_text())
    assert m2["steps"] == 70
    assert recon(["train", str(scene_dir), "--steps", "80", "--resume", "--bins", "8"] + base) == 2

    # Eval from another working folder, then render the held-out split to PNGs and score them here.
    monkeypatch.chdir(tmp_path)
    assert recon(["eval", str(run)]) == 0
    m3 = json.loads((run / "metrics.json").read_text())
    assert m3["psnr"] == pytest.approx(m2["psnr"], abs=1e-6)
    out = tmp_path / "renders"
    assert recon(["render", str(run), "--split", "test", "--out", str(out)]) == 0
    sc = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    test = sc.indices("test")
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(sc.frames[i].image_path).stem + ".png" for i in test)
    scores = []
    for i in test:
        gt = sc.image(i)
        pr = np.asarray(Image.open(out / (Path(sc.frames[i].image_path).stem + ".png")), np.float32) / 255.0
        scores.append(_psnr(pr, gt))
    # The PNGs score what `recon eval` reports (8-bit rounding aside).
    assert np.mean(scores) == pytest.approx(m3["psnr"], abs=0.15)
    # Training fitted the training views (a direction-only map cannot generalise much, so the fit is
    # measured on them): grey 7.5 dB -> 14.4 dB measured after 70 steps.
    train_out = tmp_path / "renders-train"
    assert recon(["render", str(run), "--split", "train", "--out", str(train_out)]) == 0
    fit, grey = [], []
    for i in sc.indices("train"):
        gt = sc.image(i)
        pr = np.asarray(Image.open(train_out / (Path(sc.frames[i].image_path).stem + ".png")), np.float32) / 255.0
        fit.append(_psnr(pr, gt))
        grey.append(_psnr(np.full_like(gt, 0.5), gt))  # the untrained map renders grey
    print(f"toy method: training views grey {np.mean(grey):.2f} dB -> {np.mean(fit):.2f} dB")
    assert np.mean(fit) > np.mean(grey) + 4.0
