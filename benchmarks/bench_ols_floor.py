"""Benchmark: ``eetrend trend --method ols`` end to end against its I/O floor, in one run.

Workload: 40 annual float32 GeoTIFFs (1981-2020) written by ``eetrend sample``
(5 % missing, tiled 256 x 256, deflate, as bench_scene.py caches them).
The floor, measured in this process: reading every file whole on both cores (a
pool of as many threads as cores, one whole file per task), then writing an
8-band float32 GeoTIFF with the OLS output's size and profile (RasterWriter's
own profile, the bands of a real OLS output held in memory). Against it: a fresh
``eetrend trend --method ols`` process, interpreter start included. The two are
interleaved, ``--repeats`` times; medians and the load average are reported.

Run: python benchmarks/bench_ols_floor.py [--size 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from program import eetrend_command  # noqa: E402

from pipeline.engine.sample import write_sample  # noqa: E402
from pipeline.engine.stack import Grid  # noqa: E402
from pipeline.files.outputs import RasterWriter  # noqa: E402

YEARS = tuple(range(1981, 2021))


def ensure_stack(work: Path, size: int) -> Path:
    folder = work / f"s{size}x{size}"
    if not (folder / "truth" / "true_slope.tif").exists():
        write_sample(folder, years=YEARS, rows=size, cols=size, nan_fraction=0.05, seed=0)
    return folder


def read_whole(files: list[Path], workers: int) -> float:
    def read(path: Path) -> None:
        with rasterio.open(path) as ds:
            ds.read(1)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(read, files))
    return time.perf_counter() - started


def write_like_output(reference: Path, out: Path) -> float:
    """Write the bands of ``reference`` (an OLS output) with its profile, timed from open to close."""
    with rasterio.open(reference) as ds:
        data = ds.read()
        profile = ds.profile
    grid = Grid(profile["crs"].to_wkt() if profile["crs"] else "", tuple(profile["transform"])[:6],
                profile["width"], profile["height"])
    options = RasterWriter(out, grid, tuple(f"b{i}" for i in range(data.shape[0]))).profile()  # the output's own
    started = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=64 << 20), rasterio.open(out, "w", **options) as ds:
        ds.write(data.astype(np.float32))
    elapsed = time.perf_counter() - started
    out.unlink()
    return elapsed


def trend_process(folder: Path, out: Path) -> float:
    command = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", "--method", "ols")
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    args.work.mkdir(parents=True, exist_ok=True)
    folder = ensure_stack(args.work, args.size)
    files = sorted(folder.glob("*.tif"))
    out = args.work / f"ols_{args.size}.tif"
    load_start = os.getloadavg()
    trend_process(folder, out)  # warm the page cache and give the floor a real output to copy
    runs: dict[str, list[float]] = {"read": [], "write": [], "floor": [], "trend": []}
    for _ in range(args.repeats):
        read = read_whole(files, cores)
        write = write_like_output(out, args.work / "floor_write.tif")
        runs["read"].append(read)
        runs["write"].append(write)
        runs["floor"].append(read + write)
        runs["trend"].append(trend_process(folder, out))
    median = {k: statistics.median(v) for k, v in runs.items()}
    ratio = median["trend"] / median["floor"]
    load = ", ".join(f"{v:.1f}" for v in load_start)
    print(f"{args.size} x {args.size} x {len(files)}, {cores} cores, load average {load} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; medians of {args.repeats}")
    print(f"floor: read whole files {median['read']:.2f} s + write 8 bands {median['write']:.2f} s = "
          f"{median['floor']:.2f} s; eetrend trend --method ols {median['trend']:.2f} s: {ratio:.2f}x the floor")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"ols_floor_{args.size}.json").write_text(json.dumps(
        {"size": args.size, "cores": cores, "load_start": load, "runs": runs, "median": median, "ratio": ratio},
        indent=2))


if __name__ == "__main__":
    main()
