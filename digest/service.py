"""The long-running service: one asyncio loop with the scheduler, the poller and the server.

APScheduler (3.x, AsyncIOScheduler) runs the poll job every ``poll_interval`` (with jitter;
each source's own interval and back-off decide whether it is fetched), publishing after each
poll, and one digest job per list at the instants :func:`digest.periods.next_run` names, so the
scheduler and the "is a period due" check can never disagree (DST gaps included). Jobs
coalesce and never overlap, so a machine that slept runs each missed job once; at start, a
catch-up runs the digests missed while the service was down, after the first poll.

One service per state folder (a lock file). SIGTERM/SIGINT stop within seconds: transactions
never span an ``await``, so cancelling at an ``await`` cannot cut one in half, and a digest
being sent gets a short grace period. SIGHUP reloads the config once it validates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
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
from digest.errors import DigestError
from digest.lock import StateLock
from digest.models import CycleReport
from digest.periods import DigestListSettings, next_run
from digest.pipeline import DigestOutcome, Pipeline
from digest.store import Store

log = logging.getLogger(__name__)

#: seconds a digest being sent may take to finish after a stop request
STOP_GRACE = 5.0
#: seconds cancelled jobs get to unwind
CANCEL_WAIT = 2.0
#: seconds the HTTP server gets to close its connections
SERVER_STOP = 1.5

_P = ParamSpec("_P")
_T = TypeVar("_T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def fetch_class(status: str) -> str | None:
    """The fetch outcome class of a source report; None when the source was not fetched."""
    if status in ("new", "updated", "unchanged"):
        return "ok"
    if status in ("not_modified", "error", "gone"):
        return status
    return None


class Metrics:
    """Prometheus metrics of one service process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("digest_polls", "Poll cycles completed", registry=r)
        self.poll_failures = Counter(
            "digest_poll_failures", "Poll cycles aborted by an error", registry=r
        )
        self.fetches = Counter(
            "digest_fetches", "Source fetches by outcome class", ["outcome"], registry=r
        )
        self.new_entries = Counter("digest_new_entries", "Entries stored as new", registry=r)
        self.deliveries = Counter(
            "digest_deliveries",
            "Digest runs by list and status (sent, partial, failed, empty)",
            ["list", "status"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "digest_poll_duration_seconds", "Poll cycle duration, publishing included", registry=r
        )
        self.digest_seconds = Histogram(
            "digest_send_duration_seconds", "Digest run duration", registry=r
        )
        self.last_poll = Gauge(
            "digest_last_poll_timestamp_seconds", "When the last poll cycle finished", registry=r
        )
        self.failing = Gauge(
            "digest_failing_sources", "Sources whose last fetch failed", registry=r
        )

    def record_poll(self, report: CycleReport, seconds: float) -> None:
        self.polls.inc()
        self.poll_seconds.observe(seconds)
        self.last_poll.set(report.finished_at.timestamp())
        self.failing.set(len(report.failed))
        for s in report.sources:
            outcome = fetch_class(s.status)
            if outcome is not None:
                self.fetches.labels(outcome=outcome).inc()
            self.new_entries.inc(s.new)

    def record_digests(self, outcomes: list[DigestOutcome], seconds: float) -> None:
        self.digest_seconds.observe(seconds)
        for o in outcomes:
            if o.status != "not-due":
                self.deliveries.labels(list=o.list, status=o.status).inc()


class DigestTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at each scheduled send of one digest list, as :func:`next_run` computes it."""

    def __init__(self, settings: DigestListSettings) -> None:
        self.settings = settings

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return next_run(self.settings, previous_fire_time or now)

    def __str__(self) -> str:
        s = self.settings
        day = f" on weekday {s.weekday}" if s.schedule == "weekly" else ""
        return f"digest[{s.schedule}{day} at {s.time:%H:%M} {s.timezone}]"


class _DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """Blocking calls (SMTP, file reads) in daemon threads, so a stop never waits on a relay
    that stalls: a send cut off this way was not recorded and is retried under the same
    Message-ID."""

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, name="digest-io", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: the threads are daemons and die with the process."""


class Service:
    """``digest run``: everything in one process. Holds the state folder's lock from the
    moment it is created until :meth:`close`."""

    def __init__(self, config: Config, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.clock = clock
        self.lock = StateLock(config.service.state_dir)
        self.lock.acquire()
        try:
            self.store = Store(config.db_path)
            try:
                self.pipeline = Pipeline(config, self.store)
            except BaseException:
                self.store.close()
                raise
        except BaseException:
            self.lock.release()
            raise
        self.metrics = Metrics()
        self.scheduler: AsyncIOScheduler | None = None
        self.runner: web.AppRunner | None = None
        self.last_report: CycleReport | None = None
        self.started_at: datetime | None = None
        self._last_publish: tuple[list[str], int] = ([], 0)
        self._stop = asyncio.Event()
        self._first_poll = asyncio.Event()
        self._tasks: dict[asyncio.Task[Any], str] = {}
        self._poll_lock = asyncio.Lock()
        self._digest_lock = asyncio.Lock()
        self._reload_lock = asyncio.Lock()

    # -- one-shot -----------------------------------------------------------------------

    async def run_once(self) -> tuple[CycleReport, tuple[list[str], int], list[DigestOutcome]]:
        """One poll, one publish, and any digest that is due."""
        report = await self.poll_and_publish()
        outcomes = await self.send_digests()
        return report, self._last_publish, outcomes

    async def poll_and_publish(self) -> CycleReport:
        async with self._poll_lock:
            started = time.monotonic()
            pipeline = self.pipeline
            try:
                report = await pipeline.poll(self.clock(), clock=self.clock)
            except DigestError:
                self.metrics.poll_failures.inc()
                raise
            self.last_report = report
            log.info(
                "poll: %d new, %d updated, %d failed of %d sources",
                report.new,
                report.updated,
                len(report.failed),
                len(report.sources),
            )
            try:
                self._last_publish = pipeline.publish(self.clock())
            except DigestError as exc:
                log.error("publishing failed: %s", exc)
                self._last_publish = ([], 0)
            self.metrics.record_poll(report, time.monotonic() - started)
            return report

    async def send_digests(self, list_name: str | None = None) -> list[DigestOutcome]:
        async with self._digest_lock:
            started = time.monotonic()
            outcomes = await self.pipeline.send_due(self.clock(), list_name=list_name)
            self.metrics.record_digests(outcomes, time.monotonic() - started)
            for o in outcomes:
                if o.status != "not-due":
                    log.info(
                        "digest %s: %d stories%s",
                        o.status,
                        o.stories,
                        f" ({o.detail})" if o.detail else "",
                        extra={"list": o.list, "period": o.period},
                    )
            return outcomes

    # -- the service --------------------------------------------------------------------

    async def run(self, *, serve: bool = True) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the config."""
        self.lock.acquire()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(_DaemonThreads())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        self.started_at = self.clock()
        try:
            if serve:
                self.runner = await self._start_server(self.config)
            self._start_scheduler()
            log.info(
                "service started: %d sources, %d digest list(s), state in %s",
                len(self.config.sources),
                len(self.config.digests),
                self.config.service.state_dir,
            )
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self._shutdown()
            log.info("service stopped")

    def _request_stop(self, sig: int) -> None:
        log.info("received %s, stopping", signal.Signals(sig).name)
        self._stop.set()

    def _request_reload(self) -> None:
        log.info("received SIGHUP, reloading %s", self.config.path)
        self._spawn(self.reload, "reload")

    def _spawn(self, make: Callable[[], Awaitable[Any]], what: str) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(make, what)())
        self._tasks[task] = what
        task.add_done_callback(lambda t: self._tasks.pop(t, None))

    def _guarded(self, make: Callable[[], Awaitable[Any]], what: str) -> Callable[[], Any]:
        """Wrap a job so it is cancellable at shutdown and its failure never kills the loop."""

        async def job() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks[task] = what
            try:
                await make()
            except asyncio.CancelledError:
                # Only a stop cancels a job; the scheduler need not report it as a failure.
                log.info("%s cancelled by the stop", what)
            except DigestError as exc:
                log.error("%s failed: %s", what, exc)
            except Exception:
                log.critical("%s crashed; the service keeps running", what, exc_info=True)
            finally:
                if task is not None:
                    self._tasks.pop(task, None)

        return job

    async def _poll_job(self) -> None:
        try:
            await self.poll_and_publish()
        finally:
            self._first_poll.set()

    async def _catch_up(self) -> None:
        """Digests missed while the service was down: one per list, after the first poll."""
        await self._first_poll.wait()
        await self.send_digests()

    def _digest_job(self, list_name: str) -> Callable[[], Awaitable[list[DigestOutcome]]]:
        return lambda: self.send_digests(list_name)

    def _start_scheduler(self) -> None:
        sched = AsyncIOScheduler(timezone=UTC)
        self._schedule(sched, start=True)
        sched.start()
        self.scheduler = sched

    def _schedule(self, sched: AsyncIOScheduler, *, start: bool) -> None:
        """Add (or replace) the jobs of the current config; the poll runs at once."""
        cfg = self.config
        now = self.clock()
        common: dict[str, Any] = {
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": None,
            "replace_existing": True,
        }
        sched.add_job(
            self._guarded(self._poll_job, "poll"),
            IntervalTrigger(seconds=cfg.service.poll_interval, jitter=cfg.service.jitter or None),
            id="poll",
            name="poll",
            next_run_time=now,
            **common,
        )
        wanted = {f"digest:{lst.name}" for lst in cfg.digests}
        for job in sched.get_jobs():
            if job.id.startswith("digest:") and job.id not in wanted:
                job.remove()
        for lst in cfg.digests:
            sched.add_job(
                self._guarded(self._digest_job(lst.name), f"digest {lst.name}"),
                DigestTrigger(lst),
                id=f"digest:{lst.name}",
                name=f"digest {lst.name}",
                **common,
            )
        if start:
            sched.add_job(
                self._guarded(self._catch_up, "digest catch-up"),
                id="digest-catch-up",
                name="digest catch-up",
                next_run_time=now,
                **common,
            )

    async def _start_server(self, cfg: Config) -> web.AppRunner:
        zone = cfg.digests[0].zone if cfg.digests else UTC
        app = webapp.make_app(
            cfg.publish,
            stories=lambda tag: self.pipeline.published_stories(self.clock(), tag),
            health=self.health,
            templates_dir=cfg.templates_dir,
            tz=zone,
        )
        app.router.add_get("/metrics", self._metrics)
        runner = await webapp.start_server(app, cfg.server.host, cfg.server.port)
        log.info("serving on http://%s:%d/", cfg.server.host, runner.addresses[0][1])
        return runner

    async def _stop_server(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            try:
                await asyncio.wait_for(runner.cleanup(), SERVER_STOP)
            except TimeoutError:
                log.warning("the HTTP server did not close its connections in time")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    def health(self) -> tuple[int, dict[str, Any]]:
        """JSON for /healthz; 503 when the last poll is too old (or the state is unreadable)."""
        now = self.clock()
        cfg = self.config
        stale_after = timedelta(seconds=cfg.service.stale_after or 3 * cfg.service.poll_interval)
        try:
            last = self.store.last_run("poll")
            states = self.store.source_states(cfg.sources)
            digests: dict[str, Any] = {}
            for lst in cfg.digests:
                rec = self.store.last_digest(lst.name)
                digests[lst.name] = (
                    None
                    if rec is None
                    else {
                        "period": rec.period,
                        "status": rec.status,
                        "message_id": rec.message_id,
                        "sent_at": rec.sent_at.isoformat() if rec.sent_at else None,
                    }
                )
        except DigestError as exc:
            return 503, {"status": "error", "error": str(exc)}
        failing = {
            name: s.last_error or ("gone" if s.gone else "failing")
            for name, s in sorted(states.items())
            if s.error_count or s.gone
        }
        if last is not None:
            ok = now - last <= stale_after
            status = "ok" if ok else "stale"
        else:
            # A service that just started has not polled yet; that is not stale.
            ok = self.started_at is not None and now - self.started_at <= stale_after
            status = "starting" if ok else "stale"
        body = {
            "status": status,
            "last_poll": last.isoformat() if last else None,
            "stale_after_seconds": int(stale_after.total_seconds()),
            "failing_sources": failing,
            "digests": digests,
        }
        return (200 if ok else 503), body

    async def reload(self) -> bool:
        """Re-read the config file; keep the running config when the new one is invalid."""
        async with self._reload_lock:
            path = self.config.path
            try:
                new = load_config(path)
                pipeline = Pipeline(new, self.store)  # validates the rules file too
            except DigestError as exc:
                log.error("config reload refused, keeping the running config: %s", exc)
                return False
            if new.service.state_dir != self.config.service.state_dir:
                pipeline.close()
                log.error(
                    "config reload refused: state_dir cannot change while the service runs; "
                    "restart it instead"
                )
                return False
            # Wait for a running poll or digest, so none of them sees two configs.
            async with self._poll_lock, self._digest_lock:
                old = self.config
                self.config = new
                self.pipeline.close()
                self.pipeline = pipeline
            if self.runner is not None and _web_settings(old) != _web_settings(new):
                await self._restart_server(old, new)
            if self.scheduler is not None:
                self._schedule(self.scheduler, start=False)
            log.info(
                "config reloaded from %s: %d sources, %d digest list(s)",
                path,
                len(new.sources),
                len(new.digests),
            )
            return True

    async def _restart_server(self, old: Config, new: Config) -> None:
        await self._stop_server()
        try:
            self.runner = await self._start_server(new)
        except DigestError as exc:
            log.error("the HTTP server cannot use the new settings: %s; keeping the old", exc)
            try:
                self.runner = await self._start_server(old)
            except DigestError as again:
                log.error("the HTTP server is down until the next reload: %s", again)

    async def _shutdown(self) -> None:
        # Pause first: shutting the scheduler down cancels the jobs it is running.
        if self.scheduler is not None:
            self.scheduler.pause()
        await self._stop_server()
        # A digest being sent may finish, so it is recorded and not sent again; the rest
        # (polls, reloads) is cancelled at its next await, between transactions.
        sending = [t for t, what in self._tasks.items() if what.startswith("digest")]
        for task, what in list(self._tasks.items()):
            if not what.startswith("digest"):
                task.cancel()
        if sending:
            log.info("waiting up to %.0f s for the digest being sent", STOP_GRACE)
            await asyncio.wait(sending, timeout=STOP_GRACE)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CANCEL_WAIT)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.close()

    def close(self) -> None:
        self.pipeline.close()
        self.store.close()
        self.lock.release()


def _web_settings(cfg: Config) -> tuple[object, ...]:
    """What the HTTP server is built from; a reload that changes it restarts the server."""
    zone = cfg.digests[0].timezone if cfg.digests else "UTC"
    return (cfg.publish, cfg.server, cfg.templates_dir, zone)
