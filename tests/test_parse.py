"""parse_feed: golden files, normalisation rules, errors, and hostile XML."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import pickle
import pyexpat
import threading
import xml.sax
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import parse as parse_module
from digest.errors import ParseError
from digest.models import ParsedEntry, ParsedFeed
from digest.parse import MAX_ENTITY_EXPANSION, SUMMARY_MAX, TITLE_MAX, parse_feed

DATA = Path(__file__).parent / "data"
NOW = datetime(2024, 7, 10, 12, 0, tzinfo=UTC)
RSS_TYPE = {"content-type": "application/rss+xml"}
BASE = "https://news.example.org/feeds/main.xml"


def rss(items: str, channel: str = "<title>T</title>", prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{prolog}'
        f'<rss version="2.0"><channel>{channel}{items}</channel></rss>'
    ).encode()


def item(**fields: str) -> str:
    return "<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in fields.items()) + "</item>"


def one(body: bytes, headers: dict[str, str] | None = None, base: str | None = BASE) -> ParsedEntry:
    feed = parse_feed(body, RSS_TYPE if headers is None else headers, base, NOW)
    assert len(feed.entries) == 1, feed
    return feed.entries[0]


def jsonable(value: Any) -> Any:
    """A ParsedFeed as plain JSON values (datetimes as ISO strings), for golden files."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# --- golden files ---------------------------------------------------------------------------

GOLDEN = sorted(p for p in DATA.glob("*.expected.json"))


@pytest.mark.parametrize("expected_path", GOLDEN, ids=lambda p: p.name.split(".expected")[0])
def test_golden(expected_path: Path) -> None:
    case = json.loads(expected_path.read_text(encoding="utf-8"))
    body = (DATA / case["file"]).read_bytes()
    now = datetime.fromisoformat(case["now"])
    feed = parse_feed(body, case["headers"], case["base_url"], now)
    assert jsonable(feed) == case["expected"]


def test_golden_files_exist() -> None:
    names = {json.loads(p.read_text(encoding="utf-8"))["file"] for p in GOLDEN}
    assert {
        "rss20.xml",
        "atom10.xml",
        "rss10.rdf",
        "rss20-windows-1251.xml",
        "rss20-latin1-http-charset.xml",
    } <= names


def test_http_charset_is_what_makes_latin1_clean() -> None:
    body = (DATA / "rss20-latin1-http-charset.xml").read_bytes()
    declared = parse_feed(
        body, {"content-type": "application/rss+xml; charset=ISO-8859-1"}, None, NOW
    )
    assert declared.warnings == ()
    assert declared.entries[0].title == "Tbilissi : l'été des négociations"
    # Without the header the document claims nothing, UTF-8 fails, and a fallback is noted.
    guessed = parse_feed(body, {"content-type": "application/rss+xml"}, None, NOW)
    assert any("CharacterEncodingOverride" in w for w in guessed.warnings)


def test_charset_in_header_overrides_the_xml_declaration() -> None:
    text = rss(item(title="Ереван", link="https://e.example/1")).decode()
    body = text.replace('encoding="utf-8"', 'encoding="iso-8859-1"').encode("koi8-r")
    feed = parse_feed(body, {"content-type": "application/xml; charset=koi8-r"}, None, NOW)
    assert feed.entries[0].title == "Ереван"


# --- document-level outcomes ----------------------------------------------------------------


def test_valid_empty_feed_has_no_entries_and_no_error() -> None:
    feed = parse_feed(rss("", "<title>Quiet</title><ttl>30</ttl>"), RSS_TYPE, BASE, NOW)
    assert feed.entries == () and feed.rejected == () and feed.warnings == ()
    assert feed.title == "Quiet" and feed.ttl_minutes == 30


def test_empty_atom_feed_is_valid() -> None:
    body = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title></feed>'
    assert parse_feed(body, {}, None, NOW).entries == ()


