"""Where each year's image comes from: the built-in Landsat recipe, or the user's own.

Every route that sends a year to Earth Engine (a batch export, a direct fetch) takes its
image from :func:`year_image`, so the routes always ask for the same pixels. The sources:

- the recipe (:mod:`.recipes`), with one of the built-in indices or an index formula;
- ``function``: the user's ``function(year, region)`` (:mod:`.user_function`);
- ``collection``: one image per year of an ImageCollection asset (:mod:`.collection_asset`).

The user's images are treated as the recipe's: one band to fit (``band``, else the first),
optionally the clear-scene count as a second band named ``clear_count``, float32, clipped
to the region; the export then unmasks them to the declared no-data value.

For the user's own composites the pixels are decided by code eetrend cannot read, so a
year's fingerprint holds the digest of its serialized expression
(:func:`expression_digests`): editing the function changes exactly the years whose
expression changed.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from typing import TYPE_CHECKING

from ..config import fingerprint
from .recipes import COUNT_BAND, annual_composite, region

if TYPE_CHECKING:
    import ee

    from ..config import Study
    from .manifest import Manifest

#: Manifest key: what the expression digests were last computed from (see :func:`expression_digests`).
SOURCE_KEY = "composite_source"
_BUILT: weakref.WeakKeyDictionary[Study, dict[int, ee.Image]] = weakref.WeakKeyDictionary()


def year_image(study: Study, year: int, area: ee.Geometry | None = None) -> ee.Image:
    """The composite of ``year`` as the study defines it, clipped to ``area`` (default: the region)."""
    composite = study.config.composite
    if composite.source == "recipe":
        return annual_composite(study, year, area)
    built = _BUILT.setdefault(study, {})
    if year not in built:  # the user's function runs once per year and process (it may itself make requests)
        area = area if area is not None else region(study)
        if composite.source == "function":
            from .user_function import year_image as user_image

            image = user_image(study, year, area)
        else:
            import ee

            from .collection_asset import year_images

            image = ee.Image(year_images(study)[year])
        built[year] = _as_composite(study, image, year, area)
    return built[year]


def _as_composite(study: Study, image: ee.Image, year: int, area: ee.Geometry) -> ee.Image:
    """The user's image as the recipe's: the band to fit (and the count), float, clipped, labelled."""
    composite = study.config.composite
    selectors: list[str | int] = [composite.band if composite.band is not None else 0]
    names = [composite.label]
    if isinstance(composite.count_band, str):
        selectors.append(composite.count_band)
        names.append(COUNT_BAND)
    return image.select(selectors, names).toFloat().clip(area).set({"year": year, "eetrend:index": composite.label})


def serialized(image: ee.Image) -> str:
    """The Cloud API expression of an image as Earth Engine receives it, as canonical JSON."""
    import ee

    return json.dumps(ee.serializer.encode(image, for_cloud_api=True), sort_keys=True, separators=(",", ":"))


def expression_digests(study: Study, manifest: Manifest, *, rebuild: bool) -> dict[int, str]:
    """Each year's expression digest for the user's own composites ({} for the recipe).

    Building the expressions runs the user's function (or looks the asset up), which needs
    a connection. It is skipped, and the digests recorded in the manifest reused, when
    nothing the digests depend on could have changed: the same source (for a function, the
    same file contents), region and years as when they were computed, and no year about
    to be submitted (``rebuild`` False). A new or edited function file therefore rebuilds
    every year's expression before anything is exported, and a bad one stops the run
    before its first request.
    """
    if study.config.composite.source == "recipe":
        return {}
    key = _source_key(study)
    recorded = {year: record.settings.get("composite", {}).get("expression")
                for year, record in manifest.years().items()}
    if not rebuild and manifest.get(SOURCE_KEY) == key and all(recorded.get(year) for year in study.years):
        return {year: recorded[year] for year in study.years}
    from . import client

    client.connect(study)
    area = region(study)
    return {year: hashlib.sha256(serialized(year_image(study, year, area)).encode()).hexdigest()[:16]
            for year in study.years}


def record_source(study: Study, manifest: Manifest) -> None:
    """Remember what the current digests were computed from (after a sync accepted them)."""
    if study.config.composite.source != "recipe":
        manifest.set(SOURCE_KEY, _source_key(study))


def _source_key(study: Study) -> str:
    composite = study.config.composite
    settings = {"composite": composite.model_dump(mode="json"), "years": study.years,
                "region": study.region_settings}
    if composite.function is not None:
        from .user_function import function_spec

        settings["file"] = hashlib.sha256(function_spec(study)[0].read_bytes()).hexdigest()
    return fingerprint(settings)
