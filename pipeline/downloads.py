"""``eetrend download``: fetch every finished year's files, prove each complete, one dataset per year.

For each year whose task COMPLETED and whose dataset is not yet on disk:

1. list its files (Drive: the folder id from the task's destination URIs, else every
   folder of the configured name; Cloud Storage: bucket and prefix);
2. fetch each file in ranged chunks into ``.NAME.<md5>.partial`` (a run that stops
   resumes from the bytes on disk), then check size and md5 against the remote
   metadata; a mismatch is fetched again, a bounded number of times, and never renamed;
3. rename verified files to their final name, record them (with md5) in the manifest;
4. one file is the year's dataset; split tiles get a VRT mosaic beside them;
5. with ``delete_remote``, delete each remote file after its local copy was verified.

Chunks answered 429, 403 rate-limit, 5xx, or cut off mid-body are retried with backoff.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import earthengine as ee_api
from . import manifest as m
from .config import Study
from .diskio import STATE_ROOM, ensure_folder, existing_ancestor, free_bytes, fsync_path, human_bytes, write_failure
from .errors import AuthError, DiskFullError, EetrendError
from .exports import open_manifest, refresh
from .mosaic import missing_tiles, write_vrt
from .remote import RemoteFile, is_safe_name, open_store
from .years import format_years

log = logging.getLogger(__name__)

CHUNK_SIZE = 8 * 1024 * 1024
CHUNK_RETRIES = 6
FILE_ATTEMPTS = 3
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
_RATE_LIMIT_REASONS = (b"rateLimitExceeded", b"userRateLimitExceeded")

Progress = Callable[[int, int], None]  # (bytes just received, total bytes of this run so far known)


class DownloadError(EetrendError):
    """A file that could not be fetched or verified; the message names it and the fix."""


@dataclass
class DownloadReport:
    downloaded: list[str] = field(default_factory=list)
    bytes: int = 0
    skipped_years: list[int] = field(default_factory=list)
    datasets: dict[int, Path] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deleted_remote: int = 0

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.downloaded:
            out.append(f"downloaded and verified {len(self.downloaded)} file(s), {self.bytes / 1e6:.1f} MB")
        new = sorted(set(self.datasets) - set(self.skipped_years))
        if new:
            out.append(f"ready for the trend: {format_years(new)}")
        if self.skipped_years:
            out.append(f"already downloaded and verified: {format_years(self.skipped_years)}")
        if self.deleted_remote:
            out.append(f"deleted {self.deleted_remote} remote file(s) after verifying the local copies")
        if self.waiting:
            out.append(f"not finished on Earth Engine yet: {format_years(self.waiting)}")
        for year, message in sorted(self.failed.items()):
            out.append(f"{year} failed: {message}")
        return out or ["nothing to download"]


# -- one file ---------------------------------------------------------------------------------------
def fetch_file(request: Any, remote: RemoteFile, target: Path, *, chunk_size: int = CHUNK_SIZE,
               sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None) -> None:
    """Fetch ``remote`` to ``target`` in ranged chunks, resuming a partial; verified or nothing."""
    partial = target.with_name(f".{target.name}.{remote.md5[:16]}.partial")
    for stale in target.parent.glob(f".{target.name}.*.partial"):
        if stale != partial:
            stale.unlink()
    problem = ""
    for _attempt in range(FILE_ATTEMPTS):
        digest, offset = _resume(partial, remote.size)
        _check_room(target, remote.size - offset, partial)
        try:
            with open(partial, "ab") as handle:
                while offset < remote.size:
                    end = min(offset + chunk_size, remote.size) - 1
                    data = _fetch_range(request, remote, offset, end, sleep)
                    if not data:
                        break
                    handle.write(data)
                    digest.update(data)
                    offset += len(data)
                    if progress:
                        progress(len(data), remote.size)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # a full disk, a file size limit: the partial is cut at an unknown byte
            partial.unlink(missing_ok=True)
            raise write_failure(target, exc, remote.size) from None
        if offset == remote.size and digest.hexdigest() == remote.md5:
            os.replace(partial, target)
            fsync_path(target.parent)  # the rename itself survives a crash
            return
        problem = f"got {offset} of {remote.size} bytes" if offset != remote.size else "md5 differs from the remote's"
        log.warning("%s failed verification (%s); fetching it again", remote.name, problem)
        partial.unlink(missing_ok=True)
    raise DownloadError(f"{remote.name} failed verification {FILE_ATTEMPTS} times ({problem}); the remote copy may "
                        "be damaged: check it in the browser, or export the year again")


def _check_room(target: Path, remaining: int, partial: Path) -> None:
    """Refuse to start a file the disk cannot hold (a precise size is known from the remote listing).

    STATE_ROOM is kept free as well: the manifest, often on the same disk, must still record the file.
    """
    free = free_bytes(target.parent)
    if free is not None and free < remaining + STATE_ROOM:
        if not partial.exists() or partial.stat().st_size == 0:
            partial.unlink(missing_ok=True)
        raise DiskFullError(f"no space left to download {target}: it needs {human_bytes(remaining)} more, "
                            f"{human_bytes(free)} free on {existing_ancestor(target.parent)}; free some space or "
                            "move paths.downloads (the download resumes where it stopped)")


def _resume(partial: Path, size: int) -> tuple[Any, int]:
    digest = hashlib.md5()  # noqa: S324 - the checksum Drive and Cloud Storage publish
    if not partial.exists():
        return digest, 0
    if partial.stat().st_size > size:
        partial.unlink()
        return digest, 0
    with open(partial, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest, partial.stat().st_size


def _fetch_range(request: Any, remote: RemoteFile, start: int, end: int, sleep: Callable[[float], None]) -> bytes:
    """One chunk; retries rate limits, server errors and cut connections with backoff."""
    import httplib2

    delay = BACKOFF_FIRST
    for attempt in range(CHUNK_RETRIES + 1):
        try:
            response, content = request.http.request(request.uri, method="GET",
                                                     headers={"range": f"bytes={start}-{end}"})
        except (OSError, http.client.HTTPException, httplib2.HttpLib2Error) as exc:
            status, reason = None, f"connection lost ({type(exc).__name__})"
        else:
            status = int(response.status)
            if status == 206:
                content_range = response.get("content-range", "")
                if content_range and not content_range.startswith(f"bytes {start}-"):
                    raise DownloadError(f"{remote.name}: asked for bytes {start}-{end}, got {content_range}")
                return content[: end - start + 1]
            if status == 200:  # the server ignored the range and sent the whole body
                return content[start:end + 1]
            if status == 404:
                raise DownloadError(f"{remote.name} is gone from the remote (404); it was deleted or moved: "
                                    "export the year again")
            if status == 416:
                return b""
            rate_limited = status == 403 and any(r in content for r in _RATE_LIMIT_REASONS)
            if status in (401, 403) and not rate_limited:
                raise DownloadError(f"{remote.name}: permission denied ({status}); the credentials need read access "
                                    "to the folder or bucket (Drive scope, or Storage Object Viewer)")
            if not (rate_limited or status == 429 or status >= 500):
                raise DownloadError(f"{remote.name}: the remote answered {status}")
            reason = f"HTTP {status}"
        if attempt == CHUNK_RETRIES:
            raise DownloadError(f"{remote.name}: {reason} after {CHUNK_RETRIES} retries; run download again later "
                                "(it resumes from the bytes already on disk)")
        log.info("%s: %s; retrying in %.0f s", remote.name, reason, delay)
        sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)
    return b""


# -- a study ----------------------------------------------------------------------------------------
def download_study(study: Study, *, delete_remote: bool | None = None, chunk_size: int = CHUNK_SIZE,
                   sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None) -> DownloadReport:
    """Download every finished year not yet on disk (see the module docstring)."""
    delete = study.config.export.delete_remote if delete_remote is None else delete_remote
    report = DownloadReport()
    with open_manifest(study) as manifest:
        records = manifest.years()
        if any(r.state in m.ACTIVE for r in records.values()):
            refresh(study, manifest)
            records = manifest.years()
        store = None
        for year in study.years:
            record = records.get(year)
            if record is None or record.state != m.COMPLETED:
                report.waiting.append(year)
                continue
            on_disk = _dataset_on_disk(manifest, study, year)
            if on_disk is not None:
                report.skipped_years.append(year)
                report.datasets[year] = on_disk
                continue
            if store is None:
                store = open_store(study, ee_api.load_credentials(study))
            try:
                report.datasets[year] = _download_year(study, manifest, store, record, report, delete=delete,
                                                       chunk_size=chunk_size, sleep=sleep, progress=progress)
            except DownloadError as exc:
                report.failed[year] = str(exc)
            except EetrendError:
                raise
            except Exception as exc:  # noqa: BLE001 - client and auth errors become one line per year
                error = ee_api.translate(exc, f"listing the files of {year}")
                if isinstance(error, AuthError):
                    raise error from None
                report.failed[year] = str(error)
    return report


def _dataset_on_disk(manifest: m.Manifest, study: Study, year: int) -> Path | None:
    """The year's recorded dataset, if it and every verified file under it are still on disk."""
    dataset = manifest.dataset(year)
    if dataset is None or not (study.downloads / dataset["path"]).exists():
        return None
    for recorded in manifest.files(year).values():
        local = study.downloads / recorded["local_path"]
        if not local.exists() or local.stat().st_size != recorded["size"]:
            return None
    return study.downloads / dataset["path"]


