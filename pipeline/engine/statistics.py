"""The options reviewers ask for, as the trend engine sees them: checks, tags, memory, the FDR post-pass.

Kept apart from :mod:`pipeline.engine.trend` so the fitting loop only calls four small hooks.
What each option computes is in :mod:`pipeline.engine.kernels.extras` (and the kernels it
names) and :mod:`pipeline.engine.fdr`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .fdr import FDR_METHODS, apply_fdr, check_fdr
from .kernels.breaks import CHANGE_TYPES, MAX_BREAKS, fits, segment_size, working_bytes
from .kernels.extras import CHANGEPOINTS
from .kernels.modified_mk import MKTest

if TYPE_CHECKING:
    from .trend import FitOptions

MK_TEST_NAMES = {
    "original": "Mann-Kendall (Mann 1945; Kendall 1975)",
    "hamed-rao": "Hamed and Rao (1998) variance correction, significant lags of the detrended ranks' ACF",
    "yue-wang": "Yue and Wang (2004) variance correction, ACF of the detrended series",
    "prewhiten": "pre-whitening with the lag-1 ACF (von Storch 1995)",
    "tfpw": "trend-free pre-whitening (Yue et al. 2002)",
}


def check_options(options: FitOptions) -> None:
    """One line per mistake, naming the option and the fix."""
    try:
        test = MKTest(options.mk_test)
    except ValueError:
        raise UsageError(f"--mk-test {options.mk_test!r} is not one of {', '.join(t.value for t in MKTest)}") from None
    object.__setattr__(options, "mk_test", test.value)
    if test is not MKTest.original and options.method.value == "ols":
        raise UsageError(f"--mk-test {test.value} changes the Mann-Kendall bands; use it with --method sen or both")
    if options.changepoint is not None and options.changepoint not in CHANGEPOINTS:
        raise UsageError(f"--changepoint {options.changepoint!r} is not one of {', '.join(CHANGEPOINTS)}")
    check_fdr(options.fdr, options.fdr_q)
    if not 0.0 <= options.min_fraction <= 1.0:
        raise UsageError(f"--min-fraction is {options.min_fraction}; give a share of the years from 0 to 1, e.g. 0.8")
    if options.edge_years is not None and options.edge_years < 0:
        raise UsageError(f"--edge-years is {options.edge_years}; give 0 or more years")
    if options.count_band is not None and options.count_band < 1:
        raise UsageError(f"--count-band is {options.count_band}; bands are numbered from 1")
    if options.min_count < 0:
        raise UsageError(f"--min-count is {options.min_count}; give 0 or more clear scenes")
    if options.min_count > 0 and options.count_band is None:
        raise UsageError("--min-count needs the clear-scene counts: give --count-band N (2 for eetrend's exports)")
    if not 0 <= options.breaks <= MAX_BREAKS:
        raise UsageError(f"--breaks is {options.breaks}; give 1 to {MAX_BREAKS} breaks at most (0: no break bands)")
    if not 0.0 < options.min_segment < 0.5:
        raise UsageError(f"--min-segment is {options.min_segment}; give the shortest segment as a share of the "
                         "years between 0 and 0.5, e.g. 0.15")


def check_years(options: FitOptions, n_years: int) -> None:
    """Refuse --breaks when no pixel of this stack could hold a segment (strucchange needs 3 values in each)."""
    if options.breaks and not fits(n_years, options.min_segment):
        size = segment_size(n_years, options.min_segment)
        least = next((h / 100 for h in range(1, 50) if fits(n_years, h / 100)), None)
        fix = f"raise --min-segment to {least}" if least else "use more years"
        raise UsageError(f"--breaks with {n_years} years and --min-segment {options.min_segment} makes segments of "
                         f"{size} years, and each needs more than 2; {fix}")


def option_tags(options: FitOptions) -> dict[str, str]:
    """What the options were, for the output's tags (so a map can be reproduced from its file)."""
    tags: dict[str, str] = {}
    if options.method.value != "ols":
        tags["mk_test"] = f"{options.mk_test}: {MK_TEST_NAMES[options.mk_test]}"
        if options.mk_test != "original":
            tags["mk_test_missing_years"] = "real years: lags in years, whitening only after a valid year"
    if options.changepoint:
        tags["changepoint"] = "pettitt (Pettitt 1979); cp_year = last year before the change; cp_p approximate"
    if options.breaks:
        tags["breaks"] = (f"{options.breaks}: at most {options.breaks} break(s), the number by BIC among the "
                          "optimal partitions of y ~ year (strucchange breakpoints), 0 unless OLS-MOSUM p < alpha")
        tags["min_segment"] = f"{options.min_segment}: each segment holds floor(n * h) of a pixel's n valid years"
        tags["mosum_p"] = "OLS-MOSUM test p-value (strucchange sctest(efp(type = 'OLS-MOSUM'))), 0.01 to 1"
        tags["bp_year"] = "bpK_year: the last year of the segment before break K; NaN beyond bp_count"
        tags["seg_slope"] = "segK_slope, segK_p: each segment's least-squares slope (per year) and two-sided p"
        if options.breaks == 1:
            tags["change_type"] = "; ".join(f"{code} {name}" for code, name in CHANGE_TYPES.items()) + (
                " (bfast01classify, de Jong et al. 2013)")
    if options.fdr:
        tags["fdr_method"] = FDR_METHODS[options.fdr]
        tags["fdr_q"] = str(options.fdr_q)
    tags["min_fraction"] = str(options.min_fraction)
    tags["edge_years"] = "none" if options.edge_years is None else str(options.edge_years)
    if options.count_band is not None:
        tags["count_band"] = str(options.count_band)
        tags["min_count"] = str(options.min_count)
        tags["obs_mean"] = "mean clear scenes per year (a missing count is 0)"
        tags["obs_slope"] = "least-squares trend of the clear-scene count, scenes per year per year"
    return tags


