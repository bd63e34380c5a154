"""What reviewers ask of a trend map, on top of the fit: the choice of Mann-Kendall test,
a change point, trends with breaks, coverage rules and clear-observation counts.

:class:`Extras` says which of them a run wants; :func:`apply_extras` adds them to one
chunk's results in :func:`pipeline.engine.kernels.fit_pixels`. Pure: arrays in, arrays out.

Coverage rules: a pixel needs valid values in at least ``min_fraction`` of the years,
and, with ``edge_years`` K, its first and last valid years within K years of the first
and last year, so that no trend is fitted across a long gap at one end. A pixel that
fails is NaN in every band but ``n``, as with ``min_years``.

Counts: where the annual files carry the number of clear scenes behind each composite,
a year with fewer than ``min_count`` of them is missing for that pixel, and the
``obs_mean`` (mean clear scenes per year) and ``obs_slope`` (their least-squares trend,
scenes per year per year) bands show where the sampling drifted. A missing count
(nodata) is read as 0 scenes; a pixel whose counts are all missing gets NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .breaks import break_bands, fit_breaks
from .modified_mk import MKTest, modified_mk
from .pettitt import PETTITT_BANDS, pettitt

COUNT_BANDS = ("obs_mean", "obs_slope")
CHANGEPOINTS = ("pettitt",)


@dataclass(frozen=True)
class Extras:
    """Options beyond the trend itself; the defaults change nothing."""

    mk_test: MKTest = MKTest.original
    changepoint: str | None = None
    min_fraction: float = 0.0
    edge_years: int | None = None
    counts: bool = False
    min_count: int = 0
    breaks: int = 0  # at most this many breaks (0: no break bands); see kernels.breaks
    min_segment: float = 0.15  # strucchange's h: the shortest segment as a share of the valid years

    def __post_init__(self) -> None:
        object.__setattr__(self, "mk_test", MKTest(self.mk_test))
        if self.changepoint is not None and self.changepoint not in CHANGEPOINTS:
            raise ValueError(f"changepoint {self.changepoint!r} is not one of {', '.join(CHANGEPOINTS)}")

    def bands(self) -> tuple[str, ...]:
        """The bands these options add, after the method's own."""
        return ((PETTITT_BANDS if self.changepoint else ()) + (break_bands(self.breaks) if self.breaks else ())
                + (COUNT_BANDS if self.counts else ()))

    @property
    def coverage(self) -> bool:
        return self.min_fraction > 0.0 or self.edge_years is not None


def mask_low_counts(values: np.ndarray, counts: np.ndarray, min_count: int) -> np.ndarray:
    """``values`` with NaN wherever fewer than ``min_count`` clear scenes stand behind it (a copy)."""
    with np.errstate(invalid="ignore"):
        few = ~(counts >= min_count)  # a missing count is fewer than any positive threshold
    out = np.array(values, copy=True)
    out[few] = np.nan
    return out


def count_bands(counts: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Mean clear scenes per year and their least-squares slope per year, per pixel."""
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    seen = np.isfinite(c).any(axis=0)
    c = np.where(np.isfinite(c), c, 0.0)
    mean = c.mean(axis=0)
    dx = x - x.mean()
    slope = (dx @ (c - mean)) / (dx @ dx)
    mean[~seen] = np.nan
    slope[~seen] = np.nan
    return {"obs_mean": mean, "obs_slope": slope}


def coverage_ok(values: np.ndarray, x: np.ndarray, min_fraction: float, edge_years: int | None) -> np.ndarray:
    """True for the pixels of (N, P) ``values`` that meet the coverage rules."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(values)
    ok = np.count_nonzero(valid, axis=0) >= min_fraction * len(x) - 1e-9
    if edge_years is not None:
        first = np.where(valid, x[:, None], np.inf).min(axis=0)
        last = np.where(valid, x[:, None], -np.inf).max(axis=0)
        ok &= (first - x[0] <= edge_years) & (x[-1] - last <= edge_years)
    return ok


def _in_slices(func, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Run ``func`` over slices of the pixels small enough that its (pixels, N, N) comparisons
    stay a few MB, and join the results."""
    n_years, pixels = shape
    step = max(64, (2 << 20) // max(1, n_years * n_years))
    parts = [func(slice(start, start + step)) for start in range(0, pixels, step)]
    if not parts:
        parts = [func(slice(0, 0))]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def apply_extras(
    result: dict[str, np.ndarray],
    values: np.ndarray,
    x: np.ndarray,
    extras: Extras,
    *,
    counts: np.ndarray | None = None,
    alpha: float = 0.05,
    min_years: int = 3,
) -> None:
    """Add and replace bands of one chunk's ``result`` in place (before ``trend_class``)."""
    if extras.mk_test is not MKTest.original and "mk_p" in result:
        result.update(_in_slices(
            lambda part: modified_mk(values[:, part], x, extras.mk_test, sen_slope=result["sen_slope"][part],
                                     mk_s=result["mk_s"][part], mk_var_s=result["mk_var_s"][part], alpha=alpha),
            values.shape))
    added: dict[str, np.ndarray] = {}
    if extras.changepoint:
        added.update(_in_slices(lambda part: pettitt(values[:, part], x), values.shape))
    if extras.breaks:
        added.update(fit_breaks(values, x, extras.breaks, extras.min_segment, alpha=alpha, min_years=min_years))
    if extras.counts:
        if counts is None:
            raise ValueError("count bands were asked for but no counts were given")
        added.update(count_bands(counts, x))
    too_few = result["n"] < min_years
    for band in added.values():
        band[too_few] = np.nan
    result.update(added)
    if extras.coverage:
        failed = ~coverage_ok(values, x, extras.min_fraction, extras.edge_years)
        for name, band in result.items():
            if name != "n":
                band[failed] = np.nan
