"""Benchmark: converting a finished trend GeoTIFF to cog, netcdf and zarr; time and peak memory as ratios.

Workload: a trend-like GeoTIFF of 17 float32 bands (the bands of ``--method both``),
smooth fields plus noise with 5 % NaN, tiled 256 and zstd-compressed as eetrend writes
it, at two sizes (default 1500 and 3000 pixels square, 4x the pixels). Each conversion
runs in a fresh process; we report the median wall time over --repeats, the conversion
time relative to writing the GeoTIFF itself, and the peak RSS of the larger size relative
to the smaller one (flat memory means a ratio near 1: conversion goes strip by strip).

Run: python benchmarks/bench_formats.py [--sizes 1500 3000] [--repeats 3].
Results go to benchmarks/results/formats.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "results" / "formats-work"
BANDS = 17

CHILD = r'''
import resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from pipeline.engine.formats import convert
source, target, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
convert(source, target, kind, overwrite=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
'''

BASELINE = r'''
import resource, sys, time
import rasterio
print(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
'''


def write_trend_like(path: Path, size: int) -> float:
    """A 17-band float32 GeoTIFF like eetrend's; returns the seconds writing it took."""
    import time

    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "dtype": "float32", "count": BANDS, "width": size, "height": size,
               "crs": "EPSG:32633", "transform": from_origin(500_000, 5_000_000, 30, 30), "nodata": float("nan"),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "zstd", "predictor": 3,
               "zstd_level": 1, "BIGTIFF": "IF_SAFER", "INTERLEAVE": "BAND"}
    started = time.perf_counter()
    with rasterio.open(path, "w", **profile) as dst:
        yy, xx = np.mgrid[0:256, 0:size].astype(np.float32) / size
        for top in range(0, size, 256):
            rows = min(256, size - top)
            for band in range(1, BANDS + 1):
                block = np.sin(xx[:rows] * band + top / size) * 0.01 + rng.normal(0, 1e-3, (rows, size))
                block = block.astype(np.float32)
                block[rng.random(block.shape) < 0.05] = np.nan
                dst.write(block, band, window=rasterio.windows.Window(0, top, size, rows))
        dst.descriptions = tuple(f"band{i}" for i in range(1, BANDS + 1))
    return time.perf_counter() - started


def child(code: str, *args: str) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    seconds, rss = out.stdout.split()
    return float(seconds), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1500, 3000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict = {"sizes": args.sizes, "repeats": args.repeats, "runs": {}}
    _, baseline_rss = child(BASELINE)
    results["interpreter_rss_bytes"] = baseline_rss
    for size in args.sizes:
        source = WORK / f"trend_{size}.tif"
        write_seconds = write_trend_like(source, size)
        row = {"write_geotiff_seconds": write_seconds, "geotiff_bytes": source.stat().st_size}
        for kind, suffix in (("cog", ".tif"), ("netcdf", ".nc"), ("zarr", ".zarr")):
            target = WORK / f"out_{size}{'_cog' if kind == 'cog' else ''}{suffix}"
            times, peaks = [], []
            for _ in range(args.repeats):
                seconds, rss = child(CHILD, str(source), str(target), kind, str(ROOT))
                times.append(seconds)
                peaks.append(rss)
            row[kind] = {"median_seconds": statistics.median(times), "peak_rss_bytes": max(peaks),
                         "vs_geotiff_write": statistics.median(times) / write_seconds}
        results["runs"][str(size)] = row
    small, large = (results["runs"][str(s)] for s in args.sizes)
    print(f"{'format':8} " + " ".join(f"{s}px: s  (x write)  peak MB" for s in args.sizes) + "   RSS ratio")
    for kind in ("cog", "netcdf", "zarr"):
        cells = [f"{r[kind]['median_seconds']:7.2f} ({r[kind]['vs_geotiff_write']:4.2f}) "
                 f"{r[kind]['peak_rss_bytes'] / 2**20:7.0f}" for r in (small, large)]
        ratio = large[kind]["peak_rss_bytes"] / small[kind]["peak_rss_bytes"]
        print(f"{kind:8} " + "   ".join(cells) + f"   {ratio:.2f}")
        results[f"{kind}_rss_ratio"] = ratio
    out = ROOT / "benchmarks" / "results" / "formats.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(WORK, ignore_errors=True)
    print(f"pixel ratio {args.sizes[1] ** 2 / args.sizes[0] ** 2:.1f}; interpreter alone "
          f"{baseline_rss / 2**20:.0f} MB; results in {out}")


if __name__ == "__main__":
    main()
