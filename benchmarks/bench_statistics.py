"""Benchmark: what each reviewer option costs next to plain Sen + Mann-Kendall, and FDR's memory.

Workload: the seed's, 21 years x 855 x 854 pixels (about 5 % missing), written by
``eetrend sample`` (shared with bench_trend.py), plus a copy whose files carry a second
band of clear-scene counts (the emulator's generator). Timed here, in this run:

* the in-process kernels (``fit_pixels`` on 200,000 pixels of the stack), plain and with
  each option, repeats interleaved, as a ratio of medians;
* ``eetrend trend --method sen`` end to end as a fresh process, median of --repeats runs,
  plain and with each option: every --mk-test, --changepoint pettitt, coverage rules,
  --count-band/--min-count, --fdr bh; each as a ratio to the plain run;
* peak RSS of the whole process tree with ``--fdr bh`` on the stack and on one 4 times
  larger (twice the rows and columns), under the same --memory-budget; the bar is 1.25x.

Run: python benchmarks/bench_statistics.py [--quick]. Results print as a table and go to
benchmarks/results/statistics.json. Quote medians and the load average printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_trend import eetrend_command, ensure_sample, peak_tree_rss, run_process  # noqa: E402

from pipeline.emulator.rasters import clear_counts  # noqa: E402

OPTIONS = {
    "sen (plain)": [],
    "--mk-test hamed-rao": ["--mk-test", "hamed-rao"],
    "--mk-test yue-wang": ["--mk-test", "yue-wang"],
    "--mk-test prewhiten": ["--mk-test", "prewhiten"],
    "--mk-test tfpw": ["--mk-test", "tfpw"],
    "--changepoint pettitt": ["--changepoint", "pettitt"],
    "--min-fraction 0.8 --edge-years 3": ["--min-fraction", "0.8", "--edge-years", "3"],
    "--fdr bh": ["--fdr", "bh"],
}


def with_counts(folder: Path, out: Path) -> Path:
    """The sample's files with a second band: plausible clear-scene counts."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob("ndvi_*.tif")):
        target = out / path.name
        if target.exists():
            continue
        with rasterio.open(path) as src:
            value = src.read(1)
            profile = src.profile | {"count": 2}
        year = int(path.stem.split("_")[1])
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(np.stack([value, clear_counts(year, value)]))
    return out


def kernel_ratios(seed: Path, repeats: int, pixels: int = 200_000) -> dict[str, dict]:
    """In-process fit_pixels of part of the seed stack, each option against plain Sen + MK.

    Repeats are interleaved (plain, option, plain, option, ...) so that a change in the
    machine's load hits both sides; the ratio is of the medians.
    """
    import time

    from pipeline.engine.kernels import fit_pixels
    from pipeline.engine.kernels.extras import Extras
    from pipeline.engine.stack import close_cached, open_stack

    stack = open_stack(seed)
    values = stack.read()[:, :pixels]
    close_cached()
    rng = np.random.default_rng(0)
    counts = rng.poisson(8.0, size=values.shape).astype(np.float32)
    options = {"--mk-test hamed-rao": Extras(mk_test="hamed-rao"), "--mk-test yue-wang": Extras(mk_test="yue-wang"),
               "--mk-test prewhiten": Extras(mk_test="prewhiten"), "--mk-test tfpw": Extras(mk_test="tfpw"),
               "--changepoint pettitt": Extras(changepoint="pettitt"),
               "--min-fraction 0.8 --edge-years 3": Extras(min_fraction=0.8, edge_years=3),
               "--count-band 2 --min-count 3": Extras(counts=True, min_count=3)}
    out = {}
    for name, extras in options.items():
        plain, timed = [], []
        for _ in range(repeats):
            for target, kwargs in ((plain, {}), (timed, {"extras": extras, "counts": counts})):
                started = time.perf_counter()
                fit_pixels(values, stack.years, "sen", dtype=np.float32, **kwargs)
                target.append(time.perf_counter() - started)
        out[name] = {"plain_s": statistics.median(plain), "option_s": statistics.median(timed),
                     "ratio": statistics.median(timed) / statistics.median(plain)}
        row = out[name]
        print(f"{name:<36} {row['option_s']:>9.3f} {row['ratio']:>8.2f}   plain {row['plain_s']:.3f} s   load {load()}",
              flush=True)
    return out


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=855)
    parser.add_argument("--cols", type=int, default=854)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-budget", default="256MB", help="for the timings")
    parser.add_argument("--rss-budget", default="128MB", help="for the RSS runs: small, so FDR works in groups")
    parser.add_argument("--work", type=Path, default=Path("/tmp/eetrend-bench"))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--kernels-only", action="store_true", help="only the in-process kernel ratios")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.cols, args.repeats = 200, 200, 1
    size = f"{args.rows}x{args.cols}"
    seed = ensure_sample(args.work / f"seed-{size}", args.rows, args.cols)
    counted = with_counts(seed, args.work / f"seed-{size}-counts")
    print(f"in-process fit_pixels, {min(200_000, args.rows * args.cols)} pixels x 21 years, interleaved medians of "
          f"{max(args.repeats, 5)}; load {load()}", flush=True)
    print(f"{'option':<36} {'median s':>9} {'x plain':>8}", flush=True)
    kernels = kernel_ratios(seed, max(args.repeats, 5))
    if args.kernels_only:
        return
    out = args.work / "statistics-out.tif"
    common = ["--method", "sen", "--workers", str(args.workers), "--overwrite", "-q", "-o", str(out)]
    timed = [*common, "--memory-budget", args.memory_budget]
    runs = dict(OPTIONS)
    runs["--count-band 2 --min-count 3"] = ["--count-band", "2", "--min-count", "3"]
    results: dict[str, dict] = {}
    print(f"seed workload {size} x 21 years, {args.workers} workers, budget {args.memory_budget}; load {load()}",
          flush=True)
    print(f"{'option':<36} {'median s':>9} {'x plain':>8}", flush=True)
    for name, extra in runs.items():
        source = counted if "--count-band" in extra else seed
        times = [run_process(eetrend_command("trend", str(source), *timed, *extra)) for _ in range(args.repeats)]
        row = results[name] = {"median_s": statistics.median(times), "times_s": times}
        row["ratio"] = row["median_s"] / results["sen (plain)"]["median_s"]
        print(f"{name:<36} {row['median_s']:>9.2f} {row['ratio']:>8.2f}   load {load()}", flush=True)

    big = ensure_sample(args.work / f"seed-{2 * args.rows}x{2 * args.cols}", 2 * args.rows, 2 * args.cols)
    rss = {}
    for label, folder in (("1x", seed), ("4x", big)):
        wall, peak = peak_tree_rss(eetrend_command("trend", str(folder), *common, "--memory-budget",
                                                   args.rss_budget, "--fdr", "bh"))
        rss[label] = {"wall_s": wall, "peak_rss_mb": peak / 2**20}
    ratio = rss["4x"]["peak_rss_mb"] / rss["1x"]["peak_rss_mb"]
    print(f"--fdr bh peak RSS of the process tree: 1x {rss['1x']['peak_rss_mb']:.0f} MB, "
          f"4x {rss['4x']['peak_rss_mb']:.0f} MB, ratio {ratio:.2f} (bar 1.25), budget {args.rss_budget}", flush=True)
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "statistics.json").write_text(json.dumps(
        {"workload": f"{size} x 21 years", "workers": args.workers, "memory_budget": args.memory_budget,
         "rss_budget": args.rss_budget,
         "load": load(), "kernels": kernels, "options": results, "fdr_rss": rss, "fdr_rss_ratio": ratio},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
