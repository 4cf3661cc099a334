"""`recon view` against other origins: Origin, Sec-Fetch-Site and Host checks on every port and route.

Two parts. Raw clients (sockets, the `websockets` client) send exactly the headers a browser would
send from another page, on the HTTP and the HTTPS port, with and without a token; everything the
viewer serves (viser's page and websocket, the WebXR page, the vendored scripts, the run's splats,
SPZ, cameras and scene metadata) must answer 403, while the viewer's own origins still get the
model. Then headless Chromium (as in test_viewer_browser.py) opens a page on a *second* localhost
origin (another port) whose script tries the viewer's websocket and its data routes, after the user
opened the viewer (so the browser holds the token cookie, which browsers send to every port of the
same host), and must read nothing, while the viewer's own pages still load and stream the model.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest

from viewer.run import open_run
from viewer.server import ViewerOptions, ViewerServer
from recon.testing.runs import make_run

TOKEN = "security-test-token"
N = 3000
WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
              "Sec-WebSocket-Version": "13"}


@pytest.fixture(scope="module", autouse=True)
def cache_home(tmp_path_factory):
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), n=N, sh_degree=1)


@pytest.fixture(scope="module", params=["token", "no-token"])
def viewer(request, run_dir):
    token = TOKEN if request.param == "token" else None
    srv = ViewerServer(open_run(run_dir), ViewerOptions(port=0, token=token)).start()
    yield srv
    srv.stop()


def auth(srv) -> dict:
    return {"Cookie": f"recon_token={srv.token}"} if srv.token else {}


def request(port: int, target: str, headers: dict | None = None, tls_ca: Path | None = None,
            host: str | None = "127.0.0.1", method: str = "GET", read: int | None = None) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request with exactly these headers (``host=None``: no Host header); reads the
    whole response, or at most ``read`` bytes of it (a websocket answer stays open)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls_ca is not None:
        ctx = ssl.create_default_context(cafile=str(tls_ca))
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    h = ({"Host": f"{host}:{port}"} if host else {}) | {"Connection": "close"} | (headers or {})
    sock.sendall((f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                  + "\r\n").encode())
    data = b""
    try:
        while read is None or len(data) < read:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if read is not None and b"\r\n\r\n" in data:
                break
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs.setdefault(k.strip().lower(), v.strip())
    return status, hdrs, body


def ports(srv) -> list[tuple[str, int, Path | None]]:
    """(scheme, port, CA file for TLS) for each port the viewer serves."""
    return [("http", srv.gateway.port, None), ("https", srv.gateway.https_port, srv.certificate.cert)]


# Every route kind: viser's page and a file of its client, the WebXR page and its script, the
# vendored code, the run's data. (The splat route's name follows the served format.)
def targets(srv) -> list[str]:
    return ["/", "/index.html", "/xr", "/xr/xr.js", "/vendor/three/LICENSE", "/run/scene.json",
            f"/run/splats.{srv._fmt}", "/run/cameras.json"]


def foreign_origins(srv, scheme: str, port: int) -> list[str]:
    other = "https" if scheme == "http" else "http"
    return ["http://evil.example", "https://evil.example", "null",
            f"{scheme}://127.0.0.1:{port + 1000}",  # another localhost origin (another port)
            f"{scheme}://localhost:{port + 1000}",
            f"{other}://127.0.0.1:{port}",  # right port, wrong scheme: not an origin the viewer serves
            f"{scheme}://evil.example:{port}",  # DNS rebinding: the page's own name on the viewer's port
            f"{scheme}://127.0.0.1.evil.example:{port}", f"{scheme}://127.0.0.1:{port}@evil.example",
            f"{scheme}://127.0.0.1:{port}/path", "chrome-extension://abcdef", "file://"]


def no_cors_headers(hdrs: dict) -> bool:
    return not any(k.startswith("access-control-") for k in hdrs)


def test_foreign_origin_refused_on_every_route_and_port(viewer, capsys):
    before = len(viewer.gateway.refused)
    for scheme, port, ca in ports(viewer):
        for origin in foreign_origins(viewer, scheme, port):
            for target in targets(viewer):
                status, hdrs, body = request(port, target, {"Origin": origin, **auth(viewer)}, tls_ca=ca)
                assert status == 403, (scheme, origin, target, status)
                assert body.startswith(b"forbidden: cross-origin request from"), body[:200]
                assert no_cors_headers(hdrs) and hdrs["cross-origin-resource-policy"] == "same-origin"
    n = len(ports(viewer)) * len(foreign_origins(viewer, "http", 1)) * len(targets(viewer))
    refused = viewer.gateway.refused[before:]
    assert len(refused) == n and all("cross-origin request from" in r[2] for r in refused)
    assert ("GET", f"/run/splats.{viewer._fmt}", 403) in viewer.gateway.requests
    err = capsys.readouterr().err  # reported on stderr, one line per kind per 10 s: a page cannot flood it
    assert "viewer: refused GET /: cross-origin request from 'http://evil.example'" in err
    assert 1 <= err.count("viewer: refused") <= 5 < n


def test_own_origins_work_on_every_route_and_port(viewer):
    for scheme, port, ca in ports(viewer):
        for origin in (f"http://127.0.0.1:{viewer.gateway.port}", f"http://localhost:{viewer.gateway.port}",
                       f"https://127.0.0.1:{viewer.gateway.https_port}", f"http://[::1]:{viewer.gateway.port}"):
            for target in targets(viewer):
                h = {"Origin": origin, "Sec-Fetch-Site": "same-origin", **auth(viewer)}
                status, hdrs, body = request(port, target, h, tls_ca=ca)
                assert status == 200, (scheme, origin, target, status, body[:200])
                assert no_cors_headers(hdrs)
    status, _, body = request(viewer.gateway.port, f"/run/splats.{viewer._fmt}",
                              {"Origin": f"http://127.0.0.1:{viewer.gateway.port}", **auth(viewer)})
    assert body == viewer.splats_file.read_bytes()


def _ws_connect(srv, scheme: str, port: int, origin: str | None, headers: dict):
    import viser
    from websockets.sync.client import connect

    ctx = None
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=str(srv.certificate.cert))
    url = f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{port}/"
    return connect(url, origin=origin, additional_headers=headers, ssl=ctx, open_timeout=20, max_size=None,
                   compression=None, subprotocols=[f"viser-v{viser.__version__}"])  # as viser's client


def _ws_bytes(ws, want: int, timeout: float = 60.0) -> int:
    import time

    got, end = 0, time.monotonic() + timeout
    while got < want and time.monotonic() < end:
        try:
            msg = ws.recv(timeout=max(0.1, end - time.monotonic()))
        except TimeoutError:
            break
        got += len(msg)
    return got


def _raw_ws_bytes(srv, port: int, origin: str, ca: Path, want: int, timeout: float = 60.0) -> int:
    """Open viser's websocket over TLS with a raw handshake; bytes of frames received (up to ``want``)."""
    import time

    import viser

    sock = ssl.create_default_context(cafile=str(ca)).wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=timeout), server_hostname="127.0.0.1")
    h = {"Host": f"127.0.0.1:{port}", **WS_HEADERS, "Sec-WebSocket-Protocol": f"viser-v{viser.__version__}",
         "Origin": origin, **auth(srv)}
    sock.sendall(("GET / HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode())
    data, end = b"", time.monotonic() + timeout
    try:
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < want:
            if time.monotonic() > end:
                break
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return len(frames)


def test_websocket_from_foreign_origin_refused_own_origin_gets_the_model(viewer):
    from websockets.exceptions import InvalidStatus

    for scheme, port, ca in ports(viewer):
        for origin in foreign_origins(viewer, scheme, port)[:7]:
            if scheme == "http":
                with pytest.raises(InvalidStatus) as e:
                    _ws_connect(viewer, scheme, port, origin, auth(viewer))
                assert e.value.response.status_code == 403, (scheme, origin)
                assert b"cross-origin" in e.value.response.body
            else:  # websockets 16's sync client now and then stalls on TLS (EOFError in its reader)
                status, hdrs, body = request(port, "/", {**WS_HEADERS, "Origin": origin, **auth(viewer)}, tls_ca=ca)
                assert status == 403 and "sec-websocket-accept" not in hdrs and b"cross-origin" in body, origin
        # The viewer's own page: the handshake is accepted and the splats stream (viser sends
        # centres, covariances and colours, more than 16 bytes per Gaussian).
        own = f"{scheme}://127.0.0.1:{port}"
        if scheme == "http":
            with _ws_connect(viewer, scheme, port, own, auth(viewer)) as ws:
                assert _ws_bytes(ws, 16 * N) >= 16 * N
        else:
            assert _raw_ws_bytes(viewer, port, own, ca, 16 * N) >= 16 * N
    # A raw client without Origin keeps today's rules: accepted with the token (or without one on
    # loopback), refused without it.
    with _ws_connect(viewer, "http", viewer.gateway.port, None, auth(viewer)) as ws:
        assert _ws_bytes(ws, 16 * N) >= 16 * N
    if viewer.token:
        with pytest.raises(InvalidStatus) as e:
            _ws_connect(viewer, "http", viewer.gateway.port, None, {})
        assert e.value.response.status_code == 403


def test_raw_websocket_handshake_with_foreign_origin_gets_no_upgrade(viewer):
    for scheme, port, ca in ports(viewer):
        status, hdrs, body = request(port, "/", {**WS_HEADERS, "Origin": "http://evil.example", **auth(viewer)},
                                     tls_ca=ca)
        assert status == 403 and "sec-websocket-accept" not in hdrs and b"cross-origin" in body
        status, hdrs, _ = request(port, "/", {**WS_HEADERS, "Origin": f"{scheme}://127.0.0.1:{port}", **auth(viewer)},
                                  tls_ca=ca, read=1)
        assert status == 101 and "sec-websocket-accept" in hdrs


def test_port_forward_keeps_working_other_ports_do_not(viewer):
    """Behind `ssh -L 9000:127.0.0.1:PORT` the browser's origin is http://localhost:9000 and so is the
    Host it sends: the request's own origin is accepted; a page on any other port is not."""
    port, data = viewer.gateway.port, f"/run/splats.{viewer._fmt}"
    h = {"Origin": "http://localhost:9000", **auth(viewer)}
    status, _, body = _request_host(port, data, h, "localhost:9000")
    assert status == 200 and body == viewer.splats_file.read_bytes()
    for origin in ("http://localhost:9001", "https://localhost:9000", "http://127.0.0.1:9000"):
        assert _request_host(port, data, {**h, "Origin": origin}, "localhost:9000")[0] == 403, origin
    assert _request_host(port, data, h, "evil.example:9000")[0] == 403  # the Host check still applies
    assert _request_host(port, data, h, "localhost")[0] == 403  # Host without a port means port 80


def _request_host(port: int, target: str, headers: dict, host_header: str) -> tuple[int, dict, bytes]:
    return request(port, target, {"Host": host_header, **headers}, host=None)


def test_cross_site_fetch_metadata_refused(viewer):
    """Browsers send no Origin on no-cors GETs (``<img>``, ``<script>``, ``fetch(mode: "no-cors")``)
    but say where they come from in Sec-Fetch-Site; only a top-level navigation (following a link
    to the viewer) may come from another site."""
    port, data = viewer.gateway.port, f"/run/splats.{viewer._fmt}"
    for site in ("same-site", "cross-site"):
        for mode, dest in (("no-cors", "empty"), ("no-cors", "image"), ("no-cors", "script"), ("cors", "empty"),
                           ("navigate", "iframe"), ("navigate", "frame"), ("websocket", "websocket")):
            h = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest, **auth(viewer)}
            for target in (data, "/run/scene.json", "/run/cameras.json", "/", "/xr"):
                status, hdrs, body = request(port, target, h)
                assert status == 403 and f"{site} request refused".encode() in body, (site, mode, dest, target)
        nav = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", **auth(viewer)}
        assert request(port, "/xr", nav)[0] == 200  # a link to the viewer from anywhere opens it
        assert request(port, "/xr", nav, method="POST")[0] == 403  # but a form posted to it does not
    for site in ("same-origin", "none"):
        h = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty", **auth(viewer)}
        status, _, body = request(port, data, h)
        assert status == 200 and body == viewer.splats_file.read_bytes()


def test_state_changing_and_preflight_requests_from_other_origins_refused(viewer):
    port = viewer.gateway.port
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        h = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST", "Content-Length": "0",
             **auth(viewer)}
        for target in ("/", "/run/splats.spz", "/run/cameras.json"):
            status, hdrs, _ = request(port, target, h, method=method)
            assert status == 403 and no_cors_headers(hdrs), (method, target)


