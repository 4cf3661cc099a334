"""`recon render --post`: rendered frames and videos go through the same plugins as input frames."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from recon.cli import run
from recon.testing.runs import make_run


def test_render_post_super_resolves_frames_and_video(tmp_path, capsys):
    from recon.enhance.models import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    m = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save(m.state_dict(), tmp_path / "sr.pth")
    rdir = make_run(tmp_path / "run", n=1500)
    base = ["render", str(rdir), "--seconds", "0.2", "--fps", "10", "--width", "64", "--height", "48"]
    assert run(base + ["--out", str(tmp_path / "plain.mp4"), "--frames", str(tmp_path / "plain")]) == 0
    assert run(base + ["--out", str(tmp_path / "sr.mp4"), "--frames", str(tmp_path / "sr"), "--post", f"sr:{tmp_path / 'sr.pth'}"]) == 0
    meta = json.loads((tmp_path / "sr" / "frames.json").read_text())
    assert meta["post"][0]["parameters"]["architecture"] == "RealESRGAN Compact" and len(meta["frames"]) == 2
    for i in range(2):
        plain = np.asarray(Image.open(tmp_path / "plain" / "rgb" / f"{i:05d}.png"), np.float32) / 255
        sr = np.asarray(Image.open(tmp_path / "sr" / "rgb" / f"{i:05d}.png"), np.float32) / 255
        with torch.no_grad():
            ref = m(torch.from_numpy(plain).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        assert sr.shape == (96, 128, 3) and np.abs(sr - ref).max() <= 1.01 / 255
    import av

    with av.open(str(tmp_path / "sr.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (128, 96)
    # Generators need masks, which rendered frames do not have: refused, one line, nothing written.
    capsys.readouterr()
    assert run(base + ["--out", str(tmp_path / "g.mp4"), "--post", "inpaint"]) == 2
    assert "rendered frames have no masks" in capsys.readouterr().err and not (tmp_path / "g.mp4").exists()
