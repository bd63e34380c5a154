"""Pure trend kernels and the band layout of their results.

:func:`fit_pixels` is the one entry point the engine uses: it takes a (years,
pixels) block with NaN for missing values and returns one float64 array per band.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .extras import Extras, apply_extras, mask_low_counts
from .ols import OLS_BANDS, OLS_MIN_TESTED, ols
from .robust import MK_BANDS, SEN_BANDS, sen_mk
from .robust import bytes_per_pixel as _sen_bytes_per_pixel
from .robust import chunk_bytes as _sen_chunk_bytes


class Method(str, Enum):
    """Which trend to fit: least squares, Sen + Mann-Kendall, or both."""

    ols = "ols"
    sen = "sen"
    both = "both"


def band_names(method: Method | str) -> tuple[str, ...]:
    """Names of the output bands, in the order they are written."""
    method = Method(method)
    names: tuple[str, ...] = ()
    if method in (Method.ols, Method.both):
        names += OLS_BANDS
    if method in (Method.sen, Method.both):
        names += SEN_BANDS + MK_BANDS
    return names + ("n", "trend_class")


def bytes_per_pixel(method: Method | str, n_years: int, input_itemsize: int = 4) -> int:
    """Memory one pixel of a window holds: its values as read, and its results twice
    (the worker's copy and the one waiting for the writer). The kernels' own
    temporaries are per chunk, a fixed amount: see :func:`chunk_overhead`."""
    return n_years * input_itemsize + 2 * 8 * len(band_names(method))


def chunk_overhead(method: Method | str, n_years: int, max_pixels: int | None = None) -> int:
    """Fixed working memory of the kernels in one worker, whatever the window size
    (chunks are never larger than ``max_pixels``, the largest window, when given).

    Per pixel of a chunk, measured with tracemalloc and given a quarter more: OLS
    about 16 bytes per year plus 110, Sen + Mann-Kendall about 10 per year plus 300,
    plus Sen's buffer of pairwise slopes and the chunk's float64 results.
    """
    method = Method(method)
    per_pixel = 20 * n_years + 160
    fixed = 0
    if method is not Method.ols:
        per_pixel = max(per_pixel, _sen_bytes_per_pixel(n_years))
        fixed = _sen_chunk_bytes(n_years, max_pixels)
    per_pixel += 8 * len(band_names(method))
    chunk = chunk_pixels(method, n_years) if max_pixels is None else min(chunk_pixels(method, n_years), max_pixels)
    return chunk * per_pixel + fixed


def trend_class(slope: np.ndarray, pvalue: np.ndarray, alpha: float, tested: np.ndarray | None = None) -> np.ndarray:
    """+1 significant increase, -1 significant decrease, 0 none; NaN where not fitted, or where
    ``tested`` is False: a pixel whose test could not be made is not "no trend"."""
    with np.errstate(invalid="ignore"):
        significant = pvalue < alpha
        out = np.where(significant, np.sign(slope), 0.0)
    out[np.isnan(pvalue) & np.isnan(slope)] = np.nan
    if tested is not None:
        out[~tested] = np.nan
    return out


def chunk_pixels(method: Method | str, n_years: int) -> int:
    """Pixels fitted at once: small enough that the kernels' temporaries stay small and
    are recycled by the allocator instead of being faulted in afresh each time. (Sen's
    pairwise slopes are sorted in smaller chunks inside :func:`sen_mk`.)"""
    return 1 << 15 if Method(method) is Method.ols else 1 << 14


def fit_pixels(
    values: np.ndarray,
    years: np.ndarray,
    method: Method | str = Method.ols,
    min_years: int = 3,
    confidence: float = 0.95,
    alpha: float = 0.05,
    dtype: type = np.float64,
    extras: Extras | None = None,
    counts: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Fit every pixel (column) of ``values`` and return the bands of ``band_names(method)``.

    ``values`` is (years, pixels), NaN where missing. It is fitted in chunks of
    :func:`chunk_pixels` pixels; each pixel's result does not depend on the chunk.
    ``trend_class`` follows the chosen method; with ``both`` it follows Sen and
    Mann-Kendall, the robust pair. ``extras`` adds what :mod:`pipeline.engine.kernels.extras`
    describes; ``counts`` (like ``values``) are the clear scenes behind each value.
    """
    method = Method(method)
    extras = extras or Extras()
    names = band_names(method) + extras.bands()
    if counts is not None and extras.min_count > 0:
        values = mask_low_counts(values, counts, extras.min_count)
    pixels = values.shape[1]
    out = {name: np.empty(pixels, dtype=dtype) for name in names}
    step = chunk_pixels(method, values.shape[0])
    for start in range(0, pixels, step):
        # One contiguous copy where the chunk is a slice of a wider window (2.6 MB at 40 years, under 1 % of
        # a Sen fit), shared by OLS and Sen: each compiled route copies any strided view it is given (the
        # layout its warm-up loaded), so without this a --method both chunk would be copied twice.
        chunk = np.ascontiguousarray(values[:, start : start + step])
        result: dict[str, np.ndarray] = {}
        if method in (Method.ols, Method.both):
            result.update(ols(chunk, years, min_years=min_years))
        if method in (Method.sen, Method.both):
            result.update(sen_mk(chunk, years, min_years=min_years, confidence=confidence))
        if extras != Extras():
            apply_extras(result, chunk, years, extras, alpha=alpha, min_years=min_years,
                         counts=None if counts is None else counts[:, start : start + step])
        if method is Method.ols:  # a flat series of 3 or more has p NaN (as in scipy) and no trend: 0
            result["trend_class"] = trend_class(result["slope"], result["pvalue"], alpha,
                                                tested=result["n"] >= OLS_MIN_TESTED)
        else:  # the Mann-Kendall p of every variant is NaN exactly where its test could not be made
            result["trend_class"] = trend_class(result["sen_slope"], result["mk_p"], alpha,
                                                tested=np.isfinite(result["mk_p"]))
        for name in names:
            out[name][start : start + chunk.shape[1]] = result[name]
    return out


__all__ = [
    "Extras",
    "Method",
    "band_names",
    "bytes_per_pixel",
    "chunk_overhead",
    "chunk_pixels",
    "fit_pixels",
    "trend_class",
    "ols",
    "sen_mk",
]
