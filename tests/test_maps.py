"""Maps in map coordinates: axes from the transform, a scale bar of the right length, faded
non-significant pixels decided by the file's own p-values, and the region outlined."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
import rasterio
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cli import app
from pipeline.engine.sample import write_sample
from pipeline.reporting.maps import bbox_geometry, metres_per_degree_longitude, nice_length, region_rings
from pipeline.reporting.plots import draw_band
from tests.conftest import write_raster

runner = CliRunner()


@pytest.fixture(scope="module")
def trend(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    write_sample(folder / "stack", years=range(2000, 2012), rows=60, cols=90, seed=1)
    out = folder / "trend.tif"
    assert runner.invoke(app, ["trend", str(folder / "stack"), "-o", str(out), "--method", "both", "-q"]).exit_code == 0
    return out


def _scale_bar(axes) -> tuple[float, str]:
    bars = [a for a in axes.artists if isinstance(a, AnchoredSizeBar)]
    assert len(bars) == 1
    bar = bars[0]
    rectangle = bar.size_bar.get_children()[0]
    return rectangle.get_width(), bar.txt_label.get_text()


def test_projected_map_has_easting_northing_axes_from_the_transform_and_a_true_scale_bar(trend):
    figure, axes = plt.subplots()
    try:
        draw_band(axes, trend, band="slope")
        with rasterio.open(trend) as dataset:
            bounds = dataset.bounds
        assert axes.get_xlabel() == "easting (m, EPSG:32633)" and axes.get_ylabel() == "northing (m, EPSG:32633)"
        assert axes.get_xlim() == pytest.approx((bounds.left, bounds.right))
        assert axes.get_ylim() == pytest.approx((bounds.bottom, bounds.top))
        width, label = _scale_bar(axes)
        assert label == "500 m" and width == pytest.approx(500.0)  # 2.7 km wide map: a fifth, rounded down
        figure.canvas.draw()
        labels = {t.get_position()[0]: float(t.get_text()) for t in axes.get_xticklabels() if t.get_text()}
        assert labels and all(label == location for location, label in labels.items())  # metres as they are
    finally:
        plt.close(figure)


def test_a_wider_map_is_labelled_in_km(tmp_path):
    path = write_raster(tmp_path / "slope.tif", np.zeros((60, 90), dtype=np.float32),
                        transform=from_origin(600_000, 5_100_000, 100, 100), descriptions=["slope"])
    figure, axes = plt.subplots()
    try:
        draw_band(axes, path)
        assert axes.get_xlabel() == "easting (km, EPSG:32633)"
        assert _scale_bar(axes) == (pytest.approx(1000.0), "1 km")  # 9 km wide: a fifth is 1.8 km
        figure.canvas.draw()
        labels = {t.get_position()[0]: float(t.get_text()) for t in axes.get_xticklabels() if t.get_text()}
        assert labels and all(label == pytest.approx(location / 1000) for location, label in labels.items())
    finally:
        plt.close(figure)


def test_geographic_map_has_longitude_latitude_axes_and_a_scale_bar_measured_at_its_latitude(tmp_path):
    data = np.linspace(-1, 1, 40 * 60, dtype=np.float32).reshape(40, 60)
    path = write_raster(tmp_path / "slope.tif", data, crs="EPSG:4326", transform=from_origin(11.0, 47.0, 0.01, 0.01),
                        descriptions=["slope"])
    figure, axes = plt.subplots()
    try:
        draw_band(axes, path)
        assert axes.get_xlabel() == "longitude (EPSG:4326)" and axes.get_ylabel() == "latitude (EPSG:4326)"
        assert axes.get_xlim() == pytest.approx((11.0, 11.6))
        width_degrees, label = _scale_bar(axes)
        metres = width_degrees * metres_per_degree_longitude(46.8)
        # 0.6 degrees of longitude at 46.8 N is about 45.7 km; a fifth is 9.1 km, rounded down to 5 km.
        assert label == "5 km" and metres == pytest.approx(5000.0)
        assert axes.get_aspect() == pytest.approx(1 / np.cos(np.radians(46.8)))
        figure.canvas.draw()
        assert any(t.get_text().endswith("°E") for t in axes.get_xticklabels())
        assert any(t.get_text().endswith("°N") for t in axes.get_yticklabels())
    finally:
        plt.close(figure)
    pyproj = pytest.importorskip("pyproj")
    _, _, distance = pyproj.Geod(ellps="WGS84").inv(11.0, 46.8, 12.0, 46.8)
    great_circle_vs_parallel = distance / metres_per_degree_longitude(46.8)
    assert great_circle_vs_parallel == pytest.approx(1.0, rel=1e-4)  # one degree along the parallel, as drawn


def test_a_raster_without_a_crs_keeps_pixel_axes(tmp_path):
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=10, count=1, dtype="float32") as dataset:
        dataset.write(np.ones((1, 10, 20), dtype=np.float32))
    figure, axes = plt.subplots()
    try:
        draw_band(axes, path)
        assert axes.get_xlabel().startswith("column") and axes.get_ylabel() == "row"
        assert not [a for a in axes.artists if isinstance(a, AnchoredSizeBar)]
    finally:
        plt.close(figure)


def test_significant_only_fades_exactly_the_pixels_whose_own_test_is_not_significant(trend):
    with rasterio.open(trend) as dataset:
        names = list(dataset.descriptions)
        mk_p = dataset.read(names.index("mk_p") + 1)
        pvalue = dataset.read(names.index("pvalue") + 1)
        sen = dataset.read(names.index("sen_slope") + 1)
    for band, p, alpha in (("sen_slope", mk_p, None), ("slope", pvalue, 0.01)):
        figure, axes = plt.subplots()
        try:
            drawn = draw_band(axes, trend, band=band, significant_only=True, alpha=alpha, fade=0.2)
            level = alpha or 0.05
            expected = np.where(np.isfinite(sen) & ~(p < level), 0.2, 1.0)
            np.testing.assert_array_equal(drawn.image.get_alpha(), expected)
            assert 0 < (expected == 0.2).mean() < 1
            test = "Mann-Kendall" if band == "sen_slope" else "OLS t-test"
            assert drawn.significance == f"faded: not significant ({test} p ≥ {level:g})"
        finally:
            plt.close(figure)


def test_fdr_adjusted_p_values_decide_the_fading_where_the_file_has_them(tmp_path):
    rng = np.random.default_rng(2)
    slope = rng.normal(0, 1, (30, 30))
    pvalue = rng.uniform(0, 0.1, (30, 30))
    p_fdr = np.minimum(1, pvalue * 4)
    classes = np.where(pvalue < 0.05, np.sign(slope), 0)
    path = write_raster(tmp_path / "t.tif", np.stack([slope, pvalue, classes, p_fdr]).astype(np.float32),
                        descriptions=["slope", "pvalue", "trend_class", "p_fdr"])
    figure, axes = plt.subplots()
    try:
        drawn = draw_band(axes, path, band="slope", significant_only=True)
        expected = np.where(p_fdr.astype(np.float32).astype(float) <= 0.05, 1.0, 0.25)  # BH: adjusted p <= q
        np.testing.assert_array_equal(drawn.image.get_alpha(), expected)
        assert "FDR-adjusted" in drawn.significance
    finally:
        plt.close(figure)
    # With trend_class_fdr in the file, the class band decides at the file's own level (the map then agrees
    # with the area table to the pixel); an explicit --alpha goes back to the p-values.
    fdr_classes = np.where(p_fdr <= 0.05, np.sign(slope), 0)
    p_fdr[0, 0], fdr_classes[0, 0] = 0.9, 1  # a class the p-value alone would not give
    path = write_raster(tmp_path / "c.tif", np.stack([slope, pvalue, classes, p_fdr, fdr_classes]).astype(np.float32),
                        descriptions=["slope", "pvalue", "trend_class", "p_fdr", "trend_class_fdr"])
    for alpha, top_left_faded in ((None, False), (0.05, True)):
        figure, axes = plt.subplots()
        try:
            drawn = draw_band(axes, path, band="slope", significant_only=True, alpha=alpha)
            assert bool(drawn.image.get_alpha()[0, 0] == 0.25) == top_left_faded
            np.testing.assert_array_equal(drawn.image.get_alpha()[1:], np.where(fdr_classes[1:] == 0, 0.25, 1.0))
        finally:
            plt.close(figure)


def test_plot_cli_fades_non_significant_pixels_and_refuses_what_cannot_work(trend, tmp_path):
    plain, faded = tmp_path / "plain.png", tmp_path / "faded.png"
    assert runner.invoke(app, ["plot", str(trend), "-o", str(plain), "--band", "sen_slope"]).exit_code == 0
    result = runner.invoke(app, ["plot", str(trend), "-o", str(faded), "--band", "sen_slope", "--significant-only"])
    assert result.exit_code == 0, result.output
    a, b = (matplotlib.image.imread(p)[..., :3] for p in (plain, faded))
    assert a.shape[1] == b.shape[1]
    rows = min(a.shape[0], b.shape[0])
    saturation = lambda image: (image.max(axis=2) - image.min(axis=2)).mean()  # noqa: E731
    assert saturation(b[:rows]) < saturation(a[:rows]) * 0.97  # paler where not significant
    no_p = write_raster(tmp_path / "ndvi_2001.tif", np.ones((10, 10), dtype=np.float32), descriptions=["ndvi"])
    refused = runner.invoke(app, ["plot", str(no_p), "-o", str(tmp_path / "x.png"), "--significant-only"])
    assert refused.exit_code == 1 and "no p-value band" in refused.output
    bad = runner.invoke(app, ["plot", str(trend), "-o", str(tmp_path / "y.png"), "--significant-only", "--fade", "2"])
    assert bad.exit_code == 2 and "--fade 2" in bad.output
    garbage = tmp_path / "garbage.tif"
    garbage.write_text("not a raster")
    for source in (garbage, tmp_path / "missing.tif"):
        unreadable = runner.invoke(app, ["plot", str(source), "-o", str(tmp_path / "z.png")])
        assert unreadable.exit_code == 1 and unreadable.output.startswith("error: ")
        assert len(unreadable.output.strip().splitlines()) == 1 and "Traceback" not in unreadable.output
    assert not any((tmp_path / name).exists() for name in ("x.png", "y.png", "z.png"))


def test_region_outline_is_reprojected_and_widens_the_view_to_hold_it(tmp_path):
    # A raster on UTM 33N and a bbox in degrees around it: the outline lands around the raster.
    rings = region_rings(bbox_geometry((15.0, 45.14, 15.08, 45.17)), "EPSG:32633")
    xs, ys = rings[0][:, 0], rings[0][:, 1]
    pyproj = pytest.importorskip("pyproj")
    transformer = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    corner = transformer.transform(15.0, 45.14)
    assert (xs[0], ys[0]) == pytest.approx(corner, abs=1e-3)
    inside = from_origin(xs.min() + 300, ys.max() - 300, 30, 30)
    for name, shape, widened in (("near.tif", (100, 150), True), ("tiny.tif", (10, 10), False)):
        path = write_raster(tmp_path / name, np.zeros(shape, dtype=np.float32), transform=inside,
                            descriptions=["slope"])
        figure, axes = plt.subplots()
        try:
            draw_band(axes, path, region=rings)
            left, right = axes.get_xlim()
            assert any(np.allclose(line.get_xdata(), xs) for line in axes.get_lines())  # outlined either way
            if widened:  # a region of about the raster's size: the view holds all of it
                assert left < xs.min() and right > xs.max()
            else:  # a region that dwarfs the raster: the view stays on the data
                assert (left, right) == pytest.approx((inside.c, inside.c + 300))
        finally:
            plt.close(figure)


def test_nice_lengths():
    assert [nice_length(v) for v in (0.9, 1, 3.7, 14, 999, 5001)] == [0.5, 1, 2, 10, 500, 5000]


def test_a_south_up_grid_is_drawn_with_north_at_the_top(tmp_path):
    from rasterio.transform import Affine

    data = np.zeros((20, 30), dtype=np.float32)
    data[0, :] = 1.0  # row 0 of a south-up grid is its southern edge
    path = write_raster(tmp_path / "s.tif", data, transform=Affine(30, 0, 500_000, 0, 30, 4_000_000),
                        descriptions=["slope"])
    figure, axes = plt.subplots()
    try:
        drawn = draw_band(axes, path)
        assert axes.get_ylim() == pytest.approx((4_000_000, 4_000_600))
        assert drawn.image.origin == "lower"  # row 0 (the 1.0s) is drawn at the bottom, y = 4,000,000
        assert drawn.image.get_extent() == pytest.approx([500_000, 500_900, 4_000_000, 4_000_600])
    finally:
        plt.close(figure)


def test_the_footprint_outline_follows_the_edge_of_the_valid_pixels():
    from pipeline.reporting.maps import footprint_rings, map_frame

    valid = np.zeros((40, 60), dtype=bool)
    valid[10:30, 5:50] = True
    valid[15, 20] = False  # a hole inside: filled, not outlined
    frame = map_frame((30, 0, 500_000, 0, -30, 5_000_000), 60, 40, "EPSG:32633")
    rings = footprint_rings(valid, frame)
    assert len(rings) == 1
    xs, ys = rings[0][:, 0], rings[0][:, 1]
    # The contour runs along the pixel edges, half a pixel either side of the 0.5 level: within 15 m of them.
    assert xs.min() == pytest.approx(500_000 + 5 * 30, abs=15) and xs.max() == pytest.approx(500_000 + 50 * 30, abs=15)
    assert ys.max() == pytest.approx(5_000_000 - 10 * 30, abs=15) and ys.min() == pytest.approx(5_000_000 - 30 * 30,
                                                                                               abs=15)
    assert footprint_rings(np.ones((40, 60), dtype=bool), frame) == []  # data everywhere: the frame is the outline
