"""The notebook API in xarray: fit a DataArray, TrendResult.to_xarray(), open_trend() of every format."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin, xy
from scipy import stats

import pipeline
from pipeline.engine.sample import write_sample
from pipeline.engine.trend import FitOptions, trend_rasters
from pipeline.errors import UsageError

xr = pytest.importorskip("xarray")
rioxarray = pytest.importorskip("rioxarray")

YEARS = [1990, 1991, 1993, 1994, 1995, 1998, 1999, 2000, 2003, 2004]  # gaps are real gaps


def _stack(rng, rows=6, cols=7, nan_fraction=0.15):
    """(years, rows, cols) values with a known slope per pixel, noise and missing values."""
    truth = rng.uniform(-0.02, 0.02, size=(rows, cols))
    x = np.array(YEARS, dtype=float)[:, None, None]
    values = 0.4 + truth * (x - 1990) + rng.normal(0, 0.01, size=(len(YEARS), rows, cols))
    values[rng.random(values.shape) < nan_fraction] = np.nan
    return values


def _linregress_slope(years, series):
    ok = ~np.isnan(series)
    if ok.sum() < 3:
        return np.nan
    return stats.linregress(np.asarray(years, dtype=float)[ok], series[ok]).slope


def test_fitting_a_dataarray_gives_a_dataset_with_its_coordinates_crs_and_linregress_slopes():
    rng = np.random.default_rng(1)
    values = _stack(rng)
    transform = from_origin(600_000, 5_200_000, 30, 30)
    xs, _ = xy(transform, np.zeros(7, dtype=int), np.arange(7))
    _, ys = xy(transform, np.arange(6), np.zeros(6, dtype=int))
    array = xr.DataArray(values, dims=("year", "y", "x"), coords={"year": YEARS, "y": ys, "x": xs},
                         attrs={"units": "NDVI"}).rio.write_crs("EPSG:32632")

    trend = pipeline.fit(array, method="both")

    assert isinstance(trend, xr.Dataset)
    assert trend["slope"].dims == ("y", "x") and "sen_slope" in trend and "mk_p" in trend
    np.testing.assert_array_equal(trend["x"].values, xs)
    np.testing.assert_array_equal(trend["y"].values, ys)
    assert trend.rio.crs == "EPSG:32632"
    assert trend.attrs["years"] == YEARS and trend.attrs["method"] == "both"
    assert trend["slope"].attrs["units"] == "NDVI per year"
    for r in range(6):
        for c in range(7):
            expected = _linregress_slope(YEARS, values[:, r, c])
            np.testing.assert_allclose(trend["slope"].values[r, c], expected, rtol=1e-9)
            ok = ~np.isnan(values[:, r, c])
            if ok.sum() >= 3:  # Sen's slope is the median of pairwise slopes: scipy's Theil-Sen estimator
                sen = stats.theilslopes(values[ok, r, c], np.array(YEARS, dtype=float)[ok]).slope
                np.testing.assert_allclose(trend["sen_slope"].values[r, c], sen, rtol=1e-9)


def test_a_time_axis_anywhere_gives_years_from_its_dates_and_fill_values_are_missing():
    rng = np.random.default_rng(2)
    values = np.round(_stack(rng, nan_fraction=0) * 10000).astype(np.int16)
    values[3, 2, 4] = values[7, 0, 0] = -9999
    dates = np.array([f"{y}-07-01" for y in YEARS], dtype="datetime64[ns]")
    array = xr.DataArray(values.transpose(1, 0, 2), dims=("y", "time", "x"),
                         coords={"time": dates, "y": np.arange(6), "x": np.arange(7)}, attrs={"_FillValue": -9999})

    trend = pipeline.fit(array)

    assert trend["slope"].dims == ("y", "x") and trend.attrs["years"] == YEARS
    for r, c in [(2, 4), (0, 0), (5, 6)]:
        series = values[:, r, c].astype(float)
        series[series == -9999] = np.nan
        np.testing.assert_allclose(trend["slope"].values[r, c], _linregress_slope(YEARS, series), rtol=1e-9)
    assert int(trend["n"].values[2, 4]) == len(YEARS) - 1


def test_a_dataarray_without_a_year_axis_is_refused_with_the_fix():
    array = xr.DataArray(np.zeros((3, 2, 2)), dims=("band", "y", "x"))
    with pytest.raises(UsageError, match=r"no 'year' or 'time' dimension \(it has band, y, x\); pass dim="):
        pipeline.fit(array)
    named = pipeline.fit(array.assign_coords(band=[2000, 2001, 2002]), dim="band")
    assert named.attrs["years"] == [2000, 2001, 2002]
    with pytest.raises(UsageError, match="give the years"):
        pipeline.fit(np.zeros((3, 2)))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One small study fitted once, written in all four formats."""
    folder = tmp_path_factory.mktemp("open")
    sample = write_sample(folder / "in", years=list(range(2000, 2008)), rows=40, cols=50, seed=5)
    written = {}
    for kind, name in (("gtiff", "t.tif"), ("cog", "t_cog.tif"), ("netcdf", "t.nc"), ("zarr", "t.zarr")):
        trend_rasters(sample.folder, folder / name, options=FitOptions(method="both"), workers=1, format=kind)
        written[kind] = folder / name
    return sample, written


