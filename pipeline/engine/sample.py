"""Synthetic annual rasters with a known trend in every pixel.

Used by ``eetrend sample``, the tests, the benchmarks and the emulator: each
pixel follows ``base + slope * (year - first_year) + noise``, with a smooth
spatial pattern of slopes (greening and browning patches), and a share of values
missing at random (clouds). The true slope is written beside the annual files so
a fit can be checked against the truth it came from.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from ..errors import DiskFullError, UsageError
from ..files.diskio import ensure_folder, free_bytes, human_bytes, verify_geotiff, write_failure
from ..files.outputs import replaced_when_done
from .stack import Grid

SAMPLE_CRS = "EPSG:32633"  # UTM zone 33N
SAMPLE_PIXEL = 30.0
SAMPLE_ORIGIN = (500_000.0, 5_000_000.0)


@dataclass(frozen=True)
class SampleTruth:
    """The per-pixel truth of a synthetic stack, (rows, cols) each."""

    slope: np.ndarray
    base: np.ndarray


@dataclass(frozen=True)
class Sample:
    """What :func:`write_sample` wrote."""

    folder: Path
    files: tuple[Path, ...]
    years: tuple[int, ...]
    truth_file: Path


def sample_grid(rows: int, cols: int) -> Grid:
    transform = from_origin(SAMPLE_ORIGIN[0], SAMPLE_ORIGIN[1], SAMPLE_PIXEL, SAMPLE_PIXEL)
    return Grid(rasterio.crs.CRS.from_string(SAMPLE_CRS).to_wkt(), tuple(transform)[:6], cols, rows)


def sample_truth(rows: int, cols: int, seed: int = 0) -> SampleTruth:
    """A smooth field of slopes in NDVI units per year (about -0.01 to 0.01) and base values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, size=2)
    slope = 0.008 * np.sin(2 * np.pi * xx * 1.5 + phase[0]) * np.cos(2 * np.pi * yy + phase[1])
    base = 0.45 + 0.2 * np.cos(2 * np.pi * (xx + yy) / 2 + phase[1])
    return SampleTruth(slope.astype(np.float64), base.astype(np.float64))


def sample_layers(
    years: Sequence[int], truth: SampleTruth, *, noise: float = 0.03, nan_fraction: float = 0.05, seed: int = 0
) -> Iterator[np.ndarray]:
    """Yield each year's (rows, cols) float32 layer of the synthetic stack, NaN where missing."""
    rng = np.random.default_rng(seed + 1)
    shape = truth.slope.shape
    for year in years:
        layer = truth.base + truth.slope * (year - years[0]) + rng.normal(0.0, noise, shape)
        layer[rng.random(shape) < nan_fraction] = np.nan
        yield layer.astype(np.float32)


