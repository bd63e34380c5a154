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
* ``pymannkendall.original_test`` + ``sens_slope`` per pixel, extrapolated;
* ``xarray.DataArray.polyfit`` on the same stack with NaNs, when xarray is installed;
* peak RSS of the whole ``eetrend trend`` process tree on the stack and on one
  4 times larger.

Run: python benchmarks/bench_trend.py [--quick]. Results print as a table and go
to benchmarks/results/trend.json. Figures are ratios within this run; quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


# --- eetrend as a user runs it ---------------------------------------------------------------


def eetrend_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import cli; cli.app()", *args]


def run_process(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def peak_tree_rss(command: list[str]) -> tuple[float, int]:
    """Wall time and the peak summed RSS of a process and its children, sampled every 5 ms."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                members = [parent, *parent.children(recursive=True)]
                total = sum(m.memory_info().rss for m in members if m.is_running())
                peak = max(peak, total)
            except psutil.Error:
                pass
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    code = proc.wait()
    done.set()
    thread.join()
    if code != 0:
        raise RuntimeError(f"{command} exited {code}")
    return time.perf_counter() - started, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=855)
    parser.add_argument("--cols", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed-pixels", type=int, default=3000, help="pixels timed with the seed's method")
    parser.add_argument("--pmk-pixels", type=int, default=500, help="pixels timed with pymannkendall")
    parser.add_argument("--work", type=Path, default=Path("/tmp/eetrend-bench"))
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
    print(f"workload: {len(years)} years x {pixels:,} pixels, {np.isnan(values).mean():.1%} missing, {workers} cores")

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

    imports, _ = median_time(
        lambda: run_process([sys.executable, "-c", "import cli, pipeline.engine.trend, scipy.special"]), args.repeats
    )
    out = args.work / "trend.tif"
    ols_cmd = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", "-q")
    ols_e2e, ols_runs = median_time(lambda: run_process(ols_cmd), args.repeats)
    sen_cmd = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", "-q", "--method", "sen")
    sen_e2e, sen_runs = median_time(lambda: run_process(sen_cmd), args.repeats)

    import scipy.special  # noqa: F401 - keep its import out of the in-memory timing

    fit_pixels(values[:, :1000], years)
    in_memory, _ = median_time(lambda: fit_pixels(values, years), args.repeats)
    read_once, _ = median_time(lambda: (open_stack(folder).read(), close_cached()), args.repeats)

    from pipeline.engine.trend import FitOptions, trend_rasters

    run = trend_rasters(folder, out, overwrite=True, options=FitOptions())
    report.update(
        imports_s=imports,
        ols_end_to_end_s=ols_e2e,
        ols_end_to_end_runs=ols_runs,
        sen_end_to_end_s=sen_e2e,
        sen_end_to_end_runs=sen_runs,
        in_memory_fit_s=in_memory,
        read_stack_s=read_once,
        engine_timings=run.timings,
    )

    pmk_picked = picked[: args.pmk_pixels]
    pmk_fit(values[:, pmk_picked[:20]])  # warm up
    pmk_time, _ = median_time(lambda: pmk_fit(values[:, pmk_picked]), args.repeats)
    report["pmk_s"] = pmk_time / len(pmk_picked) * pixels

    try:
        import xarray as xr
    except ImportError:
        report["xarray_polyfit_s"] = None
    else:
        rows = max(1, min(args.rows, 40))
        block = values.reshape(len(years), args.rows, args.cols)[:, :rows]
        da = xr.DataArray(block, dims=("year", "y", "x"), coords={"year": years})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            poly, _ = median_time(lambda: da.polyfit("year", 1, cov=True), 1)
        report["xarray_polyfit_s"] = poly / (rows * args.cols) * pixels

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
    lines = [
        ("seed method, serial (extrapolated)", seed_serial, 1.0),
        (f"seed method, {workers}-process pool (extrapolated)", seed_pooled, ratio(seed_serial, seed_pooled)),
        ("eetrend trend --method ols, end to end (median)", ols_e2e, ratio(seed_serial, ols_e2e)),
        ("  same, against the seed's process pool", ols_e2e, ratio(seed_pooled, ols_e2e)),
        ("  of which: interpreter + imports", imports, None),
        ("eetrend OLS fit in memory, one process (median)", in_memory, ratio(seed_serial, in_memory)),
        ("reading the 21 files once (median)", read_once, None),
    ]
    if report["xarray_polyfit_s"] is not None:
        lines.append(
            (
                "xarray polyfit (extrapolated)",
                report["xarray_polyfit_s"],
                ratio(seed_serial, report["xarray_polyfit_s"]),
            )
        )
    lines += [
        ("pymannkendall original_test + sens_slope (extrapolated)", report["pmk_s"], None),
        ("eetrend trend --method sen, end to end (median)", sen_e2e, ratio(report["pmk_s"], sen_e2e)),
    ]
    print(f"{'':58s} {'seconds':>10s} {'speed-up':>9s}")
    for label, seconds, speedup in lines:
        shown = f"{speedup:8.0f}x" if speedup is not None else ""
        print(f"{label:58s} {seconds:10.3f} {shown:>9s}")
    print(
        "engine timings of one in-process run (read and fit summed over workers): "
        + ", ".join(f"{k} {v:.3f}s" for k, v in run.timings.items())
    )
    print(
        f"peak RSS of the eetrend process tree: 1x {report['peak_rss_1x_mb']:.0f} MB, "
        f"4x {report['peak_rss_4x_mb']:.0f} MB, ratio {rss['4x'] / rss['1x']:.2f}"
    )
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "trend.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
