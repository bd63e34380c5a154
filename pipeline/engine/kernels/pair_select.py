"""Order statistics of each pixel's pairwise slopes by counting, not sorting (compiled with numba).

Sen's slope needs four order statistics of a pixel's n(n-1)/2 pairwise slopes:
the one or two middle ones and the two confidence bounds. Sorting them all (the
numpy kernel's way) costs about n^2 log n per pixel; :func:`sen_pixels` finds the
four exactly by *counting* the slopes below a pivot, a loop the compiler turns into
vector instructions (82-122 ns for 780 slopes):

* the pairwise slopes are built lag by lag, with the same float64 operations as the
  numpy kernel (so the values, and hence the order statistics, are bit for bit the
  same), and the negative and zero differences are counted on the way;
* one pass first counts the slopes below two pivots either side of the pixel's
  least-squares slope (1.25 half-widths of its interval), which usually hold every
  target between them, so no search has to find the extreme slopes first;
* each target's first pivot is the least-squares slope or an end of its interval,
  which lie near Sen's median and bounds; then secant steps through the last two
  counts, with Illinois' regula falsi between the bounds where a step fails; once
  one bound has its count (k below a, k + 1 below b), the steps aim at the middle of
  the other's gap between slopes, not at the answer itself;
* once the bracket holds one slope, a masked sum returns it (a masked minimum or
  maximum would be exact too, but numba leaves those scalar: 1.4-1.6 us for 780
  slopes); when counts stop narrowing (tied slopes), the greatest slope below the
  upper bound is tried, which is the answer if no more than k slopes lie below it;
* counts are shared between the four targets, so later ones start narrow.

Whatever happens the answer is exact: a search that has not settled after a fixed
number of counts, or a pixel whose slopes could overflow, is sorted instead.

Shorter series (below 31 years) go through :func:`sen_tiles` instead, 64 pixels at a
time: their slopes are sorted in place by a sorting network up to 13 years, or copied
out for numpy's sort (see :func:`.robust.compiled_route`).

Nothing here allocates per pixel, and the loops release the GIL, so worker
threads run them in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .sen_bands import ROWS as SEN_MK_ROWS  # noqa: F401  (robust reaches every compiled piece of Sen here)
from .sen_bands import sen_mk_bands  # noqa: F401

# Reductions over slopes that are never NaN; only the sign of a zero and the
# order of the (exact) min/max/sum may change, never a value.
_REDUCE = {"nnan", "nsz", "reassoc"}
_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy"}
_MAX_COUNTS = 40  # counts per target before the pixel's slopes are sorted instead
_SMALL = 16  # pixels with fewer slopes are simply sorted
_WIDE = 1.25  # the first two counts: this many half-widths of the least-squares interval either side of its slope
_SAFE = 1e300  # slopes are finite when |y| range / smallest year gap stays below this


@njit(**_OPTIONS)
def _count_below(slopes, m, pivot):
    count = 0
    for i in range(m):
        count += slopes[i] < pivot
    return count


@njit(**_OPTIONS)
def _least_at_or_above(slopes, m, a):
    """The least of ``slopes[:m]`` at or above ``a`` (+inf if none), with eight running minima:
    numba leaves a single masked minimum scalar, one slope at a time (1.5 us for 780, against 0.4)."""
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = np.inf
    full = m - m % 8
    for i in range(0, full, 8):
        block = slopes[i:i + 8]
        v0, v1, v2, v3, v4, v5, v6, v7 = block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7]
        l0 = v0 if (v0 >= a) & (v0 < l0) else l0
        l1 = v1 if (v1 >= a) & (v1 < l1) else l1
        l2 = v2 if (v2 >= a) & (v2 < l2) else l2
        l3 = v3 if (v3 >= a) & (v3 < l3) else l3
        l4 = v4 if (v4 >= a) & (v4 < l4) else l4
        l5 = v5 if (v5 >= a) & (v5 < l5) else l5
        l6 = v6 if (v6 >= a) & (v6 < l6) else l6
        l7 = v7 if (v7 >= a) & (v7 < l7) else l7
    for i in range(full, m):
        v = slopes[i]
        l0 = v if (v >= a) & (v < l0) else l0
    return min(min(min(l0, l1), min(l2, l3)), min(min(l4, l5), min(l6, l7)))


@njit(**_OPTIONS)
def _greatest_below(slopes, m, b):
    """The greatest of ``slopes[:m]`` below ``b`` (-inf if none), as :func:`_least_at_or_above`."""
    g0 = g1 = g2 = g3 = g4 = g5 = g6 = g7 = -np.inf
    full = m - m % 8
    for i in range(0, full, 8):
        block = slopes[i:i + 8]
        v0, v1, v2, v3, v4, v5, v6, v7 = block[0], block[1], block[2], block[3], block[4], block[5], block[6], block[7]
        g0 = v0 if (v0 < b) & (v0 > g0) else g0
        g1 = v1 if (v1 < b) & (v1 > g1) else g1
        g2 = v2 if (v2 < b) & (v2 > g2) else g2
        g3 = v3 if (v3 < b) & (v3 > g3) else g3
        g4 = v4 if (v4 < b) & (v4 > g4) else g4
        g5 = v5 if (v5 < b) & (v5 > g5) else g5
        g6 = v6 if (v6 < b) & (v6 > g6) else g6
        g7 = v7 if (v7 < b) & (v7 > g7) else g7
    for i in range(full, m):
        v = slopes[i]
        g0 = v if (v < b) & (v > g0) else g0
    return max(max(max(g0, g1), max(g2, g3)), max(max(g4, g5), max(g6, g7)))


@njit(fastmath=_REDUCE, **_OPTIONS)
def _sum_between(slopes, m, a, b):
    total = 0.0
    for i in range(m):
        v = slopes[i]
        total += v if (v >= a) & (v < b) else 0.0
    return total


@njit(**_OPTIONS)
def _count_below_two(slopes, m, a, b):
    """How many of ``slopes[:m]`` lie below ``a``, and how many below ``b``, in one pass."""
    below_a = 0
    below_b = 0
    for i in range(m):
        v = slopes[i]
        below_a += v < a
        below_b += v < b
    return below_a, below_b


@njit(**_OPTIONS)
def _tie_sums(ordered, n):
    """Tied pairs and the variance's tie term of ascending ``ordered[:n]``: a group of t equal
    values gives t(t-1)/2 tied pairs and takes t(t-1)(2t+5) off the variance of S."""
    pairs = 0.0
    term = 0.0
    start = 0
    for i in range(1, n + 1):
        if i == n or ordered[i] != ordered[start]:
            t = float(i - start)
            pairs += t * (t - 1.0) / 2.0
            term += t * (t - 1.0) * (2.0 * t + 5.0)
            start = i
    return pairs, term


@njit(**_OPTIONS)
def _sen_ranks(n, m, tie_term, z_crit, ranks):
    """Sen (1968) eq. 2.6, with theilslopes' own arithmetic and rounding, as in robust.sen_mk:
    the ranks of the two middle slopes and the two bounds in ``ranks``; whether the bounds exist."""
    nf = float(n)
    sigma = np.sqrt(1 / 18.0 * (nf * (nf - 1.0) * (2.0 * nf + 5.0) - tie_term))
    upper = min(np.rint((m - z_crit * sigma) / 2.0), m - 1)
    lower = max(np.rint((m + z_crit * sigma) / 2.0) - 1, 0)
    usable = m > 0 and np.isfinite(upper) and np.isfinite(lower)
    ranks[0] = (m - 1) // 2
    ranks[1] = m // 2
    ranks[2] = int(lower) if usable else 0
    ranks[3] = int(upper) if usable else 0
    return usable


@njit(**_OPTIONS)
def _build_slopes(ys, xs, n, slopes):
    """The pairwise slopes of the valid values ``ys[:n]`` (years ``xs``) into ``slopes``, lag by lag;
    their number, and how many differences are negative and how many zero (Mann-Kendall's S, the ties).
    Each lag is a loop over slices, with no index arithmetic, which the compiler vectorises."""
    m = 0
    negative = 0
    zero = 0
    for lag in range(1, n):
        width = n - lag
        later_y, later_x = ys[lag:], xs[lag:]
        dest = slopes[m:m + width]
        for i in range(width):
            d = later_y[i] - ys[i]
            negative += d < 0
            zero += d == 0
            dest[i] = d / (later_x[i] - xs[i])
        m += width
    return m, negative, zero


@njit(**_OPTIONS)
def _guesses(xs, ys, n, z):
    """Where to look first: the least-squares slope of ``ys[:n]`` and the half-width of its interval at
    normal quantile ``z``; Sen's median and bounds lie near them. Only pivots: any value is exact."""
    mean_x = 0.0
    mean_y = 0.0
    for i in range(n):
        mean_x += xs[i]
        mean_y += ys[i]
    mean_x /= n
    mean_y /= n
    sxx = 0.0
    sxy = 0.0
    syy = 0.0
    for i in range(n):
        dx = xs[i] - mean_x
        dy = ys[i] - mean_y
        sxx += dx * dx
        sxy += dx * dy
        syy += dy * dy
    slope = sxy / sxx
    spread = z * np.sqrt(max(syy - slope * sxy, 0.0) / max(n - 2, 1) / sxx)
    return slope, spread


@njit(**_OPTIONS)
def _bracket(slopes, m, k, guess, density, probe_values, probe_counts, probes):
    """Narrow rank ``k`` (from 0) of ``slopes[:m]`` by counting: (0, a, b) once [a, b) holds that one
    slope; (2, v, v) when the answer is v itself (tied slopes); (3, 0, 0) if it did not settle.

    Earlier counts (``probe_values``/``probe_counts``, ``probes[0]`` of them) bound the search
    from the start, and this one's are added. The first pivot is ``guess``; then a secant
    step through the last two counts (or, with one, a step at ``density`` slopes per unit);
    Illinois' regula falsi between the bounds when a step falls outside them or one bound
    keeps moving. When counts stop narrowing (ties), the greatest slope below the upper
    bound is tried: it is the answer if no more than k slopes lie below it.
    """
    a, below_a, b, below_b = -np.inf, 0, np.inf, m  # the answer is in [a, b)
    for i in range(probes[0]):
        if probe_counts[i] <= k:
            if probe_values[i] >= a:
                a, below_a = probe_values[i], probe_counts[i]
        elif probe_values[i] <= b:
            b, below_b = probe_values[i], probe_counts[i]
    last, below_last = np.nan, 0.0
    before, below_before = np.nan, 0.0
    weight_a = weight_b = 1.0
    side = 0
    stalled = 0
    for step in range(_MAX_COUNTS):
        if below_b - below_a == 1:
            return 0, a, b
        if stalled >= 3:
            top = _greatest_below(slopes, m, b)
            below_top = _count_below(slopes, m, top)
            if below_top <= k:
                return 2, top, top
            b, below_b = top, below_top
            stalled = side = 0
            weight_a = weight_b = 1.0
            last = np.nan
            continue
        # The count to aim for: k + 1 below b and k below a end the search; when one bound already has
        # its count, aim at the middle of the other's gap between slopes, not at the slope itself.
        aim = k if below_b == k + 1 else (k + 1.0 if below_a == k else k + 0.5)
        pivot = np.nan
        if step == 0:
            pivot = guess
        elif before == before and below_last != below_before and last != before:
            pivot = last + (aim - below_last) * (last - before) / (below_last - below_before)
        elif last == last and density > 0:
            pivot = last + (aim - below_last) / density
        if weight_a < 1.0 or weight_b < 1.0:
            pivot = np.nan  # one bound keeps moving: regula falsi instead
        if not (a < pivot < b):
            if a == -np.inf or b == np.inf:  # step out from the bound there is, else find the extremes
                if density > 0 and b != np.inf:
                    pivot = b - 2.0 * (below_b - k + 0.5) / density
                elif density > 0 and a != -np.inf:
                    pivot = a + 2.0 * (k + 0.5 - below_a) / density
                if not (a < pivot < b):
                    if a == -np.inf:
                        a, below_a = _least_at_or_above(slopes, m, a), 0
                    if b == np.inf:
                        b, below_b = np.nextafter(_greatest_below(slopes, m, b), np.inf), m
                    continue
            else:
                share_a = (aim - below_a) * weight_a
                share_b = (below_b - aim) * weight_b
                pivot = a + (b - a) * (share_a / (share_a + share_b))
                if not (a < pivot < b):
                    pivot = 0.5 * a + 0.5 * b
                    if not (a < pivot < b):
                        return 2, a, a  # [a, b) holds no other value
        below = _count_below(slopes, m, pivot)
        if probes[0] < probe_values.shape[0]:
            probe_values[probes[0]] = pivot
            probe_counts[probes[0]] = below
            probes[0] += 1
        before, below_before, last, below_last = last, below_last, pivot, float(below)
        stalled = stalled + 1 if below == below_a or below == below_b else 0
        if below <= k:
            a, below_a = pivot, below
            weight_b = weight_b * 0.5 if side == -1 else 1.0
            weight_a = 1.0
            side = -1
        else:
            b, below_b = pivot, below
            weight_a = weight_a * 0.5 if side == 1 else 1.0
            weight_b = 1.0
            side = 1
    return 3, 0.0, 0.0


@njit(**_OPTIONS)
def _tile_values(values, start, m, rows, ordered):
    """Pixels ``start`` to ``start + m``: each one's values in a row of ``rows`` (NaN where missing),
    and ``ordered`` (years, pixels) their values sorted, missing last, by :func:`_sort_columns`."""
    for t in range(values.shape[0]):
        source = values[t, start:start + m]
        sortable = ordered[t]
        for q in range(m):
            v = np.float64(source[q])
            valid = v == v and abs(v) != np.inf
            rows[q, t] = v if valid else np.nan
            sortable[q] = v if valid else np.inf
    _sort_columns(ordered, values.shape[0], m)


@njit(**_OPTIONS)
def sen_pixels(values, x, z_crit, out, picked, negative):
    """Everything :func:`robust.sen_mk` needs per pixel, by counting (long series).

    ``values`` is (years, pixels), NaN or +-inf for missing; ``x`` the years
    (strictly increasing); ``z_crit`` the normal quantile of the confidence
    interval. Writes ``out`` (6, pixels): valid years, median of x, median of y,
    tied pairs, the tie term of the variance, and whether the confidence bounds
    exist (1.0 or 0.0); ``picked`` (4, pixels): the two middle pairwise slopes
    and the lower and upper bound (untouched without pairs or bounds);
    ``negative``: how many pairs i < j have y_j - y_i < 0. Every quantity is
    computed with the numpy kernel's float64 operations, so the bits agree.

    A tile of pixels at a time has its values transposed and sorted (median of y,
    ties); then each pixel's slopes are built (:func:`_build_slopes`) and each order
    statistic bracketed by counting (:func:`_bracket`), starting from the least-squares
    slope and its interval, and read off by a masked sum once one slope is left.
    """
    n_years, pixels = values.shape
    most = n_years * (n_years - 1) // 2
    slopes = np.empty(max(most, 1))
    scratch = np.empty(max(most, 1))  # a pixel's slopes, sorted, where a search did not settle
    rows = np.empty((_TILE, n_years))
    ordered = np.empty((n_years, _TILE))
    xs = np.empty(n_years)
    ys = np.empty(n_years)
    probe_values = np.empty(96)
    probe_counts = np.empty(96, dtype=np.int64)
    probes = np.zeros(1, dtype=np.int64)
    ranks = np.empty(4, dtype=np.int64)
    z = abs(z_crit) * 1.05  # Sen's interval is about 5 % wider than least squares' for normal noise
    smallest_gap = np.inf
    for t in range(1, n_years):
        smallest_gap = min(smallest_gap, x[t] - x[t - 1])
    for start in range(0, pixels, _TILE):
        width = min(_TILE, pixels - start)
        _tile_values(values, start, width, rows, ordered)
        for q in range(width):
            p = start + q
            row = rows[q]
            n = 0
            for t in range(n_years):  # the valid years, packed
                v = row[t]
                xs[n] = x[t]
                ys[n] = v
                n += 1 if v == v else 0
            out[0, p] = n
            negative[p] = 0
            if n == 0:
                out[1, p] = out[2, p] = np.nan
                out[3, p] = out[4, p] = out[5, p] = 0.0
                continue
            out[1, p] = (xs[(n - 1) // 2] + xs[n // 2]) / 2.0
            out[2, p] = (ordered[(n - 1) // 2, q] + ordered[n // 2, q]) / 2.0
            m, negative[p], zero = _build_slopes(ys, xs, n, slopes)
            if zero:
                out[3, p], out[4, p] = _tie_sums(ordered[:, q], n)
            else:
                out[3, p] = out[4, p] = 0.0
            usable = _sen_ranks(n, m, out[4, p], z_crit, ranks)
            out[5, p] = 1.0 if usable else 0.0
            if m == 0:
                continue
            low, high = ordered[0, q], ordered[n - 1, q]
            if m < _SMALL or not (high - low) / smallest_gap < _SAFE:
                slopes[:m].sort()
                for r in range(4):
                    picked[r, p] = slopes[ranks[r]]
                continue
            slope, spread = _guesses(xs, ys, n, z)
            density = (ranks[2] - ranks[3]) / (2.0 * spread) if usable and spread > 0 else 0.0  # ranks[2] > ranks[3]
            if not np.isfinite(density):
                density = 0.0
            probes[0] = 0
            if spread > 0 and np.isfinite(spread):  # two counts either side of the guesses: every target starts bounded
                low_pivot, high_pivot = slope - _WIDE * spread, slope + _WIDE * spread
                probe_values[0], probe_values[1] = low_pivot, high_pivot
                probe_counts[0], probe_counts[1] = _count_below_two(slopes, m, low_pivot, high_pivot)
                probes[0] = 2
            for r in range(4):
                if r == 1 and ranks[1] == ranks[0]:
                    picked[1, p] = picked[0, p]  # an odd number of pairs has one middle slope
                    continue
                if r >= 2 and not usable:
                    continue
                guess = slope if r < 2 else (slope + spread if r == 2 else slope - spread)  # ranks[2] > ranks[3]
                found, a, b = _bracket(slopes, m, ranks[r], guess, density, probe_values, probe_counts, probes)
                if found == 0:
                    picked[r, p] = _sum_between(slopes, m, a, b)  # the one slope in [a, b)
                elif found == 2:
                    picked[r, p] = a
                else:
                    scratch[:m] = slopes[:m]
                    scratch[:m].sort()
                    picked[r, p] = scratch[ranks[r]]


_TILE = 64  # pixels whose pairwise slopes sen_tiles makes at once, pair by pair: a loop the compiler vectorises


@njit(**_OPTIONS)
def _sort_columns(columns, n_rows, m):
    """Sort each of the first ``m`` columns of ``columns[:n_rows]`` ascending, all columns at once.

    Odd-even transposition: ``n_rows`` rounds of compare-exchanges of neighbouring
    rows, each a loop over the columns the compiler vectorises. A pair is exchanged
    only when the upper value is greater, so equal values (0.0 and -0.0) keep
    their order, as in an insertion sort. The values must not be NaN.
    """
    for round_ in range(n_rows):
        for i in range(round_ % 2, n_rows - 1, 2):
            upper, lower = columns[i], columns[i + 1]
            for q in range(m):
                a, b = upper[q], lower[q]
                keep = a <= b
                upper[q] = a if keep else b
                lower[q] = b if keep else a


@njit(inline="always", **_OPTIONS)  # inlined: the caller's own buffers, which the compiler knows apart
def _tile_slopes(values, start, m, x, ys, ordered, tile, count, below, ties, low_x, high_x, seen):
    """One tile's per-pixel work that needs no order statistics of the slopes, every step a loop over
    its ``m`` pixels: the valid values and their count, the middle valid years, every pair of years'
    slope into ``tile`` (pairs, pixels), +inf where a year is missing (so missing pairs sort last),
    the negative and zero differences, and the values sorted into ``ordered`` (missing last)."""
    n_years = values.shape[0]
    count[:] = 0.0
    for t in range(n_years):
        row, sortable = ys[t], ordered[t]
        for q in range(m):
            v = np.float64(values[t, start + q])
            valid = v == v and abs(v) != np.inf
            row[q] = v if valid else np.nan
            sortable[q] = v if valid else np.inf
            count[q] += 1.0 if valid else 0.0
    seen[:] = 0.0
    for t in range(n_years):  # the middle valid years, found as they are passed
        x_t = x[t]
        row = ys[t]
        for q in range(m):
            if row[q] == row[q]:
                if seen[q] == (count[q] - 1.0) // 2.0:
                    low_x[q] = x_t
                if seen[q] == count[q] // 2.0:
                    high_x[q] = x_t
                seen[q] += 1.0
    below[:] = 0.0
    ties[:] = 0.0
    k = 0
    for lag in range(1, n_years):
        for i in range(n_years - lag):
            gap = x[i + lag] - x[i]
            later, earlier, dest = ys[i + lag], ys[i], tile[k]
            for q in range(m):
                d = later[q] - earlier[q]
                below[q] += 1.0 if d < 0 else 0.0
                ties[q] += 1.0 if d == 0 else 0.0
                slope = d / gap
                dest[q] = slope if slope == slope else np.inf
            k += 1
    _sort_columns(ordered, n_years, m)


@njit(inline="always", **_OPTIONS)  # inlined: the caller's own buffers, which the compiler knows apart
def _pixel_outputs(q, p, z_crit, count, below, ties, low_x, high_x, ordered, out, negative, pixel_ranks):
    """Pixel ``p`` (column ``q`` of its tile): ``out`` and ``negative`` as :func:`sen_pixels` writes them,
    and the ranks of its order statistics in ``pixel_ranks``; returns its number of pairs."""
    n = int(count[q])
    out[0, p] = n
    negative[p] = np.int64(below[q])
    if n == 0:
        out[1, p] = out[2, p] = np.nan
        out[3, p] = out[4, p] = out[5, p] = 0.0
        return 0
    out[1, p] = (low_x[q] + high_x[q]) / 2.0
    out[2, p] = (ordered[(n - 1) // 2, q] + ordered[n // 2, q]) / 2.0
    if ties[q]:
        out[3, p], out[4, p] = _tie_sums(ordered[:, q], n)
    else:
        out[3, p] = out[4, p] = 0.0
    pairs = n * (n - 1) // 2
    out[5, p] = 1.0 if _sen_ranks(n, pairs, out[4, p], z_crit, pixel_ranks) else 0.0
    return pairs


@njit(**_OPTIONS)
def sen_tiles(values, x, z_crit, out, negative, in_place, network, picked, slopes, ranks):
    """What :func:`sen_pixels` writes, for series too short for counting to beat sorting, a tile of
    :data:`_TILE` pixels at a time; ``out`` and ``negative`` are as there.

    Every step is a loop over the tile's pixels (:func:`_tile_slopes`): each pair of
    years, with no index arrays to gather through; the middle valid years; and the sort
    of the values (for their median and ties) by a sorting network. Missing pairs are
    +inf, so the valid slopes come first once sorted (a valid slope of +inf is the same
    value). Then one of two things, as ``in_place`` asks:

    * True, a sorting network (:func:`merge_network` for the number of pairs of years; short
      series, up to :data:`.robust.NETWORK_UP_TO_PAIRS`): the tile's slopes are sorted in
      place, each compare-exchange a loop over the pixels that the compiler vectorises,
      and the order statistics go to ``picked`` (4, pixels), read off by position;
    * False (``network`` unused): each pixel's slopes are copied to its row
      of ``slopes`` (pixels, pairs of years) for numpy to sort, and ``ranks`` (4, pixels)
      receives the positions of the two middle slopes and the bounds among them, or -1
      for a pixel without pairs; :func:`picked_at` reads them off the sorted rows.

    Each slope is the same float64 division as everywhere else, so nothing depends on the tile.
    """
    n_years, pixels = values.shape
    most = max(n_years * (n_years - 1) // 2, 1)
    ys = np.empty((n_years, _TILE))
    ordered = np.empty((n_years, _TILE))
    tile = np.empty((most, _TILE))
    count, below, ties = np.empty(_TILE), np.empty(_TILE), np.empty(_TILE)
    low_x, high_x, seen = np.empty(_TILE), np.empty(_TILE), np.empty(_TILE)
    pixel_ranks = np.empty(4, dtype=np.int64)
    for start in range(0, pixels, _TILE):
        m = min(_TILE, pixels - start)
        _tile_slopes(values, start, m, x, ys, ordered, tile, count, below, ties, low_x, high_x, seen)
        if in_place:
            _sort_rows(tile, m, network)
        for q in range(m):
            p = start + q
            pairs = _pixel_outputs(q, p, z_crit, count, below, ties, low_x, high_x, ordered, out, negative,
                                   pixel_ranks)
            if in_place:
                if pairs:
                    for j in range(4):
                        picked[j, p] = tile[pixel_ranks[j], q]
                continue
            row = slopes[p]
            for k in range(most):
                row[k] = tile[k, q]
            for j in range(4):
                ranks[j, p] = pixel_ranks[j] if pairs else -1


def merge_network(size: int) -> np.ndarray:
    """Batcher's odd-even merge sort of ``size`` values as compare-exchange pairs (i < j), in order.

    Built for the next power of two; the pairs that reach past ``size`` are dropped,
    because the values there would be +inf and a compare-exchange with +inf at the
    greater index never moves anything. (Knuth, TAOCP vol. 3, 5.3.4, algorithm M.)
    """
    n = 1
    while n < size:
        n *= 2
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < size:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@njit(inline="always", **_OPTIONS)  # inlined: the caller's own buffers, which the compiler knows apart
def _sort_rows(tile, m, network):
    """Apply the compare-exchanges of ``network`` to the rows of ``tile``, each a loop over ``m`` columns
    (the smaller value to the lower row; equal values stay put, as in :func:`_sort_columns`)."""
    for c in range(network.shape[0]):
        upper, lower = tile[network[c, 0]], tile[network[c, 1]]
        for q in range(m):
            a, b = upper[q], lower[q]
            keep = a <= b
            upper[q] = a if keep else b
            lower[q] = b if keep else a


@njit(**_OPTIONS)
def picked_at(sorted_rows, ranks, picked):
    """``picked[q, p] = sorted_rows[p, ranks[q, p]]`` where the rank is not -1 (left untouched there)."""
    for p in range(sorted_rows.shape[0]):
        for q in range(4):
            if ranks[q, p] >= 0:
                picked[q, p] = sorted_rows[p, ranks[q, p]]
