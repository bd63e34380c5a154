"""Benchmark: ``eetrend report`` stays within its memory as the raster grows.

Workload: synthetic stacks of 21 years (``eetrend sample``) at 1x and 2x the pixels
(default 1500 x 1500 and 2121 x 2121), each fitted with OLS, then ``eetrend report
TREND.tif --memory-budget 64MB`` as a fresh process. The report reads the trend file
and the 21 inputs strip by strip (areas, histogram, exact quantiles in a few passes)
and draws pictures of at most 1200 pixels a side, so its peak RSS should not grow
with the raster, while its time grows about linearly.

Run: python benchmarks/bench_report.py [--size 1500] [--repeats 3]. Prints medians
and the 2x/1x ratios, and writes benchmarks/results/report.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trend import ROOT, eetrend_command, peak_tree_rss, run_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1500, help="Edge of the 1x raster in pixels.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", default="64MB")
    args = parser.parse_args()
    work = ROOT / "benchmarks" / "results" / "report_work"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    for label, edge in (("1x", args.size), ("2x", round(args.size * 2**0.5))):
        stack, trend = work / f"stack_{edge}", work / f"trend_{edge}.tif"
        if not trend.exists():
            run_process(eetrend_command("sample", str(stack), "--years", "1995-2015", "--size", f"{edge}x{edge}"))
            run_process(eetrend_command("trend", str(stack), "-o", str(trend), "--method", "ols", "-q"))
        runs = [peak_tree_rss(eetrend_command("report", str(trend), "--memory-budget", args.budget))
                for _ in range(args.repeats)]
        results[label] = {"pixels": edge * edge, "seconds": statistics.median(t for t, _ in runs),
                          "peak_rss_mb": statistics.median(p for _, p in runs) / 2**20}
    ratio_time = results["2x"]["seconds"] / results["1x"]["seconds"]
    ratio_rss = results["2x"]["peak_rss_mb"] / results["1x"]["peak_rss_mb"]
    for label, row in results.items():
        print(f"{label}: {row['pixels']:,} pixels x 21 years: {row['seconds']:.1f} s, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB (medians of {args.repeats})")
    print(f"2x / 1x: time {ratio_time:.2f}, peak RSS {ratio_rss:.2f} (budget {args.budget})")
    out = ROOT / "benchmarks" / "results" / "report.json"
    out.write_text(json.dumps({"budget": args.budget, "results": results, "ratio_time": ratio_time,
                               "ratio_peak_rss": ratio_rss}, indent=2) + "\n")


if __name__ == "__main__":
    main()
