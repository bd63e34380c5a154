"""CF conventions for eetrend's NetCDF and Zarr outputs and Datasets: coordinates, grid mapping, attributes.

The leaf shared by the format converters (:mod:`.formats`) and the xarray side
(:mod:`.xarray_io`), so that neither imports the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MissingExtraError, UsageError

GRID_MAPPING = "spatial_ref"  # the name rioxarray and GDAL use for the CRS variable


def require(package: str, purpose: str) -> Any:
    """Import an optional package or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingExtraError(package, "xarray", purpose) from None


def pixel_centres(transform: tuple[float, ...], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of pixel centres of a north-up grid (refuses a rotated one)."""
    a, b, c, d, e, f = transform[:6]
    if b != 0 or d != 0:
        raise UsageError("this grid is rotated; NetCDF and Zarr outputs need a north-up grid (use --format gtiff)")
    return c + (np.arange(width) + 0.5) * a, f + (np.arange(height) + 0.5) * e


def coordinate_attrs(crs_wkt: str) -> tuple[dict[str, str], dict[str, str]]:
    """CF attributes of the x and y coordinates for this CRS (from pyproj's ``cs_to_cf``)."""
    if not crs_wkt:
        return {"long_name": "x pixel centre"}, {"long_name": "y pixel centre"}
    from pyproj import CRS

    by_axis = {axis.get("axis"): axis for axis in CRS.from_wkt(crs_wkt).cs_to_cf()}
    return dict(by_axis.get("X", {})), dict(by_axis.get("Y", {}))


def grid_mapping_attrs(crs_wkt: str, transform: tuple[float, ...]) -> dict[str, Any]:
    """The CF grid-mapping attributes of a CRS, plus the WKT and GeoTransform GDAL and rioxarray read."""
    from pyproj import CRS

    attrs = {k: v for k, v in CRS.from_wkt(crs_wkt).to_cf().items() if v is not None}
    a, b, c, d, e, f = transform[:6]
    attrs["spatial_ref"] = crs_wkt
    attrs["GeoTransform"] = " ".join(repr(float(v)) for v in (c, a, b, f, d, e))
    return attrs


def global_attrs(tags: dict[str, str], bands: list[str]) -> dict[str, Any]:
    """The GeoTIFF's tags as global attributes, the years as integers, the band order and the CF marker.

    The tag ``x`` (what the regression's x is) becomes ``regressor``, so it is not taken
    for the x coordinate.
    """
    attrs: dict[str, Any] = {"Conventions": "CF-1.8", "source": f"eetrend {tags.get('eetrend_version', '')}".strip(),
                             "bands": ",".join(bands)}
    for key, value in tags.items():
        if key == "years" and value:
            attrs["years"] = np.array([int(y) for y in value.split(",")], dtype=np.int32)
        elif key == "x":
            attrs["regressor"] = value
        elif key != "AREA_OR_POINT":
            attrs[key] = value
    return attrs
