"""``eetrend run``: everything a study needs that can be done now, never twice, never overlapping.

One run, under the study's lock: export what is missing, check the tasks, download what
finished, and once every year is on disk fit the trend and write the outputs (trend
GeoTIFF, slope PNG, JSON report). The fit is skipped when its inputs (the md5 of every
year's files, the years and the trend options) are those of the outputs already there.

The exit code says where the study stands, for cron and scripts:
0 complete and up to date; 75 waiting on Earth Engine (run again later); 1 needs
attention (a task failed beyond its retries, a file failed verification, a year was
cancelled); 2 usage or config error; 3 another run holds the study's lock.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Study, fingerprint
from .earthengine import manifest as m
from .earthengine.downloads import DownloadReport, Progress, download_study
from .earthengine.exports import ExportReport, export_study, open_manifest
from .earthengine.exports import _failure_text as failure_text  # the words the run that saw the failure used
from .files.diskio import STATE_ROOM, ensure_folder
from .files.leftovers import remove_stale_temporaries
from .files.outputs import replaced_when_done
from .lock import StudyLock
from .study_outputs import output_paths
from .version import __version__
from .years import format_years

log = logging.getLogger(__name__)

EXIT_COMPLETE, EXIT_ATTENTION, EXIT_WAITING = 0, 1, 75


@dataclass
class RunResult:
    """What a run did and where the study stands (``exit_code``)."""

    exit_code: int
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the lines that need the user (also in ``lines``)
    outputs: dict[str, Path] = field(default_factory=dict)
    fitted: bool = False
    submitted: list[int] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)


def run_study(study: Study, *, wait: bool = False, timeout: float | None = None, poll: float = 60.0,
              sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None,
              fit_progress: Callable[[int, int], None] | None = None,
              tile_progress: Callable[[int, int], None] | None = None) -> RunResult:
    """One run of the whole pipeline for ``study`` (see the module docstring).

    ``tile_progress`` (tiles done, total) follows a direct study's computePixels tiles.
    """
    from .checks import require_runnable

    require_runnable(study)
    result = RunResult(EXIT_WAITING)
    started = time.monotonic()
    notes: list[str] = []
    downloaded_bytes = 0
    ensure_folder(study.state, "paths.state", STATE_ROOM)
    with StudyLock(study.state, study.name):
        remove_stale_temporaries(study.outputs)
        while True:
            exported = export_study(study)
            downloaded = download_study(study, progress=progress, tile_progress=tile_progress)
            result.submitted += exported.submitted + exported.retried
            result.downloaded += downloaded.downloaded
            downloaded_bytes += downloaded.bytes
            notes += [n for n in downloaded.notes if n not in notes]
            problems = _problems(study, exported, downloaded)
            waiting = sorted(set(downloaded.waiting) - set(problems))
            if problems or not waiting:
                break
            if not wait or (timeout is not None and time.monotonic() - started >= timeout):
                break
            log.info("waiting for Earth Engine: %s", format_years(waiting))
            sleep(poll)
        result.lines += notes
        if result.submitted:
            result.lines.append(f"submitted {len(result.submitted)} export task(s): {format_years(result.submitted)}")
        if exported.restarted:
            result.lines.append(f"restarted because the config changed: {format_years(exported.restarted)}")
        if exported.early:
            result.lines.append(f"exported again, since their last export was made before their season ended: "
                                f"{format_years(exported.early)}")
        result.lines += exported.later
        if exported.waiting_for_queue:
            result.lines.append(f"Earth Engine's queue is full; {format_years(exported.waiting_for_queue)} will be "
                                "submitted by a later run")
        if result.downloaded:
            result.lines.append(f"downloaded and verified {len(result.downloaded)} file(s), "
                                f"{downloaded_bytes / 1e6:.1f} MB")
        if problems:
            result.exit_code = EXIT_ATTENTION
            result.problems = [f"{year} needs attention: {message}" for year, message in sorted(problems.items())]
            result.lines += result.problems
        elif waiting:
            result.exit_code = EXIT_WAITING
            result.lines.append(f"still waiting on Earth Engine for {format_years(waiting)}; run again later")
        else:
            result.exit_code = EXIT_COMPLETE
            _finish(study, downloaded, result, fit_progress)
            _write_html(study, result)
    return result


def _write_html(study: Study, result: RunResult) -> None:
    """STUDY_report.html beside the trend, after a fit or when it is missing (it is drawn alone then).

    A failure is a line in the run's output, never a reason to fail a finished run: the
    trend and the JSON report are complete, the page is a view of them.
    """
    from .reporting.report import report_study, study_html

    path = study_html(study)
    if not result.fitted and path.exists():
        result.outputs["html"] = path
        return
    try:
        report_study(study, path)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("could not write the HTML report %s", path, exc_info=True)
        result.lines.append(f"could not write the HTML report ({exc}); see why with: eetrend --debug report "
                            f"{study.source}")
        return
    result.outputs["html"] = path
    result.lines.append(f"report: {path}")


def _problems(study: Study, exported: ExportReport, downloaded: DownloadReport) -> dict[int, str]:
    """Each year that needs the user, with what went wrong and the fix that can help.

    A year held back (failed for good, or cancelled) keeps its recorded cause in every run
    until it succeeds: "User memory limit exceeded" is answered by a smaller computation,
    which --resubmit alone cannot give.
    """
    problems = dict(exported.failed)
    problems.update({year: f"download failed: {msg}" for year, msg in downloaded.failed.items()})
    held = [year for year in exported.held if year not in problems]
    if held:
        with open_manifest(study) as manifest:
            records = manifest.years()
        for year in held:
            record = records.get(year)
            if record is not None and record.state == m.FAILED:
                problems[year] = failure_text(record)
            else:
                problems[year] = "its task was cancelled; run: eetrend export CONFIG --resubmit"
    return problems


def _finish(study: Study, downloaded: DownloadReport, result: RunResult,
            fit_progress: Callable[[int, int], None] | None) -> None:
    outputs = output_paths(study)
    result.outputs = outputs
    with open_manifest(study) as manifest:
        fingerprint = _fit_fingerprint(study, manifest)
        up_to_date = manifest.get("fit_fingerprint") == fingerprint and all(p.exists() for p in outputs.values())
        changed = _outputs_changed(manifest, outputs) if up_to_date else []
        if up_to_date and not changed:
            result.lines.append(f"complete and up to date: {outputs['trend']}")
            return
        if changed:
            result.lines.append(f"{', '.join(p.name for p in changed)} changed since written; writing the outputs "
                                "again")
        timings, statistics = _fit(study, downloaded, outputs, fit_progress)
        _write_report(study, manifest, outputs, fingerprint, timings, statistics)
        manifest.set("fit_fingerprint", fingerprint)
        _record_outputs(manifest, outputs)
    result.fitted = True
    result.lines.append(f"fitted {study.config.trend.method} trend of {format_years(study.years)}: "
                        f"{outputs['trend']}, {outputs['png'].name}, {outputs['report'].name}")


def _outputs_changed(manifest: m.Manifest, outputs: dict[str, Path]) -> list[Path]:
    """Outputs whose size or mtime differ from when this run wrote them (edited, damaged, replaced)."""
    recorded = json.loads(manifest.get("outputs_stat") or "{}")
    if not recorded:  # written before eetrend recorded them: take them as they are from now on
        _record_outputs(manifest, outputs)
        return []
    changed = []
    for name, path in outputs.items():
        stat = path.stat()
        if recorded.get(name) != [stat.st_size, stat.st_mtime_ns]:
            changed.append(path)
    return changed


def _record_outputs(manifest: m.Manifest, outputs: dict[str, Path]) -> None:
    stats = {name: [path.stat().st_size, path.stat().st_mtime_ns] for name, path in outputs.items()}
    manifest.set("outputs_stat", json.dumps(stats))


def _fit_fingerprint(study: Study, manifest: m.Manifest) -> str:
    """The md5 of every year's files, the years and the trend options: what the outputs depend on."""
    inputs = {str(year): sorted(f["md5"] for f in manifest.files(year).values()) for year in study.years}
    trend = study.config.trend.model_dump(mode="json")
    if trend.get("format") == "gtiff":
        del trend["format"]  # the default: fingerprints from before formats existed stay valid
    return fingerprint({"inputs": inputs, "trend": trend})


