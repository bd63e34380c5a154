"""Writing results: a multi-band float32 GeoTIFF that appears whole or not at all.

The file is written under a temporary name in the output folder and renamed over
the final name only after it was closed without error, so an interrupted run
never leaves a partial file where a finished one is expected.

An output name belongs to one writer: without ``overwrite`` a run refuses a name that
exists or that another live process is writing (at the start), and the final step,
:func:`publish`, links the finished file to its name, which fails if the name appeared
meanwhile, so of two runs racing to one name exactly one wins and nothing is replaced.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
from rasterio.windows import Window

from ..engine.stack import Grid
from ..engine.windows import OUTPUT_BLOCK
from ..errors import OutputExistsError, UsageError
from .diskio import TiffErrors, existing_ancestor, fsync_path, is_read_only_mount, verify_geotiff, write_failure
from .leftovers import live_writers, remove_stale_temporaries


def temporary_path(path: Path, suffix: str = "") -> Path:
    """A hidden name beside ``path`` that no other process or run will pick (cut to fit the file system).

    It carries this process's pid, so the temporaries of ``path`` that a killed process
    left are recognised (their pid is gone) and removed here.
    """
    remove_stale_temporaries(path.parent, path.name)
    tail = f".{os.getpid()}.{secrets.token_hex(4)}.partial{suffix}"
    room = _name_max(path.parent) - 1 - len(tail.encode())
    name = path.name.encode()[:room].decode(errors="ignore")
    return path.with_name(f".{name}{tail}")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(existing_ancestor(folder), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_and_sync(path: Path, verify: Callable[[Path], None] | None = None) -> None:
    """Check a just-written temporary with ``verify`` while its bytes go to the disk: both must succeed.

    A check reads (a GeoTIFF's decodes on the cores) and the sync waits on the disk, so
    side by side they take the longer of the two instead of the sum (0.05 and 0.03 s for
    an 11-band 855x854 GeoTIFF).
    """
    if verify is None:
        fsync_path(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="eetrend-sync") as pool:
        synced = pool.submit(fsync_path, path)
        try:
            verify(path)
        finally:
            synced.result()  # raises the sync's error, if any, once the check is over


def publish(temporary: Path, path: Path, overwrite: bool) -> None:
    """Give the finished ``temporary`` its final name ``path``; without ``overwrite`` only if the name is free.

    ``os.link`` fails if ``path`` exists, atomically: a file another run finished meanwhile is
    never replaced (checking first and renaming after would leave a gap between the two).
    Where the file system has no hard links (some network and FAT mounts) the check and the
    rename are as close together as they can be.
    """
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} was written by another process while this run was writing it; nothing "
                                "was replaced: pass --overwrite to replace it, or choose another name") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV):
            raise
        if os.path.lexists(path):
            raise OutputExistsError(f"{path} was written by another process while this run was writing it; "
                                    "nothing was replaced: pass --overwrite to replace it, or choose another "
                                    "name") from None
        os.replace(temporary, path)
        return
    _remove(temporary)


@contextmanager
def replaced_when_done(
    path: Path, suffix: str = "", *, verify: Callable[[Path], None] | None = None,
    needed: int | Callable[[], int] | None = None, at_most: bool = False, overwrite: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` if the block ends without error, else it is removed.

    Before the rename the temporary is checked (``verify``, e.g. :func:`verify_geotiff`) and
    flushed to the disk, so a full disk or an I/O error is an error here, never a broken file
    under ``path``. Write failures become one-line errors (see :func:`write_failure`);
    ``needed`` (bytes, or a function giving them; ``at_most``: an upper bound) words a full
    disk's message.
    ``suffix`` keeps an extension for writers that choose the format from the name.
    Without ``overwrite`` an existing ``path`` is never replaced (see :func:`publish`).
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} is not a regular file (a folder, device or pipe); eetrend replaces only files: "
                         "move it away or choose another name")
    temporary = temporary_path(path, suffix)
    try:
        try:
            tiff = TiffErrors()
            try:
                yield temporary
            except OSError:
                _raise_recorded(tiff.messages())  # libtiff's own words are the more precise
                raise
            _raise_recorded(tiff.messages())
            check_and_sync(temporary, verify)
            publish(temporary, path, overwrite)
            fsync_path(path.parent)
        except OSError as exc:
            size = needed() if callable(needed) else needed
            raise write_failure(path, exc, size or _size(temporary), temporary, at_most=at_most) from None
    finally:
        _remove(temporary)


def _remove(path: Path) -> None:
    """Remove a temporary if it is there; a folder that vanished or became a file is no new error."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size or None
    except OSError:
        return None


_ERRNO_WORDS = {"No space left": errno.ENOSPC, "Disk quota": errno.EDQUOT, "File too large": errno.EFBIG}


def _raise_recorded(messages: list[str]) -> None:
    """Raise the first libtiff write/seek failure recorded while a GeoTIFF was written, as an OSError."""
    for message in messages:
        if "WriteProc" in message or "SeekProc" in message or "Write error" in message:
            code = next((c for word, c in _ERRNO_WORDS.items() if word in message), errno.EIO)
            raise OSError(code, message)


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
    **{f"seg{i}_slope": "{units} per year" for i in range(1, 12)},  # --breaks: up to 11 segments
    **{f"bp{i}_year": "year" for i in range(1, 11)},
}
COMPRESSIONS = ("zstd", "deflate", "lzw", "none")
# Level 1 with the floating-point predictor: as small as deflate's default, five times faster.
_LEVELS = {"zstd": {"zstd_level": 1}, "deflate": {"zlevel": 6}, "lzw": {}}


