"""A real HTTP server on 127.0.0.1 for tests: feeds, validators, redirects, faults.

``FeedServer`` runs ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) in a daemon thread. Tests
fill its routing table, point the code under test at ``server.url(path)``, then assert on
``server.requests`` (method, path, headers) and ``server.max_in_flight`` (the most concurrent
requests seen per Host header). Every wait on the server side is bounded and ends when the
server stops, so a client that gives up can never hang the test run.

    def test_something(feed_server):
        feed_server.add("/feed.xml", body=b"<rss/>", etag='"v1"')
        ... fetch feed_server.url("/feed.xml") ...
        assert feed_server.requests_for("/feed.xml")[0].headers["user-agent"]
"""

from __future__ import annotations

import email.utils
import gzip
import http.server
import mimetypes
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

#: longest a route may sleep or stream, whatever a test asks (keeps a stuck client bounded)
MAX_WAIT = 10.0
#: most bytes an endless body or a streamed bomb sends before giving up on its own
MAX_STREAM = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    #: path with query string, as sent
    path: str
    #: lower-case header names
    headers: dict[str, str]
    #: the Host header (what the per-host counters use)
    host: str
    #: the client's port: the same port for two requests means a reused connection
    client_port: int = 0


@dataclass(slots=True, kw_only=True)
class Route:
    """How to answer one path. Fields combine: e.g. ``delay`` with a gzip body."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/rss+xml; charset=utf-8"
    #: sent as ETag; a matching If-None-Match gets 304
    etag: str | None = None
    #: sent as Last-Modified; an If-Modified-Since at or after it gets 304
    last_modified: str | None = None
    #: "gzip" or "deflate": compress the body (when the client accepts it)
    encoding: str | None = None
    #: seconds to wait before answering (bounded by MAX_WAIT and by the server stopping)
    delay: float = 0.0
    #: seconds to wait between the headers and the body
    body_delay: float = 0.0
    #: stream chunks of this body forever (until the client leaves, or MAX_STREAM)
    endless: bytes | None = None
    #: seconds between chunks of an endless body (a server that trickles)
    chunk_delay: float = 0.0
    #: announce the full Content-Length but send only half the body, then hang up
    truncate: bool = False
    #: stream a gzip body of this many zero bytes, compressed on the fly
    gzip_bomb: int | None = None
    #: full control: called with the request, returns the Route to use for this request
    dynamic: Callable[[RecordedRequest], Route] | None = None


class FeedServer:
    """The server and its routing table; a context manager that stops itself."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.mounts: dict[str, Path] = {}
        self.requests: list[RecordedRequest] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FeedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- routing table ----------------------------------------------------------------------

    def url(self, path: str = "/", *, host: str = "127.0.0.1") -> str:
        """``host`` may be "localhost" to reach the same server under another host name."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def add(self, path: str, body: bytes | str = b"", **options: Any) -> Route:
        """Serve ``body`` at ``path`` (replacing any route there); options are Route fields."""
        data = body.encode() if isinstance(body, str) else body
        route = Route(body=data, **options)
        self.routes[path] = route
        return route

    def status(self, path: str, status: int, body: bytes | str = b"", **options: Any) -> Route:
        """Answer with ``status`` (and e.g. ``headers={"Retry-After": "120"}``)."""
        options.setdefault("content_type", "text/plain; charset=utf-8")
        return self.add(path, body, status=status, **options)

    def redirect(self, path: str, to: str, status: int = 301) -> Route:
        """Redirect ``path`` to ``to`` (a path on this server or any absolute URL)."""
        return self.add(path, status=status, headers={"Location": to}, content_type=None)

    def redirect_chain(self, path: str, statuses: list[int], final: str) -> None:
        """``path`` -> /path/hop1 -> ... -> ``final`` using one status per hop."""
        hops = [path] + [f"{path}/hop{i}" for i in range(1, len(statuses))] + [final]
        for status, here, there in zip(statuses, hops, hops[1:], strict=False):
            self.redirect(here, there, status)

    def slow(self, path: str, delay: float, body: bytes | str = b"<rss/>") -> Route:
        return self.add(path, body, delay=delay)

    def endless(
        self, path: str, chunk: bytes = b"<item>" + b"x" * 8179 + b"</item>", **options: Any
    ) -> Route:
        """A body that never ends; ``chunk_delay=`` makes it trickle."""
        return self.add(path, endless=chunk, **options)

    def gzip_bomb(self, path: str, size: int = 1024 * 1024 * 1024, *, stream: bool = True) -> Route:
        """A gzip body that inflates to ``size`` zero bytes.

        ``stream=True`` compresses on the fly (no Content-Length, bounded by MAX_STREAM of
        output); ``stream=False`` sends one precomputed body, whose chunks each inflate a lot.
        """
        if stream:
            return self.add(path, gzip_bomb=size)
        body = _gzip_zeros(size)
        return self.add(path, body, headers={"Content-Encoding": "gzip"})

    def mount(self, prefix: str, folder: str | Path) -> None:
        """Serve the files under ``folder`` at ``prefix`` with ETag and Last-Modified."""
        self.mounts[prefix.rstrip("/") + "/"] = Path(folder)

    # -- observations -----------------------------------------------------------------------

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def max_concurrency(self, host: str = "127.0.0.1") -> int:
        """The most requests in flight at once for ``host`` (matched without the port)."""
        with self.lock:
            return max(
                (n for h, n in self.max_in_flight.items() if h.rsplit(":", 1)[0] == host),
                default=0,
            )

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_in_flight.clear()

    # -- used by the handler ----------------------------------------------------------------

    def _enter(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)
            n = self.in_flight.get(request.host, 0) + 1
            self.in_flight[request.host] = n
            self.max_in_flight[request.host] = max(n, self.max_in_flight.get(request.host, 0))

    def _leave(self, request: RecordedRequest) -> None:
        with self.lock:
            self.in_flight[request.host] -= 1

    def _find(self, path: str) -> Route | None:
        bare = path.split("?", 1)[0]
        route = self.routes.get(path) or self.routes.get(bare)
        if route is not None:
            return route
        for prefix, folder in self.mounts.items():
            if bare.startswith(prefix):
                return _file_route(folder, bare[len(prefix) :])
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to MAX_WAIT; False when the server is stopping."""
        return not self.stopping.wait(min(seconds, MAX_WAIT))


