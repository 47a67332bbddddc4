"""Strict TOML reading with errors that name the file, the key and the line.

``tomllib`` gives values but not positions, so :func:`load` also scans the text once and
remembers on which line each key (including ``[[array]]`` entries) was defined. :class:`Section`
then reads a table field by field, checks types, and reports unknown keys. The config and the
rules file are both read this way, so their errors look the same.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from digest.errors import ConfigError

T = TypeVar("T")
KeyPath = tuple[str | int, ...]

_MISSING: Any = object()
_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
_BARE_OR_QUOTED = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_ERR_POS = re.compile(r"\(at line (\d+), column \d+\)")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(_BARE_OR_QUOTED, text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _scan_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path to the line where it is defined (best effort, never raises)."""
    lines: dict[KeyPath, int] = {}
    counters: dict[KeyPath, int] = {}
    table: KeyPath = ()
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = tuple(_split_dotted(header.group(2)))
            if header.group(1) == "[[":
                index = counters.get(names, 0)
                counters[names] = index + 1
                # Nested arrays of tables are rare in our files; index only the last part.
                parent = _resolve(names[:-1], counters)
                table = (*parent, names[-1], index)
                lines.setdefault((*parent, names[-1]), number)
            else:
                table = _resolve(names, counters)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            path = (*table, *_split_dotted(key.group(1)))
            lines.setdefault(path, number)
            rest = line[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
                    break
    return lines


def _resolve(names: tuple[str, ...], counters: dict[KeyPath, int]) -> KeyPath:
    """Turn ``a.b`` into ``("a", 3, "b")`` when ``a`` is an array of tables."""
    out: list[str | int] = []
    for i, name in enumerate(names):
        out.append(name)
        prefix = names[: i + 1]
        if prefix in counters and i < len(names) - 1:
            out.append(counters[prefix] - 1)
    return tuple(out)


def format_key(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class Document:
    """A parsed TOML file and the line of each key in it."""

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(
            message, path=self.path, key=format_key(path) or None, line=self.line_of(path)
        )

    def root(self) -> Section:
        return Section(self, (), self.data)


def load(path: str | Path) -> Document:
    """Read and parse a TOML file; a missing file or a syntax error is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "file not found; pass --config PATH or set DIGEST_CONFIG", path=path
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", path=path) from None
    return loads(text, path)


def loads(text: str, path: str | Path = "<string>") -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        match = _ERR_POS.search(msg)
        line = int(match.group(1)) if match else None
        if line is None and "end of document" in msg:
            line = max(1, len(text.splitlines()))
            msg = msg.replace("(at end of document)", "")
        msg = _ERR_POS.sub("", msg).strip()
        raise ConfigError(f"invalid TOML: {msg}", path=path, line=line) from None
    return Document(Path(path), data, _scan_lines(text))


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


class Section:
    """One table of a document, read field by field; :meth:`finish` rejects leftovers."""

    def __init__(self, doc: Document, path: KeyPath, data: dict[str, Any]) -> None:
        self.doc = doc
        self.path = path
        self.data = data
        self._seen: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        return self.doc.error((*self.path, key) if key else self.path, message)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(
        self,
        key: str,
        kind: type[T],
        default: Any = _MISSING,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        """Return ``data[key]`` checked against ``kind``; ``check`` returns a problem or None."""
        self._seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "required key is missing")
            return cast(T, default)
        value = self.data[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.error(
                key, f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, not {_describe(value)}"
            )
        if check is not None:
            problem = check(value)
            if problem:
                raise self.error(key, problem)
        return cast(T, value)

    def get_str_list(self, key: str, default: Any = _MISSING) -> list[str]:
        values = self.get(key, list, default)
        for i, item in enumerate(values):
            if not isinstance(item, str):
                raise self.doc.error(
                    (*self.path, key, i), f"items must be strings, not {_describe(item)}"
                )
        return list(values)

    def table(self, key: str, required: bool = False) -> Section:
        value = self.get(key, dict, _MISSING if required else {})
        return Section(self.doc, (*self.path, key), value)

    def tables(self, key: str) -> Iterator[Section]:
        """Iterate ``[[key]]`` entries (an array of tables)."""
        values = self.get(key, list, [])
        for i, item in enumerate(values):
            if not isinstance(item, dict):
                raise self.doc.error(
                    (*self.path, key, i), f"must be a table ([[{key}]]), not {_describe(item)}"
                )
            yield Section(self.doc, (*self.path, key, i), item)

    def subtables(self) -> Iterator[tuple[str, Section]]:
        """Iterate the values of a table whose keys are names (``[tags.armenia]``)."""
        for key, value in self.data.items():
            self._seen.add(key)
            if not isinstance(value, dict):
                raise self.error(key, f"must be a table, not {_describe(value)}")
            yield key, Section(self.doc, (*self.path, key), value)

    def finish(self) -> None:
        """Reject keys that were never read: a typo must not be silently ignored."""
        for key in self.data:
            if key not in self._seen:
                known = ", ".join(sorted(self._seen)) or "none"
                raise self.error(key, f"unknown key (known keys here: {known})")


def _describe(value: object) -> str:
    if isinstance(value, float):
        return f"a decimal number ({value:g})"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return name
    return type(value).__name__


# -- value checks shared by the settings readers (pass as ``check=``) --------------------------


def at_least(low: float) -> Callable[[float], str | None]:
    return lambda v: None if v >= low else f"must be at least {low:g}, not {v:g}"


def between(low: float, high: float) -> Callable[[float], str | None]:
    return lambda v: (
        None if low <= v <= high else f"must be between {low:g} and {high:g}, not {v:g}"
    )


def one_of(*allowed: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in allowed:
            return None
        return f"{value!r} is not one of " + ", ".join(repr(a) for a in allowed)

    return check
