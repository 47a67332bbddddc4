"""Publish the selected stories as RSS 2.0, Atom 1.0 and JSON Feed 1.1 files.

Everything up to :func:`build_all` is pure: stories, settings and ``now`` in, file bytes out.
The same inputs always give the same bytes (no "generated at" time anywhere), so
:func:`write_outputs` can leave unchanged files alone and their ``Last-Modified`` stays put.

Feed text comes from other people's feeds, so every string is cleaned on the way out:
XML-illegal characters are dropped, links that are not absolute http(s) URLs are replaced,
and dates are kept inside the range that validators accept.

Files, relative to ``output_dir``::

    feed.xml  atom.xml  feed.json                       every published story
    tags/<tag>.xml  tags/<tag>.atom  tags/<tag>.json    stories with that tag
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self
from urllib.parse import quote, urljoin, urlsplit

from digest import __version__, fsutil, tomlutil
from digest.errors import PublishError
from digest.identity import is_tracking
from digest.models import Entry, Story

if TYPE_CHECKING:
    from feedgen.feed import FeedGenerator

FeedKind = Literal["rss", "atom", "json"]

GENERATOR = "caucasus-digest"
GENERATOR_URI = "https://github.com/caucasus-digest/caucasus-digest"
JSONFEED_VERSION = "https://jsonfeed.org/version/1.1"

#: file name of each format in the main feed set, as returned by :func:`build_feeds`
MAIN_FILES: Mapping[FeedKind, str] = {"rss": "feed.xml", "atom": "atom.xml", "json": "feed.json"}
#: suffix of each format in a per-tag set (``tags/<tag><suffix>``)
TAG_SUFFIXES: Mapping[FeedKind, str] = {"rss": ".xml", "atom": ".atom", "json": ".json"}
MEDIA_TYPES: Mapping[FeedKind, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}

#: Atom ids must be IRIs; story uids are arbitrary strings, so they are mapped to name-based
#: UUIDs under this fixed namespace (never change it: readers would see every story again).
_ID_NAMESPACE = uuid.UUID("5d0c3a52-58f4-4a8e-9f5e-2f1c6f0b8a21")
#: the feed-level time of an empty feed, fixed so that an empty feed is byte-stable too
EMPTY_FEED_TIME = datetime(1970, 1, 1, tzinfo=UTC)

# XML 1.0 forbids C0 controls except tab/LF/CR, surrogates and U+FFFE/U+FFFF; C1 controls
# are legal but "discouraged" and always junk in news text. Bidi overrides and isolates can make
# a title display as something else than it is; the digest drops them too (render.py).
_ILLEGAL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff\ufffe\uffff]"
)
_SPACES = re.compile(r"\s+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")
# Characters RFC 3986 allows unescaped in a path, query or fragment (plus "%" of escapes).
_URL_SAFE = "/?:@!$&'()*+,;=-._~%"
_TAG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


# -- cleaning ------------------------------------------------------------------------------


def clean_text(text: str | None) -> str:
    """Drop XML-illegal characters and fold whitespace to single spaces (one line)."""
    if not text:
        return ""
    return _SPACES.sub(" ", _ILLEGAL.sub("", text)).strip()


def clean_url(url: str | None) -> str | None:
    """Return ``url`` as an absolute, ASCII-only http(s) URL, or None when it cannot be one.

    Relative, empty, ``javascript:``, ``mailto:`` and other links are refused rather than
    emitted: a feed reader would resolve them against our site, or run them. Tracking
    parameters (``utm_*``, ``fbclid``...) are left out: readers need not carry them.
    """
    if not url:
        return None
    url = _ILLEGAL.sub("", url).strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    try:
        host = parts.hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if not _HOST.match(host):
        return None
    netloc = host if port is None else f"{host}:{port}"
    out = f"{parts.scheme.lower()}://{netloc}{_quote(parts.path) or '/'}"
    query = "&".join(p for p in parts.query.split("&") if p and not is_tracking(p))
    if query:
        out += "?" + _quote(query)
    if parts.fragment:
        out += "#" + _quote(parts.fragment)
    return out


def _quote(part: str) -> str:
    return quote(_BAD_PERCENT.sub("%25", part), safe=_URL_SAFE)


def clean_date(value: datetime, now: datetime) -> datetime:
    """UTC, whole seconds, between 1970 and ``now`` (validators flag anything outside)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC).replace(microsecond=0)
    latest = now.astimezone(UTC).replace(microsecond=0)
    return max(EMPTY_FEED_TIME, min(value, latest))


