"""`recon view` in a real headless Chromium (Debian's /usr/bin/chromium through Playwright).

WebGL runs on SwiftShader (ANGLE's CPU Vulkan), so no GPU is needed. Two runs are served: the
synthetic four-colour sphere (exact colours to check against) and a scene trained for real (the
turntable, 200 steps at 64x64, about 35 s of the file's time). Name resolution is disabled
in the browser and every request is recorded: both pages must load from the viewer alone.
`make test` installs chromium (scripts/install_system_deps.sh --test).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest

from viewer.render import SplatRenderer
from viewer.run import open_run
from viewer.server import ViewerOptions, ViewerServer
from recon.testing.gaussians import QUADRANT_COLOURS
from recon.testing.runs import make_run

CHROMIUM = os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no network beyond the viewer
]
TOKEN = "browser-test-token"

if not Path(CHROMIUM).is_file():
    pytest.fail(f"{CHROMIUM} not found: run `sudo bash scripts/install_system_deps.sh --test` "
                "(Debian package chromium)", pytrace=False)
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    run = open_run(make_run(tmp_path_factory.mktemp("run"), n=3000))
    srv = ViewerServer(run, ViewerOptions(port=0, token=TOKEN)).start()
    yield srv
    srv.stop()
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run trained for real on the built-in turntable scene (24 views at 64x64, 200 steps, SH
    degree 1), written by `recon train` itself (run.json, splats.ply, cameras.json). ~35 s on 2 cores."""
    import scenes
    from recon.commands.train import cli

    data = scenes.synth("turntable", tmp_path_factory.mktemp("turntable"), views=24, res=64)
    run = tmp_path_factory.mktemp("trained-run") / "run"
    assert cli([str(data), "--out", str(run), "--steps", "200", "--sh-degree", "1", "--sh-degree-interval", "100",
                "--init-num-points", "3000", "--refine-start", "100", "--refine-every", "50", "--reset-every",
                "10000", "--refine-stop-fraction", "0.7", "--max-gaussians", "20000", "--checkpoint-every", "0",
                "--log-every-seconds", "1e9", "--eval-views", "1"]) == 0
    return run


@pytest.fixture(scope="module")
def served_trained(trained_run, served):  # after `served`: it points XDG_CACHE_HOME at a temporary folder
    srv = ViewerServer(open_run(trained_run), ViewerOptions(port=0, token=TOKEN)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with playwright_api.sync_playwright() as p:
        # A persistent context gives the fresh --user-data-dir the acceptance setup asks for.
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, ignore_https_errors=True, viewport={"width": 640, "height": 480})
        ctx.set_default_timeout(120_000)  # software WebGL on a busy 2-core machine can be slow
        ctx.requests_seen = []  # type: ignore[attr-defined]
        ctx.on("request", lambda r: ctx.requests_seen.append(r.url))
        yield ctx
        ctx.close()


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float32)


def _fixture_colour_fraction(img: np.ndarray, tol: float = 60.0) -> float:
    cols = QUADRANT_COLOURS * 255.0
    d = np.linalg.norm(img[:, :, None, :] - cols[None, None], axis=-1).min(axis=2)
    return float((d < tol).mean())


def test_webgl_runs_on_swiftshader(browser):
    page = browser.new_page()
    page.set_content("<canvas id=c></canvas>")
    info = page.evaluate("""() => { const gl = document.getElementById('c').getContext('webgl2');
        if (!gl) return null; const d = gl.getExtension('WEBGL_debug_renderer_info');
        return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : 'webgl2'; }""")
    page.close()
    assert info is not None and "SwiftShader" in info


def test_viser_page_shows_the_splats(browser, served):
    page = browser.new_page()
    resp = page.goto(served.viewer_url)
    assert resp.status == 200
    page.wait_for_selector("canvas", timeout=30_000)
    frac, t0 = 0.0, time.monotonic()
    while time.monotonic() - t0 < 120:
        page.wait_for_timeout(1000)
        frac = _fixture_colour_fraction(_png(page.screenshot()))
        if frac > 0.05:
            break
    page.close()
    # The sphere covers a good part of the view in the fixture's colours (the GUI panel has none).
    assert frac > 0.05, f"only {frac:.1%} of the viser page shows splat colours"


