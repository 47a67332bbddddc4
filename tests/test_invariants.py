"""One test per invariant of the design (numbered as there), each against real parts."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

import digest.pipeline as pipeline_module
from digest import parse as parse_module
from digest.cli import cli
from digest.config import load_config
from digest.errors import ConfigError
from digest.pipeline import POOL_THRESHOLD
from tests.servers import FeedServer, RecordedRequest, Route
from tests.smtp import SmtpServer
from tests.test_digest_flow import digest_list, send, smtp_table, statuses, text_of
from tests.test_pipeline import (
    FETCH,
    GEORGIA_EU,
    MEETING_A,
    MEETING_B,
    NOW,
    Item,
    by_source,
    open_pipeline,
    poll,
    rows,
    rss,
    sources_toml,
)

WriteConfig = Callable[..., Path]
ROOT = Path(__file__).resolve().parents[1]


def numbered(n: int, *, source: str) -> list[Item]:
    """``n`` distinct items that the tagger ignores (no story joins them)."""
    return [
        Item(
            title=f"{source} bulletin number {i} on item {i * 7919 % 104729}",
            link=f"https://{source}.example/item/{i}",
            guid=f"{source}-{i}",
            published=NOW - timedelta(minutes=i + 1),
        )
        for i in range(n)
    ]


def test_1_nothing_is_lost(
    feed_server: FeedServer, write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Every entry of a successful fetch is stored, or logged as rejected with a reason."""
    items = numbered(40, source="wire") + [MEETING_A, MEETING_A]  # one listed twice
    items += [Item(title=None, summary=f"anonymous note {i}") for i in range(3)]
    feed_server.add("/wire.xml", rss(items))
    path = write_config(FETCH + sources_toml(feed_server, {"wire": "/wire.xml"}))
    with open_pipeline(path) as pipe, caplog.at_level(logging.WARNING, "digest"):
        report = by_source(poll(pipe))["wire"]
        stored = {e.title for batch in pipe.store.iter_entries() for e in batch}
    assert stored == {it.title for it in items if it.title}
    assert (report.new, report.rejected, report.unchanged) == (41, 3, 1)
    rejected = [r.getMessage() for r in caplog.records if "entry rejected" in r.getMessage()]
    assert sorted(rejected) == sorted(
        f"entry rejected: no title and no link (anonymous note {i})" for i in range(3)
    )


def test_2_nothing_twice(
    feed_server: FeedServer,
    smtp_server: SmtpServer,
    write_config: WriteConfig,
) -> None:
    """An entry appears once in the feed, and in at most one digest per list."""
    fetches: list[int] = []

    def restless(request: RecordedRequest) -> Route:
        fetches.append(1)
        copy = replace(
            MEETING_A,
            link=(MEETING_A.link or "").replace("https:", "http:") + "?utm_source=rss",
            guid=f"aggregator-{len(fetches)}",
        )
        return Route(body=rss([copy, GEORGIA_EU]))

    feed_server.add("/outlet.xml", rss([MEETING_A]))
    feed_server.add("/other.xml", rss([MEETING_B]))
    feed_server.add("/aggregator.xml", dynamic=restless)
    path = write_config(
        FETCH
        + sources_toml(
            feed_server,
            {"outlet": "/outlet.xml", "other": "/other.xml", "aggregator": "/aggregator.xml"},
        )
        + smtp_table(smtp_server)
        + digest_list("anna@example.org")
    )
    with open_pipeline(path) as pipe:
        for day in range(3):
            for hour in (0, 6, 12):
                poll(pipe, NOW + timedelta(days=day, hours=hour))
                pipe.publish(NOW + timedelta(days=day, hours=hour))
                send(pipe, NOW + timedelta(days=day, hours=hour))
        out = pipe.config.publish.output_dir
    assert len(fetches) == 9
    feed = feedparser.parse((out / "feed.xml").read_bytes())
    ids = [e.id for e in feed.entries]
    links = [e.link for e in feed.entries]
    assert len(ids) == len(set(ids)) == len(set(links)) == 2
    json_items = json.loads((out / "feed.json").read_text(encoding="utf-8"))["items"]
    assert sorted(i["id"] for i in json_items) == sorted(ids)
    mailed = [
        title
        for received in smtp_server.received
        for title in (MEETING_A.title, MEETING_B.title, GEORGIA_EU.title)
        if title and title in text_of(received.message())
    ]
    assert sorted(mailed) == sorted([MEETING_A.title or "", GEORGIA_EU.title or ""])


