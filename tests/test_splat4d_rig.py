"""4D splats on a multi-view rig (K fixed cameras x T times, like a capture stage): the built-in
``dynamic-rig`` scene's layout and ground truth, and splat4d recovering a moving object's position
over time against its ground-truth transform."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from recon.eval.evaluate import evaluate
from recon.methods.splat4d import Splat4DConfig
from recon.models import splats as splat_model
from recon.scene.conventions import look_at_c2w, opencv_to_opengl
from recon.scene.readers import load_scene
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer

RES = 32
CAMS = 8
TIMES = 6
BOX_CENTRE = np.array([-0.5, 0.0, 0.1])
SLIDE = np.array([1.0, 0.3, 0.0])
TURN = math.radians(60)


def gt_transform(t: float) -> np.ndarray:
    """The box's ground-truth world transform at time ``t`` (from its pose at time 0): a turn of
    ``60 t`` degrees about z around its centre and a slide of ``SLIDE * t``."""
    th = TURN * t
    R = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = BOX_CENTRE + SLIDE * t - R @ BOX_CENTRE
    return T


def _gt_splats(t: float) -> tuple[dict, int]:
    """A static ring of coloured blobs on a floor disc, and a two-coloured box of blobs moved by
    :func:`gt_transform`; returns the splats and the number of static ones (the box follows)."""
    rng = np.random.default_rng(0)
    ang = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1) * 1.1
    floor = np.concatenate([rng.uniform(-1.2, 1.2, (40, 2)), np.full((40, 1), -0.3)], 1)
    box = rng.uniform(-0.25, 0.25, (150, 3)) * np.array([1.0, 0.5, 0.8]) + BOX_CENTRE
    G = gt_transform(t)
    box = box @ G[:3, :3].T + G[:3, 3]
    static = np.concatenate([ring, floor])
    means = np.concatenate([static, box]).astype(np.float32)
    n = len(means)
    rgb = np.concatenate([rng.uniform(0, 1, (len(static), 3)),
                          np.where(np.arange(150)[:, None] % 2 == 0, [[0.9, 0.1, 0.1]], [[0.1, 0.7, 0.9]])])
    return {"means": torch.tensor(means), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
            "scales": torch.full((n, 3), math.log(0.08)), "opacities": torch.full((n,), 4.0),
            "sh0": splat_model.rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
            "shN": torch.zeros(n, 0, 3)}, len(static)


def rig_cameras() -> list[np.ndarray]:
    out = []
    for j in range(CAMS):
        az = 2 * math.pi * j / CAMS + 0.3
        el = math.radians(20 if j % 2 == 0 else 50)
        eye = 3.2 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        out.append(look_at_c2w(eye, (0, 0, 0), (0, 0, 1)))
    return out


@pytest.fixture(scope="module")
def rig_scene(tmp_path_factory):
    """A nerfstudio folder: CAMS fixed cameras x TIMES times; camera 0 at every time is held out."""
    root = tmp_path_factory.mktemp("rig")
    (root / "images").mkdir()
    f = 0.5 * RES / math.tan(math.radians(25))
    K = torch.tensor([[f, 0, RES / 2], [0, f, RES / 2], [0, 0, 1.0]], dtype=torch.float32)
    frames, test = [], []
    for ti in range(TIMES):
        t = ti / (TIMES - 1)
        gt, _ = _gt_splats(t)
        for j, c2w in enumerate(rig_cameras()):
            vm = torch.tensor(np.linalg.inv(c2w), dtype=torch.float32)
            img, _, _ = splat_model.render_splats(gt, vm, K, RES, RES, 0, torch.ones(3))
            name = f"images/c{j}_t{ti}.png"
            Image.fromarray((img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(root / name)
            frames.append({"file_path": name, "time": t, "transform_matrix": opencv_to_opengl(c2w).tolist()})
            if j == 0:
                test.append(name)
    doc = {"camera_model": "OPENCV", "fl_x": f, "fl_y": f, "cx": RES / 2, "cy": RES / 2, "w": RES, "h": RES,
           "frames": frames, "train_filenames": [fr["file_path"] for fr in frames if fr["file_path"] not in test],
           "test_filenames": test, "val_filenames": test}
    (root / "transforms.json").write_text(json.dumps(doc))
    return load_scene(root, background=(1.0, 1.0, 1.0))


def test_rig_recovers_the_moving_object(rig_scene, tmp_path):
    m = Splat4DConfig(sh_degree=0, init_num_points=1500, refine_start=60, refine_every=50, reset_every=10_000,
                      refine_stop_fraction=0.6, max_gaussians=4_000, warmup_steps=100, num_nodes=64,
                      rebind_every=50, lr_node_trans=0.01, lr_node_rot=0.01, keyframes=TIMES)
    cfg = TrainConfig(method="splat4d", steps=800, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, model=m,
                      threads=1)  # one thread: the same figures on every machine (two threads reached 3.67 % at t = 1 once)
    tr = Trainer(cfg, rig_scene, tmp_path / "rig4d", log=lambda s: None)
    assert len(tr.method.warm_views) == CAMS - 1  # the warm-up trains the first time's 7 training views
    tr.train()
    res = evaluate(tr.method.renderer(), rig_scene, 1.0, log=lambda s: None)
    model = tr.method._model()

    # The box's Gaussians: visible, inside its ground-truth box at time 0.
    g0 = model.at(0.0)
    x0 = g0["means"].numpy().astype(np.float64)
    local = x0 - BOX_CENTRE
    inside = (np.abs(local) <= np.array([0.3, 0.2, 0.28])).all(1)
    inside &= torch.sigmoid(g0["opacities"]).numpy() > 0.3
    assert inside.sum() >= 20
    _, n_static = _gt_splats(0.0)
    gt_all = np.concatenate([_gt_splats(t)[0]["means"].numpy() for t in (0.0, 1.0)])
    extent = float(np.linalg.norm(gt_all.max(0) - gt_all.min(0)))
    errs, per = [], []
    for ti in range(TIMES):
        t = ti / (TIMES - 1)
        xt = model.at(t)["means"].numpy().astype(np.float64)[inside]
        G = gt_transform(t)
        want = x0[inside] @ G[:3, :3].T + G[:3, 3]  # where the ground truth carries them
        errs.append(float(np.linalg.norm(xt.mean(0) - want.mean(0))))
        per.append(float(np.median(np.linalg.norm(xt - want, axis=1))))
    print(f"held-out camera at all times: {res['psnr']:.2f} dB; box centroid error per time "
          f"{[round(e / extent * 100, 2) for e in errs]} % of the extent {extent:.2f}; median per-Gaussian "
          f"{[round(e / extent * 100, 2) for e in per]} %")
    # Measured (800 steps, 32x32, 2-core machine shared with a training run): centroid error
    # at most 1.21 and 1.53 % of the extent over the six times (two runs), median per-Gaussian error up to 3.3 % (the
    # 60-degree turn is mostly learnt), held-out camera 23.0-23.5 dB. With every keyframe stepped at every
    # step (--no-sparse-keyframes) the centroid stayed within 0.57 %, but that setting costs
    # D-NeRF lego about 4 dB of training PSNR early on (docs/splat4d.md). The slide is 1.04 (about 30 %
    # of the extent): a model that ignored the time would be off by that much at t = 1. With splat4d's
    # opacity regulariser on by default (7 Dec): centroid at most 0.42 %, median per-Gaussian up to
    # 4.3 %, held-out camera 23.90 dB (one run, heavily loaded machine). With the time curriculum (on
    # for rigs by default, 7 Dec): centroid at most 1.15 %, median per-Gaussian up to 2.43 %, held-out
    # camera 24.10 dB (one run). With the curriculum's full-rate motion and velocity extrapolation the
    # test's learning rates (then 0.04 / 0.02) diverged at the last time (25.7 % there); at 0.01 / 0.01:
    # centroid at most 0.80 %, median per-Gaussian up to 2.13 %, held-out camera 24.05 dB (one run).
    # With one thread (deterministic): centroid 1.44 % at t = 1 (0.71 % or less before), per-Gaussian up
    # to 2.32 %, 24.58 dB. The last time is the weakest: it opens last and trains least.
    assert max(errs) < 0.02 * extent
    assert res["psnr"] > 20.5


def test_time_curriculum_opens_times_in_order(rig_scene, tmp_path):
    """--time-curriculum (auto: on for rigs): after the warm-up, views come only from times already
    opened, half of them from the two newest; keyframes not reached yet continue the newest one's motion;
    after --curriculum-fraction of the motion's training every time is open."""
    m = Splat4DConfig(sh_degree=0, init_num_points=800, refine_start=10_000, max_gaussians=2_000, warmup_steps=20,
                      num_nodes=16, keyframes=TIMES, curriculum_fraction=0.6)
    cfg = TrainConfig(method="splat4d", steps=120, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, model=m)
    tr = Trainer(cfg, rig_scene, tmp_path / "cur", log=lambda s: None)
    meth = tr.method
    assert meth.curriculum and meth.distinct_times == [round(i / (TIMES - 1), 6) for i in range(TIMES)]
    seen, held = [], []
    sample, after = meth.sample, meth.after_backward

    def rec_sample(step, gen):
        b = sample(step, gen)
        seen.append((step, meth.frontier(), b.time))
        return b

    def rec_after(step, out, progress):
        after(step, out, progress)
        tf = meth.frontier()
        if tf is not None and meth.nodes is not None:
            j = int(round(tf * (TIMES - 1)))
            tr_ = meth.nodes.trans.detach()
            v = tr_[:, j:j + 1] - tr_[:, j - 1:j] if j > 0 else torch.zeros_like(tr_[:, :1])
            m_ = torch.arange(1, TIMES - j, dtype=torch.float32).view(1, -1, 1)
            held.append(bool(torch.allclose(tr_[:, j + 1:], tr_[:, j:j + 1] + m_ * v, atol=1e-6)))

    meth.sample, meth.after_backward = rec_sample, rec_after
    tr.train()
    warm = [t for s, _, t in seen if s < 20]
    assert warm and all(t == 0.0 for t in warm)  # the rig's warm-up: the first time's views only
    cur = [(f, t) for s, f, t in seen if s > 20 and f is not None]
    # About 0.6 of the 100 motion steps run the curriculum.
    assert 45 <= len(cur) <= 70, len(cur)
    assert all(t <= f + 1e-6 for f, t in cur)
    fronts = [f for f, _ in cur]
    assert fronts == sorted(fronts) and fronts[0] == 0.0 and fronts[-1] == 1.0
    assert held and all(held)
    late = [t for s, f, t in seen if s > 20 and f is None]
    assert len(late) >= 30 and len({round(t, 3) for t in late}) >= 4  # then every time trains
    # With the curriculum off the motion phase draws every time from its start.
    m2 = Splat4DConfig(**{**m.__dict__, "time_curriculum": "off"})
    assert not Trainer(cfg.__class__(**{**cfg.__dict__, "model": m2}), rig_scene, tmp_path / "off",
                       log=lambda s: None).method.curriculum


