"""One writer per study: an exclusive ``flock`` on ``paths.state/run.lock``.

Every command that changes a study's state or files (``export``, ``download``, ``run``,
``cancel``) holds it, so two of them never write the same partial download or manifest
row at once. The kernel drops a ``flock`` when its process dies, so a lock left by a
crashed or killed command never blocks the next one; the file also records who held it,
for the message a refused command prints and for saying that a stale lock was recovered.

The lock is re-entrant within one call stack (``run`` holds it and calls export and download,
which take it too). A second process either stops at once with :class:`LockedError`
(exit code 3, naming the holder's pid) or, inside :func:`waiting_for_lock`, waits for it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from pathlib import Path
from typing import Any, TypeVar

from .errors import EetrendError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
_WAIT: ContextVar[float] = ContextVar("eetrend_lock_wait", default=0.0)
_HELD: ContextVar[frozenset[Path]] = ContextVar("eetrend_locks_held", default=frozenset())

F = TypeVar("F", bound=Callable[..., Any])


class LockedError(EetrendError):
    """Another eetrend command holds the study's lock (exit code 3)."""

    exit_code = 3


@contextmanager
def waiting_for_lock(seconds: float) -> Iterator[None]:
    """Within this block, a held study lock is waited for up to ``seconds`` instead of refused at once."""
    token = _WAIT.set(max(float(seconds), 0.0))
    try:
        yield
    finally:
        _WAIT.reset(token)


def _command() -> str:
    """The eetrend command this process runs, for the lock file (never the arguments: no paths, no secrets)."""
    words = [w for w in sys.argv[1:3] if not w.startswith("-")]
    return f"eetrend {words[0]}" if words else "eetrend"


class StudyLock:
    """``with StudyLock(folder, name):`` holds the study's lock or raises :class:`LockedError`."""

    def __init__(self, folder: Path, study: str, wait: float | None = None) -> None:
        self.path = folder / "run.lock"
        self.study = study
        self.wait = wait
        self._fd: int | None = None
        self._token: Token[frozenset[Path]] | None = None

    def __enter__(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in _HELD.get():  # this call stack holds it already (run -> export -> download)
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a folder of that name, a read-only state folder
            from .errors import UsageError

            raise UsageError(f"cannot open the study's lock file {self.path} ({exc.strerror}); remove whatever "
                             "holds that name, or make paths.state writable") from None
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if previous:
            log.info("recovered the lock of a command that ended without releasing it (%s)", previous)
        os.ftruncate(fd, 0)
        stamp = dt.datetime.now().astimezone()
        os.pwrite(fd, f"pid {os.getpid()} ({_command()}) since {stamp:%Y-%m-%d %H:%M:%S %Z}".encode(), 0)
        self._fd = fd
        self._token = _HELD.set(_HELD.get() | {key})
        return self

    def _acquire(self, fd: int) -> None:
        wait = _WAIT.get() if self.wait is None else self.wait
        deadline = time.monotonic() + wait
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a process that did not say"
            if time.monotonic() >= deadline:
                hint = ("it did not finish within --wait-lock; wait longer or try again later" if wait else
                        "wait for it to finish, or pass --wait-lock SECONDS to wait for it")
                raise LockedError(f"another eetrend command is working on study '{self.study}' ({holder}); {hint}")
            if not announced:
                log.warning("study '%s' is busy (%s); waiting up to %.0f s for it", self.study, holder, wait)
                announced = True
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _HELD.reset(self._token)
            self._token = None
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holds_study_lock(fn: F) -> F:
    """Decorate a function whose first argument is a :class:`~pipeline.config.Study` to run under its lock."""

    @functools.wraps(fn)
    def locked(study: Any, *args: Any, **kwargs: Any) -> Any:
        with StudyLock(study.state, study.name):
            return fn(study, *args, **kwargs)

    return locked  # type: ignore[return-value]
