"""Shared fixtures: a network guard and factories for small annual rasters with known answers."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # AF_UNIX paths and the like never leave the machine
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: refuse, tests must use 127.0.0.1


def _refuse_remote(event: str, args: tuple) -> None:
    if event == "socket.connect" and not _is_loopback(args[1]):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {args[1]!r}")
    if event == "socket.getaddrinfo" and args and args[0] not in (None, "localhost", "127.0.0.1", "::1"):
        host = args[0]
        try:
            if ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
        raise ConnectionRefusedError(f"tests may only resolve loopback names, not {host!r}")


sys.addaudithook(_refuse_remote)


@pytest.fixture(scope="session", autouse=True)
def plan_memory_as_a_fresh_process_would():
    """In-process runs plan their memory budget from this process's resident memory, which in a
    long test session holds every earlier test's leftovers (and numba, once a test loaded it).
    For the whole session (module fixtures too), plan from what the session held at its start,
    as a fresh ``eetrend`` would; runs in subprocesses measure themselves, and tests of the plan
    set their own figure with monkeypatch."""
    from pipeline.engine import trend

    measured = trend.resident_bytes
    at_start = measured()
    trend.resident_bytes = lambda: at_start
    yield
    trend.resident_bytes = measured


@contextmanager
def study_lock_held_by_another_thread(study) -> Iterator[None]:
    """Hold the study's lock from another thread for the duration: a thread has its own context,
    so a command run here meets the lock as another process's, not its own re-entered."""
    from pipeline.lock import StudyLock

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with StudyLock(study.state, study.name):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join()


@dataclass
class LoaderLines:
    """What the compiled kernels' loader says on stderr (``pipeline.engine.kernels.compiled.log``)."""

    messages: list[str] = field(default_factory=list)
    said: threading.Event = field(default_factory=threading.Event)  # set by the first line

    def settled(self) -> list[str]:
        """The lines, once every pending line's timer has finished logging."""
        for thread in threading.enumerate():
            if isinstance(thread, threading.Timer):
                thread.join(timeout=60)
        return self.messages


@pytest.fixture
def loader_lines(monkeypatch) -> Iterator[LoaderLines]:
    """The loader's lines, with every wait said at once (``SLOW_LOAD_S`` 0): a fake load that waits for
    ``said`` lasts until its line is out, as a compile outlasts the threshold."""
    from pipeline.engine.kernels import compiled

    lines = LoaderLines()

    class Flag(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.messages.append(record.getMessage())
            lines.said.set()

    flag, level = Flag(), compiled.log.level
    compiled.log.addHandler(flag)
    compiled.log.setLevel(logging.WARNING)  # whatever earlier tests left
    monkeypatch.setattr(compiled, "SLOW_LOAD_S", 0.0)
    try:
        yield lines
    finally:
        compiled.log.removeHandler(flag)
        compiled.log.setLevel(level)


@pytest.fixture
def network_guard_check() -> Callable[[], None]:
    """Try to reach a public address; the guard must refuse it."""

    def attempt() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(("8.8.8.8", 53))

    return attempt


PROFILE = {
    "driver": "GTiff",
    "crs": "EPSG:32633",
    "transform": from_origin(500_000, 5_000_000, 30, 30),
}


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    nodata: float | None = None,
    crs: str = PROFILE["crs"],
    transform=PROFILE["transform"],
    descriptions: Sequence[str] | None = None,
    tiled: bool = False,
) -> Path:
    """Write a (rows, cols) or (bands, rows, cols) array as a GeoTIFF."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, text)
    return path


@pytest.fixture
def make_stack(tmp_path: Path) -> Callable[..., tuple[Path, np.ndarray, list[int]]]:
    """Write one file per year from a (years, rows, cols) array; returns (folder, values, years)."""

    def factory(
        values: np.ndarray,
        years: Sequence[int],
        *,
        name: str = "ndvi_{year}.tif",
        folder: str = "stack",
        nodata: float | None = None,
        tiled: bool = False,
    ) -> tuple[Path, np.ndarray, list[int]]:
        out = tmp_path / folder
        out.mkdir(parents=True, exist_ok=True)
        for year, layer in zip(years, values, strict=False):
            write_raster(out / name.format(year=year), layer, nodata=nodata, tiled=tiled)
        return out, values, list(years)

    return factory


@pytest.fixture
def gappy_values() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A (years, rows, cols) float64 stack with trends, ties and gaps, and its years."""

    def factory(rows: int = 12, cols: int = 10, seed: int = 0, nan_fraction: float = 0.2, round_to: float = 0.0):
        rng = np.random.default_rng(seed)
        years = np.array([1990, 1991, 1993, 1994, 1995, 1998, 1999, 2000, 2003, 2004, 2005, 2008])
        slope = rng.normal(0, 0.02, (rows, cols))
        values = 0.5 + slope * (years[:, None, None] - 1990) + rng.normal(0, 0.05, (len(years), rows, cols))
        if round_to:
            values = np.round(values / round_to) * round_to
        values[rng.random(values.shape) < nan_fraction] = np.nan
        return values, years

    return factory


# -- Earth Engine emulator fixtures ----------------------------------------------------------------
@pytest.fixture
def http_sleeps(monkeypatch) -> list[float]:
    """googleapiclient's retry backoff, recorded instead of slept (so 429/503 tests are quick)."""
    import time
    import types

    import googleapiclient.http

    sleeps: list[float] = []
    fake_time = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    fake_time.sleep = sleeps.append
    monkeypatch.setattr(googleapiclient.http, "time", fake_time)
    return sleeps


@pytest.fixture
def emulator(http_sleeps):
    """A running emulator on 127.0.0.1 with a clock that moves only when a test moves it."""
    from pipeline.emulator import Emulator

    with Emulator() as emu:
        yield emu


#: A two-year study fits with min_years = 2 only (the default 3 would leave every pixel NaN, which
#: ``eetrend check`` and every command refuse): the extra table the plumbing tests' two-year studies carry.
TWO_YEARS = "[trend]\nmin_years = 2"


def study_toml(
    emu_url: str,
    *,
    name: str = "test-study",
    years: str = "1995..2015",
    region: str = "bbox = [10.0, 46.0, 10.116, 46.054]\ncrs = \"EPSG:32632\"\nscale = 30",  # ~300 x 200 px
    composite: str = "",
    export: str = 'folder = "eetrend_test"',
    earthengine: str = "",
    extra: str = "",
) -> str:
    """The text of a study config pointed at the emulator."""
    return f"""
[study]
name = "{name}"
years = "{years}"

[region]
{region}

[composite]
{composite}

[export]
{export}

[earthengine]
project = "test-project"
endpoint = "{emu_url}"
{earthengine or 'auth = "none"'}

[paths]
state = "state"
downloads = "downloads"
outputs = "outputs"
{extra}
"""


@pytest.fixture
def make_study(tmp_path, emulator):
    """Write a study config for the emulator and return (path, loaded study)."""
    from pipeline.config import load_study

    def make(**kwargs):
        path = tmp_path / "study.toml"
        path.write_text(study_toml(emulator.url, **kwargs))
        return path, load_study(path)

    return make
