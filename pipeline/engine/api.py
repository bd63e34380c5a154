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

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError, YearError
from ..files.outputs import RasterWriter
from .kernels import fit_pixels
from .stack import Grid, close_cached, mask_nodata, open_stack, working_dtype
from .statistics import check_years
from .trend import FitOptions

if TYPE_CHECKING:
    import xarray as xr


@dataclass
class TrendResult(Mapping[str, np.ndarray]):
    """Named result arrays (``result["slope"]``), the years used, and the grid when known."""

    bands: dict[str, np.ndarray]
    years: tuple[int, ...]
    options: FitOptions
    grid: Grid | None = None
    units: str = ""

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.bands[name]
        except KeyError:
            raise KeyError(f"no band {name!r}; this result has {', '.join(self.bands)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.bands)

    def __len__(self) -> int:
        return len(self.bands)

    def write(self, path: str | os.PathLike[str], *, overwrite: bool = False, compress: str = "zstd") -> None:
        """Write the bands as a GeoTIFF (needs the grid: results of :func:`fit_stack`, or pass one)."""
        if self.grid is None:
            raise UsageError("this result has no grid; use fit_stack(), or set result.grid before writing")
        from rasterio.windows import Window

        with RasterWriter(
            path,
            self.grid,
            tuple(self.bands),
            tags=self.options.tags(self.years, self.units),
            units=self.units,
            compress=compress,
            overwrite=overwrite,
        ) as writer:
            window = Window(0, 0, self.grid.width, self.grid.height)
            writer.write(window, self.bands)

    def to_xarray(self) -> xr.Dataset:
        """The bands as an ``xarray.Dataset`` (x/y coordinates and CRS when the grid is known)."""
        from .xarray_api import to_dataset

        return to_dataset(self)


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
    result = fit(
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
