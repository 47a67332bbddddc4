"""Feed generation: structure, validity rules, hostile text, stable bytes, atomic writes."""

from __future__ import annotations

import email.utils
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import tomlutil
from digest.errors import ConfigError, PublishError
from digest.models import Entry, Story
from digest.publish import (
    EMPTY_FEED_TIME,
    PublishSettings,
    ServerSettings,
    build_all,
    build_feeds,
    clean_url,
    feed_meta,
    select_for_feed,
    write_outputs,
)

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d [+-]\d{4}$"
)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# The URI syntax the W3C validator accepts for links and ids (ASCII only).
FULL_URI = re.compile(r"^[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$")
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def entry(
    n: int,
    *,
    source: str = "Armenpress",
    title: str | None = None,
    link: str | None = "auto",
    summary: str = "Talks in Washington.",
    tags: tuple[str, ...] = ("armenia",),
    hours_ago: float | None = None,
    published: datetime | None = None,
) -> Entry:
    when = published or NOW - timedelta(hours=n if hours_ago is None else hours_ago)
    return Entry(
        id=n,
        source=source,
        guid=None,
        link=f"https://news.example/{n}" if link == "auto" else link,
        canonical_link=None,
        title=title if title is not None else f"Report {n}",
        summary=summary,
        content_html="",
        published=when,
        updated=when,
        first_seen=when,
        tags=tags,
    )


def story(lead: Entry, *others: Entry, uid: str | None = None) -> Story:
    return Story(id=lead.id, uid=uid or f"entry-{lead.id}", lead=lead, others=others)


def make_settings(tmp_path: Path | None = None, **kw: object) -> PublishSettings:
    base: dict[str, object] = {"output_dir": tmp_path or Path("/nonexistent"), "tags": ()}
    base.update(kw)
    return PublishSettings(**base)  # type: ignore[arg-type]


def sample() -> list[Story]:
    return [
        story(
            entry(1, title="Pashinyan and Aliyev meet in Washington"),
            entry(2, source="APA", title="Aliyev, Pashinyan meet", tags=("azerbaijan",)),
            entry(3, source="Civil.ge", link=None, tags=()),
        ),
        story(entry(5, source="Civil.ge", title="Tbilisi talks", tags=("georgia",))),
        story(entry(7, source="TASS", title="Moscow comments", tags=())),
    ]


def feeds_for(stories: list[Story], now: datetime = NOW) -> dict[str, bytes]:
    return build_feeds(stories, feed_meta(make_settings()), now)


def assert_valid(files: dict[str, bytes], expected_ids: int | None = None) -> None:
    """What every feed set must satisfy, whatever went in."""
    rss = ET.fromstring(files["feed.xml"])
    atom = ET.fromstring(files["atom.xml"])
    doc = json.loads(files["feed.json"])
    for name, data in files.items():
        text = data.decode("utf-8")
        assert not ILLEGAL_XML.search(text), name
        if name.endswith(".xml"):  # feedparser 6.0 does not read JSON Feed
            parsed = feedparser.parse(data)
            assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))

    channel = rss.find("channel")
    assert channel is not None
    for tag in ("title", "link", "description", "lastBuildDate", "generator", "language"):
        assert (channel.findtext(tag) or "").strip(), tag
    assert RFC822.match(channel.findtext("lastBuildDate") or "")
    self_link = channel.find(f"{ATOM}link")
    assert self_link is not None and self_link.get("rel") == "self"
    assert FULL_URI.match(self_link.get("href") or "")
    guids = []
    for item in channel.findall("item"):
        assert (item.findtext("title") or "").strip()
        assert FULL_URI.match(item.findtext("link") or ""), item.findtext("link")
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "false" and guid.text
        guids.append(guid.text)
        assert RFC822.match(item.findtext("pubDate") or "")
        assert (item.findtext(f"{DC}creator") or "").strip()
        assert item.find("author") is None  # RSS <author> must be an e-mail address
    assert len(guids) == len(set(guids))

    for tag in ("id", "title", "updated"):
        assert (atom.findtext(ATOM + tag) or "").strip(), tag
    assert RFC3339.match(atom.findtext(f"{ATOM}updated") or "")
    assert FULL_URI.match(atom.findtext(f"{ATOM}id") or "")
    assert atom.find(f"{ATOM}author/{ATOM}name") is not None
    rels = {ln.get("rel") for ln in atom.findall(f"{ATOM}link")}
    assert {"self", "alternate"} <= rels
    ids = []
    for e in atom.findall(f"{ATOM}entry"):
        ids.append(e.findtext(f"{ATOM}id") or "")
        assert FULL_URI.match(ids[-1])
        assert (e.findtext(f"{ATOM}title") or "").strip()
        assert (e.findtext(f"{ATOM}author/{ATOM}name") or "").strip()
        links = e.findall(f"{ATOM}link")
        assert links and all(FULL_URI.match(ln.get("href") or "") for ln in links)
        for tag in ("updated", "published"):
            value = e.findtext(ATOM + tag) or ""
            assert RFC3339.match(value), value
            assert "1970" <= value <= NOW.isoformat()
    assert len(ids) == len(set(ids))

    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["title"]
    assert FULL_URI.match(doc["feed_url"]) and FULL_URI.match(doc["home_page_url"])
    json_ids = [item["id"] for item in doc["items"]]
    assert all(isinstance(i, str) and i for i in json_ids)
    assert len(json_ids) == len(set(json_ids))
    for item in doc["items"]:
        assert "content_html" in item or "content_text" in item
        assert FULL_URI.match(item["url"])
        assert RFC3339.match(item["date_published"]) and RFC3339.match(item["date_modified"])
    if expected_ids is not None:
        assert len(guids) == len(ids) == len(json_ids) == expected_ids


