"""Pictures: a band of a raster as a map, a true-colour view, and one pixel's years with its trend lines.

- Slopes and other signed trend bands: brown (decrease) to green (increase), centred on
  zero, range +-(98th percentile of |value|).
- Index values (NDVI and the like): YlGn with a 2-98 percentile stretch.
- Classes (``trend_class``, ``trend_class_fdr``, a ``*_type`` or ``*_class`` band such as a
  change type): one colour per class and a legend naming each, never a colour ramp.
- Whole numbers (``cp_year``, ``n``): one colour per value, a colour bar labelled in whole numbers.
- Anything else: viridis, 2-98 percentile stretch.
Every band is named in words (``Sen's slope``, ``Mann-Kendall (TFPW) p-value``); only the
bands measured in the values' units per year are labelled "per year".
NaN is transparent; each map has a colour bar or legend and a title with the units and years
(from the raster's tags, where eetrend wrote them), axes in map coordinates and a scale
bar, and can fade non-significant pixels (:func:`draw_band`, shared with the HTML report).
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError

DIVERGING = {"slope", "sen_slope", "sen_low", "sen_high", "rvalue", "mk_z", "mk_tau", "mk_s", "trend_class"}
INDEX_WORDS = ("ndvi", "evi", "nbr", "ndmi", "savi", "composite")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _save(figure, png: Path) -> Path:
    from ..files.outputs import replaced_when_done

    _, plt = _pyplot()
    try:
        width, height = figure.get_size_inches() * figure.dpi
        with replaced_when_done(png, suffix=".png", verify=_check_png, needed=int(width * height * 4),
                                at_most=True) as temporary:
            figure.savefig(temporary, transparent=False, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(figure)
    return png


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path) -> None:
    """A written PNG must end with its IEND chunk (a full disk may cut it short without an error)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(max(0, path.stat().st_size - 12))
        tail = handle.read(12)
    if head != PNG_SIGNATURE or tail[4:8] != b"IEND":
        raise OSError(errno.EIO, "the PNG was cut short")


def check_png_output(png: Path, inputs: Sequence[str | os.PathLike[str]]) -> Path:
    """A PNG output: named .png, not one of the inputs, and replacing nothing but an earlier PNG."""
    from ..files.outputs import check_output

    png = Path(png)
    if png.suffix.lower() != ".png":
        raise UsageError(f"--output {png}: eetrend draws PNG files; give a name ending in .png")
    check_output(png, True, inputs)
    if png.exists():
        with open(png, "rb") as handle:
            if handle.read(8) != PNG_SIGNATURE:
                raise UsageError(f"{png} exists and is not a PNG; choose another name (eetrend replaces only "
                                 "an earlier picture)")
    return png


@contextmanager
def open_raster(path: str | os.PathLike[str]) -> Iterator:
    """Open a raster to draw; a missing file, a folder or a non-raster is one :class:`InputError` line."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give one raster file to draw")
    if not path.exists():
        raise InputError(f"{path} does not exist; give a raster file to draw")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture needs no georeferencing
            dataset = rasterio.open(path)
    except (RasterioError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot open {path} as a raster ({reason}); give a GeoTIFF or another raster "
                         "GDAL reads") from None
    with dataset:
        try:
            yield dataset
        except RasterioError as exc:  # a block that does not decode
            from ..engine.stack import read_failure

            raise read_failure(path, exc) from None


def _band_number(dataset, band: str | int | None) -> int:
    names = [d or "" for d in dataset.descriptions]
    if band is None:
        return 1
    if isinstance(band, int) or str(band).isdigit():
        number = int(band)
        if not 1 <= number <= dataset.count:
            raise UsageError(f"--band {number}: {dataset.name} has {dataset.count} band(s)")
        return number
    if band not in names:
        raise UsageError(f"--band {band!r}: {dataset.name} has no band of that name or number "
                         f"(it has {dataset.count}: {', '.join(n or '?' for n in names)})")
    return names.index(band) + 1


@dataclass
class DrawnBand:
    """What :func:`draw_band` drew: the image (for a colour bar) or the classes (for a legend), and the words
    a caption needs."""

    image: object
    name: str
    units: str
    years: str
    extend: str
    significance: str | None  # e.g. "faded: not significant (Mann-Kendall p >= 0.05)", or None
    shape: tuple[int, int]  # rows and columns of the picture as drawn
    label: str = ""  # the band in words, e.g. "Sen's slope"
    legend: list[tuple[str, str]] | None = None  # (class, colour) of a categorical band, in value order
    legend_title: str = ""
    steps: tuple[int, int] | None = None  # first and last value of a band of whole numbers (years, n)

    @property
    def colour_label(self) -> str:
        """The colour bar's label: the band in words and its units, e.g. "Sen's slope (NDVI per year)"."""
        label = self.label or self.name
        return f"{label} ({self.units})" if self.units else label


