"""textnorm.terms: the names it finds, checked against the plain reading of its rules."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.textnorm import Terms, terms, word_key

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def reference_terms(text: str) -> Terms:
    """terms() as first written: each word with its position, and a look back from it."""
    keys: list[str] = []
    names: set[str] = set()
    words = list(_WORD.finditer(text))
    lower_count = sum(1 for m in words if m.group()[0].islower())
    title_case = len(words) >= 4 and lower_count <= len(words) // 5
    for i, match in enumerate(words):
        word = match.group()
        key = word_key(word)
        if not key:
            continue
        keys.append(key)
        if not word[0].isupper():
            continue
        j = match.start() - 1
        while j >= 0 and text[j].isspace():
            j -= 1
        after_stop = j < 0 or text[j] in ".!?:;\u2014"
        if (len(word) > 1 and word.isupper()) or not (title_case or i == 0 or after_stop):
            names.add(key)
    return Terms(keys=tuple(keys), names=frozenset(names))


PIECES = [
    "Armenia", "armenia", "США", "US", "Pashinyan's", "don’t", "x'", "'y", "Ereván", "İ", "ǅ",
    "ß", "Ⅻ", "²", "ﬁ", "_", "0", ".", "!", "?", ":", ";", "—", "–", "-", ",", "(", "«", " ",
    "\t", "\n", "\u00a0", "\u2028", "\u3000", "\x1c", "\x85", "'", "’",
]  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_terms_reads_words_and_names_as_written_in_its_rules(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert terms(text) == reference_terms(text)


def test_names_after_a_full_stop_are_sentence_starts() -> None:
    found = terms("Talks resumed. Baku agreed; then Yerevan — Moscow: Paris objected")
    assert found.names == {word_key("Yerevan")}
