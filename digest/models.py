"""Typed records passed between the pipeline stages.

Named by their role in the flow, as in reader's ``_types.py``: ``*State`` comes from storage,
``Parsed*`` from a feed, ``*Update`` is what a stage asks storage to do. All datetimes are
timezone-aware UTC; collections are tuples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

FetchOutcome = Literal["ok", "not_modified", "retry_later", "gone", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """A feed to poll, as configured."""

    #: unique name from the config, also the key of its state
    name: str
    #: http(s) URL, or None for a local file
    url: str | None = None
    #: local feed file (offline use, demos, tests)
    path: str | None = None
    #: tags every entry of this source carries
    tags: tuple[str, ...] = ()
    #: seconds between polls
    interval: int = 1800

    @property
    def location(self) -> str:
        return self.url or f"file:{self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceState:
    """What we remember about a source between polls."""

    name: str
    #: the URL now in use (a permanent redirect replaces the configured one)
    url: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    #: sha256 of the last body, to detect "unchanged" when the server sends no validators
    body_hash: str | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    #: consecutive failures; reset on success
    error_count: int = 0
    next_poll_at: datetime | None = None
    #: set when the server answered 410 Gone; the source is kept but no longer polled
    gone: bool = False
    #: the URL the config named when this state was made (detects config edits)
    configured_url: str | None = None
    entry_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """The outcome of fetching one source, never an exception."""

    source: str
    outcome: FetchOutcome
    #: response body (ok only)
    body: bytes = b""
    #: ``politeness.body_hash(body)`` when the fetch computed it (ok only)
    body_hash: str | None = None
    #: response headers, lower-cased names
    headers: Mapping[str, str] = field(default_factory=dict)
    #: HTTP status, or 0 when no response was received
    status: int = 0
    #: URL after redirects
    final_url: str | None = None
    #: the new permanent URL when a 301/308 chain was followed, else None
    permanent_url: str | None = None
    fetched_at: datetime
    #: seconds to wait before the next try (Retry-After, Cache-Control max-age)
    retry_after: float | None = None
    #: a human-readable error when outcome is "error", "gone" or "retry_later"
    error: str | None = None
    #: seconds spent
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedEntry:
    """One entry as read from a feed, normalised."""

    guid: str | None
    #: absolute link to the article
    link: str | None
    #: plain text, one line
    title: str
    #: plain text
    summary: str
    #: sanitised HTML (may be empty)
    content_html: str
    #: UTC; the first-seen time when the feed gives no date
    published: datetime
    updated: datetime
    #: True when the feed gave no date and ``published`` is the first-seen time
    date_missing: bool = False
    authors: tuple[str, ...] = ()
    #: categories given by the feed
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    """An entry that could not be stored, with the reason (logged, never silent)."""

    reason: str
    title: str = ""
    link: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFeed:
    title: str
    link: str | None
    entries: tuple[ParsedEntry, ...]
    rejected: tuple[Rejected, ...] = ()
    #: non-fatal problems (the feed was malformed but yielded entries)
    warnings: tuple[str, ...] = ()
    #: RSS <ttl> in minutes, when given
    ttl_minutes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryKeys:
    """The identity keys of an entry. It is new only if none of them is known."""

    #: "guid:<source-independent guid>" or None
    guid: str | None
    #: "link:<canonical link>" or None
    link: str | None
    #: "td:<hash of normalised title and day>"
    title_date: str
    #: hash of the content fields, to notice upstream edits
    content_hash: str

    def all(self) -> tuple[str, ...]:
        return tuple(k for k in (self.guid, self.link, self.title_date) if k)


@dataclass(frozen=True, slots=True, kw_only=True)
class TagScore:
    """A tag an entry carries, with its score."""

    tag: str
    score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """A stored entry."""

    id: int
    source: str
    guid: str | None
    link: str | None
    canonical_link: str | None
    title: str
    summary: str
    content_html: str
    published: datetime
    updated: datetime
    first_seen: datetime
    #: tags that passed their threshold, in rule order
    tags: tuple[str, ...] = ()
    #: tag -> score, for every tag that passed
    scores: Mapping[str, float] = field(default_factory=dict)
    #: the story this entry belongs to (None until grouped)
    story_id: int | None = None
    authors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Story:
    """Reports of one event, shown once everywhere (feed, page, digest)."""

    id: int
    #: stable public id (feed guid, digest anchor); the first report's id, never reused
    uid: str
    #: the earliest report; its link is the story's link
    lead: Entry
    #: the other reports, earliest first ("also reported by")
    others: tuple[Entry, ...] = ()

    @property
    def entries(self) -> tuple[Entry, ...]:
        return (self.lead, *self.others)

    @property
    def tags(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for e in self.entries:
            for t in e.tags:
                seen.setdefault(t)
        return tuple(seen)

    @property
    def published(self) -> datetime:
        return self.lead.published

    @property
    def updated(self) -> datetime:
        return max(e.updated for e in self.entries)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceReport:
    """What one poll did to one source."""

    source: str
    #: "new" entries stored, etc.; "status" is ok/not_modified/unchanged/error/gone/skipped
    status: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleReport:
    started_at: datetime
    finished_at: datetime
    sources: tuple[SourceReport, ...]

    @property
    def failed(self) -> tuple[SourceReport, ...]:
        return tuple(s for s in self.sources if s.status in ("error", "gone"))

    @property
    def new(self) -> int:
        return sum(s.new for s in self.sources)

    @property
    def updated(self) -> int:
        return sum(s.updated for s in self.sources)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEntry:
    """An entry to insert: what the feed said, its keys and its tags."""

    parsed: ParsedEntry
    keys: EntryKeys
    canonical_link: str | None
    tags: tuple[str, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    #: story grouping's normalised words (``digest.textnorm.encode_terms``)
    terms: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangedEntry:
    """A known entry whose content changed upstream: updated in place, not reported again."""

    entry_id: int
    parsed: ParsedEntry
    keys: EntryKeys
    canonical_link: str | None
    tags: tuple[str, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    #: story grouping's normalised words (``digest.textnorm.encode_terms``)
    terms: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceUpdate:
    """What storage must do for one source after one fetch, in one transaction."""

    source: str
    #: the source's new fetch state
    state: SourceState
    new: tuple[NewEntry, ...] = ()
    changed: tuple[ChangedEntry, ...] = ()
    #: entries seen before with the same content
    unchanged: int = 0
    #: identity keys newly learnt for edited entries (key -> entry id), e.g. a changed link
    extra_keys: Mapping[str, int] = field(default_factory=dict)
    rejected: tuple[Rejected, ...] = ()
    #: hashes of the raw items of this fetch, remembered to skip them next time (None: keep)
    item_hashes: tuple[str, ...] | None = None
