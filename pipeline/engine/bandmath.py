"""``eetrend index``: a spectral index of a multi-band raster, window by window in parallel.

This is the raster-tiles tutorial done without tile files: the grid is cut into
windows under a memory budget, workers (threads by default, a process pool, or a Dask
cluster) each open the file and read only the bands and the window they need, and the
parent writes each finished block into one GeoTIFF. Integer inputs are computed as float; nodata and a
zero denominator give NaN, never a warning.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ..errors import InputError, UsageError
from ..files.outputs import RasterWriter, check_output
from .dask_executor import DaskSettings
from .executors import resolve_workers, task_runner
from .stack import Header, close_cached, open_cached, read_failure, read_header
from .windows import DEFAULT_MEMORY_BUDGET, align_block, parse_memory, plan_windows

#: Bands each index needs, and the band numbers of a Landsat TM/ETM+ stack without the
#: thermal band (1 blue, 2 green, 3 red, 4 nir, 5 swir1, 6 swir2), used when not given.
INDEX_BANDS = {
    "ndvi": ("red", "nir"),
    "evi": ("blue", "red", "nir"),
    "nbr": ("nir", "swir2"),
    "ndmi": ("nir", "swir1"),
    "savi": ("red", "nir"),
}
DEFAULT_BANDS = {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir1": 5, "swir2": 6}
WINDOW_PIXELS = 1 << 20  # band math is cheap per pixel: larger windows than the trend's amortise each task


def compute_index(index: str, bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """The index from float arrays named blue, red, nir, swir1, swir2; NaN where the denominator is 0."""
    b = bands
    if index == "ndvi":
        numerator, denominator = b["nir"] - b["red"], b["nir"] + b["red"]
    elif index == "nbr":
        numerator, denominator = b["nir"] - b["swir2"], b["nir"] + b["swir2"]
    elif index == "ndmi":
        numerator, denominator = b["nir"] - b["swir1"], b["nir"] + b["swir1"]
    elif index == "evi":
        numerator = 2.5 * (b["nir"] - b["red"])
        denominator = b["nir"] + 6.0 * b["red"] - 7.5 * b["blue"] + 1.0
    elif index == "savi":
        numerator, denominator = 1.5 * (b["nir"] - b["red"]), b["nir"] + b["red"] + 0.5
    else:
        raise UsageError(f"--index {index!r} is not one of {', '.join(INDEX_BANDS)}")
    result = np.full(numerator.shape, np.nan, dtype=np.float32)
    np.divide(numerator, denominator, out=result, where=denominator != 0)
    return result


@dataclass(frozen=True)
class IndexJob:
    """What each worker needs: small and picklable."""

    path: str
    index: str
    band_numbers: tuple[tuple[str, int], ...]
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0


@dataclass
class IndexRun:
    output: str
    index: str
    bands: dict[str, int]
    windows: int
    workers: int
    executor: str
    pixels: int
    timings: dict[str, float] = field(default_factory=dict)


_BUFFERS = threading.local()  # per worker thread: fresh pages are slow to fault in, so reuse them


def _buffer(name: str, shape: tuple[int, ...]) -> np.ndarray:
    buffer = getattr(_BUFFERS, name, None)
    if buffer is None or buffer.size < int(np.prod(shape)):
        buffer = np.empty(int(np.prod(shape)), dtype=np.float32)
        setattr(_BUFFERS, name, buffer)
    return buffer[: int(np.prod(shape))].reshape(shape)


def index_window(job: IndexJob, window: Window) -> tuple[Window, np.ndarray, float]:
    """Read the needed bands of one window and compute the index (runs in a worker)."""
    started = time.perf_counter()
    dataset = open_cached(job.path)
    numbers = [number for _, number in job.band_numbers]
    shape = (len(numbers), int(window.height), int(window.width))
    try:
        data = dataset.read(numbers, window=window, out=_buffer("data", shape))
    except RasterioError as exc:
        raise read_failure(job.path, exc) from None
    missing = (data == job.nodata).any(axis=0) if job.nodata is not None else None
    if job.scale != 1.0 or job.offset != 0.0:
        data *= np.float32(job.scale)
        data += np.float32(job.offset)
    bands = {name: data[i] for i, (name, _) in enumerate(job.band_numbers)}
    result = compute_index(job.index, bands)
    if missing is not None:
        result[missing] = np.nan
    return window, result, time.perf_counter() - started


def resolve_bands(header: Header, index: str, given: Mapping[str, str | int | None]) -> dict[str, int]:
    """Band numbers for the index: a number, a band description (case-insensitive), or the default."""
    descriptions = [(d or "").strip().lower() for d in header.descriptions]
    chosen: dict[str, int] = {}
    for name in INDEX_BANDS[index]:
        value = given.get(name)
        if value is None or value == "":
            number = DEFAULT_BANDS[name]
        elif isinstance(value, int) or str(value).isdigit():
            number = int(value)
        elif str(value).strip().lower() in descriptions:
            number = descriptions.index(str(value).strip().lower()) + 1
        else:
            raise UsageError(f"--{name} {value!r} is neither a band number nor a band description of "
                             f"{header.path} ({', '.join(d or '-' for d in header.descriptions)})")
        if not 1 <= number <= header.count:
            raise UsageError(f"--{name} is band {number}, but {header.path} has {header.count} band(s); "
                             f"give --{name} N")
        chosen[name] = number
    return chosen


def index_raster(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    index: str = "ndvi",
    bands: Mapping[str, str | int | None] | None = None,
    scale: float = 1.0,
    offset: float = 0.0,
    workers: int | None = None,
    executor: str = "thread",
    dask: DaskSettings | None = None,
    memory_budget: int | str = DEFAULT_MEMORY_BUDGET,
    compress: str = "zstd",
    overwrite: bool = False,
    progress=None,
    format: str = "gtiff",
) -> IndexRun:
    """Compute ``index`` of every pixel of ``input`` into ``output`` (float32, NaN nodata).

    The default executor is a thread pool: reading (GDAL) and the arithmetic (numpy)
    release the GIL, and threads hand finished blocks to the writer without pickling,
    which measured 2.5x faster than a process pool on the tutorial workload.
    ``format`` is gtiff, cog, netcdf or zarr (see :mod:`pipeline.engine.formats`).
    """
    if format != "gtiff":
        from .formats import write_via_geotiff

        return write_via_geotiff(output, format, overwrite, lambda tif: index_raster(
            input, tif, index=index, bands=bands, scale=scale, offset=offset, workers=workers, executor=executor,
            dask=dask, memory_budget=memory_budget, compress=compress, progress=progress), compress=compress)
    started = time.perf_counter()
    index = index.lower()
    if index not in INDEX_BANDS:
        raise UsageError(f"--index {index!r} is not one of {', '.join(INDEX_BANDS)}")
    if not (math.isfinite(scale) and math.isfinite(offset)) or scale == 0:
        raise UsageError(f"--scale {scale} --offset {offset}: give finite numbers and a non-zero scale, "
                         "e.g. --scale 0.0000275 --offset -0.2")
    path = Path(input)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; give a multi-band raster")
    header = read_header(path)
    check_output(output, overwrite, header.files or (path,))
    chosen = resolve_bands(header, index, bands or {})
    grid, nodata = header.grid, header.nodata
    block_rows, block_cols = header.block_shape
    n_workers = resolve_workers(workers)
    striped = block_cols >= grid.width
    windows = plan_windows(
        grid.height, grid.width, bytes_per_pixel=4 * (len(chosen) + 3), budget=parse_memory(memory_budget),
        workers=n_workers, block_height=align_block(block_rows, grid.height),
        block_width=align_block(block_cols, grid.width), striped=striped, target_pixels=WINDOW_PIXELS,
    )
    job = IndexJob(str(path.resolve()), index, tuple(chosen.items()), nodata, scale, offset)
    timings = {"plan": time.perf_counter() - started, "compute": 0.0, "write": 0.0}
    done = 0
    tags = {"index": index, "bands": ",".join(f"{k}={v}" for k, v in chosen.items()), "source": path.name}
    # No predictor: on index values (ratios of integer bands) the floating-point predictor
    # saved 0.3 % of the file and cost 1.7x the write time (measured on the tutorial image).
    with RasterWriter(output, grid, (index,), tags=tags, units=index.upper(), compress=compress,
                      overwrite=overwrite, predictor=1, inputs=header.files or (path,)) as writer:
        try:
            with task_runner(executor, n_workers, dask) as run_tasks:
                for window, values, seconds in run_tasks(index_window, ((job, w) for w in windows)):
                    write_started = time.perf_counter()
                    writer.write(window, {index: values})
                    timings["write"] += time.perf_counter() - write_started
                    timings["compute"] += seconds
                    done += 1
                    if progress:
                        progress(done, len(windows))
        finally:
            close_cached()
    timings["wall"] = time.perf_counter() - started
    return IndexRun(str(output), index, chosen, len(windows), n_workers, executor, grid.pixels, timings)
