"""Quaternions (wxyz, as gsplat stores them): products and rotation matrices, differentiable in torch."""

from __future__ import annotations

import torch


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` of quaternions ``[..., 4]`` (wxyz)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrix ``[3, 3]`` of one quaternion ``[4]`` (wxyz, normalised here)."""
    w, x, y, z = (q / q.norm()).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
    ])


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """A constant rotation matrix ``[3, 3]`` as a unit quaternion ``[4]`` (wxyz), same dtype/device."""
    from recon.scene.conventions import rotmat_to_qvec

    q = rotmat_to_qvec(R.detach().cpu().double().numpy())
    return torch.as_tensor(q, dtype=R.dtype, device=R.device)
