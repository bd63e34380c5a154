"""Faults that happen to processes: signals, kills, two commands on one study, files changed behind our back.

Signals are sent to real ``eetrend`` subprocesses (``python -m cli``) working on small
sample rasters or against the in-process emulator (its clock stands still until a test
moves it; slow media keeps a download busy long enough to be interrupted). Every
scenario checks the same things: the exit code (128 + the signal), one clean line, no
orphan process (psutil), nothing broken under a final name, and no stale temporary once
the next command has run.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.earthengine import manifest as m
from pipeline.run import output_paths
from tests.conftest import TWO_YEARS, study_lock_held_by_another_thread

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def eetrend(*args: str, **kwargs) -> subprocess.Popen:
    """An ``eetrend`` command in its own process, as a user or cron starts it."""
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(condition, timeout: float = 30.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]


def gone(pids: list[int], timeout: float = 10.0) -> bool:
    """Whether every pid has ended (zombies count as ended: they hold no memory)."""

    def ended() -> bool:
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                continue
        return True

    try:
        return wait_for(ended, timeout, "the workers to end")
    except AssertionError:
        return False


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# -- the trend engine's process pool and Dask cluster ------------------------------------------------
@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> Path:
    """21 years of 640x640 pixels: a Sen + OLS fit over 2 workers lasts several seconds (the tests stop it early)."""
    from pipeline.engine.sample import write_sample

    folder = tmp_path_factory.mktemp("rasters")
    write_sample(folder, rows=640, cols=640, seed=1)
    return folder


def _start_fit(rasters: Path, output: Path, executor: str = "process") -> tuple[subprocess.Popen, list[int]]:
    """A ``trend`` subprocess, returned once its workers run and its output is being written."""
    # a process pool needs a budget that holds two worker processes (the plan counts each one's program,
    # numba's compiled Sen kernel included)
    budget = "1400MB" if executor == "process" else "80MB"
    process = eetrend("trend", str(rasters), "-o", str(output), "--method", "both", "--workers", "2",
                      "--memory-budget", budget, "--executor", executor)
    parent = psutil.Process(process.pid)
    expected = 2 if executor == "process" else 3  # Dask: two workers and the nannies' forkserver or tracker

    def started():
        kids = parent.children(recursive=True)
        writing = any(p.name.startswith(f".{output.name}.") for p in output.parent.iterdir())
        return [k.pid for k in kids] if len(kids) >= expected and writing else None

    return process, wait_for(started, 60, "the fit to start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_ends_trend_with_one_line_its_exit_code_no_output_and_no_orphan(rasters, tmp_path, sig):
    output = tmp_path / "trend.tif"
    process, workers = _start_fit(rasters, output)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + sig
    assert err.splitlines() == [f"interrupted ({sig.name}); nothing half-written was left under a final name"]
    assert out == ""
    assert gone(workers)
    assert not output.exists() and temporaries(tmp_path) == []


def _moments(count: int) -> list[tuple[signal.Signals, bool, float]]:
    """(signal, to the whole process group, seconds after the first worker appeared) for ``count`` runs.

    Half land in the pool's first 20 ms (its workers fork and its manager thread starts
    then), half spread over the fit and its end; the signals and their targets rotate.
    """
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    start = [0.02 * i / (count // 2) for i in range(count // 2)]
    fit = [0.02 + 0.8 * i / (count - count // 2) for i in range(count - count // 2)]
    return [(sigs[i % 3], i % 2 == 1, moment) for i, moment in enumerate(start + fit)]


def test_twenty_signals_at_any_moment_of_a_process_pool_fit_all_end_cleanly(rasters, tmp_path):
    """The reported bug: a signal while the pool started ended it with a traceback or a hang, one time in ten."""
    line = "interrupted ({}); nothing half-written was left under a final name"
    interrupted = 0
    for i, (sig, group, moment) in enumerate(_moments(20)):
        output = tmp_path / f"trend{i}.tif"
        process = eetrend("trend", str(rasters), "-o", str(output), "--method", "both", "--workers", "2",
                          "--memory-budget", "1400MB", "--executor", "process", start_new_session=True)
        parent = psutil.Process(process.pid)
        wait_for(lambda: parent.children() or process.poll() is not None, 60, "the pool to start")  # noqa: B023
        time.sleep(moment)
        workers = [k.pid for k in parent.children(recursive=True)] if process.poll() is None else []
        if process.poll() is None:
            (os.killpg(process.pid, sig) if group else process.send_signal(sig))
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"run {i}: {sig.name} {moment:.3f} s after the pool started: a hang") from None
        case = f"run {i}: {sig.name} to the {'group' if group else 'process'} {moment:.3f} s in: {err!r}"
        assert gone(workers), case
        assert temporaries(tmp_path) == [], case
        if process.returncode == 0:  # the fit finished before the signal came: a whole output, its summary
            assert err.startswith(f"wrote {output}: ") and len(err.splitlines()) == 1 and output.exists(), case
            continue
        interrupted += 1
        assert process.returncode == 128 + sig, case
        assert err.splitlines() == [line.format(sig.name)] and out == "", case
        assert not output.exists(), case
    assert interrupted >= 15  # the moments fall inside the fit, not after it


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has its own SIGTERM handler yet (Linux: the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_signal_while_the_program_starts_ends_it_with_one_line_too(rasters, tmp_path):
    """From the moment eetrend's code runs (its first lines install the handlers) to the pool's start:
    the imports, the parsing, the stack being opened. (Before that only the interpreter itself runs.)"""
    line = "interrupted ({}); nothing half-written was left under a final name"
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    for i in range(12):
        sig, moment = sigs[i % 3], 0.03 * i
        output = tmp_path / f"trend{i}.tif"
        process = eetrend("trend", str(rasters), "-o", str(output), "--method", "both", "--workers", "2",
                          "--memory-budget", "1400MB", "--executor", "process")
        wait_for(lambda: _catches_sigterm(process.pid) or process.poll() is not None, 30, "the handlers")  # noqa: B023
        time.sleep(moment)
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
        case = f"{sig.name} {moment:.2f} s after the handlers: {err!r}"
        assert process.returncode == 128 + sig and err.splitlines() == [line.format(sig.name)], case
        assert out == "" and not output.exists(), case
    assert temporaries(tmp_path) == []


def test_workers_of_a_sigkilled_trend_die_and_the_next_trend_removes_its_temporary(rasters, tmp_path):
    output = tmp_path / "trend.tif"
    process, workers = _start_fit(rasters, output)
    process.kill()
    process.communicate(timeout=30)
    assert gone(workers)  # PR_SET_PDEATHSIG: no orphan holding memory
    (left,) = temporaries(tmp_path)  # a SIGKILL runs no cleanup: its temporary stays, named with its pid
    assert f".{process.pid}." in left.name and not output.exists()
    live = tmp_path / f".trend.tif.{os.getpid()}.0badcafe.partial"  # a live process's temporary is never touched
    live.write_bytes(b"still being written")

    result = runner.invoke(app, ["trend", str(rasters), "-o", str(output), "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert output.exists() and not left.exists() and live.exists()


def _trend_to(rasters: Path, output: Path, *extra: str) -> subprocess.Popen:
    return eetrend("trend", str(rasters), "-o", str(output), "--method", "both", "--workers", "2", *extra)


def _race(rasters: Path, output: Path, *extra: str, stagger: float = 0.0) -> list[tuple[int, str]]:
    """Two ``trend`` runs writing one output name at once; their (exit code, stderr)."""
    first = _trend_to(rasters, output, *extra)
    time.sleep(stagger)
    second = _trend_to(rasters, output, *extra)
    errors = [process.communicate(timeout=120)[1] for process in (first, second)]
    return [(process.returncode, err) for process, err in zip((first, second), errors, strict=True)]


@pytest.mark.parametrize("stagger", [0.0, 0.3], ids=["together", "one-after"])
def test_two_trends_racing_to_one_name_one_wins_and_the_other_says_so_and_leaves_nothing(rasters, tmp_path, stagger):
    """The reported bug: both succeeded without --overwrite, and the later silently replaced the first."""
    output = tmp_path / "trend.tif"
    results = _race(rasters, output, stagger=stagger)
    winners = [err for code, err in results if code == 0]
    losers = [(code, err) for code, err in results if code != 0]
    assert len(winners) == 1 and len(losers) == 1, results
    code, err = losers[0]
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {output} ") and "another process" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trend.tif"]  # no temporary of the loser
    with rasterio.open(output) as dataset:
        assert dataset.count == 17 and np.isfinite(dataset.read(1)).mean() > 0.9


def test_two_trends_racing_with_overwrite_both_finish_and_one_whole_file_remains(rasters, tmp_path):
    output = tmp_path / "trend.tif"
    results = _race(rasters, output, "--overwrite")
    assert [code for code, _ in results] == [0, 0], results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trend.tif"]
    with rasterio.open(output) as dataset:
        assert dataset.count == 17 and np.isfinite(dataset.read(1)).mean() > 0.9


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_dask_local_cluster_workers_end_with_their_parent(rasters, tmp_path, sig):
    pytest.importorskip("distributed")
    output = tmp_path / "trend.tif"
    process, workers = _start_fit(rasters, output, executor="dask")
    process.send_signal(sig)
    _out, err = process.communicate(timeout=60)
    assert gone(workers, timeout=20)
    if sig == signal.SIGTERM:
        assert process.returncode == 128 + sig
        assert err.splitlines() == ["interrupted (SIGTERM); nothing half-written was left under a final name"]
        assert temporaries(tmp_path) == []
    assert not output.exists()


# -- run and download against the emulator ---------------------------------------------------------
@pytest.fixture
def done_remotely(emulator, make_study):
    """A 4-year study whose exports all finished in the emulator, downloads slowed to 0.4 s a file."""
    from pipeline.earthengine.exports import export_study

    path, study = make_study(years="2000..2003", extra='[trend]\nmethod = "ols"')
    export_study(study)
    emulator.earthengine.finish_all()
    emulator.drive.media.delay = 0.4
    return path, study


def _downloading(study) -> bool:
    return any(p.name.endswith(".partial") for p in study.downloads.rglob(".*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_a_run_killed_while_downloading_completes_next_time_with_nothing_stale(emulator, done_remotely, sig):
    path, study = done_remotely
    process = eetrend("run", str(path))
    wait_for(lambda: _downloading(study), 60, "a download")
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert process.returncode == -sig
    else:
        assert process.returncode == 128 + sig
        assert err.splitlines() == [f"interrupted ({sig.name}); nothing half-written was left under a final name"]
    for final in study.downloads.glob("*.tif"):  # whatever carries a final name is whole and verified
        assert final.stat().st_size > 0
    emulator.drive.media.delay = 0
    again = runner.invoke(app, ["run", str(path)])
    assert again.exit_code == 0, again.output
    assert temporaries(study.downloads) == [] and temporaries(study.outputs) == []
    with m.Manifest(study.manifest_path) as manifest:
        for recorded in manifest.all_files():
            assert md5(study.downloads / recorded["local_path"]) == recorded["md5"]


def _lock_holder(study) -> int | None:
    text = (study.state / "run.lock").read_text() if (study.state / "run.lock").exists() else ""
    found = re.match(r"pid (\d+)", text)
    return int(found.group(1)) if found else None


def test_a_second_command_on_a_busy_study_exits_3_naming_the_holder_or_waits_for_it(emulator, done_remotely):
    path, study = done_remotely
    emulator.drive.media.delay = 1.0  # the holder downloads for 4 s
    holder = eetrend("run", str(path))
    try:
        wait_for(lambda: _lock_holder(study) == holder.pid and _downloading(study), 60, "the run to download")
        for command in (["download"], ["export"], ["cancel"], ["run"]):
            refused = runner.invoke(app, [*command, str(path)])
            assert refused.exit_code == 3, (command, refused.output)
            assert f"(pid {holder.pid} (eetrend run) since " in refused.output
            assert len(refused.output.strip().splitlines()) == 1
        waited = runner.invoke(app, ["download", str(path), "--wait-lock", "60"])
        assert waited.exit_code == 0, waited.output
        assert "already downloaded and verified: 2000-2003" in waited.output
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0
    with m.Manifest(study.manifest_path) as manifest:
        for recorded in manifest.all_files():  # no file was written twice over itself
            local = study.downloads / recorded["local_path"]
            assert local.stat().st_size == recorded["size"] and md5(local) == recorded["md5"]


def test_two_writers_of_one_partial_download_cannot_double_it(emulator, done_remotely):
    """The reported bug: a second download appended to the same partial and renamed the doubled file."""
    from pipeline.earthengine import client as ee_api
    from pipeline.earthengine.downloads import DownloadError, fetch_file
    from pipeline.earthengine.remote import open_store

    _path, study = done_remotely
    emulator.drive.media.delay = 0.05
    with m.Manifest(study.manifest_path) as manifest:
        record = manifest.year(2000)
    target = study.downloads / "test-study_NDVI_2000.tif"
    target.parent.mkdir(parents=True)
    outcomes: list[object] = []

    def fetch() -> None:
        store = open_store(study, ee_api.load_credentials(study))
        (remote,) = store.find(study.prefix(2000), record.destination_uris).files
        try:
            fetch_file(store.media(remote), remote, target, chunk_size=2048)  # 0.05 s a chunk: seconds long
            outcomes.append(remote)
        except DownloadError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    finished = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(finished) == 1 and len(refused) == 1
    assert "is being downloaded by another process" in str(refused[0])
    remote = finished[0]
    assert target.stat().st_size == remote.size and md5(target) == remote.md5
    assert temporaries(study.downloads) == []


def test_a_busy_manifest_is_another_command_not_a_corrupt_database(emulator, done_remotely, monkeypatch):
    path, study = done_remotely
    assert runner.invoke(app, ["status", str(path), "--cached"]).exit_code == 0  # the manifest exists
    monkeypatch.setattr(m, "BUSY_TIMEOUT", 0.3)
    other = sqlite3.connect(study.manifest_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        for command in (["status", str(path)], ["run", str(path)]):
            result = runner.invoke(app, command)
            assert result.exit_code == 3, result.output
            assert "another eetrend command is using this study" in result.output
            assert "backup" not in result.output and "cannot open" not in result.output
            assert len(result.output.strip().splitlines()) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert runner.invoke(app, ["status", str(path)]).exit_code == 0


# -- files changed behind eetrend's back ------------------------------------------------------------
@pytest.fixture
def complete(emulator, done_remotely):
    path, study = done_remotely
    emulator.drive.media.delay = 0
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    return path, study


def _flip_a_byte(path: Path, keep_mtime: bool = False) -> None:
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_flipped_byte_is_found_by_verify_and_fetched_again_by_the_next_run(emulator, complete):
    path, study = complete
    damaged = study.downloads / "test-study_NDVI_2001.tif"
    good = md5(damaged)
    _flip_a_byte(damaged)

    found = runner.invoke(app, ["verify", str(path)])
    assert found.exit_code == 1
    assert f"2001: {damaged} changed since it was verified (its md5 differs); fix: eetrend run" in found.output
    assert "verified 3 file(s) by md5; intact years: 2000,2002-2003" in found.output

    before = emulator.count("GET", r"/drive/v3/files/")
    again = runner.invoke(app, ["run", str(path)])
    assert again.exit_code == 0, again.output
    assert f"2001: {damaged} changed since it was verified (its md5 differs); fetching it again" in again.output
    assert md5(damaged) == good and emulator.count("GET", r"/drive/v3/files/") > before
    assert runner.invoke(app, ["verify", str(path)]).exit_code == 0


def test_a_truncated_file_is_noticed_by_its_size(emulator, complete):
    path, study = complete
    damaged = study.downloads / "test-study_NDVI_2002.tif"
    good = md5(damaged)
    damaged.write_bytes(damaged.read_bytes()[:-100])
    again = runner.invoke(app, ["run", str(path)])
    assert again.exit_code == 0, again.output
    assert "bytes, " in again.output and "were verified; fetching it again" in again.output
    assert md5(damaged) == good


def test_an_untouched_study_is_checked_by_size_and_mtime_without_reading_files(emulator, complete, monkeypatch):
    import pipeline.earthengine.integrity as integrity

    path, study = complete

    def must_not_hash(_path):
        raise AssertionError("an unchanged file was read again")

    monkeypatch.setattr(integrity, "md5_of", must_not_hash)
    assert runner.invoke(app, ["run", str(path)]).exit_code == 0


def test_verify_rehashes_even_a_file_whose_mtime_was_kept(emulator, complete):
    path, study = complete
    damaged = study.downloads / "test-study_NDVI_2003.tif"
    _flip_a_byte(damaged, keep_mtime=True)
    found = runner.invoke(app, ["verify", str(path)])
    assert found.exit_code == 1 and f"2003: {damaged} changed since it was verified" in found.output


def test_a_damaged_file_whose_remote_copy_was_deleted_names_the_year_and_the_redo(emulator, make_study):
    path, study = make_study(years="2000..2001", extra='[trend]\nmin_years = 2\nmethod = "ols"')
    assert runner.invoke(app, ["run", str(path)]).exit_code == 75
    emulator.earthengine.finish_all()
    assert runner.invoke(app, ["download", str(path), "--delete-remote"]).exit_code == 0
    damaged = study.downloads / "test-study_NDVI_2001.tif"
    _flip_a_byte(damaged)
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 1
    assert f"2001 needs attention: download failed: {damaged} changed since it was verified" in result.output
    assert f"eetrend export {study.source} --redo 2001" in result.output
    found = runner.invoke(app, ["verify", str(path)])
    assert found.exit_code == 1 and f"fix: eetrend export {study.source} --redo 2001" in found.output


def test_verify_before_any_download_says_so_and_creates_nothing(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 0 and "no downloaded file is recorded" in result.output
    assert not study.state.exists()


# -- logs a cron job can live with ------------------------------------------------------------------
def test_log_file_lines_are_written_once_and_not_echoed_to_stderr(emulator, complete, tmp_path):
    path, study = complete
    (study.state / "run.lock").write_text("pid 999999 (eetrend run) since 2026-01-01 00:00:00 UTC")
    log = tmp_path / "cron.log"
    process = eetrend("run", str(path), "--log-file", str(log))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert err == ""  # the INFO lines went to the file only: no cron mail
    assert out == f"complete and up to date: {output_paths(study)['trend']}\n"
    lines = [line.split(" ", 2)[2] for line in log.read_text().splitlines()]
    assert len(lines) == len(set(lines)) == 3
    assert lines[0].startswith("INFO pipeline.lock: recovered the lock of a command that ended")
    assert lines[1:] == [f"INFO eetrend.run: test-study: complete and up to date: {output_paths(study)['trend']}",
                         "INFO eetrend.run: test-study: exit 0"]


def test_quiet_run_prints_nothing_when_all_is_well_and_only_the_problem_otherwise(emulator, make_study, tmp_path):
    path, study = make_study(years="2000..2001", extra='[trend]\nmin_years = 2\nmethod = "ols"',
                             export='folder = "eetrend_test"\nmax_attempts = 1')
    emulator.earthengine.fail_tasks("2001", "Internal error: emulated.")
    first = eetrend("run", str(path), "-q")
    assert first.communicate(timeout=60) == ("", "") and first.returncode == 75
    emulator.earthengine.finish_all()
    log = tmp_path / "cron.log"
    second = eetrend("run", str(path), "-q", "--log-file", str(log))
    out, err = second.communicate(timeout=60)
    assert second.returncode == 1 and out == ""
    assert err.splitlines() == ["2001 needs attention: Internal error: emulated. (gave up after 1 failed attempt(s); "
                                "raise export.max_attempts or run `eetrend export CONFIG --resubmit` to try again)"]
    assert "ERROR eetrend.run: test-study: 2001 needs attention" in log.read_text()


def test_an_error_ending_a_logged_run_is_in_the_log_file_too(emulator, complete, tmp_path):
    path, study = complete
    path.write_text(path.read_text().replace('years = "2000..2003"', 'years = "2000..2003"\nbogus = 1'))
    log = tmp_path / "cron.log"
    result = runner.invoke(app, ["run", str(path), "--log-file", str(log)])
    assert result.exit_code == 2
    (line,) = log.read_text().splitlines()
    assert re.search(r" ERROR eetrend\.cli: error: .*study\.bogus: unknown key.* \(exit 2\)$", line), line


def test_a_config_change_seen_by_run_points_to_the_command_that_has_force(emulator, complete):
    path, study = complete
    path.write_text(path.read_text().replace("[composite]\n", '[composite]\nindex = "NBR"\n'))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "run `eetrend export CONFIG --force`" in result.output and "run again with --force" not in result.output


def _dead_pid() -> int:
    """The pid of a process that has ended (the kernel does not reuse it at once)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_removes_what_dead_processes_left_in_outputs_and_downloads_and_keeps_live_ones(emulator, complete):
    path, study = complete
    dead = _dead_pid()
    trend = output_paths(study)["trend"]
    left = [trend.with_name(f".{trend.name}.{dead}.0123abcd.partial"),
            study.outputs / f".test-study_slope.png.{dead}.89abcdef.partial.png",
            study.downloads / f".test-study_NDVI_2000.vrt.{dead}.00ff00ff.partial"]
    stale_download = study.downloads / ".test-study_NDVI_2001.tif.0123456789abcdef.partial"  # its file is verified
    live = study.outputs / f".{trend.name}.{os.getpid()}.0badcafe.partial"
    for file in [*left, stale_download, live]:
        file.write_bytes(b"half")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert [p for p in [*left, stale_download] if p.exists()] == []
    assert live.exists()


