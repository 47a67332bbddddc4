"""SQLite state: sources, entries and their identity keys, stories, digests.

One :class:`Store` owns one connection, used from one thread (the service's event loop or the
CLI). Every write happens inside :meth:`Store.transaction` (``BEGIN IMMEDIATE``), so a kill -9
at any instant leaves either the whole change or none of it (WAL journal). Datetimes are stored
as UTC ISO 8601 text, which sorts correctly. sqlite3 errors a user can fix (locked, read-only,
disk full, not a database) are translated into :class:`StorageError` here and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.dedupe import KnownEntry
from digest.errors import StorageError
from digest.identity import keys_for_ref
from digest.models import Entry, Source, SourceState, SourceUpdate, Story
from digest.stories import StoryItem, key_rank

SCHEMA_VERSION = 6
#: WAL pages written before SQLite copies them back into the database: a full poll writes
#: hundreds of megabytes, and every copy rewrites the same index pages and syncs the file, so
#: fewer, larger copies (32 MiB at the default page size) cost less
WAL_AUTOCHECKPOINT_PAGES = 8192
#: after a copy, the WAL file is cut back to this size
WAL_SIZE_LIMIT = 32 * 1024 * 1024

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE sources (
        name TEXT PRIMARY KEY,
        configured_url TEXT,
        url TEXT,
        etag TEXT,
        last_modified TEXT,
        body_hash TEXT,
        last_ok_at TEXT,
        last_error TEXT,
        last_error_at TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        next_poll_at TEXT,
        gone INTEGER NOT NULL DEFAULT 0,
        entry_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        guid TEXT,
        link TEXT,
        canonical_link TEXT,
        title TEXT NOT NULL,
        summary TEXT NOT NULL,
        content_html TEXT NOT NULL,
        authors TEXT NOT NULL DEFAULT '[]',
        published TEXT NOT NULL,
        updated TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        edited_at TEXT,
        content_hash TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '{}',
        story_id INTEGER,
        pruned INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX entries_published ON entries (published);
    CREATE INDEX entries_story ON entries (story_id);
    CREATE INDEX entries_link ON entries (link);
    -- Identity keys outlive pruned entries, so nothing is ever reported twice.
    CREATE TABLE entry_keys (
        key TEXT PRIMARY KEY,
        entry_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE entry_tags (
        tag TEXT NOT NULL,
        entry_id INTEGER NOT NULL,
        score REAL NOT NULL,
        PRIMARY KEY (tag, entry_id)
    ) WITHOUT ROWID;
    CREATE INDEX entry_tags_entry ON entry_tags (entry_id);
    CREATE TABLE stories (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        merged_into INTEGER
    );
    CREATE TABLE digests (
        id INTEGER PRIMARY KEY,
        list TEXT NOT NULL,
        period TEXT NOT NULL,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_try_at TEXT,
        UNIQUE (list, period)
    );
    CREATE TABLE digest_stories (
        digest_id INTEGER NOT NULL,
        story_id INTEGER NOT NULL,
        PRIMARY KEY (digest_id, story_id)
    ) WITHOUT ROWID;
    -- A story is mailed to a list at most once, whatever joins it later.
    CREATE TABLE mailed (
        list TEXT NOT NULL,
        story_id INTEGER NOT NULL,
        digest_id INTEGER NOT NULL,
        PRIMARY KEY (list, story_id)
    ) WITHOUT ROWID;
    CREATE TABLE digest_recipients (
        digest_id INTEGER NOT NULL,
        address TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (digest_id, address)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        kind TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        detail TEXT
    );
    """,
    2: """
    -- Hashes of the raw items of each source's last fetch: unchanged items skip parsing.
    CREATE TABLE feed_items (
        source TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (source, hash)
    ) WITHOUT ROWID;
    -- Why an entry joined or started its story, for explain after a restart.
    ALTER TABLE entries ADD COLUMN story_reason TEXT;
    """,
    3: """
    -- The story index loads the keys of recent entries by entry id.
    CREATE INDEX entry_keys_entry ON entry_keys (entry_id);
    """,
    4: """
    -- Story grouping's normalised words of each entry, computed once by the parser.
    ALTER TABLE entries ADD COLUMN terms TEXT;
    -- Grouping takes the oldest entries without a story, a batch at a time.
    CREATE INDEX entries_ungrouped ON entries (published, id) WHERE story_id IS NULL;
    """,
    5: """
    -- Every change to what the feeds are built from (entries, their tags, stories) moves this
    -- counter, so publishing can tell that nothing changed without loading a story. A table
    -- that the feeds come to depend on needs the same triggers.
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
    );
    INSERT INTO changes (id, generation) VALUES (1, 0);
    """
    + "".join(
        f"""
    CREATE TRIGGER {table}_{event.lower()}_counts AFTER {event} ON {table}
    BEGIN UPDATE changes SET generation = generation + 1 WHERE id = 1; END;
    """
        for table in ("entries", "entry_tags", "stories")
        for event in ("INSERT", "UPDATE", "DELETE")
    )
    + """
    -- What the last publish wrote and from what (digest.publish.Published, as JSON).
    CREATE TABLE published (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        record TEXT NOT NULL
    );
    """,
    6: """
    -- explain finds an entry by link through its identity keys; this index only cost writes.
    DROP INDEX entries_link;
    """,
}


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime reached storage")
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def story_uid(first_key: str) -> str:
    """A story's public id: stable across runs and databases, derived from its first entry."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'caucasus-digest:' + first_key)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRecord:
    id: int
    list: str
    period: str
    message_id: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    next_try_at: datetime | None
    story_ids: tuple[int, ...]
    #: recipient -> "accepted" or "refused"
    recipients: dict[str, str]


_USER_FIXABLE = (
    "locked",
    "busy",
    "readonly",
    "read-only",
    "disk",
    "full",
    "not a database",
    "unable to open",
    "disk i/o",
    "malformed",
    "permission",
    "no such table",
)


@contextmanager
def wrap_errors(what: str, path: Path) -> Iterator[None]:
    """Translate sqlite3 errors a user can act on into StorageError; let bugs through."""
    try:
        yield
    except sqlite3.Error as exc:
        text = str(exc).lower()
        if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and any(
            word in text for word in _USER_FIXABLE
        ):
            hint = _hint(text)
            raise StorageError(f"state database {path}: {what} failed ({exc}); {hint}") from None
        raise


def _hint(text: str) -> str:
    if "locked" in text or "busy" in text:
        return "another process holds the database; wait or stop the other digest process"
    if "readonly" in text or "read-only" in text or "permission" in text or "unable" in text:
        return "make the state folder writable by this user"
    if "full" in text or "disk" in text:
        return "free disk space; nothing was lost and the next run retries"
    return "the file may be damaged: restore it from a backup or move it aside to start afresh"


class Store:
    """The only way the rest of the code reads or writes state."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the state folder {self.path.parent}: {exc.strerror}; "
                "check the [service] state_dir setting and permissions"
            ) from None
        with wrap_errors("opening", self.path):
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self.db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        with wrap_errors("writing", self.path):
            self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            with wrap_errors("writing", self.path):
                yield self.db
        except BaseException:
            self._depth = 0
            with suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        with wrap_errors("committing", self.path):
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error:
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"state database {self.path} was written by a newer caucasus-digest "
                f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade the program"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(_MIGRATIONS[target]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={target}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with wrap_errors("reading", self.path):
            return self.db.execute(sql, params).fetchall()

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])

    # -- sources --------------------------------------------------------------------------

    def source_states(self, sources: Sequence[Source]) -> dict[str, SourceState]:
        """The state of each configured source; new or re-pointed sources start afresh."""
        rows = {r["name"]: r for r in self._query("SELECT * FROM sources")}
        out: dict[str, SourceState] = {}
        for src in sources:
            row = rows.get(src.name)
            # The same notion as politeness.current_state, which writes configured_url:
            # the configured URL, None for a local file. Comparing against the path here
            # made every file source start afresh on every poll (no schedule, no back-off).
            configured = src.url
            if row is None or row["configured_url"] != configured:
                out[src.name] = SourceState(
                    name=src.name,
                    url=src.url,
                    configured_url=configured,
                    entry_count=row["entry_count"] if row else 0,
                )
            else:
                out[src.name] = _state(row)
        return out

    def all_source_states(self) -> list[SourceState]:
        return [_state(r) for r in self._query("SELECT * FROM sources ORDER BY name")]

    def _save_state(self, state: SourceState) -> None:
        self.db.execute(
            """INSERT INTO sources (name, configured_url, url, etag, last_modified, body_hash,
                   last_ok_at, last_error, last_error_at, error_count, next_poll_at, gone,
                   entry_count)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT (name) DO UPDATE SET configured_url=excluded.configured_url,
                   url=excluded.url, etag=excluded.etag, last_modified=excluded.last_modified,
                   body_hash=excluded.body_hash, last_ok_at=excluded.last_ok_at,
                   last_error=excluded.last_error, last_error_at=excluded.last_error_at,
                   error_count=excluded.error_count, next_poll_at=excluded.next_poll_at,
                   gone=excluded.gone""",
            (
                state.name,
                state.configured_url,
                state.url,
                state.etag,
                state.last_modified,
                state.body_hash,
                _ts(state.last_ok_at),
                state.last_error,
                _ts(state.last_error_at),
                state.error_count,
                _ts(state.next_poll_at),
                int(state.gone),
                state.entry_count,
            ),
        )

    def save_state(self, state: SourceState) -> None:
        self.save_states([state])

    def save_states(self, states: Sequence[SourceState]) -> None:
        """Save several sources' states in one transaction (one commit, not one each)."""
        with self.transaction():
            for state in states:
                self._save_state(state)

    # -- entries --------------------------------------------------------------------------

    def lookup_keys(self, keys: Iterable[str]) -> dict[str, KnownEntry]:
        """The stored entry behind each known key (keys never seen are absent)."""
        keys = list(keys)
        out: dict[str, KnownEntry] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                f"""SELECT k.key, k.entry_id, e.content_hash, e.link IS NOT NULL AS has_link
                    FROM entry_keys k LEFT JOIN entries e ON e.id = k.entry_id
                    WHERE k.key IN ({marks})""",
                chunk,
            ):
                out[row["key"]] = KnownEntry(
                    entry_id=row["entry_id"],
                    content_hash=row["content_hash"],
                    has_link=bool(row["has_link"]),
                )
        return out

    def apply_update(self, update: SourceUpdate, now: datetime) -> list[int]:
        """Store one source's fetch outcome atomically; returns the new entries' ids."""
        with self.transaction() as db:
            # Ids are given here rather than by SQLite so that the rows go in one statement.
            # max(id) + 1 is what SQLite would give: prune never deletes the highest row.
            first = int(db.execute("SELECT coalesce(max(id), 0) + 1 FROM entries").fetchone()[0])
            new_ids = list(range(first, first + len(update.new)))
            seen = _ts(now)
            db.executemany(
                """INSERT INTO entries (id, source, guid, link, canonical_link, title, summary,
                       content_html, authors, published, updated, first_seen,
                       content_hash, tags, terms)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                [
                    (
                        entry_id,
                        update.source,
                        item.parsed.guid,
                        item.parsed.link,
                        item.canonical_link,
                        item.parsed.title,
                        item.parsed.summary,
                        item.parsed.content_html,
                        json.dumps(list(item.parsed.authors)),
                        _ts(item.parsed.published),
                        _ts(item.parsed.updated),
                        seen,
                        item.keys.content_hash,
                        _tags_json(item.tags, item.scores),
                        item.terms,
                    )
                    for entry_id, item in zip(new_ids, update.new, strict=True)
                ],
            )
            db.executemany(
                "INSERT OR IGNORE INTO entry_keys (key, entry_id) VALUES (?, ?)",
                [
                    (k, i)
                    for i, item in zip(new_ids, update.new, strict=True)
                    for k in item.keys.all()
                ],
            )
            db.executemany(
                "INSERT INTO entry_tags (tag, entry_id, score) VALUES (?, ?, ?)",
                [
                    (t, i, float(item.scores.get(t, 1.0)))
                    for i, item in zip(new_ids, update.new, strict=True)
                    for t in item.tags
                ],
            )
            for ch in update.changed:
                db.execute(
                    """UPDATE entries SET guid=?, link=?, canonical_link=?, title=?, summary=?,
                           content_html=?, authors=?, updated=?, edited_at=?, content_hash=?,
                           tags=?, terms=?
                       WHERE id=?""",
                    (
                        ch.parsed.guid,
                        ch.parsed.link,
                        ch.canonical_link,
                        ch.parsed.title,
                        ch.parsed.summary,
                        ch.parsed.content_html,
                        json.dumps(list(ch.parsed.authors)),
                        _ts(ch.parsed.updated),
                        seen,
                        ch.keys.content_hash,
                        _tags_json(ch.tags, ch.scores),
                        ch.terms,
                        ch.entry_id,
                    ),
                )
                self._write_tags(ch.entry_id, ch.tags, ch.scores)
            db.executemany(
                "INSERT OR IGNORE INTO entry_keys (key, entry_id) VALUES (?, ?)",
                list(update.extra_keys.items()),
            )
            if update.item_hashes is not None:
                # Only what changed: a feed usually keeps most of its items between fetches.
                current = set(update.item_hashes)
                stored = self.item_hashes(update.source)
                db.executemany(
                    "DELETE FROM feed_items WHERE source = ? AND hash = ?",
                    [(update.source, h) for h in stored - current],
                )
                db.executemany(
                    "INSERT INTO feed_items (source, hash) VALUES (?, ?)",
                    [(update.source, h) for h in current - stored],
                )
            state = update.state
            self._save_state(state)
            if update.new:
                db.execute(
                    "UPDATE sources SET entry_count = entry_count + ? WHERE name = ?",
                    (len(update.new), update.source),
                )
            return new_ids

    def item_hashes(self, source: str) -> set[str]:
        """Hashes of the raw items of the source's last stored fetch."""
        rows = self._query("SELECT hash FROM feed_items WHERE source = ?", (source,))
        return {r[0] for r in rows}

    def _write_tags(self, entry_id: int, tags: Sequence[str], scores: Any) -> None:
        self.db.execute("DELETE FROM entry_tags WHERE entry_id = ?", (entry_id,))
        self.db.executemany(
            "INSERT INTO entry_tags (tag, entry_id, score) VALUES (?, ?, ?)",
            [(t, entry_id, float(scores.get(t, 1.0))) for t in tags],
        )

    def set_tags(self, entry_id: int, tags: Sequence[str], scores: Any) -> None:
        """Replace an entry's tags (``digest retag``); call inside a transaction."""
        self.db.execute(
            "UPDATE entries SET tags = ? WHERE id = ?", (_tags_json(tags, scores), entry_id)
        )
        self._write_tags(entry_id, tags, scores)

    def entry(self, entry_id: int) -> Entry | None:
        rows = self._query("SELECT * FROM entries WHERE id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    def find_entry(self, ref: str) -> Entry | None:
        """An entry by id, link, canonical link or guid (for ``digest explain``)."""
        if ref.isdigit():
            return self.entry(int(ref))
        keys = keys_for_ref(ref)
        if keys:
            marks = ",".join("?" * len(keys))
            query = f"SELECT entry_id FROM entry_keys WHERE key IN ({marks})"
            for row in self._query(query, keys):
                if found := self.entry(row[0]):
                    return found
        # A guid scoped to its source has no key to look up: the rare case that scans.
        rows = self._query(
            "SELECT * FROM entries WHERE link = ? OR canonical_link = ? OR guid = ? LIMIT 1",
            (ref, ref, ref),
        )
        return _entry(rows[0]) if rows else None

    def iter_entries(self, batch: int = 500) -> Iterator[list[Entry]]:
        last = 0
        while True:
            rows = self._query(
                "SELECT * FROM entries WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            )
            if not rows:
                return
            last = rows[-1]["id"]
            yield [_entry(r) for r in rows]

    def count_entries(self) -> int:
        return int(self._query("SELECT count(*) FROM entries")[0][0])

    def ungrouped_items(
        self, limit: int, summary_chars: int, source: str | None = None
    ) -> list[StoryItem]:
        """The oldest ``limit`` entries (of ``source``, if given) that belong to no story yet,
        as grouping reads them."""
        where = "story_id IS NULL" if source is None else "story_id IS NULL AND source = ?"
        rows = self._story_items(
            where + " ORDER BY published, id LIMIT ?",
            (limit,) if source is None else (source, limit),
            summary_chars,
            index="entries_ungrouped",
        )
        return [item for item, _ in rows]

    def window_items(self, since: datetime, summary_chars: int) -> list[tuple[StoryItem, int]]:
        """The grouped entries published since ``since``, oldest first, with their story."""
        rows = self._story_items(
            "published >= ? AND story_id IS NOT NULL ORDER BY published, id",
            (_ts(since),),
            summary_chars,
        )
        return [(item, story or 0) for item, story in rows]

    def _story_items(
        self, where: str, params: Sequence[Any], summary_chars: int, index: str | None = None
    ) -> list[tuple[StoryItem, int | None]]:
        """Entries as story grouping sees them (keys in the order that names a story)."""
        # Left alone, SQLite would search entries_story and sort all the ungrouped entries.
        indexed = f"INDEXED BY {index}" if index else ""
        rows = self._query(
            # The summary only matters to an entry whose words were never computed.
            f"""SELECT id, source, published, title,
                       CASE WHEN terms IS NULL THEN substr(summary, 1, ?) ELSE '' END AS summary,
                       canonical_link, tags, terms, story_id
                FROM entries {indexed} WHERE {where}""",
            (summary_chars, *params),
        )
        keys = self.entry_keys([r["id"] for r in rows])
        out: list[tuple[StoryItem, int | None]] = []
        for r in rows:
            published = _dt(r["published"])
            assert published is not None
            item = StoryItem(
                entry_id=r["id"],
                source=r["source"],
                published=published,
                title=r["title"],
                summary=r["summary"],
                link_key=r["canonical_link"],
                keys=tuple(sorted(keys.get(r["id"], ()), key=key_rank)),
                tags=tuple(json.loads(r["tags"])),
                terms=r["terms"],
            )
            out.append((item, r["story_id"]))
        return out

    def entry_keys(self, entry_ids: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for i in range(0, len(entry_ids), 500):
            chunk = list(entry_ids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                f"SELECT key, entry_id FROM entry_keys WHERE entry_id IN ({marks})", chunk
            ):
                out.setdefault(row["entry_id"], []).append(row["key"])
        return out

    def prune(self, before: datetime) -> int:
        """Delete entries published before ``before``; their identity keys stay, so an old
        item that a feed lists again is still recognised and never reported twice."""
        with self.transaction() as db:
            # Entries of a digest still waiting to be delivered stay until it is sent. The row
            # with the highest id stays too: SQLite hands out max(id) + 1, and a reused id
            # would make the kept identity keys of the deleted entry point at a new one.
            old = """SELECT id FROM entries WHERE published < ? AND coalesce(story_id, 0) NOT IN
                     (SELECT s.story_id FROM digest_stories s JOIN digests d
                      ON d.id = s.digest_id WHERE d.status = 'pending')
                     AND id < (SELECT max(id) FROM entries)"""
            db.execute(f"DELETE FROM entry_tags WHERE entry_id IN ({old})", (_ts(before),))
            cur = db.execute(f"DELETE FROM entries WHERE id IN ({old})", (_ts(before),))
            # The newest story row stays even when empty, so story ids are never reused.
            db.execute("""DELETE FROM stories WHERE id NOT IN
                          (SELECT story_id FROM entries WHERE story_id IS NOT NULL)
                          AND id NOT IN (SELECT story_id FROM digest_stories)
                          AND id < (SELECT max(id) FROM stories)""")
            return cur.rowcount

    # -- stories --------------------------------------------------------------------------

    def next_story_id(self) -> int:
        return int(self._query("SELECT coalesce(max(id), 0) + 1 FROM stories")[0][0])

    def create_story(self, story_id: int, first_key: str, now: datetime) -> None:
        self.create_stories([(story_id, first_key)], now)

    def create_stories(self, stories: Sequence[tuple[int, str]], now: datetime) -> None:
        """New stories as (id, identity key of the first entry); call inside a transaction."""
        self.db.executemany(
            "INSERT INTO stories (id, uid, created_at) VALUES (?, ?, ?)",
            [(story_id, story_uid(key), _ts(now)) for story_id, key in stories],
        )

    def assign_story(self, entry_id: int, story_id: int, reason: str | None = None) -> None:
        self.assign_stories([(entry_id, story_id, reason)])

    def assign_stories(self, rows: Sequence[tuple[int, int, str | None]]) -> None:
        """Record (entry id, story id, reason) for many entries; call inside a transaction."""
        self.db.executemany(
            "UPDATE entries SET story_id = ?, story_reason = ? WHERE id = ?",
            [(story, reason, entry) for entry, story, reason in rows],
        )

    def story_reason(self, entry_id: int) -> str | None:
        rows = self._query("SELECT story_reason FROM entries WHERE id = ?", (entry_id,))
        return rows[0][0] if rows else None

    def merge_stories(self, survivor: int, absorbed: int) -> None:
        """Fold ``absorbed`` into ``survivor``; a mailed story stays mailed after the merge."""
        db = self.db
        db.execute("UPDATE entries SET story_id = ? WHERE story_id = ?", (survivor, absorbed))
        db.execute("UPDATE stories SET merged_into = ? WHERE id = ?", (survivor, absorbed))
        db.execute(
            "UPDATE OR IGNORE mailed SET story_id = ? WHERE story_id = ?", (survivor, absorbed)
        )
        db.execute("DELETE FROM mailed WHERE story_id = ?", (absorbed,))
        # A digest still waiting to be delivered keeps the merged story in it.
        db.execute(
            "UPDATE OR IGNORE digest_stories SET story_id = ? WHERE story_id = ?",
            (survivor, absorbed),
        )
        db.execute("DELETE FROM digest_stories WHERE story_id = ?", (absorbed,))

    def stories(
        self,
        *,
        tag: str | None,
        since: datetime | None = None,
        limit: int | None = None,
        story_ids: Sequence[int] | None = None,
        exclude_mailed_to: str | None = None,
        also_tag: str | None = None,
    ) -> list[Story]:
        """Stories with at least one entry carrying ``tag`` (and, with ``also_tag``, one
        carrying that tag too), newest first."""
        where: list[str] = ["e.story_id IS NOT NULL"]
        params: list[Any] = []
        if tag is not None:
            where.append("e.id IN (SELECT entry_id FROM entry_tags WHERE tag = ?)")
            params.append(tag)
        if also_tag is not None:
            where.append("""e.story_id IN (SELECT x.story_id FROM entries x
                            JOIN entry_tags t ON t.entry_id = x.id WHERE t.tag = ?)""")
            params.append(also_tag)
        if since is not None:
            where.append("e.published >= ?")
            params.append(_ts(since))
        if story_ids is not None:
            where.append(f"e.story_id IN ({','.join('?' * len(story_ids)) or 'NULL'})")
            params.extend(story_ids)
        if exclude_mailed_to is not None:
            where.append("e.story_id NOT IN (SELECT story_id FROM mailed WHERE list = ?)")
            params.append(exclude_mailed_to)
        sql = f"""SELECT e.story_id, max(e.published) AS newest FROM entries e
                  WHERE {" AND ".join(where)} GROUP BY e.story_id
                  ORDER BY newest DESC, e.story_id DESC"""
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        ids = [r["story_id"] for r in self._query(sql, params)]
        return self._load_stories(ids)

    def _load_stories(self, ids: Sequence[int]) -> list[Story]:
        if not ids:
            return []
        by_story: dict[int, list[Entry]] = {i: [] for i in ids}
        uids: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                f"SELECT * FROM entries WHERE story_id IN ({marks}) ORDER BY published, id",
                chunk,
            ):
                by_story[row["story_id"]].append(_entry(row))
            for row in self._query(f"SELECT id, uid FROM stories WHERE id IN ({marks})", chunk):
                uids[row["id"]] = row["uid"]
        out = []
        for sid in ids:
            entries = by_story[sid]
            if not entries:
                continue
            out.append(
                Story(
                    id=sid,
                    uid=uids.get(sid, story_uid(f"story:{sid}")),
                    lead=entries[0],
                    others=tuple(entries[1:]),
                )
            )
        return out

    def story(self, story_id: int) -> Story | None:
        found = self._load_stories([story_id])
        return found[0] if found else None

    # -- digests --------------------------------------------------------------------------

    def digest(self, list_name: str, period: str) -> DigestRecord | None:
        rows = self._query(
            "SELECT * FROM digests WHERE list = ? AND period = ?", (list_name, period)
        )
        return self._digest(rows[0]) if rows else None

    def unfinished_digests(self, list_name: str) -> list[DigestRecord]:
        rows = self._query(
            "SELECT * FROM digests WHERE list = ? AND status = 'pending' ORDER BY id", (list_name,)
        )
        return [self._digest(r) for r in rows]

    def last_digest(self, list_name: str) -> DigestRecord | None:
        rows = self._query(
            "SELECT * FROM digests WHERE list = ? ORDER BY id DESC LIMIT 1", (list_name,)
        )
        return self._digest(rows[0]) if rows else None

    def _digest(self, row: sqlite3.Row) -> DigestRecord:
        stories = tuple(
            r[0]
            for r in self._query(
                "SELECT story_id FROM digest_stories WHERE digest_id = ? ORDER BY story_id",
                (row["id"],),
            )
        )
        recipients = {
            r["address"]: r["status"]
            for r in self._query(
                "SELECT address, status FROM digest_recipients WHERE digest_id = ?", (row["id"],)
            )
        }
        return DigestRecord(
            id=row["id"],
            list=row["list"],
            period=row["period"],
            message_id=row["message_id"],
            status=row["status"],
            attempts=row["attempts"],
            created_at=_dt(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
            sent_at=_dt(row["sent_at"]),
            last_error=row["last_error"],
            next_try_at=_dt(row["next_try_at"]),
            story_ids=stories,
            recipients=recipients,
        )

    def create_digest(
        self,
        list_name: str,
        period: str,
        message_id: str,
        story_ids: Sequence[int],
        now: datetime,
        status: str = "pending",
    ) -> DigestRecord:
        """Claim the stories for this (list, period) so no other digest mails them.

        ``status="skipped"`` records an empty period that was not mailed, so it counts as done.
        """
        with self.transaction() as db:
            cur = db.execute(
                """INSERT INTO digests (list, period, message_id, status, created_at)
                   VALUES (?, ?, ?, ?, ?)""",
                (list_name, period, message_id, status, _ts(now)),
            )
            digest_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO digest_stories (digest_id, story_id) VALUES (?, ?)",
                [(digest_id, s) for s in story_ids],
            )
            db.executemany(
                "INSERT OR IGNORE INTO mailed (list, story_id, digest_id) VALUES (?, ?, ?)",
                [(list_name, s, digest_id) for s in story_ids],
            )
        found = self.digest(list_name, period)
        assert found is not None
        return found

    def record_delivery(
        self,
        digest_id: int,
        *,
        accepted: Iterable[str],
        refused: dict[str, str],
        error: str | None,
        now: datetime,
        next_try_at: datetime | None,
    ) -> None:
        """Record one delivery attempt; the digest is sent once no recipient is pending."""
        with self.transaction() as db:
            db.executemany(
                """INSERT INTO digest_recipients (digest_id, address, status, detail, at)
                   VALUES (?, ?, 'accepted', NULL, ?)
                   ON CONFLICT (digest_id, address) DO UPDATE SET status='accepted',
                       detail=NULL, at=excluded.at""",
                [(digest_id, a, _ts(now)) for a in accepted],
            )
            db.executemany(
                """INSERT INTO digest_recipients (digest_id, address, status, detail, at)
                   VALUES (?, ?, 'refused', ?, ?)
                   ON CONFLICT (digest_id, address) DO UPDATE SET status='refused',
                       detail=excluded.detail, at=excluded.at
                   WHERE digest_recipients.status != 'accepted'""",
                [(digest_id, a, why, _ts(now)) for a, why in refused.items()],
            )
            done = error is None and not refused
            db.execute(
                """UPDATE digests SET attempts = attempts + 1, status = ?, last_error = ?,
                       sent_at = CASE WHEN ? THEN ? ELSE sent_at END, next_try_at = ?
                   WHERE id = ?""",
                (
                    "sent" if done else "pending",
                    error,
                    done,
                    _ts(now),
                    None if done else _ts(next_try_at),
                    digest_id,
                ),
            )

    # -- bookkeeping ----------------------------------------------------------------------

    def mark_run(self, kind: str, now: datetime, detail: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (kind, at, detail) VALUES (?, ?, ?) ON CONFLICT (kind) "
                "DO UPDATE SET at = excluded.at, detail = excluded.detail",
                (kind, _ts(now), detail),
            )

    def last_run(self, kind: str) -> datetime | None:
        rows = self._query("SELECT at FROM runs WHERE kind = ?", (kind,))
        return _dt(rows[0]["at"]) if rows else None

    def publish_state(self) -> tuple[int, str | None]:
        """The change counter of entries, tags and stories, and the last publish's record."""
        rows = self._query(
            "SELECT c.generation, p.record FROM changes c LEFT JOIN published p ON p.id = 1"
        )
        return int(rows[0][0]), rows[0][1]

    def mark_published(self, record: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO published (id, record) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                (record,),
            )


def _statements(script: str) -> list[str]:
    """Split a script into statements; a trigger's body keeps its semicolons."""
    out: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    return out


def _tags_json(tags: Sequence[str], scores: Any) -> str:
    return json.dumps({t: round(float(scores.get(t, 1.0)), 3) for t in tags})


def _state(row: sqlite3.Row) -> SourceState:
    return SourceState(
        name=row["name"],
        url=row["url"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
        last_ok_at=_dt(row["last_ok_at"]),
        last_error=row["last_error"],
        last_error_at=_dt(row["last_error_at"]),
        error_count=row["error_count"],
        next_poll_at=_dt(row["next_poll_at"]),
        gone=bool(row["gone"]),
        configured_url=row["configured_url"],
        entry_count=row["entry_count"],
    )


def _entry(row: sqlite3.Row) -> Entry:
    tags: dict[str, float] = json.loads(row["tags"])
    published = _dt(row["published"])
    updated = _dt(row["updated"])
    first_seen = _dt(row["first_seen"])
    assert published and updated and first_seen
    return Entry(
        id=row["id"],
        source=row["source"],
        guid=row["guid"],
        link=row["link"],
        canonical_link=row["canonical_link"],
        title=row["title"],
        summary=row["summary"],
        content_html=row["content_html"],
        published=published,
        updated=updated,
        first_seen=first_seen,
        tags=tuple(tags),
        scores=tags,
        story_id=row["story_id"],
        authors=tuple(json.loads(row["authors"])),
    )
