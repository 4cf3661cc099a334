"""`recon render`: MP4 along a nerfstudio camera path (or an orbit), colour/depth/alpha frames, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recon.cli import run as cli
from recon.render import rasterization
from recon.scene.conventions import GL_CV_FLIP, c2w_to_viewmat
from viewer.camera_path import Keyframe, to_nerfstudio, write_camera_path
from recon.testing.runs import make_run, ring_cameras

av = pytest.importorskip("av", reason="PyAV (the video extra) writes the MP4")
W, H = 64, 48


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), n=3000, sh_degree=1)


@pytest.fixture(scope="module")
def path_file(tmp_path_factory):
    """A 5-frame nerfstudio camera path through three of the run's ring cameras, at 64x48."""
    cams = ring_cameras(8)
    fov = 2 * math.atan(0.5 * cams[0]["height"] / cams[0]["K"][1][1])
    kfs = [Keyframe(np.array(cams[j]["c2w"]), fov, W / H) for j in (0, 1, 2)]
    content = to_nerfstudio(kfs, W, H, fps=5.0, seconds=1.0)
    assert len(content["camera_path"]) == 5
    return write_camera_path(tmp_path_factory.mktemp("path") / "camera_path.json", content)


def direct_render(run_dir, entry: dict, width: int, height: int, background=(1.0, 1.0, 1.0)):
    """The rasterizer called directly for one camera_path entry: (rgb [H,W,3], alpha [H,W], depth [H,W])."""
    from viewer.splats import read_splats

    s = read_splats(run_dir / "splats.ply")
    c2w = np.asarray(entry["camera_to_world"], np.float64).reshape(4, 4) @ GL_CV_FLIP
    f = 0.5 * height / math.tan(math.radians(entry["fov"]) / 2)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    colors = torch.cat([s["sh0"], s["shN"]], 1)
    out, alpha, _ = rasterization(s["means"], s["quats"], torch.exp(s["scales"]), torch.sigmoid(s["opacities"]),
                                  colors, torch.from_numpy(c2w_to_viewmat(c2w)).float()[None], K[None], width,
                                  height, sh_degree=1, render_mode="RGB+ED",
                                  backgrounds=torch.tensor([background], dtype=torch.float32))
    return out[0, ..., :3].clamp(0, 1).numpy(), alpha[0, ..., 0].numpy(), out[0, ..., 3].numpy()