# -- selection -----------------------------------------------------------------------------


def test_select_orders_newest_first_and_bounds_count_and_age() -> None:
    stories = [story(entry(n, hours_ago=h)) for n, h in ((1, 30), (2, 1), (3, 24 * 40), (4, 5))]
    chosen = select_for_feed(stories, max_items=2, max_age_days=30, now=NOW)
    assert [s.id for s in chosen] == [2, 4]
    everything = select_for_feed(stories, max_items=100, max_age_days=30, now=NOW)
    assert [s.id for s in everything] == [2, 4, 1]


def test_select_keeps_an_old_story_with_a_recent_report_and_drops_repeated_uids() -> None:
    old = story(entry(1, hours_ago=24 * 45), entry(2, hours_ago=3))
    twin = story(entry(3, hours_ago=2), uid=old.uid)
    chosen = select_for_feed([old, twin], max_items=10, max_age_days=30, now=NOW)
    assert [s.id for s in chosen] == [3]
    assert [s.id for s in select_for_feed([old], max_items=10, max_age_days=30, now=NOW)] == [1]


# -- the three formats ---------------------------------------------------------------------


def test_feeds_carry_every_story_with_its_fields() -> None:
    files = feeds_for(sample())
    assert set(files) == {"feed.xml", "atom.xml", "feed.json"}
    assert_valid(files, expected_ids=3)

    rss = ET.fromstring(files["feed.xml"]).find("channel")
    assert rss is not None
    assert rss.findtext("link") == "http://127.0.0.1:8080/"
    assert rss.findtext("generator") == "caucasus-digest 0.1.0"
    first = rss.findall("item")[0]
    assert first.findtext("title") == "Pashinyan and Aliyev meet in Washington"
    assert first.findtext("link") == "https://news.example/1"
    assert first.findtext("guid") == "entry-1"
    assert first.findtext(f"{DC}creator") == "Armenpress"
    assert first.findtext("pubDate") == "Thu, 20 Nov 2025 11:00:00 +0000"
    assert {c.text for c in first.findall("category")} == {"armenia", "azerbaijan"}
    description = first.findtext("description") or ""
    assert "Also reported by" in description
    assert '<a href="https://news.example/2">APA</a>' in description
    assert "<li>Civil.ge: Report 3</li>" in description  # no link: no anchor
    # lastBuildDate is the newest story's time, not the time of the run
    assert rss.findtext("lastBuildDate") == "Thu, 20 Nov 2025 11:00:00 +0000"

    atom = ET.fromstring(files["atom.xml"])
    assert atom.findtext(f"{ATOM}updated") == "2025-11-20T11:00:00+00:00"
    assert atom.find(f"{ATOM}generator") is not None
    gen = atom.find(f"{ATOM}generator")
    assert gen is not None and gen.get("version") == "0.1.0"
    e = atom.findall(f"{ATOM}entry")[0]
    assert (e.findtext(f"{ATOM}id") or "").startswith("urn:uuid:")
    assert e.findtext(f"{ATOM}author/{ATOM}name") == "Armenpress"
    assert e.findtext(f"{ATOM}published") == "2025-11-20T11:00:00+00:00"

    doc = json.loads(files["feed.json"])
    assert [i["id"] for i in doc["items"]] == ["entry-1", "entry-5", "entry-7"]
    assert doc["items"][0]["authors"] == [{"name": "Armenpress"}]
    assert doc["items"][0]["date_published"] == "2025-11-20T11:00:00Z"
    assert doc["language"] == "en"


