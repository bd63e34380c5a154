"""OLS's compiled kernels (numba): every pixel's sums in one pass over its window, and its p-value.

:func:`.ols._moments` makes two passes of a dozen numpy operations per year over
the whole window (a float64 copy of it, a mask of valid values, then counts,
sums, deviations and their products), so an OLS fit costs several times the
reading of its inputs. :func:`moments` does the same arithmetic, operation for
operation and in the same order, on blocks of pixels small enough that both
passes over a block's years stay in the core's cache: one read of the window
as stored (float32 or float64), no temporaries, and the results are bit for bit
those of the numpy kernel (``tests/test_ols_compiled.py``).

:func:`t_two_sided` computes what :func:`.student_t.t_two_sided` computes (the same two
forms, the same cut-off and levels), one pixel at a time: no grouping of pixels by
degrees of freedom, no pass per level of the continued fraction over every tail pixel,
and no division inside either form's loop (Horner's rule for the finite sum, a
three-term recurrence for the fraction), which halved OLS's p-values (89 to 44 ns a
pixel at 40 years, half of them in the tail). Its rounding therefore differs from the
numpy kernel's in the last bits; both are checked against ``scipy.stats.t.sf`` to
1e-12 relative (``tests/test_student_t.py``).

The loops release the GIL, so worker threads run them in parallel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_BLOCK = 1024  # pixels whose sums are made at once: 40 years of them are 160 KiB of float32, in L2


@njit(nogil=True, cache=True, error_model="numpy")
def moments(values, xc, n, x_bar, y_bar, sxx, sxy, syy):
    """Per pixel (column) of ``values`` (years, pixels): count of finite values, their
    mean centred year and mean value, and the centred sums of squares and products.

    ``xc`` holds the centred years. The outputs (pixels,) are float64 and are
    computed exactly as :func:`.ols._moments` computes them: ``valid * xc`` and
    ``(y - y_bar) * valid`` with the missing values as 0, summed year by year.
    The sums of a block live in arrays of this function's own, which the compiler
    knows alias nothing else: that is what lets it vectorise the loops (writing
    into the outputs directly was eight times slower).
    """
    n_years, pixels = values.shape
    count, mean_x, mean_y = np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK)
    xx, xy, yy = np.empty(_BLOCK), np.empty(_BLOCK), np.empty(_BLOCK)
    for start in range(0, pixels, _BLOCK):
        m = min(_BLOCK, pixels - start)
        count[:] = 0.0
        mean_x[:] = 0.0
        mean_y[:] = 0.0
        for i in range(n_years):
            x_i = xc[i]
            row = values[i, start : start + m]
            for q in range(m):
                v = np.float64(row[q])
                w = 1.0 if np.isfinite(v) else 0.0
                count[q] += w
                mean_x[q] += w * x_i
                mean_y[q] += v if w else 0.0
        for q in range(m):
            mean_x[q] = mean_x[q] / count[q]
            mean_y[q] = mean_y[q] / count[q]
        xx[:] = 0.0
        xy[:] = 0.0
        yy[:] = 0.0
        for i in range(n_years):
            x_i = xc[i]
            row = values[i, start : start + m]
            for q in range(m):
                v = np.float64(row[q])
                w = 1.0 if np.isfinite(v) else 0.0
                dx = (x_i - mean_x[q]) * w
                dy = ((v if w else 0.0) - mean_y[q]) * w
                xx[q] += dx * dx
                xy[q] += dx * dy
                yy[q] += dy * dy
        n[start : start + m] = count[:m]
        x_bar[start : start + m] = mean_x[:m]
        y_bar[start : start + m] = mean_y[:m]
        sxx[start : start + m] = xx[:m]
        sxy[start : start + m] = xy[:m]
        syy[start : start + m] = yy[:m]


@njit(nogil=True, cache=True, error_model="numpy")
def t_two_sided(t, df, p, cutoff, edges, levels, n_levels, beta, series):
    """Two-sided p of Student's t for every pixel: ``p[i]`` from ``t[i]`` and the whole ``df[i]``.

    The tables (see :func:`.student_t.compiled_tables`) are indexed by df: the t
    above which the continued fraction is used, the t where each further bucket of
    the tail starts, each bucket's fraction coefficients and their number,
    B(df/2, 1/2), and the closed form's coefficients (the products of A&S 26.7.3/4's
    ratios, so that its sum is one Horner pass). NaN where df is below 1 or not
    finite, or t is NaN.

    Both forms are chains of multiply-adds with no division in them: the sum by
    Horner's rule, and the fraction 1 + d_0 x / (1 + d_1 x / (...)) as the ratio
    P_0 / P_1 of the backward recurrence P_j = P_{j+1} + d_j x P_{j+2} (P_N = P_{N+1} = 1),
    which is the same truncated fraction (f_j = P_j / P_{j+1}) with one division at
    the end instead of one a level: a level costs a multiply-add's latency, not a
    division's, which made the tail's p-values several times faster.
    """
    for i in range(t.shape[0]):
        nu_f = df[i]
        value = abs(t[i])
        if not (np.isfinite(nu_f) and nu_f >= 1.0) or value != value:
            p[i] = np.nan
            continue
        nu = int(nu_f)
        if value > cutoff[nu] or value == np.inf:
            bucket = 0
            for edge in edges[nu]:
                bucket += edge < value
            root_nu = math.sqrt(nu)
            hyp = math.hypot(root_nu, value)
            cos = root_nu / hyp
            front = math.pow(cos, float(nu))
            sin = 1.0 if value == np.inf else value / hyp
            front *= sin
            x = cos * cos
            front /= (nu / 2.0) * beta[nu]
            later, last = 1.0, 1.0  # P_{j+1}, P_{j+2}
            for j in range(n_levels[nu, bucket] - 1, -1, -1):
                later, last = later + (levels[nu, bucket, j] * x) * last, later
            p[i] = front * (last / later)  # the ratio first: front alone may be near underflow
            continue
        t2 = value * value
        denom = nu + t2
        c2 = nu / denom
        s = value / math.sqrt(denom)
        m = nu // 2
        total = 0.0
        for k in range(m - 1, -1, -1):
            total = total * c2 + series[nu, k]
        total *= s
        if nu % 2 == 1:
            total *= math.sqrt(c2)
            p[i] = (2.0 / math.pi) * (math.atan2(math.sqrt(nu), value) - total)
        else:
            p[i] = 1.0 - total
