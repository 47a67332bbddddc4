"""The main config: every mistake is refused with a message naming the file, the key and the
line, and the shipped configs load."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from digest.config import DEFAULT_PATH, ENV_VAR, load_config, resolve_path
from digest.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules.toml"
MARK = "# <-"

HEAD = f'[tagging]\nrules = "{RULES}"\n\n'
SOURCE = '[[sources]]\nname = "A"\nurl = "https://a.example/feed"\n\n'
DIGEST = '[[digests]]\nname = "daily"\nrecipients = ["a@example.org"]\n'
SMTP = '[smtp]\nhost = "smtp.example.org"\nfrom_address = "digest@example.org"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str, key: str | None, message: str) -> ConfigError:
    """Load ``text``; it must fail on the line marked ``# <-``, naming file, key and line."""
    path = write(tmp_path, text)
    marked = [n for n, line in enumerate(text.splitlines(), start=1) if MARK in line]
    assert len(marked) == 1, "mark exactly one line"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    assert (exc.path, exc.line, exc.key) == (str(path), marked[0], key)
    where = f"{path}:{marked[0]}: " + (f"{key}: " if key else "")
    assert str(exc).startswith(where), str(exc)
    assert message in str(exc)
    assert "\n" not in str(exc)
    return exc


# -- unknown keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"bogus = 1  {MARK}\n" + HEAD + SOURCE, "bogus"),
        (f'[service]\nstate_dir = "s"\nbogus = 1  {MARK}\n' + HEAD, "service.bogus"),
        (f'[tagging]\nrules = "{RULES}"\nbogus = 1  {MARK}\n', "tagging.bogus"),
        (HEAD + f"[fetch]\nbogus = 1  {MARK}\n", "fetch.bogus"),
        (HEAD + f"[stories]\nbogus = 1  {MARK}\n", "stories.bogus"),
        (HEAD + f"[publish]\nbogus = 1  {MARK}\n", "publish.bogus"),
        (HEAD + f"[server]\nbogus = 1  {MARK}\n", "server.bogus"),
        (HEAD + f'[templates]\ndir = "t"\nbogus = 1  {MARK}\n', "templates.bogus"),
        (HEAD + SMTP + f"bogus = 1  {MARK}\n", "smtp.bogus"),
        (HEAD + DIGEST + f"bogus = 1  {MARK}\n", "digests[1].bogus"),
        (
            HEAD
            + SOURCE
            + SOURCE.replace('"A"', '"B"').replace("a.ex", "b.ex")
            + f"bogus = 1  {MARK}\n",
            "sources[2].bogus",
        ),
        (
            HEAD + f'[[sources]]\nname = "A"\nurl = "https://a.example/"\n"bo gus" = 1  {MARK}\n',
            "sources[1].bo gus",
        ),
    ],
    ids=[
        "top",
        "service",
        "tagging",
        "fetch",
        "stories",
        "publish",
        "server",
        "templates",
        "smtp",
        "digests",
        "sources-2",
        "quoted",
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, key: str) -> None:
    exc = refused(tmp_path, text, key, "unknown key (known keys here: ")
    assert "bogus" not in str(exc).split("known keys here:")[1]


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    exc = refused(tmp_path, HEAD + f"[server]\nprot = 80  {MARK}\n", "server.prot", "unknown")
    assert str(exc).endswith("(known keys here: host, port)")


# -- types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (f"service = 5  {MARK}\n" + HEAD, "service", "must be a table, not an integer"),
        (
            f'[service]\npoll_interval = "1800"  {MARK}\n' + HEAD,
            "service.poll_interval",
            "must be an integer, not a string",
        ),
        (
            f"[service]\nstate_dir = 5  {MARK}\n" + HEAD,
            "service.state_dir",
            "must be a string, not an integer",
        ),
        (
            f"[service]\njitter = true  {MARK}\n" + HEAD,
            "service.jitter",
            "must be an integer, not true or false",
        ),
        (f'sources = "x"  {MARK}\n' + HEAD, "sources", "must be an array, not a string"),
        (f"sources = [1]  {MARK}\n" + HEAD, "sources[1]", "must be a table ([[sources]])"),
        (
            HEAD + f'[[sources]]\nname = 5  {MARK}\nurl = "https://a.example/"\n',
            "sources[1].name",
            "must be a string, not an integer",
        ),
        (
            HEAD + SOURCE.rstrip() + f'\ntags = "armenia"  {MARK}\n',
            "sources[1].tags",
            "must be an array, not a string",
        ),
        (
            HEAD + SOURCE.rstrip() + f"\ntags = [1]  {MARK}\n",
            "sources[1].tags[1]",
            "items must be strings, not an integer",
        ),
        (HEAD + f"[publish]\ntitle = 5  {MARK}\n", "publish.title", "must be a string"),
        (HEAD + f'[server]\nport = "80"  {MARK}\n', "server.port", "must be an integer"),
        (HEAD + f"[fetch]\nconcurrency = 1.5  {MARK}\n", "fetch.concurrency", "must be an integer"),
        (
            HEAD + f'[[digests]]\nname = "d"\nrecipients = "a@example.org"  {MARK}\n',
            "digests[1].recipients",
            "must be an array, not a string",
        ),
    ],
    ids=[
        "table-as-value",
        "int-as-string",
        "path-as-int",
        "int-as-bool",
        "sources-string",
        "sources-of-ints",
        "name",
        "tags-string",
        "tags-items",
        "publish-title",
        "server-port",
        "fetch-float",
        "recipients-string",
    ],
)
def test_wrong_types(tmp_path: Path, text: str, key: str, message: str) -> None:
    refused(tmp_path, text, key, message)


