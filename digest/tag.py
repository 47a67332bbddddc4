"""Tag entries by rules: weighted terms, patterns, cancelling context and derived tags.

The rules come from a TOML file (``config/rules.toml`` documents the format in its header), so
users tune them without touching Python. Tagging is pure and never raises on any text: the
caller passes the texts, and gets back a :class:`TagDecision` that records why each tag passed
or not, which ``digest explain`` and ``digest eval`` print.

The terms and patterns are compiled by :mod:`digest.matcher`; derived tags and selections are
expressions of :mod:`digest.expr`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from digest import tomlutil
from digest.errors import ConfigError
from digest.expr import (
    RESERVED,
    Evaluator,
    Expr,
    ExpressionError,
    Name,
    State,
    check_selection_names,
    compile_expr,
    compiled,
    names_in,
    parse_expression,
    unknown_tag,
)
from digest.matcher import CONTEXT, EXCLUDE, TERM, Matcher, Ref, expand_term, fold, split_weight

FieldName = Literal["title", "summary", "content", "source"]
FIELDS: tuple[FieldName, ...] = ("title", "summary", "content")
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldWeights:
    """How much one match counts in each field: a headline says more than the body."""

    title: float = 3.0
    summary: float = 1.0
    content: float = 0.5

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.title, self.summary, self.content)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unless:
    """Context that cancels some of a tag's terms anywhere in the entry (Atlanta for Georgia)."""

    #: terms whose presence anywhere in the entry cancels the matches below
    context: tuple[str, ...]
    #: the tag's own terms or patterns (as written) that are cancelled; empty means all
    cancels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TagRule:
    """A named tag defined by terms; it passes when its score reaches the threshold."""

    name: str
    description: str = ""
    #: case-insensitive terms, as written (``armenia{,n,ns}``, ``азербайджан*``, ``talks^0.5``)
    terms: tuple[str, ...] = ()
    #: terms matched with exact case, for acronyms such as ``US`` or ``UN``
    cased_terms: tuple[str, ...] = ()
    #: regular expressions over the lower-cased, accent-folded text (weight 1)
    patterns: tuple[str, ...] = ()
    #: longer phrases that contain a term but mean something else (``Georgia Tech``)
    exclude: tuple[str, ...] = ()
    unless: tuple[Unless, ...] = ()
    weights: FieldWeights = FieldWeights()
    threshold: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivedTag:
    """A tag computed from other tags with ``and``, ``or``, ``not`` and parentheses."""

    name: str
    expression: str
    expr: Expr = field(repr=False, compare=False)
    evaluate: Evaluator = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """The tagging rules of one file, compiled and ready to use."""

    #: the rules file, named in errors and explanations
    path: Path
    tags: tuple[TagRule, ...]
    #: derived tags, in an order where each comes after the tags it uses
    derived: tuple[DerivedTag, ...] = ()
    #: the default selection (a tag name or an expression), or None
    selection: str | None = None
    #: the score a tag gets when the entry's source carries it
    source_score: float = 5.0
    matcher: Matcher = field(repr=False, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return self.matcher.names


@dataclass(frozen=True, slots=True, kw_only=True)
class TagMatch:
    """One piece of evidence for (or, when cancelled, against) a tag."""

    tag: str
    field: FieldName
    #: the term or pattern as written in the rules (a source tag for field "source")
    term: str
    #: the text that matched, as it appears in the entry
    text: str
    #: what it added to the score (field weight times term weight); 0 when cancelled
    weight: float
    #: why it was cancelled ("" when it counts)
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TagResult:
    """The decision on one tag, with the evidence for it."""

    tag: str
    score: float
    #: None for derived tags
    threshold: float | None
    passed: bool
    matches: tuple[TagMatch, ...] = ()
    cancelled: tuple[TagMatch, ...] = ()
    #: the expression of a derived tag
    expression: str | None = None
    #: True when the entry's source carries this tag
    from_source: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TagDecision:
    """The tags of one entry, and on demand the evidence for each.

    ``results`` is built the first time it is read: the pipeline needs only ``tags`` and
    ``scores``, and skipping the explanation records keeps tagging fast.
    """

    #: the tags that passed, in rule order (base tags, derived tags, then other source tags)
    tags: tuple[str, ...]
    #: the score of every tag that passed
    scores: dict[str, float]
    #: every tag the rules define, in rule order
    known: tuple[str, ...] = ()
    evidence: _Evidence | None = field(default=None, repr=False, compare=False)
    explained: dict[str, TagResult] = field(default_factory=dict, repr=False, compare=False)

    @property
    def results(self) -> dict[str, TagResult]:
        """Every tag with any evidence (a match, a cancelled match, a source), and every
        derived tag, with its score and evidence; tags with none are left out."""
        if not self.explained and self.evidence is not None:
            self.explained.update(_build_results(self.evidence))
        return self.explained

    def has(self, tag: str) -> bool:
        return tag in self.scores

    def selected(self, selection: str) -> tuple[bool, str]:
        """Decide whether the entry is selected; ``selection`` is a tag name or an expression.

        Raises ConfigError when the selection is not a valid expression over known tags.
        """
        expr = _selection_expr(selection, self.known)
        state = self.evidence.state if self.evidence else {}
        value, _ = compiled(expr)(state)
        verdict = "selected" if value else "not selected"
        truth = "true" if value else "false"
        if isinstance(expr, Name):
            result = self.results.get(expr.name)
            if result is None or result.expression is None or result.from_source:
                return value, f"{verdict}: {self._describe_tag(expr.name)}"
            # a derived tag: say which of its operands made it true or false
            inner = parse_expression(result.expression)
            parts = "; ".join(self._describe_tag(n) for n in names_in(inner))
            head = f"{expr.name} = {result.expression}"
            return value, f"{verdict}: {head} is {truth} ({parts})"
        parts = "; ".join(self._describe_tag(n) for n in names_in(expr))
        return value, f"{verdict}: {selection} is {truth} ({parts})"

    def _describe_tag(self, name: str) -> str:
        result = self.results.get(name)
        if result is None:
            return f"{name} absent (nothing matched)"
        state = "present" if result.passed else "absent"
        if result.from_source:
            return f"{name} present (from the source)"
        if result.expression is not None:
            return f"{name} {state} ({name} = {result.expression})"
        return f"{name} {state} (score {result.score:g}, threshold {result.threshold:g})"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Evidence:
    """What ``tag_text`` found, kept so that ``TagDecision.results`` can be built later."""

    rules: Rules
    #: the title, summary and content as tagged, scanned again for the explanation
    texts: tuple[str, str, str]
    sources: tuple[str, ...]
    #: tag name -> (passed, score) for every tag with evidence and every derived tag
    state: State


# -- selections ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _selection_expr(selection: str, known: tuple[str, ...]) -> Expr:
    problem = check_selection_names(selection, known)
    if problem:
        raise ConfigError(f"selection {selection!r}: {problem}")
    return parse_expression(selection)


def check_selection(rules: Rules, selection: str) -> str | None:
    """Return the problem with a selection for these rules, or None when it is usable."""
    return check_selection_names(selection, rules.names)


# -- loading ------------------------------------------------------------------------------------


def load_rules(path: Path) -> Rules:
    """Read and compile a rules file; any problem is a ConfigError naming file, key and line."""
    return parse_rules(tomlutil.load(path))


def check_rules(path: Path) -> tomlutil.Document:
    """Read and check a rules file without compiling it; returns the document, which
    :func:`parse_rules` compiles when the rules are needed.

    Every problem :func:`load_rules` reports is reported here, with the same ConfigError:
    a term's mistakes show when it is expanded, a pattern's when it is compiled alone. What is
    left out, building the matcher's regular expressions, is most of the work and cannot fail
    on a file that passed; so a process that may never tag (a poll where nothing changed)
    still refuses a broken file at start, and pays for compiling only when it tags.
    """
    doc = tomlutil.load(path)
    _read_rules(doc, _Checker())
    return doc


class _Checker(Matcher):
    """Stands in for the matcher while a file is only checked: terms are expanded, which is
    where their mistakes show, and nothing is compiled."""

    def add(self, ref: Ref, text: str, cased: bool) -> None:
        expand_term(text, cased)

    def compile(self) -> None:
        pass


def parse_rules(doc: tomlutil.Document) -> Rules:
    return _read_rules(doc, Matcher())


def _read_rules(doc: tomlutil.Document, matcher: Matcher) -> Rules:
    root = doc.root()
    selection = root.get("selection", str, None)
    source_score = root.get("source_score", float, 5.0, check=_positive)
    defaults = root.table("defaults")
    threshold = defaults.get("threshold", float, 2.0, check=_positive)
    weights = _read_weights(defaults, FieldWeights())
    defaults.finish()

    tags: list[TagRule] = []
    tag_sections = root.table("tags", required=True)
    for name, sec in tag_sections.subtables():
        problem = _check_name(name)
        if problem:
            raise tag_sections.error(name, problem)
        tags.append(_read_tag(name, sec, threshold, weights, matcher, len(tags)))
    if not tags:
        raise root.error("tags", "define at least one tag, as [tags.NAME]")

    derived_sec = root.table("derived")
    derived = _read_derived(derived_sec, [t.name for t in tags])
    derived_sec.finish()

    names = tuple(t.name for t in tags) + tuple(d.name for d in derived)
    if selection is not None:
        problem = check_selection_names(selection, names)
        if problem:
            raise root.error("selection", problem)
    root.finish()

    matcher.names = names
    matcher.base_names = tuple(t.name for t in tags)
    matcher.order = {name: i for i, name in enumerate(names)}
    matcher.rules = tuple(tags)
    matcher.compile()
    return Rules(
        path=doc.path,
        tags=tuple(tags),
        derived=derived,
        selection=selection,
        source_score=source_score,
        matcher=matcher,
    )


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _check_name(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return "tag names use lower-case letters, digits and single hyphens (south-caucasus)"
    if name in RESERVED:
        return f"{name!r} is an operator and cannot name a tag"
    return None


def _read_weights(sec: tomlutil.Section, default: FieldWeights) -> FieldWeights:
    if not sec.has("weights"):
        return default
    table = sec.table("weights")
    out = FieldWeights(
        title=table.get("title", float, default.title),
        summary=table.get("summary", float, default.summary),
        content=table.get("content", float, default.content),
    )
    table.finish()
    return out


def _read_tag(
    name: str,
    sec: tomlutil.Section,
    threshold: float,
    weights: FieldWeights,
    matcher: Matcher,
    index: int,
) -> TagRule:
    description = sec.get("description", str, "")
    rule_threshold = sec.get("threshold", float, threshold, check=_positive)
    rule_weights = _read_weights(sec, weights)
    terms = sec.get_str_list("terms", [])
    cased = sec.get_str_list("cased_terms", [])
    patterns = sec.get_str_list("patterns", [])
    exclude = sec.get_str_list("exclude", [])
    if not (terms or cased or patterns):
        raise sec.error(None, "a tag needs at least one of terms, cased_terms or patterns")

    written: set[str] = set()
    for key, values, is_cased in (("terms", terms, False), ("cased_terms", cased, True)):
        for i, raw in enumerate(values):
            text, weight = split_weight(raw)
            written.add(text)
            _add(matcher, sec, (key, i), Ref(index, TERM, text, weight, -1), text, is_cased)
    for i, raw in enumerate(exclude):
        _add(matcher, sec, ("exclude", i), Ref(index, EXCLUDE, raw, 0.0, -1), raw, False)
    for i, pattern in enumerate(patterns):
        _check_pattern(sec, i, pattern)
        matcher.pattern_sources.append(fold(pattern))
        matcher.pattern_refs.append(Ref(index, TERM, pattern, 1.0, -1))
        written.add(pattern)

    unless: list[Unless] = []
    cancel_sets: list[frozenset[str] | None] = []
    for u, usec in enumerate(sec.tables("unless")):
        context = usec.get_str_list("context")
        if not context:
            raise usec.error("context", "list at least one context term")
        cancels = usec.get_str_list("cancels", [])
        for i, raw in enumerate(cancels):
            if raw not in written:
                raise sec.doc.error(
                    (*usec.path, "cancels", i),
                    f"{raw!r} is not one of this tag's terms or patterns (write it as listed)",
                )
        usec.finish()
        for i, raw in enumerate(context):
            ref = Ref(index, CONTEXT, raw, 0.0, u)
            _add(matcher, usec, ("context", i), ref, raw, False)
        unless.append(Unless(context=tuple(context), cancels=tuple(cancels)))
        cancel_sets.append(frozenset(cancels) if cancels else None)
    sec.finish()

    matcher.weights.append(rule_weights.as_tuple())
    matcher.cancels.append(cancel_sets)
    return TagRule(
        name=name,
        description=description,
        terms=tuple(terms),
        cased_terms=tuple(cased),
        patterns=tuple(patterns),
        exclude=tuple(exclude),
        unless=tuple(unless),
        weights=rule_weights,
        threshold=rule_threshold,
    )


def _add(
    matcher: Matcher,
    sec: tomlutil.Section,
    where: tuple[str, int],
    ref: Ref,
    text: str,
    cased: bool,
) -> None:
    try:
        matcher.add(ref, text, cased)
    except ValueError as exc:
        raise sec.doc.error((*sec.path, *where), str(exc)) from None


def _check_pattern(sec: tomlutil.Section, i: int, pattern: str) -> None:
    def fail(message: str) -> ConfigError:
        return sec.doc.error((*sec.path, "patterns", i), message)

    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise fail(f"invalid regular expression {pattern!r}: {exc}") from None
    if any(ch.isupper() for ch in re.sub(r"\\.", "", pattern)):
        raise fail(f"{pattern!r} has capital letters, but patterns see lower-cased text")
    if compiled.groups:
        raise fail(f"{pattern!r} has a capturing group; write (?:...) instead of (...)")
    if compiled.search("") is not None:
        raise fail(f"{pattern!r} matches the empty text; it must require at least one character")
    try:
        # All patterns are joined into one expression, each in a group of its own.
        re.compile(f"(?:{pattern})")
    except re.error as exc:
        raise fail(
            f"{pattern!r} cannot be combined with the other patterns: {exc}; "
            "write flags inside a group, as in (?i:...)"
        ) from None


def _read_derived(sec: tomlutil.Section, base: list[str]) -> tuple[DerivedTag, ...]:
    parsed: dict[str, DerivedTag] = {}
    for name in list(sec.data):
        text = sec.get(name, str)
        problem = _check_name(name)
        if problem:
            raise sec.error(name, problem)
        if name in base:
            raise sec.error(name, f"{name!r} is already a tag in [tags]; pick another name")
        try:
            expr = parse_expression(text)
        except ExpressionError as exc:
            raise sec.error(name, f"{exc} in {text!r}") from None
        parsed[name] = DerivedTag(
            name=name, expression=text, expr=expr, evaluate=compile_expr(expr)
        )
    known = [*base, *parsed]
    for name, tag in parsed.items():
        for ref in names_in(tag.expr):
            if ref not in known:
                raise sec.error(name, unknown_tag(ref, known))
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in parsed:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            raise sec.error(trail[0], f"derived tags form a cycle: {cycle}")
        state[name] = 1
        for ref in names_in(parsed[name].expr):
            visit(ref, [*trail, name])
        state[name] = 2
        order.append(name)

    for name in parsed:
        visit(name, [])
    return tuple(parsed[n] for n in order)


# -- tagging ------------------------------------------------------------------------------------

_Hit = tuple[Ref, int, str]


def _scan(
    matcher: Matcher, texts: tuple[str, str, str], exact: bool = False
) -> dict[int, list[_Hit]]:
    """The matches in every field, grouped by tag index in the order they appear, each text
    once per field (the hot loop: kept flat).

    Unless ``exact``, a hit records its term rather than the text as written, which is enough
    for scores and spares a match object per match: the explanation scans again, exactly.
    """
    by_tag: dict[int, list[_Hit]] = {}
    findall = matcher.term_re.findall
    pattern_re = matcher.pattern_re
    for fi, text in enumerate(texts):
        if not text:
            continue
        folded = fold(text)
        lowered = folded.lower()  # same length: İ, the one letter that grows, is folded
        found = None if exact else matcher.refs_of_pieces(findall(lowered))
        if found is not None:
            for refs in found:
                for ref in refs:
                    hits = by_tag.get(ref.tag)
                    if hits is None:
                        by_tag[ref.tag] = [(ref, fi, ref.term)]
                    else:
                        hits.append((ref, fi, ref.term))
        else:
            _scan_cased(matcher, text, folded, lowered, fi, by_tag)
        patterns = matcher.patterns_for(lowered) if pattern_re is not None else None
        if patterns is not None:
            for m in patterns.finditer(lowered):
                if m.end() > m.start() and m.lastgroup:
                    ref = matcher.pattern_refs[int(m.lastgroup[1:])]
                    by_tag.setdefault(ref.tag, []).append((ref, fi, text[m.start() : m.end()]))
    return by_tag


def _scan_cased(
    matcher: Matcher,
    text: str,
    folded: str,
    lowered: str,
    fi: int,
    by_tag: dict[int, list[_Hit]],
) -> None:
    """The term hits of one field, looked up with the case of their letters, as written."""
    cache = matcher.cache
    # A piece seen before in this field stands for terms already hit here, and a term
    # counts once per field (with the text of its first match): skip repeats.
    seen: set[str] = set()
    for m in matcher.term_re.finditer(lowered):
        start, end = m.span(1)
        piece = folded[start:end]
        if piece in seen:
            continue
        seen.add(piece)
        refs = cache.get(piece)
        if refs is None:
            refs = matcher.refs_for(piece)
        if refs:
            raw = text[start:end]
            for ref in refs:
                hits = by_tag.get(ref.tag)
                if hits is None:
                    by_tag[ref.tag] = [(ref, fi, raw)]
                else:
                    hits.append((ref, fi, raw))


def tag_text(
    rules: Rules,
    *,
    title: str,
    summary: str = "",
    content: str = "",
    source_tags: Sequence[str] = (),
) -> TagDecision:
    """Tag one entry from its plain texts; pure, and never raises on any text."""
    matcher = rules.matcher
    texts = (title or "", summary or "", content or "")
    by_tag = _scan(matcher, texts)
    state: State = {}
    for index, hits in by_tag.items():
        score = _weigh(matcher, index, hits)[0]
        state[matcher.base_names[index]] = (score >= matcher.rules[index].threshold, score)
    for name in source_tags:
        found = state.get(name)
        if name in matcher.order and matcher.order[name] < len(matcher.base_names):
            state[name] = (True, max(found[1] if found else 0.0, rules.source_score))
    sources = tuple(source_tags)
    for tag in rules.derived:
        value, score = tag.evaluate(state)
        if tag.name in sources:
            value, score = True, max(score, rules.source_score)
        state[tag.name] = (value, round(score, 6))
    for name in sources:
        if name not in matcher.order:
            state[name] = (True, rules.source_score)

    order = matcher.order
    passed = sorted((n for n, (ok, _) in state.items() if ok), key=lambda n: order.get(n, 1 << 30))
    evidence = _Evidence(rules=rules, texts=texts, sources=sources, state=state)
    return TagDecision(
        tags=tuple(passed),
        scores={n: state[n][1] for n in passed},
        known=matcher.names,
        evidence=evidence,
    )


def _weigh(
    matcher: Matcher, index: int, hits: list[_Hit], explain: bool = False
) -> tuple[float, list[TagMatch], list[TagMatch]]:
    """Score one tag's hits: each term once per field, cancelled ones left out.

    With ``explain`` it also returns the counted and the cancelled matches as records; the
    hot path skips building them.
    """
    name = matcher.base_names[index]
    weights = matcher.weights[index]
    contexts: dict[int, tuple[str, int]] = {}
    if matcher.cancels[index]:
        for ref, fi, raw in hits:
            if ref.role == CONTEXT and ref.unless not in contexts:
                contexts[ref.unless] = (raw, fi)
    matches: list[TagMatch] = []
    cancelled: list[TagMatch] = []
    seen: set[tuple[int, str]] = set()
    score = 0.0
    for ref, fi, raw in hits:
        if ref.role == CONTEXT or (fi, ref.term) in seen:
            continue
        seen.add((fi, ref.term))
        reason = ""
        if ref.role == EXCLUDE:
            reason = f"excluded phrase {ref.term!r}"
        else:
            for u, (ctx, cfi) in contexts.items():
                cancels = matcher.cancels[index][u]
                if cancels is None or ref.term in cancels:
                    reason = f"context {ctx!r} in {FIELDS[cfi]}"
                    break
        weight = 0.0 if reason else weights[fi] * ref.weight
        score += weight
        if explain:
            found = TagMatch(tag=name, field=FIELDS[fi], term=ref.term, text=raw,
                             weight=weight, reason=reason)  # fmt: skip
            (cancelled if reason else matches).append(found)
    return round(score, 6), matches, cancelled


def _build_results(evidence: _Evidence) -> dict[str, TagResult]:
    """The full records behind a decision, built from the kept evidence."""
    rules = evidence.rules
    matcher = rules.matcher
    state = evidence.state
    by_tag = _scan(matcher, evidence.texts, exact=True)  # with each match as written
    ordered = sorted(state, key=lambda n: matcher.order.get(n, 1 << 30))
    derived = {tag.name: tag.expression for tag in rules.derived}
    results: dict[str, TagResult] = {}
    for name in ordered:
        passed, score = state[name]
        from_source = name in evidence.sources
        source = [_source_match(name, rules.source_score)] if from_source else []
        index = matcher.order.get(name, 1 << 30)
        if index < len(matcher.base_names):
            _, matches, cancelled = _weigh(matcher, index, by_tag.get(index, []), True)
            results[name] = TagResult(
                tag=name, score=score, threshold=matcher.rules[index].threshold, passed=passed,
                matches=tuple(matches + source), cancelled=tuple(cancelled),
                from_source=from_source,
            )  # fmt: skip
        else:
            results[name] = TagResult(
                tag=name, score=score, threshold=None, passed=passed, matches=tuple(source),
                expression=derived.get(name), from_source=from_source,
            )  # fmt: skip
    return results


def _source_match(name: str, score: float) -> TagMatch:
    return TagMatch(tag=name, field="source", term=name, text=name, weight=score)


# -- explanation --------------------------------------------------------------------------------


def format_explanation(decision: TagDecision, selection: str | None) -> str:
    """The text ``digest explain`` prints: every tag with evidence, then the selection."""
    lines: list[str] = []
    order = {name: i for i, name in enumerate(decision.known)}
    ranked = sorted(decision.results.values(), key=lambda r: order.get(r.tag, len(order)))
    for result in ranked:
        lines.extend(_explain_result(result, decision))
    if not ranked:
        lines.append("no tag matched")
    if selection:
        _, reason = decision.selected(selection)
        lines.append(f"selection {selection!r}: {reason}")
    return "\n".join(lines) + "\n"


def _explain_result(result: TagResult, decision: TagDecision) -> list[str]:
    verdict = "PASS" if result.passed else "fail"
    if result.expression is not None:
        truth = "true" if result.passed else "false"
        operands = ", ".join(
            f"{n}={'yes' if decision.has(n) else 'no'}"
            for n in names_in(parse_expression(result.expression))
        )
        head = f"{verdict}  {result.tag} = {result.expression}  -> {truth} ({operands})"
        lines = [head]
    else:
        lines = [f"{verdict}  {result.tag}  score {result.score:g}"
                 + (f" / threshold {result.threshold:g}" if result.threshold else "")]  # fmt: skip
    for m in result.matches:
        if m.field == "source":
            lines.append(f"        + source     carries this tag  {m.weight:+g}")
        else:
            lines.append(f"        + {m.field:<8}  {m.text!r} ({m.term})  {m.weight:+g}")
    for m in result.cancelled:
        lines.append(f"        x {m.field:<8}  {m.text!r} ({m.term}) cancelled: {m.reason}")
    return lines


def explain_tag(decision: TagDecision, tag: str) -> str:
    """A one-line summary of why a tag passed or not, for evaluation reports."""
    result = decision.results.get(tag)
    if result is None:
        return f"{tag}: nothing matched"
    if result.expression is not None:
        parts = [_brief(decision, n) for n in names_in(parse_expression(result.expression))]
        return f"{tag} = {result.expression}: " + "; ".join(parts)
    return _brief(decision, tag)


def _brief(decision: TagDecision, tag: str) -> str:
    result = decision.results.get(tag)
    if result is None:
        return f"{tag} no (nothing matched)"
    state = "yes" if result.passed else "no"
    if result.expression is not None:
        return f"{tag} {state}"
    evidence = [f"{m.field[0]}:{m.text!r}{m.weight:+g}" for m in result.matches]
    evidence += [f"x{m.field[0]}:{m.text!r} ({m.reason})" for m in result.cancelled]
    limit = f"/{result.threshold:g}" if result.threshold else ""
    return f"{tag} {state} {result.score:g}{limit} [{' '.join(evidence)}]"