def test_feedparser_reads_back_the_same_stories_in_every_format() -> None:
    files = feeds_for(sample())
    rss = feedparser.parse(files["feed.xml"])
    atom = feedparser.parse(files["atom.xml"])
    assert [e.id for e in rss.entries] == ["entry-1", "entry-5", "entry-7"]
    assert len({e.id for e in atom.entries}) == 3
    for parsed in (rss, atom):
        assert [e.title for e in parsed.entries][0] == "Pashinyan and Aliyev meet in Washington"
        assert parsed.entries[0].link == "https://news.example/1"
        assert parsed.entries[0].author == "Armenpress"


def test_atom_id_is_the_same_on_every_run_and_differs_per_story() -> None:
    a = ET.fromstring(feeds_for(sample())["atom.xml"])
    b = ET.fromstring(feeds_for(list(reversed(sample())))["atom.xml"])
    ids_a = {e.findtext(f"{ATOM}title"): e.findtext(f"{ATOM}id") for e in a.iter(f"{ATOM}entry")}
    ids_b = {e.findtext(f"{ATOM}title"): e.findtext(f"{ATOM}id") for e in b.iter(f"{ATOM}entry")}
    assert ids_a == ids_b and len(set(ids_a.values())) == 3


def test_empty_feed_is_valid_and_stable() -> None:
    files = feeds_for([])
    assert_valid(files, expected_ids=0)
    assert files == feeds_for([], now=NOW + timedelta(days=3))
    atom = ET.fromstring(files["atom.xml"])
    assert atom.findtext(f"{ATOM}updated") == EMPTY_FEED_TIME.isoformat()
    assert json.loads(files["feed.json"])["items"] == []


def test_unchanged_input_gives_identical_bytes_on_a_later_run() -> None:
    assert feeds_for(sample()) == feeds_for(sample(), now=NOW + timedelta(hours=5))


def test_hostile_text_links_and_dates_still_give_valid_feeds() -> None:
    hostile = [
        story(entry(1, title="<script>alert(1)</script>\x00\x1b[31m", summary="a\x0cb</p>")),
        story(entry(2, title="", source="", link="javascript:alert(1)")),
        story(entry(3, title="  \t\n ", link="/relative/path")),
        story(entry(4, link="mailto:x@example.org", published=datetime(1, 1, 1, tzinfo=UTC))),
        story(
            entry(
                5,
                link="http://exämple.org/ü ber?q=ä b#frag#2",
                published=NOW + timedelta(days=4000),
            )
        ),
        story(entry(6, link="https://bad host/x")),
        story(entry(7, link="http://[::1/broken"), uid=""),
        story(entry(8, title="Same uid", link="ftp://example.org/file"), uid="dup"),
        story(entry(9, title="Same uid again"), uid="dup"),
        story(entry(10, title="\ud800 lone surrogate \ufffe", summary="x\x7f\x85y")),
        story(entry(11, link="http://example.org/100%/done%zz")),
    ]
    files = feeds_for(hostile)
    assert_valid(files, expected_ids=10)
    rss = ET.fromstring(files["feed.xml"]).find("channel")
    assert rss is not None
    titles = [i.findtext("title") for i in rss.findall("item")]
    assert titles[0] == "<script>alert(1)</script>[31m"
    assert titles[1] == titles[2] == "(no title)"
    links = [i.findtext("link") for i in rss.findall("item")]
    assert links[1] == "http://127.0.0.1:8080/#entry-2"  # javascript: never reaches a reader
    assert links[4] == "http://xn--exmple-cua.org/%C3%BC%20ber?q=%C3%A4%20b#frag%232"
    assert links[9] == "http://example.org/100%25/done%25zz"
    creators = [i.findtext(f"{DC}creator") for i in rss.findall("item")]
    assert creators[1] == "unknown source"


