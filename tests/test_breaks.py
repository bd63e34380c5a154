"""Trends with breaks (issue 23) against two oracles.

- A Python oracle that always runs: every admissible partition searched exhaustively (each
  segment's RSS from ``numpy.linalg.lstsq``), the MOSUM process summed window by window from
  the residuals, the p-value read off the critical-value table with ``numpy.interp``, and
  each segment's slope and p-value from statsmodels' OLS.
- R's strucchange (``Rscript tests/strucchange_oracle.R``) where R and strucchange are installed
  (Debian ``r-cran-strucchange``; ``.ci/run`` installs it); skipped with the reason otherwise.
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.engine.kernels.breaks import (
    MOSUM_BANDWIDTHS,
    MOSUM_CRITICAL,
    MOSUM_LEVELS,
    break_bands,
    fit_breaks,
)

ORACLE_R = Path(__file__).with_name("strucchange_oracle.R")


def _r_available() -> str | None:
    """Why R's strucchange cannot be the oracle here, or None when it can."""
    if shutil.which("Rscript") is None:
        return "Rscript is not installed (apt-get install r-cran-strucchange)"
    probe = subprocess.run(["Rscript", "-e", "library(strucchange)"], capture_output=True, text=True)
    if probe.returncode != 0:
        return "R package strucchange is not installed (apt-get install r-cran-strucchange)"
    return None


R_MISSING = _r_available()
needs_r = pytest.mark.skipif(R_MISSING is not None, reason=str(R_MISSING))


# ---- the Python oracle ------------------------------------------------------------------


def _rss(t: np.ndarray, y: np.ndarray) -> float:
    design = np.column_stack([np.ones_like(t), t - t.mean()])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(resid @ resid)


def _mosum_p(statistic: float, h: float) -> float:
    critical = [np.interp(h, MOSUM_BANDWIDTHS, MOSUM_CRITICAL[:, c]) for c in range(4)]
    return float(np.interp(statistic, [0.0, *critical], [1.0, *MOSUM_LEVELS]))