@pytest.mark.parametrize("body", [b"", b"   \n\t "])
def test_empty_body_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError, match="empty response body"):
        parse_feed(body, RSS_TYPE, BASE, NOW)


def test_html_page_is_not_a_feed() -> None:
    page = b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Hi</p></body></html>"
    with pytest.raises(ParseError, match="HTML page") as info:
        parse_feed(page, {"content-type": "text/html; charset=utf-8"}, BASE, NOW)
    assert info.value.url == BASE


def test_json_is_not_a_supported_feed() -> None:
    with pytest.raises(ParseError, match="JSON"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', {}, None, NOW)


def test_binary_garbage_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match="not a feed"):
        parse_feed(bytes(range(256)) * 4, {"content-type": "application/octet-stream"}, None, NOW)


def test_broken_feed_without_entries_is_a_parse_error() -> None:
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Cut</title><ite'
    with pytest.raises(ParseError, match="malformed"):
        parse_feed(body, RSS_TYPE, BASE, NOW)


def test_broken_feed_with_entries_keeps_them_and_warns() -> None:
    body = rss(item(title="Kept", link="/a")).replace(b"</channel></rss>", b"<item><title>Cu")
    feed = parse_feed(body, RSS_TYPE, BASE, NOW)
    assert [e.title for e in feed.entries][:1] == ["Kept"]
    assert feed.warnings and "malformed XML" in feed.warnings[0]


def test_html_entities_in_xml_are_decoded_with_a_warning() -> None:
    feed = parse_feed(rss(item(title="Caf&eacute;&nbsp;talk", link="/a")), RSS_TYPE, BASE, NOW)
    assert feed.entries[0].title == "Café\xa0talk".replace("\xa0", " ")
    assert feed.warnings


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [("60", 60), (" 15 ", 15), ("0", None), ("-5", None), ("abc", None), ("999999", None)],
)
def test_ttl_only_when_sane(ttl: str, expected: int | None) -> None:
    feed = parse_feed(rss("", f"<title>T</title><ttl>{ttl}</ttl>"), RSS_TYPE, BASE, NOW)
    assert feed.ttl_minutes == expected


# --- entry normalisation --------------------------------------------------------------------


def test_title_is_one_clean_line() -> None:
    raw = "  Line one\r\nline\ttwo &#x1; &#x7f; &lt;i&gt;three&lt;/i&gt; &amp;amp;\u2028four  "
    entry = one(rss(item(title=raw, link="/a")))
    assert entry.title == "Line one line two three & four"  # HTML, so &amp; is "&"


def test_long_title_and_summary_are_cut_at_a_word() -> None:
    words = " ".join(f"word{i}" for i in range(1000))
    entry = one(rss(item(title=words, link="/a", description=words)))
    assert len(entry.title) <= TITLE_MAX and entry.title.endswith("…")
    assert len(entry.summary) <= SUMMARY_MAX and entry.summary.endswith("…")
    assert entry.title[:-1].split()[-1] in words.split()  # no word cut in half


def test_summary_is_plain_text_and_content_keeps_safe_html() -> None:
    html = (
        "&lt;p&gt;One &amp;amp; two&lt;/p&gt;&lt;script&gt;evil()&lt;/script&gt;"
        "&lt;p onmouseover='x()'&gt;&lt;a href='/more'&gt;more&lt;/a&gt;"
        " &lt;a href='javascript:alert(1)'&gt;js&lt;/a&gt;"
        "&lt;img src='data:image/png;base64,AAAA'&gt;&lt;/p&gt;"
    )
    entry = one(rss(item(title="t", link="/a", description=html)))
    assert entry.summary == "One & two more js"
    assert "<script" not in entry.content_html and "evil" not in entry.content_html
    assert "onmouseover" not in entry.content_html
    assert "javascript:" not in entry.content_html and "data:" not in entry.content_html
    assert 'href="https://news.example.org/more"' in entry.content_html


