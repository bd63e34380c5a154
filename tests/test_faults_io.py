"""Faults at the disk and bad inputs: full disks, outputs that are inputs, mixed data types, broken links.

Every scenario asserts what a user must be able to rely on: the right exit code, exactly
one clean line on stderr (no traceback), nothing lost (inputs byte-for-byte unchanged),
nothing broken under a final name, and no temporary left behind.

A full disk is a real one where the kernel allows it (a small tmpfs; root with
CAP_SYS_ADMIN), and always a real file size limit (RLIMIT_FSIZE, EFBIG) in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import rasterio
from scipy import stats
from typer.testing import CliRunner

from cli import app
from pipeline.engine.sample import write_sample
from pipeline.files.diskio import verify_geotiff
from tests.conftest import write_raster

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


# -- helpers ---------------------------------------------------------------------------------------------
def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _one_clean_line(result, code: int) -> str:
    """The command failed with ``code`` and said so in exactly one line on stderr, without a traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def _digests(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder`` (following nothing): what must be unchanged after a refusal."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()  # noqa: S324
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if ".partial" in p.name]


@pytest.fixture
def stack(tmp_path) -> Path:
    folder = tmp_path / "stack"
    write_sample(folder, years=range(2000, 2008), rows=40, cols=48, seed=3)
    return folder


@pytest.fixture
def small_disk(tmp_path, request):
    """A 400 kB tmpfs (a real full disk: ENOSPC from the kernel), or a skip where mounting is not allowed."""
    size = getattr(request, "param", "400k")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); the RLIMIT_FSIZE tests cover full files")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes remain."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


# -- 1. writes that cannot lie ---------------------------------------------------------------------------
@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_trend_on_a_full_disk_is_one_line_and_leaves_nothing(stack, small_disk, compress):
    before = _digests(stack)
    _fill(small_disk, 16 * 1024)
    out = small_disk / "trend.tif"
    result = _invoke("trend", stack, "-o", out, "--method", "both", "--workers", "1", "--compress", compress)
    line = _one_clean_line(result, 1)
    assert "no space left to write" in line and str(out) in line and "free" in line and "needs" in line
    assert not out.exists() and not _temporaries(small_disk)
    assert _digests(stack) == before


def test_a_disk_that_fills_at_close_is_caught(stack, tmp_path, small_disk):
    """GDAL closes 'successfully' after a failed block write; eetrend must not rename that file."""
    big = tmp_path / "big"
    write_sample(big, years=range(2000, 2004), rows=300, cols=300, seed=1)
    out = small_disk / "trend.tif"
    result = _invoke("trend", big, "-o", out, "--method", "both", "--workers", "1")
    _one_clean_line(result, 1)
    assert not out.exists() and not _temporaries(small_disk)


@pytest.mark.parametrize("command", ["index", "plot", "plot-pixel", "sample"])
def test_other_outputs_on_a_full_disk(stack, tmp_path, small_disk, command):
    bands = tmp_path / "bands.tif"
    write_raster(bands, np.random.default_rng(0).integers(1, 5000, (6, 200, 200)).astype("uint16"))
    _fill(small_disk, 2048)
    target = {"index": small_disk / "ndvi.tif", "plot": small_disk / "b.png", "plot-pixel": small_disk / "p.png",
              "sample": small_disk / "sample"}[command]
    args = {"index": ["index", bands, "-o", target],
            "plot": ["plot", bands, "-o", target],
            "plot-pixel": ["plot-pixel", stack, "--xy", "500100", "4999900", "-o", target],
            "sample": ["sample", target, "--size", "100x100", "--years", "2000-2003"]}[command]
    line = _one_clean_line(_invoke(*args), 1)
    assert "no space left" in line and "free" in line
    assert not target.exists() or not any(target.glob("*.tif"))
    assert not _temporaries(small_disk)


def test_a_file_size_limit_is_one_line_in_a_real_process(stack, tmp_path):
    """RLIMIT_FSIZE: the kernel refuses (EFBIG) past 64 kB; the trend would be larger."""
    out = tmp_path / "out" / "trend.tif"
    out.parent.mkdir()
    before = _digests(stack)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "trend", str(stack), "-o", str(out), "--method",
                           "both", "--workers", "1", "--compress", "none"], capture_output=True, text=True,
                          preexec_fn=limit, cwd=tmp_path, check=False)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "file size limit" in lines[0], done.stderr
    assert not out.exists() and not _temporaries(out.parent)
    assert _digests(stack) == before


