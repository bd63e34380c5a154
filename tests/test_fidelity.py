"""The Earth Engine / Drive / Cloud Storage behaviours of issue 11, end to end against the emulator.

Masked pixels, the pixel grid, the Drive root and shared drives, export limits checked
before any request, the answers the real services give (name-only export answers,
refused requestIds, CANCELLING, stages, ``fields``), quota projects and credentials,
crc32c for composite objects, and ``export --redo``. Each emulator behaviour's source is
in docs/FIDELITY.md.
"""

from __future__ import annotations

import base64
import json
import logging

import ee
import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as warp_transform
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_study
from pipeline.earthengine import client as ee_api
from pipeline.earthengine import manifest as m
from pipeline.earthengine.downloads import download_study
from pipeline.earthengine.exports import export_study
from pipeline.earthengine.manifest import Manifest
from pipeline.errors import AuthError, ConfigError
from pipeline.run import output_paths, run_study
from tests.conftest import TWO_YEARS

runner = CliRunner()


def _complete(study, emulator):
    run_study(study)
    emulator.earthengine.finish_all()
    result = run_study(study)
    assert result.exit_code == 0, result.lines
    return result


def _rows(study):
    with Manifest(study.manifest_path) as manifest:
        return manifest.years()


# -- 1. masked pixels -------------------------------------------------------------------------------
def test_a_partly_masked_study_counts_no_masked_pixel_as_a_value(emulator, make_study):
    path, study = make_study(years="2000..2007", extra='[trend]\nmethod = "ols"\nmin_years = 2')
    _complete(study, emulator)
    rasters = emulator.rasters
    stack = np.stack([rasters.composite(year) for year in study.years])  # the truth: NaN where masked
    masked = np.isnan(stack)
    assert 0.05 < masked.mean() < 0.5 and (~rasters.grid.inside).any()  # clouds and the region's outside
    with rasterio.open(output_paths(study)["trend"]) as dataset:
        names = list(dataset.descriptions)
        n = dataset.read(names.index("n") + 1)
        slope = dataset.read(names.index("slope") + 1)
    np.testing.assert_array_equal(n, (~masked).sum(axis=0))  # every masked year left out, every clear one in
    assert np.nanmax(np.abs(slope)) < 0.05  # no -9999 (or 0-filled year) pulled a fit; the truth is within 0.01
    # The files hold the declared value where masked, and the tag says so.
    with rasterio.open(study.downloads / "test-study_NDVI_2003.tif") as dataset:
        values = dataset.read(1)
        assert dataset.nodata == ee_api.EXPORT_NODATA
    np.testing.assert_array_equal(values == ee_api.EXPORT_NODATA, masked[study.years.index(2003)])


def test_an_export_that_forgets_to_declare_no_data_is_caught_by_the_fit(emulator, make_study, monkeypatch):
    """The same study with the noData declaration dropped: the emulator writes what Earth Engine would."""
    real = ee.batch.Export.image.toDrive

    def undeclared(**kwargs):
        kwargs["formatOptions"] = {k: v for k, v in kwargs["formatOptions"].items() if k != "noData"}
        return real(**kwargs)

    monkeypatch.setattr(ee.batch.Export.image, "toDrive", undeclared)
    path, study = make_study(years="2000..2003", extra='[trend]\nmethod = "ols"\nmin_years = 2')
    _complete(study, emulator)
    with rasterio.open(study.downloads / "test-study_NDVI_2001.tif") as dataset:
        assert dataset.nodata is None  # no tag: the -9999 of an unmasked pixel reads as a value
    with rasterio.open(output_paths(study)["trend"]) as dataset:
        n = dataset.read(list(dataset.descriptions).index("n") + 1)
    assert (n == 4).all()  # every masked pixel was counted: the bar's test would fail on this


