"""The ``eetrend`` command line: parse, call one library function, map errors to exit codes.

Library imports happen inside the commands, so ``eetrend --help`` stays quick.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

_WORKING = threading.Event()  # set while a command's body runs inside _errors


def _signalled_outside_a_command(signum: int, _frame: object) -> None:
    """A signal before a command has begun its work (or after it ended): nothing to clean up, so one line
    and 128 + N at once. (Left alone, SIGTERM would end the program silently, and Ctrl-C would be a
    traceback during the imports or a silent 130 from Typer.) Inside a command, Ctrl-C raises as usual."""
    if signum == signal.SIGINT and _WORKING.is_set():
        raise KeyboardInterrupt
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.write(2, f"interrupted ({signal.Signals(signum).name}); nothing half-written was left under a final "
                "name\n".encode())
    os._exit(128 + signum)


if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "eetrend":  # the program, not an import by tests
    for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(_signum, _signalled_outside_a_command)

import typer  # noqa: E402 - after the handlers: importing it is most of the program's start

# GDAL's default block cache is 5 % of RAM per process; eetrend reads each block once,
# so a small cache keeps every worker's memory flat. A user's own setting wins.
os.environ.setdefault("GDAL_CACHEMAX", "64")
# eetrend runs one worker per core itself; OpenBLAS's own pool of threads would only spin
# beside them (measured: 0.2 s of a core at start-up). Set before numpy loads; a user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts) of the click Typer uses: its own vendored copy in new Typer, else click."""
    import importlib

    usage, aborts = set(), {typer.Abort}
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        usage.add(module.ClickException)
        aborts.add(getattr(module, "Abort", typer.Abort))
    return tuple(usage), tuple(aborts)


class _OneLineUsageErrors(typer.core.TyperGroup):
    """A bad option value, a missing option or an unknown command as one ``error:`` line, like eetrend's own."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        usage, aborts = _click_errors()
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except usage as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # the help was shown: nothing to add
                context = getattr(exc, "ctx", None)
                hint = f" (see {context.command_path} --help)" if context is not None else ""
                message = " ".join(exc.format_message().split())
                typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)
        except aborts:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _examples(*commands: str, before: str = "") -> str:
    """A command's epilog: ``before`` as prose, then each example command on a line of its own.

    The ``\\b`` line tells Click not to rewrap the paragraph, so a long example is never split
    across lines (help is rendered by Click itself, without rich: see ``rich_markup_mode``)."""
    label = "Example:" if len(commands) == 1 else "Examples:"
    listing = "\b\n" + label + "\n" + "\n".join(f"  {command}" for command in commands)
    return f"{before}\n\n{listing}" if before else listing


app = typer.Typer(
    cls=_OneLineUsageErrors,
    name="eetrend",
    help="Fit per-pixel trends of annual Earth Engine composites: export, download, stack and fit.",
    epilog=_examples("eetrend demo eetrend-demo/", before="Every command's --help ends with an example; the demo "
                     "runs the whole pipeline offline, against the built-in emulator."),
    # Plain Click help: the same text with or without rich installed, square brackets are text (not
    # markup), \b paragraphs keep examples whole, and --help does not import rich.
    rich_markup_mode=None,
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


class MKTestChoice(str, Enum):
    original = "original"
    hamed_rao = "hamed-rao"
    yue_wang = "yue-wang"
    prewhiten = "prewhiten"
    tfpw = "tfpw"


class FdrChoice(str, Enum):
    bh = "bh"
    by = "by"


class ChangepointChoice(str, Enum):
    pettitt = "pettitt"


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
    from pipeline.engine.dask_executor import DaskSettings
    from pipeline.engine.executors import resolve_workers
    from pipeline.errors import UsageError

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


class FormatChoice(str, Enum):
    gtiff = "gtiff"
    cog = "cog"
    netcdf = "netcdf"
    zarr = "zarr"


YEAR_PATTERN_DEFAULT = "the first 19xx or 20xx that is not part of a longer number"
FORMAT_HELP = ("gtiff; cog (Cloud-Optimized GeoTIFF with overviews); netcdf or zarr (CF conventions, for xarray; "
               "needs pip install 'eetrend[xarray]').")


def _version(value: bool) -> None:
    if value:
        from pipeline import __version__

        typer.echo(f"eetrend {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", show_default="off", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, show_default="off",
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Per-pixel trends of annual Earth Engine composites."""
    import logging

    _STATE["debug"] = debug
    level = logging.DEBUG if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the terminal; libraries that set INFO (Dask) stay quiet
            handler.setLevel(level)
    logging.getLogger("googleapiclient").setLevel(logging.ERROR)


@contextmanager
def _errors():
    """Turn eetrend's errors into one line on stderr and their exit code.

    Ctrl-C, SIGTERM and SIGHUP all end the command the same way: the cleanup of every
    ``finally`` runs, one line is printed, and the exit code is 128 + the signal's number.
    """
    from pipeline import signals
    from pipeline.errors import EetrendError

    undo = signals.install()
    _WORKING.set()
    try:
        yield
    except EetrendError as exc:
        if _STATE["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        typer.echo(f"interrupted ({signals.signal_name(exc)}); nothing half-written was left under a final name",
                   err=True)
        raise typer.Exit(signals.exit_code(exc)) from None
    finally:
        _WORKING.clear()
        undo()


