"""Earth Engine recipes: one annual Landsat composite per year, built without any HTTP.

The image is only an expression graph until Earth Engine runs the export; building it
needs the algorithm signatures that ``ee.Initialize`` loaded, nothing more. Each year
merges the Collection 2 Level 2 scenes of the sensors that flew that year, with:

- the sensors' own band names mapped to blue, green, red, nir, swir1, swir2;
- the Collection 2 surface-reflectance scale 0.0000275 and offset -0.2;
- a QA_PIXEL bit mask (dilated cloud, cirrus, cloud, shadow, snow as configured; the
  fill bit always, since fill pixels hold no measurement);
- optionally a QA_RADSAT mask of pixels saturated in a band the index uses;
- optionally (off by default) TM/ETM+ reflectance moved to OLI's with the ordinary least
  squares ETM+ -> OLI surface-reflectance coefficients of Roy et al. (2016), Table 2, the
  ones Google's "Landsat ETM+ to OLI Harmonization" tutorial uses. That tutorial now calls
  harmonisation unnecessary for Collection 2 surface reflectance, hence the default;
- the spectral index, the annual reducer, clipped to the region, one float band named
  for the index.

The export (``earthengine.export_image``) unmasks every masked pixel to a declared
no-data value, so no masked pixel reaches a GeoTIFF as 0. :func:`slc_off_years` names the
years that only Landsat 7 after its 2003 scan-line corrector failure covers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..config import CompositeSection, Index, MaskFlag, Reducer, region_geometry
from .landsat import Collection, Sensor, collections_for_year

if TYPE_CHECKING:  # ee is imported lazily: building a recipe needs it, the trend engine does not
    import ee

    from ..config import Study

SR_SCALE = 0.0000275
SR_OFFSET = -0.2
COMMON_BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")

#: Roy et al. (2016), Remote Sensing of Environment 185: 57-70, Table 2, surface reflectance, OLS regression
#: OLI = slope * ETM+ + intercept (blue, green, red, nir, swir1, swir2); the coefficients Google's
#: "Landsat ETM+ to OLI Harmonization" tutorial applies to TM and ETM+ alike.
ROY2016_SLOPES = (0.8474, 0.8483, 0.9047, 0.8462, 0.8937, 0.9071)
ROY2016_INTERCEPTS = (0.0003, 0.0088, 0.0061, 0.0412, 0.0254, 0.0172)

#: The index's reflectance bands (COMMON_BANDS names) for the saturation mask.
INDEX_BANDS = {
    Index.NDVI: ("red", "nir"),
    Index.NBR: ("nir", "swir2"),
    Index.NDMI: ("nir", "swir1"),
    Index.EVI: ("blue", "red", "nir"),
    Index.SAVI: ("red", "nir"),
}

#: QA_PIXEL bit of each maskable condition (Landsat Collection 2 Level 2 product guide).
QA_BITS = {
    MaskFlag.fill: 0,
    MaskFlag.dilated_cloud: 1,
    MaskFlag.cirrus: 2,
    MaskFlag.cloud: 3,
    MaskFlag.shadow: 4,
    MaskFlag.snow: 5,
}


def index_bands(composite: CompositeSection) -> tuple[str, ...]:
    """The reflectance bands (COMMON_BANDS names) the composite's index reads: a formula's, or the index's."""
    formula = composite.formula
    return formula.bands if formula is not None else INDEX_BANDS[composite.index]


def saturation_bits(collection: Collection, bands: tuple[str, ...]) -> int:
    """QA_RADSAT bits of these reflectance bands for this sensor (bit n-1 flags band n saturated)."""
    bits = 0
    for name in bands:
        band = collection.bands[COMMON_BANDS.index(name)]  # e.g. SR_B4
        bits |= 1 << (int(band.removeprefix("SR_B")) - 1)
    return bits


def region(study: Study) -> ee.Geometry:
    """The study region as an ``ee.Geometry`` (geodesic lon/lat)."""
    import ee

    section = study.config.region
    if section.bbox is not None:
        return ee.Geometry.Rectangle(list(section.bbox), proj="EPSG:4326", geodesic=False)
    if section.geojson is not None:
        data = json.loads(study.resolve(section.geojson).read_text(encoding="utf-8"))
        return ee.Geometry(region_geometry(data))
    return ee.FeatureCollection(section.asset).geometry()