def draw_band(axes, raster: Path, *, band: str | int | None = None, units: str | None = None,
              significant_only: bool = False, alpha: float | None = None, fade: float = 0.25,
              region: Sequence[np.ndarray] = (), outline_footprint: bool = False) -> DrawnBand:
    """Draw one band of ``raster`` on ``axes`` as a map: the one map function of ``plot`` and the report.

    Colours as in the module docstring; axes in map coordinates with a scale bar
    (:mod:`pipeline.reporting.maps`). ``significant_only`` fades pixels whose trend is not
    significant at ``alpha`` (default: the file's own alpha), using the FDR-adjusted
    p-value where the file has one for this band's test (a change point year: its
    Pettitt p-value; a class band says significance itself and is never faded).
    ``region`` rings are outlined; without them, ``outline_footprint`` outlines the valid
    data instead. ``units`` applies to bands of measured values, never to classes or years.
    """
    from .maps import (
        PER_YEAR_BANDS,
        band_label,
        categories,
        draw_map,
        footprint_rings,
        is_stepped_band,
        map_frame,
        read_picture,
        significance_bands,
        test_name,
    )

    matplotlib, _ = _pyplot()
    with open_raster(raster) as dataset:
        number = _band_number(dataset, band)
        name = dataset.descriptions[number - 1] or f"band {number}"
        values, transform = read_picture(dataset, number)
        tags = dataset.tags()
        classes_of = categories(name, tags, values)
        unitless = classes_of is not None or is_stepped_band(name)
        if unitless:
            units = ""
        else:
            # The file-wide "units" tag is the slopes' unit: only per-year bands (or a file that is not a
            # trend output, e.g. an annual composite) take it; a p-value, r or n never does.
            fallback = tags.get("units", "") if name in PER_YEAR_BANDS or "method" not in tags else ""
            units = units or dataset.units[number - 1] or fallback
        names = [d or "" for d in dataset.descriptions]
        frame = map_frame(transform, values.shape[1], values.shape[0], dataset.crs)
        faded, significance = None, None
        if significant_only and classes_of is None:
            raw, fdr = significance_bands(name, names)
            p_band = fdr or raw
            if p_band is None:
                raise InputError(f"{raster} has no p-value band for {name!r} (pvalue or mk_p), so significance "
                                 "cannot be shown; drop --significant-only or draw a trend band")
            level = alpha if alpha is not None else float(tags.get("fdr_q" if fdr else "alpha", 0.05) or 0.05)
            # At the file's own level, its class band decides (so the map agrees with the area table exactly);
            # at another --alpha, the p-values do.
            classes = "trend_class_fdr" if fdr else "trend_class" if raw == ("mk_p" if "mk_p" in names else
                                                                            "pvalue") else None
            if alpha is None and classes in names:
                decided, _ = read_picture(dataset, names.index(classes) + 1)
                faded = np.isfinite(values) & (decided == 0)
            else:
                p_values, _ = read_picture(dataset, names.index(p_band) + 1)
                with np.errstate(invalid="ignore"):  # BH/BY reject where adjusted p <= q; a raw test where p < alpha
                    significant = p_values <= level if fdr else p_values < level
                faded = np.isfinite(values) & ~significant
            test = test_name(raw or p_band, tags) + (", FDR-adjusted" if fdr else "")
            relation = ">" if fdr else "\u2265"
            significance = f"faded: not significant ({test} p {relation} {level:g})"
    if name == "n" and "method" in tags:
        values[values == 0] = np.nan  # no valid year: outside the data, blank like every band there
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError(f"{raster} band {name!r} has no valid pixel to draw")
    rings = list(region) or (footprint_rings(finite, frame) if outline_footprint else [])
    transparent = (0.0, 0.0, 0.0, 0.0)
    label = band_label(name, tags)
    years = _years_text(tags.get("years", ""))
    if classes_of is not None:
        index = np.full(values.shape, np.nan)
        for position, value in enumerate(classes_of.values):
            index[values == value] = position
        colours = matplotlib.colors.ListedColormap(list(classes_of.colours)).with_extremes(bad=transparent)
        image = draw_map(axes, index, frame, cmap=colours, vmin=-0.5, vmax=len(classes_of.values) - 0.5,
                         region=rings)
        return DrawnBand(image, name, "", years, "neither", None, values.shape, label,
                         list(zip(classes_of.labels, classes_of.colours, strict=True)), classes_of.title)
    if is_stepped_band(name):
        first, last = int(np.nanmin(values)), int(np.nanmax(values))
        steps = last - first + 1
        colours = matplotlib.colormaps["viridis"].resampled(steps).with_extremes(bad=transparent)
        image = draw_map(axes, values, frame, cmap=colours, vmin=first - 0.5, vmax=last + 0.5, faded=faded,
                         fade=fade, region=rings)
        return DrawnBand(image, name, "", years, "neither", significance, values.shape, label, steps=(first, last))
    if name in DIVERGING:
        limit = float(np.percentile(np.abs(values[finite]), 98)) or 1.0
        cmap, vmin, vmax, extend = "BrBG", -limit, limit, "both"
    else:
        vmin, vmax = (float(v) for v in np.percentile(values[finite], [2, 98]))
        cmap = "YlGn" if any(w in (name + " " + str(raster)).lower() for w in INDEX_WORDS) else "viridis"
        extend = "both"
    colours = matplotlib.colormaps[cmap].with_extremes(bad=transparent)
    image = draw_map(axes, values, frame, cmap=colours, vmin=vmin, vmax=vmax, faded=faded, fade=fade, region=rings)
    return DrawnBand(image, name, units, years, extend, significance, values.shape, label)


