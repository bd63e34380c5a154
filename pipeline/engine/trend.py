"""The trend engine: annual rasters in, one trend GeoTIFF out, window by window.

The parent process checks the inputs, plans windows under the memory budget,
hands (stack, window) pairs to the workers, and is the only writer. Workers open
the files themselves and read only their window.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import UsageError
from ..files.outputs import RasterWriter, check_output, temporary_path
from .coverage import check_count_band, read_counts
from .executors import DEFAULT_EXECUTOR, default_workers, resident_bytes, resolve_workers, task_runner
from .kernels import Method, bytes_per_pixel, chunk_overhead, fit_pixels
from .options import FitOptions, check_years
from .stack import Stack, close_cached, open_stack
from .statistics import extra_bytes_per_pixel, extra_fixed_bytes, finish_fdr
from .windows import DEFAULT_MEMORY_BUDGET, OUTPUT_BLOCK, TARGET_PIXELS, align_block, parse_memory, plan_windows

if TYPE_CHECKING:
    from .dask_executor import DaskSettings

ProgressCallback = Callable[[int, int], None]
log = logging.getLogger(__name__)

# Memory the budget must leave besides the workers' windows (see plan_memory):
GDAL_CACHE_BYTES = 64 << 20  # GDAL's block cache, the size RasterWriter sets for the whole process
LOAD_ALLOWANCE = 32 << 20  # what the first reads and fits may still add to the process: scipy.special, GDAL's drivers
COMPILED_KERNEL_BYTES = 128 << 20  # numba and LLVM with Sen's compiled kernel loaded: measured 114 MiB


@dataclass
class WindowResult:
    window: Window
    bands: dict[str, np.ndarray]
    read_seconds: float
    fit_seconds: float


@dataclass
class TrendRun:
    """What a run did: where, which years, how many windows, and where the time went."""

    output: str
    years: list[int]
    method: str
    windows: int
    workers: int
    pixels: int
    timings: dict[str, float] = field(default_factory=dict)
    fdr: dict[str, str] | None = None  # method, q, number of tests, significant pixels (with --fdr)


_BUFFERS = threading.local()  # one read buffer per worker thread, reused: fresh pages are slow to fault in


def fit_window(stack: Stack, window: Window, options: FitOptions) -> WindowResult:
    """Read one window of every year and fit it; runs in a worker process."""
    started = time.perf_counter()
    values = stack.read(window, out=getattr(_BUFFERS, "values", None))
    _BUFFERS.values = values
    counts = read_counts(stack, window, options.count_band) if options.count_band else None
    read_done = time.perf_counter()
    bands = fit_pixels(
        values,
        stack.years,
        method=options.method,
        min_years=options.min_years,
        confidence=options.confidence,
        alpha=options.alpha,
        dtype=np.float32,
        extras=options.extras,
        counts=counts,
    )
    return WindowResult(window, bands, read_done - started, time.perf_counter() - read_done)


def plan_stack_windows(
    stack: Stack, options: FitOptions, workers: int, budget: int, window_pixels: int = TARGET_PIXELS
) -> list[Window]:
    """Windows for this stack, ``workers`` of them in memory at once within ``budget``, aligned to its blocks."""
    block_rows, block_cols = stack.block_shape
    return plan_windows(
        stack.grid.height,
        stack.grid.width,
        bytes_per_pixel=bytes_per_pixel(options.method, len(stack.layers), stack.working_dtype.itemsize)
        + extra_bytes_per_pixel(options, len(stack.layers)),
        fixed_bytes=chunk_overhead(options.method, len(stack.layers), min(stack.grid.pixels, window_pixels))
        + extra_fixed_bytes(options, len(stack.layers), min(stack.grid.pixels, window_pixels)),
        budget=budget,
        workers=workers,
        block_height=align_block(block_rows, stack.grid.height),
        block_width=align_block(block_cols, stack.grid.width),
        striped=block_cols >= stack.grid.width and stack.grid.width > OUTPUT_BLOCK,
        target_pixels=window_pixels,
    )


@dataclass(frozen=True)
class MemoryPlan:
    """How a run fits its budget: the workers, their windows, and what the program itself takes."""

    workers: int
    windows: list[Window]
    program_bytes: int  # interpreter, libraries and GDAL's cache: what is not the workers' windows
    worker_process_bytes: int  # per worker, a process's own copy of the program (0 for threads)
    note: str | None = None  # said to the user at the start when fewer workers than asked fit


def plan_memory(
    stack: Stack, options: FitOptions, workers: int, budget: int, executor: str, window_pixels: int = TARGET_PIXELS
) -> MemoryPlan:
    """Plan workers and windows so that the whole process tree stays within ``budget``.

    The budget covers this process as it is now (interpreter and libraries), what
    the first read and fit add, GDAL's block cache, each worker process's own copy
    of the program (process executor), and each worker's windows and temporaries.
    When fewer workers than asked fit, the plan says so; when not even one does,
    it is a usage error naming the budget needed. A Dask cluster's workers live
    elsewhere: there the budget is only shared out between the windows.
    """
    if executor == "dask":
        windows = plan_stack_windows(stack, options, workers, budget, window_pixels)
        return MemoryPlan(min(workers, len(windows)), windows, 0, 0)
    load = LOAD_ALLOWANCE + (COMPILED_KERNEL_BYTES if _uses_compiled_kernel(options, stack) else 0)
    program = resident_bytes() + load + GDAL_CACHE_BYTES
    per_process = resident_bytes() + load + GDAL_CACHE_BYTES if executor == "process" else 0
    for count in range(workers, 0, -1):
        left = budget - program - (count * per_process if count > 1 else 0)  # one worker runs in this process
        try:
            windows = plan_stack_windows(stack, options, count, left, window_pixels) if left > 0 else None
        except UsageError:
            windows = None
        if windows:
            break
    else:
        n_years = len(stack.layers)
        need = (
            program
            + chunk_overhead(options.method, n_years, _smallest_window(stack))
            + extra_fixed_bytes(options, n_years, _smallest_window(stack))
            + _smallest_window(stack) * bytes_per_pixel(options.method, n_years, stack.working_dtype.itemsize)
        )
        raise UsageError(
            f"a memory budget of {budget / 2**20:.0f} MiB cannot hold one worker: the program takes about "
            f"{program / 2**20:.0f} MiB (interpreter, libraries, GDAL cache) and a worker about "
            f"{(need - program) / 2**20:.0f} MiB more; raise --memory-budget to at least {need / 2**20:.0f}MB"
        )
    note = None
    if count < workers:
        note = (
            f"the memory budget of {budget / 2**20:.0f} MiB holds {count} worker(s), not {workers}: the program "
            f"takes about {program / 2**20:.0f} MiB"
            + (f" and each worker process {per_process / 2**20:.0f} MiB more" if per_process else "")
            + f"; using {count} (raise --memory-budget to use more)"
        )
    return MemoryPlan(min(count, len(windows)), windows, program, per_process if count > 1 else 0, note)


def _uses_compiled_kernel(options: FitOptions, stack: Stack) -> bool:
    """Whether the fit will load a compiled kernel (numba: OLS's, or Sen's) anew, which the memory plan must count."""
    from .kernels.compiled import turned_off
    from .kernels.robust import compiled_pays

    return (
        (options.method is not Method.sen or compiled_pays(len(stack.year_list)))  # OLS's kernel at every length
        and "numba" not in sys.modules  # once loaded, this process's resident memory already holds it
        and not turned_off()
        and importlib.util.find_spec("numba") is not None
    )


def _smallest_window(stack: Stack) -> int:
    """Pixels of the smallest window :func:`plan_windows` would cut from this stack."""
    block_rows, block_cols = stack.block_shape
    height, width = stack.grid.height, stack.grid.width
    striped = block_cols >= width and width > OUTPUT_BLOCK
    cols = width if striped else min(align_block(block_cols, width), width)
    return min(align_block(block_rows, height) * cols, height * width)


def _load_kernel_libraries() -> None:
    """Import what Sen's kernel imports on first use, in the background while the stack is opened."""
    importlib.import_module("scipy.special")


