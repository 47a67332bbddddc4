"""Fetch the due sources of one poll cycle over HTTP(S), or from local files.

One ``httpx.AsyncClient`` per cycle reuses connections (:class:`ConnectionSlots`), also after
a 304; a global and a per-host semaphore bound the load we put on the network and on each
server. Redirects are followed by hand so
that each hop's status is known (only an all-301/308 chain moves a source permanently), and
bodies are decompressed here rather than by httpx so that the size cap holds after
decompression too, one bounded chunk at a time.

This is the one boundary where httpx exceptions are translated: :func:`fetch_one` never
raises for a source; every failure becomes a :class:`FetchResult` with outcome ``"error"``
and a message that says what failed and what to do (:func:`describe_error`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpcore
import httpx

from digest.errors import FetchError
from digest.models import FetchResult, Source, SourceState
from digest.netio import PLACEHOLDER_TLS, AsyncioBackend
from digest.politeness import (
    PERMANENT_REDIRECTS,
    REDIRECT_STATUSES,
    FetchSettings,
    body_hash,
    classify,
    current_state,
)

__all__ = [
    "ACCEPT",
    "ConnectionSlots",
    "Fetcher",
    "FetchSettings",
    "describe_error",
    "fetch_all",
    "fetch_one",
    "make_client",
]

log = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
#: statuses whose responses never carry a body (RFC 9110 6.4.1)
_NO_BODY = frozenset({204, 304})
#: content codings we can undo with a bounded output size
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

# Each httpx exception class, most specific first in the MRO, with (what failed, what to do).
# tests/test_fetch.py checks that every httpx.TransportError subclass has its own entry.
ERROR_MESSAGES: dict[type[Exception], tuple[str, str]] = {
    httpx.ConnectTimeout: (
        "connection timed out (connect_timeout)",
        "the host does not answer; check the url's host name and your network",
    ),
    httpx.ReadTimeout: (
        "the server stopped sending data (read_timeout)",
        "it is slow or overloaded; it will be retried with back-off",
    ),
    httpx.WriteTimeout: (
        "timed out sending the request",
        "the network or the server stalled; it will be retried",
    ),
    httpx.PoolTimeout: (
        "no free connection in time",
        "too many fetches at once; lower [fetch] concurrency",
    ),
    httpx.TimeoutException: ("timed out", "it will be retried with back-off"),
    httpx.ConnectError: (
        "cannot connect to the server",
        "check the url's host name and your network; it will be retried",
    ),
    httpx.ReadError: (
        "the connection broke while reading the response",
        "it will be retried with back-off",
    ),
    httpx.WriteError: (
        "the connection broke while sending the request",
        "it will be retried with back-off",
    ),
    httpx.CloseError: (
        "the connection could not be closed cleanly",
        "it will be retried",
    ),
    httpx.NetworkError: ("network error", "check your network; it will be retried"),
    httpx.ProxyError: (
        "the proxy failed the request",
        "check the HTTPS_PROXY/HTTP_PROXY/NO_PROXY environment variables",
    ),
    httpx.UnsupportedProtocol: (
        "unsupported URL scheme",
        "only http:// and https:// URLs can be fetched; check the source's url",
    ),
    httpx.LocalProtocolError: (
        "invalid request",
        "the url or a header cannot be sent over HTTP; check the source's url",
    ),
    httpx.RemoteProtocolError: (
        "the server broke the HTTP protocol",
        "it sent a malformed response or closed the connection early; it will be retried",
    ),
    httpx.ProtocolError: ("HTTP protocol error", "it will be retried"),
    httpx.TransportError: ("transport error", "it will be retried"),
    httpx.DecodingError: (
        "the response body could not be decoded",
        "the server sent corrupt compressed data; it will be retried",
    ),
    httpx.TooManyRedirects: ("too many redirects", "check the source's url in a browser"),
    httpx.HTTPError: ("HTTP error", "it will be retried"),
    httpx.InvalidURL: ("invalid URL", "check the source's url"),
}
_TLS = (
    "TLS error",
    "the server's certificate is invalid, expired or for another name, or TLS failed; "
    "open the url in a browser to see why",
)


def describe_error(exc: Exception) -> str:
    """One line for a failed request: what failed, the cause, and what to do."""
    detail = str(exc).strip()
    if _is_tls_error(exc):
        summary, advice = _TLS
    else:
        summary, advice = next(
            (ERROR_MESSAGES[k] for k in type(exc).__mro__ if k in ERROR_MESSAGES),
            (f"unexpected {type(exc).__name__}", "it will be retried"),
        )
    return f"{summary}: {detail}; {advice}" if detail else f"{summary}; {advice}"


def _is_tls_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "[SSL" in text


def make_client(settings: FetchSettings) -> httpx.AsyncClient:
    """The client for one cycle: our User-Agent, timeouts, no automatic redirects, and at
    most ``concurrency`` connections, kept alive between requests."""
    limits = httpx.Limits(
        max_connections=settings.concurrency,
        max_keepalive_connections=settings.concurrency,
    )
    # A transport of our own makes httpx ignore the proxy environment variables; with any
    # set, its own pool serves (and routes through the proxies) as it always did.
    transport = None if urllib.request.getproxies() else ConnectionSlots(settings.concurrency)
    return _Client(
        headers={
            "User-Agent": settings.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip, deflate",
        },
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.total_timeout,
        ),
        limits=limits,
        transport=transport,
        follow_redirects=False,
    )


class _Cookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _Client(httpx.AsyncClient):
    """httpx's client, whose cookie jar passes over the responses that set no cookie.

    httpx hands every response to the standard library's cookie jar through adapters that
    parse the URL once more: a tenth of the CPU of a not-modified fetch, where almost no
    feed sets a cookie. The few that do (a cookie check before a redirect) still get it back.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = self.cookies

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = _Cookies(cookies)


