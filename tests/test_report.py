"""``eetrend report``: the numbers on the page against independent oracles, the page's structure, and
what a person sees when Chromium renders the demo's report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import stats
from typer.testing import CliRunner

from cli import app
from pipeline.engine.sample import write_sample
from pipeline.engine.stack import open_stack
from pipeline.reporting.areas import row_areas
from pipeline.reporting.regional import regional_series
from tests.conftest import write_raster

runner = CliRunner()


class Page(HTMLParser):
    """What a reader's browser would load or run, and the text of every section and table cell."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id":
                self.ids.append(value)
            if name in ("src", "href", "srcset", "data", "action", "poster"):
                self.references.append((tag, name, value or ""))
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _check_self_contained(page: Page, html: str) -> None:
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    for tag, attribute, value in page.references:
        assert not re.match(r"\s*(https?:)?//", value), f"<{tag} {attribute}> points outside the page: {value[:80]}"
        if tag == "img":
            assert value.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,"))
    assert "@import" not in html and "url(" not in html  # no style sheet or font from elsewhere


@pytest.fixture(scope="module")
def trend_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    write_sample(folder / "stack", years=range(2000, 2013), rows=60, cols=90, seed=4, noise=0.02)
    out = folder / "trend.tif"
    result = runner.invoke(app, ["trend", str(folder / "stack"), "-o", str(out), "--method", "both", "-q"])
    assert result.exit_code == 0, result.output
    return folder, out


def test_report_of_a_trend_file_states_areas_and_series_that_independent_oracles_confirm(trend_file):
    folder, trend = trend_file
    result = runner.invoke(app, ["report", str(trend)])
    assert result.exit_code == 0, result.output
    html_path = folder / "trend_report.html"
    text = html_path.read_text(encoding="utf-8")
    page = Page(text)
    _check_self_contained(page, text)
    for section in ("summary", "map", "areas", "distribution", "series", "observations", "provenance"):
        assert section in page.ids
    # Areas: 30 m pixels, 900 m2 each; the classes as the file holds them.
    with rasterio.open(trend) as dataset:
        classes = dataset.read(list(dataset.descriptions).index("trend_class") + 1)
    fitted = np.isfinite(classes).sum()
    for label, code in (("significant increase", 1), ("significant decrease", -1), ("no significant trend", 0)):
        row = page.cells.index(label)
        km2, percent = page.cells[row + 1], page.cells[row + 2]
        assert float(km2) == pytest.approx((classes == code).sum() * 900 / 1e6, abs=0.005)
        assert float(percent) == pytest.approx(100 * (classes == code).sum() / fitted, abs=0.05)
    assert "FDR-corrected" not in page.cells  # this file has no p_fdr band, and the page says so
    assert "trend is fitted with --fdr" in text
    # The regional series: each year's median across pixels, fitted by OLS and Sen (oracle: numpy and scipy).
    stack = open_stack(folder / "stack")
    medians = np.nanmedian(stack.read().astype(np.float64), axis=1)
    years = np.array(stack.year_list, dtype=float)
    ols = stats.linregress(years, medians)
    sen = stats.theilslopes(medians, years)
    assert f"{ols.slope:+.4g} NDVI per year" in page.cells
    assert f"t-test p = {ols.pvalue:.3g}, r = {ols.rvalue:.3f}" in page.cells
    assert any(cell.startswith(f"{sen.slope:+.4g} NDVI per year") for cell in page.cells)
    # Provenance: the years, the method and a command that reproduces the file.
    joined = " ".join(page.text)
    assert "2000-2012 (13 years)" in joined
    assert f"eetrend trend {folder / 'stack'} -o {trend} --method both --years 2000-2012" in joined
    # Inputs and counts: the inputs are listed (from the trend's own tag); they carry no count band.
    assert str(folder / "stack" / "ndvi_2000.tif") in page.cells
    assert "no clear-observation count band" in text


