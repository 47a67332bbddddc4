"""The HTTP side: the published feed files, a page of recent stories, and a health check.

Feed files are served from ``output_dir`` as :mod:`digest.publish` wrote them, with a strong
ETag (hash of the bytes) and Last-Modified (the file's mtime, which only moves when the
content changes), so a polite reader gets 304s. Only the file names that publishing produces
have routes; nothing else in the folder can be reached.

The page takes no script, so the Content-Security-Policy forbids scripts outright. Feed text
reaches it only through Jinja2 autoescaping. A user template folder overrides the packaged
``templates/`` file by file; ``{% extends "default:index.html.j2" %}`` reaches the original.

Routes are plain ``app.router`` entries, so more (``/metrics``) can be added to the app.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

import digest
from digest import publish
from digest.errors import DigestError, ServiceError
from digest.models import Story
from digest.publish import PublishSettings, clean_text, clean_url

log = logging.getLogger(__name__)


StoriesFn = Callable[[str | None], Sequence[Story]]
HealthFn = Callable[[], tuple[int, dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INDEX_TEMPLATE = "index.html.j2"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SUMMARY_CHARS = 320
_GZIP_MIN_BYTES = 256
_STATIC_NAME = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"


# -- page context (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportView:
    """One "also reported by" line."""

    source: str
    title: str
    #: None when the report has no usable http(s) link
    link: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryView:
    #: fragment id, the same one that feeds use for stories without a link
    anchor: str
    title: str
    link: str | None
    source: str
    #: RFC 3339, for <time datetime>
    published_iso: str
    #: e.g. "20 Nov 2025, 15:04" in the page's time zone
    published_local: str
    summary: str
    tags: tuple[str, ...]
    others: tuple[ReportView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedLink:
    """A feed to announce with <link rel="alternate"> and to list on the page."""

    title: str
    #: media type without parameters, as autodiscovery expects
    type: str
    #: relative to the page, so it also works behind a path prefix
    href: str
    tag: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexContext:
    """What ``index.html.j2`` receives, as ``ctx``."""

    title: str
    description: str
    language: str
    #: the tag the page is filtered by, or None
    tag: str | None
    #: tags that have their own feeds, for the navigation
    published_tags: tuple[str, ...]
    stories: tuple[StoryView, ...]
    feeds: tuple[FeedLink, ...]
    #: why the list is empty or incomplete, shown instead of stories
    notice: str | None = None


def _local(dt: datetime, tz: tzinfo) -> str:
    d = dt.astimezone(tz)
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}, {d.hour:02d}:{d.minute:02d}"


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:") + "…"


def story_view(story: Story, tz: tzinfo) -> StoryView:
    lead = story.lead
    published = story.published.astimezone(UTC).replace(microsecond=0)
    return StoryView(
        anchor=quote(clean_text(story.uid) or f"story-{story.id}", safe=""),
        title=clean_text(lead.title) or "(no title)",
        link=clean_url(lead.link),
        source=clean_text(lead.source) or "unknown source",
        published_iso=published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        published_local=_local(published, tz),
        summary=_shorten(clean_text(lead.summary), _SUMMARY_CHARS),
        tags=tuple(t for t in (clean_text(t) for t in story.tags) if t),
        others=tuple(
            ReportView(
                source=clean_text(o.source) or "unknown source",
                title=clean_text(o.title) or "(no title)",
                link=clean_url(o.link),
            )
            for o in story.others
        ),
    )


def feed_links(settings: PublishSettings) -> tuple[FeedLink, ...]:
    names = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
    out = []
    for path, (kind, tag) in publish.output_files(settings).items():
        label = settings.title if tag is None else f"{settings.title}: {tag}"
        out.append(
            FeedLink(
                title=f"{label} ({names[kind]})",
                type=publish.MEDIA_TYPES[kind].split(";")[0],
                href=quote(path),
                tag=tag,
            )
        )
    return tuple(out)


def index_context(
    settings: PublishSettings,
    stories: Sequence[Story],
    *,
    tag: str | None,
    now: datetime,
    tz: tzinfo = UTC,
) -> IndexContext:
    """The page's context: the stories a feed would show, filtered by ``tag`` when given."""
    if tag is not None:
        stories = [s for s in stories if tag in s.tags]
    chosen = publish.select_for_feed(
        stories, max_items=settings.max_items, max_age_days=settings.max_age_days, now=now
    )
    notice = None
    if not chosen:
        notice = f"No stories tagged {tag} yet." if tag else "No stories yet."
    return IndexContext(
        title=settings.title,
        description=settings.description,
        language=settings.language,
        tag=tag,
        published_tags=settings.tags,
        stories=tuple(story_view(s, tz) for s in chosen),
        feeds=feed_links(settings),
        notice=notice,
    )


# -- files ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Representation:
    mtime_ns: int
    size: int
    body: bytes
    etag: str
    gzip_body: bytes | None
    gzip_etag: str


_FILES_KEY = web.AppKey("publish_file_cache", dict)


