"""OLS's compiled kernel (numba) against the numpy kernel it replaces, and against scipy.

The sums are made operation for operation as numpy makes them, so every band that
comes from them is bit for bit the numpy kernel's, for float32 and float64 windows,
with gaps, infinities, constant and short series. The p-value's transcendental
functions are the C library's, so it is held to scipy instead (and
tests/test_student_t.py holds both kernels to ``scipy.stats.t.sf`` to 1e-12).
"""

from __future__ import annotations

import importlib
import logging
import warnings

import numpy as np
import pytest
from scipy import stats

from pipeline.engine.kernels import compiled
from pipeline.engine.kernels.ols import OLS_BANDS
from tests.test_ols_kernel import assert_matches_linregress

pytest.importorskip("numba")

ols = importlib.import_module("pipeline.engine.kernels.ols")  # the module: the package's ``ols`` is its function
SUMS_BANDS = tuple(name for name in OLS_BANDS if name != "pvalue") + ("n",)


def _awkward_values(n_years: int, pixels: int, dtype: type, seed: int) -> np.ndarray:
    """Noisy trends with every case the sums must get right: gaps, infinities, constants, short series."""
    rng = np.random.default_rng(seed)
    values = (0.3 + 0.004 * np.arange(n_years)[:, None] + rng.normal(0, 0.05, (n_years, pixels))).astype(dtype)
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, 0] = 0.25  # constant
    values[:, 1] = np.nan  # empty
    values[2:, 2] = np.nan  # two valid years
    values[3:, 3] = np.nan  # three
    values[0, 4], values[1, 4] = np.inf, -np.inf  # non-finite values count as missing
    values[:, 5] = np.float32(0.1) * np.ones(n_years)  # constant, not exactly representable
    values[:, 6] = 1e6 + np.arange(n_years)  # large level, small spread
    return values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_years", [3, 10, 21, 40])
def test_the_sums_bands_are_the_numpy_kernels_bit_for_bit(dtype, n_years) -> None:
    values = _awkward_values(n_years, 3000, dtype, seed=n_years)  # more than two of the kernel's blocks
    years = np.arange(1984.0, 1984.0 + n_years)
    fast = ols.ols(values, years, min_years=2, compiled=True)
    slow = ols.ols(values, years, min_years=2, compiled=False)
    for name in SUMS_BANDS:
        np.testing.assert_array_equal(fast[name], slow[name], err_msg=name)
    np.testing.assert_allclose(fast["pvalue"], slow["pvalue"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_kernel_matches_linregress_pixel_by_pixel(dtype) -> None:
    values = _awkward_values(25, 400, dtype, seed=7)
    years = np.arange(1990, 2015)
    result = ols.ols(values, years, compiled=True)
    assert assert_matches_linregress(values.astype(np.float64), years, result) > 300


def test_p_values_hold_to_scipys_t_distribution_to_1e12() -> None:
    values = _awkward_values(30, 5000, np.float64, seed=11)
    years = np.arange(1991.0, 2021.0)
    result = ols.ols(values, years, compiled=True)
    r, n = result["rvalue"], result["n"]
    usable = np.isfinite(r) & (n >= 3) & (np.abs(r) < 1)
    df = n[usable] - 2.0
    t = r[usable] * np.sqrt(df / ((1.0 - r[usable] + 1e-20) * (1.0 + r[usable] + 1e-20)))
    np.testing.assert_allclose(result["pvalue"][usable], 2 * stats.t.sf(np.abs(t), df), rtol=1e-12, atol=0)
    assert usable.sum() > 4900


def test_a_pixel_gets_the_same_bits_in_any_window() -> None:
    values = _awkward_values(40, 2500, np.float32, seed=3)
    years = np.arange(1984.0, 2024.0)
    whole = ols.ols(values, years, compiled=True)
    for start, stop in [(0, 1), (5, 1029), (1000, 2500), (2047, 2049)]:
        part = ols.ols(values[:, start:stop], years, compiled=True)
        for name in OLS_BANDS + ("n",):
            np.testing.assert_array_equal(part[name], whole[name][start:stop], err_msg=f"{name} {start}:{stop}")


def test_integer_windows_take_the_numpy_kernel_and_give_the_same_line() -> None:
    years = np.arange(2000.0, 2012.0)
    scaled = (np.arange(12)[:, None] * 3 + np.arange(5)).astype(np.int16)  # slope 3 for every pixel
    result = ols.ols(scaled, years)
    np.testing.assert_array_equal(result["slope"], 3.0)


def test_the_numpy_kernel_runs_when_asked_and_compiled_without_numba_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(ols._kernel, "module", None)
    monkeypatch.setenv("EETREND_KERNEL", "numpy")
    assert ols.compiled_kernel() is None
    with pytest.raises(RuntimeError, match="numba"):
        ols.ols(np.zeros((3, 1)), np.arange(3.0), compiled=True)
    result = ols.ols(np.arange(3.0)[:, None], np.arange(3.0))
    assert result["slope"][0] == 1.0
    monkeypatch.setattr(ols._kernel, "module", None)
    monkeypatch.delenv("EETREND_KERNEL")
    assert ols.compiled_kernel() is not None


def test_a_kernel_that_cannot_load_falls_back_with_one_warning(monkeypatch, caplog) -> None:
    broken = compiled.LazyKernel("no_such_kernel_module", "using numpy instead, the same results", "OLS's kernel")
    monkeypatch.setattr(ols, "_kernel", broken)
    with caplog.at_level(logging.WARNING, logger=compiled.log.name):
        assert ols.compiled_kernel() is None
        assert ols.compiled_kernel() is None  # tried once
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = ols.ols(np.array([[1.0], [2.0], [4.0]]), np.arange(3.0))
    assert [r.getMessage() for r in caplog.records] == [
        "no_such_kernel_module is unavailable (No module named 'pipeline.engine.kernels.no_such_kernel_module'); "
        "using numpy instead, the same results"]
    assert result["slope"][0] == pytest.approx(1.5)


def test_a_slow_first_load_is_said_once_on_stderr(monkeypatch, loader_lines) -> None:
    def slow_sums(*args):  # stands for numba compiling: it lasts until the line has been said
        loader_lines.said.wait(timeout=60)
        return tuple(np.zeros(1) for _ in range(6))

    monkeypatch.setattr(ols._kernel, "loaded", set())
    monkeypatch.setattr(ols, "_compiled_sums", slow_sums)
    ols.warm_up(np.float32)
    ols.warm_up(np.float32)  # loaded: nothing to wait for, nothing said
    assert loader_lines.settled() == [
        "loading OLS's kernel (compiled once per install: seconds on an idle core, longer on a busy one; later "
        "runs load from numba's cache)..."]
    assert np.dtype(np.float32) in ols._kernel.loaded