def test_a_successful_run_leaves_no_temporary_and_verified_files(stack, tmp_path):
    out = tmp_path / "trend.tif"
    assert _invoke("trend", stack, "-o", out, "-q").exit_code == 0
    assert _invoke("plot", out, "-o", tmp_path / "slope.png").exit_code == 0
    verify_geotiff(out, decode=True)
    assert not _temporaries(tmp_path)


def test_verify_finds_a_cut_geotiff(tmp_path):
    path = write_raster(tmp_path / "x.tif", np.random.default_rng(1).random((64, 64)).astype("float32"),
                        tiled=True)
    verify_geotiff(path, decode=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="not written|does not read back"):
        verify_geotiff(path)


@pytest.mark.parametrize("failing", ["sync", "check"])
def test_a_failed_sync_or_check_of_the_output_is_one_line_and_leaves_nothing(stack, tmp_path, monkeypatch, failing):
    """The output's disk sync runs beside its read-back check: either failing fails the run, cleanly."""
    import errno

    from pipeline.files import outputs

    out = tmp_path / "trend.tif"
    before = _digests(stack)
    real_sync, real_check = outputs.fsync_path, outputs.verify_geotiff
    seen = []

    def sync(path):
        seen.append("sync")
        if failing == "sync" and ".partial" in Path(path).name:
            raise OSError(errno.EIO, "Input/output error")
        real_sync(path)

    def check(path, *args, **kwargs):
        seen.append("check")
        if failing == "check":
            raise OSError(errno.EIO, "block 0,0 of band 1 was not written")
        real_check(path, *args, **kwargs)

    monkeypatch.setattr(outputs, "fsync_path", sync)
    monkeypatch.setattr(outputs, "verify_geotiff", check)
    line = _one_clean_line(_invoke("trend", stack, "-o", out, "-q"), 1)
    assert "trend.tif" in line and ("Input/output error" in line or "not written" in line), line
    assert {"sync", "check"} <= set(seen)  # both ran, whichever failed
    assert not out.exists() and not _temporaries(tmp_path)
    assert _digests(stack) == before


# -- 2. inputs are sacred --------------------------------------------------------------------------------
def _link(kind: str, source: Path, link: Path) -> Path:
    if kind == "symlink":
        link.symlink_to(source)
    elif kind == "hardlink":
        os.link(source, link)
    return link if kind != "same" else source


@pytest.mark.parametrize("kind", ["same", "symlink", "hardlink"])
def test_trend_never_replaces_an_input(stack, tmp_path, kind):
    before = _digests(stack)
    out = _link(kind, stack / "ndvi_2003.tif", tmp_path / "out.tif")
    line = _one_clean_line(_invoke("trend", stack, "-o", out, "--overwrite"), 2)
    assert "is the input" in line and "ndvi_2003.tif" in line
    assert _digests(stack) == before and not _temporaries(tmp_path)


def test_index_plot_and_plot_pixel_never_replace_an_input(stack, tmp_path):
    bands = write_raster(tmp_path / "bands.tif", np.ones((6, 8, 8), dtype="uint16"))
    png_input = tmp_path / "a.png"
    assert _invoke("plot", bands, "-o", png_input, "--band", "1").exit_code == 0
    before = {p: p.read_bytes() for p in (bands, png_input)}
    assert "is the input" in _one_clean_line(_invoke("index", bands, "-o", bands, "--overwrite"), 2)
    assert "is the input" in _one_clean_line(_invoke("plot", png_input, "-o", png_input), 2)
    (tmp_path / "pix.png").symlink_to(png_input)
    line = _one_clean_line(_invoke("plot", png_input, "-o", tmp_path / "pix.png"), 2)
    assert "is the input" in line
    assert all(p.read_bytes() == data for p, data in before.items())
    stack_before = _digests(stack)
    _one_clean_line(_invoke("plot-pixel", stack, "--xy", "500100", "4999900", "-o", stack / "ndvi_2001.tif"), 2)
    assert _digests(stack) == stack_before


def _split_years(tmp_path) -> tuple[Path, Path]:
    """Three years, each a VRT over two split tiles in parts/; returns (the VRT folder, the tiles folder)."""
    from rasterio.transform import from_origin

    from pipeline.engine.mosaic import write_vrt

    folder = tmp_path / "years"
    folder.mkdir()
    tiles = tmp_path / "parts"
    tiles.mkdir()
    rng = np.random.default_rng(0)
    for year in (2000, 2001, 2002):
        names = []
        for col in (0, 8):
            name = tiles / f"s_{year}-0000000000-{col:010d}.tif"
            write_raster(name, rng.random((8, 8)).astype("float32"),
                         transform=from_origin(500_000 + col * 30, 5_000_000, 30, 30))
            names.append(name)
        write_vrt(folder / f"s_{year}.vrt", year, names)
    return folder, tiles


