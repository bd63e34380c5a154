"""xarray for notebooks: fit a DataArray, turn results into Datasets, open any eetrend output.

>>> import pipeline, xarray as xr                                    # doctest: +SKIP
>>> stack = xr.open_dataarray("ndvi_stack.nc")  # dims (year, y, x)  # doctest: +SKIP
>>> trend = pipeline.fit(stack, method="both")                       # doctest: +SKIP
>>> trend["slope"].plot()                                            # doctest: +SKIP
>>> pipeline.open_trend("outputs/alps_trend.tif")["sen_slope"]      # doctest: +SKIP

A Dask-backed DataArray is fitted lazily, chunk by chunk of pixels. The Datasets have
one variable per band (``slope``, ``pvalue``, ...), the input's
coordinates (x/y and the ``spatial_ref`` CRS variable that rioxarray reads), and the
trend's tags as attributes (years as a list of ints, method, version, ...). Needs the
``xarray`` extra: ``pip install 'eetrend[xarray]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError
from .arrays import fit_array
from .cf import GRID_MAPPING, require
from .options import FitOptions
from .result import TrendResult
from .xarray_io import _dataset, open_trend, to_dataset

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["fit_dataarray", "is_xarray", "open_trend", "to_dataset", "year_dimension", "years_of"]

YEAR_DIMS = ("year", "time")


def is_xarray(values: Any) -> bool:
    """True for an xarray DataArray, without importing xarray when it is not installed."""
    return type(values).__name__ == "DataArray" and type(values).__module__.startswith("xarray")


def year_dimension(array: xr.DataArray, dim: str | None = None) -> str:
    """The DataArray's year axis: ``dim`` if given, else 'year' or 'time'."""
    if dim is not None:
        if dim not in array.dims:
            raise UsageError(f"dim={dim!r} is not a dimension of this DataArray ({', '.join(map(str, array.dims))})")
        return dim
    found = [d for d in YEAR_DIMS if d in array.dims]
    if not found:
        raise UsageError(f"this DataArray has no 'year' or 'time' dimension (it has "
                         f"{', '.join(map(str, array.dims))}); pass dim='name-of-the-year-axis' or rename it, "
                         "e.g. array.rename(band='year')")
    return found[0]


def years_of(array: xr.DataArray, dim: str) -> list[int]:
    """Integer years from the year axis' coordinate: datetimes (and cftime) give their year."""
    if dim not in array.coords:
        raise UsageError(f"the {dim!r} dimension has no coordinate values; pass years=[...] or "
                         f"assign_coords({dim}=...)")
    coordinate = array.coords[dim]
    if np.issubdtype(coordinate.dtype, np.datetime64) or coordinate.dtype == object:
        try:
            return [int(y) for y in coordinate.dt.year.values]
        except (TypeError, AttributeError):
            pass
    values = np.asarray(coordinate.values)
    if not np.issubdtype(values.dtype, np.number) or not np.all(np.mod(values, 1) == 0):
        raise UsageError(f"the {dim!r} coordinate holds {values.dtype} values, not years; pass years=[...]")
    return [int(y) for y in values]


def fit_dataarray(array: xr.DataArray, years: Sequence[int] | None = None, *, dim: str | None = None,
                  **options: Any) -> xr.Dataset:
    """Fit every pixel of ``array`` along its year axis; a Dataset with the other axes' coordinates."""
    xr = require("xarray", "fitting an xarray.DataArray")
    axis = year_dimension(array, dim)
    year_list = list(years) if years is not None else years_of(array, axis)
    if options.get("nodata") is None:
        options["nodata"] = array.attrs.get("_FillValue", array.attrs.get("nodata"))
    ordered = array.transpose(axis, ...)
    if type(ordered.data).__module__.startswith("dask"):
        if options.get("fdr"):
            raise UsageError("fdr adjusts p-values over the whole map, not chunk by chunk: load the DataArray "
                             "(.load()) or fit its files with eetrend trend --fdr")
        return _fit_lazy(xr, ordered, axis, year_list, options)
    result = fit_array(np.asarray(ordered.values), year_list, **options)
    result.units = str(array.attrs.get("units", ""))
    dims = ordered.dims[1:]
    coords = {name: coord for name, coord in array.coords.items() if axis not in coord.dims}
    mapping = GRID_MAPPING if GRID_MAPPING in coords else None
    return _dataset(xr, result, dims, coords, mapping)


def _fit_lazy(xr: Any, array: xr.DataArray, axis: str, years: list[int], options: dict[str, Any]) -> xr.Dataset:
    """A Dask-backed array is fitted lazily, chunk by chunk of pixels (all years of a pixel in one chunk).

    Nothing is computed until the Dataset's values are asked for (``.compute()``,
    ``.to_netcdf()``, a plot), so stacks larger than memory fit the same way.
    """
    if len(years) != array.sizes[axis] or len(set(years)) != len(years):
        raise UsageError(f"give one distinct year for each of the {array.sizes[axis]} steps of {axis!r}; got {years}")
    fit_options = FitOptions(method=options.get("method", "ols"), min_years=options.get("min_years", 3),
                             confidence=options.get("confidence", 0.95), alpha=options.get("alpha", 0.05),
                             breaks=options.get("breaks", 0), min_segment=options.get("min_segment", 0.15))
    names = fit_options.bands

    def kernel(block: np.ndarray) -> tuple[np.ndarray, ...]:  # apply_ufunc puts the year axis last
        bands = fit_array(np.moveaxis(block, -1, 0), years, **options).bands
        return tuple(bands[name].astype(np.float64, copy=False) for name in names)

    outputs = xr.apply_ufunc(kernel, array.chunk({axis: -1}), input_core_dims=[[axis]],
                             output_core_dims=[[] for _ in names], dask="parallelized",
                             output_dtypes=[np.float64] * len(names))
    template = TrendResult({name: out.data for name, out in zip(names, outputs, strict=True)}, tuple(sorted(years)),
                           fit_options, units=str(array.attrs.get("units", "")))
    coords = {name: coord for name, coord in array.coords.items() if axis not in coord.dims}
    mapping = GRID_MAPPING if GRID_MAPPING in coords else None
    return _dataset(xr, template, outputs[0].dims, coords, mapping)
