"""Study configs: the example loads, mistakes get one line naming the key, fingerprints scope changes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from pipeline.config import load_study
from pipeline.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "example.toml"
URL = "http://127.0.0.1:9"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def _config(tmp_path, **kwargs) -> Path:
    from tests.conftest import study_toml

    return _write(tmp_path, study_toml(URL, **kwargs))


def test_example_config_loads_with_documented_defaults():
    study = load_study(EXAMPLE)
    assert study.years == list(range(1995, 2016))
    c = study.config
    assert c.composite.index.value == "NDVI" and c.composite.reducer.value == "max"
    assert c.export.destination == "drive" and c.export.max_attempts == 3
    assert study.state == (EXAMPLE.parent / "data" / "alps-greening" / "state").resolve()
    assert study.prefix(2001) == "alps-greening_NDVI_2001"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("[composite]\n", "[composite]\nreduce = \"max\"\n"),
         r"composite\.reduce: unknown key; did you mean 'reducer'\?"),
        (('project = "test-project"\n', ""), r"earthengine\.project: required key is missing"),
        (("[composite]\n", "[composite]\nreducer = \"mode\"\n"), r"composite\.reducer: Input should be 'max'"),
        (("[composite]\n", "[composite]\nreducer = \"percentile\"\n"), r"needs percentile = <0-100>"),
        (("[composite]\n", "[composite]\nindex = \"NDWI\"\n"), r"composite\.index: Input should be 'NDVI'"),
        (("[composite]\n", "[composite]\nsensors = [\"MSS\"]\n"), r"composite\.sensors\.0: Input should be 'TM'"),
        (('folder = "eetrend_test"', 'prefix = "ndvi"'), r"prefix must contain \{year\}"),
        (('folder = "eetrend_test"', 'prefix = "../../{year}"'), r"no '\.\.'"),
        (('folder = "eetrend_test"', 'destination = "gcs"'), r"needs bucket"),
        (('crs = "EPSG:32632"', 'crs = "utm32"'), r"region\.crs: write the crs as 'EPSG:<code>'"),
        (('crs = "EPSG:32632"', 'crs = "EPSG:32632"\nasset = "projects/p/assets/a"'), r"exactly one of bbox"),
        (('auth = "none"', 'auth = "service_account"'), r"needs key_file"),
        (('name = "test-study"', 'name = "my study!"'), r"study\.name: use 1-64 letters"),
    ],
)
def test_config_mistakes_name_the_key_and_the_fix(tmp_path, edit, expected):
    text = _config(tmp_path).read_text()
    assert edit[0] in text
    path = _write(tmp_path, text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(expected, message), message
    assert message.startswith(str(path))


def test_auth_none_is_refused_for_a_remote_endpoint(tmp_path):
    text = _config(tmp_path).read_text().replace(URL, "https://earthengine.googleapis.com")
    with pytest.raises(ConfigError, match="only for the local emulator"):
        load_study(_write(tmp_path, text))


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_study(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(_write(tmp_path, "[study\nname = 1"))


def test_years_current_and_exclusions(tmp_path):
    path = _config(tmp_path, years="2019..current")
    text = path.read_text().replace('years = "2019..current"', 'years = "2019..current"\nexclude_years = [2021]')
    study = load_study(_write(tmp_path, text), today=dt.date(2024, 3, 1))
    assert study.years == [2019, 2020, 2022, 2023]  # 2024 has not ended: it waits (tests/test_seasons.py)
    assert study.later == {2024: dt.date(2025, 1, 15)}
    assert load_study(path, today=dt.date(2025, 1, 15)).years == [2019, 2020, 2022, 2023, 2024]  # 2024 has settled
    with pytest.raises(ConfigError, match="1970 is outside 1982"):
        load_study(_config(tmp_path, years="1970..1990"))


def test_geojson_region_must_exist_and_hold_a_polygon(tmp_path):
    region = 'geojson = "aoi.geojson"\ncrs = "EPSG:32632"'
    with pytest.raises(ConfigError, match="aoi.geojson does not exist"):
        load_study(_config(tmp_path, region=region))
    (tmp_path / "aoi.geojson").write_text('{"type": "Point", "coordinates": [10, 46]}')
    with pytest.raises(ConfigError, match="holds no Polygon"):
        load_study(_config(tmp_path, region=region))
    (tmp_path / "aoi.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": '
        '{"type": "Polygon", "coordinates": [[[10, 46], [10.1, 46], [10.1, 46.1], [10, 46]]]}}]}'
    )
    assert load_study(_config(tmp_path, region=region)).config.region.geojson == Path("aoi.geojson")


def test_descriptions_are_valid_earth_engine_task_names(tmp_path):
    study = load_study(_config(tmp_path, name="x" * 64, years="1984..2024"))
    for year in study.years:
        description = study.description(year)
        assert re.fullmatch(r"[A-Za-z0-9.,:;_-]{1,100}", description)
        assert description.endswith(str(year))


def test_fingerprints_change_only_for_the_years_a_change_touches(tmp_path):
    base = load_study(_config(tmp_path, years="2008..2016", composite='sensors = ["ETM+", "OLI"]'))
    with_tm = load_study(_config(tmp_path, years="2008..2016", composite='sensors = ["TM", "ETM+", "OLI"]'))
    changed = [y for y in base.years if base.output_fingerprint(y) != with_tm.output_fingerprint(y)]
    assert changed == [2008, 2009, 2010, 2011, 2012]  # Landsat 5 TM flew until 2012

    bigger = load_study(_config(tmp_path, years="2008..2016", composite='sensors = ["ETM+", "OLI"]',
                                export='folder = "eetrend_test"\nmax_pixels = 1e12'))
    assert all(base.output_fingerprint(y) == bigger.output_fingerprint(y) for y in base.years)
    assert all(base.request_fingerprint(y) != bigger.request_fingerprint(y) for y in base.years)

    trend_only = _config(tmp_path, years="2008..2016", composite='sensors = ["ETM+", "OLI"]',
                         extra='[trend]\nmethod = "ols"')
    other = load_study(trend_only)
    assert all(base.request_fingerprint(y) == other.request_fingerprint(y) for y in base.years)
