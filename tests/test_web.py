"""The HTTP server, run for real on 127.0.0.1, read by a real HTTP client and feedparser."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import httpx
import pytest
from aiohttp import web

from digest.errors import ServiceError, StorageError
from digest.models import Entry, Story
from digest.publish import PublishSettings, build_all, write_outputs
from digest.web import accepts_gzip, index_context, make_app, start_server

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
HOSTILE = "<script>window.pwned=1</script><img src=x onerror=alert(1)>"


def entry(
    n: int,
    *,
    source: str = "Armenpress",
    title: str | None = None,
    link: str | None = "auto",
    tags: tuple[str, ...] = ("armenia",),
) -> Entry:
    when = NOW - timedelta(hours=n)
    return Entry(
        id=n,
        source=source,
        guid=None,
        link=f"https://news.example/{n}" if link == "auto" else link,
        canonical_link=None,
        title=title or f"Report {n}",
        summary=f"Summary {n}.",
        content_html="",
        published=when,
        updated=when,
        first_seen=when,
        tags=tags,
    )


def sample() -> list[Story]:
    return [
        Story(
            id=1,
            uid="s1",
            lead=entry(1, title="Pashinyan and Aliyev meet"),
            others=(entry(2, source="APA", title="Aliyev meets Pashinyan", tags=("azerbaijan",)),),
        ),
        Story(
            id=3,
            uid="s3",
            lead=entry(3, source="Civil.ge", title="Tbilisi talks", tags=("georgia",)),
            others=(entry(5, source="Evil", link="javascript:alert(1)", tags=()),),
        ),
        Story(id=4, uid="s4", lead=entry(4, source="Evil", title=HOSTILE, tags=("georgia",))),
    ]


class Server:
    """A real server on 127.0.0.1 in its own thread and loop; it stops by itself after 60 s."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        try:
            runner = await start_server(self.app, "127.0.0.1", 0)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = runner.addresses[0][1]
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=60)
        except TimeoutError:
            pass
        finally:
            await runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def settings(tmp_path: Path) -> PublishSettings:
    return PublishSettings(output_dir=tmp_path / "public", tags=("georgia", "armenia"))


@pytest.fixture
def published(settings: PublishSettings) -> dict[str, bytes]:
    files = build_all(sample(), settings, NOW)
    write_outputs(settings.output_dir, files)
    return files


def serve(
    settings: PublishSettings,
    stories: Callable[[str | None], Sequence[Story]] | None = None,
    **kw: Any,
) -> Server:
    calls: list[str | None] = []

    def default(tag: str | None) -> Sequence[Story]:
        calls.append(tag)
        return sample()

    app = make_app(settings, stories=stories or default, clock=lambda: NOW, **kw)
    return Server(app)


@pytest.fixture
def server(settings: PublishSettings, published: dict[str, bytes]) -> Iterator[Server]:
    with serve(settings) as srv:
        yield srv


# -- feeds ---------------------------------------------------------------------------------


