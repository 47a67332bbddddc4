from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest

import digest
from digest.errors import TemplateError
from digest.models import Entry, Story
from digest.periods import DigestListSettings, period_for
from digest.render import (
    DigestContext,
    build_context,
    context_fields,
    render_digest,
    shorten,
    template_vars,
)

NOW = dt.datetime(2026, 11, 26, 3, 5, tzinfo=dt.UTC)
FEED = "https://digest.example.org/feeds/diplomacy.xml"
_ids = iter(range(1, 1_000_000))


def entry(title: str, *, source: str = "Armenpress", hours_ago: float = 1, **kw: Any) -> Entry:
    published = NOW - dt.timedelta(hours=hours_ago)
    base: dict[str, Any] = {
        "id": next(_ids),
        "source": source,
        "guid": None,
        "link": f"https://news.example.org/{next(_ids)}",
        "canonical_link": None,
        "title": title,
        "summary": f"Summary of {title}.",
        "content_html": "",
        "published": published,
        "updated": published,
        "first_seen": published,
    }
    return Entry(**{**base, **kw})


def story(lead: Entry, *others: Entry) -> Story:
    return Story(id=lead.id, uid=f"s{lead.id}", lead=lead, others=others)


def settings(**kw: Any) -> DigestListSettings:
    base: dict[str, Any] = {
        "name": "daily",
        "recipients": ("a@example.org",),
        "bcc": False,
        "timezone": "Asia/Yerevan",
        "unsubscribe_url": "https://digest.example.org/unsubscribe",
    }
    return DigestListSettings(**{**base, **kw})


def context(stories: list[Story], **kw: Any) -> DigestContext:
    s = settings(**kw)
    return build_context(stories, s, period_for(s, NOW), feed_url=FEED, now=NOW)


def sample() -> list[Story]:
    return [
        story(entry("Mirzoyan meets Bayramov in Almaty", tags=("armenia", "azerbaijan"))),
        story(entry("Baku hosts OSCE envoy", tags=("azerbaijan",), hours_ago=5)),
        story(entry("Tbilisi and Brussels talk visas", tags=("georgia", "eu"), hours_ago=2)),
        story(entry("Lavrov speaks about the region", tags=("russia",), hours_ago=3)),
        story(entry("Yerevan border commission meets", tags=("armenia",), hours_ago=0.5)),
    ]


def story_titles(ctx: DigestContext) -> dict[str, list[str]]:
    return {g.label: [s.title for s in g.stories] for g in ctx.groups}


# -- context ---------------------------------------------------------------------------------


def test_groups_follow_the_configured_order_with_other_last_and_newest_first() -> None:
    ctx = context(sample())
    assert story_titles(ctx) == {
        "Armenia": ["Yerevan border commission meets", "Mirzoyan meets Bayramov in Almaty"],
        "Azerbaijan": ["Baku hosts OSCE envoy"],
        "Georgia": ["Tbilisi and Brussels talk visas"],
        "Other": ["Lavrov speaks about the region"],
    }
    assert ctx.story_count == 5
    assert ctx.period_key == "2026-11-26"
    assert ctx.period_label == "Thursday 26 November 2026"
    assert ctx.generated_at == "26 Nov 2026 07:05"


def test_topic_groups_and_labels() -> None:
    ctx = context(
        sample(),
        group_by="topic",
        group_order=("eu", "russia"),
        group_labels={"eu": "European Union", "other": "Everything else"},
    )
    assert list(story_titles(ctx)) == ["European Union", "Russia", "Everything else"]


def test_no_grouping_keeps_one_list_newest_first() -> None:
    ctx = context(sample(), group_by="none", group_order=())
    (group,) = ctx.groups
    assert group.label == ""
    assert group.stories[0].title == "Yerevan border commission meets"
    assert group.stories[-1].title == "Baku hosts OSCE envoy"