# -- selection -----------------------------------------------------------------------------


def select_for_feed(
    stories: Iterable[Story], *, max_items: int, max_age_days: int, now: datetime
) -> list[Story]:
    """The stories a feed shows: updated within ``max_age_days``, newest first, at most
    ``max_items``, each uid once.

    Age counts from the story's last report, so a story that is still being reported stays;
    order is by first report, so a late "also reported by" does not move a story to the top.
    """
    cutoff = now - timedelta(days=max_age_days)
    recent = [s for s in stories if s.updated >= cutoff]
    recent.sort(key=lambda s: (s.published, s.uid), reverse=True)
    out: list[Story] = []
    seen: set[str] = set()
    for story in recent:
        if story.uid in seen:
            continue
        seen.add(story.uid)
        out.append(story)
        if len(out) >= max_items:
            break
    return out


# -- settings ------------------------------------------------------------------------------


def _check_tag(tag: str) -> str | None:
    if not _TAG_NAME.match(tag) or ".." in tag:
        return f"tag {tag!r} cannot be used as a file name; use letters, digits, '-', '_' or '.'"
    return None


def _check_base_url(url: str) -> str | None:
    parts = urlsplit(url)
    if clean_url(url) is None or parts.query or parts.fragment:
        return (
            f"{url!r} is not an absolute http(s) URL without query or fragment, "
            "e.g. 'https://example.org/caucasus/'"
        )
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishSettings:
    """The ``[publish]`` table: what the feed files contain and where they go."""

    #: folder the feed files are written to
    output_dir: Path
    #: name of the selection whose stories are published
    selection: str = "south-caucasus-diplomacy"
    title: str = "South Caucasus diplomacy"
    description: str = (
        "Diplomacy of Armenia, Azerbaijan, Georgia and the powers around them, "
        "each story once, from many outlets."
    )
    #: language of the feeds (RFC 5646 tag)
    language: str = "en"
    #: public URL of the folder the files are served from; self links are built from it
    base_url: str = "http://127.0.0.1:8080/"
    #: most stories in one feed
    max_items: int = 100
    #: stories whose last report is older than this many days are left out
    max_age_days: int = 30
    #: tags that get their own feed files under tags/
    tags: tuple[str, ...] = ()

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> Self:
        d = cls(output_dir=base_dir)  # slots hide the class-level defaults
        output_dir = sec.get(
            "output_dir",
            str,
            "../state/public",
            check=lambda v: None if v.strip() else "must not be empty",
        )
        selection = sec.get(
            "selection",
            str,
            d.selection,
            check=lambda v: None if v.strip() else "must not be empty",
        )
        title = sec.get(
            "title", str, d.title, check=lambda v: None if clean_text(v) else "must not be empty"
        )
        description = sec.get(
            "description",
            str,
            d.description,
            check=lambda v: None if clean_text(v) else "must not be empty",
        )
        language = sec.get(
            "language",
            str,
            d.language,
            check=lambda v: (
                None
                if _LANGUAGE.match(v)
                else f"{v!r} is not a language tag such as 'en' or 'en-GB'"
            ),
        )
        base_url = sec.get("base_url", str, d.base_url, check=_check_base_url)
        max_items = sec.get("max_items", int, d.max_items, check=tomlutil.at_least(1))
        max_age_days = sec.get("max_age_days", int, d.max_age_days, check=tomlutil.at_least(1))
        tags = sec.get_str_list("tags", [])
        for tag in tags:
            problem = _check_tag(tag)
            if problem:
                raise sec.error("tags", problem)
        if len(set(tags)) != len(tags):
            raise sec.error("tags", "lists a tag twice")
        sec.finish()
        return cls(
            output_dir=(base_dir / output_dir).resolve(),
            selection=selection,
            title=clean_text(title),
            description=clean_text(description),
            language=language,
            base_url=_with_slash(clean_url(base_url) or base_url),
            max_items=max_items,
            max_age_days=max_age_days,
            tags=tuple(tags),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """The ``[server]`` table: where the HTTP server listens."""

    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 8080

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> Self:
        d = cls()  # slots hide the class-level defaults
        host = sec.get(
            "host", str, d.host, check=lambda v: None if v.strip() else "must not be empty"
        )
        port = sec.get(
            "port",
            int,
            d.port,
            check=lambda v: (
                None if 0 <= v <= 65535 else f"must be a TCP port between 0 and 65535, not {v}"
            ),
        )
        sec.finish()
        return cls(host=host.strip(), port=port)


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


# -- feed metadata -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedMeta:
    """Feed-level fields of one feed set (the main one or one tag's)."""

    title: str
    description: str
    language: str
    #: the HTML page the feed stands for
    home_url: str
    rss_url: str
    atom_url: str
    json_url: str


def output_files(settings: PublishSettings) -> dict[str, tuple[FeedKind, str | None]]:
    """Every file :func:`build_all` writes: relative path -> (format, tag or None)."""
    out: dict[str, tuple[FeedKind, str | None]] = {
        name: (kind, None) for kind, name in MAIN_FILES.items()
    }
    for tag in settings.tags:
        for kind, suffix in TAG_SUFFIXES.items():
            out[f"tags/{tag}{suffix}"] = (kind, tag)
    return out


def feed_meta(settings: PublishSettings, tag: str | None = None) -> FeedMeta:
    base = _with_slash(settings.base_url)
    if tag is None:
        names = dict(MAIN_FILES)
        return FeedMeta(
            title=settings.title,
            description=settings.description,
            language=settings.language,
            home_url=base,
            rss_url=urljoin(base, names["rss"]),
            atom_url=urljoin(base, names["atom"]),
            json_url=urljoin(base, names["json"]),
        )
    q = quote(tag, safe="")
    return FeedMeta(
        title=f"{settings.title}: {tag}",
        description=f"{settings.description} Stories tagged {tag}.",
        language=settings.language,
        home_url=f"{base}?tag={q}",
        rss_url=urljoin(base, f"tags/{q}{TAG_SUFFIXES['rss']}"),
        atom_url=urljoin(base, f"tags/{q}{TAG_SUFFIXES['atom']}"),
        json_url=urljoin(base, f"tags/{q}{TAG_SUFFIXES['json']}"),
    )


# -- items ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Item:
    """One story, cleaned once and shared by the three formats."""

    uid: str
    atom_id: str
    title: str
    link: str
    source: str
    published: datetime
    updated: datetime
    summary: str
    summary_html: str
    tags: tuple[str, ...]


def _entry_title(entry: Entry) -> str:
    return clean_text(entry.title) or "(no title)"


def _source_name(entry: Entry) -> str:
    return clean_text(entry.source) or "unknown source"


def _summary_html(story: Story) -> str:
    parts: list[str] = []
    summary = _ILLEGAL.sub("", story.lead.summary or "").strip()
    if summary:
        parts.append(f"<p>{html.escape(summary)}</p>")
    if story.others:
        items = []
        for other in story.others:
            source = html.escape(_source_name(other))
            title = html.escape(_entry_title(other))
            link = clean_url(other.link)
            if link:
                items.append(f'<li><a href="{html.escape(link)}">{source}</a>: {title}</li>')
            else:
                items.append(f"<li>{source}: {title}</li>")
        parts.append("<p>Also reported by:</p><ul>" + "".join(items) + "</ul>")
    return "".join(parts)


def _items(stories: Sequence[Story], meta: FeedMeta, now: datetime) -> list[_Item]:
    out: list[_Item] = []
    seen: set[str] = set()
    for story in stories:
        uid = clean_text(story.uid) or f"story-{story.id}"
        if uid in seen:
            continue
        seen.add(uid)
        published = clean_date(story.published, now)
        updated = max(published, clean_date(story.updated, now))
        link = clean_url(story.lead.link) or next(
            (u for u in (clean_url(e.link) for e in story.others) if u), None
        )
        out.append(
            _Item(
                uid=uid,
                atom_id=f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, uid)}",
                title=_entry_title(story.lead),
                # A story with no usable link points at itself on the HTML page.
                link=link or f"{meta.home_url.split('?')[0]}#{quote(uid, safe='')}",
                source=_source_name(story.lead),
                published=published,
                updated=updated,
                summary=_ILLEGAL.sub("", story.lead.summary or "").strip(),
                summary_html=_summary_html(story),
                tags=tuple(t for t in (clean_text(t) for t in story.tags) if t),
            )
        )
    return out


