"""diffusers inpainting from local weights as a generator: a tiny random Stable Diffusion inpainting
pipeline built from configs and saved (no download) runs through recon's plugin, matches the
pipeline called directly inside the mask, leaves every pixel outside the (dilated) mask untouched,
and is refused by --restoration-only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import recon  # noqa: F401  (the torchvision guard, before diffusers imports it)
from recon.enhance.models import DiffusersInpaint
from recon.errors import ReconError


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("sd-inpaint")
    tok_dir = folder / "_tok"
    tok_dir.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=9, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    vae = diffusers.AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                  norm_num_groups=8)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32,
                                        num_attention_heads=2, num_hidden_layers=1, vocab_size=len(vocab), max_position_embeddings=16))
    pipe = diffusers.StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=diffusers.DDIMScheduler(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    out = folder / "pipe"
    pipe.save_pretrained(str(out))
    return out


def test_tiny_inpainting_pipeline_as_a_generator(pipe_dir):
    rng = np.random.default_rng(0)
    im = rng.random((64, 64, 3)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 24:44] = True
    pl = DiffusersInpaint(str(pipe_dir), prompt="a wall", steps="2", dilate="0", device="cpu")
    assert pl.kind == "generate" and pl.needs_masks and pl.parameters()["steps"] == 2
    out = pl.process([im], [mask])[0]
    assert out.shape == im.shape
    assert np.array_equal(out[~mask], im[~mask])  # outside the mask: the original, bit for bit
    assert np.abs(out[mask] - im[mask]).mean() > 0.05  # inside: redrawn
    # Parity with the pipeline itself (same seed, same inputs) inside the mask.
    with torch.inference_mode():
        ref = pl.pipe(prompt="a wall", image=torch.from_numpy(im).permute(2, 0, 1)[None],
                      mask_image=torch.from_numpy(mask.astype(np.float32))[None, None], height=64, width=64,
                      num_inference_steps=2, guidance_scale=7.5, strength=1.0,
                      generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert np.abs(out[mask] - ref[mask]).max() < 1e-5
    # Deterministic, and a frame without a masked pixel is returned as is.
    assert np.array_equal(pl.process([im], [mask])[0], out)
    assert np.array_equal(pl.process([im], [np.zeros_like(mask)])[0], im)
    with pytest.raises(ReconError, match="not a diffusers pipeline folder"):
        DiffusersInpaint(str(pipe_dir.parent))
    from recon.enhance.registry import load_steps

    with pytest.raises(ReconError, match="refused by --restoration-only"):
        load_steps(f"sd-inpaint:{pipe_dir}", restoration_only=True)
