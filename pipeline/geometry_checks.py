"""Checks of a study's region before any request: the CRS exists, the bbox is degrees in order, the GeoJSON is sound.

Earth Engine would refuse most of these only after a task was submitted (or, worse,
export the wrong place: a bbox with latitude and longitude swapped is still a valid
rectangle). Everything here is local: the CRS is looked up in PROJ's database through
rasterio, and GeoJSON is checked against RFC 7946 (positions are longitude, latitude in
WGS84; a polygon's rings are closed, with at least four positions). Each problem is one
line naming the key, or the place in the GeoJSON file, and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

#: Metres per degree of latitude, and of longitude at the equator (WGS84, rounded).
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0
MAX_RING_CHECK = 2000  # rings longer than this are not checked for self-intersection (it is quadratic)


def check_crs(code: str) -> None:
    """``code`` must be a geographic or projected CRS that PROJ knows (no request is made)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        with rasterio.Env():
            crs = CRS.from_string(code)
            usable = crs.is_geographic or crs.is_projected
    except CRSError:
        raise ConfigError(f"region.crs: {code} is not a known CRS (looked up in PROJ's EPSG database); "
                          "check the code at https://epsg.io, e.g. 'EPSG:32633' for UTM zone 33N") from None
    if not usable:
        raise ConfigError(f"region.crs: {code} is neither a geographic nor a projected CRS (it is vertical or "
                          "geocentric); give the CRS of the exported grid, e.g. 'EPSG:32633'")


def _utm_zone(crs) -> tuple[int, bool] | None:
    params = crs.to_dict()
    if params.get("proj") != "utm" or "zone" not in params:
        return None
    return int(params["zone"]), bool(params.get("south"))


def check_bbox(bbox: Sequence[float], crs: str | None = None) -> None:
    """A bbox must be [west, south, east, north] in WGS84 degrees; swapped or projected ones are named."""
    west, south, east, north = bbox
    text = f"[{', '.join(f'{v:g}' for v in bbox)}]"
    if not all(math.isfinite(v) for v in bbox):
        raise ConfigError(f"region.bbox {text} holds a value that is not a finite number")
    if any(abs(v) > 360 for v in bbox):
        raise ConfigError(f"region.bbox {text} looks like projected coordinates (metres); bbox is in WGS84 degrees: "
                          "[west, south, east, north], e.g. [10.8, 46.4, 11.05, 46.55]")
    if all(abs(v) <= 90 for v in (west, east)) and any(abs(v) > 90 for v in (south, north)):
        raise ConfigError(f"region.bbox {text} has a latitude beyond 90 degrees; longitude and latitude look swapped: "
                          f"write [{south:g}, {west:g}, {north:g}, {east:g}] ([west, south, east, north])")
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise ConfigError(f"region.bbox {text}: longitudes must lie in -180..180 and latitudes in -90..90 degrees")
    if west >= east or south >= north:
        fix = [min(west, east), min(south, north), max(west, east), max(south, north)]
        raise ConfigError(f"region.bbox {text} is not [west, south, east, north] with west < east and south < north; "
                          f"did you mean [{', '.join(f'{v:g}' for v in fix)}]?")
    if crs is not None:
        _check_utm_fit(text, (west + east) / 2, (south + north) / 2, crs, swapped=((south + north) / 2,
                                                                                    (west + east) / 2))


