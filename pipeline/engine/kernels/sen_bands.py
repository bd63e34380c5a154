"""Sen's and Mann-Kendall's bands from each pixel's order statistics, in one compiled pass (numba).

After the kernels of :mod:`.pair_select` have found a pixel's count of valid years,
medians, ties and the four order statistics of its pairwise slopes, what is left is
arithmetic per pixel: the slope and intercept, whether the confidence bounds exist,
S, its variance, z and tau. Done as numpy operations over a chunk (about thirty of
them, each a pass over the chunk with a temporary) that costs about a quarter of the
whole fit at 10 years; here it is one loop. Every operation is the one
:func:`.robust.sen_mk` makes with numpy, in the same order and in float64, so the bands
are bit for bit the numpy kernel's (``tests/test_compiled_sen.py``). The normal tail
probability of z stays with scipy's ``ndtr``, which is not the C library's ``erfc``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# The rows of :func:`sen_mk_bands`'s output, in the order :func:`.robust.sen_mk` names them.
ROWS = ("sen_slope", "sen_intercept", "sen_low", "sen_high", "mk_s", "mk_var_s", "mk_z", "mk_tau", "n")


@njit(nogil=True, cache=True, error_model="numpy")
def sen_mk_bands(per_pixel, picked, negative, z_crit, too_few_below, tested_from, out):
    """Fill ``out`` (len(ROWS), pixels) from the kernels' ``per_pixel`` (6, pixels: n, median x,
    median y, tied pairs, tie term, whether the bounds' ranks exist), ``picked`` (4, pixels: the
    two middle slopes and the two bounds) and ``negative`` (negative differences, int64).

    Pixels with fewer than ``too_few_below`` valid years get NaN in every band but ``n``;
    z is NaN below ``tested_from`` years, as is every band of a pixel that cannot be fitted.
    """
    nan = np.nan
    for i in range(per_pixel.shape[1]):
        n = np.int64(per_pixel[0, i])
        n_float = np.float64(n)
        pairs = n * (n - 1) // 2
        pairs_float = np.float64(pairs)
        tie_free = n_float * (n_float - 1.0) * (2.0 * n_float + 5.0) - per_pixel[4, i]
        out[8, i] = n_float
        if n < too_few_below:
            for row in range(8):
                out[row, i] = nan
            continue
        slope = (picked[0, i] + picked[1, i]) / 2.0
        if pairs == 0:
            slope = nan
        out[0, i] = slope
        out[1, i] = per_pixel[2, i] - slope * per_pixel[1, i]
        sigma = math.sqrt(1 / 18.0 * tie_free)
        upper = np.rint((pairs_float - z_crit * sigma) / 2.0)
        lower = np.rint((pairs_float + z_crit * sigma) / 2.0) - 1
        reachable = (lower >= 0) and (upper <= pairs - 1)
        if per_pixel[5, i] > 0 and reachable:
            out[2, i], out[3, i] = picked[2, i], picked[3, i]
        else:
            out[2, i] = out[3, i] = nan
        s = pairs_float - per_pixel[3, i] - 2.0 * np.float64(negative[i])
        var_s = tie_free / 18.0
        root = math.sqrt(var_s)
        if s > 0:
            z = (s - 1.0) / root
        elif s < 0:
            z = (s + 1.0) / root
        else:
            z = 0.0
        out[4, i] = s
        out[5, i] = var_s
        out[6, i] = z if n >= tested_from else nan
        out[7, i] = s / (0.5 * n_float * (n_float - 1.0))
