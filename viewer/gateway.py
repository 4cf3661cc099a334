"""The viewer's front door: one small HTTP(S) server in front of viser and the WebXR page.

Every request passes through :class:`Gateway`, which

* refuses paths with ``..`` segments (raw or percent-encoded), backslashes or NUL bytes (400);
* when a token is set, refuses requests that carry neither ``?token=T`` nor the ``recon_token``
  cookie (403); a request with the right query token gets the cookie, so the page's own requests
  (scripts, the splat file, viser's websocket) need not repeat it;
* refuses requests whose ``Host`` is not one of the names the viewer answers to (:attr:`Gateway.hosts`;
  loopback names by default), in every mode, so a web page cannot reach it through DNS rebinding;
* refuses cross-origin requests (403, logged as refused), in every mode: a request whose ``Origin``
  is not one of the viewer's own origins (``http://NAME:PORT`` and ``https://NAME:HTTPS_PORT`` for
  each allowed name, or exactly the scheme and ``Host`` the request was sent to, as behind a port
  forward; ``Origin: null`` is foreign), and a browser request that says it comes from
  another site (``Sec-Fetch-Site: same-site`` or ``cross-site``), unless it is a top-level
  navigation (following a link to the viewer). This covers viser's websocket, which carries the
  whole model, and every route below. Requests without these headers (curl, raw clients) are
  checked by ``Host`` and token only;
* answers only GET and HEAD (405 for other methods);
* serves a fixed set of routes itself (the WebXR page, the vendored scripts, the run's splats and
  cameras), streaming files in chunks;
* forwards everything else, websocket upgrades included, to viser's server, which listens on an
  ephemeral loopback port.

No response carries CORS headers (upstream ``Access-Control-*`` headers are dropped), and every
response says ``Cross-Origin-Resource-Policy: same-origin`` and ``X-Frame-Options: DENY``, so a
page on another origin can neither read nor frame what the viewer serves.

It listens on a plain-HTTP port and, given an ``ssl.SSLContext``, on an HTTPS port, both served by
the same handler in one asyncio loop on a background thread. ``bytes_sent`` counts bytes written
to clients per route kind (for benchmarks).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".ply": "application/octet-stream",
    ".spz": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
COOKIE = "recon_token"
CHUNK = 1 << 20
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class Route:
    """What a path maps to: a file to stream, bytes, or a directory under which files are served."""

    kind: str  # counter name, e.g. "xr", "vendor", "splats"
    file: Path | Callable[[], Path] | None = None
    """A file, or a function returning one (called off the event loop: it may take a while)."""
    data: Callable[[], bytes] | None = None
    directory: Path | None = None
    content_type: str | None = None
    cache: bool = False


@dataclass
class Gateway:
    host: str
    port: int
    upstream_port: int
    token: str | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    """Exact paths (``/run/scene.json``) or prefixes ending in ``/`` (``/vendor/``) to routes."""
    https_port: int | None = None
    ssl_context: object | None = None
    upstream_headers: list[tuple[str, str]] = field(default_factory=list)
    """Headers added to every forwarded request (a client's own copies are dropped)."""
    hosts: frozenset[str] = frozenset(LOOPBACK_NAMES)
    """Names (lower case, IPv6 without brackets) the viewer answers to in ``Host`` and ``Origin``."""
    log: Callable[[str], None] | None = None
    """Where refused cross-origin and foreign-host requests are reported (default: stderr)."""

    def __post_init__(self) -> None:
        self.bytes_sent: dict[str, int] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), last 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._thread: threading.Thread | None = None
        self.hosts = frozenset(_host_name(h) for h in self.hosts)
        self.refused: list[tuple[str, str, str]] = []  # (method, path, reason), last 1000
        self._last_report: dict[str, tuple[float, int]] = {}  # kind -> (printed at, refused since)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Bind both ports and serve on a background thread; raises ``OSError`` if a port is taken."""
        ready = threading.Event()
        err: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.set_exception_handler(lambda lp, ctx: None)  # TLS handshakes browsers abort, resets
            try:
                loop.run_until_complete(self._bind())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                err.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            for s in self._servers:
                s.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="recon-viewer-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if err:
            raise err[0]

    async def _bind(self) -> None:
        http = await asyncio.start_server(lambda r, w: self._handle(r, w, "http"), self.host, self.port,
                                          reuse_address=True, limit=1 << 16)
        self._servers.append(http)
        self.port = http.sockets[0].getsockname()[1]
        if self.ssl_context is not None:
            try:
                https = await asyncio.start_server(lambda r, w: self._handle(r, w, "https"), self.host,
                                                   self.https_port or 0, ssl=self.ssl_context,
                                                   reuse_address=True, limit=1 << 16,
                                                   ssl_handshake_timeout=30)
            except OSError:
                http.close()
                raise
            self._servers.append(https)
            self.https_port = https.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset_counters(self) -> None:
        self.bytes_sent = {}
        self.requests = []

    # ---------------------------------------------------------------- requests
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: str) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=60)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                return
            await self._dispatch(head, reader, writer, scheme)
        except (ConnectionError, asyncio.CancelledError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _dispatch(self, head: bytes, reader, writer, scheme: str) -> None:
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            return await self._reply(writer, 400, "bad request line", "bad")
        headers: dict[str, str] = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                k = k.strip().lower()
                if k in headers and k in ("host", "origin", "cookie", "sec-fetch-site", "upgrade"):
                    return await self._reply(writer, 400, f"bad request: repeated {k} header", "refused", method)
                headers[k] = v.strip()
        raw_path, _, query = target.partition("?")
        path = urllib.parse.unquote(raw_path)
        if (not raw_path.startswith("/") or "\\" in path or "\x00" in path
                or any(seg in ("..", ".") for seg in raw_path.split("/") + path.split("/"))):
            return await self._reply(writer, 400, "bad path", "refused", method, raw_path)

        # Access control: who is asked for (Host), who is asking (Origin, Sec-Fetch-Site), then the token.
        refusal = self._foreign(method, headers, scheme)
        if refusal is not None:
            self._report(refusal[0], method, raw_path, refusal[1])
            return await self._reply(writer, 403, f"forbidden: {refusal[1]}", "refused", method, raw_path)
        set_cookie = None
        if self.token:
            q_token = urllib.parse.parse_qs(query).get("token", [None])[0]
            c_token = _cookie(headers.get("cookie", ""), COOKIE)
            ok_q = q_token is not None and hmac.compare_digest(q_token.encode(), self.token.encode())
            ok_c = c_token is not None and hmac.compare_digest(c_token.encode(), self.token.encode())
            if not (ok_q or ok_c):
                return await self._reply(writer, 403, "forbidden: missing or wrong token; open the URL that "
                                         "`recon view` printed (it ends in ?token=...)", "refused", method, raw_path)
            if ok_q and not ok_c:
                set_cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"

        route, rel = self._match(path)
        if method not in ("GET", "HEAD"):  # nothing here, viser's page and websocket included, takes more
            return await self._reply(writer, 405, "method not allowed", route.kind if route else "viser",
                                     method, raw_path)
        if route is None:
            return await self._proxy(lines, headers, reader, writer, method, raw_path, set_cookie)
        extra = [("Set-Cookie", set_cookie)] if set_cookie else []
        if route.data is not None:
            body = route.data()
            return await self._send(writer, 200, route.content_type or "application/json", body,
                                    route.kind, method, raw_path, extra)
        file = route.file
        if callable(file):
            file = await asyncio.get_running_loop().run_in_executor(None, file)
        if route.directory is not None:
            file = _safe_join(route.directory, rel)
        if file is None or not file.is_file():
            return await self._reply(writer, 404, "not found", route.kind, method, raw_path)
        await self._stream(writer, file, route, method, raw_path, extra)

    def _foreign(self, method: str, headers: dict[str, str], scheme: str = "http") -> tuple[str, str] | None:
        """Why a request is refused as foreign, as (kind, reason): a Host that is not this viewer's,
        another origin, another site; or None."""
        host = headers.get("host")
        if host is None:
            return "host", "no Host header"
        try:
            name = _host_name(urllib.parse.urlsplit("//" + host).hostname or "")
            port = urllib.parse.urlsplit("//" + host).port or DEFAULT_PORTS[scheme]
        except ValueError:
            name, port = "", 0
        if name not in self.hosts:
            return "host", (f"Host {host!r} is not an address of this viewer; pass --allow-host NAME to reach "
                            "it by another name")
        origin = headers.get("origin")
        if origin is not None and not self._own_origin(origin, (scheme, name, port)):
            return "origin", f"cross-origin request from {origin!r} refused (this viewer only answers its own pages)"
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("same-site", "cross-site"):
            top_level = (headers.get("sec-fetch-mode", "").lower() == "navigate"
                         and headers.get("sec-fetch-dest", "").lower() == "document" and method in ("GET", "HEAD"))
            if not top_level:
                return "site", f"{site} request refused (this viewer only answers its own pages)"
        return None

    def _own_origin(self, origin: str, requested: tuple[str, str, int]) -> bool:
        """Is ``origin`` one of the viewer's: an allowed name on a port it serves with that port's
        scheme, or exactly the origin the request was sent to (``requested``: scheme, Host name and
        port, the Host already checked), as behind a port forward (``ssh -L 9000:127.0.0.1:8080``)?"""
        try:
            u = urllib.parse.urlsplit(origin.strip())
            port = u.port
        except ValueError:
            return False
        if u.scheme not in DEFAULT_PORTS or u.path or u.query or u.fragment or u.username or u.password:
            return False
        port = port if port is not None else DEFAULT_PORTS[u.scheme]
        name = _host_name(u.hostname or "")
        if (u.scheme, name, port) == requested:
            return True
        served = self.port if u.scheme == "http" else (self.https_port if self.ssl_context else None)
        return port == served and name in self.hosts

    def _report(self, kind: str, method: str, path: str, reason: str) -> None:
        """Record a refused request; print it (one line per kind per 10 s, with a count of the rest,
        so a page cannot flood the terminal)."""
        self.refused.append((method, path, reason))
        del self.refused[:-1000]
        now = time.monotonic()
        last, quiet = self._last_report.get(kind, (-1e9, 0))
        if now - last < 10.0:
            self._last_report[kind] = (last, quiet + 1)
            return
        self._last_report[kind] = (now, 0)
        shown = path[:200].encode("unicode_escape").decode("ascii")  # no terminal escapes from a client
        line = f"viewer: refused {method} {shown}: {reason}" + (f" ({quiet} more like it not shown)" if quiet else "")
        if self.log is not None:
            self.log(line)
        else:
            print(line, file=sys.stderr, flush=True)

    def _match(self, path: str) -> tuple[Route | None, str]:
        if path in self.routes:
            return self.routes[path], ""
        best = None
        for prefix, r in self.routes.items():
            if prefix.endswith("/") and path.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        if best is None:
            return None, ""
        return self.routes[best], path[len(best):]

    # ---------------------------------------------------------------- responses
    def _count(self, kind: str, n: int) -> None:
        self.bytes_sent[kind] = self.bytes_sent.get(kind, 0) + n

    def _log(self, method: str, path: str, status: int) -> None:
        self.requests.append((method, path, status))
        del self.requests[:-1000]

    async def _send(self, writer, status: int, ctype: str, body: bytes, kind: str, method: str = "GET",
                    path: str = "", extra: list[tuple[str, str]] | None = None) -> None:
        hdr = _head(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                             ("Cache-Control", "no-store")] + (extra or []))
        writer.write(hdr)
        if method != "HEAD":
            writer.write(body)
        await writer.drain()
        self._count(kind, len(hdr) + (len(body) if method != "HEAD" else 0))
        self._log(method, path, status)

    async def _reply(self, writer, status: int, text: str, kind: str, method: str = "GET", path: str = "") -> None:
        await self._send(writer, status, "text/plain; charset=utf-8", (text + "\n").encode(), kind, method, path)

    async def _stream(self, writer, file: Path, route: Route, method: str, path: str, extra) -> None:
        size = file.stat().st_size
        ctype = route.content_type or MIME.get(file.suffix.lower(), "application/octet-stream")
        hdr = _head(200, [("Content-Type", ctype), ("Content-Length", str(size)),
                          ("Cache-Control", "max-age=3600" if route.cache else "no-cache")] + extra)
        writer.write(hdr)
        sent = len(hdr)
        if method != "HEAD":
            loop = asyncio.get_running_loop()
            with open(file, "rb") as f:
                while True:
                    chunk = await loop.run_in_executor(None, f.read, CHUNK)
                    if not chunk:
                        break
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
        await writer.drain()
        self._count(route.kind, sent)
        self._log(method, path, 200)

    async def _proxy(self, lines: list[str], headers: dict[str, str], reader, writer, method: str, path: str,
                     set_cookie: str | None = None) -> None:
        """Forward one request (or a websocket session) to viser's server: the body and websocket
        frames byte for byte, the response head filtered (:func:`_filter_head`)."""
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return await self._reply(writer, 502, "viewer backend unavailable", "viser", method, path)
        out = [lines[0]]
        private = {k.lower() for k, _ in self.upstream_headers}
        for ln in lines[1:]:
            if not ln:
                continue
            k = ln.split(":", 1)[0].strip().lower()
            if (not upgrade and k in ("connection", "keep-alive")) or k in private:
                continue
            out.append(ln)
        out += [f"{k}: {v}" for k, v in self.upstream_headers]
        if not upgrade:
            out.append("Connection: close")  # one request per upstream connection: each is checked here
        up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        await up_w.drain()
        self._log(method, path, 101 if upgrade else 0)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, kind: str | None) -> None:
            try:
                while True:
                    data = await src.read(1 << 16)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
                    if kind:
                        self._count(kind, len(data))
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass

        t_up = asyncio.ensure_future(pipe(reader, up_w, None))
        # Rewrite viser's response head: no CORS headers, ours added (and the token cookie, so the
        # page's websocket carries it).
        try:
            head = await asyncio.wait_for(up_r.readuntil(b"\r\n\r\n"), timeout=60)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            t_up.cancel()
            up_w.close()
            return await self._reply(writer, 502, "viewer backend gave no answer", "viser", method, path)
        head = _filter_head(head, [("Set-Cookie", set_cookie)] if set_cookie and not upgrade else [])
        writer.write(head)
        self._count("viser", len(head))
        t_down = asyncio.ensure_future(pipe(up_r, writer, "viser"))
        await asyncio.wait([t_up, t_down], return_when=asyncio.FIRST_COMPLETED)
        if not upgrade:
            # The response is complete once viser closes; the client side may idle in keep-alive.
            await asyncio.wait([t_down], timeout=30)
        for t in (t_up, t_down):
            t.cancel()
        up_w.close()


