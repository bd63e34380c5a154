"""The direct route (``[export] destination = "direct"``): each year fetched as computePixels tiles.

No task queue and no Drive: ``download`` (and ``run``) ask Earth Engine's interactive API
for each year's image (:func:`.sources.year_image`, unmasked as every route sends it,
:func:`.client.unmasked_for_export`) on exactly the grid a batch export of the study
writes (:func:`.grid.study_grid`), one tile at a time:

1. **plan**: the grid cut into ``export.direct_tile`` squares (edge tiles smaller), each
   request within computePixels' documented 48 MB and 32K pixels a side;
2. **fetch**: up to ``export.direct_workers`` requests at once through the official
   client (``ee.data.computePixels``, GEO_TIFF); 429, 5xx and cut connections are retried
   with backoff; a tile answered "User memory limit exceeded", "Computation timed out"
   or a 400 "too large" is split in four and asked again, down to :data:`MIN_TILE`
   pixels a side, and then the year needs attention with Earth Engine's message;
3. **check**: every answer is parsed and its size, bands, type, CRS and transform are
   compared with the window asked for; it is written beside its final name and renamed,
   and recorded (md5) in the manifest's ``direct_tiles``;
4. **assemble**: once every tile of a year is in, ``<prefix>.tif`` is written to a
   temporary in ``paths.downloads``, verified, renamed, and recorded with its md5 like
   any download; ``trend`` and ``run`` read it as they read an exported year.

A killed run leaves its recorded tiles; the next one asks only for the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import Study
from ..errors import AuthError
from ..files.diskio import ensure_folder, fsync_path, verify_geotiff, write_failure
from ..files.leftovers import remove_stale_temporaries
from ..files.outputs import replaced_when_done, temporary_path
from ..lock import holds_study_lock
from ..years import format_years
from . import client as ee_api
from . import manifest as m
from .downloads import DownloadReport, _dataset_on_disk
from .exports import open_manifest, sync
from .grid import PixelGrid, study_grid
from .integrity import md5_of

log = logging.getLogger(__name__)

#: The smallest tile side a split goes down to; a tile this small that still fails fails its year.
MIN_TILE = 32
RETRIES = 6
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
#: Beyond this many requests a study is better served by a batch export ("Direct or batch?" in docs/downloads.md).
WARN_REQUESTS = 1000
#: Earth Engine's answers that a smaller request may pass (deterministic for a given request: never retried as is).
SPLIT_HINTS = ("user memory limit exceeded", "computation timed out", "total request size", "too large")
REMOTE_REF = "computePixels"
DONE, SPLIT = "done", "split"

TileProgress = Callable[[int, int], None]  # (tiles done, tiles in the study so far known)


@dataclass(frozen=True, order=True)
class Window:
    """A rectangle of a year's grid, in pixels: top row, left column, height, width."""

    row: int
    col: int
    height: int
    width: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.row, self.col, self.height, self.width)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def can_split(self) -> bool:
        return max(self.height, self.width) > MIN_TILE

    def quarters(self) -> list[Window]:
        """The window in (up to) four: halves of each side longer than :data:`MIN_TILE`."""
        rows = _halves(self.row, self.height)
        cols = _halves(self.col, self.width)
        return [Window(r, c, h, w) for r, h in rows for c, w in cols]

    def file_name(self) -> str:
        return f"{self.row:06d}-{self.col:06d}-{self.height}x{self.width}.tif"


def _halves(start: int, size: int) -> list[tuple[int, int]]:
    if size <= MIN_TILE:
        return [(start, size)]
    first = (size + 1) // 2
    return [(start, first), (start + first, size - first)]


def plan(grid: PixelGrid, tile: int) -> list[Window]:
    """The grid cut into ``tile`` x ``tile`` windows, row by row (the last row and column smaller)."""
    return [Window(row, col, min(tile, grid.height - row), min(tile, grid.width - col))
            for row in range(0, grid.height, tile) for col in range(0, grid.width, tile)]


