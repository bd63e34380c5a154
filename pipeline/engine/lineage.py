"""Which annual rasters a trend output was fitted from, recorded in the output itself.

``eetrend trend`` writes the tag ``eetrend_inputs``: a JSON list of ``{"year", "path",
"band"}``, each path relative to the output's folder (absolute when it cannot be made
relative), so a report made later from the trend file alone can read the inputs again
even after the whole study folder was moved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import InputError
from .stack import Layer, Stack, read_header

INPUTS_TAG = "eetrend_inputs"


def inputs_tag(stack: Stack, output: str | os.PathLike[str]) -> dict[str, str]:
    """The tag naming every layer of ``stack``, with paths relative to ``output``'s folder."""
    folder = Path(output).resolve().parent
    entries = []
    for layer in stack.layers:
        try:
            path = os.path.relpath(Path(layer.path).resolve(), folder)
        except ValueError:  # another drive on Windows
            path = str(Path(layer.path).resolve())
        entries.append({"year": layer.year, "path": Path(path).as_posix(), "band": layer.band})
    return {INPUTS_TAG: json.dumps(entries, separators=(",", ":"))}


def layers_from_tags(tags: Mapping[str, str], trend: str | os.PathLike[str]) -> list[Layer] | None:
    """The layers a trend file lists in its tags (paths resolved against its folder), or None if it lists none."""
    text = tags.get(INPUTS_TAG)
    if not text:
        return None
    try:
        entries = json.loads(text)
        folder = Path(trend).resolve().parent
        return [Layer(str((folder / e["path"]).resolve()), int(e.get("band", 1)), int(e["year"]), None)
                for e in entries]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{trend}: the {INPUTS_TAG} tag is not a list of inputs; pass the inputs with --inputs") \
            from None


def stack_from_layers(layers: Sequence[Layer]) -> Stack:
    """A :class:`Stack` over known (path, band, year) layers, with each file's nodata and the shared grid.

    Missing or unreadable files, or files on different grids, are one :class:`InputError`.
    """
    if not layers:
        raise InputError("no input layers to read")
    headers = {}
    for layer in layers:
        if layer.path not in headers:
            if not Path(layer.path).exists():
                raise InputError(f"input of year {layer.year} not found: {layer.path}")
            headers[layer.path] = read_header(Path(layer.path))
    first = headers[layers[0].path]
    for header in headers.values():
        difference = first.grid.difference(header.grid)
        if difference:
            raise InputError(f"{header.path.name} is not on the grid of {first.path.name}: {difference}")
    full = tuple(sorted((Layer(layer.path, layer.band, layer.year, headers[layer.path].nodata) for layer in layers),
                        key=lambda layer: layer.year))
    return Stack(layers=full, grid=first.grid, dtype=first.dtype, block_shape=first.block_shape, units=first.units)
