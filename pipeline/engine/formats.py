"""Output formats beyond the plain GeoTIFF: Cloud-Optimized GeoTIFF, NetCDF and Zarr.

The trend engine and band math write one tiled GeoTIFF window by window. For another
format that GeoTIFF is written under a hidden temporary name and then converted strip by
strip, so memory stays bounded by one strip of rows however large the scene, and the
fit loop knows nothing of formats. Each output appears under its final name only once
it is complete (a Zarr store is a folder: it is written beside and renamed).

- ``cog``: GDAL's COG driver (through rasterio), with overviews, so QGIS and web viewers
  browse it quickly. Overviews use nearest-neighbour resampling: an averaged p-value or
  trend class would be a value no pixel has.
- ``netcdf`` / ``zarr``: CF conventions, one variable per band with its units, x/y
  pixel-centre coordinates, the CRS as a ``spatial_ref`` grid-mapping variable (CF
  attributes from pyproj, plus the WKT and GDAL GeoTransform that GDAL and rioxarray
  read), and the GeoTIFF's tags (years, method, version, ...) as global attributes.
  Values are the GeoTIFF's float32 values, bit for bit (lossless compression only).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import OutputExistsError, UsageError
from ..files.outputs import check_output, replaced_when_done, temporary_path
from .cf import GRID_MAPPING, coordinate_attrs, global_attrs, grid_mapping_attrs, pixel_centres, require

FORMATS = ("gtiff", "cog", "netcdf", "zarr")
SUFFIXES = {"gtiff": ".tif", "cog": ".tif", "netcdf": ".nc", "zarr": ".zarr"}
NAME_ENDINGS = {"cog": (".tif", ".tiff"), "netcdf": (".nc", ".nc4"), "zarr": (".zarr",)}
DESCRIPTIONS = {"cog": "a Cloud-Optimized GeoTIFF", "netcdf": "NetCDF", "zarr": "a Zarr store"}
STRIP_BYTES = 64 * 2**20  # rows read per conversion step: all bands of one strip fit in this
CHUNK = 512  # chunk edge of NetCDF/Zarr variables along x (and at most along y)

T = TypeVar("T")


def check_format(format: str) -> str:
    """The format name, lower-cased, or a :class:`UsageError` listing the choices."""
    name = str(getattr(format, "value", format)).lower()
    if name not in FORMATS:
        raise UsageError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    return name


def check_target(path: str | os.PathLike[str], format: str, overwrite: bool) -> Path:
    """Like :func:`check_output`, but a Zarr store is a folder and may be replaced as one.

    The name must end as the format does (.tif for cog, .nc for netcdf, .zarr for zarr): a
    NetCDF file called trend.tif would be opened as a GeoTIFF by every tool.
    """
    out = Path(path)
    expected = NAME_ENDINGS.get(format, ())
    if expected and out.suffix.lower() not in expected:
        raise UsageError(f"--format {format} writes {DESCRIPTIONS[format]}; name the output "
                         f"{out.with_suffix(expected[0]).name} (ending {' or '.join(expected)})")
    if format != "zarr" or not out.exists():
        return check_output(out, overwrite)
    if not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it or choose another name")
    if not out.is_dir() or not (out / ".zgroup").exists() and not (out / "zarr.json").exists():
        raise UsageError(f"{out} exists and is not a Zarr store; it will not be replaced, choose another name")
    return out


def write_via_geotiff(output: str | os.PathLike[str], format: str, overwrite: bool,
                      write: Callable[[Path], T], *, compress: str = "zstd") -> T:
    """Call ``write(temporary.tif)``, then convert that GeoTIFF to ``output`` in ``format``.

    ``write`` returns a run record whose ``output`` attribute is set to the final path.
    """
    format = check_format(format)
    out = check_target(output, format, overwrite)
    require_format(format)
    geotiff = temporary_path(out, ".tif")
    try:
        result = write(geotiff)
        started = time.perf_counter()
        convert(geotiff, out, format, overwrite=overwrite, compress=compress)
    finally:
        geotiff.unlink(missing_ok=True)
    if hasattr(result, "output"):
        result.output = os.fspath(out)
    timings = getattr(result, "timings", None)
    if isinstance(timings, dict):
        timings["convert"] = time.perf_counter() - started
        timings["wall"] = timings.get("wall", 0.0) + timings["convert"]
    return result


def require_format(format: str) -> None:
    """Fail early, with the install hint, when the packages ``format`` needs are missing."""
    if format in ("netcdf", "zarr"):
        require("xarray", f"--format {format}")
        require("pyproj", f"--format {format}")
        require("netCDF4" if format == "netcdf" else "zarr", f"--format {format}")


def convert(source: str | os.PathLike[str], output: str | os.PathLike[str], format: str, *,
            overwrite: bool = False, compress: str = "zstd") -> Path:
    """Convert a finished eetrend GeoTIFF to ``format``; the output appears only when complete."""
    format = check_format(format)
    out = check_target(output, format, overwrite)
    require_format(format)
    if format == "zarr":
        _replace_store(out, lambda tmp: _write_zarr(Path(source), tmp), overwrite)
        return out
    with replaced_when_done(out, SUFFIXES[format], overwrite=overwrite) as temporary:
        if format == "gtiff":
            shutil.copyfile(source, temporary)
        elif format == "cog":
            _write_cog(Path(source), temporary, compress)
        else:
            _write_netcdf(Path(source), temporary)
    return out


def _write_cog(source: Path, target: Path, compress: str) -> None:
    """GDAL's COG driver: 512-pixel tiles, overviews down to one tile, tags and band names kept."""
    from rasterio.shutil import copy

    with rasterio.open(source) as src:
        predictor = src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1")
    options: dict[str, Any] = {"BLOCKSIZE": 512, "OVERVIEWS": "AUTO", "OVERVIEW_RESAMPLING": "NEAREST",
                               "BIGTIFF": "IF_SAFER", "NUM_THREADS": "ALL_CPUS", "COMPRESS": compress.upper()}
    if compress != "none":
        options["PREDICTOR"] = "FLOATING_POINT" if predictor == "3" else "NO"
    with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
        copy(source, target, driver="COG", **options)


