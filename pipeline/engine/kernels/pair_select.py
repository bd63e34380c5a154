"""Order statistics of each pixel's pairwise slopes by counting, not sorting (compiled with numba).

Sen's slope needs four order statistics of a pixel's n(n-1)/2 pairwise slopes:
the one or two middle ones and the two confidence bounds. Sorting them all (the
numpy kernel's way) costs about n^2 log n per pixel; this kernel finds the four
exactly with a handful of passes that only *count* the slopes below a pivot, a
loop the compiler turns into vector instructions (about 50 ns for 780 slopes):

* the pairwise slopes are built into a small buffer that stays in cache, lag by
  lag, with the same float64 operations as the numpy kernel (so the values, and
  hence the order statistics, are bit for bit the same), and the negative
  differences are counted on the way for Mann-Kendall's S;
* every target rank k is bracketed by pivots a < b with fewer than k+1 slopes
  below a and more than k below b; the next pivot is interpolated between them
  (Illinois' variant of regula falsi, so one side cannot stall) and the bracket
  narrows with each count;
* once the bracket holds one slope, a masked sum returns it; when counts stop
  narrowing (tied slopes), the greatest slope below b is tried, which is the
  answer if no more than k slopes lie below it;
* counts are shared between the four targets, so later ones start narrow.

Whatever happens the answer is exact: a search that has not finished after a
fixed number of counts, or a pixel whose slopes could overflow, falls back to
sorting (only the bracketed slopes, or all of them).

Shorter series (up to 55 years) go through :func:`sen_tiles` instead, 64 pixels at a
time: their slopes are sorted in place by a sorting network up to 13 years, or copied
out for numpy's sort (see :func:`.robust.compiled_route`).

Nothing here allocates per pixel, and the loops release the GIL, so worker
threads run them in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Reductions over slopes that are never NaN; only the sign of a zero and the
# order of the (exact) min/max/sum may change, never a value.
_REDUCE = {"nnan", "nsz", "reassoc"}
_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy"}
_MAX_COUNTS = 24  # counts per target before the bracket is sorted instead
_SMALL = 16  # pixels with fewer slopes are simply sorted
_SAFE = 1e300  # slopes are finite when |y| range / smallest year gap stays below this


@njit(**_OPTIONS)
def _count_below(slopes, m, pivot):
    count = 0
    for i in range(m):
        count += slopes[i] < pivot
    return count


@njit(fastmath=_REDUCE, **_OPTIONS)
def _least_at_or_above(slopes, m, a):
    least = np.inf
    for i in range(m):
        v = slopes[i]
        least = min(least, v if v >= a else np.inf)
    return least


@njit(fastmath=_REDUCE, **_OPTIONS)
def _greatest_below(slopes, m, b):
    greatest = -np.inf
    for i in range(m):
        v = slopes[i]
        greatest = max(greatest, v if v < b else -np.inf)
    return greatest


@njit(**_OPTIONS)
def _sorted_between(slopes, m, a, b, rank, scratch):
    """The ``rank``-th (from 0) of the slopes in [a, b), by sorting just those."""
    kept = 0
    for i in range(m):
        v = slopes[i]
        if v >= a and v < b:
            scratch[kept] = v
            kept += 1
    scratch[:kept].sort()
    return scratch[rank]


@njit(fastmath=_REDUCE, **_OPTIONS)
def _sum_between(slopes, m, a, b):
    total = 0.0
    for i in range(m):
        v = slopes[i]
        total += v if (v >= a) & (v < b) else 0.0
    return total


@njit(**_OPTIONS)
def _select(slopes, m, k, probe_values, probe_counts, probes, scratch):
    """The k-th smallest (from 0) of ``slopes[:m]``, exactly.

    ``probe_values``/``probe_counts`` hold earlier pivots and how many slopes lie
    below each (``probes[0]`` of them); this search adds its own.
    """
    a, below_a, b, below_b = -np.inf, 0, np.inf, m  # the answer is in [a, b)
    for i in range(probes[0]):
        if probe_counts[i] <= k:
            if probe_values[i] >= a:
                a, below_a = probe_values[i], probe_counts[i]
        elif probe_values[i] <= b:
            b, below_b = probe_values[i], probe_counts[i]
    if a == -np.inf:  # no pivot below the target yet: the least slope is one
        a = _least_at_or_above(slopes, m, a)
    if b == np.inf:  # nor above it: just past the greatest
        b = np.nextafter(_greatest_below(slopes, m, b), np.inf)
    last_side = 0
    stalled = 0
    for _ in range(_MAX_COUNTS):
        if below_b - below_a == 1:
            return _sum_between(slopes, m, a, b)  # the one slope in [a, b)
        if stalled >= 3:  # counts stopped narrowing, as when slopes tie: is the greatest below b the one?
            top = _greatest_below(slopes, m, b)
            below_top = _count_below(slopes, m, top)
            if below_top <= k:
                return top
            b, below_b = top, below_top
            stalled = 0
            continue
        weight_a = k + 0.5 - below_a
        weight_b = below_b - k - 0.5
        if last_side == -1:
            weight_b *= 0.5
        elif last_side == 1:
            weight_a *= 0.5
        pivot = a + (b - a) * (weight_a / (weight_a + weight_b))
        if not (a < pivot < b):
            pivot = 0.5 * a + 0.5 * b
            if not (a < pivot < b):
                if b == np.nextafter(a, np.inf):
                    return a  # [a, b) holds no other value
                break
        below = _count_below(slopes, m, pivot)
        if probes[0] < probe_values.shape[0]:
            probe_values[probes[0]] = pivot
            probe_counts[probes[0]] = below
            probes[0] += 1
        stalled = stalled + 1 if below == below_a or below == below_b else 0
        if below <= k:
            a, below_a = pivot, below
            last_side = -1 if last_side <= 0 else 0
        else:
            b, below_b = pivot, below
            last_side = 1 if last_side >= 0 else 0
    return _sorted_between(slopes, m, a, b, k - below_a, scratch)


@njit(**_OPTIONS)
def _insertion_sort(values, n):
    for i in range(1, n):
        v = values[i]
        j = i - 1
        while j >= 0 and values[j] > v:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = v


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
def _valid_years(values, p, x, xs, ys):
    """Copy pixel ``p``'s valid years and values to ``xs``/``ys``; their number, least and greatest value."""
    n = 0
    low, high = np.inf, -np.inf
    for t in range(values.shape[0]):
        v = np.float64(values[t, p])
        if v == v and abs(v) != np.inf:
            xs[n] = x[t]
            ys[n] = v
            low, high = min(low, v), max(high, v)
            n += 1
    return n, low, high


