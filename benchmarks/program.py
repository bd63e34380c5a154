"""The ``eetrend`` command as a user runs it, for the benchmarks that time whole processes.

That is the console script pip installed beside this interpreter (``cli:program``: the app,
then an exit without the interpreter's teardown), or ``python -m cli`` where there is none.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path


def eetrend_command(*args: str) -> list[str]:
    """The argument list that runs ``eetrend *args`` in a fresh process."""
    script = Path(sys.executable).with_name("eetrend")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "cli", *args]


# What every ``eetrend trend`` does before its first file: start the interpreter, import
# the command line, parse and check the options (Typer builds a validator for each),
# import the engine (an OLS run needs no scipy), then leave as ``cli.program`` does.
_STARTUP = """
import os, sys, cli, typer.main
typer.main.get_command(cli.app).get_command(None, "trend").make_context("trend", sys.argv[1:])
import pipeline.engine.trend
os._exit(0)
"""


def startup_command(folder: Path, out: Path) -> list[str]:
    """A process that does only the start-up of ``eetrend trend folder -o out``, for timing it."""
    return [sys.executable, "-c", _STARTUP, str(folder), "-o", str(out)]


def startup_time(folder: Path, out: Path, repeats: int, cwd: Path) -> float:
    """Median wall seconds of ``repeats`` such processes, run in ``cwd``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(startup_command(folder, out), cwd=cwd, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