def _check_utm_fit(text: str, lon: float, lat: float, crs: str, swapped: tuple[float, float] | None) -> None:
    """A region far outside its UTM zone is almost always a mistake (or latitude and longitude swapped)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        with rasterio.Env():
            zone = _utm_zone(CRS.from_string(crs))
    except CRSError:
        return
    if zone is None:
        return
    number, south = zone
    meridian = number * 6 - 183
    if _fits(lon, lat, meridian, south):
        return
    hint = "; longitude and latitude look swapped" if swapped and _fits(*swapped, meridian, south) else ""
    side = "south" if south else "north"
    raise ConfigError(f"region {text} (centre {lon:g}, {lat:g}) lies far outside {crs}, UTM zone {number} {side} "
                      f"(longitudes {meridian - 3}..{meridian + 3}){hint}; check the coordinates or choose the UTM "
                      "zone of the region")


def _fits(lon: float, lat: float, meridian: float, south: bool) -> bool:
    delta = (lon - meridian + 180) % 360 - 180
    return abs(delta) <= 9 and (lat <= 1 if south else lat >= -1)


def check_pixels(bounds: Sequence[float], scale: float, max_pixels: float, where: str) -> None:
    """The region at ``scale`` metres must cover at least one pixel and at most ``max_pixels``."""
    west, south, east, north = bounds
    mid = math.radians((south + north) / 2)
    width = (east - west) * M_PER_DEG_LON * max(math.cos(mid), 1e-6) / scale
    height = (north - south) * M_PER_DEG_LAT / scale
    if width < 1 or height < 1:
        raise ConfigError(f"{where} is about {width:.2g} x {height:.2g} pixels at region.scale = {scale:g} m: smaller "
                          "than one pixel; enlarge the region or lower region.scale")
    if width * height > max_pixels:
        raise ConfigError(f"{where} is about {width * height:.3g} pixels at region.scale = {scale:g} m, more than "
                          f"export.max_pixels = {max_pixels:g} (Earth Engine would refuse: 'Export too large'); "
                          "raise region.scale, shrink the region, or raise export.max_pixels")


# -- GeoJSON ------------------------------------------------------------------------------------------
def check_geojson(data: Any, name: str) -> tuple[float, float, float, float]:
    """Check every polygon of a GeoJSON object (RFC 7946); returns its bounds. Problems name the place."""
    polygons = list(_polygons(data, "", name))
    if not polygons:
        raise ConfigError(f"region.geojson: {name} holds no Polygon or MultiPolygon (a Polygon, a MultiPolygon, a "
                          "Feature or a FeatureCollection of them is needed)")
    xs: list[float] = []
    ys: list[float] = []
    for where, coordinates in polygons:
        for x, y in _check_polygon(coordinates, where, name):
            xs.append(x)
            ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


def _polygons(data: Any, where: str, name: str):
    """Yield (place, coordinates) of every Polygon; refuse shapes that cannot be a region."""
    if not isinstance(data, dict):
        raise ConfigError(f"region.geojson: {name}{where or ''} is {_kind(data)}, not a GeoJSON object")
    kind = data.get("type")
    if kind == "Polygon":
        yield f"{where}", data.get("coordinates")
    elif kind == "MultiPolygon":
        coordinates = data.get("coordinates")
        if not isinstance(coordinates, list) or not coordinates:
            raise ConfigError(f"region.geojson: {name}{where}.coordinates is {_kind(coordinates)}; a MultiPolygon "
                              "needs a list of polygons")
        for i, polygon in enumerate(coordinates):
            yield f"{where}.coordinates[{i}]", polygon
    elif kind == "Feature":
        geometry = data.get("geometry")
        if geometry is not None:
            yield from _polygons(geometry, f"{where}.geometry", name)
    elif kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise ConfigError(f"region.geojson: {name}{where}.features is {_kind(features)}; a FeatureCollection "
                              "needs a list of features")
        for i, feature in enumerate(features):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise ConfigError(f"region.geojson: {name}{where}.features[{i}] is not a Feature object")
            yield from _polygons(feature, f"{where}.features[{i}]", name)
    elif kind in ("Point", "MultiPoint", "LineString", "MultiLineString", "GeometryCollection"):
        return
    else:
        raise ConfigError(f"region.geojson: {name}{where} has type {kind!r}, not a GeoJSON geometry or feature")


def _check_polygon(coordinates: Any, where: str, name: str) -> list[tuple[float, float]]:
    place = f"region.geojson: {name}{where or ''}"
    if not isinstance(coordinates, list) or not coordinates:
        raise ConfigError(f"{place}: a Polygon needs coordinates, a list of rings (got {_kind(coordinates)})")
    points: list[tuple[float, float]] = []
    for r, ring in enumerate(coordinates):
        at = f"{place} ring {r}"
        if not isinstance(ring, list) or len(ring) < 4:
            raise ConfigError(f"{at}: a ring needs at least 4 positions, the last equal to the first "
                              f"(got {_kind(ring)})")
        positions = [_position(p, f"{at} position {i}") for i, p in enumerate(ring)]
        if positions[0] != positions[-1]:
            raise ConfigError(f"{at} is not closed: its last position {list(positions[-1])} differs from its first "
                              f"{list(positions[0])}; repeat the first position at the end")
        if abs(_area(positions)) == 0:
            raise ConfigError(f"{at} encloses no area (its positions are the same or on one line)")
        crossing = _self_intersection(positions)
        if crossing is not None:
            raise ConfigError(f"{at} crosses itself near {crossing[0]:g}, {crossing[1]:g}; fix the polygon "
                              "(e.g. in QGIS: Vector > Geometry Tools > Check Validity)")
        points.extend(positions)
    return points


def _position(value: Any, at: str) -> tuple[float, float]:
    if not isinstance(value, list) or not 2 <= len(value) <= 3 or not all(_is_number(v) for v in value):
        raise ConfigError(f"{at} is {_kind(value)}; a position is [longitude, latitude] in degrees")
    lon, lat = float(value[0]), float(value[1])
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ConfigError(f"{at} is not finite")
    if abs(lon) > 360 or abs(lat) > 360:
        raise ConfigError(f"{at} [{lon:g}, {lat:g}] looks like projected coordinates; GeoJSON is WGS84 longitude, "
                          "latitude in degrees (RFC 7946): reproject the file, e.g. ogr2ogr -t_srs EPSG:4326")
    if abs(lon) > 180 or abs(lat) > 90:
        raise ConfigError(f"{at} [{lon:g}, {lat:g}] is outside -180..180, -90..90; GeoJSON positions are "
                          "[longitude, latitude]")
    return lon, lat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, list) and not value:
        return "an empty list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _area(ring: list[tuple[float, float]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False)) / 2


def _self_intersection(ring: list[tuple[float, float]]) -> tuple[float, float] | None:
    """A point where two non-adjacent edges of the closed ring cross, or None (rings up to MAX_RING_CHECK)."""
    edges = list(zip(ring, ring[1:], strict=False))
    n = len(edges)
    if n > MAX_RING_CHECK:
        return None
    for i in range(n):
        a, b = edges[i]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the first and last edges share the closing position
            c, d = edges[j]
            if _cross(a, b, c, d):
                return c
    return None


def _cross(a, b, c, d) -> bool:
    def orient(p, q, r) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    if max(a[0], b[0]) < min(c[0], d[0]) or max(c[0], d[0]) < min(a[0], b[0]):
        return False
    if max(a[1], b[1]) < min(c[1], d[1]) or max(c[1], d[1]) < min(a[1], b[1]):
        return False
    d1, d2, d3, d4 = orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


def check_region(study) -> None:
    """All region checks for a loaded study (called by ``load_study``)."""
    region = study.config.region
    check_crs(region.crs)
    bounds = None
    if region.bbox is not None:
        check_bbox(region.bbox, region.crs)
        bounds, where = region.bbox, "region.bbox"
    elif region.geojson is not None:
        path = study.resolve(region.geojson)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # load_study has already said why it cannot be read
        bounds = check_geojson(data, str(path))
        where = "region.geojson"
        lon, lat = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
        _check_utm_fit(f"{path.name}", lon, lat, region.crs, swapped=(lat, lon))
    if bounds is not None:
        check_pixels(bounds, region.scale, study.config.export.max_pixels, where)