def _replace_store(out: Path, write: Callable[[Path], None], overwrite: bool = True) -> None:
    """Write a folder store beside ``out`` and rename it into place; a failure leaves nothing behind.

    Without ``overwrite`` the rename itself refuses a store another process finished meanwhile
    (renaming a folder onto a folder that is not empty fails).
    """
    temporary = temporary_path(out, ".zarr")
    try:
        write(temporary)
        if not overwrite:
            try:
                if os.path.lexists(out) and not out.is_dir():
                    raise FileExistsError(errno.EEXIST, "exists", str(out))
                os.rename(temporary, out)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise
                raise OutputExistsError(f"{out} was written by another process while this run was writing it; "
                                        "nothing was replaced: pass --overwrite to replace it, or choose another "
                                        "name") from None
        elif out.exists():
            old = temporary_path(out, ".old")
            os.replace(out, old)
            os.replace(temporary, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# --- CF metadata shared by NetCDF, Zarr and the xarray API -------------------------------


class _Source:
    """The metadata of a finished eetrend GeoTIFF and its rows strip by strip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with rasterio.open(path) as src:
            self.width, self.height = src.width, src.height
            self.names = [d or f"band_{i}" for i, d in enumerate(src.descriptions, start=1)]
            self.units = [u or "" for u in src.units]
            self.crs_wkt = src.crs.to_wkt() if src.crs else ""
            self.transform = tuple(src.transform)[:6]
            self.tags = src.tags()
        self.x, self.y = pixel_centres(self.transform, self.width, self.height)
        self.x_attrs, self.y_attrs = coordinate_attrs(self.crs_wkt)

    @property
    def strip_rows(self) -> int:
        rows = STRIP_BYTES // max(1, 4 * len(self.names) * self.width)
        return int(max(1, min(self.height, CHUNK, rows)))

    def strips(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first row, end row, float32 (bands, rows, width)) for each strip, top to bottom."""
        # A small block cache: each block is read once, and GDAL's default (5 % of RAM) would grow with the file.
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), rasterio.open(self.path) as src:
            for top in range(0, self.height, self.strip_rows):
                bottom = min(self.height, top + self.strip_rows)
                yield top, bottom, src.read(window=Window(0, top, self.width, bottom - top))

    def variable_attrs(self, index: int) -> dict[str, str]:
        attrs = {"long_name": self.names[index]}
        if self.units[index]:
            attrs["units"] = self.units[index]
        if self.crs_wkt:
            attrs["grid_mapping"] = GRID_MAPPING
        return attrs


