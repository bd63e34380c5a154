"""``eetrend download``: fetch every finished year's files, prove each complete, one dataset per year.

For each year whose task COMPLETED and whose dataset is not yet on disk:

1. list its files (Drive: the folder id from the task's destination URIs, else every
   folder of the configured name, or the Drive root when no folder is set; Cloud
   Storage: bucket and prefix);
2. fetch each file in ranged chunks into ``.NAME.<checksum>.partial`` (a run that stops
   resumes from the bytes on disk), then check size and md5 (crc32c for a Cloud Storage
   composite object, which has no md5) against the remote metadata; a mismatch is
   fetched again, a bounded number of times, and never renamed;
3. rename verified files to their final name, record them (with md5) in the manifest;
4. one file is the year's dataset; split tiles get a VRT mosaic beside them;
5. with ``delete_remote``, delete each remote file after its local copy was verified.

Chunks answered 429, 403 rate-limit, 5xx, or cut off mid-body are retried with backoff.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import Study
from ..engine.mosaic import missing_tiles, write_vrt
from ..errors import AuthError, DiskFullError, EetrendError
from ..files.diskio import (
    STATE_ROOM,
    ensure_folder,
    existing_ancestor,
    free_bytes,
    fsync_path,
    human_bytes,
    write_failure,
)
from ..files.leftovers import remove_finished_partials, remove_stale_temporaries
from ..lock import holds_study_lock
from . import client as ee_api
from . import manifest as m
from .exports import open_manifest, refresh
from .integrity import check_file, redo_hint
from .on_disk import DownloadReport, dataset_on_disk
from .remote import RemoteFile, is_safe_name, open_store, quota_project_fix

log = logging.getLogger(__name__)

CHUNK_SIZE = 8 * 1024 * 1024
CHUNK_RETRIES = 6
FILE_ATTEMPTS = 3
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
_RATE_LIMIT_REASONS = (b"rateLimitExceeded", b"userRateLimitExceeded")

Progress = Callable[[int, int], None]  # (bytes just received, total bytes of this run so far known)


class DownloadError(EetrendError):
    """A file that could not be fetched or verified; the message names it and the fix.

    ``redo``: only exporting the year again can fix it (the remote copy is gone).
    """

    def __init__(self, message: str, *, redo: bool = False) -> None:
        super().__init__(message)
        self.redo = redo


# -- one file ---------------------------------------------------------------------------------------
class _Digests:
    """md5 (always: the manifest records it) and crc32c (when the remote has no md5) of the bytes so far."""

    def __init__(self) -> None:
        import google_crc32c

        self.md5 = hashlib.md5()  # noqa: S324 - the checksum Drive and Cloud Storage publish
        self.crc32c = google_crc32c.Checksum()

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        self.crc32c.update(data)

    def matches(self, remote: RemoteFile) -> bool:
        if remote.md5:
            return self.md5.hexdigest() == remote.md5
        return bool(remote.crc32c) and self.crc32c.digest().hex() == remote.crc32c


def fetch_file(request: Any, remote: RemoteFile, target: Path, *, chunk_size: int = CHUNK_SIZE,
               sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None) -> str:
    """Fetch ``remote`` to ``target`` in ranged chunks, resuming a partial; verified or nothing.

    Returns the md5 (hex) of the verified file.
    """
    partial = target.with_name(f".{target.name}.{remote.checksum[:16]}.partial")
    for stale in target.parent.glob(f".{target.name}.*.partial"):
        if stale != partial:
            stale.unlink()
    problem = ""
    for _attempt in range(FILE_ATTEMPTS):
        try:
            with open(partial, "ab") as handle:
                _exclusive(handle, remote.name)
                digest, offset = _resume(partial, handle, remote.size)
                _check_room(target, remote.size - offset, partial)
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
                on_disk = os.fstat(handle.fileno()).st_size
                if on_disk == offset == remote.size and digest.matches(remote):
                    os.replace(partial, target)
                    fsync_path(target.parent)  # the rename itself survives a crash
                    return digest.md5.hexdigest()
        except OSError as exc:  # a full disk, a file size limit: the partial is cut at an unknown byte
            partial.unlink(missing_ok=True)
            raise write_failure(target, exc, remote.size) from None
        if on_disk != offset:  # never rename bytes this process did not verify
            problem = f"the partial file holds {on_disk} bytes but {offset} were received"
        elif offset != remote.size:
            problem = f"got {offset} of {remote.size} bytes"
        else:
            problem = f"{'md5' if remote.md5 else 'crc32c'} differs from the remote's"
        log.warning("%s failed verification (%s); fetching it again", remote.name, problem)
        partial.unlink(missing_ok=True)
    raise DownloadError(f"{remote.name} failed verification {FILE_ATTEMPTS} times ({problem}); the remote copy may "
                        "be damaged: check it in the browser, or export the year again")


def _exclusive(handle: Any, name: str) -> None:
    """Hold the partial file alone: a second writer would append the same bytes again."""
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DownloadError(f"{name} is being downloaded by another process; let it finish, then run download "
                            "again") from None


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


def _local_digests(path: Path) -> _Digests:
    digest = _Digests()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def _resume(partial: Path, handle: Any, size: int) -> tuple[_Digests, int]:
    """The digests so far and the offset to resume at, from the bytes already in ``partial`` (open in ``handle``)."""
    digest = _Digests()
    have = os.fstat(handle.fileno()).st_size
    if have > size:
        os.ftruncate(handle.fileno(), 0)
        return digest, 0
    with open(partial, "rb") as reader:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
    return digest, have


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
                                    "export the year again", redo=True)
            if status == 416:
                return b""
            rate_limited = status == 403 and any(r in content for r in _RATE_LIMIT_REASONS)
            quota_fix = quota_project_fix(content.decode("utf-8", "replace"), None) if status == 403 else None
            if quota_fix:
                raise DownloadError(f"{remote.name}: {quota_fix}")
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
@holds_study_lock
def download_study(study: Study, *, delete_remote: bool | None = None, chunk_size: int = CHUNK_SIZE,
                   sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None,
                   tile_progress: Callable[[int, int], None] | None = None) -> DownloadReport:
    """Download every finished year not yet on disk (see the module docstring).

    With ``export.destination = "direct"`` the years are fetched through computePixels instead
    (:func:`.direct.fetch_study`); ``tile_progress`` then counts tiles (done, total).
    """
    from ..checks import require_runnable

    require_runnable(study)
    if study.config.export.destination == "direct":
        from .direct import fetch_study

        return fetch_study(study, sleep=sleep, progress=tile_progress)
    delete = study.config.export.delete_remote if delete_remote is None else delete_remote
    report = DownloadReport()
    remove_stale_temporaries(study.downloads, recursive=True)
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
            on_disk, lost = dataset_on_disk(manifest, study, year, report)
            if on_disk is not None:
                report.skipped_years.append(year)
                report.datasets[year] = on_disk
                continue
            if lost:
                report.failed[year] = (f"{lost} and its remote copy was deleted after download; export the year "
                                       f"again: {redo_hint(study, year)}")
                continue
            if store is None:
                store = open_store(study, ee_api.load_credentials(study))
            try:
                report.datasets[year] = _download_year(study, manifest, store, record, report, delete=delete,
                                                       chunk_size=chunk_size, sleep=sleep, progress=progress)
            except DownloadError as exc:
                report.failed[year] = f"{exc} ({redo_hint(study, year)})" if exc.redo else str(exc)
            except EetrendError:
                raise
            except Exception as exc:  # noqa: BLE001 - client and auth errors become one line per year
                fix = quota_project_fix(str(exc), study.config.earthengine.project)
                if fix:
                    raise AuthError(f"listing the files of {year}: {fix}") from None
                error = ee_api.translate(exc, f"listing the files of {year}")
                if isinstance(error, AuthError):
                    raise error from None
                report.failed[year] = str(error)
        finished = {(study.downloads / f["local_path"]).resolve() for f in manifest.all_files()}
    remove_finished_partials(study.downloads, finished)
    return report


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
                            "or deleted? check the Drive folder or bucket, or export the year again", redo=True)
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
        if seen and target.exists() and target.stat().st_size == remote.size and \
                (seen["md5"] == remote.md5 if remote.md5 else _local_digests(target).matches(remote)) and \
                check_file(study, manifest, seen).ok:
            continue
        md5 = fetch_file(store.media(remote), remote, target, chunk_size=chunk_size, sleep=sleep, progress=progress)
        manifest.record_file(year, remote.name, remote.ref, remote.size, md5, str(target.relative_to(root)))
        manifest.record_mtime(year, remote.name, target.stat().st_mtime_ns)
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
