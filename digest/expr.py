"""The little language of derived tags and selections: ``a and (b or not c)``.

A rules file defines derived tags with it, and the config selects stories with it. An
expression is parsed once into a tree, then compiled into a function of the tag results, so
tagging an entry does not walk the tree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

RESERVED = frozenset({"and", "or", "not"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Name | Not | And | Or


class ExpressionError(ValueError):
    """A derived-tag or selection expression is malformed."""


_TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z0-9][A-Za-z0-9_-]*)|(\S))")


def parse_expression(text: str) -> Expr:
    """Parse ``a and (b or not c)``; ``not`` binds tightest, then ``and``, then ``or``."""
    tokens: list[tuple[str, int]] = []
    for m in _TOKEN.finditer(text):
        if m.group(4):
            raise ExpressionError(f"unexpected {m.group(4)!r} at column {m.start(4) + 1}")
        if m.lastindex:
            tokens.append((m.group(m.lastindex), m.start(m.lastindex) + 1))
    parser = _Parser(tokens, len(text) + 1)
    expr = parser.parse_or()
    if parser.pos < len(tokens):
        token, column = tokens[parser.pos]
        raise ExpressionError(f"unexpected {token!r} at column {column}")
    return expr


class _Parser:
    def __init__(self, tokens: list[tuple[str, int]], end: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.end = end

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def parse_or(self) -> Expr:
        return self._chain("or", self.parse_and, Or)

    def parse_and(self) -> Expr:
        return self._chain("and", self.parse_not, And)

    def _chain(self, word: str, operand: Callable[[], Expr], node: type[And | Or]) -> Expr:
        """``operand (word operand)*``: one operand alone, or ``node`` of all of them."""
        operands = [operand()]
        while self.peek() == word:
            self.pos += 1
            operands.append(operand())
        return operands[0] if len(operands) == 1 else node(operands=tuple(operands))

    def parse_not(self) -> Expr:
        if self.peek() == "not":
            self.pos += 1
            return Not(operand=self.parse_not())
        return self.parse_atom()

    def parse_atom(self) -> Expr:
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"expected a tag name or '(' at column {self.end} (end)")
        token, column = self.tokens[self.pos]
        self.pos += 1
        if token == "(":
            inner = self.parse_or()
            if self.peek() != ")":
                raise ExpressionError(f"missing ')' for the '(' at column {column}")
            self.pos += 1
            return inner
        if token == ")" or token in RESERVED:
            raise ExpressionError(f"expected a tag name or '(' at column {column}, not {token!r}")
        return Name(name=token)


def names_in(expr: Expr) -> list[str]:
    out: dict[str, None] = {}

    def walk(e: Expr) -> None:
        if isinstance(e, Name):
            out.setdefault(e.name)
        elif isinstance(e, Not):
            walk(e.operand)
        else:
            for operand in e.operands:
                walk(operand)

    walk(expr)
    return list(out)


State = dict[str, tuple[bool, float]]
Evaluator = Callable[[State], tuple[bool, float]]


def compile_expr(expr: Expr) -> Evaluator:
    """Turn an expression into a function of the results: its truth value and score.

    ``or`` scores its largest true operand, ``and`` its smallest, ``not x`` scores 1 when x
    is absent. Compiled once per rules file, so tagging does not walk the tree.
    """
    if isinstance(expr, Name):
        name = expr.name

        def leaf(state: State) -> tuple[bool, float]:
            found = state.get(name)
            return found if found is not None and found[0] else (False, 0.0)

        return leaf
    if isinstance(expr, Not):
        inner = compile_expr(expr.operand)
        return lambda state: (False, 0.0) if inner(state)[0] else (True, 1.0)
    parts = tuple(compile_expr(op) for op in expr.operands)
    if isinstance(expr, And):

        def all_of(state: State) -> tuple[bool, float]:
            low = float("inf")
            for part in parts:
                value, score = part(state)
                if not value:
                    return (False, 0.0)
                low = min(low, score)
            return (True, low)

        return all_of

    def any_of(state: State) -> tuple[bool, float]:
        found, high = False, 0.0
        for part in parts:
            value, score = part(state)
            if value:
                found, high = True, max(high, score)
        return (found, high)

    return any_of


def unknown_tag(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown tag {name!r}{hint}"


@lru_cache(maxsize=64)
def compiled(expr: Expr) -> Evaluator:
    return compile_expr(expr)


def check_selection_names(selection: str, known: Sequence[str]) -> str | None:
    """Return the problem with a selection expression, or None; for ``sec.get(check=...)``."""
    try:
        expr = parse_expression(selection)
    except ExpressionError as exc:
        return str(exc)
    for name in names_in(expr):
        if name not in known:
            return unknown_tag(name, known)
    return None
