"""Digests end to end: polled entries, a real SMTP server on 127.0.0.1, a real SQLite file.

The list sends at 07:00 in Tbilisi (03:00 UTC); ``NOW`` is 06:00 UTC, so the period of
2026-11-26 is due at ``NOW``. Later periods are reached by passing a later ``now``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import feedparser
import pytest
from aiohttp.test_utils import TestClient, TestServer

from digest.pipeline import DigestOutcome, Pipeline
from digest.store import Store
from digest.web import make_app
from tests.servers import FeedServer
from tests.smtp import Received, SmtpServer
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
MESSAGE_ID = "<digest.daily.2026-11-26@caucasus.example>"
DAY = timedelta(days=1)

#: more selected events, one per day after NOW's, for catch-up and next-period tests
TURKEY_BAKU = Item(
    title="Fidan arrives in Baku for consultations with Aliyev",
    link="https://apa.example/politics/fidan-aliyev-baku",
    guid="apa-90",
    summary="Turkey's top diplomat will review the normalisation process and regional cooperation.",
    published=NOW + DAY - timedelta(hours=3),
)
TEHRAN_VISIT = Item(
    title="Yerevan and Tehran agree to upgrade the North-South road",
    link="https://armenpress.example/news/1100",
    guid="armenpress-1100",
    summary="Grigoryan and Iranian officials set out a timetable for the transit corridor.",
    published=NOW + 2 * DAY - timedelta(hours=3),
)
OSCE_GEORGIA = Item(
    title="OSCE chair urges calm along the Abkhazia boundary line",
    link="https://civil.example/en/archives/5100",
    guid="civil-5100",
    summary="The chairperson asked the sides in Geneva to keep the incident prevention "
    "mechanism working.",
    published=NOW + 3 * DAY - timedelta(hours=3),
)


def digest_list(*recipients: str, extra: str = "") -> str:
    quoted = ", ".join(f'"{r}"' for r in recipients)
    return (
        f'[[digests]]\nname = "daily"\nrecipients = [{quoted}]\ntime = "07:00"\n'
        f'timezone = "Asia/Tbilisi"\n{extra}\n'
    )


def smtp_table(server: SmtpServer) -> str:
    return (
        f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n'
        'from_address = "digest@caucasus.example"\ntimeout = 5\n\n'
    )


def setup(
    write_config: WriteConfig,
    feeds: FeedServer,
    smtp: SmtpServer | None,
    *recipients: str,
    extra: str = "",
    sources: dict[str, str] | None = None,
) -> Path:
    body = FETCH + sources_toml(feeds, sources or {"armenpress": "/a.xml", "apa": "/b.xml"})
    if smtp is not None:
        body += smtp_table(smtp)
    return write_config(body + digest_list(*(recipients or ("anna@example.org",)), extra=extra))


def send(pipe: Pipeline, now: datetime) -> list[DigestOutcome]:
    return asyncio.run(pipe.send_due(now))


def statuses(outcomes: list[DigestOutcome]) -> list[str]:
    return [o.status for o in outcomes]


def text_of(msg: EmailMessage) -> str:
    """The plain-text part with its line wrapping undone."""
    part = msg.get_body(("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def mailed_titles(received: list[Received], *candidates: Item) -> list[str]:
    """Every candidate title found in every received message, one entry per occurrence."""
    out = []
    for r in received:
        text = text_of(r.message())
        out += [c.title or "" for c in candidates if (c.title or "") in text]
    return sorted(out)


# -- once per period ----------------------------------------------------------------------


def test_digest_is_sent_once_per_period_with_a_stable_message_id(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A, FOOTBALL]))
    feed_server.add("/b.xml", rss([MEETING_B, GEORGIA_EU]))
    path = setup(write_config, feed_server, smtp_server)
    with open_pipeline(path) as pipe:
        poll(pipe)
        (first,) = send(pipe, NOW)
        assert (first.status, first.period, first.stories) == ("sent", "2026-11-26", 2)
        assert first.message_id == MESSAGE_ID
        (again,) = send(pipe, NOW + timedelta(hours=3))
        assert again.status == "not-due"

    (received,) = smtp_server.received
    assert received.rcpt_tos == ("anna@example.org",)
    msg = received.message()
    assert msg["Message-ID"] == MESSAGE_ID
    assert msg["To"] == "anna@example.org"
    assert "2 stories" in msg["Subject"]
    text = text_of(msg)
    assert MEETING_A.title in text and GEORGIA_EU.title in text
    assert FOOTBALL.title not in text
    assert text.count("Abu Dhabi for peace talks") == 1
    assert MEETING_A.title in html_of(msg)


def test_refused_recipient_is_retried_and_the_accepted_one_is_not_mailed_again(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([GEORGIA_EU]))
    path = setup(write_config, feed_server, smtp_server, "anna@example.org", "ben@example.org")
    smtp_server.refuse.add("ben@example.org")
    with open_pipeline(path) as pipe:
        poll(pipe)
        (partial,) = send(pipe, NOW)
        assert partial.status == "partial"
        record = pipe.store.digest("daily", "2026-11-26")
        assert record is not None and record.status == "pending"
        assert record.recipients == {"anna@example.org": "accepted", "ben@example.org": "refused"}

        assert statuses(send(pipe, NOW + timedelta(seconds=30))) == ["not-due", "not-due"]
        # The only pending recipient is refused again; the period is not sent a second time.
        assert statuses(send(pipe, NOW + timedelta(minutes=2))) == ["failed", "not-due"]

        smtp_server.refuse.clear()
        done, _ = send(pipe, NOW + timedelta(hours=1))
        assert (done.status, done.message_id) == ("sent", MESSAGE_ID)
        assert statuses(send(pipe, NOW + timedelta(hours=2))) == ["not-due"]
        record = pipe.store.digest("daily", "2026-11-26")
        assert record is not None and record.status == "sent"
        assert set(record.recipients.values()) == {"accepted"}

    assert [r.rcpt_tos for r in smtp_server.received] == [
        ("anna@example.org",),
        ("ben@example.org",),
    ]
    first, retry = (r.message() for r in smtp_server.received)
    assert first["Message-ID"] == retry["Message-ID"] == MESSAGE_ID
    assert first["Date"] == retry["Date"]
    assert text_of(first) == text_of(retry)


def test_smtp_down_keeps_the_digest_pending_until_a_retry_delivers_it(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([GEORGIA_EU]))
    path = setup(write_config, feed_server, smtp_server)
    smtp_server.stop()
    with open_pipeline(path) as pipe:
        poll(pipe)
        (failed,) = send(pipe, NOW)
        assert failed.status == "failed" and failed.detail
        record = pipe.store.digest("daily", "2026-11-26")
        assert record is not None
        assert (record.status, record.attempts) == ("pending", 1)
        assert record.next_try_at == NOW + timedelta(seconds=60)
        assert len(record.story_ids) == 2

        assert statuses(send(pipe, NOW + timedelta(seconds=61))) == ["failed", "not-due"]
        record = pipe.store.digest("daily", "2026-11-26")
        assert record is not None
        assert record.next_try_at == NOW + timedelta(seconds=61 + 120)

        smtp_server.start()
        assert statuses(send(pipe, NOW + timedelta(seconds=120))) == ["not-due", "not-due"]
        sent, _ = send(pipe, NOW + timedelta(seconds=181))
        assert (sent.status, sent.stories, sent.message_id) == ("sent", 2, MESSAGE_ID)

    (received,) = smtp_server.received
    text = text_of(received.message())
    assert MEETING_A.title in text and GEORGIA_EU.title in text


def test_at_least_once_a_crash_between_accept_and_record_resends_with_the_same_message_id(
    feed_server: FeedServer,
    smtp_server: SmtpServer,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Delivery is at least once: if the process dies after the server took the message but
    before the outcome is recorded, the next run sends it again with the same Message-ID (and
    Date), so receivers and their mail systems can drop the copy. A lost digest would be worse.
    """
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([GEORGIA_EU]))
    path = setup(write_config, feed_server, smtp_server)
    with open_pipeline(path) as pipe:
        poll(pipe)

        def crash(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt("simulated crash before the delivery is recorded")

        monkeypatch.setattr(pipe.store, "record_delivery", crash)
        with pytest.raises(KeyboardInterrupt):
            send(pipe, NOW)
        assert len(smtp_server.received) == 1

    with open_pipeline(path) as restarted:  # a new process: a new store, a new pipeline
        record = restarted.store.digest("daily", "2026-11-26")
        assert record is not None and record.status == "pending"
        resent, _ = send(restarted, NOW + timedelta(minutes=5))
        assert (resent.status, resent.message_id) == ("sent", MESSAGE_ID)
        assert statuses(send(restarted, NOW + timedelta(minutes=10))) == ["not-due"]

    first, second = (r.message() for r in smtp_server.received)
    assert first["Message-ID"] == second["Message-ID"] == MESSAGE_ID
    assert first["Date"] == second["Date"]
    assert first["Subject"] == second["Subject"]


# -- periods ------------------------------------------------------------------------------


def test_missed_periods_are_caught_up_as_one_digest(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([]))
    path = setup(write_config, feed_server, smtp_server)
    with open_pipeline(path) as pipe:
        poll(pipe)
        assert send(pipe, NOW)[0].status == "sent"
        # Polling goes on, but no digest goes out for three days.
        for day, items in enumerate(([TURKEY_BAKU], [TEHRAN_VISIT], [OSCE_GEORGIA]), start=1):
            feed_server.add("/b.xml", rss(items))
            poll(pipe, NOW + day * DAY - timedelta(hours=2))
        (caught_up,) = send(pipe, NOW + 3 * DAY)
        assert (caught_up.status, caught_up.period, caught_up.stories) == ("sent", "2026-11-29", 3)
        periods = [r[0] for r in pipe.store.db.execute("SELECT period FROM digests ORDER BY id")]
        assert periods == ["2026-11-26", "2026-11-29"]

    assert len(smtp_server.received) == 2
    assert mailed_titles(smtp_server.received[1:], TURKEY_BAKU, TEHRAN_VISIT, OSCE_GEORGIA) == (
        sorted([TURKEY_BAKU.title or "", TEHRAN_VISIT.title or "", OSCE_GEORGIA.title or ""])
    )
    assert MEETING_A.title not in text_of(smtp_server.received[1].message())


def test_empty_period_is_skipped_by_default(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([FOOTBALL]))
    feed_server.add("/b.xml", rss([]))
    path = setup(write_config, feed_server, smtp_server)
    with open_pipeline(path) as pipe:
        poll(pipe)
        (empty,) = send(pipe, NOW)
        assert (empty.status, empty.period) == ("empty", "2026-11-26")
        assert send(pipe, NOW + timedelta(hours=1))[0].status == "not-due"
    assert smtp_server.received == []


def test_empty_period_sends_a_short_note_with_send_empty(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([FOOTBALL]))
    feed_server.add("/b.xml", rss([]))
    path = setup(write_config, feed_server, smtp_server, extra="send_empty = true")
    with open_pipeline(path) as pipe:
        poll(pipe)
        (note,) = send(pipe, NOW)
        assert (note.status, note.stories) == ("sent", 0)
    (received,) = smtp_server.received
    msg = received.message()
    assert "0 stories" in msg["Subject"]
    assert "No new stories in this period." in text_of(msg)
    assert FOOTBALL.title not in text_of(msg)


def test_story_that_grows_after_mailing_is_not_mailed_again_and_new_ones_go_next_period(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([]))
    path = setup(write_config, feed_server, smtp_server)
    with open_pipeline(path) as pipe:
        poll(pipe)
        assert send(pipe, NOW)[0].stories == 1
        # After the digest: a second report of the same meeting, and a new event.
        feed_server.add("/b.xml", rss([MEETING_B, GEORGIA_EU]))
        report = poll(pipe, NOW + timedelta(hours=1))
        assert report.new == 2
        a = pipe.store.find_entry(MEETING_A.link or "")
        b = pipe.store.find_entry(MEETING_B.link or "")
        assert a is not None and b is not None and a.story_id == b.story_id
        (next_day,) = send(pipe, NOW + DAY)
        assert (next_day.status, next_day.stories) == ("sent", 1)
        assert send(pipe, NOW + 2 * DAY)[0].status == "empty"

    first, second = (text_of(r.message()) for r in smtp_server.received)
    assert MEETING_A.title in first and GEORGIA_EU.title not in first
    assert GEORGIA_EU.title in second
    assert MEETING_A.title not in second and MEETING_B.title not in second


# -- outbox -------------------------------------------------------------------------------


def test_outbox_mode_writes_one_eml_per_period_atomically(
    feed_server: FeedServer, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def watched_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watched_replace)
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([]))
    path = setup(write_config, feed_server, None)
    outbox = path.parent / "state" / "outbox"
    with open_pipeline(path) as pipe:
        poll(pipe)
        assert send(pipe, NOW)[0].status == "sent"
        assert send(pipe, NOW + timedelta(hours=2))[0].status == "not-due"
        feed_server.add("/b.xml", rss([GEORGIA_EU]))
        poll(pipe, NOW + timedelta(hours=3))
        assert send(pipe, NOW + DAY)[0].status == "sent"

    files = sorted(p.name for p in outbox.iterdir())
    assert files == ["daily-2026-11-26.eml", "daily-2026-11-27.eml"]
    eml = [(src, dst) for src, dst in renames if dst.suffix == ".eml"]
    assert [dst.name for _, dst in eml] == files
    assert all(src.parent == dst.parent and src != dst for src, dst in eml)
    first = (outbox / files[0]).read_bytes()
    assert b"\r\n" in first
    msg = message_from_bytes(first, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Message-ID"] == "<digest.daily.2026-11-26@localhost.localdomain>"
    assert MEETING_A.title in text_of(msg)


# -- one story everywhere -----------------------------------------------------------------


def test_one_event_from_two_outlets_is_one_story_in_feed_digest_and_page(
    feed_server: FeedServer,
    smtp_server: SmtpServer,
    write_config: WriteConfig,
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([MEETING_B]))
    path = setup(
        write_config, feed_server, smtp_server, sources={"Armenpress": "/a.xml", "APA": "/b.xml"}
    )
    with open_pipeline(path) as pipe:
        poll(pipe)
        pipe.publish(NOW)
        (sent,) = send(pipe, NOW)
        assert sent.stories == 1
        settings = pipe.config.publish
        page = asyncio.run(_fetch_page(pipe, NOW))

    rss_doc = feedparser.parse((settings.output_dir / "feed.xml").read_bytes())
    assert rss_doc.bozo == 0
    (item,) = rss_doc.entries
    assert item.title == MEETING_A.title
    assert "Also reported by" in item.description and "APA" in item.description
    json_doc = json.loads((settings.output_dir / "feed.json").read_text(encoding="utf-8"))
    (json_item,) = json_doc["items"]
    assert json_item["id"] == item.id
    assert "Also reported by" in json_item["content_html"]

    (received,) = smtp_server.received
    text = text_of(received.message())
    assert text.count(MEETING_A.title or "") == 1
    assert MEETING_B.title not in text.split("Also reported by")[0]
    assert "Also reported by" in text and "APA" in text
    assert "Also reported by" in html_of(received.message())

    assert page.count(f">{MEETING_A.title}<") == 1
    assert "Also reported by" in page and "APA" in page


async def _fetch_page(pipe: Pipeline, now: datetime) -> str:
    app = make_app(
        pipe.config.publish,
        stories=lambda tag: pipe.published_stories(now, tag),
        clock=lambda: now,
    )
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        assert response.status == 200
        feed = await client.get("/feed.xml")
        assert feed.status == 200
        return await response.text()


def test_store_reopened_sees_the_same_digest_records(
    feed_server: FeedServer, smtp_server: SmtpServer, write_config: WriteConfig
) -> None:
    feed_server.add("/a.xml", rss([MEETING_A]))
    feed_server.add("/b.xml", rss([]))
    path = setup(write_config, feed_server, smtp_server)
    with open_pipeline(path) as pipe:
        poll(pipe)
        send(pipe, NOW)
        db_path = pipe.config.db_path
    with Store(db_path) as store:
        record = store.digest("daily", "2026-11-26")
        assert record is not None and record.status == "sent" and record.sent_at == NOW
