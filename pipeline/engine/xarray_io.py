"""eetrend's results and files as xarray Datasets: a fit result (:meth:`TrendResult.to_xarray`) and any
output on disk (:func:`open_trend`: GeoTIFF, COG, NetCDF, Zarr), with coordinates, CRS and tags.

Needs the ``xarray`` extra. Fitting a DataArray is :mod:`.xarray_api`'s; this module fits nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import InputError
from ..files.outputs import BAND_UNITS
from .cf import GRID_MAPPING, global_attrs, grid_mapping_attrs, pixel_centres, require

if TYPE_CHECKING:
    import xarray as xr


class FitResult(Protocol):
    """What a Dataset is made from: a :class:`pipeline.engine.result.TrendResult` (named, not imported,
    since ``TrendResult.to_xarray`` calls this module)."""

    bands: dict[str, Any]
    years: tuple[int, ...]
    options: Any
    grid: Any
    units: str


def to_dataset(result: FitResult) -> xr.Dataset:
    """A fit result as a Dataset: x/y pixel-centre coordinates and the CRS when the result has a grid."""
    xr = require("xarray", "TrendResult.to_xarray()")
    shape = next(iter(result.bands.values())).shape
    coords: dict[str, Any] = {}
    mapping = None
    if result.grid is not None and len(shape) == 2:
        grid = result.grid
        x, y = pixel_centres(grid.transform, grid.width, grid.height)
        coords = {"x": ("x", x), "y": ("y", y)}
        if grid.crs:
            require("pyproj", "TrendResult.to_xarray()")
            coords[GRID_MAPPING] = ((), np.int32(0), grid_mapping_attrs(grid.crs, grid.transform))
            mapping = GRID_MAPPING
        dims: tuple[str, ...] = ("y", "x")
    elif len(shape) == 2:
        dims = ("y", "x")
    else:
        dims = tuple(f"dim_{i}" for i in range(len(shape)))
    return _dataset(xr, result, dims, coords, mapping)


def _dataset(xr: Any, result: FitResult, dims: Sequence[Any], coords: Mapping[str, Any],
             mapping: str | None) -> xr.Dataset:
    units = result.units or "input units"
    variables = {}
    for name, values in result.bands.items():
        attrs = {"long_name": name}
        unit = BAND_UNITS.get(name, "").format(units=units)
        if unit:
            attrs["units"] = unit
        if mapping:
            attrs["grid_mapping"] = mapping
        variables[name] = (tuple(dims), values, attrs)
    attrs = _clean_attrs(global_attrs(result.options.tags(result.years, result.units), list(result.bands)))
    return xr.Dataset(variables, coords=dict(coords), attrs=attrs)


def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as a notebook wants them: the years as a list of ints."""
    cleaned = dict(attrs)
    if "years" in cleaned:
        years = cleaned["years"]
        if isinstance(years, str):
            years = years.split(",")
        cleaned["years"] = [int(y) for y in np.atleast_1d(years)]
    return cleaned


def open_trend(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open any eetrend output (GeoTIFF, COG, NetCDF, Zarr) as a Dataset: a variable per band, in band order.

    Values are read lazily; coordinates, the CRS (``ds.rio.crs`` with rioxarray) and the
    tags as attributes come from the file.
    """
    xr = require("xarray", "open_trend()")
    target = Path(path)
    if not target.exists():
        raise InputError(f"{target} does not exist; give an eetrend output (.tif, .nc or .zarr)")
    if target.is_dir():
        if not ((target / ".zgroup").exists() or (target / "zarr.json").exists()):
            raise InputError(f"{target} is a folder but not a Zarr store; give an eetrend output")
        dataset = xr.open_dataset(target, engine="zarr", decode_coords="all")
    elif target.suffix.lower() in (".nc", ".nc4", ".netcdf"):
        dataset = xr.open_dataset(target, decode_coords="all")
    else:
        return _open_geotiff(target)
    order = [b for b in str(dataset.attrs.get("bands", "")).split(",") if b in dataset.data_vars]
    if order:
        dataset = dataset[order + [v for v in dataset.data_vars if v not in order]]
    for name in dataset.data_vars:
        dataset[name].attrs.pop("_CRS", None)  # GDAL's copy of the CRS in Zarr; spatial_ref holds it
    dataset.attrs = _clean_attrs(dataset.attrs)
    return dataset


def _open_geotiff(path: Path) -> xr.Dataset:
    import rasterio

    rioxarray = require("rioxarray", "open_trend() of a GeoTIFF")
    try:
        with rasterio.open(path) as src:
            names = [d or f"band_{i}" for i, d in enumerate(src.descriptions, start=1)]
            tags = src.tags()
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"cannot open {path}: {exc}; give an eetrend output (.tif, .nc or .zarr)") from None
    dataset = rioxarray.open_rasterio(path, band_as_variable=True)
    dataset = dataset.rename({f"band_{i}": name for i, name in enumerate(names, start=1) if f"band_{i}" != name})
    for name in names:
        for key in ("scale_factor", "add_offset"):
            dataset[name].attrs.pop(key, None)
    dataset.attrs = _clean_attrs(global_attrs(tags, names))
    return dataset
