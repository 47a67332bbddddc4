"""Fetching against a real HTTP server on 127.0.0.1 (tests/servers.py), and local files."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest import USER_AGENT
from digest.fetch import (
    ERROR_MESSAGES,
    ConnectionSlots,
    Fetcher,
    describe_error,
    fetch_all,
    fetch_one,
    make_client,
)
from digest.models import FetchResult, Source, SourceState
from digest.politeness import FetchSettings, apply_result
from tests import servers
from tests.servers import FeedServer

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
FAST = FetchSettings(connect_timeout=2, read_timeout=2, total_timeout=5, max_bytes=1024 * 1024)
feed_server = servers.feed_server  # the fixture, until conftest.py provides it
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>MFA</title></channel></rss>'


def source(url: str, name: str = "s", **kw: Any) -> Source:
    return Source(name=name, url=url, **kw)


def fresh(src: Source) -> SourceState:
    return SourceState(name=src.name, configured_url=src.url)


def fetch(
    src: Source, state: SourceState | None = None, settings: FetchSettings = FAST
) -> FetchResult:
    async def go() -> FetchResult:
        async with make_client(settings) as client:
            return await fetch_one(client, src, state or fresh(src), settings, NOW)

    return asyncio.run(go())


def after(src: Source, state: SourceState, res: FetchResult) -> SourceState:
    return apply_result(state, res, source=src, now=NOW, settings=FAST)


# -- plain and conditional GET --------------------------------------------------------------


def test_ok_returns_body_and_lower_case_headers(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, headers={"X-Custom": "1"})
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "ok", res.error
    assert (res.status, res.body, res.error) == (200, RSS, None)
    assert res.headers["content-type"].startswith("application/rss+xml")
    assert res.headers["x-custom"] == "1"
    assert res.final_url == feed_server.url("/feed")
    assert res.permanent_url is None
    assert res.fetched_at == NOW
    sent = feed_server.requests_for("/feed")[0].headers
    assert sent["user-agent"] == USER_AGENT
    assert "caucasus-digest/" in sent["user-agent"]
    assert "rss+xml" in sent["accept"]
    assert "if-none-match" not in sent and "if-modified-since" not in sent


def test_custom_user_agent(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS)
    fetch(source(feed_server.url("/feed")), settings=replace(FAST, user_agent="probe/2"))
    assert feed_server.requests_for("/feed")[0].headers["user-agent"] == "probe/2"


def test_etag_gets_304(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, etag='"v1"')
    src = source(feed_server.url("/feed"))
    first = fetch(src)
    assert first.outcome == "ok"
    state = after(src, fresh(src), first)
    assert state.etag == '"v1"'
    second = fetch(src, state)
    assert (second.outcome, second.status, second.body) == ("not_modified", 304, b"")
    assert feed_server.requests_for("/feed")[1].headers["if-none-match"] == '"v1"'
    feed_server.add("/feed", RSS + b" ", etag='"v2"')
    third = fetch(src, after(src, state, second))
    assert third.outcome == "ok"
    assert third.headers["etag"] == '"v2"'


def test_last_modified_gets_304(feed_server: FeedServer) -> None:
    stamp = "Fri, 14 Mar 2025 10:00:00 GMT"
    feed_server.add("/feed", RSS, last_modified=stamp)
    src = source(feed_server.url("/feed"))
    state = after(src, fresh(src), fetch(src))
    assert state.last_modified == stamp
    again = fetch(src, state)
    assert again.outcome == "not_modified"
    assert feed_server.requests_for("/feed")[1].headers["if-modified-since"] == stamp


def test_unchanged_body_without_validators_is_not_modified(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS)
    src = source(feed_server.url("/feed"))
    state = after(src, fresh(src), fetch(src))
    assert state.body_hash is not None
    same = fetch(src, state)
    assert (same.outcome, same.status, same.body) == ("not_modified", 200, b"")
    feed_server.add("/feed", RSS.replace(b"MFA", b"MID"))
    changed = fetch(src, after(src, state, same))
    assert changed.outcome == "ok"
    assert b"MID" in changed.body


# -- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "permanent"),
    [
        ([301], True),
        ([308], True),
        ([301, 308, 301], True),
        ([302], False),
        ([307], False),
        ([303], False),
        ([301, 302], False),
        ([307, 308], False),
    ],
)
def test_redirect_chains(feed_server: FeedServer, statuses: list[int], permanent: bool) -> None:
    feed_server.add("/new", RSS)
    feed_server.redirect_chain("/old", statuses, "/new")
    res = fetch(source(feed_server.url("/old")))
    assert res.outcome == "ok", res.error
    assert res.body == RSS
    assert res.final_url == feed_server.url("/new")
    assert res.permanent_url == (feed_server.url("/new") if permanent else None)
    assert len(feed_server.requests) == len(statuses) + 1


def test_permanent_redirect_is_polled_directly_next_time(feed_server: FeedServer) -> None:
    feed_server.add("/new", RSS, etag='"n"')
    feed_server.redirect("/old", "/new", 301)
    src = source(feed_server.url("/old"))
    state = after(src, fresh(src), fetch(src))
    assert state.url == feed_server.url("/new")
    feed_server.reset_log()
    assert fetch(src, state).outcome == "not_modified"
    assert [r.path for r in feed_server.requests] == ["/new"]


def test_redirect_to_another_host_keeps_working(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS)
    feed_server.redirect("/away", feed_server.url("/feed", host="localhost"), 302)
    res = fetch(source(feed_server.url("/away")))
    assert res.outcome == "ok"
    assert res.final_url == feed_server.url("/feed", host="localhost")


def test_a_cookie_set_before_a_redirect_is_sent_back(feed_server: FeedServer) -> None:
    """Some sites check for a cookie: the first answer sets it and redirects back."""
    feed_server.add(
        "/check", status=302, headers={"Location": "/feed", "Set-Cookie": "seen=1; Path=/"}
    )

    def needs_cookie(req: servers.RecordedRequest) -> servers.Route:
        if req.headers.get("cookie") == "seen=1":
            return servers.Route(body=RSS)
        return servers.Route(status=302, headers={"Location": "/check"})

    feed_server.add("/feed", dynamic=needs_cookie)
    res = fetch(source(feed_server.url("/feed")))
    assert (res.outcome, res.body) == ("ok", RSS), res.error
    assert [r.path for r in feed_server.requests] == ["/feed", "/check", "/feed"]


def test_too_many_redirects(feed_server: FeedServer) -> None:
    feed_server.add("/end", RSS)
    feed_server.redirect_chain("/loop", [301] * 6, "/end")
    res = fetch(source(feed_server.url("/loop")))
    assert res.outcome == "error"
    assert res.error is not None and "more than 5 redirects" in res.error
    assert len(feed_server.requests) == 6
    ok = fetch(source(feed_server.url("/loop")), settings=replace(FAST, max_redirects=6))
    assert ok.outcome == "ok"


def test_redirect_loop_ends(feed_server: FeedServer) -> None:
    feed_server.redirect("/a", "/b", 302)
    feed_server.redirect("/b", "/a", 302)
    res = fetch(source(feed_server.url("/a")))
    assert res.error is not None and "redirects" in res.error


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://example.org/feed"])
def test_non_http_redirect_is_refused(feed_server: FeedServer, target: str) -> None:
    feed_server.redirect("/feed", target, 302)
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and "non-http(s) URL refused" in res.error


def test_redirect_without_location_is_an_error(feed_server: FeedServer) -> None:
    feed_server.status("/feed", 301)
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and "Location" in res.error


# -- statuses -------------------------------------------------------------------------------


def test_404_says_what_to_do(feed_server: FeedServer) -> None:
    res = fetch(source(feed_server.url("/missing")))
    assert (res.outcome, res.status) == ("error", 404)
    assert res.error == (
        "HTTP 404 Not Found: the feed URL is wrong or the feed was removed; check the source's url"
    )
    assert res.body == b""


def test_410_is_gone(feed_server: FeedServer) -> None:
    feed_server.status("/feed", 410)
    src = source(feed_server.url("/feed"))
    res = fetch(src)
    assert (res.outcome, res.status) == ("gone", 410)
    assert after(src, fresh(src), res).gone


def test_429_retry_after(feed_server: FeedServer) -> None:
    feed_server.status("/feed", 429, headers={"Retry-After": "7200"})
    src = source(feed_server.url("/feed"))
    res = fetch(src)
    assert (res.outcome, res.status, res.retry_after) == ("retry_later", 429, 7200.0)
    state = after(src, fresh(src), res)
    assert state.next_poll_at is not None
    assert (state.next_poll_at - NOW).total_seconds() == 7200


def test_503_retry_after_date(feed_server: FeedServer) -> None:
    feed_server.status("/feed", 503, headers={"Retry-After": "Fri, 14 Mar 2025 12:10:00 GMT"})
    res = fetch(source(feed_server.url("/feed")))
    assert (res.outcome, res.retry_after) == ("retry_later", 600.0)


def test_500_backs_off_and_recovers(feed_server: FeedServer) -> None:
    feed_server.status("/feed", 500, b"oops")
    src = source(feed_server.url("/feed"), interval=600)
    state = fresh(src)
    delays = []
    for _ in range(4):
        res = fetch(src, state)
        assert res.outcome == "error"
        assert res.error is not None and res.error.startswith("HTTP 500 Internal Server Error")
        state = after(src, state, res)
        assert state.next_poll_at is not None
        delays.append((state.next_poll_at - NOW).total_seconds())
    assert delays == [600, 1200, 2400, 4800]
    assert state.error_count == 4
    feed_server.add("/feed", RSS)
    state = after(src, state, fetch(src, state))
    assert (state.error_count, state.last_error) == (0, None)
    assert state.next_poll_at is not None
    assert (state.next_poll_at - NOW).total_seconds() == 600


def test_cache_control_lengthens_the_next_poll(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, headers={"Cache-Control": "max-age=5400"})
    src = source(feed_server.url("/feed"))
    res = fetch(src)
    assert res.retry_after == 5400.0
    state = after(src, fresh(src), res)
    assert state.next_poll_at is not None
    assert (state.next_poll_at - NOW).total_seconds() == 5400


# -- timeouts, size caps, compression --------------------------------------------------------


def test_slow_response_times_out(feed_server: FeedServer) -> None:
    feed_server.slow("/feed", delay=8)
    res = fetch(source(feed_server.url("/feed")), settings=replace(FAST, read_timeout=0.3))
    assert res.outcome == "error"
    assert res.error is not None and "read_timeout" in res.error
    assert res.elapsed < 8  # the fetch gave up before the server answered


def test_trickling_body_hits_the_total_timeout(feed_server: FeedServer) -> None:
    feed_server.endless("/feed", b"<item/>", chunk_delay=0.05)
    settings = replace(FAST, read_timeout=2, total_timeout=0.5)
    res = fetch(source(feed_server.url("/feed")), settings=settings)
    assert res.outcome == "error"
    assert res.error is not None and "total_timeout" in res.error
    assert res.status == 200


def test_endless_body_stops_at_the_cap(feed_server: FeedServer) -> None:
    feed_server.endless("/feed")
    res = fetch(source(feed_server.url("/feed")), settings=replace(FAST, max_bytes=256 * 1024))
    assert res.outcome == "error"
    assert res.error is not None and "larger than 262144 bytes (max_bytes)" in res.error
    assert res.body == b""


def test_declared_length_over_the_cap_is_refused_before_reading(feed_server: FeedServer) -> None:
    feed_server.add("/feed", b"x" * 5000)
    res = fetch(source(feed_server.url("/feed")), settings=replace(FAST, max_bytes=4096))
    assert res.outcome == "error"
    assert res.error is not None and "max_bytes" in res.error


def test_body_at_the_cap_is_accepted(feed_server: FeedServer) -> None:
    feed_server.add("/feed", b"x" * 4096)
    res = fetch(source(feed_server.url("/feed")), settings=replace(FAST, max_bytes=4096))
    assert res.outcome == "ok"
    assert len(res.body) == 4096


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_body_is_decoded(feed_server: FeedServer, encoding: str) -> None:
    body = RSS * 200
    feed_server.add("/feed", body, encoding=encoding)
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "ok", res.error
    assert res.body == body
    assert "content-encoding" not in res.headers
    assert "content-length" not in res.headers
    accepted = feed_server.requests_for("/feed")[0].headers["accept-encoding"]
    assert "gzip" in accepted and "deflate" in accepted


def test_raw_deflate_body_is_decoded(feed_server: FeedServer) -> None:
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = comp.compress(RSS) + comp.flush()
    feed_server.add("/feed", raw, headers={"Content-Encoding": "deflate"})
    res = fetch(source(feed_server.url("/feed")))
    assert (res.outcome, res.body) == ("ok", RSS)


def test_corrupt_gzip_is_an_error(feed_server: FeedServer) -> None:
    feed_server.add("/feed", b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and "not valid gzip data" in res.error


def test_unknown_encoding_is_an_error(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, headers={"Content-Encoding": "br"})
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and "unsupported Content-Encoding 'br'" in res.error


def test_streamed_gzip_bomb_is_stopped(feed_server: FeedServer) -> None:
    feed_server.gzip_bomb("/feed", size=1024**3)
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and "larger than max_bytes once decompressed" in res.error


def test_gzip_bomb_never_inflates_far_past_the_cap(feed_server: FeedServer) -> None:
    # 200 MiB of zeros in ~200 KB: each 64 KiB network chunk would inflate to ~64 MiB at once.
    feed_server.gzip_bomb("/feed", size=200 * 1024**2, stream=False)
    tracemalloc.start()
    try:
        res = fetch(source(feed_server.url("/feed")))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.outcome == "error"
    assert res.error is not None and "decompressed" in res.error
    assert peak < 16 * FAST.max_bytes


def test_truncated_body_is_an_error(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS * 10, truncate=True)
    res = fetch(source(feed_server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and res.error.startswith("the server broke the HTTP protocol")


# -- network failures and the error mapping ---------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused() -> None:
    res = fetch(source(f"http://127.0.0.1:{_closed_port()}/feed"))
    assert (res.outcome, res.status) == ("error", 0)
    assert res.error is not None and res.error.startswith("cannot connect to the server")
    assert "check the url's host name" in res.error


def test_untrusted_certificate_is_a_tls_error() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with FeedServer(tls=ctx) as server:
        server.add("/feed", RSS)
        res = fetch(source(server.url("/feed")))
    assert res.outcome == "error"
    assert res.error is not None and res.error.startswith("TLS error")
    assert "certificate" in res.error


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.org/feed", "unsupported URL scheme"),
        ("http://[::1/feed", "invalid URL"),
        ("http://\x00/feed", "invalid URL"),
    ],
)
def test_bad_urls_are_errors_not_exceptions(url: str, words: str) -> None:
    res = fetch(source(url))
    assert res.outcome == "error"
    assert res.error is not None and res.error.startswith(words), res.error


def _all_subclasses(cls: type[Exception]) -> Iterator[type[Exception]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_all_httpx_errors_mapped() -> None:
    """A new httpx exception must get its own message here, not the generic fallback."""
    transport = list(_all_subclasses(httpx.TransportError))
    assert len(transport) >= 13
    for exc_type in transport:
        assert exc_type in ERROR_MESSAGES, f"{exc_type.__name__} has no message in fetch.py"
    everything: list[type[Exception]] = [httpx.HTTPError, httpx.InvalidURL]
    for exc_type in [*everything, *_all_subclasses(httpx.HTTPError)]:
        if exc_type is httpx.HTTPStatusError:
            continue  # raise_for_status() is never called
        message = describe_error(exc_type("boom"))
        assert "boom" in message
        assert not message.startswith("unexpected"), message
        assert "; " in message  # a cause and what to do


def test_tls_errors_are_recognised_through_the_cause_chain() -> None:
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: self-signed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("handshake failed") from exc
    except httpx.ConnectError as exc:
        assert describe_error(exc).startswith("TLS error: handshake failed")
    assert describe_error(httpx.ConnectError("[Errno 111] refused")).startswith("cannot connect")


def test_an_unexpected_bug_becomes_an_error_result(caplog: pytest.LogCaptureFixture) -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug in a transport")

    async def go() -> FetchResult:
        client = httpx.AsyncClient(transport=httpx.MockTransport(explode))
        async with client:
            src = source("http://feeds.example/feed")
            return await fetch_one(client, src, fresh(src), FAST, NOW)

    res = asyncio.run(go())
    assert res.outcome == "error"
    assert (
        res.error is not None and "internal error (RuntimeError: bug in a transport)" in res.error
    )
    assert any(r.levelname == "CRITICAL" for r in caplog.records)


# -- fetch_all: limits, isolation, order --------------------------------------------------------


def _run_all(
    jobs: list[tuple[Source, SourceState]], settings: FetchSettings = FAST, **kw: Any
) -> list[FetchResult]:
    return asyncio.run(fetch_all(jobs, settings, now=NOW, **kw))


def test_per_host_limit(feed_server: FeedServer) -> None:
    jobs = []
    for i in range(6):
        feed_server.add(f"/f{i}", RSS, delay=0.2)
        for host in ("127.0.0.1", "localhost"):
            src = source(feed_server.url(f"/f{i}", host=host), name=f"{host}-{i}")
            jobs.append((src, fresh(src)))
    results = _run_all(jobs, replace(FAST, per_host=2, concurrency=16))
    assert [r.outcome for r in results] == ["ok"] * 12
    assert feed_server.max_concurrency("127.0.0.1") == 2
    assert feed_server.max_concurrency("localhost") == 2


def test_global_concurrency_limit(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, delay=0.2)
    jobs = []
    for i in range(8):
        src = source(feed_server.url(f"/feed?n={i}"), name=f"s{i}")
        jobs.append((src, fresh(src)))
    results = _run_all(jobs, replace(FAST, per_host=8, concurrency=3))
    assert all(r.outcome == "ok" for r in results)
    assert feed_server.max_concurrency("127.0.0.1") == 3


def test_connections_are_reused(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS)
    jobs = []
    for i in range(4):
        src = source(feed_server.url(f"/feed?n={i}"), name=f"s{i}")
        jobs.append((src, fresh(src)))
    _run_all(jobs, replace(FAST, per_host=1, concurrency=1))
    assert len({r.client_port for r in feed_server.requests}) == 1


def test_not_modified_answers_keep_the_connection(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, etag='"v1"')
    jobs = []
    for i in range(4):
        src = source(feed_server.url(f"/feed?n={i}"), name=f"s{i}")
        jobs.append((src, replace(fresh(src), etag='"v1"')))
    results = _run_all(jobs, replace(FAST, per_host=1, concurrency=1))
    assert [r.outcome for r in results] == ["not_modified"] * 4
    assert len({r.client_port for r in feed_server.requests}) == 1


@contextmanager
def raw_server(answers: dict[str, bytes]) -> Iterator[str]:
    """A keep-alive HTTP server that sends exactly the bytes given for each path."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            pending = b""
            while data := conn.recv(65536):
                pending += data
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    path = head.split(b" ")[1].decode()
                    conn.sendall(answers[path.split("?")[0]])

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_304_with_a_body_does_not_spill_into_the_next_answer() -> None:
    answers = {
        "/liar": b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\nhello',
        "/feed": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(RSS), RSS),
    }
    with raw_server(answers) as base:
        liar = source(f"{base}/liar", name="liar")
        jobs = [(liar, replace(fresh(liar), etag='"v1"'))]
        for i in range(3):
            src = source(f"{base}/feed?n={i}", name=f"s{i}")
            jobs.append((src, fresh(src)))
        results = _run_all(jobs, replace(FAST, per_host=1, concurrency=1))
    assert [r.outcome for r in results] == ["not_modified", "ok", "ok", "ok"], results


