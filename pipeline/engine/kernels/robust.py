"""Sen's slope and the Mann-Kendall test over every pixel at once.

Pure: arrays in, arrays out. Per pixel it reproduces

* ``scipy.stats.theilslopes(y, x, confidence)`` with its default ``method='separate'``:
  slope = median of the pairwise slopes (y_j - y_i) / (x_j - x_i) over the real
  years, intercept = median(y) - slope * median(x) (Conover's convention, also
  pymannkendall's), and the confidence interval of Sen (1968, eq. 2.6);
* ``pymannkendall.original_test``: S, the tie-corrected variance of S, z with the
  continuity correction, the two-sided p computed as ``2 * (1 - Phi(|z|))``
  exactly as pymannkendall does (so p below about 1e-15 reads as 0), and tau.

Missing years (NaN) are skipped pixel by pixel. Two exceptions, where the oracles
answer what the data cannot support: ``mk_z`` and ``mk_p`` of a two-value series (its
one pair gives p = 1 whatever the values) and a confidence bound that scipy clips to
the extreme slopes of a series too short for the confidence asked are NaN.

The one unavoidable cost is ordering each pixel's n(n-1)/2 pairwise slopes; the
kernel is built so that little else costs as much (``benchmarks/bench_scene.py``
measures it against numpy sorting the same slopes):

* the pairwise differences are written lag by lag from contiguous slices of
  the (years, pixels) block, with no index arrays to gather through;
* they are sorted once, in place (numpy's vectorised sort beats ``np.partition``
  here even for the four order statistics needed); the median and both
  confidence bounds are then read off by position;
* S needs only one count over the differences, of the negative ones: the zero
  differences are the tied pairs, known from each pixel's sorted values, and
  the rest are positive;
* the work per pixel (valid years, medians of x and y, ties, the variance, the
  ranks of the confidence bounds) is done once for the whole block, mostly on
  contiguous (years, pixels) arrays; only the pairwise work runs in chunks
  sized to stay in the processor's cache.

Every step is element-wise per pixel, so a pixel's result does not depend on
the window or chunk it was fitted in.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

import numpy as np

from .compiled import LazyKernel

SEN_BANDS = ("sen_slope", "sen_intercept", "sen_low", "sen_high")
MK_BANDS = ("mk_s", "mk_var_s", "mk_z", "mk_p", "mk_tau")
MK_MIN_TESTED = 3  # valid years for mk_z and mk_p: with two, the one pair gives p = 1 whatever the values
_kernel = LazyKernel("pair_select", "sorting instead, the same results", "Sen's kernel")
ROWS_CHUNK_BYTES = 256 << 10  # slopes the compiled rows kernel builds and numpy sorts at once: in L2
COUNTING_FROM_PAIRS = 465  # pairs of years (31 years and more) from which order statistics are counted
NETWORK_UP_TO_PAIRS = 78  # pairs of years (13 years and fewer) sorted in place by a sorting network

def bytes_per_pixel(n_years: int) -> int:
    """Working memory of :func:`sen_mk` per pixel of its block, for window planning.

    The pairwise slopes live in one buffer of :func:`pair_chunk` pixels whatever
    the size of the block: see :func:`chunk_bytes`.
    """
    return 12 * n_years + 400  # measured about 10 per year plus 300, given a quarter more


def pair_chunk(n_years: int, size: int = 4 << 20) -> int:
    """Pixels whose pairwise slopes are built and sorted at once: about ``size`` bytes (4 MiB) of slopes."""
    pairs = max(1, n_years * (n_years - 1) // 2)
    step = size // (8 * pairs)
    return step // 64 * 64 if step >= 64 else max(step, 1)


def chunk_bytes(n_years: int, max_pixels: int | None = None) -> int:
    """Memory of the pairwise slopes buffer, the same whatever the block (at most ``max_pixels`` wide)."""
    step = pair_chunk(n_years) if max_pixels is None else min(pair_chunk(n_years), max_pixels)
    return step * 8 * (n_years * (n_years - 1) // 2)


def pairwise_differences(columns: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[p, k] = columns[j, p] - columns[i, p]`` for every pair of years i < j.

    ``columns`` is (years, pixels); ``out`` is (pixels, pairs). Pairs come lag by
    lag: all (i, i+1), then all (i, i+2), ... Each lag is one subtraction of two
    contiguous slices, written into the pixel-major output.
    """
    n_years = columns.shape[0]
    by_pair = out.T
    start = 0
    for lag in range(1, n_years):
        stop = start + n_years - lag
        np.subtract(columns[lag:], columns[:-lag], out=by_pair[start:stop])
        start = stop
    return out


