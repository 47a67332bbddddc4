"""The ingest half of the pipeline end to end: a real loopback HTTP server, a real SQLite file.

Each test drives :class:`Pipeline` with an explicit ``now``, so back-off and schedules are
checked without waiting. The helpers at the top are shared with the digest-flow and invariant
tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner

from digest import pipeline as pipeline_module
from digest import prepare as prepare_module
from digest.cli import cli
from digest.config import TaggingSettings, load_config
from digest.errors import ConfigError
from digest.models import CycleReport, SourceReport
from digest.pipeline import POOL_THRESHOLD, Pipeline
from digest.store import Store
from tests.conftest import RULES
from tests.servers import FeedServer, RecordedRequest, Route

#: the instant the tests poll at; every sample item is published a few hours before it
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
SELECTION = "south-caucasus-diplomacy"
#: short timeouts and no per-host limit: every source of a test lives on 127.0.0.1
FETCH = """[fetch]
per_host = 32
connect_timeout = 2.0
read_timeout = 10.0
total_timeout = 10.0

"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One RSS item as a test feed serves it."""

    title: str | None
    link: str | None = None
    guid: str | None = None
    summary: str = ""
    published: datetime = NOW - timedelta(hours=3)


#: one meeting told by two outlets in other words (the project's seed material)
MEETING_A = Item(
    title="Armenian and Azerbaijani foreign ministers meet in Abu Dhabi for peace talks",
    link="https://armenpress.example/news/1001",
    guid="armenpress-1001",
    summary="Ararat Mirzoyan and Jeyhun Bayramov discussed the draft peace treaty "
    "and border delimitation in Abu Dhabi on Tuesday.",
    published=NOW - timedelta(hours=5),
)
MEETING_B = Item(
    title="Mirzoyan and Bayramov hold peace talks in Abu Dhabi",
    link="https://apa.example/politics/mirzoyan-bayramov-abu-dhabi",
    guid="apa-77",
    summary="The foreign ministers of Azerbaijan and Armenia, Jeyhun Bayramov and Ararat "
    "Mirzoyan, met in Abu Dhabi to discuss the peace treaty and border delimitation.",
    published=NOW - timedelta(hours=4),
)
GEORGIA_EU = Item(
    title="Georgia signs visa facilitation agreement with the European Union",
    link="https://civil.example/en/archives/5005",
    guid="civil-5005",
    summary="Kobakhidze welcomed the deal after a session of the association council in Brussels.",
    published=NOW - timedelta(hours=2),
)
FOOTBALL = Item(
    title="Football results from the weekend",
    link="https://sport.example/results/9",
    guid="sport-9",
    summary="Local clubs played their last matches of the season.",
    published=NOW - timedelta(hours=6),
)


def rss(items: Sequence[Item], *, title: str = "Test feed") -> bytes:
    """An RSS 2.0 document with ``items`` (fields that are None are left out)."""
    parts = []
    for it in items:
        fields = []
        if it.title is not None:
            fields.append(f"<title>{escape(it.title)}</title>")
        if it.link is not None:
            fields.append(f"<link>{escape(it.link)}</link>")
        if it.guid is not None:
            fields.append(f'<guid isPermaLink="false">{escape(it.guid)}</guid>')
        fields.append(f"<pubDate>{format_datetime(it.published, usegmt=True)}</pubDate>")
        if it.summary:
            fields.append(f"<description>{escape(it.summary)}</description>")
        parts.append("<item>" + "".join(fields) + "</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        f"<description>{escape(title)}</description>{''.join(parts)}</channel></rss>"
    ).encode()


def sources_toml(server: FeedServer, paths: dict[str, str], *, interval: int = 1800) -> str:
    """``[[sources]]`` tables, one per name -> path on ``server``."""
    return "".join(
        f'[[sources]]\nname = "{name}"\nurl = "{server.url(path)}"\ninterval = {interval}\n\n'
        for name, path in paths.items()
    )


@contextmanager
def open_pipeline(config_path: Path) -> Iterator[Pipeline]:
    """The config, the store and the pipeline, as the CLI opens them; closed afterwards."""
    config = load_config(config_path)
    store = Store(config.db_path)
    pipe = Pipeline(config, store)
    try:
        yield pipe
    finally:
        pipe.close()
        store.close()


