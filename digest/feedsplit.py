"""Split a feed document into its items without parsing it, to skip items seen before.

Most polls of a busy feed bring a handful of new items among dozens already stored. Parsing
is the expensive step, so the pipeline hashes each raw ``<item>``/``<entry>`` element, and
feedparser only sees the feed's head and tail with the items whose bytes changed. The split is
a conservative byte scan: anything unusual (nested or self-closing items, text between items,
UTF-16/32) returns None and the whole document is parsed as before.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_START = re.compile(rb"<((?:[A-Za-z_][\w.-]*:)?(?:item|entry))(?=[\s>/])")
_COMMENT = re.compile(rb"<!--.*?-->", re.S)


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitFeed:
    #: everything before the first item (XML declaration, channel or feed header)
    head: bytes
    #: the raw item elements, in document order
    items: tuple[bytes, ...]
    #: everything after the last item
    tail: bytes

    def hashes(self) -> tuple[str, ...]:
        return tuple(item_hash(i) for i in self.items)

    def document(self, keep: set[int]) -> bytes:
        """The feed with only the items whose positions are in ``keep`` (whitespace between
        items is not kept: it carries no meaning in a feed)."""
        return b"".join((self.head, *(i for n, i in enumerate(self.items) if n in keep), self.tail))


def item_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def split_feed(body: bytes) -> SplitFeed | None:
    """Cut ``body`` at item boundaries, or None when the layout is not plainly splittable."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:512]:
        return None
    if b"<!ENTITY" in body or b"<![CDATA[" in body and _cdata_hides_items(body):
        return None
    starts = list(_START.finditer(body))
    if not starts:
        return None
    items: list[bytes] = []
    pos = starts[0].start()
    head = body[:pos]
    for match in starts:
        if match.start() < pos:
            return None  # a start tag inside the previous item: nested, not splittable
        gap = _COMMENT.sub(b"", body[pos : match.start()])
        if gap.strip():
            return None  # other elements between items: keep the document whole
        name = match.group(1)
        end_tag = re.compile(rb"</" + re.escape(name) + rb"\s*>")
        tag_end = body.find(b">", match.end())
        if tag_end < 0 or body[tag_end - 1 : tag_end] == b"/":
            return None
        end = end_tag.search(body, tag_end)
        if end is None:
            return None
        items.append(body[match.start() : end.end()])
        pos = end.end()
    return SplitFeed(head=head, items=tuple(items), tail=body[pos:])


def _cdata_hides_items(body: bytes) -> bool:
    """A CDATA section that contains what looks like an item tag would fool the scan."""
    for section in re.finditer(rb"<!\[CDATA\[(.*?)\]\]>", body, re.S):
        if (
            _START.search(section.group(1))
            or b"</item" in section.group(1)
            or b"</entry" in section.group(1)
        ):
            return True
    return False
