"""Benchmark: ``eetrend trend --method ols`` end to end against its I/O floor, in one run.

Workload: 40 annual float32 GeoTIFFs (1981-2020) written by ``eetrend sample``
(5 % missing, tiled 256 x 256, deflate, as bench_scene.py caches them).
The floor, measured in this process: reading every file whole on both cores (a
pool of as many threads as cores, one whole file per task), then writing an
8-band float32 GeoTIFF with the OLS output's size and profile (RasterWriter's
own profile, the bands of a real OLS output held in memory). Against it: a fresh
``eetrend trend --method ols`` process, interpreter start included. The two are
interleaved, ``--repeats`` times; medians and the load average are reported.

Then where an OLS run's time must go, measured in this run, and the least wall time
those parts allow on this machine's cores however well they overlap: the start-up
before the first read (a fresh process doing only that, see program.py) and opening
the stack, which nothing runs beside; then, shared by the cores, the floor's own
reading (CPU seconds of the whole-file reads above), the writing (CPU seconds of the
floor's write), the fit (CPU seconds of ``fit_pixels`` on one window, scaled to the
raster) and loading the compiled kernel (CPU seconds of a fresh process's first
``warm_up``: importing numba and its first call). That bound, against the floor, says
how close to the floor an OLS run can come at all, with and without numba's load.

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
from program import eetrend_command, startup_time  # noqa: E402

from pipeline.engine.kernels import fit_pixels  # noqa: E402
from pipeline.engine.sample import write_sample  # noqa: E402
from pipeline.engine.stack import Grid, close_cached, open_stack  # noqa: E402
from pipeline.engine.windows import plan_windows  # noqa: E402
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


def cpu_of(work) -> float:
    """CPU seconds of this process (all its threads) while ``work()`` runs."""
    started = time.process_time()
    work()
    return time.process_time() - started


def kernel_load_cpu() -> float:
    """CPU seconds a fresh process spends loading OLS's compiled kernel (numba's import and first call)."""
    code = ("import time, importlib, numpy as np; ols = importlib.import_module('pipeline.engine.kernels.ols'); "
            "t = time.process_time(); ols.warm_up(np.float32); print(time.process_time() - t)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def open_and_fit_cpu(folder: Path) -> tuple[float, float]:
    """Seconds to open the stack as a run does, and CPU seconds of fitting all its pixels (one window's
    fit, the median of five after a warm-up, scaled to the raster)."""
    started = time.perf_counter()
    stack = open_stack(str(folder))
    opened = time.perf_counter() - started
    window = plan_windows(stack.grid.height, stack.grid.width, bytes_per_pixel=400, workers=2)[0]
    values = stack.read(window)
    close_cached()

    def fit() -> None:
        fit_pixels(values, stack.years, method="ols", dtype=np.float32)

    fit()
    per_window = statistics.median(cpu_of(fit) for _ in range(5))
    return opened, per_window * stack.grid.pixels / values.shape[1]


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
    runs: dict[str, list[float]] = {"read": [], "write": [], "floor": [], "trend": [], "read_cpu": [],
                                    "write_cpu": [], "startup": [], "kernel_load_cpu": []}
    for _ in range(args.repeats):
        read_cpu = time.process_time()
        read = read_whole(files, cores)
        runs["read_cpu"].append(time.process_time() - read_cpu)
        write_cpu = time.process_time()
        write = write_like_output(out, args.work / "floor_write.tif")
        runs["write_cpu"].append(time.process_time() - write_cpu)
        runs["startup"].append(startup_time(folder, out, 1, ROOT))
        runs["kernel_load_cpu"].append(kernel_load_cpu())
        runs["read"].append(read)
        runs["write"].append(write)
        runs["floor"].append(read + write)
        runs["trend"].append(trend_process(folder, out))
    median = {k: statistics.median(v) for k, v in runs.items()}
    ratio = median["trend"] / median["floor"]
    median["open"], median["fit_cpu"] = open_and_fit_cpu(folder)
    serial = median["startup"] + median["open"]
    shared = median["read_cpu"] + median["write_cpu"] + median["fit_cpu"]
    bound = serial + (shared + median["kernel_load_cpu"]) / cores
    bound_unloaded = serial + shared / cores
    load = ", ".join(f"{v:.1f}" for v in load_start)
    print(f"{args.size} x {args.size} x {len(files)}, {cores} cores, load average {load} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; medians of {args.repeats}")
    print(f"floor: read whole files {median['read']:.2f} s + write 8 bands {median['write']:.2f} s = "
          f"{median['floor']:.2f} s; eetrend trend --method ols {median['trend']:.2f} s: {ratio:.2f}x the floor")
    print(f"parts: start-up {median['startup']:.2f} s + opening the stack {median['open']:.2f} s, then CPU seconds "
          f"shared by {cores} cores: reading {median['read_cpu']:.2f}, writing {median['write_cpu']:.2f}, "
          f"fitting {median['fit_cpu']:.2f}, loading the compiled kernel {median['kernel_load_cpu']:.2f}")
    print(f"least wall time these parts allow: {bound:.2f} s = {bound / median['floor']:.2f}x the floor; "
          f"without the kernel's load {bound_unloaded:.2f} s = {bound_unloaded / median['floor']:.2f}x")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"ols_floor_{args.size}.json").write_text(json.dumps(
        {"size": args.size, "cores": cores, "load_start": load, "runs": runs, "median": median, "ratio": ratio,
         "bound_s": bound, "bound_ratio": bound / median["floor"], "bound_without_load_s": bound_unloaded},
        indent=2))


if __name__ == "__main__":
    main()
