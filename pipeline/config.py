"""Study configs: one TOML file describes a region, its years, the composite and the export.

The config is validated with pydantic; every problem becomes one line that names the
key path (``composite.reducer``) and the fix. Paths inside the config are relative to
the config file's folder, so a cron job may run from anywhere.

Two fingerprints per year decide what a config change means for work already done:
``output_fingerprint`` covers what changes the exported pixels (region, crs, scale and
the composite, counting only the sensors that flew that year), and
``request_fingerprint`` adds how the file is delivered (destination, names, limits).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import json
import math
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .earthengine.landsat import Sensor, sensors_for_year
from .errors import ConfigError, UsageError
from .years import parse_years

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PREFIX_CHARS = re.compile(r"[A-Za-z0-9._/-]+")
DRIVE_PREFIX_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # Export.image.toDrive: "letters, numbers, -, _"
UTM_CRS = re.compile(r"EPSG:32[67](0[1-9]|[1-5]\d|60)")
SHARD_SIZE = 256  # Earth Engine's default shardSize; fileDimensions must be a multiple of it
MAX_PIXELS_LIMIT = 2**63 - 1  # maxPixels is an Int64Value
LANDSAT_PIXEL = 30.0
PREFIX_FIELDS = ("study", "index", "reducer", "year")
#: Default days between the end of a year's season and its export: Landsat 8's scenes reach Tier 1 or 2 in 3-10
#: days and their Level-2 products about a day later (USGS), and Earth Engine ingests them after that.
SETTLE_DAYS = 14
FUNCTION_SPEC = re.compile(r"[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*")
ASSET_ID = re.compile(r"(projects/[^/\s]+/assets|users/[^/\s]+)(/[A-Za-z0-9_-]+)+")
BAND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
#: Keys that choose the user's own composites instead of the recipe.
OWN_SOURCE_KEYS = ("function", "collection")
#: Keys of the built-in Landsat recipe (meaningless for the user's own composites).
RECIPE_KEYS = ("sensors", "index", "reducer", "percentile", "months", "mask", "harmonize", "saturation", "expression")


class Index(str, Enum):
    NDVI = "NDVI"
    EVI = "EVI"
    NBR = "NBR"
    NDMI = "NDMI"
    SAVI = "SAVI"


class Reducer(str, Enum):
    max = "max"
    median = "median"
    mean = "mean"
    percentile = "percentile"


class MaskFlag(str, Enum):
    """QA_PIXEL conditions that can be masked out."""

    fill = "fill"
    dilated_cloud = "dilated_cloud"
    cirrus = "cirrus"
    cloud = "cloud"
    shadow = "shadow"
    snow = "snow"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class StudySection(_Section):
    name: str = Field(description="Letters, digits, '-' and '_'; used in task names and file names.")
    years: str | list[int] = Field(description="'1995..2015', '1995-2015', '1995..current' or a list of years.")
    exclude_years: list[int] = Field([], description="Years to leave out, e.g. a year with too few clear scenes.")
    settle_days: int = Field(SETTLE_DAYS, ge=0, le=366, description="Days after a year's season ends before it is "
                                                                   "exported, so its last scenes have reached Earth "
                                                                   "Engine (Landsat Collection 2 Level-2 processing).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STUDY_NAME.fullmatch(value):
            raise ValueError("use 1-64 letters, digits, '-' or '_', starting with a letter or digit")
        return value


class RegionSection(_Section):
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="[west, south, east, north] in degrees (WGS84)."
    )
    geojson: Path | None = Field(None, description="A GeoJSON file with a Polygon or MultiPolygon (WGS84).")
    asset: str | None = Field(None, description="An Earth Engine table asset id, e.g. projects/p/assets/aoi.")
    crs: str = Field("EPSG:4326", description="The CRS of the exported rasters, as 'EPSG:<code>', e.g. "
                                              "'EPSG:32632' (a UTM zone).")
    scale: float = Field(30.0, gt=0, description="Metres per pixel, as Earth Engine's export defines scale.")
    landsat_grid: bool | None = Field(
        None, description="Export on Landsat's own 30 m grid (crsTransform) instead of resampling; default: on "
                          "for a UTM crs with scale 30.")

    @model_validator(mode="after")
    def _one_source(self) -> RegionSection:
        given = [name for name in ("bbox", "geojson", "asset") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of bbox, geojson or asset (got {', '.join(given) or 'none'})"
            )
        if self.bbox is not None:
            from .geometry_checks import check_bbox

            try:
                check_bbox(self.bbox)  # degrees, in order, not swapped or projected (named if so)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("region.")) from None
        return self

    @model_validator(mode="after")
    def _landsat_grid(self) -> RegionSection:
        if self.landsat_grid and not UTM_CRS.fullmatch(self.crs):
            raise ValueError(f"landsat_grid = true needs a UTM crs (EPSG:326NN or EPSG:327NN), not {self.crs}; "
                             "set landsat_grid = false or choose the UTM zone of the region")
        if self.landsat_grid and self.scale != LANDSAT_PIXEL:
            raise ValueError(f"landsat_grid = true exports 30 m pixels, but scale is {self.scale:g}; set scale = 30 "
                             "or landsat_grid = false (scale and the Landsat grid's crsTransform are exclusive)")
        return self

    @property
    def on_landsat_grid(self) -> bool:
        """Whether exports use the Landsat grid: as set, else on for UTM at 30 m."""
        if self.landsat_grid is not None:
            return self.landsat_grid
        return bool(UTM_CRS.fullmatch(self.crs)) and self.scale == LANDSAT_PIXEL

    @field_validator("crs")
    @classmethod
    def _crs(cls, value: str) -> str:
        if not re.fullmatch(r"EPSG:\d{4,6}", value):
            raise ValueError("write the crs as 'EPSG:<code>', e.g. 'EPSG:32633'")
        return value


class CompositeSection(_Section):
    sensors: list[Sensor] = Field([Sensor.TM, Sensor.ETM, Sensor.OLI, Sensor.OLI2],
                                  description="Landsat Collection 2 Level 2 sensors to merge: TM (Landsat 4-5), "
                                              "ETM+ (7), OLI (8), OLI-2 (9); each year uses those that flew.")
    index: Index = Field(Index.NDVI, description="The spectral index computed for every scene.")
    reducer: Reducer = Field(Reducer.max, description="How the year's scenes become one value per pixel.")
    percentile: Annotated[float, Field(ge=0, le=100)] | None = Field(
        None, description="The percentile, 0-100; only with reducer = 'percentile'.")
    months: tuple[int, int] | None = Field(None, description="First and last month of the season, e.g. [6, 8]; "
                                                             "[11, 2] crosses the New Year: November of the year "
                                                             "before to February, named for the year it ends in.")
    mask: list[MaskFlag] = Field(
        [MaskFlag.fill, MaskFlag.dilated_cloud, MaskFlag.cirrus, MaskFlag.cloud, MaskFlag.shadow],
        description="QA_PIXEL conditions to mask (fill is always masked); masked pixels are exported as the "
                    "declared no-data value.")
    harmonize: bool = Field(False, description="Adjust TM/ETM+ reflectance to OLI with Roy et al. (2016), Table 2 "
                                               "OLS; off by default, as Google's tutorial calls it unnecessary "
                                               "for Collection 2 surface reflectance.")
    saturation: bool = Field(False, description="Also mask pixels whose index bands are saturated (QA_RADSAT).")
    count_band: bool | str = Field(False, description="Export a second band: the clear scenes behind each pixel "
                                                       "(true for the recipe; with function or collection, the name "
                                                       "of the band holding the count).")
    expression: str | None = Field(None, description="An index formula instead of index, on blue, green, red, "
                                                      "nir, swir1, swir2 (reflectance 0-1), e.g. "
                                                      "'(nir - red) / (nir + red + 0.16)'; needs name.")
    name: str | None = Field(None, description="What the composite is called in file names, task descriptions and "
                                               "reports; required with expression (default: the index, the band, "
                                               "or the function's name).")
    function: str | None = Field(None, description="Your own composite: 'file.py:function' (the file relative to the "
                                                   "config), called as function(year, region) for each year; it "
                                                   "returns an ee.Image.")
    collection: str | None = Field(None, description="Your own composite: an ImageCollection asset holding one "
                                                     "image per year, e.g. 'projects/p/assets/annual_ndvi'.")
    band: str | None = Field(None, description="With function or collection: the band to fit (default: the "
                                               "image's first band).")
    year_property: str | None = Field(None, description="With collection: the image property that holds the year "
                                                        "(default: the year of system:time_start, in UTC).")

    @property
    def source(self) -> Literal["recipe", "function", "collection"]:
        """Where each year's image comes from: eetrend's Landsat recipe or the user's own."""
        if self.function is not None:
            return "function"
        return "collection" if self.collection is not None else "recipe"

    @property
    def label(self) -> str:
        """The composite's name in file names, task descriptions and reports."""
        if self.name is not None:
            return self.name
        if self.source == "recipe":
            return self.index.value
        if self.band is not None:
            return self.band
        if self.function is not None:
            return self.function.rpartition(":")[2]
        return self.collection.rstrip("/").rpartition("/")[2]

    @property
    def summary(self) -> str:
        """Where the annual values come from, for titles: 'annual max composites', 'images of <asset>'."""
        if self.function is not None:
            return f"composites of {self.function}"
        if self.collection is not None:
            return f"images of {self.collection}"
        return f"annual {self.reducer.value} composites"

    @property
    def title(self) -> str:
        """The annual value, for titles: 'annual max NDVI', 'ndvi of composites.py:annual'."""
        if self.source == "recipe":
            return f"annual {self.reducer.value} {self.label}"
        return f"{self.label} of {self.function or self.collection}"

    @property
    def formula(self):
        """The checked index formula (:class:`~pipeline.earthengine.formula.Formula`), or None."""
        from .earthengine.formula import parse_formula

        return None if self.expression is None else parse_formula(self.expression)

    @field_validator("expression")
    @classmethod
    def _formula(cls, value: str | None) -> str | None:
        from .earthengine.formula import FormulaError, parse_formula

        if value is not None:
            try:
                parse_formula(value)
            except FormulaError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CompositeSection:
        own = [key for key in OWN_SOURCE_KEYS if getattr(self, key) is not None]
        if len(own) > 1:
            raise ValueError("give one source of composites: function or collection, not both (or neither, for "
                             "the built-in Landsat recipe)")
        if own:
            recipe = [key for key in RECIPE_KEYS if key in self.model_fields_set]
            if recipe:
                raise ValueError(f"{own[0]} makes your own composites, so the recipe's key(s) {', '.join(recipe)} "
                                 f"do not apply; remove them, or remove {own[0]} to use the recipe")
            if self.count_band is True:
                raise ValueError(f"with {own[0]}, name the band that holds the clear-scene count, e.g. "
                                 "count_band = 'clear_count' (count_band = true is for the built-in recipe)")
            if self.year_property is not None and own[0] != "collection":
                raise ValueError("year_property is only used with collection")
            if self.function is not None and not FUNCTION_SPEC.fullmatch(self.function):
                raise ValueError(f"function = '{self.function}' must be 'file.py:function_name', e.g. "
                                 "'composites.py:annual'")
            if self.collection is not None:
                _check_asset_id(self.collection)
        else:
            extra = [key for key in ("band", "year_property") if getattr(self, key) is not None]
            if extra:
                raise ValueError(f"{extra[0]} is only used with function or collection (your own composites)")
            if isinstance(self.count_band, str):
                raise ValueError(f"count_band = '{self.count_band}' names a band, which only function or collection "
                                 "composites have; for the recipe write count_band = true")
        if self.expression is not None:
            if "index" in self.model_fields_set:
                raise ValueError("give index or expression, not both: expression is your own index formula")
            if self.name is None:
                raise ValueError("expression needs name = '<what the index is called>', e.g. name = 'OSAVI'")
        for key in ("name", "band", "count_band", "year_property"):
            value = getattr(self, key)
            if isinstance(value, str) and not BAND_NAME.fullmatch(value):
                raise ValueError(f"{key} = '{value}': use 1-64 letters, digits, '_' or '-', starting with a letter")
        return self

    @model_validator(mode="after")
    def _percentile(self) -> CompositeSection:
        if self.reducer is Reducer.percentile and self.percentile is None:
            raise ValueError("reducer = 'percentile' needs percentile = <0-100>, e.g. percentile = 90")
        if self.reducer is not Reducer.percentile and self.percentile is not None:
            raise ValueError(f"percentile is only used with reducer = 'percentile' (reducer is '{self.reducer.value}')")
        if not self.sensors:
            raise ValueError("sensors is empty; list at least one of TM, ETM+, OLI, OLI-2")
        if self.months is not None and not all(1 <= m <= 12 for m in self.months):
            raise ValueError("months must be two month numbers 1-12, e.g. [6, 8]")
        return self


