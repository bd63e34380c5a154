"""The user's own composites: a function per year, an ImageCollection asset, an index formula.

Each runs through the real ``earthengine-api`` against the emulator, which serves the
wheel's full algorithm list, so the user's code builds its expression as it would
against Earth Engine. What Earth Engine receives is read back from the recorded
``image:export`` bodies.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.earthengine.client import EXPORT_NODATA
from pipeline.emulator.conformance import check
from pipeline.emulator.expression import band_names, decode
from pipeline.run import output_paths

runner = CliRunner()

EXAMPLES = Path(__file__).resolve().parents[1] / "configs"
#: The shipped example: summer Sentinel-2 NDVI masked with Cloud Score+, and its clear-scene count.
SENTINEL2 = (EXAMPLES / "composites" / "sentinel2_ndvi.py").read_text()


def _exports(emulator) -> list[dict]:
    return [r.json() for r in emulator.router.requests if r.method == "POST" and r.path.endswith("image:export")]


def _calls(node) -> list[str]:
    """Every algorithm an expression invokes, mapped functions' bodies included."""
    if isinstance(node, dict):
        found = [node["functionName"]] if isinstance(node.get("functionName"), str) else []
        return found + [name for value in node.values() for name in _calls(value)]
    if isinstance(node, list):
        return [name for value in node for name in _calls(value)]
    return []


def _arguments(node, name: str) -> list[dict]:
    """The arguments of every invocation of algorithm ``name`` in an expression, nested ones included."""
    if isinstance(node, dict):
        found = [node.get("arguments", {})] if node.get("functionName") == name else []
        return found + [args for value in node.values() for args in _arguments(value, name)]
    if isinstance(node, list):
        return [args for value in node for args in _arguments(value, name)]
    return []


def _constants(node) -> list:
    """Every constant in an expression, nested ones included."""
    if isinstance(node, dict):
        found = [node["constantValue"]] if "constantValue" in node else []
        return found + [c for value in node.values() for c in _constants(value)]
    if isinstance(node, list):
        return [c for value in node for c in _constants(value)]
    return []


def _study(make_study, tmp_path, composite: str, code: str | None = None, **kwargs):
    if code is not None:
        (tmp_path / "composites.py").write_text(textwrap.dedent(code))
    return make_study(composite=composite, **kwargs)


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_a_sentinel2_function_study_runs_to_the_end_with_the_users_expression(emulator, make_study, tmp_path):
    path, study = _study(make_study, tmp_path, 'function = "composites.py:annual"\nband = "ndvi"\n'
                         'count_band = "clear_count"', SENTINEL2, years="2016..2021")
    first = _cli("run", path)
    assert first.exit_code == 75, first.output
    bodies = _exports(emulator)
    assert len(bodies) == 6
    for body in bodies:
        calls = _calls(body["expression"])
        text = json.dumps(body["expression"])
        assert "COPERNICUS/S2_SR_HARMONIZED" in text and "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED" in text
        assert "Image.linkCollection" in calls and "Image.normalizedDifference" in calls
        assert body["fileExportOptions"]["geoTiffOptions"]["noData"] == {"floatValue": EXPORT_NODATA}
        (unmask,) = _arguments(body["expression"], "Image.unmask")
        assert unmask["sameFootprint"] == {"constantValue": False}
        assert "Image.toFloat" in calls and "Image.clip" in calls
    years = sorted(int(b["description"][-4:]) for b in bodies)
    assert years == list(range(2016, 2022))
    emulator.earthengine.finish_all()
    second = _cli("run", path)
    assert second.exit_code == 0, second.output
    outputs = output_paths(study)
    with rasterio.open(outputs["trend"]) as dataset:
        names = list(dataset.descriptions)
        slope = dataset.read(names.index("slope") + 1)
    assert "obs_mean" in names  # the user's count band reached the fit as the clear-scene count
    inside = emulator.rasters.grid.inside
    assert np.isfinite(slope[inside]).mean() > 0.99 and np.isnan(slope[~inside]).all()
    downloaded = sorted(study.downloads.rglob("*.tif"))
    with rasterio.open(downloaded[0]) as year:
        assert year.descriptions == ("ndvi", "clear_count") and year.nodata == EXPORT_NODATA
    assert downloaded[0].name == "test-study_ndvi_2016.tif"

    assert check(emulator.router.requests) == []  # every request is one Earth Engine would accept
    requests = len(emulator.router.log)
    third = _cli("run", path)
    assert third.exit_code == 0 and "complete and up to date" in third.output
    assert len(emulator.router.log) == requests  # the function file did not change: not a single request


