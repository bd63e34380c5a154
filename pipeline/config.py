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
    exclude_years: list[int] = []

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
    crs: str = "EPSG:4326"
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
    sensors: list[Sensor] = [Sensor.TM, Sensor.ETM, Sensor.OLI, Sensor.OLI2]
    index: Index = Index.NDVI
    reducer: Reducer = Reducer.max
    percentile: Annotated[float, Field(ge=0, le=100)] | None = None
    months: tuple[int, int] | None = Field(None, description="First and last month of the season, e.g. [6, 8].")
    mask: list[MaskFlag] = [MaskFlag.fill, MaskFlag.dilated_cloud, MaskFlag.cirrus, MaskFlag.cloud, MaskFlag.shadow]
    harmonize: bool = Field(False, description="Adjust TM/ETM+ reflectance to OLI with Roy et al. (2016), Table 2 "
                                               "OLS; off by default, as Google's tutorial calls it unnecessary "
                                               "for Collection 2 surface reflectance.")
    saturation: bool = Field(False, description="Also mask pixels whose index bands are saturated (QA_RADSAT).")
    count_band: bool = Field(False, description="Export a second band: the clear scenes behind each pixel.")

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


class ExportSection(_Section):
    destination: Literal["drive", "gcs"] = "drive"
    folder: str | None = Field(None, description="Drive folder name (destination = 'drive').")
    bucket: str | None = Field(None, description="Cloud Storage bucket (destination = 'gcs').")
    prefix: str = Field(
        "{study}_{index}_{year}", description="File name prefix; fields {study} {index} {reducer} {year}."
    )
    max_pixels: float = Field(1e10, gt=0, description="Earth Engine's maxPixels: a whole number up to 2**63 - 1.")
    file_dimensions: int | None = Field(None, gt=0, description="Tile size in pixels before Earth Engine splits "
                                                                "files; a multiple of 256 (the shard size).")
    cloud_optimized: bool = True
    max_attempts: int = Field(3, ge=1, le=20, description="Submissions of a year before a FAILED task is given up.")
    delete_remote: bool = False

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
    auth: Literal["user", "service_account", "none"] = "user"
    key_file: Path | None = Field(None, description="Service-account JSON key (auth = 'service_account').")
    credentials_file: Path | None = Field(None, description="Stored user credentials; default is earthengine's own.")
    endpoint: str | None = Field(None, description="Another root for Earth Engine, Drive and Storage: the emulator.")
    token_uri: str | None = Field(None, description="Another OAuth token endpoint (the emulator's, for dry runs).")
    http_retries: int = Field(5, ge=0, le=10, description="Retries of a request answered 429 or 5xx.")

    @model_validator(mode="after")
    def _auth(self) -> EarthEngineSection:
        if self.auth == "service_account" and self.key_file is None:
            raise ValueError("auth = 'service_account' needs key_file = '<path to the JSON key>'")
        if self.auth == "none" and not _is_loopback(self.endpoint):
            raise ValueError("auth = 'none' is only for the local emulator; set endpoint = 'http://127.0.0.1:<port>'")
        return self


class PathsSection(_Section):
    downloads: Path | None = None
    outputs: Path | None = None
    state: Path | None = None


