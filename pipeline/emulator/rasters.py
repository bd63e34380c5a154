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
              tile: tuple[int, int] | None, count_band: bool = False) -> list[tuple[str, bytes]]:
        """(file name, GeoTIFF bytes) of one year's export; ``count_band`` adds the clear-scene counts."""
        layer = sample_layer(year, self.truth(), noise=self.noise, nan_fraction=self.nan_fraction, seed=self.seed)
        if count_band:
            layer = np.stack([layer, clear_counts(year, layer, self.seed)])
        if tile is None or (tile[0] >= self.rows and tile[1] >= self.cols):
            return [(f"{prefix}.tif", _geotiff(layer, crs, scale, 0, 0, year))]
        rows, cols = tile
        parts = []
        for row in range(0, self.rows, rows):
            for col in range(0, self.cols, cols):
                block = layer[..., row:row + rows, col:col + cols]
                parts.append((f"{prefix}-{row:010d}-{col:010d}.tif", _geotiff(block, crs, scale, row, col, year)))
        return parts


def clear_counts(year: int, layer: np.ndarray, seed: int = 7) -> np.ndarray:
    """A plausible count of clear Landsat scenes behind each pixel of ``layer`` in ``year``.

    About 8 clear scenes a year per sensor in flight (one until 1998, two from 1999,
    three from 2021), Poisson around that, at least 1 where the composite has a value
    and 0 where it is missing (no clear scene). The count grows with the sensors, as it
    did, so a trend fitted without it can drift from sampling alone.
    """
    sensors = 1 + (year >= 1999) + (year >= 2021)
    rng = np.random.default_rng([seed, year, 1])
    counts = 1 + rng.poisson(8.0 * sensors - 1.0, size=layer.shape)
    return np.where(np.isnan(layer), 0, counts).astype(np.float32)


def _geotiff(data: np.ndarray, crs: str, scale: float, row: int, col: int, year: int) -> bytes:
    if data.ndim == 2:
        data = data[None]
    transform = Affine(scale, 0.0, ORIGIN[0] + col * scale, 0.0, -scale, ORIGIN[1] - row * scale)
    profile = {"driver": "GTiff", "dtype": "float32", "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2],
               "crs": rasterio.crs.CRS.from_string(crs), "transform": transform, "nodata": float("nan"),
               "compress": "deflate"}
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(data)
            dataset.set_band_description(1, f"composite {year}")
            if data.shape[0] > 1:
                dataset.set_band_description(2, "clear_count")
        return memory.read()
