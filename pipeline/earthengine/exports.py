"""Exports of a study: exactly one Earth Engine task per year, resumable, never duplicated.

The flow of ``eetrend export``:

1. **sync** the manifest with the config: add new years; refuse a change of the
   exported pixels for years already submitted unless ``force``;
2. **refresh** the years with a live task from Earth Engine (one paginated list, or one
   get per task when there are few); a FAILED task is scheduled again until
   ``export.max_attempts``, except for errors no retry can fix;
3. **submit** each year still to do. The manifest records the request id *before* the
   call, and the id is derived from (study, year, settings, attempt), so a run killed
   between Earth Engine's answer and the manifest's commit repeats the same request
   and Earth Engine answers with the task it already has.

When Earth Engine's queue is full, submission stops; with ``queue_wait`` the run
backs off (30 s doubling to 10 min) and submits the rest when room appears.

Earth Engine refuses a requestId it has already seen with a different body (after an
earthengine-api upgrade changed the serialisation, say): the year's task is then looked
up by its description instead of being marked failed. ``redo`` exports chosen years
again on purpose (their files were deleted, or the composite looks wrong), cancelling a
live task first; it is how a year whose remote files vanished after COMPLETED recovers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config import Study, fingerprint, settings_diff
from ..errors import AuthError, ConfigChangedError, EarthEngineError, EetrendError, UsageError
from ..files.diskio import STATE_ROOM, ensure_folder
from ..lock import holds_study_lock
from ..years import format_years
from . import client as ee_api
from . import manifest as m
from .manifest import Manifest, YearRecord
from .sources import expression_digests, record_source, year_image

log = logging.getLogger(__name__)

#: With at least this many live tasks, one paginated operations.list is cheaper than a get per task.
LIST_THRESHOLD = 5
QUEUE_BACKOFF_FIRST = 30.0
QUEUE_BACKOFF_MAX = 600.0


@dataclass
class ExportReport:
    """What one ``export`` did, by year."""

    submitted: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    waiting_for_queue: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    held: list[int] = field(default_factory=list)
    restarted: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    redone: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    slc_off: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    early: list[int] = field(default_factory=list)
    later: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.submitted:
            out.append(f"submitted {len(self.submitted)} task(s): {format_years(self.submitted)}")
        if self.retried:
            out.append(f"resubmitted after a failure: {format_years(self.retried)}")
        if self.already:
            out.append(f"already done or running, not submitted again: {format_years(self.already)}")
        if self.restarted:
            out.append(f"restarted because the config changed (--force): {format_years(self.restarted)}")
        if self.redone:
            out.append(f"exported again as asked (--redo): {format_years(self.redone)}")
        if self.early:
            out.append(f"exported again, since their last export was made before their season ended: "
                       f"{format_years(self.early)}")
        out += self.later
        if self.adopted:
            out.append(f"Earth Engine already held the task (requestId seen before), found by its description: "
                       f"{format_years(self.adopted)}")
        if self.slc_off:
            out.append(f"warning: only Landsat 7 after its 2003 scan-line failure covers {format_years(self.slc_off)}; "
                       "those composites have striped gaps (fewer pixels, more noise); consider exclude_years")
        if self.waiting_for_queue:
            out.append(f"Earth Engine's task queue is full; waiting to submit {format_years(self.waiting_for_queue)}: "
                       "run export again later (or pass export --queue-wait SECONDS)")
        if self.held:
            out.append(f"cancelled or given up, held back: {format_years(self.held)} (pass --resubmit to export "
                       "them again)")
        for year, message in sorted(self.failed.items()):
            out.append(f"{year} failed: {message}")
        return out or ["nothing to do"]


def open_manifest(study: Study) -> Manifest:
    ensure_folder(study.state, "paths.state", STATE_ROOM)
    manifest = Manifest(study.manifest_path)
    owner = manifest.get("study")
    if owner is None:
        manifest.set("study", study.name)
    elif owner != study.name:
        manifest.close()
        raise UsageError(f"the state folder {study.state} belongs to study '{owner}', not '{study.name}'; "
                         "give each study its own paths.state")
    return manifest


# -- sync: the config against the manifest ---------------------------------------------------------
def sync(study: Study, manifest: Manifest, *, force: bool = False, resubmit: bool = False,
         cancel: Callable[[str], None] | None = None) -> list[int]:
    """Make the manifest hold every year of the config; returns the years restarted by ``force``."""
    records = manifest.years()
    settled = all(year in records and records[year].state in (m.COMPLETED, *m.ACTIVE) for year in study.years)
    study.expression_digests = expression_digests(study, manifest, rebuild=force or resubmit or not settled)
    changed: dict[int, list[str]] = {}
    current: dict[int, dict[str, Any]] = {}
    for year in study.years:
        settings = study.output_settings(year)
        output_fp, request_fp = fingerprint(settings), study.request_fingerprint(year)
        current[year] = dict(output_fingerprint=output_fp, request_fingerprint=request_fp, settings=settings)
        record = records.get(year)
        if record is None:
            manifest.add_year(YearRecord(year, m.PENDING, output_fp, request_fp, settings))
            continue
        never_submitted = record.state == m.PENDING and record.attempts == 0
        stopped = record.state in (m.FAILED, m.CANCELLED)
        if never_submitted:
            manifest.update(year, **current[year])
        elif record.output_fingerprint != output_fp and not stopped:
            changed[year] = settings_diff(record.settings, settings) or ["export settings"]
        elif stopped and (record.request_fingerprint != request_fp or resubmit):
            # The user changed something (or asked): give the year fresh attempts under the new settings.
            manifest.update(year, state=m.PENDING, failures=0, **current[year])
    if changed and not force:
        keys = sorted({key for keys in changed.values() for key in keys})
        raise ConfigChangedError(
            f"{', '.join(keys)} changed since years {format_years(changed)} were exported, which changes their "
            "pixels; run `eetrend export CONFIG --force` to export those years anew (their tasks are cancelled), "
            "or undo the change"
        )
    record_source(study, manifest)
    for year in changed:
        record = manifest.year(year)
        assert record is not None
        if record.task and record.state in m.ACTIVE and cancel is not None:
            ee_api.connect(study)
            cancel(record.task)
        manifest.forget_downloads(year)
        manifest.update(year, state=m.PENDING, failures=0, destination_uris=[], progress=0.0, **current[year])
    return sorted(changed)


def restart_early_exports(study: Study, manifest: Manifest, cancel: Callable[[str], None] | None = None) -> list[int]:
    """Export again each year whose last export was made before its season ended (plus settle_days).

    Such an export holds a partial season (made mid-season, or before eetrend waited for a
    year to end); since a year is never exported twice otherwise, its real season would
    never be fetched. Its files are forgotten and a new attempt (a new requestId) is queued.
    """
    restarted = []
    for year in study.years:
        record = manifest.year(year)
        if record is None or not record.created or record.state in (m.FAILED, m.CANCELLED):
            continue
        made = record.created[:10]
        if made >= study.available_on(year).isoformat():
            continue
        log.warning("%s: its export of %s was made before its season ended (it may be exported from %s); "
                    "exporting it again", year, made, study.available_on(year).isoformat())
        if record.task and record.state in m.ACTIVE and cancel is not None:
            ee_api.connect(study)
            cancel(record.task)
        manifest.forget_downloads(year)
        manifest.update(year, state=m.PENDING, failures=0, destination_uris=[], progress=0.0)
        restarted.append(year)
    return restarted


# -- refresh: Earth Engine's view of live tasks ---------------------------------------------------
def refresh(study: Study, manifest: Manifest, years: Iterable[int] | None = None) -> list[YearRecord]:
    """Ask Earth Engine about every year with a live task; returns the rows that changed state."""
    wanted = set(years) if years is not None else None
    live = [r for r in manifest.years().values()
            if r.state in m.ACTIVE and r.task and (wanted is None or r.year in wanted)]
    if not live:
        return []
    statuses: dict[str, ee_api.OperationStatus] = {}
    ee_api.connect(study)
    try:
        if len(live) >= LIST_THRESHOLD:
            statuses = {op.name: op for op in ee_api.list_operations()}
        for record in live:
            if record.task not in statuses:
                statuses[record.task] = ee_api.get_operation(record.task)
    except EetrendError:
        raise
    except Exception as exc:  # noqa: BLE001 - ee, google-auth and requests errors become one line
        raise ee_api.translate(exc, "checking task status") from None
    changed = []
    for record in live:
        updated = apply_operation(study, manifest, record, statuses[record.task])
        if updated.state != record.state:
            changed.append(updated)
    return changed


def apply_operation(study: Study, manifest: Manifest, record: YearRecord,
                    operation: ee_api.OperationStatus) -> YearRecord:
    """Record what Earth Engine says about a year's task, deciding retries of failures."""
    state = m.FROM_OPERATION.get(operation.state, record.state)
    times = dict(task=operation.name, progress=operation.progress, created=operation.create_time,
                 started=operation.start_time, ended=operation.end_time, updated=operation.update_time)
    if state == m.COMPLETED:
        return manifest.update(record.year, state=m.COMPLETED, destination_uris=list(operation.destination_uris),
                               **{**times, "progress": 1.0})
    if state != m.FAILED:
        return manifest.update(record.year, state=state, **times)
    message = operation.error or "the task failed without a message"
    failures = record.failures + 1
    fix = ee_api.permanent_fix(message)
    retry = fix is None and failures < study.config.export.max_attempts
    if fix:
        log.error("%s: %s; no retry can fix this: %s", record.year, message, fix)
    elif retry:
        log.warning("%s: attempt %d failed (%s); it will be submitted again", record.year, record.attempts, message)
    return manifest.add_error(record.year, message, state=m.PENDING if retry else m.FAILED, failures=failures,
                              **times)