def annual_composite(study: Study, year: int, area: ee.Geometry | None = None) -> ee.Image:
    """The composite of ``year``: one float band named for the index, clipped to ``area`` (default the region)."""
    import ee

    composite = study.config.composite
    collections = season_collections(study, year)
    if not collections:
        from ..errors import ConfigError

        flown = ", ".join(s.value for s in composite.sensors)
        raise ConfigError(f"composite.sensors: none of {flown} flew in {year}; add a sensor or exclude the year")
    area = area if area is not None else region(study)
    # The season's own dates: a season across the New Year is one period (calendarRange inside the
    # calendar year would join the ends of two different seasons).
    first, after = study.season(year)
    start, end = ee.Date(first.isoformat()), ee.Date(after.isoformat())
    merged = None
    for collection in collections:
        scenes = ee.ImageCollection(collection.asset).filterBounds(area).filterDate(start, end)
        prepared = scenes.map(_scene_preparer(collection, composite))
        merged = prepared if merged is None else merged.merge(prepared)
    reduced = _reduce(merged, composite)
    name = composite.label
    image = reduced.rename([name]).toFloat()
    if composite.count_band:
        image = with_count_band(image, merged)
    return image.clip(area).set({"year": year, "eetrend:index": name})


def season_collections(study: Study, year: int) -> list[Collection]:
    """The Collection 2 collections of the sensors that flew during the year's season."""
    found: dict[str, Collection] = {}
    for calendar_year in study.season_years(year):
        for collection in collections_for_year(study.config.composite.sensors, calendar_year):
            found.setdefault(collection.asset, collection)
    return list(found.values())


COUNT_BAND = "clear_count"


def with_count_band(image: ee.Image, scenes: ee.ImageCollection) -> ee.Image:
    """``image`` plus a second band: how many clear (unmasked) scenes stand behind each pixel.

    ``count()`` counts the unmasked values of the index per pixel; a pixel with none is
    0, not masked. Float, like the index, since an export's bands share one type.
    """
    return image.addBands(scenes.count().unmask(0).rename([COUNT_BAND]).toFloat())


def _scene_preparer(collection: Collection, composite: CompositeSection):
    """A function for ``ImageCollection.map``: mask, scale, harmonise, compute the index."""
    import ee

    flags = set(composite.mask) | {MaskFlag.fill}  # a fill pixel holds no measurement: always masked
    if collection.sensor not in (Sensor.OLI, Sensor.OLI2):
        flags.discard(MaskFlag.cirrus)  # TM/ETM+ have no cirrus band; the bit is never set
    bitmask = sum(1 << QA_BITS[flag] for flag in flags)
    harmonize = composite.harmonize and collection.sensor in (Sensor.TM, Sensor.ETM)
    saturated = saturation_bits(collection, index_bands(composite)) if composite.saturation else 0
    formula = composite.formula

    def prepare(scene: ee.Image) -> ee.Image:
        scene = ee.Image(scene)
        reflectance = scene.select(list(collection.bands), list(COMMON_BANDS)).multiply(SR_SCALE).add(SR_OFFSET)
        if harmonize:
            reflectance = reflectance.multiply(ee.Image.constant(list(ROY2016_SLOPES))).add(
                ee.Image.constant(list(ROY2016_INTERCEPTS))
            )
        clear = scene.select("QA_PIXEL").bitwiseAnd(bitmask).eq(0)
        if saturated:
            clear = clear.And(scene.select("QA_RADSAT").bitwiseAnd(saturated).eq(0))
        reflectance = reflectance.rename(list(COMMON_BANDS))
        if formula is not None:
            index = ee.Image(formula.build(reflectance)).rename([composite.label])
        else:
            index = spectral_index(reflectance, composite.index)
        return index.updateMask(clear).copyProperties(scene, ["system:time_start"])

    return prepare


def spectral_index(image: ee.Image, index: Index) -> ee.Image:
    """The index from reflectance bands named blue, green, red, nir, swir1, swir2."""
    import ee

    nir, red, blue = image.select("nir"), image.select("red"), image.select("blue")
    if index is Index.NDVI:
        result = image.normalizedDifference(["nir", "red"])
    elif index is Index.NBR:
        result = image.normalizedDifference(["nir", "swir2"])
    elif index is Index.NDMI:
        result = image.normalizedDifference(["nir", "swir1"])
    elif index is Index.EVI:  # 2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1)
        denominator = nir.add(red.multiply(6)).subtract(blue.multiply(7.5)).add(1)
        result = nir.subtract(red).multiply(2.5).divide(denominator)
    else:  # SAVI, L = 0.5: 1.5 (nir - red) / (nir + red + 0.5)
        result = nir.subtract(red).multiply(1.5).divide(nir.add(red).add(0.5))
    return ee.Image(result).rename([index.value])


def _reduce(scenes: ee.ImageCollection, composite: CompositeSection) -> ee.Image:
    if composite.reducer is Reducer.max:
        return scenes.max()
    if composite.reducer is Reducer.median:
        return scenes.median()
    if composite.reducer is Reducer.mean:
        return scenes.mean()
    return scenes.reduce(_percentile_reducer(composite.percentile))


def _percentile_reducer(percentile: float | None) -> Any:
    import ee

    return ee.Reducer.percentile([percentile])


def serialize(image: ee.Image) -> dict[str, Any]:
    """The Cloud API expression of an image, as Earth Engine receives it (offline)."""
    import ee

    return ee.serializer.encode(image, for_cloud_api=True)

