"""Every request eetrend sends, checked against the services' documented fields and rules.

Whole studies run against the emulator (export, status, cancel, redo, download with
split files and remote deletion, fit) to Drive folders, the Drive root and Cloud
Storage; the emulator records each request in full and ``pipeline.emulator.conformance``
checks them all: methods, paths, query parameters, the ExportImageRequest /
GeoTiffImageExportOptions / DriveDestination / CloudStorageDestination field names,
``supportsAllDrives``, ``fields``, quota projects, no-data declarations, requestIds.
The last tests show the checker is not blind: each rule it holds fails a bad request.
"""

from __future__ import annotations

import json
import re
import urllib.request

import ee
import pytest

from pipeline.earthengine import client as ee_api
from pipeline.earthengine.exports import cancel_study, export_study
from pipeline.emulator.conformance import check
from pipeline.run import run_study
from tests.conftest import TWO_YEARS


def _finish(study, emulator):
    first = run_study(study)
    assert first.exit_code == 75, first.lines  # waiting on Earth Engine
    emulator.earthengine.finish_all()
    done = run_study(study)
    assert done.exit_code == 0, done.lines
    return done


def _seen(emulator, method, pattern):
    return [r for r in emulator.router.requests if r.method == method and re.search(pattern, r.path)]


def test_a_drive_folder_study_with_split_files_cancel_and_redo_conforms(emulator, make_study):
    path, study = make_study(years="2000..2004", export='folder = "eetrend_test"\nfile_dimensions = 256\n'
                                                        'delete_remote = true')
    export_study(study)
    assert cancel_study(study, [2003]) == [2003]
    emulator.earthengine.finish_all()
    export_study(study, redo=[2003])  # the cancelled year again, on purpose
    _finish(study, emulator)
    export_study(study, redo=[2001])  # a finished, downloaded year again
    _finish(study, emulator)
    assert check(emulator.router.requests) == []
    for method, pattern in [("POST", "image:export$"), ("GET", "/operations/[^/]+$"), ("POST", ":cancel$"),
                            ("GET", "/drive/v3/files$"), ("GET", "/drive/v3/files/.+"),
                            ("DELETE", "/drive/v3/files/.+")]:
        assert _seen(emulator, method, pattern), (method, pattern)


def test_a_drive_root_study_runs_to_the_end_and_conforms(emulator, make_study):
    path, study = make_study(years="2000..2003", export="",
                             region='bbox = [10.0, 46.0, 10.05, 46.03]\ncrs = "EPSG:32632"\nscale = 30\n'
                                    "landsat_grid = false")
    assert study.config.export.folder is None
    result = _finish(study, emulator)
    assert result.outputs["trend"].exists()
    assert not [f for f in emulator.drive.files.values() if f.name == "root"]  # no folder named root
    assert len(emulator.drive.in_folder("root")) == 4  # the exports sit in My Drive's root
    lists = _seen(emulator, "GET", "/drive/v3/files$")
    assert lists and all(r.query["q"].startswith("'root' in parents") for r in lists)
    assert check(emulator.router.requests) == []


def test_a_cloud_storage_study_with_a_service_account_conforms(emulator, make_study, tmp_path):
    from tests.test_auth import _sa_config, _service_account_key

    _service_account_key(tmp_path / "key.json")
    path, study = make_study(years="2000..2002", earthengine=_sa_config(emulator),
                             export='destination = "gcs"\nbucket = "eetrend-bucket"\nprefix = "ndvi/{study}_{year}"\n'
                                    "delete_remote = true")
    _finish(study, emulator)
    assert _seen(emulator, "POST", "^/token$") and _seen(emulator, "DELETE", "/storage/v1/b/eetrend-bucket/o/")
    assert check(emulator.router.requests) == []


# -- the checker fails what it should ---------------------------------------------------------------
def _raw(emulator, path, headers=None):
    request = urllib.request.Request(f"{emulator.url}{path}", headers={"Authorization": "Bearer x", **(headers or {})})
    try:
        urllib.request.urlopen(request).read()
    except urllib.error.HTTPError:
        pass


@pytest.mark.parametrize(("path", "expected"), [
    ("/drive/v3/files?q=%27root%27+in+parents&fields=nextPageToken,files(id,name,size,md5Checksum)",
     "supportsAllDrives=true is missing"),
    ("/drive/v3/files?q=%27root%27+in+parents&supportsAllDrives=true&includeItemsFromAllDrives=true",
     "no fields"),
    ("/drive/v3/files?q=name+%3D+%27root%27&supportsAllDrives=true&includeItemsFromAllDrives=true"
     "&fields=nextPageToken,files(id,name,size,md5Checksum)", "named 'root'"),
    ("/drive/v3/files/abc?alt=media", "supportsAllDrives=true is missing"),
    ("/storage/v1/b/bucket/o", "without prefix"),
    ("/v1/projects/p/operations?pageSize=10&bogus=1", "unknown query parameter 'bogus'"),
])
def test_the_checker_names_requests_the_services_would_refuse(emulator, path, expected):
    _raw(emulator, path, {"x-goog-user-project": "p"})
    problems = check(emulator.router.requests)
    assert any(expected in p for p in problems), problems


def test_the_checker_names_a_drive_call_without_a_quota_project(emulator):
    _raw(emulator, "/drive/v3/files/abc?alt=media&supportsAllDrives=true")
    assert any("x-goog-user-project" in p for p in check(emulator.router.requests))


@pytest.fixture
def session(make_study):
    path, study = make_study()
    ee_api.connect(study)
    return study


def _config(study, **extra):
    from pipeline.earthengine.recipes import annual_composite

    options = dict(description="eetrend_x_2000", folder="f", fileNamePrefix="x_2000", crs="EPSG:32632",
                   region=ee.Geometry.Rectangle([10, 46, 10.01, 46.01]), scale=30)
    options.update(extra)
    image = options.pop("image", annual_composite(study, 2000))
    return dict(ee.batch.Export.image.toDrive(image, **options).config)


def test_the_checker_names_an_export_that_leaves_masked_pixels_as_zero(emulator, session):
    ee.data.exportImage("req-1", _config(session))  # neither unmasked nor a declared noData
    problems = check(emulator.router.requests)
    assert any("noData None is not a declared Number" in p for p in problems)
    assert any("not unmasked" in p for p in problems)


def test_the_checker_names_a_request_id_repeated_with_another_body(emulator, session, http_sleeps):
    image = ee.Image(0).unmask(-9999, False)
    ee.data.exportImage("req-2", _config(session, image=image, formatOptions={"noData": -9999}))
    with pytest.raises(ee.EEException):  # the emulator refuses it as the service does
        ee.data.exportImage("req-2", _config(session, image=image, formatOptions={"noData": -9999}, priority=5))
    problems = check(emulator.router.requests)
    assert any("repeated with a different body" in p for p in problems), problems


def test_recorded_requests_keep_no_token(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    assert emulator.router.requests
    assert all(r.headers.get("authorization") in (None, "<present>") for r in emulator.router.requests)
    assert "emulator-static-token" not in json.dumps([r.headers for r in emulator.router.requests])
