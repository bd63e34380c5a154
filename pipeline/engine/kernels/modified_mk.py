"""Autocorrelation-corrected Mann-Kendall tests over every pixel at once.

Pure: arrays in, arrays out. On a series without missing years each test equals the
pymannkendall function of the same name with its default ``lag`` (``mk_s``,
``mk_var_s``, ``mk_z``, ``mk_p``, ``mk_tau``):

* ``hamed-rao`` (Hamed and Rao 1998): Var(S) times 1 + 2/(n(n-1)(n-2)) sum
  (n-k)(n-k-1)(n-k-2) rho_k over the lags k = 1..n-1 whose autocorrelation rho_k of the
  ranks of the Sen-detrended series lies outside +-Phi^-1(1-alpha/2)/sqrt(n);
* ``yue-wang`` (Yue and Wang 2004): Var(S) times 1 + 2 sum (1-k/n) rho_k over k = 1..n-1,
  rho_k of the Sen-detrended values;
* ``prewhiten`` (von Storch 1995, as in pymannkendall): the MK test of x_t - r1 x_{t-1},
  r1 the lag-1 autocorrelation of the series;
* ``tfpw`` (Yue et al. 2002): detrend with Sen's slope, pre-whiten, add the trend back,
  then the MK test.

Missing years. pymannkendall drops them and treats the remaining values as consecutive,
so its lag 1 mixes a one-year step with a five-year gap. eetrend keeps the real years:
the detrending uses each value's year, the autocovariance at lag k sums the products of
valid values exactly k years apart (divided, as usual, by the number n of valid
values), a pre-whitened value exists only where the year before is valid, and lags run
up to n-1. Without missing years this is pymannkendall's arithmetic, step for step;
with missing years only at the ends of the series it is still pymannkendall on the
trimmed series. Where an autocorrelation is undefined (a series, or its detrended
ranks, without any variation) it is taken as 0, so the test falls back to the original
one instead of returning NaN as pymannkendall does. Every test needs 3 values: n >= 3
valid years, and for the pre-whitened tests 3 pre-whitened values (pymannkendall answers
p = 1 on 2, whatever they are); short of that its bands are NaN.
"""

from __future__ import annotations

import functools
from enum import Enum

import numpy as np

from .robust import MK_BANDS

MODIFIED_MIN_TESTED = 3  # values each modified test runs on: valid years (pre-whitened values for prewhiten, tfpw)


class MKTest(str, Enum):
    """Which Mann-Kendall test gives the mk_* bands."""

    original = "original"
    hamed_rao = "hamed-rao"
    yue_wang = "yue-wang"
    prewhiten = "prewhiten"
    tfpw = "tfpw"


def _lag_pairs(x: np.ndarray) -> dict[int, tuple]:
    return _lag_pairs_of(tuple(float(v) for v in x))


@functools.lru_cache(maxsize=8)
def _lag_pairs_of(years: tuple[float, ...]) -> dict[int, tuple]:
    """For each lag k (years), the index pairs (i, j) of ``x`` with x[j] - x[i] == k.

    Consecutive runs become slices: BLAS may sum an unaligned copy in another order, and
    the pre-whitened ties must break as in pymannkendall's ``np.correlate``."""
    steps = np.rint(np.asarray(years)).astype(np.int64)
    first, second = np.triu_indices(len(steps), k=1)
    lag = steps[second] - steps[first]
    pairs = {}
    for k in np.unique(lag):
        i, j = first[lag == k], second[lag == k]
        if np.all(np.diff(i) == 1) and np.all(np.diff(j) == 1):  # consecutive years: views, not copies
            i, j = slice(int(i[0]), int(i[-1]) + 1), slice(int(j[0]), int(j[-1]) + 1)
        pairs[int(k)] = (i, j)
    return pairs


