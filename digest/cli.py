"""The ``digest`` command: thin wrappers that load the config, call the pipeline, print results.

Results go to stdout, logs and progress to stderr. Exit codes: 0 ok, 1 an operational failure
(a source or a delivery failed), 2 usage error, 75 the state folder is in use by a running
service, 78 invalid configuration.

Each command imports what it needs when it runs: a poll from cron should not pay for the web
server, the scheduler or the mail templates, and ``--help`` for none of them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from digest import __version__
from digest import log as logsetup
from digest.errors import ConfigError, DigestError, ServiceError

if TYPE_CHECKING:
    from digest.models import SourceReport

EXIT_FAILURE = 1
EXIT_IN_USE = 75
EXIT_CONFIG = 78

log = logging.getLogger("digest")


def utcnow() -> datetime:
    return datetime.now(UTC)


class DigestGroup(click.Group):
    """Turns the project's errors into one clear line on stderr and a meaningful exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            _fail(f"configuration error: {exc}", EXIT_CONFIG)
        except ServiceError as exc:
            _fail(str(exc), EXIT_IN_USE)
        except DigestError as exc:
            _fail(str(exc), EXIT_FAILURE)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"digest: {message}", err=True)
    raise click.exceptions.Exit(code)


class State:
    """Lazily loaded config and store shared by the subcommands."""

    def __init__(self, config_path: str | None) -> None:
        self._explicit = config_path
        self._config: Any = None

    @property
    def config_path(self) -> Path:
        from digest.config import resolve_path

        return resolve_path(self._explicit)

    @property
    def config(self) -> Any:
        if self._config is None:
            from digest.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @contextmanager
    def pipeline(self, *, write: bool = True) -> Iterator[Any]:
        """The pipeline over the state; commands that write take the state folder's lock, so
        they cannot race a running service (exit 75 when it is held)."""
        from digest.lock import StateLock
        from digest.pipeline import Pipeline
        from digest.store import Store

        lock = StateLock(self.config.service.state_dir)
        if write:
            lock.acquire()
        try:
            store = Store(self.config.db_path)
            pipe = Pipeline(self.config, store)
            try:
                yield pipe
            finally:
                pipe.close()
                store.close()
        finally:
            lock.release()


pass_state = click.make_pass_decorator(State)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="DIGEST_CONFIG",
    metavar="PATH",
    help="Config file (default: $DIGEST_CONFIG, else config/digest.toml).",
)
@click.option("-v", "--verbose", count=True, help="Show debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only log errors.")
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="Log line format on stderr.",
)
@click.version_option(__version__, prog_name="caucasus-digest")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, verbose: int, quiet: bool, log_format: str
) -> None:
    """Follow South Caucasus diplomacy: poll feeds, publish a filtered feed, mail a digest."""
    logsetup.setup(-1 if quiet else verbose, log_format)
    ctx.obj = State(config_path)


# -- config and sources ---------------------------------------------------------------


@cli.command()
@pass_state
def check(state: State) -> None:
    """Validate the config and the rules file, and summarise them."""
    from digest.tag import load_rules

    cfg = state.config
    rules = load_rules(cfg.tagging.rules)
    click.echo(f"config: {cfg.path} is valid")
    click.echo(f"state folder: {cfg.service.state_dir}")
    click.echo(f"sources: {len(cfg.sources)}")
    for src in cfg.sources:
        tags = f" tags={','.join(src.tags)}" if src.tags else ""
        click.echo(f"  - {src.name}: {src.location} every {src.interval}s{tags}")
    click.echo(
        f"rules: {cfg.tagging.rules} ({len(rules.tags)} tags, "
        f"{len(rules.derived)} derived); selection: {cfg.publish.selection}"
    )
    click.echo(f"published feeds: {cfg.publish.output_dir}")
    click.echo(
        f"digest lists: {len(cfg.digests)}"
        + ("" if cfg.smtp else " (no [smtp]: messages go to the outbox folder)")
    )
    for d in cfg.digests:
        click.echo(
            f"  - {d.name}: {len(d.recipients)} recipient(s), "
            f"{d.schedule} at {d.time:%H:%M} {d.timezone}"
        )