def _feed_updated(items: Sequence[_Item]) -> datetime:
    return max((i.updated for i in items), default=EMPTY_FEED_TIME)


# -- formats -------------------------------------------------------------------------------


def _generator() -> FeedGenerator:
    """feedgen (and lxml under it) is imported when a feed is built, not with the settings:
    a poll with nothing new to publish never needs it."""
    from feedgen.feed import FeedGenerator

    return FeedGenerator()


def _rss(items: Sequence[_Item], meta: FeedMeta) -> bytes:
    fg = _generator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.title(meta.title)
    # feedgen takes the RSS <link> from the last link added, so the page goes last.
    fg.link(href=meta.rss_url, rel="self", type="application/rss+xml")
    fg.link(href=meta.home_url, rel="alternate")
    fg.description(meta.description)
    fg.language(meta.language)
    fg.generator(f"{GENERATOR} {__version__}")
    fg.lastBuildDate(_feed_updated(items))
    for item in items:
        fe = fg.add_entry(order="append")
        fe.title(item.title)
        fe.link(href=item.link)
        fe.guid(item.uid, permalink=False)
        fe.published(item.published)
        fe.description(item.summary_html or html.escape(item.title))
        fe.dc.dc_creator(item.source)
        for tag in item.tags:
            fe.category(term=tag)
    return bytes(fg.rss_str(pretty=True, encoding="UTF-8"))


