"""The ``eetrend`` command line: parse, call one library function, map errors to exit codes.

Library imports happen inside the commands, so ``eetrend --help`` stays quick.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

# GDAL's default block cache is 5 % of RAM per process; eetrend reads each block once,
# so a small cache keeps every worker's memory flat. A user's own setting wins.
os.environ.setdefault("GDAL_CACHEMAX", "64")

app = typer.Typer(
    name="eetrend",
    help="Per-pixel trends of annual Earth Engine composites: export, download, stack and fit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE = {"debug": False}


class MethodChoice(str, Enum):
    ols = "ols"
    sen = "sen"
    both = "both"


class ExecutorChoice(str, Enum):
    process = "process"
    thread = "thread"
    dask = "dask"


class IndexChoice(str, Enum):
    ndvi = "ndvi"
    evi = "evi"
    nbr = "nbr"
    ndmi = "ndmi"
    savi = "savi"


def _executor_options(executor: ExecutorChoice | str, scheduler: str | None, workers: int) -> dict:
    """Library keyword arguments for --executor/--scheduler/--workers."""
    from pipeline.dask_executor import DaskSettings
    from pipeline.errors import UsageError
    from pipeline.executors import resolve_workers

    kind = getattr(executor, "value", executor)
    if scheduler and kind != "dask":
        raise UsageError("--scheduler needs --executor dask")
    if kind != "dask":
        return {"executor": kind}
    return {"executor": "dask", "dask": DaskSettings(scheduler=scheduler, workers=resolve_workers(workers))}


class CompressChoice(str, Enum):
    zstd = "zstd"
    deflate = "deflate"
    lzw = "lzw"
    none = "none"


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__

        typer.echo(f"eetrend {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Per-pixel trends of annual Earth Engine composites."""
    import logging

    _STATE["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("googleapiclient").setLevel(logging.ERROR)


@contextmanager
def _errors():
    """Turn eetrend's errors into one line on stderr and their exit code."""
    from pipeline.errors import EetrendError

    try:
        yield
    except EetrendError as exc:
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; nothing was written under the output name", err=True)
        raise typer.Exit(130) from None


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def _progress_bar(label: str, enabled: bool):
    """A rich progress bar over windows, or nothing when not on a terminal."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@app.command(
    epilog="Example: eetrend sample demo/ --years 1995-2015 --size 512x512",
)
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write ndvi_YYYY.tif files and truth/true_slope.tif into.")],
    years: Annotated[str, typer.Option(help="Years to write, e.g. 1995-2015 or 2000,2002,2004-2010.")] = "1995-2015",
    size: Annotated[str, typer.Option(help="Raster size as COLSxROWS.")] = "512x512",
    nan_fraction: Annotated[float, typer.Option(help="Share of values missing at random (clouds).")] = 0.05,
    noise: Annotated[float, typer.Option(help="Standard deviation of the noise, in NDVI units.")] = 0.03,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
) -> None:
    """Write synthetic annual NDVI rasters with a known trend in every pixel."""
    with _errors():
        from pipeline.errors import UsageError
        from pipeline.sample import write_sample
        from pipeline.years import format_years, parse_years

        try:
            cols, rows = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise UsageError(f"--size {size!r} is not COLSxROWS; write it like 512x512") from None
        result = write_sample(
            out_dir, years=parse_years(years), rows=rows, cols=cols, nan_fraction=nan_fraction, noise=noise, seed=seed
        )
        typer.echo(
            f"wrote {len(result.files)} annual rasters ({format_years(result.years)}, {cols}x{rows} pixels) "
            f"to {result.folder}; true slope in {result.truth_file}"
        )


@app.command(
    epilog=(
        "Examples: eetrend trend downloads/ndvi/ -o trend.tif\n\n"
        "eetrend trend 'exports/*.tif' -o trend.tif --method both --years 2000-2020 --workers 2"
    ),
)
def trend(
    input: Annotated[str, typer.Argument(help="A folder of annual rasters, a quoted glob, or one multi-band file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The trend GeoTIFF to write.")],
    method: Annotated[
        MethodChoice, typer.Option(help="ols: least squares; sen: Sen's slope + Mann-Kendall; both.")
    ] = MethodChoice.ols,
    years: Annotated[
        str | None,
        typer.Option(
            help="Years to use (e.g. 2000-2020); for a multi-band file without years in its band "
            "descriptions, the year of each band in order."
        ),
    ] = None,
    year_pattern: Annotated[
        str | None, typer.Option(help="Regular expression whose first group is the year in each file name.")
    ] = None,
    band: Annotated[int, typer.Option(help="Band to read from each annual file.")] = 1,
    min_years: Annotated[int, typer.Option(help="Pixels with fewer valid years are NaN.")] = 3,
    alpha: Annotated[float, typer.Option(help="Significance level of the trend_class band.")] = 0.05,
    confidence: Annotated[float, typer.Option(help="Confidence level of Sen's slope interval.")] = 0.95,
    workers: Annotated[int, typer.Option(help="Workers; 0 means one per core, 1 runs in the main thread.")] = 0,
    memory_budget: Annotated[
        str,
        typer.Option(
            help="Peak memory of the whole run (this process and any worker processes), e.g. 512MB or 4GB; "
            "fewer workers are used, with a note, if the budget cannot hold them all."
        ),
    ] = "1GB",
    compress: Annotated[
        CompressChoice, typer.Option(help="Output compression (zstd is fast; deflate reads everywhere).")
    ] = CompressChoice.zstd,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    executor: Annotated[
        ExecutorChoice,
        typer.Option(
            help="thread (a pool of threads sharing one interpreter: the default, as fast as processes and "
            "lighter), process (a local process pool), or dask (a Dask cluster)."
        ),
    ] = ExecutorChoice.thread,
    scheduler: Annotated[
        str | None,
        typer.Option(help="With --executor dask: an existing scheduler (tcp://host:8786); else a local cluster."),
    ] = None,
) -> None:
    """Fit the trend of every pixel of an annual stack and write a multi-band GeoTIFF.

    Bands: slope, intercept, rvalue, pvalue, stderr, intercept_stderr (ols);
    sen_slope, sen_intercept, sen_low, sen_high, mk_s, mk_var_s, mk_z, mk_p,
    mk_tau (sen); then n and trend_class.
    """
    with _errors():
        from pipeline.trend import FitOptions, trend_rasters
        from pipeline.years import format_years, parse_years

        options = FitOptions(method=method.value, min_years=min_years, confidence=confidence, alpha=alpha)
        with _progress_bar("fitting windows", _show_progress(quiet)) as progress:
            run = trend_rasters(
                input,
                output,
                options=options,
                years=parse_years(years) if years else None,
                year_pattern=year_pattern,
                band=band,
                workers=workers,
                memory_budget=memory_budget,
                compress=compress.value,
                overwrite=overwrite,
                progress=progress,
                **_executor_options(executor, scheduler, workers),
            )
        if not quiet:
            t = run.timings
            typer.echo(
                f"wrote {run.output}: {run.method} trend of {run.pixels:,} pixels over {len(run.years)} years "
                f"({format_years(run.years)}) in {t['wall']:.2f} s "
                f"({run.windows} windows, {run.workers} worker(s); summed over workers: "
                f"read {t['read']:.2f} s, fit {t['fit']:.2f} s; writing {t['write']:.2f} s)",
                err=True,
            )


@app.command(
    epilog=(
        "Examples: eetrend index L7_ETMs.tif -o ndvi.tif\n\n"
        "eetrend index scene.tif -o nbr.tif --index nbr --nir 5 --swir2 7 --executor dask --workers 4"
    ),
)
def index(
    input: Annotated[Path, typer.Argument(help="A multi-band raster (bands are spectral bands).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The index GeoTIFF to write.")],
    index: Annotated[IndexChoice, typer.Option("--index", help="The spectral index.")] = IndexChoice.ndvi,
    blue: Annotated[str | None, typer.Option(help="Blue band: number or description (default 1).")] = None,
    red: Annotated[str | None, typer.Option(help="Red band: number or description (default 3).")] = None,
    nir: Annotated[str | None, typer.Option(help="Near-infrared band (default 4).")] = None,
    swir1: Annotated[str | None, typer.Option(help="Shortwave-infrared 1 band (default 5).")] = None,
    swir2: Annotated[str | None, typer.Option(help="Shortwave-infrared 2 band (default 6).")] = None,
    scale: Annotated[float, typer.Option(help="Multiply every band by this first (e.g. 0.0000275).")] = 1.0,
    offset: Annotated[float, typer.Option(help="Then add this (e.g. -0.2 for Collection 2 reflectance).")] = 0.0,
    workers: Annotated[int, typer.Option(help="Workers; 0 means one per core, 1 runs in-process.")] = 0,
    executor: Annotated[
        ExecutorChoice, typer.Option(help="thread (fastest for band math), process, or dask (a Dask cluster).")
    ] = ExecutorChoice.thread,
    scheduler: Annotated[str | None, typer.Option(help="With --executor dask: an existing scheduler address.")] = None,
    memory_budget: Annotated[str, typer.Option(help="Memory for all workers together, e.g. 512MB.")] = "1GB",
    compress: Annotated[CompressChoice, typer.Option(help="Output compression.")] = CompressChoice.zstd,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Compute a spectral index window by window in parallel, into one GeoTIFF (no tile files).

    NDVI = (nir - red) / (nir + red); EVI = 2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1);
    NBR = (nir - swir2) / (nir + swir2); NDMI = (nir - swir1) / (nir + swir1);
    SAVI = 1.5 (nir - red) / (nir + red + 0.5). Integer bands are computed as float;
    nodata and a zero denominator give NaN.
    """
    with _errors():
        from pipeline.bandmath import index_raster

        bands = {"blue": blue, "red": red, "nir": nir, "swir1": swir1, "swir2": swir2}
        with _progress_bar("computing windows", _show_progress(quiet)) as progress:
            run = index_raster(input, output, index=index.value, bands=bands, scale=scale, offset=offset,
                               workers=workers, memory_budget=memory_budget, compress=compress.value,
                               overwrite=overwrite, progress=progress,
                               **_executor_options(executor, scheduler, workers))
        if not quiet:
            typer.echo(f"wrote {run.output}: {run.index.upper()} of {run.pixels:,} pixels "
                       f"({', '.join(f'{k} = band {v}' for k, v in run.bands.items())}) in {run.timings['wall']:.2f} s "
                       f"({run.windows} windows, {run.workers} worker(s), {run.executor})", err=True)


@app.command(
    epilog=(
        "Examples: eetrend plot trend.tif -o slope.png --band slope\n\n"
        "eetrend plot L7_ETMs.tif -o rgb.png --rgb 3,2,1"
    ),
)
def plot(
    raster: Annotated[Path, typer.Argument(help="The raster to draw.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")],
    band: Annotated[str | None, typer.Option(help="Band number or description (default: the first band).")] = None,
    rgb: Annotated[str | None, typer.Option(help="Three band numbers for a colour view, e.g. 3,2,1.")] = None,
    title: Annotated[str | None, typer.Option(help="The title (default: file, band and years).")] = None,
) -> None:
    """Draw a band as a map: slopes brown-to-green centred on zero, indices in YlGn, NaN transparent."""
    with _errors():
        from pipeline.errors import UsageError
        from pipeline.plots import plot_raster, plot_rgb

        if rgb and band:
            raise UsageError("give --band or --rgb, not both")
        if rgb:
            try:
                numbers = [int(v) for v in rgb.split(",")]
            except ValueError:
                raise UsageError(f"--rgb {rgb!r} is not three band numbers such as 3,2,1") from None
            plot_rgb(raster, output, numbers, title=title)
        else:
            plot_raster(raster, output, band=band, title=title)
        typer.echo(f"wrote {output}", err=True)


@app.command("plot-pixel", epilog="Example: eetrend plot-pixel downloads/ --xy 512345 5012345 -o pixel.png")
def plot_pixel_command(
    input: Annotated[str, typer.Argument(help="A folder of annual rasters, a quoted glob, or a multi-band file.")],
    xy: Annotated[tuple[float, float], typer.Option(help="Map coordinates X Y in the rasters' CRS.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")],
    years: Annotated[str | None, typer.Option(help="Years to use, or of each band of a multi-band file.")] = None,
    year_pattern: Annotated[str | None, typer.Option(help="Regex whose first group is the year.")] = None,
) -> None:
    """Plot one pixel's yearly values with its OLS and Sen trend lines."""
    with _errors():
        from pipeline.plots import plot_pixel
        from pipeline.years import parse_years

        found = plot_pixel(input, xy[0], xy[1], output, years=parse_years(years) if years else None,
                           year_pattern=year_pattern)
        typer.echo(f"wrote {output}: OLS slope {found['slope']:+.5g}, Sen slope {found['sen_slope']:+.5g} per year "
                   f"(row {found['row']}, col {found['col']})", err=True)


ConfigArg = Annotated[Path, typer.Argument(help="The study config (TOML); see configs/example.toml.")]


@app.command(epilog="Example: eetrend export configs/example.toml --queue-wait 600")
def export(
    config: ConfigArg,
    force: Annotated[
        bool, typer.Option(help="Accept a config change that changes exported pixels; re-export the years it affects.")
    ] = False,
    resubmit: Annotated[bool, typer.Option(help="Export cancelled and given-up years again.")] = False,
    queue_wait: Annotated[
        float, typer.Option(help="When Earth Engine's queue is full, wait up to this many seconds for room.")
    ] = 0.0,
) -> None:
    """Submit one Earth Engine export per year that has none done or running.

    Running it again submits nothing new: each submission has a fixed requestId and the
    study's manifest (SQLite, in paths.state) records every task. FAILED tasks are
    submitted again up to export.max_attempts; "Export too large" and "User memory limit
    exceeded" are never retried.
    """
    with _errors():
        from pipeline.config import load_study
        from pipeline.exports import export_study

        study = load_study(config)
        report = export_study(study, force=force, resubmit=resubmit, queue_wait=queue_wait)
        for line in report.lines():
            typer.echo(line)
        if report.failed:
            raise typer.Exit(1)


@app.command(epilog="Examples: eetrend status configs/example.toml --watch\n\neetrend status study.toml --json")
def status(
    config: ConfigArg,
    watch: Annotated[
        bool, typer.Option(help="Poll until every task has finished, with a progress bar per task.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --watch.")] = 30.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (one object per year) for scripts.")] = False,
    cached: Annotated[bool, typer.Option(help="Show the manifest as it is, without asking Earth Engine.")] = False,
) -> None:
    """Show each year's export: state, progress, attempts, elapsed time and last error."""
    with _errors():
        from pipeline.config import load_study
        from pipeline.exports import study_status
        from pipeline.status_view import print_json, print_table, watch_with_progress

        study = load_study(config)
        if watch and not cached:
            rows = watch_with_progress(study, interval=interval, show=not json_output and sys.stderr.isatty())
        else:
            rows = study_status(study, refresh_remote=not cached)
        if json_output:
            print_json(study, rows)
        else:
            print_table(study, rows)


@app.command(epilog="Example: eetrend cancel configs/example.toml --years 2001-2003")
def cancel(
    config: ConfigArg,
    years: Annotated[str | None, typer.Option(help="Years to cancel, e.g. 2001-2003; default every year.")] = None,
) -> None:
    """Cancel the study's queued and running Earth Engine tasks."""
    with _errors():
        from pipeline.config import load_study
        from pipeline.exports import cancel_study
        from pipeline.years import format_years, parse_years

        study = load_study(config)
        cancelled = cancel_study(study, parse_years(years) if years else None)
        typer.echo(f"cancelled {format_years(cancelled)}" if cancelled else "no queued or running task to cancel")


@app.command(epilog="Example: eetrend download configs/example.toml --delete-remote")
def download(
    config: ConfigArg,
    delete_remote: Annotated[
        bool | None,
        typer.Option("--delete-remote/--keep-remote", help="Delete remote files once verified (default: the config's "
                     "export.delete_remote)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download the files of every finished year, verify size and md5, and mosaic split exports.

    Files go to paths.downloads: one GeoTIFF per year, or for a year Earth Engine split
    into tiles, the tiles under parts/ and one VRT per year. A second run fetches only
    what is missing; an interrupted run resumes from the bytes on disk.
    """
    with _errors():
        from pipeline.config import load_study
        from pipeline.downloads import download_study

        study = load_study(config)
        with _byte_progress(_show_progress(quiet)) as progress:
            report = download_study(study, delete_remote=delete_remote, progress=progress)
        for line in report.lines():
            typer.echo(line)
        if report.failed:
            raise typer.Exit(1)


@contextmanager
def _byte_progress(enabled: bool):
    """A rich progress bar in bytes, or nothing when not on a terminal."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True) as progress:
        task = progress.add_task("downloading", total=None)

        def update(received: int, _file_size: int) -> None:
            progress.update(task, advance=received)

        yield update


RUN_EPILOG = (
    "Exit codes: 0 complete and up to date; 75 waiting on Earth Engine (run again later); 1 needs attention "
    "(a task failed beyond its retries, a file failed verification, a year was cancelled); 2 usage or config "
    "error; 3 another run holds the study's lock.\n\n"
    "Example (cron): eetrend run /studies/alps.toml --log-file /var/log/eetrend/alps.log"
)


@app.command(epilog=RUN_EPILOG)
def run(
    config: ConfigArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Poll Earth Engine until every year is done "
                                       "(--no-wait, the default, does what can be done now and exits).")] = False,
    timeout: Annotated[float | None, typer.Option(help="With --wait, give up waiting after this many seconds.")] = None,
    poll: Annotated[float, typer.Option(help="With --wait, seconds between checks.")] = 60.0,
    log_file: Annotated[Path | None, typer.Option(help="Also append timestamped lines to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Do everything the study needs now: export, check, download, fit, write the outputs.

    Safe to run from cron: it never submits or downloads anything twice, never overlaps
    another run of the same study, and refits only when an input changed. Outputs in
    paths.outputs: STUDY_trend.tif, STUDY_slope.png and STUDY_report.json.
    """
    with _errors(), _log_file(log_file):
        import logging

        from pipeline.config import load_study
        from pipeline.run import run_study

        study = load_study(config)
        with _byte_progress(_show_progress(quiet)) as progress:
            result = run_study(study, wait=wait, timeout=timeout, poll=poll, progress=progress)
        log = logging.getLogger("eetrend.run")
        for line in result.lines:
            typer.echo(line)
            log.info("%s: %s", study.name, line)
        log.info("%s: exit %d", study.name, result.exit_code)
        raise typer.Exit(result.exit_code)


@contextmanager
def _log_file(path: Path | None):
    """Append timestamped log lines to ``path`` for the duration of the command."""
    if path is None:
        yield
        return
    import logging

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(min(previous, logging.INFO))
    for name in ("googleapiclient", "urllib3", "google", "matplotlib", "rasterio", "httplib2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


@app.command(epilog="Example: eetrend demo eetrend-demo/")
def demo(
    folder: Annotated[Path, typer.Argument(help="Folder for the demo's config, downloads and outputs.")] = Path(
        "eetrend-demo"),
    years: Annotated[str, typer.Option(help="Years of the demo study.")] = "1995..2015",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run the whole pipeline against the built-in emulator of Earth Engine and Drive (no account needed).

    Exports one composite per year, waits for the tasks, downloads and verifies the files
    (some years split into tiles), fits the trend and writes the GeoTIFF, PNG and report,
    then compares the fitted slopes with the truth the emulator's rasters were built from.
    """
    with _errors():
        from pipeline.demo import run_demo

        typer.echo(f"eetrend demo: a {years} study against the local emulator, in {folder}/", err=True)
        with _byte_progress(_show_progress(quiet)) as progress:
            result = run_demo(folder, years=years, progress=progress)
        for line in result.run.lines:
            typer.echo(line)
        if result.run.exit_code != 0:
            raise typer.Exit(result.run.exit_code)
        outputs = result.run.outputs
        typer.echo(f"config:  {result.config}")
        typer.echo(f"trend:   {outputs['trend']}")
        typer.echo(f"picture: {outputs['png']}")
        typer.echo(f"report:  {outputs['report']}")
        typer.echo(f"against the known truth: median |fitted - true slope| = {result.median_abs_error:.5f} NDVI per "
                   f"year over {result.compared_pixels:,} pixels; sign right in {result.sign_agreement:.1%} of "
                   "pixels whose true slope is not within 0.001 of zero")


@app.command(epilog="Example: eetrend emulator --port 8765 --speed 10")
def emulator(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    speed: Annotated[float, typer.Option(help="How much faster than real time tasks run.")] = 10.0,
) -> None:
    """Run the loopback emulator of Earth Engine until Ctrl-C, to try a study config offline.

    Point a config at it with, in [earthengine]: endpoint = "<the URL printed>",
    auth = "none", project = "any-name".
    """
    import time

    from pipeline.emulator import Emulator

    with Emulator(port=port, speed=speed) as emu:
        typer.echo(f"Earth Engine emulator on {emu.url} (tasks run {speed:g}x real time); Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopped")


if __name__ == "__main__":
    app()
