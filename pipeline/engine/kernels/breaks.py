"""Trends with breaks over every pixel at once, as R's strucchange computes them per pixel.

Pure: arrays in, arrays out, no I/O. For each pixel, over its valid years (missing years
dropped, x the real year):

- ``mosum_p``: the p-value of the OLS-MOSUM test of ``y ~ t`` with bandwidth ``h``
  (``sctest(efp(y ~ t, type = "OLS-MOSUM", h = h))``): the largest absolute sum of
  ``floor(n h)`` consecutive OLS residuals, divided by ``sigma sqrt(n)``, turned into a
  p-value by linear interpolation in the tabulated critical values (so it lies in
  [0.01, 1], as strucchange's does);
- ``bp_count``: the number of breaks, 0 to ``max_breaks``, whose optimal partition
  (``breakpoints(y ~ t, h = h, breaks = max_breaks)``: segments of at least
  ``floor(n h)`` values, least total RSS) has the lowest BIC
  (``summary(...)$RSS["BIC", ]``: ``n (log(RSS) + 1 - log(n) + log(2 pi)) + log(n) 3 (m + 1)``),
  and 0 wherever ``mosum_p >= alpha`` (or is NaN: residuals without spread, an exact line);
- ``bp1_year`` ...: the last year of the segment before each break;
- ``seg1_slope`` ..., ``seg1_p`` ...: each segment's least-squares slope and its
  two-sided p-value (``lm`` on the segment);
- with one break at most, ``change_type``: bfast01classify's typology (de Jong et al. 2013),
  1 monotonic increase, 2 monotonic decrease, 3 increase with a positive break, 4 decrease
  with a negative break, 5 increase interrupted by a negative break, 6 decrease
  interrupted by a positive break, 7 reversal from increase to decrease, 8 from
  decrease to increase.

As in strucchange: the segment size is ``floor(n h)`` values, and it must exceed the two
regressors and be at most ``floor(n / 2)``, else the pixel is NaN (strucchange refuses);
at most ``ceiling(n / floor(n h)) - 2`` breaks fit a pixel (strucchange lowers ``breaks``
to that). Ties in the search go to the earliest position, like R's ``which.min``.

How: pixels are grouped by their number of valid years (so every pixel of a group has the
same segment size) and each group's valid values are packed into a dense (n, pixels)
block. The RSS of a segment comes from cumulative sums of 1, t, y, t^2, t y, y^2 (t and y
centred first, so the differences keep their precision); the dynamic programme of
strucchange then runs over all pixels of the group at once, one segment end at a time.
Every operation is element-wise across pixels or a sequential sum along the years, so a
pixel's result does not depend on the other pixels of its window.
"""

from __future__ import annotations

import math

import numpy as np

# The OLS-MOSUM test's critical values for one process (strucchange's internal table
# ``sc.me``, rows 1-10, the block for k = 1; strucchange 1.5-3, Zeileis et al., GPL-2 | GPL-3;
# originally Chu, Hornik and Kuan 1995, Table 1): rows are the bandwidths h = 0.05, ..., 0.5,
# columns the significance levels 0.1, 0.05, 0.025, 0.01. Numbers only, transcribed.
MOSUM_CRITICAL = np.array([
    [0.7552, 0.8017, 0.8444, 0.8977],
    [0.9809, 1.0483, 1.1119, 1.1888],
    [1.1211, 1.2059, 1.2845, 1.3767],
    [1.2170, 1.3158, 1.4053, 1.5131],
    [1.2811, 1.3920, 1.4917, 1.6118],
    [1.3258, 1.4448, 1.5548, 1.6863],
    [1.3514, 1.4789, 1.5946, 1.7339],
    [1.3628, 1.4956, 1.6152, 1.7572],
    [1.3610, 1.4976, 1.6210, 1.7676],
    [1.3751, 1.5115, 1.6341, 1.7808],
])
MOSUM_BANDWIDTHS = np.arange(1, 11) * 0.05  # as R computes (1:10)*0.05, bit for bit
MOSUM_LEVELS = np.array([0.1, 0.05, 0.025, 0.01])
N_REGRESSORS = 2  # intercept and slope: y ~ t
CHANGE_TYPES = {
    1: "monotonic increase",
    2: "monotonic decrease",
    3: "monotonic increase with a positive break",
    4: "monotonic decrease with a negative break",
    5: "interruption: increase with a negative break",
    6: "interruption: decrease with a positive break",
    7: "reversal: increase to decrease",
    8: "reversal: decrease to increase",
}
_SLICE_VALUES = 1 << 16  # values (years x pixels) of one packed block: keeps each temporary about 0.5 MB
MAX_BREAKS = 10


