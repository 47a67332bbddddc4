from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import tomlutil
from digest.errors import ConfigError
from digest.stories import (
    MAX_POSTINGS,
    StoryIndex,
    StoryItem,
    StorySettings,
    evaluate_stories,
    format_story_evaluation,
    group,
    load_story_file,
)
from digest.textnorm import decode_terms, encode_terms, story_terms, terms, word_key

T0 = datetime(2024, 5, 19, 10, 0, tzinfo=UTC)


def item(
    entry_id: int,
    title: str,
    summary: str = "",
    *,
    source: str = "Reuters",
    hours: float = 0.0,
    link_key: str | None = None,
    keys: tuple[str, ...] = (),
) -> StoryItem:
    return StoryItem(
        entry_id=entry_id,
        source=source,
        published=T0 + timedelta(hours=hours),
        title=title,
        summary=summary,
        link_key=link_key,
        keys=keys,
    )


# -- normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variants",
    [
        ("Pashinyan", "Pashinian", "Пашинян", "Pashinyan's"),
        ("Aliyev", "Aliev", "Алиев"),
        ("Armenia", "Armenian", "Armenia's", "Armenians", "Армении", "Армения"),
        ("Kılıç", "Kilic"),
        ("Azerbaijan", "Azerbaijani", "Азербайджан"),
        ("Shusha", "Shushi"),
        ("recognises", "recognizes", "recognised"),
        ("Georgia", "Грузии"),
        ("Turkey", "Turkish", "Турции"),
        ("Geneva", "Женеве"),
        ("corridor", "коридоре"),
        ("Nakhchivan", "Nakhichevan", "Нахичевань", "Нахичевани", "Нахичеванской"),
        ("Yerevan", "Erevan", "Ереван", "Ереване", "Еревана"),
        ("Zourabichvili", "Zurabishvili", "Зурабишвили"),
    ],
)
def test_spelling_variants_share_one_key(variants: tuple[str, ...]) -> None:
    keys = {word_key(v) for v in variants}
    assert len(keys) == 1, keys


def test_different_words_keep_different_keys() -> None:
    words = ["Armenia", "Azerbaijan", "Georgia", "Russia", "Iran", "border", "treaty", "Putin"]
    assert len({word_key(w) for w in words}) == len(words)


def test_stop_words_are_dropped_and_names_found() -> None:
    t = terms("The envoys met Serdar Kılıç in Moscow, the ministry said.")
    assert "the" not in t.keys and word_key("said") == ""
    assert {word_key("Serdar"), word_key("Kilic"), word_key("Moscow")} <= t.names
    assert word_key("envoys") not in t.names


def test_title_case_headline_gives_no_names() -> None:
    assert terms("Pashinian, Aliyev Agree To Start Peace Talks At Meeting").names == frozenset()


# -- candidate search ---------------------------------------------------------------------


def test_candidates_come_from_rare_shared_words() -> None:
    index = StoryIndex(StorySettings())
    index.add(item(1, "Varzaqan rescue teams search mountain in fog"))
    index.add(item(2, "Tbilisi metro orders new trains from Czech maker"))
    a = index.add(item(3, "Rescue teams in Varzaqan search fog-bound mountain", hours=1))
    assert a.matched_entry_id == 1 and a.joined


def test_words_in_too_many_entries_are_not_used_to_search() -> None:
    index = StoryIndex(StorySettings())
    for i in range(MAX_POSTINGS + 1):
        index.add(item(i + 1, f"Commonword item{i} unique{i}", source=f"S{i}"))
    a = index.add(item(10_000, "Commonword", source="Other", hours=0.5))
    assert a.matched_entry_id is None and not a.joined and a.score == 0.0


# -- decisions ----------------------------------------------------------------------------


def test_same_event_in_other_words_joins() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(
        item(
            1,
            "Georgia arrests ex-president Saakashvili after his return from exile",
            "Prime Minister Garibashvili said Saakashvili had been detained on arrival.",
        )
    )
    second = index.add(
        item(
            2,
            "PM: Mikheil Saakashvili arrested in Tbilisi",
            "Irakli Garibashvili posted a video of the ex-president being taken to prison.",
            source="Agenda.ge",
            hours=0.75,
        )
    )
    assert second.joined and second.story_id == first.story_id
    assert second.signals["text"] > 0 and second.matched_entry_id == 1