def _write_netcdf(source: Path, target: Path) -> None:
    """NetCDF-4 through the netCDF4 library, strip by strip (xarray cannot append to a NetCDF file).

    zlib level 1 with shuffle: level 4 made the benchmark's file only 1.3 % smaller.
    """
    import netCDF4

    src = _Source(source)
    chunks = (src.strip_rows, min(src.width, CHUNK))
    with netCDF4.Dataset(target, "w", format="NETCDF4") as nc:
        nc.createDimension("y", src.height)
        nc.createDimension("x", src.width)
        for name, values, attrs in (("x", src.x, src.x_attrs), ("y", src.y, src.y_attrs)):
            variable = nc.createVariable(name, "f8", (name,))
            variable[:] = values
            variable.setncatts(attrs)
        if src.crs_wkt:
            crs = nc.createVariable(GRID_MAPPING, "i4")
            crs.setncatts(grid_mapping_attrs(src.crs_wkt, src.transform))
        variables = []
        for index, name in enumerate(src.names):
            variable = nc.createVariable(name, "f4", ("y", "x"), compression="zlib", complevel=1, shuffle=True,
                                         chunksizes=chunks, fill_value=np.float32(np.nan))
            # HDF5 keeps written chunks in a per-variable cache (netCDF's default: 64 MB each, 17 variables
            # would hold over 1 GB); one strip's chunks are all a variable needs, since each is written whole.
            variable.set_var_chunk_cache(size=4 * chunks[0] * chunks[1] * (-(-src.width // chunks[1]) + 1),
                                         nelems=1009, preemption=1.0)
            attrs = src.variable_attrs(index)
            if src.crs_wkt:
                attrs["coordinates"] = GRID_MAPPING
            variable.setncatts(attrs)
            variables.append(variable)
        nc.setncatts(global_attrs(src.tags, src.names))
        for top, bottom, block in src.strips():
            for index, variable in enumerate(variables):
                variable[top:bottom, :] = block[index]


def _write_zarr(source: Path, target: Path) -> None:
    """A Zarr (v2 format, read by GDAL and every xarray) store through xarray, appending strip by strip."""
    import xarray as xr

    src = _Source(source)
    attrs = global_attrs(src.tags, src.names)
    attrs["years"] = [int(y) for y in attrs.get("years", [])]
    chunks = (src.strip_rows, min(src.width, CHUNK))
    crs = {"_CRS": {"wkt": src.crs_wkt}} if src.crs_wkt else {}  # what GDAL before 3.9 reads (not grid_mapping)
    first = True
    for top, bottom, block in src.strips():
        coords: dict[str, Any] = {"y": ("y", src.y[top:bottom], src.y_attrs)}
        if first:
            coords["x"] = ("x", src.x, src.x_attrs)
            if src.crs_wkt:
                coords[GRID_MAPPING] = ((), np.int32(0), grid_mapping_attrs(src.crs_wkt, src.transform))
        data = {name: (("y", "x"), block[i], {**src.variable_attrs(i), **crs}) for i, name in enumerate(src.names)}
        strip = xr.Dataset(data, coords=coords, attrs=attrs)
        if first:
            encoding = {name: {"chunks": chunks, "_FillValue": np.float32(np.nan)} for name in src.names}
            strip.to_zarr(target, mode="w", zarr_format=2, encoding=encoding, consolidated=True)
            first = False
        else:
            strip.to_zarr(target, append_dim="y", consolidated=True)


@contextmanager
def readable_geotiff(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """``path`` itself for a GeoTIFF, or a temporary GeoTIFF copy of a NetCDF or Zarr output (in ``folder``,
    else the system's temporary folder), removed afterwards: what draws eetrend's GeoTIFF draws every format."""
    from ..errors import InputError

    target = Path(path)
    if not is_array_store(target):
        yield target
        return
    if not target.exists():
        raise InputError(f"{target} does not exist; give a trend output written by eetrend trend or run")
    where = Path(folder) if folder is not None and Path(folder).is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".eetrend-read-", dir=where) as temporary:
        try:
            copy = to_geotiff(target, Path(temporary) / f"{target.stem}.tif")
        except (KeyError, ValueError, OSError, RuntimeError) as exc:
            lines = str(exc).strip().splitlines()
            reason = lines[0][:160] if lines else type(exc).__name__
            raise InputError(f"cannot read {target} as an eetrend output ({reason}); give a NetCDF or Zarr output "
                             "of eetrend trend --format netcdf|zarr") from None
        yield copy


def is_array_store(path: str | os.PathLike[str]) -> bool:
    """A NetCDF file or a Zarr store (by name), the outputs GDAL does not read as one multi-band raster."""
    target = Path(path)
    return target.suffix.lower() in NAME_ENDINGS["netcdf"] + NAME_ENDINGS["zarr"] + (".netcdf",)


def to_geotiff(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write a NetCDF or Zarr output of eetrend back as the GeoTIFF it was converted from, strip by strip:
    the same bands in order with their descriptions and units, grid, CRS and tags, float32 bit for bit.

    So what reads eetrend's GeoTIFF (the report, ``plot``) reads every format it writes.
    """
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from .xarray_io import open_trend

    dataset = open_trend(source)
    try:
        names = [str(n) for n in dataset.data_vars if dataset[n].dims == ("y", "x")]
        if not names:
            from ..errors import InputError

            raise InputError(f"{source} has no variable on a y/x grid, so it is not an output of eetrend; give a "
                             "NetCDF or Zarr output of eetrend trend --format netcdf|zarr")
        height, width = dataset.sizes["y"], dataset.sizes["x"]
        mapping = dataset[GRID_MAPPING].attrs if GRID_MAPPING in dataset.variables else {}
        for name in names:  # decode_coords="all" moves the grid mapping into the coordinates
            if GRID_MAPPING in dataset[name].coords:
                mapping = dataset[name].coords[GRID_MAPPING].attrs
                break
        crs = CRS.from_wkt(mapping["spatial_ref"]) if mapping.get("spatial_ref") else None
        if mapping.get("GeoTransform"):
            c, a, b, f, d, e = (float(v) for v in str(mapping["GeoTransform"]).split())
            transform = Affine(a, b, c, d, e, f)
        else:  # from the pixel centres
            x, y = dataset["x"].values, dataset["y"].values
            a = float(x[1] - x[0]) if width > 1 else 1.0
            e = float(y[1] - y[0]) if height > 1 else -1.0
            transform = Affine(a, 0.0, float(x[0]) - a / 2, 0.0, e, float(y[0]) - e / 2)
        tags: dict[str, str] = {}
        for key, value in dataset.attrs.items():
            if key in ("Conventions", "source", "bands"):
                continue
            if key == "years":
                value = ",".join(str(int(v)) for v in np.atleast_1d(value))
            tags["x" if key == "regressor" else key] = str(value)
        profile = {"driver": "GTiff", "width": width, "height": height, "count": len(names), "dtype": "float32",
                   "crs": crs, "transform": transform, "nodata": float("nan"), "tiled": True, "blockxsize": 256,
                   "blockysize": 256, "compress": "zstd", "BIGTIFF": "IF_SAFER"}
        rows = int(max(1, min(height, STRIP_BYTES // max(1, 4 * len(names) * width))))
        with rasterio.open(target, "w", **profile) as out:
            for index, name in enumerate(names, start=1):
                out.set_band_description(index, name)
                if dataset[name].attrs.get("units"):
                    out.set_band_unit(index, str(dataset[name].attrs["units"]))
            out.update_tags(**tags)
            for top in range(0, height, rows):
                bottom = min(height, top + rows)
                block = np.stack([dataset[name][top:bottom].values.astype(np.float32) for name in names])
                out.write(block, window=Window(0, top, width, bottom - top))
    finally:
        dataset.close()
    return Path(target)
