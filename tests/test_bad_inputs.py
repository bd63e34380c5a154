"""Bad input everywhere is one clean line: each command of ``eetrend --help`` fed hostile values.

Each case asserts the exit code (2 for usage and config, 1 for inputs and the disk), that
stderr holds exactly one line starting ``error:`` with no traceback, that the line names
what is wrong, and that no output or temporary file was left.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.engine.sample import write_sample
from tests.conftest import study_toml, write_raster

runner = CliRunner()
LONG = "n" * 300


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A stack, a multi-band raster, a trend output and a plain text file, made once for the module."""
    root = tmp_path_factory.mktemp("bad")
    write_sample(root / "stack", years=range(2000, 2006), rows=16, cols=16, seed=1)
    write_raster(root / "bands.tif", np.random.default_rng(0).integers(1, 5000, (6, 10, 12)).astype("uint16"))
    assert runner.invoke(app, ["trend", str(root / "stack"), "-o", str(root / "trend.tif"), "-q"]).exit_code == 0
    (root / "notes.txt").write_text("not a raster\n")
    (root / "afile").write_text("")
    return root


def _check(result, code: int, *words: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])


RASTER_CASES = [
    (["trend", "{stack}", "-o", "{out}/t.tif", "--band", "0"], 2, "--band 0"),
    (["trend", "{stack}", "-o", "{out}/t.tif", "--band", "-1"], 2, "numbered from 1"),
    (["trend", "{stack}", "-o", "{out}/t.tif", "--band", "9"], 1, "--band 9"),
    (["trend", "{stack}", "-o", "{out}/" + LONG + ".tif"], 2, "too long"),
    (["trend", "{out}/" + LONG, "-o", "{out}/t.tif"], 1, "too long"),
    (["trend", "{stack}", "-o", "{out}/missing/t.tif"], 2, "does not exist"),
    (["trend", "{stack}", "-o", "{root}/afile/t.tif"], 2, "afile"),
    (["trend", "{root}/notes.txt", "-o", "{out}/t.tif"], 1, "notes.txt"),
    (["trend", "{stack}", "-o", "{out}/t.tif", "--executor", "dask", "--scheduler", "nohost"], 2, "scheduler"),
    (["trend", "{stack}", "-o", "{out}/t.tif", "--dtype-scale", "int16"], 2, "--dtype-scale"),
    (["trend", "{stack}", "-o", "{out}/t.tif", "--dtype-scale", "int16=0"], 2, "non-zero"),
    (["index", "{root}/bands.tif", "-o", "{out}/i.tif", "--nir", "0"], 2, "--nir"),
    (["index", "{root}/bands.tif", "-o", "{out}/i.tif", "--nir", "99"], 2, "6 band(s)"),
    (["index", "{root}/bands.tif", "-o", "{out}/i.tif", "--nir", "-1"], 2, "--nir"),
    (["index", "{root}/bands.tif", "-o", "{out}/i.tif", "--scale", "nan"], 2, "--scale"),
    (["index", "{root}/bands.tif", "-o", "{out}/i.tif", "--scale", "inf"], 2, "--scale"),
    (["index", "{root}/bands.tif", "-o", "{out}/i.tif", "--scale", "0"], 2, "--scale"),
    (["index", "{root}/notes.txt", "-o", "{out}/i.tif"], 1, "notes.txt"),
    (["index", "{stack}", "-o", "{out}/i.tif"], 1, "not a file"),
    (["index", "{root}/bands.tif", "-o", "{out}/" + LONG + ".tif"], 2, "too long"),
    (["plot", "{root}/notes.txt", "-o", "{out}/p.png"], 1, "cannot open"),
    (["plot", "{root}/missing.tif", "-o", "{out}/p.png"], 1, "does not exist"),
    (["plot", "{stack}", "-o", "{out}/p.png"], 1, "is a folder"),
    (["plot", "{root}/trend.tif", "-o", "{out}/p.jpg"], 2, ".png"),
    (["plot", "{root}/trend.tif", "-o", "{out}/p.png", "--band", "0"], 2, "--band 0"),
    (["plot", "{root}/trend.tif", "-o", "{out}/p.png", "--band", "nosuch"], 2, "nosuch"),
    (["plot", "{root}/trend.tif", "-o", "{root}/notes.png"], 2, "not a PNG"),
    (["plot", "{root}/bands.tif", "-o", "{out}/p.png", "--rgb", "1,2,99"], 2, "99"),
    (["plot", "{root}/trend.tif", "-o", "{out}/" + LONG + ".png"], 2, "too long"),
    (["plot-pixel", "{stack}", "--xy", "nan", "nan", "-o", "{out}/p.png"], 2, "--xy"),
    (["plot-pixel", "{stack}", "--xy", "0", "0", "-o", "{out}/p.png"], 2, "outside"),
    (["sample", "{out}/s", "--size", "1000000x1000000"], 2, "too large"),
    (["sample", "{out}/s", "--size", "0x10"], 2, "empty"),
    (["sample", "{out}/s", "--size", "10"], 2, "COLSxROWS"),
    (["sample", "{out}/s", "--size", "8x8", "--years", "1000-1003"], 2, "1900-2099"),
    (["sample", "{out}/s", "--size", "8x8", "--noise", "-1"], 2, "--noise"),
    (["sample", "{out}/s", "--size", "8x8", "--noise", "nan"], 2, "--noise"),
    (["sample", "{out}/s", "--size", "8x8", "--seed", "-1"], 2, "--seed"),
    (["sample", "{root}/afile", "--size", "8x8"], 2, "is a file"),
    (["sample", "{out}/" + LONG, "--size", "8x8"], 2, "too long"),
    (["sample", "{stack}", "--size", "8x8", "--years", "2000"], 0, ""),  # its own files: replaced
    (["demo", "{root}/afile"], 2, "is a file"),
]