class TrendSection(_Section):
    method: Literal["ols", "sen", "both"] = "both"
    min_years: int = Field(3, ge=2)
    alpha: float = Field(0.05, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    format: Literal["gtiff", "cog", "netcdf", "zarr"] = Field(
        "gtiff", description="cog makes STUDY_trend.tif cloud-optimized; netcdf/zarr add STUDY_trend.nc/.zarr.")
    mk_test: Literal["original", "hamed-rao", "yue-wang", "prewhiten", "tfpw"] = "original"
    fdr: Literal["bh", "by"] | None = None
    fdr_q: float = Field(0.05, gt=0, lt=1)
    changepoint: Literal["pettitt"] | None = None
    breaks: int = Field(0, ge=0, le=10, description="Trends with breaks: at most this many (0: none).")
    min_segment: float = Field(0.15, gt=0, lt=0.5, description="Shortest segment, as a share of the valid years.")
    min_fraction: float = Field(0.0, ge=0, le=1)
    edge_years: int | None = Field(None, ge=0)
    min_count: int = Field(0, ge=0, description="Years with fewer clear scenes are missing (needs count_band).")


class SlurmSection(_Section):
    """A SLURM cluster through dask-jobqueue, scaled adaptively between minimum and maximum jobs."""

    cores: int = Field(ge=1)
    memory: str = Field(description="Memory per job, e.g. '32GB'.")
    account: str | None = None
    queue: str | None = None
    walltime: str = "01:00:00"
    processes: int = Field(1, ge=1)
    minimum_jobs: int = Field(1, ge=0)
    maximum_jobs: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _jobs(self) -> SlurmSection:
        if self.minimum_jobs > self.maximum_jobs:
            raise ValueError("minimum_jobs is larger than maximum_jobs")
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", self.memory.strip(), re.I):
            raise ValueError("memory must be like '32GB' or '64GiB'")
        return self


class DaskSection(_Section):
    """Fit on a Dask cluster: an existing scheduler, a SLURM cluster, or a local cluster of N workers."""

    scheduler: str | None = Field(None, description="An existing scheduler, e.g. 'tcp://10.0.0.5:8786'.")
    workers: int = Field(0, ge=0, description="Workers of a local cluster; 0 means one per core.")
    slurm: SlurmSection | None = None

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

    def settings(self):
        from .engine.dask_executor import DaskSettings, SlurmSettings
        from .engine.executors import resolve_workers

        slurm = SlurmSettings(**self.slurm.model_dump()) if self.slurm is not None else None
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

    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    user: str | None = None
    password_env: str | None = Field(None, description="Name of the environment variable holding the password.")
    sender: str
    to: list[str] = Field(min_length=1)
    cafile: Path | None = Field(None, description="CA bundle for a server whose certificate is privately signed.")
    timeout: float = Field(30.0, gt=0)

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
    email: EmailSection | None = None

    _urls = field_validator("ntfy", "webhook")(classmethod(lambda cls, v: _http_url(v)))
    _env = field_validator("token_env")(classmethod(lambda cls, v: _env_name(v)))


class StudyConfig(_Section):
    """A whole study config, as read from TOML."""

    study: StudySection
    region: RegionSection
    composite: CompositeSection = CompositeSection()
    export: ExportSection = ExportSection()
    earthengine: EarthEngineSection
    paths: PathsSection = PathsSection()
    trend: TrendSection = TrendSection()
    dask: DaskSection | None = None
    notify: NotifySection | None = None


class Study:
    """A validated config plus what follows from it: years, resolved paths, fingerprints."""

    def __init__(self, config: StudyConfig, source: Path, today: dt.date | None = None) -> None:
        self.config = config
        self.source = source
        self.base = source.parent
        self.years = _resolve_years(config.study, today or dt.date.today())
        root = Path("data") / config.study.name
        self.downloads = self._path(config.paths.downloads, root / "downloads")
        self.outputs = self._path(config.paths.outputs, root / "outputs")
        self.state = self._path(config.paths.state, root / "state")

    @property
    def name(self) -> str:
        return self.config.study.name

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

    def prefix(self, year: int | str) -> str:
        """The export's file name prefix for ``year`` (a string stands in for the year, e.g. in a pattern)."""
        c = self.config
        return c.export.prefix.format(
            study=c.study.name, index=c.composite.index.value, reducer=c.composite.reducer.value, year=year
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
        text = f"eetrend_{self.name}_{self.config.composite.index.value}_{year}"
        text = re.sub(r"[^A-Za-z0-9.,:;_-]", "_", text)
        return text[:95] + f"_{year}" if len(text) > 100 else text

    def output_settings(self, year: int) -> dict[str, Any]:
        """The settings that decide a year's exported pixels (used for the fingerprint and diffs)."""
        composite = self.config.composite.model_dump(mode="json")
        composite["sensors"] = [s.value for s in sensors_for_year(self.config.composite.sensors, year)]
        if not composite["count_band"]:
            del composite["count_band"]  # studies made before the count band keep their fingerprints
        return {"region": self._region_settings, "composite": composite}

    @functools.cached_property
    def _region_settings(self) -> dict[str, Any]:
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
            },
        }

    def output_fingerprint(self, year: int) -> str:
        return fingerprint(self.output_settings(year))

    def request_fingerprint(self, year: int) -> str:
        return fingerprint(self.request_settings(year))


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
        raise ConfigError(f"{source}: {_explain(exc, raw)}") from None
    study = Study(config, source.resolve(), today)
    _check_region_and_paths(study, source)
    if config.region.geojson is not None:
        _check_geojson(study.resolve(config.region.geojson), source)
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
    """One line for the first validation problem: key path, what is wrong, the fix."""
    error = exc.errors()[0]
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
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{key or 'config'}: {message}{more}"


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
