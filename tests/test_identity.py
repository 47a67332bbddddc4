"""canonical_link and entry_keys: examples and Hypothesis properties."""

from __future__ import annotations

import dataclasses
import re
import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from digest.identity import (
    TRACKING_PARAMS,
    canonical_link,
    entry_keys,
    normalise_title,
    title_date_key,
)
from digest.models import ParsedEntry

DAY = datetime(2024, 5, 14, 9, 30, tzinfo=UTC)


def entry(**changes: object) -> ParsedEntry:
    base = ParsedEntry(
        guid="item-7",
        link="https://monitor.example.org/news/meeting",
        title="Armenia and Azerbaijan: ministers meet",
        summary="They met.",
        content_html="<p>They met.</p>",
        published=DAY,
        updated=DAY,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# --- canonical_link: examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a/b/?utm_source=x&b=2&a=1#frag", "https://example.com/a/b?b=2&a=1"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:443/", "https://example.com/"),
        ("http://example.com:8080/x", "https://example.com:8080/x"),
        ("//example.com/p", "https://example.com/p"),
        ("https://user:secret@example.com/p", "https://example.com/p"),
        ("https://example.com./a/./b/../c/", "https://example.com/a/c"),
        ("https://example.com/%7euser/%e2%82%ac", "https://example.com/~user/%E2%82%AC"),
        ("https://example.com/€", "https://example.com/%E2%82%AC"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("  https://example.com/long-\n    path  ", "https://example.com/long-path"),
        (
            "https://пример.рф/статья",
            "https://xn--e1afmkfd.xn--p1ai/%D1%81%D1%82%D0%B0%D1%82%D1%8C%D1%8F",
        ),
        ("https://ПРИМЕР.рф/", "https://xn--e1afmkfd.xn--p1ai/"),
        ("http://[2001:DB8::1]:80/x", "https://[2001:db8::1]/x"),
        (
            "https://e.com/p?fbclid=1&gclid=2&yclid=3&mc_cid=4&mc_eid=5&igshid=6&_ga=7",
            "https://e.com/p",
        ),
        ("https://e.com/p?UTM_Medium=x&id=3&utm_campaign=y", "https://e.com/p?id=3"),
        ("https://e.com/p?ref=rss&x=1", "https://e.com/p?x=1"),
        ("https://github.com/o/r/blob/x?ref=main", "https://github.com/o/r/blob/x?ref=main"),
        ("https://e.com/p?ref_src=twsrc%5Etfw", "https://e.com/p"),
        ("https://e.com/p?ref_src=sidebar", "https://e.com/p?ref_src=sidebar"),
        ("https://e.com/p?b=2&&a=1&", "https://e.com/p?b=2&a=1"),
        ("https://e.com/p?q=a+b&q=%2f", "https://e.com/p?q=a+b&q=%2F"),
        ("https://e.com/?", "https://e.com/"),
    ],
)
def test_canonical_link_examples(url: str, expected: str) -> None:
    assert canonical_link(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "   ",
        "garbage",
        "/relative/path",
        "mailto:desk@example.org",
        "javascript:alert(1)",
        "ftp://example.com/x",
        "https://",
        "https:///path",
        "https://example.com:99999/",
        "https://exa mple.com/",
        "https://[::1/",
        "https://a..b/",
        "https://ex<ample.com/",
        "https://" + "a" * 64 + "ж.com/",  # an IDNA label too long to encode
    ],
)
def test_canonical_link_garbage_is_none(url: str | None) -> None:
    assert canonical_link(url) is None


# --- canonical_link: properties -------------------------------------------------------------

label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
hosts = st.builds(lambda parts: ".".join(parts), st.lists(label, min_size=1, max_size=4))
idn_hosts = st.builds(
    lambda a, b: f"{a}.{b}",
    st.text("абвгдежзийклмнопрстуфхцчшщэюяաբգդեզէըթժիլխ", min_size=1, max_size=8),
    st.sampled_from(["com", "рф", "am", "ge", "az"]),
)
path_chars = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/ éж"
segments = st.lists(st.text(path_chars.replace("/", ""), max_size=8), max_size=4)
paths = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash else ""), segments, st.booleans()
)
param_names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).filter(
    lambda n: n not in TRACKING_PARAMS and not n.startswith("utm_") and n not in ("ref", "ref_src")
)
param_values = st.text(string.ascii_letters + string.digits + "-._~%+", max_size=8)
params = st.lists(st.tuples(param_names, param_values), max_size=4)
tracking = st.lists(
    st.tuples(
        st.sampled_from(sorted(TRACKING_PARAMS) + ["utm_source", "utm_medium", "UTM_Campaign"]),
        param_values,
    ),
    min_size=1,
    max_size=3,
)
fragments = st.text(string.printable.strip(), max_size=12)


