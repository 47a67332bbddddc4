"""What the parser processes do: parse a feed, then tag its entries and normalise their words.

These are the CPU-heavy steps of a poll cycle, so they run in a process pool on every core
while the main process fetches, stores and groups. This module is what each worker process
imports, so it pulls in only the parsing, tagging and word-normalising code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest.models import Entry, ParsedEntry, ParsedFeed
from digest.parse import parse_feed
from digest.stories import story_terms
from digest.tag import Rules, TagDecision, load_rules, tag_text
from digest.textnorm import Terms

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
    """What a parser process computes for each entry besides parsing it."""

    tags: tuple[str, ...]
    scores: dict[str, float]
    #: the story grouping's normalised words of title and summary
    terms: tuple[Terms, Terms]


_worker_rules: Rules | None = None


def init_worker(rules_path: str) -> None:
    global _worker_rules
    _worker_rules = load_rules(Path(rules_path))


def decide_tags(rules: Rules, entry: ParsedEntry | Entry,
                source_tags: Sequence[str]) -> TagDecision:
    """The tags of an entry, from its title and the lead of its summary and content."""
    return tag_text(rules, title=entry.title, summary=entry.summary[:TAG_TEXT_CHARS],
                    content=html_text(entry.content_html), source_tags=source_tags)


def prepare_entry(rules: Rules, entry: ParsedEntry, source_tags: Sequence[str]) -> Prepared:
    decision = decide_tags(rules, entry, source_tags)
    return Prepared(tags=decision.tags, scores=dict(decision.scores),
                    terms=story_terms(entry.title, entry.summary[:STORY_SUMMARY_CHARS]))


def parse_and_tag(
    body: bytes, headers: dict[str, str], base: str | None, now: datetime,
    source_tags: tuple[str, ...],
) -> tuple[ParsedFeed, list[Prepared]]:
    """The job of a parser process (the pool's initializer has loaded the rules)."""
    parsed = parse_feed(body, headers, base, now)
    assert _worker_rules is not None, "the pool initializer loads the rules"
    return parsed, [prepare_entry(_worker_rules, e, source_tags) for e in parsed.entries]
