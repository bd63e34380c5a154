"""The Dask executor gives the process pool's results bit for bit; SLURM settings reach the job script."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cli import app
from pipeline.engine.dask_executor import DaskSettings, SlurmSettings, slurm_job_options
from pipeline.engine.sample import write_sample
from pipeline.engine.trend import FitOptions, trend_rasters
from pipeline.errors import MissingExtraError
from tests.conftest import SHARED_DATA

runner = CliRunner()
pytest.importorskip("distributed", reason="the dask extra is not installed")


def _bands(path):
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.descriptions


def test_trend_on_a_local_dask_cluster_equals_the_process_pool(tmp_path):
    folder = tmp_path / "stack"
    write_sample(folder, years=range(2001, 2013), rows=300, cols=530, seed=3)
    pool = trend_rasters(folder, tmp_path / "pool.tif", options=FitOptions(method="both"), workers=2,
                         window_pixels=256 * 256)
    dask = trend_rasters(folder, tmp_path / "dask.tif", options=FitOptions(method="both"), workers=2,
                         window_pixels=256 * 256, executor="dask", dask=DaskSettings(workers=2))
    assert pool.windows == dask.windows > 1
    a, names_a = _bands(tmp_path / "pool.tif")
    b, names_b = _bands(tmp_path / "dask.tif")
    assert names_a == names_b and np.array_equal(a, b, equal_nan=True)


@pytest.mark.skipif(not (SHARED_DATA / "L7_ETMs.tif").exists(), reason="the tutorial image is not on this machine")
def test_index_on_dask_equals_threads_and_processes(tmp_path):
    outputs = {}
    for executor in ("thread", "process", "dask"):
        out = tmp_path / f"{executor}.tif"
        result = runner.invoke(app, ["index", str(SHARED_DATA / "L7_ETMs.tif"), "-o", str(out), "--executor",
                                     executor, "--workers", "2", "--memory-budget", "8MB", "--index", "savi",
                                     "--blue", "1", "--red", "3", "--nir", "4"])
        assert result.exit_code == 0, result.output
        outputs[executor] = _bands(out)[0]
    assert np.array_equal(outputs["dask"], outputs["process"], equal_nan=True)
    assert np.array_equal(outputs["thread"], outputs["process"], equal_nan=True)


def test_a_missing_dask_install_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    folder = tmp_path / "stack"
    write_sample(folder, years=range(2001, 2006), rows=8, cols=8)
    with pytest.raises(MissingExtraError, match=r"pip install 'eetrend\[dask\]'"):
        trend_rasters(folder, tmp_path / "t.tif", executor="dask")
    assert not (tmp_path / "t.tif").exists()
    result = runner.invoke(app, ["trend", str(folder), "-o", str(tmp_path / "t.tif"), "--executor", "dask"])
    assert result.exit_code == 2 and "pip install 'eetrend[dask]'" in result.output


def test_scheduler_needs_the_dask_executor(tmp_path):
    result = runner.invoke(app, ["trend", str(tmp_path), "-o", str(tmp_path / "t.tif"), "--scheduler",
                                 "tcp://127.0.0.1:8786"])
    assert result.exit_code == 2 and "--scheduler needs --executor dask" in result.output


def test_a_study_dask_slurm_table_becomes_the_job_script(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.slurm import SLURMJob

    from pipeline.config import load_study
    from tests.conftest import study_toml

    path = tmp_path / "study.toml"
    path.write_text(study_toml("http://127.0.0.1:9", extra=(
        '[dask]\n[dask.slurm]\ncores = 8\nmemory = "32GB"\naccount = "geo-lab"\nqueue = "normal"\n'
        'walltime = "02:00:00"\nminimum_jobs = 1\nmaximum_jobs = 10\ninterface = "ib0"\n'
        'job_extra_directives = ["--qos=high", "--constraint=skylake"]\n'
        'job_script_prologue = ["module load gdal", "source ~/venv/bin/activate"]\n'
        'local_directory = "$TMPDIR"\nlog_directory = "logs/slurm"\n')))
    study = load_study(path)
    settings = study.dask_settings()
    assert settings.slurm == SlurmSettings(cores=8, memory="32GB", account="geo-lab", queue="normal",
                                           walltime="02:00:00", processes=1, minimum_jobs=1, maximum_jobs=10,
                                           interface="ib0", job_extra_directives=("--qos=high", "--constraint=skylake"),
                                           job_script_prologue=("module load gdal", "source ~/venv/bin/activate"),
                                           local_directory="$TMPDIR", log_directory=str(tmp_path / "logs" / "slurm"))
    job = SLURMJob(scheduler="tcp://127.0.0.1:8786", name="eetrend", **slurm_job_options(settings.slurm))
    script = job.job_script()
    assert "#SBATCH -A geo-lab" in script and "#SBATCH -p normal" in script and "#SBATCH -t 02:00:00" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --qos=high\n#SBATCH --constraint=skylake" in script
    assert script.index("module load gdal\nsource ~/venv/bin/activate") < script.index("distributed.cli.dask_worker")
    assert "--interface ib0" in script and "--local-directory $TMPDIR" in script
    assert f"#SBATCH -o {tmp_path / 'logs' / 'slurm'}/dask-worker-%J.out" in script
    assert (tmp_path / "logs" / "slurm").is_dir()  # made before sbatch needs it


def test_slurm_job_logs_go_to_the_state_folder_by_default(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue.slurm import SLURMJob

    from pipeline.config import load_study
    from tests.conftest import study_toml

    path = tmp_path / "study.toml"
    path.write_text(study_toml("http://127.0.0.1:9", extra='[dask]\n[dask.slurm]\ncores = 2\nmemory = "4GB"\n'))
    study = load_study(path)
    logs = study.state / "slurm-logs"
    settings = study.dask_settings().slurm
    assert settings.log_directory == str(logs) and settings.interface is None
    script = SLURMJob(scheduler="tcp://127.0.0.1:8786", name="eetrend", **slurm_job_options(settings)).job_script()
    assert f"#SBATCH -e {logs}/dask-worker-%J.err" in script and "--interface" not in script


def test_dask_config_mistakes_are_named(tmp_path):
    from pipeline.config import load_study
    from pipeline.errors import ConfigError
    from tests.conftest import study_toml

    path = tmp_path / "study.toml"
    path.write_text(study_toml("http://127.0.0.1:9", extra='[dask]\n[dask.slurm]\ncores = 8\nmemory = "lots"\n'))
    with pytest.raises(ConfigError, match=r"dask\.slurm: memory must be like '32GB'"):
        load_study(path)
    path.write_text(study_toml("http://127.0.0.1:9", extra=(
        '[dask]\n[dask.slurm]\ncores = 8\nmemory = "8GB"\njob_extra_directives = ["#SBATCH --qos=high"]\n')))
    with pytest.raises(ConfigError, match=r"'#SBATCH --qos=high' is not an sbatch option; write each like"):
        load_study(path)
    path.write_text(study_toml("http://127.0.0.1:9", extra=(
        '[dask]\n[dask.slurm]\ncores = 8\nmemory = "8GB"\ninterface = "eth0; rm"\n')))
    with pytest.raises(ConfigError, match=r"interface 'eth0; rm' is not a network interface name"):
        load_study(path)


def test_an_existing_scheduler_is_used_by_address(tmp_path):
    from distributed import LocalCluster

    folder = tmp_path / "stack"
    write_sample(folder, years=range(2001, 2009), rows=40, cols=300, seed=4)
    trend_rasters(folder, tmp_path / "pool.tif", workers=1)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result = runner.invoke(app, ["trend", str(folder), "-o", str(tmp_path / "remote.tif"), "--executor", "dask",
                                     "--scheduler", cluster.scheduler_address, "-q"])
        assert result.exit_code == 0, result.output
        with cluster.get_client() as client:
            assert client.run(lambda: 1)  # the cluster outlived the command: eetrend did not close it
    assert np.array_equal(_bands(tmp_path / "remote.tif")[0], _bands(tmp_path / "pool.tif")[0], equal_nan=True)
