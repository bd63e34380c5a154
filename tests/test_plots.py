"""Pictures: the PNGs are opened and checked for size, a colour bar, content and transparency of NaN."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import rasterio
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


# -- what each picture says it shows (issue 22) ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_trend(tmp_path_factory):
    """A fit with every named option (TFPW, Benjamini-Hochberg, Pettitt), as GeoTIFF, NetCDF and Zarr."""
    folder = tmp_path_factory.mktemp("named")
    write_sample(folder / "stack", years=range(2000, 2016), rows=60, cols=90, seed=5)
    outputs = {}
    for format, name in (("gtiff", "trend.tif"), ("netcdf", "trend.nc"), ("zarr", "trend.zarr")):
        result = runner.invoke(app, ["trend", str(folder / "stack"), "-o", str(folder / name), "--format", format,
                                     "--method", "both", "--mk-test", "tfpw", "--fdr", "bh", "--changepoint",
                                     "pettitt", "-q"])
        assert result.exit_code == 0, result.output
        outputs[format] = folder / name
    return outputs


@pytest.fixture
def drawn_text(monkeypatch):
    """Every text of each figure ``plot`` saves (title, legend, colour bar label and ticks), by PNG name."""
    import matplotlib.text

    import pipeline.reporting.plots as plots

    texts: dict[str, list[str]] = {}
    save = plots._save

    def recording(figure, png):
        figure.canvas.draw()  # tick labels exist once drawn
        texts[png.name] = [t.get_text() for t in figure.findobj(matplotlib.text.Text) if t.get_text()]
        bars = [a for a in figure.axes if a.get_label() == "<colorbar>"]
        texts[png.name + ":colour bars"] = [str(len(bars))]
        texts[png.name + ":ticks"] = [t.get_text() for a in bars for t in a.get_yticklabels() + a.get_xticklabels()
                                      if t.get_text()]
        return save(figure, png)

    monkeypatch.setattr(plots, "_save", recording)
    return texts


def _plot(trend, band, png, *extra):
    result = runner.invoke(app, ["plot", str(trend), "--band", band, "-o", str(png), *extra])
    assert result.exit_code == 0, result.output
    return _png(png)


def test_a_trend_class_gets_a_legend_of_its_three_classes_not_a_ramp_per_year(full_trend, tmp_path, drawn_text):
    image = _plot(full_trend["gtiff"], "trend_class", tmp_path / "class.png")
    text = drawn_text["class.png"]
    assert {"significant decrease", "no significant trend", "significant increase"} <= set(text)
    assert "trend class\nMann-Kendall (TFPW) p < 0.05" in text  # the legend's title names the test
    assert "trend.tif: trend class, 2000-2015" in text
    assert not any("per year" in t for t in text) and drawn_text["class.png:colour bars"] == ["0"]
    assert not _has_colour_bar(image, "BrBG")
    for colour in ("#8c510a", "#d9dee3", "#01665e"):  # each class's colour on the map and in the legend
        rgb = np.array([int(colour[i: i + 2], 16) for i in (1, 3, 5)]) / 255
        assert (np.abs(image - rgb) < 0.02).all(axis=2).sum() > 200, colour
    with rasterio.open(full_trend["gtiff"]) as dataset:
        classes = dataset.read(dataset.descriptions.index("trend_class") + 1)
    assert set(np.unique(classes[np.isfinite(classes)])) == {-1.0, 0.0, 1.0}

    _plot(full_trend["gtiff"], "trend_class_fdr", tmp_path / "fdr.png")
    assert "trend class, FDR-corrected\nBenjamini-Hochberg, q = 0.05" in drawn_text["fdr.png"]
    assert "significant increase" in drawn_text["fdr.png"]


def test_years_and_counts_are_stepped_whole_numbers_without_per_year(full_trend, tmp_path, drawn_text):
    import rasterio

    with rasterio.open(full_trend["gtiff"]) as dataset:
        names = list(dataset.descriptions)
        cp = dataset.read(names.index("cp_year") + 1)
    _plot(full_trend["gtiff"], "cp_year", tmp_path / "cp.png")
    text = drawn_text["cp.png"]
    assert "change point: last year before it (Pettitt)" in text and drawn_text["cp.png:colour bars"] == ["1"]
    ticks = drawn_text["cp.png:ticks"]
    assert len(ticks) >= 3 and all(t.isdigit() and np.nanmin(cp) <= int(t) <= np.nanmax(cp) for t in ticks), ticks
    assert not any("per year" in t for t in text)
    _plot(full_trend["gtiff"], "n", tmp_path / "n.png")
    assert "valid years per pixel (n)" in drawn_text["n.png"]
    assert not any("per year" in t or "(years)" in t for t in drawn_text["n.png"])
    _plot(full_trend["gtiff"], "mk_p", tmp_path / "p.png")
    assert "Mann-Kendall (TFPW) p-value" in drawn_text["p.png"]
    assert not any("per year" in t for t in drawn_text["p.png"])
    _plot(full_trend["gtiff"], "sen_slope", tmp_path / "sen.png")
    assert "Sen's slope (NDVI per year)" in drawn_text["sen.png"]  # a slope is per year
    assert "trend.tif: Sen's slope, 2000-2015" in drawn_text["sen.png"]


@pytest.mark.parametrize("format", ["netcdf", "zarr"])
def test_plot_draws_a_netcdf_or_zarr_output_as_its_geotiff(full_trend, tmp_path, format):
    for band in ("sen_slope", "trend_class"):
        same = _plot(full_trend["gtiff"], band, tmp_path / f"tif_{band}.png", "--title", "t")
        other = _plot(full_trend[format], band, tmp_path / f"{format}_{band}.png", "--title", "t")
        assert np.array_equal(same, other)
    assert not list(tmp_path.glob(".eetrend-read-*"))  # the temporary GeoTIFF is gone


def test_a_change_type_band_gets_a_legend_with_the_words_its_tag_gives(tmp_path, drawn_text):
    data = np.repeat(np.array([0, 1, 2, 1], dtype=np.float32), 25)[None, :].repeat(60, axis=0)
    data[:10] = np.nan
    path = write_raster(tmp_path / "changes.tif", np.stack([data, data * 0.01]),
                        descriptions=["change_type", "slope"])
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(method="ols", units="NDVI per year", change_type="0 none, 1 abrupt, 2 gradual")
    image = _plot(path, "change_type", tmp_path / "type.png")
    text = drawn_text["type.png"]
    assert {"none", "abrupt", "gradual"} <= set(text) and "change type" in text
    assert drawn_text["type.png:colour bars"] == ["0"] and not any("per year" in t for t in text)
    assert not _has_colour_bar(image, "viridis")
