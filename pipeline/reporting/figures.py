"""The report's figures, each returned as a ``data:`` URI to embed in the HTML (no file beside it).

The map is a PNG (a raster picture at twice screen resolution); the charts are SVG
with text drawn as paths, so they stay sharp and need no font on the reader's machine.
Colours: slopes in BrBG centred on zero (brown decrease, teal increase), as in ``plot``;
OLS in blue and Sen in amber, as in ``plot-pixel``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .areas import AreaSummary
from .regional import CountSeries, RegionalSeries

OLS_COLOUR, SEN_COLOUR, INK, GRID = "#2b6cb0", "#d97706", "#1f2933", "#e4e7eb"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.edgecolor": "#9aa5b1",
                         "axes.labelcolor": INK, "xtick.color": "#52606d", "ytick.color": "#52606d"})
    return plt


def data_uri(figure, kind: str = "svg", dpi: int = 144) -> str:
    """Render ``figure`` and close it; returns a base64 ``data:`` URI."""
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=kind, dpi=dpi, bbox_inches="tight", facecolor="white",
                       metadata={"Date": None} if kind == "svg" else None)
    finally:
        plt.close(figure)
    mime = "image/svg+xml" if kind == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def map_figure(trend: Path, band: str, *, region: Sequence[np.ndarray], outline_footprint: bool,
               significant_only: bool, units: str | None = None):
    """A band's map (through the one map function, :func:`.plots.draw_band`) with a horizontal colour bar,
    or a legend for a categorical band."""
    from .plots import add_key, draw_band

    plt = _pyplot()
    import rasterio

    with rasterio.open(trend) as dataset:
        aspect = dataset.height / dataset.width
    # Constrained layout keeps the colour bar clear of the axis labels whatever the map's shape.
    figure, axes = plt.subplots(figsize=(5.6, min(7.5, 5.0 * aspect + 1.6)), layout="constrained")
    drawn = draw_band(axes, trend, band=band, units=units, significant_only=significant_only,
                      region=region, outline_footprint=outline_footprint)
    key = add_key(figure, axes, drawn, below=True)
    if drawn.legend is None:
        key.outline.set_visible(False)
    return figure, drawn


def histogram_figure(summary: AreaSummary, units: str, significance_label: str):
    """Slopes of all fitted pixels (pale) and of the significant ones (BrBG by value)."""
    import matplotlib

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.6, 2.7))
    edges = summary.edges
    centres = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    limit = edges[-1]
    colours = matplotlib.colormaps["BrBG"]((centres / limit + 1) / 2)
    axes.bar(centres, summary.counts, width=width, color="#d9dee3", label="all fitted pixels", linewidth=0)
    axes.bar(centres, summary.significant_counts, width=width, color=colours, linewidth=0,
             label=significance_label)
    axes.axvline(0, color="#52606d", linewidth=0.8)
    axes.set_xlabel(units)
    axes.set_ylabel("pixels")
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color=GRID, linewidth=0.6)
    axes.set_axisbelow(True)
    axes.legend(frameon=False, fontsize=7.5, loc="upper left")
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(5))
    return figure


def series_figure(series: RegionalSeries, fits: dict[str, float], units: str, mk: str = "Mann-Kendall"):
    """Per-year median with the interquartile range, and the OLS and Sen lines fitted to the median."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    years = np.asarray(series.years, dtype=float)
    figure, axes = plt.subplots(figsize=(11.0, 3.4))  # about the page's width, so text keeps its size
    ok = np.isfinite(series.median)
    axes.fill_between(years[ok], series.q25[ok], series.q75[ok], color="#c7eae5", linewidth=0,
                      label="interquartile range across pixels")
    axes.plot(years[ok], series.median[ok], "o-", color=INK, markersize=3.5, linewidth=1.2, label="median")
    span = np.array([years[ok].min(), years[ok].max()]) if ok.any() else years[:1]
    if np.isfinite(fits.get("slope", np.nan)):
        axes.plot(span, fits["intercept"] + fits["slope"] * span, color=OLS_COLOUR, linewidth=1.6,
                  label=f"OLS {fits['slope']:+.3g} per year (p = {fits['pvalue']:.2g})")
    if np.isfinite(fits.get("sen_slope", np.nan)):
        axes.plot(span, fits["sen_intercept"] + fits["sen_slope"] * span, "--", color=SEN_COLOUR, linewidth=1.6,
                  label=f"Sen {fits['sen_slope']:+.3g} per year ({mk} p = {fits['mk_p']:.2g})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(units)
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(color=GRID, linewidth=0.6)
    axes.set_axisbelow(True)
    axes.legend(frameon=False, fontsize=7.5, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return figure


def counts_figure(counts: CountSeries):
    """Mean clear observations per pixel, per year."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(11.0, 2.3))
    axes.bar(np.asarray(counts.years), counts.mean, color="#9aa5b1", width=0.7, linewidth=0)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("clear observations\nper pixel (mean)")
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color=GRID, linewidth=0.6)
    axes.set_axisbelow(True)
    return figure