def test_host_checked_in_every_mode(viewer):
    port = viewer.gateway.port
    for host in ("evil.example", "127.0.0.1.evil.example", "localhost.", "0.0.0.0", "127.0.0.2", "[::2]"):
        status, _, body = request(port, "/run/scene.json", auth(viewer), host=host)
        assert status == 403 and b"not an address of this viewer" in body, host
    assert request(port, "/run/scene.json", auth(viewer), host=None)[0] == 403  # no Host header at all
    for host in ("127.0.0.1", "localhost", "LOCALHOST", "[::1]"):
        assert request(port, "/run/scene.json", auth(viewer), host=host)[0] == 200, host
    if viewer.token:  # the token alone is not enough any more
        assert request(port, f"/run/scene.json?token={TOKEN}", host="evil.example")[0] == 403
        assert request(port, "/run/scene.json")[0] == 403
    else:
        assert request(port, "/run/scene.json")[0] == 200  # raw clients on loopback: as before


def test_no_permissive_cors_headers_anywhere(viewer):
    """Whatever is asked, by whom, no response lets another origin read it."""
    seen = 0
    for scheme, port, ca in ports(viewer):
        for origin in (None, "http://evil.example", f"{scheme}://127.0.0.1:{port}"):
            for target in targets(viewer) + ["/nope", "/vendor/nope.js"]:
                for method in ("GET", "HEAD", "OPTIONS"):
                    h = {**auth(viewer), **({"Origin": origin} if origin else {})}
                    status, hdrs, _ = request(port, target, h, tls_ca=ca, method=method)
                    assert no_cors_headers(hdrs), (scheme, origin, target, method, hdrs)
                    assert hdrs.get("cross-origin-resource-policy") == "same-origin", (target, hdrs)
                    assert hdrs.get("x-frame-options") == "DENY", (target, hdrs)
                    seen += status == 200
    assert seen > 20  # the allowed ones were served too (viser's page and files included)


