"""Finding the year of each input, and parsing year lists given by users.

The default pattern takes the first 19xx/20xx group that is not part of a longer
number: Earth Engine's split exports carry pixel offsets such as
``-0000019968-`` in their names, and a bare ``(19|20)\\d\\d`` would read a false
1996 out of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import UsageError

DEFAULT_YEAR_PATTERN = r"(?<!\d)((?:19|20)\d{2})(?!\d)"


def compile_year_pattern(pattern: str | None) -> re.Pattern[str]:
    """Compile a user's year pattern; it must have one group (or a group named ``year``)."""
    text = pattern or DEFAULT_YEAR_PATTERN
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise UsageError(f"--year-pattern {text!r} is not a valid regular expression ({exc})") from None
    if compiled.groups < 1 and "year" not in compiled.groupindex:
        raise UsageError(f"--year-pattern {text!r} has no group; wrap the year in parentheses, e.g. 'ndvi_(\\d{{4}})'")
    return compiled


def year_from_text(text: str, pattern: re.Pattern[str]) -> int | None:
    """The year the pattern finds in ``text`` (first match), or None."""
    match = pattern.search(text)
    if match is None:
        return None
    group = match.group("year") if "year" in pattern.groupindex else match.group(1)
    try:
        return int(group)
    except (TypeError, ValueError):
        return None


def parse_years(spec: str) -> list[int]:
    """Parse ``"1995-2015"``, ``"1995..2015"`` or ``"1995,1997,2000-2003"`` into sorted years."""
    years: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        bounds = re.fullmatch(r"(\d{4})\s*(?:-|\.\.)\s*(\d{4})", part)
        if bounds:
            first, last = int(bounds.group(1)), int(bounds.group(2))
            if last < first:
                raise UsageError(f"year range {part!r} runs backwards; write it as {last}-{first}")
            years.update(range(first, last + 1))
        elif re.fullmatch(r"\d{4}", part):
            years.add(int(part))
        else:
            raise UsageError(f"cannot read {part!r} as a year; use forms like 1995-2015 or 1995,1997,2000-2005")
    if not years:
        raise UsageError(f"no years in {spec!r}; use forms like 1995-2015 or 1995,1997,2000-2005")
    return sorted(years)


def format_years(years: Iterable[int]) -> str:
    """Compact text for a year list: ``1995-2000,2003,2005-2007``."""
    ordered = sorted(set(years))
    runs: list[str] = []
    start = prev = None
    for year in ordered:
        if start is None:
            start = prev = year
        elif year == prev + 1:
            prev = year
        else:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = year
    if start is not None:
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(runs)
