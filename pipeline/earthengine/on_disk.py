"""What a study holds on disk: the download report, and whether a year's recorded dataset is intact.

Shared by both routes that bring years to disk, the batch downloads (:mod:`.downloads`) and
the direct computePixels route (:mod:`.direct`), so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..years import format_years
from . import manifest as m
from .integrity import DAMAGED, check_file

if TYPE_CHECKING:
    from ..config import Study


@dataclass
class DownloadReport:
    downloaded: list[str] = field(default_factory=list)
    bytes: int = 0
    skipped_years: list[int] = field(default_factory=list)
    datasets: dict[int, Path] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deleted_remote: int = 0

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.downloaded:
            out.append(f"downloaded and verified {len(self.downloaded)} file(s), {self.bytes / 1e6:.1f} MB")
        new = sorted(set(self.datasets) - set(self.skipped_years))
        if new:
            out.append(f"ready for the trend: {format_years(new)}")
        if self.skipped_years:
            out.append(f"already downloaded and verified: {format_years(self.skipped_years)}")
        if self.deleted_remote:
            out.append(f"deleted {self.deleted_remote} remote file(s) after verifying the local copies")
        if self.waiting:
            out.append(f"not finished on Earth Engine yet: {format_years(self.waiting)}")
        for year, message in sorted(self.failed.items()):
            out.append(f"{year} failed: {message}")
        return out or ["nothing to download"]


def dataset_on_disk(manifest: m.Manifest, study: Study, year: int,
                     report: DownloadReport) -> tuple[Path | None, str]:
    """The year's recorded dataset, if it and every verified file under it are still on disk and unchanged.

    Size and mtime are compared with the manifest; a file whose mtime changed is hashed
    again. The second value describes a file that changed or vanished although its remote
    copy was deleted, so only a new export can bring it back ("" otherwise).
    """
    dataset = manifest.dataset(year)
    intact = dataset is not None and (study.downloads / dataset["path"]).exists()
    for recorded in manifest.files(year).values():
        check = check_file(study, manifest, recorded)
        if check.ok:
            continue
        intact = False
        if check.remote_deleted:
            return None, check.describe()
        if check.state == DAMAGED:
            report.notes.append(f"{year}: {check.describe()}; fetching it again")
    return (study.downloads / dataset["path"] if intact and dataset else None), ""
