"""2D hooks: enhancers (restore) and generators (generate) applied to a scene's frames before
SfM/training (``recon process --enhance``) and to rendered frames (``recon render --post``).

    registry.py    plugins: built-ins, ``recon.enhancers`` / ``recon.generators`` entry points, local registration
    builtins.py    OpenCV operators (non-local-means denoise, CLAHE low-light, unsharp, white balance, inpaint)
    models.py      spandrel restoration / super-resolution models and diffusers inpainting from local weights
    stage.py       the processed-frames stage: enhanced frames beside the originals, a manifest, a cache
    provenance.py  what an enhanced scene records into runs and exports
    torchvision_compat.py  lets a CUDA-only torchvision wheel import beside the CPU torch (see docs/enhance.md)

This package's ``__init__`` imports nothing: :mod:`recon` installs the torchvision guard from here
at import time, before torch is loaded.
"""
