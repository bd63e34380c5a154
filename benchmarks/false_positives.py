"""How often each test calls independent noise a trend: the share of pixels with p < alpha.

A calibrated test finds about alpha (5 %) on series without trend; more means its p-values
overstate the evidence. Each row is one series length, 40,000 pixels of standard normal noise
on consecutive years; NaN (a test that could not be made) does not count as a finding. The
Yue-Wang figures are pymannkendall's too (its default lag: every lag up to n - 1); the guide's
"Which test should I use?" quotes them.

Run: python benchmarks/false_positives.py [--pixels 40000] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from pipeline.engine.kernels import Extras, fit_pixels

TESTS = ("original", "hamed-rao", "yue-wang", "prewhiten", "tfpw")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=40_000)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    print("years  ols    " + "  ".join(f"{t:>9}" for t in TESTS) + "  pettitt")
    for n in (3, 4, 5, 6, 8, 10, 15, 20, 30):
        x = np.arange(2000, 2000 + n, dtype=float)
        values = rng.standard_normal((n, args.pixels))
        both = fit_pixels(values, x, method="both", extras=Extras(changepoint="pettitt"))
        row = [np.mean(both["pvalue"] < args.alpha)]
        for test in TESTS:
            result = both if test == "original" else fit_pixels(values, x, method="sen", extras=Extras(mk_test=test))
            row.append(np.mean(result["mk_p"] < args.alpha))
        row.append(np.mean(both["cp_p"] < args.alpha))
        print(f"{n:5d}  " + "  ".join(f"{100 * r:6.1f} %" for r in row))


if __name__ == "__main__":
    main()