def test_the_emulator_writes_masked_pixels_as_zero_when_nothing_is_declared(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    ee_api.connect(study)
    from pipeline.earthengine.recipes import annual_composite, region

    task = ee.batch.Export.image.toDrive(annual_composite(study, 2000), description="plain_2000",
                                         fileNamePrefix="plain_2000", region=region(study), crs="EPSG:32632",
                                         scale=30)
    ee.data.exportImage("plain-1", dict(task.config))
    emulator.earthengine.finish_all()
    (stored,) = [f for f in emulator.drive.files.values() if f.name == "plain_2000.tif"]
    with rasterio.MemoryFile(stored.content) as memory, memory.open() as dataset:
        values, nodata = dataset.read(1), dataset.nodata
    assert nodata is None
    np.testing.assert_array_equal(values == 0, np.isnan(emulator.rasters.composite(2000)))


# -- 2. the pixel grid ------------------------------------------------------------------------------
def _projected_bounds(bbox, crs):
    west, south, east, north = bbox
    steps = np.linspace(0, 1, 50)
    lons = np.concatenate([west + (east - west) * steps, np.full(50, east), east - (east - west) * steps,
                           np.full(50, west)])
    lats = np.concatenate([np.full(50, south), south + (north - south) * steps, np.full(50, north),
                           north - (north - south) * steps])
    xs, ys = warp_transform("EPSG:4326", crs, lons.tolist(), lats.tolist())
    return min(xs), min(ys), max(xs), max(ys)


@pytest.mark.parametrize(("landsat_grid", "corner"), [("", 15.0), ("landsat_grid = false", 0.0)])
def test_the_downloaded_file_follows_the_region_on_the_requested_grid(emulator, make_study, landsat_grid, corner):
    bbox = [10.0, 46.0, 10.05, 46.03]
    path, study = make_study(years="2000..2001", extra=TWO_YEARS,
                             region=f'bbox = {bbox}\ncrs = "EPSG:32632"\nscale = 30\n'
                                                        f"{landsat_grid}")
    export_study(study)
    emulator.earthengine.finish_all()
    download_study(study)
    with rasterio.open(study.downloads / "test-study_NDVI_2000.tif") as dataset:
        transform, width, height = dataset.transform, dataset.width, dataset.height
        assert dataset.crs.to_epsg() == 32632
    assert (transform.a, transform.e, transform.b, transform.d) == (30.0, -30.0, 0.0, 0.0)
    assert transform.c % 30 == corner and transform.f % 30 == corner  # Landsat's corners: 15 m past 30 m
    west, south, east, north = _projected_bounds(bbox, "EPSG:32632")
    assert transform.c <= west < transform.c + 30 and transform.f - 30 < north <= transform.f
    right, bottom = transform.c + 30 * width, transform.f - 30 * height
    assert right - 30 < east <= right and bottom <= south < bottom + 30


def test_scale_and_crs_transform_are_exclusive_in_the_request(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    assert study.config.region.on_landsat_grid  # UTM at 30 m: on by default
    export_study(study)
    body = next(r.json() for r in emulator.router.requests if r.path.endswith("image:export"))
    text = json.dumps(body["expression"])
    assert "Image.reproject" in text and '"scale"' not in text and "grid" not in body


# -- 3./4. config checks before any request ---------------------------------------------------------
@pytest.mark.parametrize(("section", "text", "expected"), [
    ("export", 'folder = "f"\nfile_dimensions = 1000', "file_dimensions = 1000 must be a multiple of 256"),
    ("export", 'folder = "f"\nmax_pixels = 1e20', "max_pixels = 1e+20 must be a whole number"),
    ("export", 'folder = "f"\nmax_pixels = 1.5', "must be a whole number"),
    ("export", 'folder = "f"\nprefix = "ndvi/{study}_{year}"', "is not a Drive file name"),
    ("export", 'folder = "f"\nprefix = "ndvi.v2_{year}"', "is not a Drive file name"),
    ("export", 'folder = "root"', "leave folder out to export to the Drive root"),
    ("region", 'bbox = [10.0, 46.0, 10.1, 46.1]\ncrs = "EPSG:4326"\nlanding = 1', "unknown key"),
    ("region", 'bbox = [10.0, 46.0, 10.1, 46.1]\ncrs = "EPSG:4326"\nlandsat_grid = true', "needs a UTM crs"),
    ("region", 'bbox = [10.0, 46.0, 10.1, 46.1]\ncrs = "EPSG:32632"\nscale = 20\nlandsat_grid = true',
     "scale and the Landsat grid's crsTransform are exclusive"),
])
def test_export_limits_are_config_errors_naming_key_and_fix(emulator, make_study, section, text, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("+", r"\+")):
        make_study(**{section: text})
    assert emulator.router.requests == []  # refused before any request


def test_cloud_storage_keeps_a_slash_as_a_path(emulator, make_study):
    path, study = make_study(export='destination = "gcs"\nbucket = "b"\nprefix = "ndvi/{study}_{year}"')
    assert study.prefix(2000) == "ndvi/test-study_2000"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda body: body.update(bogus=1), 'Unknown name "bogus"'),
    (lambda body: body.update(requestId="has spaces"), "Invalid requestId"),
    (lambda body: body["fileExportOptions"].update(geoTiffOptions={"tileDimensions": {"width": 100, "height": 256}}),
     "must be positive multiples of shardSize"),
    (lambda body: body["fileExportOptions"]["driveDestination"].update(filenamePrefix="a/b"), "Invalid filenamePrefix"),
    (lambda body: body["fileExportOptions"].update(geoTiffOptions={"noData": -9999}), "must be a Number"),
])
def test_the_emulator_refuses_what_earth_engine_refuses(emulator, make_study, change, expected):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    ee_api.connect(study)
    from pipeline.earthengine.recipes import annual_composite

    task = ee.batch.Export.image.toDrive(annual_composite(study, 2000), description="d_2000", fileNamePrefix="p",
                                         scale=30, region=ee.Geometry.Rectangle([10, 46, 10.01, 46.01]))
    body = dict(task.config)
    body["expression"] = ee.serializer.encode(body["expression"], for_cloud_api=True)
    body["requestId"] = "ok-id"
    change(body)
    with pytest.raises(ee.EEException, match=expected):
        ee.data._execute_cloud_call(ee.data._get_cloud_projects().image().export(
            project="projects/test-project", body=body), num_retries=0)
    assert emulator.earthengine.operations == {}


