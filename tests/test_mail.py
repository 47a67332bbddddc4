from __future__ import annotations

import asyncio
import datetime as dt
import logging
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from digest.errors import SendError
from digest.mail import (
    SUBJECT_LIMIT,
    WIRE_POLICY,
    asend_message,
    build_message,
    header_text,
    send_message,
)
from digest.models import Entry, Story
from digest.periods import DigestListSettings, Period, SmtpSettings, period_for
from digest.render import build_context, render_digest
from tests import smtp as smtp_fixtures
from tests.smtp import SmtpServer

smtp_server = smtp_fixtures.smtp_server  # the fixture

NOW = dt.datetime(2026, 11, 26, 3, 5, tzinfo=dt.UTC)
PASSWORD = "s3cret-Pa55"
NAMES = ("Երևան", "თბილისი", "Баку")


def lists(**kw: Any) -> DigestListSettings:
    base: dict[str, Any] = {
        "name": "daily",
        "recipients": ("anna@example.am", "Гиви <givi@example.ge>"),
        "bcc": False,
        "timezone": "Asia/Yerevan",
        "title": "South Caucasus diplomacy",
        "subject": "South Caucasus diplomacy, {date:%d %b %Y}: {count} stories",
        "unsubscribe_url": "https://digest.example.org/unsubscribe?l=daily",
        "unsubscribe_mailto": "leave@digest.example.org",
    }
    return DigestListSettings(**{**base, **kw})


def relay(server: SmtpServer | None = None, **kw: Any) -> SmtpSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port if server else 25,
        "security": "none",
        "from_address": "Caucasus Digest <digest@digest.example.org>",
        "domain": "digest.example.org",
        "timeout": 5,
        "helo_name": "localhost",
    }
    return SmtpSettings(**{**base, **kw})


def stories() -> list[Story]:
    def entry(n: int, source: str, title: str) -> Entry:
        when = NOW - dt.timedelta(hours=n)
        return Entry(
            id=n,
            source=source,
            guid=None,
            link=f"https://news.example.org/{n}",
            canonical_link=None,
            title=title,
            summary=f"{title}. Talks went on.",
            content_html="",
            published=when,
            updated=when,
            first_seen=when,
            tags=("armenia", "georgia"),
        )

    lead = entry(3, "Armenpress", f"Ministers meet in {NAMES[0]}, {NAMES[1]} and {NAMES[2]}")
    return [Story(id=1, uid="s1", lead=lead, others=(entry(2, "Civil.ge", "Встреча"),))]


def message(
    settings: DigestListSettings | None = None,
    smtp: SmtpSettings | None = None,
    now: dt.datetime = NOW,
) -> EmailMessage:
    settings = settings or lists()
    period = period_for(settings, now)
    ctx = build_context(
        stories(), settings, period, feed_url="https://digest.example.org/feed.xml", now=now
    )
    html, text = render_digest(ctx, templates_dir=None)
    return build_message(
        html, text, period=period, settings=settings, smtp=smtp or relay(), story_count=1, now=now
    )


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(msg.as_bytes(policy=WIRE_POLICY), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


EXPECTED_HEADERS = {
    "Subject",
    "From",
    "To",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Precedence",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
}


def assert_digest_structure(msg: EmailMessage) -> None:
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    text, html = (p.get_content() for p in parts)
    for name in NAMES:
        assert name in text and name in html
    assert "Встреча" in html


# -- the message -----------------------------------------------------------------------------


def test_message_structure_and_headers() -> None:
    msg = reparse(message())
    assert_digest_structure(msg)
    assert set(msg.keys()) == EXPECTED_HEADERS
    assert msg["Subject"] == "South Caucasus diplomacy, 26 Nov 2026: 1 stories"
    assert msg["From"] == "Caucasus Digest <digest@digest.example.org>"
    assert [a.addr_spec for a in msg["To"].addresses] == ["anna@example.am", "givi@example.ge"]
    assert msg["To"].addresses[1].display_name == "Гиви"
    assert msg["Message-ID"] == "<digest.daily.2026-11-26@digest.example.org>"
    assert msg["List-Id"] == "South Caucasus diplomacy <daily.digest.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<mailto:leave@digest.example.org?subject=unsubscribe>, "
        "<https://digest.example.org/unsubscribe?l=daily>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"].datetime == NOW
    assert msg["Date"].datetime.utcoffset() == dt.timedelta(hours=4)  # the list's zone