# -- sources ----------------------------------------------------------------------------


def test_duplicate_source_names(tmp_path: Path) -> None:
    text = HEAD + SOURCE + f'[[sources]]\nname = "A"  {MARK}\nurl = "https://b.example/"\n'
    refused(tmp_path, text, "sources[2].name", "duplicate name 'A' (also used by entry 1)")


def test_duplicate_source_urls(tmp_path: Path) -> None:
    text = (
        HEAD + SOURCE + '[[sources]]\nname = "B"\ntags = []\n'
        f'url = "https://a.example/feed"  {MARK}\n'
    )
    refused(
        tmp_path,
        text,
        "sources[2].url",
        "duplicate url 'https://a.example/feed' (also used by entry 1)",
    )


def test_duplicate_source_paths(tmp_path: Path) -> None:
    text = (
        HEAD + '[[sources]]\nname = "A"\npath = "feeds/a.xml"\n\n'
        f'[[sources]]\nname = "B"\npath = "feeds/../feeds/a.xml"  {MARK}\n'
    )
    refused(
        tmp_path,
        text,
        "sources[2].path",
        f"duplicate path '{tmp_path / 'feeds' / 'a.xml'}' (also used by entry 1)",
    )


def test_same_url_differently_written_is_two_sources(tmp_path: Path) -> None:
    text = HEAD + SOURCE + '[[sources]]\nname = "B"\nurl = "https://a.example/feed?all=1"\n'
    assert len(load_config(write(tmp_path, text)).sources) == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://a.example/feed", "must be an http:// or https:// URL, not 'ftp://a.example/feed'"),
        ("a.example/feed", "must be an http:// or https:// URL"),
        ("https:///feed", "has no host name: 'https:///feed'"),
        ("https://a.example/my feed", "contains whitespace: 'https://a.example/my feed'"),
        (" https://a.example/feed", "contains whitespace"),
        ("https://a.example:99999/feed", "not a valid URL (Port out of range"),
    ],
    ids=["ftp", "no-scheme", "no-host", "space", "leading-space", "bad-port"],
)
def test_bad_urls(tmp_path: Path, url: str, message: str) -> None:
    text = HEAD + f'[[sources]]\nname = "A"\nurl = "{url}"  {MARK}\n'
    refused(tmp_path, text, "sources[1].url", message)


@pytest.mark.parametrize(
    "body",
    ['url = "https://a.example/feed"\npath = "a.xml"\n', "tags = []\n"],
    ids=["both", "neither"],
)
def test_exactly_one_of_url_or_path(tmp_path: Path, body: str) -> None:
    text = HEAD + f'[[sources]]  {MARK}\nname = "A"\n' + body
    refused(
        tmp_path,
        text,
        "sources[1]",
        "source 'A' needs exactly one of 'url' (http/https) or 'path' (a local feed file)",
    )


def test_source_name_is_required(tmp_path: Path) -> None:
    text = HEAD + f'[[sources]]  {MARK}\nurl = "https://a.example/"\n'
    refused(tmp_path, text, "sources[1].name", "required key is missing")


@pytest.mark.parametrize("name", [" ", "two\\nlines"], ids=["blank", "newline"])
def test_bad_source_names(tmp_path: Path, name: str) -> None:
    text = HEAD + f'[[sources]]\nname = "{name}"  {MARK}\nurl = "https://a.example/"\n'
    refused(tmp_path, text, "sources[1].name", "must")


