"""OPML import/export: real-world exports, nesting, round trips and hostile files."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest import tomlutil
from digest.errors import ConfigError
from digest.models import Source
from digest.opml import (
    MAX_OPML_BYTES,
    OpmlFeed,
    parse_opml,
    read_opml,
    render_opml,
    to_toml_sources,
    toml_string,
)

NOW = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)

FEEDLY = b"""<?xml version="1.0" encoding="UTF-8"?>

<opml version="1.0">
    <head>
        <title>Ani subscriptions in feedly Cloud</title>
    </head>
    <body>
        <outline text="Caucasus" title="Caucasus">
            <outline type="rss" text="OC Media" title="OC Media" xmlUrl="https://oc-media.org/feed/" htmlUrl="https://oc-media.org"/>
            <outline type="rss" text="Civil.ge" title="Civil.ge" xmlUrl="https://civil.ge/feed" htmlUrl="https://civil.ge"/>
        </outline>
        <outline text="Must read" title="Must read">
            <outline type="rss" text="OC Media" title="OC Media" xmlUrl="https://oc-media.org/feed/" htmlUrl="https://oc-media.org"/>
            <outline type="rss" text="Eurasianet" title="Eurasianet" xmlUrl="https://eurasianet.org/rss.xml" htmlUrl="https://eurasianet.org"/>
        </outline>
    </body>
</opml>
"""  # noqa: E501 (exports keep each outline on one line)

INOREADER = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head>
    <title>Subscriptions of Mariam from Inoreader [https://www.inoreader.com]</title>
  </head>
  <body>
    <outline text="Армения" title="Армения">
      <outline text="NEWS.am" title="NEWS.am" type="rss" xmlUrl="https://news.am/eng/rss/" htmlUrl="https://news.am/eng/"/>
      <outline text="Azatutyun &amp; friends" title="Azatutyun &amp; friends" type="rss" xmlUrl="https://www.azatutyun.am/api/zijrreypui" htmlUrl="https://www.azatutyun.am"/>
    </outline>
    <outline text="Newsletters" title="Newsletters">
      <outline text="Weekly brief" title="Weekly brief" type="rss" xmlUrl="feed://example.org/brief.xml" htmlUrl="javascript:alert(1)"/>
    </outline>
    <outline text="Saved web pages" title="Saved web pages" type="link" url="https://example.org/page"/>
  </body>
</opml>
""".encode()  # noqa: E501


def test_feedly_export_merges_a_feed_listed_in_two_folders() -> None:
    result = read_opml(FEEDLY, "feedly.opml")
    assert result.title == "Ani subscriptions in feedly Cloud"
    assert result.feeds == (
        OpmlFeed(
            title="OC Media",
            xml_url="https://oc-media.org/feed/",
            html_url="https://oc-media.org",
            categories=("Caucasus", "Must read"),
        ),
        OpmlFeed(
            title="Civil.ge",
            xml_url="https://civil.ge/feed",
            html_url="https://civil.ge",
            categories=("Caucasus",),
        ),
        OpmlFeed(
            title="Eurasianet",
            xml_url="https://eurasianet.org/rss.xml",
            html_url="https://eurasianet.org",
            categories=("Must read",),
        ),
    )
    assert result.skipped == ()


def test_inoreader_export_with_entities_feed_scheme_and_a_link_outline() -> None:
    result = read_opml(INOREADER, "inoreader.opml")
    assert [(f.title, f.xml_url, f.categories) for f in result.feeds] == [
        ("NEWS.am", "https://news.am/eng/rss/", ("Армения",)),
        ("Azatutyun & friends", "https://www.azatutyun.am/api/zijrreypui", ("Армения",)),
        ("Weekly brief", "http://example.org/brief.xml", ("Newsletters",)),
    ]
    # A javascript: home page is dropped, not carried into the config.
    assert result.feeds[2].html_url is None
    [skipped] = result.skipped
    assert skipped.title == "Saved web pages"
    assert skipped.line == 14
    assert "no xmlUrl" in skipped.reason and 'type="link"' in skipped.reason


def test_nested_folders_become_categories_outermost_first() -> None:
    data = b"""<opml version="2.0"><head/><body>
      <outline text="Region">
        <outline text="South Caucasus">
          <outline text="Armenia">
            <outline type="rss" text="Armenpress" xmlUrl="https://armenpress.am/eng/rss/news/"
                     category="/Wire/English,diplomacy"/>
          </outline>
          <outline type="rss" text="JAMnews" xmlUrl="https://jam-news.net/feed/"/>
        </outline>
        <outline text="Empty folder"/>
      </outline>
      <outline type="rss" xmlUrl="https://apa.az/en/rss"/>
    </body></opml>"""
    result = read_opml(data, "nested.opml")
    assert [(f.title, f.categories) for f in result.feeds] == [
        ("Armenpress", ("Region", "South Caucasus", "Armenia", "Wire", "English", "diplomacy")),
        ("JAMnews", ("Region", "South Caucasus")),
        ("apa.az", ()),
    ]
    assert [s.title for s in result.skipped] == ["Empty folder"]
    assert parse_opml(data, "nested.opml") == list(result.feeds)


