"""Evaluation of the tagging rules against a labelled file (``digest eval``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import DigestError
from digest.evaluate import evaluate_tags, format_tag_evaluation, read_jsonl
from digest.tag import load_rules

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "data" / "tagging-small.jsonl"

EVAL_RULES = """\
[tags.armenia]
terms = ["armenia{,n,ns}", "мирзоян*", "армени{я,и}"]

[tags.azerbaijan]
terms = ["azerbaijan{,i}", "shamakhi"]

[tags.georgia]
terms = ["georgia{,n}", "tbilisi"]
exclude = ["georgia tech"]

[tags.diplomacy]
threshold = 3.0
terms = [
  "foreign minist{er,ers}^2", "talks", "meet", "treaty^2", "summons", "ambassador^2",
  "переговор*", "border commission{,s}^2",
]

[derived]
south-caucasus = "armenia or azerbaijan or georgia"
south-caucasus-diplomacy = "south-caucasus and diplomacy"
"""


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(EVAL_RULES, encoding="utf-8")
    return path


def test_figures_on_the_small_file_are_exact(rules_path: Path) -> None:
    ev = evaluate_tags(load_rules(rules_path), read_jsonl(SMALL))
    assert ev.items == 12
    figures = {s.label: (s.tp, s.fp, s.fn, s.tn) for s in ev.labels}
    assert figures == {
        "diplomacy": (6, 0, 0, 6),
        "south_caucasus": (5, 1, 2, 4),
        "south_caucasus_diplomacy": (3, 0, 1, 8),
    }
    scd = ev.label("south_caucasus_diplomacy")
    assert (scd.precision, scd.recall) == (1.0, 0.75)
    assert round(scd.f1, 4) == 0.8571
    assert [m.id for m in ev.label("south_caucasus").false_positives] == ["s08"]
    assert [m.id for m in ev.label("south_caucasus").false_negatives] == ["s04", "s12"]
    assert ev.label("diplomacy").false_negatives == ()


def test_report_lists_figures_then_explained_misses(rules_path: Path) -> None:
    ev = evaluate_tags(load_rules(rules_path), read_jsonl(SMALL))
    lines = format_tag_evaluation(ev).splitlines()
    assert lines[0] == f"items: 12  rules: {rules_path}"
    assert lines[1] == "diplomacy                 P=1.000  R=1.000  F1=1.000  (tp=6 fp=0 fn=0 tn=6)"
    assert lines[2].startswith("south_caucasus            P=0.833  R=0.714  F1=0.769")
    assert lines[3].startswith("south_caucasus_diplomacy  P=1.000  R=0.750  F1=0.857")
    text = "\n".join(lines)
    assert ", diplomacy (" not in text  # no misses, no section
    assert (
        "false negatives, south_caucasus_diplomacy (1):\n"
        "  s04  Border commissions agree on a new section\n"
        "      south-caucasus-diplomacy = south-caucasus and diplomacy: south-caucasus no; "
        "diplomacy yes 6/3 [t:'Border commissions'+6]"
    ) in text
    assert "armenia no 1/2 [s:'Armenia'+1]; azerbaijan no 1/2 [s:'Azerbaijan'+1]" in text
    assert "false positives, south_caucasus (1):\n  s08  Coffee fair opens in Armenia" in text
    assert "armenia yes 3/2 [t:'Armenia'+3]" in text


def test_the_default_rules_on_the_small_file() -> None:
    ev = evaluate_tags(load_rules(ROOT / "config" / "rules.toml"), read_jsonl(SMALL))
    scd = ev.label("south_caucasus_diplomacy")
    assert scd.fp == 0 and scd.tp >= 3
    assert ev.label("south_caucasus").fp == 0


def test_labels_without_a_tag_are_reported_not_scored(rules_path: Path) -> None:
    items = [{"title": "Armenia", "labels": {"armenia": True, "sport": False}}]
    ev = evaluate_tags(load_rules(rules_path), items)
    assert ev.unknown_labels == {"sport": 1}
    assert "sport" in format_tag_evaluation(ev)
    assert [s.label for s in ev.labels] == ["armenia"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "each line must be a JSON object"),
        ('{"labels": {}}', 'missing "title"'),
        ('{"title": "x", "labels": {"a": "yes"}}', "true/false"),
        ('{"title": "x", "summary": 3, "labels": {}}', '"summary" must be a string'),
    ],
)
def test_a_bad_line_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"title": "fine", "labels": {}}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DigestError) as info:
        read_jsonl(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_an_unreadable_file_is_a_digest_error(tmp_path: Path) -> None:
    with pytest.raises(DigestError, match="cannot read the labelled file"):
        read_jsonl(tmp_path / "missing.jsonl")