def _atom(items: Sequence[_Item], meta: FeedMeta) -> bytes:
    fg = _generator()
    fg.id(meta.atom_url)
    fg.title(meta.title)
    fg.subtitle(meta.description)
    fg.language(meta.language)
    # A feed-level author makes every entry valid even if one lost its own.
    fg.author(name=meta.title)
    fg.link(href=meta.home_url, rel="alternate", type="text/html")
    fg.link(href=meta.atom_url, rel="self", type="application/atom+xml")
    fg.generator(GENERATOR, version=__version__, uri=GENERATOR_URI)
    fg.updated(_feed_updated(items))
    for item in items:
        fe = fg.add_entry(order="append")
        fe.id(item.atom_id)
        fe.title(item.title)
        fe.link(href=item.link, rel="alternate")
        fe.author(name=item.source)
        fe.published(item.published)
        fe.updated(item.updated)
        if item.summary_html:
            fe.summary(item.summary_html, type="html")
        for tag in item.tags:
            fe.category(term=tag, label=tag)
    return bytes(fg.atom_str(pretty=True, encoding="UTF-8"))


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(items: Sequence[_Item], meta: FeedMeta) -> bytes:
    doc: dict[str, object] = {
        "version": JSONFEED_VERSION,
        "title": meta.title,
        "home_page_url": meta.home_url,
        "feed_url": meta.json_url,
        "description": meta.description,
        "language": meta.language,
        "authors": [{"name": meta.title}],
        "items": [
            {
                "id": item.uid,
                "url": item.link,
                "title": item.title,
                "content_html": item.summary_html or html.escape(item.title),
                **({"summary": item.summary} if item.summary else {}),
                "date_published": _rfc3339(item.published),
                "date_modified": _rfc3339(item.updated),
                "authors": [{"name": item.source}],
                **({"tags": list(item.tags)} if item.tags else {}),
            }
            for item in items
        ],
    }
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def build_feeds(stories: Sequence[Story], meta: FeedMeta, now: datetime) -> dict[str, bytes]:
    """Render one feed set: ``{"feed.xml": RSS, "atom.xml": Atom, "feed.json": JSON Feed}``.

    ``stories`` are taken in the order given (newest first, see :func:`select_for_feed`);
    a uid already emitted is skipped. ``now`` only caps dates that lie in the future.
    """
    items = _items(stories, meta, now)
    return {
        MAIN_FILES["rss"]: _rss(items, meta),
        MAIN_FILES["atom"]: _atom(items, meta),
        MAIN_FILES["json"]: _json(items, meta),
    }


def build_all(
    stories: Sequence[Story], settings: PublishSettings, now: datetime
) -> dict[str, bytes]:
    """Render the main feed set and one per configured tag: relative path -> bytes.

    Pass every candidate story; each feed is bounded by ``max_items`` and ``max_age_days``
    on its own, so a tag's feed is not starved by the main feed's limit.
    """

    def pick(candidates: Iterable[Story]) -> list[Story]:
        return select_for_feed(
            candidates, max_items=settings.max_items, max_age_days=settings.max_age_days, now=now
        )

    files = build_feeds(pick(stories), feed_meta(settings), now)
    for tag in settings.tags:
        tagged = build_feeds(
            pick(s for s in stories if tag in s.tags), feed_meta(settings, tag), now
        )
        for kind, name in MAIN_FILES.items():
            files[f"tags/{tag}{TAG_SUFFIXES[kind]}"] = tagged[name]
    return files


# -- output --------------------------------------------------------------------------------


