"""The Dask executor: the same window tasks on a Dask cluster instead of a local process pool.

Three ways to get a cluster: an existing scheduler (``--scheduler tcp://host:8786``), a
local cluster of N single-threaded worker processes, or a SLURM cluster through
dask-jobqueue (the ``[dask.slurm]`` table of a study config), scaled adaptively between
a minimum and a maximum number of jobs, as the raster-tiles tutorial does by hand.

Tasks are the same module-level functions with the same small arguments as for the
process pool (a stack description and a window), so the results are bit-identical.
At most ``max_pending`` tasks are in flight, so finished blocks never pile up in memory.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from ..errors import MissingExtraError, UsageError

R = TypeVar("R")


@dataclass(frozen=True)
class SlurmSettings:
    """A SLURM cluster for dask-jobqueue: per job, and how many jobs."""

    cores: int
    memory: str
    account: str | None = None
    queue: str | None = None
    walltime: str = "01:00:00"
    processes: int = 1
    minimum_jobs: int = 1
    maximum_jobs: int = 4
    interface: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    local_directory: str | None = None
    log_directory: str | None = None


@dataclass(frozen=True)
class DaskSettings:
    """Where Dask tasks run: ``scheduler`` if given, else SLURM if given, else a local cluster."""

    scheduler: str | None = None
    workers: int = 2
    slurm: SlurmSettings | None = None

    def __post_init__(self) -> None:
        if self.scheduler is not None:
            check_scheduler_address(self.scheduler)


SCHEDULER_ADDRESS = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})/?")


def check_scheduler_address(address: str) -> None:
    """A Dask scheduler address such as ``tcp://10.0.0.5:8786``, checked before any connection."""
    match = SCHEDULER_ADDRESS.fullmatch(address.strip())
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise UsageError(f"--scheduler {address!r} is not a Dask scheduler address; write it like "
                         "tcp://10.0.0.5:8786 (host and port)")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:120] if lines else type(exc).__name__


def _require(what: str) -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingExtraError("dask[distributed]", "dask", what) from None


def slurm_job_options(settings: SlurmSettings) -> dict[str, Any]:
    """dask-jobqueue's per-job keywords: resources, the network interface, directives, prologue, folders.

    ``interface`` names the network the scheduler and the workers bind to (a node with
    several networks otherwise binds to the first one, which the other nodes may not reach).
    Job logs go to ``log_directory`` (made here), not ``slurm-*.out`` files in the folder eetrend
    was started in. What is not set (None, or an empty list) is left to dask-jobqueue's own
    configuration (``~/.config/dask/jobqueue.yaml``), as for a hand-made ``SLURMCluster``.
    """
    options: dict[str, Any] = {"cores": settings.cores, "memory": settings.memory, "processes": settings.processes,
                               "account": settings.account, "queue": settings.queue, "walltime": settings.walltime,
                               "interface": settings.interface,
                               "job_extra_directives": list(settings.job_extra_directives) or None,
                               "job_script_prologue": list(settings.job_script_prologue) or None,
                               "local_directory": settings.local_directory,
                               "log_directory": settings.log_directory}
    if settings.log_directory is not None:
        os.makedirs(settings.log_directory, exist_ok=True)
    return options


def check_slurm_host(settings: SlurmSettings) -> None:
    """This machine can submit SLURM jobs and has the interface the scheduler binds to.

    Without ``sbatch`` dask-jobqueue would log the failed submissions and wait for workers
    forever; a missing interface would end in a traceback from deep inside Dask.
    """
    if shutil.which("sbatch") is None:
        raise UsageError("[dask.slurm] needs SLURM's sbatch on PATH: run eetrend on a SLURM login node, or remove "
                         "[dask.slurm] from the config")
    if settings.interface is not None:
        found = sorted(name for _, name in socket.if_nameindex())
        if settings.interface not in found:
            raise UsageError(f"[dask.slurm] interface {settings.interface!r} is not a network interface of this "
                             f"machine (it has {', '.join(found)}); name the network the nodes share")


def slurm_cluster(settings: SlurmSettings) -> Any:
    """A dask-jobqueue SLURMCluster (no job is submitted until it scales)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise MissingExtraError("dask-jobqueue", "dask", "A SLURM cluster") from None
    check_slurm_host(settings)
    return SLURMCluster(**slurm_job_options(settings), scheduler_options={"dashboard_address": None})


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Any]:
    """A connected ``distributed.Client``; the cluster it started (if any) is closed afterwards."""
    _require("--executor dask")
    from distributed import Client, LocalCluster

    from ..signals import deferred

    client = cluster = None
    try:
        # A cluster interrupted while it starts cannot be closed: Ctrl-C or SIGTERM wait until it has.
        with deferred():
            if settings.scheduler:
                try:
                    client = Client(settings.scheduler, timeout="30s")
                except OSError as exc:  # refused, timed out, no such host
                    raise UsageError(f"cannot reach the Dask scheduler at {settings.scheduler} "
                                     f"({_first_line(exc)}); start it, or check the address and port") from None
            elif settings.slurm is not None:
                cluster = slurm_cluster(settings.slurm)
                cluster.adapt(minimum_jobs=settings.slurm.minimum_jobs, maximum_jobs=settings.slurm.maximum_jobs)
                client = Client(cluster)
            else:
                # The scheduler serves HTTP (health, metrics) even without a dashboard, on 8787 unless told:
                # a free port instead, or a second cluster on the machine warns "Port 8787 is already in use".
                cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
                client = Client(cluster)
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def dask_map_unordered(client: Any, fn: Callable[..., R], items: Iterable[tuple[Any, ...]], *,
                       max_pending: int) -> Iterator[R]:
    """``fn(*item)`` for every item on the cluster, yielded in completion order."""
    from distributed import as_completed

    queue = iter(items)
    futures = as_completed([client.submit(fn, *item, pure=False) for item in islice(queue, max_pending)])
    for future in futures:
        result = future.result()  # re-raises a task's error here
        future.release()
        for item in islice(queue, 1):
            futures.add(client.submit(fn, *item, pure=False))
        yield result
