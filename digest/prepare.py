"""What the parser processes do: parse a feed, then key, tag and normalise its entries.

These are the CPU-heavy steps of a poll cycle, so they run in a process pool on every core
while the main process fetches, stores and groups; small feeds go through the same functions in
the main process. This module is what each worker process imports, so it pulls in only the
parsing, identity, tagging and word-normalising code.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.errors import ParseError
from digest.feedsplit import split_feed
from digest.identity import keys_and_link
from digest.models import Entry, EntryKeys, ParsedEntry, ParsedFeed
from digest.parse import parse_feed
from digest.tag import Rules, TagDecision, load_rules, tag_text
from digest.textnorm import STORY_SUMMARY_CHARS, encode_terms, story_terms

_TAG_RE = re.compile(r"<[^>]+>")


#: how much of an entry's summary and content the tagger reads: the lead carries the signal,
#: and the rest of a long article only costs time
TAG_TEXT_CHARS = 600


def html_text(fragment: str, limit: int = TAG_TEXT_CHARS) -> str:
    """The first ``limit`` characters of an HTML fragment as plain text."""
    text = " ".join(html.unescape(_TAG_RE.sub(" ", fragment[: limit * 4])).split())
    return text[:limit]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """Everything about one parsed entry that does not need the database."""

    keys: EntryKeys
    #: the canonical form of the entry's link
    link: str | None
    tags: tuple[str, ...]
    scores: dict[str, float]
    #: the story grouping's normalised words of title and summary (:func:`encode_terms`)
    terms: str | None


_worker_rules: Rules | None = None


#: how much a parser process lowers its priority: when the main process, which fetches,
#: stores and groups, competes with the parser processes for the cores, it goes first, so it
#: never starves them of work (nor the web server and the scheduler of time)
WORKER_NICENESS = 10


def init_worker(rules_path: str) -> None:
    global _worker_rules
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    _worker_rules = load_rules(Path(rules_path))


def decide_tags(
    rules: Rules, entry: ParsedEntry | Entry, source_tags: Sequence[str]
) -> TagDecision:
    """The tags of an entry, from its title and the lead of its summary and content."""
    return tag_text(
        rules,
        title=entry.title,
        summary=entry.summary[:TAG_TEXT_CHARS],
        content=html_text(entry.content_html),
        source_tags=source_tags,
    )


def prepare_entry(
    rules: Rules, entry: ParsedEntry, source: str, source_tags: Sequence[str]
) -> Prepared:
    decision = decide_tags(rules, entry, source_tags)
    keys, link = keys_and_link(entry, source)
    return Prepared(
        keys=keys,
        link=link,
        tags=decision.tags,
        scores=dict(decision.scores),
        terms=entry_terms(entry),
    )


def entry_terms(entry: ParsedEntry) -> str | None:
    """The words story grouping compares, encoded for storage."""
    return encode_terms(*story_terms(entry.title, entry.summary[:STORY_SUMMARY_CHARS]))


def prepare_feed(
    rules: Rules, parsed: ParsedFeed, source: str, source_tags: Sequence[str]
) -> list[Prepared]:
    return [prepare_entry(rules, e, source, source_tags) for e in parsed.entries]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedJob:
    """One fetched document to parse, and what is known of its source."""

    body: bytes
    headers: dict[str, str]
    base: str | None
    now: datetime
    source: str
    source_tags: tuple[str, ...]
    #: hashes of the raw items stored from the source's last fetch
    known_items: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedResult:
    parsed: ParsedFeed
    #: hashes of every raw item of the document (to remember), or None if it was not split
    item_hashes: tuple[str, ...] | None
    #: items skipped because their raw bytes were stored before
    skipped: int
    #: one per parsed entry, or None when not prepared
    prepared: list[Prepared] | None


def parse_new_items(job: FeedJob, rules: Rules | None) -> FeedResult:
    """Parse only the items whose raw bytes are new (all of them if the document cannot be
    split), then prepare every parsed entry when ``rules`` are given."""
    split = split_feed(job.body)
    hashes: tuple[str, ...] | None = None
    result: tuple[ParsedFeed, int] | None = None
    if split is not None:
        hashes = split.hashes()
        keep = {i for i, h in enumerate(hashes) if h not in job.known_items}
        if len(keep) < len(hashes):
            try:
                parsed = parse_feed(split.document(keep), job.headers, job.base, job.now)
            except ParseError:
                pass  # the full document decides below
            else:
                if len(parsed.entries) + len(parsed.rejected) == len(keep):
                    result = parsed, len(hashes) - len(keep)
    if result is None:
        result = parse_feed(job.body, job.headers, job.base, job.now), 0
    parsed, skipped = result
    prepared = prepare_feed(rules, parsed, job.source, job.source_tags) if rules else None
    return FeedResult(parsed=parsed, item_hashes=hashes, skipped=skipped, prepared=prepared)


def parse_in_worker(job: FeedJob) -> FeedResult:
    """The job of a parser process (the pool's initializer has loaded the rules)."""
    assert _worker_rules is not None, "the pool initializer loads the rules"
    return parse_new_items(job, _worker_rules)
