"""Split exports: check that a year's tiles are all there and on one grid, then write a VRT.

Earth Engine splits an image larger than ``fileDimensions`` into tiles named
``prefix-RRRRRRRRRR-CCCCCCCCCC.tif``, the numbers being the tile's row and column pixel
offsets. The tiles of a year must form a full grid of offsets; each tile's
georeferencing must put it at the offsets its name gives. The VRT (plain GDAL XML,
sources relative to it) lets the trend engine read the year as one dataset.
"""

from __future__ import annotations

import errno
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import rasterio

from ..errors import InputError
from ..files.outputs import replaced_when_done

SPLIT_NAME = re.compile(r"(?P<stem>.+)-(?P<row>\d{10})-(?P<col>\d{10})\.tif")


def tile_offsets(names: list[str]) -> dict[tuple[int, int], str]:
    """(row, col) offset -> name, for names of split tiles."""
    offsets = {}
    for name in names:
        match = SPLIT_NAME.fullmatch(name)
        if match:
            offsets[(int(match.group("row")), int(match.group("col")))] = name
    return offsets


def missing_tiles(year: int, stem: str, names: list[str]) -> list[str]:
    """Names of the tiles that a full grid of the offsets seen would need but are absent."""
    offsets = tile_offsets(names)
    rows = sorted({0} | {r for r, _ in offsets})  # Earth Engine's tiles start at offset 0
    cols = sorted({0} | {c for _, c in offsets})
    return [f"{stem}-{r:010d}-{c:010d}.tif" for r in rows for c in cols if (r, c) not in offsets]


def write_vrt(path: Path, year: int, tiles: list[Path]) -> None:
    """Write a VRT mosaic of ``tiles`` (one grid, offsets as named) to ``path``, atomically."""
    sources = []
    crs = dtype = None
    for tile in tiles:
        match = SPLIT_NAME.fullmatch(tile.name)
        if match is None:
            raise InputError(f"{year}: {tile.name} is not named like a split export tile")
        with rasterio.open(tile) as dataset:
            if crs is None:
                crs, dtype, res = dataset.crs, dataset.dtypes[0], dataset.res
                nodata, descriptions = dataset.nodata, dataset.descriptions
            elif dataset.crs != crs or dataset.res != res or dataset.dtypes[0] != dtype:
                raise InputError(f"{year}: tile {tile.name} has another CRS, pixel size or data type than "
                                 f"{tiles[0].name}; download the year again")
            sources.append((tile, int(match.group("row")), int(match.group("col")), dataset.transform,
                            dataset.width, dataset.height))
    origin = min(sources, key=lambda s: (s[1], s[2]))
    if (origin[1], origin[2]) != (0, 0):
        raise InputError(f"{year}: the tile at offset 0, 0 is missing; download the year again")
    transform0 = origin[3]
    width = max(col + w for _, _, col, _, w, _ in sources)
    height = max(row + h for _, row, _, _, _, h in sources)
    if sum(w * h for *_, w, h in sources) != width * height:
        raise InputError(f"{year}: the tiles do not cover a {width}x{height} grid exactly; download the year again")
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in transform0.to_gdal())
    bands = []
    for number, description in enumerate(descriptions, start=1):  # every band: the value, and a count if any
        band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(number))
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = "nan" if math.isnan(nodata) else repr(nodata)
        if description:
            ET.SubElement(band, "Description").text = description
        bands.append(band)
    for tile, row, col, transform, w, h in sources:
        x = (transform.c - transform0.c) / transform0.a
        y = (transform.f - transform0.f) / transform0.e
        if abs(x - col) > 1e-6 or abs(y - row) > 1e-6:
            raise InputError(f"{year}: tile {tile.name} is georeferenced at pixel ({y:.1f}, {x:.1f}), not at the "
                             f"offsets its name gives ({row}, {col}); download the year again")
        for number, band in enumerate(bands, start=1):
            source = ET.SubElement(band, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = os.path.relpath(tile, path.parent)
            ET.SubElement(source, "SourceBand").text = str(number)
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
            ET.SubElement(source, "DstRect", xOff=str(col), yOff=str(row), xSize=str(w), ySize=str(h))
    text = ET.tostring(root, encoding="unicode")
    with replaced_when_done(path, verify=_check_vrt, needed=len(text.encode())) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _check_vrt(path: Path) -> None:
    """The written VRT must parse back (a full disk may cut it short without an error)."""
    try:
        ET.parse(path)
    except ET.ParseError as exc:
        raise OSError(errno.EIO, f"the VRT does not read back ({exc})") from None


_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
               "int32": "Int32", "float32": "Float32", "float64": "Float64"}
