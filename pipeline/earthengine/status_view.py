"""How ``eetrend status`` shows a study: a table, JSON for scripts, or live progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from ..config import Study
from . import manifest as m
from .client import permanent_fix
from .exports import watch
from .manifest import YearRecord

_STYLES = {m.COMPLETED: "green", m.FAILED: "red", m.RUNNING: "cyan", m.READY: "blue", m.CANCELLED: "yellow",
           m.FETCHING: "cyan"}


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def error_text(record: YearRecord) -> str:
    message = record.last_error
    if not message:
        return ""
    fix = permanent_fix(message)
    return f"{message} (fix: {fix})" if fix else message


def _tiles(study: Study) -> dict[int, tuple[int, int]] | None:
    """Tiles done and planned per year for a direct study (computePixels), else None."""
    if study.config.export.destination != "direct":
        return None
    from .direct import tile_counts

    return tile_counts(study)


def print_table(study: Study, rows: list[YearRecord], file=None) -> None:
    """A table of years; colour only on a terminal. A direct study shows its tiles instead of a task."""
    from rich.console import Console
    from rich.table import Table

    tiles = _tiles(study)
    console = Console(file=file or sys.stdout, soft_wrap=False)
    table = Table(title=f"study {study.name}: {len(rows)} years", title_justify="left")
    last = ("tiles", "right") if tiles is not None else ("task", "left")
    for name, justify in (("year", "right"), ("state", "left"), ("progress", "right"), ("attempts", "right"),
                          ("elapsed", "right"), last, ("last error", "left")):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name != "last error")
    for record in rows:
        style = _STYLES.get(record.state, "")
        if tiles is not None:
            done, total = tiles.get(record.year, (0, 0))
            where = f"{done}/{total}"
        else:
            where = record.task_id or "-"
        table.add_row(
            str(record.year),
            f"[{style}]{record.state}[/]" if style else record.state,
            f"{record.progress:.0%}" if record.state in (m.RUNNING, m.COMPLETED, m.FETCHING) else "-",
            str(record.attempts),
            format_elapsed(record.elapsed_seconds()),
            where,
            error_text(record),
        )
    console.print(table)
    counts: dict[str, int] = {}
    for record in rows:
        counts[record.state] = counts.get(record.state, 0) + 1
    console.print(", ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    for year in sorted(study.later):
        console.print(study.later_note(year), markup=False)


def print_json(study: Study, rows: list[YearRecord], file=None) -> None:
    payload = {"study": study.name, "years": [record.as_json() for record in rows],
               "later": [{"year": year, "exported_from": day.isoformat()} for year, day in sorted(study.later.items())]}
    tiles = _tiles(study)
    for item, record in zip(payload["years"], rows, strict=True):
        item["fix"] = permanent_fix(record.last_error) if record.last_error else None
        if tiles is not None:
            done, total = tiles.get(record.year, (0, 0))
            item["tiles"] = {"done": done, "total": total}
    json.dump(payload, file or sys.stdout, indent=2)
    (file or sys.stdout).write("\n")


def watch_with_progress(study: Study, *, interval: float, show: bool,
                        sleep: Callable[[float], None] | None = None) -> list[YearRecord]:
    """Poll until every task has ended; one progress bar per live task on a terminal."""
    import time

    if not show:
        return watch(study, lambda rows: None, interval=interval, sleep=sleep or time.sleep)
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  transient=False) as progress:
        bars: dict[int, int] = {}

        def update(rows: list[YearRecord]) -> None:
            for record in rows:
                if record.state not in (*m.ACTIVE, m.COMPLETED, m.FAILED, m.CANCELLED) or not record.task:
                    continue
                if record.year not in bars:
                    bars[record.year] = progress.add_task(f"{record.year} {record.state}", total=1.0)
                progress.update(bars[record.year], completed=record.progress,
                                description=f"{record.year} {record.state:<16}")

        return watch(study, update, interval=interval, sleep=sleep or time.sleep)
