"""``recon view RUN``: serve a trained run to a browser (viser) and to VR/AR headsets (WebXR)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Literal, Optional

import tyro
from typing_extensions import Annotated


def main(
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")],
    port: int = 8080,
    host: str = "127.0.0.1",
    token: Optional[str] = None,
    xr_port: Optional[int] = None,
    cert: Optional[Path] = None,
    key: Optional[Path] = None,
    splat_format: Literal["auto", "spz", "ply"] = "auto",
) -> int:
    """Serve RUN (a folder written by `recon train`, or a splat .ply) until Ctrl-C.

    Prints `viewer: URL` (the operator UI, viser, over HTTP) and `xr: URL` (the WebXR page over
    HTTPS with a self-signed certificate made on first use and kept in ~/.cache/recon/viewer/, or
    yours via --cert/--key). Binds 127.0.0.1; for a headset on the LAN use --host 0.0.0.0, which
    requires a token (one is generated and printed if --token is not given).

    Args:
        run: run folder (holding splats.ply and cameras.json) or a .ply file.
        port: HTTP port of the operator UI (0: any free port).
        host: address to listen on; anything but loopback requires a token.
        token: access token; requests need ?token=T (the page then sets a cookie).
        xr_port: HTTPS port of the WebXR page (default: port + 1).
        cert: PEM certificate for HTTPS instead of the self-signed one (with --key).
        key: PEM private key for --cert.
        splat_format: file the WebXR page loads: SPZ (compact; converted once and cached), the run's PLY, or auto (SPZ, else PLY).
    """
    from viewer.run import open_run
    from viewer.server import ViewerOptions, ViewerServer

    r = open_run(run)
    server = ViewerServer(r, ViewerOptions(host=host, port=port, xr_port=xr_port, token=token, cert=cert, key=key,
                                           splat_format=splat_format))
    server.start()
    for line in server.banner():
        print(line, flush=True)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("viewer: stopped", file=sys.stderr)
    return 0
