"""eetrend: annual Earth Engine composites in, exact per-pixel trends out.

The library behind the ``eetrend`` command. For notebooks:

>>> import pipeline
>>> result = pipeline.fit_stack("downloads/ndvi/")            # doctest: +SKIP
>>> result["slope"], result["pvalue"]                          # doctest: +SKIP
>>> result.write("trend.tif")                                  # doctest: +SKIP
>>> pipeline.trend_rasters("downloads/ndvi/", "trend.tif")     # doctest: +SKIP
"""

from __future__ import annotations

from .engine.api import TrendResult, fit, fit_stack  # noqa: E402
from .engine.kernels import Method, band_names  # noqa: E402
from .engine.options import FitOptions  # noqa: E402
from .engine.stack import Stack, open_stack  # noqa: E402
from .engine.trend import TrendRun, trend_rasters  # noqa: E402
from .engine.xarray_api import open_trend  # noqa: E402
from .errors import EetrendError  # noqa: E402
from .version import __version__

__all__ = [
    "EetrendError",
    "FitOptions",
    "Method",
    "Stack",
    "TrendResult",
    "TrendRun",
    "__version__",
    "band_names",
    "fit",
    "fit_stack",
    "open_stack",
    "open_trend",
    "trend_rasters",
]
