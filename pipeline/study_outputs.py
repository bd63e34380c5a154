"""Where a study's outputs go: the trend, its picture and reports, named for the study.

A module of its own so that the run (:mod:`pipeline.run`), the report and the notifications
can all name the files without importing one another.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Study


def output_paths(study: Study) -> dict[str, Path]:
    """The trend GeoTIFF, the slope PNG and the JSON report (and the NetCDF or Zarr copy when asked for)."""
    stem = study.name
    paths = {"trend": study.outputs / f"{stem}_trend.tif", "png": study.outputs / f"{stem}_slope.png",
             "report": study.outputs / f"{stem}_report.json"}
    kind = study.config.trend.format
    if kind in ("netcdf", "zarr"):  # beside the GeoTIFF, which the picture and report are drawn from
        paths[kind] = study.outputs / f"{stem}_trend{'.nc' if kind == 'netcdf' else '.zarr'}"
    return paths
