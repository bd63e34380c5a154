"""``eetrend report``: one self-contained HTML page about a trend study or any trend GeoTIFF.

The page holds, with every picture embedded (no network access, no script, no font or
style sheet from elsewhere):
- the slope map in map coordinates with a scale bar, non-significant pixels faded
  (FDR-adjusted where the file has ``p_fdr``), the study region outlined (from the
  config's bbox or GeoJSON; for a lone trend file, the outline of its valid data);
- the area with a significant increase, decrease or none, in km2 and %, raw and
  FDR-corrected where the file has ``trend_class_fdr``, and the histogram of slopes;
- the regional series: each year's median and interquartile range across pixels,
  with OLS and Sen fits of the median (read from the inputs, strip by strip);
- clear-observation counts per year where the inputs carry a count band, and for a
  study, each year's task, attempts, files, sizes and checksums from the manifest;
- provenance: config, method and tests, years, versions, and the commands that
  reproduce it.
Missing pieces (no inputs on disk, no FDR band, no count band) are said in the page,
never an error: only an unreadable trend file is.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import platform
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from ..engine.lineage import layers_from_tags, stack_from_layers
from ..engine.stack import Layer, Stack
from ..errors import InputError, UsageError
from ..files.outputs import replaced_when_done
from ..version import __version__
from ..years import format_years

log = logging.getLogger(__name__)

# Tags written by ``eetrend trend`` that map back to its options: (tag, option, value when left at the default).
# A tag's value may carry words after the option's value ("original: Mann-Kendall (...)", "fdr_bh (...)"):
# the first word is the value, without a "fdr_" prefix. Other tags are shown, not replayed.
OPTION_TAGS = (("min_years", "--min-years", None), ("alpha", "--alpha", None), ("confidence", "--confidence", None),
               ("mk_test", "--mk-test", "original"), ("fdr_method", "--fdr", None), ("fdr_q", "--fdr-q", None),
               ("changepoint", "--changepoint", None), ("min_fraction", "--min-fraction", "0.0"),
               ("edge_years", "--edge-years", "none"), ("count_band", "--count-band", None),
               ("min_count", "--min-count", "0"), ("breaks", "--breaks", None), ("min_segment", "--min-segment", None))


@dataclass
class ReportSource:
    """Everything the page is made from, gathered before drawing."""

    trend: Path
    title: str
    value_units: str  # of the annual values, e.g. "NDVI"
    study: Any = None  # a pipeline.config.Study, when made from a config
    region: list[np.ndarray] = field(default_factory=list)
    region_note: str = ""
    layers: list[Layer] | None = None
    inputs_note: str = ""
    per_year: list[dict[str, Any]] | None = None
    commands: list[str] = field(default_factory=list)
    config_text: str | None = None
    shown: Path | None = None  # the output as the user named it, when ``trend`` is a GeoTIFF copy of it

    @property
    def output(self) -> Path:
        return self.shown or self.trend


def default_html(trend: Path) -> Path:
    return trend.with_name(f"{trend.stem}_report.html")


def report_trend(trend: str | Path, html_path: str | Path | None = None, *, inputs: str | None = None,
                 memory_budget: int = 256 << 20) -> Path:
    """Write the report of a trend output; its inputs come from its ``eetrend_inputs`` tag or ``inputs``.

    Every format eetrend writes is read: a GeoTIFF or COG directly, a NetCDF file or Zarr store
    through a temporary GeoTIFF copy beside the page (the same bands and tags, bit for bit).
    """
    from ..engine.formats import readable_geotiff

    trend = Path(trend)
    html = Path(html_path) if html_path else default_html(trend)
    with readable_geotiff(trend, html.parent) as readable:
        return _report_trend(trend, readable, html, inputs, memory_budget)


def _report_trend(trend: Path, readable: Path, html: Path, inputs: str | None, memory_budget: int) -> Path:
    """The report of ``trend``, read from ``readable`` (itself, or a GeoTIFF copy of a NetCDF/Zarr output)."""
    tags = _trend_tags(readable)
    source = ReportSource(readable, trend.name, _value_units(tags.get("units", "")), shown=trend)
    if inputs:
        from ..engine.stack import open_stack

        years = [int(y) for y in tags.get("years", "").split(",") if y.strip()] or None
        try:
            stack = open_stack(inputs, years=years, min_years=2)
        except InputError as exc:
            raise UsageError(f"--inputs {inputs}: {exc}") from None
        source.layers = list(stack.layers)
        source.inputs_note = f"inputs given with --inputs: {inputs}"
    else:
        source.layers = layers_from_tags(tags, trend)
        if source.layers is None:
            source.inputs_note = ("this trend file does not list its inputs (it predates the eetrend_inputs tag); "
                                  f"pass them: eetrend report {shlex.quote(str(trend))} --inputs FOLDER")
    source.region_note = "outline: the edge of the fitted pixels (no study region is known for a lone trend file)"
    source.commands = [_trend_command(trend, tags, source.layers), f"eetrend report {shlex.quote(str(trend))}"]
    return write_report(source, html, memory_budget=memory_budget)


def report_study(study, html_path: str | Path | None = None, *, memory_budget: int = 256 << 20) -> Path:
    """Write the report of a study from its config: its trend output, manifest, region and config."""
    from ..study_outputs import output_paths

    outputs = output_paths(study)
    trend = outputs["trend"]
    if not trend.exists():
        raise InputError(f"{trend} does not exist yet; run the study first: eetrend run {study.source}")
    c = study.config
    source = ReportSource(trend, f"{study.name}: {c.composite.label} trend, {c.composite.summary}",
                          c.composite.label, study=study)
    source.region, source.region_note = _study_region(study, trend)
    source.layers, source.per_year, source.inputs_note = _study_inputs(study, trend)
    source.config_text = redact_urls(study.source.read_text(encoding="utf-8"))
    config = shlex.quote(str(study.source))
    source.commands = [f"eetrend run {config} --wait", f"eetrend report {config}"]
    return write_report(source, Path(html_path) if html_path else study_html(study), memory_budget=memory_budget)


def redact_urls(text: str) -> str:
    """``text`` with the user part and path of every http(s) URL hidden: a notification topic or a webhook
    URL is a secret that must not travel with a report someone may share."""

    def hide(match: re.Match) -> str:
        scheme, user, host, path = match.groups()
        return scheme + ("[hidden]@" if user else "") + host + ("/[hidden]" if path and path != "/" else path or "")

    return re.sub(r"(https?://)([^/\s\"'@]+@)?([^/\s\"'@]+)(/[^\s\"']*)?", hide, text)


def study_html(study) -> Path:
    return study.outputs / f"{study.name}_report.html"


def _trend_tags(trend: Path) -> dict[str, str]:
    import rasterio
    from rasterio.errors import RasterioError

    if not trend.exists():
        raise InputError(f"{trend} does not exist; give a trend GeoTIFF written by eetrend trend or run")
    try:
        with rasterio.open(trend) as dataset:
            names = [d or "" for d in dataset.descriptions]
            tags = dataset.tags()
    except RasterioError as exc:
        raise InputError(f"cannot open {trend}: {str(exc).splitlines()[0]}; give a readable trend GeoTIFF") from None
    if "trend_class" not in names or not ({"slope", "sen_slope"} & set(names)):
        raise InputError(f"{trend} has no slope/sen_slope and trend_class bands; give a trend output of eetrend")
    return tags


def _value_units(units: str) -> str:
    units = units.strip()
    for suffix in (" per year", "/year"):
        if units.endswith(suffix):
            units = units[: -len(suffix)]
    return units if units and units != "input units" else "value"


def _study_region(study, trend: Path) -> tuple[list[np.ndarray], str]:
    import rasterio

    from ..config import region_geometry
    from .maps import bbox_geometry, map_frame, region_placement, region_rings

    region = study.config.region
    with rasterio.open(trend) as dataset:
        crs = dataset.crs
        frame = map_frame(dataset.transform, dataset.width, dataset.height, crs)
    if not frame.has_coordinates:
        return [], "the trend file has no map coordinates, so the study region cannot be drawn"
    if region.bbox is not None:
        geometry, name = bbox_geometry(region.bbox), f"the study's bbox {list(region.bbox)}"
    elif region.geojson is not None:
        path = study.resolve(region.geojson)
        geometry = region_geometry(json.loads(path.read_text(encoding="utf-8")))
        name = f"the study region from {path.name}"
    else:
        return [], f"the study region is the Earth Engine asset {region.asset}; it is not drawn"
    rings = region_rings(geometry, crs)
    placement = region_placement(rings, frame.extent)
    if placement == "apart":
        return [], f"{name} does not overlap the raster, so it is not drawn; check the region and the exported grid"
    if placement == "larger":
        return rings, f"outline: {name}, which reaches well beyond the raster (the map shows the raster)"
    return rings, f"outline: {name}"


def _study_inputs(study, trend: Path) -> tuple[list[Layer] | None, list[dict[str, Any]], str]:
    """Each year's dataset from the manifest (the trend file's own list as a fallback), and the per-year table."""
    from ..earthengine.exports import open_manifest

    rows: list[dict[str, Any]] = []
    with open_manifest(study) as manifest:
        records = manifest.years()
        datasets = manifest.datasets()
        for year in study.years:
            record = records.get(year)
            files = list(manifest.files(year).values())
            rows.append({
                "year": year, "state": record.state if record else "not exported",
                "task": record.task_id if record else None, "attempts": record.attempts if record else 0,
                "files": [{"name": f["name"], "size": f["size"], "md5": f["md5"]} for f in files],
                "dataset": datasets.get(year, {}).get("path"),
            })
    layers = [Layer(str(study.downloads / r["dataset"]), 1, r["year"], None) for r in rows if r["dataset"]]
    if len(layers) == len(study.years):
        return layers, rows, "inputs: each year's downloaded dataset, from the study's manifest"
    from ..engine.lineage import layers_from_tags

    tagged = layers_from_tags(_trend_tags(trend), trend)
    missing = format_years(r["year"] for r in rows if not r["dataset"])
    if tagged:
        return tagged, rows, f"inputs: from the trend file's own list ({missing} not in the manifest)"
    return None, rows, f"no downloaded dataset recorded for {missing}; run: eetrend run {study.source}"


def _trend_command(trend: Path, tags: dict[str, str], layers: list[Layer] | None) -> str:
    """The ``eetrend trend`` command that wrote ``trend``, rebuilt from its tags and inputs."""
    if layers:
        folders = {str(Path(layer.path).parent) for layer in layers}
        files = sorted({layer.path for layer in layers})
        sources = files if len(files) == 1 or len(folders) > 1 else sorted(folders)
    else:
        sources = ["INPUTS"]
    parts = ["eetrend", "trend", *sources, "-o", str(trend), "--method", tags.get("method", "ols")]
    years = [int(y) for y in tags.get("years", "").split(",") if y.strip()]
    if years:
        parts += ["--years", format_years(years).replace(" ", "")]
    for tag, option, default in OPTION_TAGS:
        text = tags.get(tag, "").strip()
        value = re.split(r"[\s:]", text, maxsplit=1)[0].removeprefix("fdr_") if text else ""
        if value and value != default:
            parts += [option, value]
    return " ".join(shlex.quote(p) for p in parts)


# ----------------------------------------------------------------------------------------------------------------------
def write_report(source: ReportSource, html_path: Path, *, memory_budget: int = 256 << 20) -> Path:
    """Gather the statistics, draw the figures and write the page under ``html_path`` (atomically)."""
    import rasterio

    from . import figures as figures
    from .areas import summarise
    from .maps import band_label, mk_name, read_picture, significance_bands, slope_band, test_name
    from .regional import count_series, regional_series

    if html_path.is_dir():
        raise UsageError(f"the output {html_path} is a folder; give a file name such as {html_path / 'report.html'}")
    _check_html_output(html_path, [source.trend, source.output, *(layer.path for layer in source.layers or [])])
    started = time.perf_counter()
    with rasterio.open(source.trend) as dataset:
        names = [d or "" for d in dataset.descriptions]
        tags = dataset.tags()
        band = slope_band(names)  # the estimator the study's PNG shows too
        picture, _ = read_picture(dataset, names.index(band) + 1)
        finite = np.abs(picture[np.isfinite(picture)])
        limit = float(np.percentile(finite, 99.5)) if finite.size else 1.0
        summary = summarise(dataset, band, limit or 1.0, memory_budget=memory_budget)
        extras = _band_counts(dataset, names, float(tags.get("alpha", 0.05) or 0.05), memory_budget)
    raw_p, fdr_p = significance_bands(band, names)
    test = test_name(raw_p or "pvalue", tags)
    slope_units = f"{source.value_units} per year"
    map_fig, drawn = figures.map_figure(source.trend, band, region=source.region,
                                        outline_footprint=source.study is None, significant_only=raw_p is not None,
                                        units=slope_units)
    images = {"map": figures.data_uri(map_fig, "png")}
    significance = "significant, FDR-adjusted" if summary.fdr is not None else "significant (p < alpha)"
    images["histogram"] = figures.data_uri(figures.histogram_figure(summary, f"{band_label(band)} ({slope_units})",
                                                                    significance))
    for extra in ("cp_year", "n"):
        if extra in names:
            figure, _ = figures.map_figure(source.trend, extra, region=source.region,
                                           outline_footprint=source.study is None,
                                           significant_only=extra == "cp_year" and "cp_p" in names)
            images[extra] = figures.data_uri(figure, "png")

    series, fits, counts, series_note = None, {}, None, source.inputs_note
    stack = _open_inputs(source)
    if isinstance(stack, str):
        series_note = stack
    elif stack is not None:
        series = regional_series(stack, memory_budget=memory_budget)
        mk_test = tags.get("mk_test", "original").split(":", 1)[0].strip() or "original"
        fits = _fit_median(series, mk_test)
        images["series"] = figures.data_uri(figures.series_figure(series, fits, source.value_units, mk_name(tags)))
        counts = count_series(stack, memory_budget=memory_budget)
        if counts is not None:
            images["counts"] = figures.data_uri(figures.counts_figure(counts))
    from .breaks_report import breaks_section

    breaks_html = breaks_section(source.trend, memory_budget=memory_budget)  # "" unless fitted with --breaks
    page = _page(source, tags, band, drawn, summary, test, fdr_p is not None, series, fits, counts, series_note,
                 images, time.perf_counter() - started, extras, breaks_html)
    with replaced_when_done(html_path, suffix=".html") as temporary:
        temporary.write_text(page, encoding="utf-8")
    return html_path


def _band_counts(dataset, names: list[str], alpha: float, memory_budget: int) -> dict[str, dict[int, int]]:
    """Exact pixel counts, read strip by strip at full resolution: of each number of valid years (``n``), and
    of each change point year (``cp_year``) among all change points and the significant ones (Pettitt
    ``cp_p < alpha``). Empty for the bands the output does not have."""
    from rasterio.windows import Window

    wanted = [b for b in ("n", "cp_year", "cp_p") if b in names]
    counts: dict[str, dict[int, int]] = {"n": {}, "cp_year": {}, "cp_significant": {}}
    if not ({"n", "cp_year"} & set(wanted)):
        return {}
    rows = max(1, min(dataset.height, memory_budget // max(1, 8 * 2 * len(wanted) * dataset.width)))

    def add(into: dict[int, int], values: np.ndarray) -> None:
        found, number = np.unique(values[np.isfinite(values)], return_counts=True)
        for value, count in zip(found.astype(np.int64).tolist(), number.tolist(), strict=True):
            into[value] = into.get(value, 0) + count

    for top in range(0, dataset.height, rows):
        window = Window(0, top, dataset.width, min(rows, dataset.height - top))
        block = {b: dataset.read(names.index(b) + 1, window=window).astype(np.float64) for b in wanted}
        if "n" in block:
            add(counts["n"], block["n"])
        if "cp_year" in block:
            add(counts["cp_year"], block["cp_year"])
            if "cp_p" in block:
                with np.errstate(invalid="ignore"):
                    add(counts["cp_significant"], np.where(block["cp_p"] < alpha, block["cp_year"], np.nan))
    return {k: v for k, v in counts.items() if k in wanted or (k == "cp_significant" and "cp_p" in wanted)}


def _check_html_output(html_path: Path, inputs: list) -> None:
    """An HTML output: named .html, never one of the inputs, in a folder that exists and can be written
    (:func:`check_output`), replacing nothing but an earlier page."""
    from ..files.outputs import check_output

    if html_path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--output {html_path}: the report is an HTML page; give a name ending in .html")
    check_output(html_path, True, inputs)
    if html_path.exists():
        with open(html_path, "rb") as handle:
            head = handle.read(64).lstrip().lower()
        if not head.startswith((b"<!doctype html", b"<html")):
            raise UsageError(f"{html_path} exists and is not an HTML page; choose another name (eetrend replaces "
                             "only an earlier report)")


def _open_inputs(source: ReportSource) -> Stack | str | None:
    """The input stack, or a sentence saying why it cannot be read."""
    if not source.layers:
        return None
    try:
        return stack_from_layers(source.layers)
    except InputError as exc:
        return f"the regional series needs the inputs, which could not be read: {exc}"


def _fit_median(series, mk_test: str = "original") -> dict[str, float]:
    """OLS and Sen fits of the regional median, with the Mann-Kendall variant the trend file used."""
    from ..engine.api import fit

    ok = np.isfinite(series.median)
    if ok.sum() < 3:
        return {}
    result = fit(series.median[ok], np.asarray(series.years)[ok], method="both", min_years=3, mk_test=mk_test)
    return {name: float(result[name]) for name in ("slope", "intercept", "pvalue", "rvalue", "sen_slope",
                                                   "sen_intercept", "sen_low", "sen_high", "mk_p")}


# ----------------------------------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _km2(square_metres: float, whole: float | None = None) -> str:
    """km2 with decimals chosen from ``whole`` (the table's total), so one table uses one precision."""
    km2, scale = square_metres / 1e6, (whole if whole is not None else square_metres) / 1e6
    return f"{km2:,.0f}" if scale >= 100 else f"{km2:,.2f}" if scale >= 1 else f"{km2:,.4f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def _area_rows(summary, fdr: bool) -> str:
    labels = {"increase": ("significant increase", "up"), "decrease": ("significant decrease", "down"),
              "none": ("no significant trend", "flat")}
    rows = []
    for key, (label, css) in labels.items():
        cells = f"<td>{_km2(summary.raw[key], summary.fitted)}</td><td>{_pct(summary.raw[key], summary.fitted)}</td>"
        if fdr:
            cells += (f"<td>{_km2(summary.fdr[key], summary.fitted)}</td>"
                      f"<td>{_pct(summary.fdr[key], summary.fitted)}</td>")
        rows.append(f'<tr class="{css}"><th scope="row"><span class="swatch"></span>{label}</th>{cells}</tr>')
    span = 4 if fdr else 2
    rows.append(f'<tr class="total"><th scope="row">fitted area</th><td colspan="{span}">{_km2(summary.fitted)} '
                f"km² of {_km2(summary.total)} km² mapped ({_pct(summary.fitted, summary.total)} %)</td></tr>")
    return "\n".join(rows)


def _summary_cards(summary, fdr: bool) -> str:
    classes = summary.fdr if fdr else summary.raw
    cards = []
    for key, label, css in (("increase", "significant increase", "up"), ("decrease", "significant decrease", "down"),
                            ("none", "no significant trend", "flat")):
        cards.append(f'<div class="card {css}"><div class="big">{_pct(classes[key], summary.fitted)} %</div>'
                     f'<div class="label">{label}</div><div class="small">{_km2(classes[key], summary.fitted)} km²'
                     '</div></div>')
    return "\n".join(cards)


def _fits_table(fits: dict[str, float], units: str, mk: str = "Mann-Kendall") -> str:
    if not fits:
        return "<p class=note>Too few years with a median to fit a trend.</p>"
    return (
        "<table class=fits><thead><tr><th>fit of the median</th><th>slope</th><th>test</th></tr></thead><tbody>"
        f"<tr><th scope=row><span class='line ols'></span>OLS</th><td>{fits['slope']:+.4g} {_e(units)} per year"
        f"</td><td>t-test p = {fits['pvalue']:.3g}, r = {fits['rvalue']:.3f}</td></tr>"
        f"<tr><th scope=row><span class='line sen'></span>Sen</th><td>{fits['sen_slope']:+.4g} {_e(units)} per year "
        f"<span class=muted>[{fits['sen_low']:+.3g}, {fits['sen_high']:+.3g}]</span></td>"
        f"<td>{_e(mk)} p = {fits['mk_p']:.3g}</td></tr></tbody></table>"
    )


def _per_year_table(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        files = row["files"]
        size = sum(int(f["size"] or 0) for f in files)
        listed = "<br>".join(f"<code>{_e(f['md5'])}</code> <span class=muted>{_e(f['name'])}</span>" for f in files)
        if len(files) > 1:
            checksums = f"<details class=files><summary>{len(files)} tiles</summary>{listed}</details>"
        else:
            checksums = listed
        body.append(f"<tr><td>{row['year']}</td><td>{_e(row['state'])}</td><td><code>{_e(row['task'] or '–')}</code>"
                    f"</td><td>{row['attempts']}</td><td>{len(files)}</td><td>{size / 1e6:,.2f} MB</td>"
                    f"<td class=md5>{checksums or '–'}</td></tr>")
    return ("<table class=years><thead><tr><th>year</th><th>state</th><th>task</th><th>attempts</th><th>files</th>"
            "<th>size</th><th>md5 checksums</th></tr></thead><tbody>" + "\n".join(body) + "</tbody></table>")


def _inputs_table(layers: list[Layer]) -> str:
    body = "".join(f"<tr><td>{layer.year}</td><td><code>{_e(layer.path)}</code></td><td>{layer.band}</td></tr>"
                   for layer in layers)
    return ("<table class=years><thead><tr><th>year</th><th>input</th><th>band</th></tr></thead><tbody>"
            f"{body}</tbody></table>")


def _extra_sections(images: dict[str, str], extras: dict[str, dict[int, int]], tags: dict[str, str],
                    summary) -> str:
    """The change point map with its table of years, and the map of valid years per pixel, where the output
    has those bands."""
    parts = []
    if "cp_year" in images:
        everything, significant = extras.get("cp_year", {}), extras.get("cp_significant")
        alpha = tags.get("alpha", "0.05")
        total = sum(everything.values())
        head = "<th>year</th><th>pixels</th>" + (f"<th>Pettitt p &lt; {_e(alpha)}</th>" if significant is not None
                                                  else "")
        rows = "".join(f"<tr><td>{year}</td><td>{count:,}</td>" +
                       (f"<td>{significant.get(year, 0):,}</td>" if significant is not None else "") + "</tr>"
                       for year, count in sorted(everything.items()))
        faded = f"; faded where Pettitt p ≥ {_e(alpha)}" if significant is not None else ""
        parts.append(
            '<section id="changes"><div class="grid"><figure><h2>Change points (Pettitt)</h2>'
            f'<img class="map" src="{images["cp_year"]}" alt="map of the change point year">'
            f"<figcaption>cp_year: the last year before the change, one colour per year{faded}. "
            f"{_e(tags.get('changepoint', ''))}</figcaption></figure><div><h3>Pixels per change point year</h3>"
            f"<table class=years><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
            f"<p class=note>{total:,} pixels with a change point"
            + (f", {sum(significant.values()):,} of them significant" if significant is not None else "")
            + ".</p></div></div></section>")
    if "n" in images:
        valid = extras.get("n", {})
        fitted = sum(valid.values())
        rows = "".join(f"<tr><td>{n}</td><td>{count:,}</td><td>{_pct(count, fitted)}</td></tr>"
                       for n, count in sorted(valid.items()))
        some = [n for n in valid if n > 0]
        spread = (f"from {min(some)} to {max(some)} valid years per pixel (blank: none)" if some
                  else "no pixel has a valid year")
        parts.append(
            '<section id="valid-years"><div class="grid"><figure><h2>Valid years per pixel (n)</h2>'
            f'<img class="map" src="{images["n"]}" alt="map of the number of valid years per pixel">'
            f"<figcaption>n: the years with a valid value at each pixel, {spread}; pixels with fewer than "
            f"{_e(tags.get('min_years', '?'))} are not fitted.</figcaption></figure>"
            "<div><details><summary>Pixels per number of valid years</summary><table class=years><thead><tr>"
            f"<th>n</th><th>pixels</th><th>%</th></tr></thead><tbody>{rows}</tbody></table></details></div></div>"
            "</section>")
    return "\n".join(parts)


def _versions() -> dict[str, str]:
    import matplotlib
    import rasterio

    return {"eetrend": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "rasterio": rasterio.__version__, "GDAL": rasterio.__gdal_version__, "matplotlib": matplotlib.__version__}


def _dl(items: dict[str, Any]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items.items()) + "</dl>"


def _page(source: ReportSource, tags: dict[str, str], band: str, drawn, summary, test: str, fdr_p: bool, series,
          fits, counts, series_note: str, images: dict[str, str], seconds: float,
          extras: dict[str, dict[int, int]] | None = None, breaks_html: str = "") -> str:
    from .maps import band_label, fdr_name, mk_name

    extras = extras or {}
    years = [int(y) for y in tags.get("years", "").split(",") if y.strip()]
    mk = mk_name(tags)
    method = {"ols": "ordinary least squares", "sen": f"Sen's slope with the {mk} test",
              "both": f"OLS, and Sen's slope with the {mk} test"}.get(tags.get("method", ""), tags.get("method"))
    fdr = summary.fdr is not None
    units = source.value_units
    head_cells = "<th>km²</th><th>%</th>" + ("<th>km²</th><th>%</th>" if fdr else "")
    group = "<th colspan=2>raw p</th>" + ("<th colspan=2>FDR-corrected</th>" if fdr else "")
    significance_text = (f"{test} p-values adjusted for the false discovery rate over the whole map "
                         f"({fdr_name(tags) or tags.get('fdr_method', '?')})"
                         if fdr else f"{test} p < {tags.get('alpha', '0.05')} per pixel, not corrected for "
                         "testing many pixels (the file has no trend_class_fdr band)")
    map_caption = " · ".join(filter(None, [
        f"{band_label(band, tags)} in {units} per year, brown decrease to teal increase, centred on zero",
        drawn.significance, source.region_note]))
    if series is not None:
        series_html = (f'<img class="chart wide" src="{images["series"]}" alt="regional series: median and '
                       f'interquartile range per year with OLS and Sen fits">' + _fits_table(fits, units, mk) +
                       f"<p class=note>Across all valid pixels of each year (between {int(series.valid.min()):,} and "
                       f"{int(series.valid.max()):,} pixels); exact quantiles, read in {series.passes} passes over "
                       f"the inputs. {_e(series_note[:1].upper() + series_note[1:])}</p>")
    else:
        series_html = f"<p class=note>{_e(series_note or 'The inputs of this trend are not known.')}</p>"
    if counts is not None:
        counts_html = (f'<img class="chart wide" src="{images["counts"]}" alt="clear observations per year">'
                       f"<p class=note>From the band <code>{_e(counts.description)}</code> of each year's input. "
                       "A rising count can lift an annual maximum on its own: compare before reading the trend.</p>")
    else:
        counts_html = ("<p class=note>The inputs carry no clear-observation count band (a band whose description "
                       "contains “count”), so the number of clear scenes behind each year is not known here.</p>")
    if source.per_year is not None:
        table = (f"<details open><summary>{len(source.per_year)} years: task, attempts, files, sizes and md5 "
                 f"checksums from the study's manifest</summary>{_per_year_table(source.per_year)}</details>")
        table_title = "Each year's export"
    elif source.layers:
        table = (f"<details><summary>{len(source.layers)} annual inputs</summary>{_inputs_table(source.layers)}"
                 "</details>")
        table_title = "Inputs"
    else:
        table, table_title = "<p class=note>No inputs known.</p>", "Inputs"
    provenance = {
        "trend file": str(source.output),
        "method": method,
        "map": f"{band_label(band, tags)} (the study's PNG shows the same band)",
        "significance": significance_text,
        "years": f"{format_years(years)} ({len(years)} years)" if years else "not recorded",
        "minimum valid years": tags.get("min_years", "–"),
        **({"trend test": tags["mk_test"].replace(":", " –", 1) if ":" in tags["mk_test"] else tags["mk_test"]}
           if tags.get("mk_test") else {}),
        **({"false discovery rate": fdr_name(tags)} if fdr_name(tags) else {}),
        **({"change points": tags["changepoint"]} if tags.get("changepoint") else {}),
        "written by": f"eetrend {tags.get('eetrend_version', '?')}",
    }
    other_tags = {k: v for k, v in sorted(tags.items()) if k not in ("eetrend_inputs",) and len(v) < 300}
    config_html = (f"<h3>Study config <span class=muted>({_e(source.study.source)}; URL paths hidden)</span></h3>"
                   f"<pre>{_e(source.config_text)}</pre>") if source.config_text else ""
    commands = "\n".join(_e(c) for c in source.commands)
    if fdr:
        fdr_note = (f"Raw: each pixel's {_e(test)} at its own level. FDR-corrected: the same tests with the false "
                    f"discovery rate controlled over the whole map ({_e(fdr_name(tags) or tags.get('fdr_method'))}).")
    else:
        fdr_note = "FDR-corrected areas appear when the trend is fitted with --fdr (a p_fdr band)."
    values = {
        "title": _e(source.title),
        "subtitle": _e(f"{format_years(years) if years else ''} · {method}"),
        "generated": _e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        "version": _e(__version__),
        "cards": _summary_cards(summary, fdr),
        "cards_note": (f"{_e(test)}, FDR-corrected ({_e(fdr_name(tags))})" if fdr
                       else f"{_e(test)}, p &lt; {_e(tags.get('alpha', '0.05'))}, uncorrected"),
        "map_title": _e(band_label(band, tags)),
        "map_alt": _e(f"map of {band_label(band, tags)}"),
        "extra_sections": _extra_sections(images, extras, tags, summary),
        "map": images["map"],
        "map_caption": _e(map_caption),
        "area_head_group": group,
        "area_head": head_cells,
        "area_rows": _area_rows(summary, fdr),
        "fdr_note": fdr_note,
        "histogram": images["histogram"],
        "pixels": f"{summary.pixels:,}",
        "series": series_html,
        "breaks": breaks_html,
        "counts": counts_html,
        "table_title": table_title,
        "table": table,
        "provenance": _dl(provenance),
        "tags": _dl(other_tags),
        "versions": _dl(_versions()),
        "config": config_html,
        "commands": commands,
        "seconds": f"{seconds:.1f}",
    }
    return PAGE.substitute(values)


PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="eetrend $version">
<title>$title</title>
<style>
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --paper:#ffffff; --wash:#f5f7fa;
        --up:#01665e; --down:#8c510a; --flat:#9aa5b1; --ols:#2b6cb0; --sen:#d97706; }
* { box-sizing: border-box; }
html { background: var(--wash); }
body { margin: 0 auto; max-width: 1180px; padding: 28px 28px 60px; color: var(--ink); background: var(--wash);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { margin-bottom: 18px; }
h1 { font-size: 26px; line-height: 1.2; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 18px; margin: 0 0 10px; }
h3 { font-size: 14px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.subtitle { color: var(--muted); margin: 0; }
section { background: var(--paper); border: 1px solid var(--line); border-radius: 10px; padding: 20px 22px;
          margin: 16px 0; }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; margin: 14px 0 0; }
.card { background: var(--paper); border: 1px solid var(--line); border-left: 6px solid var(--flat);
        border-radius: 8px; padding: 10px 14px; }
.card.up { border-left-color: var(--up); } .card.down { border-left-color: var(--down); }
.card .big { font-size: 28px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card.up .big { color: var(--up); } .card.down .big { color: var(--down); }
.card .label { font-weight: 600; } .card .small { color: var(--muted); font-size: 13px; }
.cards-note { color: var(--muted); font-size: 13px; margin: 6px 0 0; }
.grid { display: grid; grid-template-columns: minmax(0, 1.45fr) minmax(0, 1fr); gap: 22px; align-items: start; }
@media (max-width: 900px) { .grid { grid-template-columns: 1fr; } .cards { grid-template-columns: 1fr; } }
img { max-width: 100%; height: auto; display: block; }
img.map { width: 100%; border-radius: 6px; }
figure { margin: 0; } figcaption, .note { color: var(--muted); font-size: 13px; margin: 6px 0 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 14px; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
th[scope=row], td:first-child, thead th:first-child { text-align: left; }
thead th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }
tr.total td, tr.total th { border-bottom: none; color: var(--muted); font-weight: normal; text-align: left; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 7px;
          background: var(--flat); vertical-align: -1px; }
tr.up .swatch { background: var(--up); } tr.down .swatch { background: var(--down); }
.line { display: inline-block; width: 18px; height: 0; border-top: 2.5px solid var(--ols); margin-right: 7px;
        vertical-align: 3px; }
.line.sen { border-top: 2.5px dashed var(--sen); }
table.fits { margin-top: 10px; } table.years td, table.years th { text-align: left; }
table.years { font-size: 13px; } img.wide { width: 100%; }
td.md5 code { font-size: 11.5px; } details.files summary { margin: 0; font-size: 13px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
pre { background: var(--wash); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px;
      font-size: 12.5px; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; font-size: 14px; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--muted); font-size: 14px; margin-top: 10px; }
.muted { color: var(--muted); } h3 .muted { text-transform: none; letter-spacing: 0; font-weight: normal; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
</style>
</head>
<body>
<header id="summary">
<h1>$title</h1>
<p class="subtitle">$subtitle</p>
<div class="cards">
$cards
</div>
<p class="cards-note">Share of the fitted area; significance: $cards_note.</p>
</header>

<section id="map">
<div class="grid">
<figure>
<h2>Where it changed: $map_title</h2>
<img class="map" src="$map" alt="$map_alt">
<figcaption>$map_caption</figcaption>
</figure>
<div id="areas">
<h2>How much of the area</h2>
<table class="areas">
<thead><tr><th></th>$area_head_group</tr><tr><th>class</th>$area_head</tr></thead>
<tbody>
$area_rows
</tbody>
</table>
<p class="note">$fdr_note</p>
<h3 id="distribution">Distribution of slopes</h3>
<img class="chart" src="$histogram" alt="histogram of slopes">
<p class="note">$pixels fitted pixels; values beyond the axis are counted in the end bins.</p>
</div>
</div>
</section>

$extra_sections
<section id="series">
<h2>The regional series</h2>
$series
</section>
$breaks

<section id="observations">
<h2>Clear observations and inputs</h2>
$counts
<h3>$table_title</h3>
$table
</section>

<section id="provenance">
<h2>Provenance</h2>
$provenance
<h3>Reproduce</h3>
<pre>$commands</pre>
$config
<details><summary>All tags of the trend file</summary>$tags</details>
<h3>Versions used for this report</h3>
$versions
</section>
<footer>Written by eetrend $version on $generated in $seconds s. Self-contained: every picture is embedded.</footer>
</body>
</html>
""")
