"""The options reviewers ask for, as the trend engine sees them: memory, the FDR post-pass, the report.

Kept apart from :mod:`pipeline.engine.trend` so the fitting loop only calls four small hooks; the
options themselves, their checks and tags are in :mod:`pipeline.engine.options`.
What each option computes is in :mod:`pipeline.engine.kernels.extras` (and the kernels it
names) and :mod:`pipeline.engine.fdr`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .fdr import FDR_METHODS, apply_fdr
from .kernels.breaks import working_bytes

if TYPE_CHECKING:
    from .options import FitOptions



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