def test_a_story_without_any_usable_link_points_at_its_place_on_the_page() -> None:
    s = story(entry(1, link=None), entry(2, link="https://other.example/a"))
    assert feedparser.parse(feeds_for([s])["feed.xml"]).entries[0].link == (
        "https://other.example/a"
    )
    lonely = story(entry(3, link="relative"), uid="uid with space")
    doc = json.loads(feeds_for([lonely])["feed.json"])
    assert doc["items"][0]["url"] == "http://127.0.0.1:8080/#uid%20with%20space"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Example.ORG/a?b=c#d", "https://example.org/a?b=c#d"),
        ("http://example.org", "http://example.org/"),
        ("HTTP://example.org:8080/x y", "http://example.org:8080/x%20y"),
        ("https://user:pw@example.org/", "https://example.org/"),
        ("javascript:alert(1)", None),
        ("//example.org/x", None),
        ("/x", None),
        ("", None),
        (None, None),
        ("https:///nohost", None),
        ("http://example.org:99999/", None),
        ("https://пример.рф/путь", "https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C"),
        ("https://example.org/a\x00b", "https://example.org/ab"),
        ("https://example.org/a[1]|{x}", "https://example.org/a%5B1%5D%7C%7Bx%7D"),
        # where a click came from is the reader's business: tracking parameters go
        (
            "https://news.am/a?utm_source=rss&id=5&fbclid=X1&utm_medium=feed#top",
            "https://news.am/a?id=5#top",
        ),
        ("https://news.am/a?utm_source=rss&gclid=1", "https://news.am/a"),
    ],
)
def test_clean_url(url: str | None, expected: str | None) -> None:
    assert clean_url(url) == expected
    if expected:
        assert FULL_URI.match(expected)


