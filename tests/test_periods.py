from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from digest import tomlutil
from digest.errors import ConfigError
from digest.periods import (
    COUNTRY_ORDER,
    DigestListSettings,
    SmtpSettings,
    due_period,
    load_digest_lists,
    next_run,
    period_for,
)

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def daily(**kw: Any) -> DigestListSettings:
    base: dict[str, Any] = {"name": "daily", "recipients": ("a@example.org",), "bcc": False}
    return DigestListSettings(**{**base, **kw})


def lists_from(text: str, base_dir: Path = Path("/tmp")) -> tuple[DigestListSettings, ...]:
    return load_digest_lists(tomlutil.loads(text, "digest.toml").root(), base_dir)


def smtp_from(text: str, base_dir: Path = Path("/tmp")) -> SmtpSettings:
    return SmtpSettings.from_section(
        tomlutil.loads(text, "digest.toml").root().table("smtp"), base_dir
    )


# -- config ----------------------------------------------------------------------------------


def test_list_defaults() -> None:
    (item,) = lists_from('[[digests]]\nname = "daily"\nrecipients = ["a@example.org"]\n')
    assert item.name == "daily"
    assert item.recipients == ("a@example.org",)
    assert item.bcc is False  # a single recipient may see their own address
    assert item.time == dt.time(7, 0)
    assert item.timezone == "UTC"
    assert item.schedule == "daily"
    assert item.selection == "south-caucasus-diplomacy"
    assert item.group_by == "country"
    assert item.group_order == COUNTRY_ORDER
    assert item.send_empty is False
    assert item.unsubscribe_url is None


