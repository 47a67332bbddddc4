"""The compiled form of a rules file's terms and patterns, and the text folding they share.

Speed comes from matching every term of every tag with one compiled regular expression per
field text: the terms are merged into a prefix tree (a trie) so the regex engine walks each
position once instead of trying hundreds of alternatives. A match is then mapped back to the
terms it stands for through a dictionary keyed by the normalised matched text.
"""

from __future__ import annotations

import importlib
import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from digest.tag import TagRule

_WEIGHT_SUFFIX = re.compile(r"^(.*?)\^\s*([+-]?\d+(?:\.\d+)?)$", re.S)
_SEP = re.compile(r"[\s\-]+")
_MAX_VARIANTS = 256
_CACHE_LIMIT = 65536
_MAX_PATTERN_SUBSETS = 64


# -- text normalisation -------------------------------------------------------------------------


def _build_fold() -> dict[int, str]:
    """Map accented Latin letters to ASCII one character for one, so match offsets stay valid.

    Transliterations differ mostly in diacritics (Qarabağ/Qarabag, Kılıç/Kilic, Erdoğan), so
    folding both the text and the terms makes one term cover them.
    """
    table: dict[int, str] = {}
    for cp in range(0xC0, 0x250):
        decomposed = unicodedata.normalize("NFKD", chr(cp))
        base, marks = decomposed[:1], decomposed[1:]
        if marks and base.isascii() and base.isalpha() and all(map(unicodedata.combining, marks)):
            table[cp] = base
    extra = {
        "ı": "i", "ə": "a", "Ə": "A", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d",
        "Đ": "D", "ħ": "h", "ё": "е", "Ё": "Е", "’": "'", "‘": "'", "ʼ": "'", "ʻ": "'",
        "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "\u00a0": " ", "\u202f": " ",
    }  # fmt: skip
    table.update({ord(k): v for k, v in extra.items()})
    return table


FOLD = _build_fold()
_FOLDED = {chr(cp): text for cp, text in FOLD.items()}
_FOLDABLE = re.compile("[" + "".join(re.escape(ch) for ch in sorted(_FOLDED)) + "]")


def _fold_char(match: re.Match[str]) -> str:
    return _FOLDED[match.group()]


def fold(text: str) -> str:
    """``text.translate(FOLD)``, several times faster: most text has no letter to fold, and
    ``str.translate`` looks up every character of non-ASCII text in the table."""
    if text.isascii():
        return text
    return _FOLDABLE.sub(_fold_char, text)


def match_key(folded: str, cased: bool) -> str:
    text = folded if cased else folded.lower()
    return _SEP.sub(" ", text).strip()


# -- terms and the matcher ----------------------------------------------------------------------

TERM, EXCLUDE, CONTEXT = 0, 1, 2


class Ref(NamedTuple):
    """What a matched text stands for: one term, exclusion or context of one tag."""

    tag: int
    role: int
    term: str
    weight: float
    unless: int


class _Variant(NamedTuple):
    tokens: tuple[str, ...]
    wild: bool


_WILD = "\x00*"
_SEPTOK = "\x00 "


def split_weight(raw: str) -> tuple[str, float]:
    """``"talks^0.5"`` -> ``("talks", 0.5)``; a term without a suffix weighs 1."""
    m = _WEIGHT_SUFFIX.match(raw)
    if m:
        return m.group(1).strip(), float(m.group(2))
    return raw.strip(), 1.0


def expand_term(text: str, cased: bool = False) -> list[_Variant]:
    """Expand braces and tokenise; raises ValueError with a message for the user."""
    if not text.strip():
        raise ValueError("empty term")
    pieces = re.split(r"\{([^{}]*)\}", text)
    if any("{" in p or "}" in p for p in pieces[::2]):
        raise ValueError(f"unbalanced braces in {text!r}")
    options = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(pieces)]
    count = 1
    for opts in options:
        count *= len(opts)
    if count > _MAX_VARIANTS:
        raise ValueError(f"{text!r} expands to {count} variants (at most {_MAX_VARIANTS})")
    out: list[_Variant] = []
    for combo in itertools.product(*options):
        variant = fold("".join(combo)).strip()
        if not cased:
            variant = variant.lower()
        out.append(_tokenise(variant, text))
    return out


def _tokenise(variant: str, original: str) -> _Variant:
    if not variant or not re.search(r"\w", variant):
        raise ValueError(f"{original!r} has a variant without any letter or digit")
    if not re.match(r"\w", variant):
        raise ValueError(f"{original!r} must start with a letter or digit")
    tokens: list[str] = []
    wild = False
    i = 0
    while i < len(variant):
        ch = variant[i]
        if ch == "*":
            nxt = variant[i + 1 : i + 2]
            if not tokens or tokens[-1] in (_SEPTOK, _WILD) or (nxt and not _SEP.match(nxt)):
                raise ValueError(f"'*' may only end a word, as in 'armeni*' (in {original!r})")
            tokens.append(_WILD)
            wild = True
            i += 1
        elif _SEP.match(ch):
            j = _SEP.match(variant, i)
            assert j is not None
            tokens.append(_SEPTOK)
            i = j.end()
        else:
            tokens.append(ch)
            i += 1
    return _Variant(tuple(tokens), wild)


