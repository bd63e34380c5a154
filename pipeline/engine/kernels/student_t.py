"""Two-sided p-values of Student's t for whole-number degrees of freedom, exact and vectorised.

OLS tests each pixel's slope with ``t`` on ``df = n - 2`` degrees of freedom, where
``n`` is that pixel's count of valid years: always a whole number, and one of a
few dozen. ``scipy.special.stdtr`` handles any real ``df`` by evaluating the
incomplete beta function one value at a time (a few hundred ns each, two thirds of
the OLS fit). For whole ``df`` there are finite forms; here the pixels are grouped
by ``df`` so that each group is a few numpy passes with scalar coefficients:

* where p is not small, the closed forms of Abramowitz & Stegun 26.7.3 (odd df)
  and 26.7.4 (even df): p = 1 - (a finite sum of positive terms), which keeps its
  precision while p is at least :data:`SMALL_P`;
* where p is smaller (1 - sum would cancel), p = I_x(df/2, 1/2) with
  x = df / (df + t^2), by the incomplete beta function's continued fraction
  (Numerical Recipes' ``betacf``) evaluated bottom-up over a fixed number of levels
  per ``df`` and range of x (x up to the cut-off's, its half, its quarter): enough
  for the fraction to converge to double precision at the largest x of the range
  (it converges faster as x shrinks), so tails down to 1e-300 keep full relative
  precision and smaller ones underflow as scipy's do.

A pixel's p depends only on its own t and df (no iteration count is shared between
pixels), so it is the same in any window. ``tests/test_student_t.py`` checks it
against ``scipy.stats.t.sf`` to 1e-12 relative on a dense grid of t and df.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from types import ModuleType

import numpy as np

SMALL_P = 1e-2  # below this, 1 - (finite sum) would keep fewer than 13 digits: the continued fraction
_BUCKETS = 3  # tail pixels are cut at x_cutoff / 2 and / 4, each range with its own number of levels
_CF_EPS = 1e-17  # the continued fraction's levels are counted until a level changes it by less than this


def t_two_sided(t: np.ndarray, df: np.ndarray, kernel: ModuleType | None = None) -> np.ndarray:
    """P(|T| >= |t|) for T ~ Student's t with ``df`` degrees of freedom, element-wise.

    ``df`` holds whole numbers as floats (an OLS fit's n - 2); where it is below 1
    or not finite, or ``t`` is NaN, the p-value is NaN. Matches
    ``2 * scipy.stats.t.sf(abs(t), df)`` to 1e-12 relative. ``kernel`` is OLS's
    compiled module (:mod:`.ols_compiled`), which does the same one pixel at a time.
    """
    t = np.abs(np.asarray(t, dtype=np.float64)).ravel()
    df = np.asarray(df, dtype=np.float64).ravel()
    usable = np.isfinite(df) & (df >= 1) & ~np.isnan(t)
    nu = np.where(usable, df, 0).astype(np.int64)
    counts = np.bincount(nu)
    p = np.full(t.shape, np.nan)
    if counts.size <= 1:
        return p
    if kernel is not None:
        kernel.t_two_sided(t, df, p, *compiled_tables(tuple(np.flatnonzero(counts[1:]) + 1)))
        return p
    order = np.argsort(nu.astype(np.min_scalar_type(counts.size)), kind="stable")  # a radix sort: pixels by df
    ends = np.cumsum(counts)
    t_sorted = t[order]
    p_sorted = np.full(t.shape, np.nan)
    for v in np.flatnonzero(counts[1:]) + 1:
        group = slice(ends[v] - counts[v], ends[v])
        p_sorted[group] = _p_of_df(t_sorted[group], int(v))
    p[order] = p_sorted
    return p


@lru_cache(maxsize=64)
def compiled_tables(present: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The tables :func:`.ols_compiled.t_two_sided` reads, filled for the degrees of freedom ``present``.

    Indexed by df (rows of the others are never read): the tail's cut-off t, the t
    where buckets 1 and 2 of the tail start, each bucket's continued-fraction
    coefficients (padded) and their number, B(df/2, 1/2), and the closed form's coefficients
    (padded; see :func:`_series`), so that its finite sum is one polynomial in cos^2.
    """
    size = max(present) + 1
    coefficients = {(nu, b): _cf_coefficients(nu, b) for nu in present for b in range(_BUCKETS)}
    cutoff, beta = np.full(size, np.inf), np.ones(size)
    edges = np.full((size, _BUCKETS - 1), np.inf)
    n_levels = np.zeros((size, _BUCKETS), dtype=np.int64)
    levels = np.zeros((size, _BUCKETS, max(len(c) for c in coefficients.values())))
    for nu in present:
        cutoff[nu], beta[nu] = _t_cutoff(nu), _beta(nu)
        edges[nu] = [_bucket_t(nu, bucket) for bucket in range(1, _BUCKETS)]
        for bucket in range(_BUCKETS):
            found = coefficients[nu, bucket]
            n_levels[nu, bucket] = len(found)
            levels[nu, bucket, : len(found)] = found
    series = np.zeros((size, max(max(present) // 2, 1)))
    for nu in present:
        series[nu, : nu // 2] = _series(nu)
    return cutoff, edges, levels, n_levels, beta, series


@cache
def _series(nu: int) -> tuple[float, ...]:
    """The closed form's coefficients for ``nu``: 1, then each the last times :func:`_ratio`, as
    :func:`_closed_form` multiplies them in turn."""
    coefficients = [1.0] if nu // 2 > 0 else []
    term = 1.0
    for k in range(1, nu // 2):
        term *= _ratio(nu, k)
        coefficients.append(term)
    return tuple(coefficients)


def _ratio(nu: int, k: int) -> float:
    """The closed form's k-th term over its (k-1)-th, cos^2 aside: (2k)/(2k+1) for odd nu, (2k-1)/(2k) for even."""
    return (2 * k) / (2 * k + 1) if nu % 2 == 1 else (2 * k - 1) / (2 * k)


def _p_of_df(t: np.ndarray, nu: int) -> np.ndarray:
    """Two-sided p for one whole ``nu`` (t already >= 0): the closed form or the continued fraction."""
    out = np.empty(t.shape)
    tail = t > _t_cutoff(nu)  # np.inf compares False: an infinite t goes to the tail
    tail |= np.isinf(t)
    near = ~tail
    if near.any():
        out[near] = _closed_form(t[near], nu)
    if tail.any():
        far = t[tail]
        p_far = np.empty(far.shape)
        edges = [_bucket_t(nu, bucket) for bucket in range(1, _BUCKETS)]
        which = np.searchsorted(edges, far, side="left")  # the smaller x, the fewer levels the fraction needs
        for bucket in range(_BUCKETS):
            these = which == bucket
            if these.any():
                p_far[these] = _continued_fraction(far[these], nu, bucket)
        out[tail] = p_far
    return out


def _closed_form(t: np.ndarray, nu: int) -> np.ndarray:
    """A&S 26.7.3/26.7.4: p = 1 - A(t|nu), A a finite sum in cos^2(theta), theta = atan(t / sqrt(nu))."""
    t2 = t * t
    denom = nu + t2
    c2 = nu / denom  # cos^2 theta
    s = t / np.sqrt(denom)  # sin theta
    m = nu // 2
    odd = nu % 2 == 1
    total = np.ones(t.shape) if m > 0 else np.zeros(t.shape)
    term = np.ones(t.shape)
    for k in range(1, m):
        term *= c2
        term *= _ratio(nu, k)
        total += term
    if odd:  # (2 / pi) (pi/2 - theta - sin theta cos theta (1 + 2/3 cos^2 + ...))
        total *= s
        total *= np.sqrt(c2)
        return (2.0 / math.pi) * (np.arctan2(math.sqrt(nu), t) - total)
    total *= s  # 1 - sin theta (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
    return 1.0 - total


def _continued_fraction(t: np.ndarray, nu: int, bucket: int = 0) -> np.ndarray:
    """I_x(nu/2, 1/2), x = nu / (nu + t^2): x^a (1-x)^b / (a B(a, b)) / (1 + d1 / (1 + d2 / (1 + ...)))."""
    a = nu / 2.0
    root_nu = math.sqrt(nu)
    hyp = np.hypot(root_nu, t)  # sqrt(nu + t^2) without overflow, even for an infinite t
    cos = root_nu / hyp  # sqrt(x), x = nu / (nu + t^2)
    front = np.power(cos, nu)  # x^a, underflowing only where p itself does
    with np.errstate(invalid="ignore"):
        sin = t / hyp  # sqrt(1 - x); inf / inf where t is infinite, and there p = 0
    sin[np.isinf(t)] = 1.0
    front *= sin
    x = cos * cos
    front /= a * _beta(nu)
    fraction = np.ones(t.shape)
    for d in _cf_coefficients(nu, bucket)[::-1]:  # bottom-up: 1 + d_j x / (1 + d_{j+1} x / ...)
        level = d * x
        level /= fraction
        level += 1.0
        fraction = level
    front /= fraction
    return front


@cache
def _beta(nu: int) -> float:
    """B(nu/2, 1/2) = Gamma(nu/2) Gamma(1/2) / Gamma((nu+1)/2)."""
    return math.exp(math.lgamma(nu / 2.0) + math.lgamma(0.5) - math.lgamma((nu + 1) / 2.0))


@cache
def _cf_coefficients(nu: int, bucket: int) -> tuple[float, ...]:
    """The fraction's coefficients d_1, d_2, ... (each times x), as many as converge it in ``bucket``.

    For I_x(a, b): d_{2m+1} = -(a+m)(a+b+m) / ((a+2m)(a+2m+1)), d_{2m} = m(b-m) / ((a+2m-1)(a+2m)).
    Levels are added until, evaluated top-down (Lentz) at the largest x of the
    bucket (the cut-off's x halved ``bucket`` times), a level changes the fraction
    by less than :data:`_CF_EPS`; then 25 % more.
    """
    a, b = nu / 2.0, 0.5
    x = nu / (nu + _bucket_t(nu, bucket) ** 2)
    coefficients: list[float] = []
    tiny = 1e-300
    c, d, value = 1.0, 0.0, 1.0
    j = 0
    while True:
        j += 1
        m = j // 2
        if j % 2:
            coefficient = -(a + m) * (a + b + m) / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            coefficient = m * (b - m) / ((a + 2 * m - 1) * (a + 2 * m))
        coefficients.append(coefficient)
        level = coefficient * x
        d = 1.0 + level * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + level / c
        c = c if abs(c) > tiny else tiny
        value *= c * d
        if abs(c * d - 1.0) < _CF_EPS or j > 10_000:
            break
    extra = len(coefficients) // 4 + 2
    for j in range(len(coefficients) + 1, len(coefficients) + 1 + extra):
        m = j // 2
        if j % 2:
            coefficients.append(-(a + m) * (a + b + m) / ((a + 2 * m) * (a + 2 * m + 1)))
        else:
            coefficients.append(m * (b - m) / ((a + 2 * m - 1) * (a + 2 * m)))
    return tuple(coefficients)


@cache
def _bucket_t(nu: int, bucket: int) -> float:
    """The t where ``bucket`` of the tail starts: x = nu / (nu + t^2) is the cut-off's x over 2^bucket."""
    if bucket == 0:
        return _t_cutoff(nu)
    x = nu / (nu + _t_cutoff(nu) ** 2) / 2.0**bucket
    return math.sqrt(nu / x - nu)


@cache
def _t_cutoff(nu: int) -> float:
    """The t at which the two-sided p is :data:`SMALL_P` for ``nu`` (by bisection on the closed form)."""
    low, high = 0.0, 1.0
    while _closed_scalar(high, nu) > SMALL_P:
        high *= 2.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if _closed_scalar(mid, nu) > SMALL_P:
            low = mid
        else:
            high = mid
    return high


def _closed_scalar(t: float, nu: int) -> float:
    return float(_closed_form(np.array([t]), nu)[0])