def test_content_encoded_is_preferred_over_description() -> None:
    body = rss(
        "<item><title>t</title><link>/a</link><description>Short.</description>"
        "<content:encoded><![CDATA[<p>Full <b>text</b>.</p>]]></content:encoded></item>"
    ).replace(
        b'version="2.0"', b'version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
    )
    entry = one(body)
    assert entry.summary == "Short."
    assert entry.content_html == "<p>Full <b>text</b>.</p>"


def test_links_are_absolute_http_only() -> None:
    feed = parse_feed(
        rss(
            item(title="rel", link="../story/1")
            + item(title="ftp", link="ftp://files.example.org/x")
            + item(title="js", link="javascript:alert(1)")
            + item(title="spaces", link="  https://news.example.org/a b  ")
        ),
        RSS_TYPE,
        BASE,
        NOW,
    )
    assert [e.link for e in feed.entries] == [
        "https://news.example.org/story/1",
        None,
        None,
        "https://news.example.org/a%20b",
    ]


def test_relative_links_without_any_base_are_dropped() -> None:
    assert one(rss(item(title="t", link="/a")), base=None).link is None


def test_content_location_header_is_the_base() -> None:
    headers = {**RSS_TYPE, "content-location": "/mirror/feed.xml"}
    assert one(rss(item(title="t", link="x")), headers).link == "https://news.example.org/mirror/x"


def atom(entries: str, feed_attrs: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"'
        f"{feed_attrs}><title>T</title><id>urn:t</id>{entries}</feed>"
    ).encode()


ATOM_TYPE = {"content-type": "application/atom+xml"}
XML_BASE_FEED = atom(
    """<entry xml:base="posts/2024/"><title>One</title><link href="one.html"/><id>urn:1</id>
      <link rel="enclosure" href="one.mp3" type="audio/mpeg" length="1"/>
      <summary type="html">&lt;a href="sum.html"&gt;s&lt;/a&gt;</summary>
      <content type="html" xml:base="/media/">&lt;p&gt;&lt;a href="pic.html"&gt;pic&lt;/a&gt;
        &lt;img src="../i.png"&gt; &lt;a href="https://other.example.net/x"&gt;x&lt;/a&gt;
        &lt;a href="//cdn.example.net/y"&gt;y&lt;/a&gt;&lt;/p&gt;</content></entry>
    <entry><title>Two</title><link href="two.html"/><id>urn:2</id>
      <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><a href="rel/a.html">a</a>
      <img src="b.png"/></div></content></entry>
    <entry xml:base="/only-summary/"><title>Three</title><link href="three.html"/><id>urn:3</id>
      <summary type="html">&lt;a href="s3.html"&gt;s&lt;/a&gt;</summary></entry>""",
    ' xml:base="http://cdn.example.com/blog/"',
)


def test_xml_base_resolves_links_and_content_urls_per_element() -> None:
    """Atom allows xml:base on any element; each URL resolves against the one in force where
    it appears (nested bases are themselves relative to the enclosing one)."""
    entries = parse_feed(XML_BASE_FEED, ATOM_TYPE, BASE, NOW).entries
    assert [e.link for e in entries] == [
        "http://cdn.example.com/blog/posts/2024/one.html",
        "http://cdn.example.com/blog/two.html",
        "http://cdn.example.com/only-summary/three.html",
    ]
    first, second, third = (e.content_html for e in entries)
    assert 'href="http://cdn.example.com/media/pic.html"' in first
    assert 'src="http://cdn.example.com/i.png"' in first
    assert 'href="https://other.example.net/x"' in first
    assert 'href="http://cdn.example.net/y"' in first
    assert 'href="http://cdn.example.com/blog/rel/a.html"' in second
    assert 'src="http://cdn.example.com/blog/b.png"' in second
    # the summary stands in for missing content, with its own base
    assert third == (
        '<a href="http://cdn.example.com/only-summary/s3.html" rel="noopener noreferrer">s</a>'
    )


