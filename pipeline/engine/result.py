"""What a fit in memory gives back: named arrays, the years used, and the grid when known."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from ..files.outputs import RasterWriter
from .options import FitOptions
from .stack import Grid

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
        from .xarray_io import to_dataset

        return to_dataset(self)
