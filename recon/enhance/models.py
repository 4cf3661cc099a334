"""Model-backed plugins, from local files only (nothing is downloaded):

* ``sr:MODEL`` / ``restore:MODEL``: a spandrel-supported ``.pth`` / ``.safetensors`` / ``.ckpt``
  (ESRGAN, Real-ESRGAN Compact, SwinIR, HAT, DRUNet, DnCNN, NAFNet, SCUNet, ...; spandrel detects
  the architecture from the weights). An inpainting model (LaMa) is a generator and needs masks.
* ``sd-inpaint:FOLDER``: a diffusers inpainting pipeline saved with ``save_pretrained`` (a
  generator): masked regions are redrawn from ``prompt``.
* ``sd-edit:FOLDER``: a diffusers img2img or InstructPix2Pix pipeline (a generator): frames, or
  renders during training (dataset updates), redrawn from ``prompt`` / an instruction.

spandrel imports torchvision; :mod:`recon.enhance.torchvision_compat` makes an installed CUDA-only
torchvision import beside the CPU torch, and when torchvision is absent :func:`import_spandrel`
gives spandrel the three functions it takes from it for the duration of its import.
"""

from __future__ import annotations

import enum
import importlib
import sys
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np

from recon.errors import ReconError

MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")


def _standin_torchvision() -> dict[str, types.ModuleType]:
    """``torchvision``, ``torchvision.transforms`` and ``torchvision.transforms.functional`` with
    what spandrel imports from them (``InterpolationMode``, ``rotate``, ``normalize``), in torch."""
    import torch
    import torch.nn.functional as F

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    def rotate(img, angle, interpolation=InterpolationMode.NEAREST, expand=False, center=None, fill=None):
        """Rotate ``img [..., H, W]`` by ``angle`` degrees counter-clockwise about its centre (same size)."""
        if expand or center is not None:
            raise NotImplementedError("rotate: expand/center need torchvision")
        x = img if img.dim() == 4 else img.unsqueeze(0)
        a = torch.as_tensor(angle, dtype=x.dtype, device=x.device) * (torch.pi / 180.0)
        c, s = torch.cos(a), torch.sin(a)
        h, w = x.shape[-2:]
        # Output pixel (normalised coords) -> input coords: inverse rotation, aspect-corrected.
        theta = torch.stack([torch.stack([c, -s * h / w, torch.zeros_like(c)]),
                             torch.stack([s * w / h, c, torch.zeros_like(c)])]).unsqueeze(0).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        mode = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}[getattr(interpolation, "value", str(interpolation))]
        out = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
        if fill:
            ones = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="nearest", align_corners=False)
            out = out + (1 - ones) * torch.as_tensor(fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return out if img.dim() == 4 else out[0]

    def normalize(tensor, mean, std, inplace=False):
        m = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        s = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - m) / s

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    fn = types.ModuleType("torchvision.transforms.functional")
    fn.InterpolationMode, fn.rotate, fn.normalize = InterpolationMode, rotate, normalize
    tr.functional, tr.InterpolationMode = fn, InterpolationMode
    tv.transforms = tr
    return {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn}