@njit(**_OPTIONS)
def _pixel_terms(ys, n, zero, ordered, probe_values, probe_counts, probes, scratch):
    """Median of ``ys[:n]``, its tied pairs and the variance's tie term (only a pixel with
    equal values, ``zero`` of its differences, is sorted)."""
    ordered[:n] = ys[:n]
    if zero:
        _insertion_sort(ordered, n)
        middle_low, middle_high = ordered[(n - 1) // 2], ordered[n // 2]
        tied_pairs, tie_term = _tie_sums(ordered, n)
    else:
        probes[0] = 0
        middle_low = _select(ordered, n, (n - 1) // 2, probe_values, probe_counts, probes, scratch)
        middle_high = _select(ordered, n, n // 2, probe_values, probe_counts, probes, scratch)
        tied_pairs, tie_term = 0.0, 0.0
    return (middle_low + middle_high) / 2.0, tied_pairs, tie_term


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
def sen_pixels(values, x, z_crit, out, picked, negative):
    """Everything :func:`robust.sen_mk` needs per pixel, one pixel at a time.

    ``values`` is (years, pixels), NaN or +-inf for missing; ``x`` the years
    (strictly increasing); ``z_crit`` the normal quantile of the confidence
    interval. Writes ``out`` (6, pixels): valid years, median of x, median of y,
    tied pairs, the tie term of the variance, and whether the confidence bounds
    exist (1.0 or 0.0); ``picked`` (4, pixels): the two middle pairwise slopes
    and the lower and upper bound (untouched without pairs or bounds);
    ``negative``: how many pairs i < j have y_j - y_i < 0. Every quantity is
    computed with the numpy kernel's float64 operations, so the bits agree.
    """
    n_years, pixels = values.shape
    most = n_years * (n_years - 1) // 2
    slopes = np.empty(max(most, 1))
    scratch = np.empty(max(most, n_years, 1))
    xs = np.empty(n_years)
    ys = np.empty(n_years)
    ordered = np.empty(n_years)
    sample = np.empty(15)
    probe_values = np.empty(64)
    probe_counts = np.empty(64, dtype=np.int64)
    probes = np.zeros(1, dtype=np.int64)
    ranks = np.empty(4, dtype=np.int64)
    smallest_gap = np.inf
    for t in range(1, n_years):
        smallest_gap = min(smallest_gap, x[t] - x[t - 1])
    for p in range(pixels):
        n, low, high = _valid_years(values, p, x, xs, ys)
        out[0, p] = n
        negative[p] = 0
        if n == 0:
            out[1, p] = out[2, p] = np.nan
            out[3, p] = out[4, p] = out[5, p] = 0.0
            continue
        out[1, p] = (xs[(n - 1) // 2] + xs[n // 2]) / 2.0

        # The pairwise slopes, lag by lag; negative and zero differences counted on the way.
        m = 0
        neg = 0
        zero = 0
        for lag in range(1, n):
            for i in range(n - lag):
                d = ys[i + lag] - ys[i]
                neg += d < 0
                zero += d == 0
                slopes[m + i] = d / (xs[i + lag] - xs[i])
            m += n - lag
        negative[p] = neg
        out[2, p], out[3, p], out[4, p] = _pixel_terms(ys, n, zero, ordered, probe_values, probe_counts, probes,
                                                       scratch)
        usable = _sen_ranks(n, m, out[4, p], z_crit, ranks)
        out[5, p] = 1.0 if usable else 0.0
        if m == 0:
            continue

        if m < _SMALL or not (high - low) / smallest_gap < _SAFE:
            slopes[:m].sort()
            for q in range(4):
                picked[q, p] = slopes[ranks[q]]
            continue
        # First pivots: three quantiles of a spread-out sample of the slopes.
        for i in range(15):
            sample[i] = slopes[(i * m) // 15]
        _insertion_sort(sample, 15)
        probes[0] = 0
        for j in (3, 7, 11):
            probe_values[probes[0]] = sample[j]
            probe_counts[probes[0]] = _count_below(slopes, m, sample[j])
            probes[0] += 1
        for q in range(4):
            if q and ranks[q] == ranks[q - 1]:
                picked[q, p] = picked[q - 1, p]  # an odd number of pairs has one middle slope
            else:
                picked[q, p] = _select(slopes, m, ranks[q], probe_values, probe_counts, probes, scratch)


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