@cli.group()
def sources() -> None:
    """Import or export the source list as OPML."""


@sources.command("export")
@pass_state
def sources_export(state: State) -> None:
    """Print the configured sources as OPML 2.0."""
    from digest.opml import render_opml

    data = render_opml(state.config.sources, "caucasus-digest sources", utcnow())
    sys.stdout.buffer.write(data)


@sources.command("import")
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--write", is_flag=True, help="Append the sources to the config file.")
@pass_state
def sources_import(state: State, opml_file: Path, write: bool) -> None:
    """Turn an OPML subscription list into [[sources]] entries (printed, or appended)."""
    from digest.opml import parse_opml, to_toml_sources

    feeds = parse_opml(opml_file.read_bytes(), str(opml_file))
    configured = {s.url: s.name for s in state.config.sources if s.url}
    # The config refuses two sources with one URL, so those feeds are left out, and said so.
    for feed in feeds:
        if feed.xml_url in configured:
            click.echo(
                f"skipped {feed.title!r}: {feed.xml_url} is already configured as "
                f"{configured[feed.xml_url]!r}",
                err=True,
            )
    feeds = [f for f in feeds if f.xml_url not in configured]
    text = to_toml_sources(feeds, {s.name for s in state.config.sources})
    if not write:
        click.echo(text, nl=False)
        return
    if not feeds:
        click.echo(f"nothing to append to {state.config_path}", err=True)
        return
    from digest import tomlutil
    from digest.config import parse_config

    old = state.config_path.read_text(encoding="utf-8")
    addition = ("" if old.endswith("\n") else "\n") + "\n" + text
    # Validate the result first, so a refused import leaves the file as it was. Appending
    # in place keeps the file's permissions and any symlink to it.
    parse_config(tomlutil.loads(old + addition, state.config_path))
    with open(state.config_path, "a", encoding="utf-8") as fh:
        fh.write(addition)
    click.echo(f"appended {len(feeds)} source(s) to {state.config_path}", err=True)


# -- the pipeline stages --------------------------------------------------------------


def _progress(total: int) -> Callable[[Any], None]:
    """One line per finished source on stderr, when stderr is a terminal."""
    done = 0

    def show(report: Any) -> None:
        nonlocal done
        done += 1
        if sys.stderr.isatty():
            click.echo(f"[{done}/{total}] {report.source}: {_describe(report)}", err=True)

    return show


def _describe(r: SourceReport) -> str:
    if r.status in ("error", "gone"):
        return f"{r.status}: {r.error}"
    if r.status in ("new", "updated", "unchanged"):
        return f"{r.new} new, {r.updated} updated, {r.unchanged} unchanged" + (
            f", {r.rejected} rejected" if r.rejected else ""
        )
    return r.status.replace("_", " ")


def _print_cycle(report: Any) -> None:
    width = max([len(s.source) for s in report.sources] + [6])
    for s in report.sources:
        click.echo(f"{s.source:<{width}}  {_describe(s)}")
    click.echo(
        f"total: {report.new} new, {report.updated} updated, "
        f"{len(report.failed)} failed, {len(report.sources)} sources"
    )


@cli.command()
@click.option("--all", "force", is_flag=True, help="Poll every source, even if not due yet.")
@click.option("--no-publish", is_flag=True, help="Do not rewrite the feeds after the cycle.")
@pass_state
def poll(state: State, force: bool, no_publish: bool) -> None:
    """Run one poll cycle: fetch, parse, dedupe, tag and store every due source, then
    publish the feeds."""
    import asyncio

    with state.pipeline() as pipe:
        due, _ = pipe.due_sources(utcnow(), force=force)
        report = asyncio.run(
            pipe.poll(utcnow(), force=force, progress=_progress(len(due)), clock=utcnow)
        )
        written, shown = ([], 0) if no_publish else pipe.publish(utcnow())
    _print_cycle(report)
    if not no_publish:
        click.echo(
            f"feed: {shown} stories in {state.config.publish.output_dir / 'feed.xml'} "
            f"({len(written)} file(s) changed)"
        )
    if report.failed:
        raise click.exceptions.Exit(EXIT_FAILURE)


