"""The Python API for notebooks: fit arrays or rasters in memory and get named arrays back.

>>> import numpy as np, pipeline
>>> years = [2000, 2001, 2002, 2004]
>>> values = np.array([1.0, 2.0, 3.0, 5.0])[:, None, None] * np.ones((1, 2, 2))
>>> result = pipeline.fit(values, years)
>>> float(result["slope"][0, 0])
1.0

For stacks larger than memory, use :func:`pipeline.trend_rasters`, which works
window by window and writes a GeoTIFF.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .arrays import fit_array
from .result import TrendResult
from .stack import close_cached, open_stack

if TYPE_CHECKING:
    import xarray as xr


def fit(
    values: np.ndarray | xr.DataArray,
    years: Sequence[int] | None = None,
    *,
    method: str = "ols",
    min_years: int = 3,
    nodata: float | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
    dim: str | None = None,
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
) -> TrendResult | xr.Dataset:
    """Fit the trend of every pixel of an in-memory stack.

    ``values`` has years on its first axis, any shape after it: (years, rows,
    cols) or (years, pixels). NaN and ``nodata`` are missing. ``years`` may come
    in any order; they are matched to the first axis and sorted. ``mk_test``,
    ``changepoint``, ``fdr``/``fdr_q``, ``min_fraction``, ``edge_years`` and
    ``counts`` (clear scenes, shaped like ``values``)/``min_count`` and
    ``breaks``/``min_segment`` (trends with breaks, as strucchange finds them) are those of
    ``eetrend trend``; with ``fdr`` the adjustment runs over all pixels given.

    ``values`` may also be an ``xarray.DataArray`` with a ``year`` or ``time``
    dimension (or ``dim``), anywhere among its axes; the years then come from that
    coordinate unless given, and the result is an ``xarray.Dataset`` with the
    array's other coordinates (see :mod:`pipeline.engine.xarray_api`).
    """
    from .xarray_api import fit_dataarray, is_xarray

    if is_xarray(values):
        return fit_dataarray(values, years, dim=dim, method=method, min_years=min_years, nodata=nodata,
                             confidence=confidence, alpha=alpha, mk_test=mk_test, changepoint=changepoint, fdr=fdr,
                             fdr_q=fdr_q, min_fraction=min_fraction, edge_years=edge_years, min_count=min_count,
                             breaks=breaks, min_segment=min_segment)
    return fit_array(values, years, method=method, min_years=min_years, nodata=nodata,
                     confidence=confidence, alpha=alpha, mk_test=mk_test, changepoint=changepoint, fdr=fdr,
                     fdr_q=fdr_q, min_fraction=min_fraction, edge_years=edge_years, counts=counts,
                     min_count=min_count, breaks=breaks, min_segment=min_segment)


def fit_stack(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    years: Sequence[int] | None = None,
    year_pattern: str | None = None,
    band: int = 1,
    method: str = "ols",
    min_years: int = 3,
    confidence: float = 0.95,
    alpha: float = 0.05,
    **statistics,
) -> TrendResult:
    """Read a whole annual stack (folder, glob, files or multi-band file) and fit it in memory.

    ``statistics`` are :func:`fit`'s ``mk_test``, ``changepoint``, ``fdr``, ``fdr_q``,
    ``min_fraction``, ``edge_years``, ``breaks`` and ``min_segment``."""
    stack = open_stack(inputs, years=years, year_pattern=year_pattern, band=band, min_years=min_years)
    try:
        values = stack.read()
    finally:
        close_cached()
    grid = stack.grid
    result = fit_array(
        values.reshape(len(stack.layers), grid.height, grid.width),
        stack.year_list,
        method=method,
        min_years=min_years,
        confidence=confidence,
        alpha=alpha,
        **statistics,
    )
    result.grid = grid
    result.units = stack.units
    return result


__all__ = ["TrendResult", "fit", "fit_stack"]