def working_bytes(n_years: int, max_breaks: int, pixels: int) -> int:
    """Memory :func:`fit_breaks` holds for a chunk of ``pixels``: its bands, the validity mask, and the
    temporaries of one packed block, which are a fixed size whatever the chunk.

    Measured with tracemalloc (about 10 MiB plus 1 MiB per break for the block, at 21 to 42
    years) and given a quarter more.
    """
    block = 8 * _SLICE_VALUES * (18 + 1.5 * (max_breaks + 1))
    return int(1.25 * (block + pixels * (8 * len(break_bands(max_breaks)) + 2 * n_years)))


def break_bands(max_breaks: int) -> tuple[str, ...]:
    """The bands of :func:`fit_breaks` for at most ``max_breaks`` breaks, in the order they are written."""
    names = ("mosum_p", "bp_count") + tuple(f"bp{i}_year" for i in range(1, max_breaks + 1))
    names += tuple(f"seg{i}_slope" for i in range(1, max_breaks + 2))
    names += tuple(f"seg{i}_p" for i in range(1, max_breaks + 2))
    return names + (("change_type",) if max_breaks == 1 else ())


def segment_size(n: int, min_segment: float) -> int:
    """strucchange's minimal segment size for ``n`` values: ``floor(n * h)``."""
    return math.floor(n * min_segment)


def fits(n: int, min_segment: float) -> bool:
    """Whether strucchange's ``breakpoints`` accepts ``n`` values at this ``h`` (else the pixel is NaN)."""
    h = segment_size(n, min_segment)
    return N_REGRESSORS < h <= n // 2