def _quiet_logs(quiet: bool) -> None:
    """-q: only errors reach stderr (warnings and notes stay out of cron mail)."""
    if quiet:
        import logging

        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:  # the terminal (basicConfig's), not files or test captures
                handler.setLevel(logging.ERROR)


def _seconds(zero: str | None = None):
    """A parse-time check of an interval, timeout or wait: a finite number of seconds, more than 0, or also 0
    when ``zero`` says what 0 means. A negative or zero poll interval would be a traceback or a busy loop."""
    import math

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value) or value < 0 or (value == 0 and zero is None):
            least = "0 or more" if zero is not None else "more than 0"
            raise typer.BadParameter(f"{value:g} is not a number of seconds; give {least}"
                                     + (f" (0 {zero})" if zero is not None else ""))
        return value

    return check


WaitLock = Annotated[
    float,
    typer.Option("--wait-lock", metavar="SECONDS", callback=_seconds("does not wait"),
                 help="If another eetrend command is working on the study, wait up to this many seconds for it "
                 "instead of exiting with code 3."),
]


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


@app.command(epilog=_examples("eetrend sample ndvi/ --years 1995-2015 --size 200x150"))
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write ndvi_YYYY.tif files and truth/true_slope.tif into.")],
    years: Annotated[str, typer.Option(help="Years to write, e.g. 1995-2015 or 2000,2002,2004-2010.")] = "1995-2015",
    size: Annotated[str, typer.Option(help="Raster size as COLSxROWS.")] = "512x512",
    nan_fraction: Annotated[float, typer.Option(help="Share of values missing at random (clouds).")] = 0.05,
    noise: Annotated[float, typer.Option(help="Standard deviation of the noise, in NDVI units.")] = 0.03,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
) -> None:
    """Write synthetic annual NDVI rasters with a known trend.

    Every pixel has its own true slope (written to truth/true_slope.tif), plus noise and
    missing values, so a fit can be checked against the truth. No account needed.
    """
    with _errors():
        from pipeline.engine.sample import write_sample
        from pipeline.errors import UsageError
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


@app.command(epilog=_examples("eetrend trend ndvi/ -o trend.tif --method both",
                              "eetrend trend 'ndvi/ndvi_*.tif' -o ols.tif --years 2000-2015 --workers 2"))
def trend(
    input: Annotated[str, typer.Argument(help="A folder of annual rasters, a quoted glob, or one multi-band file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The trend file to write (GeoTIFF unless --format).")],
    method: Annotated[
        MethodChoice, typer.Option(help="ols: least squares; sen: Sen's slope + Mann-Kendall; both.")
    ] = MethodChoice.ols,
    years: Annotated[
        str | None,
        typer.Option(
            show_default="every year found in file names or band descriptions",
            help="Years to use (e.g. 2000-2020); for a multi-band file without years in its band "
            "descriptions, the year of each band in order."
        ),
    ] = None,
    year_pattern: Annotated[
        str | None, typer.Option(show_default=YEAR_PATTERN_DEFAULT,
                                 help="Regular expression whose first group is the year in each file name.")
    ] = None,
    band: Annotated[int, typer.Option(help="Band to read from each annual file.")] = 1,
    min_years: Annotated[int, typer.Option(min=2, help="Pixels with fewer valid years are NaN (a p-value "
                                                       "needs more: see README).")] = 3,
    alpha: Annotated[float, typer.Option(help="Significance level of the trend_class band.")] = 0.05,
    confidence: Annotated[float, typer.Option(help="Confidence level of Sen's slope interval.")] = 0.95,
    workers: Annotated[int, typer.Option(min=0, help="Workers; 0 means one per core, 1 runs in the main "
                                                 "thread.")] = 0,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", show_default="off",
                                        help="Print only errors (no bar, no summary).")] = False,
    executor: Annotated[
        ExecutorChoice,
        typer.Option(
            help="thread (a pool of threads sharing one interpreter: the default, as fast as processes and "
            "lighter), process (a local process pool), or dask (a Dask cluster)."
        ),
    ] = ExecutorChoice.thread,
    format: Annotated[FormatChoice, typer.Option("--format", help=FORMAT_HELP)] = FormatChoice.gtiff,
    scheduler: Annotated[
        str | None,
        typer.Option(show_default="a local cluster",
                     help="With --executor dask: the address of an existing scheduler, e.g. tcp://host:8786."),
    ] = None,
    mk_test: Annotated[
        MKTestChoice, typer.Option(help="Mann-Kendall test of the mk_* bands; the modified ones correct for "
                                        "autocorrelation (see README: Which test should I use?).")
    ] = MKTestChoice.original,
    fdr: Annotated[
        FdrChoice | None, typer.Option(show_default="no adjustment",
                                       help="Adjust p-values over the whole map: bh (Benjamini-Hochberg) or by "
                                            "(Benjamini-Yekutieli); adds p_fdr and trend_class_fdr.")
    ] = None,
    fdr_q: Annotated[float, typer.Option(help="False discovery rate of trend_class_fdr.")] = 0.05,
    changepoint: Annotated[
        ChangepointChoice | None, typer.Option(show_default="none",
                                               help="pettitt: add cp_year (last year before the change) and cp_p.")
    ] = None,
    breaks: Annotated[
        int, typer.Option(help="Trends with breaks: at most this many breaks per pixel, found as strucchange finds "
                               "them (see README: Trends with breaks); 0 adds none.")
    ] = 0,
    min_segment: Annotated[
        float, typer.Option(help="With --breaks: the shortest segment, as a share of each pixel's valid years.")
    ] = 0.15,
    min_fraction: Annotated[
        float, typer.Option(help="A pixel needs valid values in at least this share of the years (0-1).")
    ] = 0.0,
    edge_years: Annotated[
        int | None, typer.Option(min=0, show_default="no limit",
                                 help="A pixel's first and last valid years must be within this many years "
                                      "of the study's first and last.")
    ] = None,
    count_band: Annotated[
        int | None, typer.Option(min=1, show_default="none",
                                 help="Band of each annual file holding its clear-scene count (2 for eetrend's "
                                      "exports); adds obs_mean and obs_slope.")
    ] = None,
    min_count: Annotated[
        int, typer.Option(min=0, help="A year with fewer clear scenes than this is missing for that pixel.")
    ] = 0,
    dtype_scale: Annotated[
        list[str] | None,
        typer.Option(metavar="DTYPE=SCALE[:OFFSET]", show_default="every file as stored",
                     help="For inputs of mixed data types: read files of DTYPE as stored x SCALE + OFFSET, "
                     "e.g. int16=0.0001 (NDVI x 10000 among float files); repeatable."),
    ] = None,
) -> None:
    """Fit the trend of every pixel of an annual stack of rasters.

    Writes one multi-band GeoTIFF (or --format). Bands: slope, intercept, rvalue, pvalue, stderr,
    intercept_stderr (ols); sen_slope, sen_intercept, sen_low, sen_high, mk_s, mk_var_s, mk_z, mk_p,
    mk_tau (sen); then n and trend_class; then cp_year, cp_p (--changepoint), mosum_p, bp_count,
    bpK_year, segK_slope, segK_p, change_type (--breaks), obs_mean, obs_slope (--count-band), p_fdr,
    trend_class_fdr (--fdr).
    """
    with _errors():
        from pipeline.engine.stack import parse_dtype_scale
        from pipeline.engine.trend import FitOptions, trend_rasters
        from pipeline.years import format_years, parse_years

        _quiet_logs(quiet)
        options = FitOptions(method=method.value, min_years=min_years, confidence=confidence, alpha=alpha,
                             mk_test=mk_test.value, fdr=fdr.value if fdr else None, fdr_q=fdr_q,
                             changepoint=changepoint.value if changepoint else None, min_fraction=min_fraction,
                             edge_years=edge_years, count_band=count_band, min_count=min_count, breaks=breaks,
                             min_segment=min_segment)
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
                format=format.value,
                dtype_scale=parse_dtype_scale(dtype_scale or []),
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
            if run.fdr:
                typer.echo(f"{run.fdr['method']} at q={run.fdr['q']}: {int(run.fdr['significant']):,} of "
                           f"{int(run.fdr['tests']):,} fitted pixels significant ({t['fdr']:.2f} s)", err=True)


