"""Benchmark `recon view`: time to first rendered frame in headless Chromium, and bytes sent.

For each size, a synthetic run (Gaussians on a coloured sphere, recon.testing.runs.make_run) is served with
``ViewerServer`` and opened in Debian's /usr/bin/chromium (Playwright, SwiftShader WebGL: CPU
rendering, so absolute times are far above a GPU browser's; compare sizes, not machines):

* viser page: from navigation to the first time >= 2% of viser's canvas shows the sphere's
  colours (a script injected into the page copies the canvas, nearest-neighbour, to a 128x72 2D
  canvas every 0.1 s; page screenshots are not used: under SwiftShader one takes longer than a
  frame);
* WebXR page: from navigation to the first frame whose centre pixels are not background (the page
  probes its own framebuffer, ``window.reconXR.firstPixelsMs``), plus when the splat file finished
  loading (``loadMs`` after ``scene.json``).

Bytes are what the viewer's gateway wrote to the browser for that page (HTTP + websocket),
including the page, scripts and splat payload. Prints a markdown table and the command line.

    python scripts/bench/viewer.py                    # 100k and 1M Gaussians, SH degree 3
    python scripts/bench/viewer.py --sizes 100000 --sh-degree 0
    python scripts/bench/viewer.py --sizes 200000 --screenshots docs/img
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from viewer.run import open_run  # noqa: E402
from viewer.server import ViewerOptions, ViewerServer  # noqa: E402
from recon.testing.gaussians import QUADRANT_COLOURS  # noqa: E402
from recon.testing.runs import make_run  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


# Injected into the viser page: records performance.now() when >= 2% of the largest canvas shows
# the sphere's colours (checked every 0.1 s on a 128x72 nearest-neighbour copy of the canvas).
PROBE_JS = """
window.__firstColour = null;
(function () {
  const cols = %s;
  const W = 128, H = 72;
  const small = document.createElement("canvas"); small.width = W; small.height = H;
  let ctx = null;
  function check() {
    const cs = [...document.querySelectorAll("canvas")].sort((a, b) => b.width * b.height - a.width * a.height);
    if (cs.length) {
      ctx = ctx || small.getContext("2d", { willReadFrequently: true });
      ctx.imageSmoothingEnabled = false;  // keep sub-pixel speckles of dense splats
      ctx.clearRect(0, 0, W, H);
      ctx.drawImage(cs[0], 0, 0, W, H);
      const d = ctx.getImageData(0, 0, W, H).data;
      let hit = 0;
      for (let i = 0; i < d.length; i += 4) for (const c of cols) {
        const r = d[i] - c[0], g = d[i + 1] - c[1], b = d[i + 2] - c[2];
        if (r * r + g * g + b * b < 3600) { hit++; break; }
      }
      if (hit >= 0.02 * W * H) { window.__firstColour = performance.now(); return; }
    }
    setTimeout(check, 100);
  }
  setTimeout(check, 100);
})();
""" % (np.round(QUADRANT_COLOURS * 255).astype(int).tolist(),)


def bench_one(n: int, sh_degree: int, width: int, height: int, timeout: float, shots: Path | None,
              chromium: str, noise: float = 1.0) -> dict:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix=f"recon-bench-viewer-{n}-"))
    t = time.perf_counter()
    make_run(tmp / "run", n=n, sh_degree=sh_degree, noise=noise)  # noise: trained-model-like irregularity
    t_make = time.perf_counter() - t
    t = time.perf_counter()
    srv = ViewerServer(open_run(tmp / "run"), ViewerOptions(port=0)).start()
    t_start = time.perf_counter() - t
    row = {"n": n, "sh": sh_degree, "ply_mb": (tmp / "run" / "splats.ply").stat().st_size / 1e6,
           "spz_mb": srv.splats_file.stat().st_size / 1e6, "make_s": t_make, "start_s": t_start}
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                ignore_https_errors=True, viewport={"width": width, "height": height})
            ctx.set_default_timeout(timeout * 1000)  # software WebGL: one frame of 1M splats takes a while
            # viser page
            srv.gateway.reset_counters()
            page = ctx.new_page()
            page.add_init_script(PROBE_JS)
            page.goto(srv.viewer_url)
            try:
                page.wait_for_function("() => window.__firstColour !== null", polling=500, timeout=timeout * 1000)
                row["viser_s"] = page.evaluate("() => window.__firstColour") / 1000
            except Exception:  # noqa: BLE001 - report a timeout in the table
                row["viser_s"] = None
            row["viser_bytes"] = sum(srv.gateway.bytes_sent.values())
            if shots:
                # Hide viser's "software WebGL rendering detected" notice for a clean picture.
                page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(shots / "viewer.png"))
            page.close()
            # WebXR page (fresh context state for the vendor files is not needed: same process cache)
            srv.gateway.reset_counters()
            page = ctx.new_page()
            t0 = time.perf_counter()
            page.goto(srv.xr_url)
            ok = page.evaluate("() => window.reconXR.ready")
            if not ok:
                raise RuntimeError(page.evaluate("() => window.reconXR.error"))
            page.wait_for_function("() => window.reconXR.firstPixelsMs !== null", timeout=timeout * 1000)
            row["xr_wall_s"] = time.perf_counter() - t0
            row["xr_s"] = page.evaluate("() => window.reconXR.firstPixelsMs") / 1000
            row["xr_load_s"] = page.evaluate("() => window.reconXR.loadMs") / 1000
            row["xr_bytes"] = sum(srv.gateway.bytes_sent.values())
            row["xr_splat_bytes"] = srv.gateway.bytes_sent.get("splats", 0)
            if shots:
                page.wait_for_timeout(1500)
                page.screenshot(path=str(shots / "xr.png"))
            page.close()
            ctx.close()
    finally:
        srv.stop()
    return row


def fmt_s(v) -> str:
    return "timeout" if v is None else f"{v:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--sh-degree", type=int, default=3)
    ap.add_argument("--width", type=int, default=800)
    ap.add_argument("--height", type=int, default=450)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per page")
    ap.add_argument("--screenshots", type=Path, default=None, help="save viewer.png and xr.png here (last size)")
    ap.add_argument("--noise", type=float, default=1.0, help="fixture irregularity (0: clean sphere)")
    ap.add_argument("--chromium", default=os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium"))
    a = ap.parse_args()
    if a.screenshots:
        a.screenshots.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="recon-bench-cache-"))
    rows = []
    print(f"# chromium {a.chromium}; load average {os.getloadavg()[0]:.1f} at start", file=sys.stderr)
    for i, n in enumerate(a.sizes):
        shots = a.screenshots if (a.screenshots and i == len(a.sizes) - 1) else None
        rows.append(bench_one(n, a.sh_degree, a.width, a.height, a.timeout, shots, a.chromium, a.noise))
        print(f"# done {n}: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"`python scripts/bench/viewer.py {shlex.join(sys.argv[1:])}` — headless Chromium "
          f"{a.width}x{a.height}, SwiftShader WebGL, {os.cpu_count()} CPU cores\n")
    print("| Gaussians | PLY MB | SPZ MB | server start s | viser: first frame s | viser: MB sent "
          "| XR: splats loaded s | XR: first frame s | XR: MB sent (splats) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']:,} | {r['ply_mb']:.1f} | {r['spz_mb']:.1f} | {r['start_s']:.1f} | {fmt_s(r['viser_s'])} "
              f"| {r['viser_bytes'] / 1e6:.1f} | {r['xr_load_s']:.1f} | {r['xr_s']:.1f} "
              f"| {r['xr_bytes'] / 1e6:.1f} ({r['xr_splat_bytes'] / 1e6:.1f}) |")


if __name__ == "__main__":
    main()
