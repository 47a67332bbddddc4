"""When the machine says no: a read-only state folder, a full disk, an unwritable output folder.

Each fault is real. Root ignores file permissions, so as root a folder is made read-only with a
read-only bind mount (``mount -o remount,ro,bind``: the kernel answers EROFS to everyone), or
failing that with ``chattr +i``; without either the test is skipped and says why. A full disk is
SQLite's own ``max_page_count`` limit on the store's connection: the database engine answers
SQLITE_FULL exactly as it does when the disk has no room left.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from digest.config import load_config
from digest.errors import PublishError, StorageError
from digest.service import Service
from tests.servers import FeedServer
from tests.smtp import SmtpServer
from tests.test_pipeline import FETCH, Item, open_pipeline, poll, rss, sources_toml

WriteConfig = Callable[..., Path]
ROOT = Path(__file__).resolve().parents[1]

#: titles the shipped rules select, so the items are published and mailed
TITLES = (
    "Armenian and Azerbaijani foreign ministers hold peace talks in Washington",
    "Georgian prime minister meets EU foreign ministers in Brussels on visa talks",
    "Azerbaijan and Armenia sign border delimitation protocol after peace talks",
)


def items(source: str, count: int, *, summary_bytes: int = 0) -> list[Item]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        Item(
            title=f"{TITLES[i % len(TITLES)]} ({source} report {i})",
            link=f"https://{source}.example/news/{i}",
            guid=f"{source}-{i}",
            summary=f"Report {i} from {source}. " + "Talks went on. " * (summary_bytes // 15),
            published=now - timedelta(minutes=10 + i),
        )
        for i in range(count)
    ]


def stored(db: Path) -> list[tuple[str, str]]:
    """(source, guid) of every stored entry, duplicates included, from a fresh connection."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return sorted((r[0], r[1]) for r in conn.execute("SELECT source, guid FROM entries"))


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def digest_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- a folder nobody can write ----------------------------------------------------------------


