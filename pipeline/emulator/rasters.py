"""What a finished export holds in the emulator: synthetic annual GeoTIFFs with a known trend.

The pixels come from :mod:`pipeline.sample` (a smooth field of slopes plus noise and
missing values), on a grid of the requested CRS and scale. When the image is larger
than the export's ``fileDimensions``, it is split into tiles named the way Earth Engine
names them: ``prefix-RRRRRRRRRR-CCCCCCCCCC.tif`` with the tile's row and column offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio import Affine
from rasterio.io import MemoryFile

from ..sample import SampleTruth, sample_layer, sample_truth

ORIGIN = (500_000.0, 5_000_000.0)


@dataclass
class RasterFactory:
    """Makes each year's exported files; ``truth`` is what a trend fit should recover."""

    rows: int = 48
    cols: int = 64
    noise: float = 0.01
    nan_fraction: float = 0.05
    seed: int = 7

    def truth(self) -> SampleTruth:
        return sample_truth(self.rows, self.cols, self.seed)

    def files(self, year: int, prefix: str, crs: str, scale: float,
              tile: tuple[int, int] | None) -> list[tuple[str, bytes]]:
        """(file name, GeoTIFF bytes) of one year's export."""
        layer = sample_layer(year, self.truth(), noise=self.noise, nan_fraction=self.nan_fraction, seed=self.seed)
        if tile is None or (tile[0] >= self.rows and tile[1] >= self.cols):
            return [(f"{prefix}.tif", _geotiff(layer, crs, scale, 0, 0, year))]
        rows, cols = tile
        parts = []
        for row in range(0, self.rows, rows):
            for col in range(0, self.cols, cols):
                block = layer[row:row + rows, col:col + cols]
                parts.append((f"{prefix}-{row:010d}-{col:010d}.tif", _geotiff(block, crs, scale, row, col, year)))
        return parts


def _geotiff(data: np.ndarray, crs: str, scale: float, row: int, col: int, year: int) -> bytes:
    transform = Affine(scale, 0.0, ORIGIN[0] + col * scale, 0.0, -scale, ORIGIN[1] - row * scale)
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "height": data.shape[0], "width": data.shape[1],
               "crs": rasterio.crs.CRS.from_string(crs), "transform": transform, "nodata": float("nan"),
               "compress": "deflate"}
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(data, 1)
            dataset.set_band_description(1, f"composite {year}")
        return memory.read()