def test_a_temporary_whose_pid_was_reused_by_a_younger_process_is_stale(tmp_path):
    from pipeline.files.leftovers import stale_temporaries

    younger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        old = tmp_path / f".trend.tif.{younger.pid}.0123abcd.partial"
        old.write_bytes(b"left by a process long gone")
        os.utime(old, (time.time() - 3600, time.time() - 3600))  # written an hour before that pid started
        fresh = tmp_path / f".other.tif.{younger.pid}.0123abcd.partial"
        fresh.write_bytes(b"being written by it")
        assert stale_temporaries(tmp_path) == [old]
    finally:
        younger.kill()
        younger.wait()


def test_an_export_terminated_in_a_retry_resumes_with_exactly_one_task_per_year(emulator, make_study):
    path, study = make_study(years="2000..2003")
    emulator.inject("POST", r"image:export", status=503, times=2)  # the client backs off: a moment to be killed
    process = eetrend("export", str(path))
    wait_for(lambda: emulator.count("POST", r"image:export") >= 1, 60, "the first submission")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.splitlines() == ["interrupted (SIGTERM); nothing half-written was left under a final name"]
    again = runner.invoke(app, ["export", str(path)])
    assert again.exit_code == 0, again.output
    descriptions = sorted(description for description, _state in emulator.earthengine.states())
    assert len(descriptions) == len(set(descriptions)) == 4  # one task per year, none twice


