"""`recon view` on a dynamic (splat4d) run, in headless Chromium: the operator viewer's time slider
and the WebXR page's sequence playback, on a scene trained in the test.

The scene is a capture stage: 8 fixed cameras x 5 times at 40x40 (RGBA), a ring of 24 static
blobs and a box of 60 blobs that slides 1.1 units along x over time [0, 1]. `recon train --method
splat4d` trains it for 400 steps on one thread (about 12 s of training, 28-29 dB on the held-out
camera). Frames at two times are compared inside the box's ground-truth footprint (where the box is
at either time, from the ground-truth Gaussians) and away from it: they must differ there and match
elsewhere. A viewer that ignored the time (showing the model at time 0 twice, or the canonical
Gaussians) fails the first bar; one that re-rendered the whole scene differently fails the second.
The helpers (Chromium, its flags, the browser fixture) are test_viewer_browser.py's.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_viewer_browser import CHROMIUM, CHROMIUM_ARGS, TOKEN, _png, browser  # noqa: F401  (fixture)

from recon.models import splats as splat_model
from recon.scene.conventions import look_at_c2w, opencv_to_opengl
from viewer.render import SplatRenderer
from viewer.run import open_run
from viewer.server import ViewerOptions, ViewerServer

RES, CAMS, TIMES, NBOX = 40, 8, 5, 60
BOX0 = np.array([-0.55, 0.0, 0.1])
SLIDE = np.array([1.1, 0.0, 0.0])
VIEW_CAM = 3  # the rig camera both pages look through (50 degrees of elevation)


def gt_splats(t: float, box_only: bool = False) -> dict:
    """The ground truth at time ``t``: a static ring of coloured blobs and a red-yellow box that
    slides by ``SLIDE * t``; ``box_only``: the box's Gaussians alone (its footprint)."""
    rng = np.random.default_rng(0)
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([np.cos(ang), np.sin(ang), np.full_like(ang, -0.2)], 1) * 1.1
    box = rng.uniform(-0.25, 0.25, (NBOX, 3)) * np.array([1.0, 0.8, 0.8]) + BOX0 + SLIDE * t
    rgb = np.concatenate([rng.uniform(0.2, 1, (len(ring), 3)),
                          np.where(np.arange(NBOX)[:, None] % 2 == 0, [[0.9, 0.1, 0.1]], [[0.9, 0.8, 0.1]])])
    means = box if box_only else np.concatenate([ring, box])
    rgb = rgb[len(ring):] if box_only else rgb
    n = len(means)
    return {"means": torch.tensor(means, dtype=torch.float32), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
            "scales": torch.full((n, 3), math.log(0.1)), "opacities": torch.full((n,), 4.0),
            "sh0": splat_model.rgb_to_sh0(torch.tensor(rgb, dtype=torch.float32))[:, None, :],
            "shN": torch.zeros(n, 0, 3)}


def rig_c2w(j: int) -> np.ndarray:
    az = 2 * math.pi * j / CAMS + 0.3
    el = math.radians(20 if j % 2 == 0 else 50)
    eye = 3.2 * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    return look_at_c2w(eye, (0, 0, 0), (0, 0, 1))


def pinhole(fov_y: float, w: int, h: int) -> np.ndarray:
    fy = 0.5 * h / math.tan(0.5 * fov_y)
    return np.array([[fy, 0, w / 2], [0, fy, h / 2], [0, 0, 1.0]])


def footprint(c2w: np.ndarray, K: np.ndarray, w: int, h: int, times) -> np.ndarray:
    """``[h, w]`` bool: where the box's ground-truth Gaussians cover the view (alpha > 0.5) at any of ``times``."""
    vm = torch.tensor(np.linalg.inv(c2w), dtype=torch.float32)
    out = np.zeros((h, w), bool)
    for t in times:
        _, a, _ = splat_model.render_splats(gt_splats(t, True), vm, torch.tensor(K, dtype=torch.float32), w, h, 0,
                                            torch.zeros(3))
        out |= a[..., 0].numpy() > 0.5
    return out


def moved_and_still(a: np.ndarray, b: np.ndarray, fp: np.ndarray, margin: int) -> tuple[float, float]:
    """Mean |a - b| (0-255, over RGB) inside the footprint ``fp``, and away from it (``margin`` px)."""
    from scipy.ndimage import binary_dilation

    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2)
    away = ~binary_dilation(fp, iterations=margin)
    return float(d[fp].mean()), float(d[away].mean())


