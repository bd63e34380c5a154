"""``eetrend export`` / ``status`` / ``cancel`` end to end: real ee client, emulator, SQLite manifest."""

from __future__ import annotations

import json
from collections import Counter

import ee
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.earthengine import manifest as m
from pipeline.earthengine.exports import export_study, study_status
from pipeline.earthengine.manifest import Manifest
from pipeline.errors import ConfigChangedError, UsageError
from tests.conftest import TWO_YEARS

runner = CliRunner()
YEARS = list(range(1995, 2016))


def _descriptions(emulator) -> Counter:
    return Counter(op.description for op in emulator.earthengine.operations.values())


def _rows(study) -> dict[int, m.YearRecord]:
    with Manifest(study.manifest_path) as manifest:
        return manifest.years()


def test_twenty_one_years_are_submitted_once_and_a_second_run_submits_nothing(emulator, make_study):
    path, study = make_study()
    report = export_study(study)
    assert report.submitted == YEARS
    assert len(emulator.earthengine.operations) == 21
    assert set(_descriptions(emulator).values()) == {1}

    requests_before = emulator.earthengine.export_requests
    again = export_study(study)
    assert again.submitted == [] and again.already == YEARS
    assert emulator.earthengine.export_requests == requests_before  # not even a deduplicated request
    rows = _rows(study)
    assert all(rows[y].state == m.READY and rows[y].attempts == 1 for y in YEARS)
    assert len({rows[y].request_id for y in YEARS}) == 21


