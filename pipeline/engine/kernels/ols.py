"""Ordinary least squares over every pixel at once.

Pure: arrays in, arrays out, no I/O. ``values`` is laid out (years, pixels), so
every sum runs along axis 0 in a fixed order whatever the number of pixels: the
result for a pixel does not depend on the window it was computed in.

Each pixel gets what ``scipy.stats.linregress`` gives on its non-missing values:
the same formulas, with float64 accumulation and x centred before the sums so
that years near 2000 do not cancel away the precision. One exception: through two
points scipy's p = 0 and standard errors of 0 are NaN here (no residual, no test).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .compiled import LazyKernel
from .student_t import t_two_sided

OLS_BANDS = ("slope", "intercept", "rvalue", "pvalue", "stderr", "intercept_stderr")

OLS_MIN_TESTED = 3  # valid years for pvalue, stderr and intercept_stderr: one residual degree of freedom
_TINY = 1.0e-20  # scipy's guard against a zero denominator in the t statistic
_kernel = LazyKernel("ols_compiled", "using numpy instead, the same results", "OLS's kernel")
COMPILED_TYPES = (np.dtype(np.float32), np.dtype(np.float64))  # windows the compiled sums read as stored


def compiled_kernel() -> ModuleType | None:
    """OLS's compiled kernels (:mod:`.ols_compiled`), or None where numba is not installed or
    ``EETREND_KERNEL=numpy`` asks for numpy. Imported once, on first use."""
    return _kernel.get()


def warm_up(dtype: type = np.float32) -> None:
    """Load (or, once per install, compile) the compiled kernels for windows of ``dtype``, saying so
    on stderr if that takes more than a few seconds; nothing where they are unavailable."""
    kernel = compiled_kernel()
    if kernel is not None:
        _ready(kernel, np.dtype(dtype))


def _ready(kernel: ModuleType, dtype: np.dtype) -> None:
    """Make sure the compiled p-values, and the compiled sums for windows of ``dtype`` where there
    are any (:data:`COMPILED_TYPES`), are loaded or compiled."""

    def load() -> None:
        if dtype in COMPILED_TYPES:
            _compiled_sums(kernel, np.zeros((3, 1), dtype=dtype), np.zeros(3))
        t_two_sided(np.ones(1), np.ones(1), kernel)

    _kernel.ready(dtype, load)


def _compiled_sums(kernel: ModuleType, values: np.ndarray, xc: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`_moments`' six results from the compiled kernel, reading ``values`` as stored."""
    pixels = values.shape[1]
    sums = tuple(np.empty(pixels) for _ in range(6))
    kernel.moments(np.ascontiguousarray(values), xc, *sums)
    return sums


def _moments(y: np.ndarray, valid: np.ndarray, xc: np.ndarray):
    """Per-pixel count, means and centred sums of squares, one year at a time.

    Two passes (means, then deviations) as scipy does, each a loop over years of
    element-wise operations on pixel vectors. Element-wise ufuncs round every
    pixel alike, so a pixel's result does not depend on its window.
    """
    pixels = y.shape[1]
    n, sum_x, sum_y = np.zeros(pixels), np.zeros(pixels), np.zeros(pixels)
    tmp = np.empty(pixels)
    for i in range(y.shape[0]):
        n += valid[i]
        np.multiply(valid[i], xc[i], out=tmp)
        sum_x += tmp
        sum_y += y[i]  # missing values are 0 in y here
    x_bar = sum_x / n  # each pixel's own mean of the centred years
    y_bar = sum_y / n
    sxx, sxy, syy = np.zeros(pixels), np.zeros(pixels), np.zeros(pixels)
    dx, dy = sum_x, sum_y  # reuse the buffers
    for i in range(y.shape[0]):
        np.subtract(xc[i], x_bar, out=dx)
        dx *= valid[i]
        np.subtract(y[i], y_bar, out=dy)
        dy *= valid[i]
        np.multiply(dx, dx, out=tmp)
        sxx += tmp
        np.multiply(dx, dy, out=tmp)
        sxy += tmp
        np.multiply(dy, dy, out=tmp)
        syy += tmp
    return n, x_bar, y_bar, sxx, sxy, syy


