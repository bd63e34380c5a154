"""The command line through Typer's CliRunner: exit codes, one-line errors, outputs reopened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_sample_then_trend(tmp_path) -> None:
    folder = tmp_path / "demo"
    result = _run("sample", str(folder), "--size", "64x48", "--years", "2000-2010", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert len(list(folder.glob("ndvi_*.tif"))) == 11 and (folder / "truth" / "true_slope.tif").exists()
    out = tmp_path / "trend.tif"
    result = _run("trend", str(folder), "-o", str(out), "--method", "both", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "11 years (2000-2010)" in result.output
    with rasterio.open(out) as ds:
        assert ds.count == 17 and ds.descriptions[0] == "slope" and ds.descriptions[-1] == "trend_class"
        assert ds.width == 64 and ds.height == 48
        assert np.isfinite(ds.read(1)).mean() > 0.95


def test_quiet_prints_nothing(tmp_path) -> None:
    folder = tmp_path / "demo"
    _run("sample", str(folder), "--size", "16x16", "--years", "2000-2005")
    result = _run("trend", str(folder), "-o", str(tmp_path / "t.tif"), "-q")
    assert result.exit_code == 0 and result.output == ""


def test_errors_are_one_line_with_exit_code(tmp_path) -> None:
    folder = tmp_path / "demo"
    _run("sample", str(folder), "--size", "16x16", "--years", "2000-2005")
    out = tmp_path / "t.tif"
    assert _run("trend", str(folder), "-o", str(out)).exit_code == 0

    again = _run("trend", str(folder), "-o", str(out))
    assert again.exit_code == 2
    assert again.output.strip().count("\n") == 0
    assert again.output.startswith("error: ") and "--overwrite" in again.output
    assert "Traceback" not in again.output

    missing = _run("trend", str(tmp_path / "nope"), "-o", str(tmp_path / "x.tif"))
    assert missing.exit_code == 1 and "does not exist" in missing.output

    too_few = _run("trend", str(folder), "-o", str(tmp_path / "y.tif"), "--years", "2000-2001")
    assert too_few.exit_code == 1 and "--min-years is 3" in too_few.output
    assert not (tmp_path / "y.tif").exists()

    bad_years = _run("trend", str(folder), "-o", str(tmp_path / "y.tif"), "--years", "20x0")
    assert bad_years.exit_code == 2 and "cannot read '20x0' as a year" in bad_years.output

    bad_budget = _run("trend", str(folder), "-o", str(tmp_path / "y.tif"), "--memory-budget", "much")
    assert bad_budget.exit_code == 2 and "512MB" in bad_budget.output


# The program as pip installs it (cli:program), with exit handlers a library might register.
PROGRAM = """
import atexit, sys, threading, time, cli
atexit.register(lambda: print("exit handlers ran", flush=True))
if sys.argv[1] == "--with-thread":
    del sys.argv[1]
    threading.Thread(target=lambda: (time.sleep(0.3), print("the thread finished", flush=True))).start()
sys.argv[0] = "eetrend"
cli.program()
"""


def _program(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_the_program_keeps_exit_codes_output_and_exit_handlers(tmp_path) -> None:
    """cli.program leaves without the interpreter's teardown: nothing printed, handled or coded may be lost."""
    folder = tmp_path / "demo"
    made = _program("sample", str(folder), "--size", "16x16", "--years", "2000-2005")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [made.stdout.splitlines()[0], "exit handlers ran"]
    assert made.stdout.startswith("wrote 6 annual rasters")

    missing = _program("trend", str(tmp_path / "nope"), "-o", str(tmp_path / "x.tif"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "does not exist" in missing.stderr
    assert missing.stdout == "exit handlers ran\n"

    usage = _program("trend", str(folder), "-o", str(tmp_path / "y.tif"), "--years", "20x0")
    assert usage.returncode == 2 and "cannot read '20x0' as a year" in usage.stderr

    waited = _program("--with-thread", "trend", str(folder), "-o", str(tmp_path / "z.tif"), "-q")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.splitlines() == ["the thread finished", "exit handlers ran"]  # a live thread is waited for


def test_debug_shows_the_traceback(tmp_path) -> None:
    result = _run("--debug", "trend", str(tmp_path / "nope"), "-o", str(tmp_path / "x.tif"))
    assert result.exit_code == 1
    assert result.exception is not None and "does not exist" in str(result.exception)


def test_every_command_has_help_with_an_example() -> None:
    for command in ("sample", "trend", "export", "status", "cancel", "download", "run", "demo", "emulator"):
        result = _run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output, command


def test_min_years_two_writes_no_p_value_standard_error_interval_or_class_for_two_point_pixels(tmp_path) -> None:
    """The reported bug: two valid years gave p = 0, stderr = 0 and a significant trend_class."""
    folder = tmp_path / "gappy"
    assert _run("sample", str(folder), "--size", "40x30", "--years", "2000-2004", "--nan-fraction", "0.5",
                "--seed", "4").exit_code == 0
    out = tmp_path / "trend.tif"
    result = _run("trend", str(folder), "-o", str(out), "--method", "both", "--min-years", "2",
                  "--changepoint", "pettitt", "--workers", "1", "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        band = {name: ds.read(i + 1).astype(np.float64) for i, name in enumerate(ds.descriptions)}
    n = band["n"]
    two, four = n == 2, n >= 4
    assert two.sum() > 100 and (n == 3).sum() > 100 and four.sum() > 50  # all three cases are in the raster
    assert np.isfinite(band["slope"][two]).all() and np.isfinite(band["sen_slope"][two]).all()  # the line stays
    for name in ("pvalue", "stderr", "intercept_stderr", "mk_z", "mk_p", "sen_low", "sen_high", "trend_class",
                 "cp_year", "cp_p"):
        assert np.isnan(band[name][two]).all(), name
    assert np.isfinite(band["pvalue"][n == 3]).all() and np.isfinite(band["mk_p"][n == 3]).all()
    assert np.isnan(band["cp_p"][n == 3]).all() and np.isfinite(band["cp_p"][four]).all()
    assert np.isin(band["trend_class"][n >= 3], [-1.0, 0.0, 1.0]).all()