hostile_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=60
) | st.sampled_from(["<b>x</b>", "]]>", "&amp;", "<![CDATA[x]]>", "\x00", "\r\n", "'\""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=hostile_text,
    summary=hostile_text,
    source=hostile_text,
    link=hostile_text,
    uid=hostile_text,
)
def test_any_text_gives_valid_feeds(
    title: str, summary: str, source: str, link: str, uid: str
) -> None:
    s = story(entry(1, title=title, summary=summary, source=source, link=link), uid=uid)
    other = story(entry(2, title=summary, source=title, link="https://x.example/" + link))
    files = feeds_for([s, other])
    assert_valid(files, expected_ids=2)


def test_feeds_from_the_illformed_corpus_are_valid() -> None:
    folder = Path("/work/shared/corpus/feedparser-tests/illformed")
    if not folder.is_dir():
        pytest.skip(f"corpus not found at {folder}")
    stories = []
    for n, path in enumerate(sorted(folder.rglob("*.xml"))):
        parsed = feedparser.parse(path.read_bytes())
        for k, e in enumerate(parsed.entries or [{}]):
            stories.append(
                story(
                    entry(
                        n * 100 + k,
                        title=e.get("title", path.name),
                        summary=e.get("summary", ""),
                        link=e.get("link"),
                        source=parsed.feed.get("title", ""),
                    )
                )
            )
    assert len(stories) > 10
    assert_valid(feeds_for(stories), expected_ids=len(stories))


# -- per-tag sets and writing --------------------------------------------------------------


def test_build_all_writes_a_set_per_published_tag(tmp_path: Path) -> None:
    settings_ = make_settings(tmp_path, tags=("azerbaijan", "georgia", "turkey"))
    files = build_all(sample(), settings_, NOW)
    assert set(files) == {
        "feed.xml",
        "atom.xml",
        "feed.json",
        *(
            f"tags/{t}.{x}"
            for t in ("azerbaijan", "georgia", "turkey")
            for x in ("xml", "atom", "json")
        ),
    }
    az = json.loads(files["tags/azerbaijan.json"])
    assert [i["id"] for i in az["items"]] == ["entry-1"]  # tagged through "also reported by"
    assert az["feed_url"] == "http://127.0.0.1:8080/tags/azerbaijan.json"
    assert az["home_page_url"] == "http://127.0.0.1:8080/?tag=azerbaijan"
    atom = ET.fromstring(files["tags/georgia.atom"])
    selfs = [ln.get("href") for ln in atom.findall(f"{ATOM}link") if ln.get("rel") == "self"]
    assert selfs == ["http://127.0.0.1:8080/tags/georgia.atom"]
    assert json.loads(files["tags/turkey.json"])["items"] == []
    for tag in ("azerbaijan", "georgia", "turkey"):
        assert_valid(
            {
                "feed.xml": files[f"tags/{tag}.xml"],
                "atom.xml": files[f"tags/{tag}.atom"],
                "feed.json": files[f"tags/{tag}.json"],
            }
        )


def test_build_all_bounds_each_feed_on_its_own(tmp_path: Path) -> None:
    many = [story(entry(n, tags=("armenia",))) for n in range(1, 6)]
    many.append(story(entry(50, tags=("georgia",))))
    files = build_all(many, make_settings(tmp_path, max_items=3, tags=("georgia",)), NOW)
    assert len(json.loads(files["feed.json"])["items"]) == 3
    assert [i["id"] for i in json.loads(files["tags/georgia.json"])["items"]] == ["entry-50"]


def test_write_outputs_is_atomic_and_skips_unchanged_files(tmp_path: Path) -> None:
    out = tmp_path / "public"
    files = build_all(sample(), make_settings(out, tags=("georgia",)), NOW)
    assert sorted(write_outputs(out, files)) == sorted(files)
    assert (out / "tags" / "georgia.atom").read_bytes() == files["tags/georgia.atom"]
    mtimes = {n: (out / n).stat().st_mtime_ns for n in files}
    assert write_outputs(out, files) == []
    assert {n: (out / n).stat().st_mtime_ns for n in files} == mtimes
    changed = dict(files, **{"feed.json": b"{}\n"})
    assert write_outputs(out, changed) == ["feed.json"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_write_outputs_raises_publish_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "public"
    blocker.write_text("not a folder")
    with pytest.raises(PublishError) as info:
        write_outputs(blocker, {"feed.xml": b"<rss/>"})
    assert "feed.xml" in str(info.value) and "writable" in str(info.value)
    with pytest.raises(PublishError, match="outside"):
        write_outputs(tmp_path / "ok", {"../escape.xml": b"x"})
    assert not (tmp_path / "escape.xml").exists()


# -- settings ------------------------------------------------------------------------------


def load_section(tmp_path: Path, text: str, table: str) -> tomlutil.Section:
    path = tmp_path / "digest.toml"
    path.write_text(text)
    return tomlutil.load(path).root().table(table)


def test_publish_settings_defaults(tmp_path: Path) -> None:
    s = PublishSettings.from_section(load_section(tmp_path, "", "publish"), tmp_path / "config")
    assert s.output_dir == (tmp_path / "state" / "public").resolve()
    assert (s.selection, s.language, s.base_url) == (
        "south-caucasus-diplomacy",
        "en",
        "http://127.0.0.1:8080/",
    )
    assert (s.max_items, s.max_age_days, s.tags) == (100, 30, ())
    assert s.title and s.description


def test_publish_settings_read_every_key(tmp_path: Path) -> None:
    text = """
[publish]
output_dir = "out"
selection = "all"
title = "T"
description = "D"
language = "hy-AM"
base_url = "https://example.org/caucasus"
max_items = 5
max_age_days = 2
tags = ["armenia", "georgia"]
"""
    s = PublishSettings.from_section(load_section(tmp_path, text, "publish"), tmp_path)
    assert s.output_dir == tmp_path.resolve() / "out"
    assert s.base_url == "https://example.org/caucasus/"
    assert (s.selection, s.title, s.description, s.language) == ("all", "T", "D", "hy-AM")
    assert (s.max_items, s.max_age_days, s.tags) == (5, 2, ("armenia", "georgia"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('base_url = "ftp://example.org/"', "absolute http"),
        ('base_url = "/feeds/"', "absolute http"),
        ('base_url = "https://example.org/?a=1"', "without query"),
        ("max_items = 0", "at least 1"),
        ('max_age_days = "7"', "must be an integer"),
        ('tags = ["../etc"]', "file name"),
        ('tags = ["a", "a"]', "twice"),
        ('language = "English"', "language tag"),
        ('titel = "typo"', "unknown key"),
    ],
)
def test_publish_settings_errors_name_file_key_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    sec = load_section(tmp_path, f"[publish]\n\n{line}\n", "publish")
    with pytest.raises(ConfigError, match=message) as info:
        PublishSettings.from_section(sec, tmp_path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{tmp_path / 'digest.toml'}:3: publish.")


def test_server_settings(tmp_path: Path) -> None:
    s = ServerSettings.from_section(load_section(tmp_path, "", "server"), tmp_path)
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    sec = load_section(tmp_path, '[server]\nhost = "0.0.0.0"\nport = 9000\n', "server")
    assert ServerSettings.from_section(sec, tmp_path) == ServerSettings(host="0.0.0.0", port=9000)
    with pytest.raises(ConfigError, match="between 0 and 65535"):
        ServerSettings.from_section(
            load_section(tmp_path, "[server]\nport = 70000\n", "server"), tmp_path
        )


def test_rfc822_dates_parse_back_to_the_story_time() -> None:
    rss = ET.fromstring(feeds_for(sample())["feed.xml"]).find("channel")
    assert rss is not None
    dates = [
        email.utils.parsedate_to_datetime(i.findtext("pubDate") or "") for i in rss.findall("item")
    ]
    assert dates == [NOW - timedelta(hours=1), NOW - timedelta(hours=5), NOW - timedelta(hours=7)]
