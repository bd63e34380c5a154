"""The compiled Sen + Mann-Kendall kernels (counting, a sorting network, rows for numpy) give the
numpy kernel's bits and the references' values.

The kernels share no code for the per-pixel work: the numpy one sorts every
pixel's pairwise slopes, the compiled counting one brackets each order statistic by
counting. Data are chosen to push the counting search off its easy path: tied
values, slopes that are all equal, heavy tails, huge and tiny magnitudes,
irregular years, very short series.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engine.kernels import compiled, robust
from pipeline.engine.kernels.robust import sen_mk
from tests.test_robust_kernel import assert_matches_references

pytest.importorskip("numba")


def _gappy(values: np.ndarray, rng: np.random.Generator, fraction: float = 0.05) -> np.ndarray:
    values = values.astype(np.float64)
    values[rng.random(values.shape) < fraction] = np.nan
    return values


def _same_bits_both_ways(values: np.ndarray, years: np.ndarray, label: str, **options) -> dict[str, np.ndarray]:
    """Fit ``values`` with the compiled kernel and with the numpy kernel; assert every band is the same
    bits (NaN for NaN) and return the compiled result. ``label`` names the data in a failure."""
    compiled = sen_mk(values, years, compiled=True, **options)
    sorted_ = sen_mk(values, years, compiled=False, **options)
    assert list(compiled) == list(sorted_)
    for name in sorted_:
        np.testing.assert_array_equal(compiled[name], sorted_[name], err_msg=f"{label}: {name}")
    return compiled


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    years = np.arange(1981, 2021).astype(float)
    n, p = len(years), 400
    trend = 0.01 * (years[:, None] - 2000)
    return {
        "normal": (years, _gappy(trend + rng.normal(0, 0.05, (n, p)), rng)),
        "integers, many ties": (years, _gappy(np.round(rng.normal(0, 2, (n, p))), rng)),
        "two values only": (years, _gappy(rng.integers(0, 2, (n, p)), rng)),
        "constant pixels": (years, _gappy(np.full((n, p), 0.25), rng)),
        "exact lines, every slope equal": (years, _gappy(0.5 + 0.003 * (years[:, None] - 1981) * np.ones((1, p)), rng)),
        "heavy tails": (years, _gappy(trend + rng.standard_cauchy((n, p)), rng)),
        "huge magnitudes": (years, _gappy(rng.normal(0, 1e300, (n, p)), rng)),
        "tiny magnitudes": (years, _gappy(rng.integers(-50, 50, (n, p)) * 5e-324, rng)),
        "irregular years": (np.sort(rng.choice(np.arange(1970, 2030) + 0.25, 40, replace=False)),
                            _gappy(rng.normal(0, 1, (n, p)), rng)),
        "half missing": (years, _gappy(trend + rng.normal(0, 0.05, (n, p)), rng, 0.5)),
        "float32": (years, _gappy(trend + rng.normal(0, 0.05, (n, p)), rng).astype(np.float32)),
        "infinities are missing": (
            years, np.where(rng.random((n, p)) < 0.05, np.inf, trend + rng.normal(0, 1, (n, p)))
        ),
        "signed zeros": (years, _gappy(rng.choice([0.0, -0.0, 1.0, -1.0], (n, p)), rng)),
        # the counting kernel's first pivots come from least squares, which a few outliers drag far from
        # Sen's median and bounds: the search must then find them from bounds on one side only
        "outliers drag least squares off": (
            years, _gappy(trend + rng.normal(0, 0.05, (n, p)) + np.where(rng.random((n, p)) < 0.08,
                          rng.choice([-40.0, 60.0], (n, p)) * (years[:, None] - 1980) / 40, 0.0), rng)
        ),
        "a step, not a line": (
            years, _gappy(np.where(years[:, None] >= rng.integers(1985, 2017, p), 1.0, 0.0)
                          + rng.normal(0, 0.01, (n, p)), rng)
        ),
    }


@pytest.fixture(params=["counting", "rows"])
def route(request, monkeypatch) -> str:
    """The 40-year cases through each compiled kernel: counting (the default) and rows (asked for)."""
    if request.param == "rows":
        monkeypatch.setattr(robust, "COUNTING_FROM_PAIRS", 10**6)
    assert robust.counting_pays(40) == (request.param == "counting")
    return request.param


@pytest.mark.parametrize("case", list(_cases()))
def test_compiled_kernel_gives_the_numpy_kernels_bits(case: str, route: str) -> None:
    years, values = _cases()[case]
    compiled = _same_bits_both_ways(values, years, case)
    assert np.isfinite(compiled["sen_slope"]).sum() > 0


@pytest.mark.parametrize("case", ["normal", "integers, many ties", "heavy tails", "irregular years", "half missing"])
def test_compiled_kernel_matches_theilslopes_and_pymannkendall(case: str, route: str) -> None:
    years, values = _cases()[case]
    result = sen_mk(values[:, :60], years, compiled=True)
    assert assert_matches_references(values[:, :60], years, result) > 30


@pytest.mark.parametrize("n_years", [2, 3, 4, 6, 9, 25, 31, 33, 60])  # from 31: the counting kernel by default
def test_series_of_any_length_through_the_compiled_kernel(n_years: int) -> None:
    rng = np.random.default_rng(n_years)
    years = np.arange(2000, 2000 + n_years).astype(float)
    values = _gappy(rng.normal(size=(n_years, 300)), rng, 0.1)
    _same_bits_both_ways(values, years, f"{n_years} years")


def test_the_numpy_kernel_is_used_when_asked(monkeypatch) -> None:
    monkeypatch.setattr(robust._kernel, "module", None)
    monkeypatch.setenv("EETREND_KERNEL", "numpy")
    assert robust.compiled_kernel() is None
    with pytest.raises(RuntimeError, match="numba"):
        sen_mk(np.zeros((3, 1)), np.arange(3.0), compiled=True)
    monkeypatch.setattr(robust._kernel, "module", None)
    monkeypatch.delenv("EETREND_KERNEL")
    assert robust.compiled_kernel() is not None


def test_long_series_count_middle_ones_sort_compiled_rows_and_short_ones_a_network() -> None:
    assert robust.counting_pays(31) and robust.counting_pays(40) and robust.counting_pays(80)
    assert not robust.counting_pays(30) and not robust.counting_pays(21) and robust.compiled_pays(10)
    assert [robust.compiled_route(n) for n in (2, 10, 13, 14, 30, 31, 60)] == [
        "network", "network", "network", "rows", "rows", "counting", "counting"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 45, 64, 65, 78, 100])
def test_the_merge_network_sorts_every_order_of_its_size(size: int) -> None:
    """Batcher's network, pruned past ``size``, sorts (checked by the 0-1 principle where it is exhaustive)."""
    network = robust.compiled_kernel().merge_network(size)
    assert np.all(network[:, 0] < network[:, 1]) and np.all(network[:, 1] < size)
    rng = np.random.default_rng(size)
    if size <= 13:  # every 0-1 input: a network that sorts them all sorts everything (Knuth 5.3.4, ex. 36)
        tests = ((np.arange(1 << size)[:, None] >> np.arange(size)) & 1).astype(float)
    else:
        tests = np.concatenate([rng.normal(size=(400, size)), rng.integers(0, 3, (400, size)).astype(float)])
    columns = np.ascontiguousarray(tests.T)
    for a, b in network:
        low, high = np.minimum(columns[a], columns[b]), np.maximum(columns[a], columns[b])
        columns[a], columns[b] = low, high
    np.testing.assert_array_equal(columns.T, np.sort(tests, axis=1))


