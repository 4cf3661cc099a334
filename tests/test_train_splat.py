"""Splat training on a tiny built-in ground-truth scene: quality rises, resume is exact, seeds repeat."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scenes
from recon.eval.evaluate import evaluate
from recon.scene.readers import load_scene
from recon.methods.splat import SplatConfig
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("turntable")
    scenes.synth("turntable", out, views=24, res=64)
    return load_scene(out, background=(1.0, 1.0, 1.0))


def _cfg(steps: int, **kw) -> TrainConfig:
    sp = SplatConfig(
        sh_degree=1, sh_degree_interval=150, init_num_points=4000, refine_start=100, refine_every=50,
        reset_every=10_000, refine_stop_fraction=0.7, max_gaussians=20_000,
    )
    return TrainConfig(steps=steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, model=sp, **kw)


class _StopAt:
    def __init__(self, step: int):
        self.step = step

    def on_start(self, trainer):
        pass

    def on_step(self, trainer, step, stats):
        if step == self.step:
            trainer.stop_requested = True

    def on_end(self, trainer, metrics):
        pass


def test_smoke_training_reaches_psnr(tiny_scene, tmp_path):
    cfg = _cfg(600)
    tr = Trainer(cfg, tiny_scene, tmp_path / "run", log=lambda s: None)
    res0 = evaluate(tr.method.renderer(), tiny_scene, 1.0, log=lambda s: None)
    tr.train()
    res = evaluate(tr.method.renderer(), tiny_scene, 1.0, log=lambda s: None)
    print(f"held-out PSNR {res0['psnr']:.2f} -> {res['psnr']:.2f} dB, {tr.method.num_primitives} Gaussians")
    # Measured: 7.3 dB at init -> 19.5-20.0 dB after 600 steps (64x64, 21 training views, 2 cores,
    # ~60 s). Changes at float rounding level (e.g. the SSIM blur's summation order) move the result
    # by about 0.5 dB through different densification decisions, hence the 1 dB margin.
    assert res["psnr"] > 18.5
    assert res["psnr"] > res0["psnr"] + 10.0


def test_resume_matches_uninterrupted_run(tiny_scene, tmp_path):
    steps = 160
    a = Trainer(_cfg(steps), tiny_scene, tmp_path / "a", log=lambda s: None)
    a.train()

    b = Trainer(_cfg(steps), tiny_scene, tmp_path / "b", callbacks=[_StopAt(70)], log=lambda s: None)
    r = b.train()
    assert r.interrupted and b.step == 70
    c = Trainer(_cfg(steps), tiny_scene, tmp_path / "b", log=lambda s: None)
    c.load_checkpoint(c.latest_checkpoint())
    assert c.step == 70
    c.train()
    assert c.step == steps
    for k in a.method.params:
        pa, pc = a.method.params[k].detach(), c.method.params[k].detach()
        assert pa.shape == pc.shape, k
        assert torch.allclose(pa, pc, atol=1e-5, rtol=1e-5), (k, float((pa - pc).abs().max()))
    ea = evaluate(a.method.renderer(), tiny_scene, 1.0, max_views=3, log=lambda s: None)["psnr"]
    ec = evaluate(c.method.renderer(), tiny_scene, 1.0, max_views=3, log=lambda s: None)["psnr"]
    assert abs(ea - ec) < 1e-3


def test_mcmc_strategy_trains_on_cpu(tiny_scene, tmp_path):
    """gsplat's MCMCStrategy runs unchanged on CPU tensors (recon.train.gsplat_cpu supplies its
    two CUDA kernels). Measured: 7.3 -> 18.9 dB in 300 steps with a 6,000-Gaussian cap."""
    cfg = _cfg(300)
    cfg.model.strategy = "mcmc"
    cfg.model.refine_start = 50
    cfg.model.max_gaussians = 6000
    tr = Trainer(cfg, tiny_scene, tmp_path / "mcmc", log=lambda s: None)
    r0 = evaluate(tr.method.renderer(), tiny_scene, 1.0, log=lambda s: None)["psnr"]
    tr.train()
    r1 = evaluate(tr.method.renderer(), tiny_scene, 1.0, log=lambda s: None)["psnr"]
    assert r1 > 16.5 and r1 > r0 + 8.0
    assert tr.method.num_primitives <= 6000


def test_wall_time_budget_drives_the_schedules(tiny_scene, tmp_path):
    """With --max-minutes ending the run long before --steps, the means' learning rate still decays
    to 1 % and densification still stops at refine_stop_fraction of the budget."""
    cfg = _cfg(100_000, max_minutes=0.25)  # 15 s for a nominal 100k steps
    cfg.model.refine_start = 0
    tr = Trainer(cfg, tiny_scene, tmp_path / "budget", log=lambda s: None)
    lr0 = tr.method.optimizers["means"].param_groups[0]["lr"]
    r = tr.train()
    assert not r.interrupted and 5 < tr.step < 100_000
    assert tr.progress(cfg.max_minutes * 60) == 1.0
    lr1 = tr.method.optimizers["means"].param_groups[0]["lr"]
    # The last step ran at a progress just below 1 (how far below depends on the step time, i.e.
    # on the machine's load): the rate is 0.01 ** progress of its start, so at least 90 % of the way
    # down in log terms. A schedule that followed --steps would still be near lr0.
    assert 0.01 * lr0 * (1 - 1e-6) <= lr1 <= 0.01**0.9 * lr0
    stop = tr.method.strategy.refine_stop_iter
    assert 0 < stop < tr.step  # set when 70 % of the budget was used (nominally step 70,000)


def test_presets_cap_the_training_resolution(tiny_scene):
    from recon.commands.train import auto_downscale
    from recon.train.data import Views

    assert auto_downscale(tiny_scene, 640) is None  # 64 px images: left alone
    assert auto_downscale(tiny_scene, 0) is None
    ds = auto_downscale(tiny_scene, 40)
    assert ds == pytest.approx(64 / 40)
    v = Views(tiny_scene, tiny_scene.indices("train")[:1], ds).get(0)
    assert max(v.width, v.height) == 40 and tuple(v.image.shape[:2]) == (v.height, v.width)