def test_round_trip_from_sources_to_opml_to_config() -> None:
    sources = [
        Source(name="NEWS.am", url="https://news.am/eng/rss/", tags=("armenia",)),
        Source(
            name='Civil "Georgia" \\ daily', url="https://civil.ge/feed", tags=("georgia", "eu")
        ),
        Source(name="Demo -- local", path="demo-feeds/apa.xml"),
        Source(name="Report.az", url="https://report.az/en/rss/?lang=en&x=1"),
    ]
    opml = render_opml(sources, "South Caucasus diplomacy", NOW)
    assert b'<!-- source "Demo - - local" reads the local file demo-feeds/apa.xml' in opml
    feeds = parse_opml(opml, "export.opml")
    assert [(f.title, f.xml_url, f.categories) for f in feeds] == [
        (s.name, s.url, s.tags) for s in sources if s.url
    ]
    text = to_toml_sources(feeds, existing_names=set())
    doc = tomlutil.loads(text, "imported.toml")
    read = []
    for sec in doc.root().tables("sources"):
        read.append((sec.get("name", str), sec.get("url", str), sec.get_str_list("tags")))
        sec.finish()
    assert read == [(s.name, s.url, []) for s in sources if s.url]
    # Tags come back as suggestions in a comment, not as applied tags.
    assert '# tags = ["georgia", "eu"]' in text


def test_render_opml_head_and_outline_attributes() -> None:
    now = datetime(2026, 11, 26, 11, 0, tzinfo=timezone(timedelta(hours=4)))
    opml = render_opml([Source(name="APA", url="https://apa.az/en/rss")], "Mine", now)
    assert opml.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<opml version=\"2.0\">")
    assert b"<dateCreated>Thu, 26 Nov 2026 07:00:00 GMT</dateCreated>" in opml
    text = opml.decode()
    created = text.split("<dateCreated>")[1].split("<")[0]
    assert parsedate_to_datetime(created) == now
    assert '<outline type="rss" text="APA" title="APA" xmlUrl="https://apa.az/en/rss" />' in text
    with pytest.raises(ValueError):
        render_opml([], "Mine", datetime(2026, 11, 26))


def test_to_toml_sources_makes_names_unique_against_config_and_each_other() -> None:
    feeds = [
        OpmlFeed(title="OC Media", xml_url="https://oc-media.org/feed/"),
        OpmlFeed(title="oc media", xml_url="https://oc-media.org/ru/feed/"),
        OpmlFeed(title="  ", xml_url="https://jam-news.net/feed/"),
        OpmlFeed(title="Tab\there\nnewline\x01", xml_url="https://example.org/a"),
    ]
    text = to_toml_sources(feeds, existing_names={"OC Media", "Old"})
    names = [s["name"] for s in tomllib.loads(text)["sources"]]
    assert names == ["OC Media (2)", "oc media (3)", "jam-news.net", "Tab here newline\x01"]
    assert to_toml_sources([], {"x"}) == ""


@given(st.text())
def test_toml_string_round_trips_any_text(value: str) -> None:
    assert tomllib.loads(f"k = {toml_string(value)}")["k"] == value


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE opml [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<opml version="2.0"><head><title>&c;</title></head><body/></opml>
"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE opml SYSTEM "http://127.0.0.1:9/opml.dtd">
<opml version="2.0"><body/></opml>
"""


@pytest.mark.parametrize(
    "data",
    [
        BOMB,
        EXTERNAL,
        BOMB.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>')
        .decode()
        .encode("utf-16"),
        BOMB.replace(
            b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="windows-1251"?>'
        ).replace(b"aaaa", "Ереван".encode("windows-1251")),
    ],
    ids=["entity-bomb", "external-dtd", "utf-16", "windows-1251"],
)
def test_doctype_is_refused_before_anything_is_expanded(data: bytes) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_opml(data, "hostile.opml")
    assert "DOCTYPE" in str(caught.value)
    assert caught.value.path == "hostile.opml"
    assert caught.value.line == 2


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "javascript:alert(1)",
        "ftp://example.org/f.xml",
        "http:///no-host",
        "https://exa mple.org/feed",
    ],
)
def test_non_http_feed_url_is_refused_with_the_outline_and_line(url: str) -> None:
    data = f"""<opml version="2.0"><body>
<outline text="Good" xmlUrl="https://civil.ge/feed"/>
<outline text="Bad one" type="rss" xmlUrl="{url}"/>
</body></opml>""".encode()
    with pytest.raises(ConfigError) as caught:
        parse_opml(data, "subs.opml")
    message = str(caught.value)
    assert message.startswith("subs.opml:3: ")
    assert '"Bad one"' in message and "http(s)" in message and "fix or remove" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "not well-formed XML"),
        (b"<html><body>Not found</body></html>", "root element is <html>"),
        (b'<opml version="2.0"><head/></opml>', "no <body>"),
        (b'<opml version="1.0"><body><outline text="x"></body></opml>', "not well-formed XML"),
        (b"<opml><body><x:outline xmlUrl='http://a/'/></body></opml>", "not well-formed XML"),
    ],
)
def test_files_that_are_not_opml_are_refused(data: bytes, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_opml(data, "x.opml")


def test_oversized_file_is_refused_without_parsing() -> None:
    data = b"<opml><body>" + b" " * MAX_OPML_BYTES + b"</body></opml>"
    with pytest.raises(ConfigError, match="split it"):
        parse_opml(data, "big.opml")
