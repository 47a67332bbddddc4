"""The raw item splitter: exact on plain feeds, and it declines anything unusual."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.feedsplit import split_feed
from digest.parse import parse_feed

NOW = datetime(2026, 11, 26, tzinfo=UTC)
DATA = Path(__file__).parent / "data"
HEAD = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>\n'
TAIL = b"\n</channel></rss>"


def rss(*items: bytes) -> bytes:
    return HEAD + b"".join(items) + TAIL


def item(n: int) -> bytes:
    return (
        f"<item><title>Item {n}</title><link>https://ex.am/{n}</link>"
        f"<guid>https://ex.am/{n}</guid></item>"
    ).encode()


def test_split_and_rebuild_round_trip() -> None:
    body = rss(item(1), item(2), item(3))
    split = split_feed(body)
    assert split is not None and len(split.items) == 3
    assert split.document({0, 1, 2}) == rss(item(1), item(2), item(3))
    only = parse_feed(split.document({1}), {}, "https://ex.am/", NOW)
    assert [e.title for e in only.entries] == ["Item 2"]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in DATA.glob("*.xml")) + sorted(p.name for p in DATA.glob("*.rdf"))
)
def test_golden_feeds_split_into_their_entries(name: str) -> None:
    body = (DATA / name).read_bytes()
    split = split_feed(body)
    full = parse_feed(body, {"content-type": "application/xml"}, "https://ex.am/", NOW)
    assert split is not None
    assert len(split.items) == len(full.entries) + len(full.rejected)
    again = parse_feed(
        split.document(set(range(len(split.items)))),
        {"content-type": "application/xml"},
        "https://ex.am/",
        NOW,
    )
    assert again.entries == full.entries


@pytest.mark.parametrize(
    "body",
    [
        rss(b"<item><title>a<item>b</item></title></item>"),  # nested
        rss(b"<item/>", item(1)),  # self-closing
        rss(item(1), b"<p>between</p>", item(2)),  # other elements between
        rss(b"<item><description><![CDATA[</item>]]></description></item>"),  # CDATA trick
        b"\xff\xfe<\x00r\x00s\x00s\x00",  # UTF-16
        b'<!DOCTYPE rss [<!ENTITY a "x">]>' + rss(item(1)),  # entities
        b"<rss><channel><title>no items</title></channel></rss>",
    ],
)
def test_unusual_layouts_are_declined(body: bytes) -> None:
    assert split_feed(body) is None


def test_items_plural_is_not_an_item() -> None:
    body = (
        b'<rdf:RDF><channel><items><rdf:Seq><rdf:li resource="x"/></rdf:Seq></items>'
        b'</channel><item rdf:about="x"><title>T</title></item></rdf:RDF>'
    )
    split = split_feed(body)
    assert split is not None and len(split.items) == 1 and b"<items>" in split.head


@given(st.binary(max_size=400))
def test_never_raises(body: bytes) -> None:
    split = split_feed(body)
    if split is not None:
        assert body.startswith(split.head) and body.endswith(split.tail)
        assert all(i in body for i in split.items)