def test_an_export_larger_than_max_pixels_fails_as_too_large_and_is_not_retried(emulator, make_study, monkeypatch):
    # The config check refuses such a region before any request; should the local estimate and
    # Earth Engine's count ever disagree, the service's refusal must still be handled.
    import pipeline.geometry_checks as geometry_checks

    monkeypatch.setattr(geometry_checks, "check_pixels", lambda *args, **kwargs: None)
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, export='folder = "f"\nmax_pixels = 1000')
    export_study(study)
    emulator.earthengine.finish_all()
    report = export_study(study)
    assert "Export too large: specified" in report.failed[2000] and "not retried" in report.failed[2000]
    assert _rows(study)[2000].attempts == 1


# -- 5. answers the real service gives --------------------------------------------------------------
@pytest.mark.parametrize("answer", ["name", "operation"])
def test_a_name_only_export_answer_is_a_ready_task(emulator, make_study, answer):
    emulator.earthengine.export_answer = answer
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    assert export_study(study).submitted == [2000, 2001]
    answers = [json.loads(r.body) for r in emulator.router.requests if r.path.endswith("image:export")]
    rows = _rows(study)
    assert all(rows[y].state == m.READY and rows[y].task for y in (2000, 2001))
    if answer == "name":
        assert [set(a) for a in answers] == [{"requestId", "expression", "description", "fileExportOptions",
                                              "maxPixels"}] * 2


def test_a_request_id_refused_for_a_different_body_looks_the_task_up(emulator, make_study, monkeypatch):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    real = ee.data.exportImage
    seen = []

    def then_die(request_id, params):  # Earth Engine takes the request; the run dies before recording it
        real(request_id, {**params, "priority": {"value": 50}})  # an older client sent another body
        seen.append(request_id)
        raise KeyboardInterrupt

    monkeypatch.setattr(ee.data, "exportImage", then_die)
    with pytest.raises(KeyboardInterrupt):
        export_study(study)
    monkeypatch.setattr(ee.data, "exportImage", real)
    report = export_study(study)
    assert report.adopted == [2000] and report.submitted == [2001] and not report.failed
    rows = _rows(study)
    (held,) = [op.name for op in emulator.earthengine.operations.values() if op.description.endswith("_2000")]
    assert rows[2000].task == held and rows[2000].state == m.READY
    assert len(emulator.earthengine.operations) == 2
    assert "found by its description: 2000" in "\n".join(report.lines())


