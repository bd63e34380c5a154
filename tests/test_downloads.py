"""``eetrend download`` through the real google-api-python-client against the emulator's Drive and GCS."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.earthengine import manifest as m
from pipeline.earthengine.downloads import download_study
from pipeline.earthengine.exports import export_study
from pipeline.earthengine.manifest import Manifest
from pipeline.earthengine.remote import belongs_to, is_safe_name
from pipeline.engine.sample import sample_layer
from tests.conftest import TWO_YEARS

runner = CliRunner()


@pytest.fixture
def finished(emulator, make_study):
    """A study whose exports have all finished in the emulator."""

    def make(**kwargs):
        kwargs.setdefault("years", "2000..2003")
        path, study = make_study(**kwargs)
        export_study(study)
        emulator.earthengine.finish_all()
        return path, study

    return make


def _expected_layer(emulator, year):
    """The year's composite as the emulator made it: NaN where masked (clouds, outside the region)."""
    r = emulator.rasters
    layer = sample_layer(year, r.truth(), noise=r.noise, nan_fraction=r.nan_fraction, seed=r.seed)
    layer[~r.grid.inside] = np.nan
    return layer


def _read(dataset):
    """Band 1 with the file's declared nodata as NaN (as the trend engine reads it)."""
    values = dataset.read(1).astype(np.float32)
    assert dataset.nodata is not None and not np.isnan(dataset.nodata)  # the export declared its no-data value
    values[values == dataset.nodata] = np.nan
    return values