def _variant_key(variant: _Variant) -> str:
    return "".join(" " if t == _SEPTOK else "*" if t == _WILD else t for t in variant.tokens)


def _variant_regex(tokens: Sequence[str]) -> str:
    return "".join(_token_regex(t) for t in tokens)


def _token_regex(token: str) -> str:
    if token == _SEPTOK:
        return r"[\s\-]+"
    if token == _WILD:
        return r"\w*"
    return re.escape(token)


_End = object()
_Trie = dict[object, "_Trie"]


def _trie_regex(variants: Sequence[tuple[str, ...]]) -> str:
    root: _Trie = {}
    for tokens in variants:
        node = root
        for token in tokens:
            node = node.setdefault(token, {})
        node[_End] = {}
    return _emit(root) or r"(?!x)x"


def _emit(node: _Trie) -> str:
    literal = [t for t in node if t is not _End and t != _WILD]
    order = sorted(literal, key=str) + ([_WILD] if _WILD in node else [])
    alts = [_token_regex(str(t)) + _emit(node[t]) for t in order]
    if not alts:
        return ""
    body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    if _End in node:
        body = "(?:" + body + ")?" if len(alts) > 1 or len(body) > 1 else body + "?"
    return body


try:  # CPython's own parser of regular expressions: private, so used only if it is there
    _re_parser: Any = importlib.import_module("re._parser")
    _re_constants: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover
    _re_parser = _re_constants = None


def required_text(pattern: str) -> frozenset[str] | None:
    """Strings of which every match of ``pattern`` contains at least one, or None.

    Read from the parsed pattern: runs of literal characters, at the top level, in groups, in
    every alternative of a branch and in repeats of at least once. Case-insensitive patterns
    and anything unexpected give None (no string is known to be needed).
    """
    try:
        tree = _re_parser.parse(pattern)
        if tree.state.flags & re.IGNORECASE:
            return None
        return _needed(list(tree))
    except Exception:  # noqa: BLE001  (a private API: any surprise only costs speed)
        return None


def _needed(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    c = _re_constants
    repeats = (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT))
    options: list[frozenset[str]] = []
    run: list[str] = []
    for op, av in [*items, (None, None)]:
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        if run:
            options.append(frozenset(["".join(run)]))
            run = []
        found: frozenset[str] | None = None
        if op is c.SUBPATTERN and not av[1] & re.IGNORECASE:
            found = _needed(list(av[3]))
        elif op is c.BRANCH:
            alternatives = [_needed(list(alt)) for alt in av[1]]
            if all(alternatives):
                found = frozenset().union(*(a for a in alternatives if a))
        elif op in repeats and av[0] >= 1:
            found = _needed(list(av[2]))
        elif op is getattr(c, "ATOMIC_GROUP", None):
            found = _needed(list(av))
        if found:
            options.append(found)
    # the most selective: the longest shortest string
    return max(options, key=lambda o: min(map(len, o)), default=None)