def test_same_actors_at_a_different_meeting_days_later_stay_apart() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(
        item(
            1,
            "Mirzoyan and Bayramov end two-day talks in Berlin",
            "The foreign ministers agreed to continue negotiations on the peace treaty.",
            source="Azatutyun",
        )
    )
    later = index.add(
        item(
            2,
            "Mirzoyan and Bayramov wrap up Almaty talks, agree to continue negotiations",
            "The foreign ministers discussed the draft peace treaty.",
            source="Armenpress",
            hours=60,
        )
    )
    assert not later.joined and later.story_id != first.story_id
    assert later.matched_entry_id == 1 and later.score < StorySettings().join_score


def test_article_published_twice_by_one_site_joins() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(
        item(1, "Armenia recognises State of Palestine", source="Armenpress", link_key="a/1")
    )
    again = index.add(
        item(
            2,
            "Armenia recognizes the State of Palestine",
            source="Armenpress",
            hours=0.5,
            link_key="a/2",
        )
    )
    assert again.joined and again.story_id == first.story_id


def test_same_source_different_items_same_day_stay_apart() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(
        item(
            1,
            "Helicopter carrying Iran's President Raisi in accident in fog",
            "The aircraft was returning from the border with Azerbaijan.",
        )
    )
    other = index.add(
        item(
            2,
            "Iran's President Raisi dies in helicopter crash",
            "Rescuers found the helicopter wreckage after an overnight search in fog.",
            hours=12,
        )
    )
    assert not other.joined and other.story_id != first.story_id
    assert "another item of Reuters" in other.reason
    # The same text from another outlet would have joined: the source rule decided.
    third = index.add(
        item(
            3,
            "Iran's President Raisi dies in helicopter crash",
            "Rescuers found the helicopter wreckage after an overnight search in fog.",
            source="AFP",
            hours=12.5,
        )
    )
    assert third.joined and third.story_id == other.story_id


def test_same_link_or_key_always_joins() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(item(1, "Completely different words", link_key="https://x/a"))
    second = index.add(item(2, "Nothing in common here", hours=50, link_key="https://x/a"))
    third = index.add(item(3, "Unrelated again", hours=51, keys=("guid:9",), source="AFP"))
    fourth = index.add(item(4, "Still unrelated", hours=52, keys=("guid:9",), source="TASS"))
    assert second.joined and second.story_id == first.story_id
    assert second.signals == {"identity": 1.0}
    assert fourth.story_id == third.story_id != first.story_id


def test_russian_item_joins_english_report() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(
        item(
            1,
            "Pashinian says Armenia has frozen its participation in CSTO",
            "The prime minister said the Russian-led alliance had failed its obligations.",
            source="Azatutyun",
        )
    )
    ru = index.add(
        item(2, "Пашинян заявил о заморозке участия Армении в ОДКБ", source="TASS", hours=0.7)
    )
    assert ru.joined and ru.story_id == first.story_id


# Pairs of same-day items from a busy day that share only the vocabulary of diplomacy, a
# country, a capital or one loose word. Each pair must stay two stories.
SAME_DAY_DIFFERENT_EVENTS = [
    (
        (
            "Prime minister receives newly appointed ambassador of France",
            "The prime minister received the new ambassador. They discussed visa liberalisation "
            "and cooperation in defence.",
        ),
        (
            "Foreign minister of Turkey arrives in Baku on official visit",
            "The minister will be received by the president for talks on the Kars railway.",
        ),
    ),
    (
        (
            "Georgia and China review their strategic partnership",
            "Officials met in Tbilisi to review the agreement; the Anaklia port was on the agenda.",
        ),
        (
            "Armenia and Iran review progress on the road through Syunik",
            "The intergovernmental commission discussed the Agarak crossing and freight transit.",
        ),
    ),
    (
        (
            "Yerevan software firm signs supply contract with logistics company",
            "The developer will supply route-planning software to a company from Hamburg.",
        ),
        (
            "What is on the table in the Syunik transit talks",
            "The route linking Azerbaijan with Nakhchivan is negotiated by Yerevan and Baku.",
        ),
    ),
    (
        (
            "Envoy addresses UN Security Council on mine clearance",
            "The permanent representative called for international support for demining.",
        ),
        (
            "Geneva International Discussions hold new round",
            "The round was co-chaired by the OSCE, the UN and the EU.",
        ),
    ),
]