def test_operations_carry_done_stages_and_metadata(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    name = _rows(study)[2000].task
    emulator.clock.advance(emulator.earthengine.queue_seconds + emulator.earthengine.run_seconds * 0.75)
    running = ee.data.getOperation(name)
    assert "done" not in running and running["metadata"]["state"] == "RUNNING"
    stages = running["metadata"]["stages"]
    assert [s["displayName"] for s in stages] == ["Create Local Files", "Write Files to Destination"]
    assert {"createTime", "updateTime", "startTime", "priority", "type", "attempt"} <= set(running["metadata"])
    emulator.earthengine.finish_all()
    done = ee.data.getOperation(name)
    assert done["done"] is True and done["metadata"]["endTime"].endswith("Z")
    assert all(s["completeWorkUnits"] == int(s["totalWorkUnits"]) for s in done["metadata"]["stages"])


def test_drive_answers_only_the_fields_asked_for(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    emulator.earthengine.finish_all()
    service = _drive_service(study)
    bare = service.files().list(q="'root' in parents", supportsAllDrives=True).execute()
    assert set(bare) == {"kind", "incompleteSearch", "files"}
    assert all(set(f) == {"kind", "id", "name", "mimeType"} for f in bare["files"])  # no size, no md5
    some = service.files().list(q="name contains 'NDVI_2000'", supportsAllDrives=True,
                                fields="files(name, md5Checksum)").execute()
    assert some == {"files": [{"name": "test-study_NDVI_2000.tif", "md5Checksum": some["files"][0]["md5Checksum"]}]}


def _drive_service(study, credentials=None):
    from pipeline.earthengine.remote import build_service

    return build_service(study, credentials or ee_api.load_credentials(study), "drive", "v3")


# -- 3. Drive: shared drives --------------------------------------------------------------------------
def test_exports_in_a_shared_drive_folder_are_found_and_deleted(emulator, make_study):
    shared = emulator.drive.add_folder("eetrend_shared", shared_drive="0AsharedDriveId")
    path, study = make_study(years="2000..2001", extra=TWO_YEARS,
                             export='folder = "eetrend_shared"\ndelete_remote = true')
    export_study(study)
    emulator.earthengine.finish_all()
    report = download_study(study)
    assert sorted(report.datasets) == [2000, 2001] and report.deleted_remote == 2
    assert emulator.drive.in_folder(shared) == []
    # Without supportsAllDrives the same files are invisible, as in Drive.
    emulator.drive.add_file(shared, "x.tif", b"x")
    service = _drive_service(study)
    assert service.files().list(q=f"'{shared}' in parents").execute()["files"] == []


# -- 6. credentials -----------------------------------------------------------------------------------
def _stored(tmp_path, **extra):
    data = {"refresh_token": "1//refresh", "client_id": "764086051850-abc.apps.googleusercontent.com",
            "client_secret": "s", **extra}
    (tmp_path / "credentials").write_text(json.dumps(data))


def test_the_stored_quota_project_bills_drive_and_storage_calls(emulator, make_study, tmp_path):
    _stored(tmp_path, project="my-quota-project")
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, earthengine=(
        f'auth = "user"\ncredentials_file = "credentials"\ntoken_uri = "{emulator.token_uri}"'))
    emulator.drive.require_quota_project = True
    export_study(study)
    emulator.earthengine.finish_all()
    assert sorted(download_study(study).datasets) == [2000, 2001]
    drive = [r for r in emulator.router.requests if r.path.startswith("/drive/")]
    assert drive and {r.headers.get("x-goog-user-project") for r in drive} == {"my-quota-project"}


def test_drive_refusing_credentials_without_a_quota_project_says_which_api_to_enable(emulator, make_study,
                                                                                      monkeypatch):
    import pipeline.earthengine.remote as remote

    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    emulator.earthengine.finish_all()
    emulator.drive.require_quota_project = True
    monkeypatch.setattr(remote, "with_quota_project", lambda credentials, study: credentials)
    with pytest.raises(AuthError, match=r"enable the Google Drive API \(drive.googleapis.com\) in project "
                                        r"test-project"):
        download_study(study)


def test_without_stored_credentials_application_default_ones_are_used(emulator, make_study, tmp_path,
                                                                       monkeypatch):
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                               "refresh_token": "1//adc", "quota_project_id": "adc-project"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setattr(ee.oauth, "get_credentials_path", lambda: str(tmp_path / "none" / "credentials"))
    path, study = make_study(years="2000..2001", extra=TWO_YEARS,
                             earthengine=f'auth = "user"\ntoken_uri = "{emulator.token_uri}"')
    assert export_study(study).submitted == [2000, 2001]
    tokens = [r for r in emulator.router.requests if r.path == "/token"]
    assert tokens and all("refresh_token=1%2F%2Fadc" in token.body.decode() for token in tokens)


def test_notebook_mode_credentials_warn_that_they_expire(emulator, make_study, tmp_path, caplog):
    _stored(tmp_path, client_id="123456789012-notebook.apps.googleusercontent.com")
    path, study = make_study(earthengine='auth = "user"\ncredentials_file = "credentials"')
    with caplog.at_level(logging.WARNING):
        ee_api.load_credentials(study)
    assert "expire after 7 days" in caplog.text and "service account" in caplog.text
    caplog.clear()
    _stored(tmp_path, project="p")  # gcloud mode: a Cloud SDK client id
    with caplog.at_level(logging.WARNING):
        credentials = ee_api.load_credentials(study)
    assert "expire" not in caplog.text and credentials.quota_project_id == "p"


def test_a_service_account_exchanges_its_token_only_at_the_configured_uri(emulator, make_study, tmp_path):
    from tests.test_auth import _sa_config, _service_account_key

    _service_account_key(tmp_path / "key.json")  # the key names Google's token URI; the config overrides it
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, earthengine=_sa_config(emulator))
    export_study(study)
    (token,) = [r for r in emulator.router.requests if r.path == "/token"]
    from urllib.parse import parse_qs

    form = {k: v[0] for k, v in parse_qs(token.body.decode()).items()}
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = json.loads(base64.urlsafe_b64decode(form["assertion"].split(".")[1] + "=="))
    assert claims["iss"] == "eetrend@test-project.iam.gserviceaccount.com"
    # Only the emulator's token URI was reached: the loopback guard (conftest) refuses any other host, and the
    # one exchange above is the only token request of the whole export.