def poll(pipe: Pipeline, now: datetime = NOW, *, force: bool = True) -> CycleReport:
    return asyncio.run(pipe.poll(now, force=force))


def by_source(report: CycleReport) -> dict[str, SourceReport]:
    return {r.source: r for r in report.sources}


def titles(pipe: Pipeline) -> list[str]:
    return sorted(e.title for batch in pipe.store.iter_entries() for e in batch)


def rows(db_path: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Read the state with a separate connection, as another process would."""
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql, params).fetchall())


WriteConfig = Callable[..., Path]


# -- conditional requests and unchanged feeds ---------------------------------------------


def test_unchanged_source_is_asked_conditionally_and_stores_nothing(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    feed_server.add(
        "/validators.xml",
        rss([MEETING_A, GEORGIA_EU]),
        etag='"v1"',
        last_modified="Wed, 25 Nov 2026 10:00:00 GMT",
    )
    feed_server.add("/plain.xml", rss([FOOTBALL]))
    path = write_config(
        FETCH
        + sources_toml(
            feed_server, {"with-validators": "/validators.xml", "no-validators": "/plain.xml"}
        )
    )
    with open_pipeline(path) as pipe:
        first = by_source(poll(pipe))
        assert (first["with-validators"].new, first["no-validators"].new) == (2, 1)
        stored = rows(pipe.config.db_path, "SELECT id, title, content_hash FROM entries")

        again = by_source(poll(pipe, NOW + timedelta(hours=1)))

    assert again["with-validators"].status == "not_modified"
    assert again["no-validators"].status == "not_modified"
    second = feed_server.requests_for("/validators.xml")[1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Wed, 25 Nov 2026 10:00:00 GMT"
    assert "if-none-match" not in feed_server.requests_for("/plain.xml")[1].headers
    assert (
        rows(
            path.parent / "state" / "digest.sqlite3", "SELECT id, title, content_hash FROM entries"
        )
        == stored
    )


def test_states_of_sources_without_entries_are_saved_in_batches(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not-modified and failed sources share commits; every state is saved all the same."""
    monkeypatch.setattr(pipeline_module, "STATE_BATCH", 10)
    for i in range(20):
        feed_server.add(f"/f{i}.xml", rss([replace(FOOTBALL, guid=f"g{i}")]), etag=f'"{i}"')
    for i in range(5):
        feed_server.status(f"/down{i}.xml", 500)
    paths = {f"s{i:02}": f"/f{i}.xml" for i in range(20)}
    paths |= {f"down{i}": f"/down{i}.xml" for i in range(5)}
    path = write_config(FETCH + sources_toml(feed_server, paths))
    with open_pipeline(path) as pipe:
        poll(pipe)
        commits: list[str] = []
        pipe.store.db.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
        )
        later = NOW + timedelta(hours=1)
        report = poll(pipe, later)
        pipe.store.db.set_trace_callback(None)
        states = pipe.store.source_states(pipe.config.sources)
    statuses = sorted(r.status for r in report.sources)
    assert statuses == ["error"] * 5 + ["not_modified"] * 20
    assert all(s.last_ok_at == later for n, s in states.items() if n.startswith("s"))
    assert all(s.error_count == 2 for n, s in states.items() if n.startswith("down"))
    # 25 states in batches of 10, and the cycle's own bookkeeping (a few commits)
    assert 3 <= len(commits) <= 6, commits


