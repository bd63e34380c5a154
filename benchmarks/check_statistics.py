"""Check the written bands of every reviewer option against the oracles, on any annual stack.

For real data (e.g. a held-out 42-year annual NDVI stack): fits the stack once per
``--mk-test`` (with ``--fdr bh`` and ``--changepoint pettitt``), reads the written
float32 bands back and compares, per pixel,

* mk_s, mk_var_s, mk_z, mk_p, mk_tau with pymannkendall's function of the same name, on
  pixels without missing years (eetrend's documented rule for gaps differs on purpose);
* p_fdr with statsmodels ``multipletests(p, method="fdr_bh")[1]`` over every fitted pixel;
* cp_year and cp_p with pyhomogeneity ``pettitt_test(y, sim=None)`` on every sampled pixel.

Agreement is "within float32 precision": |written - float32(oracle)| <= 4 ulp of the
float32 oracle (p-values below 1e-30 compare absolutely). Exit status 1 on any mismatch.

Run: python benchmarks/check_statistics.py INPUT [--years 1982-2023] [--pixels 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.engine.stack import close_cached, open_stack  # noqa: E402
from pipeline.engine.trend import FitOptions, trend_rasters  # noqa: E402
from pipeline.years import parse_years  # noqa: E402

TESTS = {
    "original": "original_test",
    "hamed-rao": "hamed_rao_modification_test",
    "yue-wang": "yue_wang_modification_test",
    "prewhiten": "pre_whitening_modification_test",
    "tfpw": "trend_free_pre_whitening_modification_test",
}
FIELDS = (("mk_s", "s"), ("mk_var_s", "var_s"), ("mk_z", "z"), ("mk_p", "p"), ("mk_tau", "Tau"))


def within_float32(written: float, oracle: float) -> bool:
    if np.isnan(oracle) or np.isnan(written):
        return bool(np.isnan(oracle) and np.isnan(written))
    want = np.float32(oracle)
    if abs(oracle) < 1e-30:
        return abs(written - oracle) < 1e-30
    return abs(np.float32(written) - want) <= 4 * np.spacing(abs(want))


def main() -> int:
    import pyhomogeneity as hg
    import pymannkendall as mk
    from statsmodels.stats.multitest import multipletests

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("--years", default=None)
    parser.add_argument("--pixels", type=int, default=20000, help="pixels compared per test (random sample)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    years = parse_years(args.years) if args.years else None
    stack = open_stack(args.input, years=years)
    values = stack.read()
    close_cached()
    year_list = np.asarray(stack.year_list)
    rng = np.random.default_rng(0)
    sample = rng.choice(values.shape[1], size=min(args.pixels, values.shape[1]), replace=False)
    complete = np.isfinite(values).all(axis=0)
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        for test, function in TESTS.items():
            out = Path(work) / f"{test}.tif"
            trend_rasters(args.input, out, years=years, workers=args.workers,
                          options=FitOptions(method="sen", mk_test=test, fdr="bh", changepoint="pettitt"))
            with rasterio.open(out) as ds:
                bands = {name: ds.read(i + 1).reshape(-1) for i, name in enumerate(ds.descriptions)}
            checked = bad = 0
            oracle = getattr(mk, function)
            for p in sample[complete[sample]]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want = oracle(values[:, p].astype(np.float64))
                checked += 1
                if not all(within_float32(bands[b][p], getattr(want, f)) for b, f in FIELDS):
                    bad += 1
            print(f"--mk-test {test}: {checked} complete pixels vs pymannkendall.{function}: {bad} differ")
            failures += bad
            if test == "original":
                p_written = bands["mk_p"]
                fitted = np.isfinite(p_written)
                want = multipletests(p_written[fitted].astype(np.float64), method="fdr_bh")[1]
                differ = int(np.count_nonzero(bands["p_fdr"][fitted] != want.astype(np.float32)))
                print(f"--fdr bh: {fitted.sum()} fitted pixels vs statsmodels multipletests: {differ} differ")
                failures += differ
                bad = 0
                for p in sample:
                    y = values[:, p].astype(np.float64)
                    if np.isfinite(y).sum() < 3:
                        continue
                    want = hg.pettitt_test(y, sim=None)
                    if bands["cp_year"][p] != year_list[want.cp - 1] or not within_float32(bands["cp_p"][p],
                                                                                          min(want.p, 1.0)):
                        bad += 1
                print(f"--changepoint pettitt: {len(sample)} pixels vs pyhomogeneity: {bad} differ")
                failures += bad
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
