"""Synthetic feeds for the benchmarks: deterministic, mixed formats and encodings.

Each feed is RSS 2.0, Atom 1.0 or RSS 1.0, encoded in UTF-8, windows-1251 or ISO-8859-1 (the
encoding declared in the XML prolog), with items of a few KB of HTML, as news sites publish
them. Generation ``g`` of a feed has ``5 * g`` newer items on top and drops as many old ones,
which is what a re-poll of a busy feed sees. Items are 23 minutes apart, from each feed's
``start``: dates are relative to the day the benchmark runs, so its results do not drift with
the calendar (:func:`start_time`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape, quoteattr

FORMATS = ("rss2", "atom", "rss1")
ENCODINGS = ("utf-8", "windows-1251", "iso-8859-1")
NEW_ITEMS_PER_GENERATION = 5
#: minutes between a feed's items
ITEM_SPACING_MINUTES = 23
#: how long before the run the feeds start: by default, and with ``recent``
AGE_DAYS, RECENT_AGE_DAYS = 20, 2


def start_time(now: datetime, *, recent: bool = False) -> datetime:
    """When the feeds' first items were published.

    By default :data:`AGE_DAYS` before ``now``: older than story grouping's window (72 h),
    so a poll's index stays small, yet inside the published feeds' ``max_age_days`` (30).
    ``recent`` puts every item in the last :data:`RECENT_AGE_DAYS`, as a busy outlet's feed
    is: the window then holds all of them.
    """
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    if recent:
        return now - timedelta(days=RECENT_AGE_DAYS)
    return now.replace(hour=0, minute=0) - timedelta(days=AGE_DAYS)


_WORDS = {
    "utf-8": " ".join(
        (
            "minister foreign talks border delimitation commission peace treaty visit Yerevan Baku",
            "Tbilisi Brussels delegation agreement transit corridor railway energy statement",
            "parliament government president embassy ambassador cooperation economy trade port",
            "Հայաստան Երևան საქართველო თბილისი weather football market company contract festival",
        )
    ),
    "windows-1251": " ".join(
        (
            "министр иностранных дел переговоры граница делимитация комиссия мирный договор визит",
            "Ереван Баку Тбилиси Брюссель делегация соглашение транзит коридор железная дорога",
            "энергетика заявление парламент правительство президент посольство посол",
            "сотрудничество экономика торговля порт погода футбол рынок компания контракт",
            "фестиваль «новости» —",
        )
    ),
    "iso-8859-1": " ".join(
        (
            "ministre étrangères négociations frontière délimitation commission traité paix visite",
            "Erevan Bakou Tbilissi Bruxelles délégation accord transit corridor chemin fer énergie",
            "déclaration parlement gouvernement président ambassade coopération économie commerce",
            "Außenminister Grenzgespräche Verhandlungen Begegnung météo football marché société",
        )
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthFeed:
    """The recipe of one synthetic feed; its bytes come from :func:`render`."""

    index: int
    kind: str
    encoding: str
    items: int
    seed: int
    #: when the item of serial 0 was published
    start: datetime

    @property
    def path(self) -> str:
        return f"/feeds/{self.index:05d}.xml"

    @property
    def content_type(self) -> str:
        media = {
            "rss2": "application/rss+xml",
            "atom": "application/atom+xml",
            "rss1": "application/rdf+xml",
        }[self.kind]
        # Half the feeds name the charset in the header too, half rely on the XML prolog.
        return f"{media}; charset={self.encoding}" if self.index % 2 else "application/xml"


def feed_plan(
    count: int, items_min: int, items_max: int, seed: int = 1, start: datetime | None = None
) -> list[SynthFeed]:
    """Return ``count`` feed recipes: formats in turn, mostly UTF-8, some legacy encodings;
    their items date from ``start`` (default :func:`start_time` of now)."""
    start = start if start is not None else start_time(datetime.now(UTC))
    rng = random.Random(seed)
    plan = []
    for index in range(count):
        roll = rng.random()
        encoding = ENCODINGS[0] if roll < 0.7 else ENCODINGS[1] if roll < 0.85 else ENCODINGS[2]
        plan.append(
            SynthFeed(
                index=index,
                kind=FORMATS[index % len(FORMATS)],
                encoding=encoding,
                items=rng.randint(items_min, items_max),
                seed=seed,
                start=start,
            )
        )
    return plan


@dataclass(frozen=True, slots=True, kw_only=True)
class _Item:
    serial: int
    title: str
    link: str
    guid: str
    html: str
    published: datetime


def _item(feed: SynthFeed, serial: int, base_url: str) -> _Item:
    rng = random.Random(f"{feed.seed}/{feed.index}/{serial}")
    words = _WORDS[feed.encoding].split()
    title = " ".join(rng.choices(words, k=rng.randint(6, 12))).capitalize()
    link = f"{base_url}/articles/{feed.index:05d}/{serial:06d}-{rng.getrandbits(32):08x}"
    paragraphs: list[str] = []
    for _ in range(rng.randint(3, 9)):
        text = " ".join(rng.choices(words, k=rng.randint(20, 50)))
        a, b = sorted(rng.sample(range(len(text)), 2)) if len(text) > 2 else (0, 0)
        # A little markup and an entity in each paragraph, as real article HTML has.
        text = escape(text[:a]) + "<b>" + escape(text[a:b]) + "</b> &amp; " + escape(text[b:])
        paragraphs.append(f'<p>{text} <a href="{link}#p{len(paragraphs)}">more</a></p>')
    return _Item(
        serial=serial,
        title=f"{title} #{serial}",
        link=link,
        guid=f"synth-{feed.seed}-{feed.index}-{serial}",
        html="\n".join(paragraphs),
        published=feed.start
        + timedelta(minutes=ITEM_SPACING_MINUTES * serial, seconds=feed.index % 60),
    )


def render(feed: SynthFeed, generation: int, base_url: str) -> bytes:
    """Return the feed's bytes at ``generation`` (0 for the first poll)."""
    newest = feed.items + NEW_ITEMS_PER_GENERATION * generation - 1
    items = [_item(feed, s, base_url) for s in range(newest, newest - feed.items, -1)]
    title = f"Synthetic feed {feed.index} ({feed.kind}, {feed.encoding})"
    site = f"{base_url}/site/{feed.index:05d}/"
    updated = items[0].published
    render_kind = {"rss2": _rss2, "atom": _atom, "rss1": _rss1}[feed.kind]
    text = render_kind(feed, title, site, updated, items, base_url)
    prolog = f'<?xml version="1.0" encoding="{feed.encoding}"?>\n'
    return (prolog + text).encode(feed.encoding, errors="xmlcharrefreplace")


