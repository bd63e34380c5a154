"""The pixel grid of a study's export, computed once for every route that asks Earth Engine for pixels.

A batch export folds its grid into the expression (``crsTransform`` or ``scale`` plus the
region, see ``pipeline/emulator/expression.py``); a direct fetch sends it as a REST
``PixelGrid`` (``dimensions``, ``affineTransform``, ``crsCode``). Both must be the same
grid, so both are worked out here, by :func:`grid_over`: the lattice (Landsat's
``crsTransform``, or ``scale`` metres from the CRS's origin) cut to the whole pixels the
projected region touches. The emulator derives an export's grid from its expression
with the same function, so an export and a direct fetch of one study cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Study

#: Metres per degree at the equator (WGS84 semi-major axis * pi / 180): how a ``scale`` in metres
#: becomes a pixel size in degrees for a geographic CRS (guessed from Earth Engine's behaviour).
METRES_PER_DEGREE = 6378137.0 * math.pi / 180.0

Transform = tuple[float, float, float, float, float, float]  # rasterio/GDAL order: a, b, c, d, e, f


@dataclass(frozen=True)
class PixelGrid:
    """A north-up pixel grid: CRS, affine transform of its top-left pixel, and size."""

    crs: str
    transform: Transform
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def window_transform(self, row: int, col: int) -> Transform:
        """The transform of the window whose top-left pixel is (``row``, ``col``) of this grid."""
        a, b, c, d, e, f = self.transform
        return (a, b, c + col * a, d, e, f + row * e)

    def rest_grid(self, row: int, col: int, height: int, width: int) -> dict[str, Any]:
        """The REST v1 ``PixelGrid`` of a window of this grid, as ``image:computePixels`` takes it."""
        a, b, c, d, e, f = self.window_transform(row, col)
        return {"crsCode": self.crs, "dimensions": {"width": width, "height": height},
                "affineTransform": {"scaleX": a, "shearX": b, "translateX": c,
                                    "shearY": d, "scaleY": e, "translateY": f}}


def scale_lattice(crs: str, scale: float) -> Transform:
    """The lattice of a ``scale``-only export: pixel corners on multiples of the scale from the CRS origin."""
    size = scale / METRES_PER_DEGREE if crs == "EPSG:4326" else scale
    return (size, 0.0, 0.0, 0.0, -size, 0.0)


def densify(ring: list[list[float]], steps: int = 16) -> list[list[float]]:
    """Points along each edge, so a planar lon/lat edge stays an edge once projected."""
    out: list[list[float]] = []
    for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:], strict=True):
        out.extend([[x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps] for k in range(steps)])
    out.append(list(ring[-1]))
    return out


def rectangle_geojson(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    """A lon/lat rectangle (``ee.Geometry.Rectangle``, planar) as a densified GeoJSON polygon."""
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [densify(ring)]}


def polygon_geojson(geometry: dict[str, Any]) -> dict[str, Any]:
    """A GeoJSON Polygon or MultiPolygon with every ring densified."""
    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [densify(ring) for ring in geometry["coordinates"]]}
    return {"type": "MultiPolygon",
            "coordinates": [[densify(ring) for ring in polygon] for polygon in geometry["coordinates"]]}


def grid_over(crs: str, lattice: Transform, region: dict[str, Any]) -> tuple[PixelGrid, dict[str, Any]]:
    """The grid of ``lattice`` cut to the whole pixels the lon/lat ``region`` touches; and the projected region."""
    import rasterio.warp

    projected = rasterio.warp.transform_geom("EPSG:4326", crs, region)
    rings = projected["coordinates"] if projected["type"] == "Polygon" else \
        [ring for polygon in projected["coordinates"] for ring in polygon]
    xs = [float(p[0]) for ring in rings for p in ring]
    ys = [float(p[1]) for ring in rings for p in ring]
    a, _, c, _, e, f = lattice
    col0, col1 = math.floor((min(xs) - c) / a + 1e-9), math.ceil((max(xs) - c) / a - 1e-9)
    row0, row1 = math.floor((f - max(ys)) / -e + 1e-9), math.ceil((f - min(ys)) / -e - 1e-9)
    transform = (a, 0.0, c + col0 * a, 0.0, e, f + row0 * e)
    return PixelGrid(crs, transform, max(col1 - col0, 1), max(row1 - row0, 1)), projected


def study_region_geojson(study: Study) -> dict[str, Any] | None:
    """The study region as the emulator reads it from an export's expression; None for a table asset."""
    import json

    from ..config import region_geometry

    region = study.config.region
    if region.bbox is not None:
        return rectangle_geojson(*region.bbox)
    if region.geojson is not None:
        geometry = region_geometry(json.loads(study.resolve(region.geojson).read_text(encoding="utf-8")))
        return polygon_geojson(geometry) if geometry is not None else None
    return None


def study_grid(study: Study) -> PixelGrid:
    """The grid a batch export of ``study`` writes: Landsat's ``crsTransform`` or ``scale``, over the region."""
    from ..errors import ConfigError

    region = study_region_geojson(study)
    if region is None:
        raise ConfigError("region.asset: the direct route computes the export's grid from the region's corners, "
                          "which a table asset keeps on Earth Engine; give region.bbox or region.geojson, or use "
                          "destination = 'drive' or 'gcs'")
    transform = study.crs_transform()
    lattice = tuple(transform) if transform is not None else scale_lattice(study.config.region.crs,
                                                                           study.config.region.scale)
    grid, _ = grid_over(study.config.region.crs, lattice, region)  # type: ignore[arg-type]
    return grid
