"""Annual maximum NDVI of MODIS Terra (MOD13Q1, 250 m, 16-day) for eetrend:
[composite] function = "composites/modis_ndvi.py:annual".

Each 16-day composite is scaled (0.0001) and kept only where its pixel reliability
(SummaryQA) is 0 (good) or 1 (marginal); the year's maximum is fitted, and the number of
reliable composites is the clear count.
"""

import ee


def annual(year, region):
    composites = (ee.ImageCollection("MODIS/061/MOD13Q1")
                  .filterBounds(region)
                  .filterDate(f"{year}-01-01", f"{year + 1}-01-01"))

    def reliable_ndvi(image):
        image = ee.Image(image)
        return image.select("NDVI").multiply(0.0001).updateMask(image.select("SummaryQA").lte(1))

    ndvi = composites.map(reliable_ndvi)
    return ndvi.max().rename("ndvi").addBands(ndvi.count().rename("reliable_count"))
