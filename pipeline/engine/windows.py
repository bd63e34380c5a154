"""Cutting the grid into windows that fit a memory budget.

A window's size is set by the budget and a preferred size, never by the size of
the raster, so peak memory stays flat as rasters grow. Windows follow the input's
blocks (no compressed block is decoded twice) and the output's 256-pixel tiles:
tiled inputs give tile-aligned rectangles, striped inputs full-width strips.
Small rasters are cut finer so that every worker (when there are several) gets a share.
"""

from __future__ import annotations

import re

from rasterio.windows import Window

from ..errors import UsageError

DEFAULT_MEMORY_BUDGET = 1 << 30  # 1 GiB across all workers
TARGET_PIXELS = 1 << 17  # preferred window (two 256x256 tiles): amortises per-window costs, overlaps well
OUTPUT_BLOCK = 256  # output tile edge in pixels
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1 << 10,
    "KB": 1 << 10,
    "KIB": 1 << 10,
    "M": 1 << 20,
    "MB": 1 << 20,
    "MIB": 1 << 20,
    "G": 1 << 30,
    "GB": 1 << 30,
    "GIB": 1 << 30,
}


def parse_memory(text: str | int) -> int:
    """Parse ``"512MB"``, ``"2G"``, ``"1GiB"`` or a number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise UsageError(f"cannot read the memory size {text!r}; write it like 512MB or 2GB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def plan_windows(
    height: int,
    width: int,
    *,
    bytes_per_pixel: int,
    budget: int = DEFAULT_MEMORY_BUDGET,
    fixed_bytes: int = 0,
    workers: int = 1,
    block_height: int = OUTPUT_BLOCK,
    block_width: int = OUTPUT_BLOCK,
    striped: bool = False,
    target_pixels: int = TARGET_PIXELS,
    windows_per_worker: int = 2,
) -> list[Window]:
    """Windows covering a ``height`` x ``width`` grid.

    Each worker holds ``fixed_bytes`` plus ``bytes_per_pixel`` per pixel of its
    window; all workers together stay within ``budget``. Heights are multiples of
    ``block_height``; widths are multiples of ``block_width``, or the full width
    for ``striped`` inputs (where splitting a strip would decode it twice).
    """
    if budget <= 0 or bytes_per_pixel <= 0:
        raise UsageError("the memory budget must be positive")
    workers = max(workers, 1)
    fitting = (budget // workers - fixed_bytes) // bytes_per_pixel
    smallest = block_height * (width if striped else min(block_width, width))
    if fitting < min(smallest, height * width):
        raise UsageError(
            f"a memory budget of {budget / 2**20:.0f} MiB over {workers} worker(s) cannot hold one window "
            f"({smallest} pixels at {bytes_per_pixel} bytes each plus {fixed_bytes / 2**20:.0f} MiB); "
            "raise --memory-budget or use fewer --workers"
        )
    share = -(-height * width // (workers * windows_per_worker)) if workers > 1 else target_pixels
    cap = min(max(min(target_pixels, share), smallest), fitting)
    if striped or cap >= block_height * width:
        cols = width
    else:
        cols = min(width, max(block_width, (cap // block_height) // block_width * block_width))
    rows = max(block_height, (cap // cols) // block_height * block_height)
    return [
        Window(col, row, min(cols, width - col), min(rows, height - row))
        for row in range(0, height, rows)
        for col in range(0, width, cols)
    ]


def align_block(input_block: int, full: int) -> int:
    """Window edges that never split an input block nor an output tile."""
    if input_block >= full:
        return OUTPUT_BLOCK
    if OUTPUT_BLOCK % input_block == 0:
        return OUTPUT_BLOCK
    if input_block % OUTPUT_BLOCK == 0:
        return input_block
    return OUTPUT_BLOCK