def test_a_split_tile_behind_a_vrt_is_an_input_too(tmp_path):
    folder, tiles = _split_years(tmp_path)
    victim = tiles / "s_2001-0000000000-0000000008.tif"
    data = victim.read_bytes()
    line = _one_clean_line(_invoke("trend", folder, "-o", victim, "--overwrite"), 2)
    assert "is the input" in line and victim.read_bytes() == data


@pytest.mark.parametrize("command", ["trend", "index", "plot"])
def test_an_output_that_is_a_pipe_or_device_is_never_replaced(stack, tmp_path, command):
    """``-o /dev/null --overwrite`` once replaced the device with a GeoTIFF; a FIFO stands in for it here."""
    fifo = tmp_path / ("out.png" if command == "plot" else "out.tif")
    os.mkfifo(fifo)
    bands = write_raster(tmp_path / "bands.tif", np.ones((6, 8, 8), dtype="uint16"))
    args = {"trend": ["trend", stack], "index": ["index", bands], "plot": ["plot", bands]}[command]
    line = _one_clean_line(_invoke(*args, "-o", fifo, *(["--overwrite"] if command != "plot" else [])), 2)
    assert "not a regular file" in line
    assert fifo.is_fifo() and not _temporaries(tmp_path)


def test_a_mosaic_whose_tile_is_gone_is_named(tmp_path):
    folder, tiles = _split_years(tmp_path)
    (tiles / "s_2002-0000000000-0000000000.tif").unlink()
    line = _one_clean_line(_invoke("trend", folder, "-o", tmp_path / "t.tif"), 1)
    assert "s_2002.vrt refers to" in line and "s_2002-0000000000-0000000000.tif" in line
    assert not (tmp_path / "t.tif").exists()


