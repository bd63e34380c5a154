"""Fit every pixel of an in-memory numpy stack: the core that :func:`pipeline.fit` and the xarray
route (:mod:`.xarray_api`) share, kept apart from both so neither imports the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError, YearError
from .kernels import fit_pixels
from .options import FitOptions, check_years
from .result import TrendResult
from .stack import mask_nodata, working_dtype


def fit_array(
    values: np.ndarray,
    years: Sequence[int] | None = None,
    *,
    method: str = "ols",
    min_years: int = 3,
    nodata: float | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
    mk_test: str = "original",
    changepoint: str | None = None,
    fdr: str | None = None,
    fdr_q: float = 0.05,
    min_fraction: float = 0.0,
    edge_years: int | None = None,
    counts: np.ndarray | None = None,
    min_count: int = 0,
    breaks: int = 0,
    min_segment: float = 0.15,
) -> TrendResult:
    """Fit the trend of every pixel of ``values`` (years on the first axis, any shape after it); the
    options are :func:`pipeline.fit`'s, which documents them."""
    if years is None:
        raise UsageError("give the years of the first axis, e.g. fit(values, [2000, 2001, ...])")
    options = FitOptions(method=method, min_years=min_years, confidence=confidence, alpha=alpha, mk_test=mk_test,
                         changepoint=changepoint, fdr=fdr, fdr_q=fdr_q, min_fraction=min_fraction,
                         edge_years=edge_years, min_count=0 if counts is not None else min_count,
                         breaks=breaks, min_segment=min_segment)
    extras = dataclasses.replace(options.extras, counts=counts is not None, min_count=min_count)
    data = np.asarray(values)
    x = np.asarray(years, dtype=np.float64)
    if data.ndim < 1 or data.shape[0] != x.shape[0]:
        raise UsageError(f"values have {data.shape[0] if data.ndim else 0} layers but {x.shape[0]} years were given")
    if len(np.unique(x)) != len(x):
        raise YearError("a year appears twice in years; give each layer its own year")
    check_years(options, len(x))
    order = np.argsort(x, kind="stable")
    flat = data.reshape(data.shape[0], -1)[order]  # a copy: the caller's array is left alone
    values = flat.astype(working_dtype(flat.dtype), copy=False)
    mask_nodata(values, flat, nodata)
    if counts is not None:
        counts = np.asarray(counts, dtype=np.float64).reshape(data.shape[0], -1)[order]
    out = fit_pixels(values, x[order], options.method, options.min_years, options.confidence, options.alpha,
                     extras=extras, counts=counts)
    if fdr:
        from .fdr import adjust, classes

        out["p_fdr"] = adjust(out["pvalue" if options.method.value == "ols" else "mk_p"], fdr)
        out["trend_class_fdr"] = classes(out["p_fdr"], out["slope" if options.method.value == "ols" else "sen_slope"],
                                         fdr_q)
    shaped = {name: band.reshape(data.shape[1:]) for name, band in out.items()}
    return TrendResult(shaped, tuple(int(y) for y in x[order]), options)