def test_editing_the_function_for_one_year_names_it_and_force_reexports_it_alone(emulator, make_study, tmp_path):
    code = '''
    import ee

    SCALE = {}

    def annual(year, region):
        with open(__file__ + ".calls", "a") as calls:
            calls.write(f"{year}\\n")
        scenes = ee.ImageCollection("MODIS/061/MOD13Q1").filterDate(f"{year}-01-01", f"{year + 1}-01-01")
        return scenes.select("NDVI").max().multiply(SCALE.get(year, 0.0001))
    '''
    path, study = _study(make_study, tmp_path, 'function = "composites.py:annual"', code, years="2001..2005")
    assert _cli("export", path).exit_code == 0
    calls = (tmp_path / "composites.py.calls").read_text().split()
    assert sorted(calls) == [str(y) for y in range(2001, 2006)]  # once a year: the fingerprint's build is reused
    emulator.earthengine.finish_all()
    assert _cli("run", path).exit_code == 0
    before = emulator.earthengine.export_requests
    (tmp_path / "composites.py").write_text(textwrap.dedent(code).replace("SCALE = {}", "SCALE = {2003: 1e-4 / 2}"))

    refused = _cli("export", path)
    line = _one_line_error(refused)
    assert "composite.expression changed since years 2003 were exported" in line and "--force" in line
    assert emulator.earthengine.export_requests == before

    forced = _cli("export", path, "--force")
    assert forced.exit_code == 0, forced.output
    assert emulator.earthengine.export_requests == before + 1
    assert _exports(emulator)[-1]["description"].endswith("_2003")
    emulator.earthengine.finish_all()
    assert _cli("run", path).exit_code == 0
    assert emulator.earthengine.export_requests == before + 1


@pytest.mark.parametrize(
    ("code", "spec", "expected"),
    [
        (None, "missing.py:annual", r"composite\.function: missing\.py does not exist"),
        ("def annual(year, region)\n    return 1\n", "composites.py:annual",
         r"composite\.function: composites\.py:1: expected ':'"),
        ("def yearly(year, region):\n    pass\n", "composites.py:annual",
         r"composites\.py defines no function 'annual' \(it defines yearly\)"),
        ("import ee\n\ndef annual(year, region):\n    x = 1\n    return ee.Image(1).divide(x - 1 // 1 * 0 / 0)\n",
         "composites.py:annual", r"composites\.py:5: annual\(\d{4}, region\) raised ZeroDivisionError"),
        ("import ee\n\ndef annual(year, region):\n    return ee.ImageCollection('MODIS/061/MOD13Q1')\n",
         "composites.py:annual", r"returned ImageCollection, not an ee\.Image; reduce it to one image"),
        ("def annual(year, region):\n    return None\n", "composites.py:annual", r"returned None, not an ee\.Image"),
        ("raise RuntimeError('needs a token')\n\ndef annual(year, region):\n    pass\n", "composites.py:annual",
         r"importing composites\.py failed: composites\.py:1: RuntimeError: needs a token"),
        ("annual = 3\n", "composites.py:annual", r"in composites\.py, 'annual' is a int, not a function"),
    ],
)
def test_a_bad_function_file_is_one_line_naming_it_and_nothing_is_submitted(emulator, make_study, tmp_path,
                                                                            code, spec, expected):
    import re

    from tests.conftest import study_toml

    if code is not None:
        (tmp_path / "composites.py").write_text(code)
    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, composite=f'function = "{spec}"', years="2001..2003"))
    for command in ("export", "run"):
        line = _one_line_error(_cli(command, path))
        assert re.search(expected, line), line
    assert emulator.earthengine.export_requests == 0


def test_debug_shows_the_traceback_of_the_users_code(emulator, make_study, tmp_path):
    code = "import ee\n\ndef annual(year, region):\n    raise ValueError('bad band ' + str(year))\n"
    path, _ = _study(make_study, tmp_path, 'function = "composites.py:annual"', code, years="2001..2003")
    result = _cli("--debug", "export", path)
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    cause = result.exception.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "bad band 2001"


def test_a_collection_asset_study_runs_to_the_end(emulator, make_study):
    emulator.earthengine.assets.add_collection("projects/my-project/assets/annual_ndvi", range(1999, 2006), "NDVI")
    emulator.earthengine.assets.max_page_size = 3  # the listing is paged: every page is followed
    path, study = make_study(composite='collection = "projects/my-project/assets/annual_ndvi"\nband = "NDVI"',
                             years="2000..2004")
    assert _cli("run", path).exit_code == 75
    bodies = _exports(emulator)
    assert len(bodies) == 5
    for body in bodies:
        year = body["description"][-4:]
        loads = [args["id"]["constantValue"] for args in _arguments(body["expression"], "Image.load")]
        assert loads == [f"projects/my-project/assets/annual_ndvi/annual_ndvi_{year}"]
    emulator.earthengine.finish_all()
    assert _cli("run", path).exit_code == 0
    assert output_paths(study)["trend"].exists()
    assert check(emulator.router.requests) == []
    assert emulator.count("GET", r"/v1/projects/my-project/assets/annual_ndvi:listAssets$") == 3  # 7 images, 3 a page