SECURITY_HEADERS = [("Cross-Origin-Resource-Policy", "same-origin"), ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
"""On every response, ours and viser's: other origins may not embed, frame or leak from what is served."""


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
              502: "Bad Gateway"}.get(status, "OK")
    hs = headers + SECURITY_HEADERS + [("Connection", "close")]
    return (f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n").encode("latin-1")


def _host_name(name: str) -> str:
    """A host name as compared here: lower case, no brackets around IPv6, no trailing spaces."""
    return name.strip().lower().removeprefix("[").removesuffix("]")


def _filter_head(head: bytes, extra: list[tuple[str, str]]) -> bytes:
    """An upstream response head without CORS or framing headers, with ``extra`` and ours added."""
    lines = head.decode("latin-1").split("\r\n")
    ours = {k.lower() for k, _ in SECURITY_HEADERS}
    keep = [lines[0]] + [ln for ln in lines[1:] if ln and not (
        ln.split(":", 1)[0].strip().lower().startswith("access-control-")
        or ln.split(":", 1)[0].strip().lower() in ours)]
    keep += [f"{k}: {v}" for k, v in extra + SECURITY_HEADERS]
    return ("\r\n".join(keep) + "\r\n\r\n").encode("latin-1")


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def _safe_join(root: Path, rel: str) -> Path | None:
    """``root / rel`` if it stays inside ``root`` (after resolving links), else None."""
    if not rel:
        return None
    p = (root / rel).resolve()
    try:
        p.relative_to(root.resolve())
    except ValueError:
        return None
    return p


def is_port_in_use(err: OSError) -> bool:
    return err.errno in (errno.EADDRINUSE, errno.EACCES)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