@pytest.mark.parametrize("tag", ["Armenia", "south_caucasus", "", "-x", "peace talks"])
def test_bad_tag_names(tmp_path: Path, tag: str) -> None:
    text = HEAD + SOURCE.rstrip() + f'\ntags = ["armenia", "{tag}"]  {MARK}\n'
    refused(
        tmp_path,
        text,
        "sources[1].tags",
        f"{tag!r} is not a tag name (lower-case letters, digits and '-')",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be at least 10, not 0"),
        ("9", "must be at least 10, not 9"),
        ("-60", "must be at least 10, not -60"),
        ('"1h"', "must be an integer, not a string"),
        ("60.0", "must be an integer, not a decimal number"),
    ],
)
def test_bad_source_interval(tmp_path: Path, value: str, message: str) -> None:
    text = HEAD + SOURCE.rstrip() + f"\ninterval = {value}  {MARK}\n"
    refused(tmp_path, text, "sources[1].interval", message)


def test_bad_service_interval(tmp_path: Path) -> None:
    text = f"[service]\npoll_interval = 5  {MARK}\n" + HEAD
    refused(tmp_path, text, "service.poll_interval", "must be at least 10, not 5")


def test_source_interval_defaults_to_the_service_interval(tmp_path: Path) -> None:
    text = (
        "[service]\npoll_interval = 600\n"
        + HEAD
        + SOURCE
        + SOURCE.replace('"A"', '"B"').replace("a.ex", "b.ex").rstrip()
        + "\ninterval = 7200\n"
    )
    cfg = load_config(write(tmp_path, text))
    assert [s.interval for s in cfg.sources] == [600, 7200]


# -- TOML syntax and files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEAD + SOURCE + f"[publish]\ntitle = \n{MARK}\n", "invalid TOML: Invalid value"),
        (
            HEAD + f'[[sources]]\nname = "A"\nname = "B"  {MARK}\n',
            "invalid TOML: Cannot overwrite a value",
        ),
        (HEAD + f"[server\n{MARK}\n", "invalid TOML"),
        (HEAD + f'[publish]\ntitle = "unterminated  {MARK}\n', "invalid TOML"),
    ],
    ids=["missing-value", "duplicate-key", "bad-header", "unterminated-string"],
)
def test_invalid_toml_reports_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # tomllib reports where it noticed the problem: the marked line or the one before it.
    marked = next(n for n, line in enumerate(text.splitlines(), 1) if MARK in line)
    assert info.value.line in (marked - 1, marked)
    assert str(info.value).startswith(f"{path}:{info.value.line}: {message}")


def test_invalid_toml_at_the_end_of_the_file_reports_the_line(tmp_path: Path) -> None:
    text = HEAD + "[publish]\ntitle = "
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.line == len(text.splitlines())


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: file not found; pass --config PATH or set DIGEST_CONFIG"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_bytes(HEAD.encode() + b'[publish]\ntitle = "Caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"digest\.toml: not UTF-8 text"):
        load_config(path)


@pytest.mark.parametrize(
    ("rules", "problem"),
    [("nope.toml", "does not exist"), (".", "is not a file")],
    ids=["missing", "folder"],
)
def test_bad_rules_path(tmp_path: Path, rules: str, problem: str) -> None:
    text = f'[tagging]\nrules = "{rules}"  {MARK}\n'
    exc = refused(tmp_path, text, "tagging.rules", problem)
    # Relative to the config's folder, and the resolved path is shown.
    assert f"the rules file {(tmp_path / rules).resolve()} {problem}" in str(exc)


def test_default_rules_path_is_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    cfg = load_config(write(tmp_path, SOURCE))
    assert cfg.tagging.rules == tmp_path / "rules.toml"


# -- digests and smtp -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('time = "25:00"', "digests[1].time", "'25:00' is not a time as HH:MM"),
        ('time = "7am"', "digests[1].time", "'7am' is not a time as HH:MM"),
        ("time = 7", "digests[1].time", "must be a string, not an integer"),
        (
            'timezone = "Mars/Olympus"',
            "digests[1].timezone",
            "'Mars/Olympus' is not an IANA time zone name",
        ),
        ('schedule = "hourly"', "digests[1].schedule", "hourly"),
        (
            'from_address = "digest at example.org"',
            "digests[1].from_address",
            "is not an email address",
        ),
    ],
    ids=["hour-25", "am", "int-time", "timezone", "schedule", "from-address"],
)
def test_bad_digest_entries(tmp_path: Path, line: str, key: str, message: str) -> None:
    text = HEAD + DIGEST + f"{line}  {MARK}\n"
    refused(tmp_path, text, key, message)