def test_relative_xml_base_resolves_against_the_feed_url() -> None:
    body = atom(
        '<entry><title>t</title><link href="a.html"/><id>urn:1</id>'
        '<content type="html">&lt;a href="b.html"&gt;b&lt;/a&gt;</content></entry>',
        ' xml:base="/site/"',
    )
    entry = one(body, ATOM_TYPE)
    assert entry.link == "https://news.example.org/site/a.html"
    assert 'href="https://news.example.org/site/b.html"' in entry.content_html
    # without a document URL, relative bases leave relative URLs, which are dropped
    entry = one(body, ATOM_TYPE, base=None)
    assert entry.link is None
    assert entry.content_html == '<a rel="noopener noreferrer">b</a>'


def test_stored_html_lists_attributes_in_name_order() -> None:
    """A source that reorders attributes does not edit its entries."""
    html = (
        '&lt;img width="2" src="/i.png" alt="A &amp;amp; B"&gt;'
        '&lt;a title="t" href="/x"&gt;x&lt;/a&gt;'
    )
    entry = one(rss(item(title="t", link="/a", description=html)))
    assert entry.content_html == (
        '<img alt="A &amp; B" src="https://news.example.org/i.png" width="2">'
        '<a href="https://news.example.org/x" title="t" rel="noopener noreferrer">x</a>'
    )


def test_untitled_entry_takes_its_title_from_the_summary_or_link() -> None:
    feed = parse_feed(
        rss(
            item(link="/a", description="Pashinyan and Aliyev met in Granada on the margins")
            + item(link="/b")
        ),
        RSS_TYPE,
        BASE,
        NOW,
    )
    assert feed.entries[0].title == "Pashinyan and Aliyev met in Granada on the margins"
    assert feed.entries[1].title == "https://news.example.org/b"


def test_entry_without_title_and_link_is_rejected_with_a_reason() -> None:
    feed = parse_feed(rss(item(description="Orphan text")), RSS_TYPE, BASE, NOW)
    assert feed.entries == ()
    assert [(r.reason, r.title) for r in feed.rejected] == [("no title and no link", "Orphan text")]


def test_dates_are_utc() -> None:
    entry = one(rss(item(title="t", link="/a", pubDate="Tue, 14 May 2024 09:30:00 +0400")))
    assert entry.published == datetime(2024, 5, 14, 5, 30, tzinfo=UTC)
    assert entry.published.utcoffset() == timedelta(0) and not entry.date_missing


def test_missing_date_is_first_seen_time() -> None:
    entry = one(rss(item(title="t", link="/a")))
    assert entry.published == entry.updated == NOW and entry.date_missing


