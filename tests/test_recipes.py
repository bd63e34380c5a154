"""Recipes: the serialized Earth Engine expression of each year, checked offline.

Two kinds of checks. Structure: the right collections for the year, its dates, the
season, the reducer, the final band. Arithmetic: a small numpy interpreter runs the
per-scene function *from the serialized expression* on a synthetic scene, and the result
is compared with the published formulas computed by hand (the Collection 2 scale and
offset, Roy et al. 2016 Table 2 OLS coefficients, the index, the QA_PIXEL and QA_RADSAT
bits).
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.earthengine import client as ee_api
from pipeline.earthengine import landsat, recipes

# -- a tiny interpreter for the serialized per-scene function -----------------------------------


class _Img(dict):
    """Bands by name (insertion order) plus a validity mask."""

    mask: np.ndarray


def _image(bands: dict, mask: np.ndarray) -> _Img:
    image = _Img(bands)
    image.mask = mask
    return image


def _binary(op):
    def run(args):
        a, b = args["image1"], args["image2"]
        av, bv = list(a.values()), list(b.values())
        if len(bv) == 1:
            bv = bv * len(av)
        if len(av) == 1:
            av = av * len(bv)
        return _image(dict(zip(list(a)[: len(av)] if len(a) >= len(av) else list(a) * len(av),
                               [op(x, y) for x, y in zip(av, bv, strict=True)], strict=False)),
                      a.mask & b.mask)

    return run


def _constant(args):
    value = args["value"]
    values = value if isinstance(value, list) else [value]
    names = ["constant"] if len(values) == 1 else [f"constant_{i}" for i in range(len(values))]
    return _image({n: np.float64(v) for n, v in zip(names, values, strict=True)}, np.array(True))


def _select(args):
    image = args["input"]
    names = args.get("newNames") or args["bandSelectors"]
    return _image({new: image[old] for old, new in zip(args["bandSelectors"], names, strict=True)}, image.mask)


def _rename(args):
    image = args["input"]
    return _image(dict(zip(args["names"], image.values(), strict=True)), image.mask)


def _normalized_difference(args):
    image = args["input"]
    a, b = (image[name] for name in args["bandNames"])
    return _image({"nd": (a - b) / (a + b)}, image.mask)


def _update_mask(args):
    image, mask = args["image"], args["mask"]
    (flag,) = mask.values()
    return _image(dict(image), image.mask & (flag != 0))


OPS = {
    "Image.constant": _constant,
    "Image.select": _select,
    "Image.rename": _rename,
    "Image.multiply": _binary(np.multiply),
    "Image.add": _binary(np.add),
    "Image.subtract": _binary(np.subtract),
    "Image.divide": _binary(np.divide),
    "Image.bitwiseAnd": _binary(lambda a, b: np.bitwise_and(a.astype(np.int64), np.int64(b))),
    "Image.eq": _binary(lambda a, b: (a == b)),
    "Image.and": _binary(lambda a, b: (a != 0) & (b != 0)),
    "Image.normalizedDifference": _normalized_difference,
    "Image.updateMask": _update_mask,
    "Image.copyProperties": lambda args: args["destination"],
}


def _evaluate(node, values, env):
    if "valueReference" in node:
        return _evaluate(values[node["valueReference"]], values, env)
    if "argumentReference" in node:
        return env[node["argumentReference"]]
    if "constantValue" in node:
        return node["constantValue"]
    if "arrayValue" in node:
        return [_evaluate(v, values, env) for v in node["arrayValue"]["values"]]
    call = node["functionInvocationValue"]
    args = {k: _evaluate(v, values, env) for k, v in call["arguments"].items()}
    return OPS[call["functionName"]](args)


def _invocations(expression):
    """Every function invocation in the graph: (name, raw arguments)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "functionInvocationValue" in node:
                call = node["functionInvocationValue"]
                found.append((call["functionName"], call["arguments"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(expression["values"])
    return found


def _scene_function(expression, asset):
    """The function mapped over the collection loaded from ``asset``."""
    for name, args in _invocations(expression):
        if name != "Collection.map":
            continue
        inner = args["collection"]
        while "functionInvocationValue" in inner:
            call = inner["functionInvocationValue"]
            if call["functionName"] == "ImageCollection.load":
                break
            inner = call["arguments"]["collection"]
        if call["arguments"]["id"]["constantValue"] == asset:
            algorithm = args["baseAlgorithm"]
            if "valueReference" in algorithm:
                algorithm = expression["values"][algorithm["valueReference"]]
            return algorithm["functionDefinitionValue"]
    raise AssertionError(f"no Collection.map over {asset}")


def _run_scene(expression, asset, scene):
    definition = _scene_function(expression, asset)
    (argument,) = definition["argumentNames"]
    return _evaluate({"valueReference": definition["body"]}, expression["values"], {argument: scene})


def _synthetic_scene(band_names, seed=0, n=4000):
    rng = np.random.default_rng(seed)
    bands = {name: rng.integers(7273, 43636, n).astype(np.float64) for name in band_names}  # reflectance 0..1
    bits = rng.random((8, n)) < 0.15  # each QA bit set in 15 % of pixels, so masks both keep and drop
    bands["QA_PIXEL"] = (bits * (1 << np.arange(8))[:, None]).sum(axis=0).astype(np.float64)
    return _image(bands, np.ones(n, bool))


@pytest.fixture
def connected(make_study):
    def connect(**kwargs):
        path, study = make_study(**kwargs)
        ee_api.connect(study)
        return study

    return connect


def _expression(study, year):
    return recipes.serialize(recipes.annual_composite(study, year))


# -- structure -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "assets"),
    [
        (1990, ["LANDSAT/LT04/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2"]),
        (2000, ["LANDSAT/LT05/C02/T1_L2", "LANDSAT/LE07/C02/T1_L2"]),
        (2014, ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LC08/C02/T1_L2"]),
        (2022, ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LC08/C02/T1_L2", "LANDSAT/LC09/C02/T1_L2"]),
    ],
)
def test_each_year_loads_the_sensors_that_flew_and_only_its_dates(connected, year, assets):
    study = connected(years="1984..2024")
    calls = _invocations(_expression(study, year))
    loaded = sorted(a["id"]["constantValue"] for n, a in calls if n == "ImageCollection.load")
    assert loaded == sorted(assets)
    dates = sorted(a["value"]["constantValue"] for n, a in calls if n == "Date")
    assert dates == [f"{year}-01-01", f"{year + 1}-01-01"]
    assert not [n for n, _ in calls if n == "Filter.calendarRange"]  # no season configured


@pytest.mark.parametrize(
    ("months", "year", "dates", "assets"),
    [
        ("[11, 2]", 2004, ["2003-11-01", "2004-03-01"], ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2"]),
        ("[12, 1]", 2000, ["1999-12-01", "2000-02-01"], ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2"]),
        # TM's last images are from November 2011: the 2012 season from November 2011 holds them
        ("[11, 3]", 2012, ["2011-11-01", "2012-04-01"], ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2"]),
        ("[1, 12]", 2004, ["2004-01-01", "2005-01-01"], ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2"]),
        ("[9, 9]", 2004, ["2004-09-01", "2004-10-01"], ["LANDSAT/LE07/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2"]),
    ],
)
def test_a_season_is_one_period_named_for_the_year_it_ends_in(connected, months, year, dates, assets):
    study = connected(years="1999..2015", composite=f"months = {months}\nsensors = [\"TM\", \"ETM+\"]")
    calls = _invocations(_expression(study, year))
    assert sorted({a["value"]["constantValue"] for n, a in calls if n == "Date"}) == dates
    assert sorted(a["id"]["constantValue"] for n, a in calls if n == "ImageCollection.load") == sorted(assets)
    assert not [n for n, _ in calls if n == "Filter.calendarRange"]


def test_season_reducer_and_final_band(connected):
    study = connected(composite='months = [6, 8]\nreducer = "percentile"\npercentile = 90\nindex = "EVI"')
    calls = _invocations(_expression(study, 2003))
    dates = sorted({a["value"]["constantValue"] for n, a in calls if n == "Date"})
    assert dates == ["2003-06-01", "2003-09-01"]  # June to August: the season's own dates
    assert not [n for n, _ in calls if n == "Filter.calendarRange"]
    (percentile,) = [a for n, a in calls if n == "Reducer.percentile"]
    assert percentile["percentiles"]["constantValue"] == [90]
    names = [n for n, _ in calls]
    assert "ImageCollection.reduce" in names and "reduce.max" not in names
    # The result: set(set(clip(toFloat(rename(<reduced>, ["EVI"])), region))): one float band named for the index.
    expression = _expression(study, 2003)
    values = expression["values"]

    def resolve(node):
        while "valueReference" in node:
            node = values[node["valueReference"]]
        return node["functionInvocationValue"] if "functionInvocationValue" in node else node

    node = resolve({"valueReference": expression["result"]})
    while node["functionName"] == "Element.set":
        node = resolve(node["arguments"]["object"])
    assert node["functionName"] == "Image.clip"
    to_float = resolve(node["arguments"]["input"])
    assert to_float["functionName"] == "Image.toFloat"
    rename = resolve(to_float["arguments"]["value"])
    assert rename["functionName"] == "Image.rename"
    names = _evaluate(rename["arguments"]["names"], values, {})
    assert names == ["EVI"]
    assert resolve(rename["arguments"]["input"])["functionName"] == "ImageCollection.reduce"


@pytest.mark.parametrize(("reducer", "algorithm"), [("max", "reduce.max"), ("median", "reduce.median"),
                                                    ("mean", "reduce.mean")])
def test_reducers(connected, reducer, algorithm):
    study = connected(composite=f'reducer = "{reducer}"')
    names = [n for n, _ in _invocations(_expression(study, 2010))]
    assert algorithm in names


def test_building_twenty_one_years_makes_no_http_request(connected, emulator):
    study = connected()
    before = len(emulator.router.log)
    for year in study.years:
        _expression(study, year)
    assert len(emulator.router.log) == before


def test_a_year_no_configured_sensor_flew_is_a_config_error(connected):
    from pipeline.errors import ConfigError

    study = connected(years="2000..2016", composite='sensors = ["OLI"]')
    with pytest.raises(ConfigError, match="none of OLI flew in 2000"):
        recipes.annual_composite(study, 2000)


# -- arithmetic, through the serialized expression ------------------------------------------------

TM = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7")
OLI = ("SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7")
# Roy et al. (2016) Table 2, surface reflectance, OLS ETM+ -> OLI; as printed in Google's "Landsat ETM+ to OLI
# Harmonization" tutorial (slopes and itcps), typed here independently of pipeline/recipes.py.
ROY_SLOPE = dict(zip(("blue", "green", "red", "nir", "swir1", "swir2"),
                     (0.8474, 0.8483, 0.9047, 0.8462, 0.8937, 0.9071), strict=True))
ROY_INTERCEPT = dict(zip(("blue", "green", "red", "nir", "swir1", "swir2"),
                         (0.0003, 0.0088, 0.0061, 0.0412, 0.0254, 0.0172), strict=True))


def _reflectance(scene, band_names, harmonize):
    out = {}
    for common, band in zip(("blue", "green", "red", "nir", "swir1", "swir2"), band_names, strict=True):
        value = scene[band] * 0.0000275 - 0.2
        out[common] = value * ROY_SLOPE[common] + ROY_INTERCEPT[common] if harmonize else value
    return out


def _index(r, index):
    if index == "NDVI":
        return (r["nir"] - r["red"]) / (r["nir"] + r["red"])
    if index == "NBR":
        return (r["nir"] - r["swir2"]) / (r["nir"] + r["swir2"])
    if index == "NDMI":
        return (r["nir"] - r["swir1"]) / (r["nir"] + r["swir1"])
    if index == "EVI":
        return 2.5 * (r["nir"] - r["red"]) / (r["nir"] + 6 * r["red"] - 7.5 * r["blue"] + 1)
    return 1.5 * (r["nir"] - r["red"]) / (r["nir"] + r["red"] + 0.5)


@pytest.mark.parametrize("index", ["NDVI", "EVI", "NBR", "NDMI", "SAVI"])
@pytest.mark.parametrize(("asset", "bands", "harmonized", "qa_bits"), [
    ("LANDSAT/LE07/C02/T1_L2", TM, True, 0b11011),   # fill, dilated cloud, cloud, shadow (no cirrus on ETM+)
    ("LANDSAT/LC08/C02/T1_L2", OLI, False, 0b11111),  # OLI also masks cirrus
])
def test_scene_arithmetic_matches_the_published_formulas(connected, index, asset, bands, harmonized, qa_bits):
    study = connected(composite=f'index = "{index}"\nharmonize = {str(harmonized).lower()}')
    expression = _expression(study, 2014)
    scene = _synthetic_scene(bands)
    result = _run_scene(expression, asset, scene)
    (values,) = result.values()
    expected = _index(_reflectance(scene, bands, harmonized), index)
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=0)
    expected_mask = (scene["QA_PIXEL"].astype(np.int64) & qa_bits) == 0
    np.testing.assert_array_equal(result.mask, expected_mask)
    assert 0.3 < expected_mask.mean() < 0.8  # the synthetic QA bits exercise both outcomes
    assert list(result) == [index]


def test_harmonisation_is_off_by_default_and_the_fill_bit_is_always_masked(connected):
    study = connected(composite='mask = ["snow"]')  # "fill" left out of the list: it is masked all the same
    assert study.config.composite.harmonize is False
    scene = _synthetic_scene(TM, seed=3)
    result = _run_scene(_expression(study, 2005), "LANDSAT/LT05/C02/T1_L2", scene)
    expected = _index(_reflectance(scene, TM, harmonize=False), "NDVI")
    np.testing.assert_allclose(result["NDVI"], expected, rtol=1e-12, atol=0)
    qa = scene["QA_PIXEL"].astype(np.int64)
    np.testing.assert_array_equal(result.mask, (qa & ((1 << 5) | 1)) == 0)
    assert ((qa & 1) != 0).any() and ((qa & (1 << 5)) == 0)[(qa & 1) != 0].any()  # fill alone drops pixels


@pytest.mark.parametrize(("asset", "bands", "index", "band_numbers"), [
    ("LANDSAT/LC08/C02/T1_L2", OLI, "NDVI", (4, 5)),      # OLI red = B4, nir = B5
    ("LANDSAT/LT05/C02/T1_L2", TM, "NBR", (4, 7)),        # TM nir = B4, swir2 = B7
    ("LANDSAT/LE07/C02/T1_L2", TM, "EVI", (1, 3, 4)),     # ETM+ blue, red, nir
])
def test_the_saturation_mask_drops_pixels_saturated_in_the_index_bands(connected, asset, bands, index,
                                                                       band_numbers):
    year = 2014 if "LC08" in asset else 2005
    scene = _synthetic_scene(bands, seed=5)
    rng = np.random.default_rng(9)
    radsat = (rng.random((11, scene["QA_PIXEL"].size)) < 0.1) * (1 << np.arange(11))[:, None]
    scene["QA_RADSAT"] = radsat.sum(axis=0).astype(np.float64)
    qa = scene["QA_PIXEL"].astype(np.int64)
    cloud_bits = 0b11111 if "LC08" in asset else 0b11011
    clear = (qa & cloud_bits) == 0
    plain = connected(composite=f'index = "{index}"')
    assert np.array_equal(_run_scene(_expression(plain, year), asset, scene).mask, clear)  # off by default
    strict = connected(composite=f'index = "{index}"\nsaturation = true')
    result = _run_scene(_expression(strict, year), asset, scene)
    saturated = np.zeros_like(clear)
    for number in band_numbers:  # QA_RADSAT bit n-1 flags band n saturated (Collection 2 product guide)
        saturated |= (scene["QA_RADSAT"].astype(np.int64) >> (number - 1)) & 1 == 1
    np.testing.assert_array_equal(result.mask, clear & ~saturated)
    assert (clear & saturated).any()


def test_years_covered_only_by_slc_off_landsat_7_are_named():
    from pipeline.config import Sensor

    every = list(Sensor)
    assert landsat.slc_off_years(every, range(1995, 2016)) == [2012]
    assert landsat.slc_off_years([Sensor.ETM], [2002, 2003, 2010]) == [2003, 2010]
    assert landsat.slc_off_years([Sensor.ETM, Sensor.OLI], [2012, 2013]) == [2012]
    assert landsat.slc_off_years([Sensor.TM, Sensor.OLI], range(1995, 2016)) == []


def test_count_band_counts_the_clear_scenes_of_the_index(connected):
    plain = connected()
    assert "reduce.count" not in [n for n, _ in _invocations(_expression(plain, 2010))]
    study = connected(composite="count_band = true")
    expression = _expression(study, 2010)
    calls = _invocations(expression)
    assert [n for n, _ in calls].count("reduce.count") == 1
    assert "Image.addBands" in [n for n, _ in calls]
    renames = [_evaluate(a["names"], expression["values"], {}) for n, a in calls if n == "Image.rename"]
    assert ["clear_count"] in renames and ["NDVI"] in renames
    unmasked_to = [_evaluate(a["value"], expression["values"], {}) for n, a in calls if n == "Image.unmask"]
    # no clear scene is 0 scenes, not a masked pixel (the other unmask is the export's no-data value)
    assert any(isinstance(u, dict) and u.get("constant") == 0 for u in unmasked_to)