def decode(path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        return frames, float(st.average_rate)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # BT.601 Y'


def test_render_camera_path_to_mp4_and_passes(run_dir, path_file, tmp_path, capsys):
    out, frames = tmp_path / "out" / "path.mp4", tmp_path / "frames"
    assert cli(["render", str(run_dir), "--camera-path", str(path_file), "--out", str(out),
                "--frames", str(frames)]) == 0
    err = capsys.readouterr().err
    assert "frame 5/5 (100%)" in err and "ETA" in err and f"wrote {out}" in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["path.mp4"]  # no temp file left

    video, fps = decode(out)
    assert len(video) == 5 and video[0].shape == (H, W, 3) and fps == pytest.approx(5.0)
    entries = json.loads(path_file.read_text())["camera_path"]
    meta = json.loads((frames / "frames.json").read_text())
    scale = meta["depth_png_scale"]
    assert meta["width"] == W and len(meta["frames"]) == 5
    import cv2

    scores, y_scores = [], []
    for i in (0, 2, 4):
        rgb, alpha, depth = direct_render(run_dir, entries[i], W, H)
        ref = (rgb * 255 + 0.5).astype(np.uint8)
        assert (1 - alpha).mean() > 0.3 and alpha.max() > 0.99  # the sphere and some background
        scores.append(psnr(video[i], ref))
        y_scores.append(psnr(luma(video[i]), luma(ref)))
        # PNG colour pass: the same 8-bit image the encoder was given.
        png = cv2.imread(str(frames / "rgb" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert np.abs(png.astype(int) - ref.astype(int)).max() <= 1
        # Alpha pass.
        a8 = cv2.imread(str(frames / "alpha" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert a8.dtype == np.uint8 and np.abs(a8 / 255.0 - alpha).max() <= 1 / 255 + 1e-6
        # Depth passes: float exact, 16-bit PNG to its step where alpha >= 0.5, 0 elsewhere.
        d32 = np.load(frames / "depth" / f"{i:05d}.npy")
        m = alpha > 0.5
        np.testing.assert_allclose(d32[m], depth[m], rtol=1e-5)
        d16 = cv2.imread(str(frames / "depth" / f"{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert d16.dtype == np.uint16
        assert np.abs(d16[m] * scale - depth[m]).max() <= scale
        assert (d16[alpha < 0.5] == 0).all()
        # The sphere (radius 1) seen from about 4.1 units: nearest surface about 3.1 units away.
        assert 2.9 < d32[m].min() < 3.3 and d32[m].max() < 4.2
        np.testing.assert_allclose(np.array(meta["frames"][i]["c2w"]),
                                   np.asarray(entries[i]["camera_to_world"]).reshape(4, 4) @ GL_CV_FLIP, atol=1e-9)
    print(f"MP4 (yuv420p) frames vs direct renders: RGB PSNR {min(scores):.1f}-{max(scores):.1f} dB, "
          f"luma PSNR {min(y_scores):.1f}-{max(y_scores):.1f} dB")
    # 4:2:0 chroma subsampling alone (even losslessly coded) costs the RGB PSNR of this tiny
    # 64x48 image of saturated quadrants about 30 dB; brightness is kept much better.
    assert min(y_scores) > 35.0, y_scores
    assert min(scores) > 26.0, scores


def test_orbit_and_size_options(run_dir, tmp_path, capsys):
    out = tmp_path / "orbit.mp4"
    assert cli(["render", str(run_dir), "--camera-path", "orbit", "--seconds", "1", "--fps", "4", "--width", "96",
                "--downscale", "2", "--background", "black", "--out", str(out)]) == 0
    video, fps = decode(out)
    # 96 wide at the training cameras' 4:3, halved; four frames a quarter turn apart.
    assert len(video) == 4 and video[0].shape == (36, 48, 3) and fps == pytest.approx(4.0)
    for f in video:
        assert (f.max(axis=2) > 60).mean() > 0.15  # the sphere is in view, on black
    # A quarter turn shows a different quadrant colour.
    assert np.abs(video[0].astype(int) - video[1].astype(int)).mean() > 10
    capsys.readouterr()
    # Odd sizes are rounded down to even ones (H.264 in yuv420p).
    out2 = tmp_path / "odd.mp4"
    assert cli(["render", str(run_dir), "--camera-path", "orbit", "--seconds", "0.5", "--fps", "2",
                "--width", "41", "--height", "31", "--out", str(out2)]) == 0
    assert decode(out2)[0][0].shape == (30, 40, 3)
    assert "rounded down to 40x30" in capsys.readouterr().err


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["missing", "malformed", "empty", "not-perspective", "no-splats", "bad-out",
                                  "bad-background"])
def test_bad_input_is_one_line_exit_2(case, run_dir, path_file, tmp_path, capsys):
    run, path, extra = str(run_dir), str(path_file), []
    if case == "missing":
        path = str(tmp_path / "nope.json")
    elif case == "malformed":
        path = str(_write(tmp_path / "bad.json", '{"camera_path": [ {"camera_to_world": [1, 2'))
    elif case == "empty":
        path = str(_write(tmp_path / "empty.json", json.dumps({"render_width": 64, "render_height": 48,
                                                                "camera_path": [], "fps": 24})))
    elif case == "not-perspective":
        d = json.loads(path_file.read_text())
        d["camera_type"] = "equirectangular"
        path = str(_write(tmp_path / "eq.json", json.dumps(d)))
    elif case == "no-splats":
        (tmp_path / "emptyrun").mkdir()
        run = str(tmp_path / "emptyrun")
    elif case == "bad-out":
        extra = ["--out", str(tmp_path / "video.gif")]
    elif case == "bad-background":
        extra = ["--background", "purple-ish"]
    out_dir = tmp_path / "o"
    args = ["render", run, "--camera-path", path] + (extra or ["--out", str(out_dir / "x.mp4")])
    assert cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("recon render: error: "), err
    word = {"missing": "nope.json", "malformed": "not valid JSON", "empty": "no frames",
            "not-perspective": "equirectangular", "no-splats": "no splats.ply", "bad-out": ".mp4",
            "bad-background": "purple-ish"}[case]
    assert word in err[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing half-written


def test_keyframes_only_path_is_interpolated(run_dir, path_file, tmp_path, capsys):
    d = json.loads(path_file.read_text())
    d["camera_path"] = []  # a path saved with keyframes only
    p = _write(tmp_path / "kf.json", json.dumps(d))
    out = tmp_path / "kf.mp4"
    assert cli(["render", str(run_dir), "--camera-path", str(p), "--out", str(out), "--pix-fmt", "yuv444p"]) == 0
    video, _ = decode(out)
    assert len(video) == 5 and video[0].shape == (H, W, 3)
    # Interpolated from the keyframes, the frames are those of the saved path; with full-resolution
    # colour the MP4 matches the direct render closely.
    entries = json.loads(path_file.read_text())["camera_path"]
    scores = []
    for i in (1, 3):
        rgb, _, _ = direct_render(run_dir, entries[i], W, H)
        scores.append(psnr(video[i], (rgb * 255 + 0.5).astype(np.uint8)))
    print(f"MP4 (yuv444p) frames vs direct renders: RGB PSNR {min(scores):.1f}-{max(scores):.1f} dB")
    assert min(scores) > 35.0, scores
