"""The direct route (issue 21): each year fetched as computePixels tiles, against the emulator.

The bars: the same study through ``destination = "direct"`` and through Drive gives the
same years and trend (masked pixels included); every request stays within computePixels'
documented limits with at most ``direct_workers`` in flight; a run killed mid-way asks
for no finished tile again; tiles over the emulator's memory limit are split and the
study completes; bad input is one line and exit 2.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_study
from pipeline.earthengine import direct, direct_plan
from pipeline.earthengine import manifest as m
from pipeline.earthengine.client import EXPORT_NODATA
from pipeline.earthengine.exports import export_study
from pipeline.earthengine.grid import study_grid
from pipeline.run import run_study
from tests.conftest import study_toml

runner = CliRunner()
YEARS = "2000..2005"
REGIONS = {
    # Landsat's grid (crsTransform): UTM at 30 m
    "landsat-grid": 'bbox = [10.0, 46.0, 10.116, 46.054]\ncrs = "EPSG:32632"\nscale = 30',
    # scale only (no crsTransform): 60 m from the CRS origin
    "scale": 'bbox = [10.0, 46.0, 10.2, 46.09]\ncrs = "EPSG:32632"\nscale = 60',
}


def _study(tmp_path: Path, emulator, folder: str, **kwargs):
    base = tmp_path / folder
    base.mkdir(parents=True, exist_ok=True)
    path = base / "study.toml"
    path.write_text(study_toml(emulator.url, **kwargs))
    return path, load_study(path)


def _direct(tmp_path, emulator, folder="direct", tile=256, workers=4, years=YEARS, **kwargs):
    export = f'destination = "direct"\ndirect_tile = {tile}\ndirect_workers = {workers}'
    return _study(tmp_path, emulator, folder, years=years, export=export, **kwargs)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def _pixel_requests(emulator) -> list[dict]:
    return [r.json() for r in emulator.router.requests if r.path.endswith("image:computePixels")]


def _served(emulator) -> set[tuple]:
    return set(emulator.earthengine.pixels_windows)


@pytest.mark.parametrize(("region", "composite"), [("landsat-grid", ""), ("scale", ""),
                                                    ("landsat-grid", "count_band = true")],
                         ids=["landsat-grid", "scale", "count-band"])
def test_direct_and_drive_give_identical_years_and_trends_masked_pixels_included(tmp_path, emulator, region,
                                                                               composite):
    _, drive = _study(tmp_path, emulator, "drive", years=YEARS, region=REGIONS[region], composite=composite)
    export_study(drive)
    emulator.earthengine.finish_all()
    by_drive = run_study(drive)
    assert by_drive.exit_code == 0, by_drive.lines
    exported_grid = emulator.rasters.grid

    _, fetched = _direct(tmp_path, emulator, region=REGIONS[region], composite=composite)
    assert "nothing to submit" in export_study(fetched).lines()[0]
    by_direct = run_study(fetched)
    assert by_direct.exit_code == 0, by_direct.lines

    grid = study_grid(fetched)  # the grid the direct route asked for is the one the export wrote
    assert (grid.width, grid.height, grid.transform) == (exported_grid.width, exported_grid.height,
                                                         exported_grid.transform)
    masked_total = 0
    for year in fetched.years:
        name = f"{fetched.prefix(year)}.tif"
        with rasterio.open(drive.downloads / name) as a, rasterio.open(fetched.downloads / name) as b:
            assert (a.crs, a.transform, a.shape, a.count, a.dtypes) == (b.crs, b.transform, b.shape, b.count, b.dtypes)
            assert a.nodata == b.nodata == EXPORT_NODATA
            assert np.array_equal(a.read(), b.read())  # every band (the clear-scene count too)
            values = b.read(1)
        composite = emulator.rasters.composite(year)  # NaN where clouds or outside the region
        masked = np.isnan(composite)
        assert masked.any() and (~masked).any()
        assert np.all(values[masked] == EXPORT_NODATA)  # every masked pixel is the declared no-data, never 0
        assert np.array_equal(values[~masked], composite[~masked].astype(np.float32))
        masked_total += int(masked.sum())
    assert masked_total > 0
    with rasterio.open(by_drive.outputs["trend"]) as a, rasterio.open(by_direct.outputs["trend"]) as b:
        assert a.descriptions == b.descriptions
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
        n = b.read(b.descriptions.index("n") + 1)
    valid_years = sum(~np.isnan(emulator.rasters.composite(y)) for y in fetched.years)
    counted = ~np.isnan(n)
    assert np.array_equal(n[counted], valid_years[counted])  # no masked pixel counted as a year


def test_every_request_is_within_the_limits_on_the_export_grid_and_at_most_direct_workers_run_at_once(
        tmp_path, emulator):
    emulator.earthengine.pixels_gather = 3  # each request waits until 3 are in flight (or 5 s): parallelism shows
    path, study = _direct(tmp_path, emulator, tile=256, workers=3, years="2000..2002",
                          region='bbox = [10.0, 46.0, 10.2, 46.09]\ncrs = "EPSG:32632"\nscale = 30')
    result = run_study(study)
    assert result.exit_code == 0, result.lines
    assert emulator.earthengine.pixels_max_in_flight == 3
    grid = study_grid(study)
    requests = _pixel_requests(emulator)
    assert len(requests) == len(direct_plan.plan(grid, 256)) * 3
    for body in requests:
        assert body["fileFormat"] == "GEO_TIFF"
        dims = body["grid"]["dimensions"]
        assert max(dims["width"], dims["height"]) <= 32768
        assert dims["width"] * dims["height"] * 1 * (4 + 1) <= 48 * 1024 * 1024
        affine = body["grid"]["affineTransform"]
        col = (affine["translateX"] - grid.transform[2]) / grid.transform[0]
        row = (affine["translateY"] - grid.transform[5]) / grid.transform[4]
        assert col == int(col) and row == int(row)  # on the export's own grid, whole pixels from its corner
        assert body["grid"]["crsCode"] == "EPSG:32632"


def test_the_default_tile_fills_a_quarter_of_the_limit_aligned_to_blocks(tmp_path, emulator):
    _, study = _study(tmp_path, emulator, "d", export='destination = "direct"')
    assert study.direct_tile == 1536 and 1536 * 1536 * 5 <= 48 * 1024 * 1024 / 4
    _, counted = _study(tmp_path, emulator, "c", export='destination = "direct"', composite="count_band = true")
    assert counted.direct_tile == 1024
    result = run_study(study)
    assert result.exit_code == 0, result.lines
    assert len(_pixel_requests(emulator)) == len(study.years)  # a 303 x 205 grid is one tile a year


def test_a_run_killed_mid_way_asks_for_no_finished_tile_again(tmp_path, emulator, monkeypatch):
    path, study = _direct(tmp_path, emulator, tile=256, workers=2, years="2000..2002",
                          region='bbox = [10.0, 46.0, 10.2, 46.09]\ncrs = "EPSG:32632"\nscale = 30')
    recorded: list[tuple] = []
    real = m.Manifest.record_tile

    def record_then_die(self, year, window, state, *args, **kwargs):
        if state == direct.DONE and len(recorded) == 5:
            raise KeyboardInterrupt  # as SIGTERM or Ctrl-C reach the main thread
        real(self, year, window, state, *args, **kwargs)
        recorded.append((year, *window))

    monkeypatch.setattr(m.Manifest, "record_tile", record_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_study(study)
    monkeypatch.setattr(m.Manifest, "record_tile", real)
    import threading

    for thread in threading.enumerate():  # requests in flight at the interrupt end (a process would wait too)
        if thread.name.startswith("eetrend-pixels"):
            thread.join(30)
    with m.Manifest(study.manifest_path) as manifest:
        finished = {(t["year"], t["row"], t["col"], t["height"], t["width"]) for t in manifest.tiles()}
    assert finished == set(recorded) and len(finished) == 5
    assert not list(study.downloads.glob("*.tif"))  # no year was complete: nothing under a final name
    before = list(emulator.earthengine.pixels_windows)

    result = run_study(study)
    assert result.exit_code == 0, result.lines
    again = emulator.earthengine.pixels_windows[len(before):]
    assert not finished & set(again)  # no finished tile was asked for again
    planned = direct_plan.plan(study_grid(study), 256)
    assert set(before) | set(again) >= {(y, *w.key) for y in study.years for w in planned}
    assert not [p for p in study.downloads.rglob("*") if p.is_file() and p.suffix == ".tif"
                and p.parent != study.downloads]  # every year assembled: its tiles are gone


def test_tiles_over_the_memory_limit_are_split_and_the_study_completes_and_resumes_without_them(tmp_path, emulator):
    _, plain = _direct(tmp_path, emulator, folder="plain", tile=256)
    assert run_study(plain).exit_code == 0
    emulator.earthengine.fail_pixels_above = 20_000  # the 205 x 256 tile fails; its quarters and the edge pass
    _, study = _direct(tmp_path, emulator, folder="split", tile=256)
    served = len(emulator.earthengine.pixels_windows)
    bar: list[tuple[int, int]] = []
    result = run_study(study, tile_progress=lambda done, total: bar.append((done, total)))
    assert result.exit_code == 0, result.lines
    assert bar[0] == (0, 2 * 6) and bar[-1] == (5 * 6, 5 * 6)  # the bar counts tiles, splits add their quarters
    assert all(a[0] <= b[0] for a, b in zip(bar, bar[1:], strict=False))
    for year in study.years:
        name = f"{study.prefix(year)}.tif"
        assert np.array_equal(_read(plain.downloads / name), _read(study.downloads / name))
    answered = emulator.earthengine.pixels_windows[served:]
    assert all(h * w <= 20_000 for _, _, _, h, w in answered)
    assert {(2000, 0, 0, 103, 128), (2000, 103, 128, 102, 128), (2000, 0, 256, 205, 47)} <= set(answered)
    with m.Manifest(study.manifest_path) as manifest:
        splits = [t for t in manifest.tiles() if t["state"] == direct.SPLIT]
    assert len(splits) == len(study.years) and splits[0]["message"] == "User memory limit exceeded."
    counts = direct.tile_counts(study)
    assert counts[2000] == (5, 5)  # the split tile counts as its four quarters, plus the 47-pixel edge tile


def test_a_tile_still_too_large_at_the_floor_makes_its_year_need_attention_with_earth_engines_message(
        tmp_path, emulator):
    emulator.earthengine.fail_pixels_above = 100  # even a 32 x 32 tile is refused
    path, study = _direct(tmp_path, emulator, tile=256, years="2000..2002")
    result = run_study(study)
    assert result.exit_code == 1
    assert all("User memory limit exceeded." in line and "--resubmit" in line for line in result.problems)
    assert not list(study.downloads.glob("*.tif"))
    with m.Manifest(study.manifest_path) as manifest:
        assert {r.state for r in manifest.years().values()} == {m.FAILED}
    asked = len(emulator.earthengine.pixels_windows)
    held = run_study(study)  # a failed year is held: no request is repeated that is known to fail
    assert held.exit_code == 1 and len(emulator.earthengine.pixels_windows) == asked
    emulator.earthengine.fail_pixels_above = None
    resubmitted = runner.invoke(app, ["export", str(path), "--resubmit"])
    assert resubmitted.exit_code == 0, resubmitted.output
    assert run_study(study).exit_code == 0


def test_429_bursts_on_computepixels_are_retried_and_the_study_completes(tmp_path, emulator, http_sleeps):
    emulator.inject("POST", r"image:computePixels", status=429, times=9, reason="rateLimitExceeded",
                    message="Too many concurrent requests.")
    _, study = _direct(tmp_path, emulator, tile=256, workers=1, years="2000..2002")
    sleeps: list[float] = []
    from pipeline.earthengine.downloads import download_study

    report = download_study(study, sleep=sleeps.append)
    assert not report.failed and sorted(report.datasets) == [2000, 2001, 2002]
    assert http_sleeps and sleeps == [1.0]  # ee retried 5 times, then eetrend once more after 1 s


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_killed_download_subprocess_resumes_without_asking_for_finished_tiles(tmp_path, emulator, sig):
    import signal

    from tests.test_faults_process import eetrend, wait_for

    emulator.earthengine.pixels_delay = 0.3
    path, study = _direct(tmp_path, emulator, tile=256, workers=1, years="2000..2003")
    process = eetrend("download", str(path))

    def finished_tiles() -> set[tuple]:
        if not study.manifest_path.exists():
            return set()
        try:
            with sqlite3.connect(study.manifest_path) as db:
                rows = db.execute("SELECT year, row, col, height, width FROM direct_tiles WHERE state = 'done'")
                return {tuple(r) for r in rows}
        except sqlite3.OperationalError:
            return set()

    wait_for(lambda: len(finished_tiles()) >= 3, 60, "three finished tiles")
    process.send_signal(getattr(signal, sig))
    _, err = process.communicate(timeout=60)
    if sig == "SIGTERM":  # the requests in flight end, one line, 128 + 15; the tiles in stay recorded
        assert process.returncode == 143
        assert err.splitlines()[-1] == "interrupted (SIGTERM); nothing half-written was left under a final name"
    finished = finished_tiles()
    served = len(emulator.earthengine.pixels_windows)
    emulator.earthengine.pixels_delay = 0
    again = runner.invoke(app, ["download", str(path)])
    assert again.exit_code == 0, again.output
    assert not finished & set(emulator.earthengine.pixels_windows[served:])
    assert sorted(p.name for p in study.downloads.glob("*.tif")) == [f"{study.prefix(y)}.tif" for y in study.years]
    assert not [p for p in study.downloads.rglob("*") if ".partial" in p.name]  # the killed run's temporaries went


def test_status_shows_tiles_per_year_and_json_counts_them(tmp_path, emulator):
    path, study = _direct(tmp_path, emulator, tile=256, years="2000..2002")
    before = runner.invoke(app, ["status", str(path)])
    assert before.exit_code == 0 and "0/2" in before.output and not study.state.exists()
    assert runner.invoke(app, ["download", str(path)]).exit_code == 0
    table = runner.invoke(app, ["status", str(path)])
    assert table.exit_code == 0 and "tiles" in table.output and "2/2" in table.output
    payload = json.loads(runner.invoke(app, ["status", str(path), "--json"]).output)
    assert [y["tiles"] for y in payload["years"]] == [{"done": 2, "total": 2}] * 3
    exported = runner.invoke(app, ["export", str(path)])
    assert exported.exit_code == 0 and "nothing to submit" in exported.output
    assert "2 tile(s)" in exported.output
    again = runner.invoke(app, ["download", str(path)])
    assert "already downloaded and verified: 2000-2002" in again.output


def test_a_manifest_from_before_the_direct_route_opens_and_gains_its_table(tmp_path):
    path = tmp_path / "manifest.sqlite"
    with m.Manifest(path) as manifest:
        manifest.set("study", "old")
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE direct_tiles")
    with m.Manifest(path) as manifest:
        assert manifest.get("study") == "old" and manifest.tiles() == []
        manifest.record_tile(2000, (0, 0, 256, 256), direct.DONE, "f", path="x", size=1, md5="m")
        assert len(manifest.tiles(2000)) == 1


def test_a_study_too_large_for_the_direct_route_is_warned_with_its_number_of_requests(tmp_path, emulator):
    _, study = _study(tmp_path, emulator, "big", years="1990..2020", export='destination = "direct"',
                      region='bbox = [9.0, 46.0, 11.9, 49.0]\ncrs = "EPSG:32632"\nscale = 30')
    tiles, total = direct_plan.requests_needed(study)
    assert total == tiles * 31 > direct_plan.WARN_REQUESTS
    lines = export_study(study).lines()
    assert any(f"{total:,} computePixels requests" in line for line in lines)


@pytest.mark.parametrize(("export", "needle"), [
    ('destination = "direct"\ndirect_tile = 1000', "direct_tile = 1000 must be a multiple of 256"),
    ('destination = "direct"\ndirect_tile = 4096', "use at most 3072"),
    ('destination = "direct"\ndirect_workers = 50', "direct_workers = 50 must be 1-40"),
    ('destination = "direct"\ndirect_workers = 0', "direct_workers = 0 must be 1-40"),
    ('destination = "fax"', "export.destination"),
])
def test_bad_direct_settings_are_one_line_and_exit_2(tmp_path, emulator, export, needle):
    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, export=export))
    for command in ("download", "run", "export", "status"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert needle in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists()


def test_a_table_asset_region_is_refused_for_the_direct_route(tmp_path, emulator):
    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, export='destination = "direct"',
                               region='asset = "projects/p/assets/aoi"\ncrs = "EPSG:32632"'))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "needs region.bbox or region.geojson" in result.output


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--slow-pixels", "-1", "--slow-pixels -1.0: give 0 or more seconds"),
    ("--fail-pixels-above", "0", "--fail-pixels-above 0: give a number of pixels"),
])
def test_bad_emulator_pixel_flags_are_one_line_and_exit_2(flag, value, needle):
    result = runner.invoke(app, ["emulator", flag, value])
    assert result.exit_code == 2 and needle in result.output


# -- the emulator's computePixels --------------------------------------------------------------------
@pytest.fixture
def connected(tmp_path, emulator):
    from pipeline.earthengine import client
    from pipeline.earthengine.recipes import region
    from pipeline.earthengine.sources import year_image

    _, study = _direct(tmp_path, emulator)
    client.connect(study)
    area = region(study)
    return study, year_image(study, 2001, area), client.unmasked_for_export(year_image(study, 2001, area))


def _compute(image, grid):
    import ee

    return ee.data.computePixels({"expression": image, "fileFormat": "GEO_TIFF", "grid": grid})


def test_the_emulator_refuses_what_computepixels_refuses(connected, emulator):
    import ee

    study, _, image = connected
    grid = study_grid(study)
    cases = [
        (grid.rest_grid(0, 0, 4000, 4000), "Total request size (80000000 bytes) must be less than or equal to "
                                           "50331648 bytes."),
        (grid.rest_grid(0, 0, 1, 40000), "must be at most 32768 pixels on each side"),
        ({**grid.rest_grid(0, 0, 8, 8), "scale": 30}, 'Unknown name "scale"'),
    ]
    for body, message in cases:
        with pytest.raises(ee.EEException, match=message.replace("(", r"\(").replace(")", r"\)")):
            _compute(image, body)
    emulator.earthengine.pixels_concurrency = 0  # every request is beyond the quota: 429
    import googleapiclient.errors

    with pytest.raises(ee.EEException) as caught:
        _compute(image, grid.rest_grid(0, 0, 8, 8))
    assert isinstance(caught.value.__context__, googleapiclient.errors.HttpError)
    assert caught.value.__context__.resp.status == 429


def test_a_computepixels_answer_writes_masked_pixels_as_0_unless_the_image_is_unmasked(connected, emulator):
    from rasterio.io import MemoryFile

    study, plain, unmasked = connected
    grid = study_grid(study)
    window = grid.rest_grid(0, 0, grid.height, grid.width)
    with MemoryFile(_compute(plain, window)) as memory, memory.open() as ds:
        zeros = ds.read(1)
        assert ds.nodata is None
    masked = np.isnan(emulator.rasters.composite(2001))
    assert np.all(zeros[masked] == 0)
    with MemoryFile(_compute(unmasked, window)) as memory, memory.open() as ds:
        assert np.all(ds.read(1)[masked] == EXPORT_NODATA)


def test_every_request_of_a_direct_study_conforms(tmp_path, emulator):
    from pipeline.emulator.conformance import check

    emulator.earthengine.fail_pixels_above = 20_000  # splits too
    _, study = _direct(tmp_path, emulator, tile=256, composite="count_band = true")
    assert run_study(study).exit_code == 0
    assert _pixel_requests(emulator)
    assert check(emulator.router.requests) == []


def test_a_year_file_changed_on_disk_is_fetched_again_and_the_trend_refitted(tmp_path, emulator):
    path, study = _direct(tmp_path, emulator, tile=256)
    first = run_study(study)
    assert first.exit_code == 0
    target = study.downloads / f"{study.prefix(2003)}.tif"
    good = target.read_bytes()
    with open(target, "r+b") as handle:  # a byte flipped behind eetrend's back, same size and mtime changes
        handle.seek(len(good) // 2)
        handle.write(bytes([good[len(good) // 2] ^ 0xFF]))
    served = len(emulator.earthengine.pixels_windows)
    again = run_study(study)
    assert again.exit_code == 0, again.lines
    assert {w[0] for w in emulator.earthengine.pixels_windows[served:]} == {2003}
    assert target.read_bytes() == good and not again.fitted  # the same bytes: the outputs stay up to date


def test_5xx_beyond_every_retry_leaves_the_year_waiting_with_its_tiles_kept(tmp_path, emulator, http_sleeps,
                                                                           monkeypatch):
    monkeypatch.setattr(direct, "BACKOFF_FIRST", 0.0)  # eetrend's own backoff, not slept here
    _, study = _direct(tmp_path, emulator, tile=256, workers=1, years="2000..2002")
    emulator.inject("POST", r"image:computePixels", status=503, times=10_000)
    result = run_study(study)
    assert result.exit_code == 75, result.lines  # waiting on Earth Engine: run again later
    assert any("after 6 retries" in line for line in result.lines)
    with m.Manifest(study.manifest_path) as manifest:
        assert {r.state for r in manifest.years().values()} == {m.FETCHING}
    emulator.router.faults.clear()
    assert run_study(study).exit_code == 0


def test_an_answer_for_another_grid_is_never_kept_and_the_year_needs_attention(tmp_path, emulator, monkeypatch):
    import dataclasses

    monkeypatch.setattr(direct, "BACKOFF_FIRST", 0.0)
    real = emulator.earthengine.pixel_source

    def shifted(year, request, bands):  # one pixel to the east of the window asked for
        return real(year, dataclasses.replace(request, col=request.col + 1), bands)

    emulator.earthengine.pixel_source = shifted
    _, study = _direct(tmp_path, emulator, tile=256, workers=1, years="2000..2002")
    result = run_study(study)
    assert result.exit_code == 1
    assert all("does not match the window asked for (transform" in line for line in result.problems)
    assert not list(study.downloads.rglob("*.tif"))


def test_the_emulator_pixel_fault_flags_arm_the_service():
    from pipeline.emulator import Emulator
    from pipeline.emulator.faults import FaultPlan

    plan = FaultPlan.parse(slow_pixels=0.25, fail_pixels_above=1000, http_errors=["429:3:computePixels"])
    with Emulator() as emu:
        plan.apply(emu)
        assert (emu.earthengine.pixels_delay, emu.earthengine.fail_pixels_above) == (0.25, 1000)
        assert emu.router.faults[0].path == "computePixels" and emu.router.faults[0].status == 429
    assert "every computePixels answer waits 0.25 s" in plan.describe()
    assert "computePixels requests over 1,000 pixels answer 'User memory limit exceeded.'" in plan.describe()


def test_high_volume_sends_a_direct_study_to_earth_engines_high_volume_endpoint(tmp_path):
    from pipeline.earthengine.client import HIGH_VOLUME_URL, earthengine_url

    def study(export: str, earthengine: str):
        path = tmp_path / "s.toml"
        text = study_toml("http://127.0.0.1:1", export=export).replace(
            'endpoint = "http://127.0.0.1:1"\nauth = "none"', earthengine)
        path.write_text(text)
        return load_study(path)

    assert earthengine_url(study('destination = "direct"', "high_volume = true")) == HIGH_VOLUME_URL
    assert earthengine_url(study('folder = "x"', "high_volume = true")) is None  # exports keep the default
    assert earthengine_url(study('destination = "direct"', "")) is None


def test_tiles_that_disagree_across_runs_are_dropped_at_assembly_and_fetched_anew(tmp_path, emulator, monkeypatch):
    _, study = _direct(tmp_path, emulator, tile=256, workers=1, years="2000..2002")
    real_record, calls = m.Manifest.record_tile, []

    def record_then_die(self, year, window, state, *args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_record(self, year, window, state, *args, **kwargs)
        calls.append(window)

    monkeypatch.setattr(m.Manifest, "record_tile", record_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_study(study)
    monkeypatch.setattr(m.Manifest, "record_tile", real_record)
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("eetrend-pixels"):
            thread.join(30)
    with m.Manifest(study.manifest_path) as manifest:
        assert [t["year"] for t in manifest.tiles()] == [2000]  # one tile of 2000 is in, with one band
    real = emulator.earthengine.pixel_source
    emulator.earthengine.pixel_source = lambda year, request, bands: real(
        year, request, ["NDVI", "clear_count"] if year == 2000 else bands)
    first = run_study(study)  # 2000's other tile comes back with two bands
    assert first.exit_code == 1
    assert first.problems == ["2000 needs attention: download failed: assembling test-study_NDVI_2000.tif: tile "
                              "(0, 256, 205, 47) holds 2 band(s) of float32, the first 1 of float32; its tiles were "
                              "dropped, run again to fetch them anew"]
    assert not (study.downloads / "test-study_NDVI_2000.tif").exists()
    emulator.earthengine.pixel_source = real
    again = run_study(study)
    assert again.exit_code == 0, again.lines
    for year in study.years:
        assert _read(study.downloads / f"{study.prefix(year)}.tif").shape[0] == 1


def test_refused_credentials_while_fetching_are_one_line_and_keep_the_tiles_in(tmp_path, emulator):
    path, study = _direct(tmp_path, emulator, tile=256, workers=1, years="2000..2002")
    emulator.inject("POST", r"image:computePixels", status=401, times=1_000,
                    message="Request had invalid authentication credentials.")
    result = runner.invoke(app, ["download", str(path)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output  # AuthError's code, as for the batch route
    assert "credentials were refused" in lines[0] and "earthengine authenticate" in lines[0]
    assert "emulator-" not in result.output  # no token
    emulator.router.faults.clear()
    assert runner.invoke(app, ["download", str(path)]).exit_code == 0


def test_a_users_own_function_composite_comes_the_same_through_both_routes(tmp_path, emulator):
    from pipeline.emulator.conformance import check

    code = (Path(__file__).resolve().parents[1] / "configs" / "composites" / "sentinel2_ndvi.py").read_text()
    composite = 'function = "composites.py:annual"\nband = "ndvi"\ncount_band = "clear_count"'
    for folder in ("drive", "direct"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "composites.py").write_text(code)
    _, drive = _study(tmp_path, emulator, "drive", years="2016..2019", composite=composite)
    export_study(drive)
    emulator.earthengine.finish_all()
    assert run_study(drive).exit_code == 0
    _, fetched = _direct(tmp_path, emulator, years="2016..2019", composite=composite)
    by_direct = run_study(fetched)
    assert by_direct.exit_code == 0, by_direct.lines
    for year in fetched.years:
        name = f"{fetched.prefix(year)}.tif"
        with rasterio.open(drive.downloads / name) as a, rasterio.open(fetched.downloads / name) as b:
            assert a.descriptions == b.descriptions == ("ndvi", "clear_count")
            assert np.array_equal(a.read(), b.read())
    with rasterio.open(output_of(drive)) as a, rasterio.open(output_of(fetched)) as b:
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
    assert check(emulator.router.requests) == []


def output_of(study) -> Path:
    from pipeline.run import output_paths

    return output_paths(study)["trend"]
