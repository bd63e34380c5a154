"""One way to draw a raster band as a map, shared by ``eetrend plot`` and the HTML report.

What every map gets:
- axes in map coordinates from the raster's transform: easting/northing in km (or m)
  for a projected CRS, longitude/latitude in degrees for a geographic one, with the
  CRS named in the axis label; a raster without a CRS (or with a rotated transform)
  keeps column/row axes;
- a scale bar (in a geographic CRS, measured along the map's centre latitude);
- optionally, non-significant pixels faded (drawn with a low opacity over white);
- optionally, the study region outlined.
Pictures of large rasters are read decimated (GDAL picks overviews where the file has
them), so drawing stays within a few tens of MB whatever the raster's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_PICTURE_PIXELS = 1200  # longest side read for a picture; figures are about 800-1000 pixels wide

# Bands of a trend output and the test whose p-value says whether they are significant.
OLS_ESTIMATES = {"slope", "intercept", "rvalue", "stderr", "intercept_stderr", "pvalue"}
MK_ESTIMATES = {"sen_slope", "sen_intercept", "sen_low", "sen_high", "mk_s", "mk_var_s", "mk_z", "mk_p", "mk_tau"}


@dataclass(frozen=True)
class MapFrame:
    """Where a picture sits on the map: its extent in map units and how to label the axes."""

    extent: tuple[float, float, float, float] | None  # left, right, bottom, top; None for pixel axes
    geographic: bool
    metres_per_unit: float  # of the CRS's linear unit (1.0 for metres); for geographic, metres per degree of latitude
    crs_name: str
    rows_go_north: bool = False  # a grid stored south-up (transform e > 0): row 0 is the southern edge

    @property
    def has_coordinates(self) -> bool:
        return self.extent is not None


def map_frame(transform: Sequence[float], width: int, height: int, crs) -> MapFrame:
    """The picture's extent in map units from an affine ``transform`` (a, b, c, d, e, f) and ``crs``."""
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    if crs is None or not str(crs) or b != 0 or d != 0:
        return MapFrame(None, False, 1.0, "")
    from rasterio.crs import CRS

    crs = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    left, right = sorted((c, c + a * width))
    bottom, top = sorted((f, f + e * height))
    name = crs.to_string() if crs.to_epsg() is None else f"EPSG:{crs.to_epsg()}"
    if len(name) > 30:
        name = (crs.to_dict().get("proj") or "custom CRS") if hasattr(crs, "to_dict") else "custom CRS"
    if crs.is_geographic:
        return MapFrame((left, right, bottom, top), True, 111_320.0, name, e > 0)
    try:
        factor = crs.linear_units_factor[1]
    except Exception:  # noqa: BLE001 - a CRS without a linear unit: label in its own units
        factor = 1.0
    return MapFrame((left, right, bottom, top), False, float(factor or 1.0), name, e > 0)


def read_picture(dataset, band: int, max_pixels: int = MAX_PICTURE_PIXELS) -> tuple[np.ndarray, tuple[float, ...]]:
    """One band as float64 with NaN for nodata, decimated so its longest side is at most ``max_pixels``.

    Returns the values and the transform of the (possibly decimated) picture.
    """
    scale = max(1.0, max(dataset.width, dataset.height) / max_pixels)
    shape = (max(1, round(dataset.height / scale)), max(1, round(dataset.width / scale)))
    from rasterio.enums import Resampling

    raw = dataset.read(band, out_shape=shape, resampling=Resampling.nearest)
    values = raw.astype(np.float64)
    nodata = dataset.nodata
    if nodata is not None and not math.isnan(nodata):
        values[raw == nodata] = np.nan
    a, b, c, d, e, f = tuple(dataset.transform)[:6]
    sx, sy = dataset.width / shape[1], dataset.height / shape[0]
    return values, (a * sx, b * sy, c, d * sx, e * sy, f)


def significance_bands(band: str, names: Sequence[str]) -> tuple[str | None, str | None]:
    """(raw p band, FDR-adjusted p band) that decide whether ``band`` is significant, by band description.

    OLS estimates go with ``pvalue``, Sen and Mann-Kendall ones with ``mk_p``. ``p_fdr``
    adjusts the p-value of the test behind ``trend_class`` (Mann-Kendall where the file has
    it), so it applies only to bands of that test. Missing bands give None.
    """
    names = list(names)
    primary = "mk_p" if "mk_p" in names else "pvalue"
    if band == "cp_year":
        return ("cp_p" if "cp_p" in names else None), None
    if band in OLS_ESTIMATES:
        raw = "pvalue"
    elif band in MK_ESTIMATES:
        raw = "mk_p"
    else:
        raw = primary
    raw = raw if raw in names else None
    fdr = "p_fdr" if "p_fdr" in names and raw == primary else None
    return raw, fdr