def test_the_year_property_chooses_the_images(emulator, make_study):
    assets = emulator.earthengine.assets
    collection = assets.add_collection("projects/my-project/assets/ndvi", [2001, 2002, 2003], "NDVI")
    for image in collection.images:  # their dates say 2001-2003, the property says the year they stand for
        image["properties"] = {"season": image["properties"]["year"] + 10}
    path, _ = make_study(composite='collection = "projects/my-project/assets/ndvi"\nyear_property = "season"',
                         years="2011..2013")
    assert _cli("export", path).exit_code == 0
    loads = {b["description"][-4:]: json.dumps(b["expression"]) for b in _exports(emulator)}
    assert "ndvi_2001" in loads["2011"] and "ndvi_2003" in loads["2013"]


@pytest.mark.parametrize(
    ("asset", "years", "expected"),
    [
        (None, None, r"composite\.collection: Asset 'projects/my-project/assets/annual_ndvi' does not exist or "
                     r"doesn't allow this operation\.; check the asset id"),
        ("projects/my-project/assets/annual_ndvi", [2000, 2001, 2003], r"has no image for 2002 \(by the year of "
                                                                        r"system:time_start, it holds 2000-2001,"
                                                                        r"2003\)"),
        ("projects/my-project/assets/annual_ndvi", [2000, 2001, 2001, 2002, 2003],
         r"has 2 images for 2001 \(annual_ndvi_2001, annual_ndvi_2001_2\); keep one image per year"),
    ],
)
def test_a_missing_asset_or_year_is_refused_before_any_export(emulator, make_study, asset, years, expected):
    import re

    if asset is not None:
        emulator.earthengine.assets.add_collection(asset, years, "NDVI")
    path, _ = make_study(composite='collection = "projects/my-project/assets/annual_ndvi"', years="2000..2003")
    for command in ("export", "run"):
        line = _one_line_error(_cli(command, path))
        assert re.search(expected, line), line
    assert emulator.earthengine.export_requests == 0


def test_a_band_the_images_lack_is_refused_before_any_export(emulator, make_study):
    emulator.earthengine.assets.add_collection("projects/my-project/assets/evi", range(2000, 2004), "EVI")
    path, _ = make_study(composite='collection = "projects/my-project/assets/evi"\nband = "NDVI"', years="2000..2003")
    line = _one_line_error(_cli("export", path))
    assert "composite.band: the 2000 image evi_2000 has no band 'NDVI' (it has EVI)" in line
    assert emulator.earthengine.export_requests == 0


def test_an_index_formula_is_exported_as_earth_engine_arithmetic(emulator, make_study):
    path, study = make_study(composite='expression = "(nir - red) / (nir + red + 0.16)"\nname = "OSAVI"',
                             years="2013..2016")
    assert _cli("export", path).exit_code == 0
    (body, *_) = _exports(emulator)
    root = decode(body["expression"])
    calls = _calls(body["expression"])
    assert {"Image.subtract", "Image.add", "Image.divide"} <= set(calls)
    assert "Image.normalizedDifference" not in calls
    assert 0.16 in _constants(body["expression"])
    assert body["fileExportOptions"]["driveDestination"]["filenamePrefix"] == "test-study_OSAVI_2013"
    assert root.name == "Image.clip"  # the export's own grid, as for the built-in indices
    emulator.earthengine.finish_all()
    assert _cli("run", path).exit_code == 0
    with rasterio.open(sorted(study.downloads.rglob("*.tif"))[0]) as year:
        assert year.descriptions == ("OSAVI",)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("(nir - rde) / (nir + red)", r"composite\.expression: uses 'rde', which is not a band; use blue"),
        ("(nir - red / (nir + red)", r"composite\.expression: '\(nir - red / \(nir \+ red\)' is not a formula: "
                                     r"'\(' was never closed"),
        ("sqrt(nir) - red", r"calls 'sqrt\(\.\.\.\)'"),
        ("nir // red", r"uses '//', which an index formula cannot"),
        ("nir + 1 / 0", r"computes '1 / 0', which has no value"),
        ("0.5", r"uses no band"),
        ("nir.__class__", r"uses 'nir.__class__', which is not a number, a band"),
    ],
)
def test_a_bad_formula_is_refused_before_any_request(emulator, tmp_path, formula, expected):
    import re

    from tests.conftest import study_toml

    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, composite=f'expression = "{formula}"\nname = "X"'))
    line = _one_line_error(_cli("export", path))
    assert re.search(expected, line), line
    assert emulator.router.log == []  # not even the discovery document


