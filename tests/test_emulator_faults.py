"""``eetrend emulator`` fault flags: a study's failure modes rehearsed from the shell.

The flags are parsed into the emulator's own fault objects; these tests check each one
changes what the real clients see, and that a standalone emulator started with them
makes ``eetrend run`` fail the way the Python-injected faults do.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.emulator import Emulator
from pipeline.emulator.faults import FaultPlan, FaultSpecError

from .conftest import study_toml

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _get(url: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer x"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_http_errors_answer_the_next_requests_on_matching_paths_then_stop():
    plan = FaultPlan.parse(http_errors=["503:2:/operations", "429:1"])
    with Emulator() as emu:
        plan.apply(emu)
        operations = f"{emu.url}/v1/projects/p/operations"
        assert [_get(operations) for _ in range(4)] == [503, 503, 429, 200]  # in the order armed, then served
        assert _get(f"{emu.url}/v1/projects/p/algorithms") == 200


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"http_errors": ["abc:2"]}, "--http-errors 'abc:2': 'abc' is not a whole number"),
        ({"http_errors": ["503"]}, "--http-errors '503': write it as STATUS:TIMES"),
        ({"http_errors": ["200:1"]}, "must be at least 400"),
        ({"fail_tasks": [":2"]}, "--fail-tasks ':2': MATCH is empty"),
        ({"media_faults": ["melt:2003"]}, "KIND one of truncate, corrupt, no_content_range, drop"),
        ({"duplicate_folders": ["x:zero"]}, "--duplicate-folder 'x:zero': 'zero' is not a whole number"),
        ({"queue_limit": -1}, "--queue-limit -1"),
        ({"slow_media": -2.0}, "--slow-media -2.0"),
    ],
)
def test_a_malformed_fault_flag_names_the_flag_and_its_form(flags, fragment):
    with pytest.raises(FaultSpecError, match=re.escape(fragment)):
        FaultPlan.parse(**flags)


def test_the_cli_refuses_a_malformed_flag_with_one_line_and_exit_2():
    result = runner.invoke(app, ["emulator", "--media-fault", "melt:2003"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --media-fault 'melt:2003': write it as KIND:MATCH[:TIMES] with KIND one of truncate, corrupt, "
        "no_content_range, drop, e.g. corrupt:2003"]


def test_each_flag_arms_the_emulator_fault_it_names():
    plan = FaultPlan.parse(fail_tasks=["2003:2:User memory limit exceeded."], queue_limit=5,
                           media_faults=["corrupt:2005:3"], slow_media=0.25, duplicate_folders=["exports:2"])
    with Emulator() as emu:
        plan.apply(emu)
        (task_fault,) = emu.earthengine.task_faults
        assert (task_fault.match, task_fault.times, task_fault.message) == ("2003", 2, "User memory limit exceeded.")
        assert emu.earthengine.queue_limit == 5
        for media in (emu.drive.media, emu.storage.media):
            (fault,) = media.faults
            assert (fault.kind, fault.match, fault.times) == ("corrupt", "2005", 3) and media.delay == 0.25
        folders = [f for f in emu.drive.files.values() if f.name == "exports"]
        assert len(folders) == 2 and len({f.id for f in folders}) == 2
    assert len(plan.describe()) == 5


def test_slow_media_delays_every_download_answer():
    with Emulator() as emu:
        FaultPlan.parse(slow_media=0.3).apply(emu)
        folder = emu.drive.add_folder("f")
        file_id = emu.drive.add_file(folder, "a.tif", b"12345")
        started = time.monotonic()
        assert _get(f"{emu.url}/drive/v3/files/{file_id}?alt=media") == 200
        assert time.monotonic() - started >= 0.3


def test_a_standalone_emulator_with_fault_flags_makes_run_fail_as_the_tests_do(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "emulator", "--speed", "2000", "--fail-tasks", "2001:9:Internal error.",
         "--media-fault", "corrupt:2002:9"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", banner).group(0)
        faults = [process.stdout.readline().strip() for _ in range(2)]
        assert faults == ["fault: the next 9 task(s) matching '2001' fail: Internal error.",
                          "fault: the next 9 download(s) of files matching '2002': corrupt"]
        config = tmp_path / "study.toml"
        config.write_text(study_toml(url, years="2000..2002", export='folder = "x"\nmax_attempts = 1',
                                     extra='[trend]\nmethod = "ols"'))
        first = runner.invoke(app, ["run", str(config), "--wait", "--poll", "0.2", "--timeout", "60"])
        second = runner.invoke(app, ["run", str(config)])
    finally:
        process.terminate()
        out, err = process.communicate(timeout=20)
    assert first.exit_code == 1, first.output
    assert "2002 needs attention: download failed: test-study_NDVI_2002.tif failed verification 3 times" in first.output
    assert second.exit_code == 1, second.output
    assert ("2001 needs attention: Internal error. (gave up after 1 failed attempt(s); raise export.max_attempts "
            "or run `eetrend export CONFIG --resubmit` to try again)") in second.output  # the cause stays visible
    assert process.returncode == 143 and err.strip().endswith("interrupted (SIGTERM); nothing half-written was left "
                                                              "under a final name")  # SIGTERM stops it like Ctrl-C


def test_a_client_that_goes_away_mid_answer_is_not_reported_as_an_emulator_error(capsys):
    import socket

    with Emulator() as emu:
        FaultPlan.parse(slow_media=0.3).apply(emu)
        folder = emu.drive.add_folder("f")
        file_id = emu.drive.add_file(folder, "a.tif", b"x" * 5_000_000)
        host, port = emu.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:  # a download killed half way
            sock.sendall(f"GET /drive/v3/files/{file_id}?alt=media HTTP/1.1\r\nHost: x\r\n"
                         "Authorization: Bearer x\r\n\r\n".encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        time.sleep(0.6)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--http-errors", "500:1:("], ["--http-errors", "999:2"], ["--slow-media", "nan"]])
def test_fault_flags_the_emulator_could_not_honour_are_one_line(flags):
    result = CliRunner().invoke(app, ["emulator", "--port", "0", *flags])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_the_standalone_emulator_with_128_plus_its_number(sig):
    process = subprocess.Popen([sys.executable, "-m", "cli", "emulator", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "emulator on http://127.0.0.1:" in process.stdout.readline()
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + sig
    assert err.strip().splitlines() == [f"interrupted ({sig.name}); nothing half-written was left under a final name"]