@app.command(epilog=_examples("eetrend index L7_ETMs.tif -o ndvi.tif",
                              "eetrend index L7_ETMs.tif -o nbr.tif --index nbr --workers 2"))
def index(
    input: Annotated[Path, typer.Argument(help="A multi-band raster (bands are spectral bands).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The index file to write (GeoTIFF unless --format).")],
    index: Annotated[IndexChoice, typer.Option("--index", help="The spectral index.")] = IndexChoice.ndvi,
    blue: Annotated[str | None, typer.Option(show_default="band 1",
                                                   help="Blue band: number or description.")] = None,
    red: Annotated[str | None, typer.Option(show_default="band 3",
                                                   help="Red band: number or description.")] = None,
    nir: Annotated[str | None, typer.Option(show_default="band 4",
                                                   help="Near-infrared band.")] = None,
    swir1: Annotated[str | None, typer.Option(show_default="band 5",
                                                   help="Shortwave-infrared 1 band.")] = None,
    swir2: Annotated[str | None, typer.Option(show_default="band 6",
                                                   help="Shortwave-infrared 2 band.")] = None,
    scale: Annotated[float, typer.Option(help="Multiply every band by this first (e.g. 0.0000275).")] = 1.0,
    offset: Annotated[float, typer.Option(help="Then add this (e.g. -0.2 for Collection 2 reflectance).")] = 0.0,
    workers: Annotated[int, typer.Option(min=0, help="Workers; 0 means one per core, 1 runs in-process.")] = 0,
    executor: Annotated[
        ExecutorChoice, typer.Option(help="thread (fastest for band math), process, or dask (a Dask cluster).")
    ] = ExecutorChoice.thread,
    scheduler: Annotated[str | None, typer.Option(show_default="a local cluster", help="With --executor dask: the "
                                                  "address of an existing scheduler.")] = None,
    memory_budget: Annotated[str, typer.Option(help="Memory for all workers together, e.g. 512MB.")] = "1GB",
    compress: Annotated[CompressChoice, typer.Option(help="Output compression.")] = CompressChoice.zstd,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", show_default="off",
                                        help="Print only errors (no bar, no summary).")] = False,
    format: Annotated[FormatChoice, typer.Option("--format", help=FORMAT_HELP)] = FormatChoice.gtiff,
) -> None:
    """Compute a spectral index of a multi-band raster, in parallel.

    Window by window, into one GeoTIFF (no tile files). Integer bands are computed as
    float; nodata and a zero denominator give NaN.

    \b
    NDVI = (nir - red) / (nir + red)
    EVI  = 2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1)
    NBR  = (nir - swir2) / (nir + swir2)
    NDMI = (nir - swir1) / (nir + swir1)
    SAVI = 1.5 (nir - red) / (nir + red + 0.5)
    """
    with _errors():
        from pipeline.engine.bandmath import index_raster

        _quiet_logs(quiet)
        bands = {"blue": blue, "red": red, "nir": nir, "swir1": swir1, "swir2": swir2}
        with _progress_bar("computing windows", _show_progress(quiet)) as progress:
            run = index_raster(input, output, index=index.value, bands=bands, scale=scale, offset=offset,
                               workers=workers, memory_budget=memory_budget, compress=compress.value,
                               overwrite=overwrite, progress=progress, format=format.value,
                               **_executor_options(executor, scheduler, workers))
        if not quiet:
            typer.echo(f"wrote {run.output}: {run.index.upper()} of {run.pixels:,} pixels "
                       f"({', '.join(f'{k} = band {v}' for k, v in run.bands.items())}) in {run.timings['wall']:.2f} s "
                       f"({run.windows} windows, {run.workers} worker(s), {run.executor})", err=True)


