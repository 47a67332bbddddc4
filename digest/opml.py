"""OPML import and export, so a reading list moves between a feed reader and the config.

Feed readers export subscriptions as OPML: outlines with an ``xmlUrl`` are feeds, outlines
without one are folders. Folder names and OPML 2.0 ``category`` attributes come back as
categories, which the import offers as tag suggestions rather than applying them, because a
folder name is rarely a tag the rules know.

An OPML file comes from elsewhere, so it is read defensively: a DOCTYPE (the only way to
declare entities, hence the only way to an entity-expansion bomb) is refused before the tree
is built, the size is capped, and only http(s) feed URLs are accepted.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit
from xml.parsers import expat

from digest.errors import ConfigError
from digest.models import Source

#: larger than any real subscription list (10,000 feeds take about 2 MB)
MAX_OPML_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class OpmlFeed:
    """A feed subscription read from an OPML file."""

    #: the outline's title (or text); the URL's host when it has neither
    title: str
    #: http(s) URL of the feed
    xml_url: str
    #: the site's home page, when given as an http(s) URL
    html_url: str | None = None
    #: enclosing folder names, outermost first, then the outline's own categories
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OpmlSkipped:
    """An outline that is not a feed, with the reason (reported, never silent)."""

    reason: str
    title: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpmlImport:
    """Everything read from one OPML file."""

    title: str
    feeds: tuple[OpmlFeed, ...]
    skipped: tuple[OpmlSkipped, ...] = ()


def parse_opml(data: bytes, path: str) -> list[OpmlFeed]:
    """Return the feeds of an OPML 1.0/2.0 file; raise ConfigError for a file to refuse."""
    return list(read_opml(data, path).feeds)


def read_opml(data: bytes, path: str) -> OpmlImport:
    """Like :func:`parse_opml`, and also return the document title and the skipped outlines."""
    if len(data) > MAX_OPML_BYTES:
        raise ConfigError(
            f"OPML file is {len(data)} bytes, more than the {MAX_OPML_BYTES} accepted; "
            "split it into smaller files",
            path=path,
        )
    outline_lines = _guard(data, path)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:  # e.g. an undeclared namespace prefix
        raise ConfigError(f"not well-formed XML: {exc}", path=path) from None
    if _local(root.tag) != "opml":
        raise ConfigError(
            f"not an OPML file: the root element is <{_local(root.tag)}>, expected <opml>; "
            "export the subscriptions from the feed reader as OPML",
            path=path,
        )
    outlines = [e for e in root.iter() if _local(e.tag) == "outline"]
    lines = {id(e): line for e, line in zip(outlines, outline_lines, strict=False)}
    body = _child(root, "body")
    if body is None:
        raise ConfigError("OPML file has no <body> element, so it lists no feeds", path=path)
    head = _child(root, "head")
    title_el = _child(head, "title") if head is not None else None
    walker = _Walker(path, lines)
    walker.walk(body, ())
    return OpmlImport(
        title=_clean(title_el.text or "") if title_el is not None else "",
        feeds=tuple(walker.feeds.values()),
        skipped=tuple(walker.skipped),
    )


def _guard(data: bytes, path: str) -> list[int]:
    """Refuse DOCTYPE and entity declarations; return the line of each <outline> start tag.

    This runs expat before ElementTree sees the bytes. The DOCTYPE handler fires before the
    internal subset is read, so nothing is ever declared, let alone expanded, and it sees the
    document in whatever encoding expat decoded it from.
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    lines: list[int] = []

    def refuse(*_: object) -> None:
        raise ConfigError(
            "DOCTYPE and entity declarations are refused in OPML files (they can expand to "
            "gigabytes); remove the <!DOCTYPE ...> declaration",
            path=path,
            line=parser.CurrentLineNumber,
        )

    def start(name: str, _attrs: object) -> None:
        if name.rpartition(":")[2] == "outline":
            lines.append(parser.CurrentLineNumber)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        message = expat.ErrorString(exc.code) if exc.code else str(exc)
        raise ConfigError(
            f"not well-formed XML ({message}); is this an OPML export?",
            path=path,
            line=exc.lineno,
        ) from None
    return lines


