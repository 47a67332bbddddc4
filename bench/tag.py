"""Tagging throughput on one core: entries per second for title plus summary.

Run by hand: ``.venv/bin/python bench/tag.py [--rules PATH] [--data FILE.jsonl] [--rounds N]``.
The texts are the labelled items of the data file (or a built-in sample), repeated. The
baseline is one ``re.search`` of a single word over the same texts, measured in the same run,
so the ratio says how many times more work tagging is than the cheapest possible scan.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.tag import load_rules, tag_text  # noqa: E402

SAMPLE = [
    ("Mirzoyan and Bayramov hold talks in Almaty", "The foreign ministers discussed the draft."),
    ("Georgia Bulldogs win in Atlanta", "The quarterback threw two touchdowns."),
    ("Пашинян и Алиев встретились в Абу-Даби", "Лидеры Армении и Азербайджана провели встречу."),
    ("Central bank holds rates steady", "Inflation was close to the target, officials said."),
]


def load_texts(path: Path | None) -> list[tuple[str, str]]:
    if path is None or not path.exists():
        return SAMPLE
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            texts.append((item["title"], item.get("summary", "")))
    return texts


def best_rate(run: Callable[[], None], count: int, rounds: int) -> float:
    """Entries per second of the fastest round (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=ROOT / "config" / "rules.toml")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/tagging-dev.jsonl"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the texts per round")
    args = parser.parse_args()

    load_start = time.perf_counter()
    rules = load_rules(args.rules)
    load_ms = (time.perf_counter() - load_start) * 1000
    texts = load_texts(args.data) * args.repeat
    word = re.compile(r"\barmenia\b", re.IGNORECASE)

    def tag_all() -> None:
        for title, summary in texts:
            tag_text(rules, title=title, summary=summary)

    def baseline() -> None:
        for title, summary in texts:
            word.search(title)
            word.search(summary)

    tag_all()  # warm the match cache, as a long-running service would have it
    tagged = best_rate(tag_all, len(texts), args.rounds)
    base = best_rate(baseline, len(texts), args.rounds)
    chars = sum(len(t) + len(s) for t, s in texts) / len(texts)
    print(f"rules: {args.rules} ({len(rules.names)} tags, compiled in {load_ms:.0f} ms)")
    print(f"texts: {len(texts)} entries (title + summary, {chars:.0f} characters on average)")
    print(f"tag_text:           {tagged:>12,.0f} entries/s")
    print(f"baseline re.search: {base:>12,.0f} entries/s")
    print(f"ratio baseline/tag_text: {base / tagged:.1f}x (tag_text is that many times slower)")
    print(f"target 20,000 entries/s: {'met' if tagged >= 20000 else 'NOT met'}")


if __name__ == "__main__":
    main()
