"""Load benchmark: a poll of 2,000 sources over 200,000 stored entries, and what stored volume
costs a re-poll.

Part 1 serves 2,000 feeds of 20 items from a loopback server: most answer 304 to a conditional
request, some send the same body again without validators (their items are skipped unparsed),
and every tenth gains 5 items. The state is pre-filled in bulk to 200,000 entries (older items
with the identity keys the code computes), warmed by one ``digest poll --all``, then one more
``digest poll --all`` runs as its own process: its wall time, CPU time and peak RSS are printed.

Part 2 builds two states that differ only in how many entries are stored (10,000 and
1,000,000 by default), polls the same 200 sources into each, then times re-polls in this
process (``Pipeline.poll`` with the store opened afresh) after each source gained 5 items, and
prints the ratio of the medians (target: within 1.2x).

    .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --parts 2 --large 300000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != REPO / "bench")]

from bench.loopback import CountingServer  # noqa: E402
from bench.poll import Launcher  # noqa: E402
from digest.config import load_config  # noqa: E402
from digest.identity import canonical_link, entry_keys  # noqa: E402
from digest.models import ParsedEntry  # noqa: E402
from digest.pipeline import Pipeline  # noqa: E402
from digest.store import Store  # noqa: E402

MIB = 1024 * 1024
WINDOW = 20
NEW_PER_GENERATION = 5
RATIO_TARGET = 1.2
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
PHRASES = (
    "Foreign ministers of Armenia and Azerbaijan meet on the peace treaty",
    "Georgian parliament debates the transit corridor bill",
    "Energy company signs a gas supply contract",
    "Border delimitation commission holds its next session",
    "Local football club wins the cup",
    "Railway link between the ports reopens after repairs",
)
SUMMARY = (
    "The talks covered the draft text, the opening of transport links and the next round. "
    "Officials said the sides agreed to keep meeting and to report back to the leaders. "
)


# --------------------------------------------------------------------------- feeds


def item(source: int, serial: int) -> dict[str, Any]:
    """Item ``serial`` of a source; serials below 0 are old items that left the feed."""
    return {
        "guid": f"https://outlet{source}.example/a/{serial}",
        "link": f"https://outlet{source}.example/news/{serial}?utm_source=rss",
        "title": f"{PHRASES[(source + serial) % len(PHRASES)]} (outlet {source}, no. {serial})",
        "summary": SUMMARY,
        "published": BASE + timedelta(minutes=serial),
    }


def render(source: int, generation: int) -> bytes:
    top = generation * NEW_PER_GENERATION + WINDOW
    parts = []
    for serial in range(top - 1, top - 1 - WINDOW, -1):
        it = item(source, serial)
        parts.append(
            f"<item><guid>{escape(it['guid'])}</guid><title>{escape(it['title'])}</title>"
            f"<link>{escape(it['link'])}</link><description>{escape(it['summary'])}</description>"
            f"<pubDate>{format_datetime(it['published'])}</pubDate></item>"
        )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>Outlet {source}</title><link>https://outlet{source}.example/</link>"
        f"<description>news</description>{''.join(parts)}</channel></rss>"
    ).encode()


class LoadServer(CountingServer):
    """Serves ``count`` feeds on 127.0.0.1; ``modes[i]`` is "etag" (304 when unchanged) or
    "plain" (no validators: the same body again)."""

    def __init__(self, count: int, modes: list[str]) -> None:
        self.modes = modes
        self.generations = [0] * count
        self.bodies: dict[tuple[int, int], bytes] = {}
        super().__init__()

    def url(self, source: int) -> str:
        return f"{self.base_url}/feed/{source}.xml"

    def advance(self, sources: range | list[int]) -> None:
        with self.lock:
            for s in sources:
                self.generations[s] += 1

    def body(self, source: int) -> tuple[bytes, str]:
        with self.lock:
            gen = self.generations[source]
            key = (source, gen)
            if key not in self.bodies:
                self.bodies[key] = render(source, gen)
            return self.bodies[key], f'"{source}-{gen}"'

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        try:
            source = int(req.path.rsplit("/", 1)[-1].split(".")[0])
            body, etag = self.body(source)
        except (ValueError, IndexError):
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        etagged = self.modes[source] == "etag"
        if etagged and req.headers.get("If-None-Match") == etag:
            self._count("304")
            req.send_response(304)
            req.send_header("ETag", etag)
            req.end_headers()
            return
        self._count("200", len(body))
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        if etagged:
            req.send_header("ETag", etag)
        req.end_headers()
        req.wfile.write(body)


# --------------------------------------------------------------------------- state


def write_config(workdir: Path, server: LoadServer, count: int) -> Path:
    lines = [
        "[service]",
        f"state_dir = {json.dumps(str(workdir / 'state'))}",
        "",
        "[tagging]",
        f"rules = {json.dumps(str(REPO / 'config' / 'rules.toml'))}",
        "",
        "[publish]",
        f"output_dir = {json.dumps(str(workdir / 'public'))}",
        "",
        # All feeds live on one loopback host; real sources are spread over many hosts.
        "[fetch]",
        "per_host = 16",
        "",
    ]
    for s in range(count):
        lines += ["[[sources]]", f'name = "outlet-{s:04d}"', f'url = "{server.url(s)}"', ""]
    path = workdir / "digest.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


#: ``--entry-id-index``: what an index on entry_keys (entry_id) changes (the story index
#: loads the keys of recent entries by entry id, which the schema does not index)
EXTRA_INDEX = "CREATE INDEX IF NOT EXISTS entry_keys_entry ON entry_keys (entry_id)"
extra_index = False


def prefill(db_path: Path, total: int, sources: int) -> float:
    """Store ``total`` old entries spread over ``sources``, with their real identity keys, in
    bulk; returns the seconds it took."""
    started = time.perf_counter()
    Store(db_path).close()  # the schema
    conn = sqlite3.connect(db_path, isolation_level=None)
    if extra_index:
        conn.execute(EXTRA_INDEX)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    per_source = -(-total // sources)
    batch: list[tuple[Any, ...]] = []
    keys: list[tuple[str, int]] = []
    # Old items are spread over about three years, all older than the story window (30 days
    # back), so both states hold the same recent entries and differ only in volume.
    spacing = timedelta(minutes=max(1, 3 * 365 * 24 * 60 // max(per_source, 1)))
    newest_old = BASE - timedelta(days=30)
    for entry_id, n in enumerate(range(total), start=1):
        source, serial = n % sources, -(n // sources) - 1
        it = item(source, serial)
        published = newest_old + serial * spacing
        parsed = ParsedEntry(
            guid=it["guid"],
            link=it["link"],
            title=it["title"],
            summary=it["summary"],
            content_html="",
            published=published,
            updated=published,
        )
        name = f"outlet-{source:04d}"
        ek = entry_keys(parsed, name)
        stamp = published.isoformat(timespec="seconds")
        batch.append(
            (
                entry_id,
                name,
                it["guid"],
                it["link"],
                canonical_link(it["link"]),
                it["title"],
                it["summary"],
                "",
                stamp,
                stamp,
                stamp,
                ek.content_hash,
            )
        )
        keys += [(k, entry_id) for k in ek.all()]
        if len(batch) >= 20000:
            _flush(conn, batch, keys)
    _flush(conn, batch, keys)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def _flush(conn: sqlite3.Connection, batch: list[tuple[Any, ...]], keys: list[Any]) -> None:
    conn.executemany(
        """INSERT INTO entries (id, source, guid, link, canonical_link, title, summary,
               content_html, published, updated, first_seen, content_hash)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?)""",
        batch,
    )
    conn.executemany("INSERT OR IGNORE INTO entry_keys (key, entry_id) VALUES (?, ?)", keys)
    batch.clear()
    keys.clear()


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


# --------------------------------------------------------------------------- part 1


def part_one(workdir: Path, sources: int, stored: int) -> bool:
    modes = ["etag" if s % 5 else "plain" for s in range(sources)]
    busy = [s for s in range(sources) if s % 10 == 3]
    with LoadServer(sources, modes) as server, Launcher() as launcher:
        config = write_config(workdir, server, sources)
        db = workdir / "state" / "digest.sqlite3"
        old = stored - sources * WINDOW
        took = prefill(db, old, sources)
        print(f"part 1: {sources} sources, {old} old entries pre-filled in {took:.1f} s")
        cmd = [sys.executable, "-m", "digest", "--config", str(config), "poll", "--all"]
        warm = launcher.run("warm", cmd, workdir, 1800, server)  # type: ignore[arg-type]
        if not warm.ok:
            print(f"  the warm-up poll failed: {warm.error}")
            return False
        count = sqlite3.connect(db).execute("SELECT count(*) FROM entries").fetchone()[0]
        print(
            f"  warm-up poll (every feed new): {warm.wall:.2f} s; {count} entries stored, "
            f"{db_bytes(db) / MIB:.0f} MiB"
        )
        server.advance(busy)
        r = launcher.run("cycle", cmd, workdir, 1800, server)  # type: ignore[arg-type]
        if not r.ok:
            print(f"  the measured poll failed: {r.error}")
            return False
        after = sqlite3.connect(db).execute("SELECT count(*) FROM entries").fetchone()[0]
        print(
            f"  one poll cycle, {len(busy)} feeds with {NEW_PER_GENERATION} new items, the "
            f"rest unchanged ({r.server['304']} x 304, {r.server['200']} x 200):"
        )
        print(
            f"    wall {r.wall:.2f} s, cpu {r.cpu:.2f} s, peak RSS {r.peak_rss:.1f} MiB "
            f"(with child processes {r.tree_rss:.1f} MiB); {after - count} entries added "
            f"(expected {len(busy) * NEW_PER_GENERATION})"
        )
        return bool(after - count == len(busy) * NEW_PER_GENERATION)


# --------------------------------------------------------------------------- part 2


def repoll_times(workdir: Path, sources: int, stored: int, reps: int) -> tuple[list[float], int]:
    """Median-ready re-poll times over a state holding ``stored`` entries, and its size."""
    with LoadServer(sources, ["etag"] * sources) as server:
        config_path = write_config(workdir, server, sources)
        config = load_config(config_path)
        took = prefill(config.db_path, stored - sources * WINDOW, sources)
        now = datetime.now(UTC)
        with Store(config.db_path) as store:
            pipe = Pipeline(config, store)
            try:
                asyncio.run(pipe.poll(now, force=True))
            finally:
                pipe.close()
            total = store.count_entries()
        print(
            f"  {total} entries stored ({took:.0f} s to pre-fill), "
            f"{db_bytes(config.db_path) / MIB:.0f} MiB"
        )
        times = []
        for rep in range(reps):
            server.advance(range(sources))
            started = time.perf_counter()
            with Store(config.db_path) as store:
                pipe = Pipeline(config, store)
                try:
                    report = asyncio.run(pipe.poll(now + timedelta(minutes=rep + 1), force=True))
                finally:
                    pipe.close()
            times.append(time.perf_counter() - started)
            if report.new != sources * NEW_PER_GENERATION or report.failed:
                print(f"    re-poll {rep + 1}: {report.new} new, {len(report.failed)} failed")
        return times, total


def part_two(workdir: Path, sources: int, small: int, large: int, reps: int) -> bool:
    print(
        f"\npart 2: re-poll of {sources} sources, {NEW_PER_GENERATION} new items each, "
        f"over {small} vs {large} stored entries ({reps} runs each, store opened afresh)"
    )
    medians = []
    for stored in (small, large):
        folder = workdir / f"repoll-{stored}"
        folder.mkdir()
        times, _ = repoll_times(folder, sources, stored, reps)
        medians.append(statistics.median(times))
        print(
            f"    re-poll seconds: {', '.join(f'{t:.3f}' for t in times)}; median {medians[-1]:.3f}"
        )
        shutil.rmtree(folder, ignore_errors=True)
    ratio = medians[1] / medians[0]
    met = ratio <= RATIO_TARGET
    print(
        f"  ratio {large} / {small}: {ratio:.2f} (target <= {RATIO_TARGET}: "
        f"{'met' if met else 'MISSED'})"
    )
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--parts", default="12", help="parts to run, e.g. '2' (12)")
    parser.add_argument("--sources", type=int, default=2000, help="part 1 sources (2000)")
    parser.add_argument("--stored", type=int, default=200_000, help="part 1 entries (200000)")
    parser.add_argument("--repoll-sources", type=int, default=200, help="part 2 sources (200)")
    parser.add_argument("--small", type=int, default=10_000, help="part 2 small state (10000)")
    parser.add_argument("--large", type=int, default=1_000_000, help="part 2 large state (1e6)")
    parser.add_argument("--reps", type=int, default=3, help="part 2 re-polls per state (3)")
    parser.add_argument(
        "--entry-id-index", action="store_true", help="add an index on entry_keys (entry_id)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    global extra_index
    extra_index = args.entry_id_index
    quiet = logging.getLogger("digest")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    workdir = Path(tempfile.mkdtemp(prefix="digest-bench-load-"))
    ok = True
    try:
        if "1" in args.parts:
            ok &= part_one(workdir, args.sources, args.stored)
        if "2" in args.parts:
            ok &= part_two(workdir, args.repoll_sources, args.small, args.large, args.reps)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
