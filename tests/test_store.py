"""Storage against a real SQLite file: transactions, keys, stories, digests, errors."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.dedupe import decide, key_entries
from digest.errors import StorageError
from digest.models import ParsedEntry, Source, SourceState
from digest.store import Store, story_uid

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def entry(
    n: int,
    *,
    link: str | None = None,
    title: str | None = None,
    summary: str = "text",
    when: datetime = NOW,
) -> ParsedEntry:
    return ParsedEntry(
        guid=f"https://example.am/news/{n}",
        link=link or f"https://example.am/news/{n}",
        title=title or f"Item {n}",
        summary=summary,
        content_html="",
        published=when,
        updated=when,
    )


def store_entries(store: Store, source: str, entries: list[ParsedEntry]) -> list[int]:
    keyed = key_entries(entries, source)
    known = store.lookup_keys({k for e in keyed for k in e.keys.all()})
    update = decide(source, keyed, known, SourceState(name=source, url="https://x"))
    return store.apply_update(update, NOW)


def test_new_entries_are_stored_once_across_runs(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    with Store(db) as store:
        assert len(store_entries(store, "a", [entry(1), entry(2)])) == 2
    with Store(db) as store:
        assert store_entries(store, "a", [entry(1), entry(2), entry(3)]) == [3]
        assert store.count_entries() == 3
        assert store.integrity_check() == "ok"


def test_same_article_in_two_sources_http_and_utm_is_one_entry(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        store_entries(store, "a", [entry(1)])
        other = entry(9, link="http://EXAMPLE.am/news/1?utm_source=rss#top")
        other = ParsedEntry(**{**_fields(other), "guid": "other-guid-9"})
        assert store_entries(store, "b", [other]) == []
        assert store.count_entries() == 1


def _fields(e: ParsedEntry) -> dict[str, object]:
    return {f: getattr(e, f) for f in e.__dataclass_fields__}


def test_edited_entry_is_updated_in_place(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        [eid] = store_entries(store, "a", [entry(1, summary="first version")])
        assert store_entries(store, "a", [entry(1, summary="corrected version")]) == []
        stored = store.entry(eid)
        assert stored is not None and stored.summary == "corrected version"
        assert store.count_entries() == 1


def test_rollback_leaves_nothing_behind(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store_entries(store, "a", [entry(1)])
            raise RuntimeError("crash in the middle")
        assert store.count_entries() == 0
        assert store.lookup_keys(["link:https://example.am/news/1"]) == {}


def test_source_state_round_trip_and_repointing(tmp_path: Path) -> None:
    src = Source(name="a", url="https://a.example/feed")
    with Store(tmp_path / "s.sqlite3") as store:
        state = store.source_states([src])["a"]
        store.save_state(
            SourceState(**{**_fields(state), "etag": '"v1"', "error_count": 2, "next_poll_at": NOW})
        )
        again = store.source_states([src])["a"]
        assert again.etag == '"v1"' and again.error_count == 2 and again.next_poll_at == NOW
        moved = store.source_states([Source(name="a", url="https://a.example/new")])["a"]
        assert moved.etag is None and moved.url == "https://a.example/new"


def test_stories_merge_and_mailed_survives(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        ids = store_entries(store, "a", [entry(1), entry(2, when=NOW + timedelta(hours=1))])
        with store.transaction():
            store.create_story(1, "k1", NOW)
            store.create_story(2, "k2", NOW)
            store.assign_story(ids[0], 1)
            store.assign_story(ids[1], 2)
            store.set_tags(ids[0], ["sel"], {"sel": 2.0})
        digest = store.create_digest("daily", "2026-11-26", "<m@x>", [2], NOW)
        assert digest.story_ids == (2,)
        with store.transaction():
            store.merge_stories(1, 2)
        [story] = store.stories(tag="sel")
        assert story.id == 1 and [e.id for e in story.entries] == ids
        assert story.uid == story_uid("k1")
        assert store.stories(tag="sel", exclude_mailed_to="daily") == []
        pending = store.digest("daily", "2026-11-26")
        assert pending is not None and pending.story_ids == (1,)  # the resend keeps the story


def test_partial_delivery_keeps_accepted_recipients(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        d = store.create_digest("daily", "2026-11-26", "<m@x>", [], NOW)
        store.record_delivery(
            d.id,
            accepted=["a@x.org"],
            refused={"b@x.org": "550 no"},
            error=None,
            now=NOW,
            next_try_at=NOW + timedelta(minutes=5),
        )
        d = store.digest("daily", "2026-11-26")
        assert d is not None and d.status == "pending"
        assert d.recipients == {"a@x.org": "accepted", "b@x.org": "refused"}
        store.record_delivery(
            d.id, accepted=["b@x.org"], refused={}, error=None, now=NOW, next_try_at=None
        )
        d = store.digest("daily", "2026-11-26")
        assert d is not None and d.status == "sent" and d.attempts == 2


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    bad = tmp_path / "s.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="damaged|not a database"):
        Store(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_state_is_a_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "ro" / "s.sqlite3"
    Store(db).close()
    os.chmod(db, 0o444)
    os.chmod(db.parent, 0o555)
    try:
        with Store(db) as store, pytest.raises(StorageError, match="writable"):
            store_entries(store, "a", [entry(1)])
    finally:
        os.chmod(db.parent, 0o755)


def test_read_only_connection_write_is_a_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    Store(db).close()
    store = Store(db)
    store.db.close()
    store.db = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StorageError, match="writable"):
        store_entries(store, "a", [entry(1)])
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=99")
    con.close()
    with pytest.raises(StorageError, match="newer"):
        Store(db)


def test_pruned_entries_are_never_new_again(tmp_path: Path) -> None:
    old = NOW - timedelta(days=400)
    with Store(tmp_path / "s.sqlite3") as store:
        store_entries(store, "a", [entry(1, when=old), entry(2)])
        claimed = store_entries(store, "a", [entry(3, when=old)])
        with store.transaction():
            store.create_story(1, "k", NOW)
            store.assign_story(claimed[0], 1)
        store.create_digest("daily", "p", "<m@x>", [1], NOW)  # pending: kept until sent
        assert store.prune(NOW - timedelta(days=365)) == 1
        assert store.count_entries() == 2
        assert (
            store_entries(store, "a", [entry(1, when=old), entry(1, when=old, summary="edited")])
            == []
        )
        assert store.integrity_check() == "ok"


def test_pruning_never_lets_a_new_entry_inherit_old_keys(tmp_path: Path) -> None:
    old = NOW - timedelta(days=400)
    with Store(tmp_path / "s.sqlite3") as store:
        store_entries(store, "a", [entry(1, when=old), entry(2, when=old)])
        store.prune(NOW - timedelta(days=365))
        [new_id] = store_entries(store, "a", [entry(3)])
        # the pruned entry's keys still point at an id that no new entry has taken
        keys = store.lookup_keys(
            key_entries([entry(1, when=old), entry(2, when=old)], "a")[0].keys.all()
        )
        assert keys and all(k.entry_id != new_id for k in keys.values())


def test_stories_of_a_selection_and_a_tag_newest_first_and_bounded(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        ids = store_entries(
            store, "a", [entry(n, when=NOW - timedelta(hours=n)) for n in (1, 2, 3)]
        )
        with store.transaction():
            for sid, eid in enumerate(ids, start=1):
                store.create_story(sid, f"k{sid}", NOW)
                store.assign_story(eid, sid)
            store.set_tags(ids[0], ["sel"], {})
            store.set_tags(ids[1], ["sel", "armenia"], {})
            store.set_tags(ids[2], ["sel", "armenia"], {})
        assert [s.id for s in store.stories(tag="sel", limit=2)] == [1, 2]
        assert [s.id for s in store.stories(tag="sel", also_tag="armenia")] == [2, 3]
        assert [s.id for s in store.stories(tag="sel", also_tag="armenia", limit=1)] == [2]


def test_the_wal_is_copied_back_in_large_steps_and_cut_back_after(tmp_path: Path) -> None:
    from digest.store import WAL_AUTOCHECKPOINT_PAGES, WAL_SIZE_LIMIT

    store = Store(tmp_path / "digest.sqlite3")
    try:
        pragma = store.db.execute
        assert pragma("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert pragma("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT_PAGES
        assert pragma("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT
        # a copy made after more than the limit was written leaves a WAL of at most the limit
        page = pragma("PRAGMA page_size").fetchone()[0]
        big = "x" * (page * 2)
        with store.transaction() as db:
            db.execute("CREATE TABLE filler (v TEXT)")
            db.executemany(
                "INSERT INTO filler VALUES (?)",
                [(big,)] * (WAL_SIZE_LIMIT // len(big) + 50),
            )
        wal = tmp_path / "digest.sqlite3-wal"
        assert wal.stat().st_size > WAL_SIZE_LIMIT
        pragma("PRAGMA wal_checkpoint(PASSIVE)")
        with store.transaction() as db:  # the next write starts the WAL over, cut back
            db.execute("INSERT INTO filler VALUES ('y')")
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
    finally:
        store.close()


def test_raw_item_hashes_follow_each_fetch_and_stay_per_source(tmp_path: Path) -> None:
    from dataclasses import replace

    def remember(store: Store, source: str, hashes: tuple[str, ...] | None) -> None:
        update = decide(source, [], {}, SourceState(name=source, url="https://x"))
        store.apply_update(replace(update, item_hashes=hashes), NOW)

    with Store(tmp_path / "s.sqlite3") as store:
        remember(store, "a", ("h1", "h2", "h3"))
        remember(store, "b", ("h1", "h9"))
        remember(store, "a", ("h4", "h2", "h3"))  # one item came, one left
        assert store.item_hashes("a") == {"h2", "h3", "h4"}
        remember(store, "a", None)  # a document that could not be split changes nothing
        assert store.item_hashes("a") == {"h2", "h3", "h4"}
        remember(store, "a", ())
        assert store.item_hashes("a") == set()
        assert store.item_hashes("b") == {"h1", "h9"}


def test_an_entry_is_found_by_link_guid_or_id_through_its_keys(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        short = ParsedEntry(**{**_fields(entry(3)), "guid": "n-3", "link": None})
        first, _, third = store_entries(store, "a", [entry(1), entry(2), short])
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        for ref in (
            "https://example.am/news/1",
            "http://EXAMPLE.am/news/1?utm_source=rss#top",  # the same canonical link
        ):
            found = store.find_entry(ref)
            assert found is not None and found.id == first
        # Found through the indexed identity keys: no statement read the entries table
        # other than by id.
        assert not [s for s in statements if "FROM entries WHERE link" in s]
        found = store.find_entry(str(third))
        assert found is not None and found.guid == "n-3"
        # A guid scoped to its source has no global key: found by the fallback scan.
        found = store.find_entry("n-3")
        assert found is not None and found.id == third
        assert store.find_entry("https://example.am/news/404") is None
        indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert "entries_link" not in indexes


def test_grouping_reads_a_summary_only_for_entries_without_stored_words(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        store_entries(store, "a", [entry(1, summary="Pashinyan met Aliyev"), entry(2)])
        # Entry 1 as the parser stores it now, with its words; entry 2 as an older one.
        store.db.execute("UPDATE entries SET terms = 'words' WHERE id = 1")
        items = {i.entry_id: i for i in store.ungrouped_items(10, summary_chars=600)}
        assert (items[1].summary, items[1].terms) == ("", "words")
        assert (items[2].summary, items[2].terms) == ("text", None)