def test_list_full(tmp_path: Path) -> None:
    (item,) = lists_from(
        """
[[digests]]
name = "weekly-ru"
recipients = ["a@example.org", "Анна <anna@example.am>"]
time = "18:30"
timezone = "Asia/Tbilisi"
schedule = "weekly"
weekday = "fri"
group_by = "topic"
group_order = ["peace-process", "sanctions"]
group_labels = { peace-process = "Peace process" }
subject = "{title} ({period}): {count}"
send_empty = true
unsubscribe_url = "https://example.org/unsubscribe?list=weekly-ru"
unsubscribe_mailto = "leave@example.org"
from_address = "Digest <digest@example.org>"
title = "Кавказ"
""",
        tmp_path,
    )
    assert item.bcc is True  # default with more than one recipient
    assert item.time == dt.time(18, 30)
    assert item.weekday == 4
    assert item.group_order == ("peace-process", "sanctions")
    assert item.group_labels == {"peace-process": "Peace process"}
    assert item.title == "Кавказ"


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ('name = "Daily_EN"\nrecipients = ["a@example.org"]', "name", "lower-case"),
        ('name = "d"\nrecipients = []', "recipients", "at least one"),
        ('name = "d"\nrecipients = ["a@example.org", "not-an-address"]', "recipients[2]", "not an"),
        ('name = "d"\nrecipients = ["a@example.org", "A@example.org"]', "recipients", "twice"),
        ('name = "d"\nrecipients = ["a@example.org"]\ntime = "7:00"', "time", "HH:MM"),
        (
            'name = "d"\nrecipients = ["a@example.org"]\ntimezone = "Asia/Erevan"',
            "timezone",
            "IANA",
        ),
        ('name = "d"\nrecipients = ["a@example.org"]\nweekday = "fri"', "weekday", "weekly"),
        ('name = "d"\nrecipients = ["a@example.org"]\nschedule = "monthly"', "schedule", "one of"),
        (
            'name = "d"\nrecipients = ["a@example.org"]\ngroup_by = "topic"',
            "group_by",
            "group_order",
        ),
        ('name = "d"\nrecipients = ["a@example.org"]\nsubject = "{cnt}"', "subject", "{cnt}"),
        (
            'name = "d"\nrecipients = ["a@example.org"]\nunsubscribe_url = "http://x.org/u"',
            "unsubscribe_url",
            "https",
        ),
        ('name = "d"\nrecipients = ["a@example.org"]\nrecipient = "x"', "recipient", "unknown key"),
    ],
)
def test_list_errors_name_key_and_line(extra: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        lists_from(f"# header\n[[digests]]\n{extra}\n")
    err = info.value
    assert err.key == f"digests[1].{key}"
    assert err.path == "digest.toml"
    assert err.line is not None and err.line >= 3
    assert words in str(err)


def test_duplicate_list_names() -> None:
    text = '[[digests]]\nname = "d"\nrecipients = ["a@example.org"]\n' * 2
    with pytest.raises(ConfigError, match="already named 'd'") as info:
        lists_from(text)
    assert info.value.line == 5


def test_smtp_defaults() -> None:
    smtp = smtp_from('[smtp]\nhost = "mail.example.org"\nfrom_address = "Digest <d@News.am>"\n')
    assert (smtp.port, smtp.security, smtp.timeout) == (587, "starttls", 30)
    assert smtp.domain == "news.am"
    assert smtp.username is None and smtp.password_env is None
    ssl_smtp = smtp_from('[smtp]\nhost = "h.org"\nsecurity = "ssl"\nfrom_address = "d@x.org"\n')
    assert ssl_smtp.port == 465


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ('host = "h.org"', "from_address", "required"),
        ('host = "h.org"\nfrom_address = "d@x.org"\nusername = "u"', "password_env", "password"),
        ('host = "h.org"\nfrom_address = "d@x.org"\npassword_env = "P"', "username", "required"),
        ('host = "h.org"\nfrom_address = "d@x.org"\nsecurity = "tls"', "security", "one of"),
        ('host = "h.org"\nfrom_address = "d@x.org"\nport = 0', "port", "TCP port"),
        ('host = "h.org"\nfrom_address = "d@x.org"\nca_file = "missing.pem"', "ca_file", "exist"),
        ('host = "h.org"\nfrom_address = "d@x.org"\npassword = "hunter2"', "password", "unknown"),
    ],
)
def test_smtp_errors(body: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        smtp_from(f"[smtp]\n{body}\n")
    assert info.value.key == f"smtp.{key}"
    assert words in str(info.value)


# -- periods ---------------------------------------------------------------------------------


def test_daily_period_uses_the_local_date() -> None:
    yerevan = daily(timezone="Asia/Yerevan")  # UTC+4, no DST
    # 21:30 UTC on the 25th is already the 26th in Yerevan
    period = period_for(yerevan, at("2026-11-25T21:30:00"))
    assert period.key == "2026-11-26"
    assert period.date == dt.date(2026, 11, 26)
    assert period.send_at == at("2026-11-26T03:00:00")
    assert period.list_name == "daily"


@pytest.mark.parametrize("zone", ["Asia/Yerevan", "Asia/Baku", "Asia/Tbilisi"])
def test_caucasus_zones_send_at_0300_utc(zone: str) -> None:
    settings = daily(timezone=zone)
    for day in range(1, 366, 30):  # the whole year: none of these zones has DST
        now = at("2026-01-01T12:00:00") + dt.timedelta(days=day)
        assert period_for(settings, now).send_at.time() == dt.time(3, 0)


def test_due_only_after_the_send_time_and_only_once() -> None:
    settings = daily(timezone="Asia/Baku")
    before = at("2026-11-26T02:59:00")  # 06:59 in Baku
    after = at("2026-11-26T03:00:00")
    assert due_period(settings, before, last_sent="2026-11-25") is None
    due = due_period(settings, after, last_sent="2026-11-25")
    assert due is not None and due.key == "2026-11-26"
    assert due_period(settings, after, last_sent="2026-11-26") is None
    assert due_period(settings, at("2026-11-26T23:00:00"), last_sent="2026-11-26") is None


def test_before_the_send_time_an_unsent_yesterday_is_due() -> None:
    settings = daily()
    due = due_period(settings, at("2026-11-26T06:00:00"), last_sent=None)
    assert due is not None and due.key == "2026-11-25"


def test_missed_periods_collapse_into_the_latest() -> None:
    settings = daily()
    due = due_period(settings, at("2026-11-26T09:00:00"), last_sent="2026-11-20")
    assert due is not None and due.key == "2026-11-26"


def test_a_key_older_than_the_last_sent_is_not_sent_again() -> None:
    # the clock went back a day (a restored VM): nothing is resent
    assert due_period(daily(), at("2026-11-25T09:00:00"), last_sent="2026-11-26") is None


def test_schedule_change_counts_as_new() -> None:
    weekly = daily(schedule="weekly", weekday=0)
    due = due_period(weekly, at("2026-11-23T08:00:00"), last_sent="2026-11-22")
    assert due is not None and due.key == "2026-W48"


def test_weekly_keys_and_send_day() -> None:
    settings = daily(schedule="weekly", weekday=4, time=dt.time(18, 0), timezone="Asia/Tbilisi")
    period = period_for(settings, at("2026-11-26T10:00:00"))  # Thursday
    assert period.key == "2026-W48"
    assert period.date == dt.date(2026, 11, 27)  # Friday
    assert period.send_at == at("2026-11-27T14:00:00")
    due = due_period(settings, at("2026-11-26T10:00:00"), last_sent=None)
    assert due is not None and due.key == "2026-W47"
    assert next_run(settings, at("2026-11-26T10:00:00")) == at("2026-11-27T14:00:00")
    assert next_run(settings, at("2026-11-27T14:00:00")) == at("2026-12-04T14:00:00")


def test_weekly_across_the_year_end() -> None:
    settings = daily(schedule="weekly")
    assert period_for(settings, at("2026-12-31T12:00:00")).key == "2026-W53"
    assert period_for(settings, at("2027-01-05T12:00:00")).key == "2027-W01"
    due = due_period(settings, at("2027-01-04T08:00:00"), last_sent="2026-W53")
    assert due is not None and due.key == "2027-W01"


def test_next_run_is_strictly_after_now() -> None:
    settings = daily(timezone="Asia/Yerevan")
    assert next_run(settings, at("2026-11-26T02:00:00")) == at("2026-11-26T03:00:00")
    assert next_run(settings, at("2026-11-26T03:00:00")) == at("2026-11-27T03:00:00")


def test_dst_changes_keep_the_local_send_time() -> None:
    ny = daily(timezone="America/New_York")
    # 2026: DST ends on 1 November, starts on 8 March
    assert period_for(ny, at("2026-10-31T15:00:00")).send_at == at("2026-10-31T11:00:00")
    assert period_for(ny, at("2026-11-01T15:00:00")).send_at == at("2026-11-01T12:00:00")
    assert next_run(ny, at("2026-10-31T11:00:00")) == at("2026-11-01T12:00:00")  # 25 h later
    assert period_for(ny, at("2026-03-07T15:00:00")).send_at == at("2026-03-07T12:00:00")
    assert period_for(ny, at("2026-03-08T15:00:00")).send_at == at("2026-03-08T11:00:00")


def test_skipped_and_repeated_local_times_are_sent_once() -> None:
    # 02:30 does not exist on 8 March 2026 in New York; 01:30 happens twice on 1 November
    skipped = daily(timezone="America/New_York", time=dt.time(2, 30))
    assert period_for(skipped, at("2026-03-08T15:00:00")).send_at == at("2026-03-08T07:30:00")
    repeated = daily(timezone="America/New_York", time=dt.time(1, 30))
    assert period_for(repeated, at("2026-11-01T15:00:00")).send_at == at("2026-11-01T05:30:00")


@pytest.mark.parametrize(
    ("zone", "hhmm", "start"),
    [
        ("America/New_York", "02:30", "2026-03-04T00:00:00"),
        ("America/New_York", "01:30", "2026-10-28T00:00:00"),
        ("Europe/London", "01:30", "2026-03-25T00:00:00"),
        ("Europe/London", "01:30", "2026-10-21T00:00:00"),
        ("Asia/Yerevan", "00:00", "2026-03-25T00:00:00"),
    ],
)
def test_a_scheduler_following_next_run_sends_every_day_once(
    zone: str, hhmm: str, start: str
) -> None:
    hour, minute = map(int, hhmm.split(":"))
    settings = daily(timezone=zone, time=dt.time(hour, minute))
    now, last_sent, sent = at(start), None, []
    for _ in range(10):
        now = next_run(settings, now)
        period = due_period(settings, now, last_sent)
        assert period is not None and period.send_at == now
        sent.append(period.key)
        last_sent = period.key
        # polling again a minute and an hour later sends nothing more
        assert due_period(settings, now + dt.timedelta(minutes=1), last_sent) is None
        assert due_period(settings, now + dt.timedelta(hours=1), last_sent) is None
    days = [dt.date.fromisoformat(k) for k in sent]
    assert days == [days[0] + dt.timedelta(days=i) for i in range(10)]


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_for(daily(), dt.datetime(2026, 11, 26, 7, 0))
