"""Benchmark: a Landsat scene over 40 years, the scaling curve, and Sen's kernel against its floor, in one run.

Workload: 40 annual float32 rasters (1981-2020) written once by ``eetrend sample``
(5 % missing, tiled 256 x 256, deflate) at 1000 x 1000, 2000 x 2000 and 4000 x 4000
pixels, cached under --work. Everything below is measured in this run:

* the floor: numpy sorting each pixel's pairwise slopes once (in place, in the
  kernel's own chunks, slopes built beforehand and not timed), against
  ``sen_mk`` on the same pixels, interleaved block by block, at 21 and at 40 years
  (CPU time of this thread, so other processes' load counts little);
* reading only: the 4000 x 4000 stack read window by window by as many threads as
  cores, nothing fitted;
* ``eetrend trend`` as a user runs it (a fresh process, interpreter start
  included) on the 4000 x 4000 stack with --method ols, sen and both: wall time,
  the engine's split (open, read and fit summed over workers, write, finish),
  throughput in pixel-years per second per core, peak RSS of the process tree
  (psutil, sampled every 5 ms), and the extrapolation to a 7000 x 8000 scene
  (start-up once, the rest in proportion to the pixels);
* the scaling curve with --method both: time against pixels (1x, 4x, 16x) at 40
  years, and against years (10, 20, 40) at 1000 x 1000, drawn to
  benchmarks/scene_scaling.png.

Run: python benchmarks/bench_scene.py [--quick]. Results go to benchmarks/results/scene.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from program import eetrend_command, startup_time  # noqa: E402
from tree_rss import run_with_peak_rss  # noqa: E402

from pipeline.engine.kernels.robust import pair_chunk, pairwise_differences, sen_mk, year_gaps  # noqa: E402
from pipeline.engine.sample import write_sample  # noqa: E402
from pipeline.engine.stack import close_cached, open_stack  # noqa: E402
from pipeline.engine.windows import plan_windows  # noqa: E402

YEARS = tuple(range(1981, 2021))
SCENE = (7000, 8000)
SUMMARY = re.compile(
    r"in (?P<wall>[\d.]+) s \((?P<windows>\d+) windows, (?P<workers>\d+) worker\(s\); summed over workers: "
    r"read (?P<read>[\d.]+) s, fit (?P<fit>[\d.]+) s; writing (?P<write>[\d.]+) s\)"
)


def ensure_stack(work: Path, size: int) -> Path:
    folder = work / f"s{size}x{size}"
    if not (folder / "truth" / "true_slope.tif").exists():
        print(f"writing the {size} x {size} x {len(YEARS)} stack to {folder} (once)", flush=True)
        write_sample(folder, years=YEARS, rows=size, cols=size, nan_fraction=0.05, seed=0)
    return folder


# --- the kernel against its floor ----------------------------------------------------------------


def kernel_against_floor(values: np.ndarray, years: np.ndarray, block: int = 1 << 14) -> dict[str, float]:
    """CPU seconds of sen_mk and of sorting the same slopes, interleaved block by block."""
    sen_mk(values[:, :256], years)  # warm up: imports, first allocations
    n_years = len(years)
    step = pair_chunk(n_years)
    buffer = np.empty((step, n_years * (n_years - 1) // 2))
    gaps = year_gaps(years)
    kernel = floor = 0.0
    for start in range(0, values.shape[1], block):
        chunk = values[:, start : start + block]
        began = time.thread_time()
        sen_mk(chunk, years)
        kernel += time.thread_time() - began
        for first in range(0, chunk.shape[1], step):
            part = np.ascontiguousarray(chunk[:, first : first + step], dtype=np.float64)
            slopes = pairwise_differences(part, buffer[: part.shape[1]])
            slopes /= gaps
            began = time.thread_time()
            slopes.sort(axis=1)
            floor += time.thread_time() - began
    pixels = values.shape[1]
    return {"pixels": pixels, "kernel_cpu_s": kernel, "floor_cpu_s": floor, "ratio": kernel / floor,
            "floor_ns_per_pixel": floor / pixels * 1e9}


# --- reading only ---------------------------------------------------------------------------------


def read_only(folder: Path, workers: int) -> float:
    """Wall seconds to read every window of the stack with ``workers`` threads, fitting nothing."""
    import rasterio

    stack = open_stack(folder)
    windows = plan_windows(stack.grid.height, stack.grid.width, bytes_per_pixel=4 * len(stack.layers) + 200,
                           workers=workers, budget=1 << 30)
    local = threading.local()

    def read(window) -> None:
        local.values = stack.read(window, out=getattr(local, "values", None))

    started = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=64 << 20):
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(read, windows))
        close_cached()
    return time.perf_counter() - started


# --- eetrend as a user runs it --------------------------------------------------------------------


def run_trend(folder: Path, out: Path, *args: str) -> dict[str, float]:
    """One fresh ``eetrend trend`` process: wall time, the engine's split and the tree's peak RSS."""
    command = eetrend_command("trend", str(folder), "-o", str(out), "--overwrite", *args)
    wall, peak, code, err = run_with_peak_rss(command, ROOT, keep_stderr=True)
    match = SUMMARY.search(err)
    if code != 0 or match is None:
        raise RuntimeError(f"{command} exited {code}: {err}")
    found = {k: float(v) for k, v in match.groupdict().items()}
    return {"process_s": wall, "engine_s": found.pop("wall"), "peak_rss_mb": peak / 2**20, **found}


def draw(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    pixels = [p["pixels"] / 1e6 for p in curve["pixels"]]
    seconds = [p["process_s"] for p in curve["pixels"]]
    left.plot(pixels, seconds, "o-", label="eetrend trend --method both")
    left.plot(pixels, [seconds[0] * p / pixels[0] for p in pixels], "--", color="grey", label="proportional to pixels")
    left.set(xscale="log", yscale="log", xlabel="pixels (millions), 40 years", ylabel="seconds (whole process)",
             title="time against pixels")
    left.legend()
    years = [p["years"] for p in curve["years"]]
    seconds = [p["process_s"] for p in curve["years"]]
    right.plot(years, seconds, "o-", label="eetrend trend --method both")
    pairs = [y * (y - 1) / 2 for y in years]
    right.plot(years, [seconds[-1] * q / pairs[-1] for q in pairs], "--", color="grey",
               label="proportional to pairs of years")
    right.set(xlabel=f"years, {curve['base']} x {curve['base']} pixels", ylabel="seconds (whole process)",
              title="time against years")
    right.legend()
    fig.suptitle(f"eetrend on {curve['cores']} cores (load average {curve['load']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "cache")
    parser.add_argument("--base", type=int, default=1000, help="edge of the 1x stack; 2x and 4x edges follow")
    parser.add_argument("--kernel-pixels", type=int, default=1 << 18, help="pixels timed against the floor")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each end-to-end measurement (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.base, args.kernel_pixels = 256, 1 << 14

    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{cores} cores, load average {load}", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = [args.base, 2 * args.base, 4 * args.base]
    folders = {size: ensure_stack(args.work, size) for size in sizes}
    report: dict[str, object] = {"cores": cores, "load_start": load, "sizes": sizes}

    # Sen's kernel against the floor, on the same pixels of the 1x stack
    stack = open_stack(folders[sizes[0]])
    values = stack.read()[:, : args.kernel_pixels]
    close_cached()
    floor = {}
    for n_years in (21, 40):
        floor[n_years] = kernel_against_floor(values[:n_years], stack.years[:n_years])
        f = floor[n_years]
        print(f"Sen + MK kernel at {n_years} years: {f['kernel_cpu_s']:.2f} s CPU, floor (sorting the same "
              f"slopes) {f['floor_cpu_s']:.2f} s: {f['ratio']:.2f}x", flush=True)
    report["kernel_vs_floor"] = floor
    del values

    median = lambda runs: {k: statistics.median(r[k] for r in runs) for k in runs[0]}  # noqa: E731
    scene = folders[sizes[-1]]
    out = args.work / "trend.tif"
    report["startup_s"] = startup_time(scene, out, 3, ROOT)  # what every eetrend trend does before its first file
    report["read_only_s"] = read_only(scene, cores)
    print(f"start-up (interpreter, imports, options) {report['startup_s']:.2f} s; reading the {sizes[-1]}^2 stack only "
          f"{report['read_only_s']:.2f} s", flush=True)

    pixels = sizes[-1] ** 2
    runs = {}
    for method in ("ols", "sen", "both"):
        runs[method] = median([run_trend(scene, out, "--method", method) for _ in range(args.repeats)])
        r = runs[method]
        start_up = r["process_s"] - r["engine_s"]
        r["pixel_years_per_s_per_core"] = pixels * len(YEARS) / r["process_s"] / cores
        r["scene_extrapolated_s"] = start_up + r["engine_s"] * (SCENE[0] * SCENE[1]) / pixels
        r["floor_scene_s"] = floor[40]["floor_ns_per_pixel"] * 1e-9 * SCENE[0] * SCENE[1] / cores
        print(f"--method {method}: {r['process_s']:.1f} s ({r['engine_s']:.1f} s in the engine: read "
              f"{r['read']:.1f} + fit {r['fit']:.1f} s summed over {r['workers']:.0f} workers, write "
              f"{r['write']:.1f} s), {r['pixel_years_per_s_per_core'] / 1e6:.1f} M pixel-years/s/core, peak RSS "
              f"{r['peak_rss_mb']:.0f} MB; a 7000 x 8000 scene: {r['scene_extrapolated_s']:.0f} s", flush=True)
    report["scene"] = runs

    curve: dict[str, object] = {"cores": cores, "load": load, "base": sizes[0], "pixels": [], "years": []}
    for size in sizes:
        r = runs["both"] if size == sizes[-1] else median(
            [run_trend(folders[size], out, "--method", "both") for _ in range(args.repeats)])
        curve["pixels"].append({"pixels": size * size, **r})
    for n_years in (10, 20, 40):
        r = curve["pixels"][0] if n_years == 40 else median(
            [run_trend(folders[sizes[0]], out, "--method", "both", "--years", f"{YEARS[0]}-{YEARS[n_years - 1]}")
             for _ in range(args.repeats)])
        curve["years"].append({"years": n_years, **{k: v for k, v in r.items() if k != "pixels"}})
    report["scaling"] = curve
    flat = curve["pixels"][-1]["peak_rss_mb"] / curve["pixels"][0]["peak_rss_mb"]
    report["rss_16x_over_1x"] = flat
    for point in curve["pixels"]:
        print(f"  {point['pixels'] / 1e6:5.1f} M pixels x 40 years: {point['process_s']:6.1f} s, "
              f"peak RSS {point['peak_rss_mb']:.0f} MB")
    for point in curve["years"]:
        print(f"  {point['years']:2d} years x {sizes[0]}^2 pixels: {point['process_s']:6.1f} s")
    print(f"peak RSS 16x / 1x: {flat:.2f}")
    report["load_end"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())

    draw(curve, ROOT / "benchmarks" / "scene_scaling.png")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "scene.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
