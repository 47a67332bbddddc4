"""How this program sets up feedparser: the same results, at less cost per character.

Two settings, both made once when :mod:`digest.parse` is imported:

- feedparser's strict parser is xml.sax over expat, which by default reports text in pieces:
  every entity reference and line break starts a new callback. Feeds carry their HTML escaped
  (``&lt;p&gt;``), so one summary can take hundreds of callbacks, each a Python call through
  feedparser's handler. :class:`BufferedExpatParser` turns on expat's text buffering, so each
  run of text arrives in one piece. feedparser joins the pieces anyway, so the text is the same.
- feedparser maps the Windows-1252 extensions (U+0080..U+009F) in every text it returns with
  ``str.translate`` over a dict. For any text that is not pure ASCII, that raises and clears a
  KeyError for every character the dict lacks. :class:`_IdentityCache` gives the same mapping,
  but remembers the characters it passes through, so the lookups hit.

This module is also the SAX driver feedparser is pointed at: xml.sax imports a driver by
module name and calls its :func:`create_parser`.
"""

from __future__ import annotations

from typing import Any
from xml.sax.expatreader import ExpatParser

import feedparser.api
import feedparser.mixin

#: the characters :class:`_IdentityCache` remembers at most (a hostile feed could use them all)
CACHE_LIMIT = 4096


class BufferedExpatParser(ExpatParser):
    """xml.sax's expat reader with text buffering on."""

    def reset(self) -> None:
        super().reset()
        self._parser.buffer_text = True  # type: ignore[attr-defined]


def create_parser(*args: Any, **kwargs: Any) -> BufferedExpatParser:
    """The SAX driver's entry point, as :func:`xml.sax.make_parser` calls it."""
    return BufferedExpatParser(*args, **kwargs)


class _IdentityCache(dict[int, Any]):
    """A ``str.translate`` table that maps every character it is not given to itself."""

    __slots__ = ()

    def __missing__(self, key: int) -> int:
        if len(self) < CACHE_LIMIT:
            self[key] = key
        return key


def install() -> None:
    """Point feedparser at the buffered SAX driver and the caching Windows-1252 table."""
    feedparser.api.PREFERRED_XML_PARSERS = [__name__]
    table = getattr(feedparser.mixin, "_cp1252", None)
    if isinstance(table, dict) and not isinstance(table, _IdentityCache):
        feedparser.mixin._cp1252 = _IdentityCache(table)
