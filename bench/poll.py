"""Poll benchmark: ``digest poll`` against a sequential fetch-and-parse baseline, in one run.

Serves N synthetic feeds (RSS 2.0, Atom, RSS 1.0; UTF-8, windows-1251, ISO-8859-1; ETag and
Last-Modified) from a loopback server, then runs each phase as its own child process:

  a  baseline: sequential httpx GET + feedparser.parse of every feed
  b  ``python -m digest --config CFG poll`` into a fresh state folder
  c  the same again, every feed unchanged (the server answers 304 to conditional requests)
  d  the same again after every feed gained 5 new items

and prints wall time, CPU time and peak RSS of each child, and the ratios b/a, c/a and d/a.
Absolute times depend on the machine; the ratios are what the targets are about.

    .venv/bin/python bench/poll.py                  # 500 feeds, 20-100 items each
    .venv/bin/python bench/poll.py --feeds 50 --phases a
    .venv/bin/python bench/poll.py --repeat 5       # c and d 5 times each: judge the medians

c and d take seconds, so a busy moment of the machine can move one run by 10% or more;
``--repeat`` runs each of them several times from the state b left and judges the median.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path, where a bench module may be named like a
# package of the project; import everything from the repository root instead.
sys.path[:] = [str(REPO), *(p for p in sys.path if Path(p or ".").resolve() != REPO / "bench")]

from bench import feedgen_synth as synth  # noqa: E402
from bench.loopback import CountingServer  # noqa: E402
from digest.opml import toml_string  # noqa: E402

MIB = 1024 * 1024

TARGETS = {"b/a": 0.55, "d/a": 0.10}
C_SECONDS_PER_500 = 0.5
RSS_MIB = 120.0

PHASES = {
    "a": "baseline: httpx + feedparser, sequential",
    "b": "digest poll, fresh state",
    "c": "digest poll, nothing changed",
    "d": "digest poll, 5 new items per feed",
}


# --------------------------------------------------------------------------- feed server


class FeedServer(CountingServer):
    """Serves the synthetic feeds on 127.0.0.1 with ETag, Last-Modified and 304 answers."""

    def __init__(self, plan: list[synth.SynthFeed]) -> None:
        self.plan = {f.path: f for f in plan}
        self.bodies: dict[str, tuple[bytes, str, str]] = {}
        self.generation = -1
        super().__init__()

    def set_generation(self, generation: int) -> int:
        """Render every feed at ``generation``; return the total size in bytes."""
        # A fixed clock per generation, so Last-Modified moves exactly when the content does;
        # after the newest item, and not in the future however recent the items are.
        start = next(iter(self.plan.values())).start
        moment = start + timedelta(hours=41 + generation)
        modified = formatdate(moment.timestamp(), usegmt=True)
        bodies = {}
        for path, feed in self.plan.items():
            body = synth.render(feed, generation, self.base_url)
            etag = f'"{feed.index:x}-{generation}-{len(body):x}"'
            bodies[path] = (body, etag, modified)
        with self.lock:
            self.bodies, self.generation = bodies, generation
        return sum(len(b) for b, _, _ in bodies.values())

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        with self.lock:
            found = self.bodies.get(req.path.split("?")[0])
        if found is None:
            self._count("404")
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        body, etag, modified = found
        feed = self.plan[req.path.split("?")[0]]
        if _not_modified(
            req.headers.get("If-None-Match"), req.headers.get("If-Modified-Since"), etag, modified
        ):
            self._count("304")
            req.send_response(304)
            req.send_header("ETag", etag)
            req.send_header("Last-Modified", modified)
            req.end_headers()
            return
        self._count("200", len(body))
        req.send_response(200)
        req.send_header("Content-Type", feed.content_type)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("ETag", etag)
        req.send_header("Last-Modified", modified)
        req.end_headers()
        req.wfile.write(body)


def _not_modified(
    if_none_match: str | None, if_modified_since: str | None, etag: str, modified: str
) -> bool:
    """RFC 9110 13.2.2: If-None-Match wins; If-Modified-Since only counts without it."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return etag in tags or "*" in tags
    if if_modified_since:
        try:
            return parsedate_to_datetime(if_modified_since) >= parsedate_to_datetime(modified)
        except (TypeError, ValueError):
            return False
    return False


# --------------------------------------------------------------------------- measurement


@dataclass(slots=True)
class Result:
    phase: str
    returncode: int | None = None
    wall: float = 0.0
    cpu: float = 0.0
    #: ru_maxrss of the child (the largest single process among it and its waited-for children)
    peak_rss: float = 0.0
    #: sampled sum of the RSS of the child and all its descendants (shared pages counted in
    #: every process that maps them)
    tree_rss: float = 0.0
    #: sampled sum of the PSS of the same processes (shared pages split between them)
    tree_pss: float = 0.0
    #: CPU time of the child and all its descendants, sampled (the rusage of ``cpu`` misses
    #: descendants that its children did not wait for, such as a forkserver's workers)
    tree_cpu: float = 0.0
    server: Counter[str] = field(default_factory=Counter)
    error: str = ""
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


