"""How this program sets up feedparser: the same results, at less cost per character.

Five settings, all made once when :mod:`digest.parse` is imported, each giving results equal
to feedparser's own (tests/test_fpsetup.py compares them):

- feedparser's strict parser is xml.sax over expat, which by default reports text in pieces:
  every entity reference and line break starts a new callback. Feeds carry their HTML escaped
  (``&lt;p&gt;``), so one summary can take hundreds of callbacks, each a Python call through
  feedparser's handler. :class:`BufferedExpatParser` turns on expat's text buffering, so each
  run of text arrives in one piece. feedparser joins the pieces anyway, so the text is the same.
- feedparser maps the Windows-1252 extensions (U+0080..U+009F) in every text it returns with
  ``str.translate`` over a dict. For any text that is not pure ASCII, that raises and clears a
  KeyError for every character the dict lacks. :class:`_IdentityCache` gives the same mapping,
  but remembers the characters it passes through, so the lookups hit. Even a hit costs a
  lookup per character, so the text of an element also reaches that call as a
  :class:`_Text`, whose ``translate`` first asks a regular expression whether the text holds
  any such character at all (it almost never does) and returns a plain ``str`` either way.
- feedparser deep-copies the parameters of every text construct (type, language, base) with
  :func:`copy.deepcopy`'s generic, reduce-based path. :func:`_deepcopy` copies a
  FeedParserDict of plain values with one dict copy.
- feedparser joins the xml:base in force with itself at every start tag, so the same
  ``urljoin`` runs hundreds of times per feed. :func:`_urljoin` remembers recent joins of
  short strings.

This module is also the SAX driver feedparser is pointed at: xml.sax imports a driver by
module name and calls its :func:`create_parser`.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any
from xml.sax.expatreader import ExpatParser

import feedparser.api
import feedparser.mixin
import feedparser.urls
from feedparser.util import FeedParserDict

#: the characters :class:`_IdentityCache` remembers at most (a hostile feed could use them all)
CACHE_LIMIT = 4096
#: URL joins :func:`_urljoin` remembers, and the longest pair of strings it remembers
JOIN_CACHE_SIZE = 512
JOIN_CACHE_CHARS = 2048

_PLAIN = (str, int, float, bool, type(None))
_feedparser_urljoin = feedparser.urls._urljoin
_feedparser_decode_entities = feedparser.mixin._FeedParserMixin.__dict__["decode_entities"]
#: the characters feedparser's Windows-1252 table maps
_C1 = re.compile("[\x80-\x9f]")


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


class _Text(str):
    """An element's text on its way through feedparser's ``pop``, whose last step is the
    Windows-1252 ``translate``; every other step treats it as the ``str`` it is."""

    __slots__ = ()

    def translate(self, table: Any) -> str:
        text = str(self)
        if _C1.search(text) is None:
            return text
        return text.translate(table)


def _mark_text(element: str, data: Any) -> Any:
    """feedparser's ``decode_entities`` step of the strict parser (which returns the text as
    it is), returning the text as a :class:`_Text`."""
    return _Text(data) if type(data) is str else data


def _deepcopy(self: FeedParserDict, memo: dict[int, Any]) -> FeedParserDict:
    """``copy.deepcopy`` of a FeedParserDict, one dict copy when every value is plain."""
    if all(type(v) in _PLAIN for v in self.values()):
        return FeedParserDict(self)
    new = FeedParserDict()
    memo[id(self)] = new
    for key, value in self.items():
        dict.__setitem__(new, copy.deepcopy(key, memo), copy.deepcopy(value, memo))
    return new


@functools.lru_cache(maxsize=JOIN_CACHE_SIZE)
def _cached_urljoin(base: str, uri: str) -> str:
    result: str = _feedparser_urljoin(base, uri)
    return result


def _urljoin(base: Any, uri: Any) -> Any:
    """feedparser's URL join, remembered for short strings."""
    if type(base) is str and type(uri) is str and len(base) + len(uri) <= JOIN_CACHE_CHARS:
        return _cached_urljoin(base, uri)
    return _feedparser_urljoin(base, uri)


def install() -> None:
    """Point feedparser at the buffered SAX driver, the caching Windows-1252 table, the
    marked element texts, the plain deep copy and the remembering URL join."""
    feedparser.api.PREFERRED_XML_PARSERS = [__name__]
    table = getattr(feedparser.mixin, "_cp1252", None)
    if isinstance(table, dict) and not isinstance(table, _IdentityCache):
        feedparser.mixin._cp1252 = _IdentityCache(table)
    FeedParserDict.__deepcopy__ = _deepcopy
    mixin = feedparser.mixin._FeedParserMixin
    if mixin.__dict__.get("decode_entities") is _feedparser_decode_entities:
        mixin.decode_entities = staticmethod(_mark_text)
    for module in (feedparser.urls, feedparser.mixin):
        if getattr(module, "_urljoin", None) is _feedparser_urljoin:
            module._urljoin = _urljoin