def _gzip_zeros(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [comp.compress(block) for _ in range(size // len(block))]
    parts.append(comp.compress(bytes(size % len(block))))
    parts.append(comp.flush())
    return b"".join(parts)


def _file_route(folder: Path, relative: str) -> Route | None:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        return None
    stat = path.stat()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Route(
        body=path.read_bytes(),
        content_type=kind,
        etag=f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
        last_modified=email.utils.formatdate(stat.st_mtime, usegmt=True),
    )


def _not_modified(route: Route, headers: dict[str, str]) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None and route.etag is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or route.etag.removeprefix("W/") in tags
    ims = headers.get("if-modified-since")
    if inm is None and ims is not None and route.last_modified is not None:
        try:
            since = email.utils.parsedate_to_datetime(ims)
            modified = email.utils.parsedate_to_datetime(route.last_modified)
        except (TypeError, ValueError):
            return False
        return modified <= since
    return False


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early (timeouts, size caps) are expected here, not errors.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FeedServer/1"
    #: an idle keep-alive connection ends by itself
    timeout = 5
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            host=headers.get("host", ""),
            client_port=self.client_address[1],
        )
        owner._enter(request)
        try:
            route = owner._find(self.path)
            while route is not None and route.dynamic is not None:
                route = route.dynamic(request)
            if route is None:
                self._plain(404, b"not found\n")
            else:
                self._answer(route, headers, head=head)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        finally:
            owner._leave(request)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, route: Route, headers: dict[str, str], *, head: bool) -> None:
        owner = self.server.owner
        if route.delay and not owner._sleep(route.delay):
            self.close_connection = True
            return
        validators = {}
        if route.etag is not None:
            validators["ETag"] = route.etag
        if route.last_modified is not None:
            validators["Last-Modified"] = route.last_modified
        if route.status == 200 and _not_modified(route, headers):
            self.send_response(304)
            for name, value in {**validators, **route.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            return
        self.send_response(route.status)
        if route.content_type:
            self.send_header("Content-Type", route.content_type)
        for name, value in {**validators, **route.headers}.items():
            self.send_header(name, value)
        if route.endless is not None or route.gzip_bomb is not None:
            self._stream(route, head=head)
            return
        body = route.body
        accepts = headers.get("accept-encoding", "")
        if route.encoding and route.encoding in accepts:
            body = _compress(body, route.encoding)
            self.send_header("Content-Encoding", route.encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if route.body_delay:
            self.wfile.flush()
            if not owner._sleep(route.body_delay):
                self.close_connection = True
                return
        if route.truncate:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def _stream(self, route: Route, *, head: bool) -> None:
        """Chunked body until the client leaves, the server stops, or MAX_STREAM is sent."""
        owner = self.server.owner
        if route.gzip_bomb is not None:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        if head:
            return
        chunks = _bomb_chunks(route.gzip_bomb) if route.gzip_bomb is not None else None
        sent = 0
        started = time.monotonic()
        while not owner.stopping.is_set() and time.monotonic() - started < MAX_WAIT:
            if chunks is not None:
                piece = next(chunks, b"")
                if not piece:
                    break
            else:
                assert route.endless is not None
                piece = route.endless
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if sent > MAX_STREAM:
                break
            if route.chunk_delay:
                self.wfile.flush()
                if not owner._sleep(route.chunk_delay):
                    break
        self.wfile.write(b"0\r\n\r\n")


def _compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    raise ValueError(f"unknown encoding {encoding!r}")


def _bomb_chunks(size: int) -> Iterator[bytes]:
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    left = size
    while left > 0:
        n = min(left, len(block))
        left -= n
        out = comp.compress(block[:n])
        if out:
            yield out
    yield comp.flush()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A FeedServer on 127.0.0.1 for one test, stopped afterwards."""
    with FeedServer() as server:
        yield server