def test_message_id_is_the_same_on_every_resend() -> None:
    first = message(now=NOW)
    again = message(now=NOW + dt.timedelta(hours=5))
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Date"] != again["Date"]
    next_day = message(now=NOW + dt.timedelta(days=1))
    assert next_day["Message-ID"] == "<digest.daily.2026-11-27@digest.example.org>"


def test_bcc_keeps_recipients_out_of_the_headers() -> None:
    msg = reparse(message(lists(bcc=True)))
    assert msg["To"] == "undisclosed-recipients:;"
    raw = msg.as_string()
    assert "anna@example.am" not in raw and "givi@example.ge" not in raw
    assert "Bcc" not in msg


def test_unsubscribe_post_only_with_a_url() -> None:
    msg = reparse(message(lists(unsubscribe_url=None)))
    assert msg["List-Unsubscribe"] == "<mailto:leave@digest.example.org?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in msg
    bare = reparse(message(lists(unsubscribe_url=None, unsubscribe_mailto=None)))
    assert "List-Unsubscribe" not in bare


def test_hostile_strings_cannot_add_headers() -> None:
    hostile = "Digest\r\nBcc: victim@example.org\r\nX-Injected: yes\n\nbody"
    settings = lists(title=hostile, subject="{title} {list}: {count}")
    msg = reparse(message(settings))
    assert set(msg.keys()) == EXPECTED_HEADERS
    assert "Bcc" not in msg and "X-Injected" not in msg
    assert msg["Subject"] == "Digest Bcc: victim@example.org X-Injected: yes body daily: 1"
    assert "\n" not in str(msg["List-Id"])
    assert_digest_structure(msg)


def test_long_and_non_ascii_subjects_are_folded_and_capped() -> None:
    title = f"{NAMES[0]} {NAMES[1]} {NAMES[2]} " * 40
    msg = message(lists(title=title, subject="{title}"))
    wire = msg.as_bytes(policy=WIRE_POLICY)
    assert max(len(line) for line in wire.split(b"\r\n")) <= 998
    assert wire.isascii()  # 8-bit text only inside the base64/qp bodies and RFC 2047 words
    subject = reparse(msg)["Subject"]
    assert subject.startswith(f"{NAMES[0]} {NAMES[1]} {NAMES[2]}")
    assert len(subject) <= SUBJECT_LIMIT and subject.endswith("…")


def test_header_text() -> None:
    assert header_text(" a\r\n\tb\x00c \u202e d ") == "a b c d"
    assert len(header_text("x" * 500)) == SUBJECT_LIMIT


# -- delivery over SMTP ----------------------------------------------------------------------


def test_send_plain(smtp_server: SmtpServer) -> None:
    settings = lists(bcc=True)
    smtp = relay(smtp_server)
    outcome = send_message(
        message(settings, smtp), settings.recipients, smtp, outbox_dir=Path("/nonexistent")
    )
    assert outcome.transport == "smtp"
    assert outcome.accepted == ("anna@example.am", "givi@example.ge")
    assert outcome.refused == {}
    assert outcome.message_id == "<digest.daily.2026-11-26@digest.example.org>"
    assert outcome.path is None
    (received,) = smtp_server.received
    assert received.mail_from == "digest@digest.example.org"
    assert received.rcpt_tos == ("anna@example.am", "givi@example.ge")
    msg = received.message()
    assert_digest_structure(msg)
    assert msg["Message-ID"] == outcome.message_id
    assert msg["To"] == "undisclosed-recipients:;"
    assert "Bcc" not in msg and "anna@example.am" not in received.data.decode("ascii")


