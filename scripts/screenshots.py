#!/usr/bin/env python
"""Screenshots of `recon view`'s two pages for a trained run (the pictures in the README).

Serves RUN with the viewer, opens the viser operator page and the WebXR page in headless Chromium
(software WebGL), waits for each to draw the scene, and saves ``viewer.png`` and ``xr.png``:

    python scripts/screenshots.py RUN --out docs/img
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.viewer import CHROMIUM_ARGS  # noqa: E402
from viewer.run import open_run  # noqa: E402
from viewer.server import ViewerOptions, ViewerServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--width", type=int, default=960)
    ap.add_argument("--height", type=int, default=540)
    ap.add_argument("--settle", type=float, default=20.0, help="seconds to let the viser page draw")
    ap.add_argument("--chromium", default=os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium"))
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    a.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="recon-shots-cache-"))
    srv = ViewerServer(open_run(a.run), ViewerOptions(port=0)).start()
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="recon-shots-profile-"), executable_path=a.chromium, headless=True,
                args=CHROMIUM_ARGS, ignore_https_errors=True, viewport={"width": a.width, "height": a.height})
            ctx.set_default_timeout(600_000)
            page = ctx.new_page()
            page.goto(srv.viewer_url)
            page.wait_for_timeout(a.settle * 1000)
            page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")
            page.wait_for_timeout(1500)
            page.screenshot(path=str(a.out / "viewer.png"))
            page.close()
            page = ctx.new_page()
            page.goto(srv.xr_url)
            if not page.evaluate("() => window.reconXR.ready"):
                raise SystemExit(f"xr page failed: {page.evaluate('() => window.reconXR.error')}")
            page.wait_for_function("() => window.reconXR.firstPixelsMs !== null")
            page.wait_for_timeout(3000)
            page.screenshot(path=str(a.out / "xr.png"))
            ctx.close()
    finally:
        srv.stop()
    print(f"wrote {a.out / 'viewer.png'} and {a.out / 'xr.png'}")


if __name__ == "__main__":
    main()