class ConnectionSlots(httpx.AsyncBaseTransport):
    """At most ``size`` connections, each in a pool of its own (an httpx transport limited to
    one connection), handed to requests by origin.

    httpcore's pool scans every connection it holds, several times per request (and asks the
    socket of each idle one whether it is readable): with 16 connections that cost more CPU
    than the request. Here a request takes an idle slot already connected to its origin, else
    a new slot while there are fewer than ``size``, else the slot idle the longest, whose
    connection its pool closes for the new one; so no more than ``size`` connections are
    ever open, the same bound as one pool of ``size``. Requests beyond ``size`` wait for a
    slot, up to the pool timeout (:class:`httpx.PoolTimeout`), as with httpx's own pool.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._backend = AsyncioBackend(tls=_tls_context)  # one CA bundle for all slots
        self._slots: list[_Slot] = []
        #: idle slots by origin, the most recently used last
        self._idle: dict[_Origin, list[_Slot]] = {}
        #: every idle slot, the longest idle first
        self._lru: dict[_Slot, None] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = (request.url.scheme, request.url.host, request.url.port)
        slot = self._take(origin)
        if slot is None:
            slot = await self._wait(origin, request)
        try:
            response = await slot.transport.handle_async_request(request)
        except BaseException:
            self._give(slot)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Releasing(response.stream, lambda: self._give(slot)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        slots, self._slots = self._slots, []
        self._idle.clear()
        self._lru.clear()
        for slot in slots:
            await slot.transport.aclose()

    def _take(self, origin: _Origin) -> _Slot | None:
        same = self._idle.get(origin)
        if same:
            slot = same.pop()
            del self._lru[slot]
            return slot
        if len(self._slots) < self.size:
            slot = _Slot(_OneConnection(self._backend), origin)
            self._slots.append(slot)
            return slot
        if self._lru:
            slot = next(iter(self._lru))
            del self._lru[slot]
            self._idle[slot.origin].remove(slot)
            slot.origin = origin
            return slot
        return None

    def _give(self, slot: _Slot) -> None:
        if slot not in self._slots:  # closed meanwhile
            return
        self._idle.setdefault(slot.origin, []).append(slot)
        self._lru[slot] = None
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait(self, origin: _Origin, request: httpx.Request) -> _Slot:
        timeouts = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                while True:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter.done() and not waiter.cancelled():
                            self._wake()  # woken, then cancelled: pass the free slot on
                        raise
                    finally:
                        with contextlib.suppress(ValueError):
                            self._waiters.remove(waiter)
                    slot = self._take(origin)
                    if slot is not None:
                        return slot
        except TimeoutError:
            raise httpx.PoolTimeout("no connection slot became free", request=request) from None


_Origin = tuple[str, str, int | None]


def _tls_context() -> ssl.SSLContext:
    context = httpx.create_ssl_context()
    context.set_alpn_protocols(["http/1.1"])  # as httpcore sets it on the context it uses
    return context


class _OneConnection(httpx.AsyncHTTPTransport):
    """httpx's transport over at most one connection, made by :class:`AsyncioBackend`."""

    def __init__(self, backend: AsyncioBackend) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        super().__init__(verify=PLACEHOLDER_TLS, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=PLACEHOLDER_TLS,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


class _Slot:
    __slots__ = ("origin", "transport")

    def __init__(self, transport: _OneConnection, origin: _Origin) -> None:
        self.transport = transport
        self.origin = origin


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its slot back when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class Fetcher:
    """One cycle's client and limits: ``async with Fetcher(settings) as f: await f.fetch(...)``.

    Waiting for a free slot does not count against ``total_timeout``. The per-host limit
    applies to the host of the URL polled, not to redirect targets.
    """

    def __init__(self, settings: FetchSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or make_client(settings)
        self._overall = asyncio.Semaphore(settings.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.aclose()

    async def fetch(self, source: Source, state: SourceState, now: datetime) -> FetchResult:
        """Like :func:`fetch_one`, once a global and a per-host slot are free."""
        key = _host_key(source, state)
        per_host: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()
        if key is not None:
            per_host = self._hosts.setdefault(key, asyncio.Semaphore(self.settings.per_host))
        async with per_host, self._overall:
            return await fetch_one(self.client, source, state, self.settings, now)


async def fetch_all(
    jobs: Sequence[tuple[Source, SourceState]],
    settings: FetchSettings,
    *,
    now: datetime,
    on_done: Callable[[FetchResult], None] | None = None,
) -> list[FetchResult]:
    """Fetch every job concurrently within the limits; results come in the order of ``jobs``.

    ``on_done`` is called as each fetch finishes (for progress output); it must not block.
    """

    async def run(fetcher: Fetcher, source: Source, state: SourceState) -> FetchResult:
        result = await fetcher.fetch(source, state, now)
        if on_done is not None:
            try:
                on_done(result)
            except Exception:
                log.exception("progress callback failed for source=%s", source.name)
        return result

    async with Fetcher(settings) as fetcher:
        return list(await asyncio.gather(*(run(fetcher, src, st) for src, st in jobs)))


def _host_key(source: Source, state: SourceState) -> str | None:
    state = current_state(source, state)
    url = state.url or source.url
    if not url:
        return None
    try:
        return (urlsplit(url).hostname or url).lower()
    except ValueError:
        return url


async def fetch_one(
    client: httpx.AsyncClient,
    source: Source,
    state: SourceState,
    settings: FetchSettings,
    now: datetime,
) -> FetchResult:
    """Fetch one source within ``total_timeout``; never raises for a source's failure."""
    started = time.monotonic()
    trace = _Trace(source=source.name, now=now)
    try:
        async with asyncio.timeout(settings.total_timeout):
            if source.url is None and source.path is not None:
                result = await _fetch_file(source, state, settings, now)
            elif source.url is None:
                raise FetchError("the source has neither url nor path; set one in the config")
            else:
                result = await _fetch_http(client, source, state, settings, trace)
    except TimeoutError:
        result = trace.error(
            f"no complete response within {settings.total_timeout:g} s (total_timeout); "
            "the server is too slow; it will be retried with back-off"
        )
    except FetchError as exc:
        result = trace.error(exc.message)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        result = trace.error(describe_error(exc))
    except Exception as exc:
        # A bug, not a source problem: logged loudly, but it must not stop the other sources.
        log.critical("unexpected error fetching source=%s", source.name, exc_info=True)
        result = trace.error(f"internal error ({type(exc).__name__}: {exc}); please report it")
    return replace(result, elapsed=time.monotonic() - started)


@dataclass(slots=True, kw_only=True)
class _Trace:
    """Where a fetch got to, so an exception still yields a result with url and status."""

    source: str
    now: datetime
    url: str | None = None
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)

    def error(self, message: str) -> FetchResult:
        return FetchResult(
            source=self.source,
            outcome="error",
            status=self.status,
            headers=self.headers,
            final_url=self.url,
            fetched_at=self.now,
            error=message,
        )


async def _fetch_http(
    client: httpx.AsyncClient,
    source: Source,
    state: SourceState,
    settings: FetchSettings,
    trace: _Trace,
) -> FetchResult:
    state = current_state(source, state)
    url = state.url or source.url
    assert url is not None
    conditional: dict[str, str] = {}
    if state.etag:
        conditional["If-None-Match"] = state.etag
    if state.last_modified:
        conditional["If-Modified-Since"] = state.last_modified
    hops: list[int] = []
    while True:
        trace.url, trace.status, trace.headers = url, 0, {}
        request = client.build_request("GET", url, headers=conditional)
        response = await client.send(request, stream=True)
        try:
            status = response.status_code
            headers = _plain_headers(response.headers)
            trace.status, trace.headers = status, headers
            location = response.headers.get("location")
            if status in REDIRECT_STATUSES and location:
                url = _redirect_target(response, location)
                hops.append(status)
                if len(hops) > settings.max_redirects:
                    raise FetchError(
                        f"more than {settings.max_redirects} redirects (max_redirects); "
                        "open the url in a browser and configure where it ends"
                    )
                continue
            permanent = url if hops and all(s in PERMANENT_REDIRECTS for s in hops) else None
            return await _finish(response, headers, state, settings, trace, permanent)
        finally:
            await _release(response)


async def _release(response: httpx.Response) -> None:
    """Close a response; one that has no body by definition (304) is read to its end first.

    Reading the nothing that follows its headers lets its connection go back to the pool; a
    response closed unread takes its connection down with it, so every not-modified source
    would pay for a new connection (and the pool's bookkeeping of one more). A 304 that
    announces a body anyway is closed unread, as before: a server that also sends it would
    leave it in front of the next response on that connection, another source's.
    """
    headers = response.headers
    if (
        response.status_code in _NO_BODY
        and not response.is_closed
        and "transfer-encoding" not in headers
        and headers.get("content-length", "0").strip() == "0"
    ):
        with contextlib.suppress(httpx.HTTPError):
            await response.aread()
    await response.aclose()


def _redirect_target(response: httpx.Response, location: str) -> str:
    target = response.url.join(location)
    if target.scheme not in ("http", "https"):
        raise FetchError(
            f"redirect to a non-http(s) URL refused ({target.scheme}:); check the source's url"
        )
    return str(target)


def _plain_headers(headers: httpx.Headers) -> dict[str, str]:
    """Lower-case names, repeated headers joined with commas (as httpx does)."""
    return {key.lower(): value for key, value in headers.items()}


async def _finish(
    response: httpx.Response,
    headers: dict[str, str],
    state: SourceState,
    settings: FetchSettings,
    trace: _Trace,
    permanent: str | None,
) -> FetchResult:
    status = response.status_code
    verdict = classify(status, headers, now=trace.now)
    base = FetchResult(
        source=trace.source,
        outcome=verdict.outcome,
        status=status,
        headers=headers,
        final_url=trace.url,
        fetched_at=trace.now,
        retry_after=verdict.retry_after,
        error=verdict.message,
        permanent_url=permanent if verdict.outcome == "not_modified" else None,
    )
    if verdict.outcome != "ok":
        return base
    body = await _read_body(response, settings.max_bytes)
    # The body is decoded now; these would describe bytes the parser never sees.
    for name in ("content-encoding", "content-length"):
        headers.pop(name, None)
    digest = body_hash(body)
    if digest == state.body_hash:
        return replace(base, outcome="not_modified", permanent_url=permanent)
    return replace(base, body=body, body_hash=digest, permanent_url=permanent)


def _too_big(max_bytes: int) -> FetchError:
    return FetchError(
        f"the response is larger than {max_bytes} bytes (max_bytes); the url may not be a "
        "feed, or raise [fetch] max_bytes"
    )


async def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` of decoded body; stop as soon as more would arrive."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_big(max_bytes)
    decoder = _Decoder(response.headers.get("content-encoding", ""))
    out = bytearray()
    received = 0
    async for raw in response.aiter_raw():
        received += len(raw)
        if received > max_bytes:
            raise _too_big(max_bytes)
        out += decoder.decode(raw, max_bytes - len(out))
    out += decoder.flush(max_bytes - len(out))
    return bytes(out)


class _Decoder:
    """Undo gzip/deflate with a bound on the output of each call (a gzip bomb stops early)."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _ENCODINGS):
            raise FetchError(
                f"unsupported Content-Encoding {content_encoding!r}; the server ignored our "
                "Accept-Encoding (gzip, deflate)"
            )
        self.coding = codings[0] if codings else None
        self.first = True
        self.inflate = zlib.decompressobj(_ENCODINGS[self.coding]) if self.coding else None

    def decode(self, data: bytes, room: int) -> bytes:
        if self.inflate is None:
            if len(data) > room:
                self._overflow()
            return data
        try:
            out = self.inflate.decompress(data, room + 1)
        except zlib.error as exc:
            if self.coding == "deflate" and self.first:
                # Many servers send raw deflate without the zlib header.
                self.first = False
                self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(data, room)
            raise self._corrupt(exc) from None
        self.first = False
        if len(out) > room:
            self._overflow()
        return out

    def flush(self, room: int) -> bytes:
        if self.inflate is None:
            return b""
        try:
            out = self.inflate.flush()
        except zlib.error as exc:
            raise self._corrupt(exc) from None
        if len(out) > room:
            self._overflow()
        return out

    def _overflow(self) -> NoReturn:
        raise FetchError(
            "the response is larger than max_bytes once decompressed; the url may not be a "
            "feed, or raise [fetch] max_bytes"
        )

    def _corrupt(self, exc: zlib.error) -> FetchError:
        return FetchError(
            f"the body is not valid {self.coding} data ({exc}); the server sent a corrupt "
            "response; it will be retried"
        )


async def _fetch_file(
    source: Source, state: SourceState, settings: FetchSettings, now: datetime
) -> FetchResult:
    assert source.path is not None
    path = Path(source.path)
    try:
        data = await asyncio.to_thread(_read_capped, path, settings.max_bytes)
    except FileNotFoundError:
        raise FetchError(f"file not found: {path}; check the source's path") from None
    except IsADirectoryError:
        raise FetchError(f"{path} is a folder, not a feed file; check the source's path") from None
    except OSError as exc:
        raise FetchError(
            f"cannot read {path}: {exc.strerror or exc}; check the file's permissions"
        ) from None
    digest = body_hash(data)
    if digest == state.body_hash:
        return FetchResult(source=source.name, outcome="not_modified", fetched_at=now)
    return FetchResult(
        source=source.name, outcome="ok", body=data, body_hash=digest, fetched_at=now
    )


def _read_capped(path: Path, max_bytes: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FetchError(
            f"{path} is larger than {max_bytes} bytes (max_bytes); raise [fetch] max_bytes"
        )
    return data
