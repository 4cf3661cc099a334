"""``rasterization``: gsplat 1.5.x's entry point, with a CPU backend, a dense reference and gsplat.

One function, the same signature, outputs and ``info`` keys as ``gsplat.rasterization`` (pinhole
cameras, no batch dimensions beyond the cameras), plus ``backend``:

* ``"cpu"``: recon's tile-based Numba rasterizer with a hand-written backward (:mod:`recon.render.cpu`);
* ``"gsplat"``: gsplat's CUDA kernels (tensors on a CUDA device);
* ``"torch"``: a dense PyTorch reference (every Gaussian against every pixel; small cases only);
* ``"auto"``: gsplat for CUDA tensors, the CPU backend otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor
from typing_extensions import Literal

from recon.errors import ReconError
from recon.render.projection import project_gaussians_torch
from recon.render.sh import spherical_harmonics

Backend = Literal["auto", "cpu", "gsplat", "torch"]
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,
    render_mode: Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"] = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: Literal["pinhole", "ortho", "fisheye", "ftheta"] = "pinhole",
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Rasterize N 3D Gaussians into C pinhole images (gsplat 1.5.x semantics).

    Args:
        means: Gaussian centres in world space. ``[N, 3]``
        quats: rotations as quaternions (w, x, y, z), need not be normalised. ``[N, 4]``
        scales: standard deviations along the Gaussian's axes (already exponentiated). ``[N, 3]``
        opacities: opacities in [0, 1] (already through the sigmoid). ``[N]``
        colors: with ``sh_degree=None``, post-activation features ``[N, D]`` or per camera
            ``[C, N, D]``; otherwise SH coefficients ``[N, K, 3]`` or ``[C, N, K, 3]`` with
            ``(sh_degree + 1) ** 2 <= K``, turned into colours as gsplat does
            (``clamp_min(SH(dir) + 0.5, 0)``, ``dir = mean - camera centre``).
        viewmats: world-to-camera matrices, OpenCV axes. ``[C, 4, 4]``
        Ks: intrinsics, pixel centres at (i + 0.5, j + 0.5). ``[C, 3, 3]``
        width, height: image size in pixels.
        near_plane, far_plane: z-range (camera frame) kept; others are culled.
        radius_clip: Gaussians whose 2D radii are both <= this (pixels) are skipped.
        eps2d: added to the diagonal of each 2D covariance (a minimum footprint).
        sh_degree: SH degree to evaluate (0..4), or None for direct features.
        packed: if True, per-(camera, Gaussian) outputs in ``info`` are packed ``[nnz, ...]`` with
            ``camera_ids`` / ``gaussian_ids``; otherwise dense ``[C, N, ...]`` (radii 0 = culled).
        tile_size: tile edge in pixels.
        backgrounds: colour behind the Gaussians per camera. ``[C, D]``
        render_mode: "RGB"; "D" accumulated z-depth; "ED" expected depth (divided by alpha);
            "RGB+D" / "RGB+ED" append the depth as the last channel.
        sparse_grad: not supported (must be False).
        absgrad: also compute ``info["means2d"].absgrad`` (sum over pixels of |d loss / d mean2d|)
            in the backward pass, as gsplat (AbsGS).
        rasterize_mode: "classic", or "antialiased" (opacity times
            ``sqrt(det(cov2d) / det(cov2d + eps2d I))``, Mip-Splatting).
        channel_chunk: accepted for compatibility (the CPU backend renders all channels at once).
        distributed: not supported (must be False).
        camera_model: only "pinhole" is supported outside the gsplat backend.
        backend: "auto" (gsplat on CUDA tensors, else "cpu"), "cpu", "gsplat" or "torch".

    Returns:
        ``render_colors [C, H, W, X]`` (X = D, 1 or D + 1 by render mode),
        ``render_alphas [C, H, W, 1]``, and ``info``: ``means2d`` (in the autograd graph; its
        ``.grad`` after backward is the pixel-space gradient gsplat's strategies read),
        ``radii`` int32 ``[C, N, 2]`` / ``[nnz, 2]``, ``depths``, ``conics``, ``opacities``,
        ``camera_ids`` / ``gaussian_ids`` (packed), ``width``, ``height``, ``n_cameras``,
        ``n_batches``, ``tile_size``, ``tile_width``, ``tile_height``, ``tiles_per_gauss``,
        ``isect_offsets``, ``flatten_ids``.
    """
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    if backend not in ("auto", "cpu", "gsplat", "torch"):
        raise ValueError(f"backend must be 'auto', 'cpu', 'gsplat' or 'torch', got {backend!r}")
    if backend == "auto":
        backend = "gsplat" if means.is_cuda else "cpu"
    if backend == "gsplat":
        from recon.render.gsplat_backend import rasterization_gsplat

        return rasterization_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
            sh_degree=sh_degree, packed=packed, tile_size=tile_size, backgrounds=backgrounds,
            render_mode=render_mode, sparse_grad=sparse_grad, absgrad=absgrad,
            rasterize_mode=rasterize_mode, channel_chunk=channel_chunk, distributed=distributed,
            camera_model=camera_model,
        )  # fmt: skip

    if camera_model != "pinhole":
        raise ReconError(
            f"camera_model={camera_model!r} is not supported by recon's {backend!r} rasterizer; "
            "only 'pinhole' is (undistort images first, or use backend='gsplat' on a CUDA device)"
        )
    if distributed:
        raise ReconError("distributed=True needs backend='gsplat' on CUDA devices")
    if sparse_grad:
        raise ReconError("sparse_grad=True is only supported by backend='gsplat'")
    if backend == "cpu" and means.is_cuda:
        raise ReconError("backend 'cpu' needs CPU tensors; got CUDA tensors (use backend='gsplat', or .cpu())")
    if backend == "torch" and absgrad:
        raise ReconError("absgrad=True is not supported by backend='torch'; use 'cpu' or 'gsplat'")

    N = means.shape[-2]
    if means.dim() != 2:
        raise ValueError(f"means must be [N, 3] (batch dimensions are not supported), got {tuple(means.shape)}")
    C = viewmats.shape[0]
    assert means.shape == (N, 3), means.shape
    assert quats.shape == (N, 4), quats.shape
    assert scales.shape == (N, 3), scales.shape
    assert opacities.shape == (N,), opacities.shape
    assert viewmats.shape == (C, 4, 4), viewmats.shape
    assert Ks.shape == (C, 3, 3), Ks.shape
    if sh_degree is None:
        assert (colors.dim() == 2 and colors.shape[0] == N) or (
            colors.dim() == 3 and colors.shape[:2] == (C, N)
        ), colors.shape
    else:
        assert (colors.dim() == 3 and colors.shape[0] == N and colors.shape[-1] == 3) or (
            colors.dim() == 4 and colors.shape[:2] == (C, N) and colors.shape[-1] == 3
        ), colors.shape
        if not 0 <= sh_degree <= 4:
            raise ValueError(f"sh_degree must be in 0..4, got {sh_degree}")
        assert (sh_degree + 1) ** 2 <= colors.shape[-2], colors.shape
    if backgrounds is not None:
        D_in = colors.shape[-1] if sh_degree is None else 3
        assert backgrounds.shape == (C, D_in), backgrounds.shape

    antialiased = rasterize_mode == "antialiased"
    aux = None
    if backend == "cpu":
        from recon.render.cpu import project_cpu

        proj, aux = project_cpu(
            means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
            radius_clip, antialiased, packed,
        )  # fmt: skip
    else:
        proj = _project_torch(
            means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
            radius_clip, antialiased, packed,
        )  # fmt: skip
    radii = proj["radii"]
    means2d = proj["means2d"]
    depths = proj["depths"]
    conics = proj["conics"]
    opac = proj["opacities"]
    camera_ids = proj.get("camera_ids")
    gaussian_ids = proj.get("gaussian_ids")

    # ---- colours per (camera, Gaussian) ----
    if sh_degree is None:
        if packed:
            cols = colors[gaussian_ids] if colors.dim() == 2 else colors[camera_ids, gaussian_ids]
        else:
            cols = colors.unsqueeze(0).expand(C, N, colors.shape[-1]) if colors.dim() == 2 else colors
    elif backend == "cpu" and sh_degree <= 3:
        from recon.render.cpu import SHColorsCPU

        campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3], as gsplat
        cols = SHColorsCPU.apply(means, colors, campos, sh_degree, aux)
    else:
        campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3]
        if packed:
            dirs = means[gaussian_ids] - campos[camera_ids]
            shs = colors[gaussian_ids] if colors.dim() == 3 else colors[camera_ids, gaussian_ids]
        else:
            dirs = means[None, :, :] - campos[:, None, :]
            shs = colors.unsqueeze(0).expand((C,) + colors.shape) if colors.dim() == 3 else colors
        cols = torch.clamp_min(spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)

    bgs = backgrounds
    if render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, depths[..., None]], dim=-1)
        if bgs is not None:
            bgs = torch.cat([bgs, torch.zeros(C, 1, dtype=bgs.dtype, device=bgs.device)], dim=-1)
    elif render_mode in ("D", "ED"):
        cols = depths[..., None]
        if bgs is not None:
            bgs = torch.zeros(C, 1, dtype=bgs.dtype, device=bgs.device)

    tile_width = math.ceil(width / float(tile_size))
    tile_height = math.ceil(height / float(tile_size))
    info: Dict[str, Any] = {
        "batch_ids": torch.zeros_like(camera_ids) if packed else None,
        "camera_ids": camera_ids,
        "gaussian_ids": gaussian_ids,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opac,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": C,
    }

    if backend == "cpu":
        from recon.render.cpu import rasterize_cpu

        render_colors, render_alphas, bins = rasterize_cpu(
            means2d, conics, cols, opac, depths, bgs, aux, C, width, height, tile_size, absgrad
        )
        tpg = torch.zeros(radii.shape[:-1], dtype=torch.int32)
        tpg.view(-1)[torch.from_numpy(bins.vis_rows.astype("int64"))] = torch.from_numpy(
            bins.counts.astype("int32")
        )
        info["tiles_per_gauss"] = tpg
        info["isect_offsets"] = torch.from_numpy(bins.tile_offsets[:-1]).reshape(C, tile_height, tile_width)
        info["flatten_ids"] = torch.from_numpy(bins.flatten_ids)
    else:
        from recon.render.reference import composite_dense

        D = cols.shape[-1]
        if packed:
            img_ids = camera_ids
        else:
            img_ids = torch.arange(C, device=means.device)[:, None].expand(C, N).reshape(-1)
        render_colors, render_alphas = composite_dense(
            means2d.reshape(-1, 2), conics.reshape(-1, 3), cols.reshape(-1, D), opac.reshape(-1),
            depths.reshape(-1), radii.reshape(-1, 2), img_ids, C, width, height, tile_size, bgs,
        )  # fmt: skip

    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )
    return render_colors, render_alphas, info


def _project_torch(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                   radius_clip, antialiased, packed) -> dict[str, Tensor]:  # fmt: skip
    radii, means2d, depths, conics, opac = project_gaussians_torch(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
        radius_clip, antialiased,
    )  # fmt: skip
    if not packed:
        return dict(radii=radii, means2d=means2d, depths=depths, conics=conics, opacities=opac)
    cid, gid = torch.nonzero((radii > 0).all(dim=-1), as_tuple=True)
    return dict(
        radii=radii[cid, gid],
        means2d=means2d[cid, gid],
        depths=depths[cid, gid],
        conics=conics[cid, gid],
        opacities=opac[cid, gid],
        camera_ids=cid,
        gaussian_ids=gid,
    )