def test_starttls_with_a_private_ca_and_auth(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_server.restart(tls="starttls", auth={"digest": PASSWORD})
    monkeypatch.setenv("DIGEST_TEST_SMTP_PASSWORD", PASSWORD)
    smtp = relay(
        smtp_server,
        security="starttls",
        ca_file=smtp_server.ca_file,
        username="digest",
        password_env="DIGEST_TEST_SMTP_PASSWORD",
    )
    caplog.set_level(logging.DEBUG)
    outcome = send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))
    assert outcome.accepted == ("anna@example.am",)
    assert smtp_server.logins == ["digest"]
    assert_digest_structure(smtp_server.received[0].message())
    assert PASSWORD not in caplog.text


def test_wrong_password_is_not_revealed(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.restart(tls="starttls", auth={"digest": "the-right-one"})
    monkeypatch.setenv("DIGEST_TEST_SMTP_PASSWORD", PASSWORD)
    smtp = relay(
        smtp_server,
        security="starttls",
        ca_file=smtp_server.ca_file,
        username="digest",
        password_env="DIGEST_TEST_SMTP_PASSWORD",
    )
    with pytest.raises(SendError, match="refused the login of 'digest'") as info:
        send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.args)
    assert smtp_server.received == []


def test_missing_password_variable(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_TEST_SMTP_PASSWORD", raising=False)
    smtp = relay(smtp_server, username="digest", password_env="DIGEST_TEST_SMTP_PASSWORD")
    with pytest.raises(SendError, match="DIGEST_TEST_SMTP_PASSWORD .* is not set"):
        send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))


def test_starttls_refuses_an_untrusted_certificate(smtp_server: SmtpServer) -> None:
    smtp_server.restart(tls="starttls")
    smtp = relay(smtp_server, security="starttls")  # system CAs only
    with pytest.raises(SendError, match="TLS with the SMTP server .* failed") as info:
        send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert smtp_server.received == []


def test_starttls_required_but_not_offered(smtp_server: SmtpServer) -> None:
    smtp = relay(smtp_server, security="starttls", ca_file=smtp_server.ca_file)
    with pytest.raises(SendError, match="security"):
        send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))


def test_implicit_tls(smtp_server: SmtpServer) -> None:
    smtp_server.restart(tls="ssl")
    smtp = relay(smtp_server, security="ssl", ca_file=smtp_server.ca_file)
    outcome = send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))
    assert outcome.accepted == ("anna@example.am",)
    assert_digest_structure(smtp_server.received[0].message())


def test_some_recipients_refused(smtp_server: SmtpServer) -> None:
    smtp_server.refuse.add("givi@example.ge")
    smtp = relay(smtp_server)
    recipients = ["anna@example.am", "Гиви <givi@example.ge>", "nino@example.ge"]
    outcome = send_message(message(smtp=smtp), recipients, smtp, outbox_dir=Path("."))
    assert outcome.accepted == ("anna@example.am", "nino@example.ge")
    assert list(outcome.refused) == ["givi@example.ge"]
    assert outcome.refused["givi@example.ge"].startswith("550 5.1.1")
    (received,) = smtp_server.received
    assert received.rcpt_tos == ("anna@example.am", "nino@example.ge")


def test_all_recipients_refused(smtp_server: SmtpServer) -> None:
    smtp_server.refuse.update({"anna@example.am", "givi@example.ge"})
    smtp = relay(smtp_server)
    with pytest.raises(SendError, match="refused every recipient") as info:
        send_message(
            message(smtp=smtp), ["anna@example.am", "givi@example.ge"], smtp, outbox_dir=Path(".")
        )
    assert set(info.value.refused) == {"anna@example.am", "givi@example.ge"}
    assert all(r.startswith("550") for r in info.value.refused.values())
    assert smtp_server.received == []