# -- submit -----------------------------------------------------------------------------------------
def _submit_one(study: Study, manifest: Manifest, record: YearRecord, report: ExportReport) -> bool:
    """Submit one year; False when Earth Engine's queue is full (stop submitting)."""
    from .recipes import region

    year = record.year
    # A new attempt after a failed or cancelled one (not a resumed SUBMITTING row, not a --force restart).
    retry = record.state == m.PENDING and record.attempts > 0 and year not in report.restarted \
        and year not in report.redone and year not in report.early
    ee_api.connect(study)
    area = region(study)  # one geometry for the clip and the export (a GeoJSON region is read once)
    image = year_image(study, year, area)  # first: a year refused here leaves its row as it was
    if record.state == m.PENDING:
        attempt = record.attempts + 1
        record = manifest.update(
            year, state=m.SUBMITTING, attempts=attempt,
            request_id=ee_api.request_id(study.name, year, record.request_fingerprint, attempt),
            task=None, progress=0.0, created=None, started=None, ended=None, updated=None, destination_uris=[],
        )
    try:
        operation = ee_api.export_image(study, year, image, record.request_id, area)
    except EetrendError:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; nothing is lost, the row says SUBMITTING
        message = str(exc).strip()
        if ee_api.is_queue_full(message):
            manifest.update(year, state=m.PENDING, attempts=record.attempts - 1)
            return False
        status = ee_api.http_status(exc)
        if ee_api.is_duplicate_request(status, message):
            return _adopt(study, manifest, record, report, message)
        if status is not None and 400 <= status < 500 and status not in (401, 403, 429):
            fix = ee_api.permanent_fix(message)
            manifest.add_error(year, message, state=m.FAILED, failures=record.failures + 1)
            report.failed[year] = f"Earth Engine refused the export: {message}" + (f"; {fix}" if fix else "")
            return True
        error = ee_api.translate(exc, f"submitting {year}")
        if isinstance(error, AuthError):
            raise error from None
        raise EarthEngineError(f"{error}; run export again: the submission is recorded and will not be "
                               "duplicated") from None
    record = apply_operation(study, manifest, record, operation)
    (report.retried if retry else report.submitted).append(year)
    return _after_submit(record, report)