# -- 7. Cloud Storage composite objects ---------------------------------------------------------------
def test_composite_objects_without_md5_are_verified_by_crc32c(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, export='destination = "gcs"\nbucket = "bkt"')
    export_study(study)
    emulator.earthengine.finish_all()
    bucket = emulator.storage.buckets["bkt"]
    for name, stored in list(bucket.items()):
        emulator.storage.add_object("bkt", name, stored.content, composite=True)
    emulator.storage.media.fault("corrupt", "NDVI_2001", times=1)
    report = download_study(study)
    assert sorted(report.datasets) == [2000, 2001] and not report.failed
    emulator.storage.media.fault("corrupt", "NDVI_2000", times=1000)
    with Manifest(study.manifest_path) as manifest:
        manifest.forget_downloads(2000)
    (study.downloads / "test-study_NDVI_2000.tif").unlink()
    failed = download_study(study)
    assert "crc32c differs from the remote's" in failed.failed[2000]


# -- 8. the recipe's warning --------------------------------------------------------------------------
def test_export_warns_of_years_only_slc_off_landsat_7_covers(emulator, make_study):
    path, study = make_study(years="2010..2013")
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 0
    assert "only Landsat 7 after its 2003 scan-line failure covers 2012" in result.output


# -- 9. export --redo -------------------------------------------------------------------------------
def test_a_year_whose_remote_files_vanished_is_recovered_with_redo(emulator, make_study):
    path, study = make_study(years="2000..2002")
    _complete(study, emulator)
    local = study.downloads / "test-study_NDVI_2001.tif"
    local.unlink()
    for file_id in [f.id for f in emulator.drive.files.values() if f.name == local.name]:
        del emulator.drive.files[file_id]
    stuck = run_study(study)
    assert stuck.exit_code == 1 and any("--redo 2001" in line for line in stuck.lines)
    result = runner.invoke(app, ["export", str(path), "--redo", "2001"])
    assert result.exit_code == 0 and "exported again as asked (--redo): 2001" in result.output
    assert _rows(study)[2001].attempts == 2 and len(emulator.earthengine.operations) == 4
    emulator.earthengine.finish_all()
    assert run_study(study).exit_code == 0 and local.exists()