def test_far_future_date_is_clamped_but_near_future_kept() -> None:
    soon = (NOW + timedelta(hours=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    late = (NOW + timedelta(days=3)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    feed = parse_feed(
        rss(
            item(title="soon", link="/a", pubDate=soon)
            + item(title="late", link="/b", pubDate=late)
        ),
        RSS_TYPE,
        BASE,
        NOW,
    )
    assert feed.entries[0].published == NOW + timedelta(hours=20)
    assert feed.entries[1].published == NOW and not feed.entries[1].date_missing


def test_ancient_date_counts_as_missing() -> None:
    entry = one(rss(item(title="t", link="/a", pubDate="Thu, 01 Jan 1970 00:00:00 GMT")))
    assert entry.date_missing and entry.published == NOW


def test_updated_only_atom_entry_is_dated_by_it() -> None:
    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><entry><title>e</title>'
        b'<link href="https://a.example/1"/><updated>2024-01-02T03:04:05Z</updated></entry></feed>'
    )
    entry = parse_feed(body, {}, None, NOW).entries[0]
    assert entry.published == entry.updated == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert not entry.date_missing


def test_blank_guid_is_no_guid() -> None:
    assert one(rss(item(title="t", link="/a", guid=" \n\t "))).guid is None
    assert one(rss(item(title="t", link="/a", guid=" abc "))).guid == "abc"


def test_authors_and_categories_are_clean_and_unique() -> None:
    body = rss(
        "<item><title>t</title><link>/a</link><author>desk@example.org (News\nDesk)</author>"
        "<category>Armenia</category><category> Armenia </category><category></category>"
        "<category>Peace\ttalks</category></item>"
    )
    entry = one(body)
    assert entry.authors == ("News Desk",)  # the name; the address is not an author
    assert entry.categories == ("Armenia", "Peace talks")


# --- hostile XML ----------------------------------------------------------------------------

CANARY = "canary-3f9a1c"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"{CANARY}\n", encoding="utf-8")
    return path


def everything(feed: ParsedFeed) -> str:
    return repr(feed)


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{url}">\n]>\n',
        '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{url}">]>\n',
        '<!DOCTYPE rss [\n  <!ENTITY % p SYSTEM "{url}">\n  %p;\n]>\n',
        '<!DOCTYPE rss SYSTEM "{url}">\n',
        '<!DOCTYPE rss PUBLIC "-//X//Y//EN" "{url}">\n',
    ],
    ids=["general-entity", "one-line", "parameter-entity", "external-dtd", "public-dtd"],
)
def test_external_entities_never_read_local_files(secret_file: Path, prolog: str) -> None:
    body = rss(
        item(title="a &xxe; b", link="/x", description="&xxe;"),
        prolog=prolog.format(url=secret_file.as_uri()),
    )
    try:
        result = everything(parse_feed(body, RSS_TYPE, BASE, NOW))
    except ParseError as exc:
        result = str(exc)
    assert CANARY not in result


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        body = f'<!ENTITY x "{CANARY}">'.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def dtd_server() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback that records every request it gets."""
    hits: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_external_entities_never_make_requests(dtd_server: tuple[str, list[str]]) -> None:
    url, hits = dtd_server
    for prolog in (
        f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{url}/entity">]>\n',
        f'<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{url}/entity">\n]>\n',
        f'<!DOCTYPE rss [\n<!ENTITY % dtd SYSTEM "{url}/param">\n%dtd;\n]>\n',
        f'<!DOCTYPE rss SYSTEM "{url}/dtd">\n',
    ):
        body = rss(item(title="a &xxe; &x; b", link="/x"), prolog=prolog)
        try:
            result = everything(parse_feed(body, RSS_TYPE, BASE, NOW))
        except ParseError as exc:
            result = str(exc)
        assert CANARY not in result
    assert hits == []


def test_a_body_that_is_a_file_name_is_not_opened(secret_file: Path) -> None:
    # feedparser.parse(bytes) would treat the bytes as a path; parse_feed never does.
    with pytest.raises(ParseError) as info:
        parse_feed(str(secret_file).encode(), {}, None, NOW)
    assert CANARY not in str(info.value)


def billion_laughs(levels: int = 10, oneline: bool = False) -> str:
    sep = "" if oneline else "\n"
    decls = ['<!ENTITY lol0 "lol">']
    decls += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return f"<!DOCTYPE rss [{sep}{sep.join(decls)}{sep}]>\n"


@pytest.mark.parametrize("oneline", [False, True])
def test_billion_laughs_is_not_expanded(oneline: bool) -> None:
    body = rss(
        item(title="boom &lol9;", link="/x", description="&lol9;&lol9;"),
        prolog=billion_laughs(oneline=oneline),
    )
    try:
        result = everything(parse_feed(body, RSS_TYPE, BASE, NOW))
    except ParseError as exc:
        result = str(exc)
    assert "lollollol" not in result


def test_quadratic_blowup_is_refused() -> None:
    # One literal entity used many times: expat refuses it, but feedparser's lenient fallback
    # would expand it (100 kB in, 100 MB out), so parse_feed refuses before parsing.
    prolog = f'<!DOCTYPE rss [\n<!ENTITY a "{"A" * 100_000}">\n]>\n'
    body = rss(item(title="t", link="/x", description="&a;" * 1000), prolog=prolog)
    with pytest.raises(ParseError, match="XML bomb"):
        parse_feed(body, RSS_TYPE, BASE, NOW)


def test_quadratic_blowup_in_utf16_is_refused() -> None:
    prolog = f'<!DOCTYPE rss [\n<!ENTITY a "{"A" * 50_000}">\n]>\n'
    text = rss(item(title="t", link="/x", description="&a;" * 100), prolog=prolog).decode()
    body = text.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")
    with pytest.raises(ParseError, match="XML bomb"):
        parse_feed(body, {}, None, NOW)


def test_small_literal_entities_still_work() -> None:
    prolog = '<!DOCTYPE rss [\n<!ENTITY org "OSCE">\n]>\n'
    body = rss(item(title="&org; talks", link="/x"), prolog=prolog)
    assert one(body).title == "OSCE talks"
    assert MAX_ENTITY_EXPANSION >= 1 << 16


def test_this_expat_limits_amplification() -> None:
    """The expat under feedparser's strict parser refuses billion laughs by itself (2.4+)."""
    assert pyexpat.version_info >= (2, 4, 0)
    doc = f'<?xml version="1.0"?>\n{billion_laughs()}<rss>&lol9;</rss>'
    parser = pyexpat.ParserCreate()
    with pytest.raises(pyexpat.ExpatError, match="amplification"):
        parser.Parse(doc.encode(), True)


