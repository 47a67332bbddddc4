"""A publish that would write the same files builds nothing; any change still publishes.

After every ``Pipeline.publish`` the files on disk must be exactly what a full build at that
instant gives, whether the publish was skipped or not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from digest import publish as publishing
from digest.pipeline import Pipeline
from digest.store import _MIGRATIONS, Store, _statements
from tests.servers import FeedServer
from tests.test_pipeline import (
    FETCH,
    FOOTBALL,
    GEORGIA_EU,
    MEETING_A,
    MEETING_B,
    NOW,
    Item,
    open_pipeline,
    poll,
    rss,
    sources_toml,
)

WriteConfig = Callable[..., Path]
real_build_all = publishing.build_all


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the feed sets built by publishing."""
    calls: list[int] = []

    def counting(*args: object, **kwargs: object) -> dict[str, bytes]:
        calls.append(1)
        return real_build_all(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(publishing, "build_all", counting)
    return calls


def on_disk(pipe: Pipeline) -> dict[str, bytes]:
    out = pipe.config.publish.output_dir
    return {
        name: (out / name).read_bytes() for name in publishing.output_files(pipe.config.publish)
    }


def published(pipe: Pipeline, now: datetime) -> tuple[list[str], int]:
    """Publish, and check that the files are what a full build at ``now`` writes."""
    result = pipe.publish(now)
    stories, shown = pipe.feed_stories(now)
    assert on_disk(pipe) == real_build_all(stories, pipe.config.publish, now)
    assert result[1] == shown
    return result


def config_with(write_config: WriteConfig, server: FeedServer, publish_extra: str) -> Path:
    path = write_config(FETCH + sources_toml(server, {"news": "/news.xml"}))
    text = path.read_text().replace("max_age_days = 3650\n", publish_extra)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def news(feed_server: FeedServer, write_config: WriteConfig) -> Iterator[tuple[FeedServer, Path]]:
    feed_server.add("/news.xml", rss([MEETING_A]))
    yield (
        feed_server,
        config_with(
            write_config, feed_server, 'max_age_days = 3650\ntags = ["armenia", "georgia"]\n'
        ),
    )


def test_nothing_changed_builds_nothing_and_reports_the_same(
    news: tuple[FeedServer, Path], builds: list[int]
) -> None:
    server, path = news
    with open_pipeline(path) as pipe:
        poll(pipe)
        written, shown = published(pipe, NOW)
        assert "feed.xml" in written and shown == 1
        assert len(builds) == 1
        stats = publishing.file_stats(pipe.config.publish)

        # A cycle where every source answers 304 stores nothing: nothing is built.
        poll(pipe, NOW + timedelta(hours=1))
        assert published(pipe, NOW + timedelta(hours=1)) == ([], 1)
        assert len(builds) == 1
        assert publishing.file_stats(pipe.config.publish) == stats
        assert pipe.store.last_run("publish") == NOW + timedelta(hours=1)
    with open_pipeline(path) as pipe:  # another process sees the same
        assert published(pipe, NOW + timedelta(hours=2)) == ([], 1)
        assert len(builds) == 1


def test_every_change_to_what_the_feeds_show_is_published(
    news: tuple[FeedServer, Path], builds: list[int], tmp_path: Path
) -> None:
    server, path = news
    with open_pipeline(path) as pipe:
        poll(pipe)
        published(pipe, NOW)
        count = len(builds)

        def rebuilt(now: datetime, *, written: bool = True) -> list[str]:
            nonlocal count
            files, _ = published(pipe, now)
            assert len(builds) == count + 1, "this change must be published"
            assert bool(files) == written
            count += 1
            return files

        # A new report of the same story, and a new story.
        server.add("/news.xml", rss([MEETING_A, MEETING_B, GEORGIA_EU]))
        poll(pipe, NOW + timedelta(minutes=1))
        assert "tags/georgia.xml" in rebuilt(NOW + timedelta(minutes=1))

        # A report edited upstream.
        server.add(
            "/news.xml", rss([replace(MEETING_A, summary="Corrected."), MEETING_B, GEORGIA_EU])
        )
        assert poll(pipe, NOW + timedelta(minutes=2)).updated == 1
        rebuilt(NOW + timedelta(minutes=2))

        # New tags (digest retag), here taking the story out of the selection.
        entry = pipe.store.find_entry(GEORGIA_EU.link or "")
        assert entry is not None
        with pipe.store.transaction():
            pipe.store.set_tags(entry.id, ("georgia",), {"georgia": 3.0})
        rebuilt(NOW + timedelta(minutes=3))

        # A feed file deleted or edited by someone else is written again.
        out = pipe.config.publish.output_dir
        (out / "atom.xml").unlink()
        assert rebuilt(NOW + timedelta(minutes=4)) == ["atom.xml"]
        (out / "tags" / "armenia.json").write_text("{}")
        assert rebuilt(NOW + timedelta(minutes=5)) == ["tags/armenia.json"]

        # A record that cannot be read is no reason to skip.
        with pipe.store.transaction():
            pipe.store.mark_published("{not json")
        rebuilt(NOW + timedelta(minutes=6), written=False)
        published(pipe, NOW + timedelta(minutes=7))
        assert len(builds) == count

    # Another process stored something without publishing (digest poll --no-publish).
    server.add("/news.xml", rss([MEETING_A, MEETING_B, GEORGIA_EU, FOOTBALL]))
    with open_pipeline(path) as other:
        poll(other, NOW + timedelta(minutes=8))
    with open_pipeline(path) as pipe:
        published(pipe, NOW + timedelta(minutes=9))
        assert len(builds) == count + 1
        count += 1

        # Other settings: a title, a new per-tag feed.
        settings = replace(pipe.config.publish, title="Caucasus")
        retitled = Pipeline(replace(pipe.config, publish=settings), pipe.store)
        files, _ = published(retitled, NOW + timedelta(minutes=10))
        assert "feed.xml" in files and len(builds) == count + 1
        settings = replace(settings, tags=("armenia", "georgia", "eu"))
        more = Pipeline(replace(pipe.config, publish=settings), pipe.store)
        files, _ = published(more, NOW + timedelta(minutes=11))
        assert "tags/eu.xml" in files and len(builds) == count + 2


def test_a_story_leaving_the_age_window_is_published(
    feed_server: FeedServer, write_config: WriteConfig, builds: list[int]
) -> None:
    early = replace(GEORGIA_EU, published=NOW - timedelta(hours=20))
    feed_server.add("/news.xml", rss([MEETING_A, early]))  # published 5 and 20 hours ago
    path = config_with(write_config, feed_server, "max_age_days = 1\n")
    with open_pipeline(path) as pipe:
        poll(pipe)
        assert published(pipe, NOW)[1] == 2
        assert published(pipe, NOW + timedelta(hours=3, minutes=59)) == ([], 2)
        assert len(builds) == 1
        # GEORGIA_EU's report is a day old at NOW + 4 h: it leaves the feeds.
        assert published(pipe, NOW + timedelta(hours=4, seconds=1))[1] == 1
        assert len(builds) == 2
        assert published(pipe, NOW + timedelta(hours=10))[1] == 1
        assert len(builds) == 2
        # A clock set back may bring it back: no skipping then.
        assert published(pipe, NOW)[1] == 2
        assert len(builds) == 3


def test_a_date_in_the_future_is_published_every_time(
    feed_server: FeedServer, write_config: WriteConfig, builds: list[int]
) -> None:
    ahead = Item(
        title="Armenian and Azerbaijani foreign ministers to meet for peace talks",
        link="https://news.example/ahead",
        guid="ahead",
        published=NOW + timedelta(hours=2),
    )
    feed_server.add("/news.xml", rss([ahead]))
    path = config_with(write_config, feed_server, "max_age_days = 3650\n")
    with open_pipeline(path) as pipe:
        poll(pipe)
        assert [s.lead.title for s in pipe.published_stories(NOW)] == [ahead.title]
        for minutes in (0, 1, 2):
            published(pipe, NOW + timedelta(minutes=minutes))
        assert len(builds) == 3  # its date is shown as "now", which moves


def test_the_change_counter_follows_entries_tags_and_stories_only(tmp_path: Path) -> None:
    from tests.test_store import entry, store_entries

    with Store(tmp_path / "state.sqlite3") as store:
        seen = [store.publish_state()[0]]

        def moved() -> bool:
            seen.append(store.publish_state()[0])
            return seen[-1] != seen[-2]

        store.mark_run("poll", NOW)
        store.create_digest("daily", "2026-11-26", "<id@x>", [], NOW, status="skipped")
        assert not moved()
        first, second = store_entries(store, "a", [entry(1), entry(2)])
        assert moved()
        with store.transaction():
            store.create_stories([(1, "guid:1"), (2, "guid:2")], NOW)
        assert moved()
        with store.transaction():
            store.assign_stories([(first, 1, "new"), (second, 2, "new")])
        assert moved()
        with store.transaction():
            store.set_tags(first, ("armenia",), {"armenia": 2.0})
        assert moved()
        with store.transaction():
            store.merge_stories(1, 2)
        assert moved()
        store_entries(store, "a", [entry(3, when=NOW - timedelta(days=400)), entry(4)])
        assert moved()
        assert store.prune(NOW - timedelta(days=300)) == 1
        assert moved()


def test_a_state_folder_from_before_the_counter_is_upgraded(tmp_path: Path) -> None:
    from tests.test_store import entry, store_entries

    path = tmp_path / "state.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for version in (1, 2, 3):
            for statement in _statements(_MIGRATIONS[version]):
                db.execute(statement)
        db.execute("PRAGMA user_version=3")
    with Store(path) as store:
        assert store.publish_state() == (0, None)  # the first publish writes
        store_entries(store, "a", [entry(1)])
        assert store.publish_state()[0] > 0
