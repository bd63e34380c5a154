"""What an export request asks for, read from its serialized Earth Engine expression.

The ``ee`` client folds the export's pixel grid into the expression instead of sending
a ``grid`` (``ee/image.py``, ``_apply_crs_and_affine`` and ``_apply_selection_and_scale``):

- ``scale`` (metres per pixel): ``Image.clipToBoundsAndScale(input=Image.setDefaultProjection(
  image, crs, [1,0,0,0,-1,0]), geometry=region, scale=S)``;
- ``crsTransform``: ``Image.clip(input=Image.reproject(image, crs, crsTransform=T), geometry=region)``.

This module decodes the expression graph (``valueReference`` / ``constantValue`` /
``functionInvocationValue`` / ``arrayValue`` / ``dictionaryValue``) and works out the
grid Earth Engine writes: its CRS, affine transform and size, the pixels inside the
region, and whether masked pixels were replaced by ``Image.unmask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Metres per degree at the equator (WGS84 semi-major axis * pi / 180): how a ``scale`` in metres
#: becomes a pixel size in degrees for a geographic CRS (guessed from Earth Engine's behaviour).
METRES_PER_DEGREE = 6378137.0 * math.pi / 180.0


@dataclass(frozen=True)
class Call:
    """One ``functionInvocationValue``: the algorithm's name and its decoded arguments."""

    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ExportGrid:
    """The pixel grid of an export and which of its pixels the region covers."""

    crs: str
    transform: tuple[float, float, float, float, float, float]  # rasterio/GDAL order: a, b, c, d, e, f
    width: int
    height: int
    inside: np.ndarray  # bool (height, width): pixel centre inside the region (after the export's clip)
    clip_to_region: bool  # Image.clip (crsTransform): pixels outside the polygon are masked in the export
    unmask_value: float | None  # Image.unmask(value) in the chain: masked composite pixels take this value
    same_footprint: bool  # unmask's sameFootprint (True keeps pixels outside the composite's footprint masked)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def decode(expression: dict[str, Any]) -> Any:
    """The expression's result as Python values and :class:`Call` objects."""
    values = expression["values"]
    cache: dict[str, Any] = {}

    def node(value: dict[str, Any]) -> Any:
        if "constantValue" in value:
            return value["constantValue"]
        if "valueReference" in value:
            ref = value["valueReference"]
            if ref not in cache:
                cache[ref] = node(values[ref])
            return cache[ref]
        if "functionInvocationValue" in value:
            call = value["functionInvocationValue"]
            return Call(call.get("functionName", ""), {k: node(v) for k, v in call.get("arguments", {}).items()})
        if "arrayValue" in value:
            return [node(v) for v in value["arrayValue"].get("values", [])]
        if "dictionaryValue" in value:
            return {k: node(v) for k, v in value["dictionaryValue"].get("values", {}).items()}
        return value  # argumentReference, functionDefinitionValue, bytesValue: opaque here

    return node(values[expression["result"]])


def _crs(projection: Any) -> str:
    if isinstance(projection, Call) and projection.name == "Projection":
        return str(projection.args.get("crs"))
    return str(projection)


def region_geojson(geometry: Any) -> dict[str, Any] | None:
    """A GeoJSON geometry (lon/lat) for the region argument, or None when it cannot be known here."""
    if not isinstance(geometry, Call):
        return None
    coords = geometry.args.get("coordinates")
    if geometry.name == "GeometryConstructors.Rectangle":
        west, south, east, north = coords
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        return {"type": "Polygon", "coordinates": [_densify(ring)]}
    if geometry.name == "GeometryConstructors.Polygon":
        return {"type": "Polygon", "coordinates": [_densify(ring) for ring in coords]}
    if geometry.name == "GeometryConstructors.MultiPolygon":
        return {"type": "MultiPolygon", "coordinates": [[_densify(r) for r in poly] for poly in coords]}
    return None  # e.g. Collection.geometry of a table asset: the emulator holds no tables


def _densify(ring: list[list[float]], steps: int = 16) -> list[list[float]]:
    """Points along each edge, so a planar lon/lat edge stays an edge once projected."""
    out: list[list[float]] = []
    for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:], strict=True):
        out.extend([[x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps] for k in range(steps)])
    out.append(list(ring[-1]))
    return out