@app.command(epilog=_examples("eetrend plot trend.tif -o slope.png --band slope",
                              "eetrend plot trend.tif -o sen.png --band sen_slope --significant-only",
                              "eetrend plot L7_ETMs.tif -o rgb.png --rgb 3,2,1"))
def plot(
    raster: Annotated[Path, typer.Argument(help="The raster to draw.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")],
    band: Annotated[str | None, typer.Option(show_default="the first band",
                                             help="Band number or description.")] = None,
    rgb: Annotated[str | None, typer.Option(metavar="R,G,B", show_default="one band, not a colour view",
                                            help="Three band numbers for a colour view, e.g. 3,2,1.")] = None,
    title: Annotated[str | None, typer.Option(show_default="file, band and years", help="The title.")] = None,
    significant_only: Annotated[bool, typer.Option(
        help="Fade pixels whose trend is not significant (FDR-adjusted where the file has p_fdr).")] = False,
    alpha: Annotated[float | None, typer.Option(
        show_default="the file's own alpha", help="With --significant-only: the significance level.")] = None,
    fade: Annotated[float, typer.Option(
        help="With --significant-only: opacity of non-significant pixels (0 hides them).")] = 0.25,
) -> None:
    """Draw a band of a raster as a PNG map.

    Slopes brown-to-green centred on zero, indices in YlGn, NaN transparent. Axes are in map
    coordinates (easting/northing or longitude/latitude) with a scale bar.
    """
    with _errors():
        from pipeline.errors import UsageError
        from pipeline.reporting.plots import plot_raster, plot_rgb

        if rgb and band:
            raise UsageError("give --band or --rgb, not both")
        if rgb and significant_only:
            raise UsageError("--significant-only draws a trend band; it does not apply to --rgb")
        if rgb:
            try:
                numbers = [int(v) for v in rgb.split(",")]
            except ValueError:
                raise UsageError(f"--rgb {rgb!r} is not three band numbers such as 3,2,1") from None
            plot_rgb(raster, output, numbers, title=title)
        else:
            plot_raster(raster, output, band=band, title=title, significant_only=significant_only, alpha=alpha,
                        fade=fade)
        typer.echo(f"wrote {output}", err=True)


@app.command(epilog=_examples("eetrend report study.toml", "eetrend report trend.tif -o trend.html --inputs ndvi/"))
def report(
    target: Annotated[Path, typer.Argument(help="A study config (.toml) or a trend GeoTIFF.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", show_default="STUDY_report.html in the study's outputs, or TREND_report.html beside "
        "TREND.tif", help="The HTML file to write.")] = None,
    inputs: Annotated[str | None, typer.Option(
        show_default="the inputs the trend file lists", help="For a trend file: its annual inputs (folder, glob or "
        "multi-band file), if the file does not list them.")] = None,
    memory_budget: Annotated[str, typer.Option(help="Memory for reading rasters, e.g. 256MB.")] = "256MB",
) -> None:
    """Write a self-contained HTML report of a study or a trend file.

    Map, areas, regional series, observations and provenance. Every picture is embedded; the page
    needs no network access and runs no script.
    """
    with _errors():
        from pipeline.engine.windows import parse_memory
        from pipeline.errors import UsageError
        from pipeline.reporting.report import report_study, report_trend

        budget = parse_memory(memory_budget)
        if target.suffix.lower() == ".toml":
            from pipeline.config import load_study

            if inputs:
                raise UsageError("--inputs is for a trend file; a study's inputs come from its manifest")
            written = report_study(load_study(target), output, memory_budget=budget)
        else:
            written = report_trend(target, output, inputs=inputs, memory_budget=budget)
        typer.echo(f"wrote {written}")