def query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    host = draw(st.one_of(hosts, idn_hosts))
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    q = query(draw(params))
    frag = draw(st.one_of(st.just(""), fragments.map(lambda f: "#" + f)))
    return f"{scheme}://{host}{port}{draw(paths)}{'?' + q if q else ''}{frag}"


@settings(max_examples=500)
@given(st.text())
@example("http://[")
@example("http://a:b@")
@example("https://\udcff.com/")
@example("http://0x7f.1/%zz?%%&=")
def test_canonical_link_never_raises(text: str) -> None:
    result = canonical_link(text)
    assert result is None or result.startswith("https://")


@settings(max_examples=500)
@given(st.one_of(urls(), st.text().map(lambda t: "http://" + t)))
def test_canonical_link_is_idempotent(url: str) -> None:
    once = canonical_link(url)
    assume(once is not None)
    assert canonical_link(once) == once


@given(urls())
def test_canonical_link_accepts_generated_urls(url: str) -> None:
    result = canonical_link(url)
    assert result is not None
    assert "#" not in result and result == result.strip()
    assert re.fullmatch(r"https://[a-z0-9.\-_\[\]:]+(/[^?#]*)?(\?[^#]*)?", result), result


@given(urls())
def test_http_and_https_fold(url: str) -> None:
    rest = url.split("://", 1)[1]
    assert canonical_link("http://" + rest) == canonical_link("https://" + rest)


@given(urls(), fragments)
def test_fragment_is_ignored(url: str, fragment: str) -> None:
    bare = url.split("#", 1)[0]
    assert canonical_link(f"{bare}#{fragment}") == canonical_link(bare)


@given(hosts, paths)
def test_host_case_is_ignored(host: str, path: str) -> None:
    assert canonical_link(f"https://{host.upper()}{path}") == canonical_link(
        f"https://{host}{path}"
    )


@given(hosts, paths, params, tracking, st.randoms(use_true_random=False))
def test_tracking_params_are_removed_and_order_kept(
    host: str, path: str, kept: list[tuple[str, str]], noise: list[tuple[str, str]], rnd: object
) -> None:
    clean = canonical_link(f"https://{host}{path}?{query(kept)}")
    mixed = kept + noise
    rnd.shuffle(noise)  # type: ignore[attr-defined]
    # Interleave the tracking params anywhere; the kept ones stay in their order.
    merged: list[tuple[str, str]] = []
    it = iter(noise)
    for pair in kept:
        merged.append(pair)
        nxt = next(it, None)
        if nxt:
            merged.append(nxt)
    merged += list(it)
    assert len(merged) == len(mixed)
    assert canonical_link(f"https://{host}{path}?{query(merged)}") == clean


@given(hosts, st.lists(st.tuples(param_names, param_values), min_size=2, max_size=4, unique=True))
def test_query_order_is_significant(host: str, pairs: list[tuple[str, str]]) -> None:
    assume(pairs != pairs[::-1])
    a = canonical_link(f"https://{host}/p?{query(pairs)}")
    b = canonical_link(f"https://{host}/p?{query(pairs[::-1])}")
    assert a is not None and b is not None
    assert a.split("?")[1].split("&") != b.split("?")[1].split("&") or sorted(pairs) == sorted(
        pairs[::-1]
    )


# --- entry_keys -----------------------------------------------------------------------------


def test_keys_are_short_and_prefixed() -> None:
    keys = entry_keys(entry(), "monitor")
    assert keys.guid is not None and keys.guid.startswith("guid:")
    assert keys.link is not None and keys.link.startswith("link:")
    assert keys.title_date.startswith("td:")
    assert re.fullmatch(r"[0-9a-f]{32}", keys.content_hash)
    assert all(len(k) <= 40 for k in keys.all())
    assert keys.all() == (keys.guid, keys.link, keys.title_date)


def test_short_guids_are_scoped_to_their_source() -> None:
    a = entry_keys(entry(guid="1"), "armenpress")
    b = entry_keys(entry(guid="1"), "apa")
    assert a.guid != b.guid
    assert a.guid == entry_keys(entry(guid="1"), "armenpress").guid


@pytest.mark.parametrize(
    "guid",
    [
        "https://monitor.example.org/?p=8",
        "HTTP://monitor.example.org/?p=8",
        "tag:example.com,2024:minsk-group",
        "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a",
        "1225c695-cfb8-4ebb-aaaa-80da344efa6a",
    ],
)
def test_globally_unique_guids_are_shared_across_sources(guid: str) -> None:
    assert entry_keys(entry(guid=guid), "a").guid == entry_keys(entry(guid=guid), "b").guid