@pytest.mark.parametrize(("n_years", "route"), [(10, "network"), (10, "rows"), (21, "rows")])
@pytest.mark.parametrize("case", list(_cases()))
def test_rows_kernel_gives_the_numpy_kernels_bits_on_short_series(case: str, n_years: int, route: str,
                                                                   monkeypatch) -> None:
    """Below the counting kernel's lengths, the compiled rows + numpy sort (and, up to 13 years by
    default, the sorting network) give the numpy kernel's bits."""
    if route == "rows":
        monkeypatch.setattr(robust, "NETWORK_UP_TO_PAIRS", 0)
    assert robust.compiled_route(n_years) == route
    assert not robust.counting_pays(n_years)
    years, values = _cases()[case]
    years, values = years[-n_years:], values[-n_years:]
    compiled = _same_bits_both_ways(values, years, f"{case}, {n_years} years")
    assert np.isfinite(compiled["sen_slope"]).sum() > 0


@pytest.mark.parametrize("n_years", [10, 21])
@pytest.mark.parametrize("case", ["normal", "integers, many ties", "exact lines, every slope equal", "half missing"])
def test_rows_kernel_matches_theilslopes_and_pymannkendall(case: str, n_years: int) -> None:
    years, values = _cases()[case]
    years, values = years[-n_years:], values[-n_years:, :60]
    result = sen_mk(values, years, compiled=True)
    assert assert_matches_references(values, years, result) > 20