def year_pattern(study: Study) -> str:
    """A regex finding the year in this study's file names (the study name may hold digits)."""
    marker = "\0YEAR\0"
    stem = study.prefix(marker).rsplit("/", 1)[-1]
    before, _, after = stem.partition(marker)
    return "^" + re.escape(before) + r"(\d{4})" + re.escape(after) + r"\.(?:tif|vrt)$"


def _fit(study: Study, downloaded: DownloadReport, outputs: dict[str, Path],
         fit_progress: Callable[[int, int], None] | None) -> tuple[dict[str, float], dict[str, Any]]:
    from .engine.formats import require_format
    from .engine.statistics import report
    from .engine.trend import trend_rasters
    from .reporting.plots import plot_raster

    trend = study.config.trend
    require_format(trend.format)
    options = study.fit_options()
    ensure_folder(outputs["trend"].parent, "paths.outputs")
    datasets = [downloaded.datasets[year] for year in study.years]
    run = trend_rasters(datasets, outputs["trend"], years=study.years, year_pattern=year_pattern(study),
                        options=options,
                        overwrite=True, progress=fit_progress,
                        executor="dask" if study.config.dask is not None else "thread",
                        dask=study.dask_settings(),
                        format="cog" if trend.format == "cog" else "gtiff")
    if trend.format in ("netcdf", "zarr"):
        from .engine.formats import convert

        convert(outputs["trend"], outputs[trend.format], trend.format, overwrite=True)
    from .reporting.maps import band_label, slope_band

    composite = study.config.composite
    band = slope_band(options.bands)  # the band the report's map shows too
    started = time.perf_counter()
    plot_raster(outputs["trend"], outputs["png"], band=band, units=f"{composite.label} per year",
                title=f"{study.name}: {band_label(band)} of {composite.title}, {format_years(study.years)}")
    return {**run.timings, "plot": time.perf_counter() - started}, {**report(options), "fdr_result": run.fdr}


