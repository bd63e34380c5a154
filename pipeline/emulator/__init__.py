"""A loopback emulator of the Google APIs eetrend talks to, for tests, dry runs and the demo.

The real ``earthengine-api`` and ``google-api-python-client`` are pointed at it, so the
code under test is the code users run. It listens on 127.0.0.1 only, on a free port::

    with Emulator() as emu:
        study = emu.study_config(tmp_path)         # a config whose endpoint is emu.url
        ...
        emu.earthengine.finish_all()             # move the clock past every task

``eetrend emulator`` runs it standalone for trying a config by hand.

Every request is recorded in full (``emu.router.requests``, tokens left out) and
:func:`pipeline.emulator.conformance.check` names any that the real services would
refuse. docs/FIDELITY.md gives the source of each behaviour and what is not emulated.
"""

from __future__ import annotations

from .clock import Clock
from .earthengine import EarthEngineService, TaskFault
from .http import Fault, Router, start_server
from .rasters import RasterFactory
from .storage import DriveService, ExportWriter, StorageService

__all__ = ["Clock", "Emulator", "Fault", "RasterFactory", "TaskFault"]


class Emulator:
    """Earth Engine REST v1, Drive v3 and Cloud Storage v1 on one loopback port.

    A finished export writes synthetic GeoTIFFs (``rasters``, with a known trend) into the
    emulated Drive folder or bucket it names, split into tiles when it is larger than the
    export's fileDimensions.
    """

    def __init__(self, port: int = 0, speed: float | None = None, rasters: RasterFactory | None = None) -> None:
        self.clock = Clock(speed)
        self.router = Router()
        self.earthengine = EarthEngineService(self.router, self.clock)
        self.drive = DriveService(self.router, self.clock)
        self.storage = StorageService(self.router, self.clock)
        self.rasters = rasters or RasterFactory()
        self._writer = ExportWriter(self.earthengine, self.drive, self.storage, self.rasters)
        self.earthengine.pixel_source = lambda year, request, bands: self.rasters.pixels(year, request, bands)
        # Files of finished exports appear in Drive or the bucket whether or not anyone polled the task.
        self.router.before_request.append(self.earthengine.sweep)
        self._port = port
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def start(self) -> Emulator:
        """Listen on 127.0.0.1; a port already taken is one :class:`UsageError` line."""
        import errno

        from ..errors import UsageError

        try:
            self._server, self._thread = start_server(self.router, self._port)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "in use" if exc.errno == errno.EADDRINUSE else "not allowed"
                raise UsageError(f"port {self._port} on 127.0.0.1 is {why}; pick another with --port, or --port 0 "
                                 "for a free one") from None
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, method: str, path: str, status: int = 503, times: int = 1, **kwargs) -> Fault:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` regex with a fault."""
        return self.router.inject(Fault(method, path, status=status, times=times, **kwargs))

    def count(self, method: str, pattern: str) -> int:
        """How many requests matching method and path regex were served (faults included)."""
        import re

        with self.router.lock:
            return sum(1 for m, p, _ in self.router.log if m == method and re.search(pattern, p))
