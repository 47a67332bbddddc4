"""Hostile sources, end to end: no feed stops the service, no output carries active content.

Every case serves its hostile feeds from a real server on 127.0.0.1 next to one good source,
polls them through the real pipeline into a real SQLite file, then publishes, serves the page
over HTTP, sends the digest to a real SMTP server and renders the preview. Each hostile source
must be refused with a clear message or cleaned, within a time and memory bound, while the good
source's entries are all stored. Whatever reaches an output must pass :func:`check_outputs`.

Memory is measured around the poll, where hostile bytes are held: with tracemalloc (Python
allocations only; nh3 and expat allocate outside it) and as growth of the resident set. Set
``DIGEST_HOSTILE_BIG=1`` to run the 100,000-item feed instead of its 5,000-item variant.
"""

from __future__ import annotations

import asyncio
import email
import io
import json
import os
import re
import threading
import time
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import feedparser
import httpx
import psutil
import pytest

from digest.models import CycleReport, Entry, SourceReport
from digest.pipeline import Pipeline
from digest.web import make_app, start_server
from tests.conftest import RULES
from tests.servers import FeedServer
from tests.smtp import SmtpServer
from tests.test_pipeline import open_pipeline

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parents[2] / "shared/corpus/feedparser-tests"
BIG = os.environ.get("DIGEST_HOSTILE_BIG") == "1"
MiB = 1024 * 1024
#: [fetch] total_timeout of every hostile cycle (short, so the slowloris case stays short)
TOTAL_TIMEOUT = 2.0
#: what a cycle may take beyond total_timeout (parsing, storing, a loaded CI machine)
MARGIN = 8.0
MAX_BYTES = 10 * MiB
#: items of the big-feed case: the full 100,000 take about a minute, too long for the suite
ITEMS = 100_000 if BIG else 5_000

# -- feeds -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One well-behaved RSS item."""

    title: str
    link: str
    guid: str
    summary: str = ""
    published: datetime = NOW - timedelta(hours=3)


GOOD = (
    Item(
        title="Armenian and Azerbaijani foreign ministers meet in Abu Dhabi for peace talks",
        link="https://armenpress.example/news/1001",
        guid="good-1",
        summary="Mirzoyan and Bayramov discussed the draft peace treaty in Abu Dhabi.",
        published=NOW - timedelta(hours=5),
    ),
    Item(
        title="Georgia signs visa facilitation agreement with the European Union",
        link="https://civil.example/en/archives/5005",
        guid="good-2",
        summary="Kobakhidze welcomed the deal after the association council in Brussels.",
        published=NOW - timedelta(hours=2),
    ),
    Item(
        title="Fidan arrives in Baku for consultations with Aliyev on normalisation",
        link="https://apa.example/politics/fidan-aliyev-baku",
        guid="good-3",
        summary="Turkey's foreign minister will review the normalisation process with Armenia.",
        published=NOW - timedelta(hours=4),
    ),
)


def rss(items: Sequence[Item], *, title: str = "Test feed", head: str = "") -> bytes:
    """An RSS 2.0 document; ``head`` goes between the XML declaration and ``<rss>``."""
    parts = "".join(
        f"<item><title>{escape(it.title)}</title><link>{escape(it.link)}</link>"
        f'<guid isPermaLink="false">{escape(it.guid)}</guid>'
        f"<pubDate>{format_datetime(it.published, usegmt=True)}</pubDate>"
        f"<description>{escape(it.summary)}</description></item>"
        for it in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{head}<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        f"<description>{escape(title)}</description>{parts}</channel></rss>"
    ).encode()


