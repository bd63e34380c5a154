"""False-discovery-rate control over a whole trend map, exact and out of core.

After every window is fitted, the trend p-values of all fitted pixels (``pvalue`` for
OLS, ``mk_p`` otherwise) are adjusted together with the Benjamini-Hochberg (1995) or
Benjamini-Yekutieli (2001) step-up procedure. ``p_fdr`` equals
``statsmodels.stats.multitest.multipletests(p, method="fdr_bh"|"fdr_by")[1]`` over the
fitted pixels' p-values as written (float32), and ``trend_class_fdr`` is the sign of the
slope where ``p_fdr <= q`` (statsmodels' ``reject``), 0 elsewhere, NaN where not fitted.

Why it needs no sort of the whole raster: with m tests, the adjusted value of a p-value v
depends on v alone, ``min(1, min over values w >= v of w / (F(w)/m))`` (divided by
sum 1/k for BY), F(w) being the number of p-values <= w; ties share it. So it is
computed from the top down, one range of values at a time:

1. one pass counts the p-values per bucket of their float32 bit pattern's high 16 bits
   (that order is the numeric order for values >= 0), which gives m and the number of
   p-values below every bucket;
2. buckets are grouped from the top so that each group's values fit the memory budget;
   per group one pass collects its values, sorts them, runs the step-up with the minimum
   carried down from the groups above, and a second pass writes each pixel's adjusted
   value into an uncompressed temporary raster (a group of one bucket too large for
   memory is counted exactly with 65,536 bins of its low 16 bits instead);
3. one pass copies the fit and the two new bands into the final, compressed file.

Memory stays within the budget whatever the raster's size; the number of passes grows
with the number of fitted pixels over the budget (one group for a Landsat scene at 1 GB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import InputError, UsageError
from ..files.outputs import RasterWriter, temporary_path
from .stack import Grid
from .windows import OUTPUT_BLOCK, plan_windows

FDR_BANDS = ("p_fdr", "trend_class_fdr")
FDR_METHODS = {"bh": "fdr_bh", "by": "fdr_by"}
_BUCKETS = 1 << 16
_BYTES_PER_VALUE = 48  # a collected value, its float64 copy, the sort and the step-up arrays


@dataclass(frozen=True)
class FdrSummary:
    """What the adjustment did: method, level, number of tests and how many passed."""

    method: str
    q: float
    tests: int
    significant: int
    passes: int

    def tags(self) -> dict[str, str]:
        return {
            "fdr_method": f"{FDR_METHODS[self.method]} ({_NAMES[self.method]})",
            "fdr_q": str(self.q),
            "fdr_tests": str(self.tests),
            "fdr_significant": str(self.significant),
            "p_fdr": "p-value adjusted over all fitted pixels of the map (statsmodels multipletests)",
            "trend_class_fdr": f"+1/-1 increase/decrease with p_fdr <= {self.q}, 0 none, NaN not fitted",
        }


_NAMES = {"bh": "Benjamini-Hochberg 1995", "by": "Benjamini-Yekutieli 2001"}


def check_fdr(method: str | None, q: float) -> None:
    """Refuse an unknown method or a level outside (0, 1) with one line."""
    if method is not None and method not in FDR_METHODS:
        raise UsageError(f"--fdr {method!r} is not one of {', '.join(FDR_METHODS)}")
    if not 0.0 < q < 1.0:
        raise UsageError(f"--fdr-q is {q}; give a false discovery rate between 0 and 1, e.g. 0.05")


def harmonic(m: int) -> float:
    """sum_{k=1}^m 1/k, as statsmodels sums it (in blocks beyond 2**24 terms, to bound memory)."""
    block = 1 << 24
    if m <= block:
        return float(np.sum(1.0 / np.arange(1, m + 1)))
    return float(sum(np.sum(1.0 / np.arange(s, min(s + block, m + 1))) for s in range(1, m + 1, block)))


def step_up(values: np.ndarray, counts: np.ndarray, below: int, m: int, carry: float, scale: float):
    """Adjusted values of ascending distinct p-``values`` with ``counts``, ``below`` p-values under them.

    ``carry`` is the smallest raw ratio among larger values (inf at the top); ``scale`` is
    1 for BH and sum 1/k for BY. Returns (adjusted, new carry), before the cap at 1.
    """
    ranks = below + np.cumsum(counts)
    factor = ranks / float(m)
    if scale != 1.0:
        factor = factor / scale
    raw = values / factor
    adjusted = np.minimum(np.minimum.accumulate(raw[::-1])[::-1], carry)
    return adjusted, (float(adjusted[0]) if adjusted.size else carry)


def adjust(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """In memory: the adjusted p-values of ``p`` (NaN stays NaN), as statsmodels gives them."""
    check_fdr(method, 0.05)
    p = np.asarray(p, dtype=np.float64)
    fitted = np.isfinite(p)
    values, inverse, counts = np.unique(p[fitted], return_inverse=True, return_counts=True)
    m = int(fitted.sum())
    out = np.full(p.shape, np.nan)
    if m:
        adjusted, _ = step_up(values, counts, 0, m, np.inf, harmonic(m) if method == "by" else 1.0)
        out[fitted] = np.minimum(adjusted, 1.0)[inverse.reshape(-1)]
    return out


def classes(p_fdr: np.ndarray, slope: np.ndarray, q: float) -> np.ndarray:
    """trend_class_fdr: sign of the slope where p_fdr <= q, 0 elsewhere, NaN where not fitted."""
    with np.errstate(invalid="ignore"):
        out = np.where(p_fdr <= q, np.sign(slope), 0.0)
    out[np.isnan(p_fdr)] = np.nan
    return out


def _bits(p: np.ndarray) -> np.ndarray:
    if p.size and (np.min(p) < 0 or np.max(p) > 1):
        raise InputError("the p-value band holds values outside 0-1; is it a p-value band written by eetrend?")
    return (np.asarray(p, dtype=np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0 is +0.0


def _groups(hist: np.ndarray, capacity: int) -> list[tuple[int, int, int]]:
    """(low bucket, high bucket, p-values below low) of each group, from the top down."""
    below = np.concatenate([[0], np.cumsum(hist)])
    groups: list[tuple[int, int, int]] = []
    current: list[int] = []  # the buckets of the group being filled, descending
    held = 0
    for bucket in (int(b) for b in np.flatnonzero(hist)[::-1]):
        if current and held + hist[bucket] > capacity:
            groups.append((current[-1], current[0], int(below[current[-1]])))
            current, held = [], 0
        current.append(bucket)
        held += int(hist[bucket])
    if current:
        groups.append((current[-1], current[0], int(below[current[-1]])))
    return groups


def _windows(grid: Grid, bands: int, budget: int) -> list[Window]:
    return plan_windows(grid.height, grid.width, bytes_per_pixel=8 * (bands + 4), budget=budget,
                        target_pixels=max(OUTPUT_BLOCK**2, budget // (16 * (bands + 4))))


def _finite(src, band: int, window: Window) -> tuple[np.ndarray, np.ndarray]:
    p = src.read(band, window=window).reshape(-1)
    fitted = np.isfinite(p)
    return p, fitted


def apply_fdr(
    fit_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    method: str,
    q: float,
    p_band: str,
    slope_band: str,
    budget: int,
    compress: str = "zstd",
    overwrite: bool = False,
    units: str = "",
    group_values: int | None = None,
) -> FdrSummary:
    """Write ``output``: the bands of ``fit_path`` plus ``p_fdr`` and ``trend_class_fdr``.

    A quarter of the ``budget`` goes to windows, a quarter to a group's values
    (``group_values`` overrides how many a group may hold): the post-pass then peaks
    below the fit it follows, which used the whole budget.
    """
    check_fdr(method, q)
    with rasterio.open(fit_path) as src:
        names = list(src.descriptions)
        band = {name: i + 1 for i, name in enumerate(names)}
        grid = Grid(src.crs.to_wkt() if src.crs else "", tuple(src.transform)[:6], src.width, src.height)
        windows = _windows(grid, len(names) + 2, budget // 4)
        hist = np.zeros(_BUCKETS, dtype=np.int64)
        for window in windows:
            p, fitted = _finite(src, band[p_band], window)
            hist += np.bincount(_bits(p[fitted]) >> 16, minlength=_BUCKETS)
        m = int(hist.sum())
        scale = harmonic(m) if method == "by" and m else 1.0
        capacity = group_values or max(_BUCKETS, (budget // 4) // _BYTES_PER_VALUE)
        groups = _groups(hist, capacity)
        adjusted_path = temporary_path(Path(output), ".tif")
        try:
            with rasterio.open(adjusted_path, "w+", driver="GTiff", dtype="float32", count=1, width=grid.width,
                               height=grid.height, tiled=grid.width >= OUTPUT_BLOCK and grid.height >= OUTPUT_BLOCK,
                               blockxsize=OUTPUT_BLOCK, blockysize=OUTPUT_BLOCK, BIGTIFF="IF_SAFER",
                               transform=src.transform, crs=src.crs) as adjusted:
                carry = np.inf
                for low, high, below in groups:
                    values, counts = _collect(src, band[p_band], windows, low, high, hist, capacity)
                    table, carry = step_up(values, counts, below, m, carry, scale)
                    table = np.minimum(table, 1.0)
                    for window in windows:
                        p, fitted = _finite(src, band[p_band], window)
                        bucket = np.zeros(p.shape, dtype=np.int64)
                        bucket[fitted] = _bits(p[fitted]) >> 16
                        mine = fitted & (bucket >= low) & (bucket <= high)
                        if not mine.any():
                            continue
                        shape = (int(window.height), int(window.width))
                        out = adjusted.read(1, window=window).reshape(-1) if len(groups) > 1 else np.empty(p.size)
                        out[mine] = table[np.searchsorted(values, p[mine].astype(np.float64))]
                        adjusted.write(out.reshape(shape).astype(np.float32), 1, window=window)
                significant = 0
                with RasterWriter(output, grid, tuple(names) + FDR_BANDS, tags=src.tags(), units=units,
                                  compress=compress, overwrite=overwrite) as writer:
                    for window in windows:
                        block = {name: src.read(i + 1, window=window) for i, name in enumerate(names)}
                        p_fdr = adjusted.read(1, window=window)
                        p_fdr[~np.isfinite(block[p_band])] = np.nan
                        block["p_fdr"] = p_fdr
                        block["trend_class_fdr"] = classes(p_fdr, block[slope_band], q)
                        significant += int(np.count_nonzero(p_fdr <= q))
                        writer.write(window, block)
                    summary = FdrSummary(method, q, m, significant, passes=2 + 2 * len(groups))
                    writer.tags.update(summary.tags())
        finally:
            adjusted_path.unlink(missing_ok=True)
    return summary


def _collect(src, band: int, windows: list[Window], low: int, high: int, hist: np.ndarray, capacity: int):
    """Distinct p-values of buckets ``low..high`` (ascending) and how often each occurs."""
    if low == high and hist[low] > min(_BUCKETS, capacity):  # one big bucket: count each of its 65,536 values exactly
        counts = np.zeros(_BUCKETS, dtype=np.int64)
        for window in windows:
            p, fitted = _finite(src, band, window)
            bits = _bits(p[fitted])
            counts += np.bincount(bits[(bits >> 16) == low] & 0xFFFF, minlength=_BUCKETS)
        present = np.flatnonzero(counts)
        values = ((np.uint32(low) << np.uint32(16)) | present.astype(np.uint32)).view(np.float32)
        return values.astype(np.float64), counts[present]
    parts = []
    for window in windows:
        p, fitted = _finite(src, band, window)
        p = p[fitted]
        bucket = _bits(p) >> 16
        parts.append(p[(bucket >= low) & (bucket <= high)])
    return np.unique(np.concatenate(parts).astype(np.float64), return_counts=True)
