"""Sparse control nodes: a time-conditioned deformation of canonical Gaussians (SC-GS style).

``M`` nodes sit in the canonical space, each with a radius and a rigid motion keyframed at ``K``
evenly spaced times in [0, 1] (translation ``[3]``, a rotation as an unnormalised quaternion offset
from identity ``[4]``, and a log-scale offset ``[3]``), interpolated in between (``interp``:
``"linear"``, or ``"cubic"``: a uniform Catmull-Rom spline through the keyframes, C1, exact at them,
its end segments continuing the parabola through the end's three keyframes). Each
Gaussian is bound to its ``k`` nearest nodes; at time ``t`` it moves by the blend of their motions
(linear blend skinning, weights ``softmax(-|x - p_j|^2 / (2 r_j^2))`` over its nodes)::

    x(t) = sum_j w_j (R_j(t) (x - p_j) + p_j + T_j(t))
    q(t) = normalize(sum_j w_j q_j(t)) * q            (Hamilton product, wxyz)
    log s(t) = log s + sum_j w_j dS_j(t)

Everything is plain differentiable torch (autograd gives the gradients; ``tests/test_splat4d.py``
checks them against finite differences). At zero offsets the deformation is exactly the identity,
so a model starts from its static warm-up.

Regularisers: :meth:`ControlNodes.smoothness` (squared second differences of the keyframes:
temporal smoothness) and :meth:`ControlNodes.rigidity` (neighbouring nodes move as one rigid body:
an as-rigid-as-possible term on the node graph, the spatial total variation of the motion).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from recon.models.quaternions import quat_mul, quat_to_rotmat

INTERPOLATIONS = ("linear", "cubic")
"""How node motions are interpolated between keyframes (:meth:`ControlNodes.blend`)."""


def farthest_point_sample(points: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    """Indices ``[min(m, P)]`` of ``m`` well-spread points of ``points [P, 3]`` (greedy farthest
    point sampling from a seeded random start)."""
    pts = np.asarray(points, np.float64)
    n = len(pts)
    if m >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    idx = np.empty(m, np.int64)
    idx[0] = int(rng.integers(n))
    d = np.sum((pts - pts[idx[0]]) ** 2, axis=1)
    for i in range(1, m):
        idx[i] = int(np.argmax(d))
        d = np.minimum(d, np.sum((pts - pts[idx[i]]) ** 2, axis=1))
    return idx


def knn(queries: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """Indices ``[Q, k]`` of the ``k`` nearest ``points [P, 3]`` of each of ``queries [Q, 3]``."""
    from scipy.spatial import cKDTree

    k = min(k, len(points))
    _, idx = cKDTree(np.asarray(points, np.float64)).query(np.asarray(queries, np.float64), k=k)
    return np.asarray(idx, np.int64).reshape(len(queries), k)


class ControlNodes(torch.nn.Module):
    """``M`` control nodes with keyframed rigid motions (see the module docstring).

    Parameters (``torch.nn.Parameter``):
        pos: ``[M, 3]`` canonical node positions.
        log_radius: ``[M]`` log of each node's influence radius.
        trans: ``[M, K, 3]`` translation at each keyframe.
        rot: ``[M, K, 4]`` quaternion offset from identity (wxyz) at each keyframe.
        dscale: ``[M, K, 3]`` log-scale offset at each keyframe.
    Buffers: ``graph [M, G]`` each node's nearest other nodes (for :meth:`rigidity`).
    """

    def __init__(self, pos: torch.Tensor, keyframes: int, radius: Optional[torch.Tensor] = None,
                 graph_k: int = 6, interp: str = "linear"):
        super().__init__()
        if interp not in INTERPOLATIONS:
            raise ValueError(f"interp must be one of {INTERPOLATIONS}, got {interp!r}")
        self.interp = interp
        pos = torch.as_tensor(pos, dtype=torch.float32)
        m = pos.shape[0]
        kf = max(int(keyframes), 1)
        if radius is None:
            nn_idx = knn(pos.numpy(), pos.numpy(), min(4, m))[:, 1:] if m > 1 else np.zeros((m, 0), np.int64)
            if nn_idx.shape[1]:
                d = np.linalg.norm(pos.numpy()[:, None] - pos.numpy()[nn_idx], axis=-1).mean(1)
            else:
                d = np.ones(m)
            radius = torch.as_tensor(np.maximum(d, 1e-6), dtype=torch.float32)
        self.pos = torch.nn.Parameter(pos.clone())
        self.log_radius = torch.nn.Parameter(torch.log(torch.as_tensor(radius, dtype=torch.float32)))
        self.trans = torch.nn.Parameter(torch.zeros(m, kf, 3))
        self.rot = torch.nn.Parameter(torch.zeros(m, kf, 4))
        self.dscale = torch.nn.Parameter(torch.zeros(m, kf, 3))
        self.graph_k = int(graph_k)
        self.register_buffer("graph", torch.zeros(m, 0, dtype=torch.long))
        self.update_graph()

    @property
    def num_nodes(self) -> int:
        return int(self.pos.shape[0])

    @property
    def keyframes(self) -> int:
        return int(self.trans.shape[1])

    @classmethod
    def from_gaussians(cls, means: torch.Tensor, opacities: torch.Tensor, num_nodes: int, keyframes: int,
                       seed: int = 0, interp: str = "linear") -> "ControlNodes":
        """Nodes spread over the Gaussians ``means [N, 3]`` that are visible (sigmoid of the logits
        ``opacities [N]`` above 0.1; all of them when fewer than ``num_nodes`` are)."""
        pts = means.detach().cpu().numpy()
        vis = torch.sigmoid(opacities.detach().cpu()).numpy() > 0.1
        if vis.sum() >= num_nodes:
            pts = pts[vis]
        sel = farthest_point_sample(pts, num_nodes, seed)
        return cls(torch.as_tensor(pts[sel], dtype=torch.float32), keyframes, interp=interp)

    def update_graph(self) -> None:
        """Recompute each node's ``G`` nearest other nodes (after the nodes moved)."""
        m = self.num_nodes
        g = min(self.graph_k, m - 1)
        if g <= 0:
            self.graph = torch.zeros(m, 0, dtype=torch.long, device=self.pos.device)
            return
        p = self.pos.detach().cpu().numpy()
        self.graph = torch.as_tensor(knn(p, p, g + 1)[:, 1:], device=self.pos.device)

    # ---- motion -----------------------------------------------------------------------------------
    def blend(self, t: float) -> list[tuple[int, float]]:
        """``[(keyframe, weight), ...]`` whose weighted sum of keyframe values is the motion at time
        ``t`` (clamped to [0, 1]); only non-zero weights. Linear: the one or two keyframes around
        ``t``. Cubic (uniform Catmull-Rom): up to four, with the missing neighbour of an end segment
        continuing the parabola through the end's three keyframes (``k_{-1} = 3 k_0 - 3 k_1 + k_2``;
        the line through them when there are two), so a quadratic motion is reproduced exactly."""
        kf = self.keyframes
        if kf == 1:
            return [(0, 1.0)]
        u = min(max(float(t), 0.0), 1.0) * (kf - 1)
        i0 = min(int(math.floor(u)), kf - 2)
        f = u - i0
        if self.interp == "linear" or f == 0.0:
            w = {i0: 1.0 - f, i0 + 1: f}
        else:
            f2, f3 = f * f, f * f * f
            wm, w0 = 0.5 * (-f3 + 2 * f2 - f), 0.5 * (3 * f3 - 5 * f2 + 2)
            w1, w2 = 0.5 * (-3 * f3 + 4 * f2 + f), 0.5 * (f3 - f2)
            # A missing neighbour beyond an end keyframe continues the parabola through the end's
            # three keyframes (k_{-1} = 3 k_0 - 3 k_1 + k_2; with two keyframes the line through them).
            terms = [(i0, w0), (i0 + 1, w1)]
            for k, wk, step in ((i0 - 1, wm, 1), (i0 + 2, w2, -1)):
                e = 0 if step == 1 else kf - 1  # the end keyframe next to the missing one
                if 0 <= k < kf:
                    terms.append((k, wk))
                elif kf >= 3:
                    terms += [(e, 3 * wk), (e + step, -3 * wk), (e + 2 * step, wk)]
                else:
                    terms += [(e, 2 * wk), (e + step, -wk)]
            w = {}
            for k, wk in terms:
                w[k] = w.get(k, 0.0) + wk
        return [(k, v) for k, v in sorted(w.items()) if v != 0.0]

    def at_time(self, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Node motions at time ``t`` (clamped to [0, 1]): unit quaternions ``[M, 4]``,
        translations ``[M, 3]`` and log-scale offsets ``[M, 3]``, interpolated between keyframes
        (:meth:`blend`)."""
        bl = self.blend(t)
        tr = sum(w * self.trans[:, k] for k, w in bl)
        ro = sum(w * self.rot[:, k] for k, w in bl)
        ds = sum(w * self.dscale[:, k] for k, w in bl)
        ident = torch.zeros_like(ro)
        ident[:, 0] = 1.0
        q = ident + ro
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return q, tr, ds

    def keyframes_at(self, t: float) -> list[int]:
        """The keyframes whose values :meth:`at_time` blends at time ``t`` (one to four)."""
        return [k for k, _ in self.blend(t)]

    def bind(self, means: torch.Tensor, k: int) -> torch.Tensor:
        """Indices ``[N, k]`` (long) of each Gaussian's ``k`` nearest nodes (no gradient)."""
        idx = knn(means.detach().cpu().numpy(), self.pos.detach().cpu().numpy(), k)
        return torch.as_tensor(idx, device=means.device)

    def weights(self, means: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Blend weights ``[N, k]`` (rows sum to 1) of the Gaussians ``means [N, 3]`` over their
        nodes ``idx [N, k]``."""
        d2 = ((means[:, None, :] - self.pos[idx]) ** 2).sum(-1)
        r2 = torch.exp(2.0 * self.log_radius)[idx]
        return torch.softmax(-d2 / (2.0 * r2), dim=1)

    def deform(self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor, idx: torch.Tensor,
               t: float, with_scale: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gaussians at time ``t``.

        Args:
            means: ``[N, 3]`` canonical centres. quats: ``[N, 4]`` canonical rotations (wxyz,
                unnormalised). log_scales: ``[N, 3]``. idx: ``[N, k]`` from :meth:`bind`.
            t: time in [0, 1]. with_scale: apply the nodes' log-scale offsets.
        Returns:
            ``(means [N, 3], quats [N, 4], log_scales [N, 3])`` at ``t``, differentiable in the
            inputs and the node parameters.
        """
        q, tr, ds = self.at_time(t)
        w = self.weights(means, idx)  # [N, k]
        R = quat_to_rotmat(q)  # [M, 3, 3]
        p = self.pos[idx]  # [N, k, 3]
        local = means[:, None, :] - p
        moved = torch.einsum("nkij,nkj->nki", R[idx], local) + p + tr[idx]
        means_t = (w[..., None] * moved).sum(1)
        qb = (w[..., None] * q[idx]).sum(1)
        qb = qb / qb.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        quats_t = quat_mul(qb, quats)
        scales_t = log_scales + (w[..., None] * ds[idx]).sum(1) if with_scale else log_scales
        return means_t, quats_t, scales_t

    def forward(self, means, quats, log_scales, idx, t, with_scale=True):
        """:meth:`deform` (so ``torch.func.functional_call`` can swap the parameters)."""
        return self.deform(means, quats, log_scales, idx, t, with_scale)

    # ---- regularisers -------------------------------------------------------------------------------
    def smoothness(self, extent: float) -> torch.Tensor:
        """Mean squared second difference of the keyframes (translations in units of ``extent``):
        0 for motions linear in time."""
        if self.keyframes < 3:
            return self.trans.sum() * 0.0
        def d2(x):
            return x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]
        return ((d2(self.trans) / extent) ** 2).sum(-1).mean() + (d2(self.rot) ** 2).sum(-1).mean() \
            + (d2(self.dscale) ** 2).sum(-1).mean()

    def rigidity(self, t: float, extent: float) -> torch.Tensor:
        """As-rigid-as-possible on the node graph at time ``t``: where node ``j``'s motion carries
        each neighbour ``l``, versus where ``l``'s own motion does (mean squared, in units of
        ``extent``), weighted by ``exp(-|p_l - p_j|^2 / (2 r_j^2))``."""
        if self.graph.shape[1] == 0:
            return self.pos.sum() * 0.0
        q, tr, _ = self.at_time(t)
        R = quat_to_rotmat(q)
        pj = self.pos[:, None, :]
        pl = self.pos[self.graph]  # [M, G, 3]
        pred = torch.einsum("mij,mgj->mgi", R, pl - pj) + pj + tr[:, None, :]
        actual = pl + tr[self.graph]
        w = torch.exp(-((pl - pj) ** 2).sum(-1).detach() / (2 * torch.exp(2 * self.log_radius.detach())[:, None]))
        return (w * (((pred - actual) / extent) ** 2).sum(-1)).mean()

    # ---- state ----------------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the parameters and the node graph, by name."""
        return {"pos": self.pos.detach().cpu().clone(), "log_radius": self.log_radius.detach().cpu().clone(),
                "trans": self.trans.detach().cpu().clone(), "rot": self.rot.detach().cpu().clone(),
                "dscale": self.dscale.detach().cpu().clone(), "graph": self.graph.detach().cpu().clone()}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], graph_k: int = 6, interp: str = "linear") -> "ControlNodes":
        """The inverse of :meth:`tensors` (``interp`` is stored beside them, in the file's metadata)."""
        nodes = cls(t["pos"], int(t["trans"].shape[1]), radius=torch.exp(t["log_radius"].float()), graph_k=graph_k,
                    interp=interp)
        with torch.no_grad():
            nodes.log_radius.copy_(t["log_radius"])
            nodes.trans.copy_(t["trans"])
            nodes.rot.copy_(t["rot"])
            nodes.dscale.copy_(t["dscale"])
        nodes.graph = t["graph"].long().clone()
        return nodes