def test_synth_rig_camera_count(tmp_path):
    """``recon scene synth dynamic-rig --cameras K``: view i is stage camera i % K at time step i // K."""
    from recon.errors import ReconError
    from scenes.dataset import synth
    from scenes.recipes import stage_rig

    out = synth("dynamic-rig", tmp_path / "rig12", views=36, res=16, ss=1, cameras=12)
    doc = json.loads((out / "transforms.json").read_text())
    frames = doc["frames"]
    assert [round(f["time"], 6) for f in frames] == [0.0] * 12 + [0.5] * 12 + [1.0] * 12
    want = stage_rig(12)
    for i, f in enumerate(frames):
        c2w = np.asarray(f["transform_matrix"])
        assert np.allclose(c2w[:3, 3], want[i % 12][:3, 3], atol=1e-5)
    # The default stage (8 cameras) is the same configuration as giving no option.
    a = synth("dynamic-rig", tmp_path / "rig8", views=16, res=16, ss=1, cameras=8)
    assert "cameras" not in json.loads((a / "scene.json").read_text())["config"]
    assert "cameras" in json.loads((out / "scene.json").read_text())["config"]
    with pytest.raises(ReconError, match="--cameras applies to the dynamic-rig scene"):
        synth("dynamic", tmp_path / "dyn", views=8, res=16, cameras=12)
    with pytest.raises(ReconError, match="--cameras must be between 2 and 1000"):
        synth("dynamic-rig", tmp_path / "one", views=8, res=16, cameras=1)