def test_wildcard_bind_and_extra_names(run_dir):
    """--host 0.0.0.0: this machine's names and addresses are its own, nothing else; --allow-host adds one."""
    opts = ViewerOptions(host="0.0.0.0", port=0, allow_hosts=("viewer.test",), splat_format="ply")
    with ViewerServer(open_run(run_dir), opts) as srv:
        hosts = srv.gateway.hosts
        assert {"localhost", "127.0.0.1", "::1", "viewer.test", socket.gethostname().lower()} <= hosts
        assert not any(h in hosts for h in ("0.0.0.0", "evil.example", ""))
        port, q = srv.gateway.port, f"?token={srv.token}"
        assert request(port, "/run/scene.json" + q, host="viewer.test")[0] == 200
        h = {"Origin": f"http://viewer.test:{port}"}
        assert request(port, "/run/scene.json" + q, h, host="viewer.test")[0] == 200
        assert request(port, "/run/scene.json" + q, {"Origin": "http://viewer.tests:%d" % port})[0] == 403
        assert request(port, "/run/scene.json" + q, host="evil.example")[0] == 403
    with ViewerServer(open_run(run_dir), ViewerOptions(port=0, splat_format="ply")) as srv:
        assert srv.gateway.hosts == {"localhost", "127.0.0.1", "::1"}


