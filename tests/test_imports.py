"""What a command imports: ``eetrend --help`` no numerics or GDAL, an OLS trend no scipy (start-up cost).

Each case runs in a fresh interpreter (an import in this test process would hide a
module the command loads itself) and lists the top-level packages it ended with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.engine.sample import write_sample

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import json, sys
sys.argv = ["eetrend", *json.loads(sys.argv[1])]
import cli
try:
    cli.app()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(list(args))], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["modules"])


def _loaded(modules: set[str], *names: str) -> list[str]:
    return [name for name in names if name in modules or any(m.startswith(name + ".") for m in modules)]


def test_importing_cli_loads_no_library() -> None:
    done = subprocess.run([sys.executable, "-c", "import cli, json, sys; print(json.dumps(sorted(sys.modules)))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    modules = set(json.loads(done.stdout))
    assert _loaded(modules, "numpy", "scipy", "rasterio", "ee", "matplotlib", "pipeline.engine", "numba") == []


def test_help_loads_no_numerics_gdal_or_earth_engine() -> None:
    modules = _modules_after("--help")
    assert "typer" in modules  # the check sees what the command loaded
    assert _loaded(modules, "numpy", "scipy", "rasterio", "ee", "googleapiclient", "matplotlib", "numba", "dask",
                   "xarray", "pandas", "pipeline.engine") == []


def test_an_ols_trend_loads_no_scipy_special_or_plotting(tmp_path: Path) -> None:
    write_sample(tmp_path / "stack", years=range(2000, 2008), rows=64, cols=64)
    out = tmp_path / "trend.tif"
    modules = _modules_after("trend", str(tmp_path / "stack"), "-o", str(out), "--method", "ols")
    assert out.exists() and "pipeline.engine.kernels.ols" in modules  # it did fit
    assert "pipeline.engine.kernels.ols_compiled" in modules  # its compiled sums (numba is a core dependency)
    # numba's own import reads scipy's version (about 20 ms); the statistics themselves are never loaded
    assert _loaded(modules, "scipy.special", "scipy.stats", "matplotlib", "ee", "googleapiclient", "dask", "xarray",
                   "pandas", "pipeline.engine.api", "pipeline.engine.xarray_api", "pipeline.engine.formats",
                   "pipeline.engine.kernels.pair_select") == []


@pytest.mark.parametrize("method", ["sen", "both"])
def test_a_sen_trend_loads_scipy_special(tmp_path: Path, method: str) -> None:
    """The other side of the check above: the Sen kernel does use scipy.special, and it is seen."""
    write_sample(tmp_path / "stack", years=range(2000, 2008), rows=32, cols=32)
    modules = _modules_after("trend", str(tmp_path / "stack"), "-o", str(tmp_path / "t.tif"), "--method", method)
    assert "scipy.special" in modules