def _after_submit(record: YearRecord, report: ExportReport) -> bool:
    if record.state == m.FAILED:
        report.failed[record.year] = _failure_text(record)
    return True


def _adopt(study: Study, manifest: Manifest, record: YearRecord, report: ExportReport, message: str) -> bool:
    """Earth Engine holds a task under this requestId already: find it by description and record it."""
    year = record.year
    try:
        found = ee_api.find_operation(study.description(year))
    except Exception as exc:  # noqa: BLE001 - the lookup's errors become one line
        raise ee_api.translate(exc, f"looking up the task of {year}") from None
    if found is None:
        manifest.add_error(year, message, state=m.FAILED, failures=record.failures + 1)
        report.failed[year] = (f"Earth Engine refused the requestId as used before, and holds no task named "
                               f"{study.description(year)}; run export again with --redo {year}")
        return True
    log.info("%s: Earth Engine already holds %s for this requestId; recorded it", year, found.name)
    record = apply_operation(study, manifest, record, found)
    report.adopted.append(year)
    return _after_submit(record, report)


def _submit_all(study: Study, manifest: Manifest, report: ExportReport) -> list[int]:
    """Submit every year still to do; returns the years left waiting for room in the queue."""
    todo = [r for r in manifest.years().values() if r.state in m.TO_SUBMIT and r.year in study.years]
    for index, record in enumerate(todo):
        if not _submit_one(study, manifest, record, report):
            return [r.year for r in todo[index:]]
    return []


