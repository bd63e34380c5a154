"""Pictures: the PNGs are opened and checked for size, a colour bar, content and transparency of NaN."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from cli import app
from pipeline.engine.sample import write_sample
from tests.conftest import SHARED_DATA, write_raster

runner = CliRunner()


def _png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3]


def _has_colour_bar(image, cmap_name: str) -> bool:
    """A column in the right third running through the colour map in order: a colour bar, not a map."""
    import matplotlib

    table = matplotlib.colormaps[cmap_name](np.linspace(0, 1, 256))[:, :3]
    for c in range(int(image.shape[1] * 2 / 3), image.shape[1]):
        column = image[:, c]
        distance = ((column[:, None, :] - table[None, :, :]) ** 2).sum(axis=2)
        nearest, error = distance.argmin(axis=1), distance.min(axis=1)
        on_map = error < 1e-3
        if on_map.sum() < 150:
            continue
        steps = np.diff(nearest[on_map])
        if len(np.unique(nearest[on_map])) > 100 and ((steps <= 0).all() or (steps >= 0).all()):
            return True
    return False


@pytest.fixture
def trend_file(tmp_path):
    folder = tmp_path / "stack"
    write_sample(folder, years=range(2000, 2012), rows=80, cols=120, seed=2)
    out = tmp_path / "trend.tif"
    assert runner.invoke(app, ["trend", str(folder), "-o", str(out), "--method", "both", "-q"]).exit_code == 0
    return folder, out


def test_slope_map_has_a_colour_bar_a_diverging_scale_and_content(trend_file, tmp_path):
    _, trend = trend_file
    png = tmp_path / "slope.png"
    result = runner.invoke(app, ["plot", str(trend), "-o", str(png), "--band", "slope"])
    assert result.exit_code == 0, result.output
    image = _png(png)
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert _has_colour_bar(image, "BrBG")
    left = image[:, : int(image.shape[1] * 0.7)]
    assert len(np.unique(left.reshape(-1, 3).round(2), axis=0)) > 50  # not blank
    # BrBG: both brown (decrease: red > blue) and green-teal (increase: blue/green > red) pixels appear.
    reds, blues = left[..., 0], left[..., 2]
    assert ((reds - blues) > 0.3).mean() > 0.02 and ((blues - reds) > 0.3).mean() > 0.02


def test_nan_is_transparent_showing_the_white_background(tmp_path):
    data = np.linspace(0.1, 0.9, 100 * 100, dtype=np.float32).reshape(100, 100)
    data[:50, :50] = np.nan
    source = write_raster(tmp_path / "ndvi_2001.tif", data, descriptions=["ndvi"])
    png = tmp_path / "ndvi.png"
    assert runner.invoke(app, ["plot", str(source), "-o", str(png)]).exit_code == 0
    image = _png(png)
    rows, cols = np.nonzero((image < 0.999).any(axis=2))  # everything that is not white
    map_rows = slice(rows.min() + 20, rows.min() + 120)
    top_left = image[rows.min() + 25: rows.min() + 60, cols.min() + 25: cols.min() + 60]
    assert (top_left > 0.999).all()  # the NaN quarter is background
    assert len(np.unique(image[map_rows].reshape(-1, 3).round(2), axis=0)) > 20
    # YlGn for index values: the largest values are dark green (green channel above red and blue).
    greenish = image[..., 1] > image[..., 0] + 0.1
    assert greenish.mean() > 0.05
    assert _has_colour_bar(image, "YlGn")


@pytest.mark.skipif(not (SHARED_DATA / "L7_ETMs.tif").exists(), reason="the tutorial image is not on this machine")
def test_true_colour_view(tmp_path):
    png = tmp_path / "rgb.png"
    result = runner.invoke(app, ["plot", str(SHARED_DATA / "L7_ETMs.tif"), "--rgb", "3,2,1", "-o", str(png)])
    assert result.exit_code == 0
    image = _png(png)
    body = image[40:-10, 10:-10]
    assert np.abs(body[..., 0] - body[..., 2]).mean() > 0.02  # colour, not grey
    assert not _has_colour_bar(image, "BrBG") and not _has_colour_bar(image, "YlGn")
    bad = runner.invoke(app, ["plot", str(SHARED_DATA / "L7_ETMs.tif"), "--rgb", "3,2", "-o", str(png)])
    assert bad.exit_code == 2 and "three band numbers" in bad.output


def test_plot_pixel_draws_the_fits_that_scipy_computes(trend_file, tmp_path):
    folder, _ = trend_file
    import rasterio

    with rasterio.open(sorted(folder.glob("ndvi_*.tif"))[0]) as dataset:
        x, y = dataset.xy(17, 42)
    png = tmp_path / "pixel.png"
    result = runner.invoke(app, ["plot-pixel", str(folder), "--xy", str(x), str(y), "-o", str(png)])
    assert result.exit_code == 0, result.output
    values, years = [], []
    for path in sorted(folder.glob("ndvi_*.tif")):
        with rasterio.open(path) as dataset:
            values.append(float(dataset.read(1)[17, 42]))
            years.append(int(path.stem.split("_")[1]))
    values, years = np.array(values), np.array(years, dtype=float)
    ok = np.isfinite(values)
    ols = stats.linregress(years[ok], values[ok]).slope
    sen = stats.theilslopes(values[ok], years[ok]).slope
    assert f"OLS slope {ols:+.5g}" in result.output and f"Sen slope {sen:+.5g}" in result.output
    assert "(row 17, col 42)" in result.output
    image = _png(png)
    assert image.shape[1] > 500 and len(np.unique(image.reshape(-1, 3).round(2), axis=0)) > 20
    outside = runner.invoke(app, ["plot-pixel", str(folder), "--xy", "0", "0", "-o", str(png)])
    assert outside.exit_code == 2 and "outside the rasters" in outside.output
