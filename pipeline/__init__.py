"""eetrend: annual Earth Engine composites in, exact per-pixel trends out.

The library behind the ``eetrend`` command. For notebooks:

>>> import pipeline
>>> result = pipeline.fit_stack("downloads/ndvi/")            # doctest: +SKIP
>>> result["slope"], result["pvalue"]                          # doctest: +SKIP
>>> result.write("trend.tif")                                  # doctest: +SKIP
>>> pipeline.trend_rasters("downloads/ndvi/", "trend.tif")     # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:  # what type checkers and the API reference (mkdocstrings) see; at run time, __getattr__
    from .engine.api import TrendResult, fit, fit_stack
    from .engine.kernels import Method, band_names
    from .engine.options import FitOptions
    from .engine.stack import Stack, open_stack
    from .engine.trend import TrendRun, trend_rasters
    from .engine.xarray_api import open_trend
    from .errors import EetrendError

# The names below are imported on first use (PEP 562), so that ``import pipeline`` (which every
# ``eetrend`` command does) loads only what the command needs: the trend command never loads the
# notebook API, xarray's glue or the NetCDF/Zarr writers.
_EXPORTS = {
    "TrendResult": ".engine.api",
    "fit": ".engine.api",
    "fit_stack": ".engine.api",
    "Method": ".engine.kernels",
    "band_names": ".engine.kernels",
    "Stack": ".engine.stack",
    "open_stack": ".engine.stack",
    "FitOptions": ".engine.options",
    "TrendRun": ".engine.trend",
    "trend_rasters": ".engine.trend",
    "open_trend": ".engine.xarray_api",
    "EetrendError": ".errors",
}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