def sample_layer(
    year: int, truth: SampleTruth, *, origin_year: int = 2000, noise: float = 0.03, nan_fraction: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """One year's (rows, cols) float32 layer, generated on its own (the emulator makes years one by one)."""
    rng = np.random.default_rng([seed, year])
    shape = truth.slope.shape
    layer = truth.base + truth.slope * (year - origin_year) + rng.normal(0.0, noise, shape)
    layer[rng.random(shape) < nan_fraction] = np.nan
    return layer.astype(np.float32)


def write_sample(
    folder: str | os.PathLike[str],
    *,
    years: Sequence[int] = tuple(range(1995, 2016)),
    rows: int = 512,
    cols: int = 512,
    nan_fraction: float = 0.05,
    noise: float = 0.03,
    seed: int = 0,
    prefix: str = "ndvi_",
    compress: str = "deflate",
) -> Sample:
    """Write ``{prefix}{year}.tif`` for every year into ``folder`` and the truth into ``folder/truth``."""
    years = sorted(set(int(y) for y in years))
    _check_request(rows, cols, years, noise, nan_fraction, seed)
    out = Path(folder)
    targets = [out / f"{prefix}{year}.tif" for year in years]
    truth_file = out / "truth" / "true_slope.tif"
    _check_targets([*targets, truth_file])
    ensure_folder(out / "truth", "the sample folder")
    needed = rows * cols * 4 * (len(years) + 1)  # float32 noise barely compresses
    free = free_bytes(out)
    if free is not None and free < needed:
        raise DiskFullError(f"no space left for a sample of {len(years)} years of {cols}x{rows} pixels: it needs "
                            f"about {human_bytes(needed)}, {human_bytes(free)} free in {out}; choose a smaller "
                            "--size, fewer --years, or another folder")
    truth = sample_truth(rows, cols, seed)
    grid = sample_grid(rows, cols)
    profile = _profile(grid, compress)
    files: list[Path] = []
    layers = sample_layers(years, truth, noise=noise, nan_fraction=nan_fraction, seed=seed)
    for path, year, layer in zip(targets, years, layers, strict=False):
        _write_atomic(path, profile, layer, description=f"NDVI {year}", units="NDVI")
        files.append(path)
    _write_atomic(truth_file, profile, truth.slope.astype(np.float32), description="true slope", units="NDVI per year")
    return Sample(out, tuple(files), tuple(years), truth_file)


MAX_SAMPLE_PIXELS = 2**27  # 134 million pixels per layer (about 11600 x 11600): 8 GB of memory to generate
BYTES_PER_SAMPLE_PIXEL = 64  # the truth, the coordinate grids and one layer being made, in float64


def _check_request(rows: int, cols: int, years: Sequence[int], noise: float, nan_fraction: float, seed: int) -> None:
    """Refuse a sample that cannot be made: empty or absurd sizes, years no file name can carry, bad noise."""
    if rows < 1 or cols < 1:
        raise UsageError(f"--size {cols}x{rows} is empty; give a size such as 512x512")
    memory = rows * cols * BYTES_PER_SAMPLE_PIXEL
    available = _available_memory()
    if rows * cols > MAX_SAMPLE_PIXELS or (available is not None and memory > available):
        raise UsageError(f"--size {cols}x{rows} is too large: generating it needs about {human_bytes(memory)} of "
                         f"memory{f' ({human_bytes(available)} available)' if available else ''}; give at most "
                         "about 10000x10000, e.g. --size 2048x2048")
    bad = [y for y in years if not 1900 <= y <= 2099]
    if bad:
        raise UsageError(f"--years {bad[0]} is outside 1900-2099, the years eetrend finds in file names; "
                         "give years such as 1995-2015")
    if not (math.isfinite(noise) and noise >= 0):
        raise UsageError(f"--noise is {noise}; give a standard deviation of 0 or more, e.g. 0.03")
    if not (math.isfinite(nan_fraction) and 0.0 <= nan_fraction < 1.0):
        raise UsageError(f"--nan-fraction is {nan_fraction}; give a share from 0 up to (not including) 1")
    if seed < 0:
        raise UsageError(f"--seed is {seed}; give a seed of 0 or more")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_targets(paths: Sequence[Path]) -> None:
    """Refuse to replace any existing file that eetrend sample did not write (it may be someone's data)."""
    for path in paths:
        try:
            exists = path.exists() or path.is_symlink()
        except OSError as exc:
            raise write_failure(path, exc) from None
        if exists and not _is_sample_file(path):
            raise UsageError(f"{path} exists and was not written by eetrend sample; choose an empty folder "
                             "(sample never replaces other files)")


def _is_sample_file(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with rasterio.Env(), rasterio.open(path) as ds:
            return ds.tags().get("eetrend_sample") == "1"
    except (rasterio.errors.RasterioError, OSError):
        return False


def _profile(grid: Grid, compress: str) -> dict:
    tiled = grid.width >= 256 and grid.height >= 256
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs,
        "transform": rasterio.Affine(*grid.transform),
        "nodata": float("nan"),
        "tiled": tiled,
    }
    if tiled:
        profile.update(blockxsize=256, blockysize=256)
    if compress != "none":
        profile.update(compress=compress)
    return profile


def _write_atomic(path: Path, profile: dict, data: np.ndarray, *, description: str, units: str) -> None:
    try:
        with replaced_when_done(path, verify=verify_geotiff, needed=data.nbytes) as tmp, rasterio.Env():
            with rasterio.open(tmp, "w", **profile) as ds:
                ds.write(data, 1)
                ds.set_band_description(1, description)
                ds.set_band_unit(1, units)
                ds.update_tags(eetrend_sample="1")
    except rasterio.errors.RasterioError as exc:  # GDAL's own wording of a failed write
        raise write_failure(path, OSError(errno.EIO, str(exc)), data.nbytes) from None