def requests_needed(study: Study) -> tuple[int, int]:
    """(tiles a year, requests for every year) of a direct fetch of ``study``, before any split."""
    tiles = len(plan(study_grid(study), study.direct_tile))
    return tiles, tiles * len(study.years)


def size_warning(study: Study) -> str | None:
    """A warning line for a study that would take more than :data:`WARN_REQUESTS` computePixels requests."""
    tiles, total = requests_needed(study)
    if total <= WARN_REQUESTS:
        return None
    return (f"warning: this study takes {total:,} computePixels requests ({tiles:,} tile(s) a year x "
            f"{len(study.years)} years); at that size a batch export (destination = 'drive' or 'gcs') spends less "
            "of Earth Engine's interactive quota, see 'Direct or batch?' in docs/downloads.md")


# -- one tile ---------------------------------------------------------------------------------------
@dataclass
class _Answer:
    """What a worker found for one window."""

    year: int
    window: Window
    kind: str  # done, split, failed, auth, skipped
    message: str = ""
    path: Path | None = None
    size: int = 0
    md5: str = ""
    bands: int = 0
    dtype: str = ""
    transient: bool = False  # failed after retries of 429/5xx: a later run may pass


@dataclass
class _Year:
    """One year being fetched: its image, grid and what is in."""

    year: int
    stem: str
    folder: Path
    image: Any
    fingerprint: str
    grid: PixelGrid
    done: dict[Window, dict[str, Any]] = field(default_factory=dict)
    waiting: set[Window] = field(default_factory=set)
    leaves: int = 0
    shape: tuple[int, str] | None = None  # (bands, dtype) of its first tile: every tile must agree
    failure: str | None = None


def should_split(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in SPLIT_HINTS)


def _retryable(status: int | None, exc: BaseException) -> bool:
    if status is not None:
        return status == 429 or status >= 500 or (status == 403 and "rate" in str(exc).lower())
    return isinstance(exc, (OSError, ConnectionError, TimeoutError))


def check_tile(data: bytes, window: Window, grid: PixelGrid) -> tuple[int, str]:
    """Parse a computePixels answer; its size, CRS and transform must be the window's. Returns (bands, dtype)."""
    from rasterio.crs import CRS
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile

    try:
        with MemoryFile(data) as memory, memory.open() as ds:
            found = (ds.height, ds.width)
            if found != (window.height, window.width):
                raise ValueError(f"{found[0]}x{found[1]} pixels, asked for {window.height}x{window.width}")
            if ds.crs is None or ds.crs != CRS.from_string(grid.crs):
                raise ValueError(f"CRS {ds.crs}, asked for {grid.crs}")
            expected = grid.window_transform(window.row, window.col)
            tolerance = 1e-6 * max(abs(grid.transform[0]), abs(grid.transform[4]))
            if any(abs(a - b) > tolerance for a, b in zip(tuple(ds.transform)[:6], expected, strict=True)):
                raise ValueError(f"transform {tuple(ds.transform)[:6]}, asked for {expected}")
            if ds.count < 1:
                raise ValueError("no band")
            if len(set(ds.dtypes)) != 1:
                raise ValueError(f"bands of different types {ds.dtypes}")
            ds.read()  # every block decodes
            return ds.count, ds.dtypes[0]
    except RasterioError as exc:
        raise ValueError(f"not a readable GeoTIFF ({str(exc).splitlines()[0] if str(exc) else exc})") from None