def test_bad_recipient_address(tmp_path: Path) -> None:
    text = (
        HEAD
        + f'[[digests]]\nname = "d"\nrecipients = ["a@example.org", "not an address"]  {MARK}\n'
    )
    refused(tmp_path, text, "digests[1].recipients[2]", "'not an address' is not an email address")


def test_digest_without_recipients(tmp_path: Path) -> None:
    refused(
        tmp_path,
        HEAD + f'[[digests]]  {MARK}\nname = "d"\n',
        "digests[1].recipients",
        "required key is missing",
    )
    refused(
        tmp_path,
        HEAD + f'[[digests]]\nname = "d"\nrecipients = []  {MARK}\n',
        "digests[1].recipients",
        "at least one recipient is required",
    )


def test_duplicate_digest_names(tmp_path: Path) -> None:
    text = (
        HEAD + DIGEST + f'\n[[digests]]\nname = "daily"  {MARK}\nrecipients = ["b@example.org"]\n'
    )
    refused(tmp_path, text, "digests[2].name", "duplicate name 'daily'")


def test_smtp_without_from_address(tmp_path: Path) -> None:
    text = HEAD + f'[smtp]  {MARK}\nhost = "smtp.example.org"\n'
    refused(tmp_path, text, "smtp.from_address", "required key is missing")


def test_smtp_with_a_bad_from_address(tmp_path: Path) -> None:
    text = HEAD + f'[smtp]\nhost = "smtp.example.org"\nfrom_address = "nobody"  {MARK}\n'
    refused(tmp_path, text, "smtp.from_address", "'nobody' is not an email address")


# -- what loads -------------------------------------------------------------------------


def test_a_full_config_loads_with_paths_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "rules.toml").write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    text = (
        '[service]\nstate_dir = "../var"\npoll_interval = 900\n\n'
        '[publish]\noutput_dir = "public"\n\n'
        '[templates]\ndir = "tpl"\n\n'
        + SMTP
        + "\n"
        + DIGEST
        + 'time = "06:30"\ntimezone = "Asia/Baku"\n\n'
        '[[sources]]\nname = "Local"\npath = "feeds/a.xml"\ntags = ["armenia"]\n\n' + SOURCE
    )
    path = folder / "digest.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path.parent)  # the working directory plays no part
    cfg = load_config(path)
    assert cfg.path == path
    assert cfg.tagging.rules == folder / "rules.toml"
    assert cfg.service.state_dir == tmp_path / "var"
    assert cfg.db_path == tmp_path / "var" / "digest.sqlite3"
    assert cfg.outbox_dir == tmp_path / "var" / "outbox"
    assert cfg.service.poll_interval == 900
    assert cfg.publish.output_dir == folder / "public"
    assert cfg.templates_dir == folder / "tpl"
    assert cfg.smtp is not None and cfg.smtp.from_address == "digest@example.org"
    (daily,) = cfg.digests
    assert (daily.time, daily.timezone) == (dt.time(6, 30), "Asia/Baku")
    local, remote = cfg.sources
    assert (local.name, local.path, local.url, local.tags, local.interval) == (
        "Local",
        str(folder / "feeds" / "a.xml"),
        None,
        ("armenia",),
        900,
    )
    assert (remote.url, remote.path) == ("https://a.example/feed", None)


def test_a_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, HEAD))
    assert cfg.sources == () and cfg.digests == () and cfg.smtp is None
    assert cfg.service.state_dir == tmp_path.parent / "state"
    assert cfg.service.poll_interval == 1800
    assert cfg.templates_dir is None


@pytest.mark.parametrize("name", ["digest.toml", "demo.toml"])
def test_the_shipped_configs_load(name: str) -> None:
    cfg = load_config(ROOT / "config" / name)
    assert cfg.tagging.rules == RULES
    assert len(cfg.sources) >= 5
    assert len({s.name for s in cfg.sources}) == len(cfg.sources)
    assert [d.name for d in cfg.digests] == ["daily"]
    if name == "demo.toml":
        assert all(s.path and Path(s.path).is_file() for s in cfg.sources)
    else:
        assert all(s.url and s.url.startswith("https://") for s in cfg.sources)


# -- which file -------------------------------------------------------------------------


def test_resolve_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_path(None) == DEFAULT_PATH == Path("config/digest.toml")
    monkeypatch.setenv(ENV_VAR, "/etc/digest.toml")
    assert resolve_path(None) == Path("/etc/digest.toml")
    assert resolve_path("mine.toml") == Path("mine.toml")
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve_path(None) == DEFAULT_PATH
