"""Digest lists, SMTP settings, and when each digest period is due.

A period is named by its local send date (``2026-11-26``) or ISO week (``2026-W48``) in the
list's time zone. The key is the digest's identity: it goes into the Message-ID, so a resend
after a crash carries the same id. Everything here is pure; the clock comes in as ``now``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest import tomlutil

Schedule = Literal["daily", "weekly"]
GroupBy = Literal["country", "topic", "none"]
Security = Literal["starttls", "ssl", "none"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the groups of ``group_by = "country"`` when ``group_order`` is not given
COUNTRY_ORDER = (
    "armenia",
    "azerbaijan",
    "georgia",
    "nagorno-karabakh",
    "abkhazia",
    "south-ossetia",
)
DEFAULT_TITLE = "South Caucasus diplomacy"
DEFAULT_SUBJECT = "{title}, {date:%d %b %Y}: {stories}"
#: placeholders a subject may use, with sample values to check it at load time
SUBJECT_FIELDS = ("title", "date", "count", "stories", "list", "period")

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "ssl": 465, "none": 25}


# -- addresses -------------------------------------------------------------------------------


def parse_address(value: str) -> Address | None:
    """One mailbox (``a@b.org`` or ``Name <a@b.org>``), or None when it is not exactly that."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    try:
        header = policy.default.header_factory("to", value)
    except (HeaderParseError, IndexError, ValueError):
        return None
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if header.defects or len(addresses) != 1:
        return None
    address: Address = addresses[0]
    local, _, domain = address.addr_spec.partition("@")
    if not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return None
    return address


def _check_address(value: str) -> str | None:
    if parse_address(value) is None:
        return f"{value!r} is not an email address (expected name@example.org)"
    return None


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestListSettings:
    """One ``[[digests]]`` entry: who gets which digest, when, and how it looks."""

    #: unique name, used in the Message-ID, List-Id and outbox file names
    name: str
    recipients: tuple[str, ...]
    #: recipients only in the envelope; the To header shows "undisclosed-recipients:;"
    bcc: bool
    #: local send time
    time: dt.time = dt.time(7, 0)
    #: IANA time zone name of the list (send time, period keys, story times)
    timezone: str = "UTC"
    schedule: Schedule = "daily"
    #: send day of a weekly list, 0 = Monday
    weekday: int = 0
    #: which selection of the rules the list carries
    selection: str = "south-caucasus-diplomacy"
    group_by: GroupBy = "country"
    #: group names (tags) in display order; a story goes into the first that it carries
    group_order: tuple[str, ...] = COUNTRY_ORDER
    #: display names of groups, by tag name
    group_labels: Mapping[str, str] = field(default_factory=dict)
    #: str.format template with the placeholders of SUBJECT_FIELDS
    subject: str = DEFAULT_SUBJECT
    #: send a digest that has no stories (otherwise the period is skipped)
    send_empty: bool = False
    unsubscribe_url: str | None = None
    #: address for mailto unsubscribe requests
    unsubscribe_mailto: str | None = None
    #: From header of this list, overriding [smtp] from_address
    from_address: str | None = None
    title: str = DEFAULT_TITLE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> Self:
        name = sec.get("name", str, check=_check_name)
        recipients = sec.get_str_list("recipients")
        if not recipients:
            raise sec.error("recipients", "at least one recipient is required")
        for i, addr in enumerate(recipients):
            problem = _check_address(addr)
            if problem:
                raise sec.doc.error((*sec.path, "recipients", i), problem)
        lowered = [parse_address(a).addr_spec.lower() for a in recipients]  # type: ignore[union-attr]
        if len(set(lowered)) != len(lowered):
            raise sec.error("recipients", "the same address is listed twice")
        bcc = sec.get("bcc", bool, len(recipients) > 1)
        hhmm = sec.get("time", str, "07:00", check=_check_hhmm)
        timezone = sec.get("timezone", str, "UTC", check=_check_zone)
        schedule = sec.get("schedule", str, "daily", check=tomlutil.one_of("daily", "weekly"))
        weekday = sec.get("weekday", str, "mon", check=tomlutil.one_of(*WEEKDAYS))
        if sec.has("weekday") and schedule != "weekly":
            raise sec.error("weekday", 'only used with schedule = "weekly"; remove it')
        selection = sec.get("selection", str, "south-caucasus-diplomacy", check=_check_name)
        group_by = sec.get(
            "group_by", str, "country", check=tomlutil.one_of("country", "topic", "none")
        )
        default_order = list(COUNTRY_ORDER) if group_by == "country" else []
        group_order = sec.get_str_list("group_order", default_order)
        if group_by == "topic" and not group_order:
            raise sec.error("group_by", '"topic" needs group_order, the topic tags in order')
        if group_by == "none" and sec.has("group_order"):
            raise sec.error("group_order", 'not used with group_by = "none"; remove it')
        labels = sec.get("group_labels", dict, {}, check=_check_labels)
        subject = sec.get("subject", str, DEFAULT_SUBJECT, check=check_subject)
        send_empty = sec.get("send_empty", bool, False)
        unsubscribe_url = sec.get("unsubscribe_url", str, None, check=_check_https)
        unsubscribe_mailto = sec.get("unsubscribe_mailto", str, None, check=_check_address)
        from_address = sec.get("from_address", str, None, check=_check_address)
        title = sec.get("title", str, DEFAULT_TITLE, check=_check_one_line)
        sec.finish()
        hour, minute = (int(p) for p in hhmm.split(":"))
        return cls(
            name=name,
            recipients=tuple(recipients),
            bcc=bcc,
            time=dt.time(hour, minute),
            timezone=timezone,
            schedule="weekly" if schedule == "weekly" else "daily",
            weekday=WEEKDAYS.index(weekday),
            selection=selection,
            group_by="topic"
            if group_by == "topic"
            else "none"
            if group_by == "none"
            else "country",
            group_order=tuple(group_order),
            group_labels=dict(labels),
            subject=subject,
            send_empty=send_empty,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=unsubscribe_mailto,
            from_address=from_address,
            title=title,
        )