def _warm_up_kernels(method: Method, n_years: int, dtype: np.dtype, background: bool) -> None:
    """Load the compiled kernels the fit will use for windows of ``dtype`` (Sen's about 0.7 s, OLS's
    about 0.25 s; a first compile takes longer).

    In the background while the first windows are read (threads); or before worker
    processes start, so that they load what this process compiled and cached instead
    of each compiling it at once on the same cores.
    """
    from .kernels.compiled import said_if_slow
    from .kernels.ols import warm_up as warm_up_ols
    from .kernels.robust import compiled_pays
    from .kernels.robust import warm_up as warm_up_sen

    ols = method is not Method.sen
    sen = method is not Method.ols and compiled_pays(n_years)
    names = [name for name, used in (("OLS's", ols), ("Sen's", sen)) if used]

    def load() -> None:
        with said_if_slow(" and ".join(names) + (" kernels" if len(names) > 1 else " kernel")):
            if ols:
                warm_up_ols(dtype.type)
            if sen:
                warm_up_sen((dtype.type,), n_years)

    if background:
        threading.Thread(target=load, name="eetrend-kernel", daemon=True).start()
    else:
        load()


def gdal_threads(workers: int) -> str:
    """GDAL's decompression threads for reading windows: the user's ``GDAL_NUM_THREADS`` if set; else one
    per reader when the workers already fill the cores (more only crowd them: reading a 2000 x 2000 x 40
    stack in 2 worker threads took 1.7 s with one, 1.9-2.2 s with ``ALL_CPUS``), all cores when they do not."""
    if os.environ.get("GDAL_NUM_THREADS"):
        return os.environ["GDAL_NUM_THREADS"]
    return "1" if workers >= default_workers() else "ALL_CPUS"


