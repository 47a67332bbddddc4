"""The state folder's lock: one writing process per state folder.

Kept apart from the service so that the short commands that take it (``digest poll``,
``digest publish``) do not import the service's scheduler, web server and metrics.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from digest.errors import ServiceError


class StateLock:
    """An exclusive lock on the state folder, released by the kernel if the process dies."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "digest.lock"
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        """Take the lock (a no-op when this object holds it already)."""
        if self._fh is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except OSError as exc:
            raise ServiceError(
                f"cannot create the lock file {self.path}: {exc.strerror}; "
                "make the state folder writable"
            ) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise ServiceError(
                f"another digest service (pid {pid}) is already running on the state folder "
                f"{self.path.parent}; stop it first, or give this one another state_dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