def _write_report(study: Study, manifest: m.Manifest, outputs: dict[str, Path], fingerprint: str,
                  timings: dict[str, float], statistics: dict[str, Any] | None = None) -> None:
    records = manifest.years()
    datasets = manifest.datasets()
    report: dict[str, Any] = {
        "study": study.name,
        "config": str(study.source),
        "written": m.now_text(),
        "status": "complete",
        "years": study.years,
        "method": study.config.trend.method,
        "statistics": statistics or {},
        "outputs": {name: str(path) for name, path in outputs.items()},
        "fit_fingerprint": fingerprint,
        "timings_seconds": {k: round(v, 4) for k, v in timings.items()},
        "versions": _versions(),
        "per_year": [
            {
                "year": year,
                "task_id": records[year].task_id,
                "request_id": records[year].request_id,
                "attempts": records[year].attempts,
                "dataset": datasets[year]["path"],
                "files": [{"name": f["name"], "md5": f["md5"], "size": f["size"], "path": f["local_path"]}
                          for f in manifest.files(year).values()],
            }
            for year in study.years
        ],
    }
    text = json.dumps(report, indent=2) + "\n"
    with replaced_when_done(outputs["report"], needed=len(text.encode())) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import rasterio

    found = {"eetrend": __version__, "python": platform.python_version(), "gdal": rasterio.__gdal_version__}
    for package in ("earthengine-api", "google-api-python-client", "numpy", "scipy", "rasterio"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