# What each band is, in words, for titles, colour bars and captions (``{mk}``: the Mann-Kendall variant).
BAND_LABELS = {
    "slope": "OLS slope", "intercept": "OLS intercept", "rvalue": "OLS correlation r", "pvalue": "OLS t-test p-value",
    "stderr": "OLS slope standard error", "intercept_stderr": "OLS intercept standard error",
    "sen_slope": "Sen's slope", "sen_intercept": "Sen's intercept",
    "sen_low": "Sen's slope, lower confidence bound", "sen_high": "Sen's slope, upper confidence bound",
    "mk_s": "{mk} S", "mk_var_s": "{mk} variance of S", "mk_z": "{mk} z", "mk_p": "{mk} p-value",
    "mk_tau": "Kendall's tau", "n": "valid years per pixel (n)", "p_fdr": "FDR-adjusted p-value",
    "trend_class": "trend class", "trend_class_fdr": "trend class, FDR-corrected",
    "cp_year": "change point: last year before it (Pettitt)", "cp_p": "Pettitt change point p-value",
}
PER_YEAR_BANDS = {"slope", "stderr", "sen_slope", "sen_low", "sen_high"}  # in units of the values per year
MK_VARIANTS = {"original": "Mann-Kendall", "hamed-rao": "Mann-Kendall (Hamed-Rao)",
               "yue-wang": "Mann-Kendall (Yue-Wang)", "prewhiten": "Mann-Kendall (pre-whitened)",
               "tfpw": "Mann-Kendall (TFPW)"}
FDR_NAMES = {"bh": "Benjamini-Hochberg", "by": "Benjamini-Yekutieli"}
TREND_CLASS_COLOURS = {-1: "#8c510a", 0: "#d9dee3", 1: "#01665e"}  # the report's decrease / none / increase


def slope_band(names: Sequence[str]) -> str:
    """The estimator a study's picture and its report map both show: Sen's slope where the output has it
    (robust to outliers, the one ``trend_class`` follows with ``method = "both"``), else the OLS slope."""
    return "sen_slope" if "sen_slope" in names else "slope"


def mk_name(tags: dict[str, str] | None) -> str:
    """The Mann-Kendall variant a trend file was fitted with, e.g. "Mann-Kendall (TFPW)", from its tags."""
    key = (tags or {}).get("mk_test", "original").split(":", 1)[0].strip()
    return MK_VARIANTS.get(key, f"Mann-Kendall ({key})")


def fdr_name(tags: dict[str, str] | None) -> str | None:
    """E.g. "Benjamini-Hochberg, q = 0.05" for a file fitted with ``--fdr``, else None."""
    tags = tags or {}
    method = tags.get("fdr_method", "").split()[0].removeprefix("fdr_") if tags.get("fdr_method") else ""
    if not method:
        return None
    return f"{FDR_NAMES.get(method, method)}, q = {tags.get('fdr_q', '?')}"


def band_label(name: str, tags: dict[str, str] | None = None) -> str:
    """A band's name in words (its description if eetrend has no words for it)."""
    return BAND_LABELS.get(name, name.replace("_", " ")).format(mk=mk_name(tags))


def test_name(p_band: str, tags: dict[str, str] | None = None) -> str:
    """The test behind a p-value band, naming the Mann-Kendall variant the file records."""
    return {"pvalue": "OLS t-test", "mk_p": mk_name(tags), "p_fdr": "FDR-adjusted",
            "cp_p": "Pettitt"}.get(p_band, p_band)


@dataclass(frozen=True)
class Categories:
    """A band whose values are classes: each value's colour and words, for a legend instead of a colour bar."""

    values: tuple[float, ...]
    labels: tuple[str, ...]
    colours: tuple[str, ...]
    title: str


def categories(name: str, tags: dict[str, str] | None, present: np.ndarray) -> Categories | None:
    """The classes of a categorical band (``trend_class``, ``trend_class_fdr``, or a ``*_type`` / ``*_class``
    band such as a change type), or None for a band of measured values. ``present`` holds the values found."""
    tags = tags or {}
    if name in ("trend_class", "trend_class_fdr"):
        if name == "trend_class_fdr":
            test = f"{fdr_name(tags) or 'FDR'}"
        else:
            test = f"{mk_name(tags) if tags.get('method', 'both') != 'ols' else 'OLS t-test'} p < " \
                   f"{tags.get('alpha', '0.05')}"
        return Categories((-1.0, 0.0, 1.0), ("significant decrease", "no significant trend", "significant increase"),
                          tuple(TREND_CLASS_COLOURS[v] for v in (-1, 0, 1)), f"{band_label(name)}\n{test}")
    if not (name.endswith("_type") or name.endswith("_class")):
        return None
    import matplotlib

    found = tuple(float(v) for v in np.unique(present[np.isfinite(present)])[:20])
    words = _class_words(tags.get(name, ""))
    palette = matplotlib.colormaps["tab10"].colors
    colours = tuple(matplotlib.colors.to_hex(palette[i % len(palette)]) for i in range(len(found)))
    labels = tuple(words.get(v, f"class {v:g}") for v in found)
    return Categories(found, labels, colours, band_label(name))