def test_this_sax_parser_does_not_load_external_entities(secret_file: Path) -> None:
    """The stdlib SAX reader feedparser uses leaves external entities unresolved by default."""
    seen: list[str] = []

    class Handler(xml.sax.handler.ContentHandler):
        def characters(self, content: str) -> None:
            seen.append(content)

    doc = f'<!DOCTYPE r [<!ENTITY x SYSTEM "{secret_file.as_uri()}">]><r>a&x;b</r>'
    parser = xml.sax.make_parser()
    parser.setFeature(xml.sax.handler.feature_namespaces, 1)
    assert parser.getFeature(xml.sax.handler.feature_external_ges) == 0
    parser.setContentHandler(Handler())
    parser.parse(io.BytesIO(doc.encode()))
    assert CANARY not in "".join(seen)


# --- fast paths: the same results as the general code -----------------------------------------

# Markup as feeds write it, and the odd corners html.parser reads in its own way.
HTML_PIECES = [
    "Talks in Baku",
    " ",
    "\n",
    "&amp;",
    "&lt;",
    "&#8212;",
    "&#x2014;",
    "&nbsp;",
    "&mdash;",
    "&amp",
    "&copy",
    "AT&T",
    "&unknown;",
    "&#0;",
    "& ",
    "&",
    ";",
    "<",
    ">",
    "a < b",
    "<3",
    "<p>",
    "</p>",
    "<P>",
    "<p/>",
    "<br>",
    "<br/>",
    "<br />",
    "</br>",
    "<hr>",
    "<b>",
    "</b>",
    "<div class='lead'>",
    "</div>",
    "<li>",
    "<td>",
    '<span title="a > b">',
    "</span>",
    '<a href="/x?a=1&amp;b=2">',
    "<a href=/x/>",
    "<a title>",
    "<a b='c'd>",
    "</a>",
    '<img src="/i.png" alt="A &amp; B"/>',
    "<img\tsrc=x\nalt=''>",
    "<o:p></o:p>",
    "<my-el>",
    "<script>",
    "</script>",
    "<script async src='x.js'></script>",
    "<script>var a = 1;</script>",
    "<script>if (a < b) {}</script>",
    "<SCRIPT>x</SCRIPT>",
    "<style>.a{color:red}</style>",
    "<title>",
    "</title>",
    "<title/>",
    "<noscript><img src=x></noscript>",
    "<noscript>",
    "<template>",
    "</template>",
    "<head>",
    "</head>",
    "<iframe src=x></iframe>",
    "<iframe>",
    "<textarea>a &amp; b</textarea>",
    "<plaintext>",
    "<xmp>",
    "<!-- wp:paragraph -->",
    "<!-- a -- b -->",
    "<!---->",
    "<!-->",
    "<!DOCTYPE html>",
    "<![CDATA[x]]>",
    "<?php x ?>",
    "</>",
    "</ p>",
    "</p foo>",
    "<a/b>",
    "<p\x00>",
    "<\u00e9>",
    "<p\u00a0x>",
    "<a\vb>",
    '<a href="x',
    "Армения",
    "Qarabağ",
]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(HTML_PIECES), max_size=25))
def test_simple_html_reads_as_html_parser_reads_it(pieces: list[str]) -> None:
    value = "".join(pieces)
    fast = parse_module._simple_html_to_text(value)
    assert fast is None or fast == parse_module._parsed_html_to_text(value)
    assert parse_module._html_to_text(value) == parse_module._parsed_html_to_text(value)


