"""The emulator's HTTP plumbing: a threaded server on 127.0.0.1, routing, and fault rules.

Services register routes (method, path regex, handler). A handler receives a
:class:`Request` and returns a :class:`Response`. Before routing, fault rules may answer
instead: a burst of 429 or 503, or a connection dropped without any answer.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    match: re.Match[str] | None = None

    def json(self) -> Any:
        if not self.body:
            return {}
        return json.loads(self.body)


@dataclass(frozen=True)
class Recorded:
    """One request as the emulator received it (the conformance check reads these).

    The ``authorization`` header is kept only as whether it was there: tokens are never recorded.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    drop_after: int | None = None  # send the headers and this many body bytes, then close

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json; charset=UTF-8"})

    @classmethod
    def error(cls, status: int, message: str, reason: str | None = None) -> Response:
        error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}
        if reason:
            error["errors"] = [{"message": message, "domain": "global", "reason": reason}]
        return cls.json({"error": error}, status)


@dataclass
class Fault:
    """Answer ``times`` matching requests with ``status`` (or drop them) instead of serving them."""

    method: str
    path: str
    status: int = 503
    message: str = "The service is currently unavailable."
    times: int = 1
    drop: bool = False
    reason: str | None = None
    hits: int = 0

    def matches(self, request: Request) -> bool:
        method = self.method in ("*", request.method)  # "*": any method
        return self.times > 0 and method and re.search(self.path, request.path) is not None


Handler = Callable[[Request], Response]


def bearer_required(handler: Handler, revoked: Callable[[], bool] = lambda: False) -> Handler:
    """Refuse requests without an OAuth bearer token (401), or all of them once credentials are revoked."""

    def check(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return Response.error(401, "Request is missing required authentication credential.")
        if revoked():
            return Response.error(401, "Request had invalid authentication credentials.")
        return handler(request)

    return check


class Router:
    """Routes, faults and a request log shared by every service of one emulator."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.requests: list[Recorded] = []  # every request in full, for the conformance check
        self.lock = threading.RLock()
        self.before_request: list[Callable[[], None]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def dispatch(self, request: Request) -> Response:
        for hook in self.before_request:
            hook()
        with self.lock:
            for fault in self.faults:
                if fault.matches(request):
                    fault.times -= 1
                    fault.hits += 1
                    if fault.drop:
                        return Response(drop=True)
                    return Response.error(fault.status, fault.message, fault.reason)
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.match = match
                try:
                    return handler(request)
                except (ValueError, KeyError, TypeError) as exc:
                    return Response.error(400, f"Invalid request: {exc}")
        return Response.error(404, f"Not found: {request.method} {request.path}")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the router keeps its own log; stderr stays quiet

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        response = self.server.router.dispatch(request)
        status = 0 if response.drop else response.status
        headers = {k: ("<present>" if k == "authorization" else v) for k, v in request.headers.items()}
        with self.server.router.lock:
            self.server.router.log.append((request.method, request.path, status))
            self.server.router.requests.append(Recorded(request.method, request.path, dict(request.query), headers,
                                                        request.body, status))
        if response.drop:
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(response.status)
        headers = {"Content-Length": str(len(response.body)), **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.drop_after is not None:
            self.wfile.write(response.body[: response.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(response.body)

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, router: Router, port: int = 0) -> None:
        self.router = router
        super().__init__(("127.0.0.1", port), _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client went away mid-answer (killed, interrupted): nothing wrong here
        super().handle_error(request, client_address)


def start_server(router: Router, port: int = 0) -> tuple[_Server, threading.Thread]:
    """Serve ``router`` on 127.0.0.1 (``port`` 0 picks a free one) from a daemon thread."""
    server = _Server(router, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread
