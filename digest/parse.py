"""Feed bytes -> :class:`ParsedFeed`: feedparser, then normalisation of every entry.

Pure and picklable (it runs in a process pool): no clock, no network, no files. feedparser is
the only third-party parser here and its failures become :class:`ParseError` in this module.

Hostile input: feedparser is always given a stream (a ``bytes`` argument would be taken as a
file name), it strips DOCTYPE entity declarations except plain literal ones, and the expat it
drives never loads external entities. What remains is expansion of those literal entities, which
feedparser's lenient fallback parser performs without expat's amplification limit, so
:func:`parse_feed` refuses documents whose declared entities would expand past
:data:`MAX_ENTITY_EXPANSION` before parsing starts.
"""

from __future__ import annotations

import codecs
import html
import io
import re
import xml.sax
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import nh3
from feedparser.encodings import convert_to_utf8

from digest import fpsetup
from digest.errors import ParseError
from digest.models import ParsedEntry, ParsedFeed, Rejected

#: plain-text titles are cut to this many characters
TITLE_MAX = 500
#: plain-text summaries are cut to this many characters
SUMMARY_MAX = 2000
#: a title made from the summary keeps at most this many characters
DERIVED_TITLE_MAX = 80
AUTHOR_MAX = 200
CATEGORY_MAX = 100
MAX_AUTHORS = 20
MAX_CATEGORIES = 50
GUID_MAX = 2048
#: dates further ahead than this are clamped to ``now`` (clock skew, typos, scheduled posts)
MAX_FUTURE = timedelta(days=1)
#: dates before this are treated as missing (epoch zero, "0001-01-01" placeholders)
MIN_DATE = datetime(1990, 1, 1, tzinfo=UTC)
#: bytes that declared XML entities may expand to before the document is refused
MAX_ENTITY_EXPANSION = 1 << 20
#: RSS <ttl> values outside 1 minute .. 1 week are ignored as nonsense
TTL_RANGE = range(1, 7 * 24 * 60 + 1)

_HTML_TYPES = ("text/html", "application/xhtml+xml", "html", "xhtml")
_URL_SCHEMES = {"http", "https"}
_CONTENT_URL_SCHEMES = {"http", "https", "mailto"}

