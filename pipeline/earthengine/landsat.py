"""The Landsat Collection 2 Level 2 catalogue: which sensors flew when, and under which asset ids.

Plain data, no Earth Engine import: the study config uses it to know which sensors a
year's composite merges (part of the export fingerprint), and the recipes use it to
build the composites.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Sensor(str, Enum):
    """Landsat Collection 2 Level 2 sensors, as users name them."""

    TM = "TM"
    ETM = "ETM+"
    OLI = "OLI"
    OLI2 = "OLI-2"


#: Landsat 7's scan-line corrector failed on 2003-05-31; TM's last regular images are from November 2011
#: (Landsat 5 stopped imaging then) and OLI's first from April 2013, so 2012 is covered by SLC-off ETM+ alone.
SLC_FAILURE_YEAR = 2003
TM_LAST_FULL_YEAR = 2011


@dataclass(frozen=True)
class Collection:
    """One Landsat Collection 2 Level 2 collection and how to read it."""

    sensor: Sensor
    asset: str
    first_year: int
    last_year: int | None
    bands: tuple[str, ...]  # the sensor's names for blue, green, red, nir, swir1, swir2

    def flew_in(self, year: int) -> bool:
        return self.first_year <= year and (self.last_year is None or year <= self.last_year)


_TM_BANDS = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7")
_OLI_BANDS = ("SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7")

COLLECTIONS = (
    Collection(Sensor.TM, "LANDSAT/LT04/C02/T1_L2", 1982, 1993, _TM_BANDS),
    Collection(Sensor.TM, "LANDSAT/LT05/C02/T1_L2", 1984, 2012, _TM_BANDS),
    Collection(Sensor.ETM, "LANDSAT/LE07/C02/T1_L2", 1999, 2024, _TM_BANDS),
    Collection(Sensor.OLI, "LANDSAT/LC08/C02/T1_L2", 2013, None, _OLI_BANDS),
    Collection(Sensor.OLI2, "LANDSAT/LC09/C02/T1_L2", 2021, None, _OLI_BANDS),
)


def collections_for_year(sensors: Iterable[Sensor], year: int) -> list[Collection]:
    """The configured collections that hold scenes of ``year``."""
    wanted = set(sensors)
    return [c for c in COLLECTIONS if c.sensor in wanted and c.flew_in(year)]


def sensors_for_year(sensors: Iterable[Sensor], year: int) -> list[Sensor]:
    """The configured sensors that flew in ``year``, in a fixed order."""
    flying = {c.sensor for c in collections_for_year(sensors, year)}
    return [s for s in Sensor if s in flying]


def slc_off_years(sensors: Iterable[Sensor], years: Iterable[int]) -> list[int]:
    """Years whose only configured sensor with images is Landsat 7 after its scan-line corrector failed.

    Those composites have striped gaps (22 % of each SLC-off scene is missing), so their
    pixels are fewer and biased to the scene centres; 2012 is the usual one.
    """
    out = []
    for year in years:
        flying = set()
        for collection in collections_for_year(sensors, year):
            if collection.sensor is Sensor.TM and year > TM_LAST_FULL_YEAR:
                continue  # Landsat 5 TM stopped imaging in November 2011
            flying.add(collection.sensor)
        if flying == {Sensor.ETM} and year >= SLC_FAILURE_YEAR:
            out.append(year)
    return out
