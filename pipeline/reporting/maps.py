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
    if band in OLS_ESTIMATES:
        raw = "pvalue"
    elif band in MK_ESTIMATES:
        raw = "mk_p"
    else:
        raw = primary
    raw = raw if raw in names else None
    fdr = "p_fdr" if "p_fdr" in names and raw == primary else None
    return raw, fdr


def test_name(p_band: str) -> str:
    return {"pvalue": "OLS t-test", "mk_p": "Mann-Kendall", "p_fdr": "FDR-adjusted"}.get(p_band, p_band)


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
