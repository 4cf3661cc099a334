"""NeRF (voxel radiance field) training on a tiny built-in ground-truth scene through the generic
trainer: held-out PSNR rises above a bar, depth follows the true depth, resume is exact, and a run
trained by `recon train --method nerf` evaluates and renders through the run format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import scenes
from recon.cli import run as recon
from recon.eval.evaluate import evaluate
from recon.methods.nerf import NerfConfig, decode_field, encode_field, scene_box
from recon.scene.readers import load_scene
from recon.train.config import TrainConfig, preset_config
from recon.train.trainer import Trainer

QUIET = lambda s: None  # noqa: E731


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("turntable-nerf")
    scenes.synth("turntable", out, views=24, res=64)
    return out


@pytest.fixture(scope="module")
def tiny_scene(scene_dir):
    return load_scene(scene_dir, background=(1.0, 1.0, 1.0))


def _cfg(steps: int, **kw) -> TrainConfig:
    m = NerfConfig(sh_degree=1, res_init=32, res_final=56, upsample_at=(0.15, 0.35), rays_per_batch=2048)
    return TrainConfig(method="nerf", steps=steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9,
                       threads=2, model=m, **kw)


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
    tr = Trainer(_cfg(400), tiny_scene, tmp_path / "run", log=QUIET)
    res0 = evaluate(tr.method.renderer(), tiny_scene, 1.0, log=QUIET)
    tr.train()
    r = tr.method.renderer()
    res = evaluate(r, tiny_scene, 1.0, log=QUIET)
    print(f"held-out PSNR {res0['psnr']:.2f} -> {res['psnr']:.2f} dB, grid {tr.method.field.res}, "
          f"occupied {tr.method.field.occupied_fraction():.3f}")
    # Measured: 12.5 dB at init -> 24.5 dB after 400 steps (64x64, 21 training views; 20.6 dB with
    # the old density learning rate 0.1; the splat method's smoke test reaches 19.5-20.0 dB after
    # 600 steps on the same scene). The box comes from the scene's depth maps and hugs the object,
    # so about half of its cells stay occupied.
    assert res["psnr"] > 23.0
    assert res["psnr"] > res0["psnr"] + 10.0
    assert tr.method.upsamples == 2 and tr.method.field.occupied_fraction() < 0.8
    # Depth of the opaque foreground against the scene's true depth.
    errs = []
    for i in tiny_scene.indices("test")[:3]:
        gt = tiny_scene.depth(i)
        out = r.render(tiny_scene.camera(i), outputs=("rgb", "alpha", "depth"))
        d, a = out.depth[..., 0].numpy(), out.alpha[..., 0].numpy()
        fg = (gt > 0) & np.isfinite(gt) & (a > 0.9)
        errs.append(np.median(np.abs(d[fg] - gt[fg]) / gt[fg]))
    # Measured: 1.3 % median after these 400 steps (5.5 % with the old density learning rate).
    print(f"median relative depth error {np.mean(errs):.4f}")
    assert np.mean(errs) < 0.03


def test_resume_matches_uninterrupted_run(tiny_scene, tmp_path):
    steps = 120
    a = Trainer(_cfg(steps), tiny_scene, tmp_path / "a", log=QUIET)
    a.train()
    b = Trainer(_cfg(steps), tiny_scene, tmp_path / "b", callbacks=[_StopAt(30)], log=QUIET)
    r = b.train()
    assert r.interrupted and b.step == 30 and b.method.upsamples == 1
    c = Trainer(_cfg(steps), tiny_scene, tmp_path / "b", log=QUIET)
    c.load_checkpoint(c.latest_checkpoint())
    assert c.step == 30
    c.train()
    fa, fc = a.method.field, c.method.field
    assert fa.res == fc.res and torch.equal(fa.lo, fc.lo)
    assert torch.equal(fa.occ, fc.occ)
    assert float((fa.density - fc.density).abs().max()) <= 1e-6
    assert float((fa.feats - fc.feats).abs().max()) <= 1e-6
    # A step changes the field: the equality above is not vacuous.
    assert fa.res != b.method.field.res or float((fa.feats - b.method.field.feats).abs().max()) > 1e-3


def test_model_file_renders_exactly(tiny_scene, tmp_path):
    """nerf.npz keeps only the vertices of occupied cells; renders from it equal the in-memory field's."""
    tr = Trainer(_cfg(60), tiny_scene, tmp_path / "run", log=QUIET)
    tr.train()
    f = tr.method.field
    # A sparse occupancy (60 steps empty few cells), so the file must drop vertices.
    f.occ = (torch.rand(f.num_cells, generator=torch.Generator().manual_seed(0)) < 0.05).to(torch.uint8)
    p = tmp_path / "nerf.npz"
    p.write_bytes(encode_field(f, {"source": "test"}))
    g = decode_field(p)
    from recon.methods.nerf import NerfRenderer

    cam = tiny_scene.camera(tiny_scene.indices("test")[0])
    a = NerfRenderer(f).render(cam, outputs=("rgb", "depth"), background=torch.ones(3))
    b = NerfRenderer(g).render(cam, outputs=("rgb", "depth"), background=torch.ones(3))
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth)
    dropped = g.density == -1e4
    assert 0.5 < float(dropped.float().mean()) < 0.8  # vertices no occupied cell reads are not stored


def test_nerf_through_the_commands(scene_dir, tmp_path, monkeypatch):
    """`recon train --method nerf`, `--resume`, `recon eval` and `recon render --split test`."""
    run = tmp_path / "run"
    base = ["--method", "nerf", "--out", str(run), "--log-every-seconds", "1e9", "--res-init", "24",
            "--res-final", "32", "--rays-per-batch", "1024", "--sh-degree", "0", "--threads", "2"]
    assert recon(["train", str(scene_dir), "--steps", "40"] + base) == 0
    m1 = json.loads((run / "metrics.json").read_text())
    assert m1["method"] == "nerf" and m1["steps"] == 40 and (run / "nerf.npz").is_file()
    assert recon(["train", str(scene_dir), "--steps", "60", "--resume"] + base) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 60
    assert recon(["train", str(scene_dir), "--steps", "80", "--resume"] + base[:-8] + ["--res-final", "40"]) == 2
    monkeypatch.chdir(tmp_path)
    m2 = json.loads((run / "metrics.json").read_text())
    assert recon(["eval", str(run)]) == 0
    m3 = json.loads((run / "metrics.json").read_text())
    assert m3["psnr"] == pytest.approx(m2["psnr"], abs=1e-6)  # the saved model renders what training scored
    out = tmp_path / "renders"
    assert recon(["render", str(run), "--split", "test", "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == len(load_scene(scene_dir).indices("test"))


def test_presets_are_the_methods_own():
    fast = preset_config("nerf", "fast")
    assert fast.steps == 5000 and fast.model.res_final == 144 and fast.max_minutes == 14.0
    assert preset_config("splat", "fast").steps == 5000  # the splat presets are unchanged


def test_box_from_depth_maps(tiny_scene, scene_dir):
    """Without SfM points, a capture's depth maps bound the field: the box hugs the object (the
    camera-derived box of the same scene is about 1.8x wider) and contains all of it."""
    lo, hi = scene_box(tiny_scene, NerfConfig())
    bb = json.loads((scene_dir / "scene.json").read_text())["bbox"]
    bmin, bmax = np.asarray(bb["min"]), np.asarray(bb["max"])
    ext = bmax - bmin
    assert np.all(lo <= bmin + 0.03 * ext) and np.all(hi >= bmax - 0.03 * ext)
    assert np.all(hi - lo <= 1.15 * ext)