def test_an_earlier_trend_output_in_the_input_folder_is_not_an_input(stack, tmp_path):
    assert _invoke("trend", stack, "-o", stack / "trend.tif", "-q").exit_code == 0
    assert _invoke("trend", stack, "-o", stack / "trend.tif", "-q", "--overwrite").exit_code == 0
    result = _invoke("trend", stack, "-o", stack / "sen.tif", "-q", "--method", "sen")
    assert result.exit_code == 0, result.output
    # even one whose name holds a year
    assert _invoke("trend", stack, "-o", stack / "trend_2020.tif", "-q").exit_code == 0
    result = _invoke("trend", stack, "-o", tmp_path / "again.tif", "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "again.tif") as ds:
        assert ds.tags()["years"] == "2000,2001,2002,2003,2004,2005,2006,2007"


def _mixed_stack(tmp_path) -> tuple[Path, Path]:
    """Float32 NDVI years with one year stored as int16 x 10000 (nodata -32768)."""
    folder = tmp_path / "mixed"
    write_sample(folder, years=range(2000, 2008), rows=12, cols=10, seed=5, nan_fraction=0.1)
    odd = folder / "ndvi_2004.tif"
    with rasterio.open(odd) as ds:
        profile, values = ds.profile, ds.read(1)
    odd.unlink()
    profile.update(dtype="int16", nodata=-32768)
    with rasterio.open(odd, "w", **profile) as ds:
        ds.write(np.where(np.isnan(values), -32768, np.round(values * 10000)).astype("int16"), 1)
    return folder, odd


def test_mixed_data_types_are_refused_naming_the_file_and_both_types(tmp_path):
    folder, _ = _mixed_stack(tmp_path)
    out = tmp_path / "t.tif"
    line = _one_clean_line(_invoke("trend", folder, "-o", out), 1)
    assert "ndvi_2004.tif is int16" in line and "float32" in line and "--dtype-scale int16=" in line
    assert not out.exists()


def test_dtype_scale_brings_mixed_years_to_one_scale(tmp_path):
    folder, _ = _mixed_stack(tmp_path)
    out = tmp_path / "t.tif"
    result = _invoke("trend", folder, "-o", out, "--dtype-scale", "int16=0.0001", "-q", "--workers", "1")
    assert result.exit_code == 0, result.output
    years = list(range(2000, 2008))
    layers = []
    for year in years:
        with rasterio.open(folder / f"ndvi_{year}.tif") as ds:
            raw = ds.read(1).astype(np.float64)
            if ds.dtypes[0] == "int16":
                raw = np.where(raw == -32768, np.nan, raw * 0.0001)
            layers.append(raw)
    values = np.stack(layers)
    with rasterio.open(out) as ds:
        slope = ds.read(1)
    checked = 0
    for r, c in [(0, 0), (3, 7), (11, 9), (6, 2)]:
        y = values[:, r, c]
        ok = np.isfinite(y)
        if ok.sum() >= 3:
            expected = stats.linregress(np.array(years)[ok], y[ok]).slope
            assert slope[r, c] == pytest.approx(expected, rel=1e-4, abs=1e-7)
            checked += 1
    assert checked >= 3


def test_floats_of_two_widths_are_read_together(stack, tmp_path):
    """float64 among float32 is one scale: read as float64, the fit equals the all-float32 one."""
    reference = tmp_path / "ref.tif"
    assert _invoke("trend", stack, "-o", reference, "-q", "--workers", "1").exit_code == 0
    wide = stack / "ndvi_2005.tif"
    with rasterio.open(wide) as ds:
        profile, values = ds.profile, ds.read(1)
    profile.update(dtype="float64")
    with rasterio.open(wide, "w", **profile) as ds:
        ds.write(values.astype("float64"), 1)
    out = tmp_path / "mixed.tif"
    assert _invoke("trend", stack, "-o", out, "-q", "--workers", "1").exit_code == 0
    with rasterio.open(reference) as a, rasterio.open(out) as b:
        np.testing.assert_allclose(b.read(1), a.read(1), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["dangling", "fifo"])
def test_a_broken_entry_in_an_input_folder_is_named(stack, tmp_path, kind):
    entry = stack / "ndvi_2010.tif"
    if kind == "dangling":
        entry.symlink_to(tmp_path / "gone.tif")
    else:
        os.mkfifo(entry)
    out = tmp_path / "t.tif"
    line = _one_clean_line(_invoke("trend", stack, "-o", out), 1)
    assert "ndvi_2010.tif" in line
    assert ("does not exist" if kind == "dangling" else "not a regular file") in line
    assert not out.exists()


def test_an_unreadable_input_is_named(stack, tmp_path, monkeypatch):
    victim = stack / "ndvi_2002.tif"
    victim.chmod(0)
    if os.geteuid() == 0:
        # root reads any file, and this interpreter lives under /root where nobody may not run it:
        # as a last resort, answer os.access as it would for an unprivileged user.
        import pipeline.engine.stack

        real = os.access
        monkeypatch.setattr(pipeline.engine.stack.os, "access",
                            lambda path, mode, **kw: False if Path(path) == victim else real(path, mode, **kw))
    try:
        result = _invoke("trend", stack, "-o", tmp_path / "t.tif")
    finally:
        victim.chmod(0o644)
    line = _one_clean_line(result, 1)
    assert "ndvi_2002.tif" in line and "permission" in line
    assert not (tmp_path / "t.tif").exists()


@pytest.mark.parametrize("small_disk", ["2m"], indirect=True)
def test_download_on_a_full_disk_stops_cleanly_and_resumes(emulator, tmp_path, small_disk):
    from pipeline.config import load_study
    from pipeline.earthengine.exports import export_study, open_manifest
    from tests.conftest import study_toml

    config = tmp_path / "study.toml"
    config.write_text(study_toml(emulator.url, years="2000..2003").replace(
        'downloads = "downloads"', f'downloads = "{small_disk / "dl"}"'))
    study = load_study(config)
    export_study(study)
    emulator.earthengine.finish_all()
    _fill(small_disk, 1_000_000)  # under the 1 MB the manifest keeps, plus a file
    line = _one_clean_line(_invoke("download", config), 1)
    assert "no space left to download" in line and "needs" in line and "free" in line
    assert not _temporaries(small_disk)
    with open_manifest(study) as manifest:
        recorded = {year: manifest.files(year) for year in study.years}
    assert not any(recorded.values()), "a file the disk could not hold must not be recorded as downloaded"
    (small_disk / "filler").unlink()
    result = _invoke("download", config)
    assert result.exit_code == 0, result.output
    assert len(list((small_disk / "dl").glob("*.tif"))) == 4 and not _temporaries(small_disk)


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only file system (root writes through any permission bit, not through a read-only mount)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here")
        mount.chmod(0o555)
        yield mount
        mount.chmod(0o755)
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("command", ["trend", "plot", "sample", "log-file"])
def test_read_only_output_folders_are_one_line(stack, tmp_path, read_only_folder, command):
    args = {"trend": ["trend", stack, "-o", read_only_folder / "t.tif"],
            "plot": ["plot", stack / "ndvi_2000.tif", "-o", read_only_folder / "p.png"],
            "sample": ["sample", read_only_folder / "s", "--size", "8x8"],
            "log-file": ["run", tmp_path / "missing.toml", "--log-file", read_only_folder / "x.log"]}[command]
    line = _one_clean_line(_invoke(*args), 2)
    assert str(read_only_folder) in line and ("read-only" in line.lower() or "cannot write" in line)


@pytest.mark.parametrize("small_disk", ["16m"], indirect=True)
def test_run_with_a_full_output_disk_fails_cleanly_then_completes(emulator, tmp_path, small_disk):
    """A run whose outputs cannot be written says so in one line; once there is room it completes,
    and after the successful run no temporary is left anywhere in the study."""
    from pipeline.config import load_study
    from pipeline.run import output_paths
    from tests.conftest import study_toml

    config = tmp_path / "study.toml"
    config.write_text(study_toml(emulator.url, years="2000..2003").replace(
        'outputs = "outputs"', f'outputs = "{small_disk / "out"}"'))
    study = load_study(config)
    assert _invoke("run", config).exit_code == 75
    emulator.earthengine.finish_all()
    _fill(small_disk, 8 * 1024)
    line = _one_clean_line(_invoke("run", config), 1)
    assert "no space left to write" in line and "_trend.tif" in line
    assert not any(p.exists() for p in output_paths(study).values())
    assert not _temporaries(small_disk, tmp_path)
    (small_disk / "filler").unlink()
    result = _invoke("run", config)
    assert result.exit_code == 0, result.output
    assert all(p.exists() for p in output_paths(study).values())
    verify_geotiff(output_paths(study)["trend"], decode=True)
    assert not _temporaries(small_disk, tmp_path)


@pytest.mark.parametrize("command", ["trend", "index", "plot"])
def test_a_damaged_block_is_named_in_one_line(tmp_path, command):
    folder = tmp_path / "years"
    write_sample(folder, years=range(2000, 2006), rows=256, cols=256, seed=4)
    damaged = folder / "ndvi_2003.tif"
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 20000] = b"\x55" * 20000  # the header survives, compressed blocks do not
    damaged.write_bytes(bytes(data))
    out = tmp_path / ("p.png" if command == "plot" else "o.tif")
    args = {"trend": ["trend", folder, "-o", out, "--workers", "1"],
            "index": ["index", damaged, "-o", out, "--red", "1", "--nir", "1"],
            "plot": ["plot", damaged, "-o", out]}[command]
    line = _one_clean_line(_invoke(*args), 1)
    assert "ndvi_2003.tif" in line and "damaged" in line
    assert not out.exists() and not _temporaries(tmp_path)