def _find(value: Any, name: str) -> Call | None:
    """The outermost call named ``name`` along the image chain below ``value``."""
    seen = value
    while isinstance(seen, Call):
        if seen.name == name:
            return seen
        seen = seen.args.get("input", seen.args.get("image", seen.args.get("value")))
    return None


def export_grid(expression: dict[str, Any], fallback: tuple[str, float]) -> ExportGrid | None:
    """The grid an export request asks for; None when the region is not one the emulator can place."""
    import rasterio.features
    import rasterio.warp
    from rasterio.transform import Affine

    root = decode(expression)
    if not isinstance(root, Call):
        return None
    unmask = _find(root, "Image.unmask")
    unmask_value = None
    same_footprint = True
    if unmask is not None:
        value = unmask.args.get("value")
        constant = value.args.get("value") if isinstance(value, Call) and value.name == "Image.constant" else value
        unmask_value = float(constant) if isinstance(constant, (int, float)) else 0.0
        same_footprint = bool(unmask.args.get("sameFootprint", True))
    if root.name == "Image.clipToBoundsAndScale":
        projected = root.args.get("input")
        crs = _crs(projected.args.get("crs")) if isinstance(projected, Call) else fallback[0]
        scale = float(root.args.get("scale") or fallback[1])
        size = scale / METRES_PER_DEGREE if crs == "EPSG:4326" else scale
        base = (size, 0.0, 0.0, 0.0, -size, 0.0)  # the CRS's own origin: pixel corners on multiples of size
        clip = False
    elif root.name == "Image.clip" and isinstance(root.args.get("input"), Call) \
            and root.args["input"].name == "Image.reproject":
        reproject = root.args["input"]
        crs = _crs(reproject.args.get("crs"))
        a, b, c, d, e, f = (float(v) for v in reproject.args["crsTransform"])
        base = (a, b, c, d, e, f)
        clip = True
    else:
        return None
    geojson = region_geojson(root.args.get("geometry"))
    if geojson is None:
        return None
    projected_region = rasterio.warp.transform_geom("EPSG:4326", crs, geojson)
    xs, ys = _coordinates(projected_region)
    a, _, c, _, e, f = base
    col0, col1 = math.floor((min(xs) - c) / a + 1e-9), math.ceil((max(xs) - c) / a - 1e-9)
    row0, row1 = math.floor((f - max(ys)) / -e + 1e-9), math.ceil((f - min(ys)) / -e - 1e-9)
    transform = Affine(a, 0.0, c + col0 * a, 0.0, e, f + row0 * e)
    width, height = max(col1 - col0, 1), max(row1 - row0, 1)
    inside = rasterio.features.geometry_mask([projected_region], (height, width), transform, invert=True)
    return ExportGrid(crs, tuple(transform)[:6], width, height, inside, clip, unmask_value, same_footprint)


def _coordinates(geometry: dict[str, Any]) -> tuple[list[float], list[float]]:
    rings = geometry["coordinates"] if geometry["type"] == "Polygon" else \
        [ring for polygon in geometry["coordinates"] for ring in polygon]
    xs = [float(p[0]) for ring in rings for p in ring]
    ys = [float(p[1]) for ring in rings for p in ring]
    return xs, ys


#: The argument that carries the image through a call that keeps its bands (clip, unmask, set, reproject...).
_PASS_THROUGH = ("input", "image", "object", "value")  # Element.set: "value" is the property


def band_names(expression: dict[str, Any]) -> list[str] | None:
    """The band names of the image an expression computes, where the chain of calls tells them; else None.

    Read from the outermost ``Image.select`` (its ``newNames``, else its named selectors),
    ``Image.rename`` or ``Image.addBands`` along the chain; calls that keep the bands
    (``clip``, ``unmask``, ``toFloat``, ``set``, ``reproject``...) are passed through.
    """
    return _names(decode(expression))


def _names(value: Any) -> list[str] | None:
    if not isinstance(value, Call):
        return None
    args = value.args
    if value.name == "Image.rename":
        return [str(n) for n in args.get("names", [])] or None
    if value.name == "Image.select":
        names = args.get("newNames") or args.get("bandSelectors")
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return list(names)
        return None
    if value.name == "Image.addBands":
        first, second = _names(args.get("dstImg")), _names(args.get("srcImg"))
        return first + second if first is not None and second is not None else None
    for key in _PASS_THROUGH:
        if key in args:
            return _names(args[key])
    return None