@pytest.mark.parametrize(("args", "code", "word"), RASTER_CASES, ids=[" ".join(c[0][:4])[:60] for c in RASTER_CASES])
def test_raster_commands(place, tmp_path, args, code, word):
    if (place / "notes.png").exists() is False:
        (place / "notes.png").write_text("my notes, not a picture\n")
    subs = {"{stack}": str(place / "stack"), "{out}": str(tmp_path), "{root}": str(place)}
    filled = [_fill(a, subs) for a in args]
    result = runner.invoke(app, filled)
    if code == 0:
        assert result.exit_code == 0, result.output
        return
    _check(result, code, word)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing may be left behind"
    assert (place / "notes.png").read_text() == "my notes, not a picture\n"


def _fill(text: str, subs: dict[str, str]) -> str:
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


def test_sample_never_replaces_someone_elses_file(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    precious = write_raster(folder / "ndvi_2001.tif", np.ones((4, 4), dtype="int16"))
    data = precious.read_bytes()
    _check(runner.invoke(app, ["sample", str(folder), "--size", "8x8", "--years", "2000-2002"]), 2,
           "not written by eetrend sample")
    assert precious.read_bytes() == data


# -- study configs -----------------------------------------------------------------------------------
def _config(tmp_path, region: str = 'bbox = [10.0, 46.0, 10.2, 46.1]\ncrs = "EPSG:32632"\nscale = 30',
            extra: str = "", geojson: object | None = None) -> str:
    if geojson is not None:
        (tmp_path / "area.geojson").write_text(geojson if isinstance(geojson, str) else json.dumps(geojson))
    text = study_toml("http://127.0.0.1:1", region=region)
    if extra:
        text = text.replace('[paths]\nstate = "state"\ndownloads = "downloads"\noutputs = "outputs"',
                            "[paths]\n" + extra)
        assert extra in text
    path = tmp_path / "study.toml"
    path.write_text(text)
    return str(path)


GEO = 'geojson = "area.geojson"\ncrs = "EPSG:32632"'
SQUARE = [[10.0, 46.0], [10.1, 46.0], [10.1, 46.1], [10.0, 46.1], [10.0, 46.0]]
CONFIG_CASES = [
    ("bbox projected", 'bbox = [500000, 5000000, 510000, 5010000]\ncrs = "EPSG:32632"', None, "projected"),
    ("bbox swapped (lat > 90)", 'bbox = [46.0, 100.0, 46.1, 101.0]', None, "swapped"),
    ("bbox swapped (UTM zone)", 'bbox = [46.0, 10.0, 46.1, 10.1]\ncrs = "EPSG:32632"', None, "swapped"),
    ("bbox out of order", 'bbox = [10.2, 46.0, 10.0, 46.1]', None, "did you mean [10, 46, 10.2, 46.1]"),
    ("bbox nan", 'bbox = [nan, 46.0, 10.0, 46.1]', None, "finite"),
    ("crs unknown", 'bbox = [10.0, 46.0, 10.2, 46.1]\ncrs = "EPSG:99999"', None, "not a known CRS"),
    ("crs geocentric", 'bbox = [10.0, 46.0, 10.2, 46.1]\ncrs = "EPSG:4978"', None, "neither"),
    ("under a pixel", 'bbox = [10.0, 46.0, 10.0001, 46.0001]\ncrs = "EPSG:32632"', None, "smaller than one pixel"),
    ("too many pixels", 'bbox = [10.0, 46.0, 10.2, 46.1]\ncrs = "EPSG:32632"\nscale = 0.001', None, "max_pixels"),
    ("geojson no coordinates", GEO, {"type": "Polygon"}, "needs coordinates"),
    ("geojson coordinates string", GEO, {"type": "Polygon", "coordinates": "abc"}, "needs coordinates"),
    ("geojson empty polygon", GEO, {"type": "Polygon", "coordinates": []}, "needs coordinates"),
    ("geojson empty multipolygon", GEO, {"type": "MultiPolygon", "coordinates": []}, "MultiPolygon"),
    ("geojson empty collection", GEO, {"type": "FeatureCollection", "features": []}, "no Polygon"),
    ("geojson features not a list", GEO, {"type": "FeatureCollection", "features": "x"}, "features"),
    ("geojson feature not object", GEO, {"type": "FeatureCollection", "features": [5]}, "features[0]"),
    ("geojson null geometry", GEO, {"type": "Feature", "geometry": None}, "no Polygon"),
    ("geojson point only", GEO, {"type": "Point", "coordinates": [10, 46]}, "no Polygon"),
    ("geojson list", GEO, [1, 2], "not a GeoJSON object"),
    ("geojson null", GEO, "null", "not a GeoJSON object"),
    ("geojson unknown type", GEO, {"type": "Circle"}, "Circle"),
    ("geojson string positions", GEO, {"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [3, 4], ["a", "b"]]]},
     "position 0"),
    ("geojson bool positions", GEO, {"type": "Polygon", "coordinates": [[[True, 46], [10.1, 46], [10.1, 46.1],
                                                                          [True, 46]]]}, "position 0"),
    ("geojson ring of 3", GEO, {"type": "Polygon", "coordinates": [SQUARE[:3]]}, "at least 4 positions"),
    ("geojson ring not closed", GEO, {"type": "Polygon", "coordinates": [SQUARE[:4]]}, "not closed"),
    ("geojson ring no area", GEO, {"type": "Polygon", "coordinates": [[[10, 46]] * 4]}, "no area"),
    ("geojson ring crosses itself", GEO, {"type": "Polygon", "coordinates": [
        [[10.0, 46.0], [10.2, 46.2], [10.2, 46.0], [10.0, 46.1], [10.0, 46.0]]]}, "crosses itself"),
    ("geojson projected", GEO, {"type": "Polygon", "coordinates": [
        [[500000, 5000000], [510000, 5000000], [510000, 5010000], [500000, 5000000]]]}, "projected"),
    ("geojson missing geometry coordinates in a collection", GEO, {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon"}}]}, "features[0].geometry"),
]


@pytest.mark.parametrize(("name", "region", "geojson", "word"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_regions(tmp_path, name, region, geojson, word):
    config = _config(tmp_path, region=region, geojson=geojson)
    _check(runner.invoke(app, ["status", config, "--cached"]), 2, word)
    assert not (tmp_path / "state").exists()


def test_config_dask_scheduler_checked_at_load(tmp_path):
    config = _config(tmp_path)
    with open(config, "a", encoding="utf-8") as handle:
        handle.write('\n[dask]\nscheduler = "not an address"\n')
    _check(runner.invoke(app, ["status", config, "--cached"]), 2, "scheduler")


@pytest.mark.parametrize(("paths", "word"), [
    ('state = "afile"', "paths.state"),
    ('state = "afile/below"', "is a file"),
    (f'state = "{LONG}"', "too long"),
    ('state = "state"\ndownloads = "afile"', "paths.downloads"),
    ('state = "state"\noutputs = "afile"', "paths.outputs"),
])
def test_config_paths(tmp_path, paths, word):
    (tmp_path / "afile").write_text("")
    config = _config(tmp_path, extra=paths)
    _check(runner.invoke(app, ["export", config]), 2, word)


@pytest.mark.parametrize(("args", "word"), [
    (["run", "{config}", "--log-file", "{tmp}"], "is a folder"),
    (["run", "{config}", "--log-file", "{tmp}/afile/x.log"], "is a file"),
    (["status", "{config}", "--watch", "--interval", "-1"], "--interval"),
    (["export", "{config}", "--queue-wait", "-5"], "--queue-wait"),
    (["cancel", "{config}", "--years", "abc"], "abc"),
    (["status", "{tmp}"], "cannot read the config"),
])
def test_command_options(tmp_path, args, word):
    (tmp_path / "afile").write_text("")
    config = _config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "manifest.sqlite").touch()  # --watch reaches its interval check without a request
    filled = [a.replace("{config}", config).replace("{tmp}", str(tmp_path)) for a in args]
    _check(runner.invoke(app, filled), 2, word)


@pytest.mark.parametrize(("args", "word"), [
    (["trend", "x", "-o", "y.tif", "--band", "abc"], "--band"),
    (["trend", "x"], "--output"),
    (["trend", "x", "-o", "y.tif", "--method", "foo"], "--method"),
    (["plot-pixel", "x", "--xy", "a", "b", "-o", "p.png"], "--xy"),
    (["sample", "x", "--seed", "1.5"], "--seed"),
    (["nosuchcommand"], "nosuchcommand"),
    (["trend", "x", "-o", "y.tif", "--no-such-option"], "--no-such-option"),
    (["emulator", "--port", "99999"], "--port"),
    (["emulator", "--speed", "0"], "--speed"),
])
def test_usage_errors_from_the_parser_are_one_line_too(args, word):
    result = runner.invoke(app, args)
    _check(result, 2, word, "--help")


def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path):
    config = _config(tmp_path)
    Path(config).write_bytes(b"\xef\xbb\xbf" + Path(config).read_bytes())
    result = runner.invoke(app, ["status", config, "--cached"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("args", "flag"), [
    (["run", "{config}", "--wait", "--poll", "-1"], "--poll"),  # was a traceback
    (["run", "{config}", "--wait", "--poll", "0"], "--poll"),  # was a tight loop of requests
    (["run", "{config}", "--wait", "--poll", "nan"], "--poll"),
    (["run", "{config}", "--wait", "--timeout", "-1"], "--timeout"),
    (["run", "{config}", "--wait", "--timeout", "0"], "--timeout"),
    (["run", "{config}", "--wait-lock", "-3"], "--wait-lock"),
    (["export", "{config}", "--wait-lock", "-0.5"], "--wait-lock"),
    (["download", "{config}", "--wait-lock", "inf"], "--wait-lock"),
    (["cancel", "{config}", "--wait-lock", "-1"], "--wait-lock"),
    (["export", "{config}", "--queue-wait", "-1"], "--queue-wait"),
    (["status", "{config}", "--watch", "--interval", "0"], "--interval"),
    (["status", "{config}", "--interval", "-2"], "--interval"),
    (["trend", "{config}", "-o", "{tmp}/t.tif", "--workers", "-1"], "--workers"),
    (["index", "{config}", "-o", "{tmp}/i.tif", "--workers", "-2"], "--workers"),
    (["trend", "{config}", "-o", "{tmp}/t.tif", "--min-years", "1"], "--min-years"),
    (["trend", "{config}", "-o", "{tmp}/t.tif", "--edge-years", "-1"], "--edge-years"),
    (["trend", "{config}", "-o", "{tmp}/t.tif", "--count-band", "0"], "--count-band"),
    (["trend", "{config}", "-o", "{tmp}/t.tif", "--min-count", "-1"], "--min-count"),
    (["plot-pixel", "{config}", "--xy", "0", "0", "-o", "{tmp}/p.png", "--count-band", "0"], "--count-band"),
    (["emulator", "--queue-limit", "0"], "--queue-limit"),
    (["emulator", "--slow-media", "-1"], "--slow-media"),
])
def test_intervals_timeouts_waits_and_counts_are_checked_at_parse_time(tmp_path, args, flag):
    """Before the config is read or anything is sent: exit 2 and one line naming the flag."""
    config = _config(tmp_path)
    filled = [a.replace("{config}", config).replace("{tmp}", str(tmp_path)) for a in args]
    _check(runner.invoke(app, filled), 2, f"'{flag}'", "--help")
    assert not (tmp_path / "state").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_zero_where_it_means_do_not_wait_and_small_positive_intervals_are_accepted(tmp_path):
    from cli import _seconds

    assert _seconds("does not wait")(0.0) == 0.0 and _seconds()(0.01) == 0.01 and _seconds()(None) is None
    result = runner.invoke(app, ["status", _config(tmp_path), "--cached", "--interval", "0.5"])
    assert result.exit_code == 0, result.output
