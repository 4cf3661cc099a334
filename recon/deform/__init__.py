"""Time-conditioned deformations of canonical 3D Gaussians (the motion model of 4D splats).

:class:`recon.deform.nodes.ControlNodes`: sparse control nodes (SC-GS style) whose rigid
transforms are keyframed in time and blended onto each Gaussian by its nearest nodes (linear blend
skinning). Chosen over a HexPlane field by ``scripts/bench/splat4d.py``: on CPU the nodes cost a
fraction of the rasterizer at every model size (docs/splat4d.md).
"""

from recon.deform.nodes import ControlNodes, farthest_point_sample  # noqa: F401