@pytest.fixture(scope="module")
def dynamic_run(tmp_path_factory):
    """A capture stage (nerfstudio folder, RGBA images, camera 0 held out) trained by `recon train
    --method splat4d`: 400 steps, one thread."""
    from recon.commands.train import cli

    root = tmp_path_factory.mktemp("stage")
    (root / "images").mkdir()
    f = 0.5 * RES / math.tan(math.radians(25))
    K = torch.tensor([[f, 0, RES / 2], [0, f, RES / 2], [0, 0, 1.0]])
    frames, test = [], []
    for ti in range(TIMES):
        t = ti / (TIMES - 1)
        g = gt_splats(t)
        for j in range(CAMS):
            c2w = rig_c2w(j)
            img, a, _ = splat_model.render_splats(g, torch.tensor(np.linalg.inv(c2w), dtype=torch.float32), K,
                                                  RES, RES, 0, torch.zeros(3))
            a = a.clamp(0, 1)
            rgba = torch.cat([(img / a.clamp_min(1e-4)).clamp(0, 1) * (a > 1e-4), a], -1)
            name = f"images/c{j}_t{ti}.png"
            Image.fromarray((rgba.numpy() * 255).round().astype(np.uint8), "RGBA").save(root / name)
            frames.append({"file_path": name, "time": t, "transform_matrix": opencv_to_opengl(c2w).tolist()})
            if j == 0:
                test.append(name)
    doc = {"camera_model": "OPENCV", "fl_x": f, "fl_y": f, "cx": RES / 2, "cy": RES / 2, "w": RES, "h": RES,
           "frames": frames, "train_filenames": [fr["file_path"] for fr in frames if fr["file_path"] not in test],
           "test_filenames": test, "val_filenames": test}
    (root / "transforms.json").write_text(json.dumps(doc))
    run = tmp_path_factory.mktemp("run4d") / "run"
    assert cli([str(root), "--method", "splat4d", "--out", str(run), "--steps", "400", "--threads", "1",
                "--sh-degree", "0", "--init-points", "random", "--init-num-points", "1500", "--refine-start", "60",
                "--refine-every", "50", "--reset-every", "10000", "--refine-stop-fraction", "0.6",
                "--max-gaussians", "4000", "--warmup-steps", "100", "--num-nodes", "64", "--lr-node-trans", "0.01",
                "--lr-node-rot", "0.01", "--rebind-every", "50", "--keyframes", str(TIMES),
                "--checkpoint-every", "0", "--log-every-seconds", "1e9", "--eval-views", "1"]) == 0
    return run


