"""The asyncio network backend under httpx (digest/netio.py), against real local servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpcore
import httpx
import pytest

from digest import fetch as fetch_module
from digest.fetch import ConnectionSlots, fetch_all
from digest.models import FetchResult, Source, SourceState
from digest.netio import READ_BUFFER_LIMIT, AsyncioBackend
from tests import servers
from tests.servers import FeedServer
from tests.test_fetch import FAST, NOW, RSS, fresh, source

feed_server = servers.feed_server


def _run(jobs: list[tuple[Source, SourceState]]) -> list[FetchResult]:
    return asyncio.run(fetch_all(jobs, replace(FAST, concurrency=1, per_host=1), now=NOW))


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FeedServer]:
    """An https server whose CA the client trusts through SSL_CERT_FILE, as a user would."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with FeedServer(tls=ctx) as server:
        yield server


def test_https_works_and_keeps_its_connection(tls_server: FeedServer) -> None:
    tls_server.add("/feed", RSS, etag='"v1"')
    src = source(tls_server.url("/feed"))
    first, second = _run([(src, fresh(src)), (src, replace(fresh(src), etag='"v1"'))])
    assert (first.outcome, first.body) == ("ok", RSS), first.error
    assert second.outcome == "not_modified", second.error
    ports = [r.client_port for r in tls_server.requests_for("/feed")]
    assert len(ports) == 2 and ports[0] == ports[1]


def test_the_ca_bundle_is_loaded_once_and_only_for_tls(
    tls_server: FeedServer, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[ssl.SSLContext] = []
    real = fetch_module._tls_context

    def counting() -> ssl.SSLContext:
        made.append(real())
        return made[-1]

    monkeypatch.setattr(fetch_module, "_tls_context", counting)
    feed_server.add("/feed", RSS)
    tls_server.add("/feed", RSS)
    plain = [source(feed_server.url(f"/feed?n={i}"), name=f"p{i}") for i in range(3)]
    assert [r.outcome for r in _run([(s, fresh(s)) for s in plain])] == ["ok"] * 3
    assert made == []
    # One slot goes back and forth: a new TLS connection each time, one context for all.
    secure = [source(tls_server.url(f"/feed?n={i}"), name=f"s{i}") for i in range(2)]
    order = [secure[0], plain[0], secure[1]]
    assert [r.outcome for r in _run([(s, fresh(s)) for s in order])] == ["ok"] * 3
    assert len({r.client_port for r in tls_server.requests}) == 2
    assert len(made) == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The server answers one request per connection and hangs up without saying so."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(RSS), RSS)
    ports: list[int] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, peer = listener.accept()
                ports.append(peer[1])
                with conn:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def go() -> list[int]:
        async with httpx.AsyncClient(transport=ConnectionSlots(1)) as client:
            codes = []
            for i in range(3):
                codes.append((await client.get(f"{base}/feed?n={i}")).status_code)
                await asyncio.sleep(0.05)  # the hang-up arrives while the connection idles
            return codes

    try:
        assert asyncio.run(go()) == [200, 200, 200]
    finally:
        listener.close()
    assert len(set(ports)) == 3


def test_a_reader_that_falls_behind_stops_the_socket_being_read() -> None:
    """Bounded memory: unread bytes stop at about READ_BUFFER_LIMIT, and none are lost."""
    payload = bytes(range(256)) * (8 * READ_BUFFER_LIMIT // 256)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                conn.sendall(payload)

    threading.Thread(target=serve, daemon=True).start()

    async def go() -> tuple[int, bytes]:
        backend = AsyncioBackend(tls=ssl.create_default_context)
        stream = await backend.connect_tcp("127.0.0.1", listener.getsockname()[1], timeout=5)
        await asyncio.sleep(0.3)  # the server has sent as much as the socket takes
        held = stream._conn.buffered  # type: ignore[attr-defined]
        received = bytearray()
        while chunk := await stream.read(65536, timeout=5):
            assert len(chunk) <= 65536
            received += chunk
        await stream.aclose()
        return held, bytes(received)

    try:
        held, received = asyncio.run(go())
    finally:
        listener.close()
    assert 0 < held <= READ_BUFFER_LIMIT + 256 * 1024  # one more read of the socket at most
    assert received == payload


def test_timeouts_and_refusals_come_out_as_httpcore_errors() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, then never answers
    port = listener.getsockname()[1]
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()

    async def go() -> None:
        backend = AsyncioBackend(tls=ssl.create_default_context)
        stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        try:
            with pytest.raises(httpcore.ReadTimeout):
                await stream.read(100, timeout=0.1)
            with pytest.raises(httpcore.ConnectTimeout):
                await stream.start_tls(ssl.create_default_context(), "127.0.0.1", timeout=0.1)
        finally:
            await stream.aclose()
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("127.0.0.1", closed_port, timeout=5)

    try:
        asyncio.run(go())
    finally:
        listener.close()
