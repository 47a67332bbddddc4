"""The main configuration: one TOML file, validated strictly before anything runs.

Each stage declares its own settings (a frozen record with a ``from_section`` reader) next to
the code that uses them; this module only assembles them, checks what spans several tables
(unique names, paths that exist) and resolves relative paths against the config's folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from digest import tomlutil
from digest.models import Source
from digest.periods import DigestListSettings, SmtpSettings
from digest.politeness import FetchSettings
from digest.publish import PublishSettings, ServerSettings
from digest.stories import StorySettings

ENV_VAR = "DIGEST_CONFIG"
DEFAULT_PATH = Path("config/digest.toml")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSettings:
    """``[service]``: where state lives and how often the service polls."""

    #: folder holding the SQLite state, the outbox and (by default) the published files
    state_dir: Path
    #: seconds between poll cycles (sources may ask for a longer interval)
    poll_interval: int = 1800
    #: up to this many seconds of random delay added to each scheduled poll
    jitter: int = 60
    #: /healthz answers 503 when the last poll is older than this many seconds (0: 3 intervals)
    stale_after: int = 0
    #: entries older than this many days lose their text; their identity keys stay (0: keep all)
    retention_days: int = 0
    #: worker processes for parsing (0: one per core)
    parse_workers: int = 0

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> ServiceSettings:
        out = cls(
            state_dir=_join(base_dir, sec.get("state_dir", str, "../state")),
            poll_interval=sec.get("poll_interval", int, 1800, check=tomlutil.at_least(10)),
            jitter=sec.get("jitter", int, 60, check=tomlutil.at_least(0)),
            stale_after=sec.get("stale_after", int, 0, check=tomlutil.at_least(0)),
            retention_days=sec.get("retention_days", int, 0, check=tomlutil.at_least(0)),
            parse_workers=sec.get("parse_workers", int, 0, check=tomlutil.at_least(0)),
        )
        sec.finish()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TaggingSettings:
    """``[tagging]``: the rules file."""

    #: the rules file (see config/rules.toml)
    rules: Path

    @classmethod
    def from_section(cls, sec: tomlutil.Section, base_dir: Path) -> TaggingSettings:
        rules = _join(base_dir, sec.get("rules", str, "rules.toml"))
        if not rules.is_file():
            # Checked here, where the key and its line are known; the rules are read later.
            problem = "is not a file" if rules.exists() else "does not exist"
            raise sec.error(
                "rules",
                f"the rules file {rules} {problem}; give the path of a rules file, "
                "relative to this config file's folder (see config/rules.toml)",
            )
        out = cls(rules=rules)
        sec.finish()
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole validated configuration."""

    #: the file it was read from
    path: Path
    service: ServiceSettings
    fetch: FetchSettings
    tagging: TaggingSettings
    stories: StorySettings
    publish: PublishSettings
    server: ServerSettings
    smtp: SmtpSettings | None
    digests: tuple[DigestListSettings, ...]
    sources: tuple[Source, ...]
    #: a folder whose templates override the packaged ones
    templates_dir: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.service.state_dir / "digest.sqlite3"

    @property
    def outbox_dir(self) -> Path:
        return self.service.state_dir / "outbox"


def resolve_path(explicit: str | Path | None) -> Path:
    """The config file to use: ``--config``, then ``$DIGEST_CONFIG``, then the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return DEFAULT_PATH


def load_config(path: str | Path) -> Config:
    """Read and validate the config file; raises ConfigError naming the file, key and line."""
    doc = tomlutil.load(path)
    return parse_config(doc)


def parse_config(doc: tomlutil.Document) -> Config:
    root = doc.root()
    base = doc.path.resolve().parent
    service = ServiceSettings.from_section(root.table("service"), base)
    fetch = FetchSettings.from_section(root.table("fetch"), base)
    tagging = TaggingSettings.from_section(root.table("tagging"), base)
    stories = StorySettings.from_section(root.table("stories"), base)
    publish = PublishSettings.from_section(root.table("publish"), base)
    server = ServerSettings.from_section(root.table("server"), base)
    smtp = SmtpSettings.from_section(root.table("smtp"), base) if root.has("smtp") else None
    digests = tuple(DigestListSettings.from_section(s, base) for s in root.tables("digests"))
    sources = tuple(_parse_source(s, base, service.poll_interval) for s in root.tables("sources"))
    templates = root.table("templates")
    templates_dir = templates.get("dir", str, None)
    templates.finish()
    root.finish()

    _unique(doc, "sources", [s.name for s in sources])
    _unique(doc, "digests", [d.name for d in digests])
    _unique(doc, "sources", [s.url for s in sources], what="url")
    _unique(doc, "sources", [s.path for s in sources], what="path")
    return Config(
        path=doc.path,
        service=service,
        fetch=fetch,
        tagging=tagging,
        stories=stories,
        publish=publish,
        server=server,
        smtp=smtp,
        digests=digests,
        sources=sources,
        templates_dir=_join(base, templates_dir) if templates_dir else None,
    )


def _parse_source(sec: tomlutil.Section, base: Path, default_interval: int) -> Source:
    name = sec.get("name", str, check=_source_name)
    url = sec.get("url", str, None, check=check_feed_url)
    path = sec.get("path", str, None)
    if (url is None) == (path is None):
        raise sec.error(
            None,
            f"source {name!r} needs exactly one of 'url' (http/https) "
            "or 'path' (a local feed file)",
        )
    tags = tuple(sec.get_str_list("tags", []))
    for tag in tags:
        problem = _tag_name(tag)
        if problem:
            raise sec.error("tags", problem)
    interval = sec.get("interval", int, default_interval, check=tomlutil.at_least(10))
    sec.finish()
    return Source(
        name=name,
        url=url,
        path=str(_join(base, path)) if path is not None else None,
        tags=tags,
        interval=interval,
    )


def _join(base: Path, path: str) -> Path:
    """A config path, relative to the config file's folder, without ``..`` left in it."""
    return Path(os.path.normpath(base / os.path.expanduser(path)))


def check_feed_url(url: str) -> str | None:
    """A problem with a source URL, or None when it is a usable http(s) URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"must be an http:// or https:// URL, not {url!r}"
    if not parts.hostname:
        return f"has no host name: {url!r}"
    if any(c.isspace() for c in url):
        return f"contains whitespace: {url!r}"
    return None


def _source_name(name: str) -> str | None:
    if not name.strip():
        return "must not be empty"
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        return "must be a short single-line name"
    return None


_TAG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _tag_name(tag: str) -> str | None:
    if not _TAG.match(tag):
        return f"{tag!r} is not a tag name (lower-case letters, digits and '-')"
    return None


def _unique(
    doc: tomlutil.Document, table: str, values: list[str | None], what: str = "name"
) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        if value in seen:
            raise doc.error(
                (table, i, what),
                f"duplicate {what} {value!r} (also used by entry {seen[value] + 1})",
            )
        seen[value] = i
