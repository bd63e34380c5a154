"""The plan of a direct study (``destination = "direct"``): its grid cut into computePixels tiles.

Apart from the fetching (:mod:`.direct`) so that ``export`` can say what ``download`` will ask
for without importing the route that downloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..years import format_years
from .grid import PixelGrid, study_grid

if TYPE_CHECKING:
    from ..config import Study

#: The smallest tile side a split goes down to; a tile this small that still fails fails its year.
MIN_TILE = 32
#: Beyond this many requests a study is better served by a batch export ("Direct or batch?" in docs/downloads.md).
WARN_REQUESTS = 1000


@dataclass(frozen=True, order=True)
class Window:
    """A rectangle of a year's grid, in pixels: top row, left column, height, width."""

    row: int
    col: int
    height: int
    width: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.row, self.col, self.height, self.width)

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def can_split(self) -> bool:
        return max(self.height, self.width) > MIN_TILE

    def quarters(self) -> list[Window]:
        """The window in (up to) four: halves of each side longer than :data:`MIN_TILE`."""
        rows = _halves(self.row, self.height)
        cols = _halves(self.col, self.width)
        return [Window(r, c, h, w) for r, h in rows for c, w in cols]

    def file_name(self) -> str:
        return f"{self.row:06d}-{self.col:06d}-{self.height}x{self.width}.tif"


def _halves(start: int, size: int) -> list[tuple[int, int]]:
    if size <= MIN_TILE:
        return [(start, size)]
    first = (size + 1) // 2
    return [(start, first), (start + first, size - first)]


def plan(grid: PixelGrid, tile: int) -> list[Window]:
    """The grid cut into ``tile`` x ``tile`` windows, row by row (the last row and column smaller)."""
    return [Window(row, col, min(tile, grid.height - row), min(tile, grid.width - col))
            for row in range(0, grid.height, tile) for col in range(0, grid.width, tile)]


def requests_needed(study: Study) -> tuple[int, int]:
    """(tiles a year, requests for every year) of a direct fetch of ``study``, before any split."""
    tiles = len(plan(study_grid(study), study.direct_tile))
    return tiles, tiles * len(study.years)


def size_warning(study: Study) -> str | None:
    """A warning line for a study that would take more than :data:`WARN_REQUESTS` computePixels requests."""
    tiles, total = requests_needed(study)
    if total <= WARN_REQUESTS:
        return None
    return (f"warning: this study takes {total:,} computePixels requests ({tiles:,} tile(s) a year x "
            f"{len(study.years)} years); at that size a batch export (destination = 'drive' or 'gcs') spends less "
            "of Earth Engine's interactive quota, see 'Direct or batch?' in docs/downloads.md")


def describe_plan(study: Study) -> list[str]:
    """What ``export`` says for a direct study: nothing to submit, and what ``download`` will ask for."""
    tiles, total = requests_needed(study)
    grid = study_grid(study)
    lines = [f"destination = 'direct': nothing to submit; `eetrend download` (or run) fetches each year through "
             f"computePixels: {tiles} tile(s) of at most {study.direct_tile} x {study.direct_tile} pixels a year "
             f"over a {grid.width} x {grid.height} grid, {total} request(s) for {format_years(study.years)}"]
    warning = size_warning(study)
    if warning:
        lines.append(warning)
    return lines