def test_a_pixel_is_fitted_the_same_whatever_its_chunk() -> None:
    """The rows kernel works in chunks of pixels: a pixel's bits do not depend on where it falls."""
    years, values = _cases()["integers, many ties"]
    years, values = years[-12:], np.tile(values[-12:], (1, 8))  # more pixels than one chunk holds
    assert values.shape[1] > robust.pair_chunk(12, robust.ROWS_CHUNK_BYTES)
    whole = sen_mk(values, years, compiled=True)
    for start, stop in ((0, 7), (5, 1000), (999, values.shape[1])):
        part = sen_mk(values[:, start:stop], years, compiled=True)
        for name in whole:
            np.testing.assert_array_equal(part[name], whole[name][start:stop], err_msg=name)


def test_a_slow_first_load_is_said_once_on_stderr(monkeypatch, loader_lines) -> None:
    """A first compile that keeps the fit waiting gets one line saying what is happening."""
    calls = []

    def slow_load(*args) -> None:  # stands for numba compiling: it lasts until the line has been said
        calls.append(args)
        loader_lines.said.wait(timeout=60)

    monkeypatch.setattr(robust._kernel, "loaded", set())
    monkeypatch.setattr(robust, "_compiled_order_statistics", slow_load)
    robust._ready(robust.compiled_kernel(), np.dtype(np.float32), "counting")
    robust._ready(robust.compiled_kernel(), np.dtype(np.float32), "counting")  # loaded: nothing to wait for
    assert loader_lines.said.is_set()
    assert loader_lines.settled() == [
        "loading Sen's kernel (compiled once per install: seconds on an idle core, longer on a busy one; "
        "later runs load from numba's cache)..."]
    assert len(calls) == 1  # the counting kernel, once


def test_a_runs_warm_up_says_one_line_for_both_kernels(monkeypatch, loader_lines) -> None:
    """``--method both`` loads OLS's kernel, then Sen's: one clock and one line for the two waits, so
    that two compiles each shorter than the threshold are still said, and nothing is said twice
    (every block would say its line at once here)."""
    import importlib

    from pipeline.engine import trend
    from pipeline.engine.options import Method

    ols = importlib.import_module("pipeline.engine.kernels.ols")

    def slow_sums(*args):  # OLS's compile: it lasts until the line has been said
        loader_lines.said.wait(timeout=60)
        return tuple(np.zeros(1) for _ in range(6))

    sen_loads = []
    monkeypatch.setattr(ols._kernel, "loaded", set())
    monkeypatch.setattr(robust._kernel, "loaded", set())
    monkeypatch.setattr(ols, "_compiled_sums", slow_sums)
    monkeypatch.setattr(robust, "_compiled_order_statistics", lambda *args: sen_loads.append(args))
    trend._warm_up_kernels(Method.both, 40, np.dtype(np.float32), background=False)
    assert loader_lines.settled() == [
        "loading OLS's and Sen's kernels (compiled once per install: seconds on an idle core, longer on a busy "
        "one; later runs load from numba's cache)..."]
    assert len(sen_loads) == 1  # Sen's kernel was loaded inside the same block


_ONE_SPECIALISATION = """
import sys
import numpy as np
from pipeline.engine import trend
from pipeline.engine.kernels import fit_pixels
from pipeline.engine.kernels import ols_compiled, pair_select, sen_bands
from pipeline.engine.options import Method

n_years = int(sys.argv[1])
functions = [getattr(module, name) for module in (ols_compiled, pair_select, sen_bands) for name in dir(module)
             if hasattr(getattr(module, name), "signatures")]
trend._warm_up_kernels(Method.both, n_years, np.dtype(np.float32), background=False)
loaded = {f: len(f.signatures) for f in functions}
rng = np.random.default_rng(n_years)
years = np.arange(1990, 1990 + n_years)
for pixels in (50, 40_000):  # one chunk, and several: views of a wider window
    values = rng.normal(size=(n_years, pixels)).astype(np.float32)
    fit_pixels(values, years, method="both", dtype=np.float32)
    fit_pixels(values[:, ::2], years, method="both", dtype=np.float32)  # strided columns, as a window's may be
added = [f.__name__ for f in functions if len(f.signatures) != loaded[f]]
print(added)
"""


