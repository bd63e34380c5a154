"""The Earth Engine side of the emulator: REST v1 as ``earthengine-api`` calls it.

Served: the discovery document, the algorithm list, ``image:export``, operations
get / list (newest first, with page tokens) / cancel, a ``value:compute`` that evaluates
constants, and an OAuth token endpoint. Operations move PENDING -> RUNNING ->
SUCCEEDED on the emulator's clock, with progress from 0 to 1.

Fault injection: HTTP bursts go through the router (:meth:`Emulator.inject`); here are the
Earth Engine specific ones: tasks that end FAILED with a message, a queue limit that
answers "Too many tasks already in the queue", and revoked credentials.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from .clock import Clock
from .discovery import discovery_document
from .http import Request, Response, Router, bearer_required

DESCRIPTION = re.compile(r"[A-Za-z0-9.,:;_-]{1,100}")
QUEUE_FULL = "Too many tasks already in the queue ({limit}). Please wait for some of them to complete."


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

    def state(self, now: float) -> tuple[str, float]:
        """(operation state, progress) at ``now``."""
        if self.cancelled is not None:
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
        self.max_page_size = 500
        self.revoked = False
        self.on_succeeded: list[Callable[[Operation], None]] = []
        self._lock = threading.RLock()
        v = re.escape(version)
        router.add("GET", r"/\$discovery/rest", self._discovery)
        router.add("POST", r"/token", self._token)
        router.add("GET", rf"/{v}/projects/([^/]+)/algorithms", self._authorized(self._algorithms))
        router.add("POST", rf"/{v}/projects/([^/]+)/image:export", self._authorized(self._export))
        router.add("POST", rf"/{v}/projects/([^/]+)/value:compute", self._authorized(self._compute))
        router.add("GET", rf"/{v}/projects/([^/]+)/operations", self._authorized(self._list))
        router.add("GET", rf"/{v}/(projects/[^/]+/operations/[^/:]+)", self._authorized(self._get))
        router.add("POST", rf"/{v}/(projects/[^/]+/operations/[^/:]+):cancel", self._authorized(self._cancel))

    # -- controls for tests and the demo -------------------------------------------------
    def fail_tasks(self, match: str, message: str, times: int = 1) -> TaskFault:
        fault = TaskFault(match, message, times)
        with self._lock:
            self.task_faults.append(fault)
        return fault

    def finish_all(self) -> None:
        """Move the clock past the end of every operation (their files appear at once)."""
        self.clock.advance(self.queue_seconds + self.run_seconds + 1)
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
                return Response.json(self._operation_json(self.operations[self.request_ids[request_id]]))
            problem = _invalid_export(body)
            if problem:
                return Response.error(400, problem)
            if self.queue_limit is not None and self._active() >= self.queue_limit:
                return Response.error(429, QUEUE_FULL.format(limit=self.queue_limit), "rateLimitExceeded")
            name = f"projects/{project}/operations/{_task_id()}"
            operation = Operation(name, request_id, body["description"], body, self.clock.now(),
                                  self.queue_seconds, self.run_seconds)
            for fault in self.task_faults:
                if fault.times > 0 and fault.match in operation.description:
                    fault.times -= 1
                    operation.failure = fault.message
                    break
            self.operations[name] = operation
            if request_id:
                self.request_ids[request_id] = name
            return Response.json(self._operation_json(operation))

    def _active(self) -> int:
        now = self.clock.now()
        return sum(op.state(now)[0] in ("PENDING", "RUNNING") for op in self.operations.values())

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
            return Response.json({})

    def _compute(self, request: Request) -> Response:
        expression = request.json().get("expression", {})
        node = expression.get("values", {}).get(expression.get("result"), {})
        if "constantValue" not in node:
            return Response.error(400, "The eetrend emulator computes only constant values.")
        return Response.json({"result": node["constantValue"]})

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
            "priority": 100,
            "createTime": stamp(op.created),
            "updateTime": stamp(min(now, op.cancelled or now)),
            "attempt": 1,
            "progress": progress,
        }
        if state != "PENDING":
            metadata["startTime"] = stamp(op.created + op.queue_seconds)
        done = state in ("SUCCEEDED", "FAILED", "CANCELLED")
        result: dict[str, Any] = {"name": op.name, "metadata": metadata, "done": done}
        if done:
            end = op.cancelled if op.cancelled is not None else op.created + op.queue_seconds + op.run_seconds
            metadata["endTime"] = stamp(end)
        if state == "SUCCEEDED":
            metadata["destinationUris"] = _destination_uris(op.body)
            metadata["batchEecuUsageSeconds"] = round(op.run_seconds * 0.5, 3)
            result["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
            self._notify_succeeded(op)
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


def _invalid_export(body: dict[str, Any]) -> str | None:
    expression = body.get("expression")
    if not isinstance(expression, dict) or "result" not in expression or "values" not in expression:
        return "Invalid JSON payload: 'expression' must be a serialized Earth Engine expression."
    description = body.get("description", "")
    if not DESCRIPTION.fullmatch(description):
        return (f"Invalid task description '{description}': use at most 100 letters, digits "
                "and the characters '.,:;_-'.")
    options = body.get("fileExportOptions", {})
    if "driveDestination" not in options and "cloudStorageDestination" not in options:
        return "fileExportOptions needs driveDestination or cloudStorageDestination."
    return None


def _destination_uris(body: dict[str, Any]) -> list[str]:
    options = body.get("fileExportOptions", {})
    if "driveDestination" in options:
        folder = options["driveDestination"].get("folder") or "root"
        return [f"https://drive.google.com/#folders/{drive_folder_id(folder)}"]
    destination = options["cloudStorageDestination"]
    return [f"https://console.developers.google.com/storage/browser/{destination['bucket']}/"
            f"{destination.get('filenamePrefix', '')}"]


def drive_folder_id(folder: str) -> str:
    """A stable Drive-like folder id for a folder name (the emulator's Drive uses the same)."""
    return "1" + uuid.uuid5(uuid.NAMESPACE_URL, f"eetrend-emulator-folder/{folder}").hex[:32]


def _task_id() -> str:
    return base64.b32encode(uuid.uuid4().bytes).decode().rstrip("=")[:24]


_ALGORITHMS: bytes | None = None


def _algorithms_bytes() -> bytes:
    global _ALGORITHMS
    if _ALGORITHMS is None:
        data = json.loads(resources.files(__package__).joinpath("algorithms.json").read_text(encoding="utf-8"))
        _ALGORITHMS = json.dumps(data).encode()
    return _ALGORITHMS
