"""Annual rasters as one stack: find the inputs, give each its year, check the grid, read windows.

A :class:`Stack` is small and picklable (paths, years, grid), so a worker process
receives the stack and a window, opens the files itself and reads only that window.
Nothing large ever crosses a process boundary on the way in.
"""

from __future__ import annotations

import glob
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

from ..errors import GridMismatchError, InputError, UsageError, YearError
from ..years import compile_year_pattern, format_years, year_from_text

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


def working_dtype(dtype: np.dtype | str) -> np.dtype:
    """float32 where it holds every input value exactly, else float64."""
    kind = np.dtype(dtype)
    if kind == np.float32 or (kind.kind in "iub" and kind.itemsize <= 2):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


@dataclass(frozen=True)
class Grid:
    """The pixel grid every layer must share."""

    crs: str  # WKT, or "" when the file has none
    transform: tuple[float, ...]
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def difference(self, other: Grid) -> str | None:
        """A short description of how ``other`` differs from this grid, or None."""
        if self.crs != other.crs:
            return f"CRS differs ({_crs_name(other.crs)} vs {_crs_name(self.crs)})"
        if (self.width, self.height) != (other.width, other.height):
            return f"shape differs ({other.width}x{other.height} vs {self.width}x{self.height} pixels)"
        size = max(abs(self.transform[0]), abs(self.transform[4]), 1e-12)
        if any(
            not math.isclose(a, b, rel_tol=0, abs_tol=size * 1e-6)
            for a, b in zip(self.transform, other.transform, strict=False)
        ):
            return f"transform differs ({_affine_text(other.transform)} vs {_affine_text(self.transform)})"
        return None


@dataclass(frozen=True)
class Layer:
    """One year of the stack: a band of a file."""

    path: str
    band: int
    year: int
    nodata: float | None
    dtype: str = ""  # the file's data type, where it differs from the stack's
    scale: float = 1.0  # value = stored x scale + offset (--dtype-scale)
    offset: float = 0.0


