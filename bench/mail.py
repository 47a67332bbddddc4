"""Render and build a digest of 1,000 stories; run by hand: ``.venv/bin/python bench/mail.py``.

Prints the best of several runs of the whole path (context, HTML with CSS inlined, text, the
multipart message as bytes) and its ratio to a baseline measured in the same run: serialising
a bare EmailMessage with the same two bodies, i.e. what the email package costs anyway.
Target: the whole path under 1 second.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.mail import WIRE_POLICY, build_message  # noqa: E402
from digest.models import Entry, Story  # noqa: E402
from digest.periods import DigestListSettings, period_for  # noqa: E402
from digest.render import build_context, render_digest  # noqa: E402

STORIES = 1_000
RUNS = 5
NOW = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)
TAGS = ("armenia", "azerbaijan", "georgia", "nagorno-karabakh", "russia", "eu")
SOURCES = ("Armenpress", "APA", "Civil.ge", "Reuters", "TASS", "OC Media", "Eurasianet")


def make_stories() -> list[Story]:
    stories = []
    for n in range(STORIES):
        entries = []
        for k in range(1 + n % 3):
            when = NOW - dt.timedelta(minutes=7 * n + k)
            entries.append(
                Entry(
                    id=n * 10 + k,
                    source=SOURCES[(n + k) % len(SOURCES)],
                    guid=None,
                    link=f"https://news.example.org/{n}/{k}",
                    canonical_link=None,
                    title=f"Foreign ministers of Armenia and Azerbaijan meet in Երևան, round {n}",
                    summary="The delegations discussed the border commission and the draft "
                    "peace treaty. Officials in Баку and თბილისი welcomed the talks. " * 4,
                    content_html="",
                    published=when,
                    updated=when,
                    first_seen=when,
                    tags=(TAGS[n % len(TAGS)], "diplomacy"),
                )
            )
        stories.append(Story(id=n, uid=f"s{n}", lead=entries[0], others=tuple(entries[1:])))
    return stories


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    stories = make_stories()
    settings = DigestListSettings(
        name="bench",
        recipients=("a@example.org", "b@example.org"),
        bcc=True,
        timezone="Asia/Yerevan",
        unsubscribe_url="https://example.org/unsubscribe",
    )
    period = period_for(settings, NOW)

    def full() -> bytes:
        ctx = build_context(stories, settings, period, feed_url="https://example.org/f", now=NOW)
        html, text = render_digest(ctx, templates_dir=None)
        msg = build_message(
            html, text, period=period, settings=settings, smtp=None, story_count=1000, now=NOW
        )
        return msg.as_bytes(policy=WIRE_POLICY)

    wire = full()  # warm up: template compilation happens once per process
    ctx = build_context(stories, settings, period, feed_url="https://example.org/f", now=NOW)
    html, text = render_digest(ctx, templates_dir=None)

    def bare() -> bytes:
        msg = EmailMessage(policy=policy.default)
        msg["Subject"] = "bench"
        msg.set_content(text, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        return msg.as_bytes(policy=WIRE_POLICY)

    t_full = best(full)
    t_bare = best(bare)
    t_context = best(
        lambda: build_context(stories, settings, period, feed_url="https://x.org/f", now=NOW)
    )
    t_render = best(lambda: render_digest(ctx, templates_dir=None))
    print(f"stories: {STORIES}, message: {len(wire) / 1e6:.2f} MB, best of {RUNS} runs")
    print(f"baseline (bare EmailMessage, same bodies): {t_bare * 1000:8.1f} ms")
    print(f"build_context:                             {t_context * 1000:8.1f} ms")
    print(f"render_digest (html + css inline + text):  {t_render * 1000:8.1f} ms")
    print(f"full (context + render + message bytes):   {t_full * 1000:8.1f} ms")
    print(f"ratio full / baseline: {t_full / t_bare:.1f}x")
    print(f"target < 1000 ms: {'met' if t_full < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
