"""``digest run`` as a user runs it: a real process against a loopback feed server and a
loopback SMTP server, stopped with signals, killed with SIGKILL, restarted, reloaded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import Envelope, Session
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from digest.config import load_config
from digest.errors import ConfigError, ServiceError
from digest.models import CycleReport, SourceReport
from digest.periods import due_period, next_run
from digest.service import DigestTrigger, Metrics, Service, fetch_class
from digest.store import Store
from tests.servers import FeedServer
from tests.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules.toml"
#: the issue's bound for a stop on SIGTERM
STOP_BOUND = 10.0
FROM = "digest@example.org"
READER = "reader@example.org"

# -- feeds -------------------------------------------------------------------------------------

TITLES = (
    "Armenian and Azerbaijani foreign ministers hold peace talks in Washington",
    "Georgian prime minister meets EU foreign ministers in Brussels on visa talks",
    "Azerbaijan and Armenia sign border delimitation protocol after peace talks",
    "Armenian foreign minister visits Tbilisi for talks with Georgian counterpart",
    "Azerbaijani president receives Georgian foreign minister in Baku",
    "Armenia and Georgia hold intergovernmental commission talks in Yerevan",
)


@dataclass(frozen=True)
class Item:
    guid: str
    title: str


def items(prefix: str, count: int, start: int = 0) -> list[Item]:
    return [
        Item(f"{prefix}-{i}", f"{TITLES[i % len(TITLES)]} ({prefix} {i})")
        for i in range(start, start + count)
    ]


def rss(entries: list[Item], name: str = "Loopback news") -> bytes:
    now = datetime.now(UTC)
    parts = [
        f"<item><guid isPermaLink='false'>{e.guid}</guid><title>{e.title}</title>"
        f"<link>http://news.example.org/{e.guid}</link>"
        f"<description>{e.title}.</description>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=5 + i))}</pubDate></item>"
        for i, e in enumerate(entries)
    ]
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>{name}</title><link>http://news.example.org/</link>"
        f"<description>test</description>{''.join(parts)}</channel></rss>"
    ).encode()


# -- the service process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Setup:
    """One service configuration under tmp_path; ``write()`` (re)writes the file."""

    tmp: Path
    sources: dict[str, str]
    smtp_port: int | None = None
    http_port: int = field(default_factory=free_port)
    poll_interval: int = 60
    digest_time: str = "00:00"

    @property
    def path(self) -> Path:
        return self.tmp / "digest.toml"

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    @property
    def db(self) -> Path:
        return self.state / "digest.sqlite3"

    def text(self) -> str:
        out = [
            f'[service]\nstate_dir = "{self.state}"\npoll_interval = {self.poll_interval}\n'
            "jitter = 0\n",
            f'[tagging]\nrules = "{RULES}"\n',
            f'[publish]\noutput_dir = "{self.tmp / "public"}"\nmax_age_days = 30\n'
            f'base_url = "http://127.0.0.1:{self.http_port}/"\n',
            f'[server]\nhost = "127.0.0.1"\nport = {self.http_port}\n',
            "[fetch]\nconnect_timeout = 5.0\nread_timeout = 20.0\ntotal_timeout = 20.0\n",
        ]
        if self.smtp_port is not None:
            out.append(
                f'[smtp]\nhost = "127.0.0.1"\nport = {self.smtp_port}\nsecurity = "none"\n'
                f'from_address = "{FROM}"\ntimeout = 20\n'
            )
        out.append(
            f'[[digests]]\nname = "daily"\nrecipients = ["{READER}"]\n'
            f'time = "{self.digest_time}"\ntimezone = "UTC"\n'
        )
        for name, url in self.sources.items():
            out.append(f'[[sources]]\nname = "{name}"\nurl = "{url}"\n')
        return "\n".join(out)

    def write(self) -> Path:
        self.path.write_text(self.text(), encoding="utf-8")
        return self.path

    def entries(self) -> list[tuple[str, str]]:
        """(source, guid) of every stored entry, duplicates included."""
        if not self.db.exists():
            return []
        try:
            with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
                return [(r[0], r[1]) for r in db.execute("SELECT source, guid FROM entries")]
        except sqlite3.OperationalError:  # the service is still creating the schema
            return []

    def digests(self) -> list[tuple[str, str, str, str]]:
        with closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT list, period, message_id, status FROM digests")
            return [tuple(r) for r in rows]


class Running:
    """One ``digest run`` process; stderr goes to a file so it can never fill a pipe."""

    def __init__(self, setup: Setup, *extra: str, log_format: str = "human") -> None:
        self.setup = setup
        self.log = setup.tmp / f"stderr-{time.monotonic_ns()}.log"
        self._err = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digest",
                "--log-format",
                log_format,
                "--config",
                str(setup.path),
                "run",
                *extra,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    @property
    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.setup.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health(self) -> tuple[int, dict[str, Any]] | None:
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited with {self.proc.returncode}:\n{self.stderr}")
        try:
            status, body = self.get("/healthz")
        except OSError:
            return None
        return status, json.loads(body)

    def wait_health(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            answer = self.health()
            return answer[1] if answer is not None and check(answer[1]) else None

        result: dict[str, Any] = wait_until(ready, what=what)
        return result

    def metric(self, line_start: str) -> float | None:
        try:
            _, body = self.get("/metrics")
        except OSError:
            return None
        for line in body.decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``sig`` and wait; returns the exit code and the seconds it took."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=STOP_BOUND + 5)
        finally:
            self.close()
        return code, time.monotonic() - started

    def close(self) -> None:
        """Kill whatever is left; safe to call twice (used in finally blocks)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._err.close()


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    """Start service processes; each one is killed at teardown whatever the test did."""
    started: list[Running] = []

    def start(setup: Setup, *extra: str, log_format: str = "human") -> Running:
        proc = Running(setup, *extra, log_format=log_format)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.close()


