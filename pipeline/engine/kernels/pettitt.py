"""Pettitt's (1979) change-point test over every pixel at once.

Pure: arrays in, arrays out. Per pixel it reproduces ``pyhomogeneity.pettitt_test(y,
sim=None)`` on the pixel's series (missing years dropped, as pyhomogeneity does):
U_k = 2 sum_{i<=k} r_i - k(n+1) over the average ranks r of the n valid values, K =
max |U_k| (the first k on ties), and the approximate p-value 2 exp(-6K^2/(n^3+n^2)),
capped at 1. pyhomogeneity's ``cp`` is the 1-based position of the last value before
the change; ``cp_year`` is that value's year. Series of fewer than 4 values, whose
p-value is 1 whatever they hold, are NaN here.
"""

from __future__ import annotations

import numpy as np

from .modified_mk import average_ranks

PETTITT_BANDS = ("cp_year", "cp_p")
PETTITT_MIN_TESTED = 4  # valid years: with 3 or fewer, 2 exp(-6K^2/(n^3+n^2)) >= 1 whatever the values


def pettitt(values: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """``cp_year`` and ``cp_p`` for (N, P) ``values`` (NaN missing) on years ``x``.

    Pixels with fewer than :data:`PETTITT_MIN_TESTED` valid years are NaN: below it the
    p-value is 1 (capped) for every series, and a change year with it means nothing.
    """
    x = np.asarray(x, dtype=np.float64)
    rows = np.asarray(values, dtype=np.float64).T
    valid = np.isfinite(rows)
    n = np.count_nonzero(valid, axis=1).astype(np.float64)
    ranks = average_ranks(rows, valid)  # scipy's average ranks, exact
    seen = np.cumsum(valid, axis=1)
    u = np.abs(2.0 * np.cumsum(ranks, axis=1) - seen * (n[:, None] + 1.0))
    u[~valid | (seen >= n[:, None])] = -1.0  # only positions 1..n-1 of the valid values
    at = np.argmax(u, axis=1)
    k = u[np.arange(len(at)), at]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(2.0 * np.exp((-6.0 * k**2) / (n**3 + n**2)), 1.0)
    cp_year = x[at]
    too_few = n < PETTITT_MIN_TESTED
    cp_year[too_few] = np.nan
    p[too_few] = np.nan
    return {"cp_year": cp_year, "cp_p": p}