class _Fetcher:
    """The worker side: one computePixels request per window, checked and written beside its final name."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep
        self.stop = threading.Event()
        self.given_up: set[int] = set()  # years that failed: their queued windows are not asked

    def fetch(self, year: _Year, window: Window) -> _Answer:
        import ee

        delay, reason, mismatched = BACKOFF_FIRST, "", False
        for attempt in range(RETRIES + 1):
            if self.stop.is_set() or year.year in self.given_up:
                return _Answer(year.year, window, "skipped")
            try:
                data = ee.data.computePixels({
                    "expression": year.image, "fileFormat": "GEO_TIFF",
                    "grid": year.grid.rest_grid(window.row, window.col, window.height, window.width)})
            except Exception as exc:  # noqa: BLE001 - ee, googleapiclient and requests errors are classified here
                message = ee_api._first_line(str(exc)) or type(exc).__name__  # noqa: SLF001 - same package
                status = ee_api.http_status(exc)
                if should_split(message):
                    return _Answer(year.year, window, "split", message)
                if ee_api.is_auth_error(message) or status == 401 or type(exc).__name__ == "RefreshError":
                    return _Answer(year.year, window, "auth", message)
                if not _retryable(status, exc):
                    return _Answer(year.year, window, "failed", message)
                reason, mismatched = (f"HTTP {status}: {message}" if status else message), False
            else:
                try:
                    bands, dtype = check_tile(bytes(data), window, year.grid)
                except ValueError as problem:
                    reason, mismatched = f"the answer does not match the window asked for ({problem})", True
                else:
                    return self._write(year, window, bytes(data), bands, dtype)
            if attempt < RETRIES:
                log.info("%s tile %s: %s; asking again in %.0f s", year.year, window.key, reason, delay)
                self.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        if mismatched:  # Earth Engine (or something between) answers another grid: a person must look
            return _Answer(year.year, window, "failed", f"{reason}, {RETRIES + 1} times; nothing of it was kept")
        return _Answer(year.year, window, "failed", f"{reason} (after {RETRIES} retries; run again later: the "
                                                    "tiles already in are kept)", transient=True)

    @staticmethod
    def _write(year: _Year, window: Window, data: bytes, bands: int, dtype: str) -> _Answer:
        import hashlib

        target = year.folder / window.file_name()
        temporary = temporary_path(target)
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:  # a full disk: one line, and the tiles already in stay recorded
            raise write_failure(target, exc, len(data)) from None
        finally:
            temporary.unlink(missing_ok=True)
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the checksum the manifest records for every file
        return _Answer(year.year, window, "done", path=target, size=len(data), md5=md5, bands=bands, dtype=dtype)


# -- a study ----------------------------------------------------------------------------------------
def _prepare(study: Study, manifest: m.Manifest, year: int, grid: PixelGrid, windows: list[Window],
             image: Any) -> _Year:
    """The year's state from the manifest: finished tiles whose files are intact, splits, what is left."""
    stem = PurePosixPath(study.prefix(year)).name
    folder = study.downloads.resolve() / "parts" / f"{stem}.direct"
    fingerprint = study.output_fingerprint(year)
    manifest.forget_tiles(year, fingerprint)
    state = _Year(year, stem, folder, image, fingerprint, grid)
    recorded = {Window(t["row"], t["col"], t["height"], t["width"]): t for t in manifest.tiles(year)}
    visited: set[Window] = set()

    def resolve(window: Window) -> None:
        visited.add(window)
        tile = recorded.get(window)
        if tile is not None and tile["state"] == SPLIT and window.can_split():
            for quarter in window.quarters():
                resolve(quarter)
            return
        state.leaves += 1
        if tile is not None and tile["state"] == DONE and _intact(folder / window.file_name(), tile):
            state.done[window] = tile
        else:
            state.waiting.add(window)

    for window in windows:
        resolve(window)
    stale = [w for w in recorded if w not in visited or (w in state.waiting and recorded[w]["state"] == DONE)]
    for window in stale:  # another tile size, or a file gone or changed: forget it, fetch what is needed
        manifest.forget_tile(year, window.key)
    if folder.is_dir():  # files a killed run renamed but never recorded, or of forgotten tiles
        keep = {w.file_name() for w in state.done}
        for path in folder.iterdir():
            if path.is_file() and path.name not in keep and not path.name.startswith("."):
                path.unlink()
    return state