@dataclass(frozen=True)
class Stack:
    """Layers sorted by year on one grid; cheap to pickle."""

    layers: tuple[Layer, ...]
    grid: Grid
    dtype: str
    block_shape: tuple[int, int]
    units: str = ""
    files: tuple[str, ...] = ()  # every file read, VRT sources included: an output must be none of them

    @property
    def years(self) -> np.ndarray:
        return np.array([layer.year for layer in self.layers], dtype=np.float64)

    @property
    def year_list(self) -> list[int]:
        return [layer.year for layer in self.layers]

    @property
    def working_dtype(self) -> np.dtype:
        return working_dtype(self.dtype)

    def read(self, window: Window | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Read a window of every layer as (years, pixels) floats, NaN where missing.

        Values come as float32 when that holds them exactly (8- and 16-bit
        integers, float32), else float64. ``out`` is an optional buffer to fill.
        """
        if window is None:
            window = Window(0, 0, self.grid.width, self.grid.height)
        rows, cols = int(window.height), int(window.width)
        shape = (len(self.layers), rows * cols)
        if out is None or out.shape != shape or out.dtype != self.working_dtype:
            out = np.empty(shape, dtype=self.working_dtype)
        values = out
        for i, layer in enumerate(self.layers):
            try:
                dataset = open_cached(layer.path)
                if np.dtype(layer.dtype or self.dtype) == values.dtype:  # read straight into the buffer
                    data = dataset.read(layer.band, window=window, out=values[i].reshape(rows, cols))
                else:
                    data = dataset.read(layer.band, window=window)
                    values[i] = data.reshape(-1)
            except RasterioError as exc:
                raise InputError(
                    f"cannot read {layer.path} (year {layer.year}): {_first_line(exc)}; "
                    "the file is damaged or truncated: download it again or remove it"
                ) from None
            mask_nodata(values[i], data.reshape(-1), layer.nodata)
            if layer.scale != 1.0 or layer.offset != 0.0:
                values[i] *= layer.scale
                values[i] += layer.offset
        return values


def mask_nodata(values: np.ndarray, raw: np.ndarray, nodata: float | None) -> None:
    """Set ``values`` to NaN where ``raw`` (the same pixels as stored) equals ``nodata``.

    NaN itself is always missing; a NaN or absent nodata value needs no mask.
    """
    if nodata is not None and not math.isnan(nodata):
        values[raw == nodata] = np.nan


# Open datasets are kept per thread (rasterio datasets must not be shared between
# threads) and per process (a forked child must not reuse its parent's), at most
# open_limit() of them per thread, so a stack of thousands of files cannot exhaust
# the file descriptors: beyond that, the least recently read file is closed.
_LOCAL = threading.local()
_ALL_OPEN: dict[tuple[int, int], OrderedDict[str, rasterio.io.DatasetReader]] = {}  # by (pid, thread), for close_cached
_ALL_LOCK = threading.Lock()
_FD_RESERVE = 128  # descriptors left for everything else: the output, logs, pipes, libraries
_THREAD_SHARE = 8  # threads that may read at once without crowding each other out


def open_limit() -> int:
    """How many datasets one thread keeps open: a share of this process's file descriptor limit."""
    soft = 1 << 16
    if resource is not None:  # not on Windows
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        soft = soft if limit == resource.RLIM_INFINITY else limit
    return max(4, (soft - _FD_RESERVE) // _THREAD_SHARE)


def open_cached(path: str) -> rasterio.io.DatasetReader:
    """This thread's open dataset for ``path`` (reopened after a fork)."""
    if getattr(_LOCAL, "pid", None) != os.getpid():
        _LOCAL.pid, _LOCAL.open = os.getpid(), OrderedDict()
        with _ALL_LOCK:
            _ALL_OPEN[os.getpid(), threading.get_ident()] = _LOCAL.open
    cache = _LOCAL.open
    dataset = cache.get(path)
    if dataset is None or dataset.closed:
        while len(cache) >= open_limit():
            cache.popitem(last=False)[1].close()
        dataset = cache[path] = rasterio.open(path)
    else:
        cache.move_to_end(path)
    return dataset


def close_cached() -> None:
    """Close the datasets every thread of this process opened for reading windows.

    Call it when no window is being read, e.g. after a pool of readers has finished.
    """
    pid = os.getpid()
    with _ALL_LOCK:
        mine = [key for key in _ALL_OPEN if key[0] == pid]
        caches = [_ALL_OPEN.pop(key) for key in mine]
    for cache in caches:
        for dataset in cache.values():
            dataset.close()
        cache.clear()
    _LOCAL.pid = None  # this thread registers a fresh cache on its next read


def find_rasters(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand a folder, a glob, one file or a list of them into raster paths."""
    try:
        return _find_rasters(inputs)
    except OSError as exc:  # a name too long, a loop of links, a folder that cannot be listed
        name = str(exc.filename or inputs)[:80]
        raise InputError(f"cannot read {name}: {exc.strerror or exc}; check the input path") from None


def _find_rasters(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and _usable(p))
            if not matches:
                raise InputError(
                    f"no rasters found in {path} (looked for {', '.join('*' + s for s in RASTER_SUFFIXES)}); "
                    "point INPUT at the folder that holds the annual files"
                )
            found.extend(matches)
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text) if not Path(p).is_dir() and _usable(Path(p)))
            if not matches:
                raise InputError(
                    f"no files match {text}; check the pattern and quote it so the shell does not expand it"
                )
            found.extend(matches)
        elif path.is_symlink() or path.exists():
            if _usable(path):
                found.append(path)
        else:
            raise InputError(f"{text} does not exist; give a folder of annual rasters, a glob, or a multi-band file")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _usable(path: Path) -> bool:
    """True for a readable regular file (through links); a raster-named entry that is not is named.

    A dangling link, a FIFO or device, or a file eetrend may not read would otherwise be
    skipped without a word and its year silently missing from the trend. A folder named
    like a raster is skipped (it holds no pixels of its own).
    """
    if path.is_symlink() and not path.exists():
        raise InputError(f"{path} is a link to {os.readlink(path)}, which does not exist; fix the link or remove it")
    if path.is_dir():
        return False
    if not path.is_file():
        raise InputError(f"{path} is not a regular file (a pipe, socket or device); move it out of the input")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path} (permission denied); fix its permissions (chmod a+r) or move it out")
    return True


@dataclass(frozen=True)
class Header:
    """What eetrend needs of a raster before reading pixels: its grid, bands, nodata and layout."""

    path: Path
    grid: Grid
    count: int
    dtype: str
    nodata: float | None
    descriptions: tuple[str | None, ...]
    block_shape: tuple[int, int]
    units: str
    files: tuple[str, ...] = ()
    eetrend_output: bool = False  # a trend GeoTIFF eetrend wrote (its tags say so)


def read_header(path: Path) -> Header:
    """Open ``path`` once for its header; an unreadable file is one :class:`InputError` line."""
    try:
        with rasterio.open(path) as ds:
            header = Header(
                path=path,
                grid=Grid(
                    crs=ds.crs.to_wkt() if ds.crs else "",
                    transform=tuple(ds.transform)[:6],
                    width=ds.width,
                    height=ds.height,
                ),
                count=ds.count,
                dtype=ds.dtypes[0],
                nodata=ds.nodata,
                descriptions=tuple(ds.descriptions),
                block_shape=tuple(ds.block_shapes[0]),
                units=(ds.units[0] or "") if ds.units else "",
                files=tuple(ds.files),
                eetrend_output=_has_output_tags(ds.tags()),
            )
    except RasterioError as exc:
        raise InputError(
            f"cannot open {path}: {_first_line(exc)}; it is not a readable raster: download it again or remove it"
        ) from None
    except OSError as exc:  # e.g. a VRT whose sources are gone
        raise InputError(f"cannot open {path}: {exc.strerror or exc}; download it again or remove it") from None
    missing = [f for f in header.files[1:] if not os.path.exists(f)]
    if missing:  # a mosaic whose tiles are gone reads as an unexplained "Read failed" later
        raise InputError(f"{path.name} refers to {missing[0]}, which does not exist"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                         + "; download the year again or restore the tile")
    return header


def open_stack(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    years: Sequence[int] | None = None,
    year_pattern: str | None = None,
    band: int = 1,
    min_years: int = 3,
    exclude: Sequence[str | os.PathLike[str]] = (),
    dtype_scale: Mapping[str, tuple[float, float]] | None = None,
) -> Stack:
    """Describe the annual stack behind ``inputs``, checking years and grid.

    Years come from file names (``year_pattern``, default the first 19xx/20xx
    group) or, for one multi-band file, from its band descriptions. Where years
    are found that way, ``years`` selects which to use; for a multi-band file
    without years in its descriptions, ``years`` gives them in band order.

    ``exclude`` names the output: a previous eetrend output found among the inputs is
    left out, any other input it names is refused. Integer files among float files are
    refused unless ``dtype_scale`` (data type -> (scale, offset)) says how to bring them
    to one scale (see :func:`parse_dtype_scale`); integers of different widths, or floats
    of different widths, are read together as they are.
    """
    if min_years < 2:
        raise UsageError(f"--min-years is {min_years}; a trend needs at least 2 years")
    if band < 1:
        raise UsageError(f"--band {band} does not exist: bands are numbered from 1")
    paths = [p for p in find_rasters(inputs) if not _is_excluded(p, exclude)]
    if not paths:
        raise InputError(f"no rasters found in {inputs} apart from the output itself")
    pattern = compile_year_pattern(year_pattern)
    headers = [read_header(p) for p in paths]
    if len(headers) > 1:  # earlier eetrend outputs lying in an input folder are no input
        headers = [h for h in headers if not h.eetrend_output] or headers
        paths = [h.path for h in headers]

    if len(headers) == 1 and headers[0].count > 1:
        layers = _layers_from_bands(headers[0], pattern, years)
    else:
        if len(headers) == 1:
            raise InputError(
                f"{paths[0]} is a single one-band raster, one year only; "
                "give a folder or glob of annual files, or a multi-band file whose bands are years"
            )
        layers = _layers_from_files(headers, pattern, band, years)

    _check_grids(headers)
    layers, dtype = _scaled_layers(layers, headers, dtype_scale or {})
    layers.sort(key=lambda layer: layer.year)
    if len(layers) < min_years:
        raise YearError(
            f"only {len(layers)} years ({format_years(layer.year for layer in layers)}) but --min-years is "
            f"{min_years}; add years or lower --min-years"
        )
    first = headers[0]
    files = tuple(dict.fromkeys(f for h in headers for f in (h.files or (str(h.path),))))
    return Stack(
        layers=tuple(layers), grid=first.grid, dtype=dtype, block_shape=first.block_shape, units=first.units,
        files=files,
    )


def _is_excluded(path: Path, exclude: Sequence[str | os.PathLike[str]]) -> bool:
    """True when ``path`` is the output and a previous eetrend output; an input named as output is refused."""
    for item in exclude:
        try:
            same = os.path.samefile(path, item)
        except OSError:
            same = False
        if same:
            if _is_eetrend_output(path):
                return True
            raise UsageError(f"the output {item} is the input {path}; choose another output name "
                             "(an input is never replaced, not even with --overwrite)")
    return False


def _is_eetrend_output(path: Path) -> bool:
    try:
        with rasterio.open(path) as ds:
            return _has_output_tags(ds.tags())
    except (RasterioError, OSError):
        return False


def _has_output_tags(tags: Mapping[str, str]) -> bool:
    """A trend GeoTIFF eetrend wrote (index outputs are annual inputs, so they do not count)."""
    return "eetrend_version" in tags and "method" in tags


GDAL_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")


def parse_dtype_scale(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Parse ``--dtype-scale`` values ``DTYPE=SCALE`` or ``DTYPE=SCALE:OFFSET`` (value = stored x scale + offset)."""
    rules: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        name = name.strip().lower()
        scale_text, _, offset_text = rest.partition(":")
        try:
            scale, offset = float(scale_text), float(offset_text or 0.0)
        except ValueError:
            scale = offset = math.nan
        if not sep or name not in GDAL_DTYPES or not (math.isfinite(scale) and math.isfinite(offset)) or scale == 0:
            raise UsageError(f"--dtype-scale {item!r} is not DTYPE=SCALE[:OFFSET] with a data type "
                             f"({', '.join(GDAL_DTYPES)}) and a finite non-zero scale, e.g. int16=0.0001")
        rules[name] = (scale, offset)
    return rules


def _is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind == "f"


def _scaled_layers(
    layers: list[Layer], headers: list[Header], rules: Mapping[str, tuple[float, float]]
) -> tuple[list[Layer], str]:
    """Layers with their file's data type and scale; refuses mixed types the rules do not reconcile."""
    dtype_of = {str(h.path): h.dtype for h in headers}
    kinds = list(dict.fromkeys(h.dtype for h in headers))
    unresolved = [h for h in headers if h.dtype not in rules]
    if len({_is_float(h.dtype) for h in unresolved}) > 1:  # integers among floats: maybe NDVI x 10000 among NDVI
        first = unresolved[0]
        other = next(h for h in unresolved if _is_float(h.dtype) != _is_float(first.dtype))
        unscaled = other.dtype if _is_float(first.dtype) else first.dtype
        raise InputError(
            f"{other.path.name} is {other.dtype} but {first.path.name} is {first.dtype}: the years may be on "
            f"different scales (e.g. NDVI as integers x 10000); pass --dtype-scale {unscaled}=SCALE[:OFFSET] "
            f"(e.g. --dtype-scale {unscaled}=0.0001) to read {unscaled} files as stored x SCALE + OFFSET, "
            "or give files of one data type"
        )
    if not rules and len(kinds) == 1:
        return layers, kinds[0]
    out = []
    for layer in layers:
        kind = dtype_of.get(layer.path, kinds[0])
        scale, offset = rules.get(kind, (1.0, 0.0))
        out.append(Layer(layer.path, layer.band, layer.year, layer.nodata, kind, scale, offset))
    scaled = any(layer.scale != 1.0 or layer.offset != 0.0 for layer in out)
    combined = np.result_type(*kinds, *((np.float32,) if scaled else ())).name
    return out, combined


def _layers_from_files(headers: list[Header], pattern, band: int, years: Sequence[int] | None) -> list[Layer]:
    by_year: dict[int, Layer] = {}
    for header in headers:
        if band > header.count:
            raise InputError(f"{header.path} has {header.count} band(s); --band {band} does not exist in it")
        year = year_from_text(header.path.name, pattern)
        if year is None:
            raise YearError(
                f"cannot find a year in the name {header.path.name} with pattern {pattern.pattern!r}; "
                "rename the file, move it out of the folder, or pass --year-pattern"
            )
        if year in by_year:
            raise YearError(
                f"year {year} appears twice: {Path(by_year[year].path).name} and {header.path.name}; "
                "remove one of them or narrow the input with a glob"
            )
        by_year[year] = Layer(str(header.path), band, year, header.nodata)
    return _select(by_year, years)


def _layers_from_bands(header: Header, pattern, years: Sequence[int] | None) -> list[Layer]:
    found = [year_from_text(d or "", pattern) for d in header.descriptions]
    if all(y is None for y in found):
        if years is None:
            raise YearError(
                f"{header.path.name} has {header.count} bands but no years in their descriptions; "
                f"pass --years with {header.count} years in band order, e.g. --years 2000-{1999 + header.count}"
            )
        if len(years) != header.count:
            raise YearError(
                f"--years gives {len(years)} years but {header.path.name} has {header.count} bands; "
                "give one year per band, in band order"
            )
        return [Layer(str(header.path), i + 1, int(y), header.nodata) for i, y in enumerate(years)]
    by_year: dict[int, Layer] = {}
    for index, (year, description) in enumerate(zip(found, header.descriptions, strict=False), start=1):
        if year is None:
            raise YearError(
                f"band {index} of {header.path.name} has no year in its description {description!r}; "
                "fix the descriptions or pass --year-pattern"
            )
        if year in by_year:
            raise YearError(
                f"year {year} appears twice in {header.path.name}: bands {by_year[year].band} and {index}; "
                "remove one of them"
            )
        by_year[year] = Layer(str(header.path), index, year, header.nodata)
    return _select(by_year, years)


def _select(by_year: dict[int, Layer], years: Sequence[int] | None) -> list[Layer]:
    if years is None:
        return list(by_year.values())
    missing = [y for y in years if y not in by_year]
    if missing:
        raise YearError(
            f"year(s) {format_years(missing)} requested but not in the input "
            f"(it has {format_years(by_year)}); drop them from --years or add their files"
        )
    return [by_year[y] for y in years]


def _check_grids(headers: list[Header]) -> None:
    reference = headers[0]
    for header in headers[1:]:
        difference = reference.grid.difference(header.grid)
        if difference is None and header.count != reference.count:
            difference = f"band count differs ({header.count} vs {reference.count})"
        if difference:
            raise GridMismatchError(
                f"{header.path.name} is not on the grid of {reference.path.name}: {difference}; "
                "export every year with the same region, crs and scale (or resample it onto that grid)"
            )


def _crs_name(wkt: str) -> str:
    if not wkt:
        return "none"
    try:
        crs = rasterio.crs.CRS.from_wkt(wkt)
        return crs.to_string()
    except Exception:  # noqa: BLE001 - only used to word a message
        return wkt[:40]


def _affine_text(transform: tuple[float, ...]) -> str:
    a, b, c, d, e, f = transform
    return f"origin {c:g},{f:g} pixel {a:g}x{e:g}"


def _first_line(exc: BaseException) -> str:
    if "See previous exception" in str(exc) and exc.__cause__ is not None:  # GDAL's own words are in the cause
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_failure(path: str | os.PathLike[str], exc: BaseException) -> InputError:
    """One line for a raster that opened but cannot be read: a damaged or truncated block."""
    return InputError(f"cannot read {path}: {_first_line(exc)}; the file is damaged or truncated: "
                      "download it again or remove it")