def test_feed_that_rewrites_guids_on_every_fetch_yields_no_duplicates(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    fetches: list[int] = []

    def fresh_guids(request: RecordedRequest) -> Route:
        fetches.append(1)
        n = len(fetches)
        items = [replace(it, guid=f"{it.guid}-session-{n}") for it in (MEETING_A, GEORGIA_EU)]
        return Route(body=rss(items))

    feed_server.add("/rewrites.xml", dynamic=fresh_guids)
    path = write_config(FETCH + sources_toml(feed_server, {"rewriter": "/rewrites.xml"}))
    with open_pipeline(path) as pipe:
        reports = [by_source(poll(pipe, NOW + timedelta(hours=h)))["rewriter"] for h in range(3)]
        assert len(fetches) == 3
        assert [r.new for r in reports] == [2, 0, 0]
        assert [r.unchanged for r in reports[1:]] == [2, 2]
        assert pipe.store.count_entries() == 2
    # Unchanged entries teach no keys: the key table does not grow with every fetch.
    assert rows(pipe.config.db_path, "SELECT count(*) FROM entry_keys")[0][0] == 6


def test_same_article_in_two_sources_over_http_and_https_is_stored_once(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    plain = replace(MEETING_A, link="http://Armenpress.example/news/1001", guid="a-1")
    tracked = replace(
        MEETING_A,
        link="https://armenpress.example/news/1001?utm_source=rss&utm_medium=feed",
        guid="aggregator-555",
        published=MEETING_A.published + timedelta(minutes=20),
    )
    feed_server.add("/one.xml", rss([plain]))
    feed_server.add("/two.xml", rss([tracked, FOOTBALL]))
    path = write_config(
        FETCH + sources_toml(feed_server, {"outlet": "/one.xml", "aggregator": "/two.xml"})
    )
    with open_pipeline(path) as pipe:
        report = by_source(poll(pipe))
        assert report["outlet"].new + report["aggregator"].new == 2
        assert titles(pipe) == sorted([MEETING_A.title or "", FOOTBALL.title or ""])


def test_entry_edited_upstream_is_updated_in_place_and_not_mailed_again(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    feed_server.add("/feed.xml", rss([MEETING_A]))
    path = write_config(
        FETCH
        + sources_toml(feed_server, {"armenpress": "/feed.xml"})
        + '[[digests]]\nname = "daily"\nrecipients = ["reader@example.org"]\n'
        'time = "07:00"\n'
    )
    with open_pipeline(path) as pipe:
        poll(pipe)
        (sent,) = asyncio.run(pipe.send_due(NOW + timedelta(hours=2)))
        assert (sent.status, sent.stories) == ("sent", 1)

        edited = replace(
            MEETING_A,
            title=MEETING_A.title + " (updated)",
            summary=MEETING_A.summary + " A joint statement followed.",
        )
        feed_server.add("/feed.xml", rss([edited]))
        report = by_source(poll(pipe, NOW + timedelta(hours=5)))["armenpress"]
        assert (report.status, report.new, report.updated) == ("updated", 0, 1)
        (entry,) = [e for batch in pipe.store.iter_entries() for e in batch]
        assert entry.title.endswith("(updated)")
        ((edited_at, first_seen),) = rows(
            pipe.config.db_path, "SELECT edited_at, first_seen FROM entries"
        )
        assert edited_at == (NOW + timedelta(hours=5)).isoformat()
        assert first_seen == NOW.isoformat()

        (next_day,) = asyncio.run(pipe.send_due(NOW + timedelta(days=1, hours=2)))
        assert next_day.status == "empty"
    assert len(list((path.parent / "state" / "outbox").glob("*.eml"))) == 1


# -- failing sources ----------------------------------------------------------------------


def test_failing_sources_do_not_stop_the_others_and_back_off(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    feed_server.add("/good.xml", rss([MEETING_A]))
    feed_server.status("/missing.xml", 404)
    feed_server.status("/broken.xml", 500)
    feed_server.slow("/slow.xml", 8.0, rss([GEORGIA_EU]))
    feed_server.add(
        "/malformed.xml",
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken & feed</title></chan',
    )
    feed_server.add(
        "/page.html",
        b"<!doctype html><html><body><p>Welcome</p></body></html>",
        content_type="text/html; charset=utf-8",
    )
    failing = {
        "missing": "/missing.xml",
        "broken": "/broken.xml",
        "slow": "/slow.xml",
        "malformed": "/malformed.xml",
        "not-a-feed": "/page.html",
    }
    fetch = FETCH.replace("total_timeout = 10.0", "total_timeout = 2.0")
    path = write_config(
        fetch + sources_toml(feed_server, {"good": "/good.xml", **failing}, interval=600)
    )
    with open_pipeline(path) as pipe:
        first = by_source(poll(pipe))
        assert first["good"].status == "new"
        for name in failing:
            assert first[name].status == "error", name
            assert first[name].error
        assert "404" in (first["missing"].error or "")
        assert "500" in (first["broken"].error or "")
        assert "total_timeout" in (first["slow"].error or "")
        assert "not a feed" in (first["not-a-feed"].error or "")

        states = pipe.store.source_states(pipe.config.sources)
        assert all(states[n].error_count == 1 for n in failing)
        assert states["missing"].next_poll_at == NOW + timedelta(seconds=600)

        # Not due yet: only a forced poll would ask them again.
        due, _ = pipe.due_sources(NOW + timedelta(seconds=599))
        assert due == []
        later = NOW + timedelta(seconds=600)
        second = by_source(poll(pipe, later, force=False))
        assert second["good"].status == "not_modified"
        states = pipe.store.source_states(pipe.config.sources)
        for name in ("missing", "broken", "malformed", "not-a-feed"):
            assert states[name].error_count == 2, name
            assert states[name].next_poll_at == later + timedelta(seconds=1200), name

    shown = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith("missing"))
    assert "failing" in line and "404" in line


def test_410_retires_the_source(feed_server: FeedServer, write_config: WriteConfig) -> None:
    feed_server.status("/removed.xml", 410)
    feed_server.add("/good.xml", rss([GEORGIA_EU]))
    path = write_config(
        FETCH + sources_toml(feed_server, {"removed": "/removed.xml", "good": "/good.xml"})
    )
    with open_pipeline(path) as pipe:
        assert by_source(poll(pipe))["removed"].status == "gone"
        again = by_source(poll(pipe, NOW + timedelta(days=3)))
        assert again["removed"].status == "gone"
        assert "410" in (again["removed"].error or "")
        assert pipe.store.source_states(pipe.config.sources)["removed"].gone
    assert len(feed_server.requests_for("/removed.xml")) == 1
    shown = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert next(x for x in shown.output.splitlines() if x.startswith("removed")).split()[1] == (
        "gone"
    )


def test_301_updates_the_stored_url_and_302_does_not(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    feed_server.redirect("/old.xml", "/moved.xml", 301)
    feed_server.add("/moved.xml", rss([MEETING_A]))
    feed_server.redirect("/alias.xml", "/today.xml", 302)
    feed_server.add("/today.xml", rss([GEORGIA_EU]))
    path = write_config(
        FETCH + sources_toml(feed_server, {"moved": "/old.xml", "aliased": "/alias.xml"})
    )
    with open_pipeline(path) as pipe:
        first = by_source(poll(pipe))
        assert (first["moved"].new, first["aliased"].new) == (1, 1)
        states = pipe.store.source_states(pipe.config.sources)
        assert states["moved"].url == feed_server.url("/moved.xml")
        assert states["aliased"].url in (None, feed_server.url("/alias.xml"))
        poll(pipe, NOW + timedelta(hours=1))
    assert len(feed_server.requests_for("/old.xml")) == 1
    assert len(feed_server.requests_for("/moved.xml")) == 2
    assert len(feed_server.requests_for("/alias.xml")) == 2


# -- rejected entries ---------------------------------------------------------------------


def test_entry_without_title_and_link_is_logged_with_a_reason_not_stored(
    feed_server: FeedServer, write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    nameless = Item(title=None, summary="Something happened somewhere, says an anonymous item.")
    feed_server.add("/feed.xml", rss([MEETING_A, nameless]))
    path = write_config(FETCH + sources_toml(feed_server, {"sloppy": "/feed.xml"}))
    with open_pipeline(path) as pipe, caplog.at_level(logging.WARNING, "digest"):
        report = by_source(poll(pipe))["sloppy"]
        assert (report.new, report.rejected) == (1, 1)
        assert pipe.store.count_entries() == 1
    (record,) = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert "no title and no link" in record.getMessage()
    assert "anonymous item" in record.getMessage()
    assert getattr(record, "source", None) == "sloppy"


# -- the process pool ---------------------------------------------------------------------


def _stored(db_path: Path) -> list[tuple[object, ...]]:
    return rows(
        db_path,
        """SELECT e.source, e.title, e.link, e.canonical_link, e.summary, e.published, e.tags,
                  e.terms IS NOT NULL, e.terms,
                  (SELECT group_concat(k.key) FROM
                      (SELECT key FROM entry_keys WHERE entry_id = e.id ORDER BY key) k),
                  (SELECT min(o.title) FROM entries o WHERE o.story_id = e.story_id)
           FROM entries e ORDER BY e.source, e.title""",
    )


def test_process_pool_stores_the_same_as_the_inline_path(
    feed_server: FeedServer,
    write_config: WriteConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline_module, "POOL_MIN_BYTES", 0)  # small feeds go to the pool too
    samples = [MEETING_A, MEETING_B, GEORGIA_EU, FOOTBALL]
    paths = {}
    for i in range(POOL_THRESHOLD):
        items = [
            replace(s, guid=f"{s.guid}-{i}", link=f"{s.link}/{i}", title=f"{s.title} ({i})")
            for s in samples[: 1 + i % len(samples)]
        ]
        feed_server.add(f"/f{i}.xml", rss(items))
        paths[f"source-{i}"] = f"/f{i}.xml"
    pooled_cfg = write_config(FETCH + sources_toml(feed_server, paths), name="pooled.toml")
    main_process_tagging = []
    real_decide = prepare_module.decide_tags
    monkeypatch.setattr(
        prepare_module, "decide_tags", lambda *a: main_process_tagging.append(1) or real_decide(*a)
    )
    with open_pipeline(pooled_cfg) as pipe:
        report = poll(pipe)
        assert pipe._pool is not None, "8 sources must parse in the pool"
        assert not main_process_tagging, "the parser processes tag what they parse"
    monkeypatch.setattr(prepare_module, "decide_tags", real_decide)
    with open_pipeline(pooled_cfg) as pipe:
        assert report.new == sum(1 + i % len(samples) for i in range(POOL_THRESHOLD))
        pooled = _stored(pipe.config.db_path)

    inline_cfg = tmp_path / "inline.toml"
    inline_cfg.write_text(
        pooled_cfg.read_text().replace(str(tmp_path / "state"), str(tmp_path / "inline-state"))
    )
    monkeypatch.setattr(pipeline_module, "POOL_THRESHOLD", 10**6)
    with open_pipeline(inline_cfg) as pipe:
        poll(pipe)
        assert pipe._pool is None
        inline = _stored(pipe.config.db_path)
    assert pooled == inline
    assert len(pooled) == report.new
    assert all(row[7] for row in pooled), "story words are stored with every entry"


# -- tags, retag, explain -----------------------------------------------------------------


def test_tags_are_stored_and_retag_applies_a_rules_change(
    feed_server: FeedServer, write_config: WriteConfig, tmp_path: Path
) -> None:
    feed_server.add("/feed.xml", rss([MEETING_A, GEORGIA_EU, FOOTBALL]))
    path = write_config(FETCH + sources_toml(feed_server, {"mixed": "/feed.xml"}))
    with open_pipeline(path) as pipe:
        poll(pipe)
        tags = {e.title: e.tags for batch in pipe.store.iter_entries() for e in batch}
        assert SELECTION in tags[MEETING_A.title or ""]
        assert SELECTION in tags[GEORGIA_EU.title or ""]
        assert tags[FOOTBALL.title or ""] == ()
        selected = [s.lead.title for s in pipe.store.stories(tag=SELECTION)]
        assert FOOTBALL.title not in selected and MEETING_A.title in selected

        rules = tmp_path / "rules.toml"
        text = RULES.read_text(encoding="utf-8")
        assert '"armenia", "armenian{,s}",' in text
        rules.write_text(
            text.replace('"armenia", "armenian{,s}",', '"armenia", "armenian{,s}", "football",'),
            encoding="utf-8",
        )
        config = replace(pipe.config, tagging=TaggingSettings(rules=rules))
        retagger = Pipeline(config, pipe.store)
        assert retagger.retag() == 1
    with Store(pipe.config.db_path) as store:
        retagged = {e.title: e.tags for batch in store.iter_entries() for e in batch}
        assert "armenia" in retagged[FOOTBALL.title or ""]
        assert retagged[MEETING_A.title or ""] == tags[MEETING_A.title or ""]
        assert FOOTBALL.title in [s.lead.title for s in store.stories(tag="armenia")]


def test_rules_are_checked_at_start_and_tag_as_checked(
    feed_server: FeedServer, write_config: WriteConfig, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    feed_server.add("/feed.xml", rss([MEETING_A]))
    path = write_config(FETCH + sources_toml(feed_server, {"news": "/feed.xml"}))
    path.write_text(path.read_text().replace(str(RULES), str(rules)), encoding="utf-8")
    with open_pipeline(path) as pipe:
        # Compiling waits for the first entry to tag, but uses the file as it was checked:
        # an edit after the start is not half-applied (a reload or a restart applies it).
        rules.write_text("[tags.broken]\nterms = ['x{y']\n", encoding="utf-8")
        assert by_source(poll(pipe))["news"].new == 1
        (entry,) = [e for batch in pipe.store.iter_entries() for e in batch]
        assert SELECTION in entry.tags
    broken = r"tags\.broken\.terms\[1\]: unbalanced braces"
    with pytest.raises(ConfigError, match=broken), open_pipeline(path):
        pass


def test_explain_names_tags_selection_and_story(
    feed_server: FeedServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([MEETING_B]))
    path = write_config(
        FETCH + sources_toml(feed_server, {"Armenpress": "/a.xml", "APA": "/b.xml"})
    )
    with open_pipeline(path) as pipe:
        poll(pipe)
        entry = pipe.store.find_entry(MEETING_B.link or "")
        assert entry is not None and entry.story_id is not None
        text = pipe.explain(str(entry.id), NOW)
        by_link = pipe.explain(MEETING_B.link or "", NOW)
    assert text == by_link
    for tag in ("armenia", "azerbaijan", "diplomacy", SELECTION):
        assert tag in text
    assert f"story {entry.story_id}" in text
    assert "2 report(s)" in text
    assert f"[Armenpress] {MEETING_A.title}" in text
    assert f"* [APA] {MEETING_B.title}" in text


def test_local_file_source_keeps_its_schedule_and_validators(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss([MEETING_A]))
    path = write_config(f'[[sources]]\nname = "file"\npath = "{feed}"\ninterval = 600\n')
    with open_pipeline(path) as pipe:
        assert by_source(poll(pipe))["file"].new == 1
        state = pipe.store.source_states(pipe.config.sources)["file"]
        assert state.last_ok_at == NOW
        assert state.next_poll_at == NOW + timedelta(seconds=600)
        assert by_source(poll(pipe, NOW + timedelta(seconds=60), force=False))["file"].status == (
            "skipped"
        )
        assert by_source(poll(pipe, NOW + timedelta(seconds=60)))["file"].status == ("not_modified")


def test_unchanged_items_are_not_parsed_again(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-poll parses only the items whose raw bytes are new or edited."""
    base = [
        Item(
            title=f"Bulletin {i}",
            link=f"https://ex.am/{i}",
            guid=f"g{i}",
            published=NOW - timedelta(hours=i + 1),
        )
        for i in range(6)
    ]
    feed_server.add("/feed.xml", rss(base))
    path = write_config(FETCH + sources_toml(feed_server, {"a": "/feed.xml"}))
    parsed_counts: list[int] = []
    real_parse = prepare_module.parse_feed

    def counting(body: bytes, *args: object) -> object:
        result = real_parse(body, *args)  # type: ignore[arg-type]
        parsed_counts.append(len(result.entries))
        return result

    monkeypatch.setattr(prepare_module, "parse_feed", counting)
    with open_pipeline(path) as pipe:
        assert poll(pipe).new == 6
        fresh = Item(title="Bulletin new", link="https://ex.am/new", guid="gnew")
        edited = replace(base[2], summary="corrected")
        feed_server.add("/feed.xml", rss([fresh, *base[:2], edited, *base[3:]]))
        report = by_source(poll(pipe, NOW + timedelta(hours=1)))["a"]
        assert (report.new, report.updated, report.unchanged) == (1, 1, 5)
        assert parsed_counts == [6, 2]
        assert len(titles(pipe)) == 7


def test_entries_stored_by_a_cycle_that_died_before_grouping_are_grouped_next_time(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A, GEORGIA_EU]))
    path = write_config(FETCH + sources_toml(feed_server, {"a": "/a.xml"}))
    real_group = pipeline_module.Pipeline.group_pending

    def dies(self: Pipeline, now: datetime, source: str | None = None) -> int:
        if source is None:
            return real_group(self, now)  # the cycle's start: nothing is left over yet
        raise RuntimeError("killed between storing and grouping")

    monkeypatch.setattr(pipeline_module.Pipeline, "group_pending", dies)
    with open_pipeline(path) as pipe, pytest.raises(RuntimeError):
        poll(pipe)
    monkeypatch.setattr(pipeline_module.Pipeline, "group_pending", real_group)
    with open_pipeline(path) as pipe:
        assert len(pipe.store.ungrouped_items(100, 600)) == 2
        assert poll(pipe, NOW + timedelta(hours=1)).new == 0
        assert pipe.store.ungrouped_items(100, 600) == []
        assert {s.lead.title for s in pipe.published_stories(NOW + timedelta(hours=1))} >= {
            MEETING_A.title
        }


@pytest.mark.parametrize("batch", [2, 3, 100])
def test_grouping_in_batches_groups_every_entry(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Full batches are followed by another; the first short one is the last."""
    monkeypatch.setattr(pipeline_module, "GROUP_BATCH", batch)
    more = [
        replace(
            FOOTBALL, title=f"{FOOTBALL.title}, part {i}", link=f"{FOOTBALL.link}{i}", guid=None
        )
        for i in range(3)
    ]
    feed_server.add("/a.xml", rss([MEETING_A, GEORGIA_EU, *more]))
    feed_server.add("/b.xml", rss([MEETING_B]))
    path = write_config(FETCH + sources_toml(feed_server, {"a": "/a.xml", "b": "/b.xml"}))
    with open_pipeline(path) as pipe:
        assert poll(pipe).new == 6
        assert pipe.store.ungrouped_items(100, 600) == []
        meeting = [s for s in pipe.published_stories(NOW) if s.lead.title == MEETING_A.title]
        assert len(meeting) == 1 and len(meeting[0].entries) == 2


@pytest.mark.parametrize("slow", ["a", "c"])
def test_stories_are_assigned_in_source_order_while_later_sources_are_still_fetched(
    feed_server: FeedServer,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    slow: str,
) -> None:
    """Grouping follows the sources' order, not the order their fetches finish in, and a
    source is grouped as soon as every one before it is stored."""
    feeds = {"a": [MEETING_A], "b": [MEETING_B, FOOTBALL], "c": [GEORGIA_EU]}
    for name, items in feeds.items():
        feed_server.add(f"/{name}.xml", rss(items), delay=0.6 if name == slow else 0.0)
    path = write_config(FETCH + sources_toml(feed_server, {n: f"/{n}.xml" for n in feeds}))
    real_group = pipeline_module.Pipeline.group_pending
    calls: list[tuple[str, list[str]]] = []

    def spy(self: Pipeline, now: datetime, source: str | None = None) -> int:
        if source is not None:
            rows = self.store._query("SELECT DISTINCT source FROM entries ORDER BY source")
            calls.append((source, [r["source"] for r in rows]))
        return real_group(self, now, source)

    monkeypatch.setattr(pipeline_module.Pipeline, "group_pending", spy)
    with open_pipeline(path) as pipe:
        assert poll(pipe).new == 4
        assert [source for source, _ in calls] == ["a", "b", "c"]
        if slow == "c":  # a and b were grouped before c was stored
            assert calls[1] == ("b", ["a", "b"])
        else:  # b and c wait for a, whose fetch finished last
            assert calls[0] == ("a", ["a", "b", "c"])
        assert pipe.store.ungrouped_items(100, 600) == []
        stories = {frozenset(e.title for e in s.entries) for s in pipe.store.stories(tag=None)}
    assert stories == {
        frozenset({MEETING_A.title, MEETING_B.title}),
        frozenset({FOOTBALL.title}),
        frozenset({GEORGIA_EU.title}),
    }


def test_parser_processes_yield_the_cpu_to_the_main_process(write_config: WriteConfig) -> None:
    from digest.prepare import WORKER_NICENESS

    with open_pipeline(write_config("")) as pipe:
        worker = pipe._get_pool().submit(os.nice, 0).result(timeout=60)
    assert worker == min(19, os.nice(0) + WORKER_NICENESS)
