"""How feedparser is set up: buffered text and the caching Windows-1252 table change no result."""

from __future__ import annotations

import copy
import xml.sax
import xml.sax.expatreader
from datetime import UTC, datetime
from pathlib import Path

import feedparser.api
import feedparser.mixin
import feedparser.urls
import pytest

from digest import fpsetup
from digest.parse import parse_feed

DATA = Path(__file__).parent / "data"
NOW = datetime(2024, 7, 10, 12, 0, tzinfo=UTC)

ESCAPED = (
    '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>T &amp; U</title>'
    "<item><title>Mirzoyan &amp; Bayramov\n meet</title><link>https://e.org/a?x=1&amp;y=2</link>"
    "<description>&lt;p&gt;Talks &lt;b&gt;resumed&lt;/b&gt; in\nAlmaty&lt;/p&gt; &#x80;100 "
    "&#x9c;uvre \u0562\u0561\u0580\u0587 \u00a0&#38;</description>"
    "<content:encoded xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
    "<![CDATA[<p>One</p>]]>&lt;p&gt;Two&lt;/p&gt;</content:encoded></item></channel></rss>"
).encode()


class Counter(xml.sax.ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []

    def characters(self, content: str) -> None:
        self.pieces.append(content)


def test_feedparser_is_pointed_at_the_buffered_driver() -> None:
    assert feedparser.api.PREFERRED_XML_PARSERS == ["digest.fpsetup"]
    parser = xml.sax.make_parser(feedparser.api.PREFERRED_XML_PARSERS)
    assert isinstance(parser, fpsetup.BufferedExpatParser)
    assert isinstance(feedparser.mixin._cp1252, fpsetup._IdentityCache)  # type: ignore[attr-defined]


def test_text_with_entity_references_arrives_in_one_piece() -> None:
    handler = Counter()
    parser = fpsetup.create_parser()
    parser.setContentHandler(handler)
    parser.feed(b"<a>one &lt;b&gt; two\nthree &#38; four</a>")
    parser.close()
    assert handler.pieces == ["one <b> two\nthree & four"]
    # the stock reader splits the same text at every reference and line break
    stock = Counter()
    plain = xml.sax.expatreader.create_parser()
    plain.setContentHandler(stock)
    plain.feed(b"<a>one &lt;b&gt; two\nthree &#38; four</a>")
    plain.close()
    assert len(stock.pieces) > 1 and "".join(stock.pieces) == handler.pieces[0]


def test_identity_cache_maps_like_the_windows_1252_table_and_stays_bounded() -> None:
    table = fpsetup._IdentityCache({0x80: "\u20ac", 0x9C: "\u0153"})
    text = "".join(chr(c) for c in range(0x20, 0x20 + 2 * fpsetup.CACHE_LIMIT) if c < 0xD800)
    expected = text.replace("\x80", "\u20ac").replace("\x9c", "\u0153")
    assert text.translate(table) == expected
    assert text.translate(table) == expected  # again, from the cache
    assert len(table) <= fpsetup.CACHE_LIMIT


@pytest.mark.parametrize(
    "body",
    [ESCAPED, *(p.read_bytes() for p in sorted(DATA.glob("*.xml")) + sorted(DATA.glob("*.rdf")))],
    ids=lambda b: "escaped" if b is ESCAPED else None,
)
def test_results_equal_those_of_stock_feedparser(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"content-type": "application/rss+xml; charset=utf-8"} if body is ESCAPED else {}

    def parse() -> object:
        try:
            return parse_feed(body, headers, "https://e.org/feed.xml", NOW)
        except Exception as exc:  # noqa: BLE001 - the same failure is a same result
            return repr(exc)

    tuned = parse()
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", ["drv_libxml2"])
    monkeypatch.setattr(feedparser.mixin, "_cp1252", dict(feedparser.mixin._cp1252))  # type: ignore[attr-defined]
    monkeypatch.setattr(feedparser.mixin, "_urljoin", fpsetup._feedparser_urljoin)
    monkeypatch.setattr(feedparser.urls, "_urljoin", fpsetup._feedparser_urljoin)
    monkeypatch.delattr(feedparser.util.FeedParserDict, "__deepcopy__")
    monkeypatch.setattr(
        feedparser.mixin._FeedParserMixin, "decode_entities", fpsetup._feedparser_decode_entities
    )
    assert xml.sax.make_parser(feedparser.api.PREFERRED_XML_PARSERS).__class__ is (
        xml.sax.expatreader.ExpatParser
    )
    assert parse() == tuned


def test_escaped_html_and_windows_1252_extensions_survive() -> None:
    feed = parse_feed(ESCAPED, {"content-type": "application/rss+xml"}, "https://e.org/f", NOW)
    (entry,) = feed.entries
    assert entry.title == "Mirzoyan & Bayramov meet"
    assert entry.link == "https://e.org/a?x=1&y=2"
    assert "Talks resumed in Almaty" in entry.summary
    assert "\u20ac100" in entry.summary and "\u0153uvre" in entry.summary
    assert "\u0562\u0561\u0580\u0587" in entry.summary


def test_deep_copies_of_feedparser_dicts_are_deep() -> None:
    from feedparser.util import FeedParserDict

    plain = FeedParserDict(type="text/html", language=None, base="https://e.org/", value="x")
    copied = copy.deepcopy(plain)
    assert type(copied) is FeedParserDict and copied == plain and copied is not plain
    nested = FeedParserDict(type="text/html", links=[FeedParserDict(href="https://e.org/")])
    deep = copy.deepcopy(nested)
    deep["links"][0]["href"] = "changed"
    assert nested["links"][0]["href"] == "https://e.org/"
    looped = FeedParserDict(a=1)
    looped["self"] = [looped]
    again = copy.deepcopy(looped)
    assert again["self"][0] is again


def test_url_joins_equal_feedparser_and_long_ones_are_not_remembered() -> None:
    pairs = [
        ("https://e.org/a/b.xml", "c/d.html"),
        ("https://e.org/a/", "../x?y=1#z"),
        ("", "https://e.org/"),
        ("https://e.org/", "javascript:alert(1)"),
        ("https://e.org/", "https://e.org/" + "p" * 5000),
    ]
    for base, uri in pairs:
        assert fpsetup._urljoin(base, uri) == fpsetup._feedparser_urljoin(base, uri)
    fpsetup._cached_urljoin.cache_clear()
    fpsetup._urljoin("https://e.org/", "x" * (fpsetup.JOIN_CACHE_CHARS + 1))
    fpsetup._urljoin("https://e.org/", "short")
    assert fpsetup._cached_urljoin.cache_info().currsize == 1
    assert feedparser.urls._urljoin is fpsetup._urljoin  # type: ignore[attr-defined]
    assert feedparser.mixin._urljoin is fpsetup._urljoin  # type: ignore[attr-defined]


def _strings(value: object) -> list[object]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (*_strings(k), *_strings(v))]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("name", ["escaped", "atom10.xml", "rss20-windows-1251.xml"])
def test_texts_leave_feedparser_as_plain_strings(name: str) -> None:
    import io

    body = ESCAPED if name == "escaped" else (DATA / name).read_bytes()
    result = feedparser.parse(io.BytesIO(body), resolve_relative_uris=False, sanitize_html=False)
    found = _strings(result["entries"]) + _strings(result["feed"])
    assert found and all(type(s) is str for s in found)
    feed = parse_feed(body, {}, "https://e.org/f", NOW)
    for entry in feed.entries:
        assert all(type(v) is str for v in (entry.title, entry.summary, entry.content_html))


def test_marked_text_translates_like_the_table_and_becomes_plain() -> None:
    table = dict(feedparser.mixin._cp1252)  # type: ignore[attr-defined]
    for text in [
        "plain ascii",
        "\u0531\u0580\u0574\u0565\u0576\u056b\u0561",
        "\x80100 \x9cuvre \u0444",
    ]:
        marked = fpsetup._mark_text("summary", text)
        assert type(marked) is fpsetup._Text
        out = marked.translate(table)
        assert type(out) is str and out == text.translate(table)
    assert fpsetup._mark_text("summary", b"bytes") == b"bytes"
