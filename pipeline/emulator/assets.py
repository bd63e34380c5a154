"""Earth Engine assets in the emulator: ImageCollections of one image per year.

``projects.assets.get`` (``GET /v1/{name}``) answers an ``EarthEngineAsset``;
``projects.assets.listAssets`` (``GET /v1/{parent}:listAssets``) lists a collection's
images, a page at a time with ``nextPageToken``, as ``ee.data.listAssets`` and
``listImages`` call it. A missing asset is a 404 with Earth Engine's wording. The images
are declared with :meth:`AssetService.add_collection` (``eetrend emulator --asset``); the
exports of an image loaded from them hold the emulator's synthetic rasters, like any other.
Sources are in docs/FIDELITY.md.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .http import Request, Response, Router

NOT_FOUND = "Asset '{name}' does not exist or doesn't allow this operation."
ASSET_NAME = re.compile(r"projects/[^/]+/assets/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
YEARS = re.compile(r"\d{4}(\.\.\d{4})?(,\d{4}(\.\.\d{4})?)*")
UPDATED = "2024-01-01T00:00:00.000Z"


class AssetSpecError(ValueError):
    """An ``--asset`` value that cannot be read; the message says the expected form."""


@dataclass
class Collection:
    """One ImageCollection asset and its images (in the order they were added)."""

    name: str
    images: list[dict[str, Any]] = field(default_factory=list)


def asset_name(asset_id: str) -> str:
    """The REST name of an asset id: the client's own conversion (``ee._cloud_api_utils``), which the
    names of requests follow (``projects/<cloud project>/assets/...`` as is, others as legacy ids)."""
    from ee import _cloud_api_utils

    return _cloud_api_utils.convert_asset_id_to_asset_name(asset_id)


def parse_asset_spec(spec: str) -> tuple[str, list[int], str]:
    """``ID:YEARS:BAND`` (YEARS like 2000..2020 or 2000..2010,2012; a repeated year makes two images)."""
    parts = spec.rsplit(":", 2)
    form = "give ID:YEARS:BAND, e.g. projects/my-project/assets/annual_ndvi:2000..2020:NDVI"
    if len(parts) != 3 or not all(parts):
        raise AssetSpecError(f"--asset {spec!r}: {form}")
    asset_id, years_text, band = parts
    if not ASSET_NAME.fullmatch(asset_name(asset_id)) or ".." in asset_id:
        raise AssetSpecError(f"--asset {spec!r}: '{asset_id}' is not an asset id; {form}")
    if not YEARS.fullmatch(years_text):
        raise AssetSpecError(f"--asset {spec!r}: '{years_text}' is not a list of years; {form}")
    years: list[int] = []
    for part in years_text.split(","):
        first, _, last = part.partition("..")
        low, high = int(first), int(last or first)
        if high < low:
            raise AssetSpecError(f"--asset {spec!r}: {part} runs backwards; write {high}..{low}")
        years.extend(range(low, high + 1))
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", band):
        raise AssetSpecError(f"--asset {spec!r}: '{band}' is not a band name; {form}")
    return asset_id, years, band


class AssetService:
    """The asset handlers and the declared collections, registered on a :class:`Router`."""

    def __init__(self, router: Router, authorized: Callable, version: str = "v1") -> None:
        self.collections: dict[str, Collection] = {}
        self.max_page_size = 1000
        v = re.escape(version)
        router.add("GET", rf"/{v}/(projects/[^/]+/assets/.+):listAssets", authorized(self._list))
        router.add("GET", rf"/{v}/(projects/[^/]+/assets/.+)", authorized(self._get))

    def add_collection(self, asset_id: str, years: Iterable[int], band: str, *, year_property: str = "year",
                       bands: Iterable[str] | None = None) -> Collection:
        """Declare (or extend) an ImageCollection with one image per entry of ``years`` (a repeat adds another).

        Each image starts on 1 January of its year (``system:time_start``), ends on the next,
        and has ``year_property`` set to its year and the bands ``bands`` (default: ``band``).
        """
        name = asset_name(asset_id)
        collection = self.collections.setdefault(name, Collection(name))
        for year in years:
            base = f"{name}/{name.rpartition('/')[2]}_{year}"
            taken = {image["name"] for image in collection.images}
            image_name, copy = base, 1
            while image_name in taken:
                copy += 1
                image_name = f"{base}_{copy}"
            collection.images.append(_image(image_name, year, list(bands or [band]), year_property))
        return collection

    def _get(self, request: Request) -> Response:
        name = request.match.group(1)
        collection = self.collections.get(name)
        if collection is not None:
            return Response.json({"type": "IMAGE_COLLECTION", "name": name, "id": _id(name), "updateTime": UPDATED})
        for held in self.collections.values():
            for image in held.images:
                if image["name"] == name:
                    return Response.json(image)
        return Response.error(404, NOT_FOUND.format(name=name))

    def _list(self, request: Request) -> Response:
        name = request.match.group(1)
        if request.query.get("filter"):
            return Response.error(400, "The eetrend emulator does not evaluate listAssets filters.")
        collection = self.collections.get(name)
        if collection is None:
            return Response.error(404, NOT_FOUND.format(name=name))
        size = min(int(request.query.get("pageSize") or self.max_page_size), self.max_page_size)
        token = request.query.get("pageToken")
        start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        page = collection.images[start:start + size]
        view = request.query.get("view", "FULL")
        payload: dict[str, Any] = {"assets": [image if view != "BASIC" else _basic(image) for image in page]}
        if start + size < len(collection.images):
            payload["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return Response.json(payload)


def _id(name: str) -> str:
    """An asset's ``id``: its name without the legacy and public prefixes (a Cloud project's keeps it)."""
    for prefix in ("projects/earthengine-legacy/assets/", "projects/earthengine-public/assets/"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def _image(name: str, year: int, bands: list[str], year_property: str) -> dict[str, Any]:
    return {
        "type": "IMAGE",
        "name": name,
        "id": _id(name),
        "updateTime": UPDATED,
        "startTime": f"{year}-01-01T00:00:00Z",
        "endTime": f"{year + 1}-01-01T00:00:00Z",
        "properties": {year_property: year},
        "bands": [{"id": band, "dataType": {"precision": "FLOAT"}} for band in bands],
    }


def _basic(image: dict[str, Any]) -> dict[str, Any]:
    return {key: image[key] for key in ("type", "name", "id", "updateTime")}
