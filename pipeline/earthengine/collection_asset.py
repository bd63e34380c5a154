"""The user's own composites as an ImageCollection asset: one image per study year.

``[composite] collection = "projects/p/assets/annual_ndvi"``. Before any export the
asset is looked up through Earth Engine's API (``projects.assets.get``, then
``listAssets`` of its images), never by exporting: it must exist and be readable, be an
ImageCollection, hold exactly one image for every study year (by the UTC year of its
``system:time_start``, or by ``year_property``) and, where the listing says, hold the
band to fit. Each problem is one :class:`~pipeline.errors.ConfigError` line naming the
asset, the year or the image (exit 2, nothing submitted). Each year's export then loads
its image by its own asset id, so what Earth Engine receives names the image itself.
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..years import format_years

if TYPE_CHECKING:
    from ..config import Study

KEY = "composite.collection"
_FOUND: weakref.WeakKeyDictionary[Study, dict[int, str]] = weakref.WeakKeyDictionary()


def year_images(study: Study) -> dict[int, str]:
    """The asset name of each study year's image (looked up once per study; needs a connection)."""
    if study not in _FOUND:
        _FOUND[study] = _look_up(study)
    return _FOUND[study]


def _look_up(study: Study) -> dict[int, str]:
    import ee

    from .client import translate

    composite = study.config.composite
    collection = composite.collection
    assert collection is not None
    try:
        asset = ee.data.getAsset(collection)
    except ee.EEException as exc:
        raise ConfigError(f"{KEY}: {_first_line(exc)}; check the asset id and that project "
                          f"'{study.config.earthengine.project}' may read it") from None
    except Exception as exc:  # noqa: BLE001 - auth and transport errors from the client become one line
        raise translate(exc, f"looking up {collection}") from None
    kind = asset.get("type", "")
    if kind != "IMAGE_COLLECTION":
        raise ConfigError(f"{KEY}: {collection} is {'an' if kind[:1] in 'AEIOU' else 'a'} "
                          f"{kind.replace('_', ' ').lower() or 'asset of unknown type'}, not an ImageCollection; "
                          "give the collection that holds one image per year")
    try:
        images = ee.data.listAssets({"parent": asset.get("name", collection)}).get("assets", [])
    except ee.EEException as exc:
        raise ConfigError(f"{KEY}: listing the images of {collection} failed: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, f"listing the images of {collection}") from None
    by_year: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for image in images:
        if image.get("type") == "IMAGE":
            year = _year_of(image, composite.year_property)
            if year is not None:
                by_year[year].append(image)
    _check_years(study, collection, by_year)
    chosen = {year: by_year[year][0] for year in study.years}
    for year, image in chosen.items():
        _check_bands(image, year, composite.band, composite.count_band)
    return {year: image.get("id") or image["name"] for year, image in chosen.items()}


def _year_of(image: dict[str, Any], year_property: str | None) -> int | None:
    """The year an image stands for: its property's value, or the UTC year of its start time."""
    if year_property is not None:
        value = image.get("properties", {}).get(year_property)
        try:
            year = int(value)
        except (TypeError, ValueError):
            return None
        return year if year == value or str(year) == str(value) else None
    start = image.get("startTime")
    return int(start[:4]) if isinstance(start, str) and start[:4].isdigit() else None


def _check_years(study: Study, collection: str, by_year: dict[int, list[dict[str, Any]]]) -> None:
    by = f"its '{study.config.composite.year_property}' property" if study.config.composite.year_property \
        else "the year of system:time_start"
    missing = [year for year in study.years if not by_year.get(year)]
    if missing:
        held = format_years(sorted(by_year)) if by_year else "no year"
        raise ConfigError(f"{KEY}: {collection} has no image for {format_years(missing)} (by {by}, it holds "
                          f"{held}); add the year(s) to the collection or leave them out with study.exclude_years")
    for year in study.years:
        if len(by_year[year]) > 1:
            names = ", ".join(_short(image) for image in by_year[year])
            raise ConfigError(f"{KEY}: {collection} has {len(by_year[year])} images for {year} ({names}); keep "
                              "one image per year, or set year_property to the property that tells them apart")


def _check_bands(image: dict[str, Any], year: int, band: str | None, count_band: bool | str) -> None:
    bands = [b.get("id") for b in image.get("bands", [])]
    if not bands:
        return  # the listing holds no bands (a BASIC view): Earth Engine checks them when it exports
    for key, wanted in (("band", band), ("count_band", count_band if isinstance(count_band, str) else None)):
        if wanted is not None and wanted not in bands:
            raise ConfigError(f"composite.{key}: the {year} image {_short(image)} has no band '{wanted}' (it has "
                              f"{', '.join(map(str, bands))}); name one of those")


def _short(image: dict[str, Any]) -> str:
    return str(image.get("id") or image.get("name", "?")).rpartition("/")[2]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
