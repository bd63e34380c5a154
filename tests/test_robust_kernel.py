"""Sen's slope and Mann-Kendall against pymannkendall and scipy.stats.theilslopes, per pixel."""

from __future__ import annotations

import warnings

import numpy as np
import pymannkendall as mk
import pytest
from scipy import stats

from pipeline import fit


def _close(got: float, want: float, label: str) -> None:
    if np.isnan(want):
        assert np.isnan(got), label
    else:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, err_msg=label)


def _interval_clipped(slopes: int, var_s: float, confidence: float) -> bool:
    """Whether theilslopes clips Sen's ranks to the extreme slopes (its own formula): a series too
    short for the confidence, whose bounds eetrend leaves NaN."""
    z = stats.norm.ppf((1.0 - confidence) / 2.0)
    upper = round((slopes - z * np.sqrt(var_s)) / 2.0)
    lower = round((slopes + z * np.sqrt(var_s)) / 2.0) - 1
    return upper > slopes - 1 or lower < 0


def assert_matches_references(values: np.ndarray, years: np.ndarray, result, confidence: float = 0.95) -> int:
    flat = values.reshape(values.shape[0], -1)
    fitted = 0
    for p in range(flat.shape[1]):
        keep = np.isfinite(flat[:, p])
        if keep.sum() < 3:
            assert np.isnan(result["sen_slope"].reshape(-1)[p]) and np.isnan(result["mk_p"].reshape(-1)[p])
            continue
        x, y = years[keep].astype(float), flat[keep, p].astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theil = stats.theilslopes(y, x, confidence)
            test = mk.original_test(y)
        got = {name: result[name].reshape(-1)[p] for name in result}
        _close(got["sen_slope"], theil.slope, f"{p} sen_slope")
        _close(got["sen_intercept"], theil.intercept, f"{p} sen_intercept")
        if _interval_clipped(len(y) * (len(y) - 1) // 2, test.var_s, confidence):
            assert np.isnan(got["sen_low"]) and np.isnan(got["sen_high"]), f"{p}: scipy clipped, eetrend NaN"
        else:
            _close(got["sen_low"], theil.low_slope, f"{p} sen_low")
            _close(got["sen_high"], theil.high_slope, f"{p} sen_high")
        _close(got["mk_s"], test.s, f"{p} mk_s")
        _close(got["mk_var_s"], test.var_s, f"{p} mk_var_s")
        _close(got["mk_z"], test.z, f"{p} mk_z")
        _close(got["mk_p"], test.p, f"{p} mk_p")
        _close(got["mk_tau"], test.Tau, f"{p} mk_tau")
        fitted += 1
    return fitted


def test_sens_interval_is_nan_where_the_series_is_too_short_for_its_confidence() -> None:
    """theilslopes clips the ranks to the smallest and largest slope, an interval of lower confidence
    (1 - 2/n!: 67 % for 3 values, 92 % for 4); 5 values without ties reach 95 %, 4 reach 90 %."""
    years = np.arange(2000, 2005)
    rng = np.random.default_rng(2)
    values = rng.normal(size=(5, 40))
    for n_years, confidence, reachable in ((3, 0.95, False), (4, 0.95, False), (5, 0.95, True),
                                           (4, 0.90, True), (3, 0.60, True)):
        result = fit(values[:n_years], years[:n_years], method="sen", confidence=confidence)
        assert np.isfinite(result["sen_slope"]).all()
        assert np.isfinite(result["sen_low"]).all() == reachable, (n_years, confidence)
        assert np.isnan(result["sen_high"]).any() != reachable, (n_years, confidence)
        assert assert_matches_references(values[:n_years], years[:n_years], result, confidence) == 40
    # Inside a scene: only the pixels with too few valid years lose their interval.
    gappy = values.copy()
    gappy[:2, :10] = np.nan
    result = fit(gappy, years, method="sen")
    assert np.isnan(result["sen_low"][:10]).all() and np.isfinite(result["sen_low"][10:]).all()


def test_matches_theilslopes_and_original_test_with_gaps(gappy_values) -> None:
    values, years = gappy_values(nan_fraction=0.25, seed=7)
    result = fit(values, years, method="sen")
    assert assert_matches_references(values, years, result) > 100


def test_ties_use_the_tie_corrected_variance(gappy_values) -> None:
    values, years = gappy_values(nan_fraction=0.1, seed=11, round_to=0.05)  # coarse steps: many ties
    scaled = np.where(np.isnan(values), -9999, np.round(values * 100)).astype(np.int16)
    result = fit(scaled, years, method="sen", nodata=-9999)
    as_float = np.where(scaled == -9999, np.nan, scaled.astype(float))
    assert assert_matches_references(as_float, years, result) > 100
    # ties must actually be present, or this test proves nothing about them
    full = len(years) * (len(years) - 1) * (2 * len(years) + 5) / 18
    assert np.nanmin(result["mk_var_s"]) < full


def test_other_confidence_levels(gappy_values) -> None:
    values, years = gappy_values(nan_fraction=0.0, seed=5, rows=4, cols=5)
    for level in (0.8, 0.9, 0.99):
        result = fit(values, years, method="sen", confidence=level)
        assert_matches_references(values, years, result, confidence=level)


def test_sens_slope_on_equally_spaced_series_with_year_step() -> None:
    rng = np.random.default_rng(2)
    years = np.arange(1990, 2030, 2)  # every other year
    values = 0.01 * (years[:, None] - 1990) + rng.normal(0, 0.05, (len(years), 30))
    result = fit(values, years, method="sen")
    for p in range(values.shape[1]):
        reference = mk.sens_slope(values[:, p])
        np.testing.assert_allclose(result["sen_slope"][p], reference.slope / 2.0, rtol=1e-9)


def test_constant_series_has_no_trend() -> None:
    years = np.arange(2000, 2012)
    values = np.full((12, 2), 3.0)
    values[::3, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(values, years, method="sen")
    assert np.all(result["sen_slope"] == 0.0) and np.all(result["mk_s"] == 0.0)
    assert np.all(result["mk_p"] == 1.0) and np.all(result["trend_class"] == 0.0)


def test_trend_class_follows_significance() -> None:
    rng = np.random.default_rng(0)
    years = np.arange(1990, 2020)
    up = 0.02 * (years - 1990) + rng.normal(0, 0.01, years.size)
    noise = rng.normal(0, 0.5, years.size)
    values = np.stack([up, -up, noise], axis=1)
    for method in ("ols", "sen", "both"):
        result = fit(values, years, method=method)
        assert list(result["trend_class"][:2]) == [1.0, -1.0], method
        p = result["pvalue" if method == "ols" else "mk_p"][2]
        assert result["trend_class"][2] == (0.0 if p >= 0.05 else np.sign(noise[-1] - noise[0]))


def test_both_gives_both_sets_of_bands(gappy_values) -> None:
    values, years = gappy_values(nan_fraction=0.1, seed=1, rows=3, cols=3)
    both = fit(values, years, method="both")
    for method in ("ols", "sen"):
        alone = fit(values, years, method=method)
        for name in alone:
            if name != "trend_class":
                np.testing.assert_array_equal(both[name], alone[name], err_msg=name)


@pytest.mark.parametrize("n_years", [5, 40])
def test_long_and_short_series(n_years: int) -> None:
    rng = np.random.default_rng(n_years)
    years = np.arange(1984, 1984 + n_years)
    values = rng.normal(size=(n_years, 300))
    values[rng.random(values.shape) < 0.1] = np.nan
    result = fit(values, years, method="sen")
    assert assert_matches_references(values, years, result) > 250


def test_tiny_float64_values_whose_slopes_underflow_still_count_signs_exactly() -> None:
    # Differences of about 1e-320 divided by a year gap round to zero, so the sign
    # of such a slope says nothing: S must come from the values themselves.
    rng = np.random.default_rng(3)
    years = np.arange(2000, 2012) * 3  # gaps of 3 years: tiny differences underflow
    values = rng.integers(-50, 50, (len(years), 60)) * 5e-324
    values[rng.random(values.shape) < 0.1] = np.nan
    diffs = values[1:] - values[:-1]
    assert np.any((diffs != 0) & (diffs / 3.0 == 0)), "no slope underflows: the test proves nothing"
    result = fit(values, years, method="sen")
    assert assert_matches_references(values, years, result) > 50


def test_signed_zeros_are_ties_not_trends() -> None:
    years = np.arange(2000, 2008)
    values = np.array([0.0, -0.0, 0.0, 1.0, -0.0, 2.0, 0.0, 3.0])[:, None]
    result = fit(values, years, method="sen")
    assert assert_matches_references(values, years, result) == 1
    full = len(years) * (len(years) - 1) * (2 * len(years) + 5) / 18
    assert result["mk_var_s"][0] < full  # the five zeros tie, whatever their sign


def test_many_pixels_span_several_chunks_with_results_per_pixel() -> None:
    from pipeline.engine.kernels.robust import pair_chunk, sen_mk

    rng = np.random.default_rng(4)
    years = np.arange(1981, 2021).astype(float)
    pixels = 2 * pair_chunk(len(years)) + 77  # three chunks of pairwise slopes, the last one short
    values = 0.01 * (years[:, None] - 2000) + rng.normal(0, 0.05, (len(years), pixels))
    values[rng.random(values.shape) < 0.05] = np.nan
    whole = sen_mk(values, years)
    for start, stop in ((0, 5), (pixels // 2, pixels // 2 + 300), (pixels - 9, pixels)):
        part = sen_mk(values[:, start:stop], years)
        for name, band in whole.items():
            np.testing.assert_array_equal(band[start:stop], part[name], err_msg=name)
    sample = rng.choice(pixels, 40, replace=False)
    assert assert_matches_references(values[:, sample], years, {k: v[sample] for k, v in whole.items()}) == 40


def test_two_values_give_s_tau_and_sens_slope_but_no_z_p_or_class() -> None:
    """With one pair pymannkendall answers p = 1 whatever the values: no test was made, so NaN."""
    years = np.array([2000, 2003])
    values = np.array([[1.0, 2.0, 5.0], [2.0, 1.0, 5.0]])
    result = fit(values, years, method="sen", min_years=2)
    for p in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = mk.original_test(values[:, p])
        assert test.p == 1.0
        _close(result["mk_s"][p], test.s, f"{p} mk_s")
        _close(result["mk_tau"][p], test.Tau, f"{p} mk_tau")
        _close(result["sen_slope"][p], stats.theilslopes(values[:, p], years).slope, f"{p} sen_slope")
        for name in ("mk_z", "mk_p", "sen_low", "sen_high", "trend_class"):
            assert np.isnan(result[name][p]), (p, name)
