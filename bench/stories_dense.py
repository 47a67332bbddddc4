"""Stress test of story grouping on a dense news day.

Run by hand: ``.venv/bin/python bench/stories_dense.py [--data FILE] [--join-score X]``.

The labelled dev set is sparse in time (a few items in any three days), so a detector can lean
on time and still look precise. This script re-times the set so that every story starts at a
random moment within 4 (or 8) days, keeping the offsets between the items of one story, and
scores the grouping on the original set and on the dense variants for seeds 1-5. Precision on
the dense variants is what a busy real day looks like.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script: import the package from the repository, not a bench/ module of the same name.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.stories import (  # noqa: E402
    StoryEvaluation,
    StorySettings,
    evaluate_stories,
    load_story_file,
)

DEFAULT_DATA = Path("/work/shared/data/stories-dev.jsonl")
START = datetime(2026, 1, 1, tzinfo=UTC)
SEEDS = (1, 2, 3, 4, 5)
SPANS = (4, 8)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def densify(items: list[dict[str, str]], days: int, seed: int) -> list[dict[str, str]]:
    """Move every story to a random start within ``days``; offsets inside a story are kept."""
    rng = random.Random(seed)
    shift: dict[str, tuple[datetime, datetime]] = {}
    out: list[dict[str, str]] = []
    for obj in sorted(items, key=lambda x: x["published"]):
        at = _parse(obj["published"])
        story = obj["story"]
        if story not in shift:
            shift[story] = (at, START + timedelta(hours=rng.uniform(0, days * 24)))
        first, start = shift[story]
        moved = dict(obj)
        moved["published"] = (start + (at - first)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(moved)
    return out


def _line(name: str, ev: StoryEvaluation) -> str:
    return (
        f"{name:<12} pairwise P {ev.pair_precision:.3f} R {ev.pair_recall:.3f} "
        f"F1 {ev.pair_f1:.3f} | B-cubed P {ev.bcubed_precision:.3f} R {ev.bcubed_recall:.3f} "
        f"F1 {ev.bcubed_f1:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSON Lines")
    parser.add_argument("--join-score", type=float, default=None, help="override join_score")
    parser.add_argument("--quiet-day", type=int, default=None, help="override quiet_day")
    parser.add_argument("--half-life", type=int, default=None, help="override half_life_hours")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every seed")
    args = parser.parse_args()
    settings = StorySettings()
    if args.join_score is not None:
        settings = replace(settings, join_score=args.join_score)
    if args.quiet_day is not None:
        settings = replace(settings, quiet_day=args.quiet_day)
    if args.half_life is not None:
        settings = replace(settings, half_life_hours=args.half_life)
    items = load_story_file(args.data)
    print(f"{len(items)} items from {args.data}; settings {settings}")
    print(_line("dev", evaluate_stories(items, settings)))
    for days in SPANS:
        runs = [evaluate_stories(densify(items, days, seed), settings) for seed in SEEDS]
        if args.verbose:
            for seed, ev in zip(SEEDS, runs, strict=True):
                print(_line(f"  seed {seed}", ev))
        p = statistics.mean(ev.pair_precision for ev in runs)
        r = statistics.mean(ev.pair_recall for ev in runs)
        bp = statistics.mean(ev.bcubed_precision for ev in runs)
        br = statistics.mean(ev.bcubed_recall for ev in runs)
        low = min(ev.pair_precision for ev in runs)
        print(
            f"dense {days}d    pairwise P {p:.3f} (lowest {low:.3f}) R {r:.3f} | "
            f"B-cubed P {bp:.3f} R {br:.3f}   (mean of seeds {SEEDS[0]}-{SEEDS[-1]})"
        )


if __name__ == "__main__":
    main()