def test_story_fields_in_the_list_time_zone() -> None:
    lead = entry("Talks", hours_ago=0, published=dt.datetime(2026, 11, 25, 21, 40, tzinfo=dt.UTC))
    (group,) = context([story(lead)], group_by="none", group_order=()).groups
    (item,) = group.stories
    assert item.local_time == "26 Nov 01:40"  # Yerevan is UTC+4
    assert item.published == "2026-11-25T21:40:00Z"
    assert item.link == lead.link
    assert item.source == "Armenpress"


def test_also_reported_by_once_per_other_outlet() -> None:
    lead = entry("Talks in Almaty", source="Armenpress", hours_ago=3)
    others = (
        entry("Bayramov and Mirzoyan meet", source="APA", hours_ago=2),
        entry("Same outlet again", source="APA", hours_ago=1),
        entry("Lead outlet follow-up", source="Armenpress", hours_ago=1),
        entry("Встреча в Алматы", source="TASS", hours_ago=1, link="javascript:alert(1)"),
    )
    ctx = context([story(lead, *others)], group_by="none", group_order=())
    (item,) = ctx.groups[0].stories
    assert [(r.source, r.title) for r in item.also] == [
        ("APA", "Bayramov and Mirzoyan meet"),
        ("TASS", "Встреча в Алматы"),
    ]
    assert item.also[0].link == others[0].link
    assert item.also[1].link is None  # never a javascript: link


def test_mailed_links_carry_no_tracking_parameters() -> None:
    lead = entry("Talks", link="https://Armenpress.am/en/article/1?utm_source=rss&p=2")
    ctx = context([story(lead)], group_by="none", group_order=())
    assert ctx.groups[0].stories[0].link == "https://armenpress.am/en/article/1?p=2"


def test_hostile_text_is_cleaned() -> None:
    lead = entry(
        "Line one\r\nBcc: evil@example.org\x00\x1b[31m\u202eevil",
        summary="Bell\x07 and <script>alert(1)</script> text.",
        link="data:text/html,<script>alert(1)</script>",
    )
    ctx = context([story(lead)], group_by="none", group_order=())
    (item,) = ctx.groups[0].stories
    assert item.title == "Line one Bcc: evil@example.org[31mevil"
    assert item.link is None
    html, text = render_digest(ctx, templates_dir=None)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", text + html)
    assert "data:text/html" not in html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Short. Text.", "Short. Text."),
        ("A" * 120 + ". " + "B" * 150 + ". " + "C" * 100 + ".", "A" * 120 + ". " + "B" * 150 + "."),
        ("word " * 100, ("word " * 60)[:294].rstrip() + "…"),
        (
            "The U.S. envoy said talks " + "went on " * 20 + "late. " + "More text here. " * 10,
            "The U.S. envoy said talks " + "went on " * 20 + "late. " + "More text here. " * 6,
        ),
    ],
)
def test_shorten(text: str, expected: str) -> None:
    out = shorten(text)
    assert out == expected.strip()
    assert len(out) <= 300


def test_summary_equal_to_title_is_dropped() -> None:
    lead = entry("Same words", summary="  Same   words ")
    (item,) = context([story(lead)], group_by="none", group_order=()).groups[0].stories
    assert item.summary == ""


# -- the template contract -------------------------------------------------------------------


def test_every_context_field_is_documented() -> None:
    fields = context_fields()
    assert all(help_text.strip() for help_text in fields.values())
    assert "groups[].stories[].also[].source" in fields
    top = {name for name in fields if "." not in name}
    assert top == {f.name for f in dataclasses.fields(DigestContext)}


def test_templates_receive_exactly_the_documented_fields() -> None:
    ctx = context(sample())
    documented = {name for name in context_fields() if "." not in name}
    assert set(template_vars(ctx)) == documented