@pytest.mark.parametrize(
    "value",
    [
        "<head><template>x</template>y</head>z",
        "</title>a<title>b</title>c",
        "<title/>x</title>y",
        "<script/>x</script>y",
        "<p>a<noscript>b</noscript>c</p>",
        "<style>a</style ><b>x</b>",
        "<iframe>a</iframe>b",
        "<TITLE>a</Title>b",
        "a&amp;b<br/>c&#8212;d<br >e",
        "x<!-- c -->y<!-- d -- e -->z",
        "<div\n  class='a'\tid=b>x</div\n>y",
    ],
)
def test_simple_html_reads_tricky_markup_as_html_parser_does(value: str) -> None:
    fast = parse_module._simple_html_to_text(value)
    assert fast is None or fast == parse_module._parsed_html_to_text(value)


def test_feed_html_takes_the_fast_path() -> None:
    html = (
        '<p class="lead">Talks in <a href="https://ex.org/a?b=1&amp;c=2" title="More">Baku'
        "</a> &amp; Yerevan&nbsp;&#8212; <b>today</b>.<br/><img src=x.png alt=''></p>\n"
        "<!-- wp:embed --><blockquote class='twitter-tweet'><p>Tweet</p></blockquote>"
        '<script async src="https://platform.twitter.com/widgets.js"></script><div></div>'
    )
    text = parse_module._simple_html_to_text(html)
    assert text is not None
    assert text == parse_module._parsed_html_to_text(html)


def reference_absolute_http_url(url: object, base: str | None) -> str | None:
    """absolute_http_url as first written, before its fast path for plain absolute URLs."""
    if not isinstance(url, str):
        return None
    junk = parse_module._JUNK_CHARS
    url = parse_module._URL_BREAKS.sub("", junk.sub("", url).strip()).replace(" ", "%20")
    if not url:
        return None
    try:
        resolved = urljoin(base, url) if base else url
        parts = urlsplit(resolved)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        parts.port  # noqa: B018
    except ValueError:
        return None
    return resolved


URL_PIECES = [
    "http://",
    "https://",
    "HTTP://",
    "ftp://",
    "//",
    "/",
    "a",
    "b.c",
    "ex.org",
    ":",
    ":80",
    ":99999",
    "?",
    "?q=1",
    "#",
    "#f",
    ";",
    "&",
    "@",
    "[",
    "]",
    "[::1]",
    "%20",
    " ",
    "\t",
    "\n",
    "\x00",
    "\x85",
    "\u00a0",
    "é",
    "ж",
    "..",
    ".",
    "\\",
    "javascript:",
    "mailto:",
]


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["", "http://", "https://"]),
    st.lists(st.sampled_from(URL_PIECES), max_size=8),
    st.sampled_from(
        [None, "", BASE, "https://ex.org", "http://[::1]/x", "relative/", "http://a/b;c"]
    ),
)
def test_absolute_urls_resolve_as_urljoin_resolves_them(
    scheme: str, pieces: list[str], base: str | None
) -> None:
    url = scheme + "".join(pieces)
    assert parse_module.absolute_http_url(url, base) == reference_absolute_http_url(url, base)


