"""Per-year statistics across all pixels of an annual stack, read strip by strip in bounded memory.

The regional series of the report: for each year the median and quartiles of every
valid pixel, exactly as ``numpy.nanpercentile`` (linear interpolation) would give them
on the whole stack, without ever holding the whole stack. Pass 1 counts each year's
valid values and their range; each further pass narrows every wanted order statistic to
one bin of a histogram over its current interval, until the interval holds few enough
values to collect and select exactly (usually pass 3). The reads are strips of rows,
sized from the memory budget.

Clear-observation counts (a count band beside each year's values, where the inputs
have one) are summed the same way, in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from ..engine.stack import Layer, Stack, close_cached, open_cached

QUANTILES = (0.25, 0.5, 0.75)
BINS = 4096


@dataclass(frozen=True)
class RegionalSeries:
    """Per year: valid pixels, quartiles and median across pixels (NaN for a year without any)."""

    years: tuple[int, ...]
    valid: np.ndarray
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    passes: int  # how many times the stack was read


def strips(stack: Stack, memory_budget: int) -> Iterator[Window]:
    """Full-width strips of rows whose (years x pixels) block, with its temporaries, fits the budget."""
    width, height = stack.grid.width, stack.grid.height
    per_row = max(1, len(stack.layers) * width * 8 * 3)
    rows = max(1, min(height, memory_budget // per_row))
    for top in range(0, height, rows):
        yield Window(0, top, width, min(rows, height - top))


@dataclass
class _Target:
    """Order statistics of one year still to find, inside the value interval [low, high) (or [low, high])."""

    year: int  # index into the stack's layers
    ranks: list[int]  # 0-based ranks among the year's sorted valid values
    low: float
    high: float
    closed: bool  # whether ``high`` itself belongs to the interval
    below: int  # valid values of the year smaller than ``low``
    count: int  # valid values of the year inside the interval
    histogram: np.ndarray | None = None
    collected: list[np.ndarray] | None = None

    def inside(self, row: np.ndarray) -> np.ndarray:
        upper = row <= self.high if self.closed else row < self.high
        return (row >= self.low) & upper

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, BINS + 1)


def regional_series(stack: Stack, *, memory_budget: int = 256 << 20, quantiles: Sequence[float] = QUANTILES,
                    collect_limit: int | None = None) -> RegionalSeries:
    """The per-year quartiles and median of ``stack`` across pixels (see the module docstring).

    ``collect_limit`` is the most values gathered at once, over all intervals, before
    selecting (default: a quarter of the budget in float64 values).
    """
    limit = collect_limit or max(1024, memory_budget // 32)
    n_years = len(stack.layers)
    valid = np.zeros(n_years, dtype=np.int64)
    low = np.full(n_years, np.inf)
    high = np.full(n_years, -np.inf)
    try:
        for window in strips(stack, memory_budget):
            block = stack.read(window)
            finite = np.isfinite(block)
            valid += finite.sum(axis=1)
            low = np.minimum(low, np.where(finite, block, np.inf).min(axis=1, initial=np.inf))
            high = np.maximum(high, np.where(finite, block, -np.inf).max(axis=1, initial=-np.inf))
        passes = 1
        found: dict[tuple[int, int], float] = {}
        pending = []
        for year in range(n_years):
            if valid[year]:
                ranks = sorted({r for q in quantiles for r in _ranks(int(valid[year]), q)})
                pending.append(_Target(year, ranks, float(low[year]), float(high[year]), True, 0, int(valid[year])))
        while pending:
            room = limit
            for target in sorted(pending, key=lambda t: t.count):  # collect the smallest intervals first
                if target.low == target.high or target.count <= room:
                    target.collected = []
                    room -= target.count if target.low != target.high else 0
                else:
                    target.histogram = np.zeros(BINS, dtype=np.int64)
            if any(t.collected is not None and t.low != t.high for t in pending) or \
                    any(t.histogram is not None for t in pending):
                _read_pass(stack, memory_budget, pending)
                passes += 1
            pending = _narrow(pending, found)
    finally:
        close_cached()
    values = {q: np.full(n_years, np.nan) for q in quantiles}
    for year in range(n_years):
        if valid[year]:
            for q in quantiles:
                values[q][year] = _interpolate(found, year, int(valid[year]), q)
    return RegionalSeries(tuple(stack.year_list), valid, values.get(0.25), values.get(0.5), values.get(0.75), passes)


def _ranks(n: int, q: float) -> tuple[int, int]:
    """The two order statistics numpy's linear quantile interpolates between."""
    position = (n - 1) * q
    below = math.floor(position)
    return below, min(below + 1, n - 1)


def _interpolate(found: dict[tuple[int, int], float], year: int, n: int, q: float) -> float:
    position = (n - 1) * q
    k, k1 = _ranks(n, q)
    a, b = found[(year, k)], found[(year, k1)]
    return float(a + (b - a) * (position - k)) if k1 != k else float(a)