def breaks_allowed(n: int, min_segment: float, max_breaks: int) -> int:
    """The breaks strucchange computes for ``n`` values: ``max_breaks``, lowered to ``ceiling(n / h) - 2``."""
    h = segment_size(n, min_segment)
    return min(max_breaks, -(-n // h) - 2)


def approx(v: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R's ``approx(x, y, v, rule = 2)$y``: linear interpolation, the end values beyond the ends."""
    v = np.asarray(v, dtype=np.float64)
    j = np.clip(np.searchsorted(x, v, side="right"), 1, len(x) - 1)
    i = j - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = y[i] + (y[j] - y[i]) * ((v - x[i]) / (x[j] - x[i]))
    out = np.where(v == x[j], y[j], np.where(v == x[i], y[i], inside))
    out = np.where(v < x[0], y[0], np.where(v > x[-1], y[-1], out))
    return np.where(np.isnan(v), np.nan, out)


def mosum_pvalue(statistic: np.ndarray, min_segment: float) -> np.ndarray:
    """strucchange's p-value of the OLS-MOSUM statistic (``pvalue.efp``, Brownian bridge
    increments, max functional, one process): critical values interpolated at ``h``, then
    the level interpolated at the statistic, 1 at 0 and 0.01 beyond the last."""
    critical = np.array([approx(np.float64(min_segment), MOSUM_BANDWIDTHS, MOSUM_CRITICAL[:, c])
                         for c in range(MOSUM_CRITICAL.shape[1])])
    return approx(statistic, np.concatenate(([0.0], critical)), np.concatenate(([1.0], MOSUM_LEVELS)))


def fit_breaks(
    values: np.ndarray,
    x: np.ndarray,
    max_breaks: int,
    min_segment: float = 0.15,
    alpha: float = 0.05,
    min_years: int = 3,
) -> dict[str, np.ndarray]:
    """The bands of :func:`break_bands` for (N, P) ``values`` (NaN missing) on years ``x``.

    Pixels with fewer than ``min_years`` valid years, or too few for strucchange's
    segment size (see :func:`fits`), are NaN in every band.
    """
    if max_breaks < 1:
        raise ValueError(f"max_breaks is {max_breaks}; give at least 1")
    if not 0.0 < min_segment < 0.5:
        raise ValueError(f"min_segment is {min_segment}; give a share of the series between 0 and 0.5")
    y = np.asarray(values)  # float32 or float64: each packed block is made float64, not the whole chunk
    x = np.asarray(x, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"values must be (len(x), pixels); got {y.shape} for {x.shape[0]} x values")
    names = break_bands(max_breaks)
    pixels = y.shape[1]
    out = {name: np.full(pixels, np.nan) for name in names}
    valid = np.isfinite(y)
    counts = np.count_nonzero(valid, axis=0)
    for n in np.unique(counts):
        n = int(n)
        if n < min_years or not fits(n, min_segment):
            continue
        members = np.flatnonzero(counts == n)
        step = max(64, _SLICE_VALUES // n)
        for start in range(0, members.size, step):
            part = members[start : start + step]
            rows = np.argsort(~valid[:, part], axis=0, kind="stable")[:n]  # each pixel's valid years, in order
            cols = part[None, :]
            result = _fit_packed(x[rows], y[rows, cols].astype(np.float64), max_breaks, min_segment, alpha)
            for name, band in result.items():
                out[name][part] = band
    return out


def _sum(a: np.ndarray) -> np.ndarray:
    """Sum along the years, one year at a time: numpy's own sum would switch to pairwise
    summation when a block has one pixel, and a pixel's result must not depend on its block."""
    total = a[0].copy()
    for row in a[1:]:
        total += row
    return total


def _cumulative(t: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Cumulative sums with a leading zero row: entry k sums the first k values."""
    sums = {"t": t, "y": y, "tt": t * t, "ty": t * y, "yy": y * y}
    return {key: _running(term) for key, term in sums.items()}


def _running(term: np.ndarray) -> np.ndarray:
    """Running sums along the years with a leading zero row, row by row (the additions of
    ``np.cumsum``, several times faster on this layout)."""
    c = np.zeros((term.shape[0] + 1, term.shape[1]))
    for k, row in enumerate(term):
        np.add(c[k], row, out=c[k + 1])
    return c


def _segment_rss(c: dict[str, np.ndarray], starts: slice | np.ndarray, end: int) -> np.ndarray:
    """RSS of the least-squares line on values ``j+1 .. end`` (1-based) for each ``j`` in ``starts``."""
    j = np.arange(end + 1)[starts]
    size = (end - j).astype(np.float64)[:, None]
    st = c["t"][end] - c["t"][starts]
    sy = c["y"][end] - c["y"][starts]
    sxx = (c["tt"][end] - c["tt"][starts]) - st * st / size
    sxy = (c["ty"][end] - c["ty"][starts]) - st * sy / size
    syy = (c["yy"][end] - c["yy"][starts]) - sy * sy / size
    rss = syy - sxy * sxy / sxx
    return np.maximum(rss, 0.0, out=rss)  # a sum of squares: rounding must not make it negative


def _partitions(c: dict[str, np.ndarray], n: int, h: int, breaks: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """strucchange's dynamic programme over every pixel of a packed block.

    Returns the RSS of the optimal partition with 0..``breaks`` breaks, (breaks+1, P),
    and for each m >= 1 the break positions (m, P), 1-based observation numbers.
    """
    pixels = c["y"].shape[1]
    cols = np.arange(pixels)
    cost = np.full((breaks + 1, n + 1, pixels), np.inf)  # cost[m, i]: best RSS of values 1..i with m breaks, i last
    back = np.zeros((breaks + 1, n + 1, pixels), dtype=np.int16)  # the break before i in that partition
    for i in range(h, n - h + 1):
        cost[1, i] = _segment_rss(c, slice(0, 1), i)[0]
        if breaks >= 2 and i >= 2 * h:
            rss = _segment_rss(c, slice(h, i - h + 1), i)  # RSS(j+1, i) for j = h .. i-h
            for m in range(2, breaks + 1):
                if i < m * h:
                    break
                first = (m - 1) * h
                candidates = cost[m - 1, first : i - h + 1] + rss[first - h :]
                best = np.argmin(candidates, axis=0)
                cost[m, i] = candidates[best, cols]
                back[m, i] = best + first
    last = _segment_rss(c, slice(0, n - h + 1), n)  # RSS(j+1, n) for j = 0 .. n-h
    totals = np.empty((breaks + 1, pixels))
    totals[0] = last[0]
    positions = []
    for m in range(1, breaks + 1):
        candidates = cost[m, h : n - h + 1] + last[h:]
        best = np.argmin(candidates, axis=0)
        totals[m] = candidates[best, cols]
        found = np.empty((m, pixels), dtype=np.int64)
        found[m - 1] = best + h
        for k in range(m, 1, -1):
            found[k - 2] = back[k, found[k - 1], cols]
        positions.append(found)
    return totals, positions


def _fit_packed(t: np.ndarray, y: np.ndarray, max_breaks: int, min_segment: float,
                alpha: float) -> dict[str, np.ndarray]:
    """Every band for a packed block: (n, P) years ``t`` and values ``y``, all valid."""
    from scipy.special import stdtr

    n, pixels = y.shape
    h = segment_size(n, min_segment)
    breaks = breaks_allowed(n, min_segment, max_breaks)
    cols = np.arange(pixels)
    tc = t - 0.5 * (t[0] + t[-1])  # centred on the pixel's own middle year
    yc = y - _sum(y) / n

    with np.errstate(divide="ignore", invalid="ignore"):
        totals, positions = _partitions(_cumulative(tc, yc), n, h, breaks)
        log_n = math.log(n)
        bic = n * (np.log(totals) + 1.0 - log_n + math.log(2.0 * math.pi)) + log_n * (N_REGRESSORS + 1) * (
            np.arange(breaks + 1)[:, None] + 1.0)
        count = np.argmin(bic, axis=0)

        whole = _line(tc, yc, np.ones((n, pixels), dtype=bool))
        resid = (yc - whole["y_mean"]) - whole["slope"] * (tc - whole["t_mean"])
        centred = resid - _sum(resid) / n
        sigma = np.sqrt(_sum(centred * centred) / (n - N_REGRESSORS))
        windows = _running(resid)
        statistic = np.abs(windows[h:] - windows[: n - h + 1]).max(axis=0) / (sigma * math.sqrt(n))
        mosum_p = mosum_pvalue(statistic, min_segment)
        count = np.where(mosum_p < alpha, count, 0)  # no break unless the MOSUM test rejects (NaN p: an exact line)

        bounds = np.full((max_breaks + 2, pixels), n, dtype=np.int64)  # segment s: values bounds[s]+1 .. bounds[s+1]
        bounds[0] = 0
        for m, found in enumerate(positions, start=1):
            chosen = count == m
            bounds[1 : m + 1, chosen] = found[:, chosen]
        out: dict[str, np.ndarray] = {"mosum_p": mosum_p, "bp_count": count.astype(np.float64)}
        position = np.arange(1, n + 1)[:, None]
        lines = []
        for s in range(max_breaks + 1):
            exists = s <= count
            first, end = bounds[s], np.where(exists, bounds[s + 1], n)
            inside = (position > first) & (position <= end)
            line = _line(tc, yc, inside)
            df = line["size"] - N_REGRESSORS
            se = np.sqrt(line["rss"] / df / line["sxx"])
            p = 2.0 * stdtr(df, -np.abs(line["slope"] / se))
            out[f"seg{s + 1}_slope"] = np.where(exists, line["slope"], np.nan)
            out[f"seg{s + 1}_p"] = np.where(exists, p, np.nan)
            if s < max_breaks:
                year = t[np.minimum(bounds[s + 1], n) - 1, cols]
                out[f"bp{s + 1}_year"] = np.where(s < count, year, np.nan)
            lines.append(line)
        if max_breaks == 1:
            out["change_type"] = _change_type(count, lines, tc, bounds[1], cols, n)
    return out


def _line(t: np.ndarray, y: np.ndarray, inside: np.ndarray) -> dict[str, np.ndarray]:
    """Least-squares line of ``y`` on ``t`` over the values marked ``inside``, per pixel, in two passes."""
    size = np.count_nonzero(inside, axis=0).astype(np.float64)
    t_mean = _sum(np.where(inside, t, 0.0)) / size
    y_mean = _sum(np.where(inside, y, 0.0)) / size
    dt = np.where(inside, t - t_mean, 0.0)
    dy = np.where(inside, y - y_mean, 0.0)
    sxx = _sum(dt * dt)
    slope = _sum(dt * dy) / sxx
    resid = dy - slope * dt
    return {"size": size, "t_mean": t_mean, "y_mean": y_mean, "sxx": sxx, "slope": slope,
            "rss": _sum(resid * resid)}


def _change_type(count: np.ndarray, lines: list[dict[str, np.ndarray]], t: np.ndarray, bp: np.ndarray,
                 cols: np.ndarray, n: int) -> np.ndarray:
    """bfast01classify's standard typology from the segments (codes in :data:`CHANGE_TYPES`).

    The break's magnitude is the second segment's fitted value at its first year minus the
    first segment's at its last year (bfast01's trend component at ToB + 1 and ToB).
    """
    s1, s2 = lines[0]["slope"], lines[1]["slope"]
    at = np.clip(bp, 1, n - 1)
    before, after = t[at - 1, cols], t[at, cols]
    jump = ((lines[1]["y_mean"] + s2 * (after - lines[1]["t_mean"]))
            - (lines[0]["y_mean"] + s1 * (before - lines[0]["t_mean"])))
    kind = np.full(count.shape, np.nan)
    kind[(s1 > 0) & (s2 > 0) & (jump > 0)] = 3
    kind[(s1 < 0) & (s2 < 0) & (jump < 0)] = 4
    kind[(s1 > 0) & (s2 > 0) & (jump < 0)] = 5
    kind[(s1 < 0) & (s2 < 0) & (jump > 0)] = 6
    kind[(s1 > 0) & (s2 < 0)] = 7
    kind[(s1 < 0) & (s2 > 0)] = 8
    none = count == 0
    kind[none] = np.where(s1[none] > 0, 1.0, np.where(s1[none] < 0, 2.0, np.nan))
    return kind
