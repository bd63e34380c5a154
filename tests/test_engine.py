"""The windowed engine, files to file: exact, identical for any windows and workers, atomic."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

import pipeline
from pipeline import FitOptions, fit, trend_rasters
from pipeline.engine.sample import write_sample
from pipeline.errors import InputError, OutputExistsError

from .conftest import write_raster


def _read_bands(path) -> dict[str, np.ndarray]:
    with rasterio.open(path) as ds:
        return {name: ds.read(i + 1) for i, name in enumerate(ds.descriptions)}


@pytest.fixture
def stack_folder(make_stack, gappy_values):
    values, years = gappy_values(rows=40, cols=37, nan_fraction=0.2, seed=4)
    folder, _, _ = make_stack(values.astype(np.float32), years, tiled=True)
    return folder, values.astype(np.float32), years


@pytest.mark.parametrize("method", ["ols", "sen", "both"])
def test_file_result_equals_in_memory_fit(stack_folder, tmp_path, method) -> None:
    folder, values, years = stack_folder
    out = tmp_path / f"trend_{method}.tif"
    trend_rasters(folder, out, options=FitOptions(method=method), workers=1)
    written = _read_bands(out)
    expected = fit(values, years, method=method)
    assert tuple(written) == pipeline.band_names(method)
    for name in written:
        np.testing.assert_array_equal(written[name], expected[name].astype(np.float32), err_msg=name)


def test_identical_for_any_worker_count_and_window_size(make_stack, gappy_values, tmp_path) -> None:
    values, years = gappy_values(rows=300, cols=530, nan_fraction=0.2, seed=9)
    folder, _, _ = make_stack(values.astype(np.float32), years, tiled=True)
    results = []
    for workers, window_pixels in [(1, 1 << 20), (2, 1 << 17), (2, 1 << 16), (1, 1 << 16)]:
        out = tmp_path / f"t_{workers}_{window_pixels}.tif"
        run = trend_rasters(
            folder, out, options=FitOptions(method="both"), workers=workers, window_pixels=window_pixels
        )
        results.append((run.windows, _read_bands(out)))
        with rasterio.open(out) as ds:
            assert set(ds.block_shapes) == {(256, 256)}
    assert len({windows for windows, _ in results}) > 1, "the budgets should give different window plans"
    first = results[0][1]
    for _, other in results[1:]:
        for name in first:
            np.testing.assert_array_equal(other[name], first[name], err_msg=name)


def test_output_metadata(stack_folder, tmp_path) -> None:
    folder, _, years = stack_folder
    out = tmp_path / "trend.tif"
    trend_rasters(folder, out, options=FitOptions(method="sen", min_years=4, confidence=0.9), workers=1)
    with rasterio.open(out) as ds:
        tags = ds.tags()
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.compression.name == "zstd"
        assert tags["method"] == "sen" and tags["min_years"] == "4" and tags["confidence"] == "0.9"
        assert tags["years"] == ",".join(str(y) for y in years)
        assert tags["eetrend_version"] == pipeline.__version__
        assert ds.units[ds.descriptions.index("sen_slope")].endswith("per year")


def test_sample_truth_is_recovered(tmp_path) -> None:
    sample = write_sample(tmp_path / "s", rows=64, cols=80, nan_fraction=0.05, noise=0.01, seed=3)
    out = tmp_path / "trend.tif"
    trend_rasters(sample.folder, out, workers=2)
    with rasterio.open(sample.truth_file) as truth, rasterio.open(out) as fitted:
        true_slope = truth.read(1)
        slope = fitted.read(1)
        assert fitted.units[0] == "NDVI per year"
    # noise 0.01 over 21 years gives a slope standard error near 0.00035
    assert np.nanmedian(np.abs(slope - true_slope)) < 0.0005
    assert np.corrcoef(slope.ravel(), true_slope.ravel())[0, 1] > 0.99


def test_existing_output_is_kept_without_overwrite(stack_folder, tmp_path) -> None:
    folder, _, _ = stack_folder
    out = tmp_path / "trend.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        trend_rasters(folder, out, workers=1)
    assert out.read_bytes() == b"keep me"
    trend_rasters(folder, out, workers=1, overwrite=True)
    assert out.read_bytes() != b"keep me"


def test_a_file_failing_mid_run_leaves_no_output(stack_folder, tmp_path) -> None:
    folder, values, years = stack_folder
    # A file whose header is fine but whose pixel data is cut off: found only while reading.
    damaged = folder / f"ndvi_{years[3]}.tif"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) - 3000])
    out = tmp_path / "trend.tif"
    for workers in (1, 2):
        with pytest.raises(InputError, match=f"cannot read .*ndvi_{years[3]}.tif .*download it again"):
            trend_rasters(folder, out, workers=workers)
        assert not out.exists()
        assert list(tmp_path.glob(".trend.tif*")) == []


def test_output_inside_input_folder_is_not_read_as_input(stack_folder) -> None:
    folder, _, years = stack_folder
    out = folder / "trend.tif"
    trend_rasters(folder, out, workers=1)
    run = trend_rasters(folder, out, workers=1, overwrite=True)
    assert run.years == list(years)


def test_integer_inputs_with_nodata(tmp_path, make_stack) -> None:
    rng = np.random.default_rng(0)
    years = list(range(2000, 2012))
    values = (5000 + 30 * (np.arange(12)[:, None, None]) + rng.integers(-200, 200, (12, 20, 20))).astype(np.int16)
    values[rng.random(values.shape) < 0.2] = -32768
    folder, _, _ = make_stack(values, years, nodata=-32768)
    out = tmp_path / "trend.tif"
    trend_rasters(folder, out, workers=1)
    expected = fit(values, years, nodata=-32768)
    np.testing.assert_array_equal(_read_bands(out)["slope"], expected["slope"].astype(np.float32))
    assert np.nanmedian(expected["slope"]) == pytest.approx(30, abs=5)


def test_multiband_input(tmp_path, gappy_values) -> None:
    values, years = gappy_values(rows=6, cols=7)
    path = write_raster(tmp_path / "stack.tif", values.astype(np.float32), descriptions=[str(y) for y in years])
    out = tmp_path / "trend.tif"
    trend_rasters(path, out, workers=1)
    np.testing.assert_array_equal(
        _read_bands(out)["slope"], fit(values.astype(np.float32), years)["slope"].astype(np.float32)
    )


def test_fit_stack_and_write_round_trip(stack_folder, tmp_path) -> None:
    folder, values, years = stack_folder
    result = pipeline.fit_stack(folder, method="ols")
    np.testing.assert_array_equal(result["slope"], fit(values, years)["slope"])
    out = tmp_path / "api.tif"
    result.write(out)
    assert _read_bands(out)["slope"].shape == values.shape[1:]
