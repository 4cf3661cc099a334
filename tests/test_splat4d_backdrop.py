"""Solid-backdrop key (``--background-key``, :mod:`recon.scene.backdrop`): RGB images of an object on
black or white get an alpha channel, so training keeps empty space empty (issue 15: on D-NeRF lego,
saved on black without alpha, dark Gaussians invisible in the training views occluded held-out views)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recon.eval.evaluate import evaluate
from recon.methods.splat import SplatConfig
from recon.models import splats as splat_model
from recon.scene.backdrop import apply_backdrop_key, detect_backdrop, key_alpha
from recon.scene.conventions import look_at_c2w, opencv_to_opengl
from recon.scene.readers import load_scene
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer

RES = 32
LEGO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dnerf_lego_tiny"


def test_key_alpha_keeps_dark_parts_inside_the_object():
    img = np.zeros((40, 40, 3), np.float32)
    img[10:30, 10:30] = (0.9, 0.8, 0.1)
    img[17:23, 17:23] = 0.0  # a black part inside the object: not connected to the border
    img[5, 5] = 6.0 / 255.0  # backdrop noise between tolerance (4/255) and 3x (12/255): partly keyed
    a = key_alpha(img, (0.0, 0.0, 0.0))
    assert a[0, 0] == 0.0 and a[39, 39] == 0.0
    assert np.all(a[10:30, 10:30] == 1.0)
    assert a[5, 5] == pytest.approx((6 - 4) / 8, abs=1e-5)
    assert a.mean() == pytest.approx((400 + (2 / 8)) / 1600, abs=1e-5)
    # White backdrop, white parts inside the object stay.
    w = 1.0 - img
    assert np.allclose(key_alpha(w, (1.0, 1.0, 1.0)), a, atol=1e-5)


def test_key_alpha_mattes_the_anti_aliased_rim():
    """An edge pixel that blends the object with the backdrop gets the blend's alpha (within 0.02), so
    random backgrounds do not ask for a rim of backdrop colour; an object colour too close to the
    backdrop to tell stays opaque."""
    white = np.ones(3, np.float32)
    obj = np.array([0.2, 0.5, 0.8], np.float32)
    img = np.ones((30, 30, 3), np.float32)
    img[8:22, 8:22] = obj
    cover = np.array([0.3, 0.55, 0.8, 0.1], np.float32)
    for a, col in zip(cover, (7, 22)):
        img[8:22, col] = a * obj + (1 - a) * white
    img[7, 9:21] = 0.55 * obj + 0.45 * white  # the top rim
    a = key_alpha(img, (1.0, 1.0, 1.0))
    assert a[0, 0] == 0.0 and np.all(a[9:21, 9:21] == 1.0)
    assert np.allclose(a[10:20, 7], 0.3, atol=0.02) and np.allclose(a[10:20, 22], 0.55, atol=0.02)
    assert np.allclose(a[7, 10:20], 0.55, atol=0.02)
    # A pale object on white: the rim cannot be told from the backdrop's colour, and stays opaque.
    pale = np.ones((30, 30, 3), np.float32)
    pale[8:22, 8:22] = 0.92
    pale[8:22, 7] = 0.94
    b = key_alpha(pale, (1.0, 1.0, 1.0))
    assert np.all(b[8:22, 7:22] == 1.0)


def _gt() -> dict:
    """A small scene: a ring of coloured blobs around a dark-grey centre block."""
    rng = np.random.default_rng(0)
    ang = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1) * 0.8
    block = rng.uniform(-0.3, 0.3, (120, 3))
    means = np.concatenate([ring, block]).astype(np.float32)
    rgb = np.concatenate([rng.uniform(0.3, 1, (60, 3)), np.full((120, 3), 0.25)])
    n = len(means)
    return {"means": torch.tensor(means), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
            "scales": torch.full((n, 3), math.log(0.08)), "opacities": torch.full((n,), 4.0),
            "sh0": splat_model.rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
            "shN": torch.zeros(n, 0, 3)}


@pytest.fixture(scope="module")
def black_scene(tmp_path_factory):
    """A Blender folder rendered from :func:`_gt` on black, saved as RGB (no alpha); training and
    held-out (test) cameras at the same elevations, the held-out ones between the training azimuths."""
    root = tmp_path_factory.mktemp("black")
    f = 0.5 * RES / math.tan(math.radians(25))
    K = torch.tensor([[f, 0, RES / 2], [0, f, RES / 2], [0, 0, 1.0]], dtype=torch.float32)
    golden = math.pi * (3 - math.sqrt(5))
    frames = {"train": [], "test": []}
    gt = _gt()
    for split, n, el0, el1 in (("train", 24, 30, 70), ("test", 6, 30, 70)):
        (root / split).mkdir()
        for i in range(n):
            el = math.radians(el0 + (el1 - el0) * ((i * 0.618) % 1.0))
            az = i * golden + (1.1 if split == "test" else 0.0)
            eye = 3.0 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            c2w = look_at_c2w(eye, (0, 0, 0), (0, 0, 1))
            vm = torch.tensor(np.linalg.inv(c2w), dtype=torch.float32)
            img, _, _ = splat_model.render_splats(gt, vm, K, RES, RES, 0, torch.zeros(3))
            name = f"{split}/r_{i:03d}"
            Image.fromarray((img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(root / f"{name}.png")
            frames[split].append({"file_path": f"./{name}", "transform_matrix": opencv_to_opengl(c2w).tolist()})
    for split, fr in frames.items():
        doc = {"camera_angle_x": 2 * math.atan(0.5 * RES / f), "frames": fr}
        (root / f"transforms_{split}.json").write_text(json.dumps(doc))
    return root


def test_auto_keys_blender_and_declared_backdrops_only(black_scene, tmp_path):
    sc = load_scene(black_scene, background=(1.0, 1.0, 1.0))
    assert sc.background == (0.0, 0.0, 0.0)  # the reader's baked background
    assert detect_backdrop(sc, sc.indices("train")) == (0.0, 0.0, 0.0)
    assert apply_backdrop_key(sc, "auto", sc.indices("train"), log=lambda s: None)["key"] == [0.0, 0.0, 0.0]
    a = sc.alpha(sc.indices("train")[0])
    assert a is not None and 0.05 < a.mean() < 0.8 and a.min() == 0.0 and a.max() == 1.0
    assert apply_backdrop_key(sc, "none", sc.indices("train"), log=lambda s: None)["key"] is None
    assert sc.alpha(sc.indices("train")[0]) is None
    # The same images as a nerfstudio capture: auto leaves photos alone; a named colour keys them.
    doc = json.loads((black_scene / "transforms_train.json").read_text())
    doc["frames"] = [dict(fr, file_path=str(black_scene / (fr["file_path"][2:] + ".png"))) for fr in doc["frames"]]
    (tmp_path / "transforms.json").write_text(json.dumps(doc))
    ns = load_scene(tmp_path / "transforms.json")
    assert apply_backdrop_key(ns, "auto", ns.indices("train"), log=lambda s: None)["key"] is None
    assert apply_backdrop_key(ns, "black", ns.indices("train"), log=lambda s: None)["key"] == [0.0, 0.0, 0.0]
    assert ns.background == (0.0, 0.0, 0.0) and ns.alpha(0) is not None
    # A nerfstudio folder that declares its backdrop (recon's synthetic scenes write background_color):
    # auto keys it, after checking the images' borders really are that colour.
    (tmp_path / "transforms.json").write_text(json.dumps(dict(doc, background_color=[0, 0, 0])))
    ns = load_scene(tmp_path / "transforms.json")
    assert ns.declared_backdrop == (0.0, 0.0, 0.0)
    assert apply_backdrop_key(ns, "auto", ns.indices("train"), log=lambda s: None)["key"] == [0.0, 0.0, 0.0]
    assert ns.alpha(0) is not None and 0.05 < ns.alpha(0).mean() < 0.8
    # Declared white over images on black: the check finds no white border, nothing is keyed.
    (tmp_path / "transforms.json").write_text(json.dumps(dict(doc, background_color=[1, 1, 1])))
    ns = load_scene(tmp_path / "transforms.json")
    assert apply_backdrop_key(ns, "auto", ns.indices("train"), log=lambda s: None)["key"] is None


@pytest.mark.skipif(not LEGO.is_dir(), reason="../shared/data/dnerf_lego_tiny is not here")
def test_lego_tiny_is_keyed_black():
    sc = load_scene(LEGO, background=(1.0, 1.0, 1.0))
    assert apply_backdrop_key(sc, "auto", sc.indices("train"), log=lambda s: None)["key"] == [0.0, 0.0, 0.0]
    a = sc.alpha(sc.indices("train")[0])
    # Measured: 75.3 % of r_000 is backdrop.
    assert 0.70 < 1.0 - a.mean() < 0.80


def _train(root: Path, key: str, out: Path):
    sc = load_scene(root, background=(1.0, 1.0, 1.0))
    # The opacity regulariser off: it alone fades most of these floaters too (unkeyed 0.055, keyed 0.051
    # alpha on the backdrop with it on, 7 Dec); this test measures what the key does.
    m = SplatConfig(sh_degree=0, init_num_points=3000, refine_start=60, refine_every=40, reset_every=10_000,
                    refine_stop_fraction=0.6, max_gaussians=6000, opacity_reg=0.0)
    cfg = TrainConfig(method="splat", steps=300, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9,
                      background_key=key, model=m)
    tr = Trainer(cfg, sc, out, log=lambda s: None)
    tr.train()
    r = tr.method.renderer()
    res = evaluate(r, sc, 1.0, log=lambda s: None)
    # Coverage the model renders where the held-out images show the backdrop.
    empty = []
    for i in sc.indices("test"):
        gt = torch.from_numpy(sc.image(i))
        a = r.render(sc.camera(i), outputs=("rgb", "alpha")).alpha.reshape(RES, RES)
        bg = gt.max(dim=-1).values < 2 / 255
        empty.append(float(a[bg].mean()))
    return res["psnr"], float(np.mean(empty))


def test_key_keeps_empty_space_empty(black_scene, tmp_path):
    p_none, e_none = _train(black_scene, "none", tmp_path / "none")
    p_key, e_key = _train(black_scene, "auto", tmp_path / "key")
    print(f"held-out PSNR none {p_none:.2f} / keyed {p_key:.2f} dB; "
          f"rendered alpha on backdrop none {e_none:.3f} / keyed {e_key:.3f}")
    # Without the key, Gaussians in the empty space the training views see against black turn black
    # and stay (free in every training view); keyed, random backgrounds make them transparent.
    # Measured (300 steps, loaded machine): alpha on the backdrop 0.158 unkeyed, 0.062 keyed (what is
    # left is the soft rim round the object). Held-out PSNR 27.78 unkeyed, 23.98 dB keyed: at this
    # budget random backgrounds slow the colour fit, and the floaters here are black on black, so
    # they cost the unkeyed model nothing; on D-NeRF lego they occlude the object (docs/splat4d.md).
    assert e_key < 0.1 and e_key < 0.5 * e_none