@app.command("plot-pixel", epilog=_examples("eetrend plot-pixel ndvi/ --xy 503000 4997000 -o pixel.png"))
def plot_pixel_command(
    input: Annotated[str, typer.Argument(help="A folder of annual rasters, a quoted glob, or a multi-band file.")],
    xy: Annotated[tuple[float, float], typer.Option(metavar="X Y", help="Map coordinates X Y in the rasters' CRS.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PNG to write.")],
    years: Annotated[str | None, typer.Option(show_default="every year found in file names or band descriptions",
                                              help="Years to use, or of each band of a multi-band file.")] = None,
    year_pattern: Annotated[str | None, typer.Option(show_default=YEAR_PATTERN_DEFAULT,
                                                     help="Regex whose first group is the year.")] = None,
    count_band: Annotated[
        int | None, typer.Option(min=1, show_default="none",
                                 help="Band holding the clear-scene counts (2 for eetrend's exports): drawn "
                                      "as bars under the series.")
    ] = None,
    dtype_scale: Annotated[
        list[str] | None, typer.Option(metavar="DTYPE=SCALE[:OFFSET]", show_default="every file as stored",
                                       help="For inputs of mixed data types, as for trend; repeatable.")
    ] = None,
    breaks: Annotated[
        int, typer.Option(help="Draw the segments and breaks of a trend with at most this many breaks, as "
                               "trend --breaks finds them; 0 draws none.")
    ] = 0,
    min_segment: Annotated[float, typer.Option(help="With --breaks: the shortest segment, as for trend.")] = 0.15,
    alpha: Annotated[float, typer.Option(help="With --breaks: the OLS-MOSUM test's level, as for trend.")] = 0.05,
) -> None:
    """Plot one pixel's yearly values and its OLS and Sen trends.

    Writes a PNG of the series with both trend lines (and its segments, with --breaks), and
    prints both slopes.
    """
    with _errors():
        from pipeline.engine.stack import parse_dtype_scale
        from pipeline.reporting.plots import plot_pixel
        from pipeline.years import parse_years

        found = plot_pixel(input, xy[0], xy[1], output, years=parse_years(years) if years else None,
                           year_pattern=year_pattern, count_band=count_band,
                           dtype_scale=parse_dtype_scale(dtype_scale or []), breaks=breaks, min_segment=min_segment,
                           alpha=alpha)
        typer.echo(f"wrote {output}: OLS slope {found['slope']:+.5g}, Sen slope {found['sen_slope']:+.5g} per year "
                   f"(row {found['row']}, col {found['col']})", err=True)
        if breaks and found["bp_count"] == found["bp_count"]:
            years_found = ", ".join(f"{found[f'bp{i}_year']:.0f}" for i in range(1, int(found["bp_count"]) + 1))
            typer.echo(f"{int(found['bp_count'])} break(s)" + (f", after {years_found}" if years_found else "")
                       + f" (OLS-MOSUM p={found['mosum_p']:.3g})", err=True)


ConfigArg = Annotated[Path, typer.Argument(help="The study config (TOML); see configs/example.toml.")]


@app.command(epilog=_examples("eetrend check study.toml"))
def check(config: ConfigArg) -> None:
    """Check a study config without sending any request.

    One line per problem, exit 2 if any. Checks the keys and values, every year against the sensors
    that flew, the fit options against the method and the composite, the region, the folders, the
    credentials files, the function file's syntax, the packages an output format needs and the
    notification secrets' variables. export, run and download make the same checks before their
    first request.
    """
    with _errors():
        from pipeline.checks import config_problems, study_problems

        study, problems = config_problems(config)
        if study is not None:
            problems = [f"{study.source}: {problem}" for problem in study_problems(study)]
        for problem in problems:
            typer.echo(f"error: {problem}", err=True)
        if problems:
            raise typer.Exit(2)
        from pipeline.years import format_years

        typer.echo(f"{study.source}: no problem found ({len(study.years)} years, {format_years(study.years)}; "
                   f"{study.config.composite.title}); nothing was sent to Earth Engine")
        for year in sorted(study.later):
            typer.echo(study.later_note(year))


@app.command(epilog=_examples("eetrend export study.toml --queue-wait 600"))
def export(
    config: ConfigArg,
    force: Annotated[
        bool, typer.Option(help="Accept a config change that changes exported pixels; re-export the years it affects.")
    ] = False,
    resubmit: Annotated[bool, typer.Option(help="Export cancelled and given-up years again.")] = False,
    queue_wait: Annotated[
        float, typer.Option(callback=_seconds("does not wait"),
                            help="When Earth Engine's queue is full, wait up to this many seconds for room "
                                 "(0 does not wait).")
    ] = 0.0,
    redo: Annotated[
        str | None, typer.Option(show_default="none",
                                 help="Export these years again on purpose (e.g. 2012 or 2001-2003,2012); a live "
                                      "task is cancelled first and their downloads are forgotten.")
    ] = None,
    wait_lock: WaitLock = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", show_default="off", help="Print only errors.")] = False,
) -> None:
    """Submit an Earth Engine export for each year that needs one.

    That is, each year with no export done or running. Running it again submits nothing new: each
    submission has a fixed requestId and the study's manifest (SQLite, in paths.state) records every
    task. FAILED tasks are submitted again up to export.max_attempts; "Export too large" and "User
    memory limit exceeded" are never retried. With export.destination = "direct" there is no task to
    submit: it says how many computePixels requests download (or run) will make.
    """
    with _errors():
        from pipeline.config import load_study
        from pipeline.earthengine.exports import export_study
        from pipeline.lock import waiting_for_lock
        from pipeline.years import parse_years

        study = load_study(config)
        _quiet_logs(quiet)
        with waiting_for_lock(wait_lock):
            report = export_study(study, force=force, resubmit=resubmit, queue_wait=queue_wait,
                                  redo=parse_years(redo) if redo else None)
        if quiet:
            for year, message in sorted(report.failed.items()):
                typer.echo(f"{year} failed: {message}", err=True)
        else:
            for line in report.lines():
                typer.echo(line)
        if report.failed:
            raise typer.Exit(1)