def _download_year(study: Study, manifest: m.Manifest, store: Any, record: m.YearRecord, report: DownloadReport, *,
                   delete: bool, chunk_size: int, sleep: Callable[[float], None],
                   progress: Progress | None) -> Path:
    year = record.year
    prefix = study.prefix(year)
    stem = PurePosixPath(prefix).name
    listing = store.find(prefix, record.destination_uris)
    report.notes.extend(f"{year}: {note}" for note in listing.notes)
    if not listing.files:
        raise DownloadError(f"no file named {stem}.tif or {stem}-*.tif at the destination; was it moved, renamed "
                            "or deleted? check the Drive folder or bucket, or export the year again")
    names = [f.name for f in listing.files]
    split = len(names) > 1 or names[0] != f"{stem}.tif"
    absent = missing_tiles(year, stem, names) if split else []
    if absent:
        raise DownloadError(f"split export is missing tile {absent[0]}" + (f" and {len(absent) - 1} more"
                            if len(absent) > 1 else "") + "; export the year again")
    root = study.downloads.resolve()
    folder = (root / "parts" / stem) if split else root
    ensure_folder(folder, "paths.downloads")
    known = manifest.files(year)
    local_paths = []
    for remote in listing.files:
        if not is_safe_name(remote.name):  # select() already refused these; never write one regardless
            raise DownloadError(f"refused to write the remote name {remote.name!r}")
        target = (folder / remote.name).resolve()
        if not target.is_relative_to(root):
            raise DownloadError(f"refused to write {remote.name!r} outside {root}")
        local_paths.append(target)
        seen = known.get(remote.name)
        if seen and seen["md5"] == remote.md5 and target.exists() and target.stat().st_size == remote.size:
            continue
        fetch_file(store.media(remote), remote, target, chunk_size=chunk_size, sleep=sleep, progress=progress)
        manifest.record_file(year, remote.name, remote.ref, remote.size, remote.md5, str(target.relative_to(root)))
        report.downloaded.append(remote.name)
        report.bytes += remote.size
    if split:
        dataset = root / f"{stem}.vrt"
        write_vrt(dataset, year, local_paths)
    else:
        dataset = local_paths[0]
    manifest.record_dataset(year, str(dataset.relative_to(root)), len(local_paths))
    if delete:
        for remote in listing.files:
            store.delete(remote)
            manifest.mark_remote_deleted(year, remote.name)
            report.deleted_remote += 1
    return dataset
