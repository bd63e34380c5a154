"""The report's section on trends with breaks (a trend file fitted with ``--breaks``).

Two maps with categorical legends, the first break's year and (with one break at most)
``change_type``, and the share of the fitted area in each number of breaks and each type.
Areas come from the grid as for the trend classes (:func:`.areas.row_areas`), read strip by
strip so memory stays bounded whatever the raster's size.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from ..engine.kernels.breaks import CHANGE_TYPES
from .areas import row_areas

# Greens for increases, browns for decreases, purples for reversals: one colour per change type.
TYPE_COLOURS = {1: "#1b7837", 2: "#8c510a", 3: "#5aae61", 4: "#d8b365", 5: "#a6dba0", 6: "#f6e8c3",
                7: "#762a83", 8: "#c2a5cf"}


@dataclass
class BreakAreas:
    """Square metres of the fitted area (``mosum_p`` finite) by break count and by change type."""

    fitted: float
    by_count: dict[int, float]
    by_type: dict[int, float] | None
    first_years: tuple[int, int] | None  # the earliest and latest first-break year on the map


def summarise_breaks(dataset, *, memory_budget: int = 128 << 20) -> BreakAreas:
    """Areas by ``bp_count`` and ``change_type`` of an open trend file that has the break bands."""
    names = [d or "" for d in dataset.descriptions]
    count_band = names.index("bp_count") + 1
    type_band = names.index("change_type") + 1 if "change_type" in names else None
    year_band = names.index("bp1_year") + 1
    areas = row_areas(dataset.transform, dataset.height, dataset.crs)
    fitted, by_count = 0.0, {}
    by_type = dict.fromkeys(CHANGE_TYPES, 0.0) if type_band else None
    low, high = np.inf, -np.inf
    rows = max(1, min(dataset.height, memory_budget // max(1, dataset.width * 8 * 4)))
    for top in range(0, dataset.height, rows):
        window = Window(0, top, dataset.width, min(rows, dataset.height - top))
        weight = np.broadcast_to(areas[top: top + int(window.height), None], (int(window.height), dataset.width))
        counts = dataset.read(count_band, window=window).astype(np.float64)
        ok = np.isfinite(counts)
        fitted += float(weight[ok].sum())
        for value in np.unique(counts[ok]):
            by_count[int(value)] = by_count.get(int(value), 0.0) + float(weight[counts == value].sum())
        if by_type is not None:
            types = dataset.read(type_band, window=window)
            for code in by_type:
                by_type[code] += float(weight[types == code].sum())
        years = dataset.read(year_band, window=window)
        if np.isfinite(years).any():
            low, high = min(low, float(np.nanmin(years))), max(high, float(np.nanmax(years)))
    first = (int(low), int(high)) if np.isfinite(low) else None
    return BreakAreas(fitted, dict(sorted(by_count.items())), by_type, first)


def _map(trend: Path, band: str, cmap, vmin: float, vmax: float):
    """One band drawn in map coordinates (the report's map frame and scale bar)."""
    import rasterio

    from .figures import _pyplot
    from .maps import draw_map, map_frame, read_picture

    plt = _pyplot()
    with rasterio.open(trend) as dataset:
        names = [d or "" for d in dataset.descriptions]
        values, transform = read_picture(dataset, names.index(band) + 1)
        frame = map_frame(transform, values.shape[1], values.shape[0], dataset.crs)
        aspect = dataset.height / dataset.width
    figure, axes = plt.subplots(figsize=(5.6, min(7.5, 5.0 * aspect + 1.6)), layout="constrained")
    image = draw_map(axes, values, frame, cmap=cmap, vmin=vmin, vmax=vmax)
    return figure, axes, image


def year_map(trend: Path, years: tuple[int, int]):
    """The first break's year, one colour per year, with a year scale."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    first, last = years
    cmap = matplotlib.colormaps["viridis"].resampled(max(1, last - first + 1))
    figure, axes, image = _map(trend, "bp1_year", cmap, first - 0.5, last + 0.5)
    colorbar = figure.colorbar(image, ax=axes, location="bottom", fraction=0.05, shrink=0.9, aspect=40)
    colorbar.ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    colorbar.set_label("last year before the first break")
    colorbar.outline.set_visible(False)
    return figure


def type_map(trend: Path, present: list[int]):
    """``change_type`` with a legend naming each type that occurs."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap([TYPE_COLOURS[code] for code in CHANGE_TYPES])
    figure, axes, _ = _map(trend, "change_type", cmap, 0.5, len(CHANGE_TYPES) + 0.5)
    handles = [Patch(color=TYPE_COLOURS[code], label=f"{code} {CHANGE_TYPES[code]}") for code in present]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=7.5)
    return figure


def breaks_section(trend: Path, *, memory_budget: int = 128 << 20) -> str:
    """The section's HTML (figures embedded), or "" when the file has no break bands."""
    import rasterio

    from .figures import data_uri

    with rasterio.open(trend) as dataset:
        if "bp_count" not in dataset.descriptions:
            return ""
        tags = dataset.tags()
        summary = summarise_breaks(dataset, memory_budget=memory_budget)
    whole = summary.fitted or 1.0
    rows = "".join(f"<tr><td>{count}</td><td>{area / 1e6:,.2f}</td><td>{100 * area / whole:.1f}</td></tr>"
                   for count, area in summary.by_count.items())
    parts = ['<section id="breaks">', "<h2>Trends with breaks</h2>", '<div class="grid">', "<div>"]
    if summary.first_years is not None:
        parts.append(f'<figure><img class="map" src="{data_uri(year_map(trend, summary.first_years), "png")}" '
                     'alt="map of the year of the first break"><figcaption>The last year before the first break, '
                     "where a break was found.</figcaption></figure>")
    else:
        parts.append("<p class=note>No pixel has a break.</p>")
    if summary.by_type is not None:
        present = [code for code, area in summary.by_type.items() if area > 0]
        parts.append(f'<figure><img class="map" src="{data_uri(type_map(trend, present), "png")}" '
                     'alt="map of the type of change"><figcaption>change_type: bfast01classify\'s typology '
                     "(de Jong et al. 2013).</figcaption></figure>")
    parts += ["</div>", "<div>", "<h3>Breaks per pixel</h3>",
              "<table><thead><tr><th>breaks</th><th>km²</th><th>%</th></tr></thead>"
              f"<tbody>{rows}</tbody></table>"]
    if summary.by_type is not None:
        type_rows = "".join(
            f'<tr><td><span class="swatch" style="background:{TYPE_COLOURS[code]}"></span>{code} '
            f"{html.escape(CHANGE_TYPES[code])}</td><td>{area / 1e6:,.2f}</td><td>{100 * area / whole:.1f}</td></tr>"
            for code, area in summary.by_type.items())
        parts.append("<h3>Type of change</h3><table><thead><tr><th>type</th><th>km²</th><th>%</th></tr></thead>"
                     f"<tbody>{type_rows}</tbody></table>")
    note = (f"Shares of the area where the test could be run ({summary.fitted / 1e6:,.2f} km²). "
            f"{html.escape(tags.get('breaks', ''))}; segments of at least "
            f"{html.escape(tags.get('min_segment', '?').split(':')[0])} of each pixel's valid years.")
    parts += [f"<p class=note>{note}</p>", "</div>", "</div>", "</section>"]
    return "\n".join(parts)
