"""Stories -> the documented template context -> HTML (CSS inlined) and plain text.

Feed text is untrusted: control and bidi-override characters are dropped and links other than
http(s) are not linked while the context is built, so neither template has to care. The HTML
template is autoescaped; the text one is not, which is why the cleaning happens here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
import jinja2

import digest
from digest.errors import TemplateError
from digest.models import Entry, Story
from digest.periods import DigestListSettings, Period, parse_address
from digest.publish import clean_url

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
SUMMARY_LIMIT = 300
OTHER_GROUP = "other"

# C0/C1 controls except tab and newline, plus bidi overrides and isolates that can make a
# title display as something else than it is.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?…。][\"'”’»)\]]*(?=\s)")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:[A-Z][a-z]?|[A-Z]\.[A-Z]|St|Mr|Mrs|Ms|Dr|Gen|Col)$")


def _help(text: str, items: type | None = None) -> Any:
    return field(metadata={"help": text, "items": items})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportContext:
    """Another outlet's report of the same story."""

    source: str = _help("name of the outlet")
    title: str = _help("its headline")
    link: str | None = _help("its URL (http or https only), or None")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryContext:
    """One story, as shown in the digest."""

    uid: str = _help("stable public id of the story (also the HTML anchor)")
    title: str = _help("headline of the first report, one line")
    link: str | None = _help("URL of the first report (http or https only), or None")
    source: str = _help("name of the outlet of the first report")
    published: str = _help("publication time of the first report, ISO 8601 in UTC")
    local_time: str = _help("publication time in the list's time zone, e.g. '26 Nov 09:40'")
    summary: str = _help(f"plain-text summary cut at a sentence, at most {SUMMARY_LIMIT} chars")
    tags: tuple[str, ...] = _help("tags of all its reports, in rule order")
    also: tuple[ReportContext, ...] = _help(
        "reports by other outlets ('also reported by'), one per outlet", ReportContext
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupContext:
    """A country or topic heading and its stories, newest first."""

    key: str = _help("the tag that defines the group, 'other', or 'all' with group_by = none")
    label: str = _help("display name of the group")
    stories: tuple[StoryContext, ...] = _help("the stories of the group", StoryContext)


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestContext:
    """Everything the digest templates receive, each field as a top-level variable."""

    title: str = _help("name of the digest list, as configured (title)")
    list_name: str = _help("identifier of the list (name)")
    period_key: str = _help("the period: '2026-11-26' (daily) or '2026-W48' (weekly)")
    period_label: str = _help("the period for people, e.g. 'Thursday 26 November 2026'")
    date: str = _help("local date of the scheduled send, ISO 8601")
    timezone: str = _help("IANA name of the time zone used for every time shown")
    generated_at: str = _help("when the digest was made, local time, e.g. '26 Nov 2026 07:00'")
    story_count: int = _help("number of stories in the digest")
    groups: tuple[GroupContext, ...] = _help(
        "the groups in configured order, empty ones left out", GroupContext
    )
    feed_url: str = _help("URL of the published feed with the same stories")
    unsubscribe_url: str | None = _help("one-click unsubscribe page, or None")
    unsubscribe_mailto: str | None = _help("address that takes unsubscribe requests, or None")


def context_fields() -> dict[str, str]:
    """Every template variable with its help text; nested fields as ``groups[].label``."""
    out: dict[str, str] = {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            name = f"{prefix}{f.name}"
            out[name] = f.metadata["help"]
            if f.metadata.get("items") is not None:
                walk(f.metadata["items"], f"{name}[].")

    walk(DigestContext, "")
    return out


def template_vars(ctx: DigestContext) -> dict[str, object]:
    """The variables a template sees: exactly the fields of :class:`DigestContext`."""
    return {f.name: getattr(ctx, f.name) for f in dataclasses.fields(DigestContext)}


# -- building the context (pure) -------------------------------------------------------------


def build_context(
    stories: Iterable[Story],
    settings: DigestListSettings,
    period: Period,
    *,
    feed_url: str,
    now: dt.datetime,
) -> DigestContext:
    zone = settings.zone
    items = sorted(stories, key=lambda s: (s.published, s.uid), reverse=True)
    groups = _group(items, settings, zone)
    return DigestContext(
        title=clean_line(settings.title),
        list_name=settings.name,
        period_key=period.key,
        period_label=_period_label(period),
        date=period.date.isoformat(),
        timezone=settings.timezone,
        generated_at=now.astimezone(zone).strftime("%d %b %Y %H:%M"),
        story_count=len(items),
        groups=groups,
        feed_url=feed_url,
        unsubscribe_url=settings.unsubscribe_url,
        unsubscribe_mailto=_mailbox(settings.unsubscribe_mailto),
    )


def _group(
    stories: Sequence[Story], settings: DigestListSettings, zone: ZoneInfo
) -> tuple[GroupContext, ...]:
    if settings.group_by == "none":
        if not stories:
            return ()
        shown = tuple(_story(s, zone) for s in stories)
        return (GroupContext(key="all", label="", stories=shown),)
    buckets: dict[str, list[StoryContext]] = {name: [] for name in settings.group_order}
    other: list[StoryContext] = []
    for story in stories:  # already newest first, so each bucket is too
        tags = set(story.tags)
        home = next((g for g in settings.group_order if g in tags), None)
        (buckets[home] if home is not None else other).append(_story(story, zone))
    groups = [
        GroupContext(key=name, label=group_label(name, settings.group_labels), stories=tuple(b))
        for name, b in buckets.items()
        if b
    ]
    if other:
        label = settings.group_labels.get(OTHER_GROUP, "Other")
        groups.append(GroupContext(key=OTHER_GROUP, label=label, stories=tuple(other)))
    return tuple(groups)


def _story(story: Story, zone: ZoneInfo) -> StoryContext:
    lead = story.lead
    seen = {lead.source}
    also: list[ReportContext] = []
    for other in story.others:
        if other.source in seen:
            continue
        seen.add(other.source)
        also.append(
            ReportContext(
                source=clean_line(other.source),
                title=clean_line(other.title),
                link=clean_url(other.link),
            )
        )
    return StoryContext(
        uid=story.uid,
        title=clean_line(lead.title) or "(untitled)",
        link=clean_url(lead.link),
        source=clean_line(lead.source),
        published=lead.published.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        local_time=lead.published.astimezone(zone).strftime("%d %b %H:%M"),
        summary=shorten(_summary_text(lead)),
        tags=story.tags,
        also=tuple(also),
    )


def _summary_text(entry: Entry) -> str:
    summary = clean_line(entry.summary)
    return "" if summary == clean_line(entry.title) else summary


def group_label(name: str, labels: Mapping[str, str]) -> str:
    if name in labels:
        return labels[name]
    # "nagorno-karabakh" -> "Nagorno-Karabakh", "south-ossetia" -> "South Ossetia"
    known = {"nagorno-karabakh": "Nagorno-Karabakh", "eu": "EU", "nato": "NATO", "un": "UN"}
    return known.get(name, name.replace("-", " ").title())


def _period_label(period: Period) -> str:
    if period.schedule == "weekly":
        year, week, _ = period.date.isocalendar()
        monday = dt.date.fromisocalendar(year, week, 1)
        return f"Week {week}, {monday:%d %B %Y} – {monday + dt.timedelta(days=6):%d %B %Y}"
    return period.date.strftime("%A %d %B %Y")


def clean_line(text: str) -> str:
    """One line of text with control characters removed and spaces collapsed."""
    return _SPACE.sub(" ", _CONTROLS.sub("", text)).strip()


def _mailbox(address: str | None) -> str | None:
    if address is None:
        return None
    parsed = parse_address(address)
    return parsed.addr_spec if parsed else None


def shorten(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """Cut at the last sentence end within ``limit``; else at a word, with an ellipsis."""
    text = clean_line(text)
    if len(text) <= limit:
        return text
    head = text[: limit + 1]  # +1: a sentence may end exactly at the limit
    best = 0
    for match in _SENTENCE_END.finditer(head + " "):
        end = match.end()
        if end <= limit and not _ABBREVIATION.search(head[: match.start()]):
            best = end
    if best >= limit // 3:
        return text[:best].rstrip()
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


# -- rendering (reads templates only) ---------------------------------------------------------


def environment(templates_dir: Path | None) -> jinja2.Environment:
    """The Jinja environment of a template folder (cached; edited templates are reloaded).

    A user folder comes first, so a file with a packaged name replaces it. The packaged ones stay
    reachable as ``default:digest.html.j2`` to extend them.
    """
    # Jinja notices an edited file but not a new one that now shadows a packaged template,
    # so the folder's file names are part of the cache key.
    names: tuple[str, ...] = ()
    if templates_dir is not None:
        try:
            names = tuple(sorted(p.name for p in templates_dir.iterdir()))
        except OSError as exc:
            raise TemplateError(
                f"cannot read the template folder {templates_dir}: fix templates_dir"
            ) from exc
    return _environment(templates_dir, names)


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path | None, names: tuple[str, ...]) -> jinja2.Environment:
    packaged = jinja2.FileSystemLoader(digest.TEMPLATES)
    loaders: list[jinja2.BaseLoader] = [
        packaged,
        jinja2.PrefixLoader({"default": packaged}, delimiter=":"),
    ]
    if templates_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(templates_dir))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2"),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)


def render_digest(ctx: DigestContext, *, templates_dir: Path | None) -> tuple[str, str]:
    """Render (html with CSS inlined, plain text). A broken template raises TemplateError."""
    env = environment(templates_dir)
    variables = template_vars(ctx)
    html = _render(env, HTML_TEMPLATE, variables)
    text = _render(env, TEXT_TEMPLATE, variables)
    try:
        html = _INLINER.inline(html)
    except ValueError as exc:
        raise TemplateError(
            f"cannot inline the CSS of template {HTML_TEMPLATE}: fix its <style> block"
        ) from exc
    text = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return html, text


_TEMPLATE_FAULTS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    ArithmeticError,
)