def ols(values: np.ndarray, x: np.ndarray, min_years: int = 3, compiled: bool | None = None) -> dict[str, np.ndarray]:
    """Fit y = intercept + slope * x for every pixel (column) of ``values``.

    ``values`` is (N, P) with NaN (or any non-finite value) for missing; ``x`` is
    (N,), e.g. the years. Returns float64 arrays of length P named as
    :data:`OLS_BANDS`, plus ``n``. Pixels with fewer than ``min_years`` valid
    values are NaN (``n`` is kept); with two, the line is scipy's but ``pvalue``,
    ``stderr`` and ``intercept_stderr`` are NaN (see :data:`OLS_MIN_TESTED`).

    The sums come from the compiled :mod:`.ols_compiled` where numba is installed,
    else from numpy; both give the same bits. ``compiled`` True or False asks for one.
    """
    values = np.asarray(values)
    x = np.asarray(x, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != x.shape[0]:
        raise ValueError(f"values must be (len(x), pixels); got {values.shape} for {x.shape[0]} x values")
    kernel = compiled_kernel() if compiled is not False else None
    if compiled and kernel is None:
        raise RuntimeError("the compiled OLS kernel needs numba: pip install numba")
    if kernel is not None:
        _ready(kernel, values.dtype)  # says so if a first compile makes this fit wait
    x_mean_all = x.mean()
    xc = x - x_mean_all  # centred years: sums of squares keep their precision

    with np.errstate(divide="ignore", invalid="ignore"):
        if kernel is not None and values.dtype in COMPILED_TYPES:
            n, x_bar, y_bar, sxx, sxy, syy = _compiled_sums(kernel, values, xc)
        else:
            y = np.asarray(values, dtype=np.float64)
            valid = np.isfinite(y)
            n, x_bar, y_bar, sxx, sxy, syy = _moments(np.where(valid, y, 0.0), valid, xc)
            del y, valid
        enough = n >= max(min_years, 2)

        # A constant series has no spread at all; make that exact so it gives what
        # scipy gives (r, p and stderr NaN) instead of rounding noise. Only pixels
        # whose spread is within rounding of zero need the exact check.
        suspects = np.flatnonzero(syy <= 1e-20 * n * y_bar * y_bar)
        if suspects.size:
            values_of = np.asarray(values[:, suspects], dtype=np.float64)
            values_of[~np.isfinite(values_of)] = np.nan  # each has a valid value
            constant = suspects[np.nanmax(values_of, axis=0) == np.nanmin(values_of, axis=0)]
            syy[constant] = 0.0
            sxy[constant] = 0.0

        degenerate = (sxx == 0.0) | (syy == 0.0)
        r = np.where(degenerate, np.where(sxy == 0.0, np.nan, 0.0), sxy / np.sqrt(sxx * syy))
        np.clip(r, -1.0, 1.0, out=r)

        slope = sxy / sxx
        x_mean = x_bar + x_mean_all
        intercept = y_bar - slope * x_mean

        df = n - 2.0
        t = r * np.sqrt(df / ((1.0 - r + _TINY) * (1.0 + r + _TINY)))
        pvalue = t_two_sided(t, df, kernel)  # scipy's 2 * stdtr(df, -|t|), for whole df and several times faster
        stderr = np.sqrt((1.0 - r**2) * syy / sxx / df)
        intercept_stderr = stderr * np.sqrt(sxx / n + x_mean**2)

        # Through two points the line is exact and has no residual degree of freedom: scipy
        # then returns p = 0 (or 1 if flat) and standard errors of 0, which read as a certain
        # trend. Without a residual there is no test and no standard error: NaN.
        untestable = n < OLS_MIN_TESTED
        pvalue[untestable] = np.nan
        stderr[untestable] = np.nan
        intercept_stderr[untestable] = np.nan

    out = {
        "slope": slope,
        "intercept": intercept,
        "rvalue": r,
        "pvalue": pvalue,
        "stderr": stderr,
        "intercept_stderr": intercept_stderr,
    }
    for band in out.values():
        band[~enough] = np.nan
    out["n"] = n
    return out
