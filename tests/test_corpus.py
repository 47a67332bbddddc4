"""Every file of the feedparser test corpus through parse_feed and entry_keys.

The corpus is hostile and varied input (broken XML, lying encodings, sanitiser attacks). Each
file must give entries, a valid empty feed, or a ParseError; never another exception. Every
entry that comes out must meet the invariants the later stages rely on.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from digest.errors import ParseError
from digest.identity import entry_keys
from digest.models import ParsedEntry
from digest.parse import SUMMARY_MAX, TITLE_MAX, parse_feed, sanitize_html

CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus/feedparser-tests"
BASE = "http://example.org/corpus/feed.xml"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

_HEADER = re.compile(rb"^\s*Header:\s*([A-Za-z0-9-]+):[ \t]*(.*?)\s*$", re.MULTILINE)
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HANDLER_ATTR = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
_HTTP_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
_KEY = re.compile(r"(guid|link|td):[0-9a-f]{32}")


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


def corpus_headers(body: bytes) -> dict[str, str]:
    """The response headers a file expects, from its ``Header: Name: value`` comment lines."""
    return {
        m.group(1).decode("ascii").lower(): m.group(2).decode("latin-1")
        for m in _HEADER.finditer(body[:2000])
    }


def unsafe_html(html: str) -> bool:
    lowered = html.lower()
    return "<script" in lowered or "javascript:" in lowered or bool(_HANDLER_ATTR.search(html))


def entry_problems(entry: ParsedEntry) -> list[str]:
    problems = []
    if not entry.title or _BAD_TEXT.search(entry.title) or len(entry.title) > TITLE_MAX:
        problems.append(f"title {entry.title!r}")
    if _BAD_TEXT.search(entry.summary) or len(entry.summary) > SUMMARY_MAX:
        problems.append(f"summary {entry.summary!r}")
    if entry.link is not None and not _HTTP_URL.fullmatch(entry.link):
        problems.append(f"link {entry.link!r}")
    for name in ("published", "updated"):
        moment: datetime = getattr(entry, name)
        if moment.utcoffset() != timedelta(0) or not datetime(1990, 1, 1, tzinfo=UTC) <= moment:
            problems.append(f"{name} {moment!r}")
        if moment > NOW + timedelta(days=1):
            problems.append(f"{name} in the future: {moment!r}")
    if unsafe_html(entry.content_html):
        problems.append(f"content_html {entry.content_html!r}")
    if entry.guid is not None and (not entry.guid.strip() or _BAD_TEXT.search(entry.guid)):
        problems.append(f"guid {entry.guid!r}")
    for value in (*entry.authors, *entry.categories):
        if not value or _BAD_TEXT.search(value):
            problems.append(f"author/category {value!r}")
    return problems


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"feed corpus not found at {CORPUS}")
def test_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    files = corpus_files()
    assert len(files) > 2000
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for path in files:
        name = str(path.relative_to(CORPUS))
        body = path.read_bytes()
        try:
            feed = parse_feed(body, corpus_headers(body), BASE, NOW)
        except ParseError as exc:
            outcomes["parse error"] += 1
            if not str(exc):
                failures.append(f"{name}: ParseError without a message")
            continue
        except Exception as exc:  # noqa: BLE001  (collect every failure, then report them all)
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if feed.entries:
            outcomes["entries"] += 1
        elif feed.rejected:
            outcomes["only rejected entries"] += 1
        else:
            outcomes["empty"] += 1
        for entry in feed.entries:
            failures += [f"{name}: {p}" for p in entry_problems(entry)]
            keys = entry_keys(entry, name)
            if not all(_KEY.fullmatch(k) for k in keys.all()):
                failures.append(f"{name}: keys {keys!r}")
        for rejected in feed.rejected:
            if not rejected.reason:
                failures.append(f"{name}: rejected without a reason")

    with capsys.disabled():
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        print(f"\ncorpus: {len(files)} files; {summary}")
    assert failures == []
    assert sum(outcomes.values()) == len(files)
    # Broad sanity: most of the corpus is well-formed and must not be reported as broken.
    assert outcomes["entries"] >= 200
    assert outcomes["parse error"] <= len(files) // 20


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"feed corpus not found at {CORPUS}")
def test_corpus_html_is_sanitised() -> None:
    """Most sanitiser attacks in the corpus sit in entries without title or link, which
    parse_feed rejects before their HTML matters; feed their raw HTML to the sanitiser here."""
    unsafe_inputs = 0
    failures: list[str] = []
    for path in corpus_files():
        raw = feedparser.parse(io.BytesIO(path.read_bytes()), sanitize_html=False)
        for entry in raw.entries:
            values = [c.get("value") for c in entry.get("content", [])] + [entry.get("summary")]
            for value in filter(None, values):
                unsafe_inputs += unsafe_html(value)
                clean = sanitize_html(value, BASE)
                if unsafe_html(clean):
                    failures.append(f"{path.relative_to(CORPUS)}: {clean!r}")
    assert unsafe_inputs > 100  # the corpus still holds the attacks this test is about
    assert failures == []
