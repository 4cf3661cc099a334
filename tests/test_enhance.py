"""2D enhancement hooks (docs/enhance.md): the registry and its step syntax, the OpenCV built-ins
against known degradations, `recon process --enhance` end to end (originals untouched, manifest,
cameras scaled by super-resolution, cache reuse), --restoration-only, spandrel models from .pth and
.safetensors (parity with the module itself), torchvision absent or present, and a plugin installed
as a separate package."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
from recon.cli import run
from recon.enhance import builtins as B
from recon.enhance.registry import load_steps, mode_of, parse_steps, register, unregister
from recon.errors import ReconError
from recon.scene.readers import load_scene

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return scenes.synth("turntable", tmp_path_factory.mktemp("enh") / "scene", views=8, res=48)


@pytest.fixture(scope="module")
def frames(synth) -> list[np.ndarray]:
    sc = load_scene(synth)
    return [sc.image(i) for i in range(4)]


def _tiny_models(folder: Path) -> dict[str, tuple[Path, torch.nn.Module]]:
    """Randomly initialised tiny spandrel architectures saved as .pth / .safetensors."""
    from recon.enhance.models import import_spandrel

    import_spandrel()
    import safetensors.torch
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DnCNN import DnCNN
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    mods = {
        "compact.pth": Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2),
        "dncnn.safetensors": DnCNN(in_nc=3, out_nc=3, nc=8, nb=5),
        "swinir.pth": SwinIR(upscale=2, img_size=16, window_size=4, embed_dim=12, depths=[2], num_heads=[2],
                             mlp_ratio=2, upsampler="pixelshuffledirect"),
    }
    out = {}
    for name, m in mods.items():
        p = folder / name
        if name.endswith(".safetensors"):
            safetensors.torch.save_file(m.state_dict(), str(p))
        else:
            torch.save(m.state_dict(), p)
        out[name] = (p, m.eval())
    return out


def test_step_syntax_and_registry():
    st = parse_steps("denoise:h=12, sr:/m/x.pth:device=cpu,inpaint")
    assert [(s.name, s.arg, s.params) for s in st] == [
        ("denoise", None, {"h": "12"}), ("sr", "/m/x.pth", {"device": "cpu"}), ("inpaint", None, {})]
    for bad in ("denoise,,sr", "sr:a.pth:b.pth", "denoise:=3"):
        with pytest.raises(ReconError):
            parse_steps(bad)
    steps = load_steps("denoise,lowlight,unsharp,whitebalance")
    assert mode_of(steps) == "restoration-only"
    assert mode_of(load_steps("denoise,inpaint")) == "generative"
    with pytest.raises(ReconError, match="refused by --restoration-only"):
        load_steps("denoise,inpaint", restoration_only=True)
    with pytest.raises(ReconError, match="unknown enhancement plugin 'nope'.*denoise"):
        load_steps("nope")
    with pytest.raises(ReconError, match="denoise: unknown parameter 'x'"):
        load_steps("denoise:x=1")
    with pytest.raises(ReconError, match="not a number"):
        load_steps("unsharp:amount=lots")

    class Gain:
        """Multiplies by a gain (a locally registered test plugin)."""

        kind = "restore"
        version = "7"

        def __init__(self, arg=None, gain="0.5"):
            self.g = float(gain)

        def process(self, images, masks=None):
            return [im * self.g for im in images]

    register("gain", Gain)
    try:
        (s,) = load_steps("gain:gain=0.25")
        assert s.entry.source == "local" and s.record()["version"] == "7"
        assert np.allclose(s.plugin.process([np.ones((2, 2, 3), np.float32)])[0], 0.25)
    finally:
        unregister("gain")


def test_builtins_undo_known_degradations(frames):
    rng = np.random.default_rng(1)
    im = frames[1]
    # Low light: a frame at 25 % exposure comes back brighter and closer to the original.
    dark = (im * 0.25).astype(np.float32)
    lit = B.LowLight().process([dark])[0]
    assert lit.mean() > 1.3 * dark.mean()
    # White balance: a colour cast (x [1.3, 1.0, 0.7]) is mostly removed (error to the original halves).
    cast = np.clip(im * np.array([1.3, 1.0, 0.7], np.float32), 0, 1)
    wb = B.WhiteBalance(method="whitepatch").process([cast])[0]
    assert np.abs(wb - im).mean() < 0.5 * np.abs(cast - im).mean()
    # Unsharp: a blurred frame gets closer to the sharp one.
    import cv2

    blur = cv2.GaussianBlur(im, (0, 0), 1.0)
    sharp = B.Unsharp(amount="1.0", sigma="1.0").process([blur])[0]
    assert _psnr(sharp, im) > _psnr(blur, im) + 0.3
    # Denoise: sigma is estimated within 20 % on a mid-grey image, and the frame gets cleaner.
    flat = np.full((64, 64, 3), 0.5, np.float32) + rng.normal(0, 10 / 255, (64, 64, 3)).astype(np.float32)
    assert abs(B.estimate_noise_sigma(flat) - 10.0) < 2.0
    noisy = np.clip(im + rng.normal(0, 25 / 255, im.shape), 0, 1).astype(np.float32)
    assert _psnr(B.Denoise().process([noisy])[0], im) > _psnr(noisy, im) + 2.0
    # Inpaint: a masked square of a smooth image is filled from around it (not left black).
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    smooth = np.dstack([xx, yy, 0.5 * np.ones_like(xx)]).astype(np.float32)
    holed = smooth.copy()
    mask = np.zeros((48, 48), bool)
    mask[18:30, 18:30] = True
    holed[mask] = 0.0
    filled = B.Inpaint().process([holed], [mask])[0]
    assert np.abs(filled - smooth)[mask].mean() < 0.05 < np.abs(holed - smooth)[mask].mean()
    assert np.array_equal(filled[~B_dilated(mask, 2)], np.clip(np.rint(holed * 255), 0, 255)[~B_dilated(mask, 2)] / 255.0)


def B_dilated(mask, d):
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * d + 1, 2 * d + 1), np.uint8)) > 0


def _rgba_frame() -> tuple[np.ndarray, np.ndarray]:
    """48x48 straight RGBA: transparent (stored black) above, an opaque gradient block below row 30
    with a half-transparent top edge, and the mask of a bar standing in front of both."""
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    rgba = np.zeros((48, 48, 4), np.float32)
    rgba[30:, :, :3] = np.dstack([0.3 + 0.5 * xx, 0.6 - 0.3 * yy, 0.2 * np.ones_like(xx)])[30:]
    rgba[30:, :, 3] = 1.0
    rgba[29, :, :3], rgba[29, :, 3] = (0.2, 0.4, 0.8), 0.5
    mask = np.zeros((48, 48), bool)
    mask[6:44, 21:27] = True
    return np.rint(rgba * 255) / 255, mask


def test_inpaint_fills_alpha_of_rgba_frames(tmp_path):
    rgba, mask = _rgba_frame()
    out = B.Inpaint().process([rgba], [mask])[0]
    assert out.shape == (48, 48, 4)
    region = B_dilated(mask, 2)
    # Where the bar stood against the empty background, the frame is transparent again, with the
    # frame's own background colour; where the block surrounds it, opaque with the block's colour
    # (filled from the opaque pixels only: not darkened by the black stored in transparent ones).
    assert np.all(out[8:26, 21:27, 3] == 0) and np.abs(out[8:26, 21:27, :3]).max() == 0
    assert np.all(out[34:44, 21:27, 3] == 1)
    assert np.abs(out[34:44, 21:27, :3] - rgba[34:44, 21:27, :3]).max() < 0.06
    assert np.abs(out - rgba)[~region].max() <= 0.5 / 255
    # alpha=keep leaves alpha alone; a lower `solid` keeps more of the surface (never less).
    kept = B.Inpaint(alpha="keep").process([rgba], [mask])[0]
    assert np.array_equal(kept[..., 3], rgba[..., 3])
    low = B.Inpaint(solid="0.3").process([rgba], [mask])[0]
    assert low[..., 3].sum() > out[..., 3].sum() and np.all(low[..., 3] >= out[..., 3])
    # Opaque RGB frames stay RGB; bad values are one line.
    assert B.Inpaint().process([rgba[..., :3]], [mask])[0].shape == (48, 48, 3)
    for bad, msg in (({"solid": "0"}, "solid=0"), ({"alpha": "drop"}, "alpha='drop'")):
        with pytest.raises(ReconError, match=msg):
            B.Inpaint(**bad)


def test_alpha_loss_measures_coverage_and_follows_the_background(synth):
    """--alpha-weight (the retraining half of remove-and-retrain): weight * mean |alpha - target|
    over used pixels, nothing for views without alpha; by default 0.1 where splats train on the
    scene's background (--background auto), off with random backgrounds."""
    from recon.methods.base import Batch, RenderOutput
    from recon.train.config import TrainConfig
    from recon.train.losses import AlphaLoss
    from recon.train.trainer import default_terms

    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(6, 5, 1, generator=g), (torch.rand(6, 5, 1, generator=g) > 0.5).float()
    out = RenderOutput(rgb=torch.rand(6, 5, 3, generator=g), alpha=pred)
    b = Batch(kind="view", index=0, target=out.rgb, background=torch.ones(3), alpha=target)
    assert float(AlphaLoss(0.5)(out, b, 0)) == pytest.approx(0.5 * float((pred - target).abs().mean()), rel=1e-6)
    mask = torch.zeros(6, 5, 1)
    mask[:3] = 1
    b.mask = mask
    assert float(AlphaLoss(1.0)(out, b, 0)) == pytest.approx(float((pred - target)[:3].abs().mean()), rel=1e-6)
    b.alpha = None
    assert float(AlphaLoss(1.0)(out, b, 0)) == 0.0
    sc = load_scene(synth)
    idx = sc.indices("train")
    assert sc.background is None  # RGB images stored on no colour: random backgrounds, no alpha term
    assert default_terms(TrainConfig(), sc, idx) == []
    sc.background = (1.0, 1.0, 1.0)
    auto = default_terms(TrainConfig(), sc, idx)
    assert len(auto) == 1 and isinstance(auto[0], AlphaLoss) and auto[0].weight == pytest.approx(0.1)
    assert default_terms(TrainConfig(background="random"), sc, idx) == []
    assert len(default_terms(TrainConfig(method="nerf"), sc, idx)) == 1
    assert default_terms(TrainConfig(), sc, idx, has_alpha=False) == []  # RGB views: nothing to compare
    assert default_terms(TrainConfig(alpha_weight=0.0), sc, idx) == []
    terms = default_terms(TrainConfig(alpha_weight=0.25), sc, idx)
    assert len(terms) == 1 and isinstance(terms[0], AlphaLoss) and terms[0].weight == 0.25
    assert TrainConfig().hash() == TrainConfig(alpha_weight=None).hash() != TrainConfig(alpha_weight=0.25).hash()
    assert TrainConfig(alpha_weight=0.0).hash() != TrainConfig().hash()