def year_gaps(x: np.ndarray) -> np.ndarray:
    """``x[j] - x[i]`` for the pairs of :func:`pairwise_differences`, in the same order."""
    return pairwise_differences(x[:, None], np.empty((1, x.shape[0] * (x.shape[0] - 1) // 2)))[0]


def _at_ranks(sorted_rows: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``sorted_rows[p, ranks[p]]`` for every row p (ranks already within the row)."""
    width = sorted_rows.shape[1]
    return sorted_rows.reshape(-1).take(np.arange(sorted_rows.shape[0]) * width + ranks)


def _nth_valid_year(counted: np.ndarray, x: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The ``rank``-th (from 0) valid year of each pixel, given the running count of valid years.

    ``counted[i, p]`` is how many of years 0..i pixel p has; the year sought is
    the first i where that count exceeds ``rank``, i.e. the number of years
    whose count does not.
    """
    index = np.count_nonzero(counted <= rank, axis=0)
    return x[np.minimum(index, x.shape[0] - 1)]


def _tie_runs(sorted_rows: np.ndarray) -> np.ndarray:
    """For each entry of ascending-sorted rows, the size of its group of equal values (NaN never ties)."""
    width = sorted_rows.shape[1]
    index = np.arange(width)
    starts_run = np.ones(sorted_rows.shape, dtype=bool)
    starts_run[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    ends_run = np.ones(sorted_rows.shape, dtype=bool)
    ends_run[:, :-1] = starts_run[:, 1:]
    start = np.maximum.accumulate(np.where(starts_run, index, 0), axis=1)
    end = np.minimum.accumulate(np.where(ends_run, index, width - 1)[:, ::-1], axis=1)[:, ::-1]
    return (end - start + 1).astype(np.float64)


def _tie_terms(sorted_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ascending-sorted values: the number of tied pairs and the variance's tie term.

    A group of t equal values gives t(t-1)/2 zero differences and takes
    t(t-1)(2t+5) off the variance of S; each member adds its share, (t-1)/2 and
    (t-1)(2t+5). Only rows with a tie are worked on; equal values are neighbours.
    """
    rows, width = sorted_rows.shape
    tied_pairs, tie_term = np.zeros(rows), np.zeros(rows)
    flat = sorted_rows.reshape(-1)
    equal = np.flatnonzero(flat[1:] == flat[:-1])
    tied = np.unique(equal[(equal + 1) % width != 0] // width)  # pairs within one row only
    if tied.size:
        run = _tie_runs(sorted_rows[tied])
        tied_pairs[tied] = ((run - 1.0) / 2.0).sum(axis=1)
        tie_term[tied] = ((run - 1.0) * (2.0 * run + 5.0)).sum(axis=1)
    return tied_pairs, tie_term


def _sorted_order_statistics(
    columns: np.ndarray, x: np.ndarray, ranks: tuple[np.ndarray, ...], picked: np.ndarray, negative: np.ndarray
) -> None:
    """The order statistics by sorting every pixel's slopes (the compiled kernel finds them by counting).

    A chunk of pixels at a time: the differences, the negative ones counted, the
    slopes, one sort, and the order statistics read off by position (missing
    pairs are NaN and sort last).
    """
    n_years, pixels = columns.shape
    gaps = year_gaps(x)
    step = pair_chunk(n_years)
    buffer = np.empty((min(step, pixels), gaps.shape[0]))
    # Each chunk's values are copied to rows a little longer than the chunk: rows
    # a power of two apart would make all the years compete for the same cache sets.
    lanes = np.empty((n_years, min(step, pixels) + 8))
    negatives = np.empty(buffer.shape, dtype=bool)
    # Summing the flags as bytes into 16-bit counts takes a third less time than count_nonzero.
    count_type = np.uint16 if gaps.shape[0] < 1 << 16 else np.int64
    for start in range(0, pixels, step):
        stop = min(start + step, pixels)
        chunk = lanes[:, : stop - start]
        chunk[...] = columns[:, start:stop]
        slopes = pairwise_differences(chunk, buffer[: stop - start])
        flags = np.less(slopes, 0, out=negatives[: stop - start])  # before dividing: no sign can blur
        negative[start:stop] = np.add.reduce(flags.view(np.uint8), axis=1, dtype=count_type)
        slopes /= gaps
        slopes.sort(axis=1)
        for row, rank in zip(picked, ranks, strict=True):
            row[start:stop] = _at_ranks(slopes, rank[start:stop])


def compiled_kernel() -> ModuleType | None:
    """The compiled kernels (:mod:`.pair_select`), or None where numba is not installed or
    ``EETREND_KERNEL=numpy`` asks for the numpy one. Imported once, on first use."""
    return _kernel.get()


def counting_pays(n_years: int) -> bool:
    """Whether the counting kernel (:func:`.pair_select.sen_pixels`) beats numpy's sort for series this long.

    Measured (``benchmarks/bench_sen_floor.py``'s workload through ``pipeline.fit``, 65,536 float32
    pixels, one thread, interleaved, medians of 7, load 0.8-0.9), counting against the rows of
    :func:`.pair_select.sen_tiles` with numpy's sort: 1.48x as long at 21 years, 1.10 at 29,
    0.97-1.05 at 30, 0.93 at 31, 0.91 at 32, 0.81-0.83 at 33 and 0.75 at 40 (4.25 against 5.65 us
    a pixel); so the rows run below 31 years.
    """
    return n_years * (n_years - 1) // 2 >= COUNTING_FROM_PAIRS


def compiled_route(n_years: int) -> str:
    """Which compiled kernel fits series this long: "network" (:func:`.pair_select.sen_tiles` sorting
    in place by a network, up to 13 years), "rows" (its rows sorted by numpy) or "counting" (from 31 years).

    Measured (131,072 float32 pixels, one thread, interleaved in one process, load 0.7-0.8): the
    network took 185, 375 and 659 ns a pixel at 5, 10 and 13 years against 274, 495 and 729 ns
    for the rows with numpy's sort; at 14 years a first version of the two was even (737 against
    775 ns), at 15 the rows won.
    """
    if counting_pays(n_years):
        return "counting"
    return "network" if n_years * (n_years - 1) // 2 <= NETWORK_UP_TO_PAIRS else "rows"


def compiled_pays(n_years: int) -> bool:
    """Whether the compiled kernels are worth loading for series this long: at every length
    with pairs to sort (loading numba costs about 0.7 s once per process)."""
    return n_years >= 2


def warm_up(dtypes: tuple[type, ...] = (np.float32, np.float64), n_years: int = 40) -> None:
    """Load the compiled kernel for series of ``n_years`` and windows of ``dtypes`` (from numba's
    cache, or compile it) so that the first window does not wait for it; nothing where it is unavailable."""
    kernel = compiled_kernel()
    if kernel is not None:
        for dtype in dtypes:
            _ready(kernel, np.dtype(dtype), compiled_route(n_years))


def _ready(kernel: ModuleType, dtype: np.dtype, route: str) -> None:
    """Make sure the kernel for ``dtype`` and ``route`` (see :func:`compiled_route`) is loaded or
    compiled, saying so on stderr when that takes a while.

    In a fresh install numba compiles it once (about 10 s on an idle core, several
    times that on a loaded machine) and caches it; later processes load it in about
    a second. One line is logged if the wait passes :data:`.compiled.SLOW_LOAD_S`. Only the
    kernel and type the fit needs are compiled: each is a compile of its own.
    """
    n_years = {"counting": 60, "rows": 20, "network": 2}[route]
    values = np.zeros((n_years, 1), dtype=dtype)
    per_pixel, picked, negative = np.empty((6, 1)), np.empty((4, 1)), np.empty(1, dtype=np.int64)
    bands = np.empty((len(kernel.SEN_MK_ROWS), 1))

    def load() -> None:
        _compiled_order_statistics(kernel, values, np.arange(float(n_years)), -1.96, per_pixel, picked, negative)
        kernel.sen_mk_bands(per_pixel, picked, negative, -1.96, 2, MK_MIN_TESTED, bands)

    _kernel.ready((dtype, route), load)


def _compiled_order_statistics(
    kernel: ModuleType, values: np.ndarray, x: np.ndarray, z_crit: float, per_pixel: np.ndarray,
    picked: np.ndarray, negative: np.ndarray,
) -> None:
    """The compiled kernels' per-pixel work: counting for long series, a sorting network for short ones,
    compiled rows sorted by numpy between (:func:`compiled_route`)."""
    n_years, pixels = values.shape
    route = compiled_route(n_years)
    values = np.ascontiguousarray(values)  # one layout, the warm-up's, whatever view a caller passes
    if route == "counting":
        kernel.sen_pixels(values, x, z_crit, per_pixel, picked, negative)
        return
    if route == "network":
        kernel.sen_tiles(values, x, z_crit, per_pixel, negative, True, _network(n_years * (n_years - 1) // 2), picked,
                         _NO_ROWS, _NO_RANKS)
        return
    step = pair_chunk(n_years, ROWS_CHUNK_BYTES)
    buffer = np.empty((min(step, pixels), max(n_years * (n_years - 1) // 2, 1)))
    for start in range(0, pixels, step):
        stop = min(start + step, pixels)
        # Contiguous copies of the step's columns (a few KiB, in cache), not strided views of the whole:
        # the kernels then see the one layout their warm-up loads, whatever the number of steps, where
        # views would make numba compile a second specialisation during a first run's fit.
        rows, chunk_ranks = buffer[: stop - start], np.empty((4, stop - start), dtype=np.int64)
        chunk_out, chunk_picked = np.empty((6, stop - start)), np.ascontiguousarray(picked[:, start:stop])
        kernel.sen_tiles(np.ascontiguousarray(values[:, start:stop]), x, z_crit, chunk_out, negative[start:stop],
                         False, _NO_NETWORK, chunk_picked, rows, chunk_ranks)
        rows.sort(axis=1)
        kernel.picked_at(rows, chunk_ranks, chunk_picked)
        per_pixel[:, start:stop] = chunk_out
        picked[:, start:stop] = chunk_picked


_NO_ROWS, _NO_RANKS, _NO_NETWORK = np.empty((0, 1)), np.empty((4, 0), dtype=np.int64), np.empty((0, 2), dtype=np.int64)


@cache
def _network(pairs: int) -> np.ndarray:
    """The sorting network for ``pairs`` slopes, built once per process (a few hundred compare-exchanges)."""
    return _kernel.get().merge_network(pairs)


def sen_mk(
    values: np.ndarray,
    x: np.ndarray,
    min_years: int = 3,
    confidence: float = 0.95,
    compiled: bool | None = None,
) -> dict[str, np.ndarray]:
    """Sen's slope with its confidence interval, and the Mann-Kendall test, per pixel.

    ``values`` is (N, P) with NaN for missing; ``x`` is (N,) strictly increasing.
    Returns float64 arrays of length P named as :data:`SEN_BANDS` and
    :data:`MK_BANDS`, plus ``n``; pixels with fewer than ``min_years`` valid
    values are NaN (``n`` is kept). ``mk_z`` and ``mk_p`` need :data:`MK_MIN_TESTED`
    values, and ``sen_low``/``sen_high`` a series long enough for ``confidence``
    (see :func:`_interval_reachable`); short of that they are NaN.

    The per-pixel work is done by the compiled kernels where numba is installed
    (from 31 years on :func:`.pair_select.sen_pixels`, which counts instead of sorting;
    up to 13 years :func:`.pair_select.sen_tiles`, sorting whole tiles in place by a network;
    between, the rows of :func:`.pair_select.sen_tiles`, which numpy sorts), else with numpy by
    sorting; all give the same bits. ``compiled`` True or False asks for one.
    """
    from scipy.special import ndtr, ndtri  # imported here: slow to import at start-up

    kernel = compiled_kernel() if compiled or (compiled is None and compiled_pays(len(x))) else None
    if compiled and kernel is None:
        raise RuntimeError("the compiled Sen kernel needs numba: pip install numba")
    x = np.asarray(x, dtype=np.float64)
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing")
    values = np.asarray(values)
    n_years = x.shape[0]
    if values.ndim != 2 or values.shape[0] != n_years:
        raise ValueError(f"values must be (len(x), pixels); got {values.shape} for {n_years} x values")
    alpha = 1.0 - confidence if confidence > 0.5 else confidence
    z_crit = float(ndtri(alpha / 2.0))

    with np.errstate(divide="ignore", invalid="ignore"):
        if kernel:
            if values.dtype not in (np.float32, np.float64):
                values = values.astype(np.float64)
            _ready(kernel, values.dtype, compiled_route(n_years))
            per_pixel = np.empty((6, values.shape[1]))
            picked = np.empty((4, values.shape[1]))
            negative = np.empty(values.shape[1], dtype=np.int64)
            _compiled_order_statistics(kernel, values, x, z_crit, per_pixel, picked, negative)
            bands = np.empty((len(kernel.SEN_MK_ROWS), values.shape[1]))
            kernel.sen_mk_bands(per_pixel, picked, negative, z_crit, max(min_years, 2), MK_MIN_TESTED, bands)
            found = dict(zip(kernel.SEN_MK_ROWS, bands, strict=True))
            found["mk_p"] = 2.0 * (1.0 - ndtr(np.abs(found["mk_z"])))  # NaN where z is
            return {name: found[name] for name in (*SEN_BANDS, *MK_BANDS, "n")}
        n, median_x, median_y, tied_pairs, tie_term, usable, picked, negative = _sen_by_sorting(values, x, z_crit)
        pairs = n * (n - 1) // 2
        n_float = n.astype(np.float64)
        tie_free = n_float * (n_float - 1.0) * (2.0 * n_float + 5.0) - tie_term

        sen_slope = (picked[0] + picked[1]) / 2.0
        sen_slope[pairs == 0] = np.nan
        sen_intercept = median_y - sen_slope * median_x
        sen_low, sen_high = picked[2], picked[3]
        reachable = _interval_reachable(pairs, tie_free, z_crit)
        sen_low[~usable | ~reachable] = np.nan
        sen_high[~usable | ~reachable] = np.nan

        s = pairs - tied_pairs - 2.0 * negative  # positive minus negative differences
        var_s = tie_free / 18.0  # pymannkendall's form
        root = np.sqrt(var_s)
        z = np.where(s > 0, (s - 1.0) / root, np.where(s < 0, (s + 1.0) / root, 0.0))
        p = 2.0 * (1.0 - ndtr(np.abs(z)))
        tau = s / (0.5 * n_float * (n_float - 1.0))
        z[n < MK_MIN_TESTED] = np.nan
        p[n < MK_MIN_TESTED] = np.nan

    out = {
        "sen_slope": sen_slope,
        "sen_intercept": sen_intercept,
        "sen_low": sen_low,
        "sen_high": sen_high,
        "mk_s": s,
        "mk_var_s": var_s,
        "mk_z": z,
        "mk_p": p,
        "mk_tau": tau,
    }
    too_few = n < max(min_years, 2)
    for band in out.values():
        band[too_few] = np.nan
    out["n"] = n_float
    return out


def _interval_reachable(pairs: np.ndarray, tie_free: np.ndarray, z_crit: float) -> np.ndarray:
    """Whether Sen's interval at this confidence exists among each pixel's pairwise slopes.

    Sen's ranks (eq. 2.6) fall outside the slopes when the series is too short for the
    confidence asked (95 %: fewer than 5 values without ties); scipy's theilslopes then
    clips them to the smallest and largest slope, an interval whose real confidence is
    lower (1 - 2/n!: 67 % with 3 values, 92 % with 4). Such a bound is NaN instead.
    The arithmetic is the kernels' own, so the two agree at every boundary.
    """
    sigma = np.sqrt(1 / 18.0 * tie_free)
    upper = np.round((pairs - z_crit * sigma) / 2.0)
    lower = np.round((pairs + z_crit * sigma) / 2.0) - 1
    return (lower >= 0) & (upper <= pairs - 1)


def _sen_by_sorting(values: np.ndarray, x: np.ndarray, z_crit: float) -> tuple[np.ndarray, ...]:
    """The numpy way to what :func:`.pair_select.sen_pixels` computes, a block at a time.

    Returns n, median of x, median of y, tied pairs, the tie term, whether the
    confidence bounds exist, the four order statistics (4, P) and the negative
    differences; see :func:`sen_mk`.
    """
    columns = np.array(values, dtype=np.float64)  # (years, pixels), our own copy
    columns[np.isinf(columns)] = np.nan  # +-inf is missing too
    n_years, pixels = columns.shape
    # Per pixel: valid years, medians of x and y, ties, the variance of S and
    # the ranks of the confidence bounds among the pairwise slopes.
    counted = np.empty(columns.shape, dtype=np.int32)  # valid years so far, per pixel
    for year, column in enumerate(columns):
        np.add(counted[year - 1] if year else 0, ~np.isnan(column), out=counted[year])
    n = counted[-1].astype(np.int64) if n_years else np.zeros(pixels, dtype=np.int64)
    pairs = n * (n - 1) // 2  # valid pairs; the others are NaN and sort last
    median_x = (_nth_valid_year(counted, x, (n - 1) // 2) + _nth_valid_year(counted, x, n // 2)) / 2.0
    del counted
    rows = np.array(columns.T, order="C")  # (pixels, years)
    rows.sort(axis=1)
    median_y = (_at_ranks(rows, np.maximum(n - 1, 0) // 2) + _at_ranks(rows, n // 2)) / 2.0
    tied_pairs, tie_term = _tie_terms(rows)
    del rows
    n_float = n.astype(np.float64)
    tie_free = n_float * (n_float - 1.0) * (2.0 * n_float + 5.0) - tie_term
    # Sen (1968) eq. 2.6, with theilslopes' own arithmetic and rounding.
    sigma = np.sqrt(1 / 18.0 * tie_free)
    upper = np.minimum(np.round((pairs - z_crit * sigma) / 2.0), pairs - 1)
    lower = np.maximum(np.round((pairs + z_crit * sigma) / 2.0) - 1, 0)
    usable = np.isfinite(upper) & np.isfinite(lower) & (pairs > 0)
    ranks = (
        np.maximum(pairs - 1, 0) // 2,
        pairs // 2,
        np.where(usable, lower, 0).astype(np.int64),
        np.where(usable, upper, 0).astype(np.int64),
    )
    negative = np.empty(pixels, dtype=np.int64)
    picked = np.empty((len(ranks), pixels))
    _sorted_order_statistics(columns, x, ranks, picked, negative)
    return n, median_x, median_y, tied_pairs, tie_term, usable, picked, negative
