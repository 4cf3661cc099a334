"""``recon view RUN``: serve a trained run to a browser (viser) and to VR/AR headsets (WebXR)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Literal, Optional

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
    allow_host: tuple[str, ...] = (),
    segment_model: Optional[str] = None,
    time_samples: int = 0,
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
        allow_host: more names this machine is reached by (e.g. a DNS name); other Host names and other origins get 403.
        segment_model: segmentation model for selecting objects by click or box in the operator UI: a SAM 2 folder (or sam2:PATH|ID, local weights only) or ids:DIR (instance-id maps per training image). Without it a dragged box is segmented by GrabCut.
        time_samples: dynamic (splat4d) runs: frames of the sequence the WebXR page plays, evenly spaced over scene time [0, 1] (0: the capture's frame times).
    """
    from recon.errors import ReconError
    from viewer.run import open_run
    from viewer.select import load_viewer_segmenter
    from viewer.server import ViewerOptions, ViewerServer

    for name, value in (("--port", port), ("--xr-port", xr_port)):
        if value is not None and not 0 <= value <= 65535:
            raise ReconError(f"{name} {value}: a port is 0-65535 (0: any free port)")
    if time_samples < 0 or time_samples == 1:
        raise ReconError(f"--time-samples {time_samples}: give a number of frames >= 2 (0: the capture's times)")

    segmenter = load_viewer_segmenter(segment_model)  # bad weights: one line, before serving
    stop = threading.Event()
    serving = threading.Event()
    restore = _stop_on_signals(stop, serving)
    try:
        r = open_run(run, distill_nerf=True)  # a NeRF run: the splats distilled from it (cached)
        if time_samples and not r.plays:
            raise ReconError(f"--time-samples {time_samples}: {run} is not a dynamic run trained on several times "
                             "(only splat4d runs play a sequence)")
        server = ViewerServer(r, ViewerOptions(host=host, port=port, xr_port=xr_port, token=token, cert=cert,
                                               key=key, splat_format=splat_format,
                                               allow_hosts=tuple(allow_host), time_samples=time_samples))
        server.start()
        if segmenter is not None and getattr(server, "ui", None) is not None:
            server.ui.set_segmenter(segmenter)
        serving.set()
    except BaseException as e:
        restore()
        if isinstance(e, KeyboardInterrupt):
            _exit_if_stuck(SHUTDOWN_GRACE_S).set()
        raise
    try:
        for line in server.banner():
            print(line, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:  # a handler we did not install (e.g. a debugger's) raised it
        pass
    finally:
        stopped = _exit_if_stuck(SHUTDOWN_GRACE_S)
        server.stop()
        restore()
        stopped.set()
        print("viewer: stopped", file=sys.stderr, flush=True)
    return 0


SHUTDOWN_GRACE_S = 10.0


def _stop_on_signals(stop: threading.Event, serving: threading.Event) -> Callable[[], None]:
    """Make SIGINT (Ctrl-C) and SIGTERM set ``stop`` (and abort start-up while ``serving`` is not
    set); a second one exits at once. Returns a function that puts the old handlers back.

    The handlers are installed whatever the inherited disposition: a process started as a
    background job of a non-interactive shell (``make test &``, CI scripts) inherits SIGINT as
    *ignored*, and Python then never installs its KeyboardInterrupt handler, so Ctrl-C (or
    ``kill -INT``) would be silently dropped and the viewer would serve forever. Once serving, the
    handler only sets the event, so a signal cannot raise KeyboardInterrupt half-way through the
    shutdown code.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    seen = []

    def handler(signum, _frame) -> None:
        seen.append(signum)
        if len(seen) > 1:
            os.write(2, b"viewer: second interrupt; exiting now\n")
            os._exit(130)
        stop.set()
        if not serving.is_set():
            raise KeyboardInterrupt  # still starting up (main thread): abandon start-up

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    return restore


def _exit_if_stuck(grace_s: float) -> threading.Event:
    """Start a daemon watchdog that ends the process if shutting down takes over ``grace_s`` seconds.

    Two phases: our own shutdown (until the returned event is set), then the interpreter's exit,
    which joins worker threads (viser's callback pool, asyncio executors) and could wait on a
    stuck one. The second phase starts when the main thread finishes; if instead the caller keeps
    running (``main`` called in-process, as tests do), the watchdog retires after a minute.
    """
    done = threading.Event()

    def bail(what: str) -> None:
        busy = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread() and t.is_alive())
        os.write(2, (f"viewer: {what} took over {grace_s:.0f} s (threads still running: "
                     f"{', '.join(busy) or 'none'}); exiting anyway\n").encode())
        os._exit(0)

    def watchdog() -> None:
        if not done.wait(grace_s):
            bail("shutdown")
        main, t0 = threading.main_thread(), time.monotonic()
        while main.is_alive():
            if time.monotonic() - t0 > 60.0:
                return
            time.sleep(0.1)
        time.sleep(grace_s)
        bail("interpreter exit")

    threading.Thread(target=watchdog, name="recon-viewer-exit-watchdog", daemon=True).start()
    return done