def test_an_export_interrupted_half_way_resumes_with_exactly_one_task_per_year(emulator, make_study, monkeypatch):
    path, study = make_study()
    real_export = ee.data.exportImage
    calls = []

    def export_then_die(request_id, params):
        result = real_export(request_id, params)
        calls.append(request_id)
        if len(calls) == 11:  # Earth Engine created the task; the run dies before the manifest records it
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(ee.data, "exportImage", export_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_study(study)
    assert len(emulator.earthengine.operations) == 11
    rows = _rows(study)
    assert [y for y in YEARS if rows[y].state == m.SUBMITTING] == [2005]
    monkeypatch.setattr(ee.data, "exportImage", real_export)

    report = export_study(study)
    assert report.submitted == YEARS[10:]  # 2005 is asked again with the same requestId
    assert len(emulator.earthengine.operations) == 21
    assert set(_descriptions(emulator).values()) == {1}
    rows = _rows(study)
    assert len({rows[y].task for y in YEARS}) == 21
    assert all(rows[y].attempts == 1 for y in YEARS)


def test_a_failed_task_is_retried_then_given_up_with_each_error_kept(emulator, make_study):
    path, study = make_study(export='folder = "eetrend_test"\nmax_attempts = 3')
    emulator.earthengine.fail_tasks("_2003", "Internal error: worker lost.", times=10)
    export_study(study)
    for attempt in (2, 3):
        emulator.earthengine.finish_all()
        report = export_study(study)
        assert report.retried == [2003]
        assert _rows(study)[2003].attempts == attempt
    emulator.earthengine.finish_all()
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 1
    assert "2003 failed: Internal error: worker lost. (gave up after 3 failed attempt(s)" in result.output
    row = _rows(study)[2003]
    assert row.state == m.FAILED and row.failures == 3
    assert [e["attempt"] for e in row.errors] == [1, 2, 3]
    assert _descriptions(emulator)[study.description(2003)] == 3

    # A later run holds it back instead of trying forever; --resubmit gives it fresh attempts.
    later = export_study(study)
    assert later.held == [2003] and later.submitted == [] and later.retried == []
    assert export_study(study, resubmit=True).retried == [2003]


def test_export_too_large_is_never_retried_and_says_how_to_fix_it(emulator, make_study):
    path, study = make_study()
    message = ("Export too large: specified 2000000000 pixels (max: 10000000000). Specify higher maxPixels value "
               "if you intend to export a large area.")
    emulator.earthengine.fail_tasks("_2010", message)
    export_study(study)
    emulator.earthengine.finish_all()
    report = export_study(study)
    assert report.retried == [] and 2010 in report.failed
    assert "raise export.max_pixels, set export.file_dimensions" in report.failed[2010]
    assert _descriptions(emulator)[study.description(2010)] == 1

    # Raising maxPixels changes how the year is requested, not its pixels: it is submitted again, no --force.
    path.write_text(path.read_text().replace('folder = "eetrend_test"', 'folder = "eetrend_test"\nmax_pixels = 1e13'))
    from pipeline.config import load_study

    report = export_study(load_study(path))
    assert report.retried == [2010]
    assert _descriptions(emulator)[study.description(2010)] == 2


def test_a_full_queue_is_waited_out_and_the_rest_submitted_later(emulator, make_study):
    path, study = make_study()
    emulator.earthengine.queue_limit = 8
    first = export_study(study)
    assert first.submitted == YEARS[:8] and first.waiting_for_queue == YEARS[8:]
    assert all(_rows(study)[y].state == m.PENDING and _rows(study)[y].attempts == 0 for y in YEARS[8:])

    waits = []

    def sleep(seconds):  # the emulator's tasks progress while eetrend waits
        waits.append(seconds)
        emulator.clock.advance(seconds)

    second = export_study(study, queue_wait=3600, sleep=sleep)
    assert second.submitted == YEARS[8:] and second.waiting_for_queue == []
    assert waits and waits[0] == 30.0 and all(b == min(2 * a, 600) for a, b in zip(waits, waits[1:], strict=False))
    assert len(emulator.earthengine.operations) == 21


def test_503_bursts_on_every_endpoint_are_survived(emulator, make_study, http_sleeps):
    path, study = make_study()
    faults = [
        emulator.inject("POST", r"image:export$", status=503, times=4),
        emulator.inject("GET", r"/operations$", status=503, times=2),
        emulator.inject("GET", r"/algorithms$", status=429, times=1),
    ]
    assert export_study(study).submitted == YEARS
    emulator.clock.advance(10)
    assert export_study(study).already == YEARS
    assert [f.hits for f in faults] == [4, 2, 1]
    assert len(http_sleeps) == 7  # every fault was answered by a backoff and a retry
    assert len(emulator.earthengine.operations) == 21


def test_a_dropped_connection_during_submission_is_not_duplicated(emulator, make_study, http_sleeps):
    path, study = make_study(earthengine='auth = "none"\nhttp_retries = 0')
    emulator.inject("POST", r"image:export$", times=1, drop=True)
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 1
    assert "will not be duplicated" in result.output
    assert _rows(study)[1995].state == m.SUBMITTING
    assert export_study(study).submitted == YEARS
    assert set(_descriptions(emulator).values()) == {1}


def test_a_pixel_changing_config_edit_is_refused_unless_forced(emulator, make_study):
    path, study = make_study(years="2008..2016", composite='sensors = ["ETM+", "OLI"]')
    export_study(study)
    emulator.clock.advance(10)  # tasks are running
    path.write_text(path.read_text().replace('sensors = ["ETM+", "OLI"]', 'sensors = ["TM", "ETM+", "OLI"]'))
    from pipeline.config import load_study

    changed = load_study(path)
    with pytest.raises(ConfigChangedError, match=r"composite\.sensors changed since years 2008-2012 were exported"):
        export_study(changed)
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 2 and "--force" in result.output

    report = export_study(changed, force=True)
    assert report.restarted == [2008, 2009, 2010, 2011, 2012]
    assert report.submitted == [2008, 2009, 2010, 2011, 2012]
    assert report.already == [2013, 2014, 2015, 2016]
    states = Counter(state for _, state in emulator.earthengine.states())
    assert states["CANCELLING"] == 5 and len(emulator.earthengine.operations) == 14  # as the service reports
    emulator.clock.advance(emulator.earthengine.cancel_seconds)
    assert Counter(state for _, state in emulator.earthengine.states())["CANCELLED"] == 5


def test_status_json_and_table(emulator, make_study):
    path, study = make_study(years="2000..2004")
    emulator.earthengine.fail_tasks("_2002", "User memory limit exceeded.")
    export_study(study)
    emulator.earthengine.finish_all()
    result = runner.invoke(app, ["status", str(path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    years = {item["year"]: item for item in payload["years"]}
    assert sorted(years) == [2000, 2001, 2002, 2003, 2004]
    assert years[2000]["state"] == "COMPLETED" and years[2000]["progress"] == 1.0
    assert years[2000]["destination_uris"][0].startswith("https://drive.google.com/#folders/")
    assert years[2000]["elapsed_seconds"] == pytest.approx(35.0, abs=1)
    assert years[2002]["state"] == "FAILED" and years[2002]["last_error"] == "User memory limit exceeded."
    assert "shrink the region" in years[2002]["fix"]

    table = runner.invoke(app, ["status", str(path), "--cached"])
    assert table.exit_code == 0
    assert "COMPLETED: 4" in table.output and "FAILED: 1" in table.output


def test_watch_polls_until_every_task_has_ended(emulator, make_study):
    from pipeline.earthengine.status_view import watch_with_progress

    path, study = make_study(years="2000..2003")
    export_study(study)
    progress_seen = []

    def sleep(seconds):
        emulator.clock.advance(seconds)

    from pipeline.earthengine.exports import watch

    rows = watch(study, lambda rows: progress_seen.append([r.progress for r in rows]), interval=10, sleep=sleep)
    assert all(r.state == m.COMPLETED for r in rows)
    assert len(progress_seen) >= 3
    firsts = [p[0] for p in progress_seen]
    assert firsts == sorted(firsts) and firsts[0] < 1.0 and firsts[-1] == 1.0
    # The progress-bar variant returns the same end state.
    assert all(r.state == m.COMPLETED for r in watch_with_progress(study, interval=10, show=False, sleep=sleep))


def test_cancel_then_export_holds_the_cancelled_years(emulator, make_study):
    path, study = make_study(years="2000..2005")
    export_study(study)
    result = runner.invoke(app, ["cancel", str(path), "--years", "2001-2002"])
    assert result.exit_code == 0 and "cancelled 2001-2002" in result.output
    rows = _rows(study)
    assert rows[2001].state == m.CANCEL_REQUESTED and rows[2000].state == m.READY  # the service says CANCELLING
    emulator.clock.advance(emulator.earthengine.cancel_seconds)
    report = export_study(study)
    assert _rows(study)[2001].state == m.CANCELLED
    assert report.held == [2001, 2002] and report.submitted == []
    assert export_study(study, resubmit=True).retried == [2001, 2002] and len(emulator.earthengine.operations) == 8
    result = runner.invoke(app, ["cancel", str(path), "--years", "1990"])
    assert result.exit_code == 2 and "not years of study" in result.output


def test_a_state_folder_belongs_to_one_study(emulator, make_study):
    path, study = make_study()
    export_study(study)
    path.write_text(path.read_text().replace('name = "test-study"', 'name = "other-study"'))
    from pipeline.config import load_study

    with pytest.raises(UsageError, match="belongs to study 'test-study'"):
        study_status(load_study(path))


def test_cli_export_prints_a_summary_and_status_needs_no_network_with_cached(emulator, make_study):
    path, study = make_study(years="2000..2002")
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 0 and "submitted 3 task(s): 2000-2002" in result.output
    emulator.stop()  # nothing listens any more
    cached = runner.invoke(app, ["status", str(path), "--cached", "--json"])
    assert cached.exit_code == 0
    assert [y["state"] for y in json.loads(cached.output)["years"]] == ["READY"] * 3


def test_status_of_a_study_never_exported_creates_no_state(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    result = runner.invoke(app, ["status", str(path), "--json"])
    assert result.exit_code == 0
    assert [y["state"] for y in json.loads(result.output)["years"]] == ["NOT_SUBMITTED"] * 2
    assert not study.state.exists()