#: computePixels limits (projects.image.computePixels): 48 MB uncompressed per request, counted as pixels x bands
#: x (bytes per pixel + 1 mask byte; Earth Engine's own error names 50331648 bytes), 32K pixels a side, 40
#: concurrent requests per project.
DIRECT_MAX_BYTES = 48 * 1024 * 1024
DIRECT_MAX_SIDE = 32768
DIRECT_MAX_WORKERS = 40
DIRECT_BYTES_PER_PIXEL = 4 + 1  # float32, as the recipe's bands are, plus Earth Engine's mask byte
DIRECT_HEADROOM = 4  # default tiles use a quarter of the limit: room for heavier composites and timeouts


def direct_tile_limit(bands: int) -> int:
    """The largest tile side (a multiple of the shard size) whose request stays within 48 MB and 32K pixels."""
    side = math.isqrt(DIRECT_MAX_BYTES // (bands * DIRECT_BYTES_PER_PIXEL))
    return min(side // SHARD_SIZE * SHARD_SIZE, DIRECT_MAX_SIDE)


def default_direct_tile(bands: int) -> int:
    """The default tile side: a quarter of the request limit, aligned to the output's 256-pixel blocks."""
    side = math.isqrt(DIRECT_MAX_BYTES // DIRECT_HEADROOM // (bands * DIRECT_BYTES_PER_PIXEL))
    return max(side // SHARD_SIZE * SHARD_SIZE, SHARD_SIZE)
def _check_asset_id(asset_id: str) -> None:
    """An ImageCollection asset id the client will send as meant (ee turns a malformed one into a legacy id)."""
    from ee import _cloud_api_utils

    if not ASSET_ID.fullmatch(asset_id):
        raise ValueError(f"collection = '{asset_id}' is not an asset id; write it as "
                         "'projects/<cloud project>/assets/<collection>'")
    if asset_id.startswith("projects/") and not re.match(_cloud_api_utils.ASSET_NAME_PATTERN, asset_id):
        project = asset_id.split("/")[1]
        raise ValueError(f"collection = '{asset_id}': '{project}' is not a Cloud project id (6-30 lowercase "
                         "letters, digits and hyphens, starting with a letter), so Earth Engine would look for "
                         "another asset; write the project id that holds the collection")


class ExportSection(_Section):
    destination: Literal["drive", "gcs", "direct"] = Field(
        "drive", description="drive or gcs: batch export tasks; direct: computePixels tiles, no queue, no Drive.")
    folder: str | None = Field(None, description="Drive folder name (destination = 'drive').")
    bucket: str | None = Field(None, description="Cloud Storage bucket (destination = 'gcs').")
    prefix: str = Field(
        "{study}_{index}_{year}", description="File name prefix; fields {study} {index} {reducer} {year}."
    )
    max_pixels: float = Field(1e10, gt=0, description="Earth Engine's maxPixels: a whole number up to 2**63 - 1.")
    file_dimensions: int | None = Field(None, gt=0, description="Tile size in pixels before Earth Engine splits "
                                                                "files; a multiple of 256 (the shard size).")
    cloud_optimized: bool = Field(True, description="Ask Earth Engine for cloud-optimized GeoTIFFs.")
    max_attempts: int = Field(3, ge=1, le=20, description="Submissions of a year before a FAILED task is given up.")
    delete_remote: bool = Field(False, description="Delete each remote file once its local copy is verified "
                                                   "(stays within Drive's quota).")
    direct_tile: int | None = Field(None, description="destination = 'direct': tile side in pixels, a multiple of "
                                                      "256; default from the bands, a quarter of the 48 MB limit.")
    direct_workers: int = Field(8, description="destination = 'direct': computePixels requests at once (at most "
                                               "40, Earth Engine's per-project quota).")

    @model_validator(mode="after")
    def _direct(self) -> ExportSection:
        if self.direct_tile is not None and (self.direct_tile < SHARD_SIZE or self.direct_tile % SHARD_SIZE):
            fix = max(SHARD_SIZE, round(self.direct_tile / SHARD_SIZE) * SHARD_SIZE)
            raise ValueError(f"direct_tile = {self.direct_tile} must be a multiple of {SHARD_SIZE} pixels (the "
                             f"output's blocks), at least {SHARD_SIZE}; e.g. direct_tile = {fix}")
        if not 1 <= self.direct_workers <= DIRECT_MAX_WORKERS:
            raise ValueError(f"direct_workers = {self.direct_workers} must be 1-{DIRECT_MAX_WORKERS}: Earth Engine "
                             f"allows {DIRECT_MAX_WORKERS} concurrent computePixels requests per project (429 "
                             "beyond); e.g. direct_workers = 8")
        return self

    @model_validator(mode="after")
    def _destination(self) -> ExportSection:
        if self.destination == "gcs" and not self.bucket:
            raise ValueError("destination = 'gcs' needs bucket = '<bucket name>'")
        if self.destination == "drive" and self.bucket:
            raise ValueError("bucket is only used with destination = 'gcs'; for Drive set folder")
        if self.destination == "drive" and self.folder is not None and self.folder.strip().lower() in ("", "root"):
            raise ValueError(f"folder = '{self.folder}' would make Earth Engine create a folder of that name; "
                             "leave folder out to export to the Drive root")
        try:
            sample = self.prefix.format(study="s", index="NDVI", reducer="max", year=2000)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"prefix may use only {{study}} {{index}} {{reducer}} {{year}} ({exc})") from None
        if "{year}" not in self.prefix:
            raise ValueError("prefix must contain {year}, or every year's file would have the same name")
        if not PREFIX_CHARS.fullmatch(sample) or ".." in sample or sample.startswith("/"):
            raise ValueError("prefix may hold only letters, digits and . _ - / (no '..', no leading '/')")
        if self.destination == "drive" and not DRIVE_PREFIX_CHARS.fullmatch(sample):
            raise ValueError(f"prefix '{self.prefix}' is not a Drive file name: Drive prefixes may hold only letters, "
                             "digits, '-' and '_' (a '/' is no folder in Drive); put the folder in export.folder")
        if len(sample.encode()) > 900:
            raise ValueError("prefix is too long: keep it under 900 bytes (Cloud Storage names end at 1024)")
        if self.max_pixels != int(self.max_pixels) or self.max_pixels > MAX_PIXELS_LIMIT:
            raise ValueError(f"max_pixels = {self.max_pixels:g} must be a whole number of at most 2**63 - 1 "
                             "(Earth Engine's Int64 maxPixels); e.g. max_pixels = 1e10")
        if self.file_dimensions is not None and self.file_dimensions % SHARD_SIZE:
            fix = max(SHARD_SIZE, round(self.file_dimensions / SHARD_SIZE) * SHARD_SIZE)
            raise ValueError(f"file_dimensions = {self.file_dimensions} must be a multiple of {SHARD_SIZE} (Earth "
                             f"Engine's shard size); e.g. file_dimensions = {fix}")
        return self


class EarthEngineSection(_Section):
    project: str = Field(description="Google Cloud project registered for Earth Engine.")
    auth: Literal["user", "service_account", "none"] = Field(
        "user", description="user: what earthengine authenticate stored; service_account: key_file; none: only "
                            "for the local emulator.")
    key_file: Path | None = Field(None, description="Service-account JSON key (auth = 'service_account').")
    credentials_file: Path | None = Field(None, description="Stored user credentials; default is earthengine's own.")
    endpoint: str | None = Field(None, description="Another root for Earth Engine, Drive and Storage: the emulator.")
    token_uri: str | None = Field(None, description="Another OAuth token endpoint (the emulator's, for dry runs).")
    http_retries: int = Field(5, ge=0, le=10, description="Retries of a request answered 429 or 5xx.")
    high_volume: bool = Field(False, description="export.destination = 'direct': send the computePixels requests "
                                                 "to Earth Engine's high-volume endpoint, which Google recommends "
                                                 "for many parallel requests.")

    @model_validator(mode="after")
    def _auth(self) -> EarthEngineSection:
        if self.auth == "service_account" and self.key_file is None:
            raise ValueError("auth = 'service_account' needs key_file = '<path to the JSON key>'")
        if self.auth == "none" and not _is_loopback(self.endpoint):
            raise ValueError("auth = 'none' is only for the local emulator; set endpoint = 'http://127.0.0.1:<port>'")
        return self


class PathsSection(_Section):
    downloads: Path | None = Field(None, description="Where the annual files are downloaded; default: "
                                                     "data/STUDY/downloads beside the config.")
    outputs: Path | None = Field(None, description="Where the trend, picture and reports are written; default: "
                                                   "data/STUDY/outputs beside the config.")
    state: Path | None = Field(None, description="The manifest and lock of the study (one study per folder); "
                                                 "default: data/STUDY/state beside the config.")


class TrendSection(_Section):
    method: Literal["ols", "sen", "both"] = Field("both", description="ols: least squares; sen: Sen's slope and "
                                                                    "Mann-Kendall; both: all bands, OLS first.")
    min_years: int = Field(3, ge=2, description="A pixel with fewer valid years is NaN in every band but n.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of trend_class.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence of Sen's interval, sen_low and "
                                                            "sen_high.")
    format: Literal["gtiff", "cog", "netcdf", "zarr"] = Field(
        "gtiff", description="cog makes STUDY_trend.tif cloud-optimized; netcdf/zarr add STUDY_trend.nc/.zarr.")
    mk_test: Literal["original", "hamed-rao", "yue-wang", "prewhiten", "tfpw"] = Field(
        "original", description="Which Mann-Kendall test gives the mk_* bands and trend_class (method sen or both).")
    fdr: Literal["bh", "by"] | None = Field(None, description="Adjust all pixels' p-values together: "
                                                             "Benjamini-Hochberg or Benjamini-Yekutieli "
                                                             "(bands p_fdr, trend_class_fdr).")
    fdr_q: float = Field(0.05, gt=0, lt=1, description="The false discovery rate q of fdr.")
    changepoint: Literal["pettitt"] | None = Field(None, description="A change point test per pixel (bands "
                                                                     "cp_year, cp_p).")
    breaks: int = Field(0, ge=0, le=10, description="Trends with breaks: at most this many (0: none).")
    min_segment: float = Field(0.15, gt=0, lt=0.5, description="Shortest segment, as a share of the valid years.")
    min_fraction: float = Field(0.0, ge=0, le=1, description="Coverage: valid values in at least this share of "
                                                             "the years, else the pixel is NaN.")
    edge_years: int | None = Field(None, ge=0, description="Coverage: first and last valid years within this "
                                                           "many years of the first and last year.")
    min_count: int = Field(0, ge=0, description="Years with fewer clear scenes are missing (needs count_band).")


class SlurmSection(_Section):
    """A SLURM cluster through dask-jobqueue, scaled adaptively between minimum and maximum jobs."""

    cores: int = Field(ge=1, description="Cores per job, as dask-jobqueue's cores (sbatch --cpus-per-task).")
    memory: str = Field(description="Memory per job, e.g. '32GB'.")
    account: str | None = Field(None, description="The SLURM account (sbatch --account).")
    queue: str | None = Field(None, description="The SLURM partition (sbatch --partition).")
    walltime: str = Field("01:00:00", description="Time limit of each job (sbatch --time).")
    processes: int = Field(1, ge=1, description="Dask worker processes per job.")
    minimum_jobs: int = Field(1, ge=0, description="Jobs kept while the fit runs (adaptive scaling).")
    maximum_jobs: int = Field(4, ge=1, description="Most jobs at once (adaptive scaling).")
    interface: str | None = Field(None, description="The network the scheduler and workers use, e.g. 'ib0'; "
                                                    "without it Dask binds to the first one.")
    job_extra_directives: list[str] = Field([], description="More #SBATCH lines, each like '--qos=high'.")
    job_script_prologue: list[str] = Field([], description="Shell lines run before the worker starts, e.g. "
                                                           "'module load gdal'.")
    local_directory: str | None = Field(None, description="Workers' scratch folder on the node, e.g. '$TMPDIR'.")
    log_directory: Path | None = Field(None, description="Job logs; default: slurm-logs in the state folder.")

    @model_validator(mode="after")
    def _jobs(self) -> SlurmSection:
        if self.minimum_jobs > self.maximum_jobs:
            raise ValueError("minimum_jobs is larger than maximum_jobs")
        for directive in self.job_extra_directives:
            if not directive.startswith("-") or "\n" in directive:
                raise ValueError(f"job_extra_directives: {directive!r} is not an sbatch option; write each "
                                 "like '--qos=high' (eetrend adds '#SBATCH ')")
        if any("\n" in line for line in self.job_script_prologue):
            raise ValueError("job_script_prologue: give one shell line per list item")
        if self.interface is not None and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", self.interface):
            raise ValueError(f"interface {self.interface!r} is not a network interface name (like 'ib0' or 'eth0')")
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", self.memory.strip(), re.I):
            raise ValueError("memory must be like '32GB' or '64GiB'")
        return self


class DaskSection(_Section):
    """Fit on a Dask cluster: an existing scheduler, a SLURM cluster, or a local cluster of N workers."""

    scheduler: str | None = Field(None, description="An existing scheduler, e.g. 'tcp://10.0.0.5:8786'.")
    workers: int = Field(0, ge=0, description="Workers of a local cluster; 0 means one per core.")
    slurm: SlurmSection | None = Field(None, description="A SLURM cluster through dask-jobqueue.")

    @model_validator(mode="after")
    def _one(self) -> DaskSection:
        if self.scheduler and self.slurm is not None:
            raise ValueError("give scheduler or [dask.slurm], not both")
        if self.scheduler:
            from .engine.dask_executor import check_scheduler_address

            try:
                check_scheduler_address(self.scheduler)
            except UsageError as exc:
                raise ValueError(str(exc).removeprefix("--")) from None
        return self

    def settings(self, log_directory: Path | None = None):
        """The executor's settings; ``log_directory`` (resolved by :meth:`Study.dask_settings`) is where SLURM
        job logs go, else the table's ``log_directory`` as written."""
        from .engine.dask_executor import DaskSettings, SlurmSettings
        from .engine.executors import resolve_workers

        slurm = None
        if self.slurm is not None:
            values = self.slurm.model_dump()
            logs = log_directory or values.pop("log_directory")
            values.pop("log_directory", None)
            slurm = SlurmSettings(**{**values, "job_extra_directives": tuple(values["job_extra_directives"]),
                                     "job_script_prologue": tuple(values["job_script_prologue"])},
                                  log_directory=str(logs) if logs is not None else None)
        return DaskSettings(scheduler=self.scheduler, workers=resolve_workers(self.workers), slurm=slurm)


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _http_url(value: str | None) -> str | None:
    if value is not None and not re.match(r"https?://[^\s/]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.fullmatch(value):
        raise ValueError("give the NAME of an environment variable (letters, digits, '_'), not its value")
    return value


class EmailSection(_Section):
    """SMTP settings; the password is read from the environment variable ``password_env``, never from here."""

    host: str = Field(description="The SMTP server.")
    port: int = Field(587, ge=1, le=65535, description="The SMTP port.")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS; the certificate is checked.")
    user: str | None = Field(None, description="Login name, with password_env.")
    password_env: str | None = Field(None, description="Name of the environment variable holding the password.")
    sender: str = Field(description="The From address.")
    to: list[str] = Field(min_length=1, description="The recipients.")
    cafile: Path | None = Field(None, description="CA bundle for a server whose certificate is privately signed.")
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for the server.")

    _env = field_validator("password_env")(classmethod(lambda cls, v: _env_name(v)))

    @model_validator(mode="after")
    def _login(self) -> EmailSection:
        if self.user and not self.password_env:
            raise ValueError("user is set but password_env is not; name the environment variable holding the "
                             "password, e.g. password_env = 'EETREND_SMTP_PASSWORD'")
        if self.user and not self.starttls and not _is_loopback(f"http://{self.host}/"):
            raise ValueError("user is set but starttls = false would send the password unencrypted; "
                             "keep starttls = true")
        return self


class NotifySection(_Section):
    """Where ``eetrend run`` reports new outputs (exit 0 after a refit) and problems (exit 1)."""

    ntfy: str | None = Field(None, description="An ntfy topic URL, e.g. 'https://ntfy.sh/my-secret-topic'.")
    webhook: str | None = Field(None, description="A URL that receives the message as JSON.")
    token_env: str | None = Field(None, description="Environment variable holding a bearer token for both URLs.")
    email: EmailSection | None = Field(None, description="Email over SMTP.")

    _urls = field_validator("ntfy", "webhook")(classmethod(lambda cls, v: _http_url(v)))
    _env = field_validator("token_env")(classmethod(lambda cls, v: _env_name(v)))


class StudyConfig(_Section):
    """A whole study config, as read from TOML."""

    study: StudySection = Field(description="The study's name and years.")
    region: RegionSection = Field(description="Where: the region and the grid of the exported rasters.")
    composite: CompositeSection = Field(CompositeSection(), description="What each year's image is: eetrend's "
                                                                        "Landsat recipe, or your own.")
    export: ExportSection = Field(ExportSection(), description="How the years reach this machine.")
    earthengine: EarthEngineSection = Field(description="The Cloud project and credentials.")
    paths: PathsSection = Field(PathsSection(), description="Folders, relative to the config.")
    trend: TrendSection = Field(TrendSection(), description="How the trend is fitted.")
    dask: DaskSection | None = Field(None, description="Fit on Dask (eetrend run).")
    notify: NotifySection | None = Field(None, description="Where eetrend run reports new outputs and problems.")

    @model_validator(mode="after")
    def _direct_route(self) -> StudyConfig:
        if self.export.destination != "direct":
            return self
        if self.region.asset is not None:
            raise ValueError("export.destination = 'direct' needs region.bbox or region.geojson: the direct route "
                             "works out the export's grid from the region's corners, which a table asset keeps on "
                             "Earth Engine; or use destination = 'drive' or 'gcs'")
        bands = 2 if self.composite.count_band else 1
        limit = direct_tile_limit(bands)
        if self.export.direct_tile is not None and self.export.direct_tile > limit:
            raise ValueError(f"export.direct_tile = {self.export.direct_tile}: a {self.export.direct_tile} x "
                             f"{self.export.direct_tile} tile of {bands} float band(s) exceeds computePixels' 48 MB "
                             f"per request; use at most {limit}")
        return self


class Study:
    """A validated config plus what follows from it: years, resolved paths, fingerprints."""

    def __init__(self, config: StudyConfig, source: Path, today: dt.date | None = None) -> None:
        self.config = config
        self.source = source
        self.base = source.parent
        self.today = today or current_date()
        wanted = _resolve_years(config.study, self.today)
        #: The study's years whose season has ended (plus settle_days): the years exported and fitted.
        self.years = [year for year in wanted if self.available_on(year) <= self.today]
        #: The other years of the config, with the day each may be exported.
        self.later = {year: self.available_on(year) for year in wanted if year not in self.years}
        root = Path("data") / config.study.name
        self.downloads = self._path(config.paths.downloads, root / "downloads")
        self.outputs = self._path(config.paths.outputs, root / "outputs")
        self.state = self._path(config.paths.state, root / "state")
        #: The digest of each year's serialized expression, for the user's own composites (set before a sync).
        self.expression_digests: dict[int, str] = {}

    @property
    def name(self) -> str:
        return self.config.study.name

    def season(self, year: int) -> tuple[dt.date, dt.date]:
        """The dates a year's composite covers, [first day, day after the last): its months, or the whole year.

        A season across the New Year (``months = [11, 2]``) runs from 1 November of the year
        before to the end of February, and is named for the year it ends in. Only the recipe
        knows its season; the user's own composites cover their calendar year as far as
        eetrend can tell.
        """
        composite = self.config.composite
        months = composite.months if composite.source == "recipe" else None
        if months is None:
            return dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
        first, last = months
        start = dt.date(year - 1 if first > last else year, first, 1)
        end = dt.date(year + 1, 1, 1) if last == 12 else dt.date(year, last + 1, 1)
        return start, end

    def season_years(self, year: int) -> tuple[int, ...]:
        """The calendar years a year's season touches: (year,) or, across the New Year, (year - 1, year)."""
        start, end = self.season(year)
        return tuple(range(start.year, (end - dt.timedelta(days=1)).year + 1))

    def available_on(self, year: int) -> dt.date:
        """The first day a year may be exported: its season's end plus ``settle_days``."""
        return self.season(year)[1] + dt.timedelta(days=self.config.study.settle_days)

    def later_note(self, year: int) -> str:
        """Why a year of the config is not exported yet, and when it will be."""
        last = self.season(year)[1] - dt.timedelta(days=1)
        return (f"{year} is not exported yet: its season ends {last.isoformat()}, and it is exported from "
                f"{self.later[year].isoformat()} (study.settle_days = {self.config.study.settle_days})")

    @property
    def manifest_path(self) -> Path:
        return self.state / "manifest.sqlite"

    def _path(self, given: Path | None, default: Path) -> Path:
        path = (given or default).expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = path.expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()

    def dask_settings(self):
        """The ``[dask]`` table's executor settings (None without one); SLURM job logs go to
        ``[dask.slurm] log_directory`` (relative to the config) or else ``slurm-logs`` in the state folder."""
        dask = self.config.dask
        if dask is None:
            return None
        given = dask.slurm.log_directory if dask.slurm is not None else None
        return dask.settings(log_directory=self.resolve(given) if given is not None else self.state / "slurm-logs")

    def prefix(self, year: int | str) -> str:
        """The export's file name prefix for ``year`` (a string stands in for the year, e.g. in a pattern)."""
        c = self.config
        return c.export.prefix.format(
            study=c.study.name, index=c.composite.label, reducer=c.composite.reducer.value, year=year
        )

    def crs_transform(self) -> list[float] | None:
        """The export's ``crsTransform`` on the Landsat grid (pixel corners at 15 m past multiples of 30 m),
        anchored near the region; None when the export uses ``scale``."""
        return None if self._landsat_transform is None else list(self._landsat_transform)

    @functools.cached_property
    def _landsat_transform(self) -> tuple[float, ...] | None:
        region = self.config.region
        if not region.on_landsat_grid:
            return None
        x0, y0 = 15.0, 15.0
        bounds = self._region_bounds()
        if bounds is not None:
            from rasterio.warp import transform_bounds

            west, south, east, north = transform_bounds("EPSG:4326", region.crs, *bounds, densify_pts=21)
            x0 = (west - 15.0) // 30.0 * 30.0 + 15.0
            y0 = -((-(north - 15.0)) // 30.0) * 30.0 + 15.0
        return (LANDSAT_PIXEL, 0.0, x0, 0.0, -LANDSAT_PIXEL, y0)

    def _region_bounds(self) -> tuple[float, float, float, float] | None:
        region = self.config.region
        if region.bbox is not None:
            return tuple(region.bbox)
        if region.geojson is not None:
            geometry = region_geometry(json.loads(self.resolve(region.geojson).read_text(encoding="utf-8")))
            polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
            xs = [p[0] for polygon in polygons for ring in polygon for p in ring]
            ys = [p[1] for polygon in polygons for ring in polygon for p in ring]
            return min(xs), min(ys), max(xs), max(ys)
        return None  # a table asset: its bounds are on Earth Engine; any point of the grid serves

    def description(self, year: int) -> str:
        """The task description Earth Engine shows: at most 100 of ``[A-Za-z0-9.,:;_-]``."""
        text = f"eetrend_{self.name}_{self.config.composite.label}_{year}"
        text = re.sub(r"[^A-Za-z0-9.,:;_-]", "_", text)
        return text[:95] + f"_{year}" if len(text) > 100 else text

    def output_settings(self, year: int) -> dict[str, Any]:
        """The settings that decide a year's exported pixels (used for the fingerprint and diffs)."""
        section = self.config.composite
        if section.source != "recipe":
            # What Earth Engine receives decides the pixels: the year's serialized expression, by its digest
            # (sources.expression_digests sets it once the user's code has run).
            composite = {"source": section.source, "expression": self.expression_digests.get(year)}
            return {"region": self.region_settings, "composite": composite}
        composite = section.model_dump(mode="json", exclude={*OWN_SOURCE_KEYS, "band", "year_property"})
        flown = {s for y in self.season_years(year) for s in sensors_for_year(section.sensors, y)}
        composite["sensors"] = [s.value for s in Sensor if s in flown]  # a fixed order
        if len(self.season_years(year)) > 1:
            composite["season"] = "across the New Year"  # the dates differ from those of calendarRange before
        if not composite["count_band"]:
            del composite["count_band"]  # studies made before the count band keep their fingerprints
        if section.expression is None:
            del composite["expression"], composite["name"]  # studies made before formulas keep their fingerprints
        else:
            del composite["index"]  # the formula replaces it
        return {"region": self.region_settings, "composite": composite}

    @functools.cached_property
    def region_settings(self) -> dict[str, Any]:
        """The region as it enters the fingerprints; a GeoJSON file by its digest (read once)."""
        region = self.config.region.model_dump(mode="json")
        region["landsat_grid"] = self.config.region.on_landsat_grid  # the effective grid, set or by default
        if self.config.region.geojson is not None:
            region["geojson"] = hashlib.sha256(self.resolve(self.config.region.geojson).read_bytes()).hexdigest()
        return region

    def request_settings(self, year: int) -> dict[str, Any]:
        export = self.config.export
        return {
            **self.output_settings(year),
            "export": {
                "destination": export.destination,
                "folder": export.folder,
                "bucket": export.bucket,
                "prefix": self.prefix(year),
                "max_pixels": export.max_pixels,
                "file_dimensions": export.file_dimensions,
                "cloud_optimized": export.cloud_optimized,
                # only for the direct route, so the fingerprints of batch studies stay as they were
                **({"direct_tile": self.direct_tile} if export.destination == "direct" else {}),
            },
        }

    @property
    def direct_tile(self) -> int:
        """The side of a direct route's tiles: as configured, else the default for the study's bands."""
        given = self.config.export.direct_tile
        return given if given is not None else default_direct_tile(2 if self.config.composite.count_band else 1)
    def fit_options(self):
        """The :class:`~pipeline.engine.trend.FitOptions` of ``[trend]`` (band 2 holds the counts, if any)."""
        from .engine.options import FitOptions

        trend = self.config.trend
        return FitOptions(method=trend.method, min_years=trend.min_years, alpha=trend.alpha,
                          confidence=trend.confidence, mk_test=trend.mk_test, fdr=trend.fdr, fdr_q=trend.fdr_q,
                          changepoint=trend.changepoint, min_fraction=trend.min_fraction,
                          edge_years=trend.edge_years, count_band=2 if self.config.composite.count_band else None,
                          min_count=trend.min_count, breaks=trend.breaks, min_segment=trend.min_segment)

    def output_fingerprint(self, year: int) -> str:
        return fingerprint(self.output_settings(year))

    def request_fingerprint(self, year: int) -> str:
        return fingerprint(self.request_settings(year))


def current_date() -> dt.date:
    """Today, as a study's years see it (the one place a test fakes the calendar)."""
    return dt.date.today()


def load_study(path: str | Path, today: dt.date | None = None) -> Study:
    """Read and validate a study config; raises :class:`ConfigError` with one line."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not a TOML error
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file; copy configs/example.toml and edit it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the config ({exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        error = ConfigError(f"{source}: {_explain(exc, raw)}")
        error.problems = [f"{source}: {_explain_one(e)}" for e in exc.errors()]  # every one, for eetrend check
        raise error from None
    study = Study(config, source.resolve(), today)
    _check_region_and_paths(study, source)
    if config.region.geojson is not None:
        _check_geojson(study.resolve(config.region.geojson), source)
    if config.composite.function is not None:
        from .earthengine.user_function import check_function_file

        check_function_file(study)
    if config.earthengine.key_file is not None and config.earthengine.auth != "service_account":
        raise ConfigError(f"{source}: earthengine.key_file is set but auth is '{config.earthengine.auth}'; "
                          "set auth = 'service_account' or remove key_file")
    return study


def _check_region_and_paths(study: Study, source: Path) -> None:
    """Local checks before any request: CRS, bbox, GeoJSON (geometry_checks) and the study's folders."""
    from .files.diskio import check_folder_path
    from .geometry_checks import check_region

    try:
        check_region(study)
        for role, folder in (("paths.state", study.state), ("paths.downloads", study.downloads),
                             ("paths.outputs", study.outputs)):
            check_folder_path(folder, role)
    except UsageError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _resolve_years(section: StudySection, today: dt.date) -> list[int]:
    if isinstance(section.years, list):
        years = set(section.years)
    else:
        spec = re.sub(r"current$", str(today.year), section.years.strip())
        try:
            years = set(parse_years(spec))
        except UsageError as exc:
            raise ConfigError(f"study.years: {exc}") from None
    bad = sorted(y for y in years if not 1982 <= y <= today.year)
    if bad:
        raise ConfigError(f"study.years: {bad[0]} is outside 1982-{today.year}, the years of Landsat Collection 2")
    years -= set(section.exclude_years)
    if len(years) < 2:
        raise ConfigError("study.years: fewer than 2 years remain after exclude_years; a trend needs more")
    return sorted(years)


def _explain(exc: ValidationError, raw: dict[str, Any]) -> str:
    """One line for the first validation problem (key path, what is wrong, the fix), counting the others."""
    errors = exc.errors()
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return _explain_one(errors[0]) + more


def _explain_one(error: Any) -> str:
    """One validation problem as one line: key path, what is wrong, the fix."""
    location = [str(part) for part in error["loc"]]
    key = ".".join(location)
    if error["type"] == "extra_forbidden":
        known = _known_keys(location[:-1])
        guess = difflib.get_close_matches(location[-1], known, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"known keys here: {', '.join(known)}"
        return f"{key}: unknown key; {hint}"
    if error["type"] == "missing":
        return f"{key}: required key is missing; see configs/example.toml"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key or 'config'}: {message}"


def _known_keys(location: list[str]) -> list[str]:
    model: type[BaseModel] = StudyConfig
    for part in location:
        annotation = model.model_fields[part].annotation
        optional = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        annotation = optional[0] if optional else annotation  # an optional table: X | None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _check_geojson(path: Path, source: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: region.geojson: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source}: region.geojson: {path} is not readable GeoJSON ({exc})") from None
    if region_geometry(data) is None:
        raise ConfigError(f"{source}: region.geojson: {path} holds no Polygon or MultiPolygon")


def region_geometry(data: dict[str, Any]) -> dict[str, Any] | None:
    """The (multi)polygon geometry of a GeoJSON Geometry, Feature or FeatureCollection."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind in ("Polygon", "MultiPolygon"):
        return data
    if kind == "Feature":
        return region_geometry(data.get("geometry") or {})
    if kind == "FeatureCollection":
        polygons: list[Any] = []
        for feature in data.get("features", []):
            geometry = region_geometry(feature)
            if geometry is not None:
                coords = geometry["coordinates"]
                polygons.extend([coords] if geometry["type"] == "Polygon" else coords)
        if polygons:
            return {"type": "MultiPolygon", "coordinates": polygons}
    return None


def fingerprint(settings: dict[str, Any]) -> str:
    """A short stable digest of JSON-able settings (key order does not matter)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _is_loopback(url: str | None) -> bool:
    return bool(url) and re.match(r"https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", url) is not None


def settings_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths whose values differ between two nested settings dicts."""
    changed: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed.extend(settings_diff(a, b, path + "."))
        elif a != b:
            changed.append(path)
    return changed
