"""The NeRF's background at infinity (recon.nerf.env): on a capture whose background is a distant
scene (a sky that depends on the viewing direction), the environment map learns it and held-out
views are far better than with a flat background; the map round-trips through the model file and
resume; captures with alpha or on a plain backdrop keep the flat background."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import scenes
from recon.eval.evaluate import evaluate
from recon.methods.nerf import decode_field, encode_field
from recon.nerf.env import EnvMap, up_frame
from recon.nerf.field import camera_rays
from recon.scene.readers import load_scene
from recon.testing.runs import small_nerf_config
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer

QUIET = lambda s: None  # noqa: E731


def sky(d: np.ndarray) -> np.ndarray:
    """A smooth direction-dependent sky ``[..., 3]`` in [0, 1] (z is up in the built-in scenes)."""
    az = np.arctan2(d[..., 1], d[..., 0])
    el = d[..., 2]
    return np.stack([0.45 + 0.35 * np.sin(2 * az) * (1 - el ** 2), 0.5 + 0.35 * el, 0.55 - 0.3 * el], -1).clip(0, 1)


@pytest.fixture(scope="module")
def sky_scene(tmp_path_factory):
    """The turntable (24 views at 48 px) with its empty background replaced by :func:`sky`."""
    src = tmp_path_factory.mktemp("tt")
    scenes.synth("turntable", src, views=24, res=48)
    out = tmp_path_factory.mktemp("tt-sky")
    tf = json.loads((src / "transforms.json").read_text())
    shutil.copytree(src / "images", out / "images")
    for fr in tf["frames"]:
        fr.pop("depth_file_path", None)
        fr.pop("mask_path", None)
    K = torch.tensor([[tf["fl_x"], 0, tf["cx"]], [0, tf["fl_y"], tf["cy"]], [0, 0, 1]], dtype=torch.float32)
    H, W = tf["h"], tf["w"]
    vv, uu = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL -> OpenCV camera axes
    for fr in tf["frames"]:
        stem = fr["file_path"].split("/")[-1].rsplit(".", 1)[0]
        ids = np.asarray(Image.open(src / "masks" / f"{stem}.png"))
        c2w = torch.tensor(np.asarray(fr["transform_matrix"]) @ flip, dtype=torch.float32)
        _, d, _ = camera_rays(c2w, K, uu.reshape(-1), vv.reshape(-1))
        img = np.asarray(Image.open(out / fr["file_path"]).convert("RGB"), np.float32) / 255
        bg = ids == 0
        img[bg] = sky(d.numpy().reshape(H, W, 3))[bg]
        Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(out / fr["file_path"])
    (out / "transforms.json").write_text(json.dumps(tf))
    return out


def _cfg(steps: int, background_model: str) -> TrainConfig:
    return small_nerf_config(steps, background_model=background_model)


def test_environment_map_learns_the_distant_scene(sky_scene, tmp_path):
    sc = load_scene(sky_scene)
    res = {}
    for mode in ("auto", "flat"):
        tr = Trainer(_cfg(500, mode), sc, tmp_path / mode, log=QUIET)
        tr.train()
        res[mode] = (evaluate(tr.method.renderer(), sc, 1.0, log=QUIET)["psnr"], tr.method.field.env)
    (p_env, env), (p_flat, none) = res["auto"], res["flat"]
    print(f"held-out PSNR: environment map {p_env:.2f} dB, flat background {p_flat:.2f} dB")
    assert env is not None and none is None  # auto: a capture without a plain backdrop gets the map
    # Measured: 21.05 dB with the map, 14.08 dB with a flat background (500 steps, 48 px, 21 training
    # views); the same scene on its white backdrop reaches 25.4 dB.
    assert p_env >= 20.0 and p_env >= p_flat + 5.0


def test_model_file_and_checkpoint_keep_the_map(sky_scene, tmp_path):
    sc = load_scene(sky_scene)
    tr = Trainer(_cfg(60, "env"), sc, tmp_path / "a", log=QUIET)
    tr.train()
    f = tr.method.field
    p = tmp_path / "nerf.npz"
    p.write_bytes(encode_field(f, {"source": "test"}))
    g = decode_field(p)
    assert g.env is not None and torch.equal(g.env.logits, f.env.logits) and torch.equal(g.env.rot, f.env.rot)
    # resume: the map and its optimiser come back from the checkpoint state
    st = tr.method.state_dict()
    tr2 = Trainer(_cfg(60, "env"), sc, tmp_path / "b", log=QUIET)
    tr2.method.load_state_dict(st)
    assert torch.equal(tr2.method.field.env.logits, f.env.logits)
    assert tr2.method.env_opt.state_dict()["state"][0]["step"] == tr.method.env_opt.state_dict()["state"][0]["step"]


def test_alpha_and_plain_backdrops_keep_a_flat_background(tmp_path):
    src = tmp_path / "tt"
    scenes.synth("turntable", src, views=8, res=32)
    # an object on a plain white backdrop: the map would only compete with the field there
    # (measured on the turntable at 48 px: 23.85 dB with it, 25.42 dB without)
    assert Trainer(_cfg(1, "auto"), load_scene(src), tmp_path / "w", log=QUIET).method.field.env is None
    for p in sorted((src / "images").glob("*.png")):  # RGBA: alpha from the object ids
        ids = np.asarray(Image.open(src / "masks" / p.name))
        rgba = np.dstack([np.asarray(Image.open(p).convert("RGB")), ((ids > 0) * 255).astype(np.uint8)])
        Image.fromarray(rgba, "RGBA").save(p)
    sc = load_scene(src)
    assert Trainer(_cfg(1, "auto"), sc, tmp_path / "r", log=QUIET).method.field.env is None
    assert Trainer(_cfg(1, "env"), sc, tmp_path / "r2", log=QUIET).method.field.env is not None


def test_up_frame_points_the_pole_up():
    # cameras on a ring around +z, looking at the origin: up is +z
    c2ws = []
    for a in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        eye = np.array([3 * np.cos(a), 3 * np.sin(a), 1.0])
        z = -eye / np.linalg.norm(eye)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        m = np.eye(4)
        m[:3, :3] = np.stack([x, y, z], 1)
        m[:3, 3] = eye
        c2ws.append(m)
    R = up_frame(np.stack(c2ws))
    assert np.allclose(R[2], [0, 0, 1], atol=0.1) and np.allclose(R @ R.T, np.eye(3), atol=1e-5)
    env = EnvMap(R, 8, 16)
    assert env(torch.tensor([[0.0, 0.0, 1.0]])).shape == (1, 3)
