"""A short crash campaign (bench/crash.py): ``digest run`` killed with SIGKILL during polls and
sends, restarted, then checked: nothing lost, nothing twice, one Message-ID per period."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash import run_campaign


@pytest.mark.slow
def test_kill_9_loses_nothing_and_sends_each_period_under_one_message_id(tmp_path: Path) -> None:
    out = run_campaign(8, tmp_path, seed=3, sources=12, lists_at_start=3)
    assert out.iterations == 8
    assert out.served > 0 and out.stored == out.served
    assert out.lost == []
    assert out.duplicates == 0
    assert out.phantoms == 0
    assert out.stale_edits == 0
    assert out.periods_expected >= 3
    assert out.periods_delivered == out.periods_expected
    assert out.max_ids_per_period == 1
    assert out.integrity == ["ok"] * (out.iterations + 1)
    assert out.bad_files == []
    assert out.final_errors == []
    assert out.early_exits == []