def test_redo_cancels_a_live_task_first(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    first = _rows(study)[2000].task
    report = export_study(study, redo=[2000])
    assert report.redone == [2000] and report.submitted == [2000]
    states = dict((op.name, op.state(emulator.clock.now())[0]) for op in emulator.earthengine.operations.values())
    assert states[first] == "CANCELLING" and _rows(study)[2000].task != first
    bad = runner.invoke(app, ["export", str(path), "--redo", "1990"])
    assert bad.exit_code == 2 and "not years of study" in bad.output


def test_load_study_reads_the_region_once_for_the_landsat_grid(tmp_path, emulator):
    geojson = tmp_path / "aoi.geojson"
    geojson.write_text(json.dumps({"type": "Polygon", "coordinates": [[[10, 46], [10.05, 46], [10.05, 46.03],
                                                                       [10, 46]]]}))
    from tests.conftest import study_toml

    config = tmp_path / "s.toml"
    config.write_text(study_toml(emulator.url, region='geojson = "aoi.geojson"\ncrs = "EPSG:32632"\nscale = 30'))
    transform = load_study(config).crs_transform()
    assert transform[0] == 30 and transform[4] == -30 and transform[2] % 30 == 15 and transform[5] % 30 == 15


def test_a_multipolygon_region_masks_the_pixels_between_its_parts(emulator, make_study, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    west = [[10.0, 46.0], [10.01, 46.0], [10.01, 46.01], [10.0, 46.01], [10.0, 46.0]]
    east = [[10.03, 46.0], [10.04, 46.0], [10.04, 46.01], [10.03, 46.01], [10.03, 46.0]]
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        for ring in (west, east)]}))
    path, study = make_study(years="2000..2001", extra=TWO_YEARS,
                             region='geojson = "aoi.geojson"\ncrs = "EPSG:32632"\nscale = 30')
    export_study(study)
    emulator.earthengine.finish_all()
    download_study(study)
    with rasterio.open(study.downloads / "test-study_NDVI_2000.tif") as dataset:
        values = dataset.read(1)
        assert 100 < dataset.width < 110 and 35 < dataset.height < 40  # 0.04 deg x 0.01 deg at 30 m
    middle = values[:, values.shape[1] // 2]  # between the two parts: outside the region every row
    assert (middle == ee_api.EXPORT_NODATA).all()
    assert (values[:, 5] != ee_api.EXPORT_NODATA).mean() > 0.8  # inside the western part: mostly clear


def test_the_grid_choice_is_part_of_the_pixels_fingerprint(emulator, make_study):
    from pipeline.errors import ConfigChangedError

    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    region = 'bbox = [10.0, 46.0, 10.116, 46.054]\ncrs = "EPSG:32632"\nscale = 30'
    path.write_text(path.read_text().replace(region, region + "\nlandsat_grid = true"))
    assert export_study(load_study(path)).already == [2000, 2001]  # the default, written out: nothing changes
    path.write_text(path.read_text().replace("landsat_grid = true", "landsat_grid = false"))
    with pytest.raises(ConfigChangedError, match=r"region\.landsat_grid changed"):
        export_study(load_study(path))