@pytest.mark.parametrize(
    ("composite", "expected"),
    [
        ('function = "c.py:annual"\ncollection = "projects/my-project/assets/x"',
         r"give one source of composites: function or collection, not both"),
        ('function = "c.py:annual"\nindex = "EVI"\nreducer = "median"',
         r"function makes your own composites, so the recipe's key\(s\) index, reducer do not apply"),
        ('collection = "projects/my-project/assets/x"\nmonths = [6, 8]', r"recipe's key\(s\) months do not apply"),
        ('collection = "projects/my-project/assets/x"\nexpression = "nir - red"\nname = "d"',
         r"recipe's key\(s\) expression do not apply"),
        ('index = "EVI"\nexpression = "nir - red"\nname = "d"', r"give index or expression, not both"),
        ('expression = "nir - red"', r"expression needs name = "),
        ('band = "NDVI"', r"band is only used with function or collection"),
        ('count_band = "n"', r"count_band = 'n' names a band, which only function or collection"),
        ('collection = "projects/my-project/assets/x"\ncount_band = true', r"name the band that holds the clear"),
        ('function = "c.py:annual"\nyear_property = "y"', r"year_property is only used with collection"),
        ('function = "annual"', r"function = 'annual' must be 'file\.py:function_name'"),
        ('collection = "projects/p/assets/x"', r"'p' is not a Cloud project id"),
        ('collection = "annual ndvi"', r"is not an asset id"),
    ],
)
def test_mixed_or_malformed_sources_are_config_errors_naming_the_keys(emulator, tmp_path, composite, expected):
    import re

    from tests.conftest import study_toml

    (tmp_path / "c.py").write_text("def annual(year, region):\n    pass\n")
    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, composite=composite))
    line = _one_line_error(_cli("status", path, "--cached"))
    assert line.startswith(f"error: {path}: composite"), line
    assert re.search(expected, line), line


def test_the_built_in_recipe_keeps_its_fingerprints(make_study):
    """Adding the new keys changed nothing for studies made before them (no spurious re-export)."""
    from pipeline.config import fingerprint

    _, study = make_study(composite='index = "NDVI"')
    settings = study.output_settings(2000)
    assert set(settings["composite"]) == {"sensors", "index", "reducer", "percentile", "months", "mask",
                                          "harmonize", "saturation"}
    assert fingerprint(settings) == study.output_fingerprint(2000)


def test_the_emulator_serves_the_wheels_full_algorithm_list(emulator):
    import urllib.request
    from importlib import resources

    expected = json.loads(resources.files("ee").joinpath("tests", "algorithms.json").read_text())
    request = urllib.request.Request(f"{emulator.url}/v1/projects/p/algorithms",
                                     headers={"Authorization": "Bearer x"})
    with urllib.request.urlopen(request) as answer:
        served = json.loads(answer.read())
    assert len(served["algorithms"]) == len(expected["algorithms"]) > 900
    assert {a["name"] for a in served["algorithms"]} == {a["name"] for a in expected["algorithms"]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("projects/my-project/assets/x:2000..2002,2001:NDVI",
         ("projects/my-project/assets/x", [2000, 2001, 2002, 2001], "NDVI")),
        ("users/me/ndvi:2005:B1", ("users/me/ndvi", [2005], "B1")),
    ],
)
def test_emulator_asset_specs(spec, expected):
    from pipeline.emulator.assets import parse_asset_spec

    assert parse_asset_spec(spec) == expected


@pytest.mark.parametrize("spec", ["projects/my-project/assets/x:2000..2002", "projects/my-project/assets/x:2000:1NDVI",
                                  "projects/my-project/assets/x:2002..2000:NDVI",
                                  "projects/my-project/assets/x:20:NDVI"])
def test_bad_emulator_asset_specs_are_one_line(spec):
    result = _cli("emulator", "--asset", spec)
    line = _one_line_error(result)
    assert "--asset" in line


@pytest.mark.parametrize("name", ["sentinel2", "modis", "asset"])
def test_the_example_configs_load_and_their_functions_build_images(make_study, name):
    """configs/: each example loads; a function example's code builds a two-band image (value, count)."""
    from pipeline.config import load_study
    from pipeline.earthengine import client as ee_api
    from pipeline.earthengine.sources import serialized, year_image

    example = load_study(EXAMPLES / f"{name}.toml")
    composite = example.config.composite
    assert composite.source == ("collection" if name == "asset" else "function")
    if composite.source != "function":
        return
    _, session = make_study()
    ee_api.connect(session)  # ee initialised against the emulator, with the wheel's real signatures
    expression = json.loads(serialized(year_image(example, example.years[-1])))
    assert band_names(expression) == [composite.label, "clear_count"]
    assert {"Image.updateMask", "Image.clip", "Image.toFloat"} <= set(_calls(expression))
