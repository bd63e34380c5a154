"""Window plans: cover the grid once, honour the budget, stay the same size as rasters grow."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engine.windows import parse_memory, plan_windows
from pipeline.errors import UsageError


def _coverage(windows, height, width) -> np.ndarray:
    seen = np.zeros((height, width), dtype=np.int32)
    for w in windows:
        seen[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    return seen


@pytest.mark.parametrize(("height", "width"), [(855, 854), (100, 3000), (3000, 100), (1, 1), (513, 257)])
@pytest.mark.parametrize("striped", [False, True])
def test_windows_cover_every_pixel_once(height, width, striped) -> None:
    windows = plan_windows(height, width, bytes_per_pixel=200, workers=2, striped=striped)
    assert np.all(_coverage(windows, height, width) == 1)


def test_window_size_does_not_grow_with_the_raster() -> None:
    small = plan_windows(855, 854, bytes_per_pixel=200, workers=2)
    large = plan_windows(3420, 3416, bytes_per_pixel=200, workers=2)
    biggest = max(w.width * w.height for w in large)
    assert biggest <= max(w.width * w.height for w in small) * 1.25


def test_budget_limits_window_size() -> None:
    windows = plan_windows(4096, 4096, bytes_per_pixel=1000, budget=parse_memory("256MB"), workers=2)
    assert max(w.width * w.height for w in windows) * 1000 <= 128 * 2**20
    with pytest.raises(UsageError, match="raise --memory-budget"):
        plan_windows(4096, 4096, bytes_per_pixel=1000, budget=parse_memory("10MB"), workers=2)


def test_small_rasters_are_shared_among_workers() -> None:
    assert len(plan_windows(512, 512, bytes_per_pixel=100, workers=2)) >= 4


def test_parse_memory() -> None:
    assert parse_memory("512MB") == 512 * 2**20
    assert parse_memory("1.5G") == int(1.5 * 2**30)
    with pytest.raises(UsageError, match="write it like 512MB"):
        parse_memory("lots")