def test_xr_page_renders_like_the_server_rasterizer(browser, served):
    run = served.run
    cam = run.cameras[2]
    page = browser.new_page()
    page.set_viewport_size({"width": cam.width, "height": cam.height})
    resp = page.goto(served.xr_url + "&bg=000000&ui=0")
    assert resp.status == 200
    assert page.evaluate("() => window.reconXR.ready"), page.evaluate("() => window.reconXR.error")
    page.evaluate("([m, f]) => window.reconXR.setView(m, f)", [cam.c2w.ravel().tolist(), float(np.degrees(cam.fov_y))])
    page.wait_for_function("() => window.reconXR.firstPixelsMs !== null", timeout=120_000)
    f0 = page.evaluate("() => window.reconXR.frames")
    page.wait_for_function(f"() => window.reconXR.frames > {f0 + 5}", timeout=120_000)
    got = _png(page.locator("canvas").screenshot())
    # The enter-VR control is there (disabled without a headset: "VR NOT SUPPORTED").
    vr = page.locator("#VRButton")
    assert vr.count() == 1 and "VR" in (vr.text_content() or "")
    assert page.evaluate("() => window.reconXR.meta.splats.format") == "spz"
    page.close()

    ref = SplatRenderer(run.splats).render(cam.c2w, cam.K, cam.width, cam.height).astype(np.float32)
    assert got.shape == ref.shape
    m_got, m_ref = got.sum(2) > 40, ref.sum(2) > 40
    iou = (m_got & m_ref).sum() / (m_got | m_ref).sum()
    mae = np.abs(got - ref)[m_got | m_ref].mean()
    assert m_ref.mean() > 0.2  # the object fills a good part of the frame
    assert iou > 0.9, f"silhouette IoU {iou:.3f} vs recon's rasterizer"
    assert mae < 15.0, f"mean abs colour error {mae:.1f}/255 vs recon's rasterizer"
    # And the colours are the fixture's: most covered pixels are near one of its four colours.
    assert _fixture_colour_fraction(got[m_got][None], tol=45) > 0.9


def _xr_screenshot(page, srv, c2w: np.ndarray, fov_y: float, bg: str) -> np.ndarray:
    resp = page.goto(srv.xr_url + f"&bg={bg}&ui=0")
    assert resp.status == 200
    assert page.evaluate("() => window.reconXR.ready"), page.evaluate("() => window.reconXR.error")
    page.evaluate("([m, f]) => window.reconXR.setView(m, f)", [c2w.ravel().tolist(), float(np.degrees(fov_y))])
    page.wait_for_function("() => window.reconXR.firstPixelsMs !== null", timeout=120_000)
    f0 = page.evaluate("() => window.reconXR.frames")
    page.wait_for_function(f"() => window.reconXR.frames > {f0 + 5}", timeout=120_000)
    return _png(page.locator("canvas").screenshot())


