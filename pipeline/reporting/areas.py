"""Areas on the ground from a raster's grid, and a trend file's area and slope summary in bounded memory.

Pixel area comes from the transform: in a projected CRS it is |a*e - b*d| in the CRS's
linear unit squared; in a geographic CRS every row has its own area, the exact area of
a quadrangle on the CRS's ellipsoid between the row's two parallels. The summary reads
the trend file strip by strip: the area with a significant increase, decrease or none
(raw ``trend_class`` and, where the file has it, ``trend_class_fdr``) and a histogram of
the mapped band.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from ..errors import InputError

CLASSES = {"increase": 1.0, "decrease": -1.0, "none": 0.0}
WGS84 = (6_378_137.0, 298.257223563)


def ellipsoid(crs) -> tuple[float, float]:
    """(semi-major axis in metres, inverse flattening; 0 for a sphere) of a CRS, WGS84 when not stated."""
    match = re.search(r'(?:SPHEROID|ELLIPSOID)\["[^"]*",\s*([0-9.eE+-]+),\s*([0-9.eE+-]+)', crs.to_wkt())
    return (float(match.group(1)), float(match.group(2))) if match else WGS84


def _authalic_q(phi: np.ndarray, e: float) -> np.ndarray:
    sin = np.sin(phi)
    if e == 0:
        return 2.0 * sin
    return sin / (1 - (e * sin) ** 2) + np.log((1 + e * sin) / (1 - e * sin)) / (2 * e)


def row_areas(transform: Sequence[float], height: int, crs) -> np.ndarray:
    """Area of one pixel of each row, in square metres (shape (height,)).

    A grid without a CRS has no area on the ground: :class:`InputError`.
    """
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    if crs is None or not str(crs):
        raise InputError("the raster has no CRS, so pixel areas on the ground are unknown")
    if not crs.is_geographic:
        factor = float(crs.linear_units_factor[1] or 1.0)
        return np.full(height, abs(a * e - b * d) * factor**2)
    if b != 0 or d != 0:
        raise InputError("a rotated geographic grid is not supported for areas")
    major, inverse_flattening = ellipsoid(crs)
    flattening = 1 / inverse_flattening if inverse_flattening else 0.0
    ecc = math.sqrt(flattening * (2 - flattening))
    minor = major * (1 - flattening)
    edges = np.radians(np.clip(f + e * np.arange(height + 1), -90.0, 90.0))
    q = _authalic_q(edges, ecc)
    return np.abs(minor**2 * math.radians(abs(a)) / 2 * np.diff(q))


@dataclass
class AreaSummary:
    """Square metres by class (raw and FDR), fitted and total area, and a histogram of the mapped band."""

    raw: dict[str, float]
    fdr: dict[str, float] | None
    fitted: float
    total: float
    edges: np.ndarray
    counts: np.ndarray  # all fitted pixels per bin
    significant_counts: np.ndarray  # of those, significant ones (FDR where available)
    pixels: int = 0
    notes: list[str] = field(default_factory=list)


def summarise(dataset, band: str, limit: float, *, memory_budget: int = 128 << 20, bins: int = 60) -> AreaSummary:
    """Areas by trend class and the histogram of ``band`` over [-limit, limit] (outside values go to the end bins)."""
    names = [d or "" for d in dataset.descriptions]
    if "trend_class" not in names:
        raise InputError(f"{dataset.name} has no trend_class band; it is not an eetrend trend output")
    number = names.index(band) + 1
    raw_band = names.index("trend_class") + 1
    fdr_band = names.index("trend_class_fdr") + 1 if "trend_class_fdr" in names else None
    areas = row_areas(dataset.transform, dataset.height, dataset.crs)
    edges = np.linspace(-limit, limit, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    significant = np.zeros(bins, dtype=np.int64)
    raw = dict.fromkeys(CLASSES, 0.0)
    fdr = dict.fromkeys(CLASSES, 0.0) if fdr_band else None
    fitted = 0.0
    pixels = 0
    rows = max(1, min(dataset.height, memory_budget // max(1, dataset.width * 8 * 6)))
    for top in range(0, dataset.height, rows):
        window = Window(0, top, dataset.width, min(rows, dataset.height - top))
        weight = areas[top: top + int(window.height), None]
        classes = dataset.read(raw_band, window=window).astype(np.float64)
        values = dataset.read(number, window=window).astype(np.float64)
        ok = np.isfinite(classes) & np.isfinite(values)
        fitted += float((weight * ok).sum())
        pixels += int(ok.sum())
        for name, code in CLASSES.items():
            raw[name] += float((weight * (ok & (classes == code))).sum())
        decisive = classes
        if fdr is not None:
            decisive = dataset.read(fdr_band, window=window).astype(np.float64)
            for name, code in CLASSES.items():
                fdr[name] += float((weight * (ok & (decisive == code))).sum())
        index = np.clip(np.searchsorted(edges, values[ok], side="right") - 1, 0, bins - 1)
        counts += np.bincount(index, minlength=bins)
        significant += np.bincount(index[decisive[ok] != 0], minlength=bins)
    total = float(areas.sum() * dataset.width)
    return AreaSummary(raw, fdr, fitted, total, edges, counts, significant, pixels)
