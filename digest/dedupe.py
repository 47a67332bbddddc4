"""Decide, without touching storage, which entries of a fetched feed are new.

An entry carries several identity keys (guid, canonical link, title+date). It is new only if
none of its keys is known, across all sources: this survives feeds that rewrite guids on every
fetch, the same article in two feeds, and http/https flips. A known entry whose content hash
changed is updated in place and never reported again.

The title+date key only decides when one side has no link: two different articles with the
same headline on the same day ("Press briefing") must not swallow each other, while a feed
without links still dedupes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from digest.identity import keys_and_link
from digest.models import (
    ChangedEntry,
    EntryKeys,
    NewEntry,
    ParsedEntry,
    Rejected,
    SourceState,
    SourceUpdate,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownEntry:
    """What storage knows about an identity key."""

    entry_id: int
    #: None when the entry was pruned: only its keys remain, and it counts as unchanged
    content_hash: str | None
    #: whether the stored entry has a link (see the title+date rule above)
    has_link: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyedEntry:
    parsed: ParsedEntry
    keys: EntryKeys
    link: str | None


def key_entries(entries: Sequence[ParsedEntry], source: str) -> list[KeyedEntry]:
    keyed = []
    for entry in entries:
        keys, link = keys_and_link(entry, source)
        keyed.append(KeyedEntry(parsed=entry, keys=keys, link=link))
    return keyed


def all_keys(keyed: Sequence[KeyedEntry]) -> set[str]:
    return {k for item in keyed for k in item.keys.all()}


def _match(item: KeyedEntry, known: Mapping[str, KnownEntry]) -> KnownEntry | None:
    for key in (item.keys.guid, item.keys.link):
        if key and key in known:
            return known[key]
    hit = known.get(item.keys.title_date)
    if hit is not None and (item.link is None or not hit.has_link):
        return hit
    return None


def decide(
    source: str,
    keyed: Sequence[KeyedEntry],
    known: Mapping[str, KnownEntry],
    state: SourceState,
    rejected: Sequence[Rejected] = (),
) -> SourceUpdate:
    """Sort a feed's entries into new / changed / unchanged.

    ``known`` maps the already stored keys (of any source) to their entry. Entries repeated
    inside the same feed count once. ``state`` is the source's state to store with the update.
    """
    new: list[NewEntry] = []
    changed: dict[int, ChangedEntry] = {}
    extra: dict[str, int] = {}
    unchanged = 0
    # Keys of entries accepted earlier in this same batch: a feed listing an item twice.
    batch: dict[str, KnownEntry] = {}
    for item in keyed:
        hit = _match(item, known)
        if hit is None:
            in_batch = _match(item, batch)
            if in_batch is not None:
                unchanged += 1
                continue
            new.append(NewEntry(parsed=item.parsed, keys=item.keys, canonical_link=item.link))
            pending = KnownEntry(
                entry_id=-len(new),
                content_hash=item.keys.content_hash,
                has_link=item.link is not None,
            )
            for key in item.keys.all():
                batch.setdefault(key, pending)
            continue
        if (
            hit.content_hash is not None
            and hit.content_hash != item.keys.content_hash
            and hit.entry_id not in changed
        ):
            # An edited entry may bring a new link or guid: remember them for it. Unchanged
            # entries add nothing, so a feed that rewrites guids on every fetch does not
            # grow the key table.
            for key in item.keys.all():
                if key not in known and key not in batch:
                    extra.setdefault(key, hit.entry_id)
            changed[hit.entry_id] = ChangedEntry(
                entry_id=hit.entry_id,
                parsed=item.parsed,
                keys=item.keys,
                canonical_link=item.link,
            )
        else:
            unchanged += 1
    return SourceUpdate(
        source=source,
        state=state,
        new=tuple(new),
        changed=tuple(changed.values()),
        unchanged=unchanged,
        extra_keys=extra,
        rejected=tuple(rejected),
    )