def add_key(figure, axes, drawn: DrawnBand, *, below: bool = False):
    """The map's key: a legend naming each class of a categorical band, else a colour bar labelled with the
    band in words and its units (whole-number ticks for years and counts). Returns the legend or colour bar."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if drawn.legend is not None:
        handles = [Patch(facecolor=colour, edgecolor="0.45", linewidth=0.5, label=text)
                   for text, colour in drawn.legend]
        where = ({"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "ncol": min(3, len(handles))} if below
                 else {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)})
        return axes.legend(handles=handles, title=drawn.legend_title, fontsize=8, title_fontsize=8, frameon=False,
                           **where)
    if below:
        colorbar = figure.colorbar(drawn.image, ax=axes, location="bottom", fraction=0.05, shrink=0.9,
                                   extend=drawn.extend, aspect=40)
        axis = colorbar.ax.xaxis
    else:
        colorbar = figure.colorbar(drawn.image, ax=axes, shrink=0.8, extend=drawn.extend)
        axis = colorbar.ax.yaxis
    if drawn.steps is not None:  # whole numbers inside the range, never a tick beyond it
        first, last = drawn.steps
        colorbar.set_ticks([t for t in MaxNLocator(6, integer=True).tick_values(first, last) if first <= t <= last])
    else:
        axis.set_major_locator(MaxNLocator(5))
    colorbar.set_label(drawn.colour_label)
    return colorbar


def plot_raster(raster: Path, png: Path, *, band: str | int | None = None, title: str | None = None,
                units: str | None = None, significant_only: bool = False, alpha: float | None = None,
                fade: float = 0.25) -> Path:
    """Write one band of ``raster`` as a map with coordinate axes, a scale bar and a colour bar (a legend
    for a categorical band); the default title names the band in words, e.g. "Sen's slope".

    ``significant_only`` fades non-significant pixels to opacity ``fade`` (see :func:`draw_band`).
    """
    _, plt = _pyplot()
    if not 0.0 <= fade <= 1.0:
        raise UsageError(f"--fade {fade}: give an opacity between 0 (hide) and 1 (no fading)")
    if alpha is not None and not 0.0 < alpha < 1.0:
        raise UsageError(f"--alpha {alpha}: give a significance level between 0 and 1, e.g. 0.05")
    from ..engine.formats import readable_geotiff

    check_png_output(png, [raster])
    figure, axes = plt.subplots(dpi=110)
    try:
        with readable_geotiff(raster, Path(png).parent) as readable:  # a NetCDF or Zarr output too
            drawn = draw_band(axes, readable, band=band, units=units, significant_only=significant_only, alpha=alpha,
                              fade=fade)
    except BaseException:
        plt.close(figure)
        raise
    height, width = drawn.shape
    figure.set_size_inches(7.5, min(12.0, 7.5 * height / width + 1.2))
    text = title or f"{Path(raster).name}: {drawn.label}" + (f", {drawn.years}" if drawn.years else "")
    axes.set_title(text + (f"\n{drawn.significance}" if drawn.significance else ""), fontsize=10)
    add_key(figure, axes, drawn)
    return _save(figure, png)


def _years_text(tag: str) -> str:
    from ..years import format_years

    try:
        return format_years(int(y) for y in tag.split(",") if y.strip())
    except ValueError:
        return tag


def plot_rgb(raster: Path, png: Path, rgb: Sequence[int], *, title: str | None = None) -> Path:
    """A true- (or false-) colour view of three bands, each stretched 2-98 percent."""

    _, plt = _pyplot()
    if len(rgb) != 3:
        raise UsageError(f"--rgb needs three band numbers, e.g. 3,2,1 (got {','.join(map(str, rgb))})")
    check_png_output(png, [raster])
    with open_raster(raster) as dataset:
        numbers = [_band_number(dataset, b) for b in rgb]
        data = dataset.read(numbers).astype(np.float64)
    channels = []
    for channel in data:
        finite = np.isfinite(channel)
        low, high = np.percentile(channel[finite], [2, 98]) if finite.any() else (0.0, 1.0)
        channels.append(np.clip((channel - low) / ((high - low) or 1.0), 0, 1))
    image = np.dstack(channels)
    alpha = np.isfinite(data).all(axis=0)
    image = np.dstack([np.nan_to_num(image), alpha.astype(float)])
    height, width = alpha.shape
    figure, axes = plt.subplots(figsize=(7.5, 7.5 * height / width + 0.5), dpi=110)
    axes.imshow(image, interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title or f"{Path(raster).name}: bands {','.join(map(str, numbers))} as RGB", fontsize=10)
    return _save(figure, png)


def plot_pixel(inputs, x: float, y: float, png: Path, *, years: Sequence[int] | None = None,
               year_pattern: str | None = None, band: int = 1, count_band: int | None = None,
               dtype_scale: Mapping[str, tuple[float, float]] | None = None, breaks: int = 0,
               min_segment: float = 0.15, alpha: float = 0.05) -> dict[str, float]:
    """One pixel's yearly values with its OLS and Sen lines; returns the two slopes.

    With ``count_band``, the clear scenes behind each year's value are drawn as bars
    under the series, so a drift in sampling shows next to the trend. ``dtype_scale``
    brings stacks of mixed data types to one scale (see :func:`pipeline.engine.stack.open_stack`).
    With ``breaks``, the segments ``eetrend trend --breaks`` finds are drawn too, each with its
    own least-squares line, and a dashed line after each break year; the returned dict then
    holds the break bands as well."""
    from rasterio.windows import Window

    from ..engine.api import fit
    from ..engine.stack import open_stack

    _, plt = _pyplot()
    if not (math.isfinite(x) and math.isfinite(y)):
        raise UsageError(f"--xy {x} {y}: give two finite map coordinates in the rasters' CRS")
    stack = open_stack(inputs, years=years, year_pattern=year_pattern, band=band, min_years=2,
                       dtype_scale=dtype_scale)
    check_png_output(png, stack.files)
    with open_raster(stack.layers[0].path) as dataset:
        row, col = dataset.index(x, y)
    if not (0 <= row < stack.grid.height and 0 <= col < stack.grid.width):
        raise UsageError(f"--xy {x} {y} is outside the rasters (map coordinates in their CRS)")
    values = stack.read(Window(col, row, 1, 1))[:, 0].astype(np.float64)
    year_list = np.asarray(stack.year_list, dtype=np.float64)
    result = fit(values, year_list, method="both", min_years=2, breaks=breaks, min_segment=min_segment, alpha=alpha)
    ols_slope, ols_intercept = float(result["slope"]), float(result["intercept"])
    sen_slope, sen_intercept = float(result["sen_slope"]), float(result["sen_intercept"])
    counts = None
    if count_band is not None:
        from ..engine.coverage import check_count_band, read_counts

        check_count_band(stack, count_band)
        counts = np.nan_to_num(read_counts(stack, Window(col, row, 1, 1), count_band)[:, 0])
        figure, (axes, below) = plt.subplots(2, 1, figsize=(7.5, 6.0), dpi=110, sharex=True,
                                             gridspec_kw={"height_ratios": [3, 1]})
    else:
        figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    valid = np.isfinite(values)
    axes.plot(year_list[valid], values[valid], "o", color="0.25", label="annual value")
    span = np.array([year_list.min(), year_list.max()])
    units = stack.units or "value"
    axes.plot(span, ols_intercept + ols_slope * span, "-", color="tab:blue",
              label=f"OLS: {ols_slope:+.4g} {units}/year (p={float(result['pvalue']):.3g})")
    axes.plot(span, sen_intercept + sen_slope * span, "--", color="tab:orange",
              label=f"Sen: {sen_slope:+.4g} {units}/year (MK p={float(result['mk_p']):.3g})")
    found = _draw_segments(axes, result, year_list, values, breaks, units) if breaks else {}
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if counts is None:
        axes.set_xlabel("year")
    axes.set_ylabel(units)
    axes.set_title(f"pixel at x={x:g}, y={y:g} (row {row}, col {col}), {int(valid.sum())} valid years", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    if counts is not None:
        below.bar(year_list, counts, color="0.55", width=0.8)
        below.set_ylabel("clear scenes")
        below.set_xlabel("year")
        below.grid(alpha=0.3)
    _save(figure, png)
    return {"slope": ols_slope, "sen_slope": sen_slope, "row": row, "col": col, **found}


def _draw_segments(axes, result, year_list: np.ndarray, values: np.ndarray, breaks: int, units: str) -> dict:
    """Draw each segment of a trend with breaks (its least-squares line over its years) and each break."""
    from ..engine.kernels.breaks import break_bands

    found = {name: float(result[name]) for name in break_bands(breaks)}
    if not np.isfinite(found["bp_count"]):
        return found
    count = int(found["bp_count"])
    valid = np.isfinite(values)
    edges = [-np.inf] + [found[f"bp{i}_year"] for i in range(1, count + 1)] + [np.inf]
    for s in range(count + 1):
        inside = valid & (year_list > edges[s]) & (year_list <= edges[s + 1])
        t, y = year_list[inside], values[inside]
        slope = found[f"seg{s + 1}_slope"]
        intercept = y.mean() - slope * t.mean()
        axes.plot([t.min(), t.max()], [intercept + slope * t.min(), intercept + slope * t.max()], "-",
                  color="tab:green", linewidth=2.2, alpha=0.8,
                  label=f"segment {s + 1}: {slope:+.4g} {units}/year (p={found[f'seg{s + 1}_p']:.3g})")
    for i in range(1, count + 1):
        year = found[f"bp{i}_year"]
        after = year_list[valid & (year_list > year)].min()
        axes.axvline((year + after) / 2, color="tab:green", linestyle=":", linewidth=1.2,
                     label=f"break after {year:.0f}" + (f" (MOSUM p={found['mosum_p']:.3g})" if i == 1 else ""))
    return found
