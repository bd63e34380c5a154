"""``eetrend index``: band math window by window, against numpy computed directly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.engine.bandmath import index_raster
from pipeline.errors import UsageError
from tests.conftest import SHARED_DATA, write_raster

runner = CliRunner()
L7 = SHARED_DATA / "L7_ETMs.tif"
needs_l7 = pytest.mark.skipif(not L7.exists(), reason=f"{L7} (the tutorial image) is not on this machine")


def _read(path):
    with rasterio.open(path) as dataset:
        return dataset.read(1), dataset.descriptions, dataset.profile


@needs_l7
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_ndvi_of_the_tutorial_image_equals_numpy(tmp_path, executor):
    out = tmp_path / "ndvi.tif"
    result = runner.invoke(app, ["index", str(L7), "-o", str(out), "--executor", executor, "--workers", "2",
                                 "--memory-budget", "8MB"])
    assert result.exit_code == 0, result.output
    with rasterio.open(L7) as source:
        b3, b4 = source.read(3).astype(np.float64), source.read(4).astype(np.float64)
        crs, transform = source.crs, source.transform
    expected = (b4 - b3) / (b4 + b3)
    values, descriptions, profile = _read(out)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=0)
    assert descriptions == ("ndvi",) and profile["dtype"] == "float32"
    assert profile["crs"] == crs and profile["transform"] == transform


def test_every_index_on_integer_bands_with_zero_denominators_and_nodata(tmp_path):
    rng = np.random.default_rng(5)
    bands = rng.integers(0, 3, size=(6, 60, 70)).astype(np.int16)  # many zero sums on purpose
    bands[:, 10, 10] = -9999
    source = write_raster(tmp_path / "scene.tif", bands, nodata=-9999,
                          descriptions=["Blue", "Green", "Red", "NIR", "SWIR1", "SWIR2"])
    b = {name: bands[i].astype(np.float64) for i, name in enumerate(("blue", "green", "red", "nir", "swir1", "swir2"))}
    formulas = {
        "ndvi": (b["nir"] - b["red"], b["nir"] + b["red"]),
        "evi": (2.5 * (b["nir"] - b["red"]), b["nir"] + 6 * b["red"] - 7.5 * b["blue"] + 1),
        "nbr": (b["nir"] - b["swir2"], b["nir"] + b["swir2"]),
        "ndmi": (b["nir"] - b["swir1"], b["nir"] + b["swir1"]),
        "savi": (1.5 * (b["nir"] - b["red"]), b["nir"] + b["red"] + 0.5),
    }
    for name, (numerator, denominator) in formulas.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.where(denominator == 0, np.nan, numerator / denominator)
        expected[10, 10] = np.nan
        out = tmp_path / f"{name}.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            index_raster(source, out, index=name, bands={"red": "red", "nir": "NIR"}, workers=2)
        values, _, _ = _read(out)
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=0, equal_nan=True)
        if name == "ndvi":
            assert np.isnan(values).sum() > 100  # the zero denominators really happened


def test_scale_and_offset_turn_digital_numbers_into_reflectance(tmp_path):
    dn = np.array([[[10000, 20000]], [[30000, 30000]], [[12000, 8000]], [[25000, 40000]]], dtype=np.uint16)
    source = write_raster(tmp_path / "c2.tif", dn)
    index_raster(source, tmp_path / "n.tif", bands={"red": 3, "nir": 4}, scale=0.0000275, offset=-0.2, workers=1)
    red, nir = dn[2] * 0.0000275 - 0.2, dn[3] * 0.0000275 - 0.2
    np.testing.assert_allclose(_read(tmp_path / "n.tif")[0], (nir - red) / (nir + red), rtol=1e-5)


def test_band_choices_are_checked(tmp_path):
    source = write_raster(tmp_path / "two.tif", np.ones((2, 4, 4), np.uint8))
    with pytest.raises(UsageError, match="--red is band 3, but .* has 2 band"):
        index_raster(source, tmp_path / "o.tif")
    with pytest.raises(UsageError, match="neither a band number nor a band description"):
        index_raster(source, tmp_path / "o.tif", bands={"red": "crimson", "nir": 2})
    result = runner.invoke(app, ["index", str(source), "-o", str(tmp_path / "o.tif"), "--red", "1", "--nir", "2",
                                 "--index", "nbr"])
    assert result.exit_code == 2 and "--swir2 is band 6" in result.output
    assert not (tmp_path / "o.tif").exists()
