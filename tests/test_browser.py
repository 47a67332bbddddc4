"""The recent-stories page in a real browser: visible stories, inert hostile text, tag filter."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.models import Entry, Story
from digest.publish import PublishSettings, build_all, write_outputs
from digest.web import make_app, start_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"chromium not found at {CHROMIUM} (apt-get install chromium to run browser tests)",
)


def entry(n: int, title: str, tags: tuple[str, ...], source: str = "Armenpress") -> Entry:
    when = NOW - timedelta(hours=n)
    return Entry(
        id=n,
        source=source,
        guid=None,
        link=f"https://news.example/{n}",
        canonical_link=None,
        title=title,
        summary="",
        content_html="",
        published=when,
        updated=when,
        first_seen=when,
        tags=tags,
    )


STORIES = [
    Story(
        id=1,
        uid="s1",
        lead=entry(1, "Pashinyan and Aliyev meet", ("armenia",)),
        others=(entry(2, "Aliyev meets Pashinyan", ("azerbaijan",), source="APA"),),
    ),
    Story(id=3, uid="s3", lead=entry(3, "Tbilisi talks", ("georgia",), source="Civil.ge")),
    Story(id=4, uid="s4", lead=entry(4, HOSTILE, ("georgia",), source="Evil")),
]


def run_server(
    settings: PublishSettings,
    ready: threading.Event,
    box: dict[str, object],
    stop_after: float = 60,
) -> None:
    """Serve in this thread's own loop until ``box["stop"]`` is set or time runs out."""

    async def main() -> None:
        app = make_app(settings, stories=lambda tag: STORIES, clock=lambda: NOW)
        runner = await start_server(app, "127.0.0.1", 0)
        stop = asyncio.Event()
        box.update(port=runner.addresses[0][1], loop=asyncio.get_running_loop(), stop=stop)
        ready.set()
        try:
            await asyncio.wait_for(stop.wait(), timeout=stop_after)
        except TimeoutError:
            pass
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_page_in_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import Dialog, sync_playwright

    settings = PublishSettings(output_dir=tmp_path / "public", tags=("georgia",))
    write_outputs(settings.output_dir, build_all(STORIES, settings, NOW))
    ready, box = threading.Event(), {}
    thread = threading.Thread(target=run_server, args=(settings, ready, box), daemon=True)
    thread.start()
    assert ready.wait(10)
    url = f"http://127.0.0.1:{box['port']}/"
    dialogs: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = browser.new_page()

                def on_dialog(dialog: Dialog) -> None:
                    dialogs.append(dialog.message)
                    dialog.dismiss()

                page.on("dialog", on_dialog)
                page.goto(url)
                for title in ("Pashinyan and Aliyev meet", "Tbilisi talks"):
                    assert page.get_by_role("link", name=title).is_visible()
                # the hostile title is shown as text, and nothing in it ran
                assert page.get_by_text(HOSTILE, exact=True).is_visible()
                assert page.evaluate("typeof window.pwned") == "undefined"
                assert page.locator("main img, main script").count() == 0
                assert page.get_by_text("Also reported by").is_visible()
                assert page.locator("link[rel=alternate]").count() == 6

                page.locator("article").first.get_by_role("link", name="armenia").click()
                page.wait_for_url("**/?tag=armenia")
                assert page.get_by_role("link", name="Pashinyan and Aliyev meet").is_visible()
                assert page.get_by_text("Tbilisi talks").count() == 0

                page.locator("nav").get_by_role("link", name="georgia").click()
                page.wait_for_url("**/?tag=georgia")
                assert page.get_by_role("link", name="Tbilisi talks").is_visible()
                assert page.get_by_text("Pashinyan and Aliyev meet").count() == 0
                assert page.evaluate("typeof window.pwned") == "undefined"

                # the stylesheet loaded under the strict CSP (so CSP did not block 'self')
                color = page.evaluate(
                    "getComputedStyle(document.querySelector('footer')).borderTopStyle"
                )
                assert color == "solid"
            finally:
                browser.close()
    finally:
        loop = box.get("loop")
        stop = box.get("stop")
        if isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event):
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    assert dialogs == []


def test_digest_html_in_chromium(tmp_path: Path) -> None:
    """The mailed HTML shows every story (and "also reported by") in a real browser, loads
    nothing from outside and runs nothing from a feed."""
    from playwright.sync_api import sync_playwright

    from digest.periods import DigestListSettings, period_for
    from digest.render import build_context, render_digest

    lst = DigestListSettings(
        name="daily", recipients=("a@example.org",), bcc=False, timezone="Asia/Yerevan"
    )
    ctx = build_context(
        STORIES, lst, period_for(lst, NOW), feed_url="https://digest.example.org/feed.xml", now=NOW
    )
    html, _ = render_digest(ctx, templates_dir=None)
    path = tmp_path / "digest.html"
    path.write_text(html, encoding="utf-8")
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            for title in ("Pashinyan and Aliyev meet", "Tbilisi talks"):
                assert page.get_by_role("link", name=title).is_visible()
            assert page.get_by_text("APA").first.is_visible()  # also reported by
            assert page.get_by_text(HOSTILE, exact=True).is_visible()
            assert page.evaluate("typeof window.pwned") == "undefined"
            # reads on a phone: nothing wider than the screen
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()
    assert requests == [path.as_uri()], f"the digest loaded something else: {requests}"
