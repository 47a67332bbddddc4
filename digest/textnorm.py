"""Text normalisation for comparing news items across outlets, spellings and alphabets.

Outlets spell the same names differently (Pashinyan/Pashinian, Aliyev/Aliev, Kılıç/Kilic) and
TASS writes in Russian. Every word becomes a short *key*: Russian words are stemmed in Russian,
mapped through a small glossary of names and key terms, or transliterated; English words are
stemmed; then spelling variants are folded and the key is cut to a fixed prefix, so that
Armenia, Armenian, Armenia's and Армении all give ``armeni``. A key is an index term, not a
word: it only has to be equal for variants and different for unrelated words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import Stemmer
from anyascii import anyascii

#: keys are cut to this many characters (truncation stemming: robust to endings in any language)
KEY_LENGTH = 5

#: a word, and what ends a sentence or a label right before it (only whitespace between)
_WORD_AFTER = re.compile(r"([.!?:;\u2014]\s*)?([^\W_]+(?:['’][^\W_]+)*)")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")

_EN = Stemmer.Stemmer("english")
_RU = Stemmer.Stemmer("russian")

# Function words and words of reporting: they say how something was reported, not what happened.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "says",
        "said",
        "say",
        "saying",
        "told",
        "tell",
        "tells",
        "according",
        "reports",
        "reported",
        "report",
        "amid",
        "after",
        "new",
        "news",
        "would",
        "could",
        "may",
        "might",
        "must",
        "shall",
        "one",
        "two",
        "three",
        "first",
        "second",
        "last",
        "next",
        "day",
        "days",
        "week",
        "weeks",
        "today",
        "yesterday",
        "tomorrow",
        "year",
        "years",
        "month",
        "months",
        "time",
        "times",
        "says'",
        "и",
        "в",
        "во",
        "не",
        "что",
        "он",
        "на",
        "я",
        "с",
        "со",
        "как",
        "а",
        "то",
        "все",
        "она",
        "так",
        "его",
        "но",
        "да",
        "ты",
        "к",
        "у",
        "же",
        "вы",
        "за",
        "бы",
        "по",
        "только",
        "ее",
        "мне",
        "было",
        "вот",
        "от",
        "меня",
        "еще",
        "нет",
        "о",
        "из",
        "ему",
        "теперь",
        "когда",
        "даже",
        "ну",
        "вдруг",
        "ли",
        "если",
        "уже",
        "или",
        "ни",
        "быть",
        "был",
        "него",
        "до",
        "вас",
        "нибудь",
        "опять",
        "уж",
        "вам",
        "ведь",
        "там",
        "потом",
        "себя",
        "ничего",
        "ей",
        "может",
        "они",
        "тут",
        "где",
        "есть",
        "надо",
        "ней",
        "для",
        "мы",
        "тебя",
        "их",
        "чем",
        "была",
        "сам",
        "чтоб",
        "без",
        "будто",
        "чего",
        "раз",
        "тоже",
        "себе",
        "под",
        "будет",
        "ж",
        "тогда",
        "кто",
        "этот",
        "того",
        "потому",
        "этого",
        "какой",
        "совсем",
        "ним",
        "здесь",
        "этом",
        "один",
        "почти",
        "мой",
        "тем",
        "чтобы",
        "нее",
        "сейчас",
        "были",
        "куда",
        "зачем",
        "всех",
        "никогда",
        "можно",
        "при",
        "наконец",
        "два",
        "об",
        "другой",
        "хоть",
        "после",
        "над",
        "больше",
        "тот",
        "через",
        "эти",
        "нас",
        "про",
        "всего",
        "них",
        "какая",
        "много",
        "разве",
        "три",
        "эту",
        "моя",
        "впрочем",
        "хорошо",
        "свою",
        "этой",
        "перед",
        "иногда",
        "лучше",
        "чуть",
        "том",
        "нельзя",
        "такой",
        "им",
        "более",
        "всегда",
        "конечно",
        "всю",
        "между",
        "заявил",
        "заявила",
        "сообщил",
        "сообщила",
        "ате",
        "ата",
    ]
)

# Russian stems (after the Russian stemmer, lower case) -> the English word they stand for.
# Only names and terms that transliteration cannot bring together; anything else is
# transliterated and still matches other Russian items.
RU_GLOSSARY: dict[str, str] = {
    "груз": "georgia",
    "грузинск": "georgia",
    "росс": "russia",
    "российск": "russia",
    "русск": "russia",
    "турц": "turkey",
    "турецк": "turkey",
    "сша": "us",
    "американск": "us",
    "ес": "eu",
    "евросоюз": "eu",
    "европейск": "europe",
    "нато": "nato",
    "оон": "un",
    "одкб": "csto",
    "еаэс": "eaeu",
    "обсе": "osce",
    "мид": "mfa",
    "алм": "almaty",
    "армянск": "armenia",
    "азербайджанск": "azerbaijan",
    "карабахск": "karabakh",
    "иранск": "iran",
    "кремл": "kremlin",
    "миротворц": "peacekeepers",
    "миротворческ": "peacekeepers",
    "граничн": "border",
    "границ": "border",
    "пограничн": "border",
    "переговор": "talks",
    "встреч": "meeting",
    "министр": "minister",
    "президент": "president",
    "премьер": "premier",
    "парламент": "parliament",
    "выбор": "election",
    "перемир": "ceasefire",
    "прекращен": "ceasefire",
    "мирн": "peace",
    "мир": "peace",
    "договор": "treaty",
    "соглашен": "agreement",
    "заявлен": "statement",
    "самолет": "plane",
    "крушен": "crash",
    "задержа": "detained",
    "арестова": "arrested",
    "закон": "law",
    "вступлен": "accession",
    "обстрел": "shelling",
    "войск": "troops",
    "визит": "visit",
    "приб": "arrives",
    "посол": "ambassador",
    "посл": "ambassador",
    "глав": "head",
    "иностра": "foreign",
    "международн": "international",
    "дискусс": "discussions",
    "обсуд": "discussed",
    "женев": "geneva",
    "визов": "visa",
    "брюссел": "brussels",
    "китайск": "china",
    "французск": "france",
    "немецк": "germany",
    "казахстанск": "kazakhstan",
    # Names whose Russian and English spellings transliterate apart.
    "нахичеван": "nakhchivan",
    "нахичеванск": "nakhchivan",
    "ерева": "yerevan",
    "ереван": "yerevan",
    "ереванск": "yerevan",
    "зурабишв": "zourabichvili",
}

# English adjectives of nationality -> the country, so that "Turkish minister" and "Turkey's
# minister" share a key, as Armenian/Armenia and Russian/Russia already do after stemming;
# and names spelt in more than one way in English -> the spelling the glossary uses.
EN_ALIASES: dict[str, str] = {
    "nakhichevan": "nakhchivan",
    "nakhijevan": "nakhchivan",
    "erevan": "yerevan",
    "zurabishvili": "zourabichvili",
    "turkish": "turkey",
    "iranian": "iran",
    "french": "france",
    "chinese": "china",
    "german": "germany",
    "kazakh": "kazakhstan",
    "ukrainian": "ukraine",
    "israeli": "israel",
    "british": "britain",
    "emirati": "uae",
}

# Words of diplomatic routine and the names of the region's countries and capitals: every
# story has them, so sharing them says little about sharing an event. Stories still compare
# them, at a low weight (see :mod:`stories`); they just never count as distinctive evidence.
_GENERIC_TEXT = (
    "minister ministry foreign prime president presidential government official officials "
    "talks meeting meet visit receive hold discuss discussion international statement "
    "agreement agree sign deal cooperation relations bilateral partnership strategic issue "
    "review progress side country countries national state head delegation envoy ambassador "
    "spokesperson mfa fm fms pm region regional security call phone conversation leader "
    "deputy chairman arrive mission support trilateral joint round parliament party armenia "
    "azerbaijan georgia russia iran turkey us usa eu europe france china germany yerevan baku "
    "tbilisi moscow ankara tehran washington brussels un kremlin caucasus south company "
    "contract"
)
GENERIC_WORDS = tuple(_GENERIC_TEXT.split())


def fold(word: str) -> str:
    """Fold transliteration variants of one lower-case ASCII word together."""
    word = word.replace("'", "").replace("’", "")
    word = word.replace("dzh", "j").replace("kh", "h").replace("gh", "h").replace("y", "i")
    word = word.replace("ch", "\0").replace("c", "k").replace("\0", "ch")
    out: list[str] = []
    for ch in word:
        if not out or out[-1] != ch:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=200_000)
def word_key(word: str) -> str:
    """The index key of one word as written ("" for a stop word)."""
    lower = word.lower()
    if lower in STOPWORDS:
        return ""
    if _CYRILLIC.search(lower):
        stem = _RU.stemWord(lower)
        mapped = RU_GLOSSARY.get(stem) or RU_GLOSSARY.get(lower)
        if mapped is not None:
            return fold(_EN.stemWord(mapped))[:KEY_LENGTH]
        if word[:1].isupper():
            # Names: the Russian stemmer cuts them too short (Алиев -> ал); transliterate whole.
            return fold(anyascii(lower))[:KEY_LENGTH]
        return fold(anyascii(stem))[:KEY_LENGTH]
    ascii_word = anyascii(lower)
    if ascii_word.endswith(("'s", "’s")):
        ascii_word = ascii_word[:-2]
    if ascii_word in STOPWORDS:
        return ""
    ascii_word = EN_ALIASES.get(ascii_word, ascii_word)
    return fold(_EN.stemWord(ascii_word))[:KEY_LENGTH]


@dataclass(frozen=True, slots=True, kw_only=True)
class Terms:
    """The keys of one text, and which of them look like names."""

    #: keys in order of appearance, without stop words, repeats kept
    keys: tuple[str, ...]
    #: keys of capitalised words that do not open a sentence (people, places, organisations)
    names: frozenset[str]


def terms(text: str) -> Terms:
    """Split ``text`` into keys; mark capitalised words inside a sentence as names."""
    keys: list[str] = []
    names: set[str] = set()
    # (the end of a sentence or label before the word, or "", the word)
    words = _WORD_AFTER.findall(text)
    lower_count = sum(map(str.islower, "".join([w[0] for _, w in words])))
    # Title Case headlines capitalise every word, so capitals say nothing there.
    title_case = len(words) >= 4 and lower_count <= len(words) // 5
    for i, (stop, word) in enumerate(words):
        key = word_key(word)
        if not key:
            continue
        keys.append(key)
        if not word[0].isupper():
            continue
        if (len(word) > 1 and word.isupper()) or not (title_case or i == 0 or stop):
            names.add(key)
    return Terms(keys=tuple(keys), names=frozenset(names))


#: keys of :data:`GENERIC_WORDS`
GENERIC_KEYS = frozenset(word_key(w) for w in GENERIC_WORDS) - {""}


# -- stored words -----------------------------------------------------------------------


def story_terms(title: str, summary: str) -> tuple[Terms, Terms]:
    """The normalised words of a title and a summary: the costly part of adding an entry."""
    return terms(title), terms(summary)


#: how much of a summary story grouping compares
STORY_SUMMARY_CHARS = 600
#: bump when the keys this module gives change, so that stored words are computed again
TERMS_VERSION = "1"
_FIELD, _KEY = "\x1e", "\x1f"


def encode_terms(title: Terms, summary: Terms) -> str | None:
    """What grouping needs of :func:`story_terms`, as one compact string for storage: the
    title's keys in order, the summary's distinct keys in order, and the names."""
    parts = (
        _KEY.join(title.keys),
        _KEY.join(dict.fromkeys(summary.keys)),
        _KEY.join(sorted(title.names | summary.names)),
    )
    if any(_FIELD in part for part in parts) or any(
        _KEY in key for key in (*title.keys, *summary.keys)
    ):
        return None  # not representable: computed again when needed
    return _FIELD.join((TERMS_VERSION, *parts))


def decode_terms(encoded: str | None) -> tuple[list[str], list[str], set[str]] | None:
    """Title keys, summary keys and names from :func:`encode_terms`; None if it is missing or
    was written by another version of the word normalisation."""
    if not encoded:
        return None
    parts = encoded.split(_FIELD)
    if len(parts) != 4 or parts[0] != TERMS_VERSION:
        return None
    title, summary, names = (p.split(_KEY) if p else [] for p in parts[1:])
    return title, summary, set(names)
