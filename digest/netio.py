"""An httpcore network backend on asyncio's own transports, for :mod:`digest.fetch`.

httpx reaches the network through httpcore, which on asyncio goes through anyio: every read
and write enters a cancel scope and checks which event loop runs. For a poll of many small
or not-modified feeds that bookkeeping costs more CPU than the HTTP itself. This backend
does the same job with a plain :class:`asyncio.Protocol` per connection: reads wait on one
future, timeouts are one timer, and httpcore's exceptions come out as with anyio, so httpx
maps them as before (``httpx.ConnectError``, ``httpx.ReadTimeout``, ...).

TLS contexts are also made here, once and only when the first TLS connection is opened:
loading the CA bundle takes about 20 ms, wasted on a cycle whose sources are all plain http.
"""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections import deque
from collections.abc import Callable, Iterable

import httpcore

__all__ = ["AsyncioBackend"]

#: the protocol stops reading from the socket above this many unread bytes, and goes on
#: below a quarter of it: a slow consumer must not let a fast server fill the memory
READ_BUFFER_LIMIT = 1024 * 1024


class _Connection(asyncio.Protocol):
    """One connection's received bytes, and the future a reader or writer waits on (one at
    a time: httpcore writes a request, then reads its response, never both at once)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_BUFFER_LIMIT and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self.writing_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def take(self, max_bytes: int) -> bytes:
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.buffered -= len(chunk)
        if self.reading_paused and self.buffered < READ_BUFFER_LIMIT // 4:
            assert self.transport is not None
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def wait(self, timeout: float | None, timeout_error: type[Exception]) -> None:
        """Until :meth:`_wake`; raises ``timeout_error`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise timeout_error(f"no progress within {timeout:g} s") from None
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, connection: _Connection, backend: AsyncioBackend) -> None:
        self._conn = connection
        self._backend = backend

    @property
    def _transport(self) -> asyncio.Transport:
        assert self._conn.transport is not None
        return self._conn.transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        conn = self._conn
        while not conn.chunks:
            if conn.eof:
                if conn.error is not None:
                    raise httpcore.ReadError(str(conn.error) or type(conn.error).__name__)
                return b""
            await conn.wait(timeout, httpcore.ReadTimeout)
        return conn.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        conn = self._conn
        if conn.eof or self._transport.is_closing():
            raise httpcore.WriteError(str(conn.error or "the connection is closed"))
        self._transport.write(buffer)
        while conn.writing_paused:
            await conn.wait(timeout, httpcore.WriteTimeout)
        if conn.error is not None:
            raise httpcore.WriteError(str(conn.error))

    async def aclose(self) -> None:
        transport = self._transport
        if transport.get_extra_info("ssl_object") is None:
            transport.close()
        else:
            # No close_notify, as anyio's TLS streams: a polite TLS close waits for the
            # server's answer, and a cycle that ends meanwhile would leave the socket open.
            transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # httpcore's ``ssl_context`` is the placeholder the pool was given; see AsyncioBackend.
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport,
                    self._conn,
                    self._backend.tls_context(),
                    server_hostname=server_hostname,
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # pragma: no cover (closed during the handshake)
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._conn.transport = transport
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        transport = self._conn.transport
        if info == "is_readable":
            # An idle connection is readable only when the server closed it or sent junk.
            return self._conn.eof or bool(self._conn.chunks) or transport is None
        if transport is None:
            return None
        key = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        if key in ("ssl_object", "sockname", "peername", "socket"):
            return transport.get_extra_info(key)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections for httpcore on the running asyncio loop.

    ``tls`` makes the context every TLS connection uses, on the first one; the context that
    httpcore passes in (the pool needs one, or it loads the CA bundle for each connection)
    is a placeholder: :data:`PLACEHOLDER_TLS`.
    """

    def __init__(self, tls: Callable[[], ssl.SSLContext]) -> None:
        self._make_tls = tls
        self._tls: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = self._make_tls()
        return self._tls

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                    happy_eyeballs_delay=0.25,  # RFC 8305, as anyio does
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(connection, self)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


#: what the pool passes to :meth:`_Stream.start_tls`, which uses the backend's context instead
PLACEHOLDER_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
