"""Benchmark: the first ``eetrend trend`` of a fresh install (numba compiles its kernels) against a later one.

Each first run is a fresh process whose ``NUMBA_CACHE_DIR`` is an empty folder (as
after ``pip install``); each later run uses a cache filled once beforehand. The two
alternate, ``--pairs`` times; the wall times, their medians, what the run printed on
stderr and the load average are reported.

Run: python benchmarks/bench_first_run.py STACK_FOLDER [--method both] [--pairs 3]
(for instance the 1000 x 1000 x 40 stack bench_scene.py caches under benchmarks/results/cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(stack: Path, method: str, cache_dir: str, output: Path) -> tuple[float, list[str]]:
    """Wall seconds of one fresh ``eetrend trend`` process with numba's cache in ``cache_dir``, and its stderr."""
    command = [str(Path(sys.executable).with_name("eetrend")), "trend", str(stack), "-o", str(output),
               "--method", method, "--overwrite"]
    began = time.perf_counter()
    done = subprocess.run(command, env=dict(os.environ, NUMBA_CACHE_DIR=cache_dir), capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"eetrend trend failed: {done.stderr.strip()}")
    return wall, done.stderr.strip().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path)
    parser.add_argument("--method", default="both")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eetrend-first-run-") as work:
        root = Path(work)
        cached = str(root / "cached")
        run_once(args.stack, args.method, cached, root / "fill.tif")
        print(f"load average at the start: {os.getloadavg()}", flush=True)
        fresh, later = [], []
        for i in range(args.pairs):
            wall, lines = run_once(args.stack, args.method, str(root / f"fresh{i}"), root / f"fresh{i}.tif")
            fresh.append(wall)
            print(f"first run {wall:.2f} s: {lines}", flush=True)
            wall, lines = run_once(args.stack, args.method, cached, root / f"later{i}.tif")
            later.append(wall)
            print(f"later run {wall:.2f} s: {lines}", flush=True)
        print(f"--method {args.method}: first run median {statistics.median(fresh):.2f} s, later run median "
              f"{statistics.median(later):.2f} s; load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