def extra_bytes_per_pixel(options: FitOptions, n_years: int) -> int:
    """Window memory the options add per pixel: counts as read (float32) and the values masked by them
    (a copy), and the added bands (the worker's and the writer's)."""
    extra = 2 * 8 * len(options.extras.bands())
    if options.count_band is not None:
        extra += 12 * n_years
    return extra


def extra_fixed_bytes(options: FitOptions, n_years: int, max_pixels: int) -> int:
    """Working memory the options add to one worker whatever its window: the breaks kernel's blocks
    and its bands for one chunk of at most ``max_pixels`` pixels."""
    if not options.breaks:
        return 0
    from .kernels import chunk_pixels

    return working_bytes(n_years, options.breaks, min(chunk_pixels(options.method, n_years), max_pixels))


def report(options: FitOptions) -> dict[str, object]:
    """The options for the JSON run report."""
    return {
        "mk_test": options.mk_test,
        "changepoint": options.changepoint,
        "fdr": {"method": FDR_METHODS[options.fdr], "q": options.fdr_q} if options.fdr else None,
        "min_fraction": options.min_fraction,
        "edge_years": options.edge_years,
        "count_band": options.count_band,
        "min_count": options.min_count,
        "breaks": options.breaks,
        "min_segment": options.min_segment if options.breaks else None,
    }


def finish_fdr(fitted: str | os.PathLike[str], output: str | os.PathLike[str], options: FitOptions, budget: int,
               compress: str, overwrite: bool, units: str) -> dict[str, str]:
    """Adjust the fit's p-values over the whole map and write the final output; the fit file is removed."""
    try:
        summary = apply_fdr(
            fitted, output, method=options.fdr, q=options.fdr_q,
            p_band="pvalue" if options.method.value == "ols" else "mk_p",
            slope_band="slope" if options.method.value == "ols" else "sen_slope",
            budget=budget, compress=compress, overwrite=overwrite, units=units,
        )
    finally:
        Path(fitted).unlink(missing_ok=True)
    return {"method": FDR_METHODS[summary.method], "q": str(summary.q), "tests": str(summary.tests),
            "significant": str(summary.significant), "passes": str(summary.passes)}
