"""The Earth Engine side of the emulator: REST v1 as ``earthengine-api`` calls it.

Served: the discovery document, the algorithm list (the ee wheel's 991 real
signatures), ``image:export``, operations get / list (newest first, with page tokens) /
cancel, a ``value:compute`` that evaluates constants, asset look-ups and listings
(:mod:`.assets`), and an OAuth token endpoint. Operations move PENDING -> RUNNING ->
SUCCEEDED on the emulator's clock, with progress from 0 to 1; a cancelled one passes
through CANCELLING. Each behaviour's source is in docs/FIDELITY.md.

Strict where the real service is: ``image:export`` bodies are checked against the REST
v1 ``ExportImageRequest`` schema (unknown fields, requestId shape, description,
fileNamePrefix, tileDimensions a multiple of the tile size) before anything starts; a
requestId used again with a different body is refused (409); an export larger than
its ``maxPixels`` (default 1e8) fails as "Export too large". The answer to
``image:export`` holds only the operation's name by default (``export_answer``), the
least the client may be given.

``image:computePixels`` answers a window of pixels as a GeoTIFF: exactly the values a
batch export of the same image writes there (``rasters.RasterFactory.pixels``), within the
documented limits: 400 beyond 48 MiB uncompressed (bands x pixels x (bytes per pixel + 1
mask byte), as Earth Engine counts), 32768 pixels a side or 1024 bands; 429 beyond
``pixels_concurrency`` requests at once (40, the per-project quota).

Fault injection: HTTP bursts go through the router (:meth:`Emulator.inject`); here are the
Earth Engine specific ones: tasks that end FAILED with a message, a queue limit that
answers "Too many tasks already in the queue", revoked credentials, and for computePixels
slow answers (``pixels_delay``) and "User memory limit exceeded." above ``fail_pixels_above``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from .assets import AssetService
from .clock import Clock
from .discovery import discovery_document
from .expression import ExportGrid, PixelsRequest, band_names, export_grid, pixels_request
from .http import Request, Response, Router, bearer_required

DESCRIPTION = re.compile(r"[A-Za-z0-9.,:;_-]{1,100}")
REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,60}")
DRIVE_PREFIX = re.compile(r"[A-Za-z0-9_-]+")
GCS_PREFIX = re.compile(r"[A-Za-z0-9._/-]+")
QUEUE_FULL = "Too many tasks already in the queue ({limit}). Please wait for some of them to complete."
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_TILE_SIZE = 256
TOO_LARGE = ("Export too large: specified {pixels} pixels (max: {limit}). Specify higher maxPixels value if you "
             "intend to export a large area.")
#: REST v1 schemas: the field names each message may hold (developers.google.com/earth-engine/reference/rest/v1).
EXPORT_IMAGE_REQUEST = {"assetExportOptions", "description", "expression", "fileExportOptions", "grid", "maxPixels",
                        "maxWorkers", "priority", "requestId", "workloadTag"}
IMAGE_FILE_EXPORT_OPTIONS = {"fileFormat", "driveDestination", "cloudStorageDestination", "geoTiffOptions",
                             "tfRecordOptions"}
GEOTIFF_OPTIONS = {"cloudOptimized", "noData", "skipEmptyFiles", "tileDimensions", "tileSize", "metadataKeys"}
DRIVE_DESTINATION = {"filenamePrefix", "folder"}
CLOUD_STORAGE_DESTINATION = {"bucket", "bucketCorsUris", "filenamePrefix", "permissions"}
FILE_FORMATS = {"GEO_TIFF", "TF_RECORD_IMAGE"}
#: REST v1 ComputePixelsRequest fields (projects.image.computePixels).
COMPUTE_PIXELS_REQUEST = {"expression", "fileFormat", "grid", "bandIds", "visualizationOptions", "workloadTag"}
PIXEL_GRID = {"dimensions", "affineTransform", "crsCode", "crsWkt"}
AFFINE_TRANSFORM = {"scaleX", "shearX", "translateX", "shearY", "scaleY", "translateY"}
#: computePixels limits (projects.image.computePixels): 48 MB uncompressed as Earth Engine counts it (its
#: error names 50331648 bytes), 32K pixels a side, 1024 bands; 40 concurrent requests per project.
PIXELS_MAX_BYTES = 48 * 1024 * 1024
PIXELS_MAX_SIDE = 32768
PIXELS_MAX_BANDS = 1024
PIXELS_CONCURRENCY = 40
PIXELS_TOO_LARGE = "Total request size ({size} bytes) must be less than or equal to {limit} bytes."
PIXELS_TOO_BUSY = ("Too many concurrent requests: at most {limit} computePixels requests may run at once "
                   "for a project.")
MEMORY_LIMIT = "User memory limit exceeded."


@dataclass
class TaskFault:
    """The next ``times`` tasks whose description contains ``match`` end FAILED with ``message``."""

    match: str
    message: str
    times: int = 1


@dataclass
class Operation:
    name: str
    request_id: str | None
    description: str
    body: dict[str, Any]
    created: float
    queue_seconds: float
    run_seconds: float
    failure: str | None = None
    cancelled: float | None = None
    finished_callbacks_done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""  # the request body as received: a repeat of the requestId must match it byte for byte
    grid: ExportGrid | None = None
    cancel_seconds: float = 0.0

    def state(self, now: float) -> tuple[str, float]:
        """(operation state, progress) at ``now``."""
        if self.cancelled is not None:
            if now < self.cancelled + self.cancel_seconds:
                return "CANCELLING", self.progress(self.cancelled)
            return "CANCELLED", self.progress(self.cancelled)
        elapsed = now - self.created
        if elapsed < self.queue_seconds:
            return "PENDING", 0.0
        if elapsed < self.queue_seconds + self.run_seconds:
            return "RUNNING", self.progress(now)
        return ("FAILED", self.progress(now)) if self.failure else ("SUCCEEDED", 1.0)

    def progress(self, now: float) -> float:
        running = now - self.created - self.queue_seconds
        return min(max(running / self.run_seconds, 0.0), 1.0) if self.run_seconds else 1.0


class EarthEngineService:
    """Earth Engine REST v1 state and handlers, registered on a :class:`Router`."""

    def __init__(self, router: Router, clock: Clock, version: str = "v1") -> None:
        self.clock = clock
        self.version = version
        self.operations: dict[str, Operation] = {}
        self.request_ids: dict[str, str] = {}
        self.export_requests = 0
        self.task_faults: list[TaskFault] = []
        self.queue_limit: int | None = None
        self.queue_seconds = 5.0
        self.run_seconds = 30.0
        self.cancel_seconds = 2.0  # how long a cancelled task shows CANCELLING
        self.max_page_size = 500
        self.revoked = False
        self.export_answer = "name"  # "name": the answer holds only the operation's name; "operation": all of it
        self.fallback_grid: tuple[str, float] = ("EPSG:4326", 30.0)
        self.on_succeeded: list[Callable[[Operation], None]] = []
        # computePixels: the pixels (set by the Emulator), its quota, faults, and what tests check
        self.pixel_source: Callable[[int, PixelsRequest, list[str] | None], bytes] | None = None
        self.pixels_concurrency = PIXELS_CONCURRENCY
        self.pixels_delay = 0.0  # seconds each answer waits (--slow-pixels)
        self.fail_pixels_above: int | None = None  # requests over this many pixels: "User memory limit exceeded."
        self.pixels_gather = 0  # tests: each request waits (up to 5 s) until this many are in flight
        self.pixels_in_flight = 0
        self.pixels_max_in_flight = 0
        self.pixels_windows: list[tuple[int | None, int, int, int, int]] = []  # (year, row, col, height, width) served
        self._pixels_changed = threading.Condition()
        self._lock = threading.RLock()
        v = re.escape(version)
        router.add("GET", r"/\$discovery/rest", self._discovery)
        router.add("POST", r"/token", self._token)
        router.add("GET", rf"/{v}/projects/([^/]+)/algorithms", self._authorized(self._algorithms))
        router.add("POST", rf"/{v}/projects/([^/]+)/image:export", self._authorized(self._export))
        router.add("POST", rf"/{v}/projects/([^/]+)/value:compute", self._authorized(self._compute))
        router.add("POST", rf"/{v}/projects/([^/]+)/image:computePixels", self._authorized(self._pixels))
        router.add("GET", rf"/{v}/projects/([^/]+)/operations", self._authorized(self._list))
        router.add("GET", rf"/{v}/(projects/[^/]+/operations/[^/:]+)", self._authorized(self._get))
        router.add("POST", rf"/{v}/(projects/[^/]+/operations/[^/:]+):cancel", self._authorized(self._cancel))
        self.assets = AssetService(router, self._authorized, version)

    # -- controls for tests and the demo -------------------------------------------------
    def fail_tasks(self, match: str, message: str, times: int = 1) -> TaskFault:
        fault = TaskFault(match, message, times)
        with self._lock:
            self.task_faults.append(fault)
        return fault

    def finish_all(self) -> None:
        """Move the clock past the end of every operation (their files appear at once)."""
        self.clock.advance(self.queue_seconds + self.run_seconds + self.cancel_seconds + 1)
        self.sweep()

    def sweep(self) -> None:
        """Deliver the files of every operation that has succeeded by now, polled or not."""
        now = self.clock.now()
        with self._lock:
            for operation in self.operations.values():
                if operation.state(now)[0] == "SUCCEEDED":
                    self._notify_succeeded(operation)

    def states(self) -> list[tuple[str, str]]:
        """(description, state) of every operation, oldest first (for tests)."""
        now = self.clock.now()
        with self._lock:
            return [(op.description, op.state(now)[0]) for op in self.operations.values()]

    # -- handlers --------------------------------------------------------------------------
    def _authorized(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        return bearer_required(handler, lambda: self.revoked)

    def _discovery(self, request: Request) -> Response:
        if request.query.get("version", self.version) != self.version:
            return Response.error(404, f"no discovery document for version {request.query['version']}")
        return Response.json(discovery_document(self.version))

    def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if self.revoked or form.get("refresh_token") == "revoked":
            return Response.json(
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
            )
        return Response.json({"access_token": f"emulator-{uuid.uuid4().hex}", "expires_in": 3600,
                              "token_type": "Bearer"})

    def _algorithms(self, request: Request) -> Response:
        return Response(200, _algorithms_bytes(), {"Content-Type": "application/json; charset=UTF-8"})

    def _export(self, request: Request) -> Response:
        project = request.match.group(1)
        body = request.json()
        with self._lock:
            self.export_requests += 1
            request_id = body.get("requestId")
            if request_id and request_id in self.request_ids:
                existing = self.operations[self.request_ids[request_id]]
                if existing.raw != request.body:
                    return Response.error(409, f"A different request with requestId '{request_id}' was already "
                                               "received; a requestId may start only one operation.")
                return self._export_answer(existing)
            problem = _invalid_export(body)
            if problem:
                return Response.error(400, problem)
            if self.queue_limit is not None and self._active() >= self.queue_limit:
                return Response.error(429, QUEUE_FULL.format(limit=self.queue_limit), "rateLimitExceeded")
            name = f"projects/{project}/operations/{_task_id()}"
            operation = Operation(name, request_id, body.get("description", ""), body, self.clock.now(),
                                  self.queue_seconds, self.run_seconds, raw=request.body,
                                  cancel_seconds=self.cancel_seconds)
            operation.grid = export_grid(body["expression"], self.fallback_grid)
            limit = _wrapped_int(body.get("maxPixels"), DEFAULT_MAX_PIXELS)
            if operation.grid is not None and operation.grid.pixels > limit:
                operation.failure = TOO_LARGE.format(pixels=operation.grid.pixels, limit=limit)
            for fault in self.task_faults:
                if fault.times > 0 and fault.match in operation.description:
                    fault.times -= 1
                    operation.failure = fault.message
                    break
            self.operations[name] = operation
            if request_id:
                self.request_ids[request_id] = name
            return self._export_answer(operation)

    def _export_answer(self, operation: Operation) -> Response:
        """The ``image:export`` answer: the name only (the least ``Task.start`` relies on), or the operation."""
        if self.export_answer == "name":
            return Response.json({"name": operation.name})
        return Response.json(self._operation_json(operation))

    def _active(self) -> int:
        now = self.clock.now()
        return sum(op.state(now)[0] in ("PENDING", "RUNNING", "CANCELLING") for op in self.operations.values())

    def _get(self, request: Request) -> Response:
        with self._lock:
            operation = self.operations.get(request.match.group(1))
            if operation is None:
                return Response.error(404, f"Operation {request.match.group(1)} not found.")
            return Response.json(self._operation_json(operation))

    def _list(self, request: Request) -> Response:
        project = request.match.group(1)
        size = min(int(request.query.get("pageSize") or self.max_page_size), self.max_page_size)
        start = int(base64.urlsafe_b64decode(request.query["pageToken"]).decode()) if request.query.get(
            "pageToken") else 0
        with self._lock:
            mine = [op for op in self.operations.values() if op.name.startswith(f"projects/{project}/")]
            mine.sort(key=lambda op: op.created, reverse=True)
            page = mine[start:start + size]
            payload: dict[str, Any] = {"operations": [self._operation_json(op) for op in page]}
        if start + size < len(mine):
            payload["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return Response.json(payload)

    def _cancel(self, request: Request) -> Response:
        with self._lock:
            operation = self.operations.get(request.match.group(1))
            if operation is None:
                return Response.error(404, f"Operation {request.match.group(1)} not found.")
            if operation.state(self.clock.now())[0] in ("PENDING", "RUNNING"):
                operation.cancelled = self.clock.now()
            return Response.json({})  # google.protobuf.Empty

    def _compute(self, request: Request) -> Response:
        expression = request.json().get("expression", {})
        node = expression.get("values", {}).get(expression.get("result"), {})
        if "constantValue" not in node:
            return Response.error(400, "The eetrend emulator computes only constant values.")
        return Response.json({"result": node["constantValue"]})

    def _pixels(self, request: Request) -> Response:
        """``image:computePixels``: refuse what Earth Engine refuses, then answer the window's GeoTIFF."""
        body = request.json()
        problem = _invalid_pixels(body)
        if problem:
            return Response.error(400, problem)
        located = pixels_request(body["expression"], body["grid"])
        names = band_names(body["expression"])  # as an export's files name their bands
        bands = len(body["bandIds"]) if body.get("bandIds") else (len(names) if names else 1)
        size = located.height * located.width * bands * (4 + 1)  # float32 plus Earth Engine's mask byte
        if max(located.height, located.width) > PIXELS_MAX_SIDE:
            return Response.error(400, f"Request dimensions ({located.width}x{located.height}) must be at most "
                                       f"{PIXELS_MAX_SIDE} pixels on each side.")
        if bands > PIXELS_MAX_BANDS:
            return Response.error(400, f"Request has {bands} bands; at most {PIXELS_MAX_BANDS} may be requested.")
        if size > PIXELS_MAX_BYTES:
            return Response.error(400, PIXELS_TOO_LARGE.format(size=size, limit=PIXELS_MAX_BYTES))
        with self._pixels_changed:
            if self.pixels_in_flight >= self.pixels_concurrency:
                return Response.error(429, PIXELS_TOO_BUSY.format(limit=self.pixels_concurrency),
                                      "rateLimitExceeded")
            self.pixels_in_flight += 1
            self.pixels_max_in_flight = max(self.pixels_max_in_flight, self.pixels_in_flight)
            self._pixels_changed.notify_all()
        try:
            if self.pixels_gather:
                with self._pixels_changed:
                    self._pixels_changed.wait_for(lambda: self.pixels_in_flight >= self.pixels_gather, timeout=5)
            if self.pixels_delay:
                time.sleep(self.pixels_delay)
            if self.fail_pixels_above is not None and located.height * located.width > self.fail_pixels_above:
                return Response.error(400, MEMORY_LIMIT)
            if located.year is None or self.pixel_source is None:
                return Response.error(400, "The eetrend emulator cannot tell which year this image is.")
            content = self.pixel_source(located.year, located, names)
            with self._lock:
                self.pixels_windows.append((located.year, located.row, located.col, located.height, located.width))
            return Response(200, content, {"Content-Type": "image/tiff"})
        finally:
            with self._pixels_changed:
                self.pixels_in_flight -= 1
                self._pixels_changed.notify_all()

    # -- operation JSON --------------------------------------------------------------------
    def _operation_json(self, op: Operation) -> dict[str, Any]:
        now = self.clock.now()
        state, progress = op.state(now)
        stamp = self.clock.timestamp
        metadata: dict[str, Any] = {
            "@type": f"type.googleapis.com/google.earthengine.{self.version}.OperationMetadata",
            "state": state,
            "description": op.description,
            "type": "EXPORT_IMAGE",
            "priority": _wrapped_int(op.body.get("priority"), 100),
            "createTime": stamp(op.created),
            "updateTime": stamp(min(now, op.cancelled or now)),
            "attempt": 1,
            "progress": progress,
            "stages": _stages(progress),
        }
        if state != "PENDING":
            metadata["startTime"] = stamp(op.created + op.queue_seconds)
        done = state in ("SUCCEEDED", "FAILED", "CANCELLED")
        result: dict[str, Any] = {"name": op.name, "metadata": metadata}
        if done:  # proto3 JSON leaves out a false bool: an operation still running carries no "done"
            result["done"] = True
            end = op.cancelled + op.cancel_seconds if op.cancelled is not None \
                else op.created + op.queue_seconds + op.run_seconds
            metadata["endTime"] = stamp(end)
        if state == "SUCCEEDED":
            self._notify_succeeded(op)  # the files are written (and the Drive folder chosen) first
            metadata["destinationUris"] = _destination_uris(op.body, op.extra.get("drive_folder_id"))
            metadata["batchEecuUsageSeconds"] = round(op.run_seconds * 0.5, 3)
            result["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
        elif state == "FAILED":
            result["error"] = {"code": 3, "message": op.failure}
        elif state == "CANCELLED":
            result["error"] = {"code": 1, "message": "Cancelled."}
        return result

    def _notify_succeeded(self, op: Operation) -> None:
        if op.finished_callbacks_done:
            return
        op.finished_callbacks_done = True
        for callback in self.on_succeeded:
            callback(op)


def _unknown(message: dict[str, Any], allowed: set[str], where: str) -> str | None:
    extra = sorted(set(message) - allowed)
    if extra:
        return f'Invalid JSON payload received. Unknown name "{extra[0]}" at \'{where}\': Cannot find field.'
    return None


def _wrapped_int(value: Any, default: int) -> int:
    """An Int64Value / Int32Value as JSON: a bare number or string, or the client's {"value": ...} form."""
    if value is None:
        return default
    if isinstance(value, dict):
        value = value.get("value", default)
    return int(value)


def _invalid_expression(body: dict[str, Any]) -> str | None:
    """Why a request's ``expression`` is not a serialized Earth Engine expression, or None."""
    expression = body.get("expression")
    if not isinstance(expression, dict) or "result" not in expression or "values" not in expression:
        return "Invalid JSON payload: 'expression' must be a serialized Earth Engine expression."
    return None


def _invalid_export(body: dict[str, Any]) -> str | None:
    """Why Earth Engine would refuse this ExportImageRequest before starting it, or None."""
    problem = _unknown(body, EXPORT_IMAGE_REQUEST, "") or _invalid_expression(body)
    if problem:
        return problem
    request_id = body.get("requestId")
    if request_id is not None and not REQUEST_ID.fullmatch(str(request_id)):
        return (f"Invalid requestId '{request_id}': use 1-60 of the characters a-z, A-Z, 0-9 and '-'.")
    description = body.get("description", "")
    if not DESCRIPTION.fullmatch(description):
        return (f"Invalid task description '{description}': use at most 100 letters, digits "
                "and the characters '.,:;_-'.")
    try:
        max_pixels = _wrapped_int(body.get("maxPixels"), DEFAULT_MAX_PIXELS)
    except (TypeError, ValueError):
        return "Invalid value at 'max_pixels' (type.googleapis.com/google.protobuf.Int64Value)."
    if not 0 < max_pixels < 2**63:
        return f"maxPixels must be a positive 64-bit integer, not {max_pixels}."
    if "fileExportOptions" not in body:
        return "This emulator serves file exports only: fileExportOptions is required."
    options = body["fileExportOptions"]
    return _unknown(options, IMAGE_FILE_EXPORT_OPTIONS, "file_export_options") or _invalid_file_options(options)


def _invalid_file_options(options: dict[str, Any]) -> str | None:
    if options.get("fileFormat", "GEO_TIFF") not in FILE_FORMATS:
        return f"Invalid value at 'file_export_options.file_format': {options.get('fileFormat')!r}."
    destinations = [k for k in ("driveDestination", "cloudStorageDestination") if k in options]
    if len(destinations) != 1:
        return "fileExportOptions needs exactly one of driveDestination or cloudStorageDestination."
    if "driveDestination" in options:
        destination = options["driveDestination"]
        problem = _unknown(destination, DRIVE_DESTINATION, "file_export_options.drive_destination")
        prefix = destination.get("filenamePrefix", "")
        if not problem and (not DRIVE_PREFIX.fullmatch(prefix) or len(prefix.encode()) > 998):
            problem = (f"Invalid filenamePrefix '{prefix}' for Drive: use letters, digits, '-' and '_' "
                       "(a '/' is not a folder in Drive).")
    else:
        destination = options["cloudStorageDestination"]
        problem = _unknown(destination, CLOUD_STORAGE_DESTINATION, "file_export_options.cloud_storage_destination")
        prefix = destination.get("filenamePrefix", "")
        if not problem and not destination.get("bucket"):
            problem = "cloudStorageDestination.bucket is required."
        if not problem and (not GCS_PREFIX.fullmatch(prefix) or len(prefix.encode()) > 998 or ".." in prefix):
            problem = f"Invalid filenamePrefix '{prefix}' for Cloud Storage."
    if problem:
        return problem
    geotiff = options.get("geoTiffOptions", {})
    problem = _unknown(geotiff, GEOTIFF_OPTIONS, "file_export_options.geo_tiff_options")
    if problem:
        return problem
    if "noData" in geotiff and not (isinstance(geotiff["noData"], dict) and set(geotiff["noData"]) <= {
            "floatValue", "integerValue"} and len(geotiff["noData"]) == 1):
        return "geoTiffOptions.noData must be a Number: {\"floatValue\": x} or {\"integerValue\": n}."
    tile_size = _wrapped_int(geotiff.get("tileSize"), DEFAULT_TILE_SIZE)
    dims = geotiff.get("tileDimensions")
    if dims is not None:
        width, height = int(dims.get("width", 0)), int(dims.get("height", 0))
        if width <= 0 or height <= 0 or width % tile_size or height % tile_size:
            return f"fileDimensions ({width}x{height}) must be positive multiples of shardSize ({tile_size})."
    return None


def _invalid_pixels(body: dict[str, Any]) -> str | None:
    """Why Earth Engine would refuse this ComputePixelsRequest (or the emulator cannot answer it), or None."""
    problem = _unknown(body, COMPUTE_PIXELS_REQUEST, "") or _invalid_expression(body)
    if problem:
        return problem
    if body.get("fileFormat") != "GEO_TIFF":
        return (f"The eetrend emulator answers computePixels as GEO_TIFF only, not {body.get('fileFormat')!r} "
                "(not emulated).")
    if "visualizationOptions" in body:
        return "The eetrend emulator does not render visualizationOptions (not emulated)."
    grid = body.get("grid")
    if not isinstance(grid, dict):
        return "The eetrend emulator needs a grid (the image's native projection is not emulated)."
    problem = _unknown(grid, PIXEL_GRID, "grid") or _unknown(grid.get("affineTransform", {}), AFFINE_TRANSFORM,
                                                               "grid.affine_transform")
    if problem:
        return problem
    if "crsCode" not in grid or "affineTransform" not in grid:
        return "The eetrend emulator needs grid.crsCode and grid.affineTransform (crsWkt is not emulated)."
    dims = grid.get("dimensions", {})
    try:
        width, height = int(dims.get("width", 0)), int(dims.get("height", 0))
    except (TypeError, ValueError):
        return "Invalid value at 'grid.dimensions'."
    if width <= 0 or height <= 0:
        return f"grid.dimensions must be positive, not {width}x{height}."
    return None


def declared_nodata(body: dict[str, Any]) -> float | None:
    """The request's ``geoTiffOptions.noData`` (a Number message), or None."""
    value = body.get("fileExportOptions", {}).get("geoTiffOptions", {}).get("noData")
    if not isinstance(value, dict):
        return None
    return float(value.get("floatValue", value.get("integerValue", 0)))


def _stages(progress: float) -> list[dict[str, Any]]:
    """Export stages as the Tasks panel shows them (names guessed; see docs/FIDELITY.md)."""
    total = 100
    computed = min(int(progress * 2 * total), total)
    written = max(min(int((progress - 0.5) * 2 * total), total), 0)
    return [
        {"displayName": "Create Local Files", "completeWorkUnits": computed, "totalWorkUnits": str(total),
         "description": "Computation and writing of temporary files."},
        {"displayName": "Write Files to Destination", "completeWorkUnits": written, "totalWorkUnits": str(total),
         "description": "Uploading of files to the export destination."},
    ]


def _destination_uris(body: dict[str, Any], drive_folder: str | None = None) -> list[str]:
    options = body.get("fileExportOptions", {})
    if "driveDestination" in options:
        if drive_folder is None:
            return ["https://drive.google.com/"]
        return [f"https://drive.google.com/#folders/{drive_folder}"]
    destination = options["cloudStorageDestination"]
    return [f"https://console.developers.google.com/storage/browser/{destination['bucket']}/"
            f"{destination.get('filenamePrefix', '')}"]


def _task_id() -> str:
    return base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=")[:24]


_ALGORITHMS: bytes | None = None


def _algorithms_bytes() -> bytes:
    """The algorithm list: the 991 real signatures the ``earthengine-api`` wheel ships (``ee/tests/algorithms.json``).

    Serving the real list lets any user code build its expression exactly as against the
    real service (argument names, defaults, ``ee.Image`` methods); a hand-made subset would
    refuse or mis-serialize whatever it left out.
    """
    global _ALGORITHMS
    if _ALGORITHMS is None:
        listing = resources.files("ee").joinpath("tests", "algorithms.json")
        try:
            text = listing.read_text(encoding="utf-8")
        except (FileNotFoundError, OSError) as exc:
            raise RuntimeError(f"the earthengine-api package holds no ee/tests/algorithms.json ({exc}); the emulator "
                               "serves that list: reinstall earthengine-api") from None
        _ALGORITHMS = json.dumps(json.loads(text)).encode()
    return _ALGORITHMS
