"""Identity keys: how an entry is recognised again when its feed changes around it.

An entry is new only if none of its keys is known (see ``EntryKeys.all``). Each key survives a
different upstream habit: the guid survives edited titles and moved links, the canonical link
survives rewritten guids and http/https flips, and the title+date key survives both changing
at once. Keys are short, prefixed hashes so storage can index them cheaply.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import unquote, urlsplit, urlunsplit

from digest.models import EntryKeys, ParsedEntry

#: query parameters that only say where a click came from
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "yclid",
        "msclkid",
        "twclid",
        "ttclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
    }
)
TRACKING_PREFIXES = ("utm_",)
#: ``ref=<value>`` is dropped only for these values; elsewhere ``ref`` can be meaningful
#: (a git ref, a page section)
TRACKING_REF_VALUES = frozenset(
    {
        "rss",
        "rss2",
        "feed",
        "feeds",
        "atom",
        "feedly",
        "feedburner",
        "inoreader",
        "newsletter",
        "email",
        "mail",
        "twitter",
        "tw",
        "facebook",
        "fb",
        "linkedin",
        "telegram",
        "reddit",
        "hn",
        "share",
        "social",
    }
)

_DIGEST_SIZE = 16  # 128 bits: collisions are not a practical concern at feed scale
_GLOBAL_GUID = re.compile(r"(?:https?|tag|urn):\S", re.IGNORECASE)
_MIN_GLOBAL_GUID = 32
_DEFAULT_PORTS = (80, 443)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters kept as they are in a path or query; everything else is percent-encoded.
_PATH_SAFE = frozenset("/%:@!$&'()*+,;=") | _UNRESERVED
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_WORD_JOINERS = re.compile(r"[\W_]+")
# Feeds wrap long links: a line break and the indentation around it are not part of the URL.
_NEWLINES = re.compile(r"[ \t]*[\r\n][\s]*|\t")
_HOST = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def canonical_link(url: str | None) -> str | None:
    """The form of an http(s) URL used to recognise the same article under other spellings.

    Scheme folded to https, host lower-cased and IDNA-encoded, default ports, fragment,
    userinfo and tracking parameters dropped, escapes normalised, trailing slash removed
    (except the root). Anything that is not an http(s) URL with a host gives None; never
    raises.
    """
    if not isinstance(url, str):
        return None
    try:
        return _canonical(url)
    except (ValueError, UnicodeError):
        return None


def _canonical(url: str) -> str | None:
    # The fragment goes first, so that "x #top" and "x" meet; spaces left inside are
    # escaped below.
    url = _NEWLINES.sub("", url.split("#", 1)[0].strip())
    if url.startswith("//"):
        url = "https:" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return None
    host = _host(parts.hostname or "")
    if not host:
        return None
    port = parts.port
    netloc = host if port is None or port in _DEFAULT_PORTS else f"{host}:{port}"
    path = _path(parts.path)
    query = _query(parts.query)
    return urlunsplit(("https", netloc, path, query, ""))


def _host(host: str) -> str | None:
    host = unquote(host).rstrip(".").lower()
    if not host:
        return None
    if ":" in host:  # IPv6 literal (urlsplit removed the brackets)
        return f"[{host}]"
    if not host.isascii():
        # Python's codec is IDNA 2003 (nameprep folds case and width); enough to make the
        # Unicode and xn-- spellings of a host agree.
        host = host.encode("idna").decode("ascii").lower()
    return host if _HOST.fullmatch(host) else None


def _path(path: str) -> str:
    path = _remove_dot_segments(_escape(path, _PATH_SAFE))
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return path


def _query(query: str) -> str:
    kept = [p for p in query.split("&") if p and not is_tracking(p)]
    return "&".join(_escape(p, _QUERY_SAFE) for p in kept)


def is_tracking(param: str) -> bool:
    """Whether one ``name=value`` of a query string only tells a site where a click came from
    (``utm_source``, ``fbclid``...): identity ignores it, and published links leave it out."""
    name, _, value = param.partition("=")
    name = unquote(name.replace("+", " ")).strip().lower()
    if name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES):
        return True
    value = unquote(value.replace("+", " ")).strip().lower()
    if name == "ref_src":
        return value.startswith("twsrc")
    if name == "ref":
        return value in TRACKING_REF_VALUES or value.startswith("twsrc")
    return False


def _escape(text: str, safe: frozenset[str]) -> str:
    """Percent-encode what must be and decode escapes of unreserved characters, so both
    spellings of a URL end up identical."""
    quoted = "".join(
        c if c in safe else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in text
    )
    return _ESCAPE.sub(_normal_escape, quoted)


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, so ``/a/./b/../c`` and ``/a/c`` agree."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out)


def entry_keys(entry: ParsedEntry, source: str) -> EntryKeys:
    """The identity keys of ``entry`` as published by ``source`` (the source's name).

    A guid that looks globally unique (an http(s), tag: or urn: URI, or a long string without
    spaces) is used as is; a short one such as "1" is scoped to ``source`` so that two feeds
    numbering their items from 1 do not collide.
    """
    return keys_and_link(entry, source)[0]


def keys_and_link(entry: ParsedEntry, source: str) -> tuple[EntryKeys, str | None]:
    """:func:`entry_keys` and the entry's canonical link, which they are computed from."""
    guid = (entry.guid or "").strip()
    link = canonical_link(entry.link)
    keys = EntryKeys(
        guid=_guid_key(guid, source) if guid else None,
        link=_link_key(link) if link else None,
        title_date=title_date_key(entry.title, entry.published.date().isoformat()),
        content_hash=_hash(entry.title, entry.summary, entry.content_html, entry.link or ""),
    )
    return keys, link


def keys_for_ref(ref: str) -> list[str]:
    """The identity keys an entry whose link or globally unique guid is ``ref`` would have
    (to find a stored entry from what a user pastes)."""
    keys = []
    if link := canonical_link(ref):
        keys.append(_link_key(link))
    if _is_global_guid(ref.strip()):
        keys.append(_guid_key(ref.strip(), source=""))
    return keys


def _guid_key(guid: str, source: str) -> str:
    """A guid that looks globally unique (an http(s), tag: or urn: URI, or a long string
    without spaces) is used as is; a short one is scoped to its source."""
    scope = "*" if _is_global_guid(guid) else f"{len(source)}:{source}"
    return "guid:" + _hash(scope, guid)


def _link_key(canonical: str) -> str:
    return "link:" + _hash(canonical)


def title_date_key(title: str, day: str) -> str:
    """Key of a title on a day (``YYYY-MM-DD``); case, punctuation and spacing do not count."""
    return "td:" + _hash(normalise_title(title), day)


def normalise_title(title: str) -> str:
    """Title reduced to its words: NFKC, case-folded, punctuation and whitespace collapsed.

    A title made only of punctuation keeps its case-folded form, so it still says something.
    """
    folded = unicodedata.normalize("NFKC", title).casefold()
    words = " ".join(_WORD_JOINERS.sub(" ", folded).split())
    return words or " ".join(folded.split())


def _is_global_guid(guid: str) -> bool:
    if _GLOBAL_GUID.match(guid):
        return True
    return len(guid) >= _MIN_GLOBAL_GUID and not any(c.isspace() for c in guid)


def _hash(*parts: str) -> str:
    """Hash of the parts, length-prefixed so that ("ab", "c") and ("a", "bc") differ."""
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
