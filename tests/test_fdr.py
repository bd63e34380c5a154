"""False-discovery-rate adjustment against statsmodels: in memory, out of core, and through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

from cli import app
from pipeline.engine.fdr import adjust, apply_fdr
from pipeline.engine.sample import sample_grid, write_sample
from pipeline.files.outputs import RasterWriter

runner = CliRunner()


@settings(max_examples=80, deadline=None)
@given(
    p=st.lists(st.one_of(st.sampled_from([0.0, 0.01, 0.05, 0.5, 1.0, np.nan]), st.floats(0, 1)), min_size=1,
               max_size=60),
    method=st.sampled_from(["bh", "by"]),
)
def test_in_memory_adjustment_equals_statsmodels_with_ties_and_gaps(p: list[float], method: str) -> None:
    p = np.asarray(p)
    got = adjust(p, method)
    fitted = np.isfinite(p)
    assert np.isnan(got[~fitted]).all()
    if fitted.any():
        want = multipletests(p[fitted], method=f"fdr_{method}")[1]
        np.testing.assert_allclose(got[fitted], want, rtol=1e-9, atol=0)


def _fit_file(path: Path, p: np.ndarray, slope: np.ndarray) -> None:
    rows, cols = p.shape
    with RasterWriter(path, sample_grid(rows, cols), ("slope", "pvalue", "n")) as writer:
        writer.write(rasterio.windows.Window(0, 0, cols, rows), {"slope": slope, "pvalue": p, "n": np.ones_like(p)})


def test_out_of_core_adjustment_over_many_groups_equals_statsmodels(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows, cols = 520, 600
    p = rng.beta(0.3, 2.0, size=(rows, cols))
    p[:150] = 1.0  # one bucket holding more values than a group may: counted value by value
    p[150:170] = 0.0
    p[rng.random(p.shape) < 0.05] = np.nan  # not fitted
    slope = rng.normal(size=p.shape)
    _fit_file(tmp_path / "fit.tif", p, slope)
    for method in ("bh", "by"):
        out = tmp_path / f"{method}.tif"
        summary = apply_fdr(tmp_path / "fit.tif", out, method=method, q=0.1, p_band="pvalue", slope_band="slope",
                            budget=64 << 20, group_values=20_000)  # several groups, and a lone big bucket
        assert summary.passes > 4
        with rasterio.open(out) as ds:
            bands = dict(zip(ds.descriptions, ds.read(), strict=True))
            tags = ds.tags()
        written = bands["pvalue"]
        fitted = np.isfinite(written)
        want = multipletests(written[fitted].astype(np.float64), method=f"fdr_{method}")
        assert summary.tests == fitted.sum() == int(tags["fdr_tests"])
        np.testing.assert_array_equal(bands["p_fdr"][fitted], want[1].astype(np.float32))
        assert np.isnan(bands["p_fdr"][~fitted]).all() and np.isnan(bands["trend_class_fdr"][~fitted]).all()
        reject = want[1] <= 0.1
        np.testing.assert_array_equal(bands["trend_class_fdr"][fitted], np.where(reject, np.sign(slope[fitted]), 0))
        assert tags["fdr_q"] == "0.1" and tags["fdr_method"].startswith(f"fdr_{method}")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bh.tif", "by.tif", "fit.tif"]  # no temporary left


def test_trend_with_every_option_from_the_command_line(tmp_path: Path) -> None:
    write_sample(tmp_path / "in", years=range(1990, 2012), rows=40, cols=50, seed=3)
    out = tmp_path / "trend.tif"
    result = runner.invoke(app, ["trend", str(tmp_path / "in"), "-o", str(out), "--method", "both", "--workers", "1",
                                 "--mk-test", "yue-wang", "--fdr", "bh", "--fdr-q", "0.1", "--changepoint", "pettitt",
                                 "--min-fraction", "0.5", "--edge-years", "4"])
    assert result.exit_code == 0, result.output
    assert "fdr_bh at q=0.1" in result.output
    with rasterio.open(out) as ds:
        names = ds.descriptions
        bands = dict(zip(names, ds.read(), strict=True))
        tags = ds.tags()
    assert names[-4:] == ("cp_year", "cp_p", "p_fdr", "trend_class_fdr")
    assert tags["mk_test"].startswith("yue-wang") and tags["min_fraction"] == "0.5" and tags["edge_years"] == "4"
    p = bands["mk_p"]
    fitted = np.isfinite(p)
    np.testing.assert_array_equal(bands["p_fdr"][fitted],
                                  multipletests(p[fitted].astype(float), method="fdr_bh")[1].astype(np.float32))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["in", "trend.tif"]


def test_bad_statistics_options_are_one_line_usage_errors(tmp_path: Path) -> None:
    write_sample(tmp_path / "in", years=range(2000, 2006), rows=4, cols=4)
    for args, message in ((["--fdr-q", "1.5", "--fdr", "bh"], "--fdr-q is 1.5"),
                          (["--min-count", "2"], "--min-count needs"),
                          (["--count-band", "2"], "--count-band 2: ndvi_2000.tif has 1 band"),
                          (["--mk-test", "tfpw"], "--method sen or both")):
        result = runner.invoke(app, ["trend", str(tmp_path / "in"), "-o", str(tmp_path / "t.tif"), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def _peak_python_memory(fit: Path, out: Path) -> int:
    """Peak bytes allocated by Python and numpy during one out-of-core adjustment (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        apply_fdr(fit, out, method="bh", q=0.05, p_band="pvalue", slope_band="slope", budget=32 << 20,
                  group_values=100_000)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_the_adjustment_stays_flat_when_the_raster_grows_fourfold(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    peaks = {}
    for label, size in (("1x", 512), ("4x", 1024)):
        p = rng.beta(0.4, 1.5, size=(size, size))
        _fit_file(tmp_path / f"fit{label}.tif", p, rng.normal(size=p.shape))
        peaks[label] = _peak_python_memory(tmp_path / f"fit{label}.tif", tmp_path / f"out{label}.tif")
    assert peaks["4x"] <= 1.25 * peaks["1x"], peaks
    assert peaks["1x"] < 32 << 20  # and within the budget


def test_a_map_without_fitted_pixels_has_no_tests(tmp_path: Path) -> None:
    _fit_file(tmp_path / "fit.tif", np.full((20, 30), np.nan), np.zeros((20, 30)))
    summary = apply_fdr(tmp_path / "fit.tif", tmp_path / "out.tif", method="by", q=0.05, p_band="pvalue",
                        slope_band="slope", budget=64 << 20)
    assert summary.tests == 0 and summary.significant == 0
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert np.isnan(ds.read(4)).all() and np.isnan(ds.read(5)).all() and ds.tags()["fdr_tests"] == "0"
