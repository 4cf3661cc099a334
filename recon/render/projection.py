"""EWA projection of 3D Gaussians to 2D in PyTorch (autograd), with gsplat 1.5.3's exact rules.

This is the differentiable reference for the CPU backend's Numba projection
(:mod:`recon.render._cpu_project`): the same maths, the same culling and the same radii as gsplat's
``projection_ewa_3dgs_fused`` CUDA kernel:

* camera-space mean ``t = R p + t``; culled when ``z < near_plane`` or ``z > far_plane``;
* covariance ``R_q diag(s)^2 R_q^T`` (quaternion wxyz normalised), moved to the camera frame;
  the 2D covariance is formed as ``A A^T`` with ``A = J R M`` (``M = R_q diag(s)``), and its
  determinant before blurring by Cauchy-Binet (mathematically gsplat's, numerically steadier);
* pinhole Jacobian with the camera-space x/y clamped to 1.3x the field of view (as gsplat);
* ``eps2d`` added to the 2D covariance diagonal; culled when its determinant is <= 0;
  ``compensation = sqrt(max(0, det(cov) / det(cov + eps2d I)))`` (used by ``antialiased``);
* opacity-aware extent: culled when ``opacity (x compensation) < 1/255``,
  ``extend = min(3.33, sqrt(2 log(opacity / (1/255))))``; radii per axis are
  ``ceil(extend * sqrt(cov2d_xx))`` and ``ceil(extend * sqrt(cov2d_yy))``;
* culled when both radii are <= ``radius_clip`` or the box lies off the image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from recon.models.quaternions import quat_to_rotmat  # noqa: F401  (re-exported)

ALPHA_THRESHOLD = 1.0 / 255.0


def project_gaussians_torch(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    antialiased: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Project Gaussians into C cameras (dense ``[C, N, ...]`` outputs, autograd-friendly).

    Returns:
        ``radii [C, N, 2]`` int32 (0 where culled), ``means2d [C, N, 2]`` pixels,
        ``depths [C, N]`` camera z, ``conics [C, N, 3]`` (inverse 2D covariance, upper triangle
        ``a, b, c``), ``opacities [C, N]`` (times the compensation in antialiased mode).
        Entries of culled Gaussians are finite but meaningless.
    """
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    Rq = quat_to_rotmat(quats)
    M = Rq * scales[:, None, :]  # covariance = M M^T  [N, 3, 3]
    B = torch.einsum("cij,njk->cnik", R, M)  # camera frame  [C, N, 3, 3]

    x, y, z = means_c.unbind(-1)
    fx = Ks[:, 0, 0, None]
    fy = Ks[:, 1, 1, None]
    cx = Ks[:, 0, 2, None]
    cy = Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1)
    J = J.reshape(z.shape + (2, 3))
    A = J @ B  # [C, N, 2, 3]; cov2d = J R Sigma R^T J^T = A A^T
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    a = (A[..., 0, :] * A[..., 0, :]).sum(-1)
    b = (A[..., 0, :] * A[..., 1, :]).sum(-1)
    c = (A[..., 1, :] * A[..., 1, :]).sum(-1)
    # det(A A^T) by Cauchy-Binet (a sum of squares): accurate for needle-thin Gaussians, where
    # a * c - b^2 cancels catastrophically in float32
    a0, a1 = A[..., 0, :], A[..., 1, :]
    det_orig = (
        (a0[..., 0] * a1[..., 1] - a0[..., 1] * a1[..., 0]) ** 2
        + (a0[..., 0] * a1[..., 2] - a0[..., 2] * a1[..., 0]) ** 2
        + (a0[..., 1] * a1[..., 2] - a0[..., 2] * a1[..., 1]) ** 2
    )
    a = a + eps2d
    c = c + eps2d
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    opac = opacities[None, :].expand(z.shape)
    if antialiased:
        # clamp away from 0 so culled, degenerate Gaussians do not put inf * 0 = nan in gradients
        comp = torch.sqrt(torch.clamp(det_orig / det_safe, min=1e-30))
        opac = opac * comp

    with torch.no_grad():
        op = opac.detach()
        extend = torch.sqrt(2.0 * torch.log(torch.clamp(op / ALPHA_THRESHOLD, min=1.0)))
        extend = torch.clamp(extend, max=3.33)
        rx = torch.ceil(extend * torch.sqrt(torch.clamp(a.detach(), min=0.0)))
        ry = torch.ceil(extend * torch.sqrt(torch.clamp(c.detach(), min=0.0)))
        m2 = means2d.detach()
        valid = (z >= near_plane) & (z <= far_plane) & (det > 0) & (op >= ALPHA_THRESHOLD)
        valid &= ~((rx <= radius_clip) & (ry <= radius_clip))
        valid &= ~(
            (m2[..., 0] + rx <= 0)
            | (m2[..., 0] - rx >= width)
            | (m2[..., 1] + ry <= 0)
            | (m2[..., 1] - ry >= height)
        )
        radii = torch.stack([rx, ry], dim=-1)
        radii = torch.where(valid[..., None], radii, torch.zeros_like(radii)).to(torch.int32)
    return radii, means2d, z, conics, opac


def tile_ranges(means2d: Tensor, radii: Tensor, tile_size: int, tile_width: int, tile_height: int) -> Tensor:
    """Tile boxes ``[..., 4]`` = (x_min, x_max, y_min, y_max), max exclusive, as gsplat's ``isect_tiles``."""
    m = means2d.detach().float()
    r = radii.float()
    ts = float(tile_size)
    tx = m[..., 0] / ts
    ty = m[..., 1] / ts
    rx = r[..., 0] / ts
    ry = r[..., 1] / ts
    x0 = torch.floor(tx - rx).clamp(0, tile_width)
    x1 = torch.ceil(tx + rx).clamp(0, tile_width)
    y0 = torch.floor(ty - ry).clamp(0, tile_height)
    y1 = torch.ceil(ty + ry).clamp(0, tile_height)
    return torch.stack([x0, x1, y0, y1], dim=-1).to(torch.int64)


def n_tiles(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """``(tile_width, tile_height)``: tiles across and down."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)


__all__ = ["ALPHA_THRESHOLD", "quat_to_rotmat", "project_gaussians_torch", "tile_ranges", "n_tiles"]