@pytest.mark.parametrize("n_years", [10, 21, 40])
def test_a_runs_fit_uses_only_what_its_warm_up_loaded(n_years: int) -> None:
    """Every compiled function the fit calls was loaded by the run's warm-up, for any window: numba
    would otherwise compile another specialisation (seconds, on a first run) in the middle of the fit.
    A fresh process, so that no other test's calls have loaded anything."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _ONE_SPECIALISATION, str(n_years)], capture_output=True,
                          text=True, check=True, timeout=600)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_quick_load_says_nothing(monkeypatch, caplog) -> None:
    monkeypatch.setattr(robust._kernel, "loaded", set())
    monkeypatch.setattr(compiled, "SLOW_LOAD_S", 3600.0)
    monkeypatch.setattr(robust, "_compiled_order_statistics", lambda *args: None)
    with caplog.at_level("WARNING", logger=compiled.log.name):
        robust._ready(robust.compiled_kernel(), np.dtype(np.float64), "rows")
    assert caplog.records == []
    assert (np.dtype(np.float64), "rows") in robust._kernel.loaded


@pytest.mark.parametrize("n_years", [4, 6, 10, 21, 40])
@pytest.mark.parametrize("min_years", [1, 3, 5])
def test_the_bands_at_every_count_of_valid_years_are_the_numpy_kernels(n_years: int, min_years: int) -> None:
    """Pixels missing anything from none to all of their years, so that every threshold of the
    bands is crossed (fitted at all, tested, an interval at 95 %), through whichever compiled
    route the length takes, against the numpy kernel's bits, NaN for NaN."""
    rng = np.random.default_rng(n_years * 10 + min_years)
    years = np.arange(1990.0, 1990.0 + n_years)
    values = rng.normal(size=(n_years, 3000))
    values[:, :1000] = np.round(values[:, :1000])  # ties in the values and in the slopes
    values[:, 1000:1100] = 2.5  # flat: no pair differs
    missing = rng.integers(0, n_years + 1, size=values.shape[1])  # how many years each pixel lacks
    order = rng.random(values.shape).argsort(axis=0)
    values[order < missing] = np.nan
    compiled = _same_bits_both_ways(values, years, f"{n_years} years, min_years {min_years}", min_years=min_years)
    fitted = compiled["n"] >= max(min_years, 2)
    assert np.isnan(compiled["sen_slope"][~fitted]).all() and np.isfinite(compiled["mk_s"][fitted]).all()
    assert np.isnan(compiled["mk_p"][compiled["n"] < robust.MK_MIN_TESTED]).all()


def _random_long_stack(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A stack of 31 to 60 years (the counting kernel's lengths) of one of seven kinds of data, with a
    random share of missing values, years regular or not, float32 or float64."""
    n, p = int(rng.integers(31, 61)), int(rng.integers(50, 300))
    years = np.arange(2020.0 - n, 2020.0)
    if rng.random() < 0.5:
        years = np.sort(rng.choice(np.arange(1950, 2060), n, replace=False)).astype(float)
    line = rng.normal(0, 0.01, p) * (years[:, None] - years.mean())
    noise = rng.normal(0, 0.05, (n, p))
    kind = int(rng.integers(0, 7))
    if kind == 0:
        values = line + noise
    elif kind == 1:  # integers: tied values and tied slopes
        values = np.round(100 * line + 40 * noise)
    elif kind == 2:  # heavy tails
        values = line + 0.05 * rng.standard_cauchy((n, p))
    elif kind == 3:  # a step, where least squares points far from Sen's median
        values = np.where(years[:, None] >= rng.uniform(years[0], years[-1], p), 1.0, 0.0) + noise * rng.integers(0, 2)
    elif kind == 4:  # a few wild outliers
        values = line + noise + np.where(rng.random((n, p)) < 0.1, rng.normal(0, 50, (n, p)), 0.0)
    elif kind == 5:  # three values only
        values = rng.integers(0, 3, (n, p)).astype(float)
    else:  # float32-rounded values scaled far from 1
        values = (line + noise).astype(np.float32).astype(float) * 10.0 ** rng.integers(-30, 30)
    values = _gappy(values, rng, float(rng.choice([0.0, 0.05, 0.3, 0.7])))
    return years, values.astype(np.float32 if rng.random() < 0.3 else np.float64)


def test_random_long_stacks_give_the_numpy_kernels_bits() -> None:
    """Three hundred random stacks through the counting kernel against the numpy kernel, every band
    bit for bit, at random confidence levels and minimum years: the class of input, not a few cases."""
    rng = np.random.default_rng(2026)
    for _ in range(300):
        years, values = _random_long_stack(rng)
        confidence, min_years = float(rng.choice([0.9, 0.95, 0.99])), int(rng.integers(1, 10))
        assert robust.counting_pays(len(years))
        _same_bits_both_ways(values, years, f"{len(years)} years", confidence=confidence, min_years=min_years)