def period_today() -> str:
    return datetime.now(UTC).date().isoformat()


def sent_today(health: dict[str, Any], list_name: str) -> bool:
    last = health["digests"][list_name] or {}
    return bool(last.get("status") == "sent" and last.get("period") == period_today())


def message_ids(server: SmtpServer | HoldingSmtp) -> list[str]:
    return [str(r.message()["Message-ID"]) for r in server.received]


# -- a relay that holds a message -------------------------------------------------------------


@dataclass(frozen=True)
class _Received:
    data: bytes

    def message(self) -> Any:
        from email import message_from_bytes, policy

        return message_from_bytes(self.data, policy=policy.default)


class HoldingSmtp:
    """An aiosmtpd relay on 127.0.0.1 that, while ``hold`` is set, keeps the client waiting
    after DATA until ``release`` is set (or 10 s pass): a send in flight, ready to be killed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[_Received] = []
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        if self.hold.is_set():
            self.holding.set()
            deadline = time.monotonic() + 10
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        data = envelope.original_content or envelope.content or b""
        assert isinstance(data, bytes)
        self.received.append(_Received(data))
        return "250 2.0.0 Message accepted"


@pytest.fixture
def holding_smtp() -> Iterator[HoldingSmtp]:
    relay = HoldingSmtp()
    relay.controller.start()
    try:
        yield relay
    finally:
        relay.release.set()
        relay.controller.stop()


# -- the running service --------------------------------------------------------------------


def test_service_publishes_mails_once_answers_and_stops_on_sigterm(
    tmp_path: Path, feed_server: FeedServer, smtp_server: SmtpServer, running: Any
) -> None:
    served = items("news", 4)
    feed_server.add("/news.xml", rss(served))
    feed_server.status("/missing.xml", 404, "gone fishing")
    setup = Setup(
        tmp_path,
        {"news": feed_server.url("/news.xml"), "missing": feed_server.url("/missing.xml")},
        smtp_port=smtp_server.port,
    )
    setup.write()
    # The service was last up three days ago: the missed days collapse into one digest.
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    with Store(setup.db) as store:
        old = store.create_digest(
            "daily", three_days_ago.date().isoformat(), "<old@x>", [], three_days_ago
        )
        store.record_delivery(
            old.id, accepted=[READER], refused={}, error=None, now=three_days_ago, next_try_at=None
        )

    svc = running(setup, log_format="json")
    body = svc.wait_health(lambda b: sent_today(b, "daily"), "the digest to be sent")
    assert body["status"] == "ok"
    assert set(body["failing_sources"]) == {"missing"}
    assert body["digests"]["daily"]["period"] == period_today()

    # The feed is published to a file and served.
    status, feed = svc.get("/feed.xml")
    assert status == 200
    assert (tmp_path / "public" / "feed.xml").read_bytes() == feed
    for item in served:
        assert item.title.encode() in feed

    # The digest arrived exactly once, under the period's Message-ID, with the stories.
    expected_id = f"<digest.daily.{period_today()}@example.org>"
    assert message_ids(smtp_server) == [expected_id]
    (received,) = smtp_server.received
    assert received.rcpt_tos == (READER,)
    plain = received.message().get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    for item in served:
        assert f"http://news.example.org/{item.guid}" in text

    assert svc.metric("digest_polls_total") == 1.0
    assert svc.metric('digest_fetches_total{outcome="ok"}') == 1.0
    assert svc.metric('digest_fetches_total{outcome="error"}') == 1.0
    assert svc.metric("digest_new_entries_total") == len(served)
    assert svc.metric('digest_deliveries_total{list="daily",status="sent"}') == 1.0
    assert svc.metric("digest_last_poll_timestamp_seconds")

    code, elapsed = svc.stop(signal.SIGTERM)
    assert code == 0, svc.stderr
    assert elapsed < STOP_BOUND

    # Logs are JSON lines; the lines about a source name it.
    lines = [json.loads(line) for line in svc.stderr.splitlines() if line.strip()]
    assert any(
        r.get("source") == "missing" and r["level"] == "warning" and "404" in r["message"]
        for r in lines
    ), svc.stderr
    assert any(r["message"] == "service stopped" for r in lines)

    # A restart the same day sends nothing more.
    again = running(setup)
    wait_until(lambda: again.metric("digest_send_duration_seconds_count"), what="the catch-up")
    assert message_ids(smtp_server) == [expected_id]
    assert sorted(d[1] for d in setup.digests()) == sorted(
        [three_days_ago.date().isoformat(), period_today()]
    )
    code, elapsed = again.stop(signal.SIGINT)
    assert code == 0, again.stderr
    assert elapsed < STOP_BOUND


def test_second_instance_on_the_same_state_is_refused(
    tmp_path: Path, feed_server: FeedServer, running: Any
) -> None:
    feed_server.add("/news.xml", rss(items("news", 1)))
    setup = Setup(tmp_path, {"news": feed_server.url("/news.xml")})
    setup.write()
    first = running(setup)
    first.wait_health(lambda b: b["status"] == "ok", "the first service")

    for args in (["run"], ["run", "--once"]):
        second = subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(setup.path), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 75, second.stderr
        assert "already running" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        assert str(setup.state) in second.stderr
        assert "Traceback" not in second.stderr
    assert (first.health() or (0, {}))[0] == 200
    code, _ = first.stop()
    assert code == 0


def test_kill_during_a_poll_loses_and_duplicates_nothing(
    tmp_path: Path, feed_server: FeedServer, running: Any
) -> None:
    fast, slow = items("fast", 3), items("slow", 3)
    feed_server.add("/fast.xml", rss(fast))
    feed_server.add("/slow.xml", rss(slow), delay=8.0)
    setup = Setup(
        tmp_path, {"fast": feed_server.url("/fast.xml"), "slow": feed_server.url("/slow.xml")}
    )
    setup.write()

    def fast_stored_and_slow_in_flight() -> bool:
        return len(setup.entries()) == len(fast) and bool(feed_server.requests_for("/slow.xml"))

    first = running(setup)
    wait_until(fast_stored_and_slow_in_flight, what="a poll half done")
    first.stop(signal.SIGKILL)

    # Stopped gracefully while the slow source is still in flight: quick, and clean.
    second = running(setup)
    wait_until(lambda: len(feed_server.requests_for("/slow.xml")) >= 2, what="the second poll")
    code, elapsed = second.stop(signal.SIGTERM)
    assert code == 0, second.stderr
    assert elapsed < STOP_BOUND

    feed_server.add("/slow.xml", rss(slow))
    third = running(setup)
    wait_until(lambda: len(setup.entries()) >= len(fast) + len(slow), what="the slow entries")
    third.wait_health(lambda b: b["status"] == "ok", "the poll to finish")
    code, _ = third.stop()
    assert code == 0

    stored = setup.entries()
    served = [("fast", e.guid) for e in fast] + [("slow", e.guid) for e in slow]
    assert sorted(stored) == sorted(served)
    # The fast source was fetched once: its state survived the kill with its entries.
    assert len(feed_server.requests_for("/fast.xml")) == 1


def test_kill_during_a_digest_sends_the_period_under_one_message_id(
    tmp_path: Path, feed_server: FeedServer, holding_smtp: HoldingSmtp, running: Any
) -> None:
    served = items("news", 3)
    feed_server.add("/news.xml", rss(served))
    setup = Setup(tmp_path, {"news": feed_server.url("/news.xml")}, smtp_port=holding_smtp.port)
    setup.write()
    holding_smtp.hold.set()

    # SIGKILL while the relay holds the message.
    first = running(setup)
    wait_until(holding_smtp.holding.is_set, what="a digest in flight")
    first.stop(signal.SIGKILL)

    # SIGTERM while the relay stalls for good: the stop still comes within the bound.
    holding_smtp.holding.clear()
    second = running(setup)
    wait_until(holding_smtp.holding.is_set, what="the digest in flight again")
    code, elapsed = second.stop(signal.SIGTERM)
    assert code == 0, second.stderr
    assert elapsed < STOP_BOUND

    # SIGTERM while the relay is merely slow: the send finishes and is recorded.
    holding_smtp.holding.clear()
    third = running(setup)
    wait_until(holding_smtp.holding.is_set, what="the digest in flight a third time")
    threading.Timer(0.5, holding_smtp.release.set).start()
    code, elapsed = third.stop(signal.SIGTERM)
    assert code == 0, third.stderr
    assert elapsed < STOP_BOUND

    expected_id = f"<digest.daily.{period_today()}@example.org>"
    ids = message_ids(holding_smtp)
    # The relay may have accepted the first copy before the kill; a resend carries the
    # same Message-ID, so the period is one message, never two.
    assert ids and set(ids) == {expected_id}
    assert setup.digests() == [("daily", period_today(), expected_id, "sent")]
    assert sorted(setup.entries()) == sorted(("news", e.guid) for e in served)


def test_sighup_keeps_the_old_config_when_the_new_one_is_broken_and_applies_a_valid_one(
    tmp_path: Path, feed_server: FeedServer, running: Any
) -> None:
    feed_server.add("/a.xml", rss(items("a", 2)))
    feed_server.add("/b.xml", rss(items("b", 2)))
    setup = Setup(tmp_path, {"a": feed_server.url("/a.xml")})
    setup.write()
    svc = running(setup)
    svc.wait_health(lambda b: b["status"] == "ok", "the first poll")

    setup.path.write_text(setup.text().replace("jitter = 0", 'jitter = "soon"'), "utf-8")
    svc.send(signal.SIGHUP)
    wait_until(lambda: "config reload refused" in svc.stderr, what="the refusal")
    assert "jitter" in svc.stderr
    answer = svc.health()
    assert answer is not None and answer[0] == 200 and answer[1]["status"] == "ok"
    assert svc.get("/feed.xml")[0] == 200

    setup.sources["b"] = feed_server.url("/b.xml")
    setup.write()
    svc.send(signal.SIGHUP)
    wait_until(lambda: "config reloaded" in svc.stderr, what="the reload")
    wait_until(lambda: any(s == "b" for s, _ in setup.entries()), what="the new source")
    code, elapsed = svc.stop()
    assert code == 0, svc.stderr
    assert elapsed < STOP_BOUND
    assert sorted({s for s, _ in setup.entries()}) == ["a", "b"]
    # Source "a" was not refetched by the reload: its own interval still applies.
    assert len(feed_server.requests_for("/a.xml")) == 1


# -- in-process parts -----------------------------------------------------------------------


def test_digest_trigger_fires_exactly_when_the_period_becomes_due(tmp_path: Path) -> None:
    setup = Setup(tmp_path, {}, digest_time="02:30")
    text = setup.text().replace('timezone = "UTC"', 'timezone = "America/New_York"')
    setup.path.write_text(text, "utf-8")
    (lst,) = load_config(setup.path).digests
    trigger = DigestTrigger(lst)
    # 2026-03-08 02:30 does not exist in New York (DST gap): the trigger follows periods.
    now = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    fires = []
    previous = None
    for _ in range(3):
        previous = trigger.get_next_fire_time(previous, now)
        fires.append(previous)
    assert fires[0] == next_run(lst, now)
    for fire in fires:
        assert fire is not None
        period = due_period(lst, fire, None)
        assert period is not None and period.send_at == fire
        before = due_period(lst, fire - timedelta(microseconds=1), period.key)
        assert before is None  # not due a moment earlier
    assert [f.date().isoformat() for f in fires if f] == ["2026-03-08", "2026-03-09", "2026-03-10"]


def test_jobs_coalesce_misfires_and_never_overlap(tmp_path: Path) -> None:
    setup = Setup(tmp_path, {})
    setup.write()
    svc = Service(load_config(setup.path))
    try:
        sched = AsyncIOScheduler(timezone=UTC)
        svc._schedule(sched, start=True)
        jobs = {job.id: job for job in sched.get_jobs()}
        assert set(jobs) == {"poll", "digest:daily", "digest-catch-up"}
        for job in jobs.values():
            assert job.coalesce is True
            assert job.max_instances == 1
            assert job.misfire_grace_time is None  # late is better than never
    finally:
        svc.close()


def test_two_polls_at_once_fetch_each_source_once(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.add("/slow.xml", rss(items("s", 2)), delay=0.5)
    setup = Setup(tmp_path, {"slow": feed_server.url("/slow.xml")})
    setup.write()
    svc = Service(load_config(setup.path))

    async def both() -> None:
        await asyncio.gather(svc.poll_and_publish(), svc.poll_and_publish())

    try:
        asyncio.run(both())
    finally:
        svc.close()
    assert len(feed_server.requests_for("/slow.xml")) == 1
    assert feed_server.max_concurrency() == 1


def test_health_turns_503_when_the_last_poll_is_too_old(tmp_path: Path) -> None:
    setup = Setup(tmp_path, {}, poll_interval=10)
    setup.write()
    clock = [datetime(2026, 11, 26, 12, 0, tzinfo=UTC)]
    svc = Service(load_config(setup.path), clock=lambda: clock[0])
    try:
        status, body = svc.health()
        assert (status, body["status"], body["last_poll"]) == (503, "stale", None)
        svc.started_at = clock[0]
        assert svc.health()[1]["status"] == "starting"
        assert svc.health()[0] == 200
        svc.store.mark_run("poll", clock[0])
        clock[0] += timedelta(seconds=30)  # 3 poll intervals of 10 s
        assert svc.health()[0] == 200
        clock[0] += timedelta(seconds=1)
        status, body = svc.health()
        assert (status, body["status"]) == (503, "stale")
        assert body["digests"] == {"daily": None}
    finally:
        svc.close()


def test_a_broken_rules_file_stops_the_start_and_a_reload(tmp_path: Path) -> None:
    setup = Setup(tmp_path, {})
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    setup.path.write_text(setup.text().replace(str(RULES), str(rules)), encoding="utf-8")
    svc = Service(load_config(setup.path))
    try:
        rules.write_text("[tags.a]\nterms = ['x']\npatterns = ['(x']\n", encoding="utf-8")
        assert asyncio.run(svc.reload()) is False
        with pytest.raises(ConfigError, match=r"tags\.a\.patterns\[1\]"):
            Service(
                replace(
                    svc.config, service=replace(svc.config.service, state_dir=tmp_path / "other")
                )
            )
    finally:
        svc.close()


def test_the_lock_is_held_by_a_service_object_until_it_closes(tmp_path: Path) -> None:
    setup = Setup(tmp_path, {})
    setup.write()
    config = load_config(setup.path)
    svc = Service(config)
    with pytest.raises(ServiceError, match=f"pid {os.getpid()}"):
        Service(config)
    svc.close()
    Service(config).close()


def test_metrics_count_fetch_outcome_classes() -> None:
    assert [fetch_class(s) for s in ("new", "unchanged", "not_modified", "error", "skipped")] == [
        "ok",
        "ok",
        "not_modified",
        "error",
        None,
    ]
    metrics = Metrics()
    now = datetime(2026, 11, 26, tzinfo=UTC)
    metrics.record_poll(
        CycleReport(
            started_at=now,
            finished_at=now,
            sources=(
                SourceReport(source="a", status="new", new=2),
                SourceReport(source="b", status="skipped"),
                SourceReport(source="c", status="gone", error="410"),
            ),
        ),
        0.1,
    )
    value = metrics.registry.get_sample_value
    assert value("digest_fetches_total", {"outcome": "ok"}) == 1.0
    assert value("digest_fetches_total", {"outcome": "gone"}) == 1.0
    assert value("digest_new_entries_total") == 2.0
    assert value("digest_failing_sources") == 1.0
