"""Camera-pose refinement for any method: one small rotation and translation per training view.

The correction of training view ``k`` is ``E_k = [R(q_k) | t_k]`` in the camera's own frame: the
refined world-to-camera is ``E_k @ viewmat``. Methods apply it where it suits them (splats move the
Gaussians by ``V^-1 E V``; a ray-based method moves its rays); :meth:`refined_c2w` gives the
refined pose for the run's cameras.json.
"""

from __future__ import annotations

import numpy as np
import torch

from recon.models.quaternions import quat_to_rotmat


class CameraOptModule:
    """Per-view pose corrections ``delta [n, 6]`` (rotation vector in radians, translation in scene
    extents), optimised by Adam with a weight decay that pulls them back to the input poses."""

    def __init__(self, n_views: int, scene_scale: float, lr: float, weight_decay: float, device: torch.device):
        self.scene_scale = float(scene_scale)
        self.delta = torch.nn.Parameter(torch.zeros(n_views, 6, device=device))
        self.optimizer = torch.optim.Adam([self.delta], lr=lr, weight_decay=weight_decay)

    def correction(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """View ``k``'s correction ``(q [4] wxyz, t [3])`` (differentiable)."""
        d = self.delta[k]
        q = torch.cat([torch.ones(1, device=d.device, dtype=d.dtype), 0.5 * d[:3]])
        return q / q.norm(), d[3:] * self.scene_scale

    def refined_c2w(self, k: int, c2w: np.ndarray) -> np.ndarray:
        """View ``k``'s OpenCV camera-to-world ``[4, 4]`` with its correction applied."""
        with torch.no_grad():
            q, t = self.correction(k)
            E = np.eye(4)
            E[:3, :3] = quat_to_rotmat(q).cpu().double().numpy()
            E[:3, 3] = t.cpu().double().numpy()
        return np.linalg.inv(E @ np.linalg.inv(c2w))

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"delta": self.delta.detach().cpu().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.delta.copy_(state["delta"])
        self.optimizer.load_state_dict(state["optimizer"])