def _rss2(
    feed: SynthFeed, title: str, site: str, updated: datetime, items: list[_Item], base: str
) -> str:
    out = [
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{site}</link>",
        "<description>Synthetic benchmark feed</description>",
        f"<lastBuildDate>{format_datetime(updated)}</lastBuildDate><ttl>30</ttl>",
    ]
    for it in items:
        out.append(
            f"<item><title>{escape(it.title)}</title><link>{it.link}</link>"
            f'<guid isPermaLink="false">{it.guid}</guid>'
            f"<pubDate>{format_datetime(it.published)}</pubDate>"
            f"<description>{escape(it.html)}</description></item>"
        )
    out.append("</channel></rss>\n")
    return "\n".join(out)


def _atom(
    feed: SynthFeed, title: str, site: str, updated: datetime, items: list[_Item], base: str
) -> str:
    out = [
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{escape(title)}</title>",
        f'<link rel="alternate" href={quoteattr(site)}/>',
        f"<id>{base}{feed.path}</id><updated>{updated.isoformat()}</updated>",
        "<author><name>Synthetic</name></author>",
    ]
    for it in items:
        out.append(
            f"<entry><title>{escape(it.title)}</title>"
            f'<link rel="alternate" href={quoteattr(it.link)}/><id>urn:{it.guid}</id>'
            f"<published>{it.published.isoformat()}</published>"
            f"<updated>{it.published.isoformat()}</updated>"
            f'<content type="html">{escape(it.html)}</content></entry>'
        )
    out.append("</feed>\n")
    return "\n".join(out)


def _rss1(
    feed: SynthFeed, title: str, site: str, updated: datetime, items: list[_Item], base: str
) -> str:
    out = [
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">',
        f"<channel rdf:about={quoteattr(site)}><title>{escape(title)}</title>",
        f"<link>{site}</link><description>Synthetic benchmark feed</description>",
        f"<dc:date>{updated.isoformat()}</dc:date><items><rdf:Seq>",
        *(f"<rdf:li rdf:resource={quoteattr(it.link)}/>" for it in items),
        "</rdf:Seq></items></channel>",
    ]
    for it in items:
        out.append(
            f"<item rdf:about={quoteattr(it.link)}><title>{escape(it.title)}</title>"
            f"<link>{it.link}</link><dc:date>{it.published.isoformat()}</dc:date>"
            f"<description>{escape(it.title)}</description>"
            f"<content:encoded>{escape(it.html)}</content:encoded></item>"
        )
    out.append("</rdf:RDF>\n")
    return "\n".join(out)
