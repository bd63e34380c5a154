"""How each pixel is fitted: :class:`FitOptions`, checked once (one line per mistake) and written
into the output's tags, so a map can be reproduced from its file.

A leaf of the engine: the trend loop (:mod:`.trend`), the in-memory API (:mod:`.api`) and the
statistics post-passes (:mod:`.statistics`) all import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..version import __version__
from .fdr import FDR_METHODS, check_fdr
from .kernels import Method, band_names
from .kernels.breaks import CHANGE_TYPES, MAX_BREAKS, fits, segment_size
from .kernels.extras import CHANGEPOINTS, Extras
from .kernels.modified_mk import MKTest


@dataclass(frozen=True)
class FitOptions:
    """How each pixel is fitted; validated once, then shipped to the workers."""

    method: Method = Method.ols
    min_years: int = 3
    confidence: float = 0.95
    alpha: float = 0.05
    mk_test: str = "original"
    changepoint: str | None = None
    fdr: str | None = None
    fdr_q: float = 0.05
    min_fraction: float = 0.0
    edge_years: int | None = None
    count_band: int | None = None
    min_count: int = 0
    breaks: int = 0
    min_segment: float = 0.15

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))
        check_options(self)
        if self.min_years < 2:
            raise UsageError(f"--min-years is {self.min_years}; a trend needs at least 2 years")
        if not 0.0 < self.confidence < 1.0:
            raise UsageError(f"--confidence is {self.confidence}; give a level between 0 and 1, e.g. 0.95")
        if not 0.0 < self.alpha < 1.0:
            raise UsageError(f"--alpha is {self.alpha}; give a significance level between 0 and 1, e.g. 0.05")

    @property
    def extras(self) -> Extras:
        return Extras(mk_test=self.mk_test, changepoint=self.changepoint, min_fraction=self.min_fraction,
                      edge_years=self.edge_years, counts=self.count_band is not None, min_count=self.min_count,
                      breaks=self.breaks, min_segment=self.min_segment)

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands of the fit (``p_fdr`` and ``trend_class_fdr`` follow with ``fdr``)."""
        return band_names(self.method) + self.extras.bands()

    def tags(self, years: Sequence[int], units: str) -> dict[str, str]:
        tags = {
            "eetrend_version": __version__,
            "method": self.method.value,
            "years": ",".join(str(y) for y in years),
            "min_years": str(self.min_years),
            "alpha": str(self.alpha),
            "units": f"{units or 'input units'} per year",
            "x": "calendar year (gaps between years are real gaps)",
            "trend_class": "+1 significant increase, -1 significant decrease, 0 none (p < alpha), NaN not fitted",
        }
        if self.method is not Method.ols:
            tags["confidence"] = str(self.confidence)
            tags["sen_intercept"] = "median(y) - sen_slope * median(year), over the valid years"
        tags.update(option_tags(self))
        return tags



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