def test_xr_spz_keeps_the_antialiased_flag(run_dir):
    """The SPZ made for the XR page says whether the run was trained antialiased, as `recon export` does,
    and a cached conversion of the same PLY with the other flag is not reused."""
    from exporters.spz import decode_spz

    got = {}
    for aa in (False, True, False):
        r = open_run(run_dir)
        r.antialiased = aa
        with ViewerServer(r, ViewerOptions(port=0, splat_format="spz")) as srv:
            _, _, body = request(srv.gateway.port, "/run/splats.spz")
            got[aa] = srv.splats_file
            assert decode_spz(body)[1]["antialiased"] is aa
    assert got[True] != got[False]


# ----------------------------------------------------------------------------- in a real browser

ATTACK_JS = r"""
async function tryWs(url, protocol) {
  return new Promise((resolve) => {
    let ws, opened = false, bytes = 0, done = false;
    const finish = () => { if (!done) { done = true; try { ws.close(); } catch (e) {} resolve({opened, bytes}); } };
    try { ws = new WebSocket(url, [protocol]); } catch (e) { return resolve({opened, bytes, error: String(e)}); }
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { opened = true; };
    ws.onmessage = (m) => { bytes += m.data.byteLength || m.data.length || 0; };
    ws.onclose = finish;
    setTimeout(finish, 8000);
  });
}
async function tryFetch(url, opts) {
  try {
    const r = await fetch(url, opts);
    const b = await r.arrayBuffer();
    return {ok: true, type: r.type, status: r.status, bytes: b.byteLength};
  } catch (e) { return {ok: false, bytes: 0, error: String(e)}; }
}
window.attack = async (bases, routes, protocol) => {
  const out = {};
  for (const base of bases) {
    const ws = base.replace(/^http/, "ws") + "/";
    out[ws] = await tryWs(ws, protocol);
    for (const r of routes) {
      for (const [name, opts] of [["cors", {credentials: "include"}], ["cors-anon", {}],
                                  ["no-cors", {mode: "no-cors", credentials: "include"}]]) {
        out[`${name} ${base}${r}`] = await tryFetch(base + r, opts);
      }
    }
  }
  return out;
};
"""


