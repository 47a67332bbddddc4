"""How to treat a server: what its answer means and when to ask it again.

Pure functions over status codes, headers and the clock passed in, so every rule here is
table-tested without a network. ``fetch`` calls :func:`classify` for each response;
the pipeline calls :func:`apply_result` to turn a :class:`FetchResult` into the next
:class:`SourceState`. The policy follows miniflux (``ScheduleNextCheck``): the normal
interval, raised by server hints (Cache-Control max-age, RSS ttl, Retry-After) up to a cap,
and an exponential back-off per source after failures that resets after one success.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Self

from digest import USER_AGENT, tomlutil
from digest.models import FetchOutcome, FetchResult, Source, SourceState

#: server hints (max-age, ttl, Retry-After) never push the next poll further than this
MAX_HINT = 86400
#: statuses that ``fetch`` follows as redirects
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchSettings:
    """The ``[fetch]`` table: limits and timeouts for polling sources."""

    #: sources fetched at the same time
    concurrency: int = 16
    #: sources of one host fetched at the same time
    per_host: int = 2
    #: seconds to open a connection (TCP and TLS)
    connect_timeout: float = 10.0
    #: seconds to wait for each piece of the response
    read_timeout: float = 30.0
    #: seconds for a whole fetch, redirects and body included
    total_timeout: float = 60.0
    #: largest body accepted, counted after decompression
    max_bytes: int = 10 * 1024 * 1024
    #: redirect hops followed before giving up
    max_redirects: int = 5
    #: longest wait between polls of a failing source, in seconds
    max_backoff: int = 6 * 3600
    user_agent: str = USER_AGENT

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> Self:
        """Read ``[fetch]``; every key is optional."""
        d = cls()
        settings = cls(
            concurrency=sec.get("concurrency", int, d.concurrency, check=tomlutil.between(1, 1000)),
            per_host=sec.get("per_host", int, d.per_host, check=tomlutil.between(1, 100)),
            connect_timeout=sec.get("connect_timeout", float, d.connect_timeout, check=_positive),
            read_timeout=sec.get("read_timeout", float, d.read_timeout, check=_positive),
            total_timeout=sec.get("total_timeout", float, d.total_timeout, check=_positive),
            max_bytes=sec.get("max_bytes", int, d.max_bytes, check=tomlutil.between(1024, 2**31)),
            max_redirects=sec.get(
                "max_redirects", int, d.max_redirects, check=tomlutil.between(0, 20)
            ),
            max_backoff=sec.get(
                "max_backoff", int, d.max_backoff, check=tomlutil.between(60, 30 * 86400)
            ),
            user_agent=sec.get("user_agent", str, d.user_agent, check=_user_agent),
        )
        sec.finish()
        return settings


def _positive(value: float) -> str | None:
    return None if 0 < value <= 3600 else f"must be a number of seconds in (0, 3600], not {value}"


def _user_agent(value: str) -> str | None:
    if not value.strip() or any(c in value for c in "\r\n"):
        return "must be a non-empty single line"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Classification:
    """What a final (non-redirect) response means for the source."""

    outcome: FetchOutcome
    #: human-readable reason, None when the outcome is "ok" or "not_modified"
    message: str | None = None
    #: seconds the server asked us to wait (Retry-After) or may cache (max-age)
    retry_after: float | None = None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for plain dicts as well as httpx.Headers."""
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for key, val in headers.items():
        if key.lower() == lname:
            return val
    return None