def _class_words(text: str) -> dict[float, str]:
    """``"0 none, 1 abrupt, 2 gradual"`` (a band's tag) as {0: "none", 1: "abrupt", 2: "gradual"}."""
    import re

    words = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*[:=]?\s*(.+?)\s*", part)
        if match:
            words[float(match.group(1))] = match.group(2)
    return words


def is_year_band(name: str) -> bool:
    """A band whose values are calendar years (drawn with one colour per year, never "per year")."""
    return name == "cp_year" or name.endswith("_year")


def is_stepped_band(name: str) -> bool:
    """A band of whole numbers drawn one colour per value without units: years, and ``n`` (its label says
    "valid years")."""
    return is_year_band(name) or name == "n"


def nice_length(target: float) -> float:
    """The largest of 1, 2, 5 x 10^k not above ``target`` (for scale bars)."""
    if target <= 0 or not math.isfinite(target):
        return 1.0
    power = 10 ** math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * power <= target:
            return step * power
    return power


def metres_per_degree_longitude(latitude: float) -> float:
    """Length of one degree of longitude on the WGS84 ellipsoid at ``latitude``."""
    a, e2 = 6_378_137.0, 0.00669437999014
    phi = math.radians(latitude)
    return math.pi * a * math.cos(phi) / (180.0 * math.sqrt(1.0 - e2 * math.sin(phi) ** 2))


def _length_text(metres: float) -> str:
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"


def add_scale_bar(axes, frame: MapFrame) -> None:
    """A bar of a round length (about a fifth of the map's width) in the lower right corner."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    left, right = axes.get_xlim()
    bottom, top = axes.get_ylim()
    if frame.geographic:
        per_unit = metres_per_degree_longitude((bottom + top) / 2)
    else:
        per_unit = frame.metres_per_unit
    metres = nice_length(abs(right - left) * per_unit / 5)
    bar = AnchoredSizeBar(axes.transData, metres / per_unit, _length_text(metres), "lower right", pad=0.4,
                          sep=3, borderpad=0.6, frameon=True, size_vertical=abs(top - bottom) / 150,
                          color="0.1", fontproperties={"size": 8})
    bar.patch.set_alpha(0.8)
    bar.patch.set_edgecolor("none")
    axes.add_artist(bar)


def _label_axes(axes, frame: MapFrame) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axes.tick_params(labelsize=8)
    axes.xaxis.set_major_locator(MaxNLocator(5))
    axes.yaxis.set_major_locator(MaxNLocator(5))
    if not frame.has_coordinates:
        axes.set_xlabel("column (no map coordinates in this raster)", fontsize=9)
        axes.set_ylabel("row", fontsize=9)
        return
    if frame.geographic:
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):.4g}°{'E' if v >= 0 else 'W'}"))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):.4g}°{'N' if v >= 0 else 'S'}"))
        axes.set_xlabel(f"longitude ({frame.crs_name})", fontsize=9)
        axes.set_ylabel(f"latitude ({frame.crs_name})", fontsize=9)
        return
    left, right, bottom, top = frame.extent
    span_m = max(right - left, top - bottom) * frame.metres_per_unit
    if span_m >= 5000:
        factor, unit = 1000.0 / frame.metres_per_unit, "km"
    else:
        factor, unit = 1.0 / frame.metres_per_unit, "m"
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v / factor)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v / factor)))
    axes.set_xlabel(f"easting ({unit}, {frame.crs_name})", fontsize=9)
    axes.set_ylabel(f"northing ({unit}, {frame.crs_name})", fontsize=9)


def _tick(value: float) -> str:
    """A tick label without trailing zeros or exponent: 4999.5, 5000, 501."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def draw_map(
    axes,
    values: np.ndarray,
    frame: MapFrame,
    *,
    cmap,
    vmin: float,
    vmax: float,
    faded: np.ndarray | None = None,
    fade: float = 0.25,
    region: Sequence[np.ndarray] = (),
    scale_bar: bool = True,
):
    """Draw ``values`` on ``axes`` in map coordinates; returns the image (for a colour bar).

    ``faded`` marks pixels drawn at opacity ``fade`` (non-significant ones); ``region``
    holds rings of (x, y) map coordinates to outline. NaN is transparent.
    """
    alpha = None
    if faded is not None:
        alpha = np.where(faded, fade, 1.0)
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                        extent=frame.extent, alpha=alpha, origin="lower" if frame.rows_go_north else "upper")
    if frame.has_coordinates:
        _outline(axes, frame, region)
        if frame.geographic:
            left, right, bottom, top = frame.extent
            axes.set_aspect(1.0 / max(0.05, math.cos(math.radians((bottom + top) / 2))))
        else:
            axes.set_aspect("equal")
    _label_axes(axes, frame)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if scale_bar and frame.has_coordinates:
        add_scale_bar(axes, frame)
    return image


