"""The tagging engine: matching, scoring, cancelling context, derived tags, rules-file errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest import matcher as matcher_module
from digest import tag as tag_module
from digest import tomlutil
from digest.errors import ConfigError
from digest.tag import (
    Rules,
    TagDecision,
    check_rules,
    check_selection,
    format_explanation,
    load_rules,
    parse_expression,
    parse_rules,
    tag_text,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES = ROOT / "config" / "rules.toml"

SMALL_RULES = """\
selection = "region-talks"
source_score = 4.0

[defaults]
threshold = 2.0
weights = { title = 3.0, summary = 1.0, content = 0.5 }

[tags.armenia]
terms = ["armenia", "armenian{,s}", "pashin{y,i}an", "армени{я,и,ю,ей}", "ереван*"]
exclude = ["armenia, colombia"]

[[tags.armenia.unless]]
context = ["quindio"]
cancels = ["armenia"]

[tags.georgia]
terms = ["georgia", "georgian{,s}", "tbilisi", "грузи{я,и,ю,ей}", "грузин*"]
exclude = ["georgia tech", "south georgia"]

[[tags.georgia.unless]]
context = ["atlanta", "savannah"]

[tags.talks]
threshold = 3.0
terms = [
  "foreign minist{er,ers,ry}^2", "talks", "meet{,s}", "secretary of state^2", "shelling^-1",
]
cased_terms = ["UN^1.5"]
patterns = ['\\bsummit(?:s|eers)?\\b']

[tags.party]
terms = ["georgian dream"]