def _render(env: jinja2.Environment, name: str, variables: Mapping[str, object]) -> str:
    try:
        return env.get_template(name).render(variables)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(
            f"template {exc.name} not found in {_where(env)}; restore it or fix templates_dir"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(
            f"template {where}, line {exc.lineno}: {exc.message}; fix the template"
        ) from None
    except _TEMPLATE_FAULTS as exc:
        filename, line = _template_frame(exc, name)
        detail = str(exc) or type(exc).__name__
        raise TemplateError(
            f"template {filename}, line {line}: {detail}; fix the template "
            "(the variables it may use are listed in the README)"
        ) from None


def _template_frame(exc: BaseException, name: str) -> tuple[str, int | str]:
    """Jinja rewrites tracebacks so template lines appear as frames; take the innermost one."""
    found: tuple[str, int | str] = (name, "?")
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2") and frame.lineno is not None:
            found = (frame.filename, frame.lineno)
    return found


def _where(env: jinja2.Environment) -> str:
    loader = env.loader
    folders: list[str] = []
    if isinstance(loader, jinja2.ChoiceLoader):
        for sub in loader.loaders:
            if isinstance(sub, jinja2.FileSystemLoader):
                folders.extend(str(p) for p in sub.searchpath)
    return ", ".join(folders) or "the template folders"


__all__ = [
    "DigestContext",
    "GroupContext",
    "ReportContext",
    "StoryContext",
    "build_context",
    "context_fields",
    "render_digest",
    "shorten",
    "template_vars",
]