def _intact(path: Path, tile: dict[str, Any]) -> bool:
    try:
        return path.stat().st_size == tile["size"] and md5_of(path) == tile["md5"]
    except FileNotFoundError:
        return False


@holds_study_lock
def fetch_study(study: Study, *, sleep: Callable[[float], None] = time.sleep,
                progress: TileProgress | None = None) -> DownloadReport:
    """Fetch every year not yet on disk through computePixels (see the module docstring)."""
    from .recipes import region
    from .sources import year_image

    report = DownloadReport()
    remove_stale_temporaries(study.downloads, recursive=True)
    ensure_folder(study.downloads, "paths.downloads")
    warning = size_warning(study)
    if warning:
        report.notes.append(warning)
        log.warning("%s", warning)
    with open_manifest(study) as manifest:
        sync(study, manifest)
        grid = study_grid(study)
        windows = plan(grid, study.direct_tile)
        todo: list[int] = []
        for year in study.years:
            record = manifest.year(year)
            assert record is not None
            if record.state == m.COMPLETED:
                on_disk, _lost = _dataset_on_disk(manifest, study, year, report)
                if on_disk is not None:
                    report.skipped_years.append(year)
                    report.datasets[year] = on_disk
                    continue
            if record.state in (m.FAILED, m.CANCELLED):
                report.failed[year] = _held_text(study, record)
                continue
            todo.append(year)
        if not todo:
            return report
        ee_api.connect(study)
        ee_api.widen_connection_pool(study.config.export.direct_workers)
        area = region(study)  # one geometry for every year's clip, as an export uses
        years = {year: _prepare(study, manifest, year, grid, windows,
                                ee_api.unmasked_for_export(year_image(study, year, area))) for year in todo}
        _fetch_all(study, manifest, years, report, sleep, progress)
    return report


