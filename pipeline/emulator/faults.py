"""Fault plans for ``eetrend emulator``: the failures tests inject from Python, written as shell flags.

Each flag is a short text, parsed here into the emulator's own fault objects
(:class:`~pipeline.emulator.http.Fault`, :class:`~pipeline.emulator.earthengine.TaskFault`,
content faults of the media answers), so a user rehearses a study's failure modes with
exactly the behaviour the test suite checks:

=====================  ===================================================================
``STATUS:TIMES[:RE]``   ``--http-errors``: the next TIMES requests (whose path matches the
                        regex RE, default every path) are answered with STATUS (429, 500, 503...)
``MATCH[:TIMES[:MSG]]`` ``--fail-tasks``: the next TIMES tasks whose description contains
                        MATCH (e.g. a year) end FAILED with MSG
``N``                   ``--queue-limit``: at most N queued or running tasks; more are refused
                        with "Too many tasks already in the queue (N)"
``KIND:MATCH[:TIMES]``  ``--media-fault``: spoil the next TIMES downloads of files whose name
                        contains MATCH; KIND is truncate, corrupt, no_content_range or drop
``SECONDS``             ``--slow-media``: wait this long before every media answer (each chunk)
``SECONDS``             ``--slow-pixels``: wait this long before every computePixels answer
``N``                   ``--fail-pixels-above``: computePixels requests over N pixels answer
                        "User memory limit exceeded." (a client splits them and asks again)
``NAME[:N]``            ``--duplicate-folder``: N more Drive folders with this name (Drive
                        allows that), which a download must not confuse with the export's own
=====================  ===================================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .http import Fault
from .storage import FAULT_KINDS

if TYPE_CHECKING:
    from . import Emulator

DEFAULT_TASK_ERROR = "Internal error: the computation failed (emulated)."


class FaultSpecError(ValueError):
    """A fault flag that cannot be parsed; the message names the flag and its form."""


def _int(part: str, spec: str, flag: str, form: str, minimum: int = 0) -> int:
    """``part`` of the flag value ``spec`` as a whole number of at least ``minimum``."""
    try:
        value = int(part)
    except ValueError:
        raise FaultSpecError(f"{flag} {spec!r}: {part!r} is not a whole number; write it as {form}") from None
    if value < minimum:
        raise FaultSpecError(f"{flag} {spec!r}: {value} must be at least {minimum}; write it as {form}")
    return value


@dataclass
class FaultPlan:
    """Every fault one standalone emulator starts with."""

    http_errors: list[Fault] = field(default_factory=list)
    task_failures: list[tuple[str, int, str]] = field(default_factory=list)
    queue_limit: int | None = None
    media_faults: list[tuple[str, str, int]] = field(default_factory=list)
    slow_media: float = 0.0
    duplicate_folders: list[tuple[str, int]] = field(default_factory=list)
    slow_pixels: float = 0.0
    fail_pixels_above: int | None = None

    @classmethod
    def parse(cls, *, http_errors: Sequence[str] = (), fail_tasks: Sequence[str] = (), queue_limit: int | None = None,
              media_faults: Sequence[str] = (), slow_media: float = 0.0,
              duplicate_folders: Sequence[str] = (), slow_pixels: float = 0.0,
              fail_pixels_above: int | None = None) -> FaultPlan:
        plan = cls(queue_limit=queue_limit, slow_media=slow_media, slow_pixels=slow_pixels,
                   fail_pixels_above=fail_pixels_above)
        if queue_limit is not None and queue_limit < 0:
            raise FaultSpecError(f"--queue-limit {queue_limit}: give 0 or more tasks")
        for flag, seconds in (("--slow-media", slow_media), ("--slow-pixels", slow_pixels)):
            if not (math.isfinite(seconds) and seconds >= 0):
                raise FaultSpecError(f"{flag} {seconds}: give 0 or more seconds")
        if fail_pixels_above is not None and fail_pixels_above < 1:
            raise FaultSpecError(f"--fail-pixels-above {fail_pixels_above}: give a number of pixels, 1 or more")
        for text in http_errors:
            form = "STATUS:TIMES[:PATH_REGEX], e.g. 429:5 or 503:3:/drive/"
            parts = text.split(":", 2)
            if len(parts) < 2:
                raise FaultSpecError(f"--http-errors {text!r}: write it as {form}")
            status = _int(parts[0], text, "--http-errors", form, minimum=400)
            if status > 599:
                raise FaultSpecError(f"--http-errors {text!r}: {status} is not an HTTP error status (400-599); "
                                     f"write it as {form}")
            times = _int(parts[1], text, "--http-errors", form, minimum=1)
            path = parts[2] if len(parts) == 3 and parts[2] else "."
            try:
                re.compile(path)
            except re.error as exc:
                raise FaultSpecError(f"--http-errors {text!r}: {path!r} is not a valid regular expression ({exc}); "
                                     f"write it as {form}") from None
            reason = "rateLimitExceeded" if status == 429 else None
            plan.http_errors.append(Fault("*", path, status=status, times=times, reason=reason,
                                          message=_HTTP_MESSAGES.get(status, f"Emulated error {status}.")))
        for text in fail_tasks:
            form = "MATCH[:TIMES[:MESSAGE]], e.g. 2003 or 2003:2:User memory limit exceeded."
            parts = text.split(":", 2)
            if not parts[0]:
                raise FaultSpecError(f"--fail-tasks {text!r}: MATCH is empty; write it as {form}")
            times = _int(parts[1], text, "--fail-tasks", form, minimum=1) if len(parts) > 1 and parts[1] else 1
            message = parts[2] if len(parts) == 3 and parts[2] else DEFAULT_TASK_ERROR
            plan.task_failures.append((parts[0], times, message))
        for text in media_faults:
            form = f"KIND:MATCH[:TIMES] with KIND one of {', '.join(FAULT_KINDS)}, e.g. corrupt:2003"
            parts = text.split(":", 2)
            if len(parts) < 2 or parts[0] not in FAULT_KINDS:
                raise FaultSpecError(f"--media-fault {text!r}: write it as {form}")
            times = _int(parts[2], text, "--media-fault", form, minimum=1) if len(parts) == 3 else 1
            plan.media_faults.append((parts[0], parts[1], times))
        for text in duplicate_folders:
            form = "NAME[:COUNT], e.g. eetrend_exports:2"
            name, _, count = text.partition(":")
            if not name:
                raise FaultSpecError(f"--duplicate-folder {text!r}: NAME is empty; write it as {form}")
            plan.duplicate_folders.append((name, _int(count, text, "--duplicate-folder", form, 1) if count else 1))
        return plan

    def apply(self, emulator: Emulator) -> None:
        """Arm every fault of the plan on a running emulator."""
        for fault in self.http_errors:
            emulator.router.inject(fault)
        for match, times, message in self.task_failures:
            emulator.earthengine.fail_tasks(match, message, times)
        emulator.earthengine.queue_limit = self.queue_limit
        for kind, match, times in self.media_faults:
            emulator.drive.media.fault(kind, match, times)
            emulator.storage.media.fault(kind, match, times)
        emulator.drive.media.delay = emulator.storage.media.delay = self.slow_media
        emulator.earthengine.pixels_delay = self.slow_pixels
        emulator.earthengine.fail_pixels_above = self.fail_pixels_above
        for name, count in self.duplicate_folders:
            for _ in range(count):
                emulator.drive.add_folder(name)

    def describe(self) -> list[str]:
        """One line per armed fault, for the emulator's banner."""
        lines = [f"the next {f.times} request(s) matching {f.path!r} answer {f.status}" for f in self.http_errors]
        lines += [f"the next {t} task(s) matching {m!r} fail: {msg}" for m, t, msg in self.task_failures]
        if self.queue_limit is not None:
            lines.append(f"at most {self.queue_limit} task(s) queued or running")
        lines += [f"the next {t} download(s) of files matching {m!r}: {k}" for k, m, t in self.media_faults]
        if self.slow_media:
            lines.append(f"every media answer waits {self.slow_media:g} s")
        lines += [f"{c} more Drive folder(s) named {n!r}" for n, c in self.duplicate_folders]
        if self.slow_pixels:
            lines.append(f"every computePixels answer waits {self.slow_pixels:g} s")
        if self.fail_pixels_above is not None:
            lines.append(f"computePixels requests over {self.fail_pixels_above:,} pixels answer 'User memory limit "
                         "exceeded.'")
        return lines


_HTTP_MESSAGES = {
    429: "Quota exceeded for quota metric 'Requests' (emulated).",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
