"""Benchmark: eetrend's trend engine against the seed's per-pixel method, in one run.

Workload: the regression seed's, 21 years x about 730,000 pixels (855 x 854, the
seed's 730,331 rounded to a grid), about 5 % of values missing, files written by
``eetrend sample``. Everything is timed here, in this run, on this machine:

* the seed's method: the P x N x 2 stack (years repeated for every pixel) and
  ``scipy.stats.linregress`` per pixel, serial and over a ProcessPoolExecutor,
  timed on a sample of pixels and extrapolated to the whole stack;
* ``eetrend trend`` end to end as a fresh process (interpreter start included),
  median of --repeats runs, for OLS and for Sen + Mann-Kendall;
* the in-process fit of a stack already in memory;
* the start-up every run pays before its first file (interpreter, imports, options
  parsed and checked), and from it the OLS floor: start-up, then reading, fitting and
  writing spread perfectly over the cores, then closing and checking the output;
* ``pymannkendall.original_test`` + ``sens_slope`` per pixel, extrapolated;
* ``xarray.DataArray.polyfit`` on the same stack with NaNs, when xarray is installed;
* the ``xarrayMannKendall`` package (theilslopes), on a strip of rows, extrapolated;
* a numba per-pixel Theil-Sen + Mann-Kendall loop as an expert user writes it
  (``prange`` over pixels, pairwise slopes in a local array), with the median
  only (``np.median``) and with the confidence interval (a full sort), timed on the
  whole stack once compiled, plus the time to read the stack: the peer is not
  charged for interpreter start, compilation or writing;
* peak RSS of the whole ``eetrend trend`` process tree on the stack and on one
  4 times larger.

Every peer is first checked to agree with eetrend on a sample of pixels (the
values it shares with eetrend, to 1e-9 relative, or 1e-6 for float32 outputs).

Run: python benchmarks/bench_trend.py [--quick]. Results print as a table and go
to benchmarks/results/trend.json. Figures are ratios within this run; quote medians.
Needs the bench extra (pymannkendall, psutil, xarray, xarrayMannKendall, numba).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from program import eetrend_command, startup_command  # noqa: E402
from tree_rss import run_with_peak_rss  # noqa: E402

from pipeline.engine.kernels import fit_pixels  # noqa: E402
from pipeline.engine.sample import write_sample  # noqa: E402
from pipeline.engine.stack import close_cached, open_stack  # noqa: E402


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def ensure_sample(folder: Path, rows: int, cols: int) -> Path:
    if not (folder / "truth" / "true_slope.tif").exists():
        write_sample(folder, rows=rows, cols=cols, nan_fraction=0.05, seed=0)
    return folder


# --- the seed's method -------------------------------------------------------------------------


def seed_stack(values: np.ndarray, years: np.ndarray) -> np.ndarray:
    """The seed's P x N x 2 array: every pixel carries its own copy of the years."""
    pixels = values.shape[1]
    stack = np.empty((pixels, len(years), 2))
    stack[:, :, 0] = years
    stack[:, :, 1] = values.T
    return stack


def seed_fit(pixel_stack: np.ndarray) -> np.ndarray:
    from scipy.stats import linregress

    out = np.full((pixel_stack.shape[0], 5), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, pairs in enumerate(pixel_stack):
            keep = ~np.isnan(pairs[:, 1])
            if keep.sum() >= 3:
                r = linregress(pairs[keep, 0], pairs[keep, 1])
                out[i] = (r.slope, r.intercept, r.rvalue, r.pvalue, r.stderr)
    return out


def seed_pool(pixel_stack: np.ndarray, workers: int) -> None:
    chunks = np.array_split(pixel_stack, workers * 4)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(seed_fit, chunks))


def pmk_fit(values: np.ndarray) -> None:
    import pymannkendall as mk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for column in values.T:
            y = column[~np.isnan(column)]
            mk.original_test(y)
            mk.sens_slope(y)


# --- peers: each checked against eetrend on a sample of pixels before it is timed ----------------