@cli.command()
@pass_state
def status(state: State) -> None:
    """Show each source's health and next poll."""
    from digest.store import Store

    cfg = state.config
    with Store(cfg.db_path) as store:
        states = store.source_states(cfg.sources)
        last_poll = store.last_run("poll")
        entries = store.count_entries()
    width = max([len(s.name) for s in cfg.sources] + [6])
    click.echo(
        f"{'SOURCE':<{width}}  {'HEALTH':<9} {'ENTRIES':>7}  {'LAST OK':<20} "
        f"{'NEXT POLL':<20} LAST ERROR"
    )
    for src in cfg.sources:
        st = states[src.name]
        health = (
            "gone"
            if st.gone
            else ("failing" if st.error_count else ("ok" if st.last_ok_at else "new"))
        )
        click.echo(
            f"{src.name:<{width}}  {health:<9} {st.entry_count:>7}  "
            f"{_when(st.last_ok_at):<20} {_when(st.next_poll_at):<20} "
            f"{(st.last_error or '')[:80]}"
        )
    click.echo(f"last poll: {_when(last_poll)}; {entries} entries stored")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


@cli.command()
@pass_state
def publish(state: State) -> None:
    """Write the filtered feeds (RSS, Atom, JSON Feed) from the stored stories."""
    with state.pipeline() as pipe:
        written, count = pipe.publish(utcnow())
    out = state.config.publish.output_dir
    click.echo(f"{count} stories published to {out} ({len(written)} file(s) changed)")


@cli.command()
@pass_state
def retag(state: State) -> None:
    """Re-tag every stored entry after a rules change."""
    with state.pipeline() as pipe:
        total = pipe.store.count_entries()
        with click.progressbar(length=total, label="re-tagging", file=sys.stderr) as bar:
            changed = pipe.retag(progress=bar.update)
    click.echo(f"{total} entries re-tagged, {changed} changed their tags")


@cli.command()
@click.argument("entry", required=False)
@click.option("--text", help="Explain the tags of this text instead of a stored entry.")
@click.option("--summary", default="", help="With --text: a summary to tag too.")
@pass_state
def explain(state: State, entry: str | None, text: str | None, summary: str) -> None:
    """Show why an entry (id or link) or a text got its tags, selection and story."""
    from digest.tag import format_explanation, load_rules, tag_text

    if text is None and not entry:
        raise click.UsageError("give an ENTRY (id or link) or --text")
    cfg = state.config
    selection = cfg.publish.selection
    if text is not None:
        rules = load_rules(cfg.tagging.rules)
        decision = tag_text(rules, title=text, summary=summary)
        click.echo(format_explanation(decision, selection))
        return
    assert entry is not None
    with state.pipeline(write=False) as pipe:
        click.echo(pipe.explain(entry, utcnow()))


@cli.command("eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def eval_cmd(state: State, file: Path) -> None:
    """Measure the tagging rules on a labelled JSON Lines file."""
    from digest.evaluate import evaluate_tags, format_tag_evaluation, read_jsonl
    from digest.tag import load_rules

    rules = load_rules(state.config.tagging.rules)
    click.echo(format_tag_evaluation(evaluate_tags(rules, read_jsonl(file))))


@cli.command("eval-stories")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def eval_stories(state: State, file: Path) -> None:
    """Measure story grouping on a JSON Lines file of items labelled with stories."""
    from digest.stories import evaluate_stories, format_story_evaluation, load_story_file

    items = load_story_file(file)
    click.echo(format_story_evaluation(evaluate_stories(items, state.config.stories)))


# -- digests --------------------------------------------------------------------------


@cli.command()
@click.option("--list", "list_name", metavar="NAME", help="Digest list (default: the first).")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML version to this file.",
)
@click.option("--text", "show_text", is_flag=True, help="Print the plain-text version.")
@pass_state
def preview(state: State, list_name: str | None, html_file: Path | None, show_text: bool) -> None:
    """Render the next digest without sending or recording anything."""
    with state.pipeline(write=False) as pipe:
        html_body, text, msg, count = pipe.preview(utcnow(), list_name)
    if html_file is not None:
        html_file.write_text(html_body, encoding="utf-8")
        click.echo(f"HTML written to {html_file}", err=True)
    click.echo(f"Subject: {msg['Subject']}")
    click.echo(f"To: {msg['To']}")
    click.echo(f"Message-ID: {msg['Message-ID']}")
    click.echo(f"{count} stories pending")
    if show_text:
        click.echo("")
        click.echo(text)