def redo_years(study: Study, manifest: Manifest, years: Iterable[int],
               cancel: Callable[[str], None] | None = None) -> list[int]:
    """Make ``years`` export again: cancel a live task, forget their downloads, new attempt (new requestId)."""
    wanted = sorted(set(years))
    early = [y for y in wanted if y in study.later]
    if early:
        raise UsageError(f"--redo {format_years(early)}: {study.later_note(early[0])}; a partial season is never "
                         "exported")
    unknown = [y for y in wanted if y not in study.years]
    if unknown:
        raise UsageError(f"--redo {format_years(unknown)}: not years of study '{study.name}' "
                         f"({format_years(study.years)})")
    records = manifest.years()
    for year in wanted:
        record = records[year]
        if record.task and record.state in m.ACTIVE and cancel is not None:
            ee_api.connect(study)
            cancel(record.task)
        manifest.forget_downloads(year)
        if record.state != m.PENDING or record.attempts:
            manifest.update(year, state=m.PENDING, failures=0, destination_uris=[], progress=0.0)
    return wanted


@holds_study_lock
def export_study(study: Study, *, force: bool = False, resubmit: bool = False, queue_wait: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep, redo: Iterable[int] | None = None) -> ExportReport:
    """Submit one export per year that needs one (see the module docstring)."""
    if not (queue_wait >= 0 and math.isfinite(queue_wait)):
        raise UsageError(f"--queue-wait is {queue_wait}; give seconds to wait, 0 or more")
    from ..checks import require_runnable
    from .landsat import slc_off_years

    require_runnable(study)  # nothing knowable now may fail hours later, at fit time
    report = ExportReport()
    with open_manifest(study) as manifest:
        report.restarted = sync(study, manifest, force=force, resubmit=resubmit, cancel=_cancel_quietly)
        report.later = [study.later_note(year) for year in sorted(study.later)]
        if redo:
            report.redone = redo_years(study, manifest, redo, cancel=_cancel_quietly)
        if study.config.export.destination == "direct":  # no task: download fetches the years itself
            from .direct_plan import describe_plan

            report.notes = describe_plan(study)
            return report
        before = manifest.years()
        to_submit = [r.year for r in before.values() if r.state in m.TO_SUBMIT]
        report.slc_off = slc_off_years(study.config.composite.sensors, to_submit)
        for year in report.slc_off:
            log.warning("%s: only Landsat 7 after its scan-line corrector failure (2003) covers this year; its "
                        "composite has striped gaps", year)
        refresh(study, manifest)
        report.early = restart_early_exports(study, manifest, cancel=_cancel_quietly)  # needs the tasks' times
        waited, delay = 0.0, QUEUE_BACKOFF_FIRST
        while True:
            waiting = _submit_all(study, manifest, report)
            if not waiting or waited >= queue_wait:
                break
            pause = min(delay, queue_wait - waited)
            log.info("Earth Engine's queue is full; waiting %.0f s before submitting %s", pause,
                     format_years(waiting))
            sleep(pause)
            waited, delay = waited + pause, min(delay * 2, QUEUE_BACKOFF_MAX)
            refresh(study, manifest)
        report.waiting_for_queue = waiting
        after = manifest.years()
        acted = set(report.submitted) | set(report.retried) | set(report.failed) | set(waiting) | set(report.adopted)
        for year in study.years:
            record = after[year]
            if year in acted:
                continue
            if record.state in (m.COMPLETED, *m.ACTIVE):
                report.already.append(year)
            elif record.state in (m.FAILED, m.CANCELLED):
                report.held.append(year)
                if record.state == m.FAILED and before[year].state != m.FAILED:
                    report.failed[year] = _failure_text(record)
    return report


