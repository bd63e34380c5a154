"""Modified Mann-Kendall tests, Pettitt, coverage rules and counts against pymannkendall,
pyhomogeneity and scipy, per pixel, at 1e-9 in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pyhomogeneity as hg
import pymannkendall as mk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline import fit
from pipeline.errors import UsageError

ORACLES = {
    "hamed-rao": mk.hamed_rao_modification_test,
    "yue-wang": mk.yue_wang_modification_test,
    "prewhiten": mk.pre_whitening_modification_test,
    "tfpw": mk.trend_free_pre_whitening_modification_test,
}
FIELDS = (("mk_s", "s"), ("mk_var_s", "var_s"), ("mk_z", "z"), ("mk_p", "p"), ("mk_tau", "Tau"))


def _oracle(test: str, y: np.ndarray, alpha: float = 0.05):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if test == "hamed-rao":
            return ORACLES[test](y, alpha=alpha)
        return ORACLES[test](y)


def _undefined_acf(test: str, y: np.ndarray) -> bool:
    """True where pymannkendall divides by a zero autocovariance (eetrend documents 0 there)."""
    y = y[np.isfinite(y)]
    n = len(y)
    slope = mk.sens_slope(y).slope
    detrended = y - np.arange(1, n + 1) * slope
    if test == "hamed-rao":
        return np.ptp(stats.rankdata(detrended)) == 0
    if test == "prewhiten":
        return np.ptp(y) == 0
    return np.ptp(detrended) == 0


WHITENED = ("prewhiten", "tfpw")


def _whitened_values(y: np.ndarray) -> int:
    """Pre-whitened values of a series on consecutive years: those whose year before is valid too."""
    valid = np.isfinite(y)
    return int(np.count_nonzero(valid[1:] & valid[:-1]))


def assert_matches(test: str, values: np.ndarray, years: np.ndarray, alpha: float = 0.05) -> int:
    result = fit(values, years, method="sen", mk_test=test, alpha=alpha, min_years=3)
    original = fit(values, years, method="sen", min_years=3)
    checked = 0
    for p in range(values.shape[1]):
        y = values[:, p]
        if np.isfinite(y).sum() < 3:
            assert np.isnan(result["mk_p"][p])
            continue
        if test in WHITENED and _whitened_values(y) < 3:  # a test of 2 values gives p = 1 whatever they are
            assert all(np.isnan(result[band][p]) for band, _ in FIELDS), (test, p)
            continue
        want = _oracle(test, y, alpha)
        if _undefined_acf(test, y):  # eetrend takes the undefined ACF as 0: the original test
            if test in ("hamed-rao", "yue-wang"):
                np.testing.assert_allclose(result["mk_p"][p], original["mk_p"][p], rtol=1e-12)
            continue
        for band, field in FIELDS:
            got, expected = result[band][p], getattr(want, field)
            if np.isnan(expected):
                assert np.isnan(got), (test, p, band)
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-300, err_msg=f"{test} {p} {band}")
        checked += 1
    return checked


def _ar1(n_years: int, pixels: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n_years, pixels))
    series = np.zeros_like(noise)
    for t in range(n_years):
        series[t] = (phi * series[t - 1] if t else 0.0) + noise[t]
    return series + 0.02 * np.arange(n_years)[:, None] * rng.normal(size=pixels)


@pytest.mark.parametrize("test", sorted(ORACLES))
def test_each_modified_test_equals_pymannkendall_on_autocorrelated_series(test: str) -> None:
    years = np.arange(1982, 2024)  # 42 years, as the real NDVI stacks
    values = _ar1(len(years), 120, 0.6, seed=3)
    values[:, :40] = np.round(values[:, :40] * 2) / 2  # ties
    assert assert_matches(test, values, years) == 120


@pytest.mark.parametrize("test", sorted(ORACLES))
@pytest.mark.parametrize("n_years", [3, 4, 5, 8])
def test_short_series(test: str, n_years: int) -> None:
    values = _ar1(n_years, 60, 0.3, seed=n_years)
    values[:, :20] = np.round(values[:, :20])
    checked = assert_matches(test, values, np.arange(2000, 2000 + n_years))
    if test in WHITENED and n_years == 3:  # 2 pre-whitened values: every pixel NaN, as assert_matches checked
        assert checked == 0
    else:
        assert checked > 0


def test_hamed_rao_uses_alpha_for_the_significant_lags() -> None:
    years = np.arange(1990, 2020)
    values = _ar1(len(years), 60, 0.7, seed=9)
    assert assert_matches("hamed-rao", values, years, alpha=0.2) == 60


@settings(max_examples=60, deadline=None)
@given(
    test=st.sampled_from(sorted(ORACLES)),
    series=st.lists(st.integers(-4, 4), min_size=3, max_size=25),
)
def test_integer_series_with_many_ties(test: str, series: list[int]) -> None:
    values = np.asarray(series, dtype=np.float64)[:, None]
    assert_matches(test, values, np.arange(1990, 1990 + len(series)))


@pytest.mark.parametrize("test", sorted(ORACLES))
def test_missing_years_at_the_ends_are_pymannkendall_on_the_trimmed_series(test: str) -> None:
    years = np.arange(1984, 2024)
    values = _ar1(len(years), 50, 0.5, seed=5)
    values[:4, ::2] = np.nan
    values[-3:, ::3] = np.nan
    assert assert_matches(test, values, years) == 50


def _real_year_reference(test: str, y: np.ndarray, years: np.ndarray) -> float:
    """The documented gap rule, written per series with plain loops (independent of the kernel)."""
    keep = np.isfinite(y)
    x, v = years[keep].astype(float), y[keep]
    n = len(v)
    slope = stats.theilslopes(v, x).slope
    pos = x - x[0] + 1

    def acf(series: np.ndarray, lag: int) -> float:
        centred = series - series.mean()
        top = sum(centred[i] * centred[j] for i in range(n) for j in range(n) if x[j] - x[i] == lag)
        return (top / n) / ((centred**2).sum() / n)

    if test == "prewhiten" or test == "tfpw":
        base = v - pos * slope if test == "tfpw" else v
        r1 = acf(base, 1)
        white = [base[j] - r1 * base[j - 1] + ((pos[j] - 1) * slope if test == "tfpw" else 0.0)
                 for j in range(1, n) if x[j] - x[j - 1] == 1]
        return mk.original_test(np.asarray(white)).p
    original = mk.original_test(v)
    if test == "yue-wang":
        factor = 1 + 2 * sum((1 - k / n) * acf(v - pos * slope, k) for k in range(1, n))
    else:
        ranks = stats.rankdata(v - pos * slope)
        bound = stats.norm.ppf(0.975) / np.sqrt(n)
        factor = 1 + 2 / (n * (n - 1) * (n - 2)) * sum(
            (n - k) * (n - k - 1) * (n - k - 2) * r for k in range(1, n) if abs(r := acf(ranks, k)) > bound)
    var = original.var_s * factor
    z = (original.s - np.sign(original.s)) / np.sqrt(var) if original.s else 0.0
    return 2 * (1 - stats.norm.cdf(abs(z)))


@pytest.mark.parametrize("test", sorted(ORACLES))
def test_missing_years_inside_use_the_real_years(test: str) -> None:
    years = np.arange(1990, 2016)
    values = _ar1(len(years), 25, 0.5, seed=8)
    rng = np.random.default_rng(1)
    values[rng.random(values.shape) < 0.2] = np.nan
    result = fit(values, years, method="sen", mk_test=test)
    for p in range(values.shape[1]):
        if np.isfinite(values[:, p]).sum() >= 3:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = _real_year_reference(test, values[:, p], years)
            np.testing.assert_allclose(result["mk_p"][p], want, rtol=1e-9, err_msg=f"{test} {p}")


def test_modified_test_needs_a_mann_kendall_method() -> None:
    with pytest.raises(UsageError, match="--method sen or both"):
        fit(np.zeros((5, 2)), range(2000, 2005), method="ols", mk_test="tfpw")
    with pytest.raises(UsageError, match="not one of"):
        fit(np.zeros((5, 2)), range(2000, 2005), method="sen", mk_test="hamed")


@settings(max_examples=80, deadline=None)
@given(series=st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(np.nan)), min_size=2, max_size=30))
def test_pettitt_equals_pyhomogeneity(series: list[float]) -> None:
    y = np.asarray(series)
    years = np.arange(1990, 1990 + len(y))
    result = fit(y[:, None], years, method="sen", changepoint="pettitt", min_years=2)
    want = hg.pettitt_test(y, sim=None) if np.isfinite(y).sum() >= 2 else None
    if np.isfinite(y).sum() < 4:  # p = 1 (capped) whatever 2 or 3 values hold: no test, no change year
        assert np.isnan(result["cp_year"][0]) and np.isnan(result["cp_p"][0])
        assert want is None or min(want.p, 1.0) == 1.0  # what pyhomogeneity answers there
        return
    assert result["cp_year"][0] == years[want.cp - 1]  # cp is the 1-based position of the last value before
    np.testing.assert_allclose(result["cp_p"][0], min(want.p, 1.0), rtol=1e-9)


def test_pettitt_finds_a_step() -> None:
    years = np.arange(1985, 2025)
    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.02, (len(years), 200))
    values[years > 2004] += 0.2  # a harvest: a step after 2004, halfway (where U peaks for a clean step)
    result = fit(values, years, method="ols", changepoint="pettitt")
    assert np.all(result["cp_year"] == 2004) and np.all(result["cp_p"] < 1e-4)
    for p in range(0, 200, 37):
        want = hg.pettitt_test(values[:, p], sim=None)
        assert years[want.cp - 1] == 2004
        np.testing.assert_allclose(result["cp_p"][p], want.p, rtol=1e-9)


def test_coverage_rules_blank_every_band_but_n() -> None:
    years = np.arange(2000, 2020)
    values = np.tile(np.linspace(0, 1, 20)[:, None], (1, 4))
    values[:8, 1] = np.nan  # starts 8 years late
    values[::2, 2] = np.nan  # half the years
    values[-2:, 3] = np.nan  # ends 2 years early
    result = fit(values, years, method="both", min_fraction=0.6, edge_years=3, changepoint="pettitt")
    for name, band in result.items():
        if name == "n":
            assert list(band) == [20, 12, 10, 18]
        else:
            assert np.isfinite(band[0]) and np.isnan(band[1]) and np.isnan(band[2]) and np.isfinite(band[3]), name
    relaxed = fit(values, years, method="ols", min_fraction=0.5, edge_years=8)
    assert np.isfinite(relaxed["slope"]).all()


def test_low_counts_drop_years_and_count_bands_follow_linregress() -> None:
    years = np.arange(1990, 2010)
    rng = np.random.default_rng(2)
    values = rng.normal(size=(20, 30))
    counts = rng.integers(0, 12, size=(20, 30)).astype(float)
    counts[:, 0] = np.nan  # no counts at all
    result = fit(values, years, method="ols", counts=counts, min_count=3)
    for p in range(1, 30):
        keep = counts[:, p] >= 3
        if keep.sum() >= 3:
            want = stats.linregress(years[keep], values[keep, p])
            np.testing.assert_allclose(result["slope"][p], want.slope, rtol=1e-9)
        assert result["n"][p] == keep.sum()
        np.testing.assert_allclose(result["obs_mean"][p], counts[:, p].mean(), rtol=1e-12)
        np.testing.assert_allclose(result["obs_slope"][p], stats.linregress(years, counts[:, p]).slope, rtol=1e-9)
    assert result["n"][0] == 0 and np.isnan(result["obs_mean"][0]) and np.isnan(result["slope"][0])


def test_emulator_count_band_is_plausible() -> None:
    import rasterio
    from rasterio.io import MemoryFile

    from pipeline.emulator.rasters import RasterFactory

    means = {}
    for year in (1995, 2005):
        factory = RasterFactory()
        grid = factory.fallback_grid("EPSG:32632", 30.0)
        ((name, content),) = factory.files(year, f"s_{year}", grid, None, -9999.0, bands=["NDVI", "clear_count"])
        with MemoryFile(content) as memory, memory.open() as ds:
            value, counts = ds.read()
            assert ds.descriptions[1] == "clear_count"
        missing = value == -9999.0  # masked pixels carry the declared no-data value
        assert missing.any() and np.all(counts[missing] == 0) and np.all(counts[~missing] >= 1)
        means[year] = counts[~missing].mean()
    assert 1.5 < means[2005] / means[1995] < 2.5  # two sensors flew in 2005, one in 1995
    assert rasterio  # imported for MemoryFile's driver registration


def test_plot_pixel_draws_the_counts_under_the_series(tmp_path) -> None:
    import matplotlib.image

    from pipeline.emulator.rasters import RasterFactory
    from pipeline.reporting.plots import plot_pixel

    for year in range(2000, 2010):
        factory = RasterFactory()
        grid = factory.fallback_grid("EPSG:32632", 30.0)
        for name, content in factory.files(year, f"s_{year}", grid, None, -9999.0, bands=["NDVI", "clear_count"]):
            (tmp_path / name).write_bytes(content)
    plot_pixel(tmp_path, 500_300, 4_999_700, tmp_path / "plain.png")
    plot_pixel(tmp_path, 500_300, 4_999_700, tmp_path / "counts.png", count_band=2)
    plain, counts = (matplotlib.image.imread(tmp_path / f) for f in ("plain.png", "counts.png"))
    assert counts.shape[0] > plain.shape[0] * 1.2  # a second panel below
    bottom = counts[int(counts.shape[0] * 0.8):, :, :3]
    grey = np.all(np.abs(bottom - 0.55 * 255 / 255) < 0.02, axis=2)
    assert grey.sum() > 500  # the grey count bars are drawn


def test_pre_whitened_tests_need_three_pre_whitened_values_not_three_years() -> None:
    """Every other year: no value has the year before it, so nothing was tested (it used to say S = 0, p = 1)."""
    years = np.arange(2000, 2012, 2)
    values = np.random.default_rng(8).normal(size=(len(years), 30)) + 0.1 * np.arange(len(years))[:, None]
    for test in WHITENED:
        result = fit(values, years, method="sen", mk_test=test)
        for band in ("mk_s", "mk_var_s", "mk_z", "mk_p", "mk_tau", "trend_class"):
            assert np.isnan(result[band]).all(), (test, band)
        assert np.isfinite(result["sen_slope"]).all()
    consecutive = fit(values[:4], np.arange(2000, 2004), method="sen", mk_test="tfpw")  # 3 pre-whitened values
    assert np.isfinite(consecutive["mk_p"]).all() and np.isfinite(consecutive["trend_class"]).all()
    assert np.isfinite(fit(values, years, method="sen", mk_test="hamed-rao")["mk_p"]).all()