def _load(path: Path, cache: dict[Path, _Representation]) -> _Representation | None:
    """Read a feed file, reusing the previous read while its mtime and size are unchanged."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    cached = cache.get(path)
    if cached and (cached.mtime_ns, cached.size) == (st.st_mtime_ns, st.st_size):
        return cached
    body = path.read_bytes()
    digest_hex = hashlib.sha256(body).hexdigest()[:32]
    rep = _Representation(
        mtime_ns=st.st_mtime_ns,
        size=st.st_size,
        body=body,
        etag=f'"{digest_hex}"',
        gzip_body=gzip.compress(body, mtime=0) if len(body) >= _GZIP_MIN_BYTES else None,
        gzip_etag=f'"{digest_hex}-gzip"',
    )
    cache[path] = rep
    return rep


def accepts_gzip(header: str) -> bool:
    """True when an Accept-Encoding header allows gzip (explicitly or by ``*``), q > 0."""
    verdict: dict[str, bool] = {}
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        if coding:
            verdict[coding] = q > 0
    return verdict.get("gzip", verdict.get("x-gzip", verdict.get("*", False)))


def _etag_matches(header: str, etags: Sequence[str]) -> bool:
    if header.strip() == "*":
        return True
    # If-None-Match uses the weak comparison: W/ prefixes are ignored.
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return any(t in candidates for t in etags)


def _file_handler(path: Path, media_type: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        rep = _load(path, request.app[_FILES_KEY])
        if rep is None:
            raise web.HTTPNotFound(
                text="This feed has not been published yet; run publishing first.\n"
            )
        use_gzip = rep.gzip_body is not None and accepts_gzip(
            request.headers.get("Accept-Encoding", "")
        )
        etag = rep.gzip_etag if use_gzip else rep.etag
        mtime = rep.mtime_ns // 1_000_000_000
        headers = {
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "Cache-Control": "public, no-cache",
        }
        inm = request.headers.get("If-None-Match")
        ims = request.if_modified_since
        if inm is not None:
            fresh = _etag_matches(inm, (rep.etag, rep.gzip_etag))
        else:
            fresh = ims is not None and mtime <= ims.timestamp()
        if fresh:
            resp = web.Response(status=304, headers=headers)
            resp.last_modified = mtime
            return resp
        body = rep.gzip_body if use_gzip and rep.gzip_body is not None else rep.body
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = media_type
        resp = web.Response(body=body, headers=headers)
        resp.last_modified = mtime
        return resp

    return handle


# -- app -----------------------------------------------------------------------------------


def _environment(templates_dir: Path | None) -> jinja2.Environment:
    packaged = jinja2.FileSystemLoader(digest.TEMPLATES)
    loaders: list[jinja2.BaseLoader] = [jinja2.PrefixLoader({"default": packaged}, delimiter=":")]
    if templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(packaged)
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def make_app(
    settings: PublishSettings,
    *,
    stories: StoriesFn,
    health: HealthFn | None = None,
    templates_dir: Path | None = None,
    tz: tzinfo = UTC,
    clock: Callable[[], datetime] | None = None,
) -> web.Application:
    """Build the web application.

    ``stories(tag)`` returns the recent selected stories (all of them when ``tag`` is None);
    ``health()`` returns an HTTP status and a JSON body for ``/healthz``; ``tz`` is the zone
    dates are shown in on the page; ``clock`` replaces the wall clock (tests).
    """
    env = _environment(templates_dir)
    try:
        template = env.get_template(INDEX_TEMPLATE)
    except jinja2.TemplateError as exc:
        where = f"{templates_dir} or {digest.TEMPLATES}" if templates_dir else str(digest.TEMPLATES)
        raise ServiceError(
            f"cannot load the page template {INDEX_TEMPLATE} from {where}: {exc}; fix the "
            "template or remove the override"
        ) from exc
    now = clock or (lambda: datetime.now(UTC))
    static_dirs = [d / "static" for d in (templates_dir, digest.TEMPLATES) if d is not None]

    async def index(request: web.Request) -> web.StreamResponse:
        tag = clean_text(request.query.get("tag")) or None
        try:
            found = stories(tag)
        except DigestError as exc:
            log.error("index page: cannot read stories: %s", exc)
            raise web.HTTPServiceUnavailable(text=f"Stories are unavailable: {exc}\n") from exc
        ctx = index_context(settings, found, tag=tag, now=now(), tz=tz)
        try:
            page = template.render(ctx=ctx)
        except jinja2.TemplateError:
            log.exception("index page: template %s failed", INDEX_TEMPLATE)
            raise web.HTTPInternalServerError(
                text="The page template failed; see the log.\n"
            ) from None
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def healthz(request: web.Request) -> web.StreamResponse:
        status, body = health() if health is not None else (200, {"status": "ok"})
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        for folder in static_dirs:
            path = folder / name
            if path.is_file():
                return web.FileResponse(path)
        raise web.HTTPNotFound()

    app = web.Application()
    app[_FILES_KEY] = {}
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get(f"/static/{{name:{_STATIC_NAME}}}", static)
    for name, (kind, _tag) in publish.output_files(settings).items():
        handler = _file_handler(settings.output_dir / name, publish.MEDIA_TYPES[kind])
        app.router.add_get("/" + quote(name), handler)
    return app


async def start_server(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Listen on ``host:port`` (0: any free port, see ``runner.addresses``).

    The caller stops it with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ServiceError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; set [server] port to a "
            "free port, or stop the program that uses it"
        ) from exc
    return runner
