"""Dataset edits during training (Instruct-NeRF2NeRF style, ``recon train --edit``) and the trainer's
handle under them (``trainer.handle``: render a training view, replace its target):

* the loop works: splats trained with ``--edit recolor:hue=120`` (renders blended towards the
  recoloured frames, two views every 10 steps) render held-out views close to the recoloured ground
  truth, while a run without edits stays with the original colours; the scene's files are unchanged;
* with a callback that never replaces a target the run is bit-identical to one without, and a run
  with edits resumes exactly (the replaced targets are in the checkpoint);
* the handle is method-agnostic: a NeRF's ray pool follows a replaced target;
* a tiny random diffusers img2img pipeline (built from configs, saved, loaded by the real loading
  code, no network) runs inside the loop from ``recon train``, and an InstructPix2Pix one through
  Instruct-NeRF2NeRF's update; provenance reaches run.json, PLY comments, glTF and USD;
* ``--restoration-only`` and a scene's restoration_only setting refuse ``--edit``; bad plugins and
  folders are one line and exit 2.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scenes
from recon.cli import run
from recon.enhance.builtins import Recolor
from recon.enhance.dataset_update import DatasetUpdate, load_edit
from recon.methods.splat import SplatConfig
from recon.scene.readers import load_scene
from recon.train.config import TrainConfig
from recon.train.trainer import Trainer

QUIET = lambda s: None  # noqa: E731
VIEWS, RES = 16, 48


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return Path(scenes.synth("turntable", tmp_path_factory.mktemp("edit") / "tt", views=VIEWS, res=RES))


def _cfg(steps: int, **kw) -> TrainConfig:
    sp = SplatConfig(sh_degree=0, init_num_points=3000, refine_start=60, refine_every=40, reset_every=10_000,
                     refine_stop_fraction=0.7, max_gaussians=12_000)
    # The edit recolours whole images, backdrop included: train them as they are (no backdrop key; the
    # turntable declares its white backdrop, which --background-key auto would key to alpha).
    kw.setdefault("background_key", "none")
    return TrainConfig(steps=steps, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9, threads=1, model=sp, **kw)


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _held_out(tr: Trainer, sc):
    bg = torch.tensor(sc.background if sc.background is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
    ren = tr.method.renderer()
    out = []
    for i in sc.indices("test"):
        cam = sc.camera(i)
        out.append((ren.render(cam, background=bg).rgb.clamp(0, 1).numpy(), sc.image(i)))
    return out


def _psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


EDIT = "recolor:hue=120:tint=ffa040"


def test_recolor_plugin():
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 0.8
    g = Recolor(None, hue="120").process([red])[0][0, 0]
    assert g[1] > 0.5 and g[0] < 0.05 and g[2] < 0.05  # red turns green, as in HSV
    white = np.ones((1, 1, 3), np.float32)
    assert np.allclose(Recolor(None, tint="ff8000").recolor(white), [[[1.0, 128 / 255, 0.0]]])
    half = Recolor(None, tint="000000", strength="0.25").edit([white], [white])[0]
    assert np.allclose(half, 0.75)  # (1 - strength) render + strength recolor(original)


def test_recolour_edit_moves_the_model_towards_the_edit(scene_dir):
    before = _hashes(scene_dir)
    sc = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    steps = 300
    plain = Trainer(_cfg(steps), sc, scene_dir.parent / "plain", log=QUIET)
    plain.train()
    cfg = _cfg(steps, edit=EDIT, edit_every=10, edit_views=2)
    upd = DatasetUpdate(load_edit(cfg.edit), cfg.edit_every, cfg.edit_start, cfg.edit_views)
    edited = Trainer(cfg, sc, scene_dir.parent / "edited", callbacks=[upd], log=QUIET)
    edited.train()
    rec = load_edit(EDIT).plugin
    rows = []
    for (ra, gt), (rb, _) in zip(_held_out(plain, sc), _held_out(edited, sc)):
        target = rec.recolor(gt)
        d = (target - gt).mean((0, 1))  # how the edit moves the view's mean colour

        def moved(r):  # the fraction of that move a render makes
            return float(((r - gt).mean((0, 1)) @ d) / (d @ d))

        rows.append((_psnr(ra, target), _psnr(rb, target), _psnr(ra, gt), _psnr(rb, gt), moved(ra), moved(rb),
                     float(np.linalg.norm(d))))
    pa_t, pb_t, pa_o, pb_o, fa, fb, dn = np.mean(rows, 0)
    n_upd = len({s for s, _ in edited.handle.history})
    print(f"held-out PSNR vs the edited ground truth: {pa_t:.2f} dB without edits, {pb_t:.2f} dB with --edit {EDIT} "
          f"({n_upd} updates, {len(edited.handle.history)} replacements); vs the original ground truth {pa_o:.2f} / "
          f"{pb_o:.2f} dB; mean colour moved {fa:.0%} / {fb:.0%} of the way to the edit's (a move of {dn:.3f})")
    assert len(edited.handle.history) == 2 * (steps // 10 - 1) and not plain.handle.history
    assert {k for _, k in edited.handle.history} == set(range(len(edited.views)))
    # Measured (48 px, 300 steps, 1 thread): vs the edited ground truth 7.53 dB without edits, 13.33 dB
    # with them; vs the original 18.70 / 7.22 dB; mean colour moved 3 % / 84 % of the way to the edit's.
    assert pb_t > pa_t + 3.0 and pa_o > pb_o + 3.0
    assert fb > 0.7 and abs(fa) < 0.2
    # The targets were replaced in memory; the scene's files are untouched, and its originals intact.
    assert _hashes(scene_dir) == before
    k = edited.handle.history[-1][1]
    assert np.array_equal(edited.handle.original(k).image.numpy(), sc.image(sc.indices("train")[k]))
    assert not np.allclose(edited.handle.target(k).image.numpy(), edited.handle.original(k).image.numpy(), atol=0.05)


class _Never:
    """A dataset update scheduled after training ends: it must change nothing."""

    def __init__(self, inner):
        self.inner = inner

    def on_start(self, trainer):
        pass

    def on_step(self, trainer, step, stats):
        # Render through the handle every step (read only): still bit-identical.
        if step % 20 == 0:
            trainer.handle.render(0)

    def on_end(self, trainer, metrics):
        pass


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


def test_default_bit_identical_and_resume_exact_with_edits(scene_dir, tmp_path):
    sc = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    steps = 80
    a = Trainer(_cfg(steps), sc, tmp_path / "a", log=QUIET)
    a.train()
    b = Trainer(_cfg(steps), sc, tmp_path / "b", callbacks=[_Never(None)], log=QUIET)
    b.train()
    for k in a.method.params:
        assert torch.equal(a.method.params[k], b.method.params[k]), k
    assert "targets" not in torch.load(a.latest_checkpoint(), weights_only=False)

    # With edits: stop at 45, resume, and match the uninterrupted run (targets come from the checkpoint).
    cfg = _cfg(steps, edit="recolor:hue=90:strength=0.5", edit_every=10, edit_views=3)

    def upd():
        return DatasetUpdate(load_edit(cfg.edit), cfg.edit_every, cfg.edit_start, cfg.edit_views)

    full = Trainer(cfg, sc, tmp_path / "full", callbacks=[upd()], log=QUIET)
    full.train()
    cut = Trainer(cfg, sc, tmp_path / "cut", callbacks=[upd(), _StopAt(45)], log=QUIET)
    assert cut.train().interrupted
    res = Trainer(cfg, sc, tmp_path / "cut", callbacks=[upd()], log=QUIET)
    res.load_checkpoint(res.latest_checkpoint())
    assert res.handle.history == cut.handle.history and sorted(res.views.replaced) == sorted(cut.views.replaced)
    res.train()
    assert res.handle.history == full.handle.history
    for k in full.method.params:
        pf, pr = full.method.params[k].detach(), res.method.params[k].detach()
        assert pf.shape == pr.shape and torch.allclose(pf, pr, atol=1e-5, rtol=1e-5), k
    # The edits changed the model (else the comparison above proves nothing about them).
    assert not torch.allclose(full.method.params["sh0"], a.method.params["sh0"], atol=1e-3)


def test_handle_replaces_nerf_ray_targets(scene_dir, tmp_path):
    from recon.methods.nerf import NerfConfig

    sc = load_scene(scene_dir, background=(1.0, 1.0, 1.0))
    m = NerfConfig(sh_degree=0, res_init=24, res_final=32, upsample_at=(0.5,), rays_per_batch=512)
    tr = Trainer(TrainConfig(method="nerf", steps=4, downscale=1.0, checkpoint_every=0, log_every_seconds=1e9,
                             threads=1, model=m), sc, tmp_path / "nerf", log=QUIET)
    tr.train()
    k = 3
    r = tr.handle.render(k)
    assert r.rgb.shape == (RES, RES, 3) and r.alpha.shape == (RES, RES, 1)
    before = tr.method.sampler.rgb.clone()
    new = torch.rand(RES, RES, 3, generator=torch.Generator().manual_seed(1))
    tr.handle.replace_target(k, new)
    pool = tr.method.sampler
    mine = pool.vid == k
    # The view's rays now carry the new target (kept at 8 bits, as frames are).
    assert torch.equal(pool.rgb[mine], torch.round(new * 255).reshape(-1, 3) / 255)
    assert torch.equal(pool.rgb[~mine], before[~mine])  # the other views' rays are untouched
    assert tr.handle.history == [(4, k)]
    with pytest.raises(Exception, match="needs an image of 48x48x3"):
        tr.handle.replace_target(k, torch.zeros(10, 10, 3))


@pytest.fixture(scope="module")
def sd_dirs(tmp_path_factory):
    """Tiny random Stable Diffusion img2img and InstructPix2Pix pipelines, saved with save_pretrained."""
    import recon  # noqa: F401  (the torchvision guard, before diffusers imports it)

    diffusers = pytest.importorskip("diffusers")
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("sd-edit")
    tok_dir = folder / "_tok"
    tok_dir.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    out = {}
    for name, cls, cin in (("img2img", diffusers.StableDiffusionImg2ImgPipeline, 4),
                           ("pix2pix", diffusers.StableDiffusionInstructPix2PixPipeline, 8)):
        torch.manual_seed(0)
        tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=16)
        unet = diffusers.UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=cin, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
        vae = diffusers.AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                                      down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                      norm_num_groups=8)
        text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16,
                                            intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                                            vocab_size=len(vocab), max_position_embeddings=16))
        pipe = cls(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=diffusers.DDIMScheduler(),
                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(str(folder / name))
        out[name] = folder / name
    return out


def test_diffusers_img2img_in_the_loop_and_provenance(scene_dir, sd_dirs, tmp_path, capsys):
    before = _hashes(scene_dir)
    runp, exp = tmp_path / "run", tmp_path / "exp"
    spec = f"sd-edit:{sd_dirs['img2img']}:prompt=autumn:steps=2:strength=0.5:device=cpu"
    assert run(["train", str(scene_dir), "--out", str(runp), "--steps", "30", "--sh-degree", "0", "--init-num-points",
                "1500", "--checkpoint-every", "0", "--log-every-seconds", "1e9", "--threads", "1",
                "--edit", spec, "--edit-every", "10", "--edit-views", "2"]) == 0
    assert "dataset edits: 4 replacements of 4/14 training views at steps 10, 20, 2 view(s) each" in capsys.readouterr().out
    assert _hashes(scene_dir) == before
    man = json.loads((runp / "run.json").read_text())
    assert man["config"]["edit"] == spec
    ups = man["dataset_edits"]["updates"]
    assert [u["step"] for u in ups] == [10, 20] and all(len(u["views"]) == 2 for u in ups)
    assert man["dataset_edits"]["plugin"]["model"]["sha256"]

    assert run(["export", str(runp), "--format", "ply,splat-glb,splat-usd", "--out", str(exp)]) == 0
    from plyfile import PlyData
    from pxr import Usd

    def check(d: dict) -> None:
        assert d["frames"] == "generative"
        assert d["enhance_dataset_edit"].startswith("sd-edit diffusers ") and "StableDiffusionImg2ImgPipeline" in d["enhance_dataset_edit"]
        assert "prompt=autumn" in d["enhance_dataset_edit"] and "strength=0.5" in d["enhance_dataset_edit"]
        assert "model sha256:" + man["dataset_edits"]["plugin"]["model"]["sha256"] in d["enhance_dataset_edit"]
        assert d["enhance_dataset_edit_schedule"] == "every 10 steps from step 0, 2 view(s) at a time"
        assert d["enhance_dataset_edit_replaced"] == "4 replacements of 4/14 training views at steps 10, 20, 2 view(s) each"

    check(man["provenance"])
    ply = next(exp.glob("*.ply"))
    check(dict(c[len("recon "):].split(": ", 1) for c in PlyData.read(str(ply)).comments if c.startswith("recon ")))
    glb = next(exp.glob("*.glb")).read_bytes()
    n = int.from_bytes(glb[12:16], "little")
    check(json.loads(glb[20 : 20 + n])["asset"]["extras"]["recon"])
    usd = next(p for p in exp.iterdir() if p.suffix in (".usd", ".usda", ".usdc"))
    stage = Usd.Stage.Open(str(usd))
    check(dict(stage.GetRootLayer().customLayerData["recon"]))


def test_instruct_pix2pix_update(sd_dirs):
    """InstructPix2Pix as Instruct-NeRF2NeRF uses it: the render's latent noised to ``strength`` and
    denoised, conditioned on the original frame and the instruction; deterministic per seed."""
    from recon.enhance.models import DiffusersEdit

    pl = DiffusersEdit(str(sd_dirs["pix2pix"]), prompt="make it red", steps="4", strength="0.5", device="cpu")
    assert pl.pix2pix and pl.parameters()["image_guidance"] == 1.5
    rng = np.random.default_rng(0)
    render, orig = rng.random((40, 56, 3)).astype(np.float32), rng.random((40, 56, 3)).astype(np.float32)
    y = pl.edit([render], [orig], seed=3)[0]
    assert y.shape == render.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() <= 1
    assert np.array_equal(pl.edit([render], [orig], seed=3)[0], y)  # deterministic
    assert not np.array_equal(pl.edit([render], [orig], seed=4)[0], y)  # each round draws new noise
    # The original frame conditions the result (a different original, a different edit).
    assert np.abs(pl.edit([render], [1 - orig], seed=3)[0] - y).mean() > 1e-3
    # The img2img pipeline folder loads as img2img (no image guidance); on frames (recon process
    # --enhance) it redraws the masked region only.
    i2i = DiffusersEdit(str(sd_dirs["img2img"]), steps="2", strength="0.5", device="cpu")
    assert not i2i.pix2pix and "image_guidance" not in i2i.parameters()
    mask = np.zeros((40, 56), bool)
    mask[10:30, 20:40] = True
    z = i2i.process([orig], [mask])[0]
    assert np.array_equal(z[~mask], orig[~mask]) and np.abs(z[mask] - orig[mask]).mean() > 0.02


def test_refusals_are_one_line_exit_2(scene_dir, tmp_path, capsys):
    base = ["train", str(scene_dir), "--steps", "5", "--threads", "1"]

    def refused(extra: list[str], text: str, scene: Path = scene_dir) -> None:
        out = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        argv = ["train", str(scene)] + base[2:] + ["--out", str(out)] + extra
        assert run(argv) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and text in err and "Traceback" not in err, err
        assert not out.exists()  # refused before a run folder exists

    refused(["--edit", "recolor:hue=90", "--restoration-only"], "refused by --restoration-only")
    refused(["--edit", "nosuch"], "unknown enhancement plugin 'nosuch'")
    refused(["--edit", f"sd-edit:{tmp_path / 'missing'}"], "is not a diffusers pipeline folder")
    refused(["--edit", "sd-edit"], "needs a pipeline folder")
    refused(["--edit", "inpaint"], "needs masks")
    refused(["--edit", "recolor,denoise"], "give one plugin")
    refused(["--edit", "recolor:strength=2"], "strength=2")
    refused(["--edit", "recolor", "--edit-every", "0"], "--edit-every 0")
    # The scene's own setting refuses it as well.
    import shutil

    guarded = tmp_path / "guarded"
    shutil.copytree(scene_dir, guarded)
    (guarded / "recon.json").write_text(json.dumps({"restoration_only": True}))
    refused(["--edit", "recolor:hue=90"], "restoration_only: true", scene=guarded)