def raw_rss(items: str, *, head: str = "", encoding: str = "utf-8", channel: str = "") -> str:
    """RSS with hand-written ``<item>`` markup, for inputs ``rss`` would escape."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n{head}'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel>{channel or DEFAULT_CHANNEL}<link>https://hostile.example/</link>"
        f"<description>hostile</description>{items}</channel></rss>"
    )


DEFAULT_CHANNEL = "<title>Hostile</title>"
PUB = format_datetime(NOW - timedelta(hours=1), usegmt=True)

# -- config and one cycle ------------------------------------------------------------------------


def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(
    tmp_path: Path,
    sources: dict[str, str | Path],
    *,
    smtp: SmtpServer | None = None,
    max_items: int = 100,
    source_tags: Sequence[str] = (),
    total_timeout: float = TOTAL_TIMEOUT,
) -> Path:
    """A config under ``tmp_path``: each source is an http URL or a local file path."""
    lines = [
        f"[service]\nstate_dir = {toml_str(tmp_path / 'state')}\n",
        f"[tagging]\nrules = {toml_str(RULES)}\n",
        "[fetch]\nper_host = 32\nconnect_timeout = 2.0\nread_timeout = 10.0\n"
        f"total_timeout = {total_timeout}\nmax_bytes = {MAX_BYTES}\n",
        f"[publish]\noutput_dir = {toml_str(tmp_path / 'public')}\nmax_age_days = 3650\n"
        f'max_items = {max_items}\nbase_url = "http://127.0.0.1:8080/"\n',
    ]
    if smtp is not None:
        lines.append(
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
            'from_address = "digest@caucasus.example"\ntimeout = 5\n'
        )
    lines.append(
        '[[digests]]\nname = "daily"\nrecipients = ["anna@example.org"]\ntime = "07:00"\n'
        'timezone = "Asia/Tbilisi"\n'
    )
    tags = "[" + ", ".join(toml_str(t) for t in source_tags) + "]"
    for name, where in sources.items():
        key = "path" if isinstance(where, Path) else "url"
        lines.append(
            f"[[sources]]\nname = {toml_str(name)}\n{key} = {toml_str(where)}\ntags = {tags}\n"
        )
    path = tmp_path / "digest.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass(slots=True, kw_only=True)
class Cycle:
    """What one poll did, and what it cost."""

    report: CycleReport
    seconds: float
    #: tracemalloc peak during the poll, in bytes (0 when not traced)
    peak: int
    #: growth of the resident set during the poll (sampled every 5 ms), in bytes
    rss_growth: int
    sources: dict[str, SourceReport] = field(default_factory=dict)


class RssSampler:
    """The highest resident set size seen while it runs: memory that tracemalloc cannot see
    (expat, nh3) included, at the cost of counting memory the allocator reuses as zero."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.high = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.high = max(self.high, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.high = max(self.high, self.process.memory_info().rss)


def timed_poll(pipe: Pipeline, *, trace: bool = True) -> Cycle:
    """Poll every source once; tracemalloc slows parsing about twofold, so big inputs skip it."""
    if trace:
        tracemalloc.start()
    started = time.monotonic()
    try:
        with RssSampler() as rss_sampler:
            report = asyncio.run(pipe.poll(NOW, force=True))
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
    finally:
        if trace:
            tracemalloc.stop()
    return Cycle(
        report=report,
        seconds=seconds,
        peak=peak,
        rss_growth=rss_sampler.high - rss_sampler.start,
        sources={r.source: r for r in report.sources},
    )


def stored(pipe: Pipeline, source: str | None = None) -> list[Entry]:
    return [e for batch in pipe.store.iter_entries() for e in batch if source in (None, e.source)]


# -- what no output may carry --------------------------------------------------------------------

_SCRIPT = re.compile(r"<\s*script", re.IGNORECASE)
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile("[\r\n\u2028\u2029]")
#: bidi overrides and isolates: they make a title display as something else than it is
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
#: an event handler inside something tag-like, as a reader rendering text as HTML would see it
_TEXT_HANDLER = re.compile(r"<[A-Za-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):")
_URL_ATTRS = frozenset(
    {
        *("href", "src", "action", "formaction", "background", "poster", "cite", "data"),
        *("xlink:href", "srcset", "longdesc", "usemap", "codebase", "lowsrc", "dynsrc", "ping"),
    }
)
_ACTIVE_TAGS = frozenset(
    {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "base", "form"}
)