def test_3_every_period_is_sent_exactly_once(
    feed_server: FeedServer,
    smtp_server: SmtpServer,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One message per period however often the scheduler asks; a crash between sending and
    recording resends with the same Message-ID."""
    feed_server.add("/a.xml", rss([]))
    path = write_config(
        FETCH
        + sources_toml(feed_server, {"a": "/a.xml"})
        + smtp_table(smtp_server)
        + digest_list("anna@example.org", extra="send_empty = true")
    )
    with open_pipeline(path) as pipe:
        for hours in range(0, 5 * 24, 5):
            send(pipe, NOW + timedelta(hours=hours))
        real = pipe.store.record_delivery
        calls: list[int] = []

        def crash_once(*args: object, **kwargs: object) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt("simulated crash before the outcome is recorded")
            real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(pipe.store, "record_delivery", crash_once)
        later = NOW + timedelta(days=5)
        with pytest.raises(KeyboardInterrupt):
            send(pipe, later)
        assert statuses(send(pipe, later + timedelta(minutes=1)))[0] == "sent"
        assert statuses(send(pipe, later + timedelta(hours=1))) == ["not-due"]

    ids = [r.message()["Message-ID"] for r in smtp_server.received]
    days = ["2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30"]
    once_each = [f"<digest.daily.{d}@caucasus.example>" for d in days]
    resent = "<digest.daily.2026-12-01@caucasus.example>"
    assert ids == [*once_each, resent, resent]


def test_4_a_failing_or_hostile_source_never_stops_the_others_or_the_service(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_server.add("/good.xml", rss([MEETING_A]))
    feed_server.gzip_bomb("/bomb.xml", 64 * 1024 * 1024)
    feed_server.endless("/endless.xml")
    feed_server.add("/truncated.xml", rss([GEORGIA_EU]), truncate=True)
    feed_server.add("/garbage.xml", bytes(range(256)) * 64)
    laughs = b'<!ENTITY a "' + b"ha" * 500 + b'">'
    for inner, outer in zip("abcd", "bcde", strict=True):
        laughs += f'<!ENTITY {outer} "{f"&{inner};" * 10}">'.encode()
    feed_server.add(
        "/entities.xml",
        b'<?xml version="1.0"?><!DOCTYPE rss [' + laughs + b']><rss version="2.0"><channel>'
        b"<title>&e;</title><item><title>&e;</title></item></channel></rss>",
    )
    feed_server.add("/crashes-parser.xml", rss([MEETING_B]))
    hostile = ["bomb", "endless", "truncated", "garbage", "crashes-parser"]
    path = write_config(
        FETCH.replace("[fetch]", "[fetch]\nmax_bytes = 1048576")
        + sources_toml(
            feed_server,
            {"good": "/good.xml", "entities": "/entities.xml", **{h: f"/{h}.xml" for h in hostile}},
        )
    )
    real_parse = parse_module.parse_feed

    def parser_with_a_bug(body: bytes, headers: object, url: str, now: object) -> object:
        if "crashes-parser" in url:
            raise IndexError("a parser bug met on hostile input")
        return real_parse(body, headers, url, now)  # type: ignore[arg-type]

    # A parser bug is a fault no real feed produces on demand, so it is injected.
    monkeypatch.setattr("digest.prepare.parse_feed", parser_with_a_bug)
    with open_pipeline(path) as pipe:
        report = by_source(poll(pipe))
        assert report["good"].new == 1
        for name in hostile:
            assert report[name].status == "error", (name, report[name])
        # Entities are never expanded: refused, or read as plain short text.
        assert report["entities"].status in ("error", "new")
        assert max(len(e.title) for batch in pipe.store.iter_entries() for e in batch) < 1000
        assert "internal error while parsing (IndexError" in (report["crashes-parser"].error or "")
        # The service goes on: the next cycle runs, and the hostile sources back off.
        feed_server.add("/good.xml", rss([MEETING_A, GEORGIA_EU]))
        later = NOW + timedelta(hours=1)
        again = by_source(poll(pipe, later, force=False))
        assert again["good"].new == 1
        states = pipe.store.source_states(pipe.config.sources)
        for name in hostile:
            assert states[name].error_count == 2, name
            assert states[name].next_poll_at == later + timedelta(seconds=2 * 1800), name


def test_4_a_dead_parse_worker_does_not_break_later_cycles(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "POOL_MIN_BYTES", 0)  # small feeds go to the pool too
    paths = {f"s{i}": f"/s{i}.xml" for i in range(POOL_THRESHOLD)}
    for i, route in enumerate(paths.values()):
        feed_server.add(route, rss(numbered(2, source=f"s{i}")))
    path = write_config(FETCH + sources_toml(feed_server, paths))
    with open_pipeline(path) as pipe:
        assert poll(pipe).new == 2 * POOL_THRESHOLD
        pool = pipe._pool
        assert pool is not None
        for process in list(pool._processes.values()):  # the OOM killer, say
            process.kill()
            process.join()
        for i, route in enumerate(paths.values()):
            feed_server.add(route, rss(numbered(3, source=f"s{i}")))
        broken = poll(pipe, NOW + timedelta(hours=1))
        assert {r.status for r in broken.sources} <= {"new", "error"}
        for failed in (r for r in broken.sources if r.status == "error"):
            assert "internal error while parsing (BrokenProcessPool" in (failed.error or "")
        healed = poll(pipe, NOW + timedelta(hours=2))
        assert all(r.status in ("new", "not_modified", "unchanged") for r in healed.sources)
        assert pipe.store.count_entries() == 3 * POOL_THRESHOLD


def test_5_files_others_read_are_replaced_atomically(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    """A reader holding the old feed keeps a complete old file; the new one appears whole."""
    feed_server.add("/a.xml", rss([MEETING_A]))
    path = write_config(FETCH + sources_toml(feed_server, {"a": "/a.xml"}))
    with open_pipeline(path) as pipe:
        poll(pipe)
        pipe.publish(NOW)
        out = pipe.config.publish.output_dir
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        inode = (out / "feed.xml").stat().st_ino
        with (out / "feed.xml").open("rb") as reader:
            feed_server.add("/a.xml", rss([MEETING_A, GEORGIA_EU]))
            poll(pipe, NOW + timedelta(hours=1))
            written, _ = pipe.publish(NOW + timedelta(hours=1))
            assert "feed.xml" in written
            assert reader.read() == before["feed.xml"]
    assert (out / "feed.xml").stat().st_ino != inode
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert len(feedparser.parse((out / "feed.xml").read_bytes()).entries) == 2


def test_6_bad_configuration_stops_at_start_naming_file_key_and_problem(
    write_config: WriteConfig,
) -> None:
    path = write_config(
        '[[sources]]\nname = "a"\nurl = "https://example.org/feed"\n\n'
        '[[digests]]\nname = "daily"\nrecipients = ["reader@example.org"]\ntime = "7am"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.path == str(path) and error.key is not None and "time" in error.key
    assert error.line == path.read_text().splitlines().index('time = "7am"') + 1
    assert "HH:MM" in str(error)

    result = CliRunner().invoke(cli, ["--config", str(path), "run", "--once"])
    assert result.exit_code == 78
    assert str(path) in result.output and "time" in result.output and "HH:MM" in result.output
    assert not (path.parent / "state").exists()


POLL_SCRIPT = """
import asyncio, sys
from pathlib import Path
from tests.test_pipeline import NOW, open_pipeline
with open_pipeline(Path(sys.argv[1])) as pipe:
    asyncio.run(pipe.poll(NOW, force=True))
"""


def test_7_state_survives_kill_9(feed_server: FeedServer, write_config: WriteConfig) -> None:
    """A poll killed with SIGKILL half-way leaves a sound database; a re-poll completes it."""
    sources = 24
    paths = {f"s{i:02d}": f"/s{i:02d}.xml" for i in range(sources)}
    for i, route in enumerate(paths.values()):
        feed_server.slow(route, 0.1 * i, rss(numbered(30, source=f"s{i:02d}")))
    path = write_config(FETCH + sources_toml(feed_server, paths))
    db_path = load_config(path).db_path
    child = subprocess.Popen(
        [sys.executable, "-c", POLL_SCRIPT, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stored = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stored < 30 * 3:
            time.sleep(0.02)
            if db_path.exists():
                try:
                    stored = rows(db_path, "SELECT count(*) FROM entries")[0][0]  # type: ignore[assignment]
                except sqlite3.OperationalError:
                    stored = 0
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert 0 < stored < 30 * sources, "the kill must land mid-poll"

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        killed_at = db.execute("SELECT count(*) FROM entries").fetchone()[0]
    with open_pipeline(path) as pipe:
        assert pipe.store.integrity_check() == "ok"
        report = poll(pipe, NOW + timedelta(minutes=5))
        assert report.new == 30 * sources - killed_at
        assert pipe.store.count_entries() == 30 * sources
    assert rows(db_path, "SELECT count(*), count(DISTINCT guid) FROM entries")[0] == (
        30 * sources,
        30 * sources,
    )