def test_xr_page_renders_a_trained_scene_like_the_server(browser, served_trained):
    """The WebXR page (Spark, SPZ-quantised splats) on splats that came out of real training: its
    silhouette and colours from a training camera match recon's rasterizer from that camera.

    Both are compared over black and over white backgrounds, which also gives the page's coverage
    (alpha) per pixel. Measured (2-core machine at load 5, SwiftShader, 192x192, 2.6k Gaussians):
    silhouette IoU 0.986, mean |alpha error| 0.009, colour MAE on the object 3.1/255 (black) and
    3.2/255 (white). The bars (IoU > 0.85, alpha error < 0.05, MAE < 12/255) leave room for SPZ
    quantisation and Spark's blending while failing on a wrong pose, axis flip, FOV, SH or colour bug.
    """
    run = served_trained.run
    cam = [c for c in run.cameras if c.split == "train"][3]
    scale = 3  # trained at 64x64; compared at 192x192 (same camera, finer pixels)
    K = cam.K.copy()
    K[:2] *= scale
    w, h = cam.width * scale, cam.height * scale
    renderer = SplatRenderer(run.splats)
    alpha = renderer.render(cam.c2w, K, w, h, mode="Alpha")[..., 0].astype(np.float32) / 255.0
    page = browser.new_page()
    page.set_viewport_size({"width": w, "height": h})
    got = {bg: _xr_screenshot(page, served_trained, cam.c2w, cam.fov_y, bg) for bg in ("000000", "ffffff")}
    page.close()
    ref = {bg: renderer.render(cam.c2w, K, w, h, background=rgb).astype(np.float32)
           for bg, rgb in (("000000", (0.0, 0.0, 0.0)), ("ffffff", (1.0, 1.0, 1.0)))}
    if os.environ.get("RECON_TEST_DUMP"):
        from PIL import Image

        Image.fromarray(np.concatenate([np.concatenate([got[b], ref[b]], 1) for b in got], 0).astype(np.uint8)
                        ).save(os.environ["RECON_TEST_DUMP"])
    # The page's coverage (alpha) from its two screenshots: over black it shows a*c, over white
    # a*c + (1 - a); the rasterizer gives its alpha directly.
    a_got = 1.0 - (got["ffffff"] - got["000000"]).mean(axis=2) / 255.0
    m_got, m_ref = a_got > 0.5, alpha > 0.5
    iou = float((m_got & m_ref).sum() / max((m_got | m_ref).sum(), 1))
    a_err = float(np.abs(a_got - alpha).mean())
    mae = {b: float(np.abs(got[b] - ref[b])[m_ref].mean()) for b in got}
    print(f"trained scene, XR page vs recon rasterizer: silhouette IoU {iou:.3f} (object {m_ref.mean():.0%} "
          f"of the frame), mean |alpha error| {a_err:.3f}, colour MAE on the object {mae['000000']:.1f}/255 "
          f"(black) {mae['ffffff']:.1f}/255 (white)")
    assert m_ref.mean() > 0.1, f"the object covers only {m_ref.mean():.1%} of the view"
    assert iou > 0.85, f"silhouette IoU {iou:.3f} vs recon's rasterizer"
    assert a_err < 0.05, f"mean |alpha error| {a_err:.3f} vs recon's rasterizer"
    for b, e in mae.items():
        assert e < 12.0, f"bg #{b}: mean abs colour error {e:.1f}/255 on the object vs recon's rasterizer"


def test_token_refused_without_it(browser, served):
    page = browser.new_page()
    bare = served.xr_url.split("?")[0]
    browser.clear_cookies()
    assert page.goto(bare).status == 403
    assert "forbidden" in page.content()
    assert page.goto(served.viewer_url.split("?")[0]).status == 403
    # With the token the page loads, and the cookie it sets lets later requests through.
    assert page.goto(served.xr_url).status == 200
    assert page.goto(bare).status == 200
    page.close()


def test_traversal_refused_from_the_browser(browser, served):
    page = browser.new_page()
    origin = served.xr_url.split("/xr")[0]
    for target in ["/vendor/%2e%2e/%2e%2e/server.py", "/xr/..%2fserver.py", "/run/%2e%2e/splats.ply"]:
        # (Chromium normalises dot segments before sending; the raw-socket tests in
        # test_viewer_server.py check the 400 for requests that keep them.)
        r = page.request.get(origin + target + f"?token={TOKEN}")
        assert r.status in (400, 404), target
        assert b"import" not in r.body()
    page.close()


def test_everything_came_from_the_viewer(browser, served):
    # Runs last in this module: every request the pages made went to the viewer's own origins.
    seen = browser.requests_seen
    assert any("/vendor/spark/" in u for u in seen) and any(u.startswith("ws") or "/run/splats" in u for u in seen)
    foreign = [u for u in seen if not (u.startswith(("http://127.0.0.1:", "https://127.0.0.1:", "ws://127.0.0.1:",
                                                      "data:", "blob:", "about:")))]
    assert foreign == []
