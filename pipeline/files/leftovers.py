"""Temporaries a dead process left behind, found by the pid in their names and removed.

Every output is written under ``.NAME.<pid>.<random>.partial[.ext]`` beside its final
name (:func:`pipeline.files.outputs.temporary_path`) and renamed when complete. A process
killed with SIGKILL, or by a power cut, runs no cleanup, so its temporary stays. The next
command that writes beside it removes those whose pid no longer runs; a temporary of a
live process (another command at work) is never touched.

Downloads are different: ``.NAME.<checksum>.partial`` carries no pid on purpose, so the next
download resumes from its bytes. Such a partial is stale only once ``NAME`` itself is on
disk and verified; :func:`remove_finished_partials` removes those.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.partial(?:\..*)?$")
_DOWNLOAD_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?:[0-9a-f]{8}){1,2}\.partial$")  # md5 or crc32c


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a pid we may not signal still runs)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started_after(pid: int, moment: float) -> bool:
    """Whether process ``pid`` started after ``moment`` (so it cannot have written a file last changed then).

    A pid is reused once its process is gone; a temporary still being written has an
    mtime after its writer's start. Linux only (``/proc/PID`` is made when the process
    starts); elsewhere False, which keeps the file.
    """
    try:
        return os.stat(f"/proc/{pid}").st_ctime > moment + 2.0
    except OSError:
        return False


def stale_temporaries(folder: Path, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Temporaries in ``folder`` (of the final name ``name``, if given) whose writer's pid is gone."""
    if not folder.is_dir():
        return []
    candidates: Iterable[Path] = folder.rglob(".*.partial*") if recursive else folder.glob(".*.partial*")
    stale = []
    for path in candidates:
        match = _TEMPORARY.match(path.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or not path.is_file():
            continue
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if not pid_alive(pid) or _started_after(pid, mtime):
            stale.append(path)
    return stale


def live_writers(folder: Path, name: str) -> list[int]:
    """Pids of other processes, still running, that write a temporary of the final name ``name`` in ``folder``."""
    if not folder.is_dir():
        return []
    pids = set()
    for path in folder.glob(".*.partial*"):
        match = _TEMPORARY.match(path.name)
        if match is None or match["name"] != name:
            continue
        pid = int(match["pid"])
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:  # it was just renamed or removed
            continue
        if pid != os.getpid() and pid_alive(pid) and not _started_after(pid, mtime):
            pids.add(pid)
    return sorted(pids)


def remove_stale_temporaries(folder: Path, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Remove what :func:`stale_temporaries` finds; returns the removed paths."""
    removed = []
    for path in stale_temporaries(folder, name, recursive):
        try:
            path.unlink()
        except FileNotFoundError:  # another command removed it first
            continue
        except OSError as exc:
            log.warning("could not remove the stale temporary %s: %s", path, exc)
            continue
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by a process that ended before finishing them", len(removed))
    return removed


def remove_finished_partials(folder: Path, finished: set[Path]) -> list[Path]:
    """Remove download partials (``.NAME.<md5>.partial``) whose ``NAME`` is in ``finished`` (verified files)."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(".*.partial"):
        match = _DOWNLOAD_PARTIAL.match(path.name)
        if match and (path.parent / match["name"]).resolve() in finished:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
