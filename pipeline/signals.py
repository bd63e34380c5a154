"""Signals and dead processes: SIGTERM and SIGHUP end eetrend as Ctrl-C does, and workers die with their parent.

``kill``, systemd, a closing terminal and cron's time limits send SIGTERM or SIGHUP, whose
default action ends Python at once: no ``finally`` runs, temporaries stay behind and the
exit code says nothing. :func:`install` turns both into :class:`Terminated`, a
``KeyboardInterrupt``, so every cleanup written for Ctrl-C runs for them too and the CLI
exits with 128 + the signal's number, as a shell reports a process killed by it.

A worker process cannot rely on its parent to stop it: a parent killed with SIGKILL runs no
code. :func:`die_with_parent` asks Linux to kill the worker when its parent ends
(``prctl(PR_SET_PDEATHSIG)``) and starts a watchdog thread that ends it when its parent
pid changes, for systems without prctl.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL = 1.0


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interrupt: BaseException) -> int:
    """128 + the signal that ended the command (SIGINT for Ctrl-C)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def signal_name(interrupt: BaseException) -> str:
    return signal.Signals(getattr(interrupt, "signum", signal.SIGINT)).name


def _raise_terminated(signum: int, _frame: object) -> None:
    # One signal is enough: a second one while cleaning up must not interrupt the cleanup.
    for handled in HANDLED:
        signal.signal(handled, signal.SIG_IGN)
    raise Terminated(signum)


def install() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _raise_terminated)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends, then raise as they would have.

    For starting something that can be stopped cleanly only once it has fully started
    (a Dask cluster interrupted half way cannot be closed). Main thread only; elsewhere
    it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, *HANDLED)}
    for signum in previous:
        signal.signal(signum, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if received:
            if received[0] == signal.SIGINT:
                raise KeyboardInterrupt
            raise Terminated(received[0])


def restore() -> None:
    """The default actions again (for library callers that installed the handlers for one call)."""
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_DFL)


def die_with_parent(parent: int) -> None:
    """In a worker process: end when ``parent`` ends, even if it was killed with SIGKILL.

    Linux delivers SIGKILL to the worker when the parent dies (``PR_SET_PDEATHSIG``); a
    daemon thread checks the parent pid every second as well, which also covers the
    parent dying before the prctl call and systems without it.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCHDOG_INTERVAL)
        os._exit(1)

    threading.Thread(target=watch, name="eetrend-parent-watchdog", daemon=True).start()


def worker_init(parent: int) -> None:
    """Initializer of pool workers: the parent alone decides what to stop, and they die with it.

    Ctrl-C, SIGTERM and SIGHUP sent to the whole process group are ignored here: the parent
    receives them too, stops handing out windows and shuts the pool down.
    """
    for signum in (signal.SIGINT, *HANDLED):
        signal.signal(signum, signal.SIG_IGN)
    die_with_parent(parent)
