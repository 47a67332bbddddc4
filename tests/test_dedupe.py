"""The pure new/changed/unchanged decision."""

from __future__ import annotations

from datetime import UTC, datetime

from digest.dedupe import KnownEntry, decide, key_entries
from digest.models import ParsedEntry, SourceState

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
STATE = SourceState(name="s")


def e(
    guid: str | None, link: str | None, title: str = "Talks in Almaty", summary: str = ""
) -> ParsedEntry:
    return ParsedEntry(
        guid=guid,
        link=link,
        title=title,
        summary=summary,
        content_html="",
        published=NOW,
        updated=NOW,
    )


def known_for(entries: list[ParsedEntry], *, has_link: bool = True) -> dict[str, KnownEntry]:
    out: dict[str, KnownEntry] = {}
    for i, k in enumerate(key_entries(entries, "s"), start=1):
        for key in k.keys.all():
            out[key] = KnownEntry(entry_id=i, content_hash=k.keys.content_hash, has_link=has_link)
    return out


def test_all_new_on_empty_state() -> None:
    update = decide(
        "s",
        key_entries([e("1", "https://a/1"), e("2", "https://a/2", title="Other")], "s"),
        {},
        STATE,
    )
    assert len(update.new) == 2 and update.unchanged == 0


def test_rewritten_guids_are_not_new() -> None:
    first = [e("guid-a", "https://a/1")]
    second = [e("guid-b", "https://a/1")]
    update = decide("s", key_entries(second, "s"), known_for(first), STATE)
    assert not update.new and update.unchanged == 1 and not update.extra_keys


def test_duplicate_inside_one_feed_counts_once() -> None:
    items = [e("1", "https://a/1"), e("1", "https://a/1")]
    update = decide("s", key_entries(items, "s"), {}, STATE)
    assert len(update.new) == 1 and update.unchanged == 1


def test_edit_upstream_is_changed_not_new() -> None:
    before = [e("1", "https://a/1", summary="old")]
    after = [e("1", "https://a/1", summary="new")]
    update = decide("s", key_entries(after, "s"), known_for(before), STATE)
    assert not update.new and len(update.changed) == 1 and update.changed[0].entry_id == 1


def test_same_title_same_day_with_different_links_are_both_kept() -> None:
    before = [e("1", "https://a/briefing-1", title="Press briefing")]
    after = [e("2", "https://a/briefing-2", title="Press briefing")]
    update = decide("s", key_entries(after, "s"), known_for(before), STATE)
    assert len(update.new) == 1


def test_title_and_date_dedupe_entries_without_links() -> None:
    before = [e(None, None, title="Statement of the ministry")]
    after = [e(None, None, title="Statement  of the MINISTRY")]
    update = decide("s", key_entries(after, "s"), known_for(before, has_link=False), STATE)
    assert not update.new
