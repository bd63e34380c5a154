"""Two-sided t p-values for whole df against scipy.stats.t.sf and closed forms (pipeline.engine.kernels.student_t)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.engine.kernels.ols import compiled_kernel
from pipeline.engine.kernels.student_t import SMALL_P, _bucket_t, _t_cutoff
from pipeline.engine.kernels.student_t import t_two_sided as numpy_or_compiled

RELATIVE = 1e-12

# t from 0 to 1e3, dense where p crosses from the closed form to the continued fraction (p ~ 1e-2)
# and between the fraction's buckets; beyond 1e3 up to 1e8 for tails far below 1e-300.
T_GRID = np.unique(np.concatenate([
    [0.0], np.linspace(0.0, 10.0, 4001), np.geomspace(1e-3, 1e3, 4000), np.geomspace(1e3, 1e8, 300),
]))


@pytest.fixture(params=["numpy", "compiled"])
def t_two_sided(request: pytest.FixtureRequest):
    """The p-values of the numpy kernel, and of OLS's compiled one (the same arithmetic, one pixel at a time)."""
    if request.param == "numpy":
        return numpy_or_compiled
    kernel = compiled_kernel()
    if kernel is None:
        pytest.skip("numba is not installed")
    return functools.partial(numpy_or_compiled, kernel=kernel)


def _reference(t: np.ndarray, df: int) -> np.ndarray:
    return 2.0 * stats.t.sf(np.abs(t), df)


@pytest.mark.parametrize("df", [*range(1, 61), 80, 150, 400, 1000])
def test_matches_scipy_on_a_dense_grid(df: int, t_two_sided) -> None:
    boundaries = [_t_cutoff(df), _bucket_t(df, 1), _bucket_t(df, 2)]
    near = np.concatenate([np.array([b * (1 + e) for e in (-1e-9, 0.0, 1e-9)]) for b in boundaries])
    t = np.concatenate([T_GRID, near])
    got = t_two_sided(t, np.full(t.shape, float(df)))
    want = _reference(t, df)
    normal = want >= 1e-300
    np.testing.assert_allclose(got[normal], want[normal], rtol=RELATIVE, atol=0)
    assert np.all(got[~normal] < 1e-290)  # where scipy has underflowed (or nearly), so has this
    assert df < 50 or want[normal].min() < 1e-290  # from df 50 on, the grid reaches p below 1e-290


def test_deep_tail_is_exact_where_a_closed_form_exists(t_two_sided) -> None:
    """df = 1 (Cauchy) and df = 2 have elementary forms; scipy itself loses digits for t below 1e-4 and
    underflows early at df = 1."""
    t = np.geomspace(1e-12, 1e300, 800)
    cauchy = np.array([2.0 / math.pi * math.atan2(1.0, v) for v in t])
    np.testing.assert_allclose(t_two_sided(t, np.ones_like(t)), cauchy, rtol=RELATIVE)
    t2 = t[t < 1e150]
    root = np.sqrt(2.0 + t2 * t2)
    exact = 2.0 / (root * (root + t2))  # 1 - t / sqrt(2 + t^2), without the cancellation
    np.testing.assert_allclose(t_two_sided(t2, np.full(t2.shape, 2.0)), exact, rtol=RELATIVE)


@pytest.mark.parametrize("df", [150, 400, 1000])
def test_keeps_its_digits_just_above_underflow(df: int, t_two_sided) -> None:
    """Strong trends over long series reach p just above the smallest normal double (2.2e-308), below
    the dense grid's 1e-300: the continued fraction keeps its digits there too."""
    grid = np.geomspace(1.0, 1e8, 20001)
    p = _reference(grid, df)
    t = grid[(p > 2.3e-308) & (p < 1e-250)]
    assert t.size > 50
    np.testing.assert_allclose(t_two_sided(t, np.full(t.shape, float(df))), _reference(t, df), rtol=RELATIVE, atol=0)


def test_edges_nan_and_infinity(t_two_sided) -> None:
    t = np.array([0.0, -2.0, 2.0, np.inf, -np.inf, np.nan, 1.0, 1.0, 1.0])
    df = np.array([5.0, 7.0, 7.0, 3.0, 4.0, 9.0, 0.0, -1.0, np.nan])
    got = t_two_sided(t, df)
    assert got[0] == pytest.approx(1.0, rel=1e-15)
    assert got[1] == got[2] == pytest.approx(_reference(np.array([2.0]), 7)[0], rel=RELATIVE)
    assert got[3] == 0.0 and got[4] == 0.0
    assert np.isnan(got[5:]).all()


def test_a_pixel_does_not_depend_on_its_neighbours(t_two_sided) -> None:
    """The same (t, df) gives the same bits alone and among any others (windows must not matter)."""
    rng = np.random.default_rng(3)
    t = rng.normal(0.0, 6.0, 5000)
    df = rng.integers(1, 45, 5000).astype(float)
    together = t_two_sided(t, df)
    alone = np.array([t_two_sided(t[i : i + 1], df[i : i + 1])[0] for i in range(0, 5000, 37)])
    np.testing.assert_array_equal(together[::37], alone)
    halves = np.concatenate([t_two_sided(t[:1234], df[:1234]), t_two_sided(t[1234:], df[1234:])])
    np.testing.assert_array_equal(together, halves)


@settings(max_examples=300, deadline=None)
@given(t=st.one_of(st.just(0.0), st.floats(1e-3, 1e3)), df=st.integers(1, 60))  # scipy is less exact below
def test_matches_scipy_anywhere(t: float, df: int) -> None:
    want = _reference(np.array([t]), df)[0]
    for kernel in {None, compiled_kernel()}:  # numpy's, and the compiled one where numba is installed
        got = numpy_or_compiled(np.array([t]), np.array([float(df)]), kernel)[0]
        if want >= 1e-300:
            assert got == pytest.approx(want, rel=RELATIVE, abs=0)
        else:
            assert got < 1e-290


def test_the_branch_point_is_where_the_closed_form_still_has_its_digits() -> None:
    assert 0 < SMALL_P <= 0.05
    for df in (1, 2, 9, 40):
        assert _reference(np.array([_t_cutoff(df)]), df)[0] == pytest.approx(SMALL_P, rel=1e-9)
