"""Per-image appearance (exposure / white balance) for any method: an affine colour map per
training view, ``rgb' = rgb + rgb @ A[:, :3]^T + A[:, 3]``, starting at the identity and kept at
zero mean over the views (the held-out protocol "mean appearance": docs/metrics.md)."""

from __future__ import annotations

import torch


class AppearanceModule:
    """``A [n, 3, 4]`` per training view, optimised by Adam (lr 1e-3)."""

    def __init__(self, n_views: int, device: torch.device, lr: float = 1e-3):
        self.affine = torch.nn.Parameter(torch.zeros(n_views, 3, 4, device=device))
        self.optimizer = torch.optim.Adam([self.affine], lr=lr)

    def apply(self, rgb: torch.Tensor, k: int) -> torch.Tensor:
        """``rgb [..., 3]`` of training view ``k`` with its colour correction."""
        A = self.affine[k]
        return rgb + rgb @ A[:, :3].T + A[:, 3]

    def apply_rays(self, rgb: torch.Tensor, vid: torch.Tensor) -> torch.Tensor:
        """``rgb [R, 3]`` of rays from training views ``vid [R]`` with their views' corrections."""
        A = self.affine[vid]
        return rgb + torch.einsum("rij,rj->ri", A[:, :, :3], rgb) + A[:, :, 3]

    def step(self) -> None:
        """One Adam step, then the maps' mean is subtracted: the uncorrected model renders the
        training photos' average appearance (what held-out views, videos and exports get)."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.affine -= self.affine.mean(0, keepdim=True)

    def state_dict(self) -> dict:
        return {"affine": self.affine.detach().cpu().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.affine.copy_(state["affine"])
        self.optimizer.load_state_dict(state["optimizer"])