# Controls other than whitespace; surrogates and the two noncharacters that break XML/JSON.
# Whitespace controls (\t \n \v \f \r \x1c-\x1f \x85) are collapsed by str.split().
_JUNK_CHARS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
# Dropped from stored HTML, which nh3 would pass them through to: every control but tab, LF and
# CR (XML forbids most of them), surrogates and the two noncharacters.
_HTML_JUNK = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_URL_BREAKS = re.compile(r"[ \t]*[\r\n]\s*|\t")
# An absolute http(s) URL that urljoin returns as it is: lower-case scheme, ASCII host and port
# (group 1), no ";" (urljoin rewrites path parameters), no empty "?" or "#" (it drops them).
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::([0-9]+))?(?:/[^;?#\x00-\x20\x7f]*)?"
    r"(?:\?[^#\x00-\x20\x7f]+)?(?:#[^\x00-\x20\x7f]+)?\Z"
)
#: the start of a tag or comment, as opposed to a lone "<" in text ("a < b", "<-->")
_MARKUP = re.compile(r"<(?:/?[A-Za-z][A-Za-z0-9:-]*(?=[\s/>])|!--)")
_ENTITY_DECL = re.compile(rb"""<!ENTITY\s+([^\s%"'>]+)\s+(?:"([^"]*)"|'([^']*)')""")
_HTML_START = re.compile(rb"<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])", re.IGNORECASE)
fpsetup.install()

_DEGRADED = (
    feedparser.CharacterEncodingOverride,
    feedparser.NonXMLContentType,
)


def parse_feed(
    body: bytes, headers: Mapping[str, str], base_url: str | None, now: datetime
) -> ParsedFeed:
    """Parse one response body into normalised entries.

    ``headers`` are the response headers (their Content-Type charset is honoured);
    ``base_url`` is the URL the body came from, used to make links absolute; ``now`` is the
    first-seen time given to entries without a date. Raises :class:`ParseError` when the body
    is not a feed, is broken and yields nothing, or declares an entity expansion bomb.
    """
    url = base_url or ""
    now = now.astimezone(UTC)
    if not body.strip():
        raise ParseError("empty response body; the server sent no feed", url=url)
    hdrs = {str(k).lower(): str(v) for k, v in headers.items()}
    content_type = hdrs.get("content-type", "")
    hdrs = _prefer_utf8(body, _feed_headers(hdrs))
    _refuse_entity_bombs(body, hdrs, url)
    try:
        result = feedparser.parse(
            io.BytesIO(body),
            response_headers=hdrs,
            # nh3 does both below, once: it sanitises with a whitelist and resolves the URLs
            # of the content against its base (feedparser's resolver re-serialises every HTML
            # field through sgmllib, which costs more than parsing the feed itself)
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except (ValueError, LookupError, xml.sax.SAXException, RecursionError) as exc:
        # feedparser reports problems through ``bozo``; these escape only on very broken input.
        raise ParseError(f"could not parse the feed: {_describe(exc)}", url=url) from exc

    warnings: list[str] = []
    if result.get("bozo"):
        warnings.append(_describe(result.get("bozo_exception")))
    raw_entries = result.get("entries") or []
    if not raw_entries:
        _check_empty(result, body, content_type, warnings, url)

    base = _base_url(hdrs, base_url)
    entries: list[ParsedEntry] = []
    rejected: list[Rejected] = []
    for raw in raw_entries:
        item = _entry(raw, base, now)
        if isinstance(item, Rejected):
            rejected.append(item)
        else:
            entries.append(item)

    feed = result.get("feed") or {}
    return ParsedFeed(
        title=_clip(_text(feed.get("title_detail"), feed.get("title")), TITLE_MAX),
        link=absolute_http_url(feed.get("link"), base),
        entries=tuple(entries),
        rejected=tuple(rejected),
        warnings=tuple(warnings),
        ttl_minutes=_ttl(feed.get("ttl")),
    )


# --- document level -------------------------------------------------------------------------


def _feed_headers(hdrs: dict[str, str]) -> dict[str, str]:
    """Keep feedparser from assuming ISO-8859-1 (``hdrs`` has lower-cased names).

    feedparser treats a header set without Content-Type as HTTP with the ISO-8859-1 default,
    which garbles undeclared UTF-8; ``application/xml`` makes it read the document as it would
    without any headers (BOM, XML declaration, then UTF-8). The base URL is not handed to
    feedparser: it would also resolve guids against it, and a guid must not change when the
    feed moves.
    """
    if hdrs and not hdrs.get("content-type", "").strip():
        return {**hdrs, "content-type": "application/xml"}
    return hdrs


_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([\w.:-]+)""", re.I)
_ONE_BYTE_PREFIXES = ("cp", "iso8859", "latin", "koi8", "mac-", "ascii")


def _prefer_utf8(body: bytes, hdrs: dict[str, str]) -> dict[str, str]:
    """Read as UTF-8 a body that declares a one-byte charset but is valid UTF-8 with non-ASCII
    characters (a lying declaration, common after a site's migration): text in a one-byte
    charset practically never forms valid UTF-8 by accident, while the declared charset would
    turn every Cyrillic, Armenian or Georgian letter into mojibake. The opposite lie, UTF-8
    declared for one-byte text, fails to decode and falls to feedparser's detection (chardet).
    """
    match = _CHARSET.search(hdrs.get("content-type", ""))
    declared = match.group(1) if match else None
    if declared is None:
        found = _XML_ENCODING.match(body[:512])
        declared = found.group(1).decode("ascii") if found else None
    if not declared or body.isascii():
        return hdrs
    try:
        name = codecs.lookup(declared).name
    except LookupError:
        return hdrs
    if name.startswith("utf") or not name.startswith(_ONE_BYTE_PREFIXES):
        return hdrs
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return hdrs
    media = hdrs.get("content-type", "").split(";")[0].strip() or "application/xml"
    return {**hdrs, "content-type": f"{media}; charset=utf-8"}


def _base_url(hdrs: Mapping[str, str], base_url: str | None) -> str | None:
    """Content-Location (resolved against the request URL) wins, as in HTTP."""
    location = hdrs.get("content-location")
    if location:
        resolved = absolute_http_url(location, base_url)
        if resolved:
            return resolved
    return base_url if base_url and _is_http_url(base_url) else None


def _refuse_entity_bombs(body: bytes, hdrs: Mapping[str, str], url: str) -> None:
    """Refuse documents whose literal entities would expand past the limit.

    The check runs on the same UTF-8 text feedparser will parse, so UTF-16, UTF-32 and
    EBCDIC bodies cannot hide their declarations.
    """
    try:
        data = convert_to_utf8(dict(hdrs), body, {})
    except (ValueError, LookupError):  # feedparser itself will report the encoding problem
        data = body
    total = 0
    for match in _ENTITY_DECL.finditer(data):
        name, value = match.group(1), match.group(2) or match.group(3) or b""
        total += data.count(b"&" + name + b";") * len(value)
        if total > MAX_ENTITY_EXPANSION:
            raise ParseError(
                f"refused: the XML entities declared in the document would expand to more "
                f"than {MAX_ENTITY_EXPANSION} bytes (entity {name.decode('utf-8', 'replace')!r}"
                f"); this looks like an XML bomb",
                url=url,
            )


def _check_empty(
    result: Any, body: bytes, content_type: str, warnings: list[str], url: str
) -> None:
    """Raise unless a result without entries is a valid empty feed."""
    version = result.get("version") or ""
    content_type = content_type.split(";")[0].strip().lower()
    if not version:
        head = body[:2048].lstrip()
        if content_type == "text/html" or _HTML_START.search(head):
            raise ParseError(
                "not a feed: the server returned an HTML page; point the source at the "
                "RSS/Atom feed URL instead",
                url=url,
            )
        if head[:1] in (b"{", b"["):
            raise ParseError("not a feed: JSON (JSON Feed is not supported)", url=url)
        reason = f" ({warnings[0]})" if warnings else ""
        raise ParseError(f"not a feed: no RSS, Atom or RDF document found{reason}", url=url)
    if result.get("bozo") and not _degraded(result.get("bozo_exception")):
        raise ParseError(f"malformed feed with no readable entries: {warnings[0]}", url=url)


def _degraded(exc: object) -> bool:
    """Problems after which feedparser still reads the document fully."""
    if isinstance(exc, xml.sax.SAXParseException):
        # HTML entities such as &nbsp; in XML: the lenient parser decodes them.
        return exc.getMessage() == "undefined entity"
    return isinstance(exc, _DEGRADED)


def _describe(exc: object) -> str:
    if isinstance(exc, xml.sax.SAXParseException):
        return (
            f"malformed XML: {exc.getMessage()} at line {exc.getLineNumber()}, "
            f"column {exc.getColumnNumber()}"
        )
    if isinstance(exc, BaseException):
        detail = str(exc)
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return "malformed feed"


def _ttl(value: object) -> int | None:
    try:
        minutes = int(str(value).strip())
    except ValueError:
        return None
    return minutes if minutes in TTL_RANGE else None


# --- entries --------------------------------------------------------------------------------


def _entry(raw: Mapping[str, Any], base: str | None, now: datetime) -> ParsedEntry | Rejected:
    # Plain dict lookups: FeedParserDict.get costs a microsecond or more per key. (Its one
    # fallback that matters here, updated_parsed to published_parsed, gives the same dates.)
    raw = dict(raw)
    link = absolute_http_url(raw.get("link"), base)
    if link is None:
        link = _alternate_link(raw.get("links"), base)
    title = _clip(_text(raw.get("title_detail"), raw.get("title")), TITLE_MAX)

    content_raw, content_is_html, content_base = _best_content(raw, base)
    # Without summary_detail, feedparser's "summary" is a copy of the content: use the content.
    detail = raw.get("summary_detail")
    summary = _text(detail, raw.get("summary")) if isinstance(detail, Mapping) else ""
    if not summary and content_raw:
        summary = _plain(content_raw, is_html=content_is_html)
    summary = _clip(summary, SUMMARY_MAX)

    if not title:
        if not link:
            return Rejected(reason="no title and no link", title=_clip(summary, 80))
        title = _clip(summary, DERIVED_TITLE_MAX) if summary else _clip(link, TITLE_MAX)

    published = _date(raw.get("published_parsed"), now) or _date(raw.get("created_parsed"), now)
    updated = _date(raw.get("updated_parsed"), now)
    date_missing = published is None and updated is None
    published = published or updated or now
    updated = max(updated or published, published)

    return ParsedEntry(
        guid=_guid(raw.get("id")),
        link=link,
        title=title,
        summary=summary,
        content_html=(
            sanitize_html(content_raw, content_base) if content_is_html else _escape(content_raw)
        ),
        published=published,
        updated=updated,
        date_missing=date_missing,
        authors=_authors(raw),
        categories=_categories(raw.get("tags")),
    )


def _alternate_link(links: object, base: str | None) -> str | None:
    if not isinstance(links, list):
        return None
    for item in links:
        if isinstance(item, Mapping) and item.get("rel", "alternate") == "alternate":
            url = absolute_http_url(item.get("href"), base)
            if url:
                return url
    return None


def _best_content(raw: Mapping[str, Any], base: str | None) -> tuple[str, bool, str | None]:
    """Full content when given (HTML preferred), else the summary; with its HTML flag and the
    base its relative URLs resolve against."""
    contents = [c for c in raw.get("content") or [] if isinstance(c, Mapping) and c.get("value")]
    contents.sort(key=lambda c: not _is_html_type(c.get("type")))
    if contents:
        first = contents[0]
        return str(first["value"]), _is_html_type(first.get("type")), _content_base(first, base)
    detail = raw.get("summary_detail")
    value = raw.get("summary")
    if isinstance(value, str) and value:
        if isinstance(detail, Mapping):
            return value, _is_html_type(detail.get("type")), _content_base(detail, base)
        return value, "<" in value, base
    return "", False, base


def _content_base(detail: Mapping[str, Any], base: str | None) -> str | None:
    """The base of one text construct: feedparser records the xml:base in force where it
    appeared (Atom allows one on any element), itself relative to the document's URL."""
    local = detail.get("base")
    if not isinstance(local, str) or not local.strip():
        return base
    try:
        return urljoin(base, local) if base else local
    except ValueError:
        return base


def _date(value: object, now: datetime) -> datetime | None:
    if not isinstance(value, tuple) or len(value) < 6:  # time.struct_time is a tuple
        return None
    try:
        year, month, day, hour, minute, second = (int(v) for v in value[:6])
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment < MIN_DATE:
        return None
    return now if moment > now + MAX_FUTURE else moment


def _guid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _one_line(value)[:GUID_MAX] or None


def _authors(raw: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for item in raw.get("authors") or []:
        if isinstance(item, Mapping):
            names.append(str(item.get("name") or item.get("email") or ""))
    if not names and raw.get("author"):
        names.append(str(raw["author"]))
    return _unique((_clip(_plain(n, is_html=False), AUTHOR_MAX) for n in names), MAX_AUTHORS)


def _categories(tags: object) -> tuple[str, ...]:
    if not isinstance(tags, list):
        return ()
    terms = (str(t.get("term") or t.get("label") or "") for t in tags if isinstance(t, Mapping))
    return _unique((_clip(_plain(t, is_html=False), CATEGORY_MAX) for t in terms), MAX_CATEGORIES)


def _unique(values: Iterable[str], limit: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value)
    return tuple(seen)[:limit]


# --- text, HTML and URLs --------------------------------------------------------------------


def absolute_http_url(url: object, base: str | None) -> str | None:
    """``url`` made absolute against ``base``; None unless the result is http(s) with a host."""
    if not isinstance(url, str):
        return None
    # Drop line breaks with their indentation (feeds wrap long links), tabs and controls;
    # escape the spaces that remain, as browsers do.
    if url.isprintable():  # no controls, hence neither junk nor line breaks
        url = url.strip()
    else:
        url = _URL_BREAKS.sub("", _JUNK_CHARS.sub("", url).strip())
    url = url.replace(" ", "%20")
    if not url:
        return None
    try:
        plain = _PLAIN_HTTP_URL.match(url)
        if plain:
            # What urljoin would return, without its cost: the URL itself. (urljoin would
            # also refuse a base it cannot split.)
            if base:
                urlsplit(base)
            port = plain.group(1)
            return url if port is None or int(port) <= 65535 else None
        resolved = urljoin(base, url) if base else url
        parts = urlsplit(resolved)
        if parts.scheme.lower() not in _URL_SCHEMES or not parts.hostname:
            return None
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return None
    return resolved


def sanitize_html(value: str, base: str | None) -> str:
    """Untrusted HTML made safe to embed: no scripts, handlers or non-http(s) URLs.

    Relative URLs are resolved against ``base`` (dropped without one), so the HTML still
    works when shown in a digest far from its feed.
    """
    if not value:
        return ""

    def resolve(url: str) -> str | None:
        # An empty URL is what feedparser leaves of a javascript: link; drop it rather than
        # let it become a link to the base.
        return absolute_http_url(url, base) if url.strip() else None

    cleaned = nh3.clean(
        _HTML_JUNK.sub("", value), url_schemes=_CONTENT_URL_SCHEMES, url_relative=resolve
    )
    return _SEVERAL_ATTRS.sub(_sort_attrs, cleaned)


# A tag of nh3's output with two or more attributes: nh3 writes every attribute as name="value"
# with <, >, & and " escaped, and drops comments, so each "<" of its output opens a tag.
# The rel that nh3 appends to links is not counted, and stays last.
_SEVERAL_ATTRS = re.compile(
    r'<([a-z][a-z0-9]*)((?: (?!rel="noopener noreferrer">)[^\s"\'>/=]+="[^"]*"){2,})'
    r'( rel="noopener noreferrer")?>'
)
_ATTR = re.compile(r' [^\s"\'>/=]+="[^"]*"')


def _sort_attrs(match: re.Match[str]) -> str:
    """Attributes in name order: the canonical form that stored HTML has always had (a source
    reordering attributes does not edit its entries)."""
    attrs = _ATTR.findall(match.group(2))
    attrs.sort(key=lambda attr: attr[1 : attr.index("=")])
    return f"<{match.group(1)}{''.join(attrs)}{match.group(3) or ''}>"


def plain_text(value: str, *, is_html: bool) -> str:
    """One line of readable text: tags dropped, entities decoded, controls and runs of
    whitespace collapsed."""
    return _plain(value, is_html=is_html)


def _plain(value: str, *, is_html: bool) -> str:
    # Markup in a field typed as plain text is escaped HTML (RSS leaves the type open), or an
    # attack on readers that render titles as HTML: either way, its text is what to keep.
    if is_html or _MARKUP.search(value):
        value = _html_to_text(value)
    return _one_line(value)


def _one_line(value: str) -> str:
    """Controls (other than whitespace), surrogates and noncharacters dropped, whitespace runs
    collapsed to one space."""
    line = " ".join(value.split())
    # Whitespace is never junk, so printable text without it has none: skip the slower regex.
    return line if line.isprintable() else " ".join(_JUNK_CHARS.sub("", value).split())


def _text(detail: object, value: object) -> str:
    if not isinstance(value, str) or not value:
        return ""
    is_html = isinstance(detail, Mapping) and _is_html_type(detail.get("type"))
    return _plain(value, is_html=is_html)


def _is_html_type(value: object) -> bool:
    return isinstance(value, str) and value.lower() in _HTML_TYPES


def _escape(text: str) -> str:
    text = _HTML_JUNK.sub("", text).strip()
    return f"<p>{html.escape(text, quote=False)}</p>" if text else ""


def _clip(text: str, limit: int) -> str:
    """Cut at a word boundary when one is near the limit, and mark the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


class _TextExtractor(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "head", "title"})
    BREAK = frozenset(
        {
            *("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt"),
            *("figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header"),
            *("hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th"),
            *("tr", "ul"),
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BREAK:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BREAK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BREAK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


# What the fast path of _html_to_text reads: tags whose extent every version of html.parser
# agrees on (ASCII names, attributes separated by whitespace), end tags and plain comments.
_WS = r"[\t\n\r\f ]"
_SIMPLE_MARKUP = re.compile(
    rf"""<(?:
        ([a-zA-Z][-.a-zA-Z0-9:_]*)                            # 1: start tag name
        (?:{_WS}+[a-zA-Z_:][-.a-zA-Z0-9_:]*                   #    attribute name
           (?:{_WS}*={_WS}*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?  #    value
        )*{_WS}*(/?)>                                         # 2: "/" of <br/>
      | /([a-zA-Z][-.a-zA-Z0-9:_]*){_WS}*>                    # 3: end tag name
      | !--(?!-?>)(?:[^-]|-(?!-))*-->                         # comment without "--"
    )""",
    re.VERBOSE,
)
#: elements whose content some html.parser versions read as raw text (all of the rest of the
#: document for plaintext)
_RAW_TEXT = frozenset(
    {"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript"}
)


def _html_to_text(value: str) -> str:
    if "<" not in value:
        return html.unescape(value) if "&" in value else value
    text = _simple_html_to_text(value)
    return text if text is not None else _parsed_html_to_text(value)


def _simple_html_to_text(value: str) -> str | None:
    """What :class:`_TextExtractor` makes of ``value``, several times faster, or None when
    the markup is anything but simple: then html.parser must decide what it means.

    Text between tags is unescaped piece by piece, as html.parser does. Elements that some
    versions read as raw text are only accepted empty, or with text that has no markup.
    """
    skip, brk = _TextExtractor.SKIP, _TextExtractor.BREAK
    unescape = html.unescape
    # text, then (start tag name, "/" of <br/>, end tag name, text) for each tag or comment
    parts = _SIMPLE_MARKUP.split(value)
    text = parts[0]
    if "<" in text:
        return None
    out = [unescape(text) if "&" in text else text]
    skipping = 0
    raw: str | None = None  # the raw-text element whose end tag must come next
    for i in range(1, len(parts), 4):
        name, end, text = parts[i], parts[i + 2], parts[i + 3]
        if raw is not None:
            if end is None or end.lower() != raw:
                return None
            raw = None
        if name is not None:
            tag = name.lower()
            if tag in brk:
                out.append(" ")
            elif tag in skip or tag in _RAW_TEXT or tag == "plaintext":
                if parts[i + 1] or tag == "plaintext":  # <script/>: left to html.parser
                    return None
                if tag in _RAW_TEXT:
                    raw = tag
                if tag in skip:
                    skipping += 1
        elif end is not None:
            tag = end.lower()
            if tag in brk:
                out.append(" ")
            elif tag in skip:
                skipping = max(0, skipping - 1)
        if text:
            if "<" in text or (raw is not None and "&" in text):
                return None
            if not skipping:
                out.append(unescape(text) if "&" in text else text)
    return None if raw is not None else "".join(out)


def _parsed_html_to_text(value: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(value)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on pathological markup
        return html.unescape(re.sub(r"<[^>]*>", " ", value))
    return "".join(parser.parts)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in _URL_SCHEMES and bool(parts.netloc)