def test_connection_slots_never_hold_more_connections_than_allowed(
    feed_server: FeedServer,
) -> None:
    psutil = pytest.importorskip("psutil")
    feed_server.add("/feed", RSS, etag='"v1"')
    port = int(feed_server.url("/").split(":")[2].split("/")[0])
    hosts = ("127.0.0.1", "localhost")
    slots = ConnectionSlots(1)

    def open_connections() -> int:
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )

    async def go() -> list[int]:
        seen = []
        async with httpx.AsyncClient(transport=slots) as client:
            for rounds in range(3):
                urls = [feed_server.url(f"/feed?r={rounds}", host=h) for h in hosts]
                answers = await asyncio.gather(*(client.get(u) for u in urls))
                assert [a.status_code for a in answers] == [200, 200]
                seen.append(open_connections())
            urls = [feed_server.url(f"/feed?again={i}") for i in range(3)]
            for url in urls:
                assert (await client.get(url)).status_code == 200
            seen.append(open_connections())
        return seen

    assert max(asyncio.run(go())) == 1
    # The one slot went from origin to origin, and was kept alive while the origin stayed.
    assert {r.host.rsplit(":", 1)[0] for r in feed_server.requests} == set(hosts)
    assert len({r.client_port for r in feed_server.requests[-3:]}) == 1


