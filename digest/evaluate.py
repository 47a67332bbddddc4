"""Measure the tagging rules against a labelled file (``digest eval``).

Each line of the file is a JSON object with ``title``, optional ``summary`` and ``content``,
optional ``source_tags``, and ``labels``: a map from tag name (with ``_`` for ``-``) to the
expected truth. The report gives precision, recall and F1 per label and, for every wrong
decision, the evidence the tagger saw, so a rules author can fix a class of errors rather than
guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.errors import DigestError
from digest.tag import Rules, explain_tag, tag_text


@dataclass(frozen=True, slots=True, kw_only=True)
class Miss:
    """One wrong decision: a false positive or a false negative."""

    id: str
    title: str
    #: why the tagger decided as it did (matched terms, cancelled matches, scores)
    explanation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelScore:
    label: str
    tag: str
    tp: int
    fp: int
    fn: int
    tn: int
    false_positives: tuple[Miss, ...] = ()
    false_negatives: tuple[Miss, ...] = ()

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TagEvaluation:
    items: int
    labels: tuple[LabelScore, ...]
    #: labels that name no tag of the rules, with the number of items carrying them
    unknown_labels: Mapping[str, int]
    rules_path: Path | None = None

    def label(self, name: str) -> LabelScore:
        for score in self.labels:
            if score.label == name:
                return score
        raise KeyError(name)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a bad line is a DigestError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DigestError(f"{path}: cannot read the labelled file: {exc}") from None
    items: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DigestError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
        problem = _check_item(item)
        if problem:
            raise DigestError(f"{path}:{number}: {problem}")
        items.append(item)
    return items


def _check_item(item: object) -> str | None:
    if not isinstance(item, dict):
        return "each line must be a JSON object"
    if not isinstance(item.get("title"), str):
        return 'missing "title" (a string)'
    for key in ("summary", "content"):
        if not isinstance(item.get(key, ""), str):
            return f'"{key}" must be a string'
    labels = item.get("labels")
    if not isinstance(labels, dict) or not all(isinstance(v, bool) for v in labels.values()):
        return '"labels" must be an object of true/false values'
    tags = item.get("source_tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        return '"source_tags" must be a list of strings'
    return None


def evaluate_tags(rules: Rules, items: Iterable[Mapping[str, Any]]) -> TagEvaluation:
    """Tag every item and compare with its labels, label by label."""
    known = set(rules.names)
    counts: dict[str, list[int]] = {}
    fps: dict[str, list[Miss]] = {}
    fns: dict[str, list[Miss]] = {}
    unknown: dict[str, int] = {}
    total = 0
    for index, item in enumerate(items, start=1):
        total += 1
        decision = tag_text(
            rules,
            title=item.get("title", ""),
            summary=item.get("summary", ""),
            content=item.get("content", ""),
            source_tags=item.get("source_tags", ()),
        )
        for label, expected in item.get("labels", {}).items():
            tag = label.replace("_", "-")
            if tag not in known:
                unknown[label] = unknown.get(label, 0) + 1
                continue
            got = decision.has(tag)
            row = counts.setdefault(label, [0, 0, 0, 0])
            row[(0 if expected else 1) if got else (2 if expected else 3)] += 1
            if got != expected:
                miss = Miss(
                    id=str(item.get("id", f"line {index}")),
                    title=item.get("title", ""),
                    explanation=explain_tag(decision, tag),
                )
                (fps if got else fns).setdefault(label, []).append(miss)
    order = {name.replace("-", "_"): i for i, name in enumerate(rules.names)}
    scores = tuple(
        LabelScore(
            label=label,
            tag=label.replace("_", "-"),
            tp=row[0],
            fp=row[1],
            fn=row[2],
            tn=row[3],
            false_positives=tuple(fps.get(label, ())),
            false_negatives=tuple(fns.get(label, ())),
        )
        for label, row in sorted(counts.items(), key=lambda kv: order[kv[0]])
    )
    return TagEvaluation(items=total, labels=scores, unknown_labels=unknown, rules_path=rules.path)


def format_tag_evaluation(ev: TagEvaluation) -> str:
    """The report ``digest eval`` prints: figures per label, then every miss explained."""
    width = max((len(s.label) for s in ev.labels), default=10) + 2
    source = f"  rules: {ev.rules_path}" if ev.rules_path else ""
    lines = [f"items: {ev.items}{source}"]
    for s in ev.labels:
        lines.append(
            f"{s.label:<{width}}P={s.precision:.3f}  R={s.recall:.3f}  F1={s.f1:.3f}"
            f"  (tp={s.tp} fp={s.fp} fn={s.fn} tn={s.tn})"
        )
    for label, count in sorted(ev.unknown_labels.items()):
        lines.append(f"{label:<{width}}skipped: no such tag in the rules ({count} items)")
    for s in ev.labels:
        for kind, misses in (("false positives", s.false_positives),
                             ("false negatives", s.false_negatives)):  # fmt: skip
            if not misses:
                continue
            lines.append("")
            lines.append(f"{kind}, {s.label} ({len(misses)}):")
            for miss in misses:
                lines.append(f"  {miss.id}  {miss.title}")
                lines.append(f"      {miss.explanation}")
    return "\n".join(lines) + "\n"
