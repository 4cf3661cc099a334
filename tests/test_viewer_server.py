"""`recon view` serving without a browser: start-up contract, token, paths, HTTPS, streaming, errors."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recon.cli import run as cli_run
from recon.errors import ReconError
from viewer.run import open_run
from viewer.server import ViewerOptions, ViewerServer
from recon.testing.runs import make_run

ROOT = Path(__file__).resolve().parents[1]


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
    return make_run(tmp_path_factory.mktemp("run"), n=3000, sh_degree=1)


@pytest.fixture(scope="module")
def server(run_dir):
    srv = ViewerServer(open_run(run_dir), ViewerOptions(port=0, token="s3cret-token")).start()
    yield srv
    srv.stop()


def request(port: int, raw_target: str, headers: dict | None = None, tls_ca: Path | None = None,
            host: str = "127.0.0.1", method: str = "GET") -> tuple[int, dict, bytes]:
    """Send one HTTP/1.1 request with the target exactly as given (no client-side normalisation)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls_ca is not None:
        ctx = ssl.create_default_context(cafile=str(tls_ca))
        sock = ctx.wrap_socket(sock, server_hostname=host)
    h = {"Host": f"{host}:{port}", "Connection": "close", **(headers or {})}
    sock.sendall((f"{method} {raw_target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                  + "\r\n").encode())
    data = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs.setdefault(k.strip().lower(), v.strip())
    return status, hdrs, body


def test_token_required_and_cookie_set(server):
    port = server.gateway.port
    assert request(port, "/")[0] == 403
    assert request(port, "/xr")[0] == 403
    assert request(port, "/run/splats.spz")[0] == 403
    assert request(port, "/?token=wrong")[0] == 403
    status, hdrs, body = request(port, "/?token=s3cret-token")
    assert status == 200 and b"<html" in body.lower()  # viser's page, through the gateway
    assert "recon_token=s3cret-token" in hdrs["set-cookie"] and "HttpOnly" in hdrs["set-cookie"]
    cookie = {"Cookie": "recon_token=s3cret-token"}
    status, _, body = request(port, "/xr", cookie)
    assert status == 200 and b"importmap" in body
    # Websocket handshakes are checked too.
    ws = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "viser-v1"}
    assert request(port, "/", ws)[0] == 403


def test_path_traversal_refused(server):
    port = server.gateway.port
    q = "?token=s3cret-token"
    for target in ["/../etc/passwd", "/vendor/../../server.py", "/vendor/%2e%2e/%2e%2e/server.py",
                   "/xr/..%2f..%2fserver.py", "/vendor/three/..\\..\\server.py", "/run/../cameras.json",
                   "/vendor/./three/LICENSE", "/xr/%00"]:
        status, _, body = request(port, target + q)
        assert status == 400, (target, status)
        assert b"viewer" not in body  # nothing served
    # Only the run's own files: not other files of the run folder, nor arbitrary vendor paths.
    assert request(port, "/run/config.json" + q)[0] == 404
    assert request(port, "/vendor/nope.js" + q)[0] == 404
    assert request(port, "/vendor/three/LICENSE" + q)[0] == 200


def test_run_files_streamed_whole(server, run_dir):
    port = server.gateway.port
    cookie = {"Cookie": "recon_token=s3cret-token"}
    status, hdrs, body = request(port, "/run/splats.spz", cookie)
    assert status == 200 and int(hdrs["content-length"]) == len(body) == server.splats_file.stat().st_size
    assert body == server.splats_file.read_bytes()
    status, _, body = request(port, "/run/cameras.json", cookie)
    assert status == 200 and body == (run_dir / "cameras.json").read_bytes()
    status, _, body = request(port, "/run/scene.json", cookie)
    assert status == 200 and b'"scene_to_xr"' in body
    status, hdrs, body = request(port, "/run/splats.spz", cookie, method="HEAD")
    assert status == 200 and body == b"" and int(hdrs["content-length"]) > 0


def test_https_with_printed_fingerprint(server):
    import hashlib

    port = server.gateway.https_port
    status, _, body = request(port, "/xr?token=s3cret-token", tls_ca=server.certificate.cert)
    assert status == 200 and b"importmap" in body
    # The fingerprint printed is the one the server presents.
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1") as s:
        der = s.getpeercert(binary_form=True)
    fp = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert fp == server.certificate.fingerprint
    assert any(line == f"xr: {server.xr_url}" for line in server.banner())
    assert server.xr_url.startswith("https://127.0.0.1:") and server.xr_url.endswith("/xr?token=s3cret-token")


def test_viser_port_not_reachable_around_the_gateway(server):
    status, _, _ = request(server.viser.get_port(), "/")
    assert status == 403


def test_no_token_loopback_rejects_foreign_host_header(run_dir):
    with ViewerServer(open_run(run_dir), ViewerOptions(port=0)) as srv:
        assert srv.token is None
        assert request(srv.gateway.port, "/xr")[0] == 200
        assert request(srv.gateway.port, "/xr", host="localhost")[0] == 200
        assert request(srv.gateway.port, "/xr", host="evil.example")[0] == 403  # DNS rebinding


def test_public_host_generates_token(run_dir):
    with ViewerServer(open_run(run_dir), ViewerOptions(host="0.0.0.0", port=0, splat_format="ply")) as srv:
        assert srv.token_generated and len(srv.token) >= 16
        assert any(line.startswith("token: ") for line in srv.banner())
        assert request(srv.gateway.port, "/xr")[0] == 403
        assert request(srv.gateway.port, f"/xr?token={srv.token}")[0] == 200
        assert srv.splats_file == run_dir / "splats.ply"


def test_port_in_use_is_a_recon_error(run_dir, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ReconError, match="in use"):
            ViewerServer(open_run(run_dir), ViewerOptions(port=port)).start()
        assert cli_run(["view", str(run_dir), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use" in err[0]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_cli_prints_urls_and_stops_on_ctrl_c(run_dir, tmp_path):
    """`recon view` prints both URLs, serves, and exits 0 on Ctrl-C (SIGINT).

    The child starts with SIGINT *ignored*, as it is for anything run from a background job of a
    non-interactive shell (`make test > log &`): Python then installs no KeyboardInterrupt
    handler, and before `recon view` installed its own the process ignored Ctrl-C and served
    forever. Both pipes are drained by threads, so a chatty child cannot block on a full pipe, and
    every wait is bounded.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "recon.cli", "view", str(run_dir), "--port", "0"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=_ignore_sigint)
    out_lines: list[str] = []
    err_lines: list[str] = []
    readers = [threading.Thread(target=lambda f=f, acc=acc: acc.extend(iter(f.readline, "")), daemon=True)
               for f, acc in ((p.stdout, out_lines), (p.stderr, err_lines))]
    for t in readers:
        t.start()

    def output() -> str:
        return ("".join(out_lines) + "".join(err_lines))[-3000:]

    try:
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 120  # start-up imports torch and viser: slow on a loaded machine
        while not {"viewer", "xr"} <= set(lines) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            for line in list(out_lines):
                key, _, url = line.strip().partition(": ")
                lines[key] = url
        assert {"viewer", "xr"} <= set(lines), f"no URLs printed (exit code {p.poll()}); output: {output()}"
        assert lines["viewer"].startswith("http://127.0.0.1:")
        assert lines["xr"].startswith("https://127.0.0.1:") and lines["xr"].endswith("/xr")
        port = int(lines["viewer"].split(":")[2].strip("/"))
        assert request(port, "/")[0] == 200
        assert request(port, "/run/scene.json")[0] == 200
        t_int = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            rc = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
            raise AssertionError(f"recon view did not stop within 60 s of Ctrl-C; output: {output()}")
        for t in readers:
            t.join(timeout=10)
        assert rc == 0, output()
        assert "viewer: stopped" in "".join(err_lines), output()
        print(f"recon view stopped {time.monotonic() - t_int:.1f} s after Ctrl-C")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def test_exit_watchdog_ends_a_stuck_shutdown():
    """If a worker thread would keep the process alive after shutdown, the watchdog ends it."""
    code = ("import threading, time\n"
            "from viewer.cli import _exit_if_stuck\n"
            "threading.Thread(target=time.sleep, args=(600,), daemon=False).start()  # a stuck worker\n"
            "_exit_if_stuck(1.0).set()\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "interpreter exit took over 1 s" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30


def test_live_viewer_follows_training(tmp_path):
    """LiveViewer as a TrainCallback with a stand-in trainer: pushes copies, never touches the model."""
    from types import SimpleNamespace

    from recon.scene.cameras import Camera
    from recon.scene.scene import Frame
    from recon.train.callbacks import TrainCallback
    from viewer.live import LiveViewer
    from recon.testing.gaussians import sphere_splats
    from recon.testing.runs import ring_cameras

    params = {k: torch.nn.Parameter(v) for k, v in sphere_splats(800).items()}
    frames = [Frame(tmp_path / c["name"], Camera(K=c["K"], width=c["width"], height=c["height"], c2w=c["c2w"]))
              for c in ring_cameras(4)]
    method = SimpleNamespace(gaussians=lambda: {k: v.detach().clone() for k, v in params.items()},
                             render_settings=lambda: {})
    trainer = SimpleNamespace(method=method, scene=SimpleNamespace(frames=frames),
                              run_dir=tmp_path)
    live = LiveViewer(ViewerOptions(port=0), every_seconds=0.0, keep_serving=True, log=lambda s: None)
    assert isinstance(live, TrainCallback)
    live.on_start(trainer)
    srv = live.server
    try:
        port = srv.gateway.port
        first = request(port, "/run/splats.spz")[2]
        with torch.no_grad():
            params["means"] *= 2.0  # "training" moves the Gaussians
        live.on_step(trainer, 10, {"gaussians": 800, "psnr": 20.0})
        live._thread.join()
        np.testing.assert_allclose(srv.run.splats["means"].numpy(), params["means"].detach().numpy())
        assert srv.run.splats["means"].data_ptr() != params["means"].data_ptr()  # a copy
        assert "step 10" in srv.ui.status.content
        second = request(port, "/run/splats.spz")[2]
        assert second != first and len(second) > 100
        live.on_end(trainer, {"psnr": 21.5})
        assert "training done" in srv.ui.status.content
    finally:
        srv.stop()