@app.command(epilog=_examples("eetrend status study.toml", "eetrend status study.toml --json --cached"))
def status(
    config: ConfigArg,
    watch: Annotated[
        bool, typer.Option(help="Poll until every task has finished, with a progress bar per task.")
    ] = False,
    interval: Annotated[float, typer.Option(callback=_seconds(), help="Seconds between polls with --watch.")] = 30.0,
    json_output: Annotated[bool, typer.Option("--json", show_default="off",
                                              help="Print JSON (one object per year) for scripts.")] = False,
    cached: Annotated[bool, typer.Option(help="Show the manifest as it is, without asking Earth Engine.")] = False,
) -> None:
    """Show the state of each year's export.

    A table of each year's state, progress, attempts, elapsed time and last error (or JSON).
    """
    with _errors():
        from pipeline.config import load_study
        from pipeline.earthengine.exports import study_status
        from pipeline.earthengine.status_view import print_json, print_table, watch_with_progress

        study = load_study(config)
        if watch and not cached:
            rows = watch_with_progress(study, interval=interval, show=not json_output and sys.stderr.isatty())
        else:
            rows = study_status(study, refresh_remote=not cached)
        if json_output:
            print_json(study, rows)
        else:
            print_table(study, rows)


@app.command(epilog=_examples("eetrend cancel study.toml --years 2001-2003"))
def cancel(
    config: ConfigArg,
    years: Annotated[str | None, typer.Option(show_default="every year",
                                              help="Years to cancel, e.g. 2001-2003.")] = None,
    wait_lock: WaitLock = 0.0,
) -> None:
    """Cancel the study's queued and running Earth Engine tasks."""
    with _errors():
        from pipeline.config import load_study
        from pipeline.earthengine.exports import cancel_study
        from pipeline.lock import waiting_for_lock
        from pipeline.years import format_years, parse_years

        study = load_study(config)
        with waiting_for_lock(wait_lock):
            cancelled = cancel_study(study, parse_years(years) if years else None)
        typer.echo(f"cancelled {format_years(cancelled)}" if cancelled else "no queued or running task to cancel")


@app.command(epilog=_examples("eetrend download study.toml --delete-remote"))
def download(
    config: ConfigArg,
    delete_remote: Annotated[
        bool | None,
        typer.Option("--delete-remote/--keep-remote", show_default="the config's export.delete_remote",
                     help="Delete remote files once verified, or keep them."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", show_default="off", help="Print only errors.")] = False,
    wait_lock: WaitLock = 0.0,
) -> None:
    """Download and verify the files of every finished year.

    Each file's size and md5 are checked, and split exports are mosaicked. Files go to
    paths.downloads: one GeoTIFF per year, or for a year Earth Engine split into tiles, the tiles
    under parts/ and one VRT per year. A second run fetches only what is missing; an interrupted run
    resumes from the bytes on disk. With export.destination = "direct", each year is fetched as
    computePixels tiles instead (no export task); an interrupted run asks only for the tiles not yet
    in.
    """
    with _errors():
        from pipeline.config import load_study
        from pipeline.earthengine.downloads import download_study
        from pipeline.lock import waiting_for_lock

        _quiet_logs(quiet)
        study = load_study(config)
        with waiting_for_lock(wait_lock), _fetch_progress(study, _show_progress(quiet)) as (progress, tiles):
            report = download_study(study, delete_remote=delete_remote, progress=progress, tile_progress=tiles)
        if quiet:
            for year, message in sorted(report.failed.items()):
                typer.echo(f"{year} failed: {message}", err=True)
        else:
            for line in report.lines():
                typer.echo(line)
        if report.failed:
            raise typer.Exit(1)


@app.command(epilog=_examples("eetrend verify study.toml"))
def verify(config: ConfigArg) -> None:
    """Check the study's downloaded files against their verified md5.

    Every file is hashed again and compared with the md5 verified at download. Exit code 0: every
    file is intact; 1: a file changed or is missing (each is named, with the fix: a run fetches it
    again, or, when its remote copy was deleted, export --redo YEAR). Reads only; it changes no file
    and no record.
    """
    with _errors():
        from pipeline.config import load_study
        from pipeline.earthengine.integrity import verify_study

        report = verify_study(load_study(config))
        for line in report.lines():
            typer.echo(line, err=report.damaged and not line.startswith("verified"))
        if report.damaged:
            raise typer.Exit(1)


@contextmanager
def _fetch_progress(study, enabled: bool):
    """(byte progress, tile progress) for download and run: a byte bar for exports, a tile bar for the direct
    route (``export.destination = "direct"``); each None when not shown."""
    direct = study.config.export.destination == "direct"
    with _byte_progress(enabled and not direct) as received, _progress_bar("tiles", enabled and direct) as tiles:
        yield received, tiles


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


RUN_EPILOG = _examples(
    "eetrend run study.toml -q --log-file study.log",
    before="Exit codes: 0 complete and up to date; 75 waiting on Earth Engine (run again later); 1 needs attention "
    "(a task failed beyond its retries, a file failed verification, a year was cancelled); 2 usage or config "
    "error; 3 another run holds the study's lock. From cron, -q keeps mail for the runs that need attention.",
)


@app.command(epilog=RUN_EPILOG)
def run(
    config: ConfigArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Poll Earth Engine until every year is done; "
                                       "--no-wait does what can be done now and exits.")] = False,
    timeout: Annotated[float | None, typer.Option(callback=_seconds(), show_default="no limit",
                                                  help="With --wait, give up waiting after this many "
                                                  "seconds.")] = None,
    poll: Annotated[float, typer.Option(callback=_seconds(), help="With --wait, seconds between checks.")] = 60.0,
    log_file: Annotated[
        Path | None, typer.Option(show_default="none",
                                  help="Also append timestamped lines to this file (each line once).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", show_default="off",
                           help="Print only errors (for cron: no mail when all is well).")
    ] = False,
    wait_lock: WaitLock = 0.0,
    notify: Annotated[list[str] | None, typer.Option(
        "--notify", metavar="URL", show_default="none",
        help="Also post to this ntfy topic when the run writes new outputs or needs "
        "attention (exit 0 after a refit, or 1); repeatable. More transports: the notify table, see "
        "configs/example.toml.")] = None,
) -> None:
    """Do everything the study needs now, from export to outputs.

    Exports, checks, downloads, fits and writes the outputs. Safe to run from cron: it never submits
    or downloads anything twice, never overlaps another run of the same study, and refits only when
    an input changed. Outputs in paths.outputs: STUDY_trend.tif, STUDY_slope.png, STUDY_report.json
    and STUDY_report.html.
    """
    with _errors(), _log_file(log_file):
        import logging

        from pipeline.config import load_study
        from pipeline.lock import waiting_for_lock
        from pipeline.reporting.notify import notifying
        from pipeline.run import run_study

        _quiet_logs(quiet)
        study = load_study(config)
        with (
            waiting_for_lock(wait_lock),
            _fetch_progress(study, _show_progress(quiet)) as (progress, tiles),
            notifying(study, notify or ()) as notify_result,
        ):
            result = run_study(study, wait=wait, timeout=timeout, poll=poll, progress=progress, tile_progress=tiles)
            notify_result(result)
        log = logging.getLogger("eetrend.run")
        for line in result.lines:
            problem = line in result.problems
            if problem or not quiet:
                typer.echo(line, err=quiet)
            if log_file is not None:
                log.log(logging.ERROR if problem else logging.INFO, "%s: %s", study.name, line,
                        extra={"eetrend_file_only": True})
        if log_file is not None:
            log.info("%s: exit %d", study.name, result.exit_code, extra={"eetrend_file_only": True})
        raise typer.Exit(result.exit_code)