class _Walker:
    """Collects feeds from nested outlines, merging a feed listed in several folders."""

    def __init__(self, path: str, lines: dict[int, int]) -> None:
        self.path = path
        self.lines = lines
        self.feeds: dict[str, OpmlFeed] = {}
        self.skipped: list[OpmlSkipped] = []

    def walk(self, parent: ET.Element, folders: tuple[str, ...]) -> None:
        for el in parent:
            if _local(el.tag) != "outline":
                continue
            attrs = {_local(k).lower(): v for k, v in el.attrib.items()}
            label = _clean(attrs.get("title") or attrs.get("text") or "")
            line = self.lines.get(id(el))
            has_children = any(_local(c.tag) == "outline" for c in el)
            xml_url = (attrs.get("xmlurl") or "").strip()
            if xml_url:
                self.add(attrs, label, xml_url, folders, line)
                if has_children:
                    self.walk(el, folders)
            elif has_children:
                self.walk(el, (*folders, label) if label else folders)
            else:
                kind = attrs.get("type", "")
                what = f' (type="{kind}")' if kind else ""
                self.skipped.append(
                    OpmlSkipped(
                        reason=f"outline has no xmlUrl{what}, so it is not a feed subscription",
                        title=label,
                        line=line,
                    )
                )

    def add(
        self,
        attrs: dict[str, str],
        label: str,
        xml_url: str,
        folders: tuple[str, ...],
        line: int | None,
    ) -> None:
        url = _feed_url(xml_url)
        if url is None:
            name = f'outline "{label}"' if label else "an outline"
            raise ConfigError(
                f"{name} has xmlUrl {xml_url!r}, which is not an http(s) URL; only http and "
                "https feeds can be imported: fix or remove that outline",
                path=self.path,
                line=line,
            )
        html_url = _feed_url((attrs.get("htmlurl") or "").strip(), allow_feed_scheme=False)
        categories = (*folders, *_categories(attrs.get("category", "")))
        known = self.feeds.get(url)
        if known is not None:
            categories = (*known.categories, *categories)
        feed = OpmlFeed(
            title=known.title if known else (label or urlsplit(url).hostname or url),
            xml_url=url,
            html_url=(known.html_url if known else None) or html_url,
            categories=tuple(dict.fromkeys(c for c in categories if c)),
        )
        self.feeds[url] = feed


def render_opml(sources: Sequence[Source], title: str, now: datetime) -> bytes:
    """Return an OPML 2.0 document listing the http(s) sources, tags as categories.

    Sources that read a local file have no URL a feed reader could use; each is named in an
    XML comment, so the export says what it left out.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now.astimezone(UTC), usegmt=True)
    ET.SubElement(head, "docs").text = "https://opml.org/spec2.opml"
    body = ET.SubElement(root, "body")
    for source in sources:
        if source.url is None:
            note = f' source "{source.name}" reads the local file {source.path}; not exported '
            body.append(ET.Comment(_comment_safe(note)))
            continue
        attrs = {"type": "rss", "text": source.name, "title": source.name, "xmlUrl": source.url}
        if source.tags:
            # OPML 2.0: a category without slashes is a tag.
            attrs["category"] = ",".join(t.replace(",", " ").replace("/", " ") for t in source.tags)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root, space="  ")
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out + b"\n"


def to_toml_sources(feeds: Sequence[OpmlFeed], existing_names: set[str]) -> str:
    """Return ``[[sources]]`` tables for ``feeds``, to append to a config file.

    Names are made unique (case-insensitively) against ``existing_names`` and each other by a
    `` (2)``, `` (3)``... suffix. Categories are written as a commented-out ``tags`` line:
    they are suggestions, and a tag only means something once the rules define it.
    """
    taken = {n.casefold() for n in existing_names}
    blocks: list[str] = []
    for feed in feeds:
        base = _clean(feed.title) or urlsplit(feed.xml_url).hostname or "feed"
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base} ({n})"
        taken.add(name.casefold())
        lines = ["[[sources]]", f"name = {toml_string(name)}", f"url = {toml_string(feed.xml_url)}"]
        lines.append("tags = []")
        suggested = list(dict.fromkeys(t for t in (_slug(c) for c in feed.categories) if t))
        if suggested:
            listed = ", ".join(toml_string(t) for t in suggested)
            lines.append(f"# tags = [{listed}]  # suggested by the OPML folders")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def toml_string(value: str) -> str:
    """Quote ``value`` as a TOML basic string."""
    out = ['"']
    for ch in value:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _feed_url(url: str, *, allow_feed_scheme: bool = True) -> str | None:
    """Return ``url`` if it is a usable http(s) URL, else None.

    ``feed://host/x`` and ``feed:https://host/x`` are older spellings of the same link.
    """
    if allow_feed_scheme and url[:5].lower() == "feed:":
        rest = url[5:]
        url = rest if rest[:7].lower() in ("http://", "https:/") else "http:" + rest
    if not url or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def _categories(value: str) -> list[str]:
    """Split an OPML 2.0 ``category`` attribute: comma-separated, slash-delimited paths."""
    out: list[str] = []
    for item in value.split(","):
        out.extend(_clean(part) for part in item.split("/") if part.strip())
    return out


def _slug(value: str) -> str:
    return re.sub(r"[\W_]+", "-", value.casefold()).strip("-")


def _clean(text: str) -> str:
    return " ".join(text.split())


def _comment_safe(text: str) -> str:
    """XML comments may not contain ``--`` or end with ``-``."""
    while "--" in text:
        text = text.replace("--", "- -")
    return text + " " if text.endswith("-") else text


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    for el in parent:
        if _local(el.tag) == name:
            return el
    return None