def oracle(y: np.ndarray, years: np.ndarray, max_breaks: int, h: float = 0.15, alpha: float = 0.05) -> dict:
    """Every band for one pixel, by brute force; None where strucchange refuses the series."""
    import statsmodels.api as sm

    ok = np.isfinite(y)
    y, t = y[ok].astype(np.float64), years[ok].astype(np.float64)
    n = len(y)
    size = math.floor(n * h)
    if not (2 < size <= n // 2):
        return None
    breaks = min(max_breaks, math.ceil(n / size) - 2)
    seg = {}
    for i in range(n):
        for j in range(i + size, n + 1):
            seg[i, j] = _rss(t[i:j], y[i:j])
    best = {0: (seg[0, n], ())}
    for m in range(1, breaks + 1):
        found = None
        for bps in itertools.combinations(range(size, n - size + 1), m):
            bounds = (0, *bps, n)
            if any(b - a < size for a, b in itertools.pairwise(bounds)):
                continue
            total = sum(seg[a, b] for a, b in itertools.pairwise(bounds))
            if found is None or total < found[0]:
                found = (total, bps)
        best[m] = found
    bic = [n * (math.log(best[m][0]) + 1 - math.log(n) + math.log(2 * math.pi)) + math.log(n) * 3 * (m + 1)
           for m in range(breaks + 1)]
    design = np.column_stack([np.ones(n), t])
    resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    sigma = math.sqrt(((resid - resid.mean()) ** 2).sum() / (n - 2))
    statistic = max(abs(resid[j : j + size].sum()) for j in range(n - size + 1)) / (sigma * math.sqrt(n))
    p = _mosum_p(statistic, h)
    count = int(np.argmin(bic)) if p < alpha else 0
    bounds = (0, *best[count][1], n)
    slopes, pvalues, fits = [], [], []
    for a, b in itertools.pairwise(bounds):
        fit = sm.OLS(y[a:b], sm.add_constant(t[a:b])).fit()
        slopes.append(fit.params[1])
        pvalues.append(fit.pvalues[1])
        fits.append(fit.params)
    return {"mosum_p": p, "bp_count": count, "bp_years": [t[b - 1] for b in best[count][1]],
            "slopes": slopes, "pvalues": pvalues, "fits": fits, "t": t, "bps": best[count][1],
            "rss": best[count][0], "breaks": breaks}


def change_type_of(o: dict) -> float:
    """bfast01classify's standard typology, written from its R source's conditions."""
    if o["bp_count"] == 0:
        s = o["slopes"][0]
        return 1.0 if s > 0 else 2.0 if s < 0 else np.nan
    (a1, s1), (a2, s2) = o["fits"]
    b = o["bps"][0]
    m = (a2 + s2 * o["t"][b]) - (a1 + s1 * o["t"][b - 1])
    code = np.nan  # bfast01classify assigns in this order, a later rule overwriting an earlier one
    for rule, holds in ((3, s1 > 0 and s2 > 0 and m > 0), (4, s1 < 0 and s2 < 0 and m < 0),
                        (5, s1 > 0 and s2 > 0 and m < 0), (6, s1 < 0 and s2 < 0 and m > 0),
                        (7, s1 > 0 and s2 < 0), (8, s1 < 0 and s2 > 0)):
        if holds:
            code = float(rule)
    return code


def assert_equals_oracle(result: dict, values: np.ndarray, years: np.ndarray, max_breaks: int,
                         h: float = 0.15, alpha: float = 0.05) -> int:
    """Every pixel's bands equal the brute-force oracle's; returns how many pixels had a break."""
    with_breaks = 0
    for p in range(values.shape[1]):
        o = oracle(values[:, p], years, max_breaks, h, alpha)
        if o is None:
            for name in break_bands(max_breaks):
                assert np.isnan(result[name][p]), (name, p)
            continue
        assert result["mosum_p"][p] == pytest.approx(o["mosum_p"], rel=1e-9, abs=1e-12), p
        assert result["bp_count"][p] == o["bp_count"], p
        with_breaks += o["bp_count"] > 0
        for i in range(max_breaks):
            expected = o["bp_years"][i] if i < o["bp_count"] else np.nan
            np.testing.assert_equal(result[f"bp{i + 1}_year"][p], expected)
        for s in range(max_breaks + 1):
            if s <= o["bp_count"]:
                assert result[f"seg{s + 1}_slope"][p] == pytest.approx(o["slopes"][s], rel=1e-9, abs=1e-13)
                assert result[f"seg{s + 1}_p"][p] == pytest.approx(o["pvalues"][s], rel=1e-7, abs=1e-13)
            else:
                assert np.isnan(result[f"seg{s + 1}_slope"][p]) and np.isnan(result[f"seg{s + 1}_p"][p])
        if max_breaks == 1:
            np.testing.assert_equal(result["change_type"][p], change_type_of(o))
    return with_breaks


def series_with_breaks(n_years: int, pixels: int, seed: int, gaps: float = 0.0, noise: float = 0.02):
    """NDVI-like series: a trend, then at a random year a jump and a change of slope, some without."""
    rng = np.random.default_rng(seed)
    years = np.arange(1984, 1984 + n_years, dtype=np.float64)
    values = 0.4 + rng.uniform(-0.01, 0.01, pixels) * (years[:, None] - years[0])
    for p in range(pixels):
        if p % 4 == 0:
            continue  # no break
        k = int(rng.integers(5, n_years - 5))
        values[k:, p] += rng.choice([-1, 1]) * rng.uniform(0.15, 0.4)
        values[k:, p] += rng.uniform(-0.03, 0.03) * (years[k:] - years[k])
    values += rng.normal(0.0, noise, values.shape)
    values[rng.random(values.shape) < gaps] = np.nan
    return values, years


# ---- against the Python oracle ----------------------------------------------------------


@pytest.mark.parametrize("max_breaks", [1, 2, 3])
def test_equals_the_exhaustive_oracle(max_breaks: int) -> None:
    values, years = series_with_breaks(30, 60, seed=max_breaks)
    result = fit_breaks(values, years, max_breaks)
    assert assert_equals_oracle(result, values, years, max_breaks) >= 10  # the breaks are found, not only 0


def test_gaps_use_the_valid_years_and_their_real_years() -> None:
    values, years = series_with_breaks(30, 60, seed=7, gaps=0.08)
    result = fit_breaks(values, years, 2)
    assert np.isnan(values).sum() > 50
    assert assert_equals_oracle(result, values, years, 2) >= 10
    # a break year is a year the pixel has, never a missing one
    for p in np.flatnonzero(result["bp_count"] >= 1):
        assert np.isfinite(values[list(years).index(result["bp1_year"][p]), p])


@pytest.mark.parametrize("h", [0.1, 0.2, 0.25, 0.33])
def test_other_minimal_segments(h: float) -> None:
    values, years = series_with_breaks(32, 30, seed=11)
    assert_equals_oracle(fit_breaks(values, years, 3, min_segment=h), values, years, 3, h=h)


def test_alpha_gates_the_breaks() -> None:
    values, years = series_with_breaks(30, 40, seed=3)
    loose, strict = fit_breaks(values, years, 2, alpha=0.1), fit_breaks(values, years, 2, alpha=0.011)
    assert_equals_oracle(strict, values, years, 2, alpha=0.011)
    np.testing.assert_array_equal(loose["mosum_p"], strict["mosum_p"])
    assert np.all(strict["bp_count"][strict["mosum_p"] >= 0.011] == 0)
    assert (loose["bp_count"] > 0).sum() > (strict["bp_count"] > 0).sum()


def test_no_break_in_a_straight_noisy_trend() -> None:
    rng = np.random.default_rng(5)
    years = np.arange(1990, 2020, dtype=np.float64)
    values = 0.3 + 0.004 * (years[:, None] - 1990) + rng.normal(0, 0.02, (30, 40))
    result = fit_breaks(values, years, 2)
    assert_equals_oracle(result, values, years, 2)
    assert (result["bp_count"] == 0).mean() >= 0.85  # the test rejects at about its level, no more
    assert np.all(np.isnan(result["bp1_year"][result["bp_count"] == 0]))


def test_ties_in_integer_series() -> None:
    rng = np.random.default_rng(9)
    years = np.arange(2000, 2030, dtype=np.float64)
    values = np.round(series_with_breaks(30, 40, seed=9)[0] * 10) + rng.integers(0, 2, (30, 40))
    assert len(np.unique(values)) < 20
    assert_equals_oracle(fit_breaks(values, years, 2), values, years, 2)


def test_short_series_are_nan_without_warnings() -> None:
    years = np.arange(2000, 2025, dtype=np.float64)
    values, _ = series_with_breaks(25, 6, seed=2)
    values[:6, 0] = np.nan  # 19 valid years: floor(19 * 0.15) = 2 regressors' worth: strucchange refuses
    values[:5, 1] = np.nan  # 20 valid years: segments of 3, fitted
    values[:, 2] = np.nan
    values[3:, 3] = np.nan  # 3 valid years
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit_breaks(values, years, 2)
        short = fit_breaks(values[:10], years[:10], 1)
    for name in break_bands(2):
        assert np.isnan(result[name][[0, 2, 3]]).all(), name
        assert np.isfinite(result["mosum_p"][[1, 4, 5]]).all()
    assert all(np.isnan(band).all() for band in short.values())
    assert_equals_oracle(result, values, years, 2)


def test_min_years_blanks_a_pixel() -> None:
    values, years = series_with_breaks(24, 4, seed=1)
    values[:2, 0] = np.nan
    result = fit_breaks(values, years, 1, min_years=23)
    assert np.isnan(result["mosum_p"][0]) and np.isfinite(result["mosum_p"][1:]).all()


def test_breaks_beyond_what_the_series_holds_stay_nan() -> None:
    # 20 values with segments of 6 (h = 0.3): ceiling(20 / 6) - 2 = 2 breaks at most
    values, years = series_with_breaks(20, 30, seed=4)
    result = fit_breaks(values, years, 4, min_segment=0.3)
    assert_equals_oracle(result, values, years, 4, h=0.3)
    assert np.isnan(result["bp3_year"]).all() and np.isnan(result["seg4_slope"]).all()


def test_constant_and_exact_lines_give_no_warning() -> None:
    years = np.arange(2000, 2030, dtype=np.float64)
    values = np.column_stack([np.full(30, 0.25), 0.5 + 0.01 * (years - 2000)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit_breaks(values, years, 2)
    # a constant: residuals exactly 0, so the MOSUM statistic is 0/0 (NaN in strucchange too) and no break
    assert np.isnan(result["mosum_p"][0]) and result["bp_count"][0] == 0 and result["seg1_slope"][0] == 0
    assert result["seg1_slope"][1] == pytest.approx(0.01, rel=1e-9)


@pytest.mark.parametrize("code, shape", [
    (1, lambda t: 0.01 * t), (2, lambda t: -0.01 * t),
    (3, lambda t: 0.01 * t + 0.3 * (t >= 20)), (4, lambda t: -0.01 * t - 0.3 * (t >= 20)),
    (5, lambda t: 0.01 * t - 0.3 * (t >= 20)), (6, lambda t: -0.01 * t + 0.3 * (t >= 20)),
    (7, lambda t: np.where(t < 20, 0.03 * t, 0.6 - 0.03 * (t - 20))),
    (8, lambda t: np.where(t < 20, -0.03 * t, -0.6 + 0.03 * (t - 20))),
])
def test_change_type_of_each_shape(code: int, shape) -> None:
    rng = np.random.default_rng(code)
    years = np.arange(1982, 2022, dtype=np.float64)
    values = (0.5 + shape(years - 1982))[:, None] + rng.normal(0, 0.01, (40, 5))
    result = fit_breaks(values, years, 1, min_segment=0.25)
    np.testing.assert_array_equal(result["change_type"], np.full(5, code))
    if 3 <= code <= 6:
        np.testing.assert_array_equal(result["bp1_year"], np.full(5, 2001.0))  # the last year before the jump
    assert_equals_oracle(result, values, years, 1, h=0.25)


def test_result_does_not_depend_on_the_other_pixels() -> None:
    values, years = series_with_breaks(26, 400, seed=8, gaps=0.03)
    whole = fit_breaks(values, years, 3)
    order = np.random.default_rng(0).permutation(400)
    shuffled = fit_breaks(values[:, order], years, 3)
    pieces = [fit_breaks(values[:, a:b], years, 3) for a, b in ((0, 1), (1, 2), (2, 77), (77, 400))]
    for name in whole:
        np.testing.assert_array_equal(shuffled[name], whole[name][order], err_msg=name)
        np.testing.assert_array_equal(np.concatenate([p[name] for p in pieces]), whole[name], err_msg=name)


def test_band_names() -> None:
    assert break_bands(1) == ("mosum_p", "bp_count", "bp1_year", "seg1_slope", "seg2_slope", "seg1_p", "seg2_p",
                              "change_type")
    assert break_bands(2)[-1] == "seg3_p" and "change_type" not in break_bands(2)


# ---- against R's strucchange ------------------------------------------------------------


def run_strucchange(values: np.ndarray, years: np.ndarray, max_breaks: int, h: float, alpha: float,
                    tmp_path: Path) -> np.ndarray:
    table = tmp_path / "in.csv"
    rows = [",".join("NA" if not np.isfinite(v) else repr(float(v)) for v in row)
            for row in np.vstack([years, values.T])]
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    subprocess.run(["Rscript", str(ORACLE_R), str(table), str(out), str(max_breaks), repr(h), repr(alpha)],
                   check=True, capture_output=True, text=True)
    return np.genfromtxt(out, delimiter=",", missing_values="NA", filling_values=np.nan, ndmin=2)


def assert_equals_strucchange(result: dict, r: np.ndarray, values: np.ndarray, years: np.ndarray,
                              max_breaks: int) -> int:
    n_bp = max_breaks
    checked = 0
    for p in range(values.shape[1]):
        if np.isnan(r[p, 0]):
            assert np.isnan(result["mosum_p"][p]) and np.isnan(result["bp_count"][p])
            continue
        checked += 1
        assert result["mosum_p"][p] == pytest.approx(r[p, 0], rel=1e-9, abs=1e-12), p
        count = int(r[p, 1])
        assert result["bp_count"][p] == count, p
        valid_years = years[np.isfinite(values[:, p])]
        for i in range(n_bp):
            expected = valid_years[int(r[p, 2 + i]) - 1] if i < count else np.nan
            np.testing.assert_equal(result[f"bp{i + 1}_year"][p], expected)
        for s in range(n_bp + 1):
            slope, pvalue = r[p, 2 + n_bp + s], r[p, 2 + n_bp + n_bp + 1 + s]
            if s <= count:
                assert result[f"seg{s + 1}_slope"][p] == pytest.approx(slope, rel=1e-8, abs=1e-12), (p, s)
                assert result[f"seg{s + 1}_p"][p] == pytest.approx(pvalue, rel=1e-6, abs=1e-12), (p, s)
            else:
                assert np.isnan(result[f"seg{s + 1}_slope"][p])
    return checked


@needs_r
@pytest.mark.parametrize("max_breaks, h, gaps", [(1, 0.15, 0.0), (3, 0.15, 0.05), (2, 0.25, 0.1)])
def test_equals_strucchange(max_breaks: int, h: float, gaps: float, tmp_path: Path) -> None:
    values, years = series_with_breaks(30, 80, seed=20 + max_breaks, gaps=gaps)
    result = fit_breaks(values, years, max_breaks, min_segment=h)
    r = run_strucchange(values, years, max_breaks, h, 0.05, tmp_path)
    assert assert_equals_strucchange(result, r, values, years, max_breaks) >= 40
    assert (r[:, 1] > 0).sum() >= 15


@needs_r
def test_equals_strucchange_on_ties_short_series_and_no_break(tmp_path: Path) -> None:
    rng = np.random.default_rng(31)
    years = np.arange(1982, 2024, dtype=np.float64)  # 42 years, as the held-out NDVI
    breaks_, _ = series_with_breaks(42, 30, seed=31, gaps=0.05)
    ties = np.round(breaks_ * 25) / 25  # NDVI on a coarse grid: many tied values
    straight = 0.3 + 0.003 * (years[:, None] - 1982) + rng.normal(0, 0.02, (42, 15))
    short = series_with_breaks(42, 6, seed=32)[0]
    short[:23, :3] = np.nan  # 19 valid years: refused by strucchange and NaN here
    short[:22, 3:] = np.nan  # 20 valid years: fitted
    values = np.column_stack([breaks_, ties, straight, short])
    result = fit_breaks(values, years, 2)
    r = run_strucchange(values, years, 2, 0.15, 0.05, tmp_path)
    assert np.isnan(r[-6:-3, 0]).all() and np.isfinite(r[-3:, 0]).all()
    assert assert_equals_strucchange(result, r, values, years, 2) == values.shape[1] - 3


# ---- wired into the engine, the API, the config and the command line ---------------------


def _stack_with_breaks(make_stack, rows: int = 40, cols: int = 50, n_years: int = 30, seed: int = 12):
    values, years = series_with_breaks(n_years, rows * cols, seed=seed, gaps=0.04)
    cube = values.reshape(n_years, rows, cols).astype(np.float32)
    folder, _, _ = make_stack(cube, [int(y) for y in years], tiled=True)
    return folder, cube, years


def _read(path: Path) -> dict[str, np.ndarray]:
    import rasterio

    with rasterio.open(path) as ds:
        return {name: ds.read(i + 1) for i, name in enumerate(ds.descriptions)}


def test_trend_rasters_writes_the_kernel_bands_for_any_window_worker_and_executor(make_stack, tmp_path) -> None:
    import sys

    from pipeline.engine.trend import FitOptions, trend_rasters

    folder, cube, years = _stack_with_breaks(make_stack, rows=300, cols=20)  # taller than one 256-row window
    options = FitOptions(method="ols", breaks=2, min_segment=0.2)
    expected = fit_breaks(cube.reshape(len(years), -1), years, 2, min_segment=0.2)
    outputs = []
    for i, (workers, window_pixels) in enumerate([(1, 1 << 20), (2, 256)]):
        out = tmp_path / f"t{i}.tif"
        run = trend_rasters(folder, out, options=options, workers=workers, window_pixels=window_pixels)
        outputs.append((run.windows, _read(out)))
    assert len({windows for windows, _ in outputs}) > 1
    # a process pool in a fresh process, as a user starts it (forking this long-lived test process,
    # whose GDAL has started its own threads, is not what eetrend does)
    out = tmp_path / "process.tif"
    subprocess.run([sys.executable, "-m", "cli", "trend", str(folder), "-o", str(out), "--breaks", "2",
                    "--min-segment", "0.2", "--workers", "2", "--executor", "process", "--memory-budget", "700MB",
                    "-q"], cwd=Path(__file__).resolve().parents[1], check=True, timeout=300)
    outputs.append((0, _read(out)))
    for _, bands in outputs:
        for name in break_bands(2):
            np.testing.assert_array_equal(bands[name].ravel(), expected[name].astype(np.float32), err_msg=name)
    assert (outputs[0][1]["bp_count"] > 0).sum() > 200


def test_dask_gives_the_same_bits(make_stack, tmp_path) -> None:
    pytest.importorskip("distributed")
    from pipeline.engine.dask_executor import DaskSettings
    from pipeline.engine.trend import FitOptions, trend_rasters

    folder, cube, years = _stack_with_breaks(make_stack, rows=20, cols=30)
    expected = fit_breaks(cube.reshape(len(years), -1), years, 1)
    out = tmp_path / "dask.tif"
    trend_rasters(folder, out, options=FitOptions(breaks=1), workers=2, window_pixels=256, executor="dask",
                  dask=DaskSettings(workers=2))
    bands = _read(out)
    for name in break_bands(1):
        np.testing.assert_array_equal(bands[name].ravel(), expected[name].astype(np.float32), err_msg=name)


def test_output_tags_and_units(make_stack, tmp_path) -> None:
    import rasterio

    from pipeline.engine.trend import FitOptions, trend_rasters

    folder, _, _ = _stack_with_breaks(make_stack, rows=8, cols=8)
    out = tmp_path / "t.tif"
    trend_rasters(folder, out, options=FitOptions(method="sen", breaks=1, min_segment=0.25), workers=1)
    with rasterio.open(out) as ds:
        tags = ds.tags()
        assert ds.descriptions[-len(break_bands(1)):] == break_bands(1)
        assert tags["breaks"].startswith("1:") and tags["min_segment"].startswith("0.25:")
        assert "8 reversal: decrease to increase" in tags["change_type"]
        assert ds.units[ds.descriptions.index("seg2_slope")].endswith("per year")
        assert ds.units[ds.descriptions.index("bp1_year")] == "year"


def test_too_few_years_for_any_segment_is_a_usage_error(make_stack, tmp_path) -> None:
    from pipeline.engine.trend import FitOptions, trend_rasters
    from pipeline.errors import UsageError

    values, years = series_with_breaks(15, 16, seed=1)
    folder, _, _ = make_stack(values.reshape(15, 4, 4).astype(np.float32), [int(y) for y in years])
    with pytest.raises(UsageError, match="raise --min-segment to 0.2"):
        trend_rasters(folder, tmp_path / "t.tif", options=FitOptions(breaks=1))
    with pytest.raises(UsageError, match="--min-segment is 0.5"):
        FitOptions(breaks=1, min_segment=0.5)
    with pytest.raises(UsageError, match="--breaks is 11"):
        FitOptions(breaks=11)


def test_api_fit_and_the_xarray_route(make_stack) -> None:
    import pipeline

    values, years = series_with_breaks(30, 12, seed=5)
    result = pipeline.fit(values.reshape(30, 3, 4), [int(y) for y in years], breaks=2, min_segment=0.2)
    expected = fit_breaks(values, years, 2, min_segment=0.2)
    for name in break_bands(2):
        np.testing.assert_array_equal(result[name].ravel(), expected[name], err_msg=name)
    xr = pytest.importorskip("xarray")
    array = xr.DataArray(values.reshape(30, 3, 4), dims=("year", "y", "x"), coords={"year": years.astype(int)})
    dataset = pipeline.fit(array, breaks=2, min_segment=0.2)
    np.testing.assert_array_equal(dataset["bp1_year"].values.ravel(), expected["bp1_year"])
    lazy = pipeline.fit(array.chunk({"x": 2}), breaks=2, min_segment=0.2)
    np.testing.assert_array_equal(lazy["seg2_slope"].values.ravel(), expected["seg2_slope"])


def test_cli_flags_and_config_keys(make_stack, tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app
    from pipeline.config import TrendSection

    folder, cube, years = _stack_with_breaks(make_stack, rows=10, cols=12)
    out = tmp_path / "cli.tif"
    result = CliRunner().invoke(app, ["trend", str(folder), "-o", str(out), "--breaks", "3", "--min-segment", "0.2",
                                      "--alpha", "0.1", "-q"])
    assert result.exit_code == 0, result.output
    expected = fit_breaks(cube.reshape(len(years), -1), years, 3, min_segment=0.2, alpha=0.1)
    bands = _read(out)
    for name in break_bands(3):
        np.testing.assert_array_equal(bands[name].ravel(), expected[name].astype(np.float32), err_msg=name)
    bad = CliRunner().invoke(app, ["trend", str(folder), "-o", str(tmp_path / "x.tif"), "--breaks", "1",
                                   "--min-segment", "0.7"])
    assert bad.exit_code == 2 and "--min-segment is 0.7" in bad.output
    help_text = CliRunner().invoke(app, ["trend", "--help"], terminal_width=200).output
    assert "--breaks" in help_text and "--min-segment" in help_text
    section = TrendSection(breaks=2, min_segment=0.2)
    assert (section.breaks, section.min_segment) == (2, 0.2)
    with pytest.raises(ValueError):
        TrendSection(breaks=1, min_segment=0.6)


def test_peak_memory_stays_flat_on_a_raster_four_times_larger(tmp_path) -> None:
    import sys

    from benchmarks.tree_rss import run_with_peak_rss
    from pipeline.engine.sample import write_sample

    root = Path(__file__).resolve().parents[1]
    budget = 384 << 20
    peaks = {}
    # both large enough that windows are cut at their preferred size, not finer to share a small raster
    for label, rows, cols in (("1x", 512, 1024), ("4x", 1024, 2048)):
        # 15 years without gaps: every pixel is fitted (up to two breaks, segments of 3 years)
        folder = write_sample(tmp_path / label, years=range(2000, 2015), rows=rows, cols=cols, nan_fraction=0.0,
                              seed=4).folder
        command = [sys.executable, "-c", "import cli; cli.app()", "trend", str(folder), "-o",
                   str(tmp_path / f"{label}.tif"), "--breaks", "2", "--min-segment", "0.2", "--memory-budget", "384MB",
                   "--workers", "2"]
        _wall, peak, code, err = run_with_peak_rss(command, root, keep_stderr=True)
        assert code == 0, err
        peaks[label] = peak
    print({label: f"{peak / 2**20:.0f} MiB" for label, peak in peaks.items()})
    assert peaks["4x"] <= 1.25 * peaks["1x"], peaks
    assert max(peaks.values()) <= 1.25 * budget, peaks


def test_plot_pixel_draws_the_segments_and_says_where_the_break_is(make_stack, tmp_path) -> None:
    from typer.testing import CliRunner

    from cli import app
    from pipeline.reporting.plots import plot_pixel

    rng = np.random.default_rng(2)
    years = np.arange(1982, 2022)
    t = years - 1982.0
    reversal = 0.5 + np.where(t < 20, 0.03 * t, 0.6 - 0.03 * (t - 20))
    cube = (reversal[:, None, None] + rng.normal(0, 0.01, (40, 2, 2))).astype(np.float32)
    cube[5, 0, 0] = np.nan
    folder, _, _ = make_stack(cube, [int(y) for y in years])
    found = plot_pixel(folder, 500_015, 4_999_985, tmp_path / "pixel.png", breaks=1, min_segment=0.25)
    expected = fit_breaks(cube[:, 0, :1].astype(np.float64), years, 1, min_segment=0.25)
    for name in break_bands(1):
        np.testing.assert_equal(found[name], expected[name][0], err_msg=name)
    assert found["bp_count"] == 1 and found["change_type"] == 7
    assert (tmp_path / "pixel.png").stat().st_size > 10_000
    result = CliRunner().invoke(app, ["plot-pixel", str(folder), "--xy", "500015", "4999985", "-o",
                                      str(tmp_path / "cli.png"), "--breaks", "1", "--min-segment", "0.25"])
    assert result.exit_code == 0, result.output
    assert f"1 break(s), after {found['bp1_year']:.0f}" in result.output


def test_report_maps_the_break_year_and_change_type_with_their_areas(make_stack, tmp_path) -> None:
    import rasterio

    from pipeline.engine.trend import FitOptions, trend_rasters
    from pipeline.reporting.breaks_report import summarise_breaks
    from pipeline.reporting.report import report_trend

    rng = np.random.default_rng(4)
    years = np.arange(1982, 2022)
    t = years - 1982.0
    shapes = [0.01 * t, 0.01 * t - 0.3 * (t >= 20), np.where(t < 20, 0.03 * t, 0.6 - 0.03 * (t - 20))]
    cube = np.stack([shapes[i % 3] for i in range(24 * 30)], axis=1).reshape(40, 24, 30) + 0.5
    cube = (cube + rng.normal(0, 0.01, cube.shape)).astype(np.float32)
    cube[:, :2] = np.nan  # two rows never fitted
    folder, _, _ = make_stack(cube, [int(y) for y in years])
    trend = tmp_path / "trend.tif"
    trend_rasters(folder, trend, options=FitOptions(breaks=1, min_segment=0.25), workers=1)
    with rasterio.open(trend) as ds:
        kinds = ds.read(ds.descriptions.index("change_type") + 1)
        counts = ds.read(ds.descriptions.index("bp_count") + 1)
        first = ds.read(ds.descriptions.index("bp1_year") + 1)
        pixel = abs(ds.transform.a * ds.transform.e)
        summary = summarise_breaks(ds, memory_budget=1 << 14)  # several strips
    assert summary.fitted == pytest.approx(np.isfinite(counts).sum() * pixel)
    for code in (1, 5, 7):
        assert summary.by_type[code] == pytest.approx((kinds == code).sum() * pixel) and summary.by_type[code] > 0
    assert summary.by_count == pytest.approx({0: (counts == 0).sum() * pixel, 1: (counts == 1).sum() * pixel})
    assert summary.first_years == (np.nanmin(first), np.nanmax(first)) and 1999 <= np.nanmin(first) <= 2001
    page = report_trend(trend).read_text()
    assert page.count('<section id="breaks">') == 1 and page.count("data:image/png") >= 3
    assert "5 interruption: increase with a negative break" in page and "Breaks per pixel" in page
    assert "--breaks 1 --min-segment 0.25" in page  # the command that reproduces the file
