"""Summer NDVI of Sentinel-2 for eetrend: [composite] function = "composites/sentinel2_ndvi.py:annual".

Each year: the harmonized Level-2A surface reflectance scenes of June-August over the
region, each masked with Google's Cloud Score+ (``cs_cdf`` below 0.6 is cloud or shadow),
NDVI per scene, then the year's maximum and how many clear scenes stand behind each pixel.
"""

import ee

CLEAR_THRESHOLD = 0.6  # Cloud Score+'s suggested starting point for cs_cdf


def annual(year, region):
    scenes = (ee.ImageCollection("COPERNICUS/S2_SR_HARMONIZED")
              .filterBounds(region)
              .filterDate(f"{year}-06-01", f"{year}-09-01"))
    scores = ee.ImageCollection("GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED")

    def ndvi(scene):
        scene = ee.Image(scene)
        clear = scene.select("cs_cdf").gte(CLEAR_THRESHOLD)
        return scene.normalizedDifference(["B8", "B4"]).rename("ndvi").updateMask(clear)

    masked = scenes.linkCollection(scores, ["cs_cdf"]).map(ndvi)
    return masked.max().addBands(masked.count().rename("clear_count"))
