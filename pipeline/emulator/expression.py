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

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..earthengine.grid import (
    grid_over,
    polygon_geojson,
    rectangle_geojson,
    scale_lattice,
)

#: rasterio's rasterize run from several server threads at once warns "Dataset has no geotransform" now and then
#: (the masks are right; measured: 2000 concurrent masks equal the serial one): one at a time, quietly.
_MASK_LOCK = threading.Lock()


def _inside(projected: dict[str, Any], height: int, width: int, transform: Any) -> np.ndarray:
    """Which pixel centres of the grid lie inside the projected region."""
    import rasterio.features

    with _MASK_LOCK:
        return rasterio.features.geometry_mask([projected], (height, width), transform, invert=True)


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
        return rectangle_geojson(*coords)
    if geometry.name == "GeometryConstructors.Polygon":
        return polygon_geojson({"type": "Polygon", "coordinates": coords})
    if geometry.name == "GeometryConstructors.MultiPolygon":
        return polygon_geojson({"type": "MultiPolygon", "coordinates": coords})
    return None  # e.g. Collection.geometry of a table asset: the emulator holds no tables


def _find(value: Any, name: str) -> Call | None:
    """The outermost call named ``name`` along the image chain below ``value``."""
    seen = value
    while isinstance(seen, Call):
        if seen.name == name:
            return seen
        seen = seen.args.get("input", seen.args.get("image", seen.args.get("value")))
    return None


def _unmask(root: Call) -> tuple[float | None, bool]:
    """(value, sameFootprint) of the ``Image.unmask`` along the image chain; (None, True) without one."""
    unmask = _find(root, "Image.unmask")
    if unmask is None:
        return None, True
    value = unmask.args.get("value")
    constant = value.args.get("value") if isinstance(value, Call) and value.name == "Image.constant" else value
    return (float(constant) if isinstance(constant, (int, float)) else 0.0,
            bool(unmask.args.get("sameFootprint", True)))


def find_anywhere(value: Any, name: str) -> Call | None:
    """A call named ``name`` anywhere in the decoded graph below ``value``, or None."""
    return next((item for item in _walk(value) if isinstance(item, Call) and item.name == name), None)


def _walk(value: Any) -> Any:
    """Every node of a decoded graph (calls, lists, dicts, constants), each once."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, Call):
            stack.extend(item.args.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def image_year(root: Any) -> int | None:
    """The year an image is the composite of: its ``year`` property (the recipe sets it), else the earliest
    ``YYYY-MM-DD`` date in the graph (``filterDate``'s start; **guessed** for images without the property)."""
    import re

    dates = []
    for item in _walk(root):
        if isinstance(item, Call) and item.name == "Element.set" and item.args.get("key") == "year" \
                and isinstance(item.args.get("value"), (int, float)):
            return int(item.args["value"])
        if isinstance(item, Call) and item.name == "Element.setMulti":
            properties = item.args.get("properties")
            if isinstance(properties, dict) and isinstance(properties.get("year"), (int, float)):
                return int(properties["year"])
        if isinstance(item, str):
            found = re.match(r"((?:19|20)\d{2})-\d{2}-\d{2}", item)
            if found:
                dates.append(int(found.group(1)))
    return min(dates) if dates else None


@dataclass(frozen=True)
class PixelsRequest:
    """What an ``image:computePixels`` request asks for: a window of the grid a batch export of the same
    image and region would write (``full``), at ``row``/``col``, ``height`` x ``width`` pixels."""

    full: ExportGrid
    row: int
    col: int
    height: int
    width: int
    year: int | None


def pixels_request(expression: dict[str, Any], grid: dict[str, Any]) -> PixelsRequest:
    """Place a computePixels ``grid`` (REST PixelGrid) on the export grid of the image's region.

    The region is the geometry of the first ``Image.clip`` in the graph (the recipe clips to
    it); the export grid is that region cut from the request's lattice, with
    :func:`~pipeline.earthengine.grid.grid_over`, as an export's is. A request off that
    lattice, or of an image with no region the emulator can place, is its own whole grid.
    """
    from rasterio.transform import Affine

    from ..earthengine.grid import PixelGrid

    root = decode(expression)
    affine = grid.get("affineTransform", {})
    lattice = tuple(float(affine.get(k, 0.0)) for k in ("scaleX", "shearX", "translateX", "shearY", "scaleY",
                                                        "translateY"))
    dims = grid.get("dimensions", {})
    width, height = int(dims.get("width", 0)), int(dims.get("height", 0))
    crs = str(grid.get("crsCode"))
    unmask_value, same_footprint = _unmask(root) if isinstance(root, Call) else (None, True)
    clip = find_anywhere(root, "Image.clip")
    region = region_geojson(clip.args.get("geometry")) if clip is not None else None
    own = PixelGrid(crs, lattice, width, height)  # type: ignore[arg-type]
    full, row, col, projected = own, 0, 0, None
    if region is not None:
        full, projected = grid_over(crs, lattice, region)  # type: ignore[arg-type]
        a, _, c, _, e, f = lattice
        col_f, row_f = (c - full.transform[2]) / a, (f - full.transform[5]) / e
        if abs(col_f - round(col_f)) < 1e-6 and abs(row_f - round(row_f)) < 1e-6:
            row, col = round(row_f), round(col_f)
        else:
            full = own  # off the export's lattice: the request is its own grid (the region still masks it)
    if projected is not None:
        inside = _inside(projected, full.height, full.width, Affine(*full.transform))
    else:
        inside = np.ones((full.height, full.width), bool)
    export = ExportGrid(crs, full.transform, full.width, full.height, inside, False, unmask_value, same_footprint)
    return PixelsRequest(export, row, col, height, width, image_year(root))


def export_grid(expression: dict[str, Any], fallback: tuple[str, float]) -> ExportGrid | None:
    """The grid an export request asks for; None when the region is not one the emulator can place."""
    from rasterio.transform import Affine

    root = decode(expression)
    if not isinstance(root, Call):
        return None
    unmask_value, same_footprint = _unmask(root)
    if root.name == "Image.clipToBoundsAndScale":
        projected = root.args.get("input")
        crs = _crs(projected.args.get("crs")) if isinstance(projected, Call) else fallback[0]
        scale = float(root.args.get("scale") or fallback[1])
        base = scale_lattice(crs, scale)  # the CRS's own origin: pixel corners on multiples of the pixel size
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
    grid, projected_region = grid_over(crs, base, geojson)  # the one grid function the direct route uses too
    transform, width, height = Affine(*grid.transform), grid.width, grid.height
    inside = _inside(projected_region, height, width, transform)
    return ExportGrid(crs, tuple(transform)[:6], width, height, inside, clip, unmask_value, same_footprint)


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