class _NotFileOnly:
    """A logging filter for the terminal: records the command already printed itself go to the log file only."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def filter(self, record) -> bool:
        return record.levelno >= self.threshold and not getattr(record, "eetrend_file_only", False)


@contextmanager
def _log_file(path: Path | None):
    """Append timestamped log lines to ``path`` for the duration of the command, each line once.

    The root logger is opened to INFO for the file; the terminal's handlers keep showing
    only what they showed before (warnings), so nothing is echoed twice to stderr. The
    error line that ends a command goes to the file too.
    """
    if path is None:
        yield
        return
    import logging

    from pipeline import signals
    from pipeline.errors import EetrendError
    from pipeline.files.diskio import log_file_handler

    handler = log_file_handler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous = root.level
    terminal = [h for h in root.handlers if type(h) is logging.StreamHandler]
    guards = [_NotFileOnly(max(previous, h.level, logging.DEBUG)) for h in terminal]
    for h, guard in zip(terminal, guards, strict=True):
        h.addFilter(guard)
    root.addHandler(handler)
    root.setLevel(min(previous, logging.INFO))
    for name in ("googleapiclient", "urllib3", "google", "matplotlib", "rasterio", "httplib2", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cli_log = logging.getLogger("eetrend.cli")
    try:
        yield
    except EetrendError as exc:
        handler.handle(cli_log.makeRecord(cli_log.name, logging.ERROR, __file__, 0, "error: %s (exit %d)",
                                          (exc, exc.exit_code), None))
        raise
    except KeyboardInterrupt as exc:
        handler.handle(cli_log.makeRecord(cli_log.name, logging.ERROR, __file__, 0, "interrupted (%s), exit %d",
                                          (signals.signal_name(exc), signals.exit_code(exc)), None))
        raise
    finally:
        root.removeHandler(handler)
        for h, guard in zip(terminal, guards, strict=True):
            h.removeFilter(guard)
        root.setLevel(previous)
        handler.close()


@app.command(epilog=_examples("eetrend demo eetrend-demo/ --years 2000..2010"))
def demo(
    folder: Annotated[Path, typer.Argument(help="Folder for the demo's config, downloads and outputs.")] = Path(
        "eetrend-demo"),
    years: Annotated[str, typer.Option(help="Years of the demo study.")] = "1995..2015",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", show_default="off", help="No progress bars.")] = False,
) -> None:
    """Run the whole pipeline offline, against the built-in emulator.

    No account needed: the emulator stands in for Earth Engine and Drive. Exports one composite per
    year, waits for the tasks, downloads and verifies the files (some years split into tiles), fits
    the trend and writes the GeoTIFF, PNG and report, then compares the fitted slopes with the truth
    the emulator's rasters were built from.
    """
    with _errors():
        from pipeline.demo import run_demo

        typer.echo(f"eetrend demo: a {years} study against the local emulator, in {folder}/")
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
        typer.echo(f"page:    {outputs.get('html', 'not written (see above)')}")
        typer.echo(f"against the known truth: median |fitted - true slope| = {result.median_abs_error:.5f} NDVI per "
                   f"year over {result.compared_pixels:,} pixels; sign right in {result.sign_agreement:.1%} of "
                   "pixels whose true slope is not within 0.001 of zero")


@app.command(epilog=_examples(
    "eetrend emulator --port 8765 --speed 10",
    "eetrend emulator --fail-tasks 2003:2 --http-errors 503:4 --media-fault corrupt:2005",
    "eetrend emulator --fail-pixels-above 200000 --http-errors 429:3:computePixels",
    "eetrend emulator --asset projects/my-project/assets/annual_ndvi:2000..2020:NDVI",
))
def emulator(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    speed: Annotated[float, typer.Option(min=0.001, help="How much faster than real time tasks run.")] = 10.0,
    http_errors: Annotated[list[str] | None, typer.Option(
        "--http-errors", metavar="STATUS:TIMES[:PATH_REGEX]",
        show_default="none",
        help="Answer the next TIMES requests (matching the path regex) with STATUS, e.g. 429:5 or 503:3:/drive/. "
             "Repeatable.")] = None,
    fail_tasks: Annotated[list[str] | None, typer.Option(
        "--fail-tasks", metavar="MATCH[:TIMES[:MESSAGE]]",
        show_default="none",
        help="The next TIMES tasks whose description contains MATCH (a year) end FAILED with MESSAGE, e.g. 2003 or "
             "'2003:1:User memory limit exceeded.'. Repeatable.")] = None,
    queue_limit: Annotated[int | None, typer.Option(min=1, show_default="no limit",
        help="At most this many tasks queued or running; more are refused as 'Too many tasks already in the "
             "queue'.")] = None,
    media_fault: Annotated[list[str] | None, typer.Option(
        "--media-fault", metavar="KIND:MATCH[:TIMES]",
        show_default="none",
        help="Spoil the next TIMES downloads of files whose name contains MATCH; KIND is truncate, corrupt, "
             "no_content_range or drop. Repeatable.")] = None,
    slow_media: Annotated[float, typer.Option(callback=_seconds("does not wait"), help="Seconds to wait before "
                                              "every download answer (each chunk).")] = 0.0,
    duplicate_folder: Annotated[list[str] | None, typer.Option(
        "--duplicate-folder", metavar="NAME[:COUNT]",
        show_default="none",
        help="COUNT more Drive folders with this name (Drive allows duplicates). Repeatable.")] = None,
    slow_pixels: Annotated[float, typer.Option(help="Seconds to wait before every computePixels answer.")] = 0.0,
    fail_pixels_above: Annotated[int | None, typer.Option(
        metavar="N", show_default="no limit",
        help="computePixels requests over N pixels answer 'User memory limit exceeded.' (the direct "
                          "route splits them).")] = None,
    asset: Annotated[list[str] | None, typer.Option(
        "--asset", metavar="ID:YEARS:BAND",
        show_default="none",
        help="An ImageCollection asset of one image per year with band BAND, for [composite] collection, e.g. "
             "projects/my-project/assets/annual_ndvi:2000..2020:NDVI (a year listed twice gets two images). "
             "Repeatable.")] = None,
) -> None:
    """Emulate Earth Engine, Drive and Cloud Storage on this machine.

    It serves on 127.0.0.1 until Ctrl-C, to try a study offline. Point a config at it with, in its
    earthengine table: endpoint = "<the URL printed>", auth = "none", project = "any-name". The
    fault flags rehearse a study's failure modes (rate limits and outages, failed tasks, a full
    queue, damaged or slow downloads, duplicate folders) with the same faults the test suite
    injects.
    """
    with _errors():
        import time

        from pipeline.emulator import Emulator
        from pipeline.emulator.assets import AssetSpecError, parse_asset_spec
        from pipeline.emulator.faults import FaultPlan, FaultSpecError
        from pipeline.errors import UsageError

        try:
            plan = FaultPlan.parse(http_errors=http_errors or (), fail_tasks=fail_tasks or (), queue_limit=queue_limit,
                                   media_faults=media_fault or (), slow_media=slow_media,
                                   duplicate_folders=duplicate_folder or (), slow_pixels=slow_pixels,
                                   fail_pixels_above=fail_pixels_above)
            collections = [parse_asset_spec(spec) for spec in asset or ()]
        except (FaultSpecError, AssetSpecError) as exc:
            raise UsageError(str(exc)) from None
        with Emulator(port=port, speed=speed) as emu:
            plan.apply(emu)
            for asset_id, years, band in collections:
                emu.earthengine.assets.add_collection(asset_id, years, band)
            typer.echo(f"Earth Engine emulator on {emu.url} (tasks run {speed:g}x real time); Ctrl-C stops it")
            for line in plan.describe():
                typer.echo(f"  fault: {line}")
            for asset_id, years, band in collections:
                typer.echo(f"  asset: {asset_id}, {len(years)} image(s) with band {band}")
            while True:  # Ctrl-C, SIGTERM or SIGHUP end it: one line, exit 128 + the signal
                time.sleep(3600)


def program() -> None:
    """The ``eetrend`` program: run the app, then leave without tearing the interpreter down.

    Python's teardown frees every module one by one (about 0.06 s once numpy, GDAL and
    scipy are loaded) for nothing: the process is ending. Once the command has returned,
    every output is closed, synced and renamed; the exit handlers still run (logging's
    flush, temporary folders, worker pools) and the standard streams are flushed. While a
    thread that is not a daemon still runs, Python's own exit waits for it as usual.
    """
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    program()
