"""The emulator's clock: tests move it by hand, the demo lets it run faster than real time."""

from __future__ import annotations

import datetime as dt
import threading
import time


class Clock:
    """Seconds since the epoch. ``speed=None`` stands still until :meth:`advance`."""

    def __init__(self, speed: float | None = None, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._base = time.time() if start is None else start
        self._real_start = time.monotonic()
        self._offset = 0.0
        self.speed = speed

    def now(self) -> float:
        with self._lock:
            running = (time.monotonic() - self._real_start) * self.speed if self.speed else 0.0
            return self._base + self._offset + running

    def set(self, when: float) -> None:
        """Jump to ``when`` (seconds since the epoch); the clock goes on from there at its speed."""
        with self._lock:
            self._base, self._offset, self._real_start = when, 0.0, time.monotonic()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def timestamp(self, when: float | None = None) -> str:
        """RFC 3339 in UTC ending in 'Z', as Earth Engine writes its operation times."""
        moment = dt.datetime.fromtimestamp(self.now() if when is None else when, dt.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