def _fetch_all(study: Study, manifest: m.Manifest, years: dict[int, _Year], report: DownloadReport,
               sleep: Callable[[float], None], progress: TileProgress | None) -> None:
    fetcher = _Fetcher(sleep)
    done = sum(len(y.done) for y in years.values())

    def tell() -> None:
        if progress is not None:
            progress(done, sum(y.leaves for y in years.values()))

    tell()
    fetched = 0
    pool = ThreadPoolExecutor(study.config.export.direct_workers, thread_name_prefix="eetrend-pixels")
    running: set[Future] = set()
    auth: str | None = None
    try:
        for state in years.values():
            if not state.waiting:
                _finish_year(study, manifest, state, report)
                continue
            ensure_folder(state.folder, "paths.downloads")
            manifest.update(state.year, state=m.FETCHING, attempts=max(manifest.year(state.year).attempts, 1))
            running |= {pool.submit(fetcher.fetch, state, w) for w in sorted(state.waiting)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                answer: _Answer = future.result()
                state = years[answer.year]
                if answer.kind == "skipped":
                    continue
                state.waiting.discard(answer.window)
                if answer.kind == "done":
                    problem = _record_done(manifest, state, answer)
                    if problem:
                        _fail_year(manifest, state, report, fetcher, problem)
                        continue
                    done += 1
                    fetched += 1
                elif answer.kind == "split" and answer.window.can_split():
                    manifest.record_tile(state.year, answer.window.key, SPLIT, state.fingerprint,
                                         message=answer.message)
                    log.info("%s tile %s: %s; splitting it in four", state.year, answer.window.key, answer.message)
                    quarters = answer.window.quarters()
                    state.leaves += len(quarters) - 1
                    state.waiting |= set(quarters)
                    running |= {pool.submit(fetcher.fetch, state, w) for w in quarters}
                elif answer.kind == "auth":
                    auth = answer.message
                    fetcher.stop.set()
                elif state.failure is None:
                    _fail_year(manifest, state, report, fetcher, _failure_text(answer), permanent=not answer.transient)
                tell()
                if not state.waiting and state.failure is None and auth is None:
                    _finish_year(study, manifest, state, report)
    finally:
        fetcher.stop.set()
        pool.shutdown(wait=not running, cancel_futures=True)
        if fetched:
            report.notes.append(f"fetched {fetched} tile(s) through computePixels")
    if auth is not None:
        raise AuthError(f"fetching pixels: the credentials were refused ({ee_api._scrub(auth)}); run: "  # noqa: SLF001
                        "earthengine authenticate, or for a service account check that its key is still valid")


def _failure_text(answer: _Answer) -> str:
    window = answer.window
    if answer.kind == "split":
        return (f"Earth Engine answered '{answer.message}' for a tile of {window.height}x{window.width} pixels at "
                f"row {window.row}, column {window.col}, the smallest eetrend splits to; shrink the region, raise "
                "region.scale or shorten composite.months, then run `eetrend export CONFIG --resubmit`")
    return f"computePixels of the tile at row {window.row}, column {window.col}: {answer.message}"


def _record_done(manifest: m.Manifest, state: _Year, answer: _Answer) -> str | None:
    """Record a finished tile; a tile whose bands or type differ from the year's others is a problem."""
    shape = (answer.bands, answer.dtype)
    if state.shape is None:
        state.shape = shape
    elif state.shape != shape:
        return (f"tiles of {state.year} disagree: {shape[0]} band(s) of {shape[1]} at {answer.window.key}, "
                f"{state.shape[0]} of {state.shape[1]} before")
    assert answer.path is not None
    manifest.record_tile(state.year, answer.window.key, DONE, state.fingerprint,
                         path=str(answer.path.relative_to(state.folder.parent.parent)), size=answer.size,
                         md5=answer.md5)
    state.done[answer.window] = {"size": answer.size, "md5": answer.md5}
    total_pixels = state.grid.pixels
    manifest.update(state.year, progress=sum(w.pixels for w in state.done) / total_pixels)
    return None


def _fail_year(manifest: m.Manifest, state: _Year, report: DownloadReport, fetcher: _Fetcher, message: str,
               permanent: bool = True) -> None:
    """Stop asking for a year's tiles. Permanent: FAILED, held until ``--resubmit``; else (429 or 5xx beyond the
    retries) it stays FETCHING and waits for a later run (``run`` exits 75), its tiles kept."""
    state.failure = message
    fetcher.given_up.add(state.year)
    record = manifest.year(state.year)
    assert record is not None
    manifest.add_error(state.year, message, state=m.FAILED if permanent else m.FETCHING,
                       failures=record.failures + 1)
    if permanent:
        report.failed[state.year] = message
    else:
        report.waiting.append(state.year)
        report.notes.append(f"{state.year}: {message}")


def _held_text(study: Study, record: m.YearRecord) -> str:
    message = record.last_error or "stopped"
    if record.state == m.CANCELLED:
        return f"cancelled; run `eetrend export {study.source} --resubmit` to fetch it again"
    return f"{message} (held: run `eetrend export {study.source} --resubmit` once the cause is fixed)"


def _finish_year(study: Study, manifest: m.Manifest, state: _Year, report: DownloadReport) -> None:
    """Assemble a year whose tiles are all in: one verified GeoTIFF under its final name, recorded like a download."""
    import shutil

    root = study.downloads.resolve()
    target = root / f"{state.stem}.tif"
    try:
        _assemble(state, target)
    except ValueError as problem:  # tiles that disagree: forget them all, the next run fetches the year anew
        message = f"assembling {target.name}: {problem}; its tiles were dropped, run again to fetch them anew"
        manifest.forget_tiles(state.year)
        shutil.rmtree(state.folder, ignore_errors=True)
        manifest.add_error(state.year, message, state=m.PENDING)
        report.failed[state.year] = message
        return
    md5, size = md5_of(target), target.stat().st_size
    relative = str(target.relative_to(root))
    manifest.record_file(state.year, target.name, REMOTE_REF, size, md5, relative)
    manifest.record_mtime(state.year, target.name, target.stat().st_mtime_ns)
    manifest.record_dataset(state.year, relative, 1)
    manifest.update(state.year, state=m.COMPLETED, progress=1.0)
    report.datasets[state.year] = target
    report.downloaded.append(target.name)
    report.bytes += size
    shutil.rmtree(state.folder, ignore_errors=True)
    fsync_path(root)


def _assemble(state: _Year, target: Path) -> None:
    """Write every tile of the year into ``target`` (temporary, verified, renamed); nodata is the export's."""
    import rasterio
    from rasterio.windows import Window as RasterWindow

    tiles = sorted(state.done)
    with rasterio.open(state.folder / tiles[0].file_name()) as first:
        bands, dtype, descriptions = first.count, first.dtypes[0], first.descriptions
    grid = state.grid
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": bands, "dtype": dtype,
               "crs": grid.crs, "transform": rasterio.Affine(*grid.transform), "nodata": ee_api.EXPORT_NODATA,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    needed = grid.pixels * bands * 8
    with replaced_when_done(target, verify=verify_geotiff, needed=needed, at_most=True) as temporary:
        with rasterio.open(temporary, "w", **profile) as out:
            for window in tiles:
                with rasterio.open(state.folder / window.file_name()) as tile:
                    if (tile.count, tile.dtypes[0]) != (bands, dtype):
                        raise ValueError(f"tile {window.key} holds {tile.count} band(s) of {tile.dtypes[0]}, the "
                                         f"first {bands} of {dtype}")
                    out.write(tile.read(), window=RasterWindow(window.col, window.row, window.width, window.height))
            for index, text in enumerate(descriptions, start=1):
                if text:
                    out.set_band_description(index, text)
            out.update_tags(eetrend_route="computePixels")


# -- status ------------------------------------------------------------------------------------------
def _leaf_counts(windows: list[Window], recorded: dict[Window, str]) -> tuple[int, int]:
    """(done, planned) tiles under ``windows``, a split window counting its quarters."""
    done = total = 0
    stack = list(windows)
    while stack:
        window = stack.pop()
        if recorded.get(window) == SPLIT and window.can_split():
            stack.extend(window.quarters())
            continue
        total += 1
        done += recorded.get(window) == DONE
    return done, total


def tile_counts(study: Study) -> dict[int, tuple[int, int]]:
    """(tiles done, tiles planned) of each year, from the manifest alone (no request): splits count their four."""
    windows = plan(study_grid(study), study.direct_tile)
    if not study.manifest_path.exists():  # nothing fetched yet: say what would be, without creating state
        return {year: (0, len(windows)) for year in study.years}
    counts = {}
    with m.Manifest(study.manifest_path) as manifest:
        records = manifest.years()
        for year in study.years:
            recorded = {Window(t["row"], t["col"], t["height"], t["width"]): t["state"] for t in manifest.tiles(year)}
            done, total = _leaf_counts(windows, recorded)
            record = records.get(year)
            counts[year] = (total if record is not None and record.state == m.COMPLETED else done, total)
    return counts


def describe_plan(study: Study) -> list[str]:
    """What ``export`` says for a direct study: nothing to submit, and what ``download`` will ask for."""
    tiles, total = requests_needed(study)
    grid = study_grid(study)
    lines = [f"destination = 'direct': nothing to submit; `eetrend download` (or run) fetches each year through "
             f"computePixels: {tiles} tile(s) of at most {study.direct_tile} x {study.direct_tile} pixels a year "
             f"over a {grid.width} x {grid.height} grid, {total} request(s) for {format_years(study.years)}"]
    warning = size_warning(study)
    if warning:
        lines.append(warning)
    return lines

