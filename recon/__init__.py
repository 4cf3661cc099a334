"""recon: a capture-to-asset pipeline for 3D capture and neural rendering."""

__version__ = "0.1.0"

# A CUDA-only torchvision beside the CPU torch would break spandrel, transformers and diffusers
# imports; declare its operators before it is first imported (recon/enhance/torchvision_compat.py).
from recon.enhance import torchvision_compat as _tv  # noqa: E402

_tv.install()
del _tv