class Matcher:
    """The compiled form of the rules: one regex for all terms, one for all patterns.

    The term regex runs on lower-cased text without IGNORECASE, which the regex engine
    matches several times faster; cased terms sit in the same trie in lower case and are
    checked against the original letters when a match is looked up.
    """

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.rules: tuple[TagRule, ...] = ()
        self.weights: list[tuple[float, float, float]] = []
        self.exact: tuple[dict[str, list[Ref]], dict[str, list[Ref]]] = ({}, {})
        self.wild: tuple[list[tuple[re.Pattern[str], Ref]], ...] = ([], [])
        self.variants: list[tuple[str, ...]] = []
        self.cancels: list[list[frozenset[str] | None]] = []
        self.pattern_refs: list[Ref] = []
        self.pattern_sources: list[str] = []
        self.term_re: re.Pattern[str] = re.compile(r"(?!x)x")
        self.pattern_re: re.Pattern[str] | None = None
        self.base_names: tuple[str, ...] = ()
        self.order: dict[str, int] = {}
        #: matched text (accent-folded, original case) -> what it stands for
        self.cache: dict[str, tuple[Ref, ...]] = {}
        #: per pattern, strings of which each of its matches contains one (None: unknown)
        self.pattern_needs: list[frozenset[str] | None] = []
        #: the regex of some of the patterns, by their indexes
        self.pattern_subsets: dict[tuple[int, ...], re.Pattern[str]] = {}
        #: the words of cased terms in lower case, and the beginnings of their wildcard words
        self.cased_words: set[str] = set()
        self.cased_prefixes: set[str] = set()
        #: matched text in lower case -> what it stands for whatever the case of its letters,
        #: or None when it may stand for a cased term
        self.lower_cache: dict[str, tuple[Ref, ...] | None] = {}

    def add(self, ref: Ref, text: str, cased: bool) -> None:
        for variant in expand_term(text, cased):
            self.variants.append(tuple(t.lower() for t in variant.tokens))
            if cased:
                for word in _variant_key(variant).lower().split(" "):
                    if word.endswith("*"):
                        self.cased_prefixes.add(word[:-1])
                    else:
                        self.cased_words.add(word)
            if variant.wild:
                source = _variant_regex(variant.tokens)
                self.wild[cased].append((re.compile(source), ref))
            else:
                self.exact[cased].setdefault(_variant_key(variant), []).append(ref)

    def compile(self) -> None:
        trie = _trie_regex(self.variants)
        self.term_re = re.compile(rf"(?<!\w)({trie})(?:'s?)?(?!\w)")
        if self.pattern_sources:
            self.pattern_re = self._join_patterns(range(len(self.pattern_sources)))
            self.pattern_needs = [required_text(p) for p in self.pattern_sources]
        self.variants = []

    def _join_patterns(self, indexes: Iterable[int]) -> re.Pattern[str]:
        return re.compile("|".join(f"(?P<p{i}>{self.pattern_sources[i]})" for i in indexes))

    def patterns_for(self, text: str) -> re.Pattern[str] | None:
        """The pattern regex for ``text`` without the patterns that cannot match it.

        A pattern needing a string that ``text`` lacks matches nowhere in it, so leaving it
        out of the alternation changes nothing in what the others match; scanning for the
        needed strings costs much less than trying every pattern at every position.
        """
        if self.pattern_re is None:
            return None
        active: list[int] = []
        for i, needs in enumerate(self.pattern_needs):
            if needs is None:
                active.append(i)
                continue
            for needed in needs:
                if needed in text:
                    active.append(i)
                    break
        if len(active) == len(self.pattern_needs):
            return self.pattern_re
        if not active:
            return None
        key = tuple(active)
        found = self.pattern_subsets.get(key)
        if found is None:
            if len(self.pattern_subsets) >= _MAX_PATTERN_SUBSETS:
                return self.pattern_re
            found = self.pattern_subsets[key] = self._join_patterns(key)
        return found

    def _lookup(self, key: str, cased: bool) -> list[Ref]:
        refs = list(self.exact[cased].get(key, ()))
        for rx, ref in self.wild[cased]:
            if rx.fullmatch(key):
                refs.append(ref)
        return refs

    def refs_for(self, folded: str) -> tuple[Ref, ...]:
        """The terms a matched text stands for, including shorter terms of other tags in it.

        The longest phrase wins a position, so "Georgian Dream" (domestic politics) would hide
        "Georgian" (the country); crediting the words inside restores it. A tag that the
        phrase itself names (as a term, an exclusion or a context) gets no such credit, which
        is how "South Georgia" cancels "Georgia".
        """
        key = match_key(folded, cased=True)
        refs = self._collect(key.lower(), False) + self._collect(key, True)
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        result = self.cache[folded] = tuple(refs)
        return result

    def refs_of_pieces(self, pieces: list[str]) -> list[tuple[Ref, ...]] | None:
        """What the distinct matched texts (in lower case) stand for, in order of first
        appearance; None when one of them may stand for a cased term, whose letters count.

        The same text again stands for terms already hit, and a term counts once per field:
        only the first appearance of each matters for the score.
        """
        cache = self.lower_cache
        out: list[tuple[Ref, ...]] = []
        for piece in dict.fromkeys(pieces):
            refs = cache[piece] if piece in cache else self._refs_uncased(piece)
            if refs is None:
                return None
            if refs:
                out.append(refs)
        return out

    def _refs_uncased(self, piece: str) -> tuple[Ref, ...] | None:
        words = match_key(piece, cased=True).split(" ")
        if any(w in self.cased_words or w.startswith(tuple(self.cased_prefixes)) for w in words):
            result = None
        else:
            # no letter's case can make a cased term of it: the lower case stands for all
            result = self.refs_for(piece)
        if len(self.lower_cache) >= _CACHE_LIMIT:
            self.lower_cache.clear()
        self.lower_cache[piece] = result
        return result

    def _collect(self, key: str, cased: bool) -> list[Ref]:
        refs = self._lookup(key, cased)
        if " " in key:
            claimed = {r.tag for r in refs}
            words = key.split(" ")
            for size in range(len(words) - 1, 0, -1):
                for start in range(len(words) - size + 1):
                    for ref in self._lookup(" ".join(words[start : start + size]), cased):
                        if ref.role == TERM and ref.tag not in claimed:
                            refs.append(ref)
                            claimed.add(ref.tag)
        return refs