def test_server_down_then_up(smtp_server: SmtpServer) -> None:
    smtp = relay(smtp_server)
    msg = message(smtp=smtp)
    smtp_server.stop()
    with pytest.raises(SendError, match=r"cannot connect to the SMTP server 127\.0\.0\.1:\d+"):
        send_message(msg, ["anna@example.am"], smtp, outbox_dir=Path("."))
    smtp_server.start()
    outcome = send_message(msg, ["anna@example.am"], smtp, outbox_dir=Path("."))
    assert outcome.accepted == ("anna@example.am",)
    assert len(smtp_server.received) == 1


def test_async_send_runs_in_a_thread(smtp_server: SmtpServer) -> None:
    smtp = relay(smtp_server)
    msg = message(smtp=smtp)

    async def main() -> list[str]:
        ticks: list[str] = []

        async def ticker() -> None:
            ticks.append("tick")

        result = await asyncio.gather(
            asend_message(msg, ["anna@example.am"], smtp, outbox_dir=Path(".")), ticker()
        )
        assert result[0].accepted == ("anna@example.am",)
        return ticks

    assert asyncio.run(main()) == ["tick"]
    assert len(smtp_server.received) == 1


# -- the outbox ------------------------------------------------------------------------------


def test_outbox_without_smtp(tmp_path: Path) -> None:
    settings = lists(bcc=True)
    msg = build_message(
        "<p>Երևան</p>",
        "Երևան",
        period=period_for(settings, NOW),
        settings=settings,
        smtp=None,
        story_count=0,
        now=NOW,
    )
    outbox = tmp_path / "outbox"
    outcome = send_message(msg, settings.recipients, None, outbox_dir=outbox)
    assert outcome.transport == "outbox"
    assert outcome.accepted == ("anna@example.am", "givi@example.ge")
    assert outcome.path == outbox / "daily-2026-11-26.eml"
    assert [p.name for p in outbox.iterdir()] == ["daily-2026-11-26.eml"]
    saved = message_from_bytes(outcome.path.read_bytes(), policy=policy.default)
    assert isinstance(saved, EmailMessage)
    assert saved["Message-ID"] == "<digest.daily.2026-11-26@localhost.localdomain>"
    assert [p.get_content().strip() for p in saved.iter_parts()] == ["Երևան", "<p>Երևան</p>"]
    # a resend of the same period replaces the file instead of adding one
    send_message(msg, settings.recipients, None, outbox_dir=outbox)
    assert len(list(outbox.iterdir())) == 1


def test_outbox_message_id_uses_the_list_sender_domain(tmp_path: Path) -> None:
    settings = lists(from_address="Digest <d@news.example.am>")
    period: Period = period_for(settings, NOW)
    msg = build_message("", "", period=period, settings=settings, smtp=None, story_count=0, now=NOW)
    assert msg["Message-ID"] == "<digest.daily.2026-11-26@news.example.am>"
    assert msg["From"] == "Digest <d@news.example.am>"


def test_unwritable_outbox(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(SendError, match="cannot write the digest to the outbox"):
        send_message(message(), ["anna@example.am"], None, outbox_dir=blocker)


def test_no_recipients() -> None:
    with pytest.raises(SendError, match="no recipients"):
        send_message(message(), [], None, outbox_dir=Path("."))


def test_plain_auth_on_a_local_relay(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.restart(auth={"digest": PASSWORD})
    no_login = relay(smtp_server)
    with pytest.raises(SendError, match="wants authentication or STARTTLS first"):
        send_message(message(smtp=no_login), ["anna@example.am"], no_login, outbox_dir=Path("."))
    monkeypatch.setenv("DIGEST_TEST_SMTP_PASSWORD", PASSWORD)
    smtp = relay(smtp_server, username="digest", password_env="DIGEST_TEST_SMTP_PASSWORD")
    outcome = send_message(message(smtp=smtp), ["anna@example.am"], smtp, outbox_dir=Path("."))
    assert outcome.accepted == ("anna@example.am",)
    assert smtp_server.logins == ["digest"]
