"""Atomic file replacement, so readers of a feed or digest never see a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data: bytes, *, only_if_changed: bool = True) -> bool:
    """Replace ``path`` with ``data`` (temp file in the same folder, fsync, rename, fsync dir).

    With ``only_if_changed`` an identical file is left alone, so its mtime (and the
    Last-Modified that a server derives from it) does not move. Returns True when written.
    """
    path = Path(path)
    if only_if_changed:
        try:
            if path.read_bytes() == data:
                return False
        except OSError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return True


def fsync_dir(folder: str | Path) -> None:
    """Make a rename durable (POSIX needs the directory synced too)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
