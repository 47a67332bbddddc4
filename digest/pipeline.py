"""One poll cycle, one publish and one digest run: the stages wired together.

This is the only module that calls both pure stages (parse, dedupe, tag, group, publish, render)
and I/O (fetch, store, files, SMTP). Each source is isolated: its failure is recorded on its
state and logged once, and the cycle goes on (reader's ``_update``, miniflux's handler).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from digest import fetch, politeness
from digest import publish as publishing
from digest.config import Config
from digest.dedupe import KeyedEntry, all_keys, decide, key_entries
from digest.errors import (
    ConfigError,
    DigestDeliveryError,
    DigestError,
    ParseError,
    SendError,
    StorageError,
)
from digest.models import (
    ChangedEntry,
    CycleReport,
    FetchResult,
    NewEntry,
    ParsedFeed,
    Source,
    SourceReport,
    SourceState,
    SourceUpdate,
    Story,
)
from digest.periods import (
    DigestListSettings,
    Period,
    due_period,
    next_run,
    parse_address,
    period_by_key,
    period_for,
)
from digest.store import DigestRecord, Store
from digest.stories import StoryIndex, StoryItem
from digest.tag import Rules, check_rules, format_explanation, parse_rules
from digest.textnorm import STORY_SUMMARY_CHARS

if TYPE_CHECKING:
    from email.message import EmailMessage

    from digest.prepare import FeedResult, Prepared

# The digest's modules (digest.mail, digest.render: SMTP, Jinja2, CSS inlining) are imported
# by the methods that send or render one, so a poll cycle does not load them.

log = logging.getLogger(__name__)

#: entries grouped per transaction (and held in memory at once) at the end of a cycle
GROUP_BATCH = 2000
#: below this many feeds to parse, a process pool costs more than it saves
POOL_THRESHOLD = 8
#: documents smaller than this are parsed in the main process (cheaper than a round trip)
POOL_MIN_BYTES = 8 * 1024
#: the states of sources that stored no entry are saved this many at a time, or at least
#: this often, and at the end of the cycle
STATE_BATCH = 100
STATE_BATCH_SECONDS = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestOutcome:
    """What one digest run did for one list."""

    list: str
    period: str | None
    status: str  # "sent", "partial", "failed", "skipped", "not-due", "empty"
    stories: int = 0
    message_id: str | None = None
    detail: str | None = None


class Pipeline:
    """Holds what lives across cycles: the config, the store, the rules, the story index."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        # Checked now, so a broken rules file is refused here; compiled when first needed
        # (a cycle in which nothing changed tags nothing).
        self._rules_doc = check_rules(config.tagging.rules)
        self._rules: Rules | None = None
        self._index: StoryIndex | None = None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def rules(self) -> Rules:
        """The tagging rules, compiled on first use from the file as it was checked."""
        if self._rules is None:
            self._rules = parse_rules(self._rules_doc)
        return self._rules

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    # -- poll ---------------------------------------------------------------------------

    def due_sources(
        self, now: datetime, *, force: bool = False
    ) -> tuple[list[tuple[Source, SourceState]], list[SourceReport]]:
        states = self.store.source_states(self.config.sources)
        due: list[tuple[Source, SourceState]] = []
        skipped: list[SourceReport] = []
        for src in self.config.sources:
            state = states[src.name]
            if state.gone:
                skipped.append(
                    SourceReport(
                        source=src.name,
                        status="gone",
                        error=state.last_error
                        or "the server answered 410 Gone; remove the source "
                        "from the config or point it at the new feed URL",
                    )
                )
            elif force or state.next_poll_at is None or state.next_poll_at <= now:
                due.append((src, state))
            else:
                skipped.append(SourceReport(source=src.name, status="skipped"))
        return due, skipped

    async def poll(
        self,
        now: datetime,
        *,
        force: bool = False,
        progress: Callable[[SourceReport], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> CycleReport:
        """Fetch every due source concurrently, then parse, dedupe, tag, group and store."""
        due, reports = self.due_sources(now, force=force)
        use_pool = len(due) >= POOL_THRESHOLD
        settings = self.config.fetch

        # Bodies wait for a parser slot while holding this gate, so a cycle never holds more
        # than ``concurrency`` fetched bodies in memory however many sources it polls.
        gate = asyncio.Semaphore(settings.concurrency)

        async def one(src: Source, state: SourceState) -> SourceReport:
            async with gate:
                result = await fetcher.fetch(src, state, now)
                parsed: object = None
                hashes: tuple[str, ...] | None = None
                skipped = 0
                prepared: list[Prepared] | None = None
                if result.outcome == "ok":
                    try:
                        done = await self._parse(result, src, now, use_pool)
                        parsed, hashes = done.parsed, done.item_hashes
                        skipped, prepared = done.skipped, done.prepared
                    except ParseError as exc:
                        parsed = exc
                    except Exception as exc:
                        # A parser bug or a dead pool worker is this source's failure, not the
                        # cycle's: the other sources are still stored.
                        log.critical("unexpected error parsing source=%s", src.name, exc_info=True)
                        parsed = ParseError(
                            f"internal error while parsing ({type(exc).__name__}: {exc}); "
                            "it will be retried; please report it",
                            url=result.final_url or src.location,
                        )
                try:
                    return self._store_source(
                        src,
                        state,
                        result,
                        parsed,
                        now,
                        item_hashes=hashes,
                        skipped=skipped,
                        prepared=prepared,
                        unsaved=unsaved,
                    )
                except StorageError:
                    raise  # the state itself is unusable: every source would fail alike
                except Exception as exc:
                    return self._store_failed(src, state, result, now, exc)

        # Stories are assigned source by source in this fixed order, each source's entries
        # oldest first, as soon as every source before it is stored: grouping runs while
        # later sources are still fetched and parsed, and its result does not depend on
        # which fetch finished first.
        group_order = _interleave_hosts(due)
        stored: dict[str, int] = {}  # source -> new entries stored this cycle
        grouped = self.group_pending(now)  # what a cycle that died left ungrouped comes first
        cursor = 0
        # The states of sources that stored no entry (not modified, failed) are saved a
        # batch at a time: one commit each would cost more than the rest of their handling.
        # A batch lost in a crash only means those sources are polled again.
        unsaved: list[SourceState] = []
        batch_started = time.monotonic()

        async with fetch.Fetcher(settings) as fetcher:
            tasks = [asyncio.ensure_future(one(src, state)) for src, state in group_order]
            try:
                for next_done in asyncio.as_completed(tasks):
                    report = await next_done
                    if unsaved and (
                        len(unsaved) >= STATE_BATCH
                        or time.monotonic() - batch_started >= STATE_BATCH_SECONDS
                    ):
                        self.store.save_states(unsaved)
                        unsaved.clear()
                        batch_started = time.monotonic()
                    reports.append(report)
                    stored[report.source] = report.new
                    while cursor < len(group_order) and group_order[cursor][0].name in stored:
                        name = group_order[cursor][0].name
                        if stored[name]:
                            grouped += self.group_pending(now, source=name)
                        cursor += 1
                    if progress is not None:
                        progress(report)
            finally:
                for task in tasks:
                    task.cancel()
                if unsaved:
                    self.store.save_states(unsaved)
        grouped += self.group_pending(now)
        if grouped:
            log.debug("grouped %d new entries into stories", grouped)
        finished = clock() if clock else now
        order = {s.name: i for i, s in enumerate(self.config.sources)}
        reports.sort(key=lambda r: order.get(r.source, 0))
        self.store.mark_run("poll", finished)
        if self.config.service.retention_days:
            pruned = self.store.prune(now - timedelta(days=self.config.service.retention_days))
            if pruned:
                log.info(
                    "pruned the text of %d entries older than %d days",
                    pruned,
                    self.config.service.retention_days,
                )
        return CycleReport(started_at=now, finished_at=finished, sources=tuple(reports))

    async def _parse(
        self, result: FetchResult, src: Source, now: datetime, use_pool: bool
    ) -> FeedResult:
        """Parse the items whose raw bytes are new, in a parser process when the document is
        big enough to be worth the trip (which then also keys, tags and normalises them)."""
        # Parsing (feedparser, nh3) is imported when a cycle first has something to parse.
        from digest import prepare

        job = prepare.FeedJob(
            body=result.body,
            headers=dict(result.headers),
            base=result.final_url or src.url,
            now=now,
            source=src.name,
            source_tags=src.tags,
            known_items=frozenset(self.store.item_hashes(src.name)),
        )
        if not use_pool or len(result.body) < POOL_MIN_BYTES:
            return prepare.parse_new_items(job, None)
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        try:
            return await loop.run_in_executor(pool, prepare.parse_in_worker, job)
        except concurrent.futures.BrokenExecutor:
            # A worker died (killed, out of memory): a broken pool refuses all later work,
            # so the next cycle starts a new one instead of failing forever.
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            from digest import prepare

            workers = self.config.service.parse_workers or os.cpu_count() or 1
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["digest.prepare"])
            self._pool = concurrent.futures.ProcessPoolExecutor(
                workers,
                mp_context=ctx,
                initializer=prepare.init_worker,
                initargs=(str(self.config.tagging.rules),),
            )
        return self._pool

    def _store_source(
        self,
        src: Source,
        state: SourceState,
        result: FetchResult,
        parsed: object,
        now: datetime,
        *,
        item_hashes: tuple[str, ...] | None = None,
        skipped: int = 0,
        prepared: list[Prepared] | None = None,
        unsaved: list[SourceState] | None = None,
    ) -> SourceReport:
        """Record one source's outcome: entries and state in one transaction. A state alone
        goes to ``unsaved`` when given, for the caller to save with others."""
        ttl = parsed.ttl_minutes if isinstance(parsed, ParsedFeed) else None
        if isinstance(parsed, ParseError):
            result = replace(result, outcome="error", error=parsed.message)
        new_state = politeness.apply_result(
            state, result, source=src, now=now, ttl_minutes=ttl, settings=self.config.fetch
        )
        if result.outcome != "ok" or not isinstance(parsed, ParsedFeed):
            if unsaved is None:
                self.store.save_state(new_state)
            else:
                unsaved.append(new_state)
            status = {"not_modified": "not_modified", "gone": "gone"}.get(result.outcome, "error")
            if result.outcome == "retry_later":
                status = "error"
            if status != "not_modified":
                log.warning(
                    "%s",
                    result.error or "fetch failed",
                    extra={"source": src.name, "url": src.location},
                )
            return SourceReport(source=src.name, status=status, error=result.error)
        for warning in parsed.warnings:
            log.warning(
                "feed is malformed but readable: %s",
                warning,
                extra={"source": src.name, "url": src.location},
            )
        for rej in parsed.rejected:
            log.warning(
                "entry rejected: %s (%s)",
                rej.reason,
                rej.title or rej.link or "?",
                extra={"source": src.name, "url": src.location},
            )
        if prepared:
            keyed = [
                KeyedEntry(parsed=e, keys=p.keys, link=p.link)
                for e, p in zip(parsed.entries, prepared, strict=True)
            ]
            done = {id(e): p for e, p in zip(parsed.entries, prepared, strict=True)}
        else:
            keyed, done = key_entries(parsed.entries, src.name), {}
        known = self.store.lookup_keys(all_keys(keyed))
        update = decide(src.name, keyed, known, new_state, parsed.rejected)
        update = replace(
            self._tag_update(update, src, done),
            item_hashes=item_hashes,
            unchanged=update.unchanged + skipped,
        )
        self.store.apply_update(update, now)
        status = "new" if update.new else ("updated" if update.changed else "unchanged")
        return SourceReport(
            source=src.name,
            status=status,
            new=len(update.new),
            updated=len(update.changed),
            unchanged=update.unchanged,
            rejected=len(parsed.rejected),
        )

    def _store_failed(
        self,
        src: Source,
        state: SourceState,
        result: FetchResult,
        now: datetime,
        exc: Exception,
    ) -> SourceReport:
        """A bug met while tagging, grouping or storing one source: its entries are not
        stored (the next poll retries them), its state records the error, the cycle goes on."""
        log.critical("unexpected error storing source=%s", src.name, exc_info=True)
        error = (
            f"internal error ({type(exc).__name__}: {exc}); it will be retried; please report it"
        )
        failed = replace(result, outcome="error", error=error)
        self.store.save_state(
            politeness.apply_result(state, failed, source=src, now=now, settings=self.config.fetch)
        )
        return SourceReport(source=src.name, status="error", error=error)

    def _tag_update(
        self, update: SourceUpdate, src: Source, known: dict[int, Prepared] | None = None
    ) -> SourceUpdate:
        """Tags and story words of the new and changed entries (computed here unless a parser
        process did)."""
        from digest import prepare

        known = known or {}

        def tagged(item: NewEntry | ChangedEntry) -> NewEntry | ChangedEntry:
            done = known.get(id(item.parsed))
            if done is not None:
                return replace(item, tags=done.tags, scores=done.scores, terms=done.terms)
            decision = prepare.decide_tags(self.rules, item.parsed, src.tags)
            return replace(
                item,
                tags=decision.tags,
                scores=dict(decision.scores),
                terms=prepare.entry_terms(item.parsed),
            )

        return replace(
            update,
            new=tuple(tagged(e) for e in update.new),  # type: ignore[misc]
            changed=tuple(tagged(e) for e in update.changed),  # type: ignore[misc]
        )

    # -- stories ------------------------------------------------------------------------

    def story_index(self, now: datetime) -> StoryIndex:
        if self._index is None:
            index = StoryIndex(self.config.stories)
            window = timedelta(hours=self.config.stories.window_hours)
            index.load(self.store.window_items(now - window, STORY_SUMMARY_CHARS))
            self._index = index
        return self._index

    def group_pending(self, now: datetime, source: str | None = None) -> int:
        """Put every entry (of ``source``, if given) that has no story yet into one, oldest
        first; returns how many entries were grouped.

        Entries stored by a cycle that died before grouping them are grouped by the next.
        """
        grouped = 0
        while items := self.store.ungrouped_items(GROUP_BATCH, STORY_SUMMARY_CHARS, source):
            try:
                index = self.story_index(now)
                index.evict(now - timedelta(hours=self.config.stories.window_hours))
                with self.store.transaction():
                    self._group(index, items, now)
            except BaseException:
                self._index = None  # it may hold decisions that were rolled back: rebuild it
                raise
            grouped += len(items)
            if len(items) < GROUP_BATCH:
                break  # that was the last of them: no need to ask again
        return grouped

    def _group(self, index: StoryIndex, items: Sequence[StoryItem], now: datetime) -> None:
        next_id = self.store.next_story_id()
        assigned: list[tuple[int, int, str | None]] = []
        created: list[tuple[int, str]] = []

        def flush() -> None:
            self.store.create_stories(created, now)
            self.store.assign_stories(assigned)
            created.clear()
            assigned.clear()

        for item in items:
            result = index.add(item, story_id_for_new=next_id)
            if not result.joined:
                created.append(
                    (result.story_id, item.keys[0] if item.keys else f"entry:{item.entry_id}")
                )
                next_id = max(next_id, result.story_id) + 1
            assigned.append((item.entry_id, result.story_id, index.explain(item.entry_id)))
            if result.merged:
                flush()  # a merge must see every story and assignment made so far
                for absorbed in result.merged:
                    self.store.merge_stories(result.story_id, absorbed)
        flush()

    # -- publish ------------------------------------------------------------------------

    def published_stories(self, now: datetime, tag: str | None = None) -> list[Story]:
        """The newest selected stories (of one tag, if given) that a feed or the page shows."""
        settings = self.config.publish
        return self.store.stories(
            tag=settings.selection,
            also_tag=tag,
            limit=settings.max_items,
            since=now - timedelta(days=settings.max_age_days),
        )

    def feed_stories(self, now: datetime) -> tuple[list[Story], int]:
        """Every story a feed file shows, and how many of them the main feed shows."""
        stories = self.published_stories(now)
        shown = len(stories)
        seen = {s.id for s in stories}
        for tag in self.config.publish.tags:  # each tag's feed has its own newest max_items
            extra = [s for s in self.published_stories(now, tag) if s.id not in seen]
            seen.update(s.id for s in extra)
            stories.extend(extra)
        return stories, shown

    def publish(self, now: datetime) -> tuple[list[str], int]:
        """Write every feed file; returns the files that changed and the story count.

        When nothing the files show can have changed since the last publish (no entry, tag
        or story, the settings, the files themselves, nor a story's age), nothing is loaded
        or built: the same files would come out (see :class:`digest.publish.Published`).
        """
        settings = self.config.publish
        generation, record = self.store.publish_state()
        last = publishing.Published.from_json(record) if record else None
        if last is not None and last.still_current(generation, settings, now):
            self.store.mark_run("publish", now, f"{last.shown} stories, 0 files written")
            return [], last.shown
        stories, shown = self.feed_stories(now)
        files = publishing.build_all(stories, settings, now)
        written = publishing.write_outputs(settings.output_dir, files)
        done = publishing.Published.of(stories, settings, now, generation=generation, shown=shown)
        with self.store.transaction():
            self.store.mark_published(done.to_json())
            self.store.mark_run("publish", now, f"{shown} stories, {len(written)} files written")
        return written, shown

    # -- digests ------------------------------------------------------------------------

    def feed_url(self) -> str:
        return self.config.publish.base_url + "feed.xml"

    async def send_due(
        self, now: datetime, *, list_name: str | None = None, force: bool = False
    ) -> list[DigestOutcome]:
        """Send every digest that is due, and retry the pending ones whose time has come.

        With ``force`` the current period is sent even before its scheduled time (and a
        pending retry does not wait for its back-off).
        """
        from digest.mail import message_domain, message_id

        outcomes: list[DigestOutcome] = []
        lists = [d for d in self.config.digests if list_name in (None, d.name)]
        if list_name is not None and not lists:
            raise ConfigError(
                f"no digest list named {list_name!r} in the config",
                path=self.config.path,
                key="digests",
            )
        for lst in lists:
            for pending in self.store.unfinished_digests(lst.name):
                if not force and pending.next_try_at and pending.next_try_at > now:
                    outcomes.append(
                        DigestOutcome(
                            list=lst.name,
                            period=pending.period,
                            status="not-due",
                            message_id=pending.message_id,
                            detail=f"retry after {pending.next_try_at:%Y-%m-%d %H:%M} UTC",
                        )
                    )
                    continue
                outcomes.append(await self._deliver(lst, pending, now))
            last = self.store.last_digest(lst.name)
            last_key = last.period if last else None
            period = due_period(lst, now, last_key)
            if period is None and force:
                current = period_for(lst, now)
                if self.store.digest(lst.name, current.key) is None:
                    period = current
            if period is None:
                upcoming = next_run(lst, now)
                outcomes.append(
                    DigestOutcome(
                        list=lst.name,
                        period=last_key,
                        status="not-due",
                        detail=f"next at {upcoming:%Y-%m-%d %H:%M} UTC",
                    )
                )
                continue
            stories = self.store.stories(
                tag=lst.selection,
                since=now - timedelta(days=self.config.publish.max_age_days),
                exclude_mailed_to=lst.name,
            )
            msg_id = message_id(lst.name, period.key, message_domain(lst, self.config.smtp))
            if not stories and not lst.send_empty:
                self.store.create_digest(lst.name, period.key, msg_id, [], now, status="skipped")
                outcomes.append(
                    DigestOutcome(
                        list=lst.name, period=period.key, status="empty", detail="no new stories"
                    )
                )
                continue
            record = self.store.create_digest(
                lst.name, period.key, msg_id, [s.id for s in stories], now
            )
            outcomes.append(await self._deliver(lst, record, now))
        self.store.mark_run("digest", now)
        return outcomes

    def render(
        self, lst: DigestListSettings, stories: Sequence[Story], period: Period, now: datetime
    ) -> tuple[str, str, EmailMessage]:
        from digest.mail import build_message
        from digest.render import build_context, render_digest

        ctx = build_context(stories, lst, period, feed_url=self.feed_url(), now=now)
        html_body, text = render_digest(ctx, templates_dir=self.config.templates_dir)
        msg = build_message(
            html_body,
            text,
            period=period,
            settings=lst,
            smtp=self.config.smtp,
            story_count=len(stories),
            now=now,
        )
        return html_body, text, msg

    def preview(
        self, now: datetime, list_name: str | None = None
    ) -> tuple[str, str, EmailMessage, int]:
        """The next digest of a list, rendered, without sending or recording anything."""
        lists = [d for d in self.config.digests if list_name in (None, d.name)]
        if not lists:
            raise ConfigError(
                "no such digest list" if list_name else "no [[digests]] list in the config",
                path=self.config.path,
                key="digests",
            )
        lst = lists[0]
        stories = self.store.stories(
            tag=lst.selection,
            since=now - timedelta(days=self.config.publish.max_age_days),
            exclude_mailed_to=lst.name,
        )
        html_body, text, msg = self.render(lst, stories, period_for(lst, now), now)
        return html_body, text, msg, len(stories)

    async def _deliver(
        self, lst: DigestListSettings, record: DigestRecord, now: datetime
    ) -> DigestOutcome:
        """Send one claimed digest to the recipients that have not accepted it yet."""
        from digest.mail import asend_message

        extra = {"list": lst.name, "period": record.period}
        stories = self.store.stories(tag=None, story_ids=record.story_ids)
        period = period_by_key(lst, record.period)
        pending = [r for r in lst.recipients if record.recipients.get(_addr(r)) != "accepted"]
        retry_at = now + timedelta(seconds=min(60 * 2 ** min(record.attempts, 10), 3600))
        try:
            # The message is built as it was first built (same Date and Message-ID), so a
            # resend after a crash is recognisably the same message.
            _, _, msg = self.render(lst, stories, period, record.created_at)
            outcome = await asend_message(
                msg, pending, self.config.smtp, outbox_dir=self.config.outbox_dir
            )
        except DigestDeliveryError as exc:
            refused = exc.refused if isinstance(exc, SendError) else {}
            self.store.record_delivery(
                record.id,
                accepted=[],
                refused=dict(refused),
                error=str(exc),
                now=now,
                next_try_at=retry_at,
            )
            log.error(
                "digest not delivered: %s; retrying at %s",
                exc,
                f"{retry_at:%H:%M} UTC",
                extra=extra,
            )
            return DigestOutcome(
                list=lst.name,
                period=record.period,
                status="failed",
                stories=len(stories),
                message_id=record.message_id,
                detail=str(exc),
            )
        accepted = [_addr(a) for a in outcome.accepted]
        refused = {_addr(a): why for a, why in outcome.refused.items()}
        self.store.record_delivery(
            record.id,
            accepted=accepted,
            refused=refused,
            error=None,
            now=now,
            next_try_at=retry_at if refused else None,
        )
        for addr, why in refused.items():
            log.warning(
                "recipient refused: %s; will retry", why, extra={**extra, "recipient": addr}
            )
        where = str(outcome.path) if outcome.path else "SMTP"
        return DigestOutcome(
            list=lst.name,
            period=record.period,
            status="partial" if refused else "sent",
            stories=len(stories),
            message_id=record.message_id,
            detail=f"{len(accepted)} recipient(s) via {where}"
            + (f", {len(refused)} refused" if refused else ""),
        )

    # -- maintenance --------------------------------------------------------------------

    def retag(self, progress: Callable[[int], None] | None = None) -> int:
        """Re-tag every stored entry; one transaction per batch. Returns how many changed."""
        from digest import prepare

        sources = {s.name: s for s in self.config.sources}
        changed = 0
        for batch in self.store.iter_entries(500):
            with self.store.transaction():
                for entry in batch:
                    src = sources.get(entry.source)
                    decision = prepare.decide_tags(self.rules, entry, src.tags if src else ())
                    if decision.tags != entry.tags:
                        changed += 1
                    self.store.set_tags(entry.id, decision.tags, decision.scores)
            if progress is not None:
                progress(len(batch))
        return changed

    def explain(self, ref: str, now: datetime) -> str:
        """Tags, selection and story of one stored entry, in words."""
        from digest import prepare

        entry = self.store.find_entry(ref)
        if entry is None:
            raise DigestError(
                f"no stored entry with id or link {ref!r}; `digest status` shows what is stored"
            )
        src = next((s for s in self.config.sources if s.name == entry.source), None)
        decision = prepare.decide_tags(self.rules, entry, src.tags if src else ())
        lines = [
            f"entry {entry.id}: {entry.title}",
            f"source: {entry.source}; link: {entry.link or '-'}; "
            f"published {entry.published:%Y-%m-%d %H:%M} UTC",
            "",
            format_explanation(decision, self.config.publish.selection),
            "",
        ]
        if entry.story_id is None:
            lines.append("story: none yet")
        else:
            story = self.store.story(entry.story_id)
            lines.append(
                f"story {entry.story_id}"
                + (f" ({story.uid}), {len(story.entries)} report(s)" if story else "")
            )
            if story:
                for other in story.entries:
                    mark = "*" if other.id == entry.id else "-"
                    lines.append(f"  {mark} [{other.source}] {other.title}")
            reason = self.store.story_reason(entry.id)
            lines.append(reason or "(grouped before reasons were recorded)")
        return "\n".join(lines)


def _addr(value: str) -> str:
    parsed = parse_address(value)
    return parsed.addr_spec.lower() if parsed else value.strip().lower()


def _interleave_hosts(
    due: Sequence[tuple[Source, SourceState]],
) -> list[tuple[Source, SourceState]]:
    """Order sources round-robin by host, so slots are not all spent waiting on one host."""
    by_host: dict[str, list[tuple[Source, SourceState]]] = {}
    for item in due:
        url = item[1].url or item[0].url or ""
        by_host.setdefault(urlsplit(url).hostname or url, []).append(item)
    queues = list(by_host.values())
    out: list[tuple[Source, SourceState]] = []
    while queues:
        out.extend(q.pop(0) for q in queues)
        queues = [q for q in queues if q]
    return out
