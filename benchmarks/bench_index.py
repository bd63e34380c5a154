"""Benchmark: ``eetrend index`` against the raster-tiles tutorial's method, end to end, in one run.

Workload: the tutorial's. Its Landsat 7 image (``../shared/data/L7_ETMs.tif``, 349 x
352) disaggregated 20 times to 6980 x 7040 pixels, red and NIR bands (uint8, deflate,
striped like the original). Three ways to get one NDVI GeoTIFF from it, each a fresh
process (interpreter start included), median of --repeats:

* the tutorial's: write 16 tile files (4 x 4), compute NDVI per tile file over a
  ``multiprocessing.Pool`` (one NDVI file per tile), then merge the tiles into one
  GeoTIFF with ``rasterio.merge``;
* ``eetrend index`` with its default thread pool (one worker per core);
* ``eetrend index --executor process``, a process pool of the same size;
* ``eetrend index --executor dask`` with a local cluster of the same size.

The outputs are compared: all three must hold the same NDVI. Run:
python benchmarks/bench_index.py [--repeats 3]. Results go to benchmarks/results/index.json.
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
import rasterio

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "L7_ETMs.tif"
WORK = ROOT / "benchmarks" / "results" / "index-work"

TUTORIAL = r'''
import os, sys
from multiprocessing import Pool
import numpy as np, rasterio
from rasterio.merge import merge
from rasterio.windows import Window

source, folder, output = sys.argv[1], sys.argv[2], sys.argv[3]

def ndvi_tile(path):
    with rasterio.open(path) as src:
        red, nir = src.read(1).astype("float32"), src.read(2).astype("float32")
        profile = src.profile
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    profile.update(count=1, dtype="float32", nodata=float("nan"))
    out = path.replace("tile_", "ndvi_")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(ndvi, 1)
    return out

if __name__ == "__main__":
    os.makedirs(folder, exist_ok=True)
    tiles = []
    with rasterio.open(source) as src:
        h, w = src.height // 4, src.width // 4
        for i in range(4):
            for j in range(4):
                window = Window(j * w, i * h, w if j < 3 else src.width - 3 * w, h if i < 3 else src.height - 3 * h)
                profile = src.profile.copy()
                profile.update(width=window.width, height=window.height, transform=src.window_transform(window))
                path = os.path.join(folder, f"tile_{i}_{j}.tif")
                with rasterio.open(path, "w", **profile) as dst:
                    dst.write(src.read(window=window))
                tiles.append(path)
    with Pool(os.cpu_count()) as pool:
        outputs = pool.map(ndvi_tile, tiles)
    datasets = [rasterio.open(p) for p in outputs]
    mosaic, transform = merge(datasets)
    profile = datasets[0].profile
    profile.update(width=mosaic.shape[2], height=mosaic.shape[1], transform=transform, compress="deflate")
    for d in datasets:
        d.close()
    with rasterio.open(output, "w", **profile) as dst:
        dst.write(mosaic)
'''


def make_workload(path: Path) -> None:
    """The tutorial image, 20 times finer, red and NIR only."""
    if path.exists():
        return
    with rasterio.open(SOURCE) as src:
        red, nir = src.read(3), src.read(4)
        transform = src.transform * rasterio.Affine.scale(1 / 20)
        crs = src.crs
    data = np.stack([np.repeat(np.repeat(band, 20, axis=0), 20, axis=1) for band in (red, nir)])
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 2, "height": data.shape[1], "width": data.shape[2],
               "crs": crs, "transform": transform, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("red", "nir")


def timed(command: list[str], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing; this benchmark needs the tutorial image")
    WORK.mkdir(parents=True, exist_ok=True)
    image = WORK / "l7_x20_red_nir.tif"
    make_workload(image)
    with rasterio.open(image) as src:
        shape = (src.height, src.width)
    eetrend = str(Path(sys.executable).with_name("eetrend"))
    tutorial_script = WORK / "tutorial_ndvi.py"
    tutorial_script.write_text(TUTORIAL)
    outputs = {name: WORK / f"ndvi_{name}.tif" for name in ("tutorial", "thread", "process", "dask")}
    commands = {
        "tutorial": [sys.executable, str(tutorial_script), str(image), str(WORK / "tiles"), str(outputs["tutorial"])],
        "thread": [eetrend, "index", str(image), "-o", str(outputs["thread"]), "--red", "1", "--nir", "2",
                   "--overwrite", "-q"],
        "process": [eetrend, "index", str(image), "-o", str(outputs["process"]), "--red", "1", "--nir", "2",
                    "--executor", "process", "--overwrite", "-q"],
        "dask": [eetrend, "index", str(image), "-o", str(outputs["dask"]), "--red", "1", "--nir", "2",
                 "--executor", "dask", "--overwrite", "-q"],
    }
    results: dict[str, object] = {"shape": shape, "cores": os.cpu_count(), "repeats": args.repeats}
    for name, command in commands.items():
        median, times = timed(command, args.repeats)
        results[name] = {"median_seconds": round(median, 3), "runs": [round(t, 3) for t in times]}
        print(f"{name:9s} median {median:6.2f} s  runs {', '.join(f'{t:.2f}' for t in times)}", flush=True)
    arrays = {}
    for name, path in outputs.items():
        with rasterio.open(path) as dataset:
            arrays[name] = dataset.read(1)
    results["thread_equals_tutorial"] = bool(np.allclose(arrays["thread"], arrays["tutorial"], equal_nan=True,
                                                         rtol=1e-6))
    results["process_equals_thread"] = bool(np.array_equal(arrays["process"], arrays["thread"], equal_nan=True))
    results["dask_equals_thread"] = bool(np.array_equal(arrays["dask"], arrays["thread"], equal_nan=True))
    tutorial = results["tutorial"]["median_seconds"]
    for name in ("thread", "process", "dask"):
        results[f"speedup_{name}"] = round(tutorial / results[name]["median_seconds"], 2)
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=2))
    (ROOT / "benchmarks" / "results" / "index.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
