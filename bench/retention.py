"""Retention benchmark: a year of polling with ``retention_days = 30``, one day per step.

Drives :class:`digest.pipeline.Pipeline` in this process with an explicit ``now`` that moves a
day per step. Each source is a local feed file, rewritten every step with the day's new items
on top of the previous day's (so half of every fetch is already known). Prints, at a few days,
the database size (main file plus -wal after a checkpoint), the entries kept, the identity keys
and the free pages. Entries must stay bounded (about ``retention_days`` days' worth) while the
keys grow; at the end an item pruned long ago is listed again and must not come back.

    .venv/bin/python bench/retention.py                      # 20 sources x 20 items x 365 days
    .venv/bin/python bench/retention.py --days 90 --sources 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != REPO / "bench")]

from digest.config import load_config  # noqa: E402
from digest.pipeline import Pipeline  # noqa: E402
from digest.store import Store  # noqa: E402

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TOPICS = (
    "Armenian and Azerbaijani foreign ministers discuss the peace treaty in {city}",
    "Georgian government debates a new transit corridor through {city}",
    "Regional energy companies sign a supply contract in {city}",
    "Football club from {city} wins the regional cup final",
    "Weather service warns of heavy snow in {city} this week",
)
CITIES = ("Yerevan", "Baku", "Tbilisi", "Brussels", "Ankara", "Batumi", "Gyumri", "Ganja")


@dataclass(frozen=True, slots=True)
class Item:
    guid: str
    link: str
    title: str
    published: datetime


def day_items(source: int, day: int, per_day: int) -> list[Item]:
    moment = START + timedelta(days=day)
    return [
        Item(
            guid=f"s{source}-d{day}-{i}",
            link=f"https://outlet{source}.example/{moment:%Y/%m/%d}/story-{i}",
            title=TOPICS[(source + i) % len(TOPICS)].format(city=CITIES[(day + i) % len(CITIES)])
            + f" (outlet {source}, {moment:%d %b}, no. {i})",
            published=moment - timedelta(minutes=20 * i + source),
        )
        for i in range(per_day)
    ]


def rss(source: int, items: list[Item]) -> bytes:
    parts = [
        f"<item><guid isPermaLink='false'>{it.guid}</guid><title>{escape(it.title)}</title>"
        f"<link>{it.link}</link><description>{escape(it.title)}. "
        + "The report gives the background and the reactions. " * 4
        + f"</description><pubDate>{format_datetime(it.published)}</pubDate></item>"
        for it in items
    ]
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Outlet {source}</title><link>https://outlet{source}.example/</link>"
        f"<description>news</description>{''.join(parts)}</channel></rss>"
    ).encode()


def write_config(workdir: Path, sources: int, retention: int) -> Path:
    lines = [
        "[service]",
        f"state_dir = {json.dumps(str(workdir / 'state'))}",
        f"retention_days = {retention}",
        "",
        "[tagging]",
        f"rules = {json.dumps(str(REPO / 'config' / 'rules.toml'))}",
        "",
        "[publish]",
        f"output_dir = {json.dumps(str(workdir / 'public'))}",
        "",
    ]
    for s in range(sources):
        lines += [
            "[[sources]]",
            f'name = "outlet-{s:02d}"',
            f"path = {json.dumps(str(workdir / 'feeds' / f'outlet-{s:02d}.xml'))}",
            "",
        ]
    path = workdir / "digest.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def measure(store: Store) -> dict[str, int]:
    db = store.db
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = Path(f"{store.path}-wal")

    def one(sql: str) -> int:
        return int(db.execute(sql).fetchone()[0])

    return {
        "bytes": store.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0),
        "entries": one("SELECT count(*) FROM entries"),
        "keys": one("SELECT count(*) FROM entry_keys"),
        "stories": one("SELECT count(*) FROM stories"),
        "free_pages": one("PRAGMA freelist_count"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="days simulated (365)")
    parser.add_argument("--sources", type=int, default=20, help="sources (20)")
    parser.add_argument("--per-day", type=int, default=20, help="new items per source a day (20)")
    parser.add_argument("--retention", type=int, default=30, help="retention_days (30)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    checkpoints = sorted({d for d in (30, 90, 180, 365) if d <= args.days} | {args.days})
    workdir = Path(tempfile.mkdtemp(prefix="digest-bench-retention-"))
    try:
        return run(args, checkpoints, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, checkpoints: list[int], workdir: Path) -> int:
    # Failures are counted from the cycle reports; the log would drown the table.
    quiet = logging.getLogger("digest")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    (workdir / "feeds").mkdir()
    config = load_config(write_config(workdir, args.sources, args.retention))
    print(
        f"retention benchmark: {args.sources} sources x {args.per_day} new items a day x "
        f"{args.days} days, retention_days = {args.retention}"
    )
    print(
        f"{'day':>5} {'MiB':>8} {'entries':>9} {'keys':>9} {'stories':>8} {'free pages':>10} "
        f"{'s/day':>6}"
    )
    store = Store(config.db_path)
    pipe = Pipeline(config, store)
    ok = True
    failures: list[str] = []
    #: items of a day not stored that day (a failed source is stored the next day)
    missing = 0
    try:
        started = time.perf_counter()
        last = started
        now = START
        for day in range(1, args.days + 1):
            now = START + timedelta(days=day - 1, hours=1)
            for s in range(args.sources):
                items = day_items(s, day - 1, args.per_day) + (
                    day_items(s, day - 2, args.per_day) if day > 1 else []
                )
                (workdir / "feeds" / f"outlet-{s:02d}.xml").write_bytes(rss(s, items))
            report = asyncio.run(pipe.poll(now, force=True))
            for failed in report.failed:
                failures.append(f"day {day} {failed.source}: {failed.error}")
            missing += max(0, args.sources * args.per_day - report.new)
            if day in checkpoints:
                m = measure(store)
                took = (time.perf_counter() - last) / (
                    day - (checkpoints[checkpoints.index(day) - 1] if checkpoints.index(day) else 0)
                )
                last = time.perf_counter()
                print(
                    f"{day:>5} {m['bytes'] / 2**20:8.2f} {m['entries']:>9} {m['keys']:>9} "
                    f"{m['stories']:>8} {m['free_pages']:>10} {took:6.2f}"
                )
        final = measure(store)
        bound = args.sources * args.per_day * (args.retention + 2)
        bounded = final["entries"] <= bound
        print(
            f"\nentries bounded by {args.retention + 2} days' worth ({bound}): "
            f"{'yes' if bounded else 'NO'}"
        )
        ok &= bounded

        print(f"source cycles that failed: {len(failures)}; items stored a day late: {missing}")
        for line in failures[:3]:
            print(f"  {line}")
        ok &= not failures

        # An item pruned long ago comes back in its feed, unchanged.
        old_day = min(9, args.days - args.retention - 3)
        if old_day < 0 or not args.retention:
            print("re-listed pruned item: not checked (no day old enough to be pruned)")
        else:
            old = day_items(0, old_day, args.per_day)[0]
            with_guid = "SELECT count(*) FROM entries WHERE guid = ?"
            pruned = store.db.execute(with_guid, (old.guid,)).fetchone()[0] == 0
            current = day_items(0, args.days - 1, args.per_day)
            current += day_items(0, args.days - 2, args.per_day)
            (workdir / "feeds" / "outlet-00.xml").write_bytes(rss(0, [*current, old]))
            report = asyncio.run(pipe.poll(now + timedelta(hours=1), force=True))
            rows = store.db.execute(with_guid, (old.guid,)).fetchone()[0]
            again = report.new != 0 or rows != 0
            print(
                f"re-listed pruned item (day {old_day + 1}, pruned: {'yes' if pruned else 'NO'}) "
                f"reported again: {'YES' if again else 'no'} ({report.new} new, "
                f"{report.updated} updated, {rows} stored rows with its guid)"
            )
            ok &= pruned and not again
        print(f"total: {time.perf_counter() - started:.1f} s")
    finally:
        pipe.close()
        store.close()
    print(f"verdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