@pytest.fixture(scope="module")
def attacker_origin():
    """A second localhost origin: a tiny HTTP server on another port serving the attacking page."""
    page = f"<!doctype html><html><body><p>not the viewer</p><script>{ATTACK_JS}</script></body></html>".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    from playwright.sync_api import sync_playwright

    from test_viewer_browser import CHROMIUM, CHROMIUM_ARGS  # same browser, same launch options

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, ignore_https_errors=True, viewport={"width": 640, "height": 480})
        ctx.set_default_timeout(120_000)
        yield ctx
        ctx.close()


def test_browser_page_on_another_origin_cannot_read_the_model(browser, viewer, attacker_origin):
    import viser

    # The user has the viewer open (with a token, the browser now holds its cookie: cookies are
    # per host, not per port, so the browser would send it with the other origin's requests too).
    browser.clear_cookies()
    own = browser.new_page()
    assert own.goto(viewer.viewer_url).status == 200
    if viewer.token:
        assert any(c["name"] == "recon_token" and c["value"] == TOKEN for c in browser.cookies())

    before = len(viewer.gateway.refused)
    page = browser.new_page()
    assert page.goto(attacker_origin + "/attack.html").status == 200
    bases = [f"http://127.0.0.1:{viewer.gateway.port}", f"https://127.0.0.1:{viewer.gateway.https_port}"]
    routes = [f"/run/splats.{viewer._fmt}", "/run/scene.json", "/run/cameras.json", "/"]
    # The script speaks viser's protocol (its client's subprotocol), as a real attack would.
    got = page.evaluate("([b, r, p]) => window.attack(b, r, p)", [bases, routes, f"viser-v{viser.__version__}"])
    page.close()

    ws = {k: v for k, v in got.items() if k.startswith("ws")}
    assert len(ws) == 2 and all(not v["opened"] and v["bytes"] == 0 for v in ws.values()), ws
    fetched = {k: v for k, v in got.items() if not k.startswith("ws")}
    assert len(fetched) == 2 * len(routes) * 3
    for k, v in fetched.items():
        # Either the fetch fails (CORS) or the browser hands the script an opaque, empty response.
        assert v["bytes"] == 0 and (not v["ok"] or v["type"] == "opaque"), (k, v)
    # And the viewer itself refused them (not only the browser's CORS rules): the websocket
    # handshakes by Origin, the no-cors reads by Sec-Fetch-Site.
    refused = viewer.gateway.refused[before:]
    assert sum(r[1] == "/" and f"from '{attacker_origin}'" in r[2] for r in refused) >= 2, refused
    assert sum(r[1] == f"/run/splats.{viewer._fmt}" for r in refused) >= 2 * 3, refused

    # The viewer's own pages still work: viser's page streams the model over its websocket ...
    frames: list[int] = []
    own2 = browser.new_page()
    own2.on("websocket", lambda w: w.on("framereceived", lambda f: frames.append(len(f) if f else 0)))
    assert own2.goto(viewer.viewer_url).status == 200
    for _ in range(120):
        if sum(frames) >= 16 * N:
            break
        own2.wait_for_timeout(500)
    assert sum(frames) >= 16 * N, f"viser page got {sum(frames)} bytes over its websocket"
    own2.close()
    own.close()
    # ... and the WebXR page loads the splats (over HTTPS with the token, over HTTP without).
    for url in ([viewer.xr_url] if viewer.token else [viewer.xr_http_url]):
        xr = browser.new_page()
        assert xr.goto(url).status == 200
        assert xr.evaluate("() => window.reconXR.ready"), xr.evaluate("() => window.reconXR.error")
        assert xr.evaluate("() => window.reconXR.bytes") == viewer.splats_file.stat().st_size
        meta = xr.evaluate("() => window.reconXR.meta")
        assert meta["splats"]["count"] == N and json.dumps(meta)
        xr.close()