def trend_rasters(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    options: FitOptions | None = None,
    years: Sequence[int] | None = None,
    year_pattern: str | None = None,
    band: int = 1,
    workers: int | None = None,
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    compress: str = "zstd",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    window_pixels: int = TARGET_PIXELS,
    executor: str = DEFAULT_EXECUTOR,
    dask: DaskSettings | None = None,
    format: str = "gtiff",
    exclude: Sequence[str | os.PathLike[str]] = (),
    dtype_scale: Mapping[str, tuple[float, float]] | None = None,
) -> TrendRun:
    """Fit the trend of every pixel of an annual stack and write it as one GeoTIFF.

    ``inputs`` is a folder, a glob, a list of files, or one multi-band file. The
    output appears under ``output`` only once it is complete. ``window_pixels``
    is the preferred window size; the memory budget may make windows smaller.
    ``memory_budget`` bounds the resident memory of the whole run (this process
    and any worker processes; see :func:`plan_memory`). ``executor`` is "thread"
    (a pool of ``workers`` threads in this process), "process" (a pool of
    processes) or "dask" (``dask`` settings: a scheduler address, SLURM, or a
    local cluster of ``workers``).
    ``format`` is gtiff, cog, netcdf or zarr (see :mod:`pipeline.engine.formats`). The output and
    the files in ``exclude`` are never taken as inputs.
    ``dtype_scale`` maps a data type to (scale, offset) for stacks that mix data types.
    An output that is one of the inputs (by name or link) is refused even with ``overwrite``.
    """
    if format != "gtiff":
        from .formats import write_via_geotiff

        return write_via_geotiff(output, format, overwrite, lambda tif: trend_rasters(
            inputs, tif, options=options, years=years, year_pattern=year_pattern, band=band, workers=workers,
            memory_budget=memory_budget, compress=compress, progress=progress, window_pixels=window_pixels,
            executor=executor, dask=dask, exclude=[output, *exclude], dtype_scale=dtype_scale), compress=compress)
    started = time.perf_counter()
    loading = None
    options = options or FitOptions()
    if options.method is not Method.ols and "scipy.special" not in sys.modules:  # OLS needs no scipy
        loading = threading.Thread(target=_load_kernel_libraries, name="eetrend-imports", daemon=True)
        loading.start()
    check_output(output, overwrite)
    stack = open_stack(
        inputs, years=years, year_pattern=year_pattern, band=band, min_years=options.min_years,
        exclude=[output, *exclude], dtype_scale=dtype_scale,
    )
    if options.count_band:
        check_count_band(stack, options.count_band)
    check_years(options, len(stack.year_list))
    plan = plan_memory(
        stack, options, resolve_workers(workers), parse_memory(memory_budget), executor, window_pixels
    )
    if executor != "dask":
        _warm_up_kernels(options.method, len(stack.year_list), stack.working_dtype, executor == "thread")
    if plan.note:
        log.warning(plan.note)
    windows, n_workers = plan.windows, plan.workers
    if loading is not None and executor != "thread":
        loading.join()  # a process must not fork, nor a cluster start, in the middle of an import
    opened = time.perf_counter()
    timings = {"open": opened - started, "read": 0.0, "fit": 0.0, "write": 0.0}
    done = 0
    if progress:
        progress(0, len(windows))
    fitted = temporary_path(Path(output), ".fit.tif") if options.fdr else output  # --fdr: a post-pass adds bands
    with RasterWriter(
        fitted,
        stack.grid,
        options.bands,
        tags=options.tags(stack.year_list, stack.units),
        units=stack.units,
        compress="zstd" if options.fdr else compress,
        overwrite=overwrite or bool(options.fdr),
        inputs=stack.files,
    ) as writer:
        from .lineage import inputs_tag

        writer.tags.update(inputs_tag(stack, output))  # so a report can find the inputs from the output alone
        try:
            tasks = ((stack, window, options) for window in windows)
            with rasterio.Env(GDAL_NUM_THREADS=gdal_threads(n_workers)):
                with task_runner(executor, n_workers, dask) as run_tasks, \
                        closing(run_tasks(fit_window, tasks)) as results:  # an error stops the workers now
                    for result in results:
                        write_started = time.perf_counter()
                        writer.write(result.window, result.bands)
                        timings["write"] += time.perf_counter() - write_started
                        timings["read"] += result.read_seconds
                        timings["fit"] += result.fit_seconds
                        done += 1
                        if progress:
                            progress(done, len(windows))
        finally:
            close_cached()
            _BUFFERS.values = None
        finish = time.perf_counter()
    timings["finish"] = time.perf_counter() - finish
    fdr = None
    if options.fdr:
        fdr_started = time.perf_counter()
        fdr = finish_fdr(fitted, output, options, parse_memory(memory_budget), compress, overwrite, stack.units)
        timings["fdr"] = time.perf_counter() - fdr_started
    timings["wall"] = time.perf_counter() - started
    return TrendRun(
        output=os.fspath(output),
        years=stack.year_list,
        method=options.method.value,
        windows=len(windows),
        workers=n_workers,
        pixels=stack.grid.pixels,
        timings=timings,
        fdr=fdr,
    )
