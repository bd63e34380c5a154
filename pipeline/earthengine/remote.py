"""Remote storage of exports: Google Drive v3 and Cloud Storage v1, through google-api-python-client.

Both stores answer the same questions: which files belong to a year's export (one file
``prefix.tif``, or split tiles ``prefix-RRRRRRRRRR-CCCCCCCCCC.tif``), the size and
checksum each should have (md5; crc32c for Cloud Storage composite objects, which have
no md5), a ranged media request for each, and deletion. Remote names are untrusted
input: only names of the expected shape are taken, and anything else that looks related
is reported, never written.

Drive: a study without ``export.folder`` exports to the Drive root and is listed there
(``'root' in parents``); every list, get and delete passes ``supportsAllDrives=true``
(lists also ``includeItemsFromAllDrives=true``), so folders in shared drives work; a
folder name shared by several folders is searched in all of them. Calls carry the
credentials' quota project (``x-goog-user-project``), which Drive needs for user
credentials from ``gcloud``.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Study

log = logging.getLogger(__name__)

FOLDER_MIME = "application/vnd.google-apps.folder"
DRIVE_FIELDS = "nextPageToken, files(id, name, size, md5Checksum, createdTime, mimeType)"
ALL_DRIVES = {"supportsAllDrives": True}  # Drive v3: needed for any item in a shared drive
QUOTA_PROJECT_HINT = "requires a quota project"
DRIVE_FOLDER_URI = re.compile(r"drive\.google\.com/.*folders/([A-Za-z0-9_-]+)")
SPLIT_SUFFIX = re.compile(r"-(\d{10})-(\d{10})\.tif")


@dataclass(frozen=True)
class RemoteFile:
    """One exported file as the store describes it."""

    name: str
    size: int
    md5: str  # hex; empty for a Cloud Storage composite object
    ref: str  # Drive file id, or Cloud Storage object name
    created: str = ""
    crc32c: str = ""  # hex (big-endian), Cloud Storage only

    @property
    def checksum(self) -> str:
        """The checksum that verifies the download: md5, else crc32c (composite objects)."""
        return self.md5 or f"crc32c-{self.crc32c}"


@dataclass
class Listing:
    """The files of one year's export, and what was noticed while finding them."""

    files: list[RemoteFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_safe_name(name: str) -> bool:
    """A plain file name: no separators, no '..', no control characters, not hidden."""
    return bool(name) and name not in (".", "..") and not name.startswith(".") and "/" not in name \
        and "\\" not in name and ".." not in name and not any(ord(c) < 32 or ord(c) == 127 for c in name)


def belongs_to(name: str, stem: str) -> bool:
    """Whether ``name`` is the single file or a split tile of the export named ``stem``."""
    if name == f"{stem}.tif":
        return True
    return name.startswith(f"{stem}-") and SPLIT_SUFFIX.fullmatch(name[len(stem):]) is not None


def select(candidates: list[RemoteFile], stem: str, listing: Listing, where: str) -> None:
    """Keep the files of the export named ``stem``; note unsafe names and duplicates."""
    chosen: dict[str, RemoteFile] = {}
    for remote in candidates:
        if not is_safe_name(remote.name):
            if stem in remote.name:  # looks like ours: say why it is not taken
                listing.notes.append(f"skipped {remote.name!r} in {where}: not a safe file name")
            continue
        if not belongs_to(remote.name, stem):
            continue
        if remote.name in chosen:
            newer = max(chosen[remote.name], remote, key=lambda f: f.created)
            listing.notes.append(f"{where} holds {remote.name} twice; taking the newer one ({newer.created})")
            remote = newer
        chosen[remote.name] = remote
    listing.files.extend(sorted(chosen.values(), key=lambda f: f.name))


def build_service(study: Study, credentials: Any, api: str, version: str) -> Any:
    from googleapiclient.discovery import build

    credentials = with_quota_project(credentials, study)
    endpoint = study.config.earthengine.endpoint
    options = {"api_endpoint": f"{endpoint.rstrip('/')}/{api}/{version}/"} if endpoint else None
    return build(api, version, credentials=credentials, static_discovery=True, cache_discovery=False,
                 client_options=options)


def with_quota_project(credentials: Any, study: Study) -> Any:
    """User credentials billed to a quota project: their own (gcloud mode stores one), else the study's.

    Service accounts are left alone: their calls are billed to their own project, and naming
    a quota project would need the serviceusage.services.use permission on it.
    """
    from google.oauth2.credentials import Credentials

    if not isinstance(credentials, Credentials) or credentials.quota_project_id:
        return credentials
    project = study.config.earthengine.project
    return credentials.with_quota_project(project) if project else credentials


def quota_project_fix(message: str, project: str | None) -> str | None:
    """The fix for Drive's 'requires a quota project' refusal, or None for other messages."""
    if QUOTA_PROJECT_HINT not in message.lower():
        return None
    where = project or "your Cloud project"
    return (f"Drive refused credentials that name no quota project; enable the Google Drive API "
            f"(drive.googleapis.com) in project {where} and run: gcloud auth application-default "
            f"set-quota-project {where} (or earthengine authenticate again)")


class DriveStore:
    """Exports in a Drive folder (found by the id Earth Engine reports, else by name), or in the root."""

    def __init__(self, service: Any, folder: str | None, retries: int) -> None:
        self.service, self.folder, self.retries = service, folder, retries

    def find(self, prefix: str, destination_uris: list[str]) -> Listing:
        listing = Listing()
        stem = PurePosixPath(prefix).name
        ids = [m.group(1) for uri in destination_uris if (m := DRIVE_FOLDER_URI.search(uri))]
        if self.folder is None:
            ids, where = ids or ["root"], "the Drive root"  # no folder: Earth Engine writes to My Drive's root
        elif not ids:
            ids = self._folders_named(self.folder)
            if len(ids) > 1:
                listing.notes.append(f"{len(ids)} Drive folders are named {self.folder!r} and Earth Engine named "
                                     "none of them; took the export's files from all of them")
            if not ids:
                listing.notes.append(f"no Drive folder is named {self.folder!r}")
            where = f"Drive folders named {self.folder!r}"
        else:
            where = f"Drive folder {self.folder!r} ({ids[0]})"
        candidates = [remote for folder_id in ids for remote in self._files_in(folder_id, stem)]
        select(candidates, stem, listing, where)
        return listing

    def _pages(self, **query: Any) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = []
        request = self.service.files().list(fields=DRIVE_FIELDS, pageSize=1000, includeItemsFromAllDrives=True,
                                            **ALL_DRIVES, **query)
        while request is not None:
            response = request.execute(num_retries=self.retries)
            files.extend(response.get("files", []))
            request = self.service.files().list_next(request, response)
        return files

    def _folders_named(self, name: str) -> list[str]:
        q = f"name = '{_quote(name)}' and mimeType = '{FOLDER_MIME}' and trashed = false"
        return [item["id"] for item in self._pages(q=q)]

    def _files_in(self, folder_id: str, stem: str) -> list[RemoteFile]:
        q = f"'{_quote(folder_id)}' in parents and name contains '{_quote(stem)}' and trashed = false"
        return [RemoteFile(item["name"], int(item.get("size", 0)), item.get("md5Checksum", ""), item["id"],
                           item.get("createdTime", ""))
                for item in self._pages(q=q) if item.get("mimeType") != FOLDER_MIME]

    def media(self, remote: RemoteFile) -> Any:
        return self.service.files().get_media(fileId=remote.ref, **ALL_DRIVES)

    def delete(self, remote: RemoteFile) -> None:
        self.service.files().delete(fileId=remote.ref, **ALL_DRIVES).execute(num_retries=self.retries)


class GcsStore:
    """Exports in a Cloud Storage bucket under the export's prefix."""

    def __init__(self, service: Any, bucket: str, retries: int) -> None:
        self.service, self.bucket, self.retries = service, bucket, retries

    def find(self, prefix: str, destination_uris: list[str]) -> Listing:
        listing = Listing()
        directory = str(PurePosixPath(prefix).parent) if "/" in prefix else ""
        items: list[dict[str, Any]] = []
        request = self.service.objects().list(bucket=self.bucket, prefix=prefix)
        while request is not None:
            response = request.execute(num_retries=self.retries)
            items.extend(response.get("items", []))
            request = self.service.objects().list_next(request, response)
        candidates = []
        for item in items:
            name = item["name"]
            if directory and not name.startswith(directory + "/"):
                continue
            base = name[len(directory) + 1:] if directory else name
            md5 = base64.b64decode(item.get("md5Hash", "")).hex()  # composite objects have none: crc32c then
            crc32c = base64.b64decode(item.get("crc32c", "")).hex()
            candidates.append(RemoteFile(base, int(item.get("size", 0)), md5, name, item.get("timeCreated", ""),
                                         crc32c))
        select(candidates, PurePosixPath(prefix).name, listing, f"gs://{self.bucket}")
        return listing

    def media(self, remote: RemoteFile) -> Any:
        return self.service.objects().get_media(bucket=self.bucket, object=remote.ref)

    def delete(self, remote: RemoteFile) -> None:
        self.service.objects().delete(bucket=self.bucket, object=remote.ref).execute(num_retries=self.retries)


def open_store(study: Study, credentials: Any) -> DriveStore | GcsStore:
    export = study.config.export
    retries = study.config.earthengine.http_retries
    if export.destination == "drive":
        if study.config.earthengine.auth == "service_account":
            log.warning("a service account's Drive has no storage quota, so exports to it fail or vanish; "
                        "set export.destination = 'gcs' and a bucket for unattended runs")
        return DriveStore(build_service(study, credentials, "drive", "v3"), export.folder, retries)
    if not export.bucket:
        raise ConfigError("export.bucket: destination = 'gcs' needs a bucket")
    return GcsStore(build_service(study, credentials, "storage", "v1"), export.bucket, retries)


def _quote(value: str) -> str:
    """Escape a value for a Drive query string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