def test_scoping_cannot_be_forged_by_names() -> None:
    # A source "a" with guid "b:c" and a source "a:b" with guid "c" must not meet.
    assert entry_keys(entry(guid="b:c"), "a").guid != entry_keys(entry(guid="c"), "a:b").guid


@pytest.mark.parametrize("guid", [None, "", "   "])
def test_no_guid_key_without_a_guid(guid: str | None) -> None:
    assert entry_keys(entry(guid=guid), "s").guid is None


def test_link_key_follows_the_canonical_link() -> None:
    a = entry_keys(entry(link="http://Monitor.example.org/news/meeting/?utm_source=rss#top"), "s")
    b = entry_keys(entry(link="https://monitor.example.org/news/meeting"), "t")
    assert a.link == b.link
    assert entry_keys(entry(link=None), "s").link is None
    assert entry_keys(entry(link="mailto:x@y"), "s").link is None


def test_title_date_key_uses_the_utc_day() -> None:
    late = entry(published=datetime(2024, 5, 14, 23, 59, tzinfo=UTC))
    early = entry(published=datetime(2024, 5, 14, 0, 1, tzinfo=UTC))
    assert entry_keys(late, "s").title_date == entry_keys(early, "t").title_date
    next_day = entry(published=datetime(2024, 5, 15, 0, 1, tzinfo=UTC))
    assert entry_keys(next_day, "s").title_date != entry_keys(early, "s").title_date


def test_content_hash_notices_edits_only() -> None:
    base = entry_keys(entry(), "s").content_hash
    assert (
        entry_keys(entry(guid="other", published=DAY + timedelta(hours=1)), "t").content_hash
        == base
    )
    for change in (
        {"title": "Armenia and Azerbaijan: ministers met"},
        {"summary": "They met again."},
        {"content_html": "<p>They met again.</p>"},
        {"link": "https://monitor.example.org/news/meeting-2"},
    ):
        assert entry_keys(entry(**change), "s").content_hash != base, change


def test_content_hash_fields_do_not_run_together() -> None:
    a = entry_keys(entry(title="ab", summary="c"), "s").content_hash
    b = entry_keys(entry(title="a", summary="bc"), "s").content_hash
    assert a != b


def test_normalise_title_examples() -> None:
    assert normalise_title("  Armenia–Azerbaijan: Talks!!  ") == "armenia azerbaijan talks"
    assert normalise_title("ＡＲＭＥＮＩＡ") == "armenia"
    assert normalise_title("Straße") == normalise_title("STRASSE")
    assert normalise_title("…!") == "...!"  # NFKC


titles = st.text(min_size=1, max_size=80)
days = st.dates(min_value=datetime(1990, 1, 1).date(), max_value=datetime(2100, 1, 1).date())


@st.composite
def respaced(draw: st.DrawFn, title: str) -> str:
    """The same words with other case and other spacing."""
    words = title.split()
    seps = draw(
        st.lists(
            st.sampled_from([" ", "  ", "\t", "\n", " \u00a0"]),
            min_size=len(words),
            max_size=len(words),
        )
    )
    text = "".join(w + s for w, s in zip(words, seps, strict=True))
    return draw(st.sampled_from([text, text.upper(), text.lower(), text.title(), " " + text]))


@given(st.data(), titles, days)
def test_title_key_ignores_case_and_whitespace(
    data: st.DataObject, title: str, day: object
) -> None:
    assume(title.split())
    assume(all(w.upper().casefold() == w.casefold() == w.lower().casefold() for w in title.split()))
    assume(all(w.title().casefold() == w.casefold() for w in title.split()))
    other = data.draw(respaced(title))
    assert title_date_key(other, str(day)) == title_date_key(title, str(day))


@given(titles, days, days)
def test_title_key_changes_with_the_date(title: str, day1: object, day2: object) -> None:
    assume(day1 != day2)
    assert title_date_key(title, str(day1)) != title_date_key(title, str(day2))


@given(
    st.builds(
        ParsedEntry,
        guid=st.one_of(st.none(), st.text(max_size=40)),
        link=st.one_of(st.none(), urls(), st.text(max_size=40)),
        title=titles,
        summary=st.text(max_size=80),
        content_html=st.text(max_size=80),
        published=st.datetimes(timezones=st.just(UTC), min_value=datetime(1990, 1, 1)),
        updated=st.datetimes(timezones=st.just(UTC), min_value=datetime(1990, 1, 1)),
    ),
    st.text(max_size=20),
)
def test_entry_keys_are_deterministic(e: ParsedEntry, source: str) -> None:
    first = entry_keys(e, source)
    assert entry_keys(dataclasses.replace(e), source) == first
    assert first.title_date.startswith("td:")
