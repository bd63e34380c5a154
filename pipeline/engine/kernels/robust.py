"""Sen's slope and the Mann-Kendall test over every pixel at once.

Pure: arrays in, arrays out. Per pixel it reproduces

* ``scipy.stats.theilslopes(y, x, confidence)`` with its default ``method='separate'``:
  slope = median of the pairwise slopes (y_j - y_i) / (x_j - x_i) over the real
  years, intercept = median(y) - slope * median(x) (Conover's convention, also
  pymannkendall's), and the confidence interval of Sen (1968, eq. 2.6);
* ``pymannkendall.original_test``: S, the tie-corrected variance of S, z with the
  continuity correction, the two-sided p computed as ``2 * (1 - Phi(|z|))``
  exactly as pymannkendall does (so p below about 1e-15 reads as 0), and tau.

Missing years (NaN) are skipped pixel by pixel. Memory per pixel is about
10 bytes per pair of years; the caller sizes windows with :func:`bytes_per_pixel`.
"""

from __future__ import annotations

import numpy as np

SEN_BANDS = ("sen_slope", "sen_intercept", "sen_low", "sen_high")
MK_BANDS = ("mk_s", "mk_var_s", "mk_z", "mk_p", "mk_tau")


def bytes_per_pixel(n_years: int) -> int:
    """Peak working memory of :func:`sen_mk` per pixel, for window planning."""
    pairs = n_years * (n_years - 1) // 2
    return 8 * pairs + 2 * pairs + 8 * 8 * n_years


def _sorted_median(sorted_rows: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of the first ``count`` entries of each row of an ascending-sorted array."""
    empty = count <= 0
    lo = np.where(empty, 0, (count - 1) // 2)[:, None]
    hi = np.where(empty, 0, count // 2)[:, None]
    low = np.take_along_axis(sorted_rows, lo, axis=1)[:, 0]
    high = np.take_along_axis(sorted_rows, hi, axis=1)[:, 0]
    median = (low + high) / 2.0
    median[empty] = np.nan
    return median


def _tie_term(sorted_rows: np.ndarray) -> np.ndarray:
    """Sum over groups of tied values of t(t-1)(2t+5), per row (NaN never ties)."""
    width = sorted_rows.shape[1]
    index = np.arange(width)
    starts_run = np.ones(sorted_rows.shape, dtype=bool)
    starts_run[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    ends_run = np.ones(sorted_rows.shape, dtype=bool)
    ends_run[:, :-1] = starts_run[:, 1:]
    start = np.maximum.accumulate(np.where(starts_run, index, 0), axis=1)
    end = np.minimum.accumulate(np.where(ends_run, index, width - 1)[:, ::-1], axis=1)[:, ::-1]
    run = (end - start + 1).astype(np.float64)
    # Each of a group's t members adds (t-1)(2t+5): the group adds t(t-1)(2t+5).
    return ((run - 1.0) * (2.0 * run + 5.0)).sum(axis=1)


def sen_mk(
    values: np.ndarray,
    x: np.ndarray,
    min_years: int = 3,
    confidence: float = 0.95,
) -> dict[str, np.ndarray]:
    """Sen's slope with its confidence interval, and the Mann-Kendall test, per pixel.

    ``values`` is (N, P) with NaN for missing; ``x`` is (N,) strictly increasing.
    Returns float64 arrays of length P named as :data:`SEN_BANDS` and
    :data:`MK_BANDS`, plus ``n``; pixels with fewer than ``min_years`` valid
    values are NaN (``n`` is kept).
    """
    from scipy.special import ndtr, ndtri  # imported here: slow to import at start-up

    x = np.asarray(x, dtype=np.float64)
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing")
    rows = np.array(np.asarray(values).T, dtype=np.float64, order="C")  # (P, N), a copy of our own
    n_years = x.shape[0]
    if rows.shape[1] != n_years:
        raise ValueError(f"values must be (len(x), pixels); got {rows.shape[::-1]} for {n_years} x values")

    valid = np.isfinite(rows)
    rows[~valid] = np.nan
    n = np.count_nonzero(valid, axis=1).astype(np.float64)

    with np.errstate(divide="ignore", invalid="ignore"):
        years_of_valid = np.where(valid, x, np.inf)
        del valid
        years_of_valid.sort(axis=1)
        median_x = _sorted_median(years_of_valid, n.astype(np.int64))
        del years_of_valid

        first, second = np.triu_indices(n_years, k=1)
        slopes = rows[:, second] - rows[:, first]  # (P, pairs): later minus earlier
        s = (np.count_nonzero(slopes > 0, axis=1) - np.count_nonzero(slopes < 0, axis=1)).astype(np.float64)
        slopes /= x[second] - x[first]
        slopes.sort(axis=1)  # pairs with a missing year are NaN and sort last
        pairs = (n * (n - 1.0) / 2.0).astype(np.int64)
        sen_slope = _sorted_median(slopes, pairs)

        rows.sort(axis=1)
        sen_intercept = _sorted_median(rows, n.astype(np.int64)) - sen_slope * median_x
        tie_free = n * (n - 1.0) * (2.0 * n + 5.0) - _tie_term(rows)
        del rows
        var_s = tie_free / 18.0  # pymannkendall's form

        root = np.sqrt(var_s)
        z = np.where(s > 0, (s - 1.0) / root, np.where(s < 0, (s + 1.0) / root, 0.0))
        p = 2.0 * (1.0 - ndtr(np.abs(z)))
        tau = s / (0.5 * n * (n - 1.0))

        # Sen (1968) eq. 2.6, with theilslopes' own arithmetic and rounding.
        alpha = 1.0 - confidence if confidence > 0.5 else confidence
        z_crit = ndtri(alpha / 2.0)
        sigma = np.sqrt(1 / 18.0 * tie_free)
        upper = np.minimum(np.round((pairs - z_crit * sigma) / 2.0), pairs - 1)
        lower = np.maximum(np.round((pairs + z_crit * sigma) / 2.0) - 1, 0)
        usable = np.isfinite(upper) & np.isfinite(lower) & (pairs > 0)
        upper = np.where(usable, upper, 0).astype(np.int64)[:, None]
        lower = np.where(usable, lower, 0).astype(np.int64)[:, None]
        sen_low = np.take_along_axis(slopes, lower, axis=1)[:, 0]
        sen_high = np.take_along_axis(slopes, upper, axis=1)[:, 0]
        sen_low[~usable] = np.nan
        sen_high[~usable] = np.nan

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
    out["n"] = n
    return out