# Children are started by a small launcher process, not by this one. On Linux a child's
# ru_maxrss starts at the RSS of the process it was forked from, and this one holds every
# feed body in memory: forked from here, each child would report at least that.
_LAUNCHER = r"""
import json, os, sys, time
for line in sys.stdin:
    job = json.loads(line)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            for fd, name, flags in ((0, os.devnull, os.O_RDONLY),
                                    (1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                    (2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                os.dup2(os.open(name, flags, 0o644), fd)
            os.chdir(job["cwd"])
            os.execve(job["cmd"][0], job["cmd"], job["env"])
        finally:
            os._exit(127)
    print(json.dumps({"pid": pid}), flush=True)
    _, status, ru = os.wait4(pid, 0)
    print(json.dumps({"status": status, "wall": time.perf_counter() - start,
                      "cpu": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss}), flush=True)
"""


class Launcher:
    """Runs commands one at a time and reports each one's own rusage (os.wait4)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, phase: str, cmd: list[str], workdir: Path, timeout: float, server: FeedServer
    ) -> Result:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        result = Result(phase)
        out_path, err_path = workdir / f"{phase}.stdout", workdir / f"{phase}.stderr"
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        )
        job = {
            "cmd": cmd,
            "env": env,
            "cwd": str(REPO),
            "stdout": str(out_path),
            "stderr": str(err_path),
        }
        before = server.snapshot()
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        killer = threading.Timer(timeout, _kill, (pid,))
        killer.start()
        sampler = _TreeSampler(pid)
        sampler.start()
        try:
            done = json.loads(self.proc.stdout.readline())
        except BaseException:  # Ctrl-C included: leave no child behind
            _kill(pid)
            raise
        finally:
            killer.cancel()
            sampler.stop()
        result.returncode = os.waitstatus_to_exitcode(done["status"])
        result.wall = done["wall"]
        result.cpu = done["cpu"]
        result.peak_rss = done["maxrss_kib"] / 1024
        result.tree_rss = max(sampler.peak / MIB, result.peak_rss)
        result.tree_pss = sampler.peak_pss / MIB
        result.tree_cpu = max(sum(sampler.cpu.values()), result.cpu)
        result.server = server.snapshot() - before
        result.output = out_path.read_text(errors="replace")
        if not result.ok:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-15:]
            killed = " (killed after the timeout)" if result.wall >= timeout else ""
            result.error = f"exit {result.returncode}{killed}\n" + "\n".join(tail)
        return result

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class _TreeSampler(threading.Thread):
    """Samples the summed RSS and PSS of a process and its descendants (a worker pool counts
    too). RSS counts the pages that forked processes share once in each of them; PSS splits
    them, so its sum is what the process tree costs the machine."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.peak_pss = 0
        self.cpu: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        tick = 0
        while not self.done.wait(0.05):
            # PSS means reading smaps, which costs real CPU on the measured cores: every
            # fourth sample only (memory moves in plateaus that last far longer).
            with_pss = tick % 4 == 0
            tick += 1
            total = pss = 0
            try:
                for proc in (root, *root.children(recursive=True)):
                    total += proc.memory_info().rss
                    if with_pss:
                        pss += getattr(proc.memory_full_info(), "pss", 0)
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
            self.peak = max(self.peak, total)
            if with_pss:
                self.peak_pss = max(self.peak_pss, pss)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=2)


# --------------------------------------------------------------------------- baseline child


def baseline_main(url_file: str) -> None:
    """Phase a, in its own process: what a plain script would do, one feed after another."""
    import feedparser
    import httpx

    urls = Path(url_file).read_text().split()
    entries = bozo = 0
    with httpx.Client(timeout=30.0) as client:
        for url in urls:
            response = client.get(url)
            response.raise_for_status()
            parsed = feedparser.parse(response.content, response_headers=dict(response.headers))
            entries += len(parsed.entries)
            bozo += bool(parsed.bozo)
    print(json.dumps({"feeds": len(urls), "entries": entries, "bozo": bozo}))


# --------------------------------------------------------------------------- harness


#: the tables the benchmark writes itself; the same tables in --config-extra are merged in
GENERATED_TABLES = ("service", "tagging", "fetch", "publish")


