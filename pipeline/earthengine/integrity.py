"""Files that changed behind eetrend's back: each verified download checked against the manifest.

The manifest records every downloaded file's size, md5 and modification time when it was
verified. A run compares size and mtime (a ``stat``, no reading) and re-hashes only a
file whose mtime changed, so a byte flipped by a disk, a tool or a person is noticed
without reading every file every night. ``eetrend verify`` re-hashes everything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Study
from ..years import format_years
from . import manifest as m

OK, MISSING, DAMAGED = "ok", "missing", "damaged"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the checksum Drive and Cloud Storage publish
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileCheck:
    """One recorded file as found on disk."""

    year: int
    name: str
    path: Path
    state: str
    detail: str = ""
    remote_deleted: bool = False

    @property
    def ok(self) -> bool:
        return self.state == OK

    def describe(self) -> str:
        return f"{self.path} {self.detail}"


def check_file(study: Study, manifest: m.Manifest, recorded: dict[str, Any], *, rehash: bool = False,
               remember: bool = True) -> FileCheck:
    """Compare a recorded file with the disk: size and mtime, and the md5 when they changed (or ``rehash``).

    A file whose mtime changed but whose md5 still matches is fine; with ``remember`` its new
    mtime is stored, so it is not read again next time.
    """
    path = study.downloads / recorded["local_path"]
    found = dict(year=recorded["year"], name=recorded["name"], path=path,
                 remote_deleted=bool(recorded.get("remote_deleted")))
    try:
        stat = path.stat()
    except FileNotFoundError:
        return FileCheck(state=MISSING, detail="is missing", **found)
    if stat.st_size != recorded["size"]:
        return FileCheck(state=DAMAGED, detail=f"has {stat.st_size} bytes, {recorded['size']} were verified", **found)
    if not rehash and recorded.get("mtime_ns") == stat.st_mtime_ns:
        return FileCheck(state=OK, **found)
    if md5_of(path) != recorded["md5"]:
        return FileCheck(state=DAMAGED, detail="changed since it was verified (its md5 differs)", **found)
    if remember and recorded.get("mtime_ns") != stat.st_mtime_ns:
        manifest.record_mtime(recorded["year"], recorded["name"], stat.st_mtime_ns)
    return FileCheck(state=OK, **found)


def redo_hint(study: Study, year: int) -> str:
    return f"eetrend export {study.source} --redo {year}"


@dataclass
class VerifyReport:
    """What ``eetrend verify`` found: every recorded file re-hashed."""

    checked: list[FileCheck] = field(default_factory=list)
    missing_datasets: dict[int, Path] = field(default_factory=dict)
    hints: dict[int, str] = field(default_factory=dict)

    @property
    def bad(self) -> list[FileCheck]:
        return [check for check in self.checked if not check.ok]

    @property
    def damaged(self) -> bool:
        return bool(self.bad or self.missing_datasets)

    def lines(self) -> list[str]:
        out = []
        for check in self.bad:
            out.append(f"{check.year}: {check.describe()}; fix: {self.hints[check.year]}")
        for year, path in sorted(self.missing_datasets.items()):
            out.append(f"{year}: the dataset {path} is missing; fix: {self.hints[year]}")
        good = [check for check in self.checked if check.ok]
        if good:
            years = sorted({check.year for check in good} - {check.year for check in self.bad})
            out.append(f"verified {len(good)} file(s) by md5" + (f"; intact years: {format_years(years)}"
                                                                  if years else ""))
        return out or ["no downloaded file is recorded for this study yet"]


def verify_study(study: Study) -> VerifyReport:
    """Re-hash every file the manifest records as verified; read-only (the manifest is not changed)."""
    report = VerifyReport()
    if not study.manifest_path.exists():
        return report
    with m.Manifest(study.manifest_path) as manifest:
        for recorded in manifest.all_files():
            check = check_file(study, manifest, recorded, rehash=True, remember=False)
            report.checked.append(check)
            if not check.ok:
                report.hints[check.year] = (redo_hint(study, check.year) if check.remote_deleted
                                            else f"eetrend run {study.source} (or download) fetches it again")
        for year, dataset in manifest.datasets().items():
            path = study.downloads / dataset["path"]
            if not path.exists():
                report.missing_datasets[year] = path
                report.hints.setdefault(year, f"eetrend run {study.source} (or download) writes it again")
    return report