def test_reading_commands_work_while_a_writer_holds_the_study(emulator, complete):
    path, study = complete
    with study_lock_held_by_another_thread(study):
        assert runner.invoke(app, ["status", str(path)]).exit_code == 0
        assert runner.invoke(app, ["verify", str(path)]).exit_code == 0
        assert runner.invoke(app, ["download", str(path)]).exit_code == 3


def test_a_damaged_file_whose_remote_copy_vanished_outside_eetrend_names_the_redo(emulator, complete):
    path, study = complete
    damaged = study.downloads / "test-study_NDVI_2002.tif"
    _flip_a_byte(damaged)
    for file_id in [i for i, f in emulator.drive.files.items() if f.name == damaged.name]:
        del emulator.drive.files[file_id]  # someone cleaned the Drive folder by hand
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 1
    assert "2002 needs attention: download failed: no file named test-study_NDVI_2002.tif" in result.output
    assert f"(eetrend export {study.source} --redo 2002)" in result.output


SWALLOWED = """
import os, signal, sys, time
from pipeline import signals
signals.install()

class Finalised:
    def __del__(self):  # Python ignores exceptions raised here, as in at-fork callbacks
        os.kill(os.getpid(), signal.{name})
        time.sleep(1)

item = Finalised()
del item
try:
    time.sleep(10)
    print("not stopped")
except KeyboardInterrupt as exc:
    print("stopped by", type(exc).__name__, signals.exit_code(exc))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_raised_where_python_ignores_exceptions_still_stops_the_command(sig):
    """Seen for real: a SIGHUP landing in logging's at-fork callback while the pool forked a worker was lost."""
    done = subprocess.run([sys.executable, "-c", SWALLOWED.format(name=sig.name)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    expected = "Terminated" if sig != signal.SIGINT else "KeyboardInterrupt"
    assert done.stdout.strip() == f"stopped by {expected} {128 + sig}"
    assert "Exception ignored" not in done.stderr


def test_quiet_export_and_download_print_only_their_failures(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, export='folder = "eetrend_test"\nmax_attempts = 1')
    quiet = runner.invoke(app, ["export", str(path), "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""
    emulator.earthengine.finish_all()
    emulator.drive.media.fault("corrupt", "2001", times=9)
    result = runner.invoke(app, ["download", str(path), "-q"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("2001 failed: test-study_NDVI_2001.tif failed verification 3 times")


def test_an_output_changed_behind_eetrends_back_is_written_again(emulator, complete):
    import rasterio

    path, study = complete
    trend = output_paths(study)["trend"]
    with rasterio.open(trend) as dataset:
        shape = dataset.shape  # the emulator's rasters follow the study's region (issue 11)
    trend.write_bytes(trend.read_bytes()[:1000])  # a damaged output: "complete" would be a lie
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{trend.name} changed since written; writing the outputs again" in result.output
    with rasterio.open(trend) as dataset:
        assert dataset.read(1).shape == shape
    assert runner.invoke(app, ["run", str(path)]).output.strip() == f"complete and up to date: {trend}"


def test_a_signal_during_a_deferred_start_is_raised_after_it_and_a_second_one_at_once():
    from pipeline import signals

    undo = signals.install()
    try:
        steps = []
        with pytest.raises(signals.Terminated) as first:
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                steps.append("the start finished")
        assert steps == ["the start finished"] and first.value.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                steps.append("not reached")
        assert steps == ["the start finished"]
    finally:
        undo()
