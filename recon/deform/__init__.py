"""Time-conditioned deformations of canonical 3D Gaussians (the motion model of 4D splats).

:class:`recon.deform.nodes.ControlNodes`: sparse control nodes (SC-GS style) whose rigid
transforms are keyframed in time and blended onto each Gaussian by its nearest nodes (linear blend
skinning). Chosen over a HexPlane field by ``scripts/bench/splat4d.py``: on CPU the nodes' motion costs
3-9x less than a 4D-GS-sized HexPlane at 10k-100k Gaussians (docs/splat4d.md).
"""

from recon.deform.nodes import ControlNodes, farthest_point_sample  # noqa: F401
