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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


def _redeliver(unraisable: Any) -> None:
    """``sys.unraisablehook``: a Ctrl-C or SIGTERM raised where Python ignores exceptions is sent again.

    A signal that lands while Python runs an at-fork callback (a pool starting a worker),
    a ``__del__`` or a weakref callback raises there, and Python only prints "Exception
    ignored in ..." and carries on: the command would finish as if never stopped. Here
    the handler is put back and the same signal is sent again from a helper thread, so
    it is raised in ordinary code a moment later.
    """
    interrupt = unraisable.exc_value
    if not isinstance(interrupt, KeyboardInterrupt):
        _PREVIOUS_HOOK[-1](unraisable)
        return
    signum = getattr(interrupt, "signum", signal.SIGINT)
    if signum != signal.SIGINT and threading.current_thread() is threading.main_thread():
        signal.signal(signum, _raise_terminated)
    threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()


_PREVIOUS_HOOK: list[Callable[[Any], None]] = []


def install() -> Callable[[], None]:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in the main thread; returns a function undoing it.

    Also makes sure an interrupt that Python would swallow (see :func:`_redeliver`) still
    ends the command. Outside the main thread it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    for signum in HANDLED:
        signal.signal(signum, _raise_terminated)
    _PREVIOUS_HOOK.append(sys.unraisablehook)
    sys.unraisablehook = _redeliver

    def undo() -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if sys.unraisablehook is _redeliver and _PREVIOUS_HOOK:
            sys.unraisablehook = _PREVIOUS_HOOK.pop()

    return undo


def _interrupt(number: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if number == signal.SIGINT else Terminated(number)


@contextmanager
def deferred(*, insist: bool = True) -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends, then raise as they would have.

    For starting or stopping something that can be stopped cleanly only once it has fully
    started (a Dask cluster or a process pool interrupted half way cannot be closed).
    With ``insist`` a second signal while waiting raises at once (a start that may hang);
    without it every signal waits (a start or shutdown that cannot hang). If the block
    itself raises, a signal held meanwhile still ends the command: it is raised, chained
    to the block's error (an interrupt the block raised goes on as it is).
    Main thread only; elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(number: int, _frame: object) -> None:
        if received and insist:  # asked twice: the user means it, even if the start is stuck
            raise _interrupt(number)
        received.append(number)

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, *HANDLED)}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    for signum in previous:
        signal.signal(signum, hold)
    try:
        yield
    except KeyboardInterrupt:
        restore()
        raise
    except BaseException as error:
        restore()
        if received:
            raise _interrupt(received[0]) from error
        raise
    restore()
    if received:
        raise _interrupt(received[0])


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