def _failure_text(record: YearRecord) -> str:
    message = record.last_error or "failed"
    fix = ee_api.permanent_fix(message)
    if fix:
        return f"{message} (not retried: {fix})"
    return f"{message} (gave up after {record.failures} failed attempt(s); raise export.max_attempts or " \
           "run `eetrend export CONFIG --resubmit` to try again)"


def _cancel_quietly(task: str) -> None:
    try:
        ee_api.cancel_operation(task)
    except Exception as exc:  # noqa: BLE001 - a task that already ended cannot be cancelled; that is fine
        log.warning("could not cancel %s: %s", task, exc)


# -- status and cancel ----------------------------------------------------------------------------
def _status_rows(study: Study, records: dict[int, YearRecord]) -> list[YearRecord]:
    """One row per year of the config, NOT_SUBMITTED where the manifest has none."""
    return [records.get(year) or YearRecord(year, "NOT_SUBMITTED", "", "", {}) for year in study.years]


def study_status(study: Study, *, refresh_remote: bool = True) -> list[YearRecord]:
    """Every year of the study as the manifest holds it, refreshed from Earth Engine first."""
    if not study.manifest_path.exists():  # nothing submitted yet: say so without creating state
        return _status_rows(study, {})
    with open_manifest(study) as manifest:
        if refresh_remote:
            refresh(study, manifest)  # connects only when a year has a live task
        return _status_rows(study, manifest.years())


def watch(study: Study, on_update: Callable[[list[YearRecord]], None], *, interval: float = 30.0,
          timeout: float | None = None, sleep: Callable[[float], None] = time.sleep) -> list[YearRecord]:
    """Poll until no year has a live task (or ``timeout`` seconds pass), calling ``on_update`` each time."""
    if not (interval > 0 and math.isfinite(interval)):
        raise UsageError(f"--interval is {interval}; give the seconds between polls, more than 0")
    waited = 0.0
    with open_manifest(study) as manifest:
        while True:
            refresh(study, manifest)
            rows = _status_rows(study, manifest.years())
            on_update(rows)
            if not any(r.state in m.ACTIVE for r in rows) or (timeout is not None and waited >= timeout):
                return rows
            sleep(interval)
            waited += interval


@holds_study_lock
def cancel_study(study: Study, years: Iterable[int] | None = None) -> list[int]:
    """Cancel the live tasks of ``years`` (default: all); returns the years asked to cancel."""
    wanted = set(years) if years is not None else set(study.years)
    unknown = wanted - set(study.years)
    if unknown:
        raise UsageError(f"--years {format_years(unknown)} are not years of study '{study.name}' "
                         f"({format_years(study.years)})")
    cancelled = []
    with open_manifest(study) as manifest:
        refresh(study, manifest, wanted)  # connects if any wanted year has a task to cancel
        for record in manifest.years().values():
            if record.year not in wanted:
                continue
            if record.state in (m.READY, m.RUNNING) and record.task:
                try:
                    ee_api.cancel_operation(record.task)
                except Exception as exc:  # noqa: BLE001
                    raise ee_api.translate(exc, f"cancelling {record.year}") from None
                manifest.update(record.year, state=m.CANCEL_REQUESTED)
                cancelled.append(record.year)
            elif record.state == m.PENDING:
                manifest.update(record.year, state=m.CANCELLED)
                cancelled.append(record.year)
        refresh(study, manifest, wanted)
    return cancelled
