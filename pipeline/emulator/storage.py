"""The storage side of the emulator: Drive v3 and Cloud Storage JSON v1, as the Google client calls them.

Drive: ``files.list`` with the ``q`` forms eetrend uses (``'ID' in parents`` with
``'root'`` meaning My Drive's root, ``name =``, ``name contains``, ``mimeType =`` /
``!=``, ``trashed =``, joined by ``and``), page tokens; ``files.get`` for metadata or
``alt=media`` with ``Range`` (206 with Content-Range); ``files.delete``. Folder names
need not be unique, as in Drive. Answers hold only the default fields (kind, id, name,
mimeType) unless ``fields`` asks for more. Files in a shared drive are found only with
``supportsAllDrives=true`` (and listed only with ``includeItemsFromAllDrives=true``).
With ``require_quota_project`` every call without ``x-goog-user-project`` is refused
as Drive refuses user credentials that carry no quota project.

Cloud Storage: ``objects.list`` by prefix with page tokens, ``objects.get`` for
metadata (base64 ``md5Hash`` and ``crc32c``, ``size``) or media with ``Range``,
``objects.delete``. Composite objects carry ``componentCount`` and no ``md5Hash``.

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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .clock import Clock
from .earthengine import EarthEngineService, Operation, declared_nodata
from .expression import band_names
from .http import Request, Response, Router, bearer_required
from .rasters import RasterFactory

FOLDER_MIME = "application/vnd.google-apps.folder"
FAULT_KINDS = ("truncate", "corrupt", "no_content_range", "drop")
ROOT_ID = "0AEmulatorMyDriveRootFolderUk9PVA"  # My Drive's root; Drive accepts the alias 'root' for it
DRIVE_DEFAULT_FIELDS = ("kind", "id", "name", "mimeType")
QUOTA_PROJECT_MESSAGE = (
    "Your application is authenticating by using local Application Default Credentials. The drive.googleapis.com "
    "API requires a quota project, which is not set by default. To learn how to set your quota project, see "
    "https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds ."
)


@dataclass
class StoredFile:
    id: str
    name: str
    content: bytes
    parents: list[str] = field(default_factory=list)
    mime: str = "image/tiff"
    created: str = ""
    shared_drive: str | None = None  # the shared drive's id, for files and folders not in My Drive
    composite: bool = False  # a Cloud Storage composite object: no md5Hash
    modified: str = ""

    @property
    def md5(self) -> bytes:
        return hashlib.md5(self.content).digest()  # noqa: S324 - the checksum Drive and GCS publish

    @property
    def crc32c(self) -> bytes:
        import google_crc32c

        return google_crc32c.value(self.content).to_bytes(4, "big")


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
        self.delay = 0.0  # seconds before every media answer: slow media, to rehearse timeouts and kills

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
        if self.delay:
            time.sleep(self.delay)
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
        self.require_quota_project = False
        self._lock = threading.RLock()
        router.add("GET", r"/drive/v3/files", self._guarded(self._list))
        router.add("GET", r"/drive/v3/files/([^/]+)", self._guarded(self._get))
        router.add("DELETE", r"/drive/v3/files/([^/]+)", self._guarded(self._delete))

    def _guarded(self, handler):
        def check(request: Request) -> Response:
            if self.require_quota_project and not request.headers.get("x-goog-user-project"):
                return Response.error(403, QUOTA_PROJECT_MESSAGE, "forbidden")
            return handler(request)

        return bearer_required(check)

    def add_folder(self, name: str, folder_id: str | None = None, *, shared_drive: str | None = None) -> str:
        """A folder in My Drive's root, or at the top of ``shared_drive`` (names may repeat); returns its id."""
        with self._lock:
            folder_id = folder_id or "1" + uuid.uuid4().hex[:32]
            if folder_id not in self.files:
                parent = shared_drive or ROOT_ID
                self.files[folder_id] = StoredFile(folder_id, name, b"", [parent], FOLDER_MIME,
                                                   self.clock.timestamp(), shared_drive)
            return folder_id

    def add_file(self, folder_id: str, name: str, content: bytes) -> str:
        with self._lock:
            folder_id = ROOT_ID if folder_id == "root" else folder_id
            parent = self.files.get(folder_id)
            shared = parent.shared_drive if parent is not None else None
            file_id = "1" + uuid.uuid4().hex[:32]
            self.files[file_id] = StoredFile(file_id, name, content, [folder_id], "image/tiff",
                                             self.clock.timestamp(), shared)
            if parent is not None:
                parent.modified = self.clock.timestamp()
            return file_id

    def folder_for_export(self, name: str | None) -> str | None:
        """Where Earth Engine writes a Drive export: the root (no folder), the most recently made folder of
        that name, or a new folder of that name in the root (Export.image.toDrive, ``folder``)."""
        if not name:
            return None
        with self._lock:
            named = [f for f in self.files.values() if f.mime == FOLDER_MIME and f.name == name]
        if named:
            return max(named, key=lambda f: (f.modified or f.created, f.created)).id
        return self.add_folder(name)

    def in_folder(self, folder_id: str) -> list[StoredFile]:
        folder_id = ROOT_ID if folder_id == "root" else folder_id
        with self._lock:
            return [f for f in self.files.values() if folder_id in f.parents]

    def _metadata(self, stored: StoredFile) -> dict[str, Any]:
        meta: dict[str, Any] = {"kind": "drive#file", "id": stored.id, "name": stored.name,
                                "mimeType": stored.mime, "parents": stored.parents, "createdTime": stored.created,
                                "modifiedTime": stored.modified or stored.created, "trashed": False}
        if stored.shared_drive:
            meta["driveId"] = stored.shared_drive
        if stored.mime != FOLDER_MIME:
            meta["size"] = str(len(stored.content))
            meta["md5Checksum"] = stored.md5.hex()
        return meta

    def _visible(self, stored: StoredFile | None, request: Request, listing: bool = False) -> bool:
        """Shared-drive items exist for a caller only with supportsAllDrives (and, to list, includeItems...)."""
        if stored is None:
            return False
        if stored.shared_drive is None:
            return True
        if request.query.get("supportsAllDrives") != "true":
            return False
        return not listing or request.query.get("includeItemsFromAllDrives") == "true"

    def _list(self, request: Request) -> Response:
        if request.query.get("includeItemsFromAllDrives") == "true" and \
                request.query.get("supportsAllDrives") != "true":
            return Response.error(403, "The includeItemsFromAllDrives parameter can only be set to true when "
                                       "supportsAllDrives is also set to true.", "teamDrivesParameterNotSupported")
        tests = [_drive_clause(clause) for clause in _split_query(request.query.get("q", ""))]
        size = min(int(request.query.get("pageSize") or 100), self.max_page_size)
        start = int(request.query.get("pageToken") or 0)
        with self._lock:
            matching = [f for f in self.files.values()
                        if self._visible(f, request, listing=True) and all(test(f) for test in tests)]
        page = matching[start:start + size]
        payload: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False,
                                   "files": [self._metadata(f) for f in page]}
        if start + size < len(matching):
            payload["nextPageToken"] = str(start + size)
        fields = request.query.get("fields")
        if fields:
            return Response.json(partial(payload, fields))
        payload["files"] = [{k: f[k] for k in DRIVE_DEFAULT_FIELDS} for f in payload["files"]]
        return Response.json(payload)

    def _get(self, request: Request) -> Response:
        file_id = ROOT_ID if request.match.group(1) == "root" else request.match.group(1)
        stored = self.files.get(file_id)
        if not self._visible(stored, request):
            return Response.error(404, f"File not found: {request.match.group(1)}.", "notFound")
        if request.query.get("alt") == "media":
            return self.media.answer(request, stored)
        meta = self._metadata(stored)
        fields = request.query.get("fields")
        return Response.json(partial(meta, fields) if fields else {k: meta[k] for k in DRIVE_DEFAULT_FIELDS})

    def _delete(self, request: Request) -> Response:
        with self._lock:
            stored = self.files.get(request.match.group(1))
            if not self._visible(stored, request):
                return Response.error(404, f"File not found: {request.match.group(1)}.", "notFound")
            del self.files[request.match.group(1)]
        self.deleted.append(stored.name)
        return Response(204)