LINE_CHARS = list(" ab\t\n\r\x00\x08\x0b\x0c\x1c\x1f\x7f\x85\x9f\xa0\u2028\ufffe\ufeff")


@settings(max_examples=1000, deadline=None)
@given(st.text(st.sampled_from(LINE_CHARS)))
def test_one_line_drops_junk_and_collapses_whitespace(text: str) -> None:
    expected = " ".join(parse_module._JUNK_CHARS.sub("", text).split())
    assert parse_module._one_line(text) == expected


# --- process pool contract and properties ---------------------------------------------------


def test_results_and_errors_survive_pickling() -> None:
    feed = parse_feed((DATA / "rss20.xml").read_bytes(), RSS_TYPE, BASE, NOW)
    assert pickle.loads(pickle.dumps(feed)) == feed
    err = ParseError("not a feed: x", url=BASE)
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), str(copy), copy.url) == (ParseError, "not a feed: x", BASE)


def test_runs_in_a_process_pool() -> None:
    body = (DATA / "atom10.xml").read_bytes()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        remote = pool.submit(parse_feed, body, {}, BASE, NOW).result(timeout=60)
        failed = pool.submit(parse_feed, b"<html><body>x</body></html>", {}, BASE, NOW)
        with pytest.raises(ParseError, match="HTML"):
            failed.result(timeout=60)
    assert remote == parse_feed(body, {}, BASE, NOW)


def xml_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Any character XML 1.0 allows in text.
xml_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\ufffe\uffff").filter(
    lambda c: c in "\t\n\r" or ord(c) >= 0x20
)


@settings(max_examples=150, deadline=None)
@given(title=st.text(xml_chars, max_size=700), summary=st.text(xml_chars, max_size=300))
def test_any_text_becomes_one_clean_line(title: str, summary: str) -> None:
    feed = parse_feed(
        rss(item(title=xml_text(title), link="/a", description=xml_text(summary))),
        RSS_TYPE,
        BASE,
        NOW,
    )
    entry = feed.entries[0]
    for text, limit in ((entry.title, TITLE_MAX), (entry.summary, SUMMARY_MAX)):
        assert len(text) <= limit
        assert text == text.strip()
        assert not any(c in text for c in "\r\n\t\x0b\x0c\x85\u2028\u2029")
        assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in text)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2000), content_type=st.sampled_from(["", "text/xml", "text/html"]))
def test_any_bytes_give_a_feed_or_a_parse_error(body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    try:
        feed = parse_feed(body, headers, BASE, NOW)
    except ParseError:
        return
    assert isinstance(feed, ParsedFeed)


# -- charsets that lie ------------------------------------------------------------------------

CYRILLIC_TITLE = "Глава МИД Армении прибыл в Баку"


def _rss_bytes(encoding: str, declared: str) -> bytes:
    doc = (
        f'<?xml version="1.0" encoding="{declared}"?><rss version="2.0"><channel>'
        f"<title>t</title><item><title>{CYRILLIC_TITLE}</title>"
        "<link>https://ex.ru/1</link></item></channel></rss>"
    )
    return doc.encode(encoding)


@pytest.mark.parametrize(
    ("encoding", "declared", "header"),
    [
        ("utf-8", "windows-1251", None),  # the XML declaration lies
        ("utf-8", "utf-8", "text/xml; charset=windows-1251"),  # the HTTP header lies
        ("windows-1251", "utf-8", None),  # one-byte text declared as UTF-8: detected
        ("windows-1251", "windows-1251", None),  # honest: unchanged
        ("koi8-r", "koi8-r", "application/rss+xml; charset=koi8-r"),  # honest header
    ],
)
def test_lying_charsets_still_give_the_right_letters(
    encoding: str, declared: str, header: str | None
) -> None:
    headers = {"content-type": header} if header else {}
    feed = parse_feed(_rss_bytes(encoding, declared), headers, "https://ex.ru/", NOW)
    assert [e.title for e in feed.entries] == [CYRILLIC_TITLE]
