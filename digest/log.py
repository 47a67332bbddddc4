"""Logging on stderr: human-readable lines by default, JSON lines for log collectors.

Messages about a source carry ``extra={"source": ..., "url": ...}``; both formats print them
as fields so every line about a source names it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FIELDS = ("source", "url", "list", "period", "recipient")


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        fields = " ".join(
            f"{name}={_quote(str(getattr(record, name)))}"
            for name in FIELDS
            if getattr(record, name, None) is not None
        )
        text = f"{when} {record.levelname:<7} {record.getMessage()}"
        if fields:
            text += f" [{fields}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c.isspace() for c in value) else value


def setup(verbosity: int = 0, fmt: str = "human") -> None:
    """Configure the root logger once; -v shows debug, -q only errors."""
    level = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}.get(
        max(-1, min(1, verbosity)), logging.INFO
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "aiohttp.access", "mail.log"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