def write_config(path: Path, state_dir: Path, urls: list[str], extra: str) -> None:
    """The benchmark's config: its own [service], [tagging], [fetch] and [publish] keys,
    which ``extra`` (TOML) may override or add to, then the sources and the rest of ``extra``."""
    rules = Path(__file__).resolve().parents[1] / "config" / "rules.toml"
    tables: dict[str, dict[str, object]] = {
        "service": {"state_dir": str(state_dir)},
        "tagging": {"rules": str(rules)},
        # Every synthetic feed lives on the one loopback host; real sources are spread over
        # many hosts, so the polite default of 2 per host would measure the wrong thing here.
        "fetch": {"per_host": 16},
        # next to the state, inside the benchmark's folder (the default is relative to the
        # config file's folder, which would put the feeds outside it)
        "publish": {"output_dir": str(state_dir.parent / "public")},
    }
    for name, values in tomllib.loads(extra).items():
        if name in tables and isinstance(values, dict):
            tables[name].update(values)
    lines: list[str] = []
    for name, values in tables.items():
        lines += [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]
    for i, url in enumerate(urls):
        lines += ["[[sources]]", f'name = "synthetic-{i:05d}"', f"url = {toml_string(url)}", ""]
    path.write_text("\n".join(lines) + "\n" + _without_tables(extra, GENERATED_TABLES))


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ValueError(f"--config-extra: cannot merge the value {value!r}; write it another way")