def test_feed_reader_sees_every_story_once_then_gets_304(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        resp = client.get("/feed.xml")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/rss+xml; charset=utf-8"
        parsed = feedparser.parse(resp.content)
        assert parsed.bozo == 0
        assert sorted(e.id for e in parsed.entries) == ["s1", "s3", "s4"]
        etag, modified = resp.headers["etag"], resp.headers["last-modified"]
        assert etag.startswith('"') and not etag.startswith("W/")

        again = client.get(
            "/feed.xml", headers={"If-None-Match": etag, "If-Modified-Since": modified}
        )
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        by_date = client.get("/feed.xml", headers={"If-Modified-Since": modified})
        assert by_date.status_code == 304
        stale = client.get(
            "/feed.xml", headers={"If-None-Match": '"other"', "If-Modified-Since": modified}
        )
        assert stale.status_code == 200  # If-None-Match wins over If-Modified-Since


def test_content_types_and_tag_feeds(server: Server, published: dict[str, bytes]) -> None:
    expected = {
        "/feed.xml": "application/rss+xml; charset=utf-8",
        "/atom.xml": "application/atom+xml; charset=utf-8",
        "/feed.json": "application/feed+json; charset=utf-8",
        "/tags/georgia.xml": "application/rss+xml; charset=utf-8",
        "/tags/georgia.atom": "application/atom+xml; charset=utf-8",
        "/tags/georgia.json": "application/feed+json; charset=utf-8",
    }
    with httpx.Client(base_url=server.url) as client:
        for path, media_type in expected.items():
            resp = client.get(path, headers={"Accept-Encoding": "identity"})
            assert resp.status_code == 200, path
            assert resp.headers["content-type"] == media_type
            assert resp.content == published[path.lstrip("/")]
        atom = feedparser.parse(client.get("/tags/georgia.atom").content)
        assert atom.bozo == 0 and len(atom.entries) == 2
        ids = [i["id"] for i in client.get("/tags/armenia.json").json()["items"]]
        assert ids == ["s1"]
        head = client.head("/atom.xml")
        assert head.status_code == 200 and head.headers["etag"]


def test_gzip_only_when_the_client_accepts_it(server: Server, published: dict[str, bytes]) -> None:
    with httpx.Client(base_url=server.url) as client:
        raw = client.get("/feed.xml", headers={"Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert raw.headers["vary"] == "Accept-Encoding"
        assert raw.content == published["feed.xml"]  # httpx decoded it
        plain = client.get("/feed.xml", headers={"Accept-Encoding": "gzip;q=0, br"})
        assert "content-encoding" not in plain.headers
        assert plain.headers["etag"] != raw.headers["etag"]
        # each representation's validator gets a 304
        for resp, enc in ((raw, "gzip"), (plain, "identity")):
            again = client.get(
                "/feed.xml", headers={"Accept-Encoding": enc, "If-None-Match": resp.headers["etag"]}
            )
            assert again.status_code == 304
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/atom.xml", headers={"Accept-Encoding": "gzip"})
    body = conn.getresponse().read()
    conn.close()
    assert gzip.decompress(body) == published["atom.xml"]


def test_republishing_the_same_stories_keeps_the_validators(
    server: Server, settings: PublishSettings, published: dict[str, bytes]
) -> None:
    with httpx.Client(base_url=server.url) as client:
        first = client.get("/atom.xml")
        assert write_outputs(settings.output_dir, build_all(sample(), settings, NOW)) == []
        same = client.get("/atom.xml")
        assert (same.headers["etag"], same.headers["last-modified"]) == (
            first.headers["etag"],
            first.headers["last-modified"],
        )
        newer = [Story(id=9, uid="s9", lead=entry(0, title="Fresh")), *sample()]
        written = write_outputs(settings.output_dir, build_all(newer, settings, NOW))
        assert "atom.xml" in written
        changed = client.get("/atom.xml", headers={"If-None-Match": first.headers["etag"]})
        assert changed.status_code == 200
        assert "Fresh" in feedparser.parse(changed.content).entries[0].title


def test_only_published_names_are_served(server: Server, settings: PublishSettings) -> None:
    (settings.output_dir / "secret.txt").write_text("no")
    (settings.output_dir.parent / "state.db").write_text("no")
    with httpx.Client(base_url=server.url) as client:
        for path in (
            "/secret.txt",
            "/tags/unknown.xml",
            "/tags/",
            "/feed.xml/x",
            "/static/../public/secret.txt",
            "/%2e%2e/state.db",
        ):
            assert client.get(path).status_code == 404, path
    for raw in ("/../state.db", "/tags/../../state.db", "/..%2fstate.db"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", raw)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status in (400, 404), raw
        assert body != b"no"


def test_unpublished_feed_is_404_with_a_hint(settings: PublishSettings) -> None:
    with serve(settings) as srv:
        resp = httpx.get(srv.url + "/feed.xml")
    assert resp.status_code == 404 and "not been published" in resp.text


# -- page ----------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse_html(text: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Links()
    p.feed(text)
    return p.tags


def test_index_lists_stories_escapes_hostile_text_and_sets_a_strict_csp(server: Server) -> None:
    resp = httpx.get(server.url + "/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    page = resp.text
    assert "Pashinyan and Aliyev meet" in page and "Tbilisi talks" in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    tags = parse_html(page)
    assert not [t for t, _ in tags if t in ("script", "img")]
    hrefs = [a.get("href") or "" for t, a in tags if t == "a"]
    assert "https://news.example/1" in hrefs
    assert "https://news.example/2" in hrefs  # "also reported by" links to the other outlet
    assert not [h for h in hrefs if h.startswith("javascript")]
    assert "Also reported by" in page and "APA" in page
    assert "?tag=georgia" in hrefs and "?tag=azerbaijan" in hrefs


def test_index_announces_every_feed_for_autodiscovery(server: Server) -> None:
    page = httpx.get(server.url + "/?tag=georgia").text
    alternates = {
        (a.get("type"), a.get("href"))
        for t, a in parse_html(page)
        if t == "link" and a.get("rel") == "alternate"
    }
    assert alternates == {
        ("application/rss+xml", "feed.xml"),
        ("application/atom+xml", "atom.xml"),
        ("application/feed+json", "feed.json"),
        *(
            (kind, f"tags/{tag}.{ext}")
            for tag in ("georgia", "armenia")
            for kind, ext in (
                ("application/rss+xml", "xml"),
                ("application/atom+xml", "atom"),
                ("application/feed+json", "json"),
            )
        ),
    }
    with httpx.Client(base_url=server.url + "/") as client:
        for _type, href in alternates:
            assert client.get(href).status_code == 200, href


def test_tag_filter_shows_only_that_tags_stories(settings: PublishSettings) -> None:
    asked: list[str | None] = []

    def stories(tag: str | None) -> Sequence[Story]:
        asked.append(tag)
        return sample()  # the page filters again, whatever the callable returns

    with serve(settings, stories) as srv:
        page = httpx.get(srv.url + "/", params={"tag": "georgia"}).text
        everything = httpx.get(srv.url + "/").text
        none = httpx.get(srv.url + "/", params={"tag": "<b>turkey</b>"}).text
    assert asked == ["georgia", None, "<b>turkey</b>"]
    assert "Tbilisi talks" in page and "Pashinyan and Aliyev meet" not in page
    assert "Pashinyan and Aliyev meet" in everything
    assert "No stories tagged &lt;b&gt;turkey&lt;/b&gt; yet." in none


def test_page_dates_are_local(settings: PublishSettings) -> None:
    ctx = index_context(settings, sample(), tag=None, now=NOW, tz=ZoneInfo("Asia/Yerevan"))
    first = ctx.stories[0]
    assert first.published_iso == "2025-11-20T11:00:00Z"
    assert first.published_local == "20 Nov 2025, 15:00"
    assert first.anchor == "s1"
    assert ctx.stories[1].others[0].link is None  # javascript: link dropped
    assert [o.link for o in first.others] == ["https://news.example/2"]


def test_healthz_default_and_custom(settings: PublishSettings) -> None:
    with serve(settings) as srv:
        resp = httpx.get(srv.url + "/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    with serve(settings, health=lambda: (503, {"status": "degraded", "failed": 2})) as srv:
        resp = httpx.get(srv.url + "/healthz")
    assert resp.status_code == 503 and resp.json() == {"status": "degraded", "failed": 2}


def test_storage_failure_gives_503_not_a_crash(settings: PublishSettings) -> None:
    def broken(tag: str | None) -> Sequence[Story]:
        raise StorageError("state database is locked")

    with serve(settings, broken) as srv:
        resp = httpx.get(srv.url + "/")
        assert resp.status_code == 503 and "locked" in resp.text
        assert httpx.get(srv.url + "/healthz").status_code == 200


def test_user_templates_override_the_packaged_ones(
    settings: PublishSettings, tmp_path: Path
) -> None:
    user = tmp_path / "templates"
    user.mkdir()
    (user / "index.html.j2").write_text('{% extends "default:index.html.j2" %}')
    (user / "static").mkdir()
    (user / "static" / "style.css").write_text("body { color: red }")
    with serve(settings, templates_dir=user) as srv:
        assert "Tbilisi talks" in httpx.get(srv.url + "/").text
        css = httpx.get(srv.url + "/static/style.css")
        assert css.text == "body { color: red }" and css.headers["content-type"] == "text/css"
    (user / "index.html.j2").write_text("<p>{{ ctx.title }} / {{ ctx.stories | length }}</p>")
    with serve(settings, templates_dir=user) as srv:
        assert httpx.get(srv.url + "/").text == "<p>South Caucasus diplomacy / 3</p>"
        assert httpx.get(srv.url + "/static/missing.css").status_code == 404
    (user / "index.html.j2").write_text("{% if %}")
    with pytest.raises(ServiceError, match="index.html.j2"):
        make_app(settings, stories=lambda tag: [], templates_dir=user)


def test_packaged_stylesheet_is_served(server: Server) -> None:
    resp = httpx.get(server.url + "/static/style.css")
    assert resp.status_code == 200 and "body" in resp.text


def test_app_accepts_more_routes(settings: PublishSettings) -> None:
    app = make_app(settings, stories=lambda tag: [])

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="up 1\n")

    app.router.add_get("/metrics", metrics)
    with Server(app) as srv:
        resp = httpx.get(srv.url + "/metrics")
    assert resp.text == "up 1\n"
    assert "default-src 'none'" in resp.headers["content-security-policy"]


def test_busy_port_is_a_service_error(settings: PublishSettings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        async def attempt() -> None:
            await start_server(make_app(settings, stories=lambda tag: []), "127.0.0.1", port)

        with pytest.raises(ServiceError, match=f"127.0.0.1:{port}.*port"):
            asyncio.run(attempt())


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),
        ("x-gzip", True),
        ("GZIP", True),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_json_of_healthz_is_not_cached(settings: PublishSettings) -> None:
    with serve(settings) as srv:
        resp = httpx.get(srv.url + "/healthz")
    assert resp.headers["cache-control"] == "no-store"
    assert json.loads(resp.content)["status"] == "ok"
