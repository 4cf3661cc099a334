"""``ViewerServer``: one process serving a run to a browser (viser) and to headsets (WebXR).

Pieces, all in this process:

* viser's server on an ephemeral loopback port, holding the operator UI (:mod:`viewer.operator`);
* :class:`viewer.gateway.Gateway` on ``--port`` (HTTP) and ``--xr-port`` (HTTPS, default
  ``port + 1``): checks Host and Origin (against :meth:`ViewerServer.hosts`), the token and paths,
  serves the WebXR page, the vendored three.js/Spark, the run's splats and cameras, and forwards
  everything else (the viser page and its websocket) to viser. viser's own port only answers
  requests that carry the gateway's secret header, so none of this can be bypassed by connecting
  to it directly.

The WebXR page gets the splats as SPZ (converted once with :mod:`exporters.spz` and cached in
``$XDG_CACHE_HOME/recon/viewer/spz/``; the run folder is never written) or, with
``splat_format="ply"`` or when conversion fails, the run's PLY as is.

A dynamic run (``splat4d``, trained on two or more times) is also served as a splat sequence for
the WebXR page to play: ``/run/sequence.json`` (the frames' times and URLs) and
``/run/sequence/frame_NNNNN.spz`` (or ``.ply``), the model at each frame time through the run's
own renderer, encoded on first request and cached in ``$XDG_CACHE_HOME/recon/viewer/sequence/``
under a key of the model files, the times and the format. Only those exact paths are routed.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
import json
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from recon.errors import ReconError
from viewer.gateway import LOOPBACK_NAMES, Gateway, Route, is_port_in_use
from viewer.run import GL_CV_FLIP, Run
from viewer.splats import write_splats_ply
from viewer.tls import (Certificate, cache_dir, certificate_names, ensure_self_signed, load_certificate,
                        local_addresses)

STATIC = Path(__file__).resolve().parent / "static"


GATEWAY_HEADER = "X-Recon-Gateway"


@dataclass
class ViewerOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    xr_port: int | None = None
    """HTTPS port of the WebXR page; default ``port + 1`` (ephemeral when ``port`` is 0)."""
    token: str | None = None
    cert: Path | None = None
    key: Path | None = None
    splat_format: Literal["auto", "spz", "ply"] = "auto"
    background: tuple[int, int, int] = (0, 0, 0)
    """XR page background (0-255 RGB)."""
    allow_hosts: tuple[str, ...] = ()
    """Further names the viewer is reached by (a DNS name of this machine); see :meth:`ViewerServer.hosts`."""
    time_samples: int = 0
    """Dynamic runs: frames of the WebXR page's sequence, evenly spaced over [0, 1]; 0: the capture's times."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ViewerServer:
    """Serve ``run``; :meth:`start` returns once both pages are reachable at :attr:`viewer_url`/:attr:`xr_url`."""

    def __init__(self, run: Run, options: ViewerOptions | None = None):
        self.run = run
        self.opts = options or ViewerOptions()
        self.token = self.opts.token
        self.token_generated = False
        if not self.token and not is_loopback(self.opts.host):
            self.token = secrets.token_urlsafe(16)
            self.token_generated = True
        self.certificate: Certificate | None = None
        self.gateway: Gateway | None = None
        self.viser = None
        self.ui = None
        self.splats_file: Path | None = None
        self._secret = secrets.token_hex(16)
        self._stopped = threading.Event()
        self._splat_lock = threading.Lock()
        self._version = 0
        self._encoded_version = -1
        self._fmt = "spz"
        self.sequence_times: list[float] = []
        self._sequence_dir: Path | None = None
        self._sequence_lock = threading.Lock()

    # ------------------------------------------------------------------ setup
    def start(self) -> "ViewerServer":
        o = self.opts
        self.certificate = self._certificate()
        self._fmt = self._prepare_xr_splats()
        routes = {
            "/xr": Route("xr", file=STATIC / "xr" / "index.html"),
            "/xr/": Route("xr", directory=STATIC / "xr"),
            "/vendor/": Route("vendor", directory=STATIC / "vendor", cache=True),
            "/run/scene.json": Route("meta", data=lambda: json.dumps(self._scene_meta()).encode(),
                                     content_type="application/json"),
            f"/run/splats.{self._fmt}": Route("splats", file=self._xr_file),
        }
        if self.run.cameras_path is not None:
            routes["/run/cameras.json"] = Route("meta", file=self.run.cameras_path)
        if getattr(self.run, "plays", False):
            routes.update(self._sequence_routes())
        xr_port = o.xr_port if o.xr_port is not None else (o.port + 1 if o.port else 0)
        self.gateway = Gateway(host=o.host, port=o.port, upstream_port=0, token=self.token, routes=routes,
                               https_port=xr_port, ssl_context=self.certificate.ssl_context(),
                               upstream_headers=[(GATEWAY_HEADER, self._secret)], hosts=self.hosts())
        try:
            self.gateway.start()
        except OSError as e:
            if is_port_in_use(e):
                raise ReconError(f"port {o.port} or {xr_port} on {o.host} is in use; pass --port P "
                                 "(and --xr-port) for free ones") from e
            raise ReconError(f"cannot listen on {o.host}:{o.port}: {e.strerror or e}") from e
        try:
            self._start_viser()
        except Exception:
            self.gateway.stop()
            raise
        return self

    def update_splats(self, splats: dict) -> None:
        """Show new splats (a live training view): the operator UI at once, the XR page on its next load."""
        with self._splat_lock:
            self.run.splats = splats
            self._version += 1
        if self.ui is not None:
            self.ui.update_splats(splats)

    def _certificate(self) -> Certificate:
        o = self.opts
        if o.cert or o.key:
            if not (o.cert and o.key):
                raise ReconError("pass both --cert and --key (PEM files), or neither for a self-signed certificate")
            return load_certificate(Path(o.cert), Path(o.key))
        return ensure_self_signed(self._own_names() + list(o.allow_hosts))

    def _own_names(self) -> list[str]:
        """The bind address, and for a wildcard bind this machine's addresses and host name."""
        o = self.opts
        hosts = [o.host] + (local_addresses() if not is_loopback(o.host) else [])
        if not is_loopback(o.host):
            import socket

            hosts.append(socket.gethostname())
        return hosts

    def hosts(self) -> frozenset[str]:
        """The names this viewer answers to, in ``Host`` headers and in the origins it accepts.

        Loopback names (``localhost``, ``127.0.0.1``, ``::1``) when bound to loopback or to every
        interface; the ``--host`` address; for ``0.0.0.0``/``::`` this machine's addresses and host
        name (``NAME`` and ``NAME.local``); the names of a ``--cert`` certificate (wildcards
        excepted); and ``allow_hosts``. None of them can be chosen by a web page, which is what
        keeps DNS rebinding out.
        """
        o = self.opts
        names = {o.host, *o.allow_hosts}
        wildcard = o.host in ("0.0.0.0", "::", "")
        if is_loopback(o.host) or wildcard:
            names |= LOOPBACK_NAMES
        if wildcard:
            import socket

            names |= set(self._own_names())
            name = socket.gethostname()
            names |= {name, name + ".local", socket.getfqdn()}
        if o.cert:
            names |= set(certificate_names(Path(o.cert)))
        return frozenset(n.strip().lower().strip("[]") for n in names
                         if n and n not in ("0.0.0.0", "::") and "*" not in n)

    def _prepare_xr_splats(self) -> str:
        """Pick the XR page's splat format and make its file; returns "spz" or "ply"."""
        src = self.run.splats_path
        if src is not None and self.opts.splat_format == "ply":
            self.splats_file = src
            return "ply"
        if src is None:  # in-memory splats: snapshots are encoded on demand (see _xr_file)
            return "spz" if self.opts.splat_format != "ply" else "ply"
        st = src.stat()
        aa = bool(getattr(self.run, "antialiased", False))
        key = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|aa={aa}".encode()).hexdigest()[:24]
        out = cache_dir() / "spz" / f"{key}.spz"
        try:
            if not out.is_file():
                from exporters.spz import write_spz

                write_spz(self.run.splats, out, antialiased=aa)
            self.splats_file = out
            return "spz"
        except Exception as e:  # noqa: BLE001 - fall back to the PLY, which Spark also reads
            if self.opts.splat_format == "spz":
                raise ReconError(f"cannot convert {src} to SPZ for the XR page: {e}") from e
            print(f"xr: serving {src.name} (SPZ conversion failed: {e})", file=sys.stderr)
            self.splats_file = src
            return "ply"

    def _xr_file(self) -> Path:
        """The file the XR page loads; for in-memory splats, a snapshot re-encoded when they changed."""
        if self.run.splats_path is not None:
            return self.splats_file
        with self._splat_lock:
            if self._encoded_version != self._version or self.splats_file is None:
                out = cache_dir() / "spz" / f"live-{os.getpid()}-{id(self):x}.{self._fmt}"
                splats = {k: v.detach().cpu() for k, v in self.run.splats.items()}
                if self._fmt == "spz":
                    from exporters.spz import write_spz

                    write_spz(splats, out, antialiased=bool(getattr(self.run, "antialiased", False)))
                else:
                    write_splats_ply(splats, out)
                self.splats_file, self._encoded_version = out, self._version
            return self.splats_file

    # ------------------------------------------------------------------ dynamic runs: the sequence
    def _sequence_routes(self) -> dict[str, Route]:
        """Routes of the XR page's splat sequence: the manifest and one exact path per frame."""
        from recon.run import RunFolder

        n = int(self.opts.time_samples)
        if n < 0:
            raise ReconError(f"--time-samples {n}: give a number of frames >= 2 (0: the capture's times)")
        self.sequence_times = ([k / (n - 1) for k in range(n)] if n >= 2 else [0.0]) if n else list(self.run.times)
        rf = RunFolder.open(self.run.folder)
        stamp = []
        for role in ("model", "deformation"):
            p = rf.path(role)
            if p is not None and p.is_file():
                st = p.stat()
                stamp.append(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        aa = bool(getattr(self.run, "antialiased", False))
        key = hashlib.sha256("|".join(stamp + [f"aa={aa}", self._fmt] + [repr(t) for t in self.sequence_times])
                             .encode()).hexdigest()[:24]
        self._sequence_dir = cache_dir() / "sequence" / key
        routes = {"/run/sequence.json": Route("meta", data=lambda: json.dumps(self.sequence_manifest()).encode(),
                                              content_type="application/json")}
        for k in range(len(self.sequence_times)):
            routes[f"/run/sequence/{self._frame_name(k)}"] = Route(
                "splats", file=lambda k=k: self.sequence_frame(k))
        return routes

    def _frame_name(self, k: int) -> str:
        return f"frame_{k:05d}.{self._fmt}"

    def sequence_manifest(self) -> dict:
        """What ``/run/sequence.json`` serves: every frame's index, time, file, URL and Gaussian count."""
        from exporters.sequence import SEQUENCE_FORMAT, SEQUENCE_VERSION
        from viewer.operator import default_fps

        frames = [{"index": k, "time": float(t), "file": self._frame_name(k),
                   "url": f"/run/sequence/{self._frame_name(k)}", "gaussians": self.run.num_gaussians}
                  for k, t in enumerate(self.sequence_times)]
        return {"format": SEQUENCE_FORMAT, "version": SEQUENCE_VERSION, "frames": frames,
                "time_range": [min(self.sequence_times), max(self.sequence_times)],
                "time": "normalised scene time in [0, 1] (0 = first frame of the capture)",
                "correspondence": "Gaussian i of every frame is the same Gaussian (same order, same count)",
                "frame": "the run's world frame (as /run/splats.*)", "encoding": self._fmt,
                "fps": default_fps(len(self.sequence_times))}

    def sequence_frame(self, k: int) -> Path:
        """Frame ``k`` of the sequence: the run's model at its time, encoded once (then cached)."""
        out = self._sequence_dir / self._frame_name(k)
        with self._sequence_lock:
            if not out.is_file():
                splats = {n: v.detach().cpu() for n, v in self.run.dynamic.gaussians(self.sequence_times[k]).items()}
                if self._fmt == "spz":
                    from exporters.spz import write_spz

                    write_spz(splats, out, antialiased=bool(getattr(self.run, "antialiased", False)))
                else:
                    write_splats_ply(splats, out)  # atomic
        return out

    def _scene_meta(self) -> dict:
        run, frame, fmt = self.run, self.run.frame, self._fmt
        to_xr = frame.to_xr
        cams = []
        for c in run.cameras:
            cams.append({"name": c.name, "c2w_xr": (to_xr @ c.c2w @ GL_CV_FLIP).ravel().tolist(),
                         "fovy": float(np.degrees(c.fov_y)), "aspect": c.width / c.height,
                         "width": c.width, "height": c.height})
        bg = "#%02x%02x%02x" % tuple(int(v) for v in self.opts.background)
        return {
            "splats": {"url": f"/run/splats.{fmt}", "format": fmt, "count": run.num_gaussians,
                       "sh_degree": run.sh_degree},
            "scene_to_xr": to_xr.ravel().tolist(),
            "radius": frame.radius,
            "cameras": cams,
            "background": bg,
            "sequence": ({"url": "/run/sequence.json", "frames": len(self.sequence_times)}
                         if self.sequence_times else None),
        }

    def _start_viser(self) -> None:
        import viser

        from viewer.operator import OperatorUI

        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own (internal) address
            self.viser = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
        self._guard_viser()
        self.gateway.upstream_port = self.viser.get_port()
        self.ui = OperatorUI(self.viser, self.run)
        self.ui.set_links(self.viewer_url, self.xr_url, self.certificate.fingerprint)

    def _guard_viser(self) -> None:
        """Make viser's loopback port refuse requests that did not come through the gateway."""
        from websockets.asyncio.server import Server

        port = self.viser.get_port()
        secret = self._secret
        for obj in gc.get_objects():
            if type(obj) is Server and any(s.getsockname()[1] == port for s in (obj.server.sockets or [])):
                inner = obj.process_request

                def guarded(conn, request, _inner=inner):
                    if request.headers.get(GATEWAY_HEADER) != secret:
                        return conn.respond(403, "forbidden: connect through the address `recon view` printed\n")
                    return _inner(conn, request) if _inner is not None else None

                obj.process_request = guarded
                return
        print("viewer: warning: could not restrict viser's internal port to the gateway", file=sys.stderr)

    # ------------------------------------------------------------------ info
    def _public_host(self) -> str:
        h = self.opts.host
        if h in ("0.0.0.0", "::", ""):
            addrs = local_addresses()
            return addrs[0] if addrs else "127.0.0.1"
        return f"[{h}]" if ":" in h else h

    def _suffix(self) -> str:
        return f"?token={self.token}" if self.token else ""

    @property
    def viewer_url(self) -> str:
        return f"http://{self._public_host()}:{self.gateway.port}/{self._suffix()}"

    @property
    def xr_url(self) -> str:
        return f"https://{self._public_host()}:{self.gateway.https_port}/xr{self._suffix()}"

    @property
    def xr_http_url(self) -> str:
        """The WebXR page over plain HTTP (a secure context only on localhost)."""
        return f"http://{self._public_host()}:{self.gateway.port}/xr{self._suffix()}"

    def banner(self) -> list[str]:
        c = self.certificate
        where = "self-signed, " + str(c.cert) if c.cert.parent == cache_dir() else str(c.cert)
        lines = [f"viewer: {self.viewer_url}", f"xr: {self.xr_url}",
                 f"xr certificate SHA-256: {c.fingerprint} ({where})"]
        if self.token_generated:
            lines.append(f"token: {self.token} (generated; pass --token to choose one)")
        lines.append(f"run: {self.run.folder} ({self.run.num_gaussians:,} Gaussians, "
                     f"{len(self.run.cameras)} cameras); Ctrl-C to stop")
        if getattr(self.run, "note", ""):
            lines.append(self.run.note)
        if self.sequence_times:
            lines.append(f"time: {len(self.run.times)} capture times in [0, 1]; the operator UI's Time panel plays "
                         f"them, the XR page plays a {len(self.sequence_times)}-frame sequence")
        return lines

    # ------------------------------------------------------------------ lifecycle
    def wait(self) -> None:
        self._stopped.wait()

    def stop(self) -> None:
        if self.ui is not None:
            self.ui.close()
        if self.viser is not None:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):
                self.viser.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self._stopped.set()

    def __enter__(self) -> "ViewerServer":
        return self.start() if self.gateway is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
