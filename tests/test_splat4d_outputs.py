"""4D splat outputs: `recon render --time` and nerfstudio `render_time`, and the dynamic exports
(per-frame splat sequence, canonical model + deformation, time-sampled USD) against the model.

The run is built, not trained: a static ring of Gaussians and a box of Gaussians bound to one
control node that slides 1.0 along x and turns 60 degrees about z over time [0, 1], so every
expected value is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recon.cli import run as cli
from recon.deform import model as deform_model
from recon.deform.nodes import ControlNodes
from recon.models import splats as splat_model
from recon.run import MANIFEST, RUN_FORMAT, RUN_VERSION, RunCamera, write_cameras
from recon.scene.conventions import look_at_c2w, opencv_to_opengl

W, H = 64, 48
BOX_CENTRE = np.array([-0.5, 0.0, 0.0])
SLIDE = 1.0


def _model() -> deform_model.DeformedSplats:
    rng = np.random.default_rng(0)
    ang = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1) * 1.6
    box = rng.uniform(-0.25, 0.25, (200, 3)) * np.array([1.0, 0.6, 1.0]) + BOX_CENTRE
    means = np.concatenate([ring, box]).astype(np.float32)
    n = len(means)
    rgb = np.concatenate([rng.uniform(0, 1, (len(ring), 3)),
                          np.where(np.arange(200)[:, None] % 2 == 0, [[0.9, 0.1, 0.1]], [[0.1, 0.8, 0.2]])])
    q = rng.normal(size=(n, 4))
    splats = {"means": torch.tensor(means), "quats": torch.tensor(q, dtype=torch.float32),
              "scales": torch.tensor(np.log(rng.uniform(0.05, 0.1, (n, 3))), dtype=torch.float32),
              "opacities": torch.full((n,), 4.0),
              "sh0": splat_model.rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
              "shN": torch.tensor(rng.normal(0, 0.05, (n, 3, 3)), dtype=torch.float32)}
    # Node 0 carries the box; nodes 1-4 sit on the ring and stay still.
    pos = np.concatenate([BOX_CENTRE[None], np.array([[1.6, 0, 0], [0, 1.6, 0], [-1.6, 0, 0], [0, -1.6, 0]])])
    nodes = ControlNodes(torch.tensor(pos, dtype=torch.float32), keyframes=3)
    th = math.radians(60)
    with torch.no_grad():
        nodes.trans[0, 1] = torch.tensor([0.5 * SLIDE, 0, 0])
        nodes.trans[0, 2] = torch.tensor([SLIDE, 0, 0])
        for k, a in ((1, th / 2), (2, th)):
            nodes.rot[0, k] = torch.tensor([math.cos(a / 2) - 1, 0, 0, math.sin(a / 2)])
        nodes.dscale[0, 2] = torch.tensor([0.2, 0.0, -0.1])
    binding = nodes.bind(splats["means"], 1)
    assert int((binding[:, 0] == 0).sum()) == 200  # the box, and only the box, follows node 0
    return deform_model.DeformedSplats(splats, nodes, binding, with_scale=True)


def _cameras(n: int = 6) -> list[RunCamera]:
    f = 0.5 * W / math.tan(math.radians(25))
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    cams = []
    for i in range(n):
        a = 2 * math.pi * i / n + 0.3
        eye = np.array([4.5 * math.cos(a), 4.5 * math.sin(a), 2.5])
        cams.append(RunCamera(f"r_{i:03d}", look_at_c2w(eye, (0, 0, 0), (0, 0, 1)), K, W, H, "train",
                              time=i / (n - 1)))
    return cams


@pytest.fixture(scope="module")
def run4d(tmp_path_factory):
    """A splat4d run folder: canonical.ply + deformation.safetensors + cameras.json + run.json."""
    root = tmp_path_factory.mktemp("run4d")
    model = _model()
    arts = deform_model.save(model, root)
    write_cameras(root / "cameras.json", _cameras())
    arts["cameras"] = "cameras.json"
    (root / MANIFEST).write_text(json.dumps({
        "format": RUN_FORMAT, "version": RUN_VERSION, "status": "done", "method": "splat4d",
        "artifacts": arts, "render": {"background": [1.0, 1.0, 1.0], "downscale": 1.0}}))
    return root


def _render(model, cam: RunCamera, t: float) -> np.ndarray:
    r = deform_model.Splat4DRenderer(model)
    return r.render(cam.camera, time=t, background=torch.ones(3)).rgb.clamp(0, 1).numpy()


def _read_png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


# ---- recon render ----------------------------------------------------------------------------------
def test_render_time_and_render_time_entries(run4d, tmp_path):
    pytest.importorskip("av", reason="PyAV (the video extra) writes the MP4")
    model = deform_model.load(run4d, {"model": "canonical.ply", "deformation": "deformation.safetensors"})
    cams = _cameras()
    cam = cams[1]
    fov = math.degrees(2 * math.atan(0.5 * H / cam.K[1, 1]))
    entry = {"camera_to_world": opencv_to_opengl(cam.c2w).ravel().tolist(), "fov": fov, "aspect": W / H}
    times = [0.0, 0.35, 1.0]
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps({"camera_type": "perspective", "render_width": W, "render_height": H, "fps": 3,
                                "camera_path": [dict(entry, render_time=t) for t in times]}))
    frames = tmp_path / "frames"
    assert cli(["render", str(run4d), "--camera-path", str(path), "--out", str(tmp_path / "a.mp4"),
                "--frames", str(frames), "--background", "white"]) == 0
    doc = json.loads((frames / "frames.json").read_text())
    assert [f["time"] for f in doc["frames"]] == times
    for i, t in enumerate(times):  # each frame is the model at its render_time (8-bit PNG)
        want = _render(model, cam, t)
        got = _read_png(frames / "rgb" / f"{i:05d}.png")
        assert np.abs(got - want).max() <= 1.0 / 255 + 1e-6, t
    f0, f1 = _read_png(frames / "rgb" / "00000.png"), _read_png(frames / "rgb" / "00002.png")
    moved = np.abs(f0 - f1).max(-1)
    assert (moved > 0.2).mean() > 0.02  # the box moved: many pixels change

    # --time overrides every frame's time: all three frames equal the model at 0.35.
    frames2 = tmp_path / "frames2"
    assert cli(["render", str(run4d), "--camera-path", str(path), "--out", str(tmp_path / "b.mp4"),
                "--frames", str(frames2), "--time", "0.35"]) == 0
    want = _render(model, cam, 0.35)
    for i in range(3):
        assert np.abs(_read_png(frames2 / "rgb" / f"{i:05d}.png") - want).max() <= 1.0 / 255 + 1e-6
    # An orbit of a dynamic run plays the sequence once.
    frames3 = tmp_path / "frames3"
    assert cli(["render", str(run4d), "--out", str(tmp_path / "c.mp4"), "--frames", str(frames3), "--seconds", "1",
                "--fps", "5", "--width", "32", "--height", "24"]) == 0
    assert [f["time"] for f in json.loads((frames3 / "frames.json").read_text())["frames"]] == [0, 0.25, 0.5, 0.75, 1]


def test_render_time_bad_values(run4d, tmp_path, capsys):
    from recon.testing.runs import make_run

    assert cli(["render", str(run4d), "--time", "1.5", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "--time 1.5" in capsys.readouterr().err
    static = make_run(tmp_path / "static", n=500)
    assert cli(["render", str(static), "--time", "0.5", "--out", str(tmp_path / "y.mp4")]) == 2
    assert "static" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()


# ---- exports ---------------------------------------------------------------------------------------
def _np(d):
    return {k: (v.numpy() if torch.is_tensor(v) else np.asarray(v)).astype(np.float64) for k, v in d.items()}


def _same_gaussians(a, b, atol=1e-5, sh=True):
    a, b = _np(a), _np(b)
    assert a["means"].shape == b["means"].shape
    assert np.abs(a["means"] - b["means"]).max() < atol
    qa = a["quats"] / np.linalg.norm(a["quats"], axis=1, keepdims=True)
    qb = b["quats"] / np.linalg.norm(b["quats"], axis=1, keepdims=True)
    assert np.abs(np.abs((qa * qb).sum(1)) - 1).max() < 1e-5  # same rotation (q and -q alike)
    assert np.abs(a["scales"] - b["scales"]).max() < atol
    assert np.abs(a["opacities"] - b["opacities"]).max() < 1e-5
    if sh:
        assert np.abs(a["sh0"] - b["sh0"]).max() < 1e-6


def test_splat_sequence_round_trips(run4d, tmp_path):
    from exporters.sequence import read_sequence

    out = tmp_path / "exp"
    assert cli(["export", str(run4d), "--format", "splat-sequence", "--out", str(out)]) == 0
    seq = read_sequence(out / "sequence" / "sequence.json")
    model = deform_model.load(run4d, {"model": "canonical.ply", "deformation": "deformation.safetensors"})
    times = [c.time for c in _cameras()]
    assert [t for t, _ in seq] == pytest.approx(times)  # default: the capture's times
    for t, s in seq:  # frame k is the deformed model at t_k, Gaussian for Gaussian
        _same_gaussians(s, model.at(t))
        assert np.abs(s["shN"].numpy() - model.splats["shN"].numpy()).max() < 1e-6
    box = slice(80, 280)
    shift = seq[-1][1]["means"][box].mean(0) - seq[0][1]["means"][box].mean(0)
    assert abs(float(shift[0]) - SLIDE) < 0.02 and float(seq[-1][1]["means"][:80].sub(seq[0][1]["means"][:80]).abs().max()) < 1e-6

    # Filters apply to every frame, in the same order; evenly spaced --time-samples.
    out2 = tmp_path / "exp2"
    assert cli(["export", str(run4d), "--format", "splat-sequence", "--out", str(out2), "--time-samples", "4",
                "--crop", "-1", "-1", "-1", "0", "1", "1"]) == 0
    seq2 = read_sequence(out2 / "sequence" / "sequence.json")
    keep = model.at(0.0)["means"][:, 0] <= 0
    keep &= (model.at(0.0)["means"].abs() <= 1).all(1)
    assert [t for t, _ in seq2] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    for t, s in seq2:
        ref = {k: v[keep] for k, v in model.at(t).items()}
        _same_gaussians(s, ref)


def test_canonical_and_deformation_export_in_y_up(run4d, tmp_path):
    from exporters import axes as ax
    from exporters.sequence import read_deformation
    from exporters.splats import as_numpy, transform_splats

    out = tmp_path / "exp"
    assert cli(["export", str(run4d), "--format", "splat4d", "--out", str(out), "--axes", "y-up", "--up", "+z",
                "--scale", "2.5"]) == 0
    man = json.loads((out / "splat4d" / "splat4d.json").read_text())
    assert man["format"] == "recon-splat4d-export" and man["gaussians"] == 280 and man["nodes"] == 5
    moved = read_deformation(out / "splat4d")
    model = deform_model.load(run4d, {"model": "canonical.ply", "deformation": "deformation.safetensors"})
    T = ax.export_transform("+z", "y-up", 2.5)
    assert not np.allclose(T[:3, :3], np.eye(3))
    for t in (0.0, 0.2, 0.5, 0.9, 1.0):  # the exported model at t = the run's model at t, moved
        ref = transform_splats(as_numpy(model.at(t)), T)
        _same_gaussians(moved.at(t), ref, atol=5e-5)
    assert cli(["export", str(run4d), "--format", "splat4d", "--out", str(tmp_path / "bad"), "--axes",
                "y-up-left"]) == 2


def test_time_sampled_usd_validates_and_matches_the_model(run4d, tmp_path):
    pytest.importorskip("pxr")
    from pxr import Usd, UsdVol

    from exporters import axes as ax
    from exporters.splats import as_numpy, transform_splats
    from exporters.usd_splat import validate_usd

    out = tmp_path / "exp"
    assert cli(["export", str(run4d), "--format", "splat4d-usd", "--out", str(out), "--time-samples", "5",
                "--fps", "12", "--up", "+z"]) == 0
    path = out / "splats4d.usdc"
    assert validate_usd(path) == []
    stage = Usd.Stage.Open(str(path))
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode(), stage.GetTimeCodesPerSecond()) == (0.0, 4.0, 12.0)
    prim = next(p for p in stage.Traverse() if p.IsA(UsdVol.ParticleField3DGaussianSplat))
    gs = UsdVol.ParticleField3DGaussianSplat(prim)
    for attr in (gs.GetPositionsAttr(), gs.GetOrientationsAttr(), gs.GetScalesAttr(), gs.GetExtentAttr()):
        assert attr.GetTimeSamples() == [0.0, 1.0, 2.0, 3.0, 4.0], attr.GetName()
    model = deform_model.load(run4d, {"model": "canonical.ply", "deformation": "deformation.safetensors"})
    T = ax.export_transform("+z", ax.format_axes("splat-usd", "auto"), 1.0)
    for k in range(5):
        ref = transform_splats(as_numpy(model.at(k / 4)), T)
        pos = np.asarray(gs.GetPositionsAttr().Get(Usd.TimeCode(k)), np.float64)
        assert np.abs(pos - ref["means"]).max() < 1e-5
        sc = np.asarray(gs.GetScalesAttr().Get(Usd.TimeCode(k)), np.float64)
        assert np.abs(np.log(sc) - ref["scales"]).max() < 1e-5
        xyzw = np.asarray(gs.GetOrientationsAttr().Get(Usd.TimeCode(k)), np.float64)
        qr = ref["quats"] / np.linalg.norm(ref["quats"], axis=1, keepdims=True)
        assert np.abs(np.abs((xyzw[:, [3, 0, 1, 2]] * qr).sum(1)) - 1).max() < 1e-5
    # Between samples USD interpolates linearly: half-way between frames 3 and 4.
    mid = np.asarray(gs.GetPositionsAttr().Get(Usd.TimeCode(3.5)), np.float64)
    p3 = np.asarray(gs.GetPositionsAttr().Get(Usd.TimeCode(3)), np.float64)
    p4 = np.asarray(gs.GetPositionsAttr().Get(Usd.TimeCode(4)), np.float64)
    assert np.abs(mid - 0.5 * (p3 + p4)).max() < 1e-5


def test_dynamic_formats_refuse_static_runs(tmp_path, capsys):
    from recon.testing.runs import make_run

    static = make_run(tmp_path / "static", n=300)
    assert cli(["export", str(static), "--format", "splat-sequence", "--out", str(tmp_path / "o")]) == 2
    assert "splat4d" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
