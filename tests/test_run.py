"""``eetrend run`` and ``eetrend demo`` end to end through the CLI against the emulator."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.run import output_paths
from tests.conftest import study_lock_held_by_another_thread

runner = CliRunner()


def _run(path, *args):
    return runner.invoke(app, ["run", str(path), *args])


def _media_requests(emulator):
    return sum(1 for method, p, _ in emulator.router.log if method == "GET" and "/drive/v3/files/" in p)


@pytest.fixture
def study4(make_study):
    return make_study(years="2000..2003", extra='[trend]\nmethod = "ols"')


def test_a_study_completes_and_a_second_run_does_nothing(emulator, study4):
    path, study = study4
    first = _run(path)
    assert first.exit_code == 75, first.output
    assert "submitted 4 export task(s): 2000-2003" in first.output and "still waiting on Earth Engine" in first.output
    emulator.earthengine.finish_all()
    second = _run(path)
    assert second.exit_code == 0, second.output
    assert "downloaded and verified 4 file(s)" in second.output and "fitted ols trend of 2000-2003" in second.output
    outputs = output_paths(study)
    assert all(p.exists() for p in outputs.values())
    stamp = outputs["report"].stat().st_mtime_ns
    requests = len(emulator.router.log)

    third = _run(path)
    assert third.exit_code == 0
    assert third.output.strip() == f"complete and up to date: {outputs['trend']}"
    assert len(emulator.router.log) == requests  # not a single request: nothing submitted, listed or fetched
    assert outputs["report"].stat().st_mtime_ns == stamp  # not refitted


def test_the_report_records_years_tasks_checksums_timings_and_versions(emulator, study4):
    path, study = study4
    _run(path)
    emulator.earthengine.finish_all()
    assert _run(path).exit_code == 0
    report = json.loads(output_paths(study)["report"].read_text())
    assert report["years"] == [2000, 2001, 2002, 2003] and report["status"] == "complete"
    assert {"eetrend", "earthengine-api", "numpy", "gdal"} <= set(report["versions"])
    assert report["timings_seconds"]["wall"] > 0
    for item in report["per_year"]:
        (entry,) = item["files"]
        local = study.downloads / entry["path"]
        assert hashlib.md5(local.read_bytes()).hexdigest() == entry["md5"]
        assert item["task_id"] and re.fullmatch(r"[A-Z0-9]{24}", item["task_id"])


def test_the_trend_output_recovers_the_known_slopes(emulator, make_study):
    path, study = make_study(years="1995..2015", extra='[trend]\nmethod = "ols"')
    _run(path)
    emulator.earthengine.finish_all()
    assert _run(path).exit_code == 0
    with rasterio.open(output_paths(study)["trend"]) as dataset:
        slope = dataset.read(list(dataset.descriptions).index("slope") + 1)
    truth = emulator.rasters.truth().slope
    inside = emulator.rasters.grid.inside  # pixels outside the region are masked every year: no trend there
    assert np.isnan(slope[~inside]).all() and np.isfinite(slope[inside]).mean() > 0.99
    assert np.nanmedian(np.abs(slope - truth)) < 5e-4  # noise 0.01 over 21 years
    assert np.corrcoef(slope[inside].ravel(), truth[inside].ravel())[0, 1] > 0.99


def test_a_run_killed_during_download_completes_when_run_again(emulator, study4, monkeypatch):
    import pipeline.earthengine.downloads as downloads

    path, study = study4
    _run(path)
    emulator.earthengine.finish_all()
    real = downloads._fetch_range
    calls = []

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(downloads, "_fetch_range", dies_on_the_third_chunk)
    killed = _run(path)
    assert killed.exit_code == 130
    monkeypatch.setattr(downloads, "_fetch_range", real)
    again = _run(path)
    assert again.exit_code == 0, again.output
    assert not [p for p in study.downloads.rglob("*") if p.name.endswith(".partial")]
    assert all(p.exists() for p in output_paths(study).values())


def test_an_overlapping_run_is_refused_with_the_lock_code(emulator, study4):
    import os

    path, study = study4
    with study_lock_held_by_another_thread(study):
        result = _run(path)
    assert result.exit_code == 3
    assert f"another eetrend command is working on study 'test-study' (pid {os.getpid()} " in result.output
    assert _run(path).exit_code == 75  # the lock is free again


def test_a_stale_lock_file_from_a_dead_process_is_recovered(emulator, study4, tmp_path):
    path, study = study4
    study.state.mkdir(parents=True)
    (study.state / "run.lock").write_text("pid 999999 since 2026-01-01 00:00:00 UTC")
    log = tmp_path / "run.log"
    result = _run(path, "--log-file", str(log))
    assert result.exit_code == 75
    text = log.read_text()
    assert "recovered the lock of a command that ended without releasing it (pid 999999" in text
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO eetrend.run: test-study: exit 75$", text, re.M)


def test_an_added_year_is_exported_and_downloaded_alone_then_refitted(emulator, study4):
    path, study = study4
    _run(path)
    emulator.earthengine.finish_all()
    assert _run(path).exit_code == 0
    operations, media = len(emulator.earthengine.operations), _media_requests(emulator)
    path.write_text(path.read_text().replace('years = "2000..2003"', 'years = "2000..2004"'))
    waiting = _run(path)
    assert waiting.exit_code == 75 and "submitted 1 export task(s): 2004" in waiting.output
    assert len(emulator.earthengine.operations) == operations + 1
    emulator.earthengine.finish_all()
    done = _run(path)
    assert done.exit_code == 0 and "downloaded and verified 1 file(s)" in done.output
    assert _media_requests(emulator) == media + 1
    report = json.loads(output_paths(study)["report"].read_text())
    assert report["years"] == [2000, 2001, 2002, 2003, 2004]


def test_changing_the_trend_method_refits_without_touching_earth_engine(emulator, study4):
    path, study = study4
    _run(path)
    emulator.earthengine.finish_all()
    assert _run(path).exit_code == 0
    requests = len(emulator.router.log)
    path.write_text(path.read_text().replace('method = "ols"', 'method = "sen"'))
    result = _run(path)
    assert result.exit_code == 0 and "fitted sen trend" in result.output
    assert len(emulator.router.log) == requests
    with rasterio.open(output_paths(study)["trend"]) as dataset:
        assert "sen_slope" in dataset.descriptions


def test_a_task_failing_beyond_its_retries_exits_1_naming_the_year_and_the_error(emulator, make_study):
    path, study = make_study(years="2000..2002", export='folder = "eetrend_test"\nmax_attempts = 2')
    emulator.earthengine.fail_tasks("_2001", "Computation timed out.", times=5)
    assert _run(path).exit_code == 75
    emulator.earthengine.finish_all()
    assert _run(path).exit_code == 75  # attempt 2 submitted
    emulator.earthengine.finish_all()
    result = _run(path)
    assert result.exit_code == 1
    assert "2001 needs attention: Computation timed out. (gave up after 2 failed attempt(s)" in result.output
    assert not output_paths(study)["trend"].exists()


def test_run_help_documents_the_exit_codes():
    result = runner.invoke(app, ["run", "--help"])
    text = " ".join(result.output.split())
    assert "75 waiting on Earth Engine" in text and "3 another run holds the study's lock" in text


def test_demo_runs_the_whole_pipeline_and_matches_the_truth(tmp_path):
    folder = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    match = re.search(r"median \|fitted - true slope\| = ([0-9.]+) .* sign right in ([0-9.]+)%", result.output)
    assert float(match.group(1)) < 5e-4 and float(match.group(2)) > 99.0
    outputs = {name: folder / "outputs" / f"demo_{suffix}" for name, suffix in
               (("trend", "trend.tif"), ("png", "slope.png"), ("report", "report.json"))}
    assert all(p.exists() for p in outputs.values())
    assert list(folder.glob("downloads/*.vrt"))  # the demo's years arrive split into tiles
    import matplotlib.image

    picture = matplotlib.image.imread(outputs["png"])
    assert picture.shape[0] > 300 and picture.shape[1] > 500
    opaque = picture[..., 3] > 0
    assert opaque.mean() > 0.3 and np.unique(picture[opaque][:, :3].round(2), axis=0).shape[0] > 50  # not blank
    # A demo folder is made afresh; a folder that is not a demo's is refused.
    assert runner.invoke(app, ["demo", str(folder), "--years", "2000..2004"]).exit_code == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    refused = runner.invoke(app, ["demo", str(other)])
    assert refused.exit_code == 2 and (other / "thesis.tex").exists()


def test_a_dask_table_fits_on_a_dask_cluster_with_the_same_result(emulator, make_study):
    pytest.importorskip("distributed")
    path, study = make_study(years="2000..2004", extra='[trend]\nmethod = "ols"')
    _run(path)
    emulator.earthengine.finish_all()
    assert _run(path).exit_code == 0
    with rasterio.open(output_paths(study)["trend"]) as dataset:
        local = dataset.read()
    path.write_text(path.read_text() + "\n[dask]\nworkers = 2\n")
    output_paths(study)["report"].unlink()  # outputs incomplete: the next run fits again
    result = _run(path)
    assert result.exit_code == 0 and "fitted ols trend" in result.output
    with rasterio.open(output_paths(study)["trend"]) as dataset:
        assert np.array_equal(dataset.read(), local, equal_nan=True)


def test_a_study_with_counts_and_every_statistic_records_them(emulator, make_study):
    path, study = make_study(
        years="2000..2005", composite="count_band = true",
        extra='[trend]\nmethod = "sen"\nmk_test = "hamed-rao"\nfdr = "by"\nfdr_q = 0.1\nchangepoint = "pettitt"\n'
              'min_fraction = 0.5\nedge_years = 2\nmin_count = 2')
    _run(path)
    emulator.earthengine.finish_all()
    result = _run(path)
    assert result.exit_code == 0, result.output
    outputs = output_paths(study)
    with rasterio.open(outputs["trend"]) as ds:
        names = ds.descriptions
        bands = dict(zip(names, ds.read(), strict=True))
        tags = ds.tags()
    assert names[-6:] == ("cp_year", "cp_p", "obs_mean", "obs_slope", "p_fdr", "trend_class_fdr")
    assert tags["count_band"] == "2" and tags["min_count"] == "2" and tags["mk_test"].startswith("hamed-rao")
    fitted = np.isfinite(bands["mk_p"])
    assert fitted.mean() > 0.9 and int(tags["fdr_tests"]) == fitted.sum()
    assert np.nanmin(bands["obs_mean"]) >= 1.0  # the emulator's counts: a few clear scenes per year
    report = json.loads(outputs["report"].read_text())
    statistics = report["statistics"]
    assert statistics["mk_test"] == "hamed-rao" and statistics["count_band"] == 2 and statistics["min_count"] == 2
    assert statistics["fdr"] == {"method": "fdr_by", "q": 0.1}
    assert statistics["fdr_result"]["tests"] == str(fitted.sum())
    assert statistics["min_fraction"] == 0.5 and statistics["edge_years"] == 2
    assert statistics["changepoint"] == "pettitt"


def test_a_year_that_failed_for_good_keeps_its_cause_and_fix_in_every_later_run(emulator, make_study):
    """The reported bug: 'User memory limit exceeded' became 'cancelled or given up; run --resubmit' next time,
    which cannot help: the same request fails the same way."""
    path, study = make_study(years="2000..2002", extra='[trend]\nmethod = "ols"')
    emulator.earthengine.fail_tasks("_2001", "User memory limit exceeded.")
    assert runner.invoke(app, ["run", str(path)]).exit_code == 75
    emulator.earthengine.finish_all()
    cause = "2001 needs attention: User memory limit exceeded. (not retried: shrink the region, raise region.scale"
    for attempt in range(3):  # the run that sees the failure, and every run after it
        result = runner.invoke(app, ["run", str(path)])
        assert result.exit_code == 1, (attempt, result.output)
        assert cause in result.output, (attempt, result.output)
        assert "--resubmit" not in result.output, (attempt, result.output)
    status = runner.invoke(app, ["status", str(path), "--cached", "--json"])
    (year,) = [item for item in json.loads(status.output)["years"] if item["year"] == 2001]
    assert year["state"] == "FAILED" and year["last_error"] == "User memory limit exceeded."
    assert year["fix"].startswith("shrink the region")


def test_a_cancelled_year_still_points_to_resubmit(emulator, make_study):
    path, study = make_study(years="2000..2001", extra='[trend]\nmin_years = 2\nmethod = "ols"')
    assert runner.invoke(app, ["run", str(path)]).exit_code == 75
    assert runner.invoke(app, ["cancel", str(path), "--years", "2001"]).exit_code == 0
    emulator.earthengine.finish_all()
    for _ in range(2):
        result = runner.invoke(app, ["run", str(path)])
        assert result.exit_code == 1, result.output
        assert "2001 needs attention: its task was cancelled; run: eetrend export CONFIG --resubmit" in result.output