class _ActiveContent(HTMLParser):
    """Collects every tag, attribute or URL in an HTML document that could run code."""

    def __init__(self, *, relative_ok: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.relative_ok = relative_ok
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _ACTIVE_TAGS or tag.endswith(":script"):
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=>")
            if value is None:
                continue
            if name in _URL_ATTRS:
                problem = url_problem(value, relative_ok=self.relative_ok)
                if problem:
                    self.problems.append(f"<{tag} {name}={value!r}>: {problem}")
            if name == "style" and re.search(r"javascript:|expression\s*\(|data:", value, re.I):
                self.problems.append(f"<{tag} style={value!r}>")
            if tag == "meta" and name == "http-equiv" and value.lower() == "refresh":
                self.problems.append("<meta http-equiv=refresh>")

    handle_startendtag = handle_starttag


def url_problem(value: str, *, relative_ok: bool) -> str | None:
    """Why a URL in an attribute is not a plain http(s)/mailto link, as a browser reads it."""
    # Browsers drop tabs and line breaks anywhere in a URL and controls/spaces around it.
    url = re.sub(r"[\t\n\r]", "", value).strip("\x00- ").lower()
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None if relative_ok or url.startswith("#") else "not absolute"
    if scheme.group(1) not in ("http", "https", "mailto"):
        return f"{scheme.group(1)}: URL"
    return None


def html_problems(document: str, *, relative_ok: bool = False) -> list[str]:
    parser = _ActiveContent(relative_ok=relative_ok)
    parser.feed(document)
    parser.close()
    problems = parser.problems
    if _SCRIPT.search(document):
        problems.append("'<script' in the markup")
    return problems


def text_problems(text: str, *, one_line: bool = True, bidi_ok: bool = False) -> list[str]:
    """Plain text (titles, summaries, the text part): no controls, no line breaks, nothing an
    HTML-rendering reader would run. A title may mention a tag ("History of the <blink> tag")."""
    problems = []
    if _CONTROLS.search(text):
        problems.append(f"control character in {text[:80]!r}")
    if one_line and _LINE_BREAKS.search(text):
        problems.append(f"line break in {text[:80]!r}")
    if not bidi_ok and _BIDI.search(text):
        problems.append(f"bidi override in {text[:80]!r}")
    if _SCRIPT.search(text) or _TEXT_HANDLER.search(text):
        problems.append(f"active markup in plain text {text[:80]!r}")
    return problems


def http_url_problems(url: str | None, what: str) -> list[str]:
    if not url:
        return [f"{what}: missing URL"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROLS.search(url):
        return [f"{what}: not an absolute http(s) URL: {url!r}"]
    if re.search(r"\s", url):
        return [f"{what}: whitespace in URL {url!r}"]
    return []


def xml_feed_problems(name: str, data: bytes) -> list[str]:
    """RSS or Atom bytes as we publish them: well-formed, bozo-free, clean fields."""
    problems = []
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        return [f"{name}: not well-formed XML: {exc}"]
    text = data.decode("utf-8")
    if _SCRIPT.search(text) or _TEXT_HANDLER.search(text):
        problems.append(f"{name}: '<script' or an event handler in the markup")
    parsed = feedparser.parse(io.BytesIO(data))
    if parsed.bozo:
        problems.append(f"{name}: feedparser bozo: {parsed.bozo_exception!r}")
    for element in root.iter():
        for value in [element.text or "", element.tail or "", *element.attrib.values()]:
            if _CONTROLS.search(value):
                problems.append(f"{name}: control character in <{element.tag}>: {value[:80]!r}")
    atom = "{http://www.w3.org/2005/Atom}"
    if root.tag == "rss":
        items = root.iter("item")
        ids = [i.findtext("guid") or "" for i in root.iter("item")]
        for item in items:
            problems += http_url_problems(item.findtext("link"), f"{name} <link>")
            problems += text_problems(item.findtext("title") or "")
            problems += [f"{name}: {p}" for p in html_problems(item.findtext("description") or "")]
    else:
        ids = [e.findtext(f"{atom}id") or "" for e in root.iter(f"{atom}entry")]
        for entry in root.iter(f"{atom}entry"):
            for link in entry.iter(f"{atom}link"):
                problems += http_url_problems(link.get("href"), f"{name} <link href>")
            problems += text_problems(entry.findtext(f"{atom}title") or "")
            for tag in ("summary", "content"):
                node = entry.find(f"{atom}{tag}")
                if node is not None and node.get("type") in ("html", "xhtml"):
                    problems += [f"{name}: {p}" for p in html_problems(node.text or "")]
    if len(ids) != len(set(ids)) or not all(ids):
        problems.append(f"{name}: ids are not unique and present: {ids}")
    return problems


def json_feed_problems(name: str, data: bytes) -> list[str]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return [f"{name}: not JSON: {exc}"]
    problems = []
    if doc.get("version") != "https://jsonfeed.org/version/1.1" or not doc.get("title"):
        problems.append(f"{name}: version or title missing")
    items = doc.get("items")
    if not isinstance(items, list):
        return [*problems, f"{name}: items missing"]
    ids = [i.get("id") for i in items]
    if len(ids) != len(set(ids)) or not all(isinstance(i, str) and i for i in ids):
        problems.append(f"{name}: ids are not unique non-empty strings")
    for item in items:
        problems += http_url_problems(item.get("url"), f"{name} url")
        problems += text_problems(item.get("title", ""))
        if not (item.get("content_html") or item.get("content_text")):
            problems.append(f"{name}: item {item.get('id')} has no content")
        problems += [f"{name}: {p}" for p in html_problems(item.get("content_html", ""))]
        if _CONTROLS.search(item.get("summary", "")):
            problems.append(f"{name}: control character in a summary")
    return problems


EXPECTED_HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "list-id",
    "precedence",
    "auto-submitted",
    "mime-version",
    "content-type",
}


def message_problems(data: bytes) -> list[str]:
    """The digest as it arrived over SMTP: only our headers, each one line, safe bodies."""
    problems = []
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    for line in head.split(b"\r\n"):
        if not re.match(rb"^[!-9;-~]+:", line):
            problems.append(f"header block line is not a header: {line[:80]!r}")
        if b"\r" in line or b"\n" in line:
            problems.append(f"bare CR or LF in a header line: {line[:80]!r}")
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    names = {k.lower() for k in msg}
    if names != EXPECTED_HEADERS:
        problems.append(f"unexpected headers: {sorted(names ^ EXPECTED_HEADERS)}")
    for key, value in msg.items():
        if _LINE_BREAKS.search(str(value)) or _CONTROLS.search(str(value)):
            problems.append(f"header {key} carries a line break or control: {str(value)!r}")
    if msg.get_all("to") != ["anna@example.org"]:
        problems.append(f"To is {msg.get_all('to')}")
    html_part, text_part = msg.get_body(("html",)), msg.get_body(("plain",))
    if html_part is None or text_part is None:
        return [*problems, "the message lacks its html or text part"]
    problems += [f"email html: {p}" for p in html_problems(str(html_part.get_content()))]
    problems += [
        f"email text: {p}" for p in text_problems(str(text_part.get_content()), one_line=False)
    ]
    return problems


def check_outputs(pipe: Pipeline, page: str, messages: Sequence[bytes]) -> list[str]:
    """Every output of one cycle, as files, page, message and stored entries."""
    out = pipe.config.publish.output_dir
    problems: list[str] = []
    for name in ("feed.xml", "atom.xml"):
        problems += xml_feed_problems(name, (out / name).read_bytes())
    problems += json_feed_problems("feed.json", (out / "feed.json").read_bytes())
    problems += [f"page: {p}" for p in html_problems(page, relative_ok=True)]
    for data in messages:
        problems += message_problems(data)
    for entry in stored(pipe):
        # Stored text keeps bidi controls (right-to-left sources need them); outputs drop them.
        for what, value in (("title", entry.title), ("summary", entry.summary)):
            problems += [f"stored {what}: {p}" for p in text_problems(value, bidi_ok=True)]
        problems += [f"stored content: {p}" for p in html_problems(entry.content_html)]
        if _CONTROLS.search(entry.content_html):
            problems.append(f"stored content: control character in {entry.content_html[:80]!r}")
        if entry.link is not None:
            problems += http_url_problems(entry.link, "stored link")
    return problems


# -- serving the page for real -------------------------------------------------------------------


async def _serve_and_get(pipe: Pipeline) -> tuple[str, dict[str, bytes]]:
    app = make_app(
        pipe.config.publish,
        stories=lambda tag: pipe.published_stories(NOW, tag),
        clock=lambda: NOW,
    )
    runner = await start_server(app, "127.0.0.1", 0)
    try:
        port = runner.addresses[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            page = await client.get("/")
            assert page.status_code == 200
            assert "script-src" not in page.headers["content-security-policy"]
            assert "default-src 'none'" in page.headers["content-security-policy"]
            files = {}
            for name in ("feed.xml", "atom.xml", "feed.json"):
                response = await client.get("/" + name)
                assert response.status_code == 200
                files[name] = response.content
            return page.text, files
    finally:
        await runner.cleanup()


def publish_and_deliver(pipe: Pipeline, smtp: SmtpServer) -> tuple[str, list[bytes]]:
    """Publish, serve the page, send the digest over SMTP and render the preview."""
    pipe.publish(NOW)
    page, served = asyncio.run(_serve_and_get(pipe))
    out = pipe.config.publish.output_dir
    for name, data in served.items():
        assert data == (out / name).read_bytes(), f"{name} served differs from the file"
    before = len(smtp.received)
    outcomes = asyncio.run(pipe.send_due(NOW))
    assert [o.status for o in outcomes] in (["sent"], ["empty"]), outcomes
    messages = [r.data for r in smtp.received[before:]]
    html_body, text, msg, _count = pipe.preview(NOW)
    messages.append(msg.as_bytes(policy=policy.SMTP))
    return page, messages


# -- the hostile cases -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One hostile source: how the server answers, and what must come of it."""

    id: str
    #: sets up the route ``/hostile`` on the server (the second server is for XXE probes)
    serve: Callable[[FeedServer, FeedServer, Path], None]
    #: a substring of the recorded error, or None when the source must be read ("cleaned")
    refused: str | None
    #: titles (or parts of them) that must be stored when the source is read
    stored: tuple[str, ...] = ()
    #: whether those titles are selected, so that they must reach the feeds and the page
    published: bool = True
    #: text that must reach neither the store nor any output (an expansion, a leak)
    absent: tuple[str, ...] = ()
    #: memory the poll may take, in MiB: tracemalloc's peak, or the RSS growth when untraced
    max_mib: float = 64
    #: False for inputs that tracemalloc would slow too much; RSS growth is bounded instead
    trace: bool = True
    #: how long the poll may take: every fetch is cut at total_timeout, parsing comes on top
    max_seconds: float = TOTAL_TIMEOUT + MARGIN


def _body(data: bytes | str, **options: object) -> Callable[[FeedServer, FeedServer, Path], None]:
    def serve(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
        server.add("/hostile", data, **options)

    return serve


def _billion_laughs() -> str:
    decls = ['<!ENTITY lol "lol">']
    for i in range(1, 10):
        inner = f"&lol{i - 1 if i > 1 else ''};" * 10
        decls.append(f'<!ENTITY lol{i} "{inner}">')
    head = "<!DOCTYPE rss [\n" + "\n".join(decls) + "\n]>\n"
    item = (
        f"<item><title>Armenia talks &lol9;</title><link>https://h.example/1</link>"
        f"<pubDate>{PUB}</pubDate><description>&lol9;&lol9;</description></item>"
    )
    return raw_rss(item, head=head)


USES = "&a;" * 50_000


def _quadratic() -> str:
    head = '<!DOCTYPE rss [<!ENTITY a "' + "A" * 50_000 + '">]>\n'
    item = (
        f"<item><title>Armenia talks</title><link>https://h.example/1</link>"
        f"<pubDate>{PUB}</pubDate><description>{USES}</description></item>"
    )
    return raw_rss(item, head=head)


def _xxe(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
    """Five ways to make a parser read a file or call out; each is its own source."""
    canary = tmp / "canary.txt"
    canary.write_text(CANARY, encoding="utf-8")
    probe.add("/evil.dtd", f'<!ENTITY leak SYSTEM "file://{canary}">')
    probe.add("/entity", "PROBE-FETCHED")
    uri = f"file://{canary}"

    def item(n: int, title: str, extra: str = "") -> str:
        return (
            f"<item><title>Armenian minister visits Baku {title}</title>"
            f"<link>https://xxe.example/{n}</link><guid>xxe-{n}</guid><pubDate>{PUB}</pubDate>"
            f"<description>Peace talks continue. {title}</description>{extra}</item>"
        )

    variants = {
        "/hostile": raw_rss(
            item(1, "&xxe;"), head=f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{uri}">]>\n'
        ),
        "/hostile-http": raw_rss(
            item(2, "&remote;"),
            head=f'<!DOCTYPE rss [<!ENTITY remote SYSTEM "{probe.url("/entity")}">]>\n',
        ),
        "/hostile-param": raw_rss(
            item(3, "&leak;"),
            head=f'<!DOCTYPE rss [<!ENTITY % dtd SYSTEM "{probe.url("/evil.dtd")}"> %dtd;]>\n',
        ),
        "/hostile-dtd": raw_rss(
            item(4, "&leak;"), head=f'<!DOCTYPE rss SYSTEM "{probe.url("/evil.dtd")}">\n'
        ),
        "/hostile-xinclude": raw_rss(
            item(
                5,
                "",
                f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{uri}" '
                'parse="text"/>',
            ),
        ),
    }
    for path, body in variants.items():
        server.add(path, body)


CANARY = "CANARY-7f3a9c-local-file-must-never-be-read"
XXE_PATHS = ("/hostile", "/hostile-http", "/hostile-param", "/hostile-dtd", "/hostile-xinclude")


def _slowloris(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
    server.endless("/hostile", chunk=b"<", chunk_delay=1.0)


def _slow_headers(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
    server.slow("/hostile", delay=8.0, body=rss(GOOD[:1]))


def _gzip_stream(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
    server.gzip_bomb("/hostile", size=1024 * MiB, stream=True)


def _gzip_whole(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
    server.gzip_bomb("/hostile", size=64 * MiB, stream=False)


def _endless(server: FeedServer, probe: FeedServer, tmp: Path) -> None:
    server.endless("/hostile")


_RSS_ON_HTML = rss(
    [
        Item(
            title="Armenian parliament ratifies border commission rules",
            link="https://w.example/1",
            guid="w-1",
            summary="Yerevan and Baku",
            published=NOW - timedelta(hours=1),
        )
    ]
)
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Armenia news</title>"
    "<script>alert(1)</script></head><body><h1>Armenia news</h1>"
    '<a href="/rss">RSS</a><img src=x onerror=alert(1)></body></html>'
)

_INVALID_UTF8 = raw_rss(
    "<item><title>Armenian envoy \udcff\udcfe in Baku for talks</title>"
    "<link>https://u.example/1</link><guid>u-1</guid>"
    f"<pubDate>{PUB}</pubDate><description>Broken \udc80 bytes and \udcc3( here"
    "</description></item>"
).encode("utf-8", "surrogateescape")

_RUSSIAN = "Армения и Азербайджан: переговоры в Абу-Даби"


def _lying(declared: str, actual: str) -> bytes:
    item = (
        f"<item><title>Armenia talks {_RUSSIAN}</title><link>https://l.example/{actual}</link>"
        f"<guid>l-{actual}</guid><pubDate>{PUB}</pubDate>"
        f"<description>{_RUSSIAN}</description></item>"
    )
    return raw_rss(item, encoding=declared).encode(actual)


_ACTIVE_ITEMS = f"""
<item>
  <title>&lt;script&gt;alert(1)&lt;/script&gt;Armenia and Azerbaijan sign peace treaty</title>
  <link>javascript:alert(1)</link>
  <guid>active-1</guid><pubDate>{PUB}</pubDate>
  <description>&lt;p onclick="steal()"&gt;Pashinyan and Aliyev met in Washington.
    &lt;a href="javascript:alert(1)"&gt;more&lt;/a&gt;
    &lt;img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+" onerror="alert(1)"&gt;
    &lt;script&gt;alert(2)&lt;/script&gt;&lt;/p&gt;</description>
  <content:encoded><![CDATA[<p>Peace talks.</p><iframe src="javascript:alert(1)"></iframe>
    <a href="  JaVa&#x09;ScRiPt:alert(1)">x</a>
    <a href="data:text/html,<script>alert(1)</script>">y</a>
    <svg onload=alert(1)><script>alert(3)</script></svg>
    <style>body{{background:url(javascript:alert(1))}}</style>
    <form action="javascript:alert(1)"><button formaction="javascript:alert(1)">go</button></form>
    <a href="vbscript:msgbox(1)">z</a><img src=x onerror=alert(1)><object data="x.swf"></object>
    <base href="javascript:alert(1)//"><meta http-equiv="refresh" content="0;url=javascript:1">
    <a href="https://ok.example/fine" onmouseover="alert(1)">fine</a>]]></content:encoded>
</item>
<item>
  <title>&lt;img src=x onerror=alert(1)&gt;Georgian foreign minister visits Yerevan</title>
  <link>data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==</link>
  <guid>active-2</guid><pubDate>{PUB}</pubDate>
  <description>Darchiashvili and Mirzoyan discussed the Middle Corridor.
    &lt;a href="https://ok.example/x"&gt;ok&lt;/a&gt;</description>
</item>
"""

_ACTIVE_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="javascript:alert(1)//">
<title type="html">&lt;script&gt;alert(1)&lt;/script&gt;Hostile Atom</title>
<id>urn:hostile</id><updated>2026-11-26T05:00:00Z</updated>
<entry>
  <title type="html">&lt;b onmouseover=alert(1)&gt;Azerbaijan and Armenia&lt;/b&gt; agree on
   border delimitation</title>
  <id>urn:hostile:1</id><updated>2026-11-26T05:00:00Z</updated>
  <link href="relative/path"/>
  <summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">Peace talks
   <script>alert(1)</script><a href="javascript:alert(1)">x</a>
   <img src="javascript:alert(1)" onerror="alert(1)"/></div></summary>
  <content type="html">&lt;a href="relative"&gt;r&lt;/a&gt;&lt;script&gt;x&lt;/script&gt;
   &lt;img src="data:image/png;base64,AAAA"&gt;</content>
</entry>
</feed>"""

# CR/LF and controls: raw ones where XML allows them, character references where it does not.
_CONTROL_ITEMS = raw_rss(
    "<item><title>Armenian foreign minister\r\nBcc: victim@evil.example\r\n\r\n"
    "&lt;b&gt;in Baku&#x0D;&#x0A;Subject: pwned\x07\x1b[31m talks\u2028\u202eevil"
    "</title><link>https://c.example/1\r\nSet-Cookie: x=1</link>"
    f"<guid>c-1\r\nX-Injected: 1</guid><pubDate>{PUB}</pubDate>"
    "<description>Line one\r\nBcc: victim@evil.example\x00\x08 peace talks &#x85;&#x9f;"
    "</description><author>evil\r\nBcc: x@evil.example</author>"
    "<category>diplomacy\r\nBcc: y@evil.example</category></item>",
    channel="<title>Evil\r\nBcc: feed@evil.example</title>",
)


def _items_feed(n: int) -> bytes:
    """A feed of ``n`` distinct small items (about 60 bytes each)."""
    items = "".join(
        f"<item><title>Bulletin {i}</title><link>https://n.example/{i}</link></item>"
        for i in range(n)
    )
    return raw_rss(items).encode()


def _huge_entry(size: int) -> bytes:
    """One entry whose content makes the whole body ``size`` bytes."""
    shell = raw_rss(
        f"<item><title>Armenia and Azerbaijan: the full text of the peace treaty</title>"
        f"<link>https://t.example/treaty</link><guid>treaty</guid><pubDate>{PUB}</pubDate>"
        "<description>@@</description></item>"
    ).encode()
    paragraph = b"&lt;p&gt;The parties recognise each other's territorial integrity.&lt;/p&gt;"
    fill = size - len(shell) + 2
    content = (paragraph * (fill // len(paragraph) + 1))[:fill]
    # Cut on a whole escape so the XML stays well-formed.
    content = content[: content.rfind(b"&lt;/p&gt;") + len(b"&lt;/p&gt;")]
    content += b" " * (fill - len(content))
    body = shell.replace(b"@@", content)
    assert len(body) == size
    return body


CASES = [
    Case(
        id="billion-laughs",
        serve=_body(_billion_laughs()),
        refused=None,
        stored=("Armenia talks",),
        absent=("lollol",),
        max_mib=32,
    ),
    Case(id="quadratic-blowup", serve=_body(_quadratic()), refused="XML bomb", max_mib=32),
    Case(
        id="xxe",
        serve=_xxe,
        refused=None,
        stored=("Armenian minister visits Baku",),
        absent=(CANARY, "PROBE-FETCHED"),
    ),
    Case(id="gzip-bomb-streamed", serve=_gzip_stream, refused="max_bytes once decompressed"),
    Case(id="gzip-bomb-whole", serve=_gzip_whole, refused="max_bytes once decompressed"),
    Case(id="endless-body", serve=_endless, refused="larger than 10485760 bytes (max_bytes)"),
    Case(id="slowloris", serve=_slowloris, refused="within 2 s (total_timeout)", max_mib=8),
    Case(id="slow-headers", serve=_slow_headers, refused="within 2 s (total_timeout)", max_mib=8),
    Case(
        id="rss-as-text-html",
        serve=_body(_RSS_ON_HTML, content_type="text/html; charset=utf-8"),
        refused=None,
        stored=("Armenian parliament ratifies border commission rules",),
    ),
    Case(
        id="html-as-rss",
        serve=_body(_HTML_PAGE, content_type="application/rss+xml"),
        refused="returned an HTML page",
    ),
    Case(
        id="invalid-utf8",
        serve=_body(_INVALID_UTF8),
        refused=None,
        stored=("Armenian envoy",),
    ),
    Case(
        id="utf8-declared-cp1251-sent",
        serve=_body(_lying("utf-8", "windows-1251"), content_type="application/rss+xml"),
        refused=None,
        stored=("Armenia talks",),
    ),
    Case(
        id="cp1251-declared-utf8-sent",
        serve=_body(_lying("windows-1251", "utf-8"), content_type="application/rss+xml"),
        refused=None,
        stored=("Armenia talks",),
    ),
    Case(
        id=f"items-{ITEMS}",
        serve=_body(_items_feed(ITEMS)),
        refused=None,
        stored=("Bulletin 0", f"Bulletin {ITEMS - 1}"),
        published=False,
        max_mib=1024 if BIG else 256,
        trace=False,
        max_seconds=120 if BIG else TOTAL_TIMEOUT + MARGIN,
    ),
    Case(
        id="entry-over-10MiB",
        serve=_body(_huge_entry(MAX_BYTES + 1024)),
        refused="larger than 10485760 bytes (max_bytes)",
    ),
    Case(
        id="entry-just-under-10MiB",
        serve=_body(_huge_entry(MAX_BYTES - 1024)),
        refused=None,
        stored=("Armenia and Azerbaijan: the full text of the peace treaty",),
        max_mib=512,
        trace=False,
    ),
    Case(
        id="active-html-rss",
        serve=_body(raw_rss(_ACTIVE_ITEMS)),
        refused=None,
        stored=(
            "Armenia and Azerbaijan sign peace treaty",
            "Georgian foreign minister visits Yerevan",
        ),
    ),
    Case(
        id="active-html-atom",
        serve=_body(_ACTIVE_ATOM, content_type="application/atom+xml"),
        refused=None,
        stored=("Azerbaijan and Armenia agree on border delimitation",),
    ),
    Case(
        id="crlf-and-controls",
        serve=_body(_CONTROL_ITEMS),
        refused=None,
        stored=("Armenian foreign minister Bcc: victim@evil.example",),
    ),
]

#: filled by the tests, printed at the end of the module:
#: (case, outcome, poll seconds, tracemalloc peak MiB, RSS growth MiB)
FIGURES: list[tuple[str, str, float, float, float]] = []


@pytest.fixture(scope="module", autouse=True)
def figures_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print what each case cost once the module is done (bypassing output capture)."""
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if not FIGURES or capture is None:
        return
    with capture.global_and_fixture_disabled():
        print("\ncase | outcome | poll s | tracemalloc peak MiB | RSS growth MiB")
        for case, outcome, seconds, peak, rss_mib in FIGURES:
            print(f"{case} | {outcome} | {seconds:.2f} | {peak:.1f} | {rss_mib:.1f}")


@pytest.fixture
def probe() -> Iterator[FeedServer]:
    """A second loopback server that hostile documents try to make us call."""
    with FeedServer() as server:
        yield server


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_source_is_refused_or_cleaned(
    case: Case,
    feed_server: FeedServer,
    probe: FeedServer,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    feed_server.add("/good.xml", rss(GOOD))
    case.serve(feed_server, probe, tmp_path)
    hostile = [p for p in feed_server.routes if p.startswith("/hostile")]
    sources: dict[str, str | Path] = {"good": feed_server.url("/good.xml")}
    sources |= {f"hostile{p.removeprefix('/hostile')}": feed_server.url(p) for p in hostile}
    path = write_config(tmp_path, sources, smtp=smtp_server)

    with open_pipeline(path) as pipe:
        cycle = timed_poll(pipe, trace=case.trace)
        good = cycle.sources["good"]
        assert (good.status, good.new, good.error) == ("new", len(GOOD), None)
        assert sorted(e.title for e in stored(pipe, "good")) == sorted(i.title for i in GOOD)

        reports = [r for name, r in cycle.sources.items() if name != "good"]
        outcome = _outcome(reports)
        if case.refused is not None:
            for report in reports:
                assert report.status == "error" and report.error, report
                assert case.refused in report.error, report.error
        else:
            for report in reports:
                assert report.status == "new", report
            titles = [e.title for e in stored(pipe) if e.source != "good"]
            for expected in case.stored:
                assert any(expected in t for t in titles), (expected, titles)

        assert cycle.seconds < case.max_seconds, cycle.seconds
        used = cycle.peak if case.trace else cycle.rss_growth
        assert used < case.max_mib * MiB, used / MiB
        FIGURES.append((case.id, outcome, cycle.seconds, cycle.peak / MiB, cycle.rss_growth / MiB))

        page, messages = publish_and_deliver(pipe, smtp_server)
        assert check_outputs(pipe, page, messages) == []
        texts = [e.title + e.summary + e.content_html for e in stored(pipe)]
        texts += [page, *(m.decode("utf-8", "replace") for m in messages)]
        texts += [p.read_text("utf-8") for p in pipe.config.publish.output_dir.rglob("*.*")]
        assert [a for a in case.absent if any(a in t for t in texts)] == []
        feed = (pipe.config.publish.output_dir / "feed.xml").read_text(encoding="utf-8")
        for item in GOOD:
            assert escape(item.title) in feed
        if case.refused is None and case.published:
            for expected in case.stored:
                assert escape(expected) in feed and escape(expected) in page, expected

    # Nothing calls out, and nothing under tmp_path (SQLite file and WAL included) holds the
    # local file's text.
    assert probe.requests == []
    leaked = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != "canary.txt" and CANARY.encode() in p.read_bytes()
    ]
    assert leaked == []


def _outcome(reports: Sequence[SourceReport]) -> str:
    parts = []
    for r in reports:
        if r.status == "error":
            parts.append(f"refused: {r.error}")
        else:
            parts.append(f"{r.status}: {r.new} stored, {r.rejected} rejected")
    return "; ".join(sorted(set(parts)))


# -- the feedparser corpus through the whole path ------------------------------------------------

#: files per poll cycle; outputs are checked after every cycle, so an entry that a later file
#: updates in place is checked in each version that reached the outputs
CORPUS_BATCH = 40
#: every n-th file in the suite (deterministic); DIGEST_HOSTILE_BIG=1 runs all of them
CORPUS_STRIDE = 1


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE")


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"feed corpus not found at {CORPUS}")
def test_corpus_outputs_stay_valid(tmp_path: Path) -> None:
    """Corpus files as local sources, a batch per cycle, published, served and previewed.

    The sources carry the selection's tags, so every entry that is read reaches the feeds, the
    page and the digest; each file must end in stored entries or a recorded error.
    """
    files = corpus_files()[::CORPUS_STRIDE]
    sources: dict[str, str | Path] = {f"corpus-{i:04d}": p for i, p in enumerate(files)}
    path = write_config(
        tmp_path,
        sources,
        max_items=10_000,
        source_tags=("armenia", "diplomacy"),
        total_timeout=30.0,
    )
    statuses: dict[str, int] = {}
    problems: list[str] = []
    started = time.monotonic()
    with open_pipeline(path) as pipe:
        config = pipe.config
        for first in range(0, len(files), CORPUS_BATCH):
            pipe.config = replace(config, sources=config.sources[first : first + CORPUS_BATCH])
            cycle = timed_poll(pipe, trace=False)
            for report in cycle.report.sources:
                statuses[report.status] = statuses.get(report.status, 0) + 1
                if report.status == "error":
                    assert report.error and "internal error" not in report.error, report
            pipe.publish(NOW)
            page, _files = asyncio.run(_serve_and_get(pipe))
            _html, _text, msg, count = pipe.preview(NOW)
            problems += [
                f"batch {first}: {p}"
                for p in check_outputs(pipe, page, [msg.as_bytes(policy=policy.SMTP)])
            ]
        entries = len(stored(pipe))
    seconds = time.monotonic() - started
    FIGURES.append(
        (
            f"corpus: {len(files)} files",
            f"{dict(sorted(statuses.items()))}; {entries} entries, {count} stories in outputs",
            seconds,
            0.0,
            0.0,
        )
    )
    assert problems == []
    assert sum(statuses.values()) == len(files)
    assert set(statuses) <= {"new", "updated", "unchanged", "error"}
    assert statuses["new"] >= 10 and count >= 10