def agree(label: str, got: np.ndarray, want: np.ndarray, rtol: float = 1e-9) -> None:
    """Stop the benchmark if a peer's values differ from eetrend's on the sampled pixels."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    both = np.isfinite(got) & np.isfinite(want)
    if not np.array_equal(np.isfinite(got), np.isfinite(want)) or not both.any():
        raise SystemExit(f"{label}: a peer has values where eetrend has none, or the other way round")
    np.testing.assert_allclose(got[both], want[both], rtol=rtol, atol=1e-12, err_msg=label)


def numba_peer(with_ci: bool):
    """A per-pixel Theil-Sen + Mann-Kendall loop compiled with numba, as an expert user would write it."""
    import math

    import numba

    @numba.njit(parallel=True)
    def fit(values, years, z_crit):
        pixels = values.shape[1]
        out = np.full((pixels, 6), np.nan)  # slope, S, var_s, p, low, high
        for p in numba.prange(pixels):
            column = values[:, p]
            keep = ~np.isnan(column)
            y, x = column[keep], years[keep]
            n = y.size
            if n < 3:
                continue
            m = n * (n - 1) // 2
            slopes = np.empty(m)
            s, k = 0, 0
            for i in range(n):
                for j in range(i + 1, n):
                    d = y[j] - y[i]
                    slopes[k] = d / (x[j] - x[i])
                    s += (d > 0) - (d < 0)
                    k += 1
            ordered = np.sort(y)
            ties, run = 0.0, 1
            for i in range(1, n + 1):
                if i < n and ordered[i] == ordered[i - 1]:
                    run += 1
                else:
                    ties += run * (run - 1) * (2 * run + 5)
                    run = 1
            var_s = (n * (n - 1) * (2 * n + 5) - ties) / 18.0
            z = (s - 1) / math.sqrt(var_s) if s > 0 else ((s + 1) / math.sqrt(var_s) if s < 0 else 0.0)
            out[p, 1], out[p, 2], out[p, 3] = s, var_s, math.erfc(abs(z) / math.sqrt(2.0))
            if with_ci:
                slopes.sort()
                out[p, 0] = 0.5 * (slopes[(m - 1) // 2] + slopes[m // 2])
                sigma = math.sqrt(var_s)
                upper = min(round((m - z_crit * sigma) / 2.0), m - 1)
                lower = max(round((m + z_crit * sigma) / 2.0) - 1, 0)
                out[p, 4], out[p, 5] = slopes[int(lower)], slopes[int(upper)]
            else:
                out[p, 0] = np.median(slopes)
        return out

    return fit


def check_numba_peer(fit, values: np.ndarray, years: np.ndarray, ours: dict, with_ci: bool) -> None:
    from scipy.special import ndtri

    got = fit(values, years, ndtri(0.025))
    label = "numba Theil-Sen" + (" with CI" if with_ci else "")
    agree(label + " slope", got[:, 0], ours["sen_slope"])
    agree(label + " S", got[:, 1], ours["mk_s"])
    agree(label + " var S", got[:, 2], ours["mk_var_s"])
    agree(label + " p", got[:, 3], ours["mk_p"], rtol=1e-6)  # erfc, not 1 - ndtr: the same p within rounding
    if with_ci:
        agree(label + " low", got[:, 4], ours["sen_low"])
        agree(label + " high", got[:, 5], ours["sen_high"])


def xarray_mk_peer(block: np.ndarray, years: np.ndarray):
    """The xarrayMannKendall package (theilslopes) on a (years, rows, cols) block."""
    import xarray as xr
    from xarrayMannKendall import Mann_Kendall_test

    da = xr.DataArray(block, dims=("time", "y", "x"),
                      coords={"time": years, "y": np.arange(block.shape[1]), "x": np.arange(block.shape[2])})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Mann_Kendall_test(da, "time", alpha=0.05, method="theilslopes",
                                 coords_name={"time": "time", "y": "y", "x": "x"}).compute()


# --- eetrend as a user runs it ---------------------------------------------------------------


def run_process(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def peak_tree_rss(command: list[str]) -> tuple[float, int]:
    """Wall time and the peak summed RSS of a process and its children, sampled every 5 ms."""
    wall, peak, code, _ = run_with_peak_rss(command, ROOT)
    if code != 0:
        raise RuntimeError(f"{command} exited {code}")
    return wall, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=855)
    parser.add_argument("--cols", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-pixels", type=int, default=3000, help="pixels timed with the seed's method")
    parser.add_argument("--pmk-pixels", type=int, default=500, help="pixels timed with pymannkendall")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.cols, args.repeats, args.seed_pixels, args.pmk_pixels = 256, 256, 1, 300, 50

    workers = len(os.sched_getaffinity(0))
    folder = ensure_sample(args.work / f"s{args.rows}x{args.cols}", args.rows, args.cols)
    stack = open_stack(folder)
    values = stack.read().astype(np.float64)
    close_cached()
    years = stack.years
    pixels = values.shape[1]
    report: dict[str, object] = {"pixels": pixels, "years": len(years), "workers": workers}
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    report["load_start"] = load
    print(f"workload: {len(years)} years x {pixels:,} pixels, {np.isnan(values).mean():.1%} missing, {workers} cores, "
          f"load average {load}")

    rng = np.random.default_rng(0)
    picked = rng.choice(pixels, size=min(args.seed_pixels, pixels), replace=False)
    pixel_stack = seed_stack(values[:, picked], years)
    seed_fit(pixel_stack[:200])  # warm up: scipy's first calls are several times slower
    serial, _ = median_time(lambda: seed_fit(pixel_stack), args.repeats)
    seed_serial = serial / len(picked) * pixels
    pooled, _ = median_time(lambda: seed_pool(pixel_stack, workers), 1)
    seed_pooled = pooled / len(picked) * pixels
    report["seed_serial_s"] = seed_serial
    report["seed_pool_s"] = seed_pooled

    out = args.work / "trend.tif"
    startup, _ = median_time(lambda: run_process(startup_command(folder, out)), args.repeats)
    ols_cmd = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", "-q")
    ols_e2e, ols_runs = median_time(lambda: run_process(ols_cmd), args.repeats)
    sen_cmd = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", "-q", "--method", "sen")
    sen_e2e, sen_runs = median_time(lambda: run_process(sen_cmd), args.repeats)
    # The default worker kind (threads) against a process pool, alternating runs.
    kinds: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for method in ("ols", "sen"):
            for kind in ("thread", "process"):
                command = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", "-q",
                                          "--method", method, "--executor", kind)
                kinds.setdefault(f"{method}_{kind}", []).append(run_process(command))
    report["executors_s"] = {key: statistics.median(times) for key, times in kinds.items()}

    import scipy.special  # noqa: F401 - keep its import out of the in-memory timing

    fit_pixels(values[:, :1000], years)
    in_memory, _ = median_time(lambda: fit_pixels(values, years), args.repeats)
    read_once, _ = median_time(lambda: (open_stack(folder).read(), close_cached()), args.repeats)

    from pipeline.engine.trend import FitOptions, trend_rasters

    run = trend_rasters(folder, out, overwrite=True, options=FitOptions())
    report.update(
        startup_s=startup,
        ols_end_to_end_s=ols_e2e,
        ols_end_to_end_runs=ols_runs,
        sen_end_to_end_s=sen_e2e,
        sen_end_to_end_runs=sen_runs,
        in_memory_fit_s=in_memory,
        read_stack_s=read_once,
        engine_timings=run.timings,
    )

    # Peers: each agrees with eetrend on a sample of pixels before it is timed.
    import pymannkendall as mk

    sample = picked[:200]
    ours = fit_pixels(values[:, sample], years, method="both")
    seed_values = seed_fit(seed_stack(values[:, sample], years))
    for column, name in enumerate(("slope", "intercept", "rvalue", "pvalue", "stderr")):
        agree(f"seed linregress {name}", seed_values[:, column], ours[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, column in enumerate(values[:, sample[:50]].T):
            y = column[~np.isnan(column)]
            test, sens = mk.original_test(y), mk.sens_slope(y)
            agree("pymannkendall", [test.s, test.var_s, test.p, test.Tau],
                  [ours[k][index] for k in ("mk_s", "mk_var_s", "mk_p", "mk_tau")])
            if not np.isnan(column).any():  # sens_slope takes the index as x: the same only without gaps
                agree("pymannkendall sens_slope", sens.slope, ours["sen_slope"][index])

    pmk_picked = picked[: args.pmk_pixels]
    pmk_fit(values[:, pmk_picked[:20]])  # warm up
    pmk_time, _ = median_time(lambda: pmk_fit(values[:, pmk_picked]), args.repeats)
    report["pmk_s"] = pmk_time / len(pmk_picked) * pixels

    import xarray as xr

    rows = max(1, min(args.rows, 40))
    block = values.reshape(len(years), args.rows, args.cols)[:, :rows]
    da = xr.DataArray(block, dims=("year", "y", "x"), coords={"year": years})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strip = fit_pixels(block.reshape(len(years), -1), years, method="both")
        fitted = da.polyfit("year", 1, cov=True)
        agree("xarray polyfit slope", fitted.polyfit_coefficients.sel(degree=1).values.reshape(-1), strip["slope"],
              rtol=1e-6)  # least squares by lstsq: the same line to rounding
        poly, _ = median_time(lambda: da.polyfit("year", 1, cov=True), 1)
    report["xarray_polyfit_s"] = poly / (rows * args.cols) * pixels

    mk_rows = max(1, min(args.rows, 2))
    mk_block = block[:, :mk_rows]
    started = time.perf_counter()
    xmk = xarray_mk_peer(mk_block, years)
    report["xarray_mannkendall_s"] = (time.perf_counter() - started) / (mk_rows * args.cols) * pixels
    agree("xarrayMannKendall trend", xmk["trend"].values.reshape(-1), strip["sen_slope"][: mk_rows * args.cols])

    from scipy.special import ndtri

    for with_ci in (False, True):
        peer = numba_peer(with_ci)
        peer(np.ascontiguousarray(values[:, :100]), years, ndtri(0.025))  # compile for the layout timed below
        check_numba_peer(peer, np.ascontiguousarray(values[:, sample]), years, ours, with_ci)
        fit_time, _ = median_time(lambda peer=peer: peer(values, years, ndtri(0.025)), args.repeats)
        report["numba_ci_s" if with_ci else "numba_median_s"] = read_once + fit_time

    big = ensure_sample(args.work / f"s{args.rows * 2}x{args.cols * 2}", args.rows * 2, args.cols * 2)
    rss = {}
    for label, source in (("1x", folder), ("4x", big)):
        samples = [
            peak_tree_rss(eetrend_command("trend", str(source), "-o", str(out), "--overwrite", "-q"))
            for _ in range(args.repeats)
        ]
        rss[label] = statistics.median(peak for _, peak in samples)
    report["peak_rss_1x_mb"] = rss["1x"] / 2**20
    report["peak_rss_4x_mb"] = rss["4x"] / 2**20

    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    # The least an OLS run could take here: its start-up, then reading, fitting and
    # writing spread perfectly over the cores, then closing and checking the file.
    ols_floor = startup + (read_once + in_memory + run.timings["write"]) / workers + run.timings["finish"]
    report["ols_floor_s"] = ols_floor
    lines = [
        ("seed method, serial (extrapolated)", seed_serial, 1.0),
        (f"seed method, {workers}-process pool (extrapolated)", seed_pooled, ratio(seed_serial, seed_pooled)),
        ("eetrend trend --method ols, end to end (median)", ols_e2e, ratio(seed_serial, ols_e2e)),
        ("  same, against the seed's process pool", ols_e2e, ratio(seed_pooled, ols_e2e)),
        ("  of which: start-up (interpreter, imports, options)", startup, None),
        ("eetrend OLS fit in memory, one process (median)", in_memory, ratio(seed_serial, in_memory)),
        ("reading the 21 files once (median)", read_once, None),
        ("OLS floor: start-up + (read + fit + write) / cores + finish", ols_floor, ratio(seed_serial, ols_floor)),
    ]
    lines += [
        ("xarray polyfit(cov=True) (extrapolated)", report["xarray_polyfit_s"],
         ratio(seed_serial, report["xarray_polyfit_s"])),
        ("  eetrend --method ols against it", ols_e2e, ratio(report["xarray_polyfit_s"], ols_e2e)),
        ("pymannkendall original_test + sens_slope (extrapolated)", report["pmk_s"], 1.0),
        ("xarrayMannKendall, theilslopes (extrapolated)", report["xarray_mannkendall_s"],
         ratio(report["pmk_s"], report["xarray_mannkendall_s"])),
        ("numba Theil-Sen + MK, median only: read + fit (median)", report["numba_median_s"],
         ratio(report["pmk_s"], report["numba_median_s"])),
        ("numba Theil-Sen + MK with the CI: read + fit (median)", report["numba_ci_s"],
         ratio(report["pmk_s"], report["numba_ci_s"])),
        ("eetrend trend --method sen, end to end (median)", sen_e2e, ratio(report["pmk_s"], sen_e2e)),
        ("  against numba with the CI", sen_e2e, ratio(report["numba_ci_s"], sen_e2e)),
        ("  against numba, median only", sen_e2e, ratio(report["numba_median_s"], sen_e2e)),
    ]
    print(f"{'':58s} {'seconds':>10s} {'speed-up':>9s}")
    for label, seconds, speedup in lines:
        shown = f"{speedup:8.1f}x" if speedup is not None else ""
        print(f"{label:58s} {seconds:10.3f} {shown:>9s}")
    print("threads against processes, end to end (median): " + ", ".join(
        f"{key} {seconds:.2f} s" for key, seconds in report["executors_s"].items()))
    print(
        "engine timings of one in-process run (read and fit summed over workers): "
        + ", ".join(f"{k} {v:.3f}s" for k, v in run.timings.items())
    )
    print(
        f"peak RSS of the eetrend process tree: 1x {report['peak_rss_1x_mb']:.0f} MB, "
        f"4x {report['peak_rss_4x_mb']:.0f} MB, ratio {rss['4x'] / rss['1x']:.2f}"
    )
    report["load_end"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average at the end: {report['load_end']}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "trend.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
