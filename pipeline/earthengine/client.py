"""Talking to Earth Engine: credentials, initialisation, export submission, operations.

Everything goes through the official ``earthengine-api`` client; this module adds the
things a long-running, unattended tool needs around it: credentials loaded from a
config with one-line errors, a deterministic ``requestId`` per submission, and the
classification of Earth Engine's error messages into "wait and resubmit", "retry" and
"never retry, here is the fix". Tokens and key contents are never printed or logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AuthError, ConfigError, EarthEngineError

if TYPE_CHECKING:
    from ..config import Study

log = logging.getLogger(__name__)

EE_SCOPES = (
    "https://www.googleapis.com/auth/earthengine",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/drive",
    "https://www.googleapis.com/auth/devstorage.full_control",
)
REQUEST_NAMESPACE = uuid.UUID("6f1c54a2-9a0e-4a8e-9d55-3c1b1f0e7e11")
REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,60}")  # REST v1 ExportImageRequest.requestId

#: What a masked pixel is exported as: outside every index's range on real reflectance (NDVI, NBR, NDMI in
#: [-1, 1], SAVI in [-1.5, 1.5], EVI of clear land within a few units), so it can never be a value.
#: Earth Engine writes a masked pixel as 0 unless the image is unmasked to a value the export declares.
EXPORT_NODATA = -9999.0

#: Operation states that will still change, and the ones that will not.
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELLING")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")

_PERMANENT = {
    "export too large": "raise export.max_pixels, set export.file_dimensions, or shrink the region or scale",
    "user memory limit exceeded": "shrink the region, raise region.scale, or shorten the season "
                                  "(composite.months) so each year's computation is smaller",
}
_QUEUE_FULL = "too many tasks already in the queue"
_AUTH_HINTS = ("invalid_grant", "expired or revoked", "invalid authentication credentials",
               "missing required authentication", "unauthenticated")


@dataclass(frozen=True)
class OperationStatus:
    """The parts of an Earth Engine operation eetrend keeps."""

    name: str
    state: str  # PENDING, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED
    progress: float
    description: str
    error: str | None
    destination_uris: tuple[str, ...]
    create_time: str | None
    start_time: str | None
    end_time: str | None
    update_time: str | None

    @classmethod
    def from_operation(cls, operation: dict[str, Any]) -> OperationStatus:
        metadata = operation.get("metadata", {})
        error = operation.get("error", {}).get("message") if operation.get("done") else None
        state = metadata.get("state")
        if state is None:
            # image:export may answer with the operation's name alone (Task.start reads only that): a named
            # operation that is not done is a task Earth Engine accepted, i.e. PENDING (READY).
            state = "PENDING" if not operation.get("done") else ("FAILED" if "error" in operation else "SUCCEEDED")
        return cls(
            name=operation["name"],
            state=state,
            progress=float(metadata.get("progress", 0.0) or 0.0),
            description=metadata.get("description", ""),
            error=error,
            destination_uris=tuple(metadata.get("destinationUris", ())),
            create_time=metadata.get("createTime"),
            start_time=metadata.get("startTime"),
            end_time=metadata.get("endTime"),
            update_time=metadata.get("updateTime"),
        )


def request_id(study_name: str, year: int, fingerprint: str, attempt: int) -> str:
    """The same submission always gets the same id, so Earth Engine drops a duplicate."""
    value = str(uuid.uuid5(REQUEST_NAMESPACE, f"{study_name}/{year}/{fingerprint}/{attempt}"))
    assert REQUEST_ID.fullmatch(value)  # 36 of [0-9a-f-]: within the documented 1-60 of [A-Za-z0-9-]
    return value


def is_duplicate_request(status: int | None, message: str) -> bool:
    """Earth Engine refused a requestId it has seen with another body (409, or 'already' in the text)."""
    lowered = message.lower()
    return status == 409 or ("requestid" in lowered and "already" in lowered)


def is_queue_full(message: str) -> bool:
    return _QUEUE_FULL in message.lower()


def permanent_fix(message: str) -> str | None:
    """For errors that a retry cannot fix, what the user should change; else None."""
    lowered = message.lower()
    for needle, fix in _PERMANENT.items():
        if needle in lowered:
            return fix
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an exception from ``ee`` (which wraps googleapiclient's HttpError)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "resp", None)
        if response is not None and getattr(response, "status", None) is not None:
            return int(response.status)
        seen = seen.__cause__ or seen.__context__
    return None


def is_auth_error(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in _AUTH_HINTS)


# -- credentials ------------------------------------------------------------------------------
def load_credentials(study: Study) -> Any:
    """The credentials the config asks for, checked enough to fail early with a clear line."""
    section = study.config.earthengine
    token_uri = section.token_uri
    if section.auth == "none":
        from google.oauth2.credentials import Credentials

        return Credentials(token="emulator-static-token")  # noqa: S106 - not a secret: the emulator's
    if section.auth == "service_account":
        return _service_account(study.resolve(section.key_file), token_uri)
    return _stored_user(section.credentials_file and study.resolve(section.credentials_file), token_uri)


def credential_problem(study: Study) -> str | None:
    """What is wrong with the credentials the config asks for, read locally (nothing is sent), or None.

    Application-default credentials are looked for only where they are files (the
    GOOGLE_APPLICATION_CREDENTIALS variable, gcloud's file): asking a metadata server
    would be a request.
    """
    section = study.config.earthengine
    if section.auth == "user" and section.credentials_file is None:
        import ee

        stored = Path(ee.oauth.get_credentials_path())
        if not stored.exists():
            gcloud = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
            adc = [Path(p) for p in (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"),) if p]
            if any(p.is_file() for p in [*adc, gcloud / "application_default_credentials.json"]):
                return None
            return (f"earthengine.auth = 'user': no stored Earth Engine credentials at {stored}; run: earthengine "
                    "authenticate (or set earthengine.auth = 'service_account' and key_file)")
    try:
        load_credentials(study)
    except AuthError as exc:
        return str(exc)
    return None


def _service_account(path: Path, token_uri: str | None) -> Any:
    from google.oauth2 import service_account

    try:
        mode = path.stat().st_mode
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"earthengine.key_file: {path} does not exist; download a JSON key for the "
                        "service account from the Cloud console") from None
    except PermissionError:
        raise AuthError(f"earthengine.key_file: {path} is not readable by this user; fix its permissions "
                        "(chmod 600, owned by the user that runs eetrend)") from None
    except (OSError, ValueError):
        raise AuthError(f"earthengine.key_file: {path} is not a JSON service-account key; download a new "
                        "key (JSON) from the Cloud console") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("service-account key %s is readable by other users; run: chmod 600 %s", path, path)
    if not isinstance(info, dict) or info.get("type") != "service_account" or "private_key" not in info:
        raise AuthError(f"earthengine.key_file: {path} is not a service-account key (no 'type: service_account' "
                        "and 'private_key'); download a JSON key from the Cloud console")
    if token_uri:
        info = {**info, "token_uri": token_uri}
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=list(EE_SCOPES))
    except (ValueError, KeyError):
        raise AuthError(f"earthengine.key_file: {path} holds a key that cannot be loaded; download a new "
                        "JSON key from the Cloud console") from None


def _stored_user(path: Path | None, token_uri: str | None) -> Any:
    """Credentials as ``earthengine authenticate`` stores them; else application-default ones, as ``ee`` does.

    The stored ``project`` becomes the quota project (``ee.oauth.get_credentials_arguments``
    does the same): Drive and Storage need one for user credentials from ``gcloud``.
    """
    from google.oauth2.credentials import Credentials

    explicit = path is not None
    if path is None:
        import ee

        path = Path(ee.oauth.get_credentials_path())
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not explicit:
            fallback = _application_default(token_uri)
            if fallback is not None:
                return fallback
        raise AuthError(f"no stored Earth Engine credentials at {path}; run: earthengine authenticate "
                        "(or set earthengine.auth = 'service_account' and key_file)") from None
    except (OSError, ValueError):
        raise AuthError(f"stored credentials at {path} are unreadable; run: earthengine authenticate") from None
    if not isinstance(stored, dict) or "refresh_token" not in stored:
        raise AuthError(f"stored credentials at {path} hold no refresh token; run: earthengine authenticate")
    import ee

    if is_notebook_credentials(stored):
        log.warning("the stored Earth Engine credentials come from notebook mode and expire after 7 days; for "
                    "cron use a service account (earthengine.auth = 'service_account')")
    return Credentials(
        token=None,
        refresh_token=stored["refresh_token"],
        token_uri=token_uri or stored.get("token_uri") or ee.oauth.TOKEN_URI,
        client_id=stored.get("client_id") or ee.oauth.CLIENT_ID,
        client_secret=stored.get("client_secret") or ee.oauth.CLIENT_SECRET,
        scopes=stored.get("scopes") or list(EE_SCOPES),
        quota_project_id=stored.get("project"),
    )


def is_notebook_credentials(stored: dict[str, Any]) -> bool:
    """Whether stored credentials came from ``--auth_mode=notebook`` (guessed from what ``ee.oauth`` writes).

    Notebook mode saves the client id of the user's own Cloud project, fetched from the
    authenticator page; gcloud mode saves a Cloud SDK client, localhost mode none.
    """
    import ee

    client_id = stored.get("client_id")
    if not client_id or client_id == ee.oauth.CLIENT_ID:
        return False
    number = client_id.split("-", 1)[0]
    return number.isdigit() and not ee.oauth.is_sdk_project(number)


def _application_default(token_uri: str | None) -> Any:
    """``google.auth.default()`` credentials (the fallback ``ee.data.get_persistent_credentials`` uses), or None."""
    import google.auth
    import google.auth.exceptions

    try:
        credentials, _project = google.auth.default(scopes=list(EE_SCOPES))
    except google.auth.exceptions.DefaultCredentialsError:
        return None
    if token_uri and hasattr(credentials, "refresh_token"):
        from google.oauth2.credentials import Credentials

        credentials = Credentials(token=None, refresh_token=credentials.refresh_token, token_uri=token_uri,
                                  client_id=credentials.client_id, client_secret=credentials.client_secret,
                                  scopes=list(EE_SCOPES), quota_project_id=credentials.quota_project_id)
    log.info("no stored Earth Engine credentials; using application-default credentials")
    return credentials


# -- the session ------------------------------------------------------------------------------
_CONNECTED: list[tuple] = []  # the settings this process last initialised ee with
#: Earth Engine's endpoint for many parallel interactive requests (computePixels), as Google recommends.
HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"


def earthengine_url(study: Study) -> str | None:
    """The root ee talks to: the configured endpoint (the emulator), else the high-volume endpoint for a direct
    study with ``earthengine.high_volume``, else ee's default (None)."""
    section = study.config.earthengine
    if section.endpoint:
        return section.endpoint.rstrip("/")
    if section.high_volume and study.config.export.destination == "direct":
        return HIGH_VOLUME_URL
    return None


def connect(study: Study) -> None:
    """Initialise the ``ee`` client for this study (the project is required); once per process and settings."""
    import ee

    section = study.config.earthengine
    key = (earthengine_url(study), section.project, section.auth, section.key_file, section.credentials_file,
           section.token_uri, study.base)
    if _CONNECTED and _CONNECTED[0] == key:
        return
    if not section.project:
        raise ConfigError("earthengine.project: set the Google Cloud project registered for Earth Engine")
    credentials = load_credentials(study)
    if section.endpoint:
        # ee.Initialize fetches a deprecated-assets catalogue from the public internet; against another
        # endpoint (the emulator) that request must not leave the machine.
        ee.deprecation._FetchDataCatalogStac = dict  # noqa: SLF001 - documented in DESIGN.md
    ee.Reset()  # a process may have initialised against another endpoint; its algorithm list would stay
    ee.data.setMaxRetries(section.http_retries)
    try:
        ee.Initialize(credentials=credentials, project=section.project,
                      url=earthengine_url(study))
    except Exception as exc:  # noqa: BLE001 - ee and google-auth raise many types; each becomes one line
        _CONNECTED.clear()
        raise translate(exc, "connecting to Earth Engine") from None
    _CONNECTED[:] = [key]


def widen_connection_pool(connections: int) -> None:
    """Let ee's HTTP session keep ``connections`` connections per host (requests keeps 10).

    With more requests at once than that, urllib3 drops the extra connections after each
    answer and logs a warning every time ("Connection pool is full", as earthengine-api#203
    reports); the direct route runs up to 40.
    """
    import requests.adapters
    from ee import _state  # the session ee.Initialize made; earthengine-api has no public handle on it

    session = _state.get_state().requests_session
    if session is None or connections <= 10:
        return
    adapter = requests.adapters.HTTPAdapter(pool_connections=10, pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def translate(exc: BaseException, doing: str) -> Exception:
    """One line for an exception from ``ee``, ``google-auth`` or the HTTP layer; no secrets."""
    message = _first_line(str(exc)) or type(exc).__name__
    refused_refresh = type(exc).__name__ == "RefreshError"
    if is_auth_error(message) or refused_refresh:
        return AuthError(f"{doing}: the credentials were refused ({_scrub(message)}); run: earthengine "
                         "authenticate, or for a service account check that its key is still valid")
    if "not found" in message.lower() and "project" in message.lower():
        return EarthEngineError(f"{doing}: {_scrub(message)}; check earthengine.project")
    return EarthEngineError(f"{doing}: {_scrub(message)}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _scrub(message: str) -> str:
    """Drop anything that looks like a token from a message before it is shown."""
    import re

    return re.sub(r"(ya29\.|1//|emulator-)[A-Za-z0-9._\-]+", "<redacted>", message)


def unmasked_for_export(image: Any) -> Any:
    """``image`` with every masked pixel set to :data:`EXPORT_NODATA`, as every route sends it.

    Masked pixels (clouds, outside the region, Landsat 7 gaps) would be written as 0 by an export or a
    computePixels answer alike: give them a value that cannot be an index and declare it, so every reader
    sees them as missing.
    """
    import ee

    return ee.Image(image).unmask(EXPORT_NODATA, False)


def export_image(study: Study, year: int, image: Any, request: str, region: Any = None) -> OperationStatus:
    """Submit one year's export with a fixed ``requestId``; returns the operation.

    ``region`` is the export's ``ee.Geometry`` (default: the study region, built again).
    """
    import ee

    from .recipes import region as study_region

    c = study.config
    region = region if region is not None else study_region(study)
    image = unmasked_for_export(image)
    common = dict(
        image=image,
        description=study.description(year),
        fileNamePrefix=study.prefix(year),
        region=region,
        crs=c.region.crs,
        maxPixels=int(c.export.max_pixels),
        fileFormat="GeoTIFF",
        formatOptions={"cloudOptimized": c.export.cloud_optimized, "noData": EXPORT_NODATA},
    )
    transform = study.crs_transform()
    if transform is not None:
        common["crsTransform"] = transform  # on the Landsat grid; scale and crsTransform are exclusive
    else:
        common["scale"] = c.region.scale
    if c.export.file_dimensions:
        common["fileDimensions"] = c.export.file_dimensions
    if c.export.destination == "drive":
        task = ee.batch.Export.image.toDrive(folder=c.export.folder, **common)
    else:
        task = ee.batch.Export.image.toCloudStorage(bucket=c.export.bucket, **common)
    body = dict(task.config)
    if isinstance(body.get("maxPixels"), dict):
        # ee writes the Int64Value wrapper as {"value": "N"}; the REST reference documents (and proto3 JSON
        # defines) the plain string form. Send the documented one.
        body["maxPixels"] = str(body["maxPixels"]["value"])
    operation = ee.data.exportImage(request, body)
    return OperationStatus.from_operation(operation)


def list_operations() -> list[OperationStatus]:
    import ee

    return [OperationStatus.from_operation(op) for op in ee.data.listOperations()]


def find_operation(description: str) -> OperationStatus | None:
    """The newest operation with this description (a submission Earth Engine already holds), or None."""
    found = [op for op in list_operations() if op.description == description]
    return max(found, key=lambda op: op.create_time or "") if found else None


def get_operation(name: str) -> OperationStatus:
    import ee

    return OperationStatus.from_operation(ee.data.getOperation(name))


def cancel_operation(name: str) -> None:
    import ee

    ee.data.cancelOperation(name)
