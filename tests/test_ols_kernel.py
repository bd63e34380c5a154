"""The OLS kernel against independent oracles: scipy.stats.linregress per pixel, and NIST StRD Norris."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline import fit
from pipeline.engine.kernels import ols

UNTESTABLE_WITH_TWO = ("pvalue", "stderr", "intercept_stderr")
OLS_FIELDS = {
    "slope": "slope",
    "intercept": "intercept",
    "rvalue": "rvalue",
    "pvalue": "pvalue",
    "stderr": "stderr",
    "intercept_stderr": "intercept_stderr",
}

# NIST Statistical Reference Datasets, linear least squares, "Norris" (y, x), lower difficulty.
# Public-domain data of the US National Institute of Standards and Technology.
NORRIS_Y = [0.1, 338.8, 118.1, 888.0, 9.2, 228.1, 668.5, 998.5, 449.1, 778.9, 559.2, 0.3, 0.1, 778.1, 668.8,
            339.3, 448.9, 10.8, 557.7, 228.3, 998.0, 888.8, 119.6, 0.3, 0.6, 557.6, 339.3, 888.0, 998.5,
            778.9, 10.2, 117.6, 228.9, 668.4, 449.2, 0.2]  # fmt: skip
NORRIS_X = [0.2, 337.4, 118.2, 884.6, 10.1, 226.5, 666.3, 996.3, 448.6, 777.0, 558.2, 0.4, 0.6, 775.5, 666.9,
            338.0, 447.5, 11.6, 556.0, 228.1, 995.8, 887.6, 120.2, 0.3, 0.3, 556.8, 339.1, 887.2, 999.0,
            779.0, 11.1, 118.3, 229.2, 669.1, 448.9, 0.5]  # fmt: skip


def assert_matches_linregress(values: np.ndarray, years: np.ndarray, result: dict, min_years: int = 3) -> int:
    """Compare every pixel with scipy on its non-missing values; return how many were fitted."""
    flat = values.reshape(values.shape[0], -1)
    fitted = 0
    for p in range(flat.shape[1]):
        keep = np.isfinite(flat[:, p])
        assert result["n"].reshape(-1)[p] == keep.sum()
        if keep.sum() < min_years:
            for name in OLS_FIELDS:
                assert np.isnan(result[name].reshape(-1)[p]), (p, name)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = stats.linregress(years[keep].astype(float), flat[keep, p].astype(float))
        for name, attr in OLS_FIELDS.items():
            got, want = result[name].reshape(-1)[p], getattr(ref, attr)
            if keep.sum() == 2 and name in UNTESTABLE_WITH_TWO:  # scipy's p = 0 and stderr = 0 would mislead
                assert np.isnan(got), (p, name, got)
            elif np.isnan(want):
                assert np.isnan(got), (p, name, got)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, err_msg=f"pixel {p} {name}")
        fitted += 1
    return fitted


def test_matches_linregress_on_gappy_stack(gappy_values) -> None:
    values, years = gappy_values(nan_fraction=0.25)
    result = fit(values, years)
    assert assert_matches_linregress(values, years, result) > 100


def test_matches_linregress_with_ties_and_integer_inputs(gappy_values) -> None:
    values, years = gappy_values(nan_fraction=0.0, seed=3)
    scaled = np.round(values * 100).astype(np.int16)  # NDVI x 100: many ties
    scaled[0, 0, :3] = -32768
    scaled[4, 1, :] = -32768
    result = fit(scaled, years, nodata=-32768)
    as_float = np.where(scaled == -32768, np.nan, scaled.astype(float))
    assert assert_matches_linregress(as_float, years, result) == as_float[0].size


def test_two_points_give_scipys_line_but_no_p_value_standard_error_or_class() -> None:
    """The reported bug: --min-years 2 wrote p = 0, stderr = 0 and a significant trend_class."""
    years = np.array([2000, 2001, 2005])
    values = np.array([[1.0, 3.0, 1.0], [np.nan, np.nan, 2.0], [2.0, 3.0, 4.0]])  # a line, a flat pair, 3 points
    result = fit(values, years, min_years=2)
    assert_matches_linregress(values, years, result, min_years=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scipy_says = stats.linregress([2000.0, 2005.0], [1.0, 2.0])
    assert scipy_says.pvalue == 0.0 and scipy_says.stderr == 0.0  # what used to be written
    assert result["slope"][0] == pytest.approx(scipy_says.slope, rel=1e-12)
    for name in ("pvalue", "stderr", "intercept_stderr", "trend_class"):
        assert np.isnan(result[name][:2]).all(), name
    assert np.isfinite(result["pvalue"][2]) and result["trend_class"][2] in (-1.0, 0.0, 1.0)
    np.testing.assert_array_equal(result["n"], [2, 2, 3])


def test_nist_norris_certified_values() -> None:
    x = np.array(NORRIS_X, dtype=np.float64)
    y = np.array(NORRIS_Y, dtype=np.float64)[:, None]
    result = ols(y, x)
    assert result["slope"][0] == pytest.approx(1.00211681802045, rel=1e-9)
    assert result["intercept"][0] == pytest.approx(-0.262323073774029, rel=1e-9)
    assert result["stderr"][0] == pytest.approx(0.429796848199937e-03, rel=1e-9)
    assert result["intercept_stderr"][0] == pytest.approx(0.232818234301152, rel=1e-9)
    assert result["rvalue"][0] ** 2 == pytest.approx(0.999993745883712, rel=1e-9)


def test_constant_and_empty_pixels_give_nan_without_warnings() -> None:
    years = np.arange(2000, 2010)
    values = np.full((10, 3), 0.25)
    values[:, 1] = np.nan  # all missing
    values[:, 2] = np.linspace(0, 1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(values, years)
    ref = stats.linregress(years, values[:, 0])
    assert result["slope"][0] == ref.slope == 0.0
    assert np.isnan(ref.rvalue) and np.isnan(result["rvalue"][0])
    assert np.isnan(ref.pvalue) and np.isnan(result["pvalue"][0])
    assert np.isnan(result["stderr"][0]) and np.isnan(ref.stderr)
    assert all(np.isnan(result[name][1]) for name in OLS_FIELDS) and result["n"][1] == 0
    assert result["slope"][2] == pytest.approx(1 / 9)


def test_min_years_sets_nan_but_keeps_n() -> None:
    years = np.arange(2000, 2006)
    values = np.arange(6.0)[:, None].repeat(2, axis=1)
    values[:3, 1] = np.nan
    result = fit(values, years, min_years=4)
    assert result["slope"][0] == pytest.approx(1.0)
    assert np.isnan(result["slope"][1]) and result["n"][1] == 3


def test_years_in_any_order_are_matched_to_layers() -> None:
    years = [2003, 2000, 2001]
    values = np.array([3.0, 0.0, 1.0])[:, None]  # y = year - 2000
    result = fit(values, years)
    assert result["slope"][0] == pytest.approx(1.0)
    assert result.years == (2000, 2001, 2003)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=3, max_value=25).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(1984, 2030), min_size=n, max_size=n, unique=True),
            st.lists(
                st.lists(st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False)), min_size=n, max_size=n),
                min_size=1,
                max_size=6,
            ),
        )
    )
)
def test_property_matches_linregress(data) -> None:
    years, pixels = data
    values = np.array([[np.nan if v is None else v for v in pixel] for pixel in pixels], dtype=np.float64).T
    result = fit(values, years)
    order = np.argsort(years)
    flat_years = np.array(years)[order]
    sorted_values = values[order]
    # Nearly collinear random data can leave scipy's own answer uncertain in its last digits;
    # compare only where the fit is well conditioned.
    for p in range(values.shape[1]):
        keep = np.isfinite(sorted_values[:, p])
        if keep.sum() < 3:
            assert np.isnan(result["slope"][p])
            continue
        y = sorted_values[keep, p]
        ref = stats.linregress(flat_years[keep].astype(float), y)
        if np.ptp(y) == 0:
            assert result["slope"][p] == 0.0
            continue
        np.testing.assert_allclose(result["slope"][p], ref.slope, rtol=1e-9, atol=1e-12 * np.abs(y).max())
        np.testing.assert_allclose(result["intercept"][p], ref.intercept, rtol=1e-9, atol=1e-9 * np.abs(y).max())
        np.testing.assert_allclose(result["rvalue"][p], ref.rvalue, rtol=1e-9, atol=1e-12)