def load_digest_lists(root: tomlutil.Section, base_dir: Path) -> tuple[DigestListSettings, ...]:
    """Read every ``[[digests]]`` entry and check that their names are unique."""
    lists: list[DigestListSettings] = []
    for sec in root.tables("digests"):
        item = DigestListSettings.from_section(sec, base_dir)
        if any(other.name == item.name for other in lists):
            raise sec.error("name", f"another [[digests]] entry is already named {item.name!r}")
        lists.append(item)
    return tuple(lists)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """The ``[smtp]`` table: the relay that delivers digests. Without it they go to the outbox."""

    host: str
    #: 587 for starttls, 465 for ssl, 25 for none unless given
    port: int
    security: Security = "starttls"
    username: str | None = None
    #: name of the environment variable holding the password (never the password itself)
    password_env: str | None = None
    #: envelope sender and default From header
    from_address: str
    #: seconds for connect and each SMTP command
    timeout: int = 30
    #: right-hand side of Message-IDs and List-Ids
    domain: str
    #: PEM file of CA certificates to trust instead of the system ones (private relays)
    ca_file: Path | None = None
    #: name sent in EHLO; the machine's fully qualified name when None
    helo_name: str | None = None

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> Self:
        host = sec.get("host", str, check=_check_host)
        security = sec.get(
            "security", str, "starttls", check=tomlutil.one_of("starttls", "ssl", "none")
        )
        port = sec.get("port", int, _DEFAULT_PORTS[security], check=_check_port)
        username = sec.get("username", str, None, check=_check_one_line)
        password_env = sec.get("password_env", str, None, check=_check_env_name)
        if username is not None and password_env is None:
            raise sec.error(
                "password_env",
                "username is set, so name the environment variable that holds the password",
            )
        if password_env is not None and username is None:
            raise sec.error("username", "password_env is set, so username is required")
        from_address = sec.get("from_address", str, check=_check_address)
        timeout = sec.get("timeout", int, 30, check=_check_timeout)
        default_domain = parse_address(from_address).domain  # type: ignore[union-attr]
        domain = sec.get("domain", str, default_domain, check=_check_host)
        ca = sec.get("ca_file", str, None)
        ca_file = None
        if ca is not None:
            ca_file = (base_dir / ca).resolve()
            if not ca_file.is_file():
                raise sec.error("ca_file", f"{ca_file} does not exist")
        helo_name = sec.get("helo_name", str, None, check=_check_host)
        sec.finish()
        return cls(
            host=host,
            port=port,
            security="ssl" if security == "ssl" else "none" if security == "none" else "starttls",
            username=username,
            password_env=password_env,
            from_address=from_address,
            timeout=timeout,
            domain=domain.lower(),
            ca_file=ca_file,
            helo_name=helo_name,
        )


# -- checks ----------------------------------------------------------------------------------


def _check_name(value: str) -> str | None:
    if not _NAME.match(value):
        return f"{value!r} must be lower-case letters, digits and '-' (e.g. 'daily-en')"
    return None


def _check_hhmm(value: str) -> str | None:
    return None if _HHMM.match(value) else f"{value!r} is not a time as HH:MM (e.g. '07:00')"


def _check_zone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not an IANA time zone name (e.g. 'Asia/Yerevan', 'UTC')"
    return None


def _check_labels(value: dict[str, object]) -> str | None:
    for key, label in value.items():
        if not isinstance(label, str) or _check_one_line(label):
            return f"the label of {key!r} must be a one-line string"
    return None


def check_subject(value: str) -> str | None:
    """Format the subject with sample values so a typo fails at start, not at send time."""
    if _check_one_line(value):
        return "must be one line"
    sample = subject_values(
        title=DEFAULT_TITLE, date=dt.date(2026, 11, 26), count=3, list_name="x", period="x"
    )
    try:
        value.format(**sample)
    except KeyError as exc:
        known = ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)
        return f"unknown placeholder {{{exc.args[0]}}} (known: {known})"
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        return f"invalid template: {exc}"
    return None