def test_a_full_disk_in_a_real_process_prints_one_line_not_libtiffs(stack, small_disk):
    """libtiff prints '_tiffWriteProc: No space left on device.' straight to file descriptor 2; a
    subprocess sees what a terminal would (CliRunner captures only Python's stderr)."""
    _fill(small_disk, 16 * 1024)
    out = small_disk / "trend.tif"
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "trend", str(stack), "-o", str(out), "--method",
                           "both", "--workers", "1"], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left to write"), done.stderr
    assert not out.exists() and not _temporaries(small_disk)


# -- leftovers of the integration: the emulator's port, the lock file, the manifest on a full disk -----------
def test_an_emulator_port_in_use_is_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_clean_line(_invoke("emulator", "--port", str(port)), 2)
    assert f"port {port} on 127.0.0.1 is in use" in line and "--port 0" in line


def test_a_lock_path_that_is_a_folder_is_one_line(tmp_path):
    from pipeline.errors import UsageError
    from pipeline.lock import StudyLock

    (tmp_path / "run.lock").mkdir()
    with pytest.raises(UsageError, match="cannot open the study's lock file .*run.lock"):
        with StudyLock(tmp_path, "s"):
            pass


def test_a_manifest_on_a_full_disk_is_one_line_and_keeps_its_record(small_disk):
    from pipeline.earthengine.manifest import Manifest
    from pipeline.errors import DiskFullError

    path = small_disk / "manifest.sqlite"
    with Manifest(path) as manifest:
        manifest.set("kept", "yes")
    with Manifest(path) as manifest:
        _fill(small_disk, 0)
        with pytest.raises(DiskFullError, match="no space left to record the study"):
            with manifest.transaction():
                manifest.set("big", "x" * 2_000_000)
        assert manifest.get("kept") == "yes" and manifest.get("big") is None
    with Manifest(path) as again:  # still readable on the full disk
        assert again.get("kept") == "yes"


