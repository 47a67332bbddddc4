"""Group entries into stories: one event, reported by several outlets, shown once.

A new entry joins the story it matches best within the window, or starts a new story.

- identity: the same canonical link or identity key always means the same story;
- text: weighted cosine of the normalised words of title and summary (see :mod:`textnorm`),
  each word weighted by how rare it is among the entries seen so far (inverse document
  frequency). Title words and names weigh more; generic words (diplomatic routine such as
  "minister", "talks", "receives", and the region's countries and capitals) weigh less, so a
  quiet start, when every word still looks rare, does not make them look like evidence;
- evidence: a match must share ``min_distinct_words`` words that are not generic. Tagger tags
  count in the cosine at a low weight but are never evidence;
- time: entries further apart than ``window_hours`` never match, and the score halves every
  ``half_life_hours`` between the two publication times. On a busy day, time says little;
  the text has to carry the decision.

pair score = text * 0.5 ** (hours / half_life_hours)

A story is scored from its latest members, not from one entry: half the best pair score plus
half the mean over those members, so one loose resemblance to one member is not enough. An
entry that matches two stories merges them only when it matches both strongly.

One rule overrides the score: two different items that one source published within
``same_source_hours`` are two stories (an outlet does not report one event twice) unless their
titles are near-identical, which is one article posted twice.

Candidates come from an inverted index over distinctive word keys; keys found in more than
``MAX_POSTINGS`` stored entries are skipped for the search (they still count in the score), and
only a few candidates and story members are compared, so the cost per new entry stays flat
however full the window is.

Story ids are ints allocated in order, so the smaller id is the older story. When stories
merge (union-find) the smaller id survives; an entry keeps the id it was given and
:meth:`StoryIndex.story_of` follows the merges.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from digest import tomlutil
from digest.errors import ConfigError
from digest.textnorm import GENERIC_KEYS, decode_terms, story_terms

#: title words count this much more than summary words
TITLE_WEIGHT = 1.5
#: names (capitalised words inside a sentence) count this much more than other words
NAME_WEIGHT = 1.5
#: generic words (see :data:`textnorm.GENERIC_KEYS`) count this much of an ordinary word
GENERIC_WEIGHT = 0.5
#: tagger tags count this much of an ordinary word, and never as distinctive evidence. Zero:
#: every diplomacy report shares the diplomacy tags, so they made unrelated reports of a busy
#: day look alike (and the labelled sets carry no tags, so they could not be tuned)
TAG_WEIGHT = 0.0
#: keys in more stored entries than this are not used to find candidates
MAX_POSTINGS = 64
#: at most this many keys of a new entry (its rarest) are looked up
MAX_LOOKUP_KEYS = 6
#: at most this many candidates (most shared rare keys first) are scored in full
MAX_CANDIDATES = 6
#: at most this many members of a candidate story (the closest in time) are compared
MAX_MEMBERS = 4
#: a story's score is this share of its best member's score plus the rest of their mean
BEST_SHARE = 0.5
#: a candidate scoring below this share of ``join_score`` does not get its story compared
PROBE_SHARE = 0.5
#: an entry that matches two stories merges them only if both scores reach this many times
#: ``join_score``: a loose resemblance to a second story must not fuse two events
MERGE_FACTOR = 4.0
#: how much more score a match needs when it shares only one distinctive word
SINGLE_WORD_FACTOR = 1.3
#: the hours around an entry over which join_threshold counts other reports
BUSY_HOURS = 24


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryItem:
    """What grouping needs to know about one entry."""

    entry_id: int
    source: str
    #: timezone-aware UTC
    published: datetime
    title: str
    summary: str
    #: canonical link, when known
    link_key: str | None = None
    #: identity keys (guid, link, title+date); any one shared means the same story
    keys: tuple[str, ...] = ()
    #: tags or entities from the tagger, if any
    tags: tuple[str, ...] = ()
    #: ``encode_terms(*story_terms(title, summary))`` when already computed, else None
    terms: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """Where an entry went, and why (shown by ``digest explain``)."""

    entry_id: int
    #: the story the entry belongs to now
    story_id: int
    #: True when it joined an existing story, False when it started one
    joined: bool
    #: story ids that were absorbed into ``story_id`` because this entry bridged them
    merged: tuple[int, ...] = ()
    #: score of the best match (0.0 when there was none)
    score: float = 0.0
    #: the signals of the best match: text, distinct, hours, time, best, mean (or identity)
    signals: Mapping[str, float] = field(default_factory=dict)
    #: the stored entry it matched best, if any
    matched_entry_id: int | None = None
    #: one line: the decision and what decided it
    reason: str = ""
    #: word keys the two entries share, rarest first
    shared: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StorySettings:
    """``[stories]``: how entries are grouped into stories."""

    #: only entries published this many hours apart can be one story
    window_hours: int = 72
    #: a match needs at least this score (0..1) to join a story
    join_score: float = 0.06
    #: the score halves for every this many hours between two entries
    half_life_hours: int = 12
    #: a match must share at least this many distinctive (not generic) words
    min_distinct_words: int = 1
    #: reports per 24 hours that count as a quiet day; on busier days join_score is raised
    #: by the square root of how many times busier the day is
    quiet_day: int = 12
    #: two items of one source within this many hours are different stories ...
    same_source_hours: int = 24
    #: ... unless their titles are at least this similar (0..1): one article posted twice
    repost_similarity: float = 0.8

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> Self:
        """Read a ``[stories]`` table; every key is optional."""
        del base_dir  # no paths here

        def positive(value: int) -> str | None:
            return None if value > 0 else "must be a positive number of hours"

        def at_least_one(value: int) -> str | None:
            return None if value >= 1 else "must be a whole number of at least 1"

        def fraction(value: float) -> str | None:
            return None if 0.0 < value <= 1.0 else "must be a number above 0 and at most 1"

        d = cls()
        settings = cls(
            window_hours=sec.get("window_hours", int, d.window_hours, check=positive),
            join_score=sec.get("join_score", float, d.join_score, check=fraction),
            half_life_hours=sec.get("half_life_hours", int, d.half_life_hours, check=positive),
            min_distinct_words=sec.get(
                "min_distinct_words", int, d.min_distinct_words, check=at_least_one
            ),
            quiet_day=sec.get("quiet_day", int, d.quiet_day, check=at_least_one),
            same_source_hours=sec.get(
                "same_source_hours", int, d.same_source_hours, check=positive
            ),
            repost_similarity=sec.get(
                "repost_similarity", float, d.repost_similarity, check=fraction
            ),
        )
        if settings.same_source_hours > settings.window_hours:
            raise sec.error(
                "same_source_hours",
                f"must not exceed window_hours ({settings.window_hours}); lower it or raise "
                "window_hours",
            )
        sec.finish()
        return settings


@dataclass(slots=True)
class _Stored:
    """An entry of the window, prepared for comparison.

    A window can hold tens of thousands of entries, so each keeps one dict of its words
    (whose strings are shared with every other entry's) and nothing that can be derived.
    """

    item: StoryItem
    #: seconds since the epoch
    at: float
    #: word key -> weight, in the entry's word order: the title, name and generic factors,
    #: multiplied by the key's inverse document frequency when the entry is counted
    vec: dict[str, float]
    #: normalised title for the re-post test
    title: str
    #: the story id given when the entry was added (follow merges with find)
    story: int
    #: the norm of ``vec`` once counted
    norm: float = 0.0


def _distinct(key: str) -> bool:
    """Whether a key can be distinctive evidence: a word that is not generic (tags never are)."""
    return key not in GENERIC_KEYS and not key.startswith("#")


def key_rank(key: str) -> tuple[int, str]:
    """A story's public id comes from its first entry's guid, else its link, else its title."""
    kind = key.split(":", 1)[0]
    return ({"guid": 0, "link": 1}.get(kind, 2), key)


def _prepare(item: StoryItem, story: int) -> _Stored:
    decoded = decode_terms(item.terms)
    if decoded is None:
        title_terms, summary_terms = story_terms(item.title, item.summary)
        title_keys, summary_keys = list(title_terms.keys), list(summary_terms.keys)
        names: set[str] | frozenset[str] = title_terms.names | summary_terms.names
    else:
        title_keys, summary_keys, names = decoded
    # Interned: the window's entries then share one string per word instead of one each.
    keys: dict[str, float] = dict.fromkeys(map(sys.intern, summary_keys), 1.0)
    keys.update(dict.fromkeys(map(sys.intern, title_keys), TITLE_WEIGHT))
    for key in keys.keys() & GENERIC_KEYS:
        keys[key] *= GENERIC_WEIGHT
    for key in names & keys.keys():
        if _distinct(key):
            keys[key] *= NAME_WEIGHT
    if TAG_WEIGHT:
        for tag in item.tags:
            keys.setdefault(sys.intern("#" + tag.lower()), TAG_WEIGHT)
    return _Stored(
        item=item,
        at=item.published.timestamp(),
        vec=keys,
        title=" ".join(title_keys),
        story=story,
    )


class StoryIndex:
    """The entries of the recent window in memory, and the story each belongs to.

    Not thread-safe; one instance per process, fed in publication order where possible.
    """

    def __init__(self, settings: StorySettings) -> None:
        self.settings = settings
        self._items: dict[int, _Stored] = {}
        self._postings: defaultdict[str, set[int]] = defaultdict(set)
        self._identity: dict[str, int] = {}
        self._parent: dict[int, int] = {}
        # story -> its entries in insertion order (about publication order), as dict keys
        self._members: defaultdict[int, dict[int, None]] = defaultdict(dict)
        self._assignments: dict[int, Assignment] = {}
        # Document frequencies over every entry seen, not only the window: a short or quiet
        # window must not make common words look rare.
        self._df: Counter[str] = Counter()
        self._seen = 0
        self._next_story = 1
        # Publication times of the window, sorted: how busy the hours around an entry are.
        self._times: list[float] = []

    # -- stories (union-find) ------------------------------------------------------------

    def _find(self, story: int) -> int:
        root = story
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        while story != root:
            story, self._parent[story] = self._parent[story], root
        return root

    def _union(self, keep: int, absorb: int) -> None:
        self._parent[absorb] = keep
        self._members[keep] |= self._members.pop(absorb, {})

    def story_of(self, entry_id: int) -> int:
        """The story id of an entry in the window (after merges); KeyError if not there."""
        return self._find(self._items[entry_id].story)

    def resolve(self, story_id: int) -> int:
        """The id a story is known by now: itself, or the story it was merged into."""
        return self._find(story_id)

    def __len__(self) -> int:
        return len(self._items)

    # -- adding --------------------------------------------------------------------------

    def load(self, items_with_story: Iterable[tuple[StoryItem, int]]) -> None:
        """Rebuild from storage: put entries back in the stories they already belong to."""
        for item, story in items_with_story:
            stored = _prepare(item, story)
            self._insert(stored)
            self._parent.setdefault(story, story)
            self._next_story = max(self._next_story, story + 1)
            self._assignments[item.entry_id] = Assignment(
                entry_id=item.entry_id, story_id=story, joined=False, reason="loaded"
            )

    def add(self, item: StoryItem, *, story_id_for_new: int | None = None) -> Assignment:
        """Assign ``item`` to a story and remember it; returns the decision."""
        if item.entry_id in self._items:
            raise ValueError(f"entry {item.entry_id} was already added")
        new = _prepare(item, 0)
        self._count(new)
        assignment = self._decide(new, story_id_for_new)
        new.story = assignment.story_id
        self._insert(new, counted=True)
        self._assignments[item.entry_id] = assignment
        return assignment

    def _count(self, stored: _Stored) -> None:
        self._seen += 1
        self._df.update(stored.vec.keys())
        df, n, log = self._df, self._seen + 1, math.log
        stored.vec = {k: w * log(1.0 + n / (df[k] + 1)) for k, w in stored.vec.items()}
        stored.norm = math.sqrt(sum([w * w for w in stored.vec.values()]))

    def _insert(self, stored: _Stored, *, counted: bool = False) -> None:
        if not counted:
            self._count(stored)
        entry_id = stored.item.entry_id
        self._items[entry_id] = stored
        for key in filter(_distinct, stored.vec):
            self._postings[key].add(entry_id)
        for key in _identity_keys(stored.item):
            self._identity.setdefault(key, entry_id)
        self._members[self._find(stored.story)][entry_id] = None
        bisect.insort(self._times, stored.at)

    def evict(self, before: datetime) -> int:
        """Forget entries published before ``before``; returns how many were dropped."""
        limit = before.timestamp()
        if not self._times or self._times[0] >= limit:
            return 0  # nothing that old: the usual case, called once per source and batch
        old = [s for s in self._items.values() if s.at < limit]
        del self._times[: bisect.bisect_left(self._times, limit)]
        for stored in old:
            entry_id = stored.item.entry_id
            del self._items[entry_id]
            for key in filter(_distinct, stored.vec):
                posting = self._postings[key]
                posting.discard(entry_id)
                if not posting:
                    del self._postings[key]
            for key in _identity_keys(stored.item):
                if self._identity.get(key) == entry_id:
                    del self._identity[key]
            self._assignments.pop(entry_id, None)
            root = self._find(stored.story)
            members = self._members.get(root)
            if members is not None:
                members.pop(entry_id, None)
                if not members:
                    del self._members[root]
        return len(old)

    # -- the decision --------------------------------------------------------------------

    def _related(self, new: _Stored) -> Counter[int]:
        """Entries sharing one of ``new``'s rarer distinctive words, with how many they share."""
        postings = self._postings
        lookup = [
            k for k in new.vec if _distinct(k) and 0 < len(postings.get(k, ())) <= MAX_POSTINGS
        ]
        if len(lookup) > MAX_LOOKUP_KEYS:
            lookup.sort(key=lambda k: len(postings[k]))
            del lookup[MAX_LOOKUP_KEYS:]
        # Count shared rare keys in C; all looked-up keys are rare, so a count ranks well.
        return Counter(itertools.chain.from_iterable(postings[k] for k in lookup))

    def _candidates(self, related: Counter[int]) -> list[int]:
        if len(related) <= MAX_CANDIDATES:
            return list(related)
        return [entry_id for entry_id, _ in related.most_common(MAX_CANDIDATES)]

    def _score(self, new: _Stored, old: _Stored) -> float:
        """The score of :meth:`_signals` alone: most comparisons need nothing else."""
        b = old.vec
        # Summed in the new entry's word order: a set's order changes from run to run, and
        # so would the last bits of the sum and, rarely, a decision on the threshold.
        dot: float = sum([w * b[k] for k, w in new.vec.items() if k in b])
        text = dot / (new.norm * old.norm) if new.norm and old.norm else 0.0
        decay: float = 0.5 ** (abs(new.at - old.at) / 3600.0 / self.settings.half_life_hours)
        return text * decay

    def _signals(self, new: _Stored, old: _Stored) -> tuple[float, dict[str, float], list[str]]:
        hours = abs(new.at - old.at) / 3600.0
        a, b = new.vec, old.vec
        shared = [k for k in a if k in b]
        dot = sum([a[k] * b[k] for k in shared])
        text = dot / (new.norm * old.norm) if new.norm and old.norm else 0.0
        distinct = sum(1 for k in shared if _distinct(k))  # shared: in both entries
        decay = 0.5 ** (hours / self.settings.half_life_hours)
        score = text * decay
        signals = {"text": text, "distinct": float(distinct), "hours": hours, "time": decay}
        return score, signals, shared

    def _is_repost(self, a: _Stored, b: _Stored) -> bool:
        from rapidfuzz import fuzz  # here: a poll in which nothing changed never needs it

        similarity = fuzz.token_sort_ratio(a.title, b.title) / 100.0
        return similarity >= self.settings.repost_similarity

    def _conflicts(self, new: _Stored, story: int) -> bool:
        """True if the story holds a different item of the same source from the same day."""
        limit = self.settings.same_source_hours * 3600.0
        for entry_id in self._members.get(story, ()):
            other = self._items[entry_id]
            if (
                other.item.source == new.item.source
                and abs(other.at - new.at) < limit
                and not self._is_repost(new, other)
            ):
                return True
        return False

    def _stories_conflict(self, a: int, b: int) -> bool:
        limit = self.settings.same_source_hours * 3600.0
        members_b = [self._items[e] for e in self._members.get(b, ())]
        for entry_id in self._members.get(a, ()):
            x = self._items[entry_id]
            for y in members_b:
                if (
                    x.item.source == y.item.source
                    and abs(x.at - y.at) < limit
                    and not self._is_repost(x, y)
                ):
                    return True
        return False

    def _story_score(
        self, new: _Stored, story: int, known: Mapping[int, float], floor: float = 0.0
    ) -> tuple[float, int, dict[str, float], list[str]] | None:
        """Score ``new`` against a story's members closest in time; None without evidence
        or below ``floor``.

        The score mixes the best member's score with the mean over members, so that a story
        is joined for what most of its members say, not for one loose resemblance; and the
        best member must share ``min_distinct_words`` distinctive words with ``new``.
        """
        window = self.settings.window_hours * 3600.0
        # The latest members only, so that a long-running story costs no more than a short one.
        latest = itertools.islice(reversed(self._members.get(story, {})), MAX_MEMBERS)
        members = [m for m in map(self._items.__getitem__, latest) if abs(m.at - new.at) <= window]
        scored = [
            (known[m.item.entry_id] if m.item.entry_id in known else self._score(new, m), m)
            for m in members
        ]
        if not scored:
            return None
        best_score, best = max(scored, key=lambda x: x[0])
        mean = sum(x[0] for x in scored) / len(scored)
        combined = BEST_SHARE * best_score + (1.0 - BEST_SHARE) * mean
        if combined < floor:
            return None  # the full signals below cost more than all the rest
        score, signals, shared = self._signals(new, best)
        entry_id = best.item.entry_id
        if signals["distinct"] < self.settings.min_distinct_words:
            return None
        return combined, entry_id, {**signals, "best": score, "mean": mean}, shared

    def join_threshold(self, at: float) -> float:
        """``join_score``, raised on busy days: the more reports appear around the same hours,
        the likelier two of them look alike by chance, so the more evidence a join needs."""
        half = BUSY_HOURS * 1800.0
        times = self._times
        near = bisect.bisect_right(times, at + half) - bisect.bisect_left(times, at - half)
        return self.settings.join_score * max(1.0, math.sqrt(near / self.settings.quiet_day))

    def _decide(self, new: _Stored, story_id_for_new: int | None) -> Assignment:
        window = self.settings.window_hours * 3600.0
        related = self._related(new)
        threshold = self.join_threshold(new.at)
        # Identity first: the same link or key is the same story, whatever the text says.
        for key in _identity_keys(new.item):
            entry_id = self._identity.get(key)
            if entry_id is not None:
                story = self._find(self._items[entry_id].story)
                return Assignment(
                    entry_id=new.item.entry_id,
                    story_id=story,
                    joined=True,
                    score=1.0,
                    signals={"identity": 1.0},
                    matched_entry_id=entry_id,
                    reason=f"same {key.split(':', 1)[0]} as entry {entry_id}",
                )
        best: dict[int, tuple[float, int, dict[str, float], list[str]]] = {}
        blocked: list[int] = []
        stories: set[int] = set()
        scores: dict[int, float] = {}
        top_id: int | None = None
        for entry_id in self._candidates(related):
            old = self._items[entry_id]
            if abs(old.at - new.at) > window:
                continue
            score = scores[entry_id] = self._score(new, old)
            if top_id is None or score > scores[top_id]:
                top_id = entry_id
            # Only a story with a fair first match is worth comparing with its other members.
            if score >= PROBE_SHARE * threshold:
                stories.add(self._find(old.story))
        # Below the lower of the two thresholds, a story cannot be joined.
        floor = threshold * min(1.0, SINGLE_WORD_FACTOR)
        for story in stories:
            found = self._story_score(new, story, scores, floor)
            # One shared rare word is weak evidence: such a match needs a higher score.
            if found is not None and found[0] >= threshold * (
                1.0 if found[2].get("distinct", 0) >= 2 else SINGLE_WORD_FACTOR
            ):
                best[story] = found
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
        chosen: list[int] = []
        for story, _ in ranked:
            if self._conflicts(new, story):
                blocked.append(story)
            elif not chosen or (
                best[story][0] >= MERGE_FACTOR * threshold
                and best[chosen[0]][0] >= MERGE_FACTOR * threshold
                and all(not self._stories_conflict(story, c) for c in chosen)
            ):
                chosen.append(story)
        if not chosen:
            top = None
            if top_id is not None:
                top_score, top_signals, top_shared = self._signals(new, self._items[top_id])
                top = (top_score, top_id, top_signals, top_shared)
            story = self._new_story(story_id_for_new)
            reason = "new story"
            if blocked:
                reason += f"; story {blocked[0]} has another item of {new.item.source} that day"
            elif top is not None:
                reason += f"; best match below {threshold:g}"
            return Assignment(
                entry_id=new.item.entry_id,
                story_id=story,
                joined=False,
                score=round(top[0], 4) if top else 0.0,
                signals=_rounded(top[2]) if top else {},
                matched_entry_id=top[1] if top else None,
                reason=reason,
                shared=self._rarest(new, top[3]) if top else (),
            )
        keep = min(chosen)
        for story in chosen:
            if story != keep:
                self._union(keep, story)
        score, entry_id, signals, shared = best[chosen[0]]
        merged = tuple(sorted(s for s in chosen if s != keep))
        reason = f"joined: score {score:.3f} >= {threshold:g} with entry {entry_id}"
        if merged:
            reason += "; bridged stories " + ", ".join(str(s) for s in merged)
        return Assignment(
            entry_id=new.item.entry_id,
            story_id=keep,
            joined=True,
            merged=merged,
            score=round(score, 4),
            signals=_rounded(signals),
            matched_entry_id=entry_id,
            reason=reason,
            shared=self._rarest(new, shared),
        )

    @staticmethod
    def _rarest(new: _Stored, shared: list[str]) -> tuple[str, ...]:
        return tuple(sorted(shared, key=lambda k: (-new.vec[k], k))[:8])

    def _new_story(self, story_id: int | None) -> int:
        if story_id is None:
            story_id = self._next_story
        elif story_id in self._parent:
            raise ValueError(f"story id {story_id} is already in use")
        self._next_story = max(self._next_story, story_id + 1)
        self._parent[story_id] = story_id
        return story_id

    # -- explanation ---------------------------------------------------------------------

    def assignment(self, entry_id: int) -> Assignment:
        """The decision made when the entry was added; KeyError if unknown."""
        return self._assignments[entry_id]

    def explain(self, entry_id: int) -> str:
        """Why the entry is in its story, in a few lines."""
        a = self._assignments.get(entry_id)
        if a is None:
            return f"entry {entry_id}: not grouped yet"
        lines = [f"entry {entry_id}: story {self.story_of(entry_id)}", f"  {a.reason}"]
        if a.matched_entry_id is not None:
            other = self._items.get(a.matched_entry_id)
            title = f" {other.item.source}: {other.item.title!r}" if other else ""
            lines.append(f"  best match: entry {a.matched_entry_id}{title}")
            lines.append(f"  score {a.score:.3f} from " + _format_signals(a.signals))
        if a.shared:
            lines.append("  shared words: " + ", ".join(a.shared))
        return "\n".join(lines)


def _identity_keys(item: StoryItem) -> list[str]:
    out = [f"link:{item.link_key}"] if item.link_key else []
    out.extend(item.keys)
    return out


def _rounded(signals: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in signals.items()}


def _format_signals(signals: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in signals.items())


def group(items: Sequence[StoryItem], settings: StorySettings) -> dict[int, int]:
    """Group ``items`` in publication order; returns entry id -> story id."""
    return {a.entry_id: a.story_id for a in group_assignments(items, settings)}


def group_assignments(items: Sequence[StoryItem], settings: StorySettings) -> list[Assignment]:
    """Like :func:`group`, with each decision; story ids are final (merges applied)."""
    index = StoryIndex(settings)
    window = timedelta(hours=settings.window_hours)
    ordered = sorted(items, key=lambda i: (i.published, i.entry_id))
    decisions: list[Assignment] = []
    for item in ordered:
        index.evict(item.published - window)
        decisions.append(index.add(item))
    return [replace(a, story_id=index.resolve(a.story_id)) for a in decisions]


# -- evaluation on a labelled set -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PairError:
    """Two items the grouping got wrong, with their direct comparison."""

    a: Mapping[str, str]
    b: Mapping[str, str]
    score: float
    signals: Mapping[str, float]
    #: why the second of the two was put where it was
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryEvaluation:
    """Scores of a grouping against gold stories (pairwise and B-cubed)."""

    items: int
    gold_stories: int
    predicted_stories: int
    gold_pairs: int
    predicted_pairs: int
    true_pairs: int
    pair_precision: float
    pair_recall: float
    pair_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    #: pairs put in one story that are different stories
    wrongly_merged: tuple[PairError, ...] = ()
    #: pairs of one story that were kept apart
    wrongly_split: tuple[PairError, ...] = ()


_REQUIRED = ("id", "story", "source", "published", "title")


def load_story_file(path: str | Path) -> list[dict[str, str]]:
    """Read a labelled JSON Lines file (the format of ``stories-dev.jsonl``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read labelled stories: {exc}", path=path) from None
    items: list[dict[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not JSON: {exc.msg}", path=path, line=number) from None
        if not isinstance(obj, dict):
            raise ConfigError("each line must be a JSON object", path=path, line=number)
        missing = [k for k in _REQUIRED if not isinstance(obj.get(k), str)]
        if missing:
            raise ConfigError(
                f"missing or non-string fields: {', '.join(missing)}", path=path, line=number
            )
        items.append(obj)
    return items


def _to_item(number: int, obj: Mapping[str, str]) -> StoryItem:
    published = datetime.fromisoformat(obj["published"].replace("Z", "+00:00"))
    if published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    return StoryItem(
        entry_id=number,
        source=obj["source"],
        published=published.astimezone(UTC),
        title=obj["title"],
        summary=obj.get("summary") or "",
        link_key=obj.get("link") or None,
    )


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate_stories(items: list[dict[str, str]], settings: StorySettings) -> StoryEvaluation:
    """Group labelled items and score the grouping against their ``story`` labels."""
    records = [_to_item(i, obj) for i, obj in enumerate(items)]
    decisions = {a.entry_id: a for a in group_assignments(records, settings)}
    gold = {i: obj["story"] for i, obj in enumerate(items)}
    pred = {i: decisions[i].story_id for i in gold}
    gold_sets: defaultdict[str, set[int]] = defaultdict(set)
    pred_sets: defaultdict[int, set[int]] = defaultdict(set)
    for i in gold:
        gold_sets[gold[i]].add(i)
        pred_sets[pred[i]].add(i)
    merged: list[tuple[int, int]] = []
    split: list[tuple[int, int]] = []
    tp = 0
    for members in pred_sets.values():
        for a, b in itertools.combinations(sorted(members), 2):
            if gold[a] == gold[b]:
                tp += 1
            else:
                merged.append((a, b))
    for members in gold_sets.values():
        for a, b in itertools.combinations(sorted(members), 2):
            if pred[a] != pred[b]:
                split.append((a, b))
    gold_pairs = sum(len(m) * (len(m) - 1) // 2 for m in gold_sets.values())
    pred_pairs = sum(len(m) * (len(m) - 1) // 2 for m in pred_sets.values())
    p = tp / pred_pairs if pred_pairs else 1.0
    r = tp / gold_pairs if gold_pairs else 1.0
    n = len(gold) or 1
    bp = sum(len(gold_sets[gold[i]] & pred_sets[pred[i]]) / len(pred_sets[pred[i]]) for i in gold)
    br = sum(len(gold_sets[gold[i]] & pred_sets[pred[i]]) / len(gold_sets[gold[i]]) for i in gold)
    bp, br = (bp / n, br / n) if gold else (1.0, 1.0)
    probe = StoryIndex(settings)
    probe.load((item, 0) for item in records)

    def explain(a: int, b: int) -> PairError:
        first, second = sorted((a, b), key=lambda i: (records[i].published, i))
        score, signals, _ = probe._signals(probe._items[second], probe._items[first])
        return PairError(
            a=_brief(items[first]),
            b=_brief(items[second]),
            score=round(score, 4),
            signals=_rounded(signals),
            reason=decisions[second].reason,
        )

    return StoryEvaluation(
        items=len(gold),
        gold_stories=len(gold_sets),
        predicted_stories=len(pred_sets),
        gold_pairs=gold_pairs,
        predicted_pairs=pred_pairs,
        true_pairs=tp,
        pair_precision=p,
        pair_recall=r,
        pair_f1=_f1(p, r),
        bcubed_precision=bp,
        bcubed_recall=br,
        bcubed_f1=_f1(bp, br),
        wrongly_merged=tuple(explain(a, b) for a, b in merged),
        wrongly_split=tuple(explain(a, b) for a, b in split),
    )


def _brief(obj: Mapping[str, str]) -> dict[str, str]:
    return {k: obj.get(k) or "" for k in ("id", "source", "published", "title")}


def format_story_evaluation(ev: StoryEvaluation) -> str:
    """A plain-text report: the figures, then every wrong pair with its signals."""
    lines = [
        f"items {ev.items}, gold stories {ev.gold_stories}, predicted stories "
        f"{ev.predicted_stories}",
        f"pairwise  precision {ev.pair_precision:.3f}  recall {ev.pair_recall:.3f}  "
        f"F1 {ev.pair_f1:.3f}  (true {ev.true_pairs} of {ev.predicted_pairs} predicted, "
        f"{ev.gold_pairs} gold)",
        f"B-cubed   precision {ev.bcubed_precision:.3f}  recall {ev.bcubed_recall:.3f}  "
        f"F1 {ev.bcubed_f1:.3f}",
    ]
    for heading, pairs in (
        ("wrongly merged", ev.wrongly_merged),
        ("wrongly split", ev.wrongly_split),
    ):
        lines.append("")
        lines.append(f"{heading} pairs: {len(pairs)}")
        for pair in pairs:
            lines.append(f"- score {pair.score:.3f} ({_format_signals(pair.signals)})")
            for side in (pair.a, pair.b):
                lines.append(
                    f"    {side['id']} {side['published']} {side['source']}: {side['title']}"
                )
            lines.append(f"    decision: {pair.reason}")
    return "\n".join(lines)