def subject_values(
    *, title: str, date: dt.date, count: int, list_name: str, period: str
) -> dict[str, object]:
    return {
        "title": title,
        "date": date,
        "count": count,
        "stories": f"{count} story" if count == 1 else f"{count} stories",
        "list": list_name,
        "period": period,
    }


def _check_https(value: str) -> str | None:
    if not re.match(r"^https://[^\s/?#]+\.[^\s/?#]+(?:[/?#]\S*)?$", value):
        return f"{value!r} must be an https:// URL (one-click unsubscribe requires https)"
    return None


def _check_one_line(value: str) -> str | None:
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        return "must be one line without control characters"
    return None


def _check_host(value: str) -> str | None:
    if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$|^\[[0-9a-fA-F:.]+\]$", value):
        return f"{value!r} is not a host name"
    return None


def _check_port(value: int) -> str | None:
    return None if 0 < value < 65536 else f"{value} is not a TCP port (1-65535)"


def _check_timeout(value: int) -> str | None:
    return None if 0 < value <= 3600 else "must be between 1 and 3600 seconds"


def _check_env_name(value: str) -> str | None:
    if not _ENV_NAME.match(value):
        return f"{value!r} is not an environment variable name (e.g. 'DIGEST_SMTP_PASSWORD')"
    return None


# -- periods ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """One digest of one list: its key and the instant it is scheduled to go out."""

    list_name: str
    #: "2026-11-26" (daily) or "2026-W48" (weekly, ISO week), in the list's time zone
    key: str
    schedule: Schedule
    #: local date of the scheduled send
    date: dt.date
    #: scheduled send instant, UTC
    send_at: dt.datetime
    timezone: str


def period_for(settings: DigestListSettings, now: dt.datetime) -> Period:
    """The period that ``now`` falls in (its send time may be before or after ``now``)."""
    _check_aware(now)
    return _period_of(settings, now.astimezone(settings.zone).date())


def due_period(
    settings: DigestListSettings, now: dt.datetime, last_sent: str | None
) -> Period | None:
    """The latest period whose send time has passed, unless it was already sent.

    Missed periods (the service was down) collapse into this one: the caller sends a single
    digest with everything pending, not one per missed day.
    """
    candidate = period_for(settings, now)
    for _ in range(3):  # a send time pushed past midnight by a DST gap may need two steps
        if candidate.send_at <= now:
            break
        candidate = _shift(settings, candidate, -1)
    if last_sent is not None and not _is_later(candidate.key, last_sent):
        return None
    return candidate


def next_run(settings: DigestListSettings, now: dt.datetime) -> dt.datetime:
    """The next scheduled send instant strictly after ``now``, UTC."""
    candidate = period_for(settings, now)
    for _ in range(3):
        if candidate.send_at > now:
            break
        candidate = _shift(settings, candidate, 1)
    return candidate.send_at


def iter_periods(settings: DigestListSettings, start: dt.datetime) -> Iterator[Period]:
    """Periods from the one containing ``start`` on (for previews and tests)."""
    period = period_for(settings, start)
    while True:
        yield period
        period = _shift(settings, period, 1)


def _period_of(settings: DigestListSettings, local_day: dt.date) -> Period:
    zone = settings.zone
    if settings.schedule == "weekly":
        year, week, _ = local_day.isocalendar()
        send_day = dt.date.fromisocalendar(year, week, settings.weekday + 1)
        key = f"{year}-W{week:02d}"
    else:
        send_day = local_day
        key = local_day.isoformat()
    # fold=0: a time skipped by a DST jump goes out just after the jump (02:30 -> 03:30),
    # a repeated time goes out at its first occurrence, so every period is sent once.
    local = dt.datetime.combine(send_day, settings.time, tzinfo=zone)
    return Period(
        list_name=settings.name,
        key=key,
        schedule=settings.schedule,
        date=send_day,
        send_at=local.astimezone(dt.UTC),
        timezone=settings.timezone,
    )


def _shift(settings: DigestListSettings, period: Period, steps: int) -> Period:
    days = 7 if settings.schedule == "weekly" else 1
    return _period_of(settings, period.date + dt.timedelta(days=days * steps))


_DAILY_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEKLY_KEY = re.compile(r"^\d{4}-W\d{2}$")


def _is_later(key: str, last_sent: str) -> bool:
    """Keys of one kind sort by time; after a schedule change any other key counts as new."""
    for pattern in (_DAILY_KEY, _WEEKLY_KEY):
        if pattern.match(key) and pattern.match(last_sent):
            return key > last_sent
    return key != last_sent


def _check_aware(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


__all__ = [
    "COUNTRY_ORDER",
    "DigestListSettings",
    "Period",
    "SmtpSettings",
    "due_period",
    "iter_periods",
    "load_digest_lists",
    "next_run",
    "parse_address",
    "period_for",
]


def period_by_key(settings: DigestListSettings, key: str) -> Period:
    """The period a stored key names (to resend a pending digest exactly as first built)."""
    if _WEEKLY_KEY.match(key):
        year, week = int(key[:4]), int(key[6:])
        return _period_of(settings, dt.date.fromisocalendar(year, week, 1))
    return _period_of(settings, dt.date.fromisoformat(key))