# -- an output name belongs to one writer ----------------------------------------------------------------
def _finished_elsewhere(path: Path) -> bytes:
    """Another process's finished output, appearing under ``path`` while this run writes it."""
    data = b"another run's finished output"
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("overwrite", [False, True], ids=["refused", "overwrite"])
def test_an_output_that_appears_while_the_writer_works_is_replaced_only_with_overwrite(tmp_path, overwrite):
    """The check is made by the rename itself (a hard link fails on an existing name), not only at the start."""
    from pipeline.engine.sample import sample_grid
    from pipeline.errors import OutputExistsError
    from pipeline.files.outputs import RasterWriter

    out = tmp_path / "trend.tif"
    writer = RasterWriter(out, sample_grid(4, 6), ("slope",), overwrite=overwrite)
    with nullcontext() if overwrite else pytest.raises(OutputExistsError, match="another process while this run"):
        with writer:
            writer.write(rasterio.windows.Window(0, 0, 6, 4), {"slope": np.ones(24)})
            theirs = _finished_elsewhere(out)
    if overwrite:
        with rasterio.open(out) as dataset:
            assert (dataset.read(1) == 1).all()
    else:
        assert out.read_bytes() == theirs
    assert _temporaries(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["trend.tif"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_replaced_when_done_without_overwrite_keeps_a_file_that_appeared_meanwhile(tmp_path, monkeypatch, links):
    from pipeline.errors import OutputExistsError
    from pipeline.files.outputs import replaced_when_done

    if not links:  # a file system without hard links (some network and FAT mounts)
        def no_link(*_args, **_kwargs):
            raise OSError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "report.json"
    with pytest.raises(OutputExistsError, match="written by another process while this run"):
        with replaced_when_done(out, overwrite=False) as temporary:
            temporary.write_text("ours")
            theirs = _finished_elsewhere(out)
    assert out.read_bytes() == theirs and _temporaries(tmp_path) == []
    fresh = tmp_path / "fresh.json"
    with replaced_when_done(fresh, overwrite=False) as temporary:
        temporary.write_text("ours")
    assert fresh.read_text() == "ours" and fresh.stat().st_nlink == 1 and _temporaries(tmp_path) == []


def test_a_name_another_live_process_is_writing_is_refused_at_once_unless_overwrite(stack, tmp_path):
    out = tmp_path / "out" / "trend.tif"
    out.parent.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out.parent / f".trend.tif.{other.pid}.0badcafe.partial").write_bytes(b"being written")
        line = _one_clean_line(_invoke("trend", stack, "-o", out, "--workers", "1", "-q"), 2)
        assert line == (f"error: {out} is being written by another process (pid {other.pid}); wait for it to "
                        "finish, pass --overwrite to replace its result, or choose another name")
        assert not out.exists()
        result = _invoke("trend", stack, "-o", out, "--workers", "1", "-q", "--overwrite")
        assert result.exit_code == 0, result.output
        assert out.exists() and (out.parent / f".trend.tif.{other.pid}.0badcafe.partial").exists()  # not touched
    finally:
        other.kill()
        other.wait()


def test_a_zarr_store_that_appears_meanwhile_is_not_replaced_without_overwrite(tmp_path):
    from pipeline.engine.formats import _replace_store
    from pipeline.errors import OutputExistsError

    out = tmp_path / "trend.zarr"

    def write(temporary: Path) -> None:
        temporary.mkdir()
        (temporary / "zarr.json").write_text("ours")
        out.mkdir()  # another run's store, finished first
        (out / "zarr.json").write_text("theirs")

    with pytest.raises(OutputExistsError, match="another process while this run"):
        _replace_store(out, write, overwrite=False)
    assert (out / "zarr.json").read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["trend.zarr"]
    fresh = tmp_path / "fresh.zarr"
    _replace_store(fresh, lambda temporary: (temporary.mkdir(), (temporary / "zarr.json").write_text("ours")),
                   overwrite=False)
    assert (fresh / "zarr.json").read_text() == "ours" and _temporaries(tmp_path) == []