def write_outputs(out_dir: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write each file atomically under ``out_dir``; unchanged files are not touched.

    Returns the names actually written. Raises :class:`PublishError` on the first file that
    cannot be written; files already written stay, and the failed one keeps its old version.
    """
    written: list[str] = []
    root = out_dir.resolve()
    for name, data in files.items():
        target = (root / name).resolve()
        if not target.is_relative_to(root) or target == root:
            raise PublishError(f"refusing to write {name!r}: it is outside {root}")
        try:
            if fsutil.atomic_write(target, data):
                written.append(name)
        except OSError as exc:
            raise PublishError(
                f"cannot write feed file {target}: {exc.strerror or exc}; check that "
                f"{target.parent} exists, is writable and has free space "
                "(the previous version is still in place)"
            ) from exc
    return written


# -- skipping a publish that would write the same files ---------------------------------------

#: Raise when the same stories and settings give other bytes (a new field, another layout), so
#: that files written before are rewritten rather than kept as unchanged.
OUTPUT_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    """What one publish wrote and from what: the next can tell without loading a story that it
    would write the same bytes (:meth:`still_current`), and skip building them.

    The files are a function of the stories, the settings and the time. The state's change
    counter (which every change to entries, tags and stories moves) stands for the stories,
    a digest for the settings and the program. Time matters in two ways: a story leaves the
    feeds when its reports leave the ``max_age_days`` window, and a date in the future is
    shown as "now". ``until`` is the first instant at which the first can change a file, or
    ``at`` itself when the second applies.
    """

    #: the store's change counter, read before the stories were
    generation: int
    settings: str
    at: datetime
    until: datetime | None
    #: stories in the main feed, as :meth:`digest.pipeline.Pipeline.publish` reports them
    shown: int
    #: every output file: [size, mtime_ns, inode], or None when it was missing
    files: dict[str, list[int] | None]

    @classmethod
    def of(
        cls,
        stories: Sequence[Story],
        settings: PublishSettings,
        now: datetime,
        *,
        generation: int,
        shown: int,
    ) -> Published:
        """The record of a publish at ``now`` of ``stories``, after its files were written."""
        return cls(
            generation=generation,
            settings=settings_digest(settings),
            at=now,
            until=_time_bound(stories, settings.max_age_days, now),
            shown=shown,
            files=file_stats(settings),
        )

    def still_current(self, generation: int, settings: PublishSettings, now: datetime) -> bool:
        """True when a publish at ``now`` would write exactly the files this one left."""
        return (
            generation == self.generation
            and self.at <= now
            and (self.until is None or now < self.until)
            and settings_digest(settings) == self.settings
            and file_stats(settings) == self.files
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "generation": self.generation,
                "settings": self.settings,
                "at": self.at.isoformat(),
                "until": self.until.isoformat() if self.until else None,
                "shown": self.shown,
                "files": self.files,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Published | None:
        """The record, or None when it cannot be read (then the next publish writes)."""
        try:
            doc = json.loads(text)
            return cls(
                generation=int(doc["generation"]),
                settings=str(doc["settings"]),
                at=datetime.fromisoformat(doc["at"]),
                until=datetime.fromisoformat(doc["until"]) if doc["until"] else None,
                shown=int(doc["shown"]),
                files=dict(doc["files"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


def _time_bound(stories: Sequence[Story], max_age_days: int, now: datetime) -> datetime | None:
    """The first instant after ``now`` at which the passing time alone changes what is
    published from ``stories``: a report leaves the window (the stories are chosen by their
    reports' dates, :meth:`digest.store.Store.stories` and :func:`select_for_feed`); ``now``
    when a date lies in the future, since it is shown as now; None when neither can happen.
    Only stories already shown can change: the window's start only moves on."""
    age = timedelta(days=max_age_days)
    bound: datetime | None = None
    for story in stories:
        for entry in story.entries:
            for moment in (entry.published, entry.updated):
                if moment > now:
                    return now
                leaves = moment + age
                if leaves > now and (bound is None or leaves < bound):
                    bound = leaves
    return bound


def settings_digest(settings: PublishSettings) -> str:
    """Changes when the settings, the program's version or its output format change."""
    text = f"{__version__}\n{OUTPUT_FORMAT}\n{settings!r}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_stats(settings: PublishSettings) -> dict[str, list[int] | None]:
    """Size, modification time and inode of every file :func:`build_all` writes.

    A file that is deleted, edited or replaced since the last publish shows here, and the
    files are written again.
    """
    root = settings.output_dir.resolve()
    out: dict[str, list[int] | None] = {}
    for name in output_files(settings):
        try:
            st = (root / name).stat()
        except OSError:
            out[name] = None
        else:
            out[name] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return out
