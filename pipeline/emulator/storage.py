"""The storage side of the emulator: Drive v3 and Cloud Storage JSON v1, as the Google client calls them.

Drive: ``files.list`` with the ``q`` forms eetrend uses (``'ID' in parents``, ``name =``,
``name contains``, ``mimeType =`` / ``!=``, ``trashed =``, joined by ``and``), page
tokens; ``files.get`` for metadata or ``alt=media`` with ``Range`` (206 with
Content-Range); ``files.delete``. Folder names need not be unique, as in Drive.

Cloud Storage: ``objects.list`` by prefix with page tokens, ``objects.get`` for
metadata (base64 ``md5Hash``, ``size``) or media with ``Range``, ``objects.delete``.

Content faults, matched by file name: a truncated body, a corrupted body, a 206 without
Content-Range (which makes a naive client stop early), and a connection dropped half
way through a body.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .clock import Clock
from .earthengine import EarthEngineService, Operation, drive_folder_id
from .http import Request, Response, Router, bearer_required
from .rasters import RasterFactory

FOLDER_MIME = "application/vnd.google-apps.folder"
FAULT_KINDS = ("truncate", "corrupt", "no_content_range", "drop")


@dataclass
class StoredFile:
    id: str
    name: str
    content: bytes
    parents: list[str] = field(default_factory=list)
    mime: str = "image/tiff"
    created: str = ""

    @property
    def md5(self) -> bytes:
        return hashlib.md5(self.content).digest()  # noqa: S324 - the checksum Drive and GCS publish


@dataclass
class ContentFault:
    """Spoil the next ``times`` media answers for files whose name contains ``match``."""

    kind: str
    match: str
    times: int = 1
    hits: int = 0


class _Media:
    """Media answers with Range support and content faults (shared by Drive and Cloud Storage)."""

    def __init__(self) -> None:
        self.faults: list[ContentFault] = []
        self.lock = threading.Lock()

    def fault(self, kind: str, match: str, times: int = 1) -> ContentFault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown content fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        fault = ContentFault(kind, match, times)
        with self.lock:
            self.faults.append(fault)
        return fault

    def _take(self, name: str) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match in name:
                    fault.times -= 1
                    fault.hits += 1
                    return fault.kind
        return None

    def answer(self, request: Request, stored: StoredFile) -> Response:
        content = stored.content
        size = len(content)
        status, start, end = 200, 0, size - 1
        header = request.headers.get("range")
        if header:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
            if not match:
                return Response.error(416, f"bad Range header {header!r}")
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
            if start >= size:
                return Response(416, b"", {"Content-Range": f"bytes */{size}"})
            status = 206
        body = content[start:end + 1]
        headers = {"Content-Type": stored.mime}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        kind = self._take(stored.name)
        if kind == "truncate":
            body = body[: max(len(body) // 2, 1)]
            headers.pop("Content-Range", None)
            status = 200
        elif kind == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:] if body else body
        elif kind == "no_content_range":
            headers.pop("Content-Range", None)
        elif kind == "drop":
            return Response(status, body, headers, drop_after=max(len(body) // 2, 1))
        return Response(status, body, headers)


class DriveService:
    """Drive v3 at ``/drive/v3/``."""

    def __init__(self, router: Router, clock: Clock) -> None:
        self.clock = clock
        self.files: dict[str, StoredFile] = {}
        self.media = _Media()
        self.max_page_size = 100
        self.deleted: list[str] = []
        self._lock = threading.RLock()
        router.add("GET", r"/drive/v3/files", bearer_required(self._list))
        router.add("GET", r"/drive/v3/files/([^/]+)", bearer_required(self._get))
        router.add("DELETE", r"/drive/v3/files/([^/]+)", bearer_required(self._delete))

    def add_folder(self, name: str, folder_id: str | None = None) -> str:
        """A folder (names may repeat, as in Drive); returns its id."""
        with self._lock:
            folder_id = folder_id or "1" + uuid.uuid4().hex[:32]
            if folder_id not in self.files:
                self.files[folder_id] = StoredFile(folder_id, name, b"", [], FOLDER_MIME, self.clock.timestamp())
            return folder_id

    def add_file(self, folder_id: str, name: str, content: bytes) -> str:
        with self._lock:
            file_id = "1" + uuid.uuid4().hex[:32]
            self.files[file_id] = StoredFile(file_id, name, content, [folder_id], "image/tiff", self.clock.timestamp())
            return file_id

    def in_folder(self, folder_id: str) -> list[StoredFile]:
        with self._lock:
            return [f for f in self.files.values() if folder_id in f.parents]

    def _metadata(self, stored: StoredFile) -> dict[str, Any]:
        meta: dict[str, Any] = {"kind": "drive#file", "id": stored.id, "name": stored.name,
                                "mimeType": stored.mime, "parents": stored.parents, "createdTime": stored.created}
        if stored.mime != FOLDER_MIME:
            meta["size"] = str(len(stored.content))
            meta["md5Checksum"] = stored.md5.hex()
        return meta

    def _list(self, request: Request) -> Response:
        tests = [_drive_clause(clause) for clause in _split_query(request.query.get("q", ""))]
        size = min(int(request.query.get("pageSize") or 100), self.max_page_size)
        start = int(request.query.get("pageToken") or 0)
        with self._lock:
            matching = [f for f in self.files.values() if all(test(f) for test in tests)]
        page = matching[start:start + size]
        payload: dict[str, Any] = {"kind": "drive#fileList", "files": [self._metadata(f) for f in page]}
        if start + size < len(matching):
            payload["nextPageToken"] = str(start + size)
        return Response.json(payload)

    def _get(self, request: Request) -> Response:
        stored = self.files.get(request.match.group(1))
        if stored is None:
            return Response.error(404, f"File not found: {request.match.group(1)}.", "notFound")
        if request.query.get("alt") == "media":
            return self.media.answer(request, stored)
        return Response.json(self._metadata(stored))

    def _delete(self, request: Request) -> Response:
        with self._lock:
            stored = self.files.pop(request.match.group(1), None)
        if stored is None:
            return Response.error(404, f"File not found: {request.match.group(1)}.", "notFound")
        self.deleted.append(stored.name)
        return Response(204)


def _split_query(query: str) -> list[str]:
    return [part.strip() for part in re.split(r"\s+and\s+", query.strip()) if part.strip()] if query else []


def _drive_clause(clause: str) -> Callable[[StoredFile], bool]:
    text = r"'((?:[^'\\]|\\.)*)'"
    if m := re.fullmatch(text + r"\s+in\s+parents", clause):
        value = _unescape(m.group(1))
        return lambda f: value in f.parents
    if m := re.fullmatch(r"name\s*=\s*" + text, clause):
        value = _unescape(m.group(1))
        return lambda f: f.name == value
    if m := re.fullmatch(r"name\s+contains\s+" + text, clause):
        value = _unescape(m.group(1))
        return lambda f: value in f.name
    if m := re.fullmatch(r"mimeType\s*(=|!=)\s*" + text, clause):
        value, equal = _unescape(m.group(2)), m.group(1) == "="
        return lambda f: (f.mime == value) == equal
    if m := re.fullmatch(r"trashed\s*=\s*(true|false)", clause):
        return lambda f: m.group(1) == "false"
    raise ValueError(f"the emulator does not understand the Drive query clause {clause!r}")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


class StorageService:
    """Cloud Storage JSON v1 at ``/storage/v1/``."""

    def __init__(self, router: Router, clock: Clock) -> None:
        self.clock = clock
        self.buckets: dict[str, dict[str, StoredFile]] = {}
        self.media = _Media()
        self.max_page_size = 1000
        self.deleted: list[str] = []
        self._lock = threading.RLock()
        router.add("GET", r"/storage/v1/b/([^/]+)/o", bearer_required(self._list))
        router.add("GET", r"/storage/v1/b/([^/]+)/o/(.+)", bearer_required(self._get))
        router.add("DELETE", r"/storage/v1/b/([^/]+)/o/(.+)", bearer_required(self._delete))

    def add_object(self, bucket: str, name: str, content: bytes) -> None:
        with self._lock:
            self.buckets.setdefault(bucket, {})[name] = StoredFile(name, name, content, [bucket], "image/tiff",
                                                                   self.clock.timestamp())

    def _metadata(self, bucket: str, stored: StoredFile) -> dict[str, Any]:
        return {"kind": "storage#object", "bucket": bucket, "name": stored.name, "size": str(len(stored.content)),
                "md5Hash": base64.b64encode(stored.md5).decode(), "contentType": stored.mime,
                "timeCreated": stored.created, "id": f"{bucket}/{stored.name}"}

    def _list(self, request: Request) -> Response:
        bucket = request.match.group(1)
        if bucket not in self.buckets:
            return Response.error(404, f"The specified bucket does not exist: {bucket}.", "notFound")
        prefix = request.query.get("prefix", "")
        size = min(int(request.query.get("maxResults") or 1000), self.max_page_size)
        start = int(request.query.get("pageToken") or 0)
        with self._lock:
            names = sorted(n for n in self.buckets[bucket] if n.startswith(prefix))
            page = [self._metadata(bucket, self.buckets[bucket][n]) for n in names[start:start + size]]
        payload: dict[str, Any] = {"kind": "storage#objects", "items": page}
        if start + size < len(names):
            payload["nextPageToken"] = str(start + size)
        return Response.json(payload)

    def _find(self, request: Request) -> tuple[str, str, StoredFile | None]:
        bucket, name = request.match.group(1), unquote(request.match.group(2))
        return bucket, name, self.buckets.get(bucket, {}).get(name)

    def _get(self, request: Request) -> Response:
        bucket, name, stored = self._find(request)
        if stored is None:
            return Response.error(404, f"No such object: {bucket}/{name}", "notFound")
        if request.query.get("alt") == "media":
            return self.media.answer(request, stored)
        return Response.json(self._metadata(bucket, stored))

    def _delete(self, request: Request) -> Response:
        bucket, name, stored = self._find(request)
        if stored is None:
            return Response.error(404, f"No such object: {bucket}/{name}", "notFound")
        with self._lock:
            del self.buckets[bucket][name]
        self.deleted.append(name)
        return Response(204)


class ExportWriter:
    """Puts each finished export's files into the emulated Drive or bucket."""

    def __init__(self, earthengine: EarthEngineService, drive: DriveService, storage: StorageService,
                 rasters: RasterFactory) -> None:
        self.drive, self.storage, self.rasters = drive, storage, rasters
        earthengine.on_succeeded.append(self.write)

    def write(self, operation: Operation) -> None:
        body = operation.body
        options = body.get("fileExportOptions", {})
        crs, scale = _grid(body.get("expression", {}))
        year = _year(operation.description)
        dims = options.get("geoTiffOptions", {}).get("tileDimensions")
        tile = (int(dims["height"]), int(dims["width"])) if dims else None
        counts = "clear_count" in str(body.get("expression", {}))  # the recipe's with_count_band
        if "driveDestination" in options:
            destination = options["driveDestination"]
            folder = destination.get("folder") or "root"
            folder_id = self.drive.add_folder(folder, drive_folder_id(folder))
            for name, content in self.rasters.files(year, destination["filenamePrefix"], crs, scale, tile, counts):
                self.drive.add_file(folder_id, name, content)
        else:
            destination = options["cloudStorageDestination"]
            for name, content in self.rasters.files(year, destination["filenamePrefix"], crs, scale, tile, counts):
                self.storage.add_object(destination["bucket"], name, content)


def _grid(expression: dict[str, Any]) -> tuple[str, float]:
    """CRS and scale from the export's ``clipToBoundsAndScale(setDefaultProjection(...))``."""
    crs, scale = "EPSG:4326", 30.0
    text = str(expression)
    if m := re.search(r"'crs': \{'constantValue': '(EPSG:\d+)'\}\}\}\}, 'crsTransform'", text):
        crs = m.group(1)
    if m := re.search(r"'scale': \{'constantValue': ([0-9.eE+-]+)\}", text):
        scale = float(m.group(1))
    return crs, scale


def _year(description: str) -> int:
    """The year of an export: eetrend's task descriptions end with it."""
    found = re.findall(r"(?<!\d)((?:19|20)\d{2})(?!\d)", description)
    return int(found[-1]) if found else dt.date.today().year
