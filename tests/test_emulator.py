"""The emulator, driven through the real ``earthengine-api`` client (no mocks of the client)."""

from __future__ import annotations

import ee
import pytest

from pipeline.earthengine import client as ee_api


@pytest.fixture
def session(make_study):
    path, study = make_study()
    ee_api.connect(study)
    return study


def _export(study, year, request_id):
    from pipeline.earthengine.recipes import annual_composite

    return ee_api.export_image(study, year, annual_composite(study, year), request_id)


def test_emulator_listens_on_loopback_only(emulator):
    assert emulator.url.startswith("http://127.0.0.1:")
    assert emulator._server.server_address[0] == "127.0.0.1"


def test_initialise_fetches_discovery_and_algorithms_from_the_emulator(emulator, session):
    assert emulator.count("GET", r"^/\$discovery/rest$") >= 1
    assert emulator.count("GET", r"^/v1/projects/test-project/algorithms$") == 1
    # The signatures are the ee wheel's real list: the recipes' algorithms and any user code's are there.
    assert ee.ApiFunction.lookup("Image.normalizedDifference") is not None
    assert ee.ApiFunction.lookup("Image.linkCollection") is not None and ee.ApiFunction.lookup("Number.add")
    assert ee.ApiFunction.lookup("Image.noSuchAlgorithm") is None


def test_value_compute_returns_constants(emulator, session):
    assert ee.Number(42).getInfo() == 42
    assert emulator.count("POST", r"/value:compute$") == 1


def test_operation_moves_through_its_states_on_the_emulator_clock(emulator, session):
    operation = _export(session, 2000, "req-1")
    assert operation.state == "PENDING" and operation.progress == 0.0  # the answer held only the name
    assert ee_api.get_operation(operation.name).create_time.endswith("Z")
    emulator.clock.advance(emulator.earthengine.queue_seconds + emulator.earthengine.run_seconds / 2)
    running = ee_api.get_operation(operation.name)
    assert running.state == "RUNNING" and running.progress == pytest.approx(0.5)
    emulator.earthengine.finish_all()
    done = ee_api.get_operation(operation.name)
    assert done.state == "SUCCEEDED" and done.progress == 1.0
    assert done.destination_uris[0].startswith("https://drive.google.com/#folders/")
    assert done.end_time.endswith("Z")
    # The legacy task view of the same operation, as ee converts it.
    (task,) = ee.data.getTaskStatus(operation.name.rsplit("/", 1)[-1])
    assert task["state"] == "COMPLETED"


def test_a_repeated_request_id_returns_the_existing_operation(emulator, session):
    first = _export(session, 2000, "same-id")
    second = _export(session, 2000, "same-id")
    assert first.name == second.name
    assert len(emulator.earthengine.operations) == 1
    assert emulator.earthengine.export_requests == 2


def test_operations_list_follows_page_tokens(emulator, session):
    emulator.earthengine.max_page_size = 5
    names = {_export(session, 2000 + i, f"req-{i}").name for i in range(12)}
    listed = ee_api.list_operations()
    assert {op.name for op in listed} == names and len(listed) == 12
    assert emulator.count("GET", r"/operations$") == 3  # 5 + 5 + 2


def test_cancel_ends_a_running_task_cancelled(emulator, session):
    operation = _export(session, 2000, "req-c")
    ee_api.cancel_operation(operation.name)
    cancelling = ee.data.getOperation(operation.name)
    assert cancelling["metadata"]["state"] == "CANCELLING" and "done" not in cancelling
    emulator.clock.advance(emulator.earthengine.cancel_seconds)
    cancelled = ee.data.getOperation(operation.name)
    assert cancelled["metadata"]["state"] == "CANCELLED" and cancelled["done"] is True
    assert cancelled["metadata"]["endTime"].endswith("Z")


def test_503_bursts_are_retried_by_the_client(emulator, session, http_sleeps):
    emulator.inject("POST", r"image:export$", status=503, times=3)
    operation = _export(session, 2001, "req-503")
    assert operation.state == "PENDING"
    assert emulator.count("POST", r"image:export$") == 4
    assert len(http_sleeps) == 3  # googleapiclient backed off three times


def test_a_failed_task_carries_its_message(emulator, session):
    emulator.earthengine.fail_tasks("_2002", "Internal error.", times=1)
    operation = _export(session, 2002, "req-f")
    emulator.earthengine.finish_all()
    failed = ee_api.get_operation(operation.name)
    assert failed.state == "FAILED" and failed.error == "Internal error."


def test_queue_limit_answers_too_many_tasks(emulator, session, http_sleeps):
    emulator.earthengine.queue_limit = 1
    _export(session, 2000, "q-1")
    with pytest.raises(ee.EEException, match="Too many tasks already in the queue"):
        _export(session, 2001, "q-2")
    assert ee_api.is_queue_full("Too many tasks already in the queue (1). Please wait")


def test_an_invalid_description_is_refused_with_400(emulator, session):
    from pipeline.earthengine.recipes import annual_composite

    task = ee.batch.Export.image.toDrive(annual_composite(session, 2000), description="bad name!", folder="f",
                                         scale=30, region=ee.Geometry.Rectangle([10, 46, 10.1, 46.1]))
    with pytest.raises(ee.EEException, match="Invalid task description") as info:
        ee.data.exportImage("req-bad", dict(task.config))
    assert ee_api.http_status(info.value) == 400  # found through the exception chain, as exports.py does
    assert emulator.earthengine.operations == {}


def test_requests_without_credentials_are_refused(emulator):
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{emulator.url}/v1/projects/p/operations")
    assert info.value.code == 401


def test_eetrend_emulator_runs_standalone_until_interrupted():
    import json
    import re
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", "from cli import app; app()", "emulator", "--speed", "100"],
                               cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        with urllib.request.urlopen(f"{url}/$discovery/rest?version=v1") as response:
            document = json.load(response)
        assert document["version"] == "v1"
        assert "export" in document["resources"]["projects"]["resources"]["image"]["methods"]
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    # Ctrl-C ends it as it ends every command: one line, exit 128 + SIGINT
    assert process.returncode == 130
    assert err.strip().splitlines() == ["interrupted (SIGINT); nothing half-written was left under a final name"]