def region_placement(rings: Sequence[np.ndarray], extent: tuple[float, float, float, float]) -> str:
    """Where the region lies against the raster: "shown" (the view widens to hold it), "larger" or "apart"."""
    left, right, bottom, top = extent
    xs = np.concatenate([np.asarray(r)[:, 0] for r in rings])
    ys = np.concatenate([np.asarray(r)[:, 1] for r in rings])
    if xs.max() < left or xs.min() > right or ys.max() < bottom or ys.min() > top:
        return "apart"
    union = (min(left, xs.min()), max(right, xs.max()), min(bottom, ys.min()), max(top, ys.max()))
    if (union[1] - union[0]) * (union[3] - union[2]) > 4 * (right - left) * (top - bottom):
        return "larger"
    return "shown"


def _outline(axes, frame: MapFrame, region: Sequence[np.ndarray]) -> None:
    """Outline the region; widen the view to hold it unless it dwarfs (or misses) the raster."""
    rings = [np.asarray(r, dtype=float) for r in region if len(r) >= 2]
    if not rings:
        return
    left, right, bottom, top = frame.extent
    for ring in rings:
        axes.plot(ring[:, 0], ring[:, 1], color="0.15", linewidth=1.1, solid_joinstyle="round")
    if region_placement(rings, frame.extent) == "shown":
        xs = np.concatenate([r[:, 0] for r in rings] + [np.array([left, right])])
        ys = np.concatenate([r[:, 1] for r in rings] + [np.array([bottom, top])])
        pad_x, pad_y = 0.02 * (xs.max() - xs.min()), 0.02 * (ys.max() - ys.min())
        axes.set_xlim(xs.min() - pad_x, xs.max() + pad_x)
        axes.set_ylim(ys.min() - pad_y, ys.max() + pad_y)
    else:
        axes.set_xlim(left, right)
        axes.set_ylim(bottom, top)


def region_rings(geometry: dict, crs) -> list[np.ndarray]:
    """The rings of a WGS84 GeoJSON (Multi)Polygon, reprojected to ``crs`` (densified so edges bend as they should)."""
    from rasterio.warp import transform_geom

    dense = _densify(geometry, steps=32)
    projected = transform_geom("EPSG:4326", crs, dense)
    polygons = projected["coordinates"] if projected["type"] == "MultiPolygon" else [projected["coordinates"]]
    return [np.asarray(ring, dtype=float)[:, :2] for polygon in polygons for ring in polygon]


def bbox_geometry(bbox: Sequence[float]) -> dict:
    west, south, east, north = bbox
    return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                [west, south]]]}


def _densify(geometry: dict, steps: int) -> dict:
    def ring(points):
        out = []
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=False):
            out += [[x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps] for t in range(steps)]
        out.append(list(points[-1][:2]))
        return out

    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    dense = [[ring([p[:2] for p in r]) for r in polygon] for polygon in polygons]
    return {"type": "MultiPolygon", "coordinates": dense}


def footprint_rings(valid: np.ndarray, frame: MapFrame) -> list[np.ndarray]:
    """The outer outline of the valid-data pixels (holes filled, specks dropped), in map coordinates."""
    if not frame.has_coordinates or not valid.any():
        return []
    from matplotlib.figure import Figure
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(valid)
    if filled.all():
        return []  # the data fill the whole rectangle: the map's frame is the outline
    left, right, bottom, top = frame.extent
    rows, cols = filled.shape
    padded = np.zeros((rows + 2, cols + 2))
    padded[1:-1, 1:-1] = filled
    xs = left + (np.arange(cols + 2) - 0.5) * (right - left) / cols
    step = (top - bottom) / rows
    ys = bottom + (np.arange(rows + 2) - 0.5) * step if frame.rows_go_north else \
        top - (np.arange(rows + 2) - 0.5) * step
    contour = Figure().add_subplot().contour(xs, ys, padded, levels=[0.5])
    smallest = 0.02 * (rows + cols)  # rings shorter than this many pixels are specks, not the footprint
    return [np.asarray(s) for s in contour.allsegs[0] if len(s) >= smallest]
