"""Crash campaign: ``digest run`` killed with SIGKILL again and again, then checked.

A loopback feed server serves churning feeds (each fetch may add 0-5 items, edit some, rewrite
some guids; two sources rewrite every guid on every change; ETag or Last-Modified), and a
loopback SMTP relay records every message as soon as it has it, then answers DATA slowly (a
send is a wide target, and a kill in that window leaves a delivered message unrecorded). Each
iteration starts ``python -m digest --config CFG run``, waits 0.2-3 s (often until a feed
request or an SMTP session is in flight, so kills land in polls and in sends), sends SIGKILL,
and checks the database (``PRAGMA integrity_check``) and every published file.
A final ``digest poll --all`` and ``digest run --once`` finish the work; then:

- every item the feed server ever served is stored exactly once (matched by link);
- every digest period that came due was delivered, under one Message-ID per (list, period):
  a message the relay accepted just before a kill is resent under the same Message-ID;
- the database passes ``PRAGMA integrity_check`` and every published file parses.

Periods: the service runs on the real clock, so the campaign uses several digest lists; some
were due before it started (sent by the catch-up of the first start), the others come due one
minute apart while it runs (sent by the scheduler or by a catch-up after a kill).

A feed drops an item from its window only once the client has shown, with a conditional
request naming a version that holds it, that it stored that version: an item that no reader
could ever have stored does not count as lost.

    .venv/bin/python bench/crash.py                    # 100 iterations
    .venv/bin/python bench/crash.py --iterations 20 --seed 7 --keep
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import format_datetime, formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import feedparser
import psutil
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import Envelope, Session

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "config" / "rules.toml"

#: titles the shipped rules select, so every period has stories to mail
TITLES = (
    "Armenian and Azerbaijani foreign ministers hold peace talks in Washington",
    "Georgian prime minister meets EU foreign ministers in Brussels on visa talks",
    "Azerbaijan and Armenia sign border delimitation protocol after peace talks",
    "Armenian foreign minister visits Tbilisi for talks with Georgian counterpart",
    "Azerbaijani president receives Georgian foreign minister in Baku",
    "Armenia and Georgia hold intergovernmental commission talks in Yerevan",
)
#: newest items always in a feed; older ones stay until the client has stored them
WINDOW = 30
#: the config's minimum; every start polls at once the sources that are due
POLL_INTERVAL = 10
SMTP_DATA_DELAY = 1.5
KILL_MIN, KILL_MAX = 0.2, 3.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- feeds


@dataclass(slots=True)
class FeedItem:
    n: int
    guid: str
    link: str
    title: str
    published: datetime
    version: int = 0


@dataclass(slots=True)
class ChurnFeed:
    """One source's feed; every change makes a new generation with its own validators."""

    name: str
    #: "etag" or "last-modified": the validator this feed sends
    validator: str
    #: seconds the server waits before answering
    delay: float
    #: every guid changes with every generation (a feed that rewrites its guids)
    rotating: bool
    items: list[FeedItem] = field(default_factory=list)
    generation: int = 0
    next_n: int = 0
    #: generation -> the (item, version) pairs it listed
    listed: dict[int, frozenset[tuple[int, int]]] = field(default_factory=dict)
    #: (item, version) pairs the client has shown it stored
    acked: set[tuple[int, int]] = field(default_factory=set)

    def add(self, rng: random.Random, now: datetime) -> None:
        n = self.next_n
        self.next_n += 1
        self.items.append(
            FeedItem(
                n=n,
                guid=f"{self.name}-{n}",
                link=f"http://news.example.org/{self.name}/{n}",
                title=f"{TITLES[(n + rng.randrange(6)) % len(TITLES)]} ({self.name} item {n})",
                published=now - timedelta(seconds=rng.randrange(60)),
            )
        )

    def churn(self, rng: random.Random, now: datetime) -> bool:
        """Maybe change the feed; True when it changed."""
        changed = False
        for _ in range(rng.choice((0, 0, 1, 2, 3, 4, 5))):
            self.add(rng, now)
            changed = True
        shown = self.visible()
        if shown and rng.random() < 0.3:
            item = rng.choice(shown)
            item.version += 1
            item.title = item.title.split(" [edit")[0] + f" [edit {item.version}]"
            changed = True
        if shown and not self.rotating and rng.random() < 0.2:
            item = rng.choice(shown)
            item.guid = f"{self.name}-{item.n}-r{rng.randrange(10**6)}"
            changed = True
        if changed:
            self.generation += 1
            if self.rotating:
                for item in self.items:
                    item.guid = f"{self.name}-{item.n}-g{self.generation}"
        return changed

    def visible(self) -> list[FeedItem]:
        newest = {i.n for i in self.items[-WINDOW:]}
        return [i for i in self.items if i.n in newest or (i.n, i.version) not in self.acked]

    def etag(self, generation: int | None = None) -> str:
        return f'"{self.name}-{self.generation if generation is None else generation}"'

    def last_modified(self, generation: int | None = None) -> str:
        g = self.generation if generation is None else generation
        return formatdate(1_700_000_000 + g, usegmt=True)

    def acknowledge(self, if_none_match: str | None, if_modified_since: str | None) -> None:
        """A conditional request names the generation the client stored."""
        stored: int | None = None
        if if_none_match:
            tag = if_none_match.strip()
            prefix = f'"{self.name}-'
            if tag.startswith(prefix) and tag.endswith('"'):
                with contextlib.suppress(ValueError):
                    stored = int(tag[len(prefix) : -1])
        elif if_modified_since:
            with contextlib.suppress(TypeError, ValueError):
                stored = int(parsedate_to_datetime(if_modified_since).timestamp()) - 1_700_000_000
        if stored is not None and stored in self.listed:
            self.acked |= self.listed[stored]

    def not_modified(self, if_none_match: str | None, if_modified_since: str | None) -> bool:
        if self.validator == "etag":
            return if_none_match is not None and if_none_match.strip() == self.etag()
        if if_modified_since is None:
            return False
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        return since >= parsedate_to_datetime(self.last_modified())

    def render(self) -> tuple[bytes, list[FeedItem]]:
        shown = self.visible()
        self.listed[self.generation] = frozenset((i.n, i.version) for i in shown)
        parts = [
            f"<item><guid isPermaLink='false'>{escape(i.guid)}</guid>"
            f"<title>{escape(i.title)}</title><link>{escape(i.link)}</link>"
            f"<description>{escape(i.title)}. Version {i.version}.</description>"
            f"<pubDate>{format_datetime(i.published)}</pubDate></item>"
            for i in reversed(shown)
        ]
        body = (
            "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>{self.name}</title><link>http://news.example.org/{self.name}/</link>"
            f"<description>churning feed</description>{''.join(parts)}</channel></rss>"
        ).encode()
        return body, shown


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A killed client resets its connections; that is the point, not an error."""


class ChurnServer:
    """The feed server: churns a feed on each request, records what it served."""

    def __init__(self, feeds: list[ChurnFeed], seed: int) -> None:
        self.feeds = {f"/{f.name}.xml": f for f in feeds}
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.frozen = False
        self.in_flight = 0
        self.stats: Counter[str] = Counter()
        #: link -> (source, item number) of every item sent in a 200 answer
        self.served: dict[str, tuple[str, int]] = {}
        now = datetime.now(UTC)
        for feed in feeds:
            for _ in range(3):
                feed.add(self.rng, now)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, feed: ChurnFeed) -> str:
        return f"http://127.0.0.1:{self.port}/{feed.name}.xml"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.in_flight += 1
        try:
            self._answer(req)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            req.close_connection = True
        finally:
            with self.lock:
                self.in_flight -= 1

    def _answer(self, req: BaseHTTPRequestHandler) -> None:
        feed = self.feeds.get(req.path.split("?")[0])
        if feed is None:
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if feed.delay and self.stopping.wait(feed.delay):
            req.close_connection = True
            return
        inm, ims = req.headers.get("If-None-Match"), req.headers.get("If-Modified-Since")
        with self.lock:
            feed.acknowledge(inm, ims)
            if not self.frozen and self.rng.random() < 0.6:
                feed.churn(self.rng, datetime.now(UTC))
            validators = (
                {"ETag": feed.etag()}
                if feed.validator == "etag"
                else {"Last-Modified": feed.last_modified()}
            )
            if feed.not_modified(inm, ims):
                self.stats["304"] += 1
                body = None
            else:
                self.stats["200"] += 1
                body, shown = feed.render()
                for item in shown:
                    self.served[item.link] = (feed.name, item.n)
        if body is None:
            req.send_response(304)
            for name, value in validators.items():
                req.send_header(name, value)
            req.end_headers()
            return
        req.send_response(200)
        req.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        for name, value in validators.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(body)

    def current_titles(self) -> dict[str, str]:
        """link -> title of every item the feeds list now."""
        with self.lock:
            return {i.link: i.title for f in self.feeds.values() for i in f.visible()}

    def __enter__(self) -> ChurnServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------- SMTP relay


@dataclass(frozen=True, slots=True)
class Mail:
    message_id: str
    list_name: str
    period: str
    rcpt_tos: tuple[str, ...]


class RecordingRelay:
    """aiosmtpd on 127.0.0.1: records every message as soon as it is complete, and answers
    DATA slowly."""

    def __init__(self, data_delay: float = SMTP_DATA_DELAY) -> None:
        self.port = free_port()
        self.data_delay = data_delay
        self.received: list[Mail] = []
        self.sessions = 0
        self.lock = threading.Lock()
        relay = self

        class Protocol(SMTPProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                with relay.lock:
                    relay.sessions += 1
                super().connection_made(transport)

            def connection_lost(self, error: Exception | None) -> None:
                with relay.lock:
                    relay.sessions -= 1
                super().connection_lost(error)

        class RelayController(Controller):
            def factory(self) -> SMTPProtocol:
                return Protocol(self.handler, **self.SMTP_kwargs)

        self.controller = RelayController(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's naming)
        self, server: SMTPProtocol, session: Session, envelope: Envelope
    ) -> str:
        # The relay takes the message at once but answers late: a client killed during this
        # wait never learns that it was delivered, and must resend it under the same
        # Message-ID.
        data = envelope.original_content or envelope.content or b""
        assert isinstance(data, bytes)
        msg = message_from_bytes(data, policy=policy.default)
        words = str(msg.get("Subject", "")).split()
        list_name, period = (words[1], words[2].rstrip(":")) if len(words) > 2 else ("?", "?")
        with self.lock:
            self.received.append(
                Mail(str(msg["Message-ID"]), list_name, period, tuple(envelope.rcpt_tos))
            )
        await asyncio.sleep(self.data_delay)
        return "250 2.0.0 Message accepted"

    def open_sessions(self) -> int:
        with self.lock:
            return self.sessions

    def __enter__(self) -> RecordingRelay:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()


# --------------------------------------------------------------------------- the campaign


@dataclass(frozen=True, slots=True)
class DigestList:
    name: str
    #: UTC send time today
    at: datetime


@dataclass(slots=True)
class Outcome:
    iterations: int = 0
    kills_in_poll: int = 0
    kills_in_send: int = 0
    kills_idle: int = 0
    #: starts that exited by themselves before the kill (with their exit codes)
    early_exits: list[int] = field(default_factory=list)
    #: processes of a killed service still alive after the kill (then killed too)
    orphans: int = 0
    served: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    phantoms: int = 0
    stale_edits: int = 0
    periods_expected: int = 0
    periods_delivered: int = 0
    max_ids_per_period: int = 0
    messages: int = 0
    resends: int = 0
    integrity: list[str] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)
    stray_temp_files: int = 0
    final_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.duplicates
            and not self.phantoms
            and self.max_ids_per_period == 1
            and self.periods_delivered == self.periods_expected
            and all(r == "ok" for r in self.integrity)
            and not self.bad_files
            and not self.final_errors
        )


def write_config(
    path: Path, workdir: Path, server: ChurnServer, relay: RecordingRelay, lists: list[DigestList]
) -> None:
    lines = [
        "[service]",
        f"state_dir = {json.dumps(str(workdir / 'state'))}",
        f"poll_interval = {POLL_INTERVAL}",
        "jitter = 0",
        "",
        "[tagging]",
        f"rules = {json.dumps(str(RULES))}",
        "",
        "[fetch]",
        "per_host = 8",
        "",
        "[publish]",
        f"output_dir = {json.dumps(str(workdir / 'public'))}",
        f'base_url = "http://127.0.0.1:{server.port}/"',
        'tags = ["armenia", "azerbaijan", "georgia"]',
        "max_age_days = 30",
        "",
        "[server]",
        'host = "127.0.0.1"',
        f"port = {free_port()}",
        "",
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {relay.port}",
        'security = "none"',
        'from_address = "digest@example.org"',
        "timeout = 20",
        "",
    ]
    for lst in lists:
        lines += [
            "[[digests]]",
            f'name = "{lst.name}"',
            f'recipients = ["{lst.name}@example.org"]',
            f'time = "{lst.at:%H:%M}"',
            'timezone = "UTC"',
            # The relay reads the period from the subject, not from the Message-ID it checks.
            'subject = "digest {list} {period}: {count} stories"',
            "",
        ]
    for feed in server.feeds.values():
        lines += ["[[sources]]", f'name = "{feed.name}"', f'url = "{server.url(feed)}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def make_feeds(count: int, rng: random.Random) -> list[ChurnFeed]:
    feeds = []
    for i in range(count):
        feeds.append(
            ChurnFeed(
                name=f"src{i:02d}",
                validator="etag" if i % 4 else "last-modified",
                # A quarter of the sources are slow: a poll is a wide target.
                delay=rng.uniform(1.0, 2.5) if i % 4 == 1 else 0.0,
                rotating=i in (2, 7),
            )
        )
    return feeds


def make_lists(at_start: int, later: int, now: datetime) -> list[DigestList]:
    """Lists due before the start, then two coming due each minute (same UTC day only)."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    lists = [DigestList(f"early{i}", today) for i in range(at_start)]
    for i in range(later):
        at = (now + timedelta(minutes=i // 2 + 1)).replace(second=0, microsecond=0)
        if at.date() == now.date():
            lists.append(DigestList(f"later{i}", at))
    return lists


class ServiceProcess:
    """One ``digest run``; stderr goes to a file so it can never fill a pipe."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self.log = log
        self._err = open(log, "ab")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(config), *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            start_new_session=True,
        )

    def descendants(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = psutil.Process(self.proc.pid).children(recursive=True)
            return children
        except psutil.Error:
            return []

    def kill(self) -> list[int]:
        """SIGKILL the service (its pid only, as ``kill -9`` does); returns the pids of its
        processes that outlived it, which are then killed too."""
        children = self.descendants()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._err.close()
        survivors = []
        gone, alive = psutil.wait_procs(children, timeout=1.0)
        for child in alive:
            survivors.append(child.pid)
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=5)
        return survivors


def wait_for_target(
    mode: str, started: float, rng: random.Random, server: ChurnServer, relay: RecordingRelay
) -> None:
    deadline = started + KILL_MAX
    if mode == "random":
        time.sleep(max(0.0, started + rng.uniform(KILL_MIN, KILL_MAX) - time.monotonic()))
        return

    def busy() -> bool:
        return server.in_flight > 0 if mode == "poll" else relay.open_sessions() > 0

    while time.monotonic() < deadline and not busy():
        time.sleep(0.01)
    extra = rng.uniform(0.0, 0.3 if mode == "poll" else 1.0)
    until = min(deadline, max(started + KILL_MIN, time.monotonic() + extra))
    time.sleep(max(0.0, until - time.monotonic()))


def check_files(public: Path) -> tuple[list[str], int]:
    """Files that do not parse, and how many temp files are left in the folder."""
    bad: list[str] = []
    if not public.exists():
        return bad, 0
    for path in sorted(public.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json":
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                bad.append(f"{path.name}: {exc}")
        else:
            parsed = feedparser.parse(path.read_bytes())
            if parsed.bozo:
                bad.append(f"{path.name}: {parsed.bozo_exception}")
    stray = sum(1 for p in public.rglob(".*.tmp"))
    return bad, stray


def integrity(db: Path) -> str:
    if not db.exists():
        return "ok"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def run_campaign(
    iterations: int,
    workdir: Path,
    *,
    seed: int = 1,
    sources: int = 20,
    lists_at_start: int = 3,
    lists_later: int = 0,
    progress: bool = False,
) -> Outcome:
    """Run the whole campaign under ``workdir``; every process it starts is gone on return."""
    rng = random.Random(seed)
    out = Outcome()
    began = time.monotonic()
    feeds = make_feeds(sources, rng)
    with ChurnServer(feeds, seed) as server, RecordingRelay() as relay:
        lists = make_lists(lists_at_start, lists_later, datetime.now(UTC))
        config = workdir / "digest.toml"
        write_config(config, workdir, server, relay, lists)
        db = workdir / "state" / "digest.sqlite3"
        log = workdir / "service.log"
        for i in range(iterations):
            mode = rng.choices(("poll", "send", "random"), (0.4, 0.3, 0.3))[0]
            svc = ServiceProcess(config, log, "run")
            try:
                started = time.monotonic()
                wait_for_target(mode, started, rng, server, relay)
                in_poll = server.in_flight > 0
                in_send = relay.open_sessions() > 0
                early = svc.proc.poll()
            finally:
                out.orphans += len(svc.kill())
            out.iterations += 1
            if early is not None:
                out.early_exits.append(early)
            out.kills_in_poll += in_poll
            out.kills_in_send += in_send
            out.kills_idle += not (in_poll or in_send)
            out.integrity.append(integrity(db))
            bad, stray = check_files(workdir / "public")
            out.bad_files += [f"after kill {i + 1}: {b}" for b in bad]
            out.stray_temp_files = max(out.stray_temp_files, stray)
            if progress and (i + 1) % 10 == 0:
                print(f"  {i + 1} kills, {len(server.served)} items served", flush=True)

        # The end: nothing changes any more, one clean poll of everything, one clean run.
        with server.lock:
            server.frozen = True
        for args in (("poll", "--all"), ("run", "--once")):
            final = ServiceProcess(config, log, *args)
            try:
                code = final.proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                code = -1
            finally:
                final.kill()
            if code != 0:
                out.final_errors.append(f"`digest {' '.join(args)}` exited with {code}")
        ran_at = datetime.now(UTC)
        _verify(out, db, server, relay, [lst for lst in lists if lst.at <= ran_at])
        bad, stray = check_files(workdir / "public")
        out.bad_files += [f"at the end: {b}" for b in bad]
        out.stray_temp_files = max(out.stray_temp_files, stray)
        out.integrity.append(integrity(db))
    out.seconds = time.monotonic() - began
    return out


def _verify(
    out: Outcome, db: Path, server: ChurnServer, relay: RecordingRelay, due: list[DigestList]
) -> None:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT link, title FROM entries").fetchall()
        digests = conn.execute("SELECT list, period, message_id, status FROM digests").fetchall()
    counts = Counter(link for link, _ in rows)
    served = dict(server.served)
    out.served = len(served)
    out.stored = len(rows)
    out.lost = sorted(set(served) - set(counts))
    out.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    out.phantoms = len(set(counts) - set(served))
    current = server.current_titles()
    stored_titles = dict(rows)
    out.stale_edits = sum(
        1
        for link, title in current.items()
        if link in stored_titles and stored_titles[link] != title
    )

    by_period: dict[tuple[str, str], set[str]] = {}
    for mail in relay.received:
        by_period.setdefault((mail.list_name, mail.period), set()).add(mail.message_id)
    out.messages = len(relay.received)
    out.resends = len(relay.received) - len({m.message_id for m in relay.received})
    out.max_ids_per_period = max((len(ids) for ids in by_period.values()), default=0)
    # The periods that came due: every one the service recorded (a list that never sent
    # before also sends the period before its first send time), and today's of each list
    # whose send time has passed, recorded or not.
    periods = {(r[0], r[1]) for r in digests if r[3] != "skipped"}
    periods |= {(lst.name, lst.at.date().isoformat()) for lst in due}
    sent = {(r[0], r[1]): r[2] for r in digests if r[3] == "sent"}
    out.periods_expected = len(periods)
    for key in periods:
        ids = by_period.get(key, set())
        if key in sent and ids == {sent[key]}:
            out.periods_delivered += 1


def report(out: Outcome) -> None:
    integrity_ok = sum(1 for r in out.integrity if r == "ok")
    print(f"iterations:                     {out.iterations}")
    print(f"kills during a poll:            {out.kills_in_poll}")
    print(f"kills during a send:            {out.kills_in_send}")
    print(f"kills with neither in flight:   {out.kills_idle}")
    if out.early_exits:
        print(f"starts that exited by themselves: {len(out.early_exits)} {out.early_exits}")
    print(f"processes left by a killed service: {out.orphans}")
    print(f"items served:                   {out.served}")
    print(f"entries stored:                 {out.stored}")
    print(
        f"lost entries:                   {len(out.lost)}"
        + (f" {out.lost[:5]}" if out.lost else "")
    )
    print(f"duplicate entries:              {out.duplicates}")
    print(f"entries never served:           {out.phantoms}")
    print(f"edits not applied at the end:   {out.stale_edits}")
    print(f"periods due / delivered:        {out.periods_expected} / {out.periods_delivered}")
    print(f"messages received (resends):    {out.messages} ({out.resends})")
    print(f"distinct Message-IDs per period (max): {out.max_ids_per_period}")
    print(f"integrity_check ok:             {integrity_ok} of {len(out.integrity)} checks")
    print(f"published files that do not parse: {len(out.bad_files)}")
    for line in out.bad_files[:5]:
        print(f"  {line}")
    print(f"temp files left in the output folder (max): {out.stray_temp_files}")
    for line in out.final_errors:
        print(f"final run: {line}")
    print(f"seconds:                        {out.seconds:.1f}")
    print(f"verdict:                        {'PASS' if out.ok else 'FAIL'}")


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="digest-crash-"))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=100, help="kills (100)")
    parser.add_argument("--sources", type=int, default=20, help="feeds (20)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--lists", type=int, default=8, help="digest lists due at start (8)")
    parser.add_argument(
        "--later-lists",
        type=int,
        default=-1,
        help="lists coming due two a minute while the campaign runs (default: fit the run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    # About 2.2 s per kill: lists come due until shortly before the end.
    minutes = int(args.iterations * 2.2 / 60)
    later = args.later_lists if args.later_lists >= 0 else 2 * max(0, minutes - 1)
    print(
        f"crash campaign: {args.iterations} kills, {args.sources} churning feeds, "
        f"{args.lists} + {later} digest lists, seed {args.seed}",
        flush=True,
    )
    with workspace(args.keep) as workdir:
        out = run_campaign(
            args.iterations,
            workdir,
            seed=args.seed,
            sources=args.sources,
            lists_at_start=args.lists,
            lists_later=later,
            progress=True,
        )
        report(out)
        if not out.ok and not args.keep:
            tail = (workdir / "service.log").read_text(errors="replace").splitlines()[-20:]
            print("service log (last lines):\n  " + "\n  ".join(tail))
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(main())
