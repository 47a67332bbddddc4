"""The ``digest`` command: help, config discovery, exit codes, stdout versus stderr, and each
command run end to end against real parts (loopback HTTP and SMTP servers, SQLite under
tmp_path, the demo feeds)."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from digest.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_IN_USE, cli
from digest.config import load_config
from digest.service import StateLock
from tests.servers import FeedServer
from tests.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"
RSS = (ROOT / "tests" / "data" / "rss20.xml").read_bytes()
PEACE = "Pashinyan met Aliyev in Abu Dhabi for peace talks"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No config from the caller's environment; logging restored after ``cli`` set it up."""
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def digest(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """Run the command in-process; stdout and stderr are kept apart."""
    runner = CliRunner(env=env)
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False, prog_name="digest")


def run_module(
    *args: str | Path, stderr: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m digest`` in a child process (for what depends on real file descriptors)."""
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "digest", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=60,
    )


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the demo config, its rules and feeds, with all state under tmp_path."""
    shutil.copy(CONFIG_DIR / "demo.toml", tmp_path / "demo.toml")
    shutil.copy(CONFIG_DIR / "rules.toml", tmp_path / "rules.toml")
    shutil.copytree(CONFIG_DIR / "demo-feeds", tmp_path / "demo-feeds")
    path = tmp_path / "demo.toml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^state_dir = "[^"]*"', 'state_dir = "state"', text)
    text = re.sub(r'(?m)^output_dir = "[^"]*"', 'output_dir = "state/public"', text)
    path.write_text(text, encoding="utf-8")
    assert load_config(path).service.state_dir == tmp_path / "state"
    return path


@pytest.fixture
def two_sources(write_config: Callable[..., Path], feed_server: FeedServer) -> Callable[[], Path]:
    """A config with one working and one failing source on the loopback feed server."""

    def make() -> Path:
        feed_server.add("/good.xml", RSS)
        feed_server.status("/bad.xml", 500, "broken")
        return write_config(
            f'[[sources]]\nname = "Good"\nurl = "{feed_server.url("/good.xml")}"\n'
            f'tags = ["armenia"]\n\n'
            f'[[sources]]\nname = "Bad"\nurl = "{feed_server.url("/bad.xml")}"\n'
        )

    return make


# -- help -----------------------------------------------------------------------------


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _command_paths(command, (*prefix, name))


COMMANDS = [(), *_command_paths(cli)]


def test_the_walk_finds_every_command() -> None:
    found = {" ".join(p) for p in COMMANDS}
    expected = {
        "check",
        "poll",
        "status",
        "publish",
        "retag",
        "explain",
        "eval",
        "eval-stories",
        "sources",
        "sources import",
        "sources export",
        "preview",
        "send",
        "serve",
        "run",
    }
    assert expected <= found


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "digest")
def test_help(path: tuple[str, ...], tmp_path: Path) -> None:
    # A missing config must not matter for --help.
    result = digest("--config", tmp_path / "missing.toml", *path, "--help")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Usage: {' '.join(('digest', *path))} ")
    assert result.stderr == ""


# -- which config -----------------------------------------------------------------------


def test_config_option(demo: Path) -> None:
    result = digest("--config", demo, "check")
    assert result.exit_code == 0, result.stderr
    assert f"config: {demo} is valid" in result.stdout


def test_config_from_environment(demo: Path) -> None:
    result = digest("check", env={"DIGEST_CONFIG": str(demo)})
    assert result.exit_code == 0, result.stderr
    assert f"config: {demo} is valid" in result.stdout


def test_config_option_wins_over_environment(demo: Path, tmp_path: Path) -> None:
    result = digest("-c", demo, "check", env={"DIGEST_CONFIG": str(tmp_path / "other.toml")})
    assert result.exit_code == 0, result.stderr
    assert f"config: {demo} is valid" in result.stdout


def test_default_config_is_relative_to_the_working_directory(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    write_config("", name="config/digest.toml")
    monkeypatch.chdir(tmp_path)
    result = digest("check")
    assert result.exit_code == 0, result.stderr
    assert "config: config/digest.toml is valid" in result.stdout

    monkeypatch.chdir(tmp_path / "config")
    result = digest("check")
    assert result.exit_code == EXIT_CONFIG
    assert "config/digest.toml: file not found" in result.stderr


# -- exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["poll", "--no-such-option"],
        ["explain"],
        ["eval"],
        ["sources", "import", "/no/such/file.opml"],
        ["--log-format", "xml", "check"],
    ],
    ids=" ".join,
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    # The config does not exist: a usage error is reported before the config is read.
    result = digest("--config", tmp_path / "missing.toml", *args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr
    assert result.stdout == ""


def test_invalid_config_exits_78_with_one_line_naming_file_key_and_line(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(
        '[[sources]]\nname = "A"\nurl = "https://a.example/feed"\n\n'
        '[[sources]]\nname = "B"\nurl = "https://b.example/feed"\nbogus = 1\n'
    )
    line = path.read_text().splitlines().index("bogus = 1") + 1
    result = digest("--config", path, "check")
    assert result.exit_code == EXIT_CONFIG
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"{path}:{line}: sources[2].bogus: unknown key" in result.stderr


@pytest.mark.parametrize(
    "command", [["check"], ["poll"], ["publish"], ["run", "--once", "--no-server"]]
)
def test_invalid_rules_file_exits_78(
    write_config: Callable[..., Path], tmp_path: Path, command: list[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[tags.armenia]\nterms = ['armenia']\nbogus = true\n", encoding="utf-8")
    path = write_config("").read_text().replace(str(CONFIG_DIR / "rules.toml"), str(rules))
    (tmp_path / "digest.toml").write_text(path, encoding="utf-8")
    result = digest("--config", tmp_path / "digest.toml", *command)
    assert result.exit_code == EXIT_CONFIG
    assert f"{rules}:3: tags.armenia.bogus: unknown key" in result.stderr


def test_run_once_while_the_state_folder_is_locked_exits_75(demo: Path) -> None:
    lock = StateLock(demo.parent / "state")
    lock.acquire()
    try:
        result = digest("--config", demo, "run", "--once", "--no-server")
    finally:
        lock.release()
    assert result.exit_code == EXIT_IN_USE
    assert f"(pid {os.getpid()}) is already running" in result.stderr
    assert result.stdout == ""
    # Released, the same command works.
    assert digest("--config", demo, "run", "--once", "--no-server").exit_code == 0


# -- poll and status --------------------------------------------------------------------


def test_poll_prints_the_table_on_stdout_and_the_warnings_on_stderr(
    two_sources: Callable[[], Path],
) -> None:
    path = two_sources()
    result = digest("--config", path, "poll")
    assert result.exit_code == EXIT_FAILURE
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Good\s+5 new, 0 updated, 0 unchanged, 1 rejected", lines[0])
    assert re.fullmatch(r"Bad\s+error: .*500.*", lines[1])
    assert lines[2] == "total: 5 new, 0 updated, 1 failed, 2 sources"
    assert "WARNING" not in result.stdout
    logged = result.stderr.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ ", line) for line in logged)
    assert any("WARNING" in line and "500" in line and "source=Bad" in line for line in logged)


def test_poll_ok_exits_0_and_the_second_poll_skips_sources_not_due(
    write_config: Callable[..., Path], feed_server: FeedServer
) -> None:
    feed_server.add("/good.xml", RSS)
    path = write_config(f'[[sources]]\nname = "Good"\nurl = "{feed_server.url("/good.xml")}"\n')
    assert digest("--config", path, "poll").exit_code == 0
    again = digest("--config", path, "poll")
    assert again.exit_code == 0
    assert re.match(r"Good\s+skipped", again.stdout)
    assert len(feed_server.requests_for("/good.xml")) == 1
    forced = digest("--config", path, "poll", "--all")
    assert re.match(r"Good\s+(not modified|0 new)", forced.stdout)
    assert len(feed_server.requests_for("/good.xml")) == 2


def test_status_shows_health_and_next_poll(two_sources: Callable[[], Path]) -> None:
    path = two_sources()
    before = digest("--config", path, "status")
    assert re.search(r"(?m)^Good\s+new\s+0\s+-\s+-", before.stdout)
    assert "last poll: -;" in before.stdout
    digest("--config", path, "poll")
    result = digest("--config", path, "status")
    assert result.exit_code == 0, result.stderr
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
    header, good, bad, summary = result.stdout.splitlines()
    assert header.split()[:3] == ["SOURCE", "HEALTH", "ENTRIES"]
    assert re.fullmatch(rf"Good\s+ok\s+5\s+{when}\s+{when}\s*", good)
    assert re.fullmatch(rf"Bad\s+failing\s+0\s+-\s+{when}\s+.*500.*", bad)
    assert re.fullmatch(rf"last poll: {when}; 5 entries stored", summary)


def test_status_after_polling_local_file_sources(demo: Path) -> None:
    digest("--config", demo, "poll")
    result = digest("--config", demo, "status")
    assert re.search(r"(?m)^Armenpress \(demo\)\s+ok\s+10\s+\d{4}-", result.stdout)
    # Their state lasts: the next poll finds them not due.
    assert re.search(r"(?m)^Armenpress \(demo\)\s+skipped", digest("--config", demo, "poll").stdout)


def test_progress_only_when_stderr_is_a_terminal(demo: Path) -> None:
    piped = run_module("--config", demo, "poll")
    assert piped.returncode == 0, piped.stderr
    assert "Armenpress (demo)" in piped.stdout
    assert not re.search(r"\[\d+/\d+\]", piped.stderr + piped.stdout)

    (demo.parent / "state").rename(demo.parent / "state-1")
    master, slave = pty.openpty()
    try:
        shown = run_module("--config", demo, "poll", stderr=slave)
    finally:
        os.close(slave)
    terminal = b""
    try:
        while chunk := os.read(master, 65536):
            terminal += chunk
    except OSError:  # EIO: the terminal's other end is closed
        pass
    finally:
        os.close(master)
    assert shown.returncode == 0
    assert "[5/5]" in terminal.decode()
    assert "[1/5]" not in shown.stdout


# -- config and sources -----------------------------------------------------------------


def test_check_summarises_the_config(demo: Path) -> None:
    result = digest("--config", demo, "check")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"state folder: {demo.parent / 'state'}" in out
    assert "sources: 5" in out
    assert f"  - Interfax (demo): file:{demo.parent / 'demo-feeds' / 'interfax.xml'}" in out
    assert re.search(rf"rules: {re.escape(str(demo.parent / 'rules.toml'))} \(\d+ tags", out)
    assert "digest lists: 1 (no [smtp]: messages go to the outbox folder)" in out
    assert "  - daily: 1 recipient(s), daily at 07:00 Asia/Tbilisi\n" in out
    assert result.stderr == ""


def _opml(tmp_path: Path, *feeds: tuple[str, str]) -> Path:
    outlines = "".join(f'<outline type="rss" text="{t}" xmlUrl="{u}"/>' for t, u in feeds)
    path = tmp_path / "subscriptions.opml"
    path.write_text(
        f'<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head>'
        f"<body>{outlines}</body></opml>",
        encoding="utf-8",
    )
    return path


def test_sources_export_is_opml_2_that_import_reads_back(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config(
        '[[sources]]\nname = "OC Media"\nurl = "https://oc-media.org/feed/"\ntags = ["georgia"]\n'
        '\n[[sources]]\nname = "APA & co"\nurl = "https://apa.az/en/rss?a=1&b=2"\n'
    )
    result = digest("--config", path, "sources", "export")
    assert result.exit_code == 0, result.stderr
    root = ET.fromstring(result.stdout_bytes)
    assert root.tag == "opml" and root.get("version") == "2.0"
    outlines = [o.attrib for o in root.iter("outline")]
    assert [(o["text"], o["xmlUrl"]) for o in outlines] == [
        ("OC Media", "https://oc-media.org/feed/"),
        ("APA & co", "https://apa.az/en/rss?a=1&b=2"),
    ]
    assert outlines[0]["category"] == "georgia"

    opml = tmp_path / "export.opml"
    opml.write_bytes(result.stdout_bytes)
    other = tmp_path / "other" / "digest.toml"
    other.parent.mkdir()
    other.write_text(path.read_text().split("[[sources]]")[0], encoding="utf-8")
    printed = digest("--config", other, "sources", "import", opml)
    assert printed.exit_code == 0, printed.stderr
    assert 'name = "APA & co"\nurl = "https://apa.az/en/rss?a=1&b=2"\n' in printed.stdout
    assert '# tags = ["georgia"]' in printed.stdout
    assert "[[sources]]" not in other.read_text()  # printing does not write

    written = digest("--config", other, "sources", "import", "--write", opml)
    assert written.exit_code == 0, written.stderr
    assert f"appended 2 source(s) to {other}" in written.stderr
    assert [(s.name, s.url) for s in load_config(other).sources] == [
        ("OC Media", "https://oc-media.org/feed/"),
        ("APA & co", "https://apa.az/en/rss?a=1&b=2"),
    ]


def test_sources_import_skips_urls_already_configured(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config('[[sources]]\nname = "OC"\nurl = "https://oc-media.org/feed/"\n')
    opml = _opml(
        tmp_path,
        ("OC Media", "https://oc-media.org/feed/"),
        ("JAMnews", "https://jam-news.net/feed/"),
    )
    printed = digest("--config", path, "sources", "import", opml)
    assert "oc-media" not in printed.stdout
    assert 'name = "JAMnews"' in printed.stdout

    result = digest("--config", path, "sources", "import", "--write", opml)
    assert result.exit_code == 0, result.stderr
    assert (
        "skipped 'OC Media': https://oc-media.org/feed/ is already configured as 'OC'"
        in result.stderr
    )
    assert "appended 1 source(s)" in result.stderr
    assert [s.name for s in load_config(path).sources] == ["OC", "JAMnews"]

    before = path.read_bytes()
    again = digest("--config", path, "sources", "import", "--write", opml)
    assert again.exit_code == 0
    assert "nothing to append" in again.stderr
    assert path.read_bytes() == before


def test_sources_import_leaves_the_config_alone_when_the_result_is_invalid(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_config("")
    before = path.read_bytes()
    opml = _opml(tmp_path, ("Bad port", "https://example.org:99999/feed"))
    result = digest("--config", path, "sources", "import", "--write", opml)
    assert result.exit_code == EXIT_CONFIG
    assert "sources[1].url: not a valid URL" in result.stderr
    assert path.read_bytes() == before


# -- tags and evaluation ----------------------------------------------------------------


def test_explain_text_shows_tags_and_the_selection(demo: Path) -> None:
    result = digest("--config", demo, "explain", "--text", PEACE)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert re.search(r"(?m)^PASS\s+armenia\s+score", out)
    assert re.search(r"(?m)^PASS\s+azerbaijan\s+score", out)
    assert "'Pashinyan'" in out and "'Aliyev'" in out
    assert "selection 'south-caucasus-diplomacy': selected" in out
    assert not (demo.parent / "state").exists()  # --text needs no state


def test_explain_a_stored_entry_and_a_missing_one(demo: Path) -> None:
    assert digest("--config", demo, "poll").exit_code == 0
    found = digest("--config", demo, "explain", "1")
    assert found.exit_code == 0, found.stderr
    assert found.stdout.startswith("entry 1: ")
    assert "story" in found.stdout

    missing = digest("--config", demo, "explain", "999999")
    assert missing.exit_code == EXIT_FAILURE
    assert missing.stdout == ""
    assert "no stored entry with id or link '999999'" in missing.stderr


def test_eval_prints_precision_recall_and_f1_per_label(demo: Path, tmp_path: Path) -> None:
    items = [
        (PEACE, {"south_caucasus": True, "diplomacy": True}),
        ("Tbilisi hosts EU foreign ministers", {"south_caucasus": True, "diplomacy": True}),
        (
            "Heavy snow closes the Lars checkpoint road",
            {"south_caucasus": True, "diplomacy": False},
        ),
        ("Chile and Peru sign a fishing accord", {"south_caucasus": False, "diplomacy": True}),
    ]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        "".join(
            json.dumps({"id": f"i{n}", "title": t, "labels": labels}) + "\n"
            for n, (t, labels) in enumerate(items)
        ),
        encoding="utf-8",
    )
    result = digest("--config", demo, "eval", labelled)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("items: 4")
    score = r"\s+P=\d\.\d{3}\s+R=\d\.\d{3}\s+F1=\d\.\d{3}\s+\(tp=\d+ fp=\d+ fn=\d+ tn=\d+\)"
    for label in ("diplomacy", "south_caucasus"):
        assert re.search(rf"(?m)^{label}{score}$", result.stdout), label


def test_eval_stories_prints_pairwise_and_bcubed_scores(demo: Path, tmp_path: Path) -> None:
    rows = [
        ("a1", "s1", "Armenpress", "2026-11-20T08:00:00Z", "Mirzoyan and Bayramov meet in Geneva"),
        ("a2", "s1", "APA", "2026-11-20T09:30:00Z", "Bayramov, Mirzoyan hold talks in Geneva"),
        ("a3", "s2", "Civil.ge", "2026-11-21T10:00:00Z", "Georgia and Turkey sign rail deal"),
    ]
    labelled = tmp_path / "stories.jsonl"
    labelled.write_text(
        "".join(
            json.dumps({"id": i, "story": s, "source": src, "published": p, "title": t}) + "\n"
            for i, s, src, p, t in rows
        ),
        encoding="utf-8",
    )
    result = digest("--config", demo, "eval-stories", labelled)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("items 3, gold stories 2, predicted stories ")
    assert re.search(
        r"(?m)^pairwise\s+precision \d\.\d{3}\s+recall \d\.\d{3}\s+F1 \d\.\d{3}", result.stdout
    )
    assert re.search(
        r"(?m)^B-cubed\s+precision \d\.\d{3}\s+recall \d\.\d{3}\s+F1 \d\.\d{3}", result.stdout
    )


def test_eval_stories_names_the_bad_line(demo: Path, tmp_path: Path) -> None:
    labelled = tmp_path / "stories.jsonl"
    labelled.write_text('{"id": "a", "title": "x"}\n', encoding="utf-8")
    result = digest("--config", demo, "eval-stories", labelled)
    assert result.exit_code == EXIT_CONFIG
    assert f"{labelled}:1: missing or non-string fields: story" in result.stderr


# -- publishing, digests, the one-shot service --------------------------------------------


def test_publish_writes_the_three_feeds(demo: Path) -> None:
    assert digest("--config", demo, "poll").exit_code == 0
    result = digest("--config", demo, "publish")
    assert result.exit_code == 0, result.stderr
    out = demo.parent / "state" / "public"
    match = re.fullmatch(
        rf"(\d+) stories published to {re.escape(str(out))} \(\d+ file\(s\) "
        r"changed\)\n",
        result.stdout,
    )
    assert match and int(match.group(1)) > 0
    rss = ET.parse(out / "feed.xml").getroot()
    assert len(rss.findall("channel/item")) == int(match.group(1))
    assert ET.parse(out / "atom.xml").getroot().tag == "{http://www.w3.org/2005/Atom}feed"
    assert len(json.loads((out / "feed.json").read_text())["items"]) == int(match.group(1))


def test_preview_records_nothing_and_send_writes_to_the_outbox(demo: Path, tmp_path: Path) -> None:
    assert digest("--config", demo, "poll").exit_code == 0
    text = digest("--config", demo, "preview", "--text")
    assert text.exit_code == 0, text.stderr
    pending = int(re.search(r"(?m)^(\d+) stories pending$", text.stdout).group(1))  # type: ignore[union-attr]
    assert pending > 0
    assert "Subject: South Caucasus diplomacy, " in text.stdout
    assert "To: reader@example.org" in text.stdout
    assert "\nSouth Caucasus diplomacy\n" in text.stdout  # the plain-text body follows

    html = tmp_path / "preview.html"
    shown = digest("--config", demo, "preview", "--html", html)
    assert shown.exit_code == 0, shown.stderr
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    assert f"HTML written to {html}" in shown.stderr
    outbox = demo.parent / "state" / "outbox"
    assert not outbox.exists() or not any(outbox.iterdir())

    sent = digest("--config", demo, "send")
    assert sent.exit_code == 0, sent.stderr
    assert re.fullmatch(
        rf"digest daily \S+: sent, {pending} stories \(1 recipient\(s\) via "
        rf"{re.escape(str(outbox))}/daily-\S+\.eml\)\n",
        sent.stdout,
    )
    (eml,) = outbox.iterdir()
    assert b"To: reader@example.org" in eml.read_bytes()

    again = digest("--config", demo, "send")
    assert again.exit_code == 0
    assert re.fullmatch(r"digest daily \S+: not-due \(next at .*\)\n", again.stdout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _smtp_config(demo: Path, port: int) -> None:
    text = demo.read_text(encoding="utf-8")
    demo.write_text(
        text + f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        'from_address = "digest@example.org"\ntimeout = 5\n',
        encoding="utf-8",
    )


def test_send_over_smtp(demo: Path, smtp_server: SmtpServer) -> None:
    _smtp_config(demo, smtp_server.port)
    assert digest("--config", demo, "poll").exit_code == 0
    result = digest("--config", demo, "send")
    assert result.exit_code == 0, result.stderr
    assert "sent" in result.stdout and "via SMTP" in result.stdout
    (received,) = smtp_server.received
    assert received.rcpt_tos == ("reader@example.org",)


def test_a_failed_send_exits_1(demo: Path) -> None:
    _smtp_config(demo, _free_port())  # nothing listens there
    assert digest("--config", demo, "poll").exit_code == 0
    result = digest("--config", demo, "send")
    assert result.exit_code == EXIT_FAILURE
    assert re.match(r"digest daily \S+: failed", result.stdout)
    assert "digest not delivered" in result.stderr


def test_run_once_on_the_demo_says_where_the_feed_and_the_digest_landed(demo: Path) -> None:
    result = digest("--config", demo, "run", "--once", "--no-server")
    assert result.exit_code == 0, result.stderr
    state = demo.parent / "state"
    out = result.stdout
    assert "total: 51 new, 0 updated, 0 failed, 5 sources" in out
    assert re.search(
        rf"(?m)^feed: \d+ stories in {re.escape(str(state / 'public' / 'feed.xml'))}", out
    )
    assert re.search(r"(?m)^digest daily \S+: sent, \d+ stories", out)
    assert f"digest files are in {state / 'outbox'}/" in out
    assert (state / "public" / "feed.xml").is_file()
    assert len(list((state / "outbox").glob("*.eml"))) == 1
    assert f"digest --config {demo} serve" in out


def test_writing_commands_refuse_a_locked_state_folder(tmp_path: Path) -> None:
    """A one-shot poll must not race a running service on the same state (exit 75)."""
    from click.testing import CliRunner

    from digest.cli import cli
    from digest.config import load_config
    from digest.service import StateLock

    cfg_path = tmp_path / "c.toml"
    rules = Path(__file__).resolve().parents[1] / "config" / "rules.toml"
    cfg_path.write_text(
        f'[service]\nstate_dir = "{tmp_path / "st"}"\n[tagging]\nrules = "{rules}"\n',
        encoding="utf-8",
    )
    lock = StateLock(load_config(cfg_path).service.state_dir)
    lock.acquire()
    try:
        result = CliRunner().invoke(cli, ["--config", str(cfg_path), "poll"])
        assert result.exit_code == 75
        assert "already running" in result.stderr
        readonly = CliRunner().invoke(cli, ["--config", str(cfg_path), "explain", "--text", "x"])
        assert readonly.exit_code == 0
    finally:
        lock.release()
