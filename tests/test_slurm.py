"""The tutorial's Dask-on-SLURM route on a real SLURM: a study's ``[dask.slurm]`` table submits
its workers with sbatch, and the trend equals the default executor's bit for bit.

The cluster (munged, slurmctld, slurmd on 127.0.0.1; see tests/slurm.py) starts once for
this module, in about a second, and is stopped afterwards. CI installs Debian's
``slurm-wlm`` and ``munge`` (.ci/run); without them these tests skip and say so.
"""

from __future__ import annotations

import functools
import os
import re
import shutil

import numpy as np
import pytest
import rasterio

from pipeline.errors import UsageError
from tests.conftest import study_toml
from tests.slurm import missing_programs, running_slurm

pytest.importorskip("dask_jobqueue", reason="the dask extra is not installed")

MARK = "eetrend-slurm-test"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM cluster, stopped (jobs cancelled, daemons waited for) after the module."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} not found): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster runs slurmd as root, which launches jobs; run as root (CI does)")
    yield from running_slurm(tmp_path_factory.mktemp("slurm"))


@pytest.fixture
def on_slurm(slurm, monkeypatch):
    """The cluster, with SLURM clients (and dask-jobqueue's sbatch calls) pointed at it."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    return slurm


def _bands(path):
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.descriptions


SLURM_TABLE = """
[dask]
[dask.slurm]
cores = 1
memory = "512MB"
walltime = "00:10:00"
minimum_jobs = 1
maximum_jobs = 2
interface = "lo"
local_directory = "{scratch}"
job_extra_directives = ["--export=ALL,EETREND_MARK={mark}"]
job_script_prologue = ["echo prologue saw $EETREND_MARK in job $SLURM_JOB_ID"]
"""


def test_a_study_on_slurm_submits_its_workers_with_sbatch_and_equals_the_default_executor(
        on_slurm, emulator, tmp_path, monkeypatch):
    import pipeline.engine.trend as trend
    from pipeline.config import load_study
    from pipeline.run import output_paths, run_study

    # Many small windows, so the tasks spread over the jobs' workers (a study's window is large).
    monkeypatch.setattr(trend, "trend_rasters", functools.partial(trend.trend_rasters, window_pixels=64 * 64))
    elsewhere = tmp_path / "started-here"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # dask-jobqueue's default would leave slurm-*.out files here
    scratch = tmp_path / "scratch"
    config = tmp_path / "study.toml"
    table = SLURM_TABLE.format(scratch=scratch, mark=MARK)
    config.write_text(study_toml(emulator.url, years="2000..2007", extra=table))
    study = load_study(config)
    assert run_study(study).exit_code == 75  # exports submitted, waiting on Earth Engine
    emulator.earthengine.finish_all()
    done = run_study(study)
    assert done.exit_code == 0, done.lines
    on_slurm_output = _bands(output_paths(study)["trend"])

    jobs = [job for job in on_slurm.finished_jobs() if job["Name"] == "dask-worker"]
    assert jobs, on_slurm.logs()  # slurmctld recorded the jobs sbatch submitted, and their end
    assert all(job["NodeList"] == "eetrend-node" and job["WorkDir"] == str(elsewhere) for job in jobs)
    logs = study.state / "slurm-logs"  # the default log directory, not the folder eetrend started in
    assert not list(elsewhere.glob("slurm-*.out")) and not list(tmp_path.glob("slurm-*.out"))
    for job in jobs:
        out = (logs / f"dask-worker-{job['JobId']}.out").read_text()
        err = (logs / f"dask-worker-{job['JobId']}.err").read_text()
        assert f"prologue saw {MARK} in job {job['JobId']}" in out  # the directive and the prologue ran
        assert re.search(r"Registered to:\s+tcp://127\.0\.0\.1:\d+", err), err  # over lo, as configured
    assert list(scratch.glob("dask-scratch-space*"))  # the workers' local directory

    submitted = len(on_slurm.finished_jobs())
    # The same study with the default executor: the config without [dask], the output fitted again.
    config.write_text(study_toml(emulator.url, years="2000..2007"))
    plain = load_study(config)
    output_paths(plain)["trend"].unlink()
    again = run_study(plain)
    assert again.exit_code == 0 and again.fitted, again.lines
    default_output = _bands(output_paths(plain)["trend"])
    assert on_slurm_output[1] == default_output[1]
    assert np.array_equal(on_slurm_output[0], default_output[0], equal_nan=True)
    assert len(on_slurm.finished_jobs()) == submitted  # the default executor submitted no job


def test_a_missing_interface_is_named_before_any_job(on_slurm, tmp_path):
    from pipeline.engine.dask_executor import SlurmSettings, slurm_cluster

    with pytest.raises(UsageError, match=r"interface 'ib9' is not a network interface of this machine \(it has .*lo"):
        slurm_cluster(SlurmSettings(cores=1, memory="1GB", interface="ib9"))
    assert on_slurm.command("squeue", "-h").strip() == ""


def test_without_sbatch_a_slurm_table_says_so(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    from pipeline.engine.dask_executor import SlurmSettings, slurm_cluster

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(UsageError, match=r"\[dask.slurm\] needs SLURM's sbatch on PATH"):
        slurm_cluster(SlurmSettings(cores=1, memory="1GB"))


def test_eetrend_check_names_a_missing_sbatch_or_interface_before_any_request(emulator, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, years="2000..2003", extra=(
        '[dask]\n[dask.slurm]\ncores = 1\nmemory = "1GB"\ninterface = "ib9"\n')))
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/" + name)  # as on a login node
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "dask.slurm.interface 'ib9' is not a network interface of this machine" \
        in result.output, result.output
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "[dask.slurm] needs SLURM's sbatch on PATH" in result.output
    assert not [r for r in emulator.router.requests if "image:export" in r.path]
