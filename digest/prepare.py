"""What the parser processes do: parse a feed, then key, tag and normalise its entries.

These are the CPU-heavy steps of a poll cycle, so they run in a process pool on every core
while the main process fetches, stores and groups; small feeds go through the same functions in
the main process. This module is what each worker process imports, so it pulls in only the
parsing, identity, tagging and word-normalising code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.identity import canonical_link, entry_keys
from digest.models import Entry, EntryKeys, ParsedEntry, ParsedFeed
from digest.parse import parse_feed
from digest.stories import encode_terms, story_terms
from digest.tag import Rules, TagDecision, load_rules, tag_text

_TAG_RE = re.compile(r"<[^>]+>")


#: how much of an entry's summary and content the tagger reads: the lead carries the signal,
#: and the rest of a long article only costs time
TAG_TEXT_CHARS = 600
#: how much of a summary story grouping compares
STORY_SUMMARY_CHARS = 600


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


def init_worker(rules_path: str) -> None:
    global _worker_rules
    _worker_rules = load_rules(Path(rules_path))


def decide_tags(rules: Rules, entry: ParsedEntry | Entry,
                source_tags: Sequence[str]) -> TagDecision:
    """The tags of an entry, from its title and the lead of its summary and content."""
    return tag_text(rules, title=entry.title, summary=entry.summary[:TAG_TEXT_CHARS],
                    content=html_text(entry.content_html), source_tags=source_tags)


def prepare_entry(rules: Rules, entry: ParsedEntry, source: str,
                  source_tags: Sequence[str]) -> Prepared:
    decision = decide_tags(rules, entry, source_tags)
    return Prepared(
        keys=entry_keys(entry, source),
        link=canonical_link(entry.link),
        tags=decision.tags,
        scores=dict(decision.scores),
        terms=encode_terms(*story_terms(entry.title, entry.summary[:STORY_SUMMARY_CHARS])),
    )


def prepare_feed(rules: Rules, parsed: ParsedFeed, source: str,
                 source_tags: Sequence[str]) -> list[Prepared]:
    return [prepare_entry(rules, e, source, source_tags) for e in parsed.entries]


def parse_and_prepare(
    body: bytes, headers: dict[str, str], base: str | None, now: datetime,
    source: str, source_tags: tuple[str, ...],
) -> tuple[ParsedFeed, list[Prepared]]:
    """The job of a parser process (the pool's initializer has loaded the rules)."""
    parsed = parse_feed(body, headers, base, now)
    assert _worker_rules is not None, "the pool initializer loads the rules"
    return parsed, prepare_feed(_worker_rules, parsed, source, source_tags)