def _read_pass(stack: Stack, memory_budget: int, targets: list[_Target]) -> None:
    for window in strips(stack, memory_budget):
        block = stack.read(window)
        rows: dict[int, np.ndarray] = {}  # float64, so bounds and bins compare exactly as they were computed
        for target in targets:
            row = rows.get(target.year)
            if row is None:
                row = rows[target.year] = block[target.year].astype(np.float64)
            inside = row[target.inside(row)]
            if target.collected is not None:
                if target.low != target.high:
                    target.collected.append(inside)
            elif target.histogram is not None and inside.size:
                target.histogram += np.bincount(_bin_index(inside, target), minlength=BINS)


def _bin_index(values: np.ndarray, target: _Target) -> np.ndarray:
    """The bin i of each value with edges[i] <= value < edges[i + 1] (the last bin also holds ``high``).

    Arithmetic first, then one step of correction against the edges themselves, so the
    bins agree exactly with the intervals the next pass tests membership with.
    """
    edges = target.edges
    scale = BINS / (target.high - target.low)
    index = np.clip(((values - target.low) * scale).astype(np.int64), 0, BINS - 1)
    index -= values < edges[index]
    index += (values >= edges[index + 1]) & (index < BINS - 1)
    wrong = (values < edges[index]) | ((values >= edges[index + 1]) & (index < BINS - 1))
    if wrong.any():  # bins narrower than rounding (an interval a few floats wide): search those values
        index[wrong] = np.clip(np.searchsorted(edges, values[wrong], side="right") - 1, 0, BINS - 1)
    return index


def _narrow(targets: list[_Target], found: dict[tuple[int, int], float]) -> list[_Target]:
    """Settle collected targets; split histogrammed ones into one target per bin holding a wanted rank."""
    pending: list[_Target] = []
    for target in targets:
        if target.collected is not None:
            if target.low == target.high:
                for rank in target.ranks:
                    found[(target.year, rank)] = target.low
                continue
            values = np.concatenate(target.collected) if target.collected else np.empty(0)
            local = [rank - target.below for rank in target.ranks]
            ordered = np.partition(values, local)
            for rank, index in zip(target.ranks, local, strict=True):
                found[(target.year, rank)] = float(ordered[index])
            continue
        cumulative = np.cumsum(target.histogram)
        edges = target.edges
        by_bin: dict[int, list[int]] = {}
        for rank in target.ranks:
            by_bin.setdefault(int(np.searchsorted(cumulative, rank - target.below, side="right")), []).append(rank)
        for index, ranks in by_bin.items():
            before = int(cumulative[index - 1]) if index else 0
            child = _Target(target.year, ranks, float(edges[index]), float(edges[index + 1]),
                            target.closed and index == BINS - 1, target.below + before, int(target.histogram[index]))
            if (child.low, child.high, child.closed) == (target.low, target.high, target.closed):
                child.count = 0  # cannot narrow further (adjacent floats): collect it as it is
            pending.append(child)
    for child in pending:
        child.histogram = None
        child.collected = None
    return pending


@dataclass(frozen=True)
class CountSeries:
    """Per year: the mean (over pixels with a count) of clear observations, and the pixels counted."""

    years: tuple[int, ...]
    mean: np.ndarray
    pixels: np.ndarray
    description: str


def count_layers(stack: Stack) -> list[Layer] | None:
    """The clear-observation count band of each year's file, found by its description, or None.

    A band whose description holds "count" (e.g. ``clear_count``) other than the value band
    is taken; every year must have one, else the stack has no counts.
    """
    layers = []
    for layer in stack.layers:
        dataset = open_cached(layer.path)
        descriptions = [d or "" for d in dataset.descriptions]
        match = [i + 1 for i, d in enumerate(descriptions) if "count" in d.lower() and i + 1 != layer.band]
        if not match:
            return None
        layers.append(Layer(layer.path, match[0], layer.year, dataset.nodata))
    return layers


def count_series(stack: Stack, *, memory_budget: int = 256 << 20) -> CountSeries | None:
    """Mean clear observations per pixel for each year, where the inputs carry a count band; else None."""
    try:
        layers = count_layers(stack)
        if layers is None:
            return None
        dtype = open_cached(layers[0].path).dtypes[layers[0].band - 1]
        counts = Stack(layers=tuple(layers), grid=stack.grid, dtype=dtype, block_shape=stack.block_shape)
        total = np.zeros(len(layers))
        pixels = np.zeros(len(layers), dtype=np.int64)
        for window in strips(counts, memory_budget):
            block = counts.read(window)
            finite = np.isfinite(block)
            total += np.where(finite, block, 0.0).sum(axis=1)
            pixels += finite.sum(axis=1)
        description = open_cached(layers[0].path).descriptions[layers[0].band - 1] or "count"
    finally:
        close_cached()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(pixels > 0, total / np.maximum(pixels, 1), np.nan)
    return CountSeries(tuple(stack.year_list), mean, pixels, description)
