"""One run per study at a time: an exclusive ``flock`` on ``paths.state/run.lock``.

The kernel drops a ``flock`` when its process dies, so a lock left by a crashed or
killed run never blocks the next one; the file also records who held it, for the
message a refused run prints and for saying that a stale lock was recovered.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
from pathlib import Path

from .errors import EetrendError

log = logging.getLogger(__name__)


class LockedError(EetrendError):
    """Another run holds the study's lock (exit code 3)."""

    exit_code = 3


class StudyLock:
    """``with StudyLock(folder, name):`` holds the study's lock or raises :class:`LockedError`."""

    def __init__(self, folder: Path, study: str) -> None:
        self.path = folder / "run.lock"
        self.study = study
        self._fd: int | None = None

    def __enter__(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(f"another eetrend run is working on study '{self.study}' ({holder}); it will finish "
                              "on its own: try again later") from None
        previous = os.read(fd, 200).decode(errors="replace").strip()
        if previous:
            log.info("recovered the lock of a run that ended without releasing it (%s)", previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