@cli.command()
@click.option("--list", "list_name", metavar="NAME", help="Only this digest list.")
@click.option(
    "--force", is_flag=True, help="Send the current period now, even before its scheduled time."
)
@pass_state
def send(state: State, list_name: str | None, force: bool) -> None:
    """Send the digests that are due (and retry pending ones)."""
    import asyncio

    with state.pipeline() as pipe:
        outcomes = asyncio.run(pipe.send_due(utcnow(), list_name=list_name, force=force))
    for o in outcomes:
        click.echo(_digest_line(o))
    if any(o.status in ("failed", "partial") for o in outcomes):
        raise click.exceptions.Exit(EXIT_FAILURE)


def _digest_line(o: Any) -> str:
    text = f"digest {o.list} {o.period or '-'}: {o.status}"
    if o.stories:
        text += f", {o.stories} stories"
    if o.detail:
        text += f" ({o.detail})"
    return text


# -- the service ----------------------------------------------------------------------


@cli.command()
@click.option("--host", help="Listen address (default from [server]).")
@click.option("--port", type=int, help="Port (default from [server]).")
@pass_state
def serve(state: State, host: str | None, port: int | None) -> None:
    """Serve the published feeds and the page of recent stories."""
    import asyncio

    from digest import web

    cfg = state.config

    async def main() -> None:
        with state.pipeline(write=False) as pipe:
            zone = cfg.digests[0].zone if cfg.digests else UTC
            app = web.make_app(
                cfg.publish,
                stories=lambda tag: pipe.published_stories(utcnow(), tag),
                templates_dir=cfg.templates_dir,
                tz=zone,
            )
            runner = await web.start_server(
                app, host or cfg.server.host, port if port is not None else cfg.server.port
            )
            click.echo(
                f"serving {cfg.publish.output_dir} on "
                f"http://{host or cfg.server.host}:{runner.addresses[0][1]}/",
                err=True,
            )
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

    with suppress(KeyboardInterrupt):
        asyncio.run(main())


@cli.command()
@click.option("--once", is_flag=True, help="Run one poll, publish and any due digest, then exit.")
@click.option("--no-server", is_flag=True, help="Do not start the HTTP server.")
@pass_state
def run(state: State, once: bool, no_server: bool) -> None:
    """Run the service: scheduled polls, publishing, digests and the HTTP server."""
    import asyncio

    from digest.service import Service

    cfg = state.config
    if not once:
        service = Service(cfg)
        asyncio.run(service.run(serve=not no_server))
        return

    async def one_shot() -> Any:
        svc = Service(cfg)  # holds the state lock until close()
        try:
            return await svc.run_once()
        finally:
            svc.close()

    report, (written, shown), outcomes = asyncio.run(one_shot())
    _print_cycle(report)
    out = cfg.publish.output_dir
    click.echo("")
    click.echo(
        f"feed: {shown} stories in {out / 'feed.xml'} (also atom.xml, feed.json; "
        f"{len(written)} file(s) changed)"
    )
    for o in outcomes:
        click.echo(_digest_line(o))
    sent = [o for o in outcomes if o.status in ("sent", "partial")]
    if not cfg.smtp and sent:
        click.echo(f"digest files are in {cfg.outbox_dir}/")
    click.echo(f"serve the feed and a page of stories: digest --config {state.config_path} serve")
    if report.failed or any(o.status in ("failed", "partial") for o in outcomes):
        raise click.exceptions.Exit(EXIT_FAILURE)


def main() -> None:
    cli(prog_name="digest")
