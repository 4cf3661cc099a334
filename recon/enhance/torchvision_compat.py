"""Make an installed torchvision importable when its compiled operators cannot load.

The torchvision wheel that pip resolves beside the CPU build of torch can be a CUDA build: its
``_C`` extension links CUDA libraries that the CPU torch does not ship, so it fails to load, and
``import torchvision`` then dies in ``torchvision/_meta_registrations.py`` ("operator
torchvision::nms does not exist"). transformers and diffusers import torchvision whenever it is
installed, so that one broken wheel breaks them too; spandrel imports it unconditionally.

The fix: before torchvision is imported, try to load its ``_C``; when that fails, declare the
schemas of the operators it would have defined, so torchvision's Python modules register their
fake kernels and autograd formulas against them and the import succeeds. Only the detection ops
(nms, roi_align, deform_conv2d, ...) stay unavailable: calling one raises torch's "no kernel"
error. Everything recon uses (transforms, spandrel's architectures, transformers' and diffusers'
models) is pure torch.

:func:`install` puts a finder in front of ``sys.meta_path`` that does this the first time
``torchvision`` is imported; :mod:`recon` calls it at import, which costs nothing (torch is not
imported until torchvision is). With torchvision absent, nothing happens.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

# Schemas of torchvision's C++ operators (torchvision/csrc/ops/*.cpp, TORCH_LIBRARY_FRAGMENT).
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "_cuda_version() -> int",
)

_state: dict = {"checked": False, "declared": False, "library": None}


def _find(name: str):
    """``importlib.util.find_spec`` that treats a finder refusing the name as "absent"."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def torchvision_status() -> str:
    """"absent", "native" (its compiled ops loaded), "declared" (schemas declared by recon) or
    "not imported yet"."""
    if _find("torchvision") is None:
        return "absent"
    if not _state["checked"]:
        return "not imported yet"
    return "declared" if _state["declared"] else "native"


def declare_torchvision_ops() -> bool:
    """Load torchvision's ``_C`` or, when it cannot load beside this torch, declare its operator
    schemas. Returns True when the schemas were declared. Safe to call more than once."""
    if _state["checked"]:
        return bool(_state["declared"])
    _state["checked"] = True
    spec = _find("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    import torch

    try:
        torch.ops.torchvision.nms.default  # already defined (a working torchvision was loaded)
        return False
    except (AttributeError, RuntimeError):
        pass
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("_C*.so")) + sorted(Path(folder).glob("_C*.pyd")):
            try:
                torch.ops.load_library(str(lib))
                return False  # a torchvision built for this torch
            except (OSError, RuntimeError):
                pass
    library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 (kept alive below)
    for schema in SCHEMAS:
        library.define(schema)
    _state["library"] = library  # a Library deregisters its definitions when collected
    _state["declared"] = True
    return True


class _Finder(importlib.abc.MetaPathFinder):
    """Runs :func:`declare_torchvision_ops` just before the first ``import torchvision``."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname == "torchvision" and not _state["checked"]:
            try:
                declare_torchvision_ops()
            except Exception:  # never make an import fail that would have worked
                _state["checked"] = True
        return None  # the normal finders import it


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