def _tiles(shape, size=256):
    return -(-shape[0] // size) * -(-shape[1] // size)


def _media_requests(emulator):
    return sum(1 for method, path, _ in emulator.router.log if method == "GET" and "/drive/v3/files/" in path)


def _no_partials(study):
    return [p for p in study.downloads.rglob("*") if p.name.endswith(".partial")]


def _drive_file(emulator, name):
    (stored,) = [f for f in emulator.drive.files.values() if f.name == name]
    return stored


def test_each_year_is_downloaded_verified_and_not_fetched_twice(emulator, finished):
    path, study = finished()
    report = download_study(study)
    assert sorted(report.datasets) == [2000, 2001, 2002, 2003] and not report.failed
    for year in study.years:
        local = study.downloads / f"test-study_NDVI_{year}.tif"
        remote = _drive_file(emulator, local.name)
        assert hashlib.md5(local.read_bytes()).digest() == remote.md5
        with rasterio.open(local) as dataset:
            np.testing.assert_array_equal(_read(dataset), _expected_layer(emulator, year))
    with Manifest(study.manifest_path) as manifest:
        files = manifest.files(2001)
    assert files["test-study_NDVI_2001.tif"]["md5"] == _drive_file(emulator, "test-study_NDVI_2001.tif").md5.hex()

    before = _media_requests(emulator)
    again = download_study(study)
    assert again.downloaded == [] and again.skipped_years == [2000, 2001, 2002, 2003]
    assert _media_requests(emulator) == before


def test_a_split_export_becomes_one_vrt_equal_to_the_whole_image(emulator, finished):
    path, study = finished(export='folder = "eetrend_test"\nfile_dimensions = 256')
    report = download_study(study)
    assert not report.failed
    vrt = study.downloads / "test-study_NDVI_2002.vrt"
    assert report.datasets[2002] == vrt
    shape = emulator.rasters.shape
    assert shape[1] > 256  # the region is wider than one file
    assert len(list((study.downloads / "parts" / "test-study_NDVI_2002").glob("*.tif"))) == _tiles(shape) >= 2
    with rasterio.open(vrt) as dataset:
        assert (dataset.height, dataset.width) == shape
        np.testing.assert_array_equal(_read(dataset), _expected_layer(emulator, 2002))
    # The trend engine reads the downloads folder as one dataset per year.
    from pipeline import fit_stack

    result = fit_stack(study.downloads, method="ols", min_years=2)
    assert result.years == (2000, 2001, 2002, 2003)


def test_a_missing_tile_is_named_and_nothing_is_left_under_a_final_name(emulator, finished):
    path, study = finished(export='folder = "eetrend_test"\nfile_dimensions = 256')
    gone = _drive_file(emulator, "test-study_NDVI_2001-0000000000-0000000000.tif")
    del emulator.drive.files[gone.id]
    result = runner.invoke(app, ["download", str(path)])
    assert result.exit_code == 1
    assert "2001 failed: split export is missing tile test-study_NDVI_2001-0000000000-0000000000.tif" in result.output
    assert not (study.downloads / "test-study_NDVI_2001.vrt").exists()
    assert (study.downloads / "test-study_NDVI_2000.vrt").exists()


@pytest.mark.parametrize("kind", ["truncate", "corrupt", "no_content_range", "drop"])
def test_spoiled_bodies_are_fetched_again_and_verified(emulator, finished, kind):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    fault = emulator.drive.media.fault(kind, "NDVI_2001", times=2)
    report = download_study(study, chunk_size=4096, sleep=lambda s: None)
    assert not report.failed, report.failed
    assert fault.hits == 2
    local = study.downloads / "test-study_NDVI_2001.tif"
    assert hashlib.md5(local.read_bytes()).digest() == _drive_file(emulator, local.name).md5
    assert _no_partials(study) == []


def test_a_body_that_never_verifies_fails_the_year_and_leaves_nothing(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    emulator.drive.media.fault("corrupt", "NDVI_2000", times=1000)
    report = download_study(study, chunk_size=1 << 20)
    assert "failed verification 3 times (md5 differs" in report.failed[2000]
    assert not (study.downloads / "test-study_NDVI_2000.tif").exists()
    assert _no_partials(study) == []
    assert 2001 in report.datasets  # one bad year does not stop the others


def test_rate_limits_and_server_errors_are_retried_with_backoff(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    emulator.inject("GET", r"/drive/v3/files/[^/]+$", status=403, times=2, reason="userRateLimitExceeded",
                    message="User Rate Limit Exceeded")
    emulator.inject("GET", r"/drive/v3/files/[^/]+$", status=503, times=2)
    waits = []
    report = download_study(study, sleep=waits.append)
    assert not report.failed
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_a_permission_error_is_reported_per_file_with_the_fix(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    emulator.inject("GET", r"/drive/v3/files/[^/]+$", status=403, times=1, message="The user does not have access")
    report = download_study(study, sleep=lambda s: None)
    assert "permission denied (403)" in report.failed[2000] and "read access" in report.failed[2000]
    assert 2001 in report.datasets


def test_an_interrupted_download_resumes_from_the_bytes_on_disk(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    received = []

    def stop_half_way(n, size):
        received.append(n)
        if sum(received) > size // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_study(study, chunk_size=4096, progress=stop_half_way)
    (partial,) = _no_partials(study)
    assert not (study.downloads / "test-study_NDVI_2000.tif").exists()
    kept = partial.stat().st_size
    assert kept > 0

    ranges = []
    original = emulator.drive.media.answer

    def spy(request, stored):
        ranges.append(request.headers.get("range"))
        return original(request, stored)

    emulator.drive.media.answer = spy
    report = download_study(study, chunk_size=4096)
    assert not report.failed
    assert ranges[0] == f"bytes={kept}-{kept + 4095}"  # picked up where it stopped
    local = study.downloads / "test-study_NDVI_2000.tif"
    assert hashlib.md5(local.read_bytes()).digest() == _drive_file(emulator, local.name).md5
    assert _no_partials(study) == []


HOSTILE = ["../../test-study_NDVI_2000.tif", "/etc/test-study_NDVI_2000.tif", "test-study_NDVI_2000.tif/../../x",
           "..\\test-study_NDVI_2000.tif", "test-study_NDVI_2000\n.tif", ".test-study_NDVI_2000.tif"]


def test_hostile_remote_names_never_write_outside_the_downloads_folder(emulator, finished, tmp_path):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    folder_id = _drive_file(emulator, "test-study_NDVI_2000.tif").parents[0]
    for name in HOSTILE:
        emulator.drive.add_file(folder_id, name, b"owned")
    before = {p for p in tmp_path.rglob("*")}
    report = download_study(study)
    assert not report.failed and sorted(report.datasets) == [2000, 2001]
    skipped = [n for n in report.notes if "not a safe file name" in n]
    assert len(skipped) == len(HOSTILE)
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(p.resolve().is_relative_to(study.downloads) or p.resolve().is_relative_to(study.state)
               for p in created)
    assert not any(p.is_file() and p.read_bytes() == b"owned" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("name", [*HOSTILE, "", ".", "..", "a/b.tif", "a\x00.tif"])
def test_unsafe_names_are_recognised(name):
    assert not is_safe_name(name)


def test_only_names_of_the_export_belong_to_it():
    assert belongs_to("s_NDVI_2000.tif", "s_NDVI_2000")
    assert belongs_to("s_NDVI_2000-0000000000-0000023296.tif", "s_NDVI_2000")
    assert not belongs_to("s_NDVI_20001.tif", "s_NDVI_2000")
    assert not belongs_to("s_NDVI_2000-1-2.tif", "s_NDVI_2000")
    assert not belongs_to("s_NDVI_2000.tif.exe", "s_NDVI_2000")


def test_without_a_folder_id_every_folder_of_the_name_is_searched(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    from pipeline.earthengine.exports import study_status

    assert {r.state for r in study_status(study)} == {m.COMPLETED}
    # A second folder of the same name holds one of the years and a file of another name.
    other = emulator.drive.add_folder("eetrend_test")
    moved = _drive_file(emulator, "test-study_NDVI_2001.tif")
    moved.parents = [other]
    emulator.drive.add_file(other, "test-study_NDVI_2001 (1).tif", b"not ours")
    emulator.drive.add_file(other, "notes.txt", b"hello")
    with Manifest(study.manifest_path) as manifest:
        for year in study.years:
            manifest.update(year, destination_uris=[])
    report = download_study(study)
    assert not report.failed and sorted(report.datasets) == [2000, 2001]
    assert any("2 Drive folders are named 'eetrend_test' and Earth Engine named none of them; took the export's "
               "files from all of them" in n for n in report.notes)
    assert not (study.downloads / "test-study_NDVI_2001 (1).tif").exists()


def test_a_duplicate_file_name_takes_the_newer_copy_and_says_so(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    original = _drive_file(emulator, "test-study_NDVI_2000.tif")
    emulator.clock.advance(60)
    newer_id = emulator.drive.add_file(original.parents[0], original.name, original.content[:-1] + b"\x00")
    report = download_study(study)
    assert any("holds test-study_NDVI_2000.tif twice; taking the newer one" in n for n in report.notes)
    local = (study.downloads / "test-study_NDVI_2000.tif").read_bytes()
    assert local == emulator.drive.files[newer_id].content


def test_delete_remote_deletes_only_after_verifying(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    emulator.drive.media.fault("corrupt", "NDVI_2001", times=1000)
    result = runner.invoke(app, ["download", str(path), "--delete-remote"])
    assert result.exit_code == 1
    assert emulator.drive.deleted == ["test-study_NDVI_2000.tif"]  # 2001 never verified: kept remotely
    with Manifest(study.manifest_path) as manifest:
        assert manifest.files(2000)["test-study_NDVI_2000.tif"]["remote_deleted"] == 1
    # Verified years are not listed again, even though their remote copy is gone.
    emulator.drive.media.faults.clear()
    assert download_study(study, delete_remote=True).skipped_years == [2000]


def test_cloud_storage_exports_are_listed_by_prefix_across_pages(emulator, finished):
    path, study = finished(export='destination = "gcs"\nbucket = "eetrend-bucket"\nprefix = "ndvi/{study}_{year}"\n'
                                  'file_dimensions = 256')
    emulator.storage.max_page_size = 1
    report = download_study(study, delete_remote=True)
    assert not report.failed
    with rasterio.open(study.downloads / "test-study_2003.vrt") as dataset:
        np.testing.assert_array_equal(_read(dataset), _expected_layer(emulator, 2003))
    assert len(emulator.storage.deleted) == 4 * _tiles(emulator.rasters.shape)  # 4 years, every tile
    assert emulator.storage.buckets["eetrend-bucket"] == {}


def test_years_not_finished_wait_and_the_rest_download(emulator, make_study):
    path, study = make_study(years="2000..2002")
    emulator.earthengine.fail_tasks("_2002", "Internal error.", times=5)
    export_study(study)
    emulator.clock.advance(40)  # 2000 and 2001 finished, 2002 failed and awaits a retry
    report = download_study(study)
    assert sorted(report.datasets) == [2000, 2001] and report.waiting == [2002]
    with Manifest(study.manifest_path) as manifest:
        assert manifest.year(2002).state == m.PENDING


def test_a_service_account_exporting_to_drive_is_warned(emulator, make_study, tmp_path, caplog):
    from tests.test_auth import _sa_config, _service_account_key

    _service_account_key(tmp_path / "key.json")
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, earthengine=_sa_config(emulator))
    export_study(study)
    emulator.earthengine.finish_all()
    download_study(study)
    assert "a service account's Drive has no storage quota" in caplog.text


def test_download_cli_reports_json_free_summary(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    result = runner.invoke(app, ["download", str(path)])
    assert result.exit_code == 0
    assert "downloaded and verified 2 file(s)" in result.output and "ready for the trend: 2000-2001" in result.output
    status = json.loads(runner.invoke(app, ["status", str(path), "--json", "--cached"]).output)
    assert [y["state"] for y in status["years"]] == ["COMPLETED", "COMPLETED"]


def test_a_file_gone_from_drive_is_reported_with_the_fix(emulator, finished):
    path, study = finished(years="2000..2001", extra=TWO_YEARS)
    emulator.inject("GET", r"/drive/v3/files/[^/]+$", status=404, times=1, message="File not found.")
    report = download_study(study)
    assert "gone from the remote (404)" in report.failed[2000] and "export the year again" in report.failed[2000]
    assert 2001 in report.datasets and not (study.downloads / "test-study_NDVI_2000.tif").exists()