def test_a_trend_file_that_does_not_list_its_inputs_still_gets_a_page_and_is_told_how(trend_file, tmp_path):
    _, trend = trend_file
    bare = tmp_path / "bare.tif"
    shutil.copy(trend, bare)
    with rasterio.open(bare, "r+") as dataset:
        tags = dataset.tags()
        tags.pop("eetrend_inputs")
        dataset.update_tags(eetrend_inputs="")
    result = runner.invoke(app, ["report", str(bare), "-o", str(tmp_path / "bare.html")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "bare.html").read_text()
    assert "does not list its inputs" in text and "--inputs FOLDER" in text
    assert "The regional series" in text and 'alt="regional series' not in text
    folder = trend.parent / "stack"
    given = runner.invoke(app, ["report", str(bare), "-o", str(tmp_path / "given.html"), "--inputs", str(folder)])
    assert given.exit_code == 0, given.output
    page = Page((tmp_path / "given.html").read_text())
    assert f"Inputs given with --inputs: {folder}" in " ".join(page.text)
    ols = stats.linregress(np.arange(2000, 2013), np.nanmedian(open_stack(folder).read().astype(float), axis=1))
    assert f"{ols.slope:+.4g} NDVI per year" in page.cells
    wrong = runner.invoke(app, ["report", str(bare), "--inputs", str(tmp_path / "nowhere")])
    assert wrong.exit_code == 2 and wrong.output.startswith("error: --inputs")


def test_report_refuses_what_is_not_a_trend_output_in_one_line(trend_file, tmp_path):
    _, trend = trend_file
    plain = write_raster(tmp_path / "ndvi_2001.tif", np.ones((8, 8), dtype=np.float32), descriptions=["ndvi"])
    result = runner.invoke(app, ["report", str(plain)])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:")
    assert "trend_class" in result.output and len(result.output.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.tif"
    garbage.write_text("not a raster")
    unreadable = runner.invoke(app, ["report", str(garbage)])
    assert unreadable.exit_code == 1 and unreadable.output.startswith("error: cannot open")
    missing = runner.invoke(app, ["report", str(tmp_path / "nope.tif")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    folder = runner.invoke(app, ["report", str(trend), "-o", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.output
    nowhere = runner.invoke(app, ["report", str(trend), "-o", str(tmp_path / "no" / "r.html")])
    assert nowhere.exit_code == 2 and "does not exist; create it first" in nowhere.output
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*partial*"))


def _fdr_trend(tmp_path: Path, *, crs: str, transform) -> tuple[Path, dict[str, np.ndarray]]:
    """A hand-made trend file with the FDR bands another module writes (found by their descriptions)."""
    rng = np.random.default_rng(5)
    shape = (40, 50)
    slope = rng.normal(0, 0.01, shape)
    pvalue = rng.uniform(0, 0.2, shape)
    p_fdr = np.minimum(1.0, pvalue * 3)
    slope[:3, :] = np.nan
    pvalue[:3, :] = p_fdr[:3, :] = np.nan
    raw = np.where(pvalue < 0.05, np.sign(slope), 0.0)
    fdr = np.where(p_fdr < 0.05, np.sign(slope), 0.0)
    raw[:3, :] = fdr[:3, :] = np.nan
    bands = {"slope": slope, "pvalue": pvalue, "n": np.full(shape, 12.0), "trend_class": raw, "p_fdr": p_fdr,
             "trend_class_fdr": fdr}
    path = tmp_path / "fdr_trend.tif"
    write_raster(path, np.stack(list(bands.values())).astype(np.float32), crs=crs, transform=transform,
                 descriptions=list(bands))
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(method="ols", years="2001,2002,2003,2004,2005,2006,2007,2008,2009,2010,2011,2012",
                            alpha="0.05", fdr="bh", fdr_q="0.05", units="NDVI per year")
    return path, bands


def test_fdr_columns_and_geographic_areas_match_pyproj(tmp_path):
    geod = pytest.importorskip("pyproj").Geod(ellps="WGS84")
    transform = from_origin(10.0, 61.0, 0.001, 0.001)  # about 54 m x 111 m: areas of a few km2, shown to 0.01
    trend, bands = _fdr_trend(tmp_path, crs="EPSG:4326", transform=transform)
    result = runner.invoke(app, ["report", str(trend)])
    assert result.exit_code == 0, result.output
    page = Page((tmp_path / "fdr_trend_report.html").read_text())
    assert "FDR-corrected" in page.cells
    # Oracle: each row's pixel area from pyproj's geodesic area of the pixel, its parallels densified.
    rows = bands["slope"].shape[0]
    areas = []
    for row in range(rows):
        top, bottom = 61.0 - 0.001 * row, 61.0 - 0.001 * (row + 1)
        lons = np.linspace(10.0, 10.001, 2000)
        polygon_lons = np.concatenate([lons, lons[::-1]])
        polygon_lats = np.concatenate([np.full(2000, bottom), np.full(2000, top)])
        areas.append(abs(geod.polygon_area_perimeter(polygon_lons, polygon_lats)[0]))
    areas = np.array(areas)[:, None]
    assert row_areas(tuple(transform)[:6], rows, rasterio.crs.CRS.from_epsg(4326)) == \
        pytest.approx(areas[:, 0], rel=1e-9)
    for label, code in (("significant increase", 1), ("significant decrease", -1), ("no significant trend", 0)):
        row = page.cells.index(label)
        raw_km2, _, fdr_km2, fdr_pct = page.cells[row + 1: row + 5]
        expected_raw = float((areas * (bands["trend_class"] == code)).sum()) / 1e6
        expected_fdr = float((areas * (bands["trend_class_fdr"] == code)).sum()) / 1e6
        assert float(raw_km2) == pytest.approx(expected_raw, abs=0.006)
        assert float(fdr_km2) == pytest.approx(expected_fdr, abs=0.006)
        fitted = float((areas * np.isfinite(bands["trend_class"])).sum()) / 1e6
        assert float(fdr_pct) == pytest.approx(100 * expected_fdr / fitted, abs=0.05)


def test_regional_quantiles_are_exact_in_any_memory_budget(make_stack):
    rng = np.random.default_rng(11)
    values = rng.normal(0.5, 0.2, size=(6, 37, 23)).astype(np.float32)
    values[1] = np.round(values[1], 1)  # many ties
    values[2, rng.random((37, 23)) < 0.5] = np.nan
    values[3] = np.nan  # a year with no valid pixel
    values[4, 0, 0] = 7.0  # an outlier stretching the range
    values[5, :, :] = 0.25  # one value everywhere
    folder, _, years = make_stack(values, [2001, 2002, 2003, 2004, 2005, 2006])
    stack = open_stack(folder)
    flat = values.reshape(6, -1).astype(np.float64)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanpercentile(flat, [25, 50, 75], axis=1)
    for budget, limit in ((1 << 28, None), (4000, 40), (2000, 3)):
        series = regional_series(stack, memory_budget=budget, collect_limit=limit)
        for got, want in zip((series.q25, series.median, series.q75), expected, strict=True):
            np.testing.assert_array_equal(got, want)
        assert series.valid.tolist() == np.isfinite(flat).sum(axis=1).tolist()
    assert series.passes >= 3  # the small limit made it narrow the intervals before collecting


def test_clear_observation_counts_are_read_from_a_count_band(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "stack"
    folder.mkdir()
    expected = []
    for year in range(2001, 2009):
        ndvi = (0.3 + 0.01 * (year - 2001) + rng.normal(0, 0.01, (20, 30))).astype(np.float32)
        count = rng.integers(0, 9, (20, 30)).astype(np.float32)
        count[0, :] = np.nan
        expected.append(np.nanmean(count.astype(np.float64)))
        write_raster(folder / f"ndvi_{year}.tif", np.stack([ndvi, count]), descriptions=["ndvi", "clear_count"])
    trend = tmp_path / "t.tif"
    assert runner.invoke(app, ["trend", str(folder), "-o", str(trend), "-q"]).exit_code == 0
    from pipeline.engine.lineage import layers_from_tags, stack_from_layers
    from pipeline.reporting.regional import count_series

    with rasterio.open(trend) as dataset:
        stack = stack_from_layers(layers_from_tags(dataset.tags(), trend))
    counts = count_series(stack, memory_budget=3000)
    np.testing.assert_allclose(counts.mean, expected, rtol=1e-12)
    assert counts.description == "clear_count"
    assert runner.invoke(app, ["report", str(trend)]).exit_code == 0
    text = (tmp_path / "t_report.html").read_text()
    assert 'alt="clear observations per year"' in text and "<code>clear_count</code>" in text


# -- the demo's report, as a person sees it ---------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(html: Path, png: Path, size: tuple[int, int]) -> np.ndarray:
    """Render ``html`` in headless Chromium with every network path closed; returns the RGB pixels."""
    profile = png.parent / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    import matplotlib.image

    return matplotlib.image.imread(png)[..., :3]


def _near(image: np.ndarray, colour: str, tolerance: float = 0.04) -> np.ndarray:
    rgb = np.array([int(colour[i: i + 2], 16) for i in (1, 3, 5)]) / 255
    return (np.abs(image - rgb) < tolerance).all(axis=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from pipeline.demo import run_demo

    folder = tmp_path_factory.mktemp("demo") / "demo"
    result = run_demo(folder, years="1995..2015")
    assert result.run.exit_code == 0, result.run.lines
    return folder, result


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_the_demo_report_shows_the_map_the_area_table_and_the_regional_series_in_chromium(demo, tmp_path):
    folder, result = demo
    html = result.run.outputs["html"]
    assert html == folder / "outputs" / "demo_report.html" and html.exists()
    text = html.read_text(encoding="utf-8")
    page = Page(text)
    _check_self_contained(page, text)
    for section in ("summary", "map", "areas", "series", "observations", "provenance"):
        assert section in page.ids
    assert {"significant increase", "significant decrease", "no significant trend"} <= set(page.cells)
    # The per-year table: every year's task, attempts and each file's md5 as the manifest has them.
    report = json.loads(result.run.outputs["report"].read_text())
    for year in report["per_year"]:
        assert year["task_id"] in text
        for file in year["files"]:
            assert file["md5"] in text
    # What a person sees on a laptop screen: the map, the cards and table, and the series.
    image = screenshot(html, tmp_path / "demo.png", (1366, 2200))
    levels = (image * 31).round().astype(np.int32)  # 32 levels a channel, one code a colour
    assert len(np.unique((levels[..., 0] * 32 + levels[..., 1]) * 32 + levels[..., 2])) > 200  # not blank
    top, left = image[:1000, : int(1366 * 0.58)], image[:1000, int(1366 * 0.58):]
    teal = (top[..., 1] - top[..., 0] > 0.25) & (top[..., 2] - top[..., 0] > 0.2)
    brown = (top[..., 0] - top[..., 2] > 0.3) & (top[..., 0] > 0.4)
    assert teal.sum() > 20_000 and brown.sum() > 20_000  # the slope map, in BrBG, fills the left column
    assert _near(left, "#01665e").sum() > 100 and _near(left, "#8c510a").sum() > 100  # the area table swatches
    assert _near(image[:400], "#01665e").sum() > 200  # the summary cards' borders
    rows = np.nonzero(_near(image, "#c7eae5", 0.02).sum(axis=1) > 300)[0]
    assert rows.size > 100 and rows.min() > 900  # the interquartile band of the series, below the map


def test_run_redraws_a_missing_report_without_refitting_and_a_failed_page_never_fails_the_run(demo, monkeypatch):
    import pipeline.reporting.report
    from pipeline.config import load_study
    from pipeline.run import run_study

    folder, result = demo
    html = result.run.outputs["html"]
    html.unlink()
    trend_mtime = result.run.outputs["trend"].stat().st_mtime_ns

    def broken(*args, **kwargs):
        raise RuntimeError("the page could not be drawn")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline.reporting.report, "report_study", broken)
        failed = run_study(load_study(folder / "demo.toml"))  # a finished study: no request to Earth Engine at all
    assert failed.exit_code == 0 and not html.exists() and "html" not in failed.outputs
    assert any("could not write the HTML report (the page could not be drawn)" in line for line in failed.lines)
    again = run_study(load_study(folder / "demo.toml"))
    assert again.exit_code == 0 and not again.fitted and again.outputs["html"] == html
    assert html.exists() and "The regional series" in html.read_text()
    assert result.run.outputs["trend"].stat().st_mtime_ns == trend_mtime
    unchanged = html.stat().st_mtime_ns
    assert run_study(load_study(folder / "demo.toml")).outputs["html"] == html
    assert html.stat().st_mtime_ns == unchanged  # up to date and present: not redrawn


def test_a_study_region_from_geojson_or_bbox_is_outlined_or_said_to_miss_the_raster(trend_file, tmp_path):
    from types import SimpleNamespace

    from pipeline.reporting.report import _study_region

    pyproj = pytest.importorskip("pyproj")
    _, trend = trend_file
    with rasterio.open(trend) as dataset:
        bounds = dataset.bounds
    to_degrees = pyproj.Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    corners = [to_degrees.transform(x, y) for x, y in ((bounds.left + 200, bounds.bottom + 200),
                                                       (bounds.right - 200, bounds.bottom + 200),
                                                       (bounds.right - 200, bounds.top - 200))]
    ring = [list(c) for c in corners] + [list(corners[0])]
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))

    def study(**region):
        values = {"bbox": None, "geojson": None, "asset": None, **region}
        return SimpleNamespace(config=SimpleNamespace(region=SimpleNamespace(**values)), resolve=lambda p: Path(p))

    rings, note = _study_region(study(geojson=aoi), trend)
    assert note == "outline: the study region from aoi.geojson"
    assert rings[0][0] == pytest.approx((bounds.left + 200, bounds.bottom + 200), abs=1e-3)  # back in UTM metres
    far, note = _study_region(study(bbox=(10.8, 46.4, 11.05, 46.55)), trend)
    assert far == [] and "does not overlap the raster" in note
    none, note = _study_region(study(asset="projects/p/assets/aoi"), trend)
    assert none == [] and "asset projects/p/assets/aoi" in note


def test_the_reproducing_command_replays_the_options_the_trend_file_records(tmp_path):
    from pipeline.engine.stack import Layer
    from pipeline.reporting.report import _trend_command

    tags = {"method": "both", "years": "2001,2002,2003,2005", "min_years": "3", "alpha": "0.05",
            "mk_test": "hamed-rao: Hamed and Rao (1998)", "fdr_method": "fdr_by (Benjamini-Yekutieli 2001)",
            "fdr_q": "0.1", "min_fraction": "0.0", "edge_years": "none", "count_band": "2", "min_count": "0",
            "changepoint": "pettitt (Pettitt 1979); cp_year = last year before the change"}
    layers = [Layer(str(tmp_path / "in" / f"ndvi_{y}.tif"), 1, y, None) for y in (2001, 2002, 2003, 2005)]
    assert _trend_command(tmp_path / "t.tif", tags, layers) == (
        f"eetrend trend {tmp_path / 'in'} -o {tmp_path / 't.tif'} --method both --years 2001-2003,2005 "
        "--min-years 3 --alpha 0.05 --mk-test hamed-rao --fdr by --fdr-q 0.1 --changepoint pettitt --count-band 2")
    bare = _trend_command(tmp_path / "t.tif", {"method": "ols"}, None)
    assert bare == f"eetrend trend INPUTS -o {tmp_path / 't.tif'} --method ols"


def test_urls_in_the_embedded_config_keep_only_their_host():
    from pipeline.reporting.report import redact_urls

    text = ('ntfy = "https://ntfy.sh/alps-8d2f1c"\nendpoint = "http://127.0.0.1:5555"\n'
            "webhook = 'https://bot:s3cret@hooks.example.org/T0/B1/xyz?token=abc' # note\n")
    redacted = redact_urls(text)
    for secret in ("alps-8d2f1c", "s3cret", "bot:", "xyz", "token=abc"):
        assert secret not in redacted
    assert 'ntfy = "https://ntfy.sh/[hidden]"' in redacted and 'endpoint = "http://127.0.0.1:5555"' in redacted
    assert "webhook = 'https://[hidden]@hooks.example.org/[hidden]' # note" in redacted


def test_a_study_that_has_not_been_fitted_is_told_to_run_first(tmp_path):
    config = tmp_path / "alps.toml"
    config.write_text('[study]\nname = "alps"\nyears = "2000..2005"\n[region]\nbbox = [10.8, 46.4, 11.0, 46.5]\n'
                      'crs = "EPSG:32632"\n[earthengine]\nproject = "p"\nauth = "none"\n'
                      'endpoint = "http://127.0.0.1:9"\n')
    result = runner.invoke(app, ["report", str(config)])
    assert result.exit_code == 1 and f"run the study first: eetrend run {config}" in result.output
    mixed = runner.invoke(app, ["report", str(config), "--inputs", str(tmp_path)])
    assert mixed.exit_code == 2 and "--inputs is for a trend file" in mixed.output
    assert not list(tmp_path.rglob("*.html"))


def test_report_never_replaces_its_inputs_nor_a_file_that_is_not_a_page(trend_file, tmp_path):
    import hashlib

    folder, trend = trend_file
    before = {p: hashlib.md5(p.read_bytes()).hexdigest() for p in [trend, *sorted((folder / "stack").glob("*.tif"))]}
    annual = sorted((folder / "stack").glob("*.tif"))[0]
    other = tmp_path / "notes.html"
    other.write_text("my own notes, not a report\n")
    for target in (trend, annual, other, tmp_path / "report.tif"):
        result = runner.invoke(app, ["report", str(trend), "-o", str(target)])
        assert result.exit_code == 2, (target, result.output)
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: ")
    assert before == {p: hashlib.md5(p.read_bytes()).hexdigest() for p in before}
    assert other.read_text() == "my own notes, not a report\n" and not (tmp_path / "report.tif").exists()
    page = tmp_path / "page.html"
    assert runner.invoke(app, ["report", str(trend), "-o", str(page)]).exit_code == 0
    assert runner.invoke(app, ["report", str(trend), "-o", str(page)]).exit_code == 0  # an earlier page is replaced


# -- what the page says it shows, in every output format (issue 22) ---------------------------------------------------
@pytest.fixture(scope="module")
def named_fit(tmp_path_factory):
    """A TFPW / Benjamini-Hochberg / Pettitt fit that lists its inputs, as GeoTIFF, NetCDF and Zarr."""
    folder = tmp_path_factory.mktemp("named")
    write_sample(folder / "stack", years=range(2000, 2016), rows=60, cols=90, seed=6)
    outputs = {}
    for format, name in (("gtiff", "trend.tif"), ("netcdf", "trend.nc"), ("zarr", "trend.zarr")):
        result = runner.invoke(app, ["trend", str(folder / "stack"), "-o", str(folder / name), "--format", format,
                                     "--method", "both", "--mk-test", "tfpw", "--fdr", "bh", "--fdr-q", "0.1",
                                     "--changepoint", "pettitt", "-q"])
        assert result.exit_code == 0, result.output
        outputs[format] = folder / name
    return folder, outputs


def _table_after(page: Page, headers: list[str]) -> list[list[str]]:
    """The body rows (those starting with a number) of the table whose header cells are ``headers``."""
    width = len(headers)
    start = next(i for i in range(len(page.cells)) if page.cells[i: i + width] == headers) + width
    rows = []
    while start + width <= len(page.cells) and page.cells[start].isdigit():
        rows.append(page.cells[start: start + width])
        start += width
    return rows


def test_the_report_names_the_test_variant_and_fdr_and_shows_change_points_and_n_in_every_format(named_fit):
    folder, outputs = named_fit
    with rasterio.open(outputs["gtiff"]) as dataset:
        names = list(dataset.descriptions)
        bands = {name: dataset.read(names.index(name) + 1).astype(np.float64) for name in ("cp_year", "cp_p", "n")}
    years, counts = np.unique(bands["cp_year"][np.isfinite(bands["cp_year"])], return_counts=True)
    significant = bands["cp_year"][bands["cp_p"] < 0.05]
    expected_cp = [[str(int(y)), f"{c:,}", f"{int((significant == y).sum()):,}"] for y, c in zip(years, counts,
                                                                                                 strict=True)]
    ns, n_counts = np.unique(bands["n"][np.isfinite(bands["n"])], return_counts=True)
    expected_n = [[str(int(n)), f"{c:,}"] for n, c in zip(ns, n_counts, strict=True)]
    pages = {}
    for format, trend in outputs.items():
        html = folder / f"{format}.html"
        result = runner.invoke(app, ["report", str(trend), "-o", str(html)])
        assert result.exit_code == 0, result.output
        text = html.read_text(encoding="utf-8")
        page = Page(text)
        _check_self_contained(page, text)
        words = " ".join(" ".join(page.text).split())
        assert "OLS, and Sen's slope with the Mann-Kendall (TFPW) test" in words  # the subtitle and method
        assert "significance: Mann-Kendall (TFPW), FDR-corrected (Benjamini-Hochberg, q = 0.1)" in words
        assert "tfpw – trend-free pre-whitening (Yue et al. 2002)" in words  # provenance: the trend test
        assert "Where it changed: Sen's slope" in words and "Change points (Pettitt)" in words
        assert {"changes", "valid-years"} <= set(page.ids)
        assert f"trend file {trend}" in words  # the output as named, not a temporary copy
        assert _table_after(page, ["year", "pixels", "Pettitt p < 0.05"]) == expected_cp
        assert [row[:2] for row in _table_after(page, ["n", "pixels", "%"])] == expected_n
        pages[format] = page
        assert not list(folder.glob(".eetrend-read-*"))
    for format in ("netcdf", "zarr"):  # the same numbers from every format
        assert pages[format].cells == pages["gtiff"].cells


def test_a_netcdf_file_that_is_not_an_eetrend_output_is_one_line(tmp_path):
    pytest.importorskip("netCDF4")
    import netCDF4

    path = tmp_path / "other.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("t", 3)
        nc.createVariable("v", "f4", ("t",))[:] = [1, 2, 3]
    result = runner.invoke(app, ["report", str(path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert str(path) in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("method, band, words", [("both", "sen_slope", "Sen's slope"),
                                                 ("ols", "slope", "OLS slope")])
def test_the_study_png_and_the_report_map_show_the_same_estimator_and_name_it(make_study, emulator, monkeypatch,
                                                                              tmp_path, method, band, words):
    import matplotlib.image

    import pipeline.reporting.plots as plots
    from pipeline.reporting.plots import plot_raster
    from pipeline.reporting.report import report_study
    from pipeline.run import output_paths, run_study

    titles = []
    save = plots._save

    def recording(figure, png):
        titles.extend(axes.get_title() for axes in figure.axes if axes.get_title())
        return save(figure, png)

    monkeypatch.setattr(plots, "_save", recording)
    _, study = make_study(years="2000..2005", extra=f'[trend]\nmethod = "{method}"\n')
    assert run_study(study).exit_code == 75
    emulator.earthengine.finish_all()
    assert run_study(study).exit_code == 0
    png = output_paths(study)["png"]
    assert titles[-1] == f"test-study: {words} of annual max NDVI, 2000-2005"
    # The PNG shows that band: drawn again from the band named, the pixels are the same.
    again = tmp_path / "again.png"
    plot_raster(output_paths(study)["trend"], again, band=band, units="NDVI per year", title=titles[-1])
    assert np.array_equal(matplotlib.image.imread(png), matplotlib.image.imread(again))
    page = Page(report_study(study, tmp_path / "page.html").read_text(encoding="utf-8"))
    words_on_page = " ".join(" ".join(page.text).split())
    assert f"Where it changed: {words}" in words_on_page
    assert f"{words} (the study's PNG shows the same band)" in words_on_page


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_a_zarr_report_shows_its_change_points_and_valid_years_below_the_slope_map_in_chromium(named_fit, tmp_path):
    import matplotlib

    folder, outputs = named_fit
    html = tmp_path / "zarr.html"
    assert runner.invoke(app, ["report", str(outputs["zarr"]), "-o", str(html)]).exit_code == 0
    image = screenshot(html, tmp_path / "zarr.png", (1366, 2600))
    left = image[:, : int(1366 * 0.58)]
    red, green, blue = left[..., 0], left[..., 1], left[..., 2]
    brown = (red - blue > 0.3) & (red - green > 0.15) & (red > 0.4) & (red < 0.8)  # not viridis' yellow nor Sen's amber
    teal = (left[..., 1] - left[..., 0] > 0.25) & (left[..., 2] - left[..., 0] > 0.2)
    # colours of viridis that BrBG has not: the cp_year and n maps
    viridis = matplotlib.colormaps["viridis"](np.linspace(0, 1, 64))[:, :3]
    brbg = matplotlib.colormaps["BrBG"](np.linspace(0, 1, 256))[:, :3]
    own = [c for c in viridis if np.abs(brbg - c).max(axis=1).min() > 0.1]
    distance = np.min([np.abs(left - colour).max(axis=2) for colour in own], axis=0)
    viridis_rows = np.nonzero((distance < 0.03).sum(axis=1) > 20)[0]
    brown_rows = np.nonzero(brown.sum(axis=1) > 100)[0]  # rows of the slope map (not a line or a legend)
    assert brown.sum() > 5_000 and teal.sum() > 5_000  # the Sen's slope map, in BrBG
    assert viridis_rows.size > 300 and viridis_rows.min() > brown_rows.max()  # two maps in viridis, below it
