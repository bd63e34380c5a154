"""Where each year's image comes from: the built-in Landsat recipe, or the user's own.

Every route that sends a year to Earth Engine (a batch export, a direct fetch) takes its
image from :func:`year_image`, so the two routes always ask for the same pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ee

    from ..config import Study


def year_image(study: Study, year: int, area: ee.Geometry | None = None) -> ee.Image:
    """The composite of ``year`` as the study defines it, clipped to ``area`` (default: the region)."""
    from .recipes import annual_composite

    return annual_composite(study, year, area)