def test_connection_slots_time_out_like_a_full_pool(feed_server: FeedServer) -> None:
    feed_server.add("/slow", RSS, delay=0.5)

    async def go() -> list[object]:
        timeout = httpx.Timeout(5.0, pool=0.1)
        async with httpx.AsyncClient(transport=ConnectionSlots(2), timeout=timeout) as client:
            urls = [feed_server.url(f"/slow?n={i}") for i in range(3)]
            return await asyncio.gather(*(client.get(u) for u in urls), return_exceptions=True)

    outcomes = asyncio.run(go())
    assert sorted(type(o).__name__ for o in outcomes) == ["PoolTimeout", "Response", "Response"]
    assert feed_server.max_concurrency() == 2


def test_proxy_environment_variables_are_honoured(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_server.add("http://feeds.invalid/feed", RSS)  # the absolute form a proxy receives
    monkeypatch.setenv("HTTP_PROXY", feed_server.url("/"))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    res = fetch(source("http://feeds.invalid/feed"))
    assert (res.outcome, res.body) == ("ok", RSS), res.error
    assert [r.path for r in feed_server.requests] == ["http://feeds.invalid/feed"]


def test_a_failing_source_does_not_affect_the_others(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feed_server.add("/good", RSS)
    feed_server.status("/down", 500)
    feed_server.slow("/slow", delay=8)
    feed_server.endless("/huge")
    sources = [
        source(feed_server.url("/good"), name="good1"),
        source(feed_server.url("/down"), name="down"),
        source(f"http://127.0.0.1:{_closed_port()}/", name="refused"),
        source(feed_server.url("/slow"), name="slow"),
        source(feed_server.url("/huge"), name="huge"),
        Source(name="nofile", path=str(tmp_path / "missing.xml")),
        source("ftp://example.org/", name="ftp"),
        source(feed_server.url("/good"), name="good2"),
    ]
    done: list[str] = []
    results = _run_all(
        [(s, fresh(s)) for s in sources],
        replace(FAST, read_timeout=0.5),
        on_done=lambda r: done.append(r.source),
    )
    assert [r.source for r in results] == [s.name for s in sources]
    assert [r.outcome for r in results] == ["ok"] + ["error"] * 6 + ["ok"]
    assert results[0].body == results[-1].body == RSS
    assert all(r.error for r in results[1:-1])
    assert sorted(done) == sorted(s.name for s in sources)


def test_a_raising_progress_callback_does_not_stop_the_cycle(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS)
    src = source(feed_server.url("/feed"))

    def boom(result: FetchResult) -> None:
        raise ValueError("display broke")

    assert [r.outcome for r in _run_all([(src, fresh(src))], on_done=boom)] == ["ok"]


def test_fetcher_waits_for_a_slot_outside_the_total_timeout(feed_server: FeedServer) -> None:
    feed_server.add("/feed", RSS, delay=0.3)
    settings = replace(FAST, per_host=1, total_timeout=0.8)

    async def go() -> list[FetchResult]:
        async with Fetcher(settings) as fetcher:
            srcs = [source(feed_server.url(f"/feed?n={i}"), name=f"s{i}") for i in range(5)]
            return list(await asyncio.gather(*(fetcher.fetch(s, fresh(s), NOW) for s in srcs)))

    # 5 x 0.3 s in a row is more than total_timeout, yet each fetch alone is within it.
    assert [r.outcome for r in asyncio.run(go())] == ["ok"] * 5
    assert feed_server.max_concurrency() == 1


def test_empty_job_list() -> None:
    assert _run_all([]) == []


# -- local files ----------------------------------------------------------------------------


@pytest.fixture
def feed_file(tmp_path: Path) -> Path:
    path = tmp_path / "feed.xml"
    path.write_bytes(RSS)
    return path


def test_local_file(feed_file: Path) -> None:
    src = Source(name="local", path=str(feed_file))
    res = fetch(src)
    assert (res.outcome, res.body, res.status) == ("ok", RSS, 0)
    state = after(src, fresh(src), res)
    assert fetch(src, state).outcome == "not_modified"
    feed_file.write_bytes(RSS + b"\n")
    changed = fetch(src, state)
    assert (changed.outcome, changed.body) == ("ok", RSS + b"\n")


@pytest.mark.parametrize(
    ("name", "words"),
    [("missing.xml", "file not found"), (".", "is a folder"), ("big.xml", "larger than 4096")],
)
def test_local_file_errors(tmp_path: Path, name: str, words: str) -> None:
    (tmp_path / "big.xml").write_bytes(b"x" * 4097)
    src = Source(name="local", path=str(tmp_path / name))
    res = fetch(src, settings=replace(FAST, max_bytes=4096))
    assert res.outcome == "error"
    assert res.error is not None and words in res.error


def test_source_without_url_or_path() -> None:
    res = fetch(Source(name="nothing"))
    assert res.outcome == "error"
    assert res.error is not None and "neither url nor path" in res.error


# -- the test server itself -------------------------------------------------------------------


def test_server_stops_even_with_a_client_stuck_on_a_slow_route() -> None:
    server = FeedServer().start()
    server.slow("/feed", delay=60)
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(b"GET /feed HTTP/1.1\r\nHost: x\r\n\r\n")
        server.stop()
        assert not server.thread.is_alive()
        sock.settimeout(5)  # MAX_WAIT is longer: only a handler that gave up answers in time
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # closed without a response
    finally:
        sock.close()