@pytest.mark.parametrize("name", ["digest.html.j2", "digest.txt.j2"])
def test_packaged_templates_use_only_documented_variables(name: str) -> None:
    env = jinja2.Environment()
    source = (digest.TEMPLATES / name).read_text()
    # the loop variable of the scoped per-story block counts as free inside that block
    used = jinja2.meta.find_undeclared_variables(env.parse(source)) - {"story"}
    documented = {n for n in context_fields() if "." not in n}
    assert used <= documented
    assert {"title", "groups", "feed_url", "story_count"} <= used


# -- rendering -------------------------------------------------------------------------------


def test_render_html_and_text() -> None:
    lead = entry(
        "Pashinyan in Երևան meets Kobakhidze of თბილისი",
        source="Armenpress",
        tags=("armenia", "georgia"),
        summary="Talks in Երևան. Then Баку.",
    )
    ctx = context([story(lead, entry("Same", source="Civil.ge"))])
    html, text = render_digest(ctx, templates_dir=None)
    for out in (html, text):
        assert "Pashinyan in Երևան meets Kobakhidze of თბილისი" in out
        assert "Talks in Երևան. Then Баку." in out
        assert "Thursday 26 November 2026" in out
        assert FEED in out
        assert "https://digest.example.org/unsubscribe" in out
        assert "Civil.ge" in out
        assert "armenia" in out
    assert f'<a href="{lead.link}"' in html
    assert lead.link is not None and lead.link in text
    assert "1 story" in text


def test_css_is_inlined_and_nothing_external_is_loaded() -> None:
    html, _ = render_digest(context(sample()), templates_dir=None)
    assert "<style" not in html
    assert 'class="story" id=' in html
    assert re.search(r'<div class="story"[^>]* style="[^"]*margin', html)
    assert not re.search(r"<(img|script|link|iframe)\b", html)
    assert "@import" not in html and "url(" not in html


def test_empty_digest_says_so() -> None:
    html, text = render_digest(context([]), templates_dir=None)
    assert "No new stories" in html and "No new stories" in text
    assert "0 stories" in text


def test_text_has_no_control_characters_and_wraps() -> None:
    long_title = "Negotiations " * 12
    _, text = render_digest(context([story(entry(long_title))]), templates_dir=None)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    assert max(len(line) for line in text.splitlines() if "http" not in line) <= 76


def test_user_folder_overrides_and_extends_the_packaged_templates(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        '{% extends "default:digest.txt.j2" %}{% block footer %}\nCUSTOM FOOTER\n{% endblock %}'
    )
    html, text = render_digest(context(sample()), templates_dir=tmp_path)
    assert "CUSTOM FOOTER" in text
    assert "Mirzoyan meets Bayramov in Almaty" in text  # the rest comes from the packaged one
    assert "To stop receiving" not in text
    assert "To stop receiving" in html  # the HTML template was not overridden
    (tmp_path / "digest.html.j2").write_text("<p>{{ story_count }} only</p>")
    html, _ = render_digest(context(sample()), templates_dir=tmp_path)
    assert html.endswith("<p>5 only</p></body></html>")


def test_an_undefined_variable_fails_with_template_name_and_line(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("{{ title }}\n\n{{ no_such_field }}\n")
    with pytest.raises(TemplateError) as info:
        render_digest(context(sample()), templates_dir=tmp_path)
    message = str(info.value)
    assert "digest.txt.j2, line 3" in message
    assert "no_such_field" in message


def test_an_undefined_attribute_fails_too(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text(
        "{% for g in groups %}\n{{ g.stories[0].headline }}\n{% endfor %}"
    )
    with pytest.raises(TemplateError, match=r"digest.html.j2, line 2: .*headline"):
        render_digest(context(sample()), templates_dir=tmp_path)


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text("<p>\n{% for g in groups %}\n</p>\n")
    with pytest.raises(TemplateError, match=r"digest.html.j2, line \d: .*endfor"):
        render_digest(context(sample()), templates_dir=tmp_path)


def test_a_missing_base_template_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text('{% extends "default:nothing.j2" %}')
    with pytest.raises(TemplateError, match="nothing.j2 not found"):
        render_digest(context(sample()), templates_dir=tmp_path)
