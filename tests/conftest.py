"""Shared fixtures: the loopback feed server, the loopback SMTP server, config factories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import feed_server  # noqa: F401 - a fixture
from tests.smtp import smtp_server  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules.toml"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a config file whose state lives under tmp_path and whose rules are the shipped
    ones; the body is appended after a [service] and [tagging] table."""

    def write(body: str, *, name: str = "digest.toml") -> Path:
        path = tmp_path / name
        path.write_text(
            f'[service]\nstate_dir = "{tmp_path / "state"}"\n\n'
            f'[tagging]\nrules = "{RULES}"\n\n'
            f'[publish]\noutput_dir = "{tmp_path / "public"}"\nmax_age_days = 3650\n\n' + body,
            encoding="utf-8",
        )
        return path

    return write