def _run(*cmd: str | Path) -> bool:
    if shutil.which(str(cmd[0])) is None:
        return False
    done = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def _writable(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


@contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make ``folder`` read-only for this process, whoever it runs as; yields how.

    Skips the test (with the reason) when this machine offers no way that holds for root.
    """
    if os.geteuid() != 0:
        files = [p for p in folder.rglob("*") if p.is_file()]
        for path in files:
            path.chmod(0o444)
        folder.chmod(0o555)
        try:
            yield "chmod 0555 on the folder, 0444 on its files"
        finally:
            folder.chmod(0o755)
            for path in files:
                path.chmod(0o644)
        return
    how = None
    if _run("mount", "--bind", folder, folder):
        if _run("mount", "-o", "remount,ro,bind", folder, folder) and not _writable(folder):
            how = "a read-only bind mount"
        else:
            _run("umount", folder)
    if how is not None:
        try:
            yield how
        finally:
            if not _run("umount", folder):
                _run("umount", "-l", folder)
        return
    immutable = [*(p for p in folder.rglob("*") if p.is_file()), folder]
    if _run("chattr", "+i", *immutable) and not _writable(folder):
        try:
            yield "chattr +i"
        finally:
            _run("chattr", "-i", *immutable)
        return
    _run("chattr", "-i", *immutable)
    pytest.skip(
        "running as root, which ignores file permissions, and neither a read-only bind mount "
        "nor chattr +i works here, so no folder can be made read-only for this process"
    )


def test_a_read_only_state_folder_is_named_and_left_intact(
    tmp_path: Path, feed_server: FeedServer, write_config: WriteConfig
) -> None:
    served = items("wire", 6)
    feed_server.add("/wire.xml", rss(served), etag='"w1"')
    config = write_config(FETCH + sources_toml(feed_server, {"wire": "/wire.xml"}))
    assert digest_cli(config, "poll").returncode == 0
    state = tmp_path / "state"
    db = state / "digest.sqlite3"
    assert stored(db) == sorted(("wire", it.guid or "") for it in served)
    before = snapshot(state)

    feed_server.add("/wire.xml", rss(served + items("late", 2)), etag='"w2"')
    with read_only(state):
        for args in (("poll",), ("run", "--once")):
            done = digest_cli(config, *args)
            assert done.returncode != 0, args
            assert str(state) in done.stderr, (args, done.stderr)
            assert "writable" in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr, (args, done.stderr)
        # Reading may work or not (SQLite needs to create its shared-memory file to read a
        # WAL database); either way the answer is a sentence, not a traceback.
        done = digest_cli(config, "status")
        assert done.returncode == 0 or str(state) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert snapshot(state) == before

    # Writable again: nothing was damaged, and the next poll goes on from where it was.
    assert integrity(db) == "ok"
    assert digest_cli(config, "poll", "--all").returncode == 0
    assert stored(db) == sorted(("wire", it.guid or "") for it in served + items("late", 2))


def test_a_full_disk_rolls_the_source_back_and_the_next_poll_stores_everything_once(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    feeds = {
        "small": items("small", 4),
        "big": items("big", 120, summary_bytes=3000),
        "mid": items("mid", 30, summary_bytes=1000),
    }
    for name, its in feeds.items():
        feed_server.add(f"/{name}.xml", rss(its), etag=f'"{name}-1"')
    config = write_config(
        FETCH + sources_toml(feed_server, {name: f"/{name}.xml" for name in feeds})
    )
    with open_pipeline(config) as pipe:
        db = pipe.store.db
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        usual = int(db.execute("PRAGMA max_page_count").fetchone()[0])
        # Room for a few pages only: the big feed (about 400 KB) cannot fit.
        db.execute(f"PRAGMA max_page_count = {pages + 8}")

        with pytest.raises(StorageError) as failed:
            poll(pipe)
        message = str(failed.value)
        assert str(pipe.config.db_path) in message
        assert "free disk space" in message
        assert pipe.store.integrity_check() == "ok"
        # Each source's fetch is one transaction: stored whole or not at all.
        after_failure = stored(pipe.config.db_path)
        for name, its in feeds.items():
            mine = [row for row in after_failure if row[0] == name]
            assert mine in ([], sorted((name, it.guid or "") for it in its)), name
        assert not [row for row in after_failure if row[0] == "big"]

        # Space comes back: one more poll stores everything, once.
        db.execute(f"PRAGMA max_page_count = {usual}")
        report = poll(pipe)
        assert not report.failed
    expected = sorted((name, it.guid or "") for name, its in feeds.items() for it in its)
    assert stored(pipe.config.db_path) == expected
    assert integrity(pipe.config.db_path) == "ok"


def test_an_unwritable_output_folder_fails_publishing_and_the_service_goes_on(
    tmp_path: Path,
    feed_server: FeedServer,
    smtp_server: SmtpServer,
    write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = items("wire", 3)
    feed_server.add("/wire.xml", rss(served), etag='"w1"')
    config = write_config(
        FETCH + f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        'from_address = "digest@example.org"\ntimeout = 10\n\n'
        '[[digests]]\nname = "daily"\nrecipients = ["reader@example.org"]\n'
        'time = "00:00"\ntimezone = "UTC"\n\n' + sources_toml(feed_server, {"wire": "/wire.xml"})
    )
    public = tmp_path / "public"
    public.mkdir()
    svc = Service(load_config(config))
    try:
        with read_only(public), caplog.at_level(logging.ERROR, "digest"):
            report, (written, _), outcomes = asyncio.run(svc.run_once())
            assert report.new == len(served) and not report.failed
            assert written == []
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(
                "publishing failed" in e and str(public) in e and "writable" in e for e in errors
            ), errors
            with pytest.raises(PublishError, match="writable") as failed:
                svc.pipeline.publish(datetime.now(UTC))
            assert str(public) in str(failed.value)
            # The digest does not depend on the feed files.
            assert [o.status for o in outcomes] == ["sent"]
            assert len(smtp_server.received) == 1
            assert list(public.iterdir()) == []

        # The folder is writable again: the next cycle publishes.
        asyncio.run(svc.poll_and_publish())
    finally:
        svc.close()
    feed = feedparser.parse((public / "feed.xml").read_bytes())
    assert not feed.bozo
    assert {e.link for e in feed.entries} >= {it.link for it in served[:1]}
    assert stored(tmp_path / "state" / "digest.sqlite3") == sorted(
        ("wire", it.guid or "") for it in served
    )