def _without_tables(text: str, names: tuple[str, ...]) -> str:
    """``text`` without the ``[name]`` tables listed (their keys were merged already)."""
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            table = re.match(r"\s*\[\s*([^\[\]]+?)\s*\]", line)  # not [[array]]
            skipping = table is not None and table.group(1) in names
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=500, help="number of feeds (500)")
    parser.add_argument("--items-min", type=int, default=20, help="fewest items per feed (20)")
    parser.add_argument("--items-max", type=int, default=100, help="most items per feed (100)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the feeds (1)")
    parser.add_argument("--phases", default="abcd", help="phases to run, e.g. 'a' or 'bcd'")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before a phase is killed (900)"
    )
    parser.add_argument(
        "--poll-arg", action="append", default=[], help="extra argument after 'poll' (repeatable)"
    )
    parser.add_argument(
        "--config-extra",
        type=Path,
        help="TOML tables added to the generated config; its [service], [tagging], [fetch] "
        "and [publish] keys override the benchmark's own",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run c and d this many times each, from the state b left; the median is judged (1)",
    )
    parser.add_argument(
        "--recent",
        action="store_true",
        help=f"date every item within the last {synth.RECENT_AGE_DAYS} days (default: from "
        f"{synth.AGE_DAYS} days ago), so that story grouping's window holds all of them, as "
        "with busy outlets",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--baseline-child", metavar="URL_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child:
        baseline_main(args.baseline_child)
        return 0
    if not 1 <= args.items_min <= args.items_max or args.feeds < 1:
        parser.error("need --feeds >= 1 and 1 <= --items-min <= --items-max")
    if args.repeat < 1:
        parser.error("need --repeat >= 1")
    phases = [p for p in "abcd" if p in args.phases]

    workdir = Path(tempfile.mkdtemp(prefix="digest-bench-poll-"))
    try:
        return _run(args, phases, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, phases: list[str], workdir: Path) -> int:
    start = synth.start_time(datetime.now(UTC), recent=args.recent)
    plan = synth.feed_plan(args.feeds, args.items_min, args.items_max, args.seed, start)
    results: dict[str, Result] = {}
    after_b = workdir / "state-after-b"
    # An installed package comes byte-compiled; an editable checkout only once Python has
    # written its __pycache__, which PYTHONDONTWRITEBYTECODE prevents. Compile it here so
    # that every phase starts as an installed program would, not by compiling the package.
    compileall.compile_dir(REPO / "digest", quiet=1)
    with Launcher() as launcher, FeedServer(plan) as server:
        size = server.set_generation(0)
        urls = [server.base_url + f.path for f in plan]
        (workdir / "urls.txt").write_text("\n".join(urls) + "\n")
        extra = args.config_extra.read_text() if args.config_extra else ""
        config = workdir / "config.toml"
        write_config(config, workdir / "state", urls, extra)
        kinds = Counter(f"{f.kind}/{f.encoding}" for f in plan)
        print(
            f"poll benchmark: {len(plan)} feeds, {sum(f.items for f in plan)} items, "
            f"{size / MIB:.1f} MiB of XML, served from {server.base_url}"
        )
        print("  " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        recent = " (--recent)" if args.recent else ""
        print(f"  items dated from {start:%Y-%m-%d %H:%M} UTC{recent}")
        print(f"  {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, workdir {workdir}")
        digest_cmd = [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(config),
            "poll",
            "--all",
            *args.poll_arg,
        ]
        runs: dict[str, list[Result]] = {}
        for phase in phases:
            if phase == "a":
                cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--baseline-child",
                    str(workdir / "urls.txt"),
                ]
            else:
                cmd = digest_cmd
                if phase == "d" and server.generation != 1:
                    server.set_generation(1)
            repeat = args.repeat if phase in "cd" else 1
            for n in range(repeat):
                if phase in "cd" and after_b.exists():
                    shutil.rmtree(workdir / "state")
                    shutil.copytree(after_b, workdir / "state")
                    # Written back to disk now, so that the run's own fsync does not pay for
                    # the copy: after b, the state is on disk too.
                    os.sync()
                label = f" (run {n + 1} of {repeat})" if repeat > 1 else ""
                print(f"running {phase}: {PHASES[phase]}{label} ...", flush=True)
                result = launcher.run(phase, cmd, workdir, args.timeout, server)
                runs.setdefault(phase, []).append(result)
                if not result.ok:
                    print(f"  {phase} failed: " + result.error.replace("\n", "\n    "))
                    break
            results[phase] = _median(runs[phase])
            if phase == "b" and args.repeat > 1 and results["b"].ok:
                shutil.copytree(workdir / "state", after_b)
    _report(results, len(plan))
    for phase, done in runs.items():
        if len(done) > 1:
            walls = ", ".join(f"{r.wall:.2f}" for r in done)
            print(f"{phase}: {len(done)} runs, wall s {walls}; the median run is reported above")
    return 0 if all(r.ok for r in results.values()) else 1


def _median(done: list[Result]) -> Result:
    """The run of median wall time (a failed run, if any: it is what must be seen)."""
    failed = [r for r in done if not r.ok]
    if failed:
        return failed[0]
    return sorted(done, key=lambda r: r.wall)[(len(done) - 1) // 2]


def _report(results: dict[str, Result], feeds: int) -> None:
    print()
    print(
        f"{'phase':<42} {'wall s':>8} {'cpu s':>8} {'tree cpu':>8} {'peak MiB':>9} "
        f"{'tree MiB':>9} {'PSS MiB':>8} "
        f"{'requests':>8} {'200':>5} {'304':>5} {'MiB sent':>8}"
    )
    for phase, r in results.items():
        status = "" if r.ok else f"  FAILED (exit {r.returncode})"
        print(
            f"{phase + ' ' + PHASES[phase]:<42} {r.wall:8.2f} {r.cpu:8.2f} {r.tree_cpu:8.2f} "
            f"{r.peak_rss:9.1f} {r.tree_rss:9.1f} {r.tree_pss:8.1f} {r.server['requests']:8d} "
            f"{r.server['200']:5d} {r.server['304']:5d} {r.server['bytes'] / MIB:8.1f}{status}"
        )
    a = results.get("a")
    if a and a.ok:
        line = a.output.strip().splitlines()[-1:] or [""]
        print(f"\nbaseline result: {line[0]}")
    print()
    for phase in "bcd":
        got = results.get(phase)
        if got is None:
            continue
        r = got
        if not (r.ok and a and a.ok):
            print(f"{phase}/a: n/a ({'phase failed' if not r.ok else 'no baseline'})")
            continue
        target = TARGETS.get(f"{phase}/a")
        verdict = (
            f" (target <= {target:.2f}: {_verdict(r.wall / a.wall <= target)})" if target else ""
        )
        print(
            f"{phase}/a: wall {r.wall / a.wall:.3f}, cpu of the whole process tree "
            f"{r.tree_cpu / a.tree_cpu:.3f}{verdict}"
        )
    c = results.get("c")
    if c and c.ok:
        limit = C_SECONDS_PER_500 * feeds / 500
        print(
            f"c wall: {c.wall:.3f} s (target < {limit:.2f} s for {feeds} feeds: "
            f"{_verdict(c.wall < limit)})"
        )
        if c.server["200"]:
            print(f"  note: {c.server['200']} feeds were sent in full in c; expected only 304s")
        if c.server["requests"] < feeds:
            print(f"  note: c made {c.server['requests']} requests for {feeds} feeds")
    for phase in "bcd":
        got = results.get(phase)
        if got and got.ok:
            r = got
            print(
                f"{phase} peak RSS of the poll process: {r.peak_rss:.1f} MiB (target <= "
                f"{RSS_MIB:.0f}: {_verdict(r.peak_rss <= RSS_MIB)}); with its parser processes "
                f"{r.tree_rss:.1f} MiB RSS summed ({_verdict(r.tree_rss <= RSS_MIB)}), "
                f"{r.tree_pss:.1f} MiB PSS summed ({_verdict(r.tree_pss <= RSS_MIB)})"
            )


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