def import_spandrel():
    """``import spandrel`` with torchvision present (its ops declared when they cannot load) or
    absent (a stand-in for the three functions spandrel uses, removed again after the import so
    nothing else mistakes it for torchvision)."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    from recon.enhance import torchvision_compat

    torchvision_compat.install()
    if importlib.util.find_spec("spandrel") is None:
        raise ReconError("spandrel is not installed: install recon's enhance extra "
                         '(pip install -e ".[enhance]" "torch==2.13.0", or `make install`)')
    if torchvision_compat._find("torchvision") is not None:
        return importlib.import_module("spandrel")
    stand = _standin_torchvision()
    added = [k for k in stand if k not in sys.modules]
    sys.modules.update({k: stand[k] for k in added})
    try:
        return importlib.import_module("spandrel")
    finally:
        for k in added:
            sys.modules.pop(k, None)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _check_model_file(arg: Optional[str], step: str) -> Path:
    if not arg:
        raise ReconError(f"{step}: needs a model file: {step}:PATH (a local .pth or .safetensors; nothing is downloaded)")
    p = Path(arg).expanduser()
    if not p.is_file():
        raise ReconError(f"{step}: model file {p} not found (pass a local .pth/.safetensors; nothing is downloaded)")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ReconError(f"{step}: {p} is not a model file (expected {', '.join(MODEL_SUFFIXES)})")
    return p


def _to_tensor(images: list[np.ndarray]):
    import torch

    return torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) for i in images])).permute(0, 3, 1, 2).contiguous()


class SpandrelModel:
    """A restoration / super-resolution model loaded by spandrel from a local .pth or .safetensors."""

    name = "sr"
    kind = "restore"
    version = "spandrel"
    needs_masks = False
    requires = "spandrel"

    def __init__(self, arg: Optional[str] = None, device: str = "auto") -> None:
        self.model_file = _check_model_file(arg, self.name)
        spandrel = import_spandrel()
        self.device = _device(device)
        try:
            desc = spandrel.ModelLoader(device=self.device).load_from_file(str(self.model_file))
        except Exception as e:  # unsupported architecture, truncated file, not a state dict
            raise ReconError(f"{self.name}: {self.model_file} is not a model spandrel can load "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if not hasattr(desc, "input_channels"):
            raise ReconError(f"{self.name}: {self.model_file} is not an image-to-image model")
        desc.eval()
        self.desc = desc
        self.architecture = desc.architecture.name
        self.purpose = str(desc.purpose)
        self.scale = int(desc.scale)
        if self.purpose == "Inpainting":
            self.kind, self.needs_masks = "generate", True
        self.version = f"spandrel {getattr(spandrel, '__version__', '?')}"

    def parameters(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "purpose": self.purpose, "scale": self.scale,
                "device": self.device}

    def _run(self, x, m=None):
        import torch

        with torch.inference_mode():
            return self.desc(x, m) if m is not None else self.desc(x)

    def process(self, images: list[np.ndarray], masks: Optional[list[np.ndarray]] = None) -> list[np.ndarray]:
        import torch

        out = []
        cin, cout = int(self.desc.input_channels), int(self.desc.output_channels)
        for i, im in enumerate(images):
            x = _to_tensor([im]).to(self.device)
            m = None
            if self.needs_masks:
                if masks is None:
                    raise ReconError(f"{self.name}: {self.architecture} is an inpainting model: pass --enhance-masks DIR")
                m = torch.from_numpy(np.asarray(masks[i], dtype=np.float32))[None, None].to(self.device)
            if cin == 1 and cout == 1:  # grayscale model: each channel on its own
                y = torch.cat([self._run(x[:, c : c + 1], m) for c in range(3)], 1)
            elif cin == 3:
                y = self._run(x, m)
                if y.shape[1] == 1:
                    y = y.expand(-1, 3, -1, -1)
            else:
                raise ReconError(f"{self.name}: {self.model_file} takes {cin} input channels; only 1 or 3 are supported")
            out.append(y[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy())
        return out


class RestoreModel(SpandrelModel):
    """A restoration model (denoise, deblur, JPEG artefacts) loaded by spandrel (same loader as sr)."""

    name = "restore"


def _pipeline_folder(name: str, arg: Optional[str]) -> Path:
    """The local diffusers pipeline folder a generator was given (``name:FOLDER``), checked."""
    if not arg:
        raise ReconError(f"{name}: needs a pipeline folder: {name}:FOLDER (saved with save_pretrained; nothing is downloaded)")
    p = Path(arg).expanduser()
    if not (p / "model_index.json").is_file():
        raise ReconError(f"{name}: {p} is not a diffusers pipeline folder (no model_index.json); "
                         "pass a local folder saved with save_pretrained")
    return p


class DiffusersInpaint:
    """Inpainting with a diffusers pipeline from a local folder (save_pretrained layout): a generator."""

    name = "sd-inpaint"
    kind = "generate"
    version = "diffusers"
    needs_masks = True
    requires = "diffusers"

    def __init__(self, arg: Optional[str] = None, prompt: str = "", negative: str = "", steps: str = "20",
                 guidance: str = "7.5", strength: str = "1.0", seed: str = "0", device: str = "auto",
                 dilate: str = "2") -> None:
        self.model_file = p = _pipeline_folder("sd-inpaint", arg)
        try:
            self.steps, self.seed, self.dilate = int(steps), int(seed), int(dilate)
            self.guidance, self.strength = float(guidance), float(strength)
        except ValueError:
            raise ReconError("sd-inpaint: steps, seed and dilate must be integers, guidance and strength numbers") from None
        if self.steps < 1 or not 0.0 < self.strength <= 1.0:
            raise ReconError("sd-inpaint: steps must be >= 1 and strength in (0, 1]")
        self.prompt, self.negative = prompt, negative
        self.device = _device(device)
        from recon.enhance import torchvision_compat

        torchvision_compat.install()
        if importlib.util.find_spec("diffusers") is None:
            raise ReconError('diffusers is not installed: install recon\'s enhance extra (pip install -e ".[enhance]" "torch==2.13.0")')
        import diffusers

        try:
            self.pipe = diffusers.AutoPipelineForInpainting.from_pretrained(str(p), local_files_only=True).to(self.device)
        except Exception as e:
            raise ReconError(f"sd-inpaint: cannot load the pipeline in {p} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        self.pipe.set_progress_bar_config(disable=True)
        self.version = f"diffusers {diffusers.__version__} ({type(self.pipe).__name__})"

    def parameters(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "negative": self.negative, "steps": self.steps, "guidance": self.guidance,
                "strength": self.strength, "seed": self.seed, "dilate": self.dilate, "device": self.device}

    def process(self, images: list[np.ndarray], masks: Optional[list[np.ndarray]] = None) -> list[np.ndarray]:
        import cv2
        import torch

        if masks is None:
            raise ReconError("sd-inpaint: needs masks (pass --enhance-masks DIR)")
        out = []
        for i, im in enumerate(images):
            im = np.asarray(im, dtype=np.float32)
            m = np.asarray(masks[i], dtype=np.uint8)
            if not m.any():
                out.append(im)
                continue
            if self.dilate:
                m = cv2.dilate(m, np.ones((2 * self.dilate + 1,) * 2, np.uint8))
            h, w = im.shape[:2]
            # The UNet works at multiples of 8 latent pixels (64 px): pad by reflection, crop after.
            H, W = -(-h // 64) * 64, -(-w // 64) * 64
            x = np.pad(im, ((0, H - h), (0, W - w), (0, 0)), mode="reflect") if (H, W) != (h, w) else im
            mm = np.pad(m, ((0, H - h), (0, W - w))) if (H, W) != (h, w) else m
            gen = torch.Generator(device="cpu").manual_seed(self.seed + i)
            with torch.inference_mode():
                res = self.pipe(prompt=self.prompt, negative_prompt=self.negative or None,
                                image=torch.from_numpy(x).permute(2, 0, 1)[None], mask_image=torch.from_numpy(mm.astype(np.float32))[None, None],
                                height=H, width=W, num_inference_steps=self.steps, guidance_scale=self.guidance,
                                strength=self.strength, generator=gen, output_type="np")
            y = np.asarray(res.images[0], dtype=np.float32)[:h, :w]
            keep = m[..., None].astype(np.float32)  # outside the (dilated) mask the original stays
            out.append(np.clip(y * keep + im * (1 - keep), 0, 1).astype(np.float32))
        return out


class DiffusersEdit:
    """Image-to-image edits with a local diffusers img2img or InstructPix2Pix pipeline: a generator.

    The folder is a ``save_pretrained`` layout. ``StableDiffusionImg2ImgPipeline`` (or a text-to-image Stable Diffusion folder, run as
    img2img) redraws the image from ``prompt`` at ``strength``; ``StableDiffusionInstructPix2PixPipeline``
    follows an instruction (``prompt``, e.g. "make it autumn").

    As a dataset edit (``recon train --edit sd-edit:FOLDER:prompt=...``) each render is noised to
    ``strength`` and denoised again: an img2img pipeline from the render alone; an InstructPix2Pix
    pipeline conditioned on the original frame and the instruction (Instruct-NeRF2NeRF's update)."""

    name = "sd-edit"
    kind = "generate"
    version = "diffusers"
    needs_masks = False
    requires = "diffusers"
    PIX2PIX = "StableDiffusionInstructPix2PixPipeline"

    def __init__(self, arg: Optional[str] = None, prompt: str = "", negative: str = "", steps: str = "20",
                 guidance: str = "7.5", image_guidance: str = "1.5", strength: str = "0.6", seed: str = "0",
                 device: str = "auto") -> None:
        self.model_file = p = _pipeline_folder("sd-edit", arg)
        try:
            self.steps, self.seed = int(steps), int(seed)
            self.guidance, self.image_guidance, self.strength = float(guidance), float(image_guidance), float(strength)
        except ValueError:
            raise ReconError("sd-edit: steps and seed must be integers, guidance, image_guidance and strength numbers") from None
        if self.steps < 1 or not 0.0 < self.strength <= 1.0 or self.guidance < 0 or self.image_guidance < 0:
            raise ReconError("sd-edit: steps must be >= 1, strength in (0, 1], guidance and image_guidance >= 0")
        self.prompt, self.negative = prompt, negative
        self.device = _device(device)
        import json

        from recon.enhance import torchvision_compat

        torchvision_compat.install()
        if importlib.util.find_spec("diffusers") is None:
            raise ReconError('diffusers is not installed: install recon\'s enhance extra (pip install -e ".[enhance]" "torch==2.13.0")')
        import diffusers

        try:
            cls_name = json.loads((p / "model_index.json").read_text()).get("_class_name", "")
        except (OSError, ValueError) as e:
            raise ReconError(f"sd-edit: cannot read {p / 'model_index.json'} ({e})") from None
        try:
            if cls_name == self.PIX2PIX:
                pipe = diffusers.StableDiffusionInstructPix2PixPipeline.from_pretrained(str(p), local_files_only=True)
            else:
                pipe = diffusers.AutoPipelineForImage2Image.from_pretrained(str(p), local_files_only=True)
        except Exception as e:
            raise ReconError(f"sd-edit: cannot load the pipeline in {p} as image-to-image ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
        self.pipe = pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.pix2pix = type(self.pipe).__name__ == self.PIX2PIX
        self.version = f"diffusers {diffusers.__version__} ({type(self.pipe).__name__})"

    def parameters(self) -> dict[str, Any]:
        p = {"prompt": self.prompt, "negative": self.negative, "steps": self.steps, "guidance": self.guidance,
             "strength": self.strength, "seed": self.seed, "device": self.device}
        if self.pix2pix:
            p["image_guidance"] = self.image_guidance
        return p

    @staticmethod
    def _pad(im: np.ndarray) -> np.ndarray:
        """Reflect-pad to multiples of 64 px (8 latent pixels, what the UNet's levels need)."""
        h, w = im.shape[:2]
        H, W = -(-h // 64) * 64, -(-w // 64) * 64
        return np.pad(im, ((0, H - h), (0, W - w), (0, 0)), mode="reflect") if (H, W) != (h, w) else im

    def _tensor(self, im: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(self._pad(np.asarray(im, np.float32)))).permute(2, 0, 1)[None].to(self.device)

    def _img2img(self, im: np.ndarray, i: int) -> np.ndarray:
        import torch

        h, w = im.shape[:2]
        x = self._tensor(im)
        gen = torch.Generator(device="cpu").manual_seed(self.seed + i)
        with torch.inference_mode():
            if self.pix2pix:
                res = self.pipe(prompt=self.prompt, negative_prompt=self.negative or None, image=x,
                                num_inference_steps=self.steps, guidance_scale=self.guidance,
                                image_guidance_scale=self.image_guidance, generator=gen, output_type="np")
            else:
                res = self.pipe(prompt=self.prompt, negative_prompt=self.negative or None, image=x,
                                num_inference_steps=self.steps, guidance_scale=self.guidance, strength=self.strength,
                                generator=gen, output_type="np")
        return np.clip(np.asarray(res.images[0], np.float32)[:h, :w], 0, 1)

    def process(self, images: list[np.ndarray], masks: Optional[list[np.ndarray]] = None) -> list[np.ndarray]:
        """Each frame edited (img2img at ``strength``, or the instruction); with masks, only inside them."""
        out = []
        for i, im in enumerate(images):
            im = np.asarray(im, np.float32)
            y = self._img2img(im, i)
            if masks is not None:
                y = np.where(np.asarray(masks[i], bool)[..., None], y, im)
            out.append(y.astype(np.float32))
        return out

    def _embed(self, text: str):
        tok = self.pipe.tokenizer
        ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
        return self.pipe.text_encoder(ids.to(self.device))[0]

    def _in2n(self, render: np.ndarray, original: np.ndarray, i: int) -> np.ndarray:
        """Instruct-NeRF2NeRF's update: the render's latent noised to ``strength``, denoised by the
        InstructPix2Pix UNet conditioned on the original frame's latent and the instruction."""
        import torch

        pipe, h, w = self.pipe, render.shape[0], render.shape[1]
        sf = pipe.vae.config.scaling_factor
        gen = torch.Generator(device="cpu").manual_seed(self.seed + i)
        with torch.inference_mode():
            z_render = pipe.vae.encode(self._tensor(render) * 2 - 1).latent_dist.mode() * sf
            z_image = pipe.vae.encode(self._tensor(original) * 2 - 1).latent_dist.mode()
            text = torch.cat([self._embed(self.prompt), self._embed(self.negative), self._embed(self.negative)])
            cond = torch.cat([z_image, z_image, torch.zeros_like(z_image)])
            sched = pipe.scheduler
            sched.set_timesteps(self.steps, device=self.device)
            start = min(max(int(round(self.steps * (1.0 - self.strength))), 0), self.steps - 1)
            ts = sched.timesteps[start:]
            noise = torch.randn(z_render.shape, generator=gen).to(self.device, z_render.dtype)
            lat = sched.add_noise(z_render, noise, ts[:1])
            for t in ts:
                x = torch.cat([sched.scale_model_input(torch.cat([lat] * 3), t), cond], 1)
                e_text, e_image, e_none = pipe.unet(x, t, encoder_hidden_states=text).sample.chunk(3)
                eps = e_none + self.guidance * (e_text - e_image) + self.image_guidance * (e_image - e_none)
                lat = sched.step(eps, t, lat).prev_sample
            y = pipe.vae.decode(lat / sf).sample
        return np.clip((y[0].permute(1, 2, 0).float().cpu().numpy() + 1) / 2, 0, 1)[:h, :w].astype(np.float32)

    def edit(self, renders: list[np.ndarray], originals: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
        """Dataset-update targets from the renders (and, for InstructPix2Pix, the original frames).
        ``seed`` is added to the plugin's seed, so each round draws new noise."""
        out = []
        for i, (r, o) in enumerate(zip(renders, originals)):
            r, o = np.asarray(r, np.float32), np.asarray(o, np.float32)
            out.append(self._in2n(r, o, seed + i) if self.pix2pix else self._img2img(r, seed + i))
        return out


MODEL_PLUGINS = {c.name: c for c in (SpandrelModel, RestoreModel, DiffusersInpaint, DiffusersEdit)}
