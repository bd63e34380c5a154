"""Writing results: a multi-band float32 GeoTIFF that appears whole or not at all.

The file is written under a temporary name in the output folder and renamed over
the final name only after it was closed without error, so an interrupted run
never leaves a partial file where a finished one is expected.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
from rasterio.windows import Window

from .errors import InputError, OutputExistsError, UsageError
from .leftovers import remove_stale_temporaries
from .stack import Grid
from .windows import OUTPUT_BLOCK


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A hidden name beside ``path`` that no other process or run will pick.

    It carries this process's pid, so the temporaries of ``path`` that a killed process
    left are recognised (their pid is gone) and removed here.
    """
    remove_stale_temporaries(path.parent, path.name)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial{suffix}")


@contextmanager
def replaced_when_done(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` if the block ends without error, else it is removed.

    ``suffix`` keeps an extension for writers that choose the format from the name.
    """
    temporary = temporary_path(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


BAND_UNITS = {
    "slope": "{units} per year",
    "intercept": "{units}",
    "stderr": "{units} per year",
    "intercept_stderr": "{units}",
    "sen_slope": "{units} per year",
    "sen_intercept": "{units}",
    "sen_low": "{units} per year",
    "sen_high": "{units} per year",
    "n": "years",
}
COMPRESSIONS = ("zstd", "deflate", "lzw", "none")
# Level 1 with the floating-point predictor: as small as deflate's default, five times faster.
_LEVELS = {"zstd": {"zstd_level": 1}, "deflate": {"zlevel": 6}, "lzw": {}}


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse an existing output (unless ``overwrite``) or a folder that is not there."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"the output {out} is a folder; give a file name such as {out / 'trend.tif'}")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it or choose another name")
    if not out.parent.exists():
        raise UsageError(f"the folder {out.parent} does not exist; create it first")
    if not os.access(out.parent, os.W_OK):
        raise UsageError(f"cannot write in {out.parent}; choose an output folder you can write to")
    return out


class RasterWriter:
    """Context manager writing named float32 bands window by window, then renaming into place."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        grid: Grid,
        bands: tuple[str, ...],
        *,
        tags: Mapping[str, str] | None = None,
        units: str = "",
        compress: str = "zstd",
        overwrite: bool = False,
        predictor: int = 3,
    ) -> None:
        if compress not in COMPRESSIONS:
            raise UsageError(f"--compress {compress!r} is not one of {', '.join(COMPRESSIONS)}")
        self.path = check_output(path, overwrite)
        self.grid = grid
        self.bands = bands
        self.tags = dict(tags or {})
        self.units = units or "input units"
        self.compress = compress
        self.predictor = predictor  # 3 (floating point) or 1 (none: faster where it does not shrink the file)
        self._tmp: Path | None = None
        self._ds: rasterio.io.DatasetWriter | None = None
        self._env: rasterio.Env | None = None

    def profile(self) -> dict:
        block = OUTPUT_BLOCK
        tiled = self.grid.width >= block and self.grid.height >= block
        profile = {
            "driver": "GTiff",
            "dtype": "float32",
            "count": len(self.bands),
            "width": self.grid.width,
            "height": self.grid.height,
            "crs": self.grid.crs or None,
            "transform": rasterio.Affine(*self.grid.transform),
            "nodata": float("nan"),
            "tiled": tiled,
            "BIGTIFF": "IF_SAFER",
            "NUM_THREADS": "ALL_CPUS",
            "INTERLEAVE": "BAND",
        }
        if tiled:
            profile.update(blockxsize=block, blockysize=block)
        if self.compress != "none":
            profile.update(compress=self.compress, predictor=self.predictor, **_LEVELS[self.compress])
        return profile

    def __enter__(self) -> RasterWriter:
        self._tmp = temporary_path(self.path)
        # A small block cache: finished windows go to disk instead of piling up in memory.
        self._env = rasterio.Env(GDAL_CACHEMAX=64 * 2**20)
        self._env.__enter__()
        try:
            self._ds = rasterio.open(self._tmp, "w", **self.profile())
        except BaseException:
            self._cleanup()
            raise
        return self

    def write(self, window: Window, values: Mapping[str, np.ndarray]) -> None:
        """Write one window; ``values`` maps each band name to a (rows*cols,) or (rows, cols) array."""
        assert self._ds is not None, "use RasterWriter as a context manager"
        shape = (int(window.height), int(window.width))
        block = np.stack([np.asarray(values[name], dtype=np.float32).reshape(shape) for name in self.bands])
        self._ds.write(block, window=window)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                self._cleanup()
                raise
        else:
            self._cleanup()

    def _finish(self) -> None:
        assert self._ds is not None and self._tmp is not None
        ds = self._ds
        for index, name in enumerate(self.bands, start=1):
            ds.set_band_description(index, name)
            unit = BAND_UNITS.get(name, "").format(units=self.units)
            if unit:
                ds.set_band_unit(index, unit)
        ds.update_tags(**self.tags)
        try:
            ds.close()
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"could not finish writing {self.path}: {exc}; check free disk space") from None
        self._ds = None
        self._close_env()
        os.replace(self._tmp, self.path)
        self._tmp = None

    def _cleanup(self) -> None:
        if self._ds is not None:
            try:
                self._ds.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
            self._ds = None
        self._close_env()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _close_env(self) -> None:
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None
