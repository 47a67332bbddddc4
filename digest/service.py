"""The long-running service: one asyncio loop with the scheduler, the poller and the server.

APScheduler (3.x, AsyncIOScheduler) runs the poll job every ``poll_interval`` (with jitter;
each source's own interval and back-off decide whether it is fetched), publishing after each
poll, and one digest job per list at its local time. Jobs coalesce and never overlap, so a
machine that slept runs each missed job once. One service per state folder (a lock file).
SIGTERM/SIGINT stop within seconds (transactions never span an ``await``, so cancelling at an
``await`` cannot cut one in half); SIGHUP reloads a validated config.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from digest import web as webapp
from digest.config import Config, load_config
from digest.errors import DigestError, ServiceError
from digest.models import CycleReport
from digest.periods import DigestListSettings
from digest.pipeline import DigestOutcome, Pipeline
from digest.store import Store

log = logging.getLogger(__name__)

STOP_TIMEOUT = 8.0
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def utcnow() -> datetime:
    return datetime.now(UTC)


class StateLock:
    """An exclusive lock on the state folder, released by the kernel if the process dies."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "digest.lock"
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except OSError as exc:
            raise ServiceError(f"cannot create the lock file {self.path}: {exc.strerror}; "
                               "make the state folder writable") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise ServiceError(
                f"another digest service (pid {pid}) is already running on the state folder "
                f"{self.path.parent}; stop it first, or give this one another state_dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class Metrics:
    """Prometheus metrics of one service process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("digest_polls", "Poll cycles run", registry=r)
        self.fetches = Counter("digest_fetch_outcomes", "Source fetch outcomes",
                               ["outcome"], registry=r)
        self.new_entries = Counter("digest_new_entries", "Entries stored as new", registry=r)
        self.digests = Counter("digest_digests", "Digest deliveries", ["list", "status"],
                               registry=r)
        self.poll_seconds = Histogram("digest_poll_duration_seconds", "Poll cycle duration",
                                      registry=r)
        self.digest_seconds = Histogram("digest_send_duration_seconds",
                                        "Digest run duration", registry=r)
        self.last_poll = Gauge("digest_last_poll_timestamp_seconds",
                               "When the last poll cycle finished", registry=r)
        self.failing = Gauge("digest_failing_sources", "Sources whose last fetch failed",
                             registry=r)

    def record_poll(self, report: CycleReport, seconds: float) -> None:
        self.polls.inc()
        self.poll_seconds.observe(seconds)
        self.last_poll.set(report.finished_at.timestamp())
        self.failing.set(len(report.failed))
        for s in report.sources:
            self.fetches.labels(outcome=s.status).inc()
            self.new_entries.inc(s.new)

    def record_digests(self, outcomes: list[DigestOutcome], seconds: float) -> None:
        self.digest_seconds.observe(seconds)
        for o in outcomes:
            if o.status != "not-due":
                self.digests.labels(list=o.list, status=o.status).inc()


class Service:
    """``digest run``: everything in one process."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        self.store = Store(config.db_path)
        self.pipeline = Pipeline(config, self.store)
        self.metrics = Metrics()
        self.lock = StateLock(config.service.state_dir)
        self.scheduler: AsyncIOScheduler | None = None
        self.runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poll_lock = asyncio.Lock()
        self._digest_lock = asyncio.Lock()
        self.last_report: CycleReport | None = None

    # -- one-shot -----------------------------------------------------------------------

    async def run_once(self) -> tuple[CycleReport, tuple[list[str], int], list[DigestOutcome]]:
        """One poll, one publish, and any digest that is due."""
        report = await self.poll_and_publish()
        outcomes = await self.send_digests()
        return report, self._last_publish, outcomes

    async def poll_and_publish(self) -> CycleReport:
        async with self._poll_lock:
            started = time.monotonic()
            report = await self.pipeline.poll(self.clock(), clock=self.clock)
            self.metrics.record_poll(report, time.monotonic() - started)
            self.last_report = report
            log.info("poll: %d new, %d updated, %d failed of %d sources", report.new,
                     report.updated, len(report.failed), len(report.sources))
            try:
                self._last_publish = self.pipeline.publish(self.clock())
            except DigestError as exc:
                log.error("publishing failed: %s", exc)
                self._last_publish = ([], 0)
            return report

    _last_publish: tuple[list[str], int] = ([], 0)

    async def send_digests(self, list_name: str | None = None) -> list[DigestOutcome]:
        async with self._digest_lock:
            started = time.monotonic()
            outcomes = await self.pipeline.send_due(self.clock(), list_name=list_name)
            self.metrics.record_digests(outcomes, time.monotonic() - started)
            for o in outcomes:
                if o.status not in ("not-due",):
                    log.info("digest %s: %s (%d stories) %s", o.status, o.period, o.stories,
                             o.detail or "", extra={"list": o.list})
            return outcomes

    # -- the service --------------------------------------------------------------------

    async def run(self, *, serve: bool = True) -> None:
        self.lock.acquire()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        try:
            if serve:
                await self._start_server()
            self._start_scheduler()
            log.info("service started: %d sources, %d digest list(s), state in %s",
                     len(self.config.sources), len(self.config.digests),
                     self.config.service.state_dir)
            await self._stop.wait()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _request_stop(self, sig: int) -> None:
        log.info("received %s, stopping", signal.Signals(sig).name)
        self._stop.set()

    def _track(self, make: Callable[[], Awaitable[Any]], what: str) -> Callable[[], Any]:
        """Wrap a job so it is cancellable at shutdown and its failure never kills the loop."""

        async def job() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await make()
            except asyncio.CancelledError:
                raise
            except DigestError as exc:
                log.error("%s failed: %s", what, exc)
            except Exception:
                log.critical("%s crashed; the service keeps running", what, exc_info=True)
            finally:
                self._tasks.discard(task)

        return job

    def _start_scheduler(self) -> None:
        cfg = self.config
        sched = AsyncIOScheduler(timezone=UTC)
        common: dict[str, Any] = {"coalesce": True, "max_instances": 1,
                                  "misfire_grace_time": None, "replace_existing": True}
        sched.add_job(self._track(self.poll_and_publish, "poll"), IntervalTrigger(
            seconds=cfg.service.poll_interval, jitter=cfg.service.jitter or None),
            id="poll", next_run_time=self.clock(), **common)
        for lst in cfg.digests:
            sched.add_job(self._track(lambda n=lst.name: self.send_digests(n),
                                      f"digest {lst.name}"),
                          digest_trigger(lst), id=f"digest:{lst.name}", **common)
        # Catch up on periods missed while the service was down: one digest, not one per day.
        sched.add_job(self._track(self.send_digests, "digest catch-up"),
                      id="digest-catch-up", next_run_time=self.clock(), **common)
        sched.start()
        self.scheduler = sched

    async def _start_server(self) -> None:
        cfg = self.config
        zone = cfg.digests[0].zone if cfg.digests else UTC
        app = webapp.make_app(
            cfg.publish,
            stories=lambda tag: self.pipeline.published_stories(self.clock(), tag),
            health=self.health, templates_dir=cfg.templates_dir, tz=zone,
        )
        app.router.add_get("/metrics", self._metrics)
        self.runner = await webapp.start_server(app, cfg.server.host, cfg.server.port)
        log.info("serving on http://%s:%d/", cfg.server.host, cfg.server.port)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    def health(self) -> tuple[int, dict[str, Any]]:
        """JSON for /healthz; 503 when the last poll is too old."""
        now = self.clock()
        last = self.store.last_run("poll")
        stale_after = self.config.service.stale_after or 3 * self.config.service.poll_interval
        states = self.store.source_states(self.config.sources)
        failing = sorted(n for n, s in states.items() if s.error_count or s.gone)
        digests = {}
        for lst in self.config.digests:
            rec = self.store.last_digest(lst.name)
            digests[lst.name] = None if rec is None else {
                "period": rec.period, "status": rec.status,
                "sent_at": rec.sent_at.isoformat() if rec.sent_at else None}
        ok = last is not None and (now - last).total_seconds() <= stale_after
        body = {"status": "ok" if ok else "stale", "last_poll": last.isoformat() if last else None,
                "failing_sources": failing, "digests": digests}
        return (200 if ok else 503), body

    def _reload(self) -> None:
        path = self.config.path
        try:
            new = load_config(path)
            Pipeline(new, self.store).close()  # validates the rules file too
        except DigestError as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            return
        if new.service.state_dir != self.config.service.state_dir:
            log.error("config reload refused: state_dir cannot change while running")
            return
        self.config = new
        self.pipeline.close()
        self.pipeline = Pipeline(new, self.store)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self._start_scheduler()
        log.info("config reloaded from %s", path)

    async def _shutdown(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_TIMEOUT)
        if self.runner is not None:
            await self.runner.cleanup()
        self.close()

    def close(self) -> None:
        self.pipeline.close()
        self.store.close()
        self.lock.release()


def digest_trigger(lst: DigestListSettings) -> CronTrigger:
    hour, minute = (int(x) for x in lst.time.split(":"))
    if lst.schedule == "weekly":
        return CronTrigger(day_of_week=_WEEKDAYS[lst.weekday], hour=hour, minute=minute,
                           timezone=lst.zone)
    return CronTrigger(hour=hour, minute=minute, timezone=lst.zone)
