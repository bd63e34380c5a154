"""The study manifest: SQLite in the state folder, the one record of what was done.

One row per year holds the submission (request id, attempts, task name), its state as
Earth Engine last reported it, every error, and the fingerprints of the settings it
was submitted with. Every change is a transaction (``BEGIN IMMEDIATE``), the journal is
WAL, so an interrupted run leaves either the old row or the new one, never half of it.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EetrendError

SCHEMA_VERSION = 2
#: Seconds SQLite retries a write while another process writes the manifest, before giving up.
BUSY_TIMEOUT = 30.0
BUSY_MESSAGE = ("another eetrend command is using this study ({path} stayed busy for {seconds:.0f} s); "
                "try again when it has finished")


class ManifestBusyError(EetrendError):
    """Another process kept the manifest busy beyond :data:`BUSY_TIMEOUT` (exit code 3, as for the study lock)."""

    exit_code = 3


def _is_full(exc: BaseException, path: Path) -> bool:
    """SQLITE_FULL, or an I/O error on a disk with (almost) no room left: nothing in the database is wrong."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    if "disk is full" in text:
        return True
    from ..files.diskio import free_bytes

    free = free_bytes(path.parent) if "disk i/o error" in text else None
    return free is not None and free < (1 << 20)


def _full_error(path: Path) -> EetrendError:
    from ..errors import DiskFullError
    from ..files.diskio import existing_ancestor, free_bytes, human_bytes

    free = free_bytes(path.parent)
    have = f" ({human_bytes(free)} free on {existing_ancestor(path.parent)})" if free is not None else ""
    return DiskFullError(f"no space left to record the study in {path}{have}; free some space and run the command "
                         "again (the study's record is intact: the change was rolled back)")


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

#: Year states. READY/RUNNING/CANCEL_REQUESTED/COMPLETED/FAILED/CANCELLED are Earth Engine's task
#: states; PENDING means "to submit", SUBMITTING "submitted with request_id, answer not recorded";
#: FETCHING (the direct route) "some of its tiles are in, the rest still to fetch".
PENDING, SUBMITTING, FETCHING = "PENDING", "SUBMITTING", "FETCHING"
READY, RUNNING, CANCEL_REQUESTED = "READY", "RUNNING", "CANCEL_REQUESTED"
COMPLETED, FAILED, CANCELLED = "COMPLETED", "FAILED", "CANCELLED"
ACTIVE = (READY, RUNNING, CANCEL_REQUESTED)
TO_SUBMIT = (PENDING, SUBMITTING)