def _autocorrelation(y: np.ndarray, n: np.ndarray, pairs, max_lag: int, blas: bool = False) -> np.ndarray:
    """rho_1..rho_max_lag of rows ``y`` (mean removed, 0 where missing) on the real-year grid.

    Column k-1 holds rho_k; an undefined rho (no variance) is 0. ``blas`` sums in
    ``np.correlate``'s order (slower), for the pre-whitening tests whose ties depend on it.
    """
    dot = _dot if blas else _rowsum
    acov0 = dot(y, y) / n
    out = np.zeros((y.shape[0], max_lag))
    for k in range(1, max_lag + 1):
        if k in pairs:
            i, j = pairs[k]
            out[:, k - 1] = (dot(y[:, i], y[:, j]) / n) / acov0
    out[~np.isfinite(out)] = 0.0
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products through a batched matmul: the same BLAS dot, summed in the same
    order, as the ``np.correlate`` pymannkendall uses, so a near-tie after pre-whitening
    breaks the same way."""
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def _runs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row sorted (NaN last): the order, and the first and last sorted index of each value's tie run."""
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    width = rows.shape[1]
    index = np.arange(width)
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]  # NaN never equals NaN: each is its own run
    ends = np.ones(rows.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    start = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    end = np.minimum.accumulate(np.where(ends, index, width - 1)[:, ::-1], axis=1)[:, ::-1]
    return order, start, end


def _rowsum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def average_ranks(rows: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """scipy.stats.rankdata (average method) of each row's valid values; 0 where missing.

    Exact: an average rank is a multiple of 1/2."""
    order, start, end = _runs(np.where(valid, rows, np.nan))
    ranks = np.empty(rows.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    ranks[~valid] = 0.0
    return ranks


def _tie_term(rows: np.ndarray) -> np.ndarray:
    """Sum over groups of tied values of t(t-1)(2t+5), per row (NaN never ties)."""
    _, start, end = _runs(rows)
    run = (end - start + 1).astype(np.float64)
    return ((run - 1.0) * (2.0 * run + 5.0)).sum(axis=1)


def mk_statistics(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The original MK test of each row of (P, N) ``rows`` (NaN missing; order is time)."""
    from scipy.special import ndtr

    valid = np.isfinite(rows)
    n = np.count_nonzero(valid, axis=1).astype(np.float64)
    columns = np.ascontiguousarray(rows.T)  # years first: the sums below run along the pixels
    s = np.zeros(rows.shape[0])
    for step in range(1, rows.shape[1]):  # every pair (i, i + step) at once; NaN compares False
        later, earlier = columns[step:], columns[:-step]
        s += (later > earlier).sum(axis=0, dtype=np.int32) - (later < earlier).sum(axis=0, dtype=np.int32)
    var_s = (n * (n - 1.0) * (2.0 * n + 5.0) - _tie_term(rows)) / 18.0
    z = _z(s, var_s)
    return {"mk_s": s, "mk_var_s": var_s, "mk_z": z, "mk_p": 2.0 * (1.0 - ndtr(np.abs(z))),
            "mk_tau": s / (0.5 * n * (n - 1.0))}


def _z(s: np.ndarray, var_s: np.ndarray) -> np.ndarray:
    root = np.sqrt(var_s)
    return np.where(s > 0, (s - 1.0) / root, np.where(s < 0, (s + 1.0) / root, 0.0))


def modified_mk(
    values: np.ndarray,
    x: np.ndarray,
    test: MKTest | str,
    *,
    sen_slope: np.ndarray,
    mk_s: np.ndarray,
    mk_var_s: np.ndarray,
    alpha: float = 0.05,
) -> dict[str, np.ndarray]:
    """The mk_* bands of ``test`` for (N, P) ``values`` (NaN missing) on years ``x``.

    ``sen_slope``, ``mk_s`` and ``mk_var_s`` are the original test's results for the same
    pixels (from :func:`pipeline.engine.kernels.robust.sen_mk`); ``alpha`` is the level at which
    Hamed-Rao counts an autocorrelation as significant. Returns float64 arrays named as
    :data:`MK_BANDS`; pixels with fewer than :data:`MODIFIED_MIN_TESTED` valid years are
    NaN, and for ``prewhiten`` and ``tfpw`` those with fewer pre-whitened values (one
    needs the year before it: 4 consecutive years at least, more where years are missing).
    """
    from scipy.special import ndtr, ndtri

    test = MKTest(test)
    x = np.asarray(x, dtype=np.float64)
    rows = np.array(np.asarray(values).T, dtype=np.float64, order="C")
    valid = np.isfinite(rows)
    rows[~valid] = np.nan
    n = np.count_nonzero(valid, axis=1).astype(np.float64)
    pairs = _lag_pairs(x)
    slope = np.asarray(sen_slope, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        first_year = np.where(valid, x, np.inf).min(axis=1, initial=np.inf)
        position = x[None, :] - first_year[:, None] + 1.0  # pymannkendall's 1..n on a complete series
        if test is MKTest.original:
            raise ValueError("the original test's bands come from sen_mk")
        if test in (MKTest.hamed_rao, MKTest.yue_wang):
            detrended = rows - position * slope
            max_lag = int(max(n.max(initial=0) - 1, 0))
            if test is MKTest.hamed_rao:
                ranks = average_ranks(detrended, valid)
                y = np.where(valid, ranks - (n[:, None] + 1.0) / 2.0, 0.0)
                rho = _autocorrelation(y, n, pairs, max_lag)
                bound = ndtri(1.0 - alpha / 2.0) / np.sqrt(n)
                total = np.zeros_like(n)
                for k in range(1, max_lag + 1):
                    r = rho[:, k - 1]
                    significant = ((r > bound) | (r < -bound)) & (k < n)
                    total += np.where(significant, (n - k) * (n - k - 1) * (n - k - 2) * r, 0.0)
                factor = 1.0 + (2.0 / (n * (n - 1.0) * (n - 2.0))) * total
            else:
                mean = np.where(valid, detrended, 0.0).sum(axis=1) / n
                y = np.where(valid, detrended - mean[:, None], 0.0)
                rho = _autocorrelation(y, n, pairs, max_lag)
                lags = np.arange(1, max_lag + 1, dtype=np.float64)
                weight = np.where(lags[None, :] < n[:, None], 1.0 - lags[None, :] / n[:, None], 0.0)
                factor = 1.0 + 2.0 * (weight * rho).sum(axis=1)
            s = np.asarray(mk_s, dtype=np.float64)
            var_s = np.asarray(mk_var_s, dtype=np.float64) * factor
            z = _z(s, var_s)
            out = {"mk_s": s.copy(), "mk_var_s": var_s, "mk_z": z, "mk_p": 2.0 * (1.0 - ndtr(np.abs(z))),
                   "mk_tau": s / (0.5 * n * (n - 1.0))}
        else:
            series = rows - position * slope if test is MKTest.tfpw else rows
            mean = np.where(valid, series, 0.0).sum(axis=1) / n
            y = np.where(valid, series - mean[:, None], 0.0)
            r1 = _autocorrelation(y, n, pairs, 1, blas=True)[:, 0][:, None] if 1 in pairs else np.zeros((len(n), 1))
            whitened = np.full_like(rows, np.nan)
            if 1 in pairs:
                i, j = pairs[1]
                whitened[:, j] = series[:, j] - series[:, i] * r1
                if test is MKTest.tfpw:
                    whitened[:, j] += (position[:, j] - 1.0) * slope
            out = mk_statistics(whitened)
            n = np.count_nonzero(np.isfinite(whitened), axis=1)  # the test ran on these values only
    too_few = n < MODIFIED_MIN_TESTED
    for band in out.values():
        band[too_few] = np.nan
    return {name: out[name] for name in MK_BANDS}