[derived]
region = "armenia or georgia"
region-talks = "region and talks"
quiet = "region and not talks"
"""


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Rules:
    return load_rules(write_rules(tmp_path_factory.mktemp("rules"), SMALL_RULES))


@pytest.fixture(scope="module")
def default() -> Rules:
    return load_rules(DEFAULT_RULES)


def tags(rules: Rules, title: str, summary: str = "", **kw: object) -> tuple[str, ...]:
    return tag_text(rules, title=title, summary=summary, **kw).tags  # type: ignore[arg-type]


# -- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    ["Armenia votes", "Armenian leaders", "Armenians abroad", "Armenia's choice", "ARMENIA!",
     "(armenian)", "Pashinyan speaks", "Pashinian speaks", "pro-Armenian rally"],
)  # fmt: skip
def test_inflections_possessives_and_variants_match(small: Rules, title: str) -> None:
    assert "armenia" in tags(small, title)


@pytest.mark.parametrize(
    "title", ["Armenianism as a topic", "Georgiana arrives", "Tbilisian", "Xarmenia", "armenia2"]
)
def test_terms_match_whole_words_only(small: Rules, title: str) -> None:
    assert tags(small, title) == ()


def test_georgian_matches_but_georgiana_does_not(small: Rules) -> None:
    assert "georgia" in tags(small, "A Georgian minister")
    assert "georgia" not in tags(small, "Georgiana, a minister")


def test_phrases_match_across_spaces_hyphens_and_line_breaks(small: Rules) -> None:
    for text in ("Foreign minister", "foreign  ministers", "foreign-ministry", "foreign\nminister"):
        decision = tag_text(small, title="", summary=text)
        assert decision.results["talks"].score == 2.0, text


def test_cyrillic_terms_with_case_endings(small: Rules) -> None:
    assert "armenia" in tags(small, "Визит в Армению")
    assert "armenia" in tags(small, "Президент Армении")
    assert "armenia" in tags(small, "Ереванский форум")
    assert "georgia" in tags(small, "Переговоры с Грузией")
    assert "georgia" in tags(small, "Грузинская делегация")
    assert "armenia" not in tags(small, "Арменистан")  # not a listed case ending


def test_accents_and_typographic_apostrophes_fold(tmp_path: Path) -> None:
    rules = load_rules(
        write_rules(
            tmp_path,
            '[tags.k]\nterms = ["qarabag", "kilic", "charge d\'affaires"]\nthreshold = 3.0\n',
        )
    )
    assert tags(rules, "Qarabağ and Kılıç") == ("k",)
    decision = tag_text(rules, title="Chargé d’affaires summoned")
    assert decision.results["k"].matches[0].text == "Chargé d’affaires"


def test_cased_terms_need_exact_case(small: Rules) -> None:
    decision = tag_text(small, title="", summary="The UN said")
    assert decision.results["talks"].score == 1.5
    assert "talks" not in tag_text(small, title="", summary="Tell un and Un").results


def test_field_weights_each_term_once_per_field_and_threshold(small: Rules) -> None:
    title_only = tag_text(small, title="Talks resume")
    assert title_only.results["talks"].score == 3.0 and title_only.has("talks")
    summary = tag_text(small, title="News", summary="talks, talks and more talks")
    assert summary.results["talks"].score == 1.0 and not summary.has("talks")
    content = tag_text(small, title="News", content="Talks. Meet. Foreign minister.")
    assert content.results["talks"].score == 2.0  # (1 + 1 + 2) * 0.5


def test_negative_weight_lowers_the_score(small: Rules) -> None:
    decision = tag_text(small, title="Talks", summary="Shelling continued")
    assert decision.results["talks"].score == 2.0
    assert not decision.has("talks")


def test_patterns_count_with_weight_one(small: Rules) -> None:
    decision = tag_text(small, title="Summiteers gather")
    match = decision.results["talks"].matches[0]
    assert (match.field, match.text, match.weight) == ("title", "Summiteers", 3.0)


def test_phrase_credits_shorter_terms_of_other_tags_inside_it(small: Rules) -> None:
    decision = tag_text(small, title="Georgian Dream wins")
    assert decision.tags[:2] == ("georgia", "party")
    assert decision.results["georgia"].matches[0].text == "Georgian Dream"


def test_exclude_phrase_cancels_the_term_it_contains(small: Rules) -> None:
    decision = tag_text(small, title="Georgia Tech wins; iceberg near South Georgia")
    result = decision.results["georgia"]
    assert not result.passed and result.score == 0
    assert [m.text for m in result.cancelled] == ["Georgia Tech", "South Georgia"]
    assert result.cancelled[0].reason == "excluded phrase 'georgia tech'"


def test_context_cancels_terms_anywhere_in_the_entry(small: Rules) -> None:
    decision = tag_text(small, title="Georgia storm damage", summary="Roads closed near Savannah.")
    result = decision.results["georgia"]
    assert not result.passed
    assert result.cancelled[0].text == "Georgia"
    assert result.cancelled[0].reason == "context 'Savannah' in summary"
    # without the context the same title passes
    assert "georgia" in tags(small, "Georgia storm damage", "Roads closed near Tbilisi.")


def test_context_cancels_only_the_listed_terms(small: Rules) -> None:
    decision = tag_text(small, title="Armenia festival", summary="Armenian growers in Quindío")
    result = decision.results["armenia"]
    assert [m.term for m in result.cancelled] == ["armenia"]
    assert [m.term for m in result.matches] == ["armenian{,s}"]


# -- derived tags and sources -------------------------------------------------------------------


def test_derived_tags_follow_their_expressions(small: Rules) -> None:
    both = tag_text(small, title="Armenian foreign minister holds talks")
    assert both.tags == ("armenia", "talks", "region", "region-talks")
    assert both.results["region-talks"].expression == "region and talks"
    quiet = tag_text(small, title="Tbilisi weather")
    assert quiet.tags == ("georgia", "region", "quiet")
    assert quiet.scores["quiet"] == 1.0  # and: smallest operand; not: 1


def test_source_tags_count_as_present(small: Rules) -> None:
    decision = tag_text(small, title="Weather", source_tags=["georgia", "local"])
    assert decision.tags == ("georgia", "region", "quiet", "local")
    assert decision.scores["georgia"] == 4.0
    assert decision.results["georgia"].from_source
    assert "carries this tag" in format_explanation(decision, None)


def test_selected_gives_a_reason(small: Rules) -> None:
    decision = tag_text(small, title="Armenian foreign minister holds talks")
    ok, reason = decision.selected("region-talks")
    assert ok
    assert reason.startswith("selected: region-talks = region and talks is true")
    miss = tag_text(small, title="Armenian weather", summary="talks")
    ok, reason = miss.selected("region-talks")
    assert not ok
    assert "talks absent (score 1, threshold 3)" in reason
    ok, reason = miss.selected("armenia and not talks")
    assert ok and reason.startswith("selected: armenia and not talks is true")


def test_selection_checks(small: Rules) -> None:
    assert check_selection(small, "region and talks") is None
    assert check_selection(small, "regoin") == "unknown tag 'regoin' (did you mean 'region'?)"
    with pytest.raises(ConfigError, match="unknown tag"):
        tag_text(small, title="x").selected("nope")


def test_expression_parser_precedence() -> None:
    expr = parse_expression("a or not b and (c or d)")
    assert repr(expr).startswith("Or(operands=(Name(name='a'), And(")


# -- explanation --------------------------------------------------------------------------------


def test_explanation_lists_scores_matches_cancellations_and_selection(small: Rules) -> None:
    decision = tag_text(
        small, title="Pashinyan and Georgia Tech", summary="Foreign ministers meet in Atlanta"
    )
    text = format_explanation(decision, "region-talks")
    assert "PASS  armenia  score 3 / threshold 2" in text
    assert "+ title     'Pashinyan' (pashin{y,i}an)  +3" in text
    assert "x title     'Georgia Tech' (georgia tech) cancelled: excluded phrase" in text
    assert "+ summary   'Foreign ministers' (foreign minist{er,ers,ry})  +2" in text
    assert "fail  talks  score 3" not in text and "PASS  talks  score 3 / threshold 3" in text
    assert "region-talks = region and talks  -> true (region=yes, talks=yes)" in text
    assert text.endswith("selection 'region-talks': selected: region-talks = region and talks "
                         "is true (region present (region = armenia or georgia); talks present "
                         "(score 3, threshold 3))\n")  # fmt: skip


def test_explanation_when_nothing_matches(tmp_path: Path) -> None:
    rules = load_rules(write_rules(tmp_path, '[tags.a]\nterms = ["alpha"]\n'))
    assert format_explanation(tag_text(rules, title="beta"), None) == "no tag matched\n"


# -- robustness ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(title=st.text(), summary=st.text(), content=st.text(max_size=300))
def test_any_text_is_tagged_without_error_and_deterministically(
    default: Rules, title: str, summary: str, content: str
) -> None:
    first = tag_text(default, title=title, summary=summary, content=content)
    second = tag_text(default, title=title, summary=summary, content=content)
    assert first == second and first.results == second.results
    assert set(first.tags) <= set(default.names)
    assert all(first.results[t].passed for t in first.tags)
    format_explanation(first, default.selection)


VOCABULARY = ["Armenia", "Georgia's", "Tech", "Atlanta", "Грузией", "talks", "UN", "İstanbul",
              "ß", "-", " ", "'", "’", "Qarabağ", "foreign", "minister", "\n", "South"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=12))
def test_word_soup_from_the_vocabulary_never_raises(small: Rules, words: list[str]) -> None:
    text = " ".join(words)
    decision = tag_text(small, title=text, summary="".join(words))
    assert decision == tag_text(small, title=text, summary="".join(words))
    for result in decision.results.values():
        assert result.passed == (result.tag in decision.tags)


# -- fast paths: the same results as the general code -------------------------------------------

SCAN_VOCABULARY = [
    "Armenia", "armenia's", "ARMENIA", "Georgia", "georgia", "GEORGIA", "Tech", "Atlanta",
    "Грузией", "ЕС", "ес", "talks", "UN", "un", "Un", "US", "us", "U.S.", "u.s.", "EU", "eu",
    "FM", "fm", "PACE", "pace", "Qarabağ", "Qarabag", "QARABAĞ", "Pashinyan", "PASHINYAN",
    "Kobakhidze", "kenyan", "summit", "Summits", "foreign", "minister", "South", "Dream",
    "ОДКБ", "одкб", "Shelling", "-", " ", "'", "’", ",", "\n", "İstanbul", "ß",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SCAN_VOCABULARY), max_size=25), st.integers(0, 2))
def test_quick_scan_scores_as_the_exact_scan(default: Rules, words: list[str], field: int) -> None:
    """The quick scan keeps the first match of each text in lower case; the exact one keeps
    every distinct text as written. Both must give every tag the same score."""
    texts = ["", "", ""]
    texts[field] = " ".join(words)
    texts[(field + 1) % 3] = "".join(words[::2])
    matcher = default.matcher
    quick = tag_module._scan(matcher, (texts[0], texts[1], texts[2]))
    exact = tag_module._scan(matcher, (texts[0], texts[1], texts[2]), exact=True)
    assert quick.keys() == exact.keys()
    for index, hits in exact.items():
        assert tag_module._weigh(matcher, index, quick[index]) == tag_module._weigh(
            matcher, index, hits
        )


def test_explanation_quotes_matches_as_written(default: Rules) -> None:
    decision = tag_text(default, title="QARABAĞ and Qarabag", summary="The US and us")
    text = format_explanation(decision, None)
    assert "'QARABAĞ'" in text and "'US'" in text


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=0x2100)))
def test_fold_is_the_translation_table(text: str) -> None:
    assert matcher_module.fold(text) == text.translate(matcher_module.FOLD)


@pytest.mark.parametrize(
    ("pattern", "needed"),
    [
        (r"\b(?!kenyan|libyan)[a-z]{3,}yan\b", {"yan"}),
        (r"\b[a-z]{2,}(?:shvili|dze)\b", {"shvili", "dze"}),
        (r"\bsummit(?:s|eers)?\b", {"summit"}),
        (r"(?:ab|cd)+e", {"ab", "cd"}),
        (r"(?i:abc)x", {"x"}),
        (r"(?i)abc", None),
        (r"x*", None),
        (r"a|bc", {"a", "bc"}),
        (r"a|[bc]", None),
        (r"(?:a|)b?", None),
        (r"[ab]", None),
    ],
)
def test_required_text_of_patterns(pattern: str, needed: set[str] | None) -> None:
    assert matcher_module.required_text(pattern) == (None if needed is None else frozenset(needed))


PATTERN_RULES = """[tags.a]
patterns = ['\\b(?!kenyan)[a-z]{3,}yan\\b', '\\b[a-z]{2,}(?:shvili|dze)\\b', 'x[0-9]+', 'van\\b']
"""


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "pashinyan",
                "kenyan",
                "yan",
                "kobakhidze",
                "dze",
                "ivanishvili",
                "x1",
                "x",
                "yerevan",
                "van",
                " ",
                "-",
                "ж",
            ]
        ),  # fmt: skip
        max_size=12,
    )
)
def test_patterns_that_cannot_match_are_left_out_without_effect(
    tmp_path_factory: pytest.TempPathFactory, words: list[str]
) -> None:
    rules = load_rules(write_rules(tmp_path_factory.mktemp("p"), PATTERN_RULES))
    matcher = rules.matcher
    assert matcher.pattern_re is not None
    text = "".join(words)
    every = [(m.span(), m.lastgroup) for m in matcher.pattern_re.finditer(text)]
    some = matcher.patterns_for(text)
    assert every == ([] if some is None else [(m.span(), m.lastgroup) for m in some.finditer(text)])


# -- default rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Azerbaijani delegation arrives", "azerbaijan"),
        ("Azeri gas flows", "azerbaijan"),
        ("Aliev and Aliyev", "azerbaijan"),
        ("Kobakhidze in Brussels", "georgia"),
        ("Karabakh refugees", "nagorno-karabakh"),
        ("Qarabağ fans", "nagorno-karabakh"),
        ("Artsakh authorities", "nagorno-karabakh"),
        ("Mirzoyan and Bayramov", "armenia"),
        ("Азербайджана и Армении", "azerbaijan"),
        ("Делегация Карабаха", "nagorno-karabakh"),
        ("Secretary of State in town", "us"),
    ],
)
def test_default_rules_vocabulary(default: Rules, title: str, expected: str) -> None:
    assert expected in tags(default, title)


def test_default_rules_know_the_us_state_and_the_colombian_city(default: Rules) -> None:
    assert "south-caucasus" not in tags(default, "Georgia Bulldogs win", "Fans in Athens, GA")
    assert "south-caucasus" not in tags(default, "Governor signs Georgia budget", "Fulton County")
    assert "south-caucasus" not in tags(default, "Festival in Armenia, Quindío")
    assert "south-caucasus" not in tags(default, "Earthquake near North Ossetia")
    assert "south-caucasus-diplomacy" in tags(
        default, "Georgian foreign minister meets EU envoy", "Talks in Brussels"
    )


def test_default_rules_load_with_a_valid_selection(default: Rules) -> None:
    assert default.selection == "south-caucasus-diplomacy"
    assert default.path == DEFAULT_RULES
    assert {"armenia", "azerbaijan", "georgia", "nagorno-karabakh", "abkhazia", "south-ossetia",
            "nakhchivan", "russia", "turkey", "iran", "eu", "us", "un", "osce", "diplomacy",
            "security", "economy-energy-transport", "domestic-politics", "south-caucasus",
            "south-caucasus-diplomacy"} <= set(default.names)  # fmt: skip


# -- rules-file errors --------------------------------------------------------------------------


def error_for(
    tmp_path: Path, text: str, load: Callable[[Path], object] = load_rules
) -> ConfigError:
    path = write_rules(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value


RULES_FILE_ERRORS = pytest.mark.parametrize(
    ("text", "key", "line", "message"),
    [
        ('[tags.a]\nterms = ["x"]\ncolour = 1\n', "tags.a.colour", 3, "unknown key"),
        ('[tags.a]\nterms = "x"\n', "tags.a.terms", 2, "must be an array, not a string"),
        ('[tags.a]\nterms = ["x", 3]\n', "tags.a.terms[2]", 2, "items must be strings"),
        ('[tags.a]\nthreshold = "high"\nterms = ["x"]\n', "tags.a.threshold", 2, "a number"),
        ('[tags.a]\nterms = ["x"]\npatterns = ["(unclosed"]\n', "tags.a.patterns[1]", 3,
         "invalid regular expression"),
        ('[tags.a]\nterms = ["x"]\npatterns = ["(x)"]\n', "tags.a.patterns[1]", 3,
         "capturing group"),
        ('[tags.a]\nterms = ["x"]\npatterns = ["Upper"]\n', "tags.a.patterns[1]", 3,
         "lower-cased"),
        ('[tags.a]\nterms = ["x{y"]\n', "tags.a.terms[1]", 2, "unbalanced braces"),
        ('[tags.a]\nterms = ["ab*c"]\n', "tags.a.terms[1]", 2, "'*' may only end a word"),
        ('[tags.a]\nterms = ["x"]\n[[tags.a.unless]]\ncontext = ["y"]\ncancels = ["z"]\n',
         "tags.a.unless[1].cancels[1]", 5, "not one of this tag's terms"),
        ('[tags.A]\nterms = ["x"]\n', "tags.A", 1, "lower-case letters"),
        ('[tags.a]\nterms = ["x"]\n[derived]\nb = "a and c"\n', "derived.b", 4,
         "unknown tag 'c'"),
        ('[tags.a]\nterms = ["x"]\n[derived]\nb = "a and (a or"\n', "derived.b", 4,
         "expected a tag name or '(' at column 12 (end)"),
        ('[tags.a]\nterms = ["x"]\n[derived]\nb = "a and"\nc = "a ) a"\n', "derived.b", 4,
         "expected a tag name"),
        ('[tags.a]\nterms = ["x"]\n[derived]\nb = "c or a"\nc = "b and a"\n', "derived.b", 4,
         "derived tags form a cycle: b -> c -> b"),
        ('[tags.a]\nterms = ["x"]\n[derived]\na = "a"\n', "derived.a", 4, "already a tag"),
        ('selection = "aa"\n[tags.a]\nterms = ["x"]\n', "selection", 1, "did you mean 'a'?"),
        ('[tags.a]\ndescription = "only words"\n', "tags.a", 1, "at least one of terms"),
        ('[defaults]\nweights = { title = 3, body = 1 }\n[tags.a]\nterms = ["x"]\n',
         "defaults.weights.body", 2, "unknown key"),
        ('[tags.a]\nterms = ["x"]\npatterns = ["(?s)x"]\n', "tags.a.patterns[1]", 3,
         "write flags inside a group"),
    ],
)  # fmt: skip


@RULES_FILE_ERRORS
def test_rules_file_errors_name_file_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, message: str
) -> None:
    error = error_for(tmp_path, text)
    assert error.path == str(tmp_path / "rules.toml")
    assert (error.key, error.line) == (key, line)
    assert message in str(error)
    assert str(error).startswith(f"{tmp_path / 'rules.toml'}:{line}: {key}: ")


@RULES_FILE_ERRORS
def test_checking_a_rules_file_finds_what_loading_finds(
    tmp_path: Path, text: str, key: str, line: int, message: str
) -> None:
    assert str(error_for(tmp_path, text, check_rules)) == str(error_for(tmp_path, text))


def test_checked_rules_compile_to_the_loaded_rules(tmp_path: Path) -> None:
    path = write_rules(tmp_path, SMALL_RULES)
    checked = parse_rules(check_rules(path))
    loaded = load_rules(path)
    assert checked == loaded
    title = "Armenian foreign minister in talks, UN summit"
    assert tag_text(checked, title=title) == tag_text(loaded, title=title)


def test_a_missing_rules_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_rules(tmp_path / "absent.toml")


def test_parse_rules_takes_a_document() -> None:
    doc = tomlutil.loads('[tags.a]\nterms = ["alpha"]\n', "inline.toml")
    rules = parse_rules(doc)
    assert rules.path == Path("inline.toml")
    assert isinstance(tag_text(rules, title="Alpha"), TagDecision)
