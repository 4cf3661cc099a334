#!/usr/bin/env python
"""D-SSIM loss cost on CPU: recon's SSIM (grouped separable blur, hand-written backward) against
plain autograd through the same formula and against a dense banded-matrix blur.

Forward + backward of the SSIM map's mean for one RGB image, median of --repeats runs, one thread
by default (training's other work runs beside it). Prints a markdown table and the command line.

    python scripts/bench/loss.py [--sizes 256x256 472x640 800x800] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recon.train import losses as L  # noqa: E402


def autograd_ssim(pred, target, size=11, sigma=1.5):
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    _, _, a1, a2, b1, b2 = L._ssim_terms(x, y, size, sigma)
    return (a1 * a2) / (b1 * b2)


def banded_ssim(pred, target, size=11, sigma=1.5):
    """The blur as two dense banded-matrix products (cost grows with the image side)."""
    x, y = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    g = L._gauss_window(size, sigma)

    def band(n):
        m = torch.zeros(n - size + 1, n)
        for i in range(n - size + 1):
            m[i, i:i + size] = g
        return m

    c = x.shape[1]
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    bv, bh = band(stats.shape[-2]), band(stats.shape[-1])
    mu_x, mu_y, exx, eyy, exy = (bv @ stats @ bh.T).split(c, dim=1)
    a1, a2 = 2 * mu_x * mu_y + L._C1, 2 * (exy - mu_x * mu_y) + L._C2
    b1, b2 = mu_x**2 + mu_y**2 + L._C1, exx - mu_x**2 + eyy - mu_y**2 + L._C2
    return (a1 * a2) / (b1 * b2)


def time_it(f, pred, target, repeats: int) -> float:
    ts = []
    for _ in range(repeats + 1):
        p = pred.clone().requires_grad_(True)
        t0 = time.perf_counter()
        f(p, target).mean().backward()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["256x256", "472x640", "800x800"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    for s in a.sizes:
        h, w = map(int, s.split("x"))
        target = torch.rand(1, h, w, 3, generator=g)
        pred = (target + 0.05 * torch.randn(target.shape, generator=g)).clamp(0, 1)
        times = {name: time_it(f, pred, target, a.repeats) for name, f in
                 [("banded", banded_ssim), ("autograd", autograd_ssim), ("recon", L.ssim_map)]}
        rows.append((s, times))
    print(f"Command: `python scripts/bench/loss.py {shlex.join(sys.argv[1:])}` ({a.threads} thread(s), "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print()
    print("| image (HxW) | banded blur + autograd (ms) | separable blur + autograd (ms) | recon (ms) | speed-up vs banded |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for s, t in rows:
        print(f"| {s} | {t['banded'] * 1e3:.1f} | {t['autograd'] * 1e3:.1f} | {t['recon'] * 1e3:.1f} | "
              f"{t['banded'] / t['recon']:.1f}x |")


if __name__ == "__main__":
    main()