def test_to_xarray_of_a_fitted_stack_has_map_coordinates_and_crs(outputs):
    sample, _ = outputs
    result = pipeline.fit_stack(sample.folder)
    ds = result.to_xarray()
    with rasterio.open(sample.files[0]) as src:
        transform, crs = src.transform, src.crs
    xs, _ = xy(transform, np.zeros(50, dtype=int), np.arange(50))
    _, ys = xy(transform, np.arange(40), np.zeros(40, dtype=int))
    np.testing.assert_allclose(ds["x"].values, xs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ds["y"].values, ys, rtol=0, atol=1e-6)
    assert ds.rio.crs == crs and ds.attrs["years"] == list(range(2000, 2008))
    np.testing.assert_array_equal(ds["slope"].values, result["slope"])
    bare = pipeline.fit(np.ones((3, 4)), [2000, 2001, 2002]).to_xarray()
    assert bare["slope"].dims == ("dim_0",) and bare["slope"].shape == (4,)


def test_open_trend_reads_every_format_alike(outputs):
    _, written = outputs
    with rasterio.open(written["gtiff"]) as src:
        names, values, crs = list(src.descriptions), src.read(), src.crs
    for kind, path in written.items():
        ds = pipeline.open_trend(path)
        assert list(ds.data_vars) == names, kind
        assert ds.rio.crs == crs, kind
        assert ds.attrs["years"] == list(range(2000, 2008)) and ds.attrs["method"] == "both", kind
        assert ds["slope"].attrs["units"] == "NDVI per year", kind
        for i, name in enumerate(names):
            np.testing.assert_array_equal(ds[name].values, values[i], err_msg=f"{kind} {name}")
        ds.close()


def test_open_trend_says_what_it_needs(tmp_path):
    with pytest.raises(pipeline.EetrendError, match="does not exist"):
        pipeline.open_trend(tmp_path / "missing.tif")
    with pytest.raises(pipeline.EetrendError, match="not a Zarr store"):
        pipeline.open_trend(tmp_path)


def test_a_dask_backed_dataarray_is_fitted_lazily_and_equals_the_eager_fit():
    pytest.importorskip("dask")
    rng = np.random.default_rng(4)
    values = _stack(rng, rows=12, cols=10)
    array = xr.DataArray(values, dims=("year", "y", "x"),
                         coords={"year": YEARS, "y": np.arange(12.0), "x": np.arange(10.0)}, attrs={"units": "NDVI"})
    lazy = pipeline.fit(array.chunk({"year": 3, "y": 5, "x": 4}), method="both")  # years split too: rechunked

    assert type(lazy["slope"].data).__module__.startswith("dask")  # nothing computed yet
    assert lazy["slope"].dims == ("y", "x") and lazy.attrs["years"] == YEARS
    eager = pipeline.fit(array, method="both")
    computed = lazy.compute()
    for name in eager.data_vars:
        np.testing.assert_array_equal(computed[name].values, eager[name].values, err_msg=name)
    np.testing.assert_allclose(computed["slope"].values[7, 3], _linregress_slope(YEARS, values[:, 7, 3]), rtol=1e-9)
    with pytest.raises(UsageError, match="one distinct year for each of the 10 steps"):
        pipeline.fit(array.chunk({"x": 5}), years=[2000] * 10)
