"""The one exception tree of caucasus-digest.

The CLI and the service catch :class:`DigestError` and nothing broader; anything else is a bug
and is logged with its traceback.

```
DigestError                         base
  ConfigError(path, key, line)      bad/unknown key, wrong type, bad cross-field combination
  SourceError(source, url)          one source failed this cycle (never stops the others)
    FetchError                      timeout, connect, TLS, 4xx/5xx, body too large, redirects
    ParseError                      not a feed, malformed beyond recovery, XML bomb refused
  StorageError                      SQLite unavailable, locked, read-only, full or corrupt
  PublishError                      cannot write the feed files atomically
  DigestDeliveryError               render or SMTP failure
    TemplateError                   missing/invalid template, undefined variable
    SendError(refused)              SMTP refused/timeouts; partial recipient failure
  ServiceError                      the service cannot start (state folder locked, port busy)
```

Third-party exceptions are translated at one boundary each: httpx in ``fetch``, feedparser in
``parse``, sqlite3 in ``store``, smtplib/OSError in ``mail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class DigestError(Exception):
    """Base of every error that a user can act on.

    ``str()`` renders the message and, when there is one, the chained cause, in the way
    of reader's ``_FancyExceptionBase``: ``message: CauseType: cause``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        cause = self.__cause__
        if cause is None or isinstance(cause, DigestError):
            return self.message
        detail = str(cause)
        name = type(cause).__name__
        return f"{self.message}: {name}: {detail}" if detail else f"{self.message}: {name}"


class ConfigError(DigestError):
    """A configuration or rules file is invalid; the service refuses to start (exit 78)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.key = key
        self.line = line
        where = ""
        if self.path:
            where = self.path
            if line:
                where += f":{line}"
            where += ": "
        if key:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class SourceError(DigestError):
    """One source failed in this cycle. Recorded on the source; the others go on."""

    def __init__(self, message: str, *, source: str = "", url: str = "") -> None:
        self.source = source
        self.url = url
        super().__init__(message)


class FetchError(SourceError):
    """The source could not be fetched (network, HTTP status, size cap, redirects)."""


class ParseError(SourceError):
    """The body is not a feed, or is broken beyond recovery."""


class StorageError(DigestError):
    """The state database cannot be used; the current cycle is rolled back."""


class PublishError(DigestError):
    """An output file could not be written; the previous version stays in place."""


class DigestDeliveryError(DigestError):
    """A digest could not be rendered or delivered; its entries stay pending."""


class TemplateError(DigestDeliveryError):
    """A digest template is missing or invalid."""


class SendError(DigestDeliveryError):
    """The SMTP server refused the message or some recipients, or could not be reached."""

    def __init__(self, message: str, *, refused: Mapping[str, str] | None = None) -> None:
        self.refused = dict(refused or {})
        super().__init__(message)


class ServiceError(DigestError):
    """The service cannot start or keep running (state folder locked, port in use)."""
