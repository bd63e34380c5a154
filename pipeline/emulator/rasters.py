"""What a finished export holds in the emulator: synthetic annual GeoTIFFs with a known trend.

The pixels come from :mod:`pipeline.engine.sample` (a smooth field of slopes plus noise and
missing values, the "clouds"), on the grid the export asks for: its CRS, transform and
size follow the request's region and ``scale`` or ``crsTransform``
(:func:`.expression.export_grid`). Masked pixels are written the way Earth Engine
writes them into a GeoTIFF: as the declared ``geoTiffOptions.noData`` value (and the
file's nodata tag) when the request declares one, else as 0 with no nodata tag. A
composite pixel is masked where it is cloudy or outside the region, unless the
expression unmasks it with ``Image.unmask(value)``.

When the image is larger than the export's ``fileDimensions``, it is split into tiles
named the way Earth Engine names them: ``prefix-RRRRRRRRRR-CCCCCCCCCC.tif`` with the
tile's row and column offsets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio import Affine
from rasterio.io import MemoryFile

from ..engine.sample import SampleTruth, sample_layer, sample_truth
from .expression import ExportGrid, PixelsRequest

ORIGIN = (500_000.0, 5_000_000.0)


@dataclass
class RasterFactory:
    """Makes each year's exported files; ``truth`` is what a trend fit should recover.

    ``rows`` x ``cols`` is the grid used only when the request's region cannot be placed
    (a table asset); otherwise the grid is the request's. ``grid`` is the last one made.
    """

    rows: int = 48
    cols: int = 64
    noise: float = 0.01
    nan_fraction: float = 0.05
    seed: int = 7
    grid: ExportGrid | None = field(default=None, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.grid.height, self.grid.width) if self.grid is not None else (self.rows, self.cols)

    def truth(self) -> SampleTruth:
        """The per-pixel truth on the last export's grid."""
        return sample_truth(*self.shape, self.seed)

    def composite(self, year: int) -> np.ndarray:
        """The year's composite as a reader should see it: float32, NaN where masked (clouds, outside)."""
        layer = sample_layer(year, self.truth(), noise=self.noise, nan_fraction=self.nan_fraction, seed=self.seed)
        if self.grid is not None:
            layer[~self.grid.inside] = np.nan
        return layer

    def fallback_grid(self, crs: str, scale: float) -> ExportGrid:
        transform = tuple(Affine(scale, 0.0, ORIGIN[0], 0.0, -scale, ORIGIN[1]))[:6]
        inside = np.ones((self.rows, self.cols), bool)
        return ExportGrid(crs, transform, self.cols, self.rows, inside, False, None, True)

    def files(self, year: int, prefix: str, grid: ExportGrid, tile: tuple[int, int] | None,
              nodata: float | None, bands: list[str] | None = None) -> list[tuple[str, bytes]]:
        """(file name, GeoTIFF bytes) of one year's export on ``grid``, its bands described by ``bands`` (the
        image's band names, when known). A second band holds the clear-scene counts (0 where no scene was
        clear, the export's fill outside the region)."""
        count_band = bands is not None and len(bands) > 1
        self.grid = grid
        values = self._bands(year, grid, nodata if nodata is not None else 0.0, count_band)
        rows_total, cols_total = values.shape[-2:]
        if tile is None or (tile[0] >= rows_total and tile[1] >= cols_total):
            return [(f"{prefix}.tif", _geotiff(values, grid, 0, 0, year, nodata, bands))]
        rows, cols = tile
        parts = []
        for row in range(0, rows_total, rows):
            for col in range(0, cols_total, cols):
                block = values[..., row:row + rows, col:col + cols]
                name = f"{prefix}-{row:010d}-{col:010d}.tif"
                parts.append((name, _geotiff(block, grid, row, col, year, nodata, bands)))
        return parts

    def pixels(self, year: int, request: PixelsRequest, bands: list[str] | None = None) -> bytes:
        """The GeoTIFF ``image:computePixels`` answers for ``request``: the window's values exactly as a batch
        export of the same image writes them there, its bands described by ``bands`` as an export's are;
        masked pixels as 0 (a computePixels answer declares no no-data value), no nodata tag."""
        count_band = bands is not None and len(bands) > 1
        full = request.full
        key = (year, full.crs, full.transform, full.width, full.height, full.unmask_value, full.same_footprint,
               count_band)
        fill = full.unmask_value if full.unmask_value is not None and not full.same_footprint else 0.0
        with self._lock:  # a year's values are made once, however many of its tiles are asked for at once
            values = self._cache.get(key)
            if values is None:
                values = self._bands(year, full, 0.0, count_band, count_outside=fill)
                self._cache[key] = values
                while len(self._cache) > 8:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            self.grid = full
        window = np.full((values.shape[0], request.height, request.width), fill, np.float32)
        rows = slice(max(request.row, 0), min(request.row + request.height, full.height))
        cols = slice(max(request.col, 0), min(request.col + request.width, full.width))
        if rows.start < rows.stop and cols.start < cols.stop:
            top, left = rows.start - request.row, cols.start - request.col
            window[:, top:top + rows.stop - rows.start, left:left + cols.stop - cols.start] = values[:, rows, cols]
        return _geotiff(window, full, request.row, request.col, year, None, bands)

    def _bands(self, year: int, grid: ExportGrid, fill: float, count_band: bool,
               count_outside: float | None = None) -> np.ndarray:
        """(bands, rows, cols) float32 of a year on ``grid``: masked pixels as ``fill``; the count band outside
        the region as ``count_outside`` (default ``fill``)."""
        values, masked = self._exported(year, grid)
        if count_band:
            counts = clear_counts(year, self._composite(year, grid), self.seed)  # 0 where clouds hid every scene
            counts[~grid.inside] = fill if count_outside is None else count_outside
        values[masked] = fill
        if count_band:
            return np.stack([values, counts]).astype(np.float32)
        return values[None].astype(np.float32)

    def _composite(self, year: int, grid: ExportGrid) -> np.ndarray:
        layer = sample_layer(year, sample_truth(grid.height, grid.width, self.seed), noise=self.noise,
                             nan_fraction=self.nan_fraction, seed=self.seed)
        layer[~grid.inside] = np.nan
        return layer

    def _exported(self, year: int, grid: ExportGrid) -> tuple[np.ndarray, np.ndarray]:
        """The exported image's values and mask, after the request's unmask and clip."""
        truth = sample_truth(grid.height, grid.width, self.seed)
        layer = sample_layer(year, truth, noise=self.noise, nan_fraction=self.nan_fraction, seed=self.seed)
        masked = np.isnan(layer) | ~grid.inside  # the recipe's composite: clouds, and clipped to the region
        if grid.unmask_value is not None:
            filled = masked if not grid.same_footprint else (masked & grid.inside)
            layer[filled] = grid.unmask_value
            masked = masked & ~filled
        if grid.clip_to_region:
            masked = masked | ~grid.inside
        return layer, masked


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


def _geotiff(data: np.ndarray, grid: ExportGrid, row: int, col: int, year: int, nodata: float | None,
             bands: list[str] | None) -> bytes:
    if data.ndim == 2:
        data = data[None]
    a, b, c, d, e, f = grid.transform
    transform = Affine(a, b, c + col * a, d, e, f + row * e)
    profile = {"driver": "GTiff", "dtype": "float32", "count": data.shape[0], "height": data.shape[1],
               "width": data.shape[2],
               "crs": rasterio.crs.CRS.from_string(grid.crs), "transform": transform, "compress": "deflate"}
    if nodata is not None:
        profile["nodata"] = nodata
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(data.astype(np.float32))
            names = bands if bands is not None else [f"composite {year}", "clear_count"]
            for number, name in enumerate(names[:data.shape[0]], start=1):
                dataset.set_band_description(number, name)  # Earth Engine names each band in its exports
        return memory.read()
