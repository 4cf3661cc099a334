"""4D splats: training on a small dynamic scene, the deformation's gradients against finite differences,
resume, and the saved run rendering what the trained model renders at any time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from recon.deform.nodes import ControlNodes
from recon.eval.evaluate import evaluate
from recon.methods.splat4d import Splat4DConfig
from recon.models import splats as splat_model
from recon.scene.conventions import look_at_c2w, opencv_to_opengl
from recon.scene.readers import load_scene
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer

RES = 32
VIEWS = 30


def _gt_splats(time: float) -> dict:
    """A ground-truth scene: a static ring of coloured blobs and a red-green box of blobs that slides
    1.2 units along x and turns 60 degrees about z over time [0, 1]."""
    rng = np.random.default_rng(0)
    ang = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1) * 0.9
    box = rng.uniform(-0.3, 0.3, (150, 3)) * np.array([1.0, 0.5, 1.0])
    th = math.radians(60) * time
    Rz = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    box = box @ Rz.T + np.array([-0.6 + 1.2 * time, 0.0, 0.0])
    means = np.concatenate([ring, box]).astype(np.float32)
    n = len(means)
    rgb = np.concatenate([rng.uniform(0, 1, (len(ring), 3)),
                          np.where(np.arange(150)[:, None] % 2 == 0, [[0.9, 0.1, 0.1]], [[0.1, 0.8, 0.2]])])
    return {"means": torch.tensor(means), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
            "scales": torch.full((n, 3), math.log(0.08)), "opacities": torch.full((n,), 4.0),
            "sh0": splat_model.rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
            "shN": torch.zeros(n, 0, 3)}


@pytest.fixture(scope="module")
def dyn_scene(tmp_path_factory):
    """A D-NeRF folder rendered from :func:`_gt_splats`: a camera teleporting round the scene, view i
    at time i / (N - 1); every 6th view is held out (test)."""
    root = tmp_path_factory.mktemp("dyn")
    f = 0.5 * RES / math.tan(math.radians(25))
    K = torch.tensor([[f, 0, RES / 2], [0, f, RES / 2], [0, 0, 1.0]], dtype=torch.float32)
    golden = math.pi * (3 - math.sqrt(5))
    frames = {"train": [], "test": []}
    (root / "train").mkdir()
    (root / "test").mkdir()
    for i in range(VIEWS):
        t = i / (VIEWS - 1)
        el = math.radians(25 + 30 * ((i * 0.618) % 1.0))
        az = i * golden
        eye = 3.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        c2w = look_at_c2w(eye, (0, 0, 0), (0, 0, 1))
        vm = torch.tensor(np.linalg.inv(c2w), dtype=torch.float32)
        img, _, _ = splat_model.render_splats(_gt_splats(t), vm, K, RES, RES, 0, torch.ones(3))
        split = "test" if i % 6 == 3 else "train"
        name = f"{split}/r_{i:03d}"
        Image.fromarray((img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(root / f"{name}.png")
        frames[split].append({"file_path": f"./{name}", "time": t,
                              "transform_matrix": opencv_to_opengl(c2w).tolist()})
    for split, fr in frames.items():
        doc = {"camera_angle_x": 2 * math.atan(0.5 * RES / f), "frames": fr}
        (root / f"transforms_{split}.json").write_text(json.dumps(doc))
    return load_scene(root, background=(1.0, 1.0, 1.0))


def _model_opts(**kw) -> dict:
    opts = dict(sh_degree=0, init_num_points=1500, refine_start=60, refine_every=40, reset_every=10_000,
                refine_stop_fraction=0.6, max_gaussians=5_000)
    opts.update(kw)
    return opts


def _cfg4d(steps: int, **kw) -> TrainConfig:
    m = Splat4DConfig(**_model_opts(warmup_steps=60, num_nodes=48, rebind_every=40, **kw))
    return TrainConfig(method="splat4d", steps=steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9,
                       model=m)


def test_dynamic_scene_smoke(dyn_scene, tmp_path):
    tr = Trainer(_cfg4d(350), dyn_scene, tmp_path / "4d", log=lambda s: None)
    res0 = evaluate(tr.method.renderer(), dyn_scene, 1.0, log=lambda s: None)
    tr.train()
    m = tr.method
    # Densification changed the Gaussians; the binding followed them.
    assert m.nodes is not None and m.binding.shape == (m.num_primitives, 4)
    assert float(m.nodes.trans.detach().abs().max()) > 1e-3
    res4 = evaluate(m.renderer(), dyn_scene, 1.0, log=lambda s: None)
    print(f"held-out (test views at their times): {res0['psnr']:.2f} -> {res4['psnr']:.2f} dB")
    # Measured 19.3 dB (32x32, 25 training views, 350 steps, loaded 2-core machine); 18.7 dB with 2
    # keyframes (the default since 7 Dec: one per 10 views) and the opacity regulariser. A static splat
    # model trained on the same views with the times dropped measured 19.1 dB: at this budget the
    # motion does not yet pay off on this scene (docs/splat4d.md).
    assert res4["psnr"] > 17.5
    assert res4["psnr"] > res0["psnr"] + 6.0


def _nodes64(m=5, kf=4, seed=0, interp="linear") -> ControlNodes:
    g = torch.Generator().manual_seed(seed)
    nodes = ControlNodes(torch.rand(m, 3, generator=g), kf, interp=interp).double()
    with torch.no_grad():
        nodes.trans.normal_(0, 0.2, generator=g)
        nodes.rot.normal_(0, 0.3, generator=g)
        nodes.dscale.normal_(0, 0.1, generator=g)
        nodes.log_radius.add_(0.3)
    return nodes


def test_warmup_window_trains_the_early_views_first(dyn_scene, tmp_path):
    """--warmup-window F on a monocular capture: the warm-up draws only the training views in the
    first F of the time range, and the time curriculum (auto) then opens the later times in order."""
    tr = Trainer(_cfg4d(200, warmup_window=0.25), dyn_scene, tmp_path / "ww", log=lambda s: None)
    meth = tr.method
    times = [dyn_scene.frames[i].time for i in meth.views.indices]
    early = sorted(k for k, t in enumerate(times) if t <= 0.25 + 1e-9)
    assert meth.warm_views == early and 3 <= len(early) < len(times)
    assert meth.curriculum and "first 0.25 of the time range" in meth.describe_init()
    gen = torch.Generator().manual_seed(0)
    drawn = {meth.sample(s, gen).index for s in range(40)}
    assert drawn <= set(early) and len(drawn) == len(early)
    # The default (0): every view warms up and a monocular capture trains without the curriculum.
    plain = Trainer(_cfg4d(200), dyn_scene, tmp_path / "plain", log=lambda s: None).method
    assert plain.warm_views == [] and not plain.curriculum


def test_auto_keyframes_follow_the_views_per_time():
    from recon.methods.splat4d import auto_keyframes

    # Monocular (one view per time): one keyframe per 10 views. D-NeRF lego's 50 views give 5
    # (measured val 20.75 dB at 1,500 steps, against 19.09 dB with the 25 of the old rule).
    assert auto_keyframes([i / 49 for i in range(50)]) == 5
    assert auto_keyframes([i / 24 for i in range(25)]) == 2
    # A rig (8 views per time, 6 times): at most half the distinct times.
    assert auto_keyframes([t / 5 for t in range(6) for _ in range(8)]) == 3
    assert auto_keyframes([i / 999 for i in range(1000)]) == 64
    assert auto_keyframes([None] * 30) == 2


def test_deformation_identity_at_zero_offsets():
    nodes = ControlNodes(torch.rand(8, 3), 4)
    x = torch.rand(50, 3)
    q = torch.randn(50, 4)
    s = torch.randn(50, 3)
    m2, q2, s2 = nodes.deform(x, q, s, nodes.bind(x, 3), 0.7)
    assert torch.allclose(m2, x, atol=1e-6) and torch.allclose(q2, q, atol=1e-6) and torch.equal(s2, s)


def test_cubic_keyframes_follow_curved_motion():
    """Catmull-Rom keyframes: exact at the keyframes, a quadratic motion exactly everywhere, and an
    orbit sampled at 20 keyframes within 0.3 % of its radius (linear cuts the chords: 1.4 %)."""
    def orbit(kf, interp):
        n = ControlNodes(torch.zeros(1, 3), kf, interp=interp)
        with torch.no_grad():
            a = torch.arange(kf) * 2 * math.pi / (kf - 1)
            n.trans[0] = torch.stack([a.cos(), a.sin(), torch.zeros(kf)], -1)
        ts = torch.linspace(0, 1, 401)
        got = torch.stack([n.at_time(float(t))[1][0].detach() for t in ts])
        want = torch.stack([(2 * math.pi * ts).cos(), (2 * math.pi * ts).sin(), torch.zeros(401)], -1)
        return float((got - want).norm(dim=-1).max())

    lin, cub = orbit(20, "linear"), orbit(20, "cubic")
    assert lin > 0.013 and cub < 0.003, (lin, cub)
    assert orbit(8, "cubic") < 0.5 * orbit(8, "linear")
    n = ControlNodes(torch.zeros(2, 3), 5, interp="cubic")
    with torch.no_grad():
        n.trans[:, :, 0] = (torch.arange(5) / 4.0) ** 2
    for t in (0.0, 0.03, 0.25, 0.5, 0.61, 0.97, 1.0):
        assert abs(float(n.at_time(t)[1][0, 0].detach()) - t * t) < 1e-6
    for kf in (2, 3, 4, 7):
        n = ControlNodes(torch.zeros(1, 3), kf, interp="cubic")
        for t in torch.linspace(0, 1, 53).tolist():
            bl = n.blend(t)
            assert abs(sum(w for _, w in bl) - 1.0) < 1e-9 and len(bl) <= 4
        assert n.keyframes_at(1 / (kf - 1)) == [1]  # at a keyframe: that keyframe alone


@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_deformation_gradients_match_finite_differences(interp):
    nodes = _nodes64(kf=5 if interp == "cubic" else 4, interp=interp)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    q = torch.randn(6, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    s = torch.randn(6, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    idx = nodes.bind(x, 3)
    names = ["pos", "log_radius", "trans", "rot", "dscale"]
    from torch.func import functional_call

    def f(x, q, s, *node_params):
        return functional_call(nodes, dict(zip(names, node_params)), (x, q, s, idx, 0.43))

    inputs = (x, q, s) + tuple(getattr(nodes, n).detach().clone().requires_grad_(True) for n in names)
    # A time between keyframes 1 and 2 of 4 (0.43 * 3 = 1.29): both keyframes get gradients (cubic,
    # 5 keyframes: 0.43 * 4 = 1.72, keyframes 0-3).
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)

    def reg(trans, rot):
        return functional_call(_Reg(nodes), {"nodes.trans": trans, "nodes.rot": rot}, (0.3,))

    tr = nodes.trans.detach().clone().requires_grad_(True)
    ro = nodes.rot.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(reg, (tr, ro), eps=1e-6, atol=1e-6)


class _Reg(torch.nn.Module):
    """Both regularisers of ``nodes`` as one module output (for gradcheck)."""

    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes

    def forward(self, t):
        return self.nodes.smoothness(2.0) + self.nodes.rigidity(t, 2.0)


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


def test_resume_is_exact_and_saved_run_renders_the_same(dyn_scene, tmp_path):
    from recon.methods.splat4d import Splat4DMethod

    steps = 130  # warm-up ends at 60, densification at 40-step intervals, a stop at 90

    def cfg():  # one thread: the parallel rasterizer's float sums are not bit-reproducible across runs
        c = _cfg4d(steps)
        c.threads = 1
        return c

    a = Trainer(cfg(), dyn_scene, tmp_path / "a", log=lambda s: None)
    a.train()
    b = Trainer(cfg(), dyn_scene, tmp_path / "b", callbacks=[_StopAt(90)], log=lambda s: None)
    assert b.train().interrupted and b.step == 90
    c = Trainer(cfg(), dyn_scene, tmp_path / "b", log=lambda s: None)
    c.load_checkpoint(c.latest_checkpoint())
    c.train()
    # Same Gaussians (same densification decisions) and the same binding. Not yet bit-exact: the
    # resumed run drifts by up to 1.1e-4 in the parameters (measured; splat resumes to 1e-5).
    for k in a.method.params:
        pa, pc = a.method.params[k].detach(), c.method.params[k].detach()
        assert pa.shape == pc.shape and torch.allclose(pa, pc, atol=1e-3, rtol=1e-3), k
    na, nc = a.method.nodes.tensors(), c.method.nodes.tensors()
    for k in na:
        assert torch.allclose(na[k].double(), nc[k].double(), atol=1e-3, rtol=1e-3), k
    assert torch.equal(a.method.binding, c.method.binding)
    ea = evaluate(a.method.renderer(), dyn_scene, 1.0, log=lambda s: None)["psnr"]
    ec = evaluate(c.method.renderer(), dyn_scene, 1.0, log=lambda s: None)["psnr"]
    assert abs(ea - ec) < 0.05

    # The saved files render what the trained model renders, at a held-out time.
    run = tmp_path / "saved"
    run.mkdir()
    arts = a.method.save(run, {"test": "1"})
    assert set(arts) == {"model", "deformation"}
    loaded = Splat4DMethod.load_renderer(run, arts, {})
    cam = dyn_scene.frames[dyn_scene.indices("test")[2]].camera
    t = dyn_scene.frames[dyn_scene.indices("test")[2]].time
    r1 = a.method.renderer().render(cam, time=t).rgb
    r2 = loaded.render(cam, time=t).rgb
    assert float((r1 - r2).abs().max()) < 1e-4
    # The renderer uses the time: after 70 steps of motion, times 0 and 1 differ (measured max 0.015;
    # a renderer that ignored the time would give 0).
    r0 = loaded.render(cam, time=0.0).rgb
    assert float((r0 - loaded.render(cam, time=1.0).rgb).abs().max()) > 2e-3


def test_cubic_deformation_file_round_trips(tmp_path):
    """A cubic model is written as deformation version 2 with its interpolation, read back the same,
    and renders in between keyframes as the trained model does; linear models stay version 1."""
    from safetensors import safe_open

    from recon.deform import model as deform_model

    g = torch.Generator().manual_seed(3)
    splats = {"means": torch.rand(40, 3, generator=g), "quats": torch.randn(40, 4, generator=g),
              "scales": torch.full((40, 3), -2.5), "opacities": torch.full((40,), 2.0),
              "sh0": torch.rand(40, 1, 3, generator=g), "shN": torch.zeros(40, 0, 3)}
    for interp, version in (("cubic", "2"), ("linear", "1")):
        nodes = ControlNodes(torch.rand(6, 3, generator=g), 5, interp=interp)
        with torch.no_grad():
            nodes.trans.normal_(0, 0.2, generator=g)
        model = deform_model.DeformedSplats(splats, nodes, nodes.bind(splats["means"], 2), with_scale=True)
        run = tmp_path / interp
        run.mkdir()
        arts = deform_model.save(model, run)
        with safe_open(str(run / arts["deformation"]), framework="pt") as f:
            meta = f.metadata()
        assert meta["version"] == version and meta.get("interp", "linear") == interp
        back = deform_model.load(run, arts)
        assert back.nodes.interp == interp
        for t in (0.1, 0.37, 0.8):
            assert torch.allclose(back.at(t)["means"], model.at(t)["means"], atol=1e-6)
