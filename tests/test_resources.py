"""Resources: --memory-budget bounds the whole process tree; thousands of inputs fit in the descriptor limit."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from benchmarks.tree_rss import run_with_peak_rss
from cli import app
from pipeline.engine import trend as trend_module
from pipeline.engine.sample import write_sample
from pipeline.engine.stack import open_stack
from pipeline.engine.trend import FitOptions, plan_memory, trend_rasters
from pipeline.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


@pytest.fixture(scope="module")
def stack30(tmp_path_factory) -> Path:
    """30 years of 256 x 512 pixels, 5 % missing, tiled like Earth Engine's exports."""
    folder = tmp_path_factory.mktemp("y30")
    write_sample(folder, years=range(1991, 2021), rows=256, cols=512, seed=3)
    return folder


def _peak_tree_rss(command: list[str]) -> tuple[int, str]:
    """Run ``command``; the largest summed resident memory of it and its children, sampled every 5 ms."""
    _wall, peak, code, err = run_with_peak_rss(command, ROOT, keep_stderr=True)
    assert code == 0, err
    return peak, err


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_peak_memory_of_the_process_tree_stays_within_the_budget(stack30, tmp_path, executor) -> None:
    budget = 384 * MB
    command = [sys.executable, "-c", "import cli; cli.app()", "trend", str(stack30), "-o", str(tmp_path / "t.tif"),
               "--method", "both", "--memory-budget", "384MB", "--executor", executor, "--workers", "2"]
    peak, err = _peak_tree_rss(command)
    assert peak <= 1.25 * budget, f"{executor}: peak {peak / MB:.0f} MB for a 384 MB budget"
    if executor == "process":  # three interpreters do not fit: the run says so and uses fewer
        assert "holds 1 worker(s), not 2" in err


def test_a_budget_for_one_worker_uses_one_and_says_so(stack30, monkeypatch, caplog) -> None:
    monkeypatch.setattr(trend_module, "resident_bytes", lambda: 100 * MB)
    stack = open_stack(stack30)
    options = FitOptions(method="both")
    # 30 years: Sen's compiled kernel is used; the plan counts numba's memory unless this process holds it already
    numba = trend_module.COMPILED_KERNEL_BYTES if trend_module._uses_compiled_kernel(options, stack) else 0
    roomy = plan_memory(stack, options, 2, 1024 * MB + numba, "thread")
    assert roomy.workers == 2 and roomy.note is None
    tight = plan_memory(stack, options, 2, 250 * MB + numba, "thread")
    assert tight.workers == 1 and "holds 1 worker(s), not 2" in tight.note
    # a worker process carries its own copy of the program: the same budget holds fewer of them
    processes = plan_memory(stack, options, 2, 500 * MB + numba, "process")
    assert processes.workers == 1 and processes.note
    with caplog.at_level(logging.WARNING, logger="pipeline.engine.trend"):
        trend_rasters(stack30, stack30.parent / "tight.tif", options=options, memory_budget=250 * MB + numba,
                      workers=2)
    assert any("holds 1 worker(s), not 2" in record.message for record in caplog.records)


def test_a_budget_below_one_worker_is_refused_with_the_budget_needed(stack30, tmp_path) -> None:
    result = CliRunner().invoke(app, ["trend", str(stack30), "-o", str(tmp_path / "t.tif"), "--memory-budget", "64MB"])
    assert result.exit_code == 2
    assert "cannot hold one worker" in result.output and "raise --memory-budget to at least" in result.output
    assert not (tmp_path / "t.tif").exists()
    with pytest.raises(UsageError):
        plan_memory(open_stack(stack30), FitOptions(), 1, 64 * MB, "thread")


def test_thousands_of_input_files_within_a_low_descriptor_limit(tmp_path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    steps = np.arange(1200)  # far more files than the 256 descriptors allowed
    profile = dict(driver="GTiff", width=3, height=2, count=1, dtype="float32", crs="EPSG:32633",
                   transform=rasterio.transform.from_origin(500_000, 5_000_000, 30, 30))
    for step in steps:
        with rasterio.open(folder / f"t{step:04d}.tif", "w", **profile) as ds:
            ds.write(np.full((1, 2, 3), 0.5 * step, dtype=np.float32))
    out = tmp_path / "trend.tif"
    script = (
        "import resource, sys; soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)); import cli; sys.argv[0] = 'eetrend'; cli.app()"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, "trend", str(folder), "-o", str(out), "--year-pattern", r"t(\d{4})", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with rasterio.open(out) as ds:
        slope = ds.read(ds.descriptions.index("slope") + 1)
        n = ds.read(ds.descriptions.index("n") + 1)
    np.testing.assert_allclose(slope, 0.5, rtol=1e-6)
    assert np.all(n == steps.size)


def test_the_plan_counts_numba_only_where_the_compiled_kernel_will_load_it(stack30, monkeypatch) -> None:
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    stack = open_stack(stack30)  # 30 years
    monkeypatch.delitem(sys.modules, "numba", raising=False)  # as in a fresh process
    assert trend_module._uses_compiled_kernel(FitOptions(method="both"), stack)
    assert trend_module._uses_compiled_kernel(FitOptions(method="sen"), stack)
    assert trend_module._uses_compiled_kernel(FitOptions(method="ols"), stack)  # OLS's sums, at every length
    monkeypatch.setenv("EETREND_KERNEL", "numpy")
    for method in ("both", "sen", "ols"):
        assert not trend_module._uses_compiled_kernel(FitOptions(method=method), stack)