@pytest.mark.parametrize(("first", "second"), SAME_DAY_DIFFERENT_EVENTS)
def test_same_day_items_sharing_only_generic_words_stay_apart(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    index = StoryIndex(StorySettings())
    # A day's worth of other diplomacy, so that word frequencies are those of a real window.
    for i, title in enumerate(BACKGROUND):
        index.add(item(100 + i, title, source=f"B{i}", hours=-6 + i * 0.2))
    a = index.add(item(1, *first, source="Armenpress", hours=1))
    b = index.add(item(2, *second, source="APA", hours=2))
    assert b.story_id != a.story_id, b.reason


BACKGROUND = [
    "Foreign minister meets EU foreign policy chief in Brussels",
    "President holds phone call with president of Kazakhstan",
    "Prime minister receives delegation of the European Parliament",
    "Armenia and Azerbaijan border commissions hold new meeting",
    "Georgian parliament adopts state budget in second reading",
    "Iran and Azerbaijan discuss regional security in Tehran",
    "Russian deputy foreign minister visits Yerevan",
    "Turkey and Georgia sign agreement on energy cooperation",
]


def test_same_event_with_distinctive_words_joins_on_a_busy_day() -> None:
    index = StoryIndex(StorySettings())
    for i, title in enumerate(BACKGROUND):
        index.add(item(100 + i, title, source=f"B{i}", hours=-6 + i * 0.2))
    first = index.add(
        item(
            1,
            "Mirzoyan and Bayramov discuss peace agenda in Abu Dhabi",
            "The foreign ministers met on the sidelines of the forum.",
            source="Armenpress",
        )
    )
    second = index.add(
        item(2, "Azerbaijani, Armenian FMs hold talks in Abu Dhabi", source="APA", hours=0.5)
    )
    assert second.joined and second.story_id == first.story_id
    assert second.signals["distinct"] >= 1 and {"abu", "dhabi"} <= set(second.shared)


def test_russian_item_joins_english_report_through_the_glossary() -> None:
    index = StoryIndex(StorySettings())
    first = index.add(
        item(
            1,
            "Geneva International Discussions hold new round",
            "The 66th round took place, co-chaired by the OSCE, the UN and the EU.",
            source="Civil.ge",
        )
    )
    ru = index.add(
        item(
            2,
            "В Женеве прошел очередной раунд международных дискуссий",
            "В Женеве завершился 66-й раунд дискуссий по безопасности в Закавказье.",
            source="TASS",
            hours=1.5,
        )
    )
    assert ru.joined and ru.story_id == first.story_id


def test_a_loose_match_to_a_second_story_does_not_merge_two_events() -> None:
    index = StoryIndex(StorySettings())
    for i, title in enumerate(BACKGROUND):
        index.add(item(100 + i, title, source=f"B{i}", hours=-6 + i * 0.2))
    a = index.add(item(1, "Kars railway talks resume in Baku", source="APA"))
    b = index.add(
        item(
            2,
            "Anaklia port tender reopened for bids from European builders",
            "Four consortia have until March to submit offers for the deep-sea port.",
            source="Civil.ge",
        )
    )
    c = index.add(
        item(
            3,
            "Kars railway talks resume in Baku as transport ministers meet",
            "The railway would carry freight to Black Sea ports such as Anaklia.",
            source="Trend",
            hours=0.5,
        )
    )
    assert c.joined and c.story_id == a.story_id and c.merged == ()
    assert index.story_of(2) == b.story_id != a.story_id


# -- identity and merges ------------------------------------------------------------------


def test_bridging_entry_merges_stories_and_older_id_survives() -> None:
    index = StoryIndex(StorySettings())
    a = index.add(item(1, "Gyzylbulag mining protest", source="Report.az"))
    b = index.add(item(2, "Stepanakert bread queues", source="Azatutyun"))
    assert a.story_id < b.story_id
    c = index.add(
        item(
            3,
            "Gyzylbulag mining protest blocks Lachin road; Stepanakert residents queue for bread",
            source="JAMnews",
            hours=1,
        )
    )
    assert c.joined and c.story_id == a.story_id and c.merged == (b.story_id,)
    assert {index.story_of(e) for e in (1, 2, 3)} == {a.story_id}
    assert "bridged" in c.reason


def test_story_keeps_caller_ids_and_new_ids_follow_loaded_ones() -> None:
    index = StoryIndex(StorySettings())
    index.load([(item(10, "Upper Lars checkpoint closed due to avalanche threat"), 40)])
    joined = index.add(
        item(11, "Avalanche threat closes Upper Lars checkpoint", "", hours=1, source="JAMnews")
    )
    assert joined.story_id == 40 and joined.joined
    fresh = index.add(item(12, "Baku metro opens new station", source="Trend", hours=1))
    assert fresh.story_id == 41
    chosen = index.add(item(13, "Qarabag qualifies for play-off", hours=2), story_id_for_new=77)
    assert chosen.story_id == 77
    with pytest.raises(ValueError, match="already in use"):
        index.add(item(14, "Yerevan apricot exports rise", hours=2), story_id_for_new=77)


def test_evict_forgets_old_entries() -> None:
    index = StoryIndex(StorySettings())
    index.add(item(1, "Gazakh villages border commission protocol signed"))
    assert index.evict(T0 + timedelta(hours=1)) == 1 and len(index) == 0
    later = index.add(item(2, "Gazakh villages border commission protocol signed", hours=2))
    assert not later.joined
    index.add(item(3, "Tbilisi hosts a regional transport forum", hours=5))
    assert index.evict(T0) == 0 and len(index) == 2  # nothing that old
    assert index.evict(T0 + timedelta(hours=3)) == 1 and len(index) == 1
    assert "not grouped" in index.explain(2) and "not grouped" not in index.explain(3)


def test_entries_share_one_string_per_word_and_evict_leaves_no_postings() -> None:
    """A window holds tens of thousands of entries: a word is one string for all of them."""
    index = StoryIndex(StorySettings())
    for entry_id, title in enumerate(["Varzaqan rescue teams", "Rescue in Varzaqan"], 1):
        stored = encode_terms(*story_terms(title, "Mountain rescue in fog"))
        index.add(
            StoryItem(
                entry_id=entry_id, source="S", published=T0, title=title, summary="", terms=stored
            )
        )
    first, second = (index._items[i].vec for i in (1, 2))
    shared = first.keys() & second.keys()
    assert word_key("Varzaqan") in shared
    assert all(next(k for k in second if k == key) is key for key in first if key in shared)
    assert index.evict(T0 + timedelta(hours=1)) == 2
    assert not index._postings and not index._identity and len(index) == 0


def test_explain_names_the_match_and_signals() -> None:
    index = StoryIndex(StorySettings())
    index.add(item(1, "Erdogan joins Aliyev at Baku military parade", source="Reuters"))
    index.add(item(2, "Victory parade in Baku with Erdogan and Aliyev", source="Trend", hours=1))
    text = index.explain(2)
    assert "story 1" in text and "entry 1" in text and "text" in text and "hours" in text
    assert "not grouped" in index.explain(99)


@st.composite
def clear_stories(draw: st.DrawFn) -> list[StoryItem]:
    """Stories with words of their own, reported 1-3 times each within a few hours."""
    vocab = [f"{a}{b}word" for a in "bdgkmprstvz" for b in "aeiou"]
    count = draw(st.integers(1, 6))
    out: list[StoryItem] = []
    for story in range(count):
        words = vocab[story * 5 : story * 5 + 5]
        for copy in range(draw(st.integers(1, 3))):
            out.append(
                item(
                    len(out) + 1,
                    " ".join(words[copy:] + words[:copy]),
                    source=f"S{story}-{copy}",
                    hours=draw(st.floats(0, 4)),
                )
            )
    return out


def _partition(assignment: dict[int, int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for entry, story in assignment.items():
        groups.setdefault(story, set()).add(entry)
    return {frozenset(g) for g in groups.values()}


@settings(max_examples=40, deadline=None)
@given(items=clear_stories(), data=st.data())
def test_grouping_does_not_depend_on_arrival_order(
    items: list[StoryItem], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(items))
    index = StoryIndex(StorySettings())
    for it in order:
        index.add(it)
    arrived = {it.entry_id: index.story_of(it.entry_id) for it in items}
    assert _partition(arrived) == _partition(group(items, StorySettings()))
    assert len(_partition(arrived)) == len({it.source.split("-")[0] for it in items})


# -- settings -----------------------------------------------------------------------------


def _section(text: str) -> tomlutil.Section:
    return tomlutil.loads(text, "digest.toml").root().table("stories")


def test_settings_defaults_and_values(tmp_path: Path) -> None:
    assert StorySettings.from_section(_section(""), tmp_path) == StorySettings()
    s = StorySettings.from_section(
        _section("[stories]\nwindow_hours = 48\njoin_score = 0.2\nhalf_life_hours = 6\n"),
        tmp_path,
    )
    assert (s.window_hours, s.join_score, s.half_life_hours) == (48, 0.2, 6)


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("windw_hours = 3", "windw_hours", "unknown key"),
        ("window_hours = 0", "window_hours", "positive"),
        ("join_score = 1.5", "join_score", "at most 1"),
        ("join_score = 'high'", "join_score", "must be a number"),
        ("min_distinct_words = 0", "min_distinct_words", "at least 1"),
        ("window_hours = 12\nsame_source_hours = 24", "same_source_hours", "window_hours"),
    ],
)
def test_settings_errors_name_the_key(tmp_path: Path, body: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        StorySettings.from_section(_section(f"[stories]\n{body}\n"), tmp_path)
    assert err.value.key == f"stories.{key}" and message in str(err.value)


# -- evaluation ---------------------------------------------------------------------------


def _labelled(sid: str, story: str, source: str, minutes: int, title: str) -> dict[str, str]:
    at = (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": sid,
        "story": story,
        "source": source,
        "published": at,
        "title": title,
        "summary": "",
        "link": f"https://example.org/{sid}",
    }


SMALL_SET = [
    _labelled("a1", "s1", "Reuters", 0, "AZAL plane crashes near Aktau, survivors reported"),
    _labelled("a2", "s1", "APA", 30, "AZAL plane flying to Grozny crashes near Aktau"),
    _labelled("b1", "s2", "Trend", 60, "Baku Energy Week opens with ministers"),
    _labelled("c1", "s3", "APA", 90, "Shusha is liberated, president says"),
    _labelled("c2", "s3", "Reuters", 120, "Karabakh's second city taken, Baku claims"),
    _labelled("d1", "s4", "OC Media", 150, "Tbilisi air quality worsens sharply"),
    _labelled("d2", "s5", "JAMnews", 160, "Tbilisi air quality worsens sharply"),
]


def test_evaluation_figures_on_a_small_set() -> None:
    ev = evaluate_stories(SMALL_SET, StorySettings())
    assert (ev.gold_pairs, ev.predicted_pairs, ev.true_pairs) == (2, 2, 1)
    assert ev.pair_precision == 0.5 and ev.pair_recall == 0.5 and ev.pair_f1 == 0.5
    assert ev.bcubed_precision == pytest.approx(6 / 7)
    assert ev.bcubed_recall == pytest.approx(6 / 7)
    assert ev.bcubed_f1 == pytest.approx(6 / 7)
    assert [(p.a["id"], p.b["id"]) for p in ev.wrongly_merged] == [("d1", "d2")]
    assert [(p.a["id"], p.b["id"]) for p in ev.wrongly_split] == [("c1", "c2")]
    report = format_story_evaluation(ev)
    assert "pairwise  precision 0.500  recall 0.500  F1 0.500" in report
    assert "B-cubed   precision 0.857  recall 0.857  F1 0.857" in report
    assert "wrongly merged pairs: 1" in report and "d2 " in report
    assert "Karabakh's second city" in report


def test_load_story_file_reports_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(SMALL_SET[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_story_file(path)
    assert err.value.line == 2
    path.write_text(json.dumps({"id": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="story"):
        load_story_file(path)
    path.write_text("".join(json.dumps(o) + "\n" for o in SMALL_SET), encoding="utf-8")
    assert load_story_file(path) == SMALL_SET


# -- stored words -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=200))
def test_stored_words_round_trip(title: str, summary: str) -> None:
    title_terms, summary_terms = story_terms(title, summary)
    decoded = decode_terms(encode_terms(title_terms, summary_terms))
    if decoded is None:  # a key the encoding cannot carry: grouping computes it again
        return
    assert decoded[0] == list(title_terms.keys)
    assert decoded[1] == list(dict.fromkeys(summary_terms.keys))
    assert decoded[2] == set(title_terms.names | summary_terms.names)


def test_stored_words_group_exactly_like_words_computed_on_the_spot() -> None:
    texts = [
        ("Pashinyan and Aliyev meet in Geneva", "Talks on the peace treaty resumed on Monday."),
        ("Пашинян и Алиев встретились в Женеве", "Переговоры о мирном договоре."),
        ("Georgia's parliament passes budget", "The vote was 84 to 40."),
        ("Armenia, Azerbaijan leaders meet in Geneva", "A peace treaty was discussed."),
    ]
    plain, stored = StoryIndex(StorySettings()), StoryIndex(StorySettings())
    for i, (title, summary) in enumerate(texts, 1):
        raw = item(i, title, summary, source=f"s{i}", hours=i)
        with_words = StoryItem(
            **{
                **{f: getattr(raw, f) for f in raw.__slots__},
                "terms": encode_terms(*story_terms(title, summary)),
            }
        )
        assert plain.add(raw) == stored.add(with_words)


def test_words_from_another_normalisation_version_are_ignored() -> None:
    encoded = encode_terms(*story_terms("Pashinyan in Brussels", "EU talks."))
    assert encoded is not None and decode_terms(encoded) is not None
    assert decode_terms("0" + encoded[1:]) is None
    assert decode_terms("garbage") is None
    assert decode_terms(None) is None