#: Earth Engine operation state -> the task state users know from the Code Editor.
FROM_OPERATION = {
    "PENDING": READY,
    "RUNNING": RUNNING,
    "CANCELLING": CANCEL_REQUESTED,
    "SUCCEEDED": COMPLETED,
    "FAILED": FAILED,
    "CANCELLED": CANCELLED,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS years (
    year                INTEGER PRIMARY KEY,
    state               TEXT NOT NULL,
    output_fingerprint  TEXT NOT NULL,
    request_fingerprint TEXT NOT NULL,
    settings            TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    failures            INTEGER NOT NULL DEFAULT 0,
    request_id          TEXT,
    task                TEXT,
    progress            REAL NOT NULL DEFAULT 0,
    errors              TEXT NOT NULL DEFAULT '[]',
    destination_uris    TEXT NOT NULL DEFAULT '[]',
    created             TEXT,
    started             TEXT,
    ended               TEXT,
    updated             TEXT,
    changed_at          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    year           INTEGER NOT NULL,
    name           TEXT NOT NULL,
    remote_ref     TEXT NOT NULL,
    size           INTEGER NOT NULL,
    md5            TEXT NOT NULL,
    local_path     TEXT NOT NULL,
    verified_at    TEXT NOT NULL,
    remote_deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (year, name)
);
CREATE TABLE IF NOT EXISTS direct_tiles (
    year        INTEGER NOT NULL,
    row         INTEGER NOT NULL,
    col         INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    width       INTEGER NOT NULL,
    state       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    path        TEXT,
    size        INTEGER,
    md5         TEXT,
    message     TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (year, row, col, height, width)
);
CREATE TABLE IF NOT EXISTS datasets (
    year       INTEGER PRIMARY KEY,
    path       TEXT NOT NULL,
    parts      INTEGER NOT NULL,
    written_at TEXT NOT NULL
);
"""


@dataclass
class YearRecord:
    """One year's row."""

    year: int
    state: str
    output_fingerprint: str
    request_fingerprint: str
    settings: dict[str, Any]
    attempts: int = 0
    failures: int = 0
    request_id: str | None = None
    task: str | None = None
    progress: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    destination_uris: list[str] = field(default_factory=list)
    created: str | None = None
    started: str | None = None
    ended: str | None = None
    updated: str | None = None
    changed_at: str = ""

    @property
    def last_error(self) -> str | None:
        return self.errors[-1]["message"] if self.errors else None

    @property
    def task_id(self) -> str | None:
        return self.task.rsplit("/", 1)[-1] if self.task else None

    def elapsed_seconds(self) -> float | None:
        """Time from Earth Engine's creation of the task to its end (or last update)."""
        if not self.created:
            return None
        end = self.ended or self.updated
        if not end:
            return None
        return (_parse_time(end) - _parse_time(self.created)).total_seconds()

    def as_json(self) -> dict[str, Any]:
        return {
            "year": self.year,
            "state": self.state,
            "progress": self.progress,
            "attempts": self.attempts,
            "failures": self.failures,
            "task_id": self.task_id,
            "request_id": self.request_id,
            "elapsed_seconds": self.elapsed_seconds(),
            "last_error": self.last_error,
            "errors": self.errors,
            "destination_uris": self.destination_uris,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
        }


_JSON_FIELDS = ("settings", "errors", "destination_uris")


class Manifest:
    """The SQLite manifest of one study; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise EetrendError(f"{path} was written by a newer eetrend (schema {version}); upgrade eetrend")
            with self.transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                columns = {row[1] for row in self.conn.execute("PRAGMA table_info(files)")}
                if "mtime_ns" not in columns:  # size + mtime of the verified file, to notice later changes
                    self.conn.execute("ALTER TABLE files ADD COLUMN mtime_ns INTEGER")
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise self._busy() from None
            if _is_full(exc, Path(path)):
                raise _full_error(Path(path)) from None
            raise EetrendError(f"{path}: cannot open the study manifest ({exc}); restore it from a backup "
                               "or move it away to start the study's record again") from None

    def close(self) -> None:
        self.conn.close()

    def _busy(self) -> ManifestBusyError:
        return ManifestBusyError(BUSY_MESSAGE.format(path=self.path, seconds=BUSY_TIMEOUT))

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception."""
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise self._busy() from None
            raise
        try:
            yield self.conn
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if _is_full(exc, Path(self.path)):
                raise _full_error(Path(self.path)) from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if _is_busy(exc):
                raise self._busy() from None
            if _is_full(exc, Path(self.path)):
                raise _full_error(Path(self.path)) from None
            raise

    # -- study-level values ------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM study WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT INTO study(key, value) VALUES(?, ?) "
                              "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- years -------------------------------------------------------------------------------
    def years(self) -> dict[int, YearRecord]:
        rows = self.conn.execute("SELECT * FROM years ORDER BY year").fetchall()
        return {row["year"]: _record(row) for row in rows}

    def year(self, year: int) -> YearRecord | None:
        row = self.conn.execute("SELECT * FROM years WHERE year = ?", (year,)).fetchone()
        return _record(row) if row else None

    def add_year(self, record: YearRecord) -> None:
        values = _columns(record)
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.transaction():
            self.conn.execute(f"INSERT INTO years({names}) VALUES({marks})", tuple(values.values()))

    def update(self, year: int, **changes: Any) -> YearRecord:
        """Change some fields of a year's row in one transaction; returns the new row."""
        changes["changed_at"] = now_text()
        for name in _JSON_FIELDS:
            if name in changes:
                changes[name] = json.dumps(changes[name])
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self.transaction():
            cursor = self.conn.execute(f"UPDATE years SET {assignments} WHERE year = ?", (*changes.values(), year))
            if cursor.rowcount != 1:
                raise KeyError(year)
        record = self.year(year)
        assert record is not None
        return record

    def add_error(self, year: int, message: str, **changes: Any) -> YearRecord:
        """Append an error (with the attempt it belongs to) and apply other changes, atomically."""
        with self.transaction():
            record = self.year(year)
            assert record is not None
            errors = [*record.errors, {"attempt": record.attempts, "time": now_text(), "message": message}]
            return self.update(year, errors=errors, **changes)


    # -- downloaded files and the dataset of each year ---------------------------------------------
    def files(self, year: int) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM files WHERE year = ? ORDER BY name", (year,)).fetchall()
        return {row["name"]: dict(row) for row in rows}

    def record_file(self, year: int, name: str, remote_ref: str, size: int, md5: str, local_path: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO files(year, name, remote_ref, size, md5, local_path, verified_at) "
                "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(year, name) DO UPDATE SET remote_ref = excluded.remote_ref, "
                "size = excluded.size, md5 = excluded.md5, local_path = excluded.local_path, "
                "verified_at = excluded.verified_at, remote_deleted = 0",
                (year, name, remote_ref, size, md5, local_path, now_text()),
            )

    def record_mtime(self, year: int, name: str, mtime_ns: int) -> None:
        """The modification time of a verified file, so a later change of it is noticed without re-hashing."""
        with self.transaction():
            self.conn.execute("UPDATE files SET mtime_ns = ? WHERE year = ? AND name = ?", (mtime_ns, year, name))

    def all_files(self) -> list[dict[str, Any]]:
        """Every recorded file of every year."""
        return [dict(row) for row in self.conn.execute("SELECT * FROM files ORDER BY year, name")]

    def mark_remote_deleted(self, year: int, name: str) -> None:
        with self.transaction():
            self.conn.execute("UPDATE files SET remote_deleted = 1 WHERE year = ? AND name = ?", (year, name))

    def dataset(self, year: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM datasets WHERE year = ?", (year,)).fetchone()
        return dict(row) if row else None

    def datasets(self) -> dict[int, dict[str, Any]]:
        return {row["year"]: dict(row) for row in self.conn.execute("SELECT * FROM datasets ORDER BY year")}

    def record_dataset(self, year: int, path: str, parts: int) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO datasets(year, path, parts, written_at) VALUES(?, ?, ?, ?) ON CONFLICT(year) "
                "DO UPDATE SET path = excluded.path, parts = excluded.parts, written_at = excluded.written_at",
                (year, path, parts, now_text()),
            )

    def forget_downloads(self, year: int) -> None:
        """Drop a year's download records, direct tiles included (its export is being redone)."""
        with self.transaction():
            self.conn.execute("DELETE FROM files WHERE year = ?", (year,))
            self.conn.execute("DELETE FROM datasets WHERE year = ?", (year,))
            self.conn.execute("DELETE FROM direct_tiles WHERE year = ?", (year,))

    # -- tiles of the direct route (computePixels) --------------------------------------------------
    def tiles(self, year: int | None = None) -> list[dict[str, Any]]:
        """Recorded tiles (``state`` 'done' with its file, or 'split' into four), of one year or all."""
        if year is None:
            rows = self.conn.execute("SELECT * FROM direct_tiles ORDER BY year, row, col, height, width")
        else:
            rows = self.conn.execute("SELECT * FROM direct_tiles WHERE year = ? ORDER BY row, col, height, width",
                                     (year,))
        return [dict(row) for row in rows]

    def record_tile(self, year: int, window: tuple[int, int, int, int], state: str, fingerprint: str, *,
                    path: str | None = None, size: int | None = None, md5: str | None = None,
                    message: str | None = None) -> None:
        """One finished tile (``done``, its verified file) or one tile split in four (``split``, and why)."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO direct_tiles(year, row, col, height, width, state, fingerprint, path, size, md5, message, "
                "recorded_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(year, row, col, height, width) "
                "DO UPDATE SET state = excluded.state, fingerprint = excluded.fingerprint, path = excluded.path, "
                "size = excluded.size, md5 = excluded.md5, message = excluded.message, "
                "recorded_at = excluded.recorded_at",
                (year, *window, state, fingerprint, path, size, md5, message, now_text()),
            )

    def forget_tile(self, year: int, window: tuple[int, int, int, int]) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM direct_tiles WHERE year = ? AND row = ? AND col = ? AND height = ? "
                              "AND width = ?", (year, *window))

    def forget_tiles(self, year: int, fingerprint: str | None = None) -> None:
        """Drop a year's tiles (all, or those fetched under another fingerprint than ``fingerprint``)."""
        with self.transaction():
            if fingerprint is None:
                self.conn.execute("DELETE FROM direct_tiles WHERE year = ?", (year,))
            else:
                self.conn.execute("DELETE FROM direct_tiles WHERE year = ? AND fingerprint != ?", (year, fingerprint))


def now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _record(row: sqlite3.Row) -> YearRecord:
    values = dict(row)
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name])
    return YearRecord(**values)


def _columns(record: YearRecord) -> dict[str, Any]:
    values = dict(record.__dict__)
    values["changed_at"] = now_text()
    for name in _JSON_FIELDS:
        values[name] = json.dumps(values[name])
    return values
