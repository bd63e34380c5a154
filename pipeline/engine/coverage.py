"""Clear-observation counts beside the annual values: where they are and how to read them.

An annual file made by eetrend's recipe with ``[composite] count_band = true`` has two
bands: the composite, and the number of clear (unmasked) scenes behind each pixel's
composite. The count stack is the value stack with another band number; workers read
its window next to the values. The kernels that use the counts are in
:mod:`pipeline.engine.kernels.extras`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from rasterio.windows import Window

from ..errors import UsageError
from .stack import Stack, read_header


def count_stack(stack: Stack, band: int) -> Stack:
    """The stack of band ``band`` of the same files (the clear-scene counts)."""
    return dataclasses.replace(stack, layers=tuple(dataclasses.replace(layer, band=band) for layer in stack.layers))


def check_count_band(stack: Stack, band: int) -> None:
    """Refuse a count band that a file lacks, or one that is also the value band."""
    from pathlib import Path

    paths = {layer.path for layer in stack.layers}
    if len(paths) == 1 and len(stack.layers) > 1:
        raise UsageError("--count-band needs one file per year (value and count bands); this input is one "
                         "multi-band file whose bands are years")
    if any(layer.band == band for layer in stack.layers):
        raise UsageError(f"--count-band {band} is also the value band (--band); give the band of the counts")
    for path in sorted(paths):
        count = read_header(Path(path)).count
        if band > count:
            raise UsageError(f"--count-band {band}: {Path(path).name} has {count} band(s); "
                             "export with [composite] count_band = true or give the right band number")


def read_counts(stack: Stack, window: Window, band: int) -> np.ndarray:
    """The clear-scene counts of ``window`` as (years, pixels) floats, NaN where missing."""
    return count_stack(stack, band).read(window)