def test_rgba_scene_with_a_background_round_trips_through_the_stage(tmp_path):
    """A Blender scene (RGBA, read composited on white): enhanced frames are stored with straight
    colour, so reading them back composites once: pixels the plugin left alone read as before, the
    half-transparent edge included; the removed bar leaves transparency (and white) behind."""
    from PIL import Image

    scene = tmp_path / "blender"
    (scene / "train").mkdir(parents=True)
    (scene / "masks").mkdir()
    rgba, mask = _rgba_frame()
    frames = []
    for k in range(2):
        Image.fromarray(np.rint(rgba * 255).astype(np.uint8), "RGBA").save(scene / "train" / f"r_{k}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(scene / "masks" / f"r_{k}.png")
        c2w = np.eye(4)
        c2w[:3, 3] = (0.1 * k, 0.0, 4.0)
        frames.append({"file_path": f"./train/r_{k}", "transform_matrix": c2w.tolist()})
    (scene / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    out = tmp_path / "out"
    assert run(["process", str(scene), "--out", str(out), "--enhance", "inpaint", "--enhance-masks", str(scene / "masks")]) == 0
    src, proc = load_scene(scene), load_scene(out, background=(1.0, 1.0, 1.0))
    assert src.background == (1.0, 1.0, 1.0)
    region = B_dilated(mask, 2)
    for i in range(2):
        assert Path(proc.frames[i].image_path).parent == out / "enhanced" / "images"
        a, b = src.image(i), proc.image(i)
        assert np.abs(a - b)[~region].max() <= 1.01 / 255
        assert np.abs(src.alpha(i) - proc.alpha(i))[~region].max() <= 0.5 / 255
        assert np.all(proc.alpha(i)[8:26, 21:27] == 0) and np.all(b[8:26, 21:27] == 1.0)


def test_spandrel_models_match_their_modules(tmp_path):
    from recon.enhance.models import SpandrelModel

    rng = np.random.default_rng(0)
    im = rng.random((20, 28, 3)).astype(np.float32)
    for name, (path, module) in _tiny_models(tmp_path).items():
        pl = SpandrelModel(str(path), device="cpu")
        with torch.no_grad():
            ref = module(torch.from_numpy(im).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        out = pl.process([im])[0]
        assert out.shape == ref.shape, name
        assert np.abs(out - ref).max() < 1e-5, name
        assert pl.kind == "restore" and pl.parameters()["scale"] == (1 if "dncnn" in name else 2)
    assert {SpandrelModel(str(p)).architecture for p, _ in _tiny_models(tmp_path).values()} == {"RealESRGAN Compact", "DnCNN", "SwinIR"}
    with pytest.raises(ReconError, match="not found"):
        SpandrelModel(str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a model")
    with pytest.raises(ReconError, match="not a model spandrel can load"):
        SpandrelModel(str(tmp_path / "junk.pth"))


def test_process_enhance_end_to_end(synth, tmp_path, capsys):
    (mpath, module), = [v for k, v in _tiny_models(tmp_path).items() if k == "compact.pth"]
    before = {p.name: _sha(p) for p in (synth / "images").iterdir()}
    tj_before = _sha(synth / "transforms.json")
    out = tmp_path / "proc"
    assert run(["process", str(synth), "--out", str(out), "--enhance", f"denoise,sr:{mpath}"]) == 0
    # Originals never modified.
    assert {p.name: _sha(p) for p in (synth / "images").iterdir()} == before and _sha(synth / "transforms.json") == tj_before
    man = json.loads((out / "enhanced" / "manifest.json").read_text())
    assert man["mode"] == "restoration-only" and man["frames_total"] == 8 and man["frames_changed"] == 8
    assert [s["plugin"] for s in man["steps"]] == ["denoise", "sr"]
    assert man["steps"][1]["model"]["sha256"] == _sha(mpath) and man["steps"][1]["parameters"]["scale"] == 2
    src, proc = load_scene(synth), load_scene(out)
    for i, (a, b) in enumerate(zip(src.frames, proc.frames)):
        assert b.camera.width == 2 * a.camera.width and np.allclose(b.camera.K[:2], 2 * a.camera.K[:2])
        assert np.allclose(b.camera.c2w, a.camera.c2w) and b.split == a.split
        assert Path(b.image_path).parent == out / "enhanced" / "images"
        # The stored frame is the chain's output: denoise, then the spandrel model (8-bit PNG).
        x = B.Denoise().process([src.image(i)])[0]
        with torch.no_grad():
            y = module(torch.from_numpy(x).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        assert np.abs(proc.image(i) - y).max() <= 1.01 / 255
        assert b.depth_path is not None and Path(b.depth_path).resolve() == Path(a.depth_path).resolve()
    # A re-run reuses every frame.
    assert run(["process", str(synth), "--out", str(out), "--enhance", f"denoise,sr:{mpath}"]) == 0
    man2 = json.loads((out / "enhanced" / "manifest.json").read_text())
    assert all(f["reused"] for f in man2["frames"]) and man2["frames_changed"] == 8


def test_restoration_only_refuses_generators(synth, tmp_path, capsys):
    masks = synth / "masks"
    capsys.readouterr()
    assert run(["process", str(synth), "--out", str(tmp_path / "a"), "--enhance", "denoise,inpaint",
                "--enhance-masks", str(masks), "--restoration-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'inpaint' is a generative plugin" in err[0] and "--restoration-only" in err[0]
    assert not (tmp_path / "a").exists()  # refused before anything was written
    # The per-scene setting does the same.
    scene = tmp_path / "twin"
    import shutil

    shutil.copytree(synth, scene)
    (scene / "recon.json").write_text(json.dumps({"restoration_only": True}))
    assert run(["process", str(scene), "--enhance", "inpaint", "--enhance-masks", str(masks)]) == 2
    assert "recon.json (restoration_only: true)" in capsys.readouterr().err
    # Without it, the generator runs, edits only the masked object and marks the scene generative.
    out = tmp_path / "gen"
    assert run(["process", str(synth), "--out", str(out), "--enhance", "inpaint:dilate=0", "--enhance-masks", str(masks),
                "--enhance-mask-ids", "5"]) == 0
    man = json.loads((out / "enhanced" / "manifest.json").read_text())
    assert man["mode"] == "generative" and man["masks"]["ids"] == [5]
    src, proc = load_scene(synth), load_scene(out)
    from PIL import Image

    for i, f in enumerate(man["frames"]):
        ids = np.asarray(Image.open(masks / f"{f['frame']}.png"))
        if not (ids == 5).any():
            assert not f["changed"] and proc.frames[i].image_path == src.frames[i].image_path
        else:
            diff = np.abs(proc.image(i) - src.image(i)).max(-1)
            assert diff[ids != 5].max() <= 1.01 / 255 and diff[ids == 5].max() > 0.05


def test_bad_enhance_inputs_are_one_line(synth, tmp_path, capsys):
    for args, msg in (
        (["--enhance", "sr"], "needs a model file"),
        (["--enhance", f"sr:{tmp_path / 'none.pth'}"], "not found"),
        (["--enhance", "inpaint"], "pass --enhance-masks"),
        (["--enhance", "blur"], "unknown enhancement plugin 'blur'"),
        (["--enhance", "denoise", "--enhance-masks", str(tmp_path / "nomasks")], "not a folder"),
    ):
        capsys.readouterr()
        assert run(["process", str(synth), "--out", str(tmp_path / "o"), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (args, err)


_HIDE_TORCHVISION = """
import importlib.machinery, sys
_orig = importlib.machinery.PathFinder.find_spec.__func__
def _find_spec(cls, name, path=None, target=None):
    if name == "torchvision" or name.startswith("torchvision."):
        return None  # as if it were not installed
    return _orig(cls, name, path, target)
importlib.machinery.PathFinder.find_spec = classmethod(_find_spec)
import importlib.metadata
_dist = importlib.metadata.distribution
"""


def test_spandrel_with_torchvision_absent_and_present(tmp_path):
    paths = {k: str(v[0]) for k, v in _tiny_models(tmp_path).items()}
    body = textwrap.dedent(f"""
        import sys, numpy as np
        import recon
        from recon.enhance.models import SpandrelModel
        from recon.enhance.torchvision_compat import torchvision_status
        outs = [SpandrelModel({paths['swinir.pth']!r}).process([np.zeros((8, 8, 3), np.float32)])[0].shape]
        from transformers import AutoImageProcessor
        from transformers.models.depth_anything import modeling_depth_anything
        import diffusers
        from diffusers import StableDiffusionInpaintPipeline
        print(torchvision_status(), outs, "torchvision" in sys.modules)
    """)
    absent = subprocess.run([PY, "-c", _HIDE_TORCHVISION + body], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert absent.returncode == 0, absent.stderr[-2000:]
    assert absent.stdout.split()[0] == "absent" and absent.stdout.strip().endswith("False")  # the stand-in did not leak
    from recon.enhance.torchvision_compat import _find

    if _find("torchvision") is None:
        pytest.skip("torchvision is not installed here (make install's enhance extra installs it)")
    present = subprocess.run([PY, "-c", body], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert present.returncode == 0, present.stderr[-2000:]
    assert present.stdout.split()[0] in ("declared", "native") and present.stdout.strip().endswith("True")


def test_plugin_installed_as_a_separate_package(synth, tmp_path):
    pkg = tmp_path / "recon-invert"
    (pkg / "recon_invert").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "recon-invert"
        version = "0.3.1"
        [project.entry-points."recon.enhancers"]
        invert = "recon_invert:Invert"
    """))
    (pkg / "recon_invert" / "__init__.py").write_text(textwrap.dedent('''
        class Invert:
            """Photographic negative (a third-party test plugin)."""
            kind = "restore"
            version = "0.3.1"
            def __init__(self, arg=None, **params):
                pass
            def process(self, images, masks=None):
                return [1.0 - im for im in images]
    '''))
    target = tmp_path / "site"
    r = subprocess.run([PY, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "--target", str(target), str(pkg)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    recon = [PY, "-m", "recon.cli"]
    listing = subprocess.run(recon + ["plugins", "--json-output"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    plug = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert plug["invert"]["source"].startswith("entry point recon_invert:Invert (recon-invert 0.3.1)")
    out = tmp_path / "inv"
    r = subprocess.run(recon + ["process", str(synth), "--out", str(out), "--enhance", "invert"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    src, proc = load_scene(synth), load_scene(out)
    for i in range(len(src.frames)):
        assert np.abs(proc.image(i) - (1.0 - src.image(i))).max() <= 1.01 / 255
    man = json.loads((out / "enhanced" / "manifest.json").read_text())
    assert man["steps"][0]["source"].startswith("entry point") and man["steps"][0]["version"] == "0.3.1"
