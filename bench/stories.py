"""Benchmark story grouping: new entries assigned against a full window.

Run by hand: ``.venv/bin/python bench/stories.py``. Prints the cost per new entry with
10,000 and with 100,000 entries stored in the window, and their ratio: the candidate search
skips common words, so the cost per entry should stay roughly flat as the window grows. Also
prints the memory the loaded window takes (RSS growth), which a service holds all the time.

The window is dense (thousands of entries a day), so the busy-day rule (``quiet_day``) raises
the join score beyond reach and no new entry joins: that times the candidate search and the
scoring. ``--join`` turns the rule off, so that entries join and the joining path is timed too.
Figures are only comparable within one run on one machine.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script: import the package from the repository, not a bench/ module of the same name.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from digest.stories import StoryIndex, StoryItem, StorySettings  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["sh", "kh", "ts", "ar", "an"]


class Corpus:
    """Synthetic news: Zipf-distributed words and names; each event is told 1-4 times."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = self._vocabulary(20_000, 2, 4)
        self.names = [w.capitalize() for w in self._vocabulary(4_000, 2, 4)]
        self.word_weights = list(itertools.accumulate(1.0 / r for r in range(1, 20_001)))
        self.name_weights = list(itertools.accumulate(1.0 / r**0.8 for r in range(1, 4_001)))
        self.sources = [f"Source{i}" for i in range(40)]

    def _vocabulary(self, size: int, low: int, high: int) -> list[str]:
        out: dict[str, None] = {}
        while len(out) < size:
            n = self.rng.randint(low, high)
            out["".join(self.rng.choice(SYLLABLES) for _ in range(n))] = None
        return list(out)

    def _words(self, n: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.word_weights, k=n)

    def items(self, count: int, first_id: int, hours: float, end: datetime) -> list[StoryItem]:
        """``count`` items published over the ``hours`` before ``end``, in time order."""
        out: list[StoryItem] = []
        while len(out) < count:
            names = self.rng.choices(self.names, cum_weights=self.name_weights, k=3)
            # Every event has a few words of its own (a place, a figure) besides common ones.
            topic = [*self._words(3), *self.rng.sample(self.words[5_000:], 2)]
            at = end - timedelta(hours=self.rng.uniform(0, hours))
            for _ in range(min(self.rng.choice((1, 1, 2, 3, 4)), count - len(out))):
                title = [*names[:2], *self.rng.sample(topic, 2), *self._words(6)]
                summary = [names[2], *topic, *self._words(self.rng.randint(14, 26))]
                self.rng.shuffle(title)
                self.rng.shuffle(summary)
                out.append(
                    StoryItem(
                        entry_id=first_id + len(out),
                        source=self.rng.choice(self.sources),
                        published=at + timedelta(minutes=self.rng.uniform(0, 180)),
                        title=" ".join(title).capitalize(),
                        summary=" ".join(summary).capitalize() + ".",
                    )
                )
        out.sort(key=lambda i: i.published)
        return out


def run(stored: int, new: int, seed: int, settings: StorySettings) -> tuple[float, int, float]:
    """Seconds per new entry with ``stored`` entries in the window, how many joined, and the
    MiB the loaded window added to the process."""
    corpus = Corpus(seed)
    now = START + timedelta(days=30)
    old = corpus.items(stored, 1, settings.window_hours - 4, now - timedelta(hours=4))
    fresh = corpus.items(new, stored + 1, 4, now)
    gc.collect()
    before = psutil.Process().memory_info().rss
    index = StoryIndex(settings)
    index.load((item, item.entry_id) for item in old)
    gc.collect()
    window_mib = (psutil.Process().memory_info().rss - before) / 2**20
    gc.freeze()
    started = time.process_time()
    joined = sum(index.add(item).joined for item in fresh)
    elapsed = time.process_time() - started
    gc.unfreeze()
    return elapsed / new, joined, window_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--join", action="store_true", help="turn off quiet_day, so that new entries join"
    )
    args = parser.parse_args()
    settings = StorySettings(quiet_day=10**9) if args.join else StorySettings()
    small, joined_small, mib_small = run(10_000, args.new, args.seed, settings)
    large, joined_large, mib_large = run(100_000, args.new, args.seed, settings)
    print(f"{args.new} new entries, CPU time per entry, and the memory the window takes:")
    for label, cost, joined, mib in (
        ("10,000 stored: ", small, joined_small, mib_small),
        ("100,000 stored:", large, joined_large, mib_large),
    ):
        print(f"  {label} {cost * 1e6:8.1f} us  ({joined} joined a story); window {mib:.0f} MiB")
    print(f"  total for {args.new} against 100,000: {large * args.new:.2f} s")
    print(f"  ratio 100k/10k: {large / small:.2f} (window 10x larger)")


if __name__ == "__main__":
    main()
