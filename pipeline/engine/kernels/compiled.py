"""Loading the numba-compiled kernels: once per process, on first use, and saying so when it makes a user wait.

Sen's (:mod:`.pair_select`) and OLS's (:mod:`.ols_compiled`) kernels are imported
only when a fit needs them, so a command that fits nothing never pays for numba.
Where numba is missing, or cannot write its cache, the numpy kernels run instead
and give the same results; ``EETREND_KERNEL=numpy`` asks for them outright.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from types import ModuleType

log = logging.getLogger(__name__)
# A longer wait is said on stderr. On 2026-12-04's machine cached loads took 0.01-0.24 s and compiles
# 2.5-6.3 s a kernel (a first `--method both` waited 7 s for two of them); a slower host's cached loads
# took up to 2.8 s, which the line's wording covers too.
SLOW_LOAD_S = 2.0
_SAYING = threading.local()  # whether this thread is inside said_if_slow: one clock for nested loads


def turned_off() -> bool:
    """Whether ``EETREND_KERNEL=numpy`` asks for the numpy kernels whatever the fit."""
    return os.environ.get("EETREND_KERNEL", "").strip().lower() == "numpy"


class LazyKernel:
    """One compiled kernel module, imported on the first :meth:`get` of this process, and the
    specialisations of it (one per input type, say) made :meth:`ready` here; thread-safe."""

    def __init__(self, name: str, fallback: str, label: str) -> None:
        self.name = name  # the module's name in this package
        self.fallback = fallback  # what runs instead, for the warning when it cannot load
        self.label = label  # the kernel as the line of a slow compile names it
        self.module: ModuleType | bool | None = None  # None: not tried yet; False: unavailable
        self.loaded: set[Hashable] = set()  # the keys made ready in this process
        self._lock = threading.Lock()  # worker threads and the warm-up may ask at once
        self._loading_lock = threading.Lock()

    def get(self) -> ModuleType | None:
        """The module, or None where numba is not installed or ``EETREND_KERNEL=numpy``."""
        with self._lock:
            if self.module is None:
                self.module = False
                if not turned_off():
                    try:
                        self.module = importlib.import_module(f"{__package__}.{self.name}")
                    except (ImportError, RuntimeError, OSError) as error:  # numba missing, or no cache it can write
                        log.warning("%s is unavailable (%s); %s", self.name, error, self.fallback)
        return self.module or None

    def ready(self, key: Hashable, load: Callable[[], None]) -> None:
        """Call ``load`` (a first call of the compiled functions that ``key`` stands for, which loads
        them from numba's cache or compiles them) once per process, saying so if it is slow.

        One thread loads while the others wait for it, rather than each compiling the same.
        """
        if key in self.loaded:
            return
        with self._loading_lock:
            if key in self.loaded:
                return
            with said_if_slow(self.label):
                load()
            self.loaded.add(key)


@contextmanager
def said_if_slow(what: str) -> Iterator[None]:
    """Log one line naming ``what`` if the block lasts past :data:`SLOW_LOAD_S`.

    Numba compiles a kernel once per install (seconds on an idle core, several times
    that on a busy one) and caches it; a first run should not look hung meanwhile.
    Loads nested in one block (a run's warm-up loads OLS's and Sen's kernels in turn)
    share its clock and its one line: two waits just under the threshold are still
    said when together they pass it.
    """
    if getattr(_SAYING, "active", False):  # an enclosing block already times this wait
        yield
        return
    message = threading.Timer(SLOW_LOAD_S, log.warning, args=(
        f"loading {what} (compiled once per install: seconds on an idle core, longer on a busy one; "
        "later runs load from numba's cache)...",))
    message.daemon = True
    try:
        _SAYING.active = True
        message.start()
        yield
    finally:
        message.cancel()
        _SAYING.active = False
