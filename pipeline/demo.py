"""``eetrend demo``: the whole pipeline against the built-in emulator, checked against the truth.

It starts the emulator in this process (tasks run 60 times faster than real time),
writes a study config pointed at it, runs export -> wait -> download (split tiles
and all) -> fit -> outputs exactly as ``eetrend run --wait`` does, and then compares
the fitted slopes with the slopes the emulator's rasters were built from.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import load_study
from .emulator import Emulator, RasterFactory
from .errors import UsageError
from .files.diskio import check_folder_path, ensure_folder
from .run import RunResult, run_study

MARKER = ".eetrend-demo"

DEMO_CONFIG = """# Written by `eetrend demo`: a study pointed at the local emulator (no Google account needed).
[study]
name = "demo"
years = "{years}"

[region]
bbox = {bbox}    # about {cols} x {rows} pixels of 30 m
crs = "EPSG:32632"
scale = 30          # metres; on a UTM crs at 30 m, exports use Landsat's own grid (landsat_grid)

[composite]
index = "NDVI"
reducer = "max"
months = [6, 9]
count_band = true

[export]
destination = "drive"
folder = "eetrend_demo"
file_dimensions = {tile}    # larger years arrive split into tiles, as from Earth Engine

[earthengine]
project = "eetrend-demo"
auth = "none"
endpoint = "{url}"

[paths]
downloads = "downloads"
outputs = "outputs"
state = "state"

[trend]
method = "both"
"""


@dataclass
class DemoResult:
    run: RunResult
    config: Path
    median_abs_error: float
    sign_agreement: float
    compared_pixels: int


def demo_bbox(rows: int, cols: int, west: float = 10.85, north: float = 46.465) -> list[float]:
    """A lon/lat box of about ``rows`` x ``cols`` 30 m pixels (the emulator's rasters follow the region)."""
    import math

    metres_per_degree = 6378137.0 * math.pi / 180.0
    east = west + cols * 30.0 / (metres_per_degree * math.cos(math.radians(north)))
    south = north - rows * 30.0 / metres_per_degree
    return [round(west, 5), round(south, 5), round(east, 5), round(north, 5)]


def run_demo(folder: Path, *, years: str = "1995..2015", rows: int = 130, cols: int = 272,
             progress: Callable[[int, int], None] | None = None, speed: float = 60.0) -> DemoResult:
    """Run the demo study in ``folder`` (made afresh each time) and compare with the truth.

    The region is about ``rows`` x ``cols`` pixels; years wider than 256 pixels (Earth
    Engine's shard size, the smallest fileDimensions) arrive split into tiles.
    """
    folder = Path(folder)
    check_folder_path(folder, "the demo folder")
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise UsageError(f"{folder} is not empty and was not made by eetrend demo; give a new or empty folder")
    if folder.exists():
        shutil.rmtree(folder)  # the emulator starts empty, so the demo's record starts empty too
    ensure_folder(folder, "the demo folder")
    (folder / MARKER).write_text("made by eetrend demo; removed and rewritten by the next demo run\n")
    rasters = RasterFactory(noise=0.01, nan_fraction=0.05)
    with Emulator(speed=speed, rasters=rasters) as emulator:
        config = folder / "demo.toml"
        config.write_text(DEMO_CONFIG.format(years=years, url=emulator.url, tile=256, bbox=demo_bbox(rows, cols),
                                             rows=rows, cols=cols))
        study = load_study(config)
        result = run_study(study, wait=True, timeout=600, poll=0.5, progress=progress)
    error, agreement, pixels = compare_with_truth(result.outputs.get("trend"), rasters) if result.exit_code == 0 \
        else (float("nan"), float("nan"), 0)
    return DemoResult(result, config, error, agreement, pixels)


def compare_with_truth(trend: Path | None, rasters: RasterFactory) -> tuple[float, float, int]:
    """Median |fitted - true| slope, and the share of pixels whose sign is right where the truth is not ~0."""
    import rasterio

    with rasterio.open(trend) as dataset:
        slope = dataset.read(list(dataset.descriptions).index("slope") + 1).astype(np.float64)
    truth = rasters.truth().slope
    valid = np.isfinite(slope)
    clear = valid & (np.abs(truth) > 0.001)  # signs of slopes within noise of zero are a coin toss
    error = float(np.median(np.abs(slope[valid] - truth[valid])))
    agreement = float(np.mean(np.sign(slope[clear]) == np.sign(truth[clear])))
    return error, agreement, int(valid.sum())
