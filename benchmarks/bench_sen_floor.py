"""Benchmark: Sen + Mann-Kendall through ``pipeline.fit`` against numpy sorting the same pairwise slopes.

The definition is issue 24's: for each length (10, 21, 30 and 40 years), the
wall time of ``pipeline.fit(values, years, method="sen")`` on a synthetic stack
against the wall time of ``np.sort(slopes, axis=1)``, where ``slopes`` is a
prebuilt C-contiguous float64 array of shape (pixels, pairs) holding the same
pixels' pairwise slopes ``(y_j - y_i) / (x_j - x_i)`` (NaN where a year is
missing; building it is not timed). One thread: numpy, OpenBLAS and numba are
held to one thread, and ``pipeline.fit`` fits in the calling thread.

The stacks are a trend plus noise with 5 % of the values missing, as Landsat
composites have, in float32 (what the engine reads) and float64. The two timings
alternate, repeat by repeat, after one untimed warm-up of each (imports, numba's
cache, first allocations); the table gives their medians, the ratio of the
medians, and the load average before and after. The same ratio with the floor
sorting in place (``slopes.sort(axis=1)`` on a fresh copy made untimed, a lower
floor than the definition's) is printed beside it.

Run: python benchmarks/bench_sen_floor.py [--pixels 131072] [--repeats 7] [--years 10 21 30 40]
Results go to benchmarks/results/sen_floor.json.
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy or numba is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pipeline  # noqa: E402


def stack(n_years: int, pixels: int, dtype: type, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (years, pixels) stack: a per-pixel trend plus noise, 5 % missing; and its years."""
    rng = np.random.default_rng(seed)
    years = np.arange(2020 - n_years + 1, 2021).astype(np.float64)
    slope = rng.normal(0.002, 0.004, pixels)
    values = 0.4 + slope * (years[:, None] - years.mean()) + rng.normal(0, 0.03, (n_years, pixels))
    values[rng.random(values.shape) < 0.05] = np.nan
    return values.astype(dtype), years


def pairwise_slopes(values: np.ndarray, years: np.ndarray) -> np.ndarray:
    """The C-contiguous float64 (pixels, pairs) array of every pair i < j's slope, NaN where a year is missing."""
    i, j = np.triu_indices(len(years), k=1)
    columns = values.astype(np.float64)
    slopes = (columns[j] - columns[i]) / (years[j] - years[i])[:, None]  # (pairs, pixels)
    return np.ascontiguousarray(slopes.T)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(n_years: int, pixels: int, dtype: type, repeats: int) -> dict[str, float | int | str]:
    """Medians of interleaved wall times: pipeline.fit, np.sort (the definition), and an in-place sort."""
    values, years = stack(n_years, pixels, dtype)
    slopes = pairwise_slopes(values, years)
    assert slopes.flags.c_contiguous and slopes.dtype == np.float64
    scratch = np.empty_like(slopes)
    fit_s, sort_s, inplace_s = [], [], []
    pipeline.fit(values, years, method="sen")  # warm-up: imports, the compiled kernel, first allocations
    np.sort(slopes, axis=1)
    for _ in range(repeats):
        began = time.perf_counter()
        result = pipeline.fit(values, years, method="sen")
        fit_s.append(time.perf_counter() - began)
        del result
        began = time.perf_counter()
        ordered = np.sort(slopes, axis=1)
        sort_s.append(time.perf_counter() - began)
        del ordered
        np.copyto(scratch, slopes)
        began = time.perf_counter()
        scratch.sort(axis=1)
        inplace_s.append(time.perf_counter() - began)
    fit_median, sort_median, inplace_median = (statistics.median(t) for t in (fit_s, sort_s, inplace_s))
    return {
        "years": n_years, "pairs": slopes.shape[1], "pixels": pixels, "dtype": np.dtype(dtype).name,
        "fit_s": fit_median, "sort_s": sort_median, "ratio": fit_median / sort_median,
        "inplace_sort_s": inplace_median, "ratio_inplace": fit_median / inplace_median,
        "fit_all_s": fit_s, "sort_all_s": sort_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=1 << 17)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--years", type=int, nargs="+", default=[10, 21, 30, 40])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    args = parser.parse_args()
    from pipeline.engine.kernels import compiled

    print(f"load average at the start: {load_average()}; {args.pixels} pixels, {args.repeats} interleaved repeats, "
          f"numpy {np.__version__}, kernel: {'numpy' if compiled.turned_off() else 'default'}", flush=True)
    print(f"{'years':>5} {'pairs':>5} {'dtype':>7} {'fit s':>8} {'np.sort s':>9} {'ratio':>6} "
          f"{'in-place s':>10} {'ratio':>6}  load")
    rows = []
    for n_years in args.years:
        for dtype in args.dtypes:
            row = measure(n_years, args.pixels, np.dtype(dtype).type, args.repeats)
            row["load"] = load_average()
            rows.append(row)
            print(f"{row['years']:>5} {row['pairs']:>5} {row['dtype']:>7} {row['fit_s']:>8.4f} {row['sort_s']:>9.4f} "
                  f"{row['ratio']:>6.2f} {row['inplace_sort_s']:>10.4f} {row['ratio_inplace']:>6.2f}  {row['load']}",
                  flush=True)
    print(f"load average at the end: {load_average()}")
    out = ROOT / "benchmarks" / "results" / "sen_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
