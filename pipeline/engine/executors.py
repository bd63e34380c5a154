"""Running window tasks: in-process, over a process pool, or on a Dask cluster.

Every executor takes a module-level function and small picklable arguments and
yields results as they finish, so the single writer in the parent process can
store each block while the workers fit the next ones.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import UsageError

if TYPE_CHECKING:
    import multiprocessing.context
    from concurrent.futures import ProcessPoolExecutor

    from .dask_executor import DaskSettings

EXECUTORS = ("thread", "process", "dask")
DEFAULT_EXECUTOR = "thread"  # one interpreter for all workers: measured as fast as processes, and far less memory

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    if workers is None or workers == 0:
        return default_workers()
    if workers < 0:
        raise UsageError(f"--workers is {workers}; give a positive number, or 0 for one per core")
    return workers


def pending_limit(workers: int) -> int:
    """Tasks in flight at once: one running per worker and one more ready per worker, so a
    worker never waits for work while the writer stores a block; at most this many
    finished blocks wait for the writer."""
    return 2 * max(workers, 1)


def resident_bytes() -> int:
    """This process's resident memory now (Linux; 0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _init_worker(parent: int | None = None) -> None:
    # Ctrl-C, SIGTERM and SIGHUP go to the whole process group; the parent alone decides what
    # to stop. A worker dies with its parent, even one killed with SIGKILL (no orphans).
    from ..signals import worker_init

    worker_init(parent if parent is not None else os.getppid())


def _pool_context() -> multiprocessing.context.BaseContext:
    import multiprocessing  # imported here: a tenth of a second that thread pools never need

    # fork shares the parent's imported modules, so workers start at once; it is
    # safe here because the parent holds no open datasets or threads at that point.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def map_unordered(
    fn: Callable[..., R],
    items: Iterable[tuple[Any, ...]],
    *,
    workers: int = 1,
    max_pending: int | None = None,
    threads: bool = False,
) -> Iterator[R]:
    """Call ``fn(*item)`` for every item and yield the results in completion order.

    ``workers == 1`` runs in this process (no pickling, easy debugging). ``threads``
    uses a thread pool instead of processes: right for work that spends its time in
    GDAL reads and large numpy operations, which release the GIL, and whose results
    would otherwise be pickled back to the parent. At most ``max_pending`` tasks
    (default: :func:`pending_limit`) are in flight, which bounds the finished blocks
    waiting in memory for the writer.
    """
    if workers <= 1:
        for item in items:
            yield fn(*item)
        return
    if threads:
        pool = ThreadPoolExecutor(max_workers=workers)
        yield from _map_on_pool(pool, fn, items, max_pending or pending_limit(workers))
        return
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_init_worker,
                               initargs=(os.getpid(),))  # starts nothing yet: no process, no thread
    yield from _map_on_pool(pool, fn, items, max_pending or pending_limit(workers))


def _start(pool: ProcessPoolExecutor) -> Future:
    """Start every worker of ``pool`` and its manager thread now (with fork, the first submit starts
    them all), signals held meanwhile.

    A process pool interrupted while it starts cannot be shut down: one stopped between
    creating its manager thread and starting it fails to join it ("cannot join thread
    before it is started"), and one stopped between two forks leaves a worker that no one
    stops, which the interpreter's exit then waits for forever. A start cannot hang, so
    every signal waits for it, and is raised once the pool can be stopped.
    """
    from ..signals import deferred

    with deferred(insist=False):
        return pool.submit(int)  # a task that does nothing


def _stop(pool: ThreadPoolExecutor | ProcessPoolExecutor, failing: bool) -> None:
    """Shut ``pool`` down, waiting for its running tasks.

    A process pool's shutdown is not interrupted either, and its workers are all ended,
    even ones a failed start left behind. A signal held meanwhile is raised after it,
    unless ``failing``: then the error (or interrupt) already on its way ends the command.
    """
    if isinstance(pool, ThreadPoolExecutor):
        pool.shutdown(wait=True, cancel_futures=True)
        return
    from ..signals import deferred

    try:
        with deferred(insist=False):
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=True, cancel_futures=True)
            for process in processes:
                if process.is_alive():  # left by a failed start; workers ignore SIGTERM (signals.worker_init)
                    process.kill()
                process.join()
    except KeyboardInterrupt:
        if not failing:
            raise


def _map_on_pool(pool: ThreadPoolExecutor | ProcessPoolExecutor, fn: Callable[..., R],
                 items: Iterable[tuple[Any, ...]], limit: int) -> Iterator[R]:
    """The body of :func:`map_unordered` on ``pool``: start it, keep ``limit`` tasks in flight, and shut
    it down at the end, whatever happens from its start on."""
    queue = iter(items)
    pending: set[Future[R]] = set()
    failing = True
    try:
        if not isinstance(pool, ThreadPoolExecutor):
            _start(pool).result()  # a worker that cannot start (its initializer failed) is an error here
        for item in queue:
            pending.add(pool.submit(fn, *item))
            if len(pending) >= limit:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()  # re-raises a worker's error here
                for item in queue:
                    pending.add(pool.submit(fn, *item))
                    break
                yield result
        failing = False
    finally:
        for future in pending:
            future.cancel()
        _stop(pool, failing)


@contextmanager
def task_runner(executor: str, workers: int, dask: DaskSettings | None = None) -> Iterator[Callable[..., Iterator]]:
    """A ``map_unordered``-like function for the chosen executor ("thread", "process" or "dask")."""
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if executor in ("process", "thread"):
        yield lambda fn, items: map_unordered(fn, items, workers=workers, threads=executor == "thread")
        return
    from .dask_executor import DaskSettings, dask_client, dask_map_unordered

    settings = dask or DaskSettings(workers=workers)
    with dask_client(settings) as client:
        slots = sum(client.nthreads().values()) if settings.scheduler else settings.workers
        yield lambda fn, items: dask_map_unordered(client, fn, items, max_pending=max(slots, 1) * 3)
