"""``--format cog|netcdf|zarr``: what other tools read back, compared with the GeoTIFF bit for bit."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import rasterio
from rasterio.transform import xy
from typer.testing import CliRunner

from cli import app
from pipeline.engine import formats
from pipeline.engine.sample import write_sample
from pipeline.engine.trend import FitOptions, trend_rasters
from pipeline.errors import EetrendError

xr = pytest.importorskip("xarray")
pytest.importorskip("rioxarray")
runner = CliRunner()
YEARS = list(range(2000, 2007))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """7 years of 700x600 synthetic NDVI (larger than one 512 COG tile, so overviews exist) and its GeoTIFF trend."""
    folder = tmp_path_factory.mktemp("formats")
    sample = write_sample(folder / "in", years=YEARS, rows=600, cols=700, seed=3)
    geotiff = folder / "trend.tif"
    trend_rasters(sample.folder, geotiff, options=FitOptions(method="both"), workers=1)
    return sample.folder, geotiff


def _geotiff(path):
    with rasterio.open(path) as ds:
        return ds.read(), list(ds.descriptions), list(ds.units), ds.crs, ds.transform, ds.tags()


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float32 bit patterns where not NaN, and NaN in the same places."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32)))


@pytest.mark.parametrize("kind", ["netcdf", "zarr"])
def test_netcdf_and_zarr_open_in_xarray_with_coordinates_crs_and_the_geotiffs_exact_values(stack, tmp_path, kind):
    folder, geotiff = stack
    output = tmp_path / ("trend.nc" if kind == "netcdf" else "trend.zarr")
    result = runner.invoke(app, ["trend", str(folder), "-o", str(output), "--method", "both", "--workers", "1",
                                 "--format", kind])
    assert result.exit_code == 0, result.output
    values, names, units, crs, transform, tags = _geotiff(geotiff)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)  # affine's, inside rioxarray
        ds = xr.open_dataset(output, engine="zarr" if kind == "zarr" else None, decode_coords="all")
        assert ds.rio.crs == crs
        assert ds.rio.transform() == transform
    assert set(ds.data_vars) == set(names) and ds.attrs["bands"].split(",") == names
    assert ds["slope"].dims == ("y", "x")
    # Pixel centres from rasterio's own transform arithmetic, an independent oracle.
    xs, _ = xy(transform, np.zeros(700, dtype=int), np.arange(700))
    _, ys = xy(transform, np.arange(600), np.zeros(600, dtype=int))
    np.testing.assert_allclose(ds["x"].values, xs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ds["y"].values, ys, rtol=0, atol=1e-6)
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["y"].attrs["units"] == "metre"
    assert ds["slope"].encoding["grid_mapping"] == "spatial_ref"  # decode_coords="all" moves it there
    assert ds["spatial_ref"].attrs["grid_mapping_name"] == "transverse_mercator"
    for i, name in enumerate(names):
        assert _same_bits(ds[name].values, values[i]), name
        assert ds[name].dtype == np.float32
        assert ds[name].attrs.get("units", "") == (units[i] or "")
    assert ds["slope"].attrs["units"] == "NDVI per year"
    assert [int(y) for y in ds.attrs["years"]] == YEARS
    assert ds.attrs["method"] == tags["method"] == "both" and ds.attrs["Conventions"] == "CF-1.8"
    ds.close()


def test_cog_has_overviews_and_keeps_bands_tags_and_values(stack, tmp_path):
    folder, geotiff = stack
    output = tmp_path / "trend_cog.tif"
    result = runner.invoke(app, ["trend", str(folder), "-o", str(output), "--method", "both", "--workers", "1",
                                 "--format", "cog"])
    assert result.exit_code == 0, result.output
    values, names, units, crs, transform, tags = _geotiff(geotiff)
    with rasterio.open(output) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2]  # 700x600 with 512-pixel tiles: one level, 350x300
        assert list(ds.descriptions) == names and list(ds.units) == units and ds.tags()["years"] == tags["years"]
        assert ds.crs == crs and ds.transform == transform
        assert _same_bits(ds.read(), values)
        overview = ds.read(1, out_shape=(300, 350))
    assert _same_bits(overview, values[0, ::2, ::2])  # nearest neighbour: overview pixels are real pixels


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo is not installed (apt-get install gdal-bin); "
                    "the test above checks the overviews through rasterio")
def test_gdalinfo_finds_the_cogs_overviews(stack, tmp_path):
    _, geotiff = stack
    output = formats.convert(geotiff, tmp_path / "t.tif", "cog")
    info = subprocess.run(["gdalinfo", str(output)], capture_output=True, text=True, check=True).stdout
    assert "LAYOUT=COG" in info and info.count("Overviews: 350x300") == 17  # every band


def test_index_writes_every_format_with_the_geotiffs_values(tmp_path):
    rng = np.random.default_rng(0)
    bands = rng.integers(1, 255, size=(6, 300, 400), dtype=np.uint8)
    source = tmp_path / "scene.tif"
    with rasterio.open(source, "w", driver="GTiff", width=400, height=300, count=6, dtype="uint8",
                       crs="EPSG:32632", transform=rasterio.transform.from_origin(300000, 5100000, 30, 30)) as ds:
        ds.write(bands)
    red, nir = bands[2].astype(np.float32), bands[3].astype(np.float32)
    expected = (nir - red) / (nir + red)
    for kind, name in (("cog", "ndvi_cog.tif"), ("netcdf", "ndvi.nc"), ("zarr", "ndvi.zarr")):
        result = runner.invoke(app, ["index", str(source), "-o", str(tmp_path / name), "--format", kind])
        assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "ndvi_cog.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_allclose(ds.read(1), expected, rtol=1e-6)
    for name, engine in (("ndvi.nc", None), ("ndvi.zarr", "zarr")):
        with xr.open_dataset(tmp_path / name, engine=engine, decode_coords="all") as ds:
            np.testing.assert_allclose(ds["ndvi"].values, expected, rtol=1e-6)
            assert ds.rio.crs == "EPSG:32632" and ds.attrs["index"] == "ndvi"


def test_conversion_goes_strip_by_strip_and_stays_exact(stack, tmp_path, monkeypatch):
    _, geotiff = stack
    monkeypatch.setattr(formats, "STRIP_BYTES", 17 * 700 * 4 * 110)  # 110 rows per strip: 6 strips, the last short
    reads = []
    original = formats._Source.strips

    def counted(self):
        for top, bottom, block in original(self):
            reads.append(block.shape)
            yield top, bottom, block

    monkeypatch.setattr(formats._Source, "strips", counted)
    values = _geotiff(geotiff)[0]
    for kind, name in (("netcdf", "t.nc"), ("zarr", "t.zarr")):
        reads.clear()
        formats.convert(geotiff, tmp_path / name, kind)
        assert len(reads) == 6 and max(shape[1] for shape in reads) == 110 and reads[-1][1] == 600 - 5 * 110
        with xr.open_dataset(tmp_path / name, engine="zarr" if kind == "zarr" else None) as ds:
            assert _same_bits(ds["sen_slope"].values, values[6])


@pytest.mark.parametrize("kind, name", [("netcdf", "t.nc"), ("zarr", "t.zarr"), ("cog", "t.tif")])
def test_a_failed_conversion_leaves_neither_the_output_nor_a_temporary(stack, tmp_path, monkeypatch, kind, name):
    _, geotiff = stack

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(formats, {"netcdf": "_write_netcdf", "zarr": "_write_zarr", "cog": "_write_cog"}[kind],
                        broken)
    with pytest.raises((OSError, EetrendError), match="disk full"):  # a WriteError line where it is wrapped
        formats.convert(geotiff, tmp_path / name, kind)
    assert list(tmp_path.iterdir()) == []


def test_a_zarr_store_is_replaced_only_with_overwrite_and_only_when_complete(stack, tmp_path, monkeypatch):
    folder, geotiff = stack
    store = tmp_path / "t.zarr"
    formats.convert(geotiff, store, "zarr")
    again = runner.invoke(app, ["trend", str(folder), "-o", str(store), "--format", "zarr", "--workers", "1"])
    assert again.exit_code == 2 and "pass --overwrite" in again.output
    before = sorted(p.name for p in store.rglob("*"))

    def broken(source, target):
        (target / "half").mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(formats, "_write_zarr", broken)
    with pytest.raises(OSError):
        formats.convert(geotiff, store, "zarr", overwrite=True)
    assert sorted(p.name for p in store.rglob("*")) == before  # the old store is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["t.zarr"]
    (tmp_path / "plain.zarr").mkdir()  # a folder with the right name that holds no store
    refused = runner.invoke(app, ["trend", str(folder), "-o", str(tmp_path / "plain.zarr"), "--format", "zarr",
                                  "--overwrite"])
    assert refused.exit_code == 2 and "is not a Zarr store" in refused.output


def test_a_missing_extra_is_one_line_with_the_install_hint(stack, tmp_path, monkeypatch):
    folder, _ = stack
    import importlib

    real = importlib.import_module

    def no_netcdf(name, *args):
        if name == "netCDF4":
            raise ImportError("No module named 'netCDF4'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_netcdf)
    result = runner.invoke(app, ["trend", str(folder), "-o", str(tmp_path / "t.nc"), "--format", "netcdf"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --format netcdf needs the 'netCDF4' package, which is not installed; "
                                     "install it with: pip install 'eetrend[xarray]'")
    assert list(tmp_path.iterdir()) == []  # refused before fitting anything


def test_an_unknown_format_is_refused():
    with pytest.raises(Exception, match="not one of gtiff, cog, netcdf, zarr"):
        formats.check_format("hdf4")


@pytest.mark.parametrize("kind", ["zarr", "cog"])
def test_a_study_with_a_trend_format_writes_it_and_is_up_to_date_afterwards(emulator, make_study, kind):
    from pipeline.run import output_paths

    path, study = make_study(years="2000..2003", extra=f'[trend]\nmethod = "ols"\nformat = "{kind}"')
    runner.invoke(app, ["run", str(path)])
    emulator.earthengine.finish_all()
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    outputs = output_paths(study)
    values = _geotiff(outputs["trend"])[0]  # the GeoTIFF the picture and report are drawn from stays
    if kind == "zarr":
        assert outputs["zarr"].name == "test-study_trend.zarr"
        with xr.open_dataset(outputs["zarr"], engine="zarr", decode_coords="all") as ds:
            assert _same_bits(ds["slope"].values, values[0]) and ds.rio.crs == "EPSG:32632"
    else:
        with rasterio.open(outputs["trend"]) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    again = runner.invoke(app, ["run", str(path)])
    assert again.exit_code == 0 and "complete and up to date" in again.output


def test_the_default_format_keeps_the_fit_fingerprint_of_earlier_versions(make_study):
    """Adding `format` must not make every existing study refit once: gtiff is left out of the fingerprint."""
    from pipeline.config import fingerprint
    from pipeline.run import _fit_fingerprint

    class NoFiles:
        def files(self, year):
            return {}

    _, study = make_study(years="2000..2003", extra='[trend]\nmethod = "ols"')
    trend = {k: v for k, v in study.config.trend.model_dump(mode="json").items() if k != "format"}
    inputs = {str(year): [] for year in study.years}
    assert _fit_fingerprint(study, NoFiles()) == fingerprint({"inputs": inputs, "trend": trend})
    _, cog = make_study(years="2000..2003", extra='[trend]\nmethod = "ols"\nformat = "cog"')
    assert _fit_fingerprint(cog, NoFiles()) != _fit_fingerprint(study, NoFiles())  # a new format is refitted


def test_replacing_a_converted_output_inside_the_input_folder_does_not_read_it_as_a_year(tmp_path):
    sample = write_sample(tmp_path, years=YEARS, rows=20, cols=30, seed=1)
    output = sample.folder / "trend.tif"
    for _ in range(2):
        result = runner.invoke(app, ["trend", str(sample.folder), "-o", str(output), "--format", "cog",
                                     "--overwrite", "--workers", "1"])
        assert result.exit_code == 0, result.output
    with rasterio.open(output) as ds:
        assert ds.tags()["years"] == ",".join(map(str, YEARS))


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo is not installed (apt-get install gdal-bin)")
@pytest.mark.parametrize("kind, name, dataset", [("netcdf", "t.nc", "NETCDF:{}:slope"),
                                                 ("zarr", "t.zarr", 'ZARR:"{}":/slope')])
def test_gdal_reads_the_netcdf_and_zarr_grids_and_crs(stack, tmp_path, kind, name, dataset):
    """What QGIS sees: GDAL finds the size, the origin, the pixel size and the CRS (GDAL < 3.9 reads Zarr's _CRS)."""
    _, geotiff = stack
    output = formats.convert(geotiff, tmp_path / name, kind)
    info = subprocess.run(["gdalinfo", dataset.format(output)], capture_output=True, text=True, check=True).stdout
    assert "Size is 700, 600" in info and 'ID["EPSG",32633]' in info
    assert "Origin = (500000.000000000000000,5000000.000000000000000)" in info
    assert "Pixel Size = (30.000000000000000,-30.000000000000000)" in info


@pytest.mark.parametrize("kind, name, fix", [("netcdf", "trend.tif", "name the output trend.nc (ending .nc or .nc4)"),
                                             ("zarr", "trend.nc", "name the output trend.zarr (ending .zarr)"),
                                             ("cog", "trend.zarr", "name the output trend.tif (ending .tif or .tiff)")])
def test_an_output_name_that_does_not_match_the_format_is_refused_before_fitting(stack, tmp_path, kind, name, fix):
    folder, _ = stack
    result = runner.invoke(app, ["trend", str(folder), "-o", str(tmp_path / name), "--format", kind])
    assert result.exit_code == 2 and fix in result.output and len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