@pytest.fixture(scope="module")
def served4d(dynamic_run, tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache4d"))
    srv = ViewerServer(open_run(dynamic_run), ViewerOptions(port=0, token=TOKEN)).start()
    yield srv
    srv.stop()
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def _wait(cond, timeout: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_operator_time_slider_renders_the_run_at_that_time(browser, served4d):  # noqa: F811
    srv, ui, run = served4d, served4d.ui, served4d.run
    assert ui.plays and run.times == [0.0, 0.25, 0.5, 0.75, 1.0]
    page = browser.new_page()
    page.set_viewport_size({"width": 900, "height": 600})
    assert page.goto(srv.viewer_url).status == 200
    client = _wait(lambda: next(iter(srv.viser.get_clients().values()), None), 60, "the page's viser client")
    slider = page.locator(f'[id="{ui.time._impl.uuid}"] [role="slider"]')
    slider.wait_for(timeout=60_000)
    # Look through a rig camera, server-side colour, no frustums in the way.
    c2w = rig_c2w(VIEW_CAM)
    fov = 2 * math.atan(0.5 * RES / (0.5 * RES / math.tan(math.radians(25))))
    ui.show_cams.value = False
    ui._goto(client, c2w, fov)
    ui.res.value = 240
    ui.mode.value = "RGB (server)"

    shots, frames = {}, {}
    hide = ("() => { const s = document.createElement('style'); s.id = 'recon-test-hide'; s.textContent = "
            "'.mantine-Paper-root, .mantine-Notification-root { visibility: hidden !important; }'; "
            "document.head.appendChild(s); }")
    for key, t in (("End", 1.0), ("Home", 0.0)):
        page.evaluate("() => document.getElementById('recon-test-hide')?.remove()")  # the controls back
        slider.focus()
        page.keyboard.press(key)  # the slider in the browser: End = time 1, Home = time 0
        _wait(lambda: abs(ui.time.value - t) < 1e-9, 30, f"the slider to reach time {t}")
        _wait(lambda: client.client_id in ui.rendered and ui.rendered[client.client_id][0] == t, 60,
              f"a server render at time {t}")
        page.wait_for_timeout(1500)  # the image reaches the page
        frames[t] = ui.rendered[client.client_id][1]
        page.evaluate(hide)  # the canvas alone: the GUI panel and notifications hidden
        page.wait_for_timeout(300)
        shots[t] = _png(page.screenshot())
    info = ui.time_info.content

    # The browser's own splat renderer (RGB mode): the model at the slider's time is sent to it.
    page.evaluate("() => document.getElementById('recon-test-hide')?.remove()")
    ui.mode.value = "RGB"
    page.evaluate(hide)
    page.wait_for_timeout(2000)
    rgb_shots = {0.0: _png(page.screenshot())}
    page.evaluate("() => document.getElementById('recon-test-hide')?.remove()")
    slider.focus()
    page.keyboard.press("End")
    _wait(lambda: ui._splat_time == 1.0, 30, "the splats at time 1 to be sent to the browser")
    page.evaluate(hide)
    page.wait_for_timeout(2000)  # the browser re-sorts and draws them
    rgb_shots[1.0] = _png(page.screenshot())
    page.close()
    assert "frame 1 of 5" in info

    h, w = frames[0.0].shape[:2]
    K = pinhole(fov, w, h)
    fp = footprint(c2w, K, w, h, (0.0, 1.0))
    assert 0.03 < fp.mean() < 0.5
    # The frames the operator viewer sent are the run's own renderer at those times.
    renderer = SplatRenderer(run.splats, dynamic=run.dynamic)
    bg = tuple(np.asarray(ui.bg.value, np.float32) / 255.0)
    for t, img in frames.items():
        ref = renderer.render(c2w, K, w, h, background=bg, time=t)
        assert np.abs(img.astype(np.float32) - ref).mean() < 0.5
    moved, still = moved_and_still(frames[1.0], frames[0.0], fp, margin=6)
    # The page shows them: its screenshots (overlays hidden), resampled to the render's size.
    page_imgs = {t: np.asarray(Image.fromarray(s.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
                 for t, s in shots.items()}
    shown = [float(np.abs(page_imgs[t] - frames[t].astype(np.float32)).mean()) for t in frames]
    p_moved, p_still = moved_and_still(page_imgs[1.0], page_imgs[0.0], fp, margin=6)
    print(f"operator viewer, time 1 vs 0 ({w}x{h}): server frames differ {moved:.1f}/255 inside the box's footprint, "
          f"{still:.2f}/255 away from it; page screenshots {p_moved:.1f} / {p_still:.2f}; page vs served frame "
          f"{shown[0]:.2f}, {shown[1]:.2f}/255")
    if os.environ.get("RECON_TEST_DUMP"):
        Image.fromarray(np.concatenate([frames[0.0], frames[1.0], page_imgs[0.0].astype(np.uint8),
                                        page_imgs[1.0].astype(np.uint8)], 1)).save(os.environ["RECON_TEST_DUMP"])
    assert moved > 30.0 and p_moved > 30.0
    assert still < 4.0 and p_still < 4.0
    assert max(shown) < 8.0
    rgb = {t: np.asarray(Image.fromarray(s.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
           for t, s in rgb_shots.items()}
    b_moved, b_still = moved_and_still(rgb[1.0], rgb[0.0], fp, margin=6)
    print(f"operator viewer, RGB (browser splats) time 1 vs 0: {b_moved:.1f}/255 inside the footprint, "
          f"{b_still:.2f}/255 away from it")
    assert b_moved > 30.0 and b_still < 4.0


def test_xr_page_plays_the_sequence(browser, served4d):  # noqa: F811
    srv, run = served4d, served4d.run
    scale = 9  # the rig camera (40x40) at 360x360: room for the page's controls
    w = h = RES * scale
    c2w = rig_c2w(VIEW_CAM)
    K = pinhole(2 * math.atan(0.5 * RES / (0.5 * RES / math.tan(math.radians(25)))), w, h)
    fov_deg = float(np.degrees(2 * math.atan(0.5 * h / K[1, 1])))
    page = browser.new_page()
    page.set_viewport_size({"width": w, "height": h})
    assert page.goto(srv.xr_url + "&bg=000000").status == 200
    assert page.evaluate("() => window.reconXR.ready"), page.evaluate("() => window.reconXR.error")
    assert page.evaluate("() => window.reconXR.sequenceLoaded"), page.evaluate("() => window.reconXR.error")
    assert page.locator("#time-controls").is_visible()
    page.evaluate("([m, f]) => window.reconXR.setView(m, f)", [c2w.ravel().tolist(), fov_deg])

    def shot() -> np.ndarray:
        f0 = page.evaluate("() => window.reconXR.frames")
        page.wait_for_function(f"() => window.reconXR.frames > {f0 + 3}", timeout=120_000)
        page.evaluate("() => document.body.classList.add('hide-ui')")
        f0 = page.evaluate("() => window.reconXR.frames")
        page.wait_for_function(f"() => window.reconXR.frames > {f0 + 3}", timeout=120_000)
        img = _png(page.locator("canvas").screenshot())
        page.evaluate("() => document.body.classList.remove('hide-ui')")
        return img

    # Play once through without looping, faster than the default: the page stops on the last frame.
    page.locator("#loop").uncheck()
    page.locator("#fps").fill("8")
    page.locator("#play").click()
    page.wait_for_function("() => window.reconXR.sequenceState().playing", timeout=30_000)
    page.wait_for_function("() => !window.reconXR.sequenceState().playing", timeout=120_000)
    state_end = page.evaluate("() => window.reconXR.sequenceState()")
    got = {state_end["frameTime"]: shot()}
    # Scrub back to the start.
    page.locator("#time").fill("0")
    state_start = page.evaluate("() => window.reconXR.sequenceState()")
    got[state_start["frameTime"]] = shot()
    seq = json.loads(page.request.get(srv.xr_url.split("/xr")[0] + "/run/sequence.json").text())
    page.close()
    assert state_end["frame"] == 4 and state_end["time"] == 1.0 and state_end["loaded"] == 5
    assert state_start["frame"] == 0 and state_start["time"] == 0.0
    assert [f["time"] for f in seq["frames"]] == run.times

    fp = footprint(c2w, K, w, h, (0.0, 1.0))
    moved, still = moved_and_still(got[1.0], got[0.0], fp, margin=scale * 2)
    # Each shown frame is the run's model at its own time: nearer the rasterizer's render at that
    # time than at the other, inside the footprint.
    renderer = SplatRenderer(run.splats, dynamic=run.dynamic)
    ref = {t: renderer.render(c2w, K, w, h, time=t).astype(np.float32) for t in (0.0, 1.0)}
    err = {(t, u): float(np.abs(got[t] - ref[u]).mean(axis=2)[fp].mean()) for t in got for u in ref}
    print(f"XR page, frame at time 1 vs 0 ({w}x{h}): differ {moved:.1f}/255 inside the box's footprint, "
          f"{still:.2f}/255 away from it; vs the rasterizer inside it: " +
          ", ".join(f"page t={t:g} / render t={u:g} {e:.1f}" for (t, u), e in err.items()))
    if os.environ.get("RECON_TEST_DUMP"):
        Image.fromarray(np.concatenate([got[0.0], got[1.0], ref[0.0], ref[1.0]], 1).astype(np.uint8)).save(
            Path(os.environ["RECON_TEST_DUMP"]).with_suffix(".xr.png"))
    assert moved > 30.0
    assert still < 4.0
    for t, u in ((0.0, 1.0), (1.0, 0.0)):
        assert err[(t, t)] < 0.5 * err[(t, u)]


def test_sequence_routes_are_guarded(served4d):
    """The sequence goes through the same Host/Origin/token checks as the run's other files, and only
    the frames the manifest lists are routed."""
    import urllib.error
    import urllib.request

    origin = served4d.viewer_url.split("/?")[0]

    def get(path: str, **headers) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(origin + path, headers=headers), timeout=60) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    q = f"?token={TOKEN}"
    assert get("/run/sequence.json" + q) == 200
    assert get("/run/sequence/frame_00004.spz" + q) == 200
    assert get("/run/sequence/frame_00004.spz") == 403  # no token
    assert get("/run/sequence/frame_00004.spz" + q, Origin="http://evil.example") == 403
    assert get("/run/sequence/frame_00004.spz" + q, **{"Sec-Fetch-Site": "cross-site"}) == 403
    assert get("/run/sequence/frame_00005.spz" + q) == 404  # not a frame of this run


def test_static_runs_show_no_time_controls(browser, tmp_path):  # noqa: F811
    """The same viewer on a static run: no Time folder, no sequence routes, the XR page hides its
    time controls, and `recon view --time-samples` is refused."""
    from recon.errors import ReconError
    from recon.testing.runs import make_run
    from viewer.cli import main as view_main

    static = make_run(tmp_path / "static", n=500)
    with pytest.raises(ReconError, match="not a dynamic run"):
        view_main(static, port=0, time_samples=5)
    srv = ViewerServer(open_run(static), ViewerOptions(port=0, token=TOKEN)).start()
    try:
        assert not srv.ui.plays and not hasattr(srv.ui, "time")
        page = browser.new_page()
        assert page.goto(srv.xr_url).status == 200
        assert page.evaluate("() => window.reconXR.ready")
        assert page.evaluate("() => window.reconXR.meta.sequence") is None
        assert not page.locator("#time-controls").is_visible()
        origin = srv.xr_url.split("/xr")[0]
        assert page.request.get(origin + "/run/sequence.json").status == 404
        page.close()
    finally:
        srv.stop()