def partial(payload: dict[str, Any], fields: str) -> dict[str, Any]:
    """A partial response: only the ``fields`` asked for (``a, b, files(x, y)``, ``files/x``, ``*``)."""
    selection = _parse_fields(fields)
    return _select(payload, selection)


def _parse_fields(text: str) -> dict[str, Any]:
    """``a, b(c, d/e), f/g`` as a nested dict; ``{}`` for a leaf (all of it)."""
    out: dict[str, Any] = {}
    tokens = re.findall(r"[^,()\s]+|[,()]", text)
    stack = [out]
    last: tuple[dict[str, Any], str] | None = None
    for token in tokens:
        if token == ",":
            continue
        if token == "(":
            assert last is not None, f"bad fields {text!r}"
            stack.append(last[0][last[1]])
            continue
        if token == ")":
            stack.pop()
            continue
        node = stack[-1]
        parts = token.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(parts[-1], {})
        last = (node, parts[-1])
    return out


def _select(value: Any, selection: dict[str, Any]) -> Any:
    if not selection or "*" in selection:
        return value
    if isinstance(value, list):
        return [_select(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    return {k: _select(value[k], sub) for k, sub in selection.items() if k in value}


def _split_query(query: str) -> list[str]:
    return [part.strip() for part in re.split(r"\s+and\s+", query.strip()) if part.strip()] if query else []


def _drive_clause(clause: str) -> Callable[[StoredFile], bool]:
    text = r"'((?:[^'\\]|\\.)*)'"
    if m := re.fullmatch(text + r"\s+in\s+parents", clause):
        value = _unescape(m.group(1))
        value = ROOT_ID if value == "root" else value
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

    def add_object(self, bucket: str, name: str, content: bytes, *, composite: bool = False) -> None:
        """Store an object; ``composite`` makes it as objects.compose does (crc32c, no md5Hash)."""
        with self._lock:
            self.buckets.setdefault(bucket, {})[name] = StoredFile(name, name, content, [bucket], "image/tiff",
                                                                   self.clock.timestamp(), composite=composite)

    def _metadata(self, bucket: str, stored: StoredFile) -> dict[str, Any]:
        meta = {"kind": "storage#object", "bucket": bucket, "name": stored.name, "size": str(len(stored.content)),
                "crc32c": base64.b64encode(stored.crc32c).decode(), "contentType": stored.mime,
                "timeCreated": stored.created, "id": f"{bucket}/{stored.name}"}
        if stored.composite:
            meta["componentCount"] = 2
        else:
            meta["md5Hash"] = base64.b64encode(stored.md5).decode()
        return meta

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
        grid = operation.grid or self.rasters.fallback_grid("EPSG:4326", 30.0)
        year = _year(operation.description)
        dims = options.get("geoTiffOptions", {}).get("tileDimensions")
        tile = (int(dims["height"]), int(dims["width"])) if dims else None
        nodata = declared_nodata(body)
        bands = band_names(body.get("expression", {}))
        if "driveDestination" in options:
            destination = options["driveDestination"]
            prefix = destination.get("filenamePrefix") or operation.description
            folder_id = self.drive.folder_for_export(destination.get("folder"))
            operation.extra["drive_folder_id"] = folder_id
            for name, content in self.rasters.files(year, prefix, grid, tile, nodata, bands):
                self.drive.add_file(folder_id or ROOT_ID, name, content)
        else:
            destination = options["cloudStorageDestination"]
            prefix = destination.get("filenamePrefix") or operation.description
            for name, content in self.rasters.files(year, prefix, grid, tile, nodata, bands):
                self.storage.add_object(destination["bucket"], name, content)


def _year(description: str) -> int:
    """The year of an export: eetrend's task descriptions end with it."""
    found = re.findall(r"(?<!\d)((?:19|20)\d{2})(?!\d)", description)
    return int(found[-1]) if found else dt.date.today().year
