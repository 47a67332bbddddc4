"""The README documents every config key and every command (contract tests, as datasette's)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from digest import tomlutil
from digest.cli import cli
from digest.config import load_config
from digest.render import context_fields

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

FULL_CONFIG = """
[service]
state_dir = "state"
[tagging]
rules = "{rules}"
[fetch]
[stories]
[publish]
[server]
[templates]
dir = "tpl"
[smtp]
host = "127.0.0.1"
from_address = "d@example.org"
[[digests]]
name = "daily"
recipients = ["a@example.org"]
schedule = "weekly"
[[sources]]
name = "a"
url = "https://example.org/feed"
"""


def read_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Every key each table reads, found by watching the readers (not a hand-kept list)."""
    seen: dict[str, set[str]] = {}
    original = tomlutil.Section.get

    def spy(self: tomlutil.Section, key: str, *args: object, **kw: object) -> object:
        table = ".".join(str(p) for p in self.path if isinstance(p, str)) or "(top)"
        seen.setdefault(table, set()).add(key)
        return original(self, key, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tomlutil.Section, "get", spy)
    path = tmp_path / "full.toml"
    path.write_text(FULL_CONFIG.format(rules=ROOT / "config" / "rules.toml"), encoding="utf-8")
    load_config(path)
    return seen


def section(title: str) -> str:
    match = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^##)", README, re.S | re.M)
    assert match, f"README has no section for {title}"
    return match.group(1)


def test_every_config_key_is_in_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = read_keys(tmp_path, monkeypatch)
    headings = {"sources": "[[sources]]", "digests": "[[digests]]"}
    missing = []
    for table, names in keys.items():
        if table in ("(top)", "tags", "digests.group_labels"):
            continue
        text = section(headings.get(table, f"[{table}]"))
        missing += [f"{table}.{k}" for k in names if f"| `{k}` |" not in text]
    assert not missing, f"undocumented config keys: {missing}"
    assert len(keys) >= 10


def test_every_command_is_in_the_readme() -> None:
    def walk(group: click.Group, prefix: str) -> list[str]:
        out = []
        for name, cmd in group.commands.items():
            out.append(f"{prefix}{name}")
            if isinstance(cmd, click.Group):
                out += walk(cmd, f"{prefix}{name} ")
        return out

    missing = [c for c in walk(cli, "digest ") if f"`{c}" not in README]
    assert not missing, f"commands missing from the README: {missing}"


def test_template_context_is_documented() -> None:
    missing = [name for name in context_fields() if f"| `{name}` |" not in README]
    assert not missing


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    quick = README.split("## Quick start", 1)[1].split("Then look around", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2
    assert "run --once" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
