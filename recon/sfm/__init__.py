"""Structure from motion with pycolmap: photos or videos to posed, undistorted frames.

Python API (what ``recon train`` calls)::

    from recon.sfm import needs_processing, process
    if needs_processing(scene):
        scene = process(scene)          # -> SCENE/recon, readable by recon.scene.load_scene

See ``docs/sfm.md`` for the stages, outputs and which coordinate frame each output is in.
"""

from recon.sfm.options import SfmOptions
from recon.sfm.pipeline import default_out_dir, needs_processing, process

__all__ = ["SfmOptions", "default_out_dir", "needs_processing", "process"]