def check_output(
    path: str | os.PathLike[str], overwrite: bool, inputs: Sequence[str | os.PathLike[str]] = ()
) -> Path:
    """Refuse an output that is one of ``inputs`` (even with ``overwrite``), exists or is being written by
    another live process (unless ``overwrite``), has a name too long for the file system, or lies in a
    folder that is missing or read-only."""
    out = Path(path)
    limit = _name_max(out.parent)
    if len(out.name.encode()) > limit:
        raise UsageError(f"the output name {out.name[:40]}... is too long: {len(out.name.encode())} bytes, more "
                         f"than the {limit} the file system allows; choose a shorter name")
    try:
        return _check_output(out, overwrite, inputs)
    except OSError as exc:  # a folder name too long, a loop of links...
        raise write_failure(out, exc) from None


def _check_output(out: Path, overwrite: bool, inputs: Sequence[str | os.PathLike[str]]) -> Path:
    if out.is_dir():
        raise UsageError(f"the output {out} is a folder; give a file name such as {out / 'trend.tif'}")
    clash = same_file(out, inputs)
    if clash is not None:
        raise UsageError(f"the output {out} is the input {clash}; choose another output name "
                         "(an input is never replaced, not even with --overwrite)")
    if out.exists() and not out.is_file():
        raise UsageError(f"the output {out} is not a regular file (a device, pipe or socket); eetrend replaces "
                         "only files: choose another name")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it or choose another name")
    writers = [] if overwrite else live_writers(out.parent, out.name)
    if writers:
        raise OutputExistsError(f"{out} is being written by another process (pid {writers[0]}); wait for it to "
                                "finish, pass --overwrite to replace its result, or choose another name")
    if not out.parent.exists():
        raise UsageError(f"the folder {out.parent} does not exist; create it first")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is a file, not a folder; choose an output in a folder")
    if not os.access(out.parent, os.W_OK | os.X_OK) or is_read_only_mount(out.parent):
        raise UsageError(f"cannot write in {out.parent}; choose an output folder you can write to")
    return out


def same_file(path: Path, inputs: Sequence[str | os.PathLike[str]]) -> Path | None:
    """The input that ``path`` is, through its name, a symbolic link or a hard link; else None."""
    if not path.exists():
        return None
    for item in inputs:
        try:
            if os.path.samefile(path, item):
                return Path(item)
        except OSError:
            continue
    return None


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
        inputs: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        if compress not in COMPRESSIONS:
            raise UsageError(f"--compress {compress!r} is not one of {', '.join(COMPRESSIONS)}")
        self.path = check_output(path, overwrite, inputs)
        self.overwrite = overwrite
        self.grid = grid
        self.bands = bands
        self.tags = dict(tags or {})
        self.units = units or "input units"
        self.compress = compress
        self.predictor = predictor  # 3 (floating point) or 1 (none: faster where it does not shrink the file)
        self._tmp: Path | None = None
        self._ds: rasterio.io.DatasetWriter | None = None
        self._env: rasterio.Env | None = None
        self._tiff: TiffErrors | None = None

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
        self._tiff = TiffErrors()
        try:
            self._ds = rasterio.open(self._tmp, "w", **self.profile())
        except rasterio.errors.RasterioError as exc:
            self._cleanup()
            raise self._failure(exc) from None
        except BaseException:
            self._cleanup()
            raise
        return self

    def write(self, window: Window, values: Mapping[str, np.ndarray]) -> None:
        """Write one window; ``values`` maps each band name to a (rows*cols,) or (rows, cols) array."""
        assert self._ds is not None, "use RasterWriter as a context manager"
        shape = (int(window.height), int(window.width))
        block = np.stack([np.asarray(values[name], dtype=np.float32).reshape(shape) for name in self.bands])
        try:
            self._ds.write(block, window=window)
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise self._failure(exc) from None

    def needed_bytes(self) -> int:
        """The most the file can take: its uncompressed size (compression only makes it smaller)."""
        return self.grid.pixels * len(self.bands) * 4

    def _failure(self, exc: BaseException):
        """The one-line error for a failed write, worded from the OS or libtiff's own message."""
        needed = self.needed_bytes()
        try:
            _raise_recorded(self._tiff.messages() if self._tiff else [])
        except OSError as recorded:
            exc = recorded
        return write_failure(self.path, exc, needed, self._tmp, at_most=self.compress != "none")

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
        needed = self.needed_bytes()
        try:
            try:
                ds.close()
            except rasterio.errors.RasterioError as exc:
                raise OSError(errno.EIO, str(exc)) from None
            self._ds = None
            # GDAL closes "successfully" after a failed block write: libtiff's record says otherwise
            _raise_recorded(self._tiff.messages() if self._tiff else [])
            check_and_sync(self._tmp, verify_geotiff)
            self._close_env()
            publish(self._tmp, self.path, self.overwrite)
            self._tmp = None
            fsync_path(self.path.parent)
        except OSError as exc:
            raise write_failure(self.path, exc, needed, self._tmp, at_most=self.compress != "none") from None

    def _cleanup(self) -> None:
        if self._ds is not None:
            try:
                self._ds.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
            self._ds = None
        self._close_env()
        if self._tmp is not None:
            _remove(self._tmp)
            self._tmp = None

    def _close_env(self) -> None:
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None