def status_line(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def classify(status: int, headers: Mapping[str, str], *, now: datetime) -> Classification:
    """Map a final response to an outcome and a message that says what to do."""
    line = status_line(status)
    if status == 304:
        return Classification(outcome="not_modified", retry_after=cache_max_age(headers))
    if status in (204, 205):
        return Classification(
            outcome="error", message=f"{line}: the server sent no feed; check the source's url"
        )
    if 200 <= status < 300:
        return Classification(outcome="ok", retry_after=cache_max_age(headers))
    if status == 410:
        return Classification(
            outcome="gone",
            message=f"{line}: the feed was removed for good "
            "and will not be polled again; remove the source or fix its url",
        )
    if status in (429, 503):
        retry = parse_retry_after(header(headers, "retry-after"), now)
        when = f"retrying after {retry:.0f} s" if retry is not None else "retrying later"
        cause = (
            "the server asks us to slow down"
            if status == 429
            else "the server is down or overloaded"
        )
        return Classification(
            outcome="retry_later", message=f"{line}: {cause}; {when}", retry_after=retry
        )
    message = _ERROR_MESSAGES.get(status)
    if message is None:
        if status in REDIRECT_STATUSES:
            message = "the redirect has no usable Location; check the source's url"
        elif 300 <= status < 400:
            message = "unexpected redirect status; check the source's url in a browser"
        elif 400 <= status < 500:
            message = "the server rejected the request; check the source's url"
        elif 500 <= status < 600:
            message = "the server failed; it will be retried with back-off"
        else:
            message = "unexpected status; check the source's url"
    return Classification(outcome="error", message=f"{line}: {message}")


_ERROR_MESSAGES = {
    401: "the feed needs credentials; use a public feed url or remove the source",
    403: "the server refuses access (it may block automated clients); open the url in a "
    "browser, and remove the source if it stays closed",
    404: "the feed URL is wrong or the feed was removed; check the source's url",
    407: "a proxy needs credentials; check the HTTPS_PROXY/HTTP_PROXY environment",
    451: "the feed is blocked for legal reasons in this location; remove the source",
}


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_MAX_AGE = re.compile(r'(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)', re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:[=,]|$)", re.IGNORECASE)


def cache_max_age(headers: Mapping[str, str]) -> float | None:
    """Seconds the response stays fresh by Cache-Control max-age (less Age), or None."""
    value = header(headers, "cache-control")
    if not value or _NO_CACHE.search(value):
        return None
    match = _MAX_AGE.search(value)
    if not match:
        return None
    age_text = (header(headers, "age") or "").strip()
    age = int(age_text) if age_text.isdigit() else 0
    return float(max(0, int(match.group(1)) - age))


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def current_state(source: Source, state: SourceState) -> SourceState:
    """The state to use for ``source``: a fresh one when the configured URL was edited.

    Validators, a permanent-redirect URL and the gone flag belong to the old URL; after an
    edit they would make us skip or misroute the new feed.
    """
    if state.configured_url is None or state.configured_url == source.url:
        return state
    return SourceState(
        name=state.name,
        configured_url=source.url,
        entry_count=state.entry_count,
        last_ok_at=state.last_ok_at,
    )


def request_url(source: Source, state: SourceState) -> str | None:
    """The URL to poll: the permanent-redirect target if there is one, else the config's."""
    state = current_state(source, state)
    return state.url or source.url


def backoff(interval: int, errors: int, max_backoff: int) -> int:
    """``interval * 2**(errors-1)``, capped at ``max_backoff`` but never below ``interval``."""
    exponent = min(max(errors, 1) - 1, 32)
    return max(interval, min(interval * (1 << exponent), max_backoff))


def next_poll(
    source: Source,
    state: SourceState,
    result: FetchResult,
    *,
    now: datetime,
    ttl_minutes: int | None,
    settings: FetchSettings,
) -> datetime:
    """When to poll ``source`` again after ``result``; ``state`` is the state before it.

    No jitter here: spreading polls out is the scheduler's job, so this stays testable.
    """
    state = current_state(source, state)
    interval = source.interval
    if result.outcome in ("ok", "not_modified"):
        delay = float(interval)
        hints = [
            result.retry_after if result.retry_after is not None else cache_max_age(result.headers)
        ]
        if ttl_minutes is not None and ttl_minutes > 0:
            hints.append(ttl_minutes * 60.0)
        for hint in hints:
            if hint is not None:
                delay = max(delay, min(hint, MAX_HINT))
    elif result.outcome == "gone":
        delay = float(max(interval, settings.max_backoff))
    else:
        delay = float(backoff(interval, state.error_count + 1, settings.max_backoff))
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, max(MAX_HINT, settings.max_backoff)))
    return now + timedelta(seconds=delay)


def apply_result(
    state: SourceState,
    result: FetchResult,
    *,
    source: Source,
    now: datetime,
    ttl_minutes: int | None = None,
    settings: FetchSettings,
) -> SourceState:
    """The state after ``result``: validators on success, error count and back-off on failure."""
    state = current_state(source, state)
    when = next_poll(source, state, result, now=now, ttl_minutes=ttl_minutes, settings=settings)
    new = replace(state, next_poll_at=when, configured_url=source.url)
    if result.permanent_url and result.outcome in ("ok", "not_modified"):
        new = replace(new, url=result.permanent_url)
    etag = header(result.headers, "etag")
    last_modified = header(result.headers, "last-modified")
    if result.outcome == "ok":
        return replace(
            new,
            etag=etag,
            last_modified=last_modified,
            body_hash=result.body_hash or body_hash(result.body),
            last_ok_at=now,
            error_count=0,
            last_error=None,
            last_error_at=None,
        )
    if result.outcome == "not_modified":
        return replace(
            new,
            etag=etag or state.etag,
            last_modified=last_modified or state.last_modified,
            last_ok_at=now,
            error_count=0,
            last_error=None,
            last_error_at=None,
        )
    error = result.error or (status_line(result.status) if result.status else "unknown error")
    return replace(
        new,
        error_count=state.error_count + 1,
        last_error=error,
        last_error_at=now,
        gone=result.outcome == "gone",
    )
