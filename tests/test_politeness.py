"""Table tests for the pure polling policy: classification, server hints, back-off, state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import USER_AGENT, tomlutil
from digest.errors import ConfigError
from digest.models import FetchOutcome, FetchResult, Source, SourceState
from digest.politeness import (
    MAX_HINT,
    FetchSettings,
    apply_result,
    backoff,
    body_hash,
    cache_max_age,
    classify,
    current_state,
    next_poll,
    parse_retry_after,
    request_url,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
SETTINGS = FetchSettings()
SOURCE = Source(name="mfa", url="https://mfa.example/feed", interval=1800)
STATE = SourceState(name="mfa", configured_url=SOURCE.url)


def result(outcome: FetchOutcome, **kw: object) -> FetchResult:
    return FetchResult(source="mfa", outcome=outcome, fetched_at=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "headers", "outcome", "words", "retry"),
    [
        (200, {}, "ok", None, None),
        (200, {"Cache-Control": "max-age=600"}, "ok", None, 600.0),
        (203, {}, "ok", None, None),
        (204, {}, "error", "no feed", None),
        (304, {}, "not_modified", None, None),
        (304, {"cache-control": "public, max-age=90"}, "not_modified", None, 90.0),
        (404, {}, "error", "HTTP 404 Not Found: the feed URL is wrong", None),
        (401, {}, "error", "credentials", None),
        (403, {}, "error", "refuses access", None),
        (418, {}, "error", "HTTP 418", None),
        (410, {}, "gone", "HTTP 410 Gone", None),
        (429, {"Retry-After": "120"}, "retry_later", "retrying after 120 s", 120.0),
        (429, {}, "retry_later", "slow down", None),
        (503, {"retry-after": "Fri, 14 Mar 2025 13:00:00 GMT"}, "retry_later", "overloaded", 3600),
        (503, {"Retry-After": "soon"}, "retry_later", "retrying later", None),
        (500, {}, "error", "HTTP 500 Internal Server Error: the server failed", None),
        (502, {}, "error", "Bad Gateway", None),
        (599, {}, "error", "HTTP 599: the server failed", None),
        (301, {}, "error", "no usable Location", None),
        (300, {}, "error", "unexpected redirect", None),
        (101, {}, "error", "unexpected status", None),
    ],
)
def test_classify(
    status: int,
    headers: dict[str, str],
    outcome: str,
    words: str | None,
    retry: float | None,
) -> None:
    got = classify(status, headers, now=NOW)
    assert got.outcome == outcome
    assert got.retry_after == retry
    if words is None:
        assert got.message is None
    else:
        assert got.message is not None and words in got.message


def test_every_error_message_names_the_status_and_an_action() -> None:
    for status in [*range(400, 452), *range(500, 512)]:
        got = classify(status, {}, now=NOW)
        assert got.message is not None
        assert got.message.startswith(f"HTTP {status}")
        assert ";" in got.message or "retry" in got.message, got.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 45 ", 45.0),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("tomorrow", None),
        ("Fri, 14 Mar 2025 12:30:00 GMT", 1800.0),
        ("Friday, 14-Mar-25 12:30:00 GMT", 1800.0),
        ("Fri, 14 Mar 2025 11:00:00 GMT", 0.0),  # in the past: no wait
        ("Fri, 14 Mar 2025 12:30:00", 1800.0),  # no zone: read as UTC
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Cache-Control": "max-age=300"}, 300.0),
        ({"cache-control": "public, max-age=300, must-revalidate"}, 300.0),
        ({"Cache-Control": 'max-age="60"'}, 60.0),
        ({"Cache-Control": "MAX-AGE=60"}, 60.0),
        ({"Cache-Control": "s-maxage=600"}, None),
        ({"Cache-Control": "s-maxage=600, max-age=30"}, 30.0),
        ({"Cache-Control": "max-age=300", "Age": "100"}, 200.0),
        ({"Cache-Control": "max-age=300", "Age": "900"}, 0.0),
        ({"Cache-Control": "no-cache, max-age=300"}, None),
        ({"Cache-Control": "no-store"}, None),
        ({"Cache-Control": "max-age=abc"}, None),
    ],
)
def test_cache_max_age(headers: dict[str, str], expected: float | None) -> None:
    assert cache_max_age(headers) == expected


@pytest.mark.parametrize(
    ("errors", "expected"),
    [(0, 1800), (1, 1800), (2, 3600), (3, 7200), (4, 14400), (5, 21600), (50, 21600)],
)
def test_backoff_doubles_and_caps(errors: int, expected: int) -> None:
    assert backoff(1800, errors, 21600) == expected


def test_backoff_never_polls_sooner_than_the_interval() -> None:
    assert backoff(86400, 3, 21600) == 86400


def _delay(res: FetchResult, *, state: SourceState = STATE, ttl: int | None = None) -> float:
    when = next_poll(SOURCE, state, res, now=NOW, ttl_minutes=ttl, settings=SETTINGS)
    return (when - NOW).total_seconds()


@pytest.mark.parametrize(
    ("res", "ttl", "errors", "expected"),
    [
        (result("ok"), None, 0, 1800),
        (result("not_modified"), None, 0, 1800),
        # hints only ever lengthen the interval, and are capped
        (result("ok", headers={"cache-control": "max-age=60"}), None, 0, 1800),
        (result("ok", headers={"cache-control": "max-age=7200"}), None, 0, 7200),
        (result("ok", retry_after=5400.0), None, 0, 5400),
        (result("ok", headers={"cache-control": "max-age=9999999"}), None, 0, MAX_HINT),
        (result("ok"), 120, 0, 7200),
        (result("ok"), 10, 0, 1800),
        (result("ok"), 100000, 0, MAX_HINT),
        (result("ok", retry_after=3600.0), 180, 0, 10800),
        # an ok after errors is back to normal at once
        (result("ok"), None, 7, 1800),
        # failures back off from the (pre-result) error count
        (result("error"), None, 0, 1800),
        (result("error"), None, 1, 3600),
        (result("error"), None, 2, 7200),
        (result("error"), None, 20, 21600),
        # Retry-After is a lower bound on top of the back-off, capped at a day
        (result("retry_later", retry_after=60.0), None, 0, 1800),
        (result("retry_later", retry_after=10800.0), None, 0, 10800),
        (result("retry_later", retry_after=10.0**9), None, 0, MAX_HINT),
        (result("retry_later"), None, 2, 7200),
        (result("gone"), None, 0, 21600),
    ],
)
def test_next_poll(res: FetchResult, ttl: int | None, errors: int, expected: float) -> None:
    state = replace(STATE, error_count=errors)
    assert _delay(res, state=state, ttl=ttl) == expected


def test_next_poll_has_no_jitter() -> None:
    res = result("error")
    assert len({_delay(res, state=replace(STATE, error_count=3)) for _ in range(20)}) == 1


def _apply(state: SourceState, res: FetchResult, ttl: int | None = None) -> SourceState:
    return apply_result(state, res, source=SOURCE, now=NOW, ttl_minutes=ttl, settings=SETTINGS)


def test_ok_stores_validators_and_hash_and_resets_errors() -> None:
    failing = replace(STATE, error_count=3, last_error="boom", last_error_at=NOW, etag='"old"')
    res = result("ok", body=b"<rss/>", headers={"etag": '"v2"', "last-modified": "Fri"})
    new = _apply(failing, res)
    assert new.etag == '"v2"'
    assert new.last_modified == "Fri"
    assert new.body_hash == body_hash(b"<rss/>")
    assert (new.error_count, new.last_error, new.last_error_at) == (0, None, None)
    assert new.last_ok_at == NOW
    assert new.next_poll_at == NOW + timedelta(seconds=1800)


def test_ok_without_validators_clears_the_old_ones() -> None:
    new = _apply(replace(STATE, etag='"v1"', last_modified="x"), result("ok", body=b"a"))
    assert (new.etag, new.last_modified) == (None, None)


def test_not_modified_keeps_validators_and_hash_unless_new_ones_come() -> None:
    old = replace(STATE, etag='"v1"', last_modified="Thu", body_hash="abc", error_count=2)
    new = _apply(old, result("not_modified", status=304))
    assert (new.etag, new.last_modified, new.body_hash) == ('"v1"', "Thu", "abc")
    assert new.error_count == 0
    newer = _apply(old, result("not_modified", status=304, headers={"etag": '"v9"'}))
    assert newer.etag == '"v9"'


def test_errors_count_up_back_off_and_recover() -> None:
    state = STATE
    delays = []
    for _ in range(6):
        state = _apply(state, result("error", status=500, error="HTTP 500: down"))
        assert state.next_poll_at is not None
        delays.append((state.next_poll_at - NOW).total_seconds())
    assert state.error_count == 6
    assert state.last_error == "HTTP 500: down"
    assert state.last_error_at == NOW
    assert delays == [1800, 3600, 7200, 14400, 21600, 21600]
    state = _apply(state, result("ok", body=b"x"))
    assert state.error_count == 0
    assert state.next_poll_at == NOW + timedelta(seconds=1800)


def test_error_without_message_still_says_something() -> None:
    assert _apply(STATE, result("error", status=502)).last_error == "HTTP 502 Bad Gateway"
    assert _apply(STATE, result("error")).last_error == "unknown error"


def test_gone_marks_the_source() -> None:
    new = _apply(STATE, result("gone", status=410, error="HTTP 410 Gone: removed"))
    assert new.gone
    assert new.error_count == 1
    assert new.last_error == "HTTP 410 Gone: removed"


def test_retry_later_counts_as_a_failure() -> None:
    new = _apply(STATE, result("retry_later", status=429, retry_after=7200.0, error="slow"))
    assert new.error_count == 1
    assert new.next_poll_at == NOW + timedelta(seconds=7200)


@pytest.mark.parametrize(
    ("outcome", "moved"),
    [("ok", True), ("not_modified", True), ("error", False), ("gone", False)],
)
def test_permanent_redirect_moves_the_url_only_on_success(
    outcome: FetchOutcome, moved: bool
) -> None:
    new = _apply(STATE, result(outcome, body=b"x", permanent_url="https://new.example/feed"))
    assert new.url == ("https://new.example/feed" if moved else None)
    assert new.configured_url == SOURCE.url
    assert request_url(SOURCE, new) == (new.url or SOURCE.url)


def test_editing_the_configured_url_forgets_the_old_urls_state() -> None:
    old = SourceState(
        name="mfa",
        url="https://moved.example/feed",
        etag='"v1"',
        body_hash="abc",
        gone=True,
        error_count=4,
        configured_url="https://old.example/feed",
        entry_count=12,
    )
    fresh = current_state(SOURCE, old)
    assert (fresh.url, fresh.etag, fresh.body_hash, fresh.gone, fresh.error_count) == (
        None,
        None,
        None,
        False,
        0,
    )
    assert fresh.entry_count == 12
    assert request_url(SOURCE, old) == SOURCE.url
    new = _apply(old, result("error", error="x"))
    assert new.configured_url == SOURCE.url
    assert new.error_count == 1
    assert not new.gone


def test_a_state_without_configured_url_is_kept() -> None:
    state = SourceState(name="mfa", url="https://moved.example/feed")
    assert request_url(SOURCE, state) == "https://moved.example/feed"


# -- [fetch] settings ------------------------------------------------------------------------


def _settings(text: str) -> FetchSettings:
    doc = tomlutil.loads(text, "digest.toml")
    return FetchSettings.from_section(doc.root().table("fetch"), Path("."))


def test_settings_defaults() -> None:
    assert _settings("") == FetchSettings()
    s = FetchSettings()
    assert (s.concurrency, s.per_host, s.max_bytes, s.max_redirects) == (16, 2, 10485760, 5)
    assert (s.connect_timeout, s.read_timeout, s.total_timeout) == (10, 30, 60)
    assert s.max_backoff == 21600
    assert s.user_agent == USER_AGENT


def test_settings_read_every_key() -> None:
    s = _settings(
        "[fetch]\nconcurrency = 4\nper_host = 1\nconnect_timeout = 2.5\nread_timeout = 5\n"
        "total_timeout = 20\nmax_bytes = 2048\nmax_redirects = 0\nmax_backoff = 3600\n"
        'user_agent = "test-agent/1"\n'
    )
    assert s == FetchSettings(
        concurrency=4,
        per_host=1,
        connect_timeout=2.5,
        read_timeout=5.0,
        total_timeout=20.0,
        max_bytes=2048,
        max_redirects=0,
        max_backoff=3600,
        user_agent="test-agent/1",
    )


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("concurrency = 0", "concurrency", "between 1 and 1000"),
        ('concurrency = "8"', "concurrency", "must be an integer"),
        ("per_host = 0", "per_host", "between 1 and 100"),
        ("connect_timeout = 0", "connect_timeout", "seconds"),
        ("total_timeout = -1", "total_timeout", "seconds"),
        ("max_bytes = 10", "max_bytes", "between 1024"),
        ("max_redirects = 50", "max_redirects", "between 0 and 20"),
        ("max_backoff = 5", "max_backoff", "between 60"),
        ('user_agent = ""', "user_agent", "non-empty"),
        ("concurency = 4", "concurency", "unknown key"),
    ],
)
def test_settings_errors_name_file_key_and_line(text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(f"[fetch]\n{text}\n")
    assert info.value.key == f"fetch.{key}"
    assert info.value.line == 2
    assert words in str(info.value)
    assert "digest.toml:2" in str(info.value)
