"""The CPU fallbacks that let gsplat's MCMC strategy run without CUDA match the maths they replace."""

import math

import torch

from recon.train.gsplat_cpu import binomials, covar_preci_torch, relocation_torch


def _relocation_loop(o: float, s: float, n: int, binoms: torch.Tensor) -> tuple[float, float]:
    # Eq. 9 of the MCMC paper written as the plain double sum.
    new_o = 1 - (1 - o) ** (1 / n)
    denom = 0.0
    for i in range(1, n + 1):
        for k in range(i):
            denom += float(binoms[i - 1, k]) * ((-1) ** k / math.sqrt(k + 1)) * new_o ** (k + 1)
    return new_o, o / denom * s


def test_relocation_matches_double_sum():
    binoms = binomials(51)
    g = torch.Generator().manual_seed(0)
    o = torch.rand(64, generator=g) * 0.98 + 0.01
    s = torch.rand(64, 3, generator=g) + 0.1
    r = torch.randint(1, 52, (64,), generator=g)
    new_o, new_s = relocation_torch(o, s, r.clone().float(), binoms)
    for j in range(64):
        eo, es = _relocation_loop(float(o[j]), 1.0, int(r[j]), binoms)
        assert abs(float(new_o[j]) - eo) < 1e-6
        assert torch.allclose(new_s[j], s[j] * es, rtol=1e-4)
    # One copy leaves a Gaussian unchanged.
    o1, s1 = relocation_torch(o, s, torch.ones(64), binoms)
    assert torch.allclose(o1, o) and torch.allclose(s1, s)


def test_covar_and_precision_are_inverse_and_match_rotation():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(32, 4, generator=g)
    s = torch.rand(32, 3, generator=g) + 0.05
    cov, prec = covar_preci_torch(q, s)
    eye = torch.eye(3).expand(32, 3, 3)
    assert torch.allclose(cov @ prec, eye, atol=1e-4)
    # eigenvalues of the covariance are the squared scales
    ev = torch.linalg.eigvalsh(cov.double()).sort(dim=-1).values
    assert torch.allclose(ev, (s.double() ** 2).sort(dim=-1).values, atol=1e-5)
    tri, _ = covar_preci_torch(q, s, compute_preci=False, triu=True)
    assert torch.allclose(tri[:, [0, 1, 2, 3, 4, 5]], cov[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]])
