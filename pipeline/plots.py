"""Pictures: a quick-look PNG of a trend band (diverging colours centred on zero)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError


def plot_slope(raster: Path, png: Path, *, band: str = "slope", title: str, units: str) -> Path:
    """Write ``png``: the named band of ``raster``, brown (decrease) to green (increase), NaN transparent.

    The colour range is symmetric, +-(98th percentile of |value|), so zero is always the
    neutral middle colour and a few extreme pixels do not wash the picture out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    with rasterio.open(raster) as dataset:
        names = list(dataset.descriptions)
        if band not in names:
            raise InputError(f"{raster} has no band named {band!r} (it has {', '.join(n or '?' for n in names)})")
        values = dataset.read(names.index(band) + 1, masked=False).astype(np.float64)
    finite = np.isfinite(values)
    limit = float(np.percentile(np.abs(values[finite]), 98)) if finite.any() else 1.0
    limit = limit or 1.0
    cmap = matplotlib.colormaps["BrBG"].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    height, width = values.shape
    figure, axes = plt.subplots(figsize=(7.5, 7.5 * height / width + 0.8), dpi=110)
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title, fontsize=10)
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8, extend="both")
    colorbar.set_label(units)
    temporary = png.with_name(f".{png.name}.{os.getpid()}.partial.png")
    try:
        figure.savefig(temporary, transparent=True, bbox_inches="tight")
        os.replace(temporary, png)
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
    return png
