"""Benchmark: trends with breaks (``--breaks``) against R's strucchange per pixel, in one run.

Workloads, files written by ``eetrend sample`` (5 % of values missing):
* the seed's: 21 years x 855 x 854 (730,170 pixels), the same files as bench_trend.py;
* 40 years x 1000 x 1000.

Timed here, in this run, on this machine:
* ``eetrend trend`` end to end as a fresh process (the installed console script, interpreter
  start included), medians of --repeats runs: OLS alone, OLS with ``--breaks 1`` and
  ``--breaks 3``, and Sen + Mann-Kendall, so the cost of the breaks sits next to Sen's;
* the in-process kernels on a stack already in memory, CPU of one thread per pixel:
  ``fit_breaks`` and Sen + Mann-Kendall;
* the peer: R's strucchange per pixel, as bfast01 and greenbrown run it (``sctest(efp(y ~ t,
  type = "OLS-MOSUM"))``, ``breakpoints(y ~ t, h = 0.15, breaks = N)``, the BIC of
  ``summary()``, ``lm`` per segment: tests/strucchange_oracle.R), one Rscript on a random
  sample of pixels, its start-up (R and the package loading) measured apart and taken off,
  extrapolated to the whole stack; serial, and as if spread perfectly over the cores.

Before any time is quoted, eetrend's written bands (float32) are checked against R's on the
sampled pixels: bp_count and the break years equal, mosum_p and segment slopes to 1e-5.

Run: python benchmarks/bench_breaks.py [--quick] [--repeats 3]. Results print and go to
benchmarks/results/breaks.json. Quote the medians and the load average printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from program import eetrend_command  # noqa: E402

from pipeline.engine.kernels import fit_pixels  # noqa: E402
from pipeline.engine.kernels.breaks import fit_breaks  # noqa: E402
from pipeline.engine.sample import write_sample  # noqa: E402
from pipeline.engine.stack import close_cached, open_stack  # noqa: E402

ORACLE_R = ROOT / "tests" / "strucchange_oracle.R"


def load() -> float:
    return os.getloadavg()[0]


def run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def ensure_sample(folder: Path, years: range, rows: int, cols: int) -> Path:
    if not (folder / "truth" / "true_slope.tif").exists():
        write_sample(folder, years=years, rows=rows, cols=cols, nan_fraction=0.05, seed=0)
    return folder


def cpu_seconds(fn) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def r_peer(values: np.ndarray, years: np.ndarray, picked: np.ndarray, breaks: int,
           work: Path) -> tuple[float, np.ndarray]:
    """Seconds R spends per sampled pixel (start-up taken off) and its results for them."""
    table = work / "r_in.csv"
    rows = [",".join("NA" if not np.isfinite(v) else repr(float(v)) for v in row)
            for row in np.vstack([years, values[:, picked].T])]
    table.write_text("\n".join(rows) + "\n")
    out = work / "r_out.csv"
    startup = statistics.median(run(["Rscript", "-e", "suppressMessages(library(strucchange))"]) for _ in range(3))
    wall = run(["Rscript", str(ORACLE_R), str(table), str(out), str(breaks), "0.15", "0.05"])
    results = np.genfromtxt(out, delimiter=",", missing_values="NA", filling_values=np.nan, ndmin=2)
    return (wall - startup) / len(picked), results


def agree(written: dict[str, np.ndarray], r: np.ndarray, values: np.ndarray, years: np.ndarray,
          picked: np.ndarray, breaks: int) -> int:
    """Stop the benchmark unless eetrend's bands equal R's on the sampled pixels; returns the pixels fitted."""
    fitted = 0
    for row, p in enumerate(picked):
        if np.isnan(r[row, 0]):
            assert np.isnan(written["mosum_p"][p]), p
            continue
        fitted += 1
        count = int(r[row, 1])
        assert written["bp_count"][p] == count, (p, written["bp_count"][p], count)
        assert abs(written["mosum_p"][p] - r[row, 0]) <= 1e-5 * max(r[row, 0], 1e-3), p
        valid_years = years[np.isfinite(values[:, p])]
        for i in range(count):
            assert written[f"bp{i + 1}_year"][p] == valid_years[int(r[row, 2 + i]) - 1], p
        for s in range(count + 1):
            want = r[row, 2 + breaks + s]
            assert abs(written[f"seg{s + 1}_slope"][p] - want) <= 1e-5 * abs(want) + 1e-9, (p, s)
    return fitted


def read_bands(path: Path) -> dict[str, np.ndarray]:
    import rasterio

    with rasterio.open(path) as ds:
        return {name: ds.read(i + 1).ravel() for i, name in enumerate(ds.descriptions)}


def workload(label: str, folder: Path, args, work: Path) -> dict:
    stack = open_stack(folder)
    values = stack.read()
    close_cached()
    years = np.asarray(stack.years, dtype=np.float64)
    pixels = values.shape[1]
    report: dict = {"years": len(years), "pixels": pixels, "load_at_start": load()}
    options = {"ols": [], "ols + breaks 1": ["--breaks", "1"], "ols + breaks 3": ["--breaks", "3"],
               "sen": ["--method", "sen"]}
    outputs = {name: work / f"{label}_{name.replace(' ', '').replace('+', '_')}.tif" for name in options}
    commands = {name: eetrend_command("trend", str(folder), "-o", str(outputs[name]), "--overwrite", "-q", *extra)
                for name, extra in options.items()}
    run(commands["sen"])  # a first run: files in the page cache, Sen's compiled kernel cached
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):  # interleaved, so a change of load falls on every command alike
        for name, command in commands.items():
            times[name].append(run(command))
    report["end_to_end_s"] = {name: statistics.median(t) for name, t in times.items()}
    report["end_to_end_runs_s"] = times

    picked = np.sort(np.random.default_rng(1).choice(pixels, args.r_pixels, replace=False))
    fit_breaks(values[:, :1000], years, 1)  # imports (scipy.special) and Sen's compiled kernel loaded first
    fit_pixels(values[:, :1000], years, method="sen")
    report["kernel_cpu_us_per_pixel"] = {
        "fit_breaks, 1 break": 1e6 * cpu_seconds(lambda: fit_breaks(values, years, 1)) / pixels,
        "fit_breaks, 3 breaks": 1e6 * cpu_seconds(lambda: fit_breaks(values, years, 3)) / pixels,
        "sen + mann-kendall": 1e6 * cpu_seconds(lambda: fit_pixels(values, years, method="sen")) / pixels,
    }
    for breaks in (1, 3):
        per_pixel, r = r_peer(values, years, picked, breaks, work)
        fitted = agree(read_bands(outputs[f"ols + breaks {breaks}"]), r, values, years, picked, breaks)
        r_total = per_pixel * pixels
        ours = report["end_to_end_s"][f"ols + breaks {breaks}"]
        report[f"r_breaks_{breaks}"] = {
            "sampled_pixels": len(picked), "fitted_of_them": fitted, "ms_per_pixel": 1e3 * per_pixel,
            "extrapolated_serial_s": r_total, "speed_up_serial": r_total / ours,
            "speed_up_against_r_on_every_core": r_total / os.cpu_count() / ours,
        }
    report["load_at_end"] = load()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--r-pixels", type=int, default=300, help="pixels timed with R's strucchange")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = [("seed", range(2000, 2021), 855, 854), ("40y", range(1981, 2021), 1000, 1000)]
    if args.quick:
        sizes = [("seed", range(2000, 2021), 128, 128), ("40y", range(1981, 2021), 128, 128)]
        args.repeats, args.r_pixels = 1, 40
    results = {"cores": os.cpu_count()}
    for label, years, rows, cols in sizes:
        folder = ensure_sample(args.work / f"s{rows}x{cols}" if len(years) == 21 else
                               args.work / f"s{len(years)}y{rows}x{cols}", years, rows, cols)
        results[label] = report = workload(label, folder, args, args.work)
        e2e, pixels = report["end_to_end_s"], report["pixels"]
        print(f"\n{label}: {report['years']} years x {pixels:,} pixels; load {report['load_at_start']:.2f} at the "
              f"start, {report['load_at_end']:.2f} at the end")
        for name, seconds in e2e.items():
            print(f"  eetrend trend {name:<15} {seconds:7.2f} s  {1e6 * seconds / pixels:6.2f} us/pixel")
        for breaks in (1, 3):
            extra = e2e[f"ols + breaks {breaks}"] - e2e["ols"]
            print(f"  breaks {breaks} over OLS: +{extra:.2f} s ({1e6 * extra / pixels:.2f} us/pixel; Sen over OLS: "
                  f"+{1e6 * (e2e['sen'] - e2e['ols']) / pixels:.2f} us/pixel)")
        for name, us in report["kernel_cpu_us_per_pixel"].items():
            print(f"  kernel, one thread: {name:<22} {us:6.2f} us/pixel")
        for breaks in (1, 3):
            r = report[f"r_breaks_{breaks}"]
            print(f"  R strucchange, breaks = {breaks}: {r['ms_per_pixel']:.2f} ms/pixel over {r['sampled_pixels']} "
                  f"pixels ({r['fitted_of_them']} fitted, all equal to eetrend's), {r['extrapolated_serial_s']:.0f} s "
                  f"extrapolated: eetrend {r['speed_up_serial']:.0f}x faster "
                  f"({r['speed_up_against_r_on_every_core']:.0f}x against R on all {results['cores']} cores)")
    out = ROOT / "benchmarks" / "results" / "breaks.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
