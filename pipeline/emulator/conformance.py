"""Check recorded requests against the services' documented fields and rules.

The emulator records every request it receives (:attr:`Router.requests`); :func:`check`
reads them back and names each one that the real Earth Engine REST v1, Drive v3 or
Cloud Storage JSON v1 API would refuse, or that breaks a rule eetrend promises to keep
(every Drive call supports shared drives, every export declares its no-data value, a
requestId is only ever repeated byte for byte, ...). ``tests/test_conformance.py``
runs whole studies and asserts that nothing is found.

Sources of each rule are in docs/FIDELITY.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from .earthengine import (
    AFFINE_TRANSFORM,
    CLOUD_STORAGE_DESTINATION,
    COMPUTE_PIXELS_REQUEST,
    DESCRIPTION,
    DRIVE_DESTINATION,
    DRIVE_PREFIX,
    EXPORT_IMAGE_REQUEST,
    GEOTIFF_OPTIONS,
    IMAGE_FILE_EXPORT_OPTIONS,
    PIXEL_GRID,
    PIXELS_MAX_BYTES,
    PIXELS_MAX_SIDE,
    REQUEST_ID,
)
from .expression import Call, decode
from .http import Recorded

#: Query parameters every Google API accepts (the "standard parameters" of the discovery documents).
STANDARD = {"alt", "fields", "key", "prettyPrint", "quotaUser", "$.xgafv", "access_token", "callback",
            "oauth_token", "uploadType", "upload_protocol", "userIp"}
EE_LIST = STANDARD | {"pageSize", "pageToken", "filter"}
ASSET_LIST = {"pageSize", "pageToken", "filter", "view"}  # projects.assets.listAssets
DRIVE_LIST = STANDARD | {"corpora", "driveId", "includeItemsFromAllDrives", "includeLabels",
                         "includePermissionsForView", "orderBy", "pageSize", "pageToken", "q", "spaces",
                         "supportsAllDrives", "supportsTeamDrives", "includeTeamDriveItems", "teamDriveId"}
DRIVE_GET = STANDARD | {"acknowledgeAbuse", "includeLabels", "includePermissionsForView", "supportsAllDrives",
                        "supportsTeamDrives"}
DRIVE_DELETE = STANDARD | {"enforceSingleParent", "supportsAllDrives", "supportsTeamDrives"}
GCS_LIST = STANDARD | {"delimiter", "endOffset", "includeTrailingDelimiter", "matchGlob", "maxResults",
                       "pageToken", "prefix", "projection", "softDeleted", "startOffset", "userProject",
                       "versions", "includeFoldersAsPrefixes"}
GCS_GET = STANDARD | {"generation", "ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch",
                      "ifMetagenerationNotMatch", "projection", "userProject", "softDeleted", "restoreToken"}
DRIVE_FILE_FIELDS = {"id", "name", "size", "md5Checksum", "createdTime", "mimeType", "modifiedTime", "parents",
                     "trashed", "driveId", "kind"}
QUERY_CLAUSE = re.compile(
    r"'(?:[^'\\]|\\.)*'\s+in\s+parents|name\s*=\s*'(?:[^'\\]|\\.)*'|name\s+contains\s+'(?:[^'\\]|\\.)*'"
    r"|mimeType\s*!?=\s*'(?:[^'\\]|\\.)*'|trashed\s*=\s*(?:true|false)")

_EE = re.compile(r"/v1/projects/([^/]+)/(.+)")


def check(requests: Iterable[Recorded]) -> list[str]:
    """Every problem found in ``requests``, one line each (empty when all conform)."""
    problems: list[str] = []
    bodies: dict[str, bytes] = {}
    for request in requests:
        where = f"{request.method} {request.path}"
        for problem in _check_one(request, bodies):
            problems.append(f"{where}: {problem}")
    return problems


def _check_one(request: Recorded, bodies: dict[str, bytes]) -> list[str]:
    path = request.path
    if path == "/$discovery/rest":
        return _params(request, STANDARD | {"version"}) + _expect(request, "GET")
    if path == "/token":
        return _token(request)
    if "authorization" not in request.headers:
        return ["no OAuth bearer token"]
    if path.startswith("/v1/"):
        return _earthengine(request, bodies)
    if path.startswith("/drive/v3/"):
        return _drive(request)
    if path.startswith("/storage/v1/"):
        return _storage(request)
    return [f"not an endpoint of Earth Engine v1, Drive v3 or Storage v1: {path}"]


def _expect(request: Recorded, *methods: str) -> list[str]:
    return [] if request.method in methods else [f"method {request.method} is not one of {', '.join(methods)}"]


def _params(request: Recorded, allowed: set[str]) -> list[str]:
    unknown = sorted(set(request.query) - allowed)
    return [f"unknown query parameter {name!r}" for name in unknown]


def _token(request: Recorded) -> list[str]:
    form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
    grant = form.get("grant_type")
    if request.method != "POST":
        return ["the token endpoint takes POST"]
    if grant == "refresh_token":
        return [] if form.get("refresh_token") and form.get("client_id") else ["refresh grant without its fields"]
    if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        return [] if form.get("assertion") else ["JWT grant without an assertion"]
    return [f"unknown grant_type {grant!r}"]


# -- Earth Engine ---------------------------------------------------------------------------------
def _earthengine(request: Recorded, bodies: dict[str, bytes]) -> list[str]:
    match = _EE.fullmatch(request.path)
    if match is None:
        return ["not a projects/* resource"]
    rest = match.group(2)
    if rest == "algorithms":
        return _expect(request, "GET") + _params(request, STANDARD)
    if rest == "value:compute":
        return _expect(request, "POST") + _params(request, STANDARD)
    if rest == "operations":
        problems = _expect(request, "GET") + _params(request, EE_LIST)
        size = request.query.get("pageSize")
        if size is not None and not size.isdigit():
            problems.append(f"pageSize {size!r} is not a number")
        return problems
    if re.fullmatch(r"operations/[^/:]+", rest):
        return _expect(request, "GET") + _params(request, STANDARD)
    if re.fullmatch(r"operations/[^/:]+:cancel", rest):
        body = request.json()
        return _expect(request, "POST") + _params(request, STANDARD) + (
            [] if body == {} else ["CancelOperationRequest has no fields"])
    if rest == "image:export":
        return _expect(request, "POST") + _params(request, STANDARD) + _export(request, bodies)
    if rest == "image:computePixels":
        return _expect(request, "POST") + _params(request, STANDARD) + _pixels(request)
    if re.fullmatch(r"assets/[A-Za-z0-9_/-]+:listAssets", rest):  # projects.assets.listAssets
        return _expect(request, "GET") + _params(request, STANDARD | ASSET_LIST)
    if re.fullmatch(r"assets/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", rest):  # projects.assets.get
        return _expect(request, "GET") + _params(request, STANDARD)
    return [f"eetrend calls no such Earth Engine method: {rest}"]


def _pixels(request: Recorded) -> list[str]:
    """A ComputePixelsRequest: documented fields, GEO_TIFF, a grid within the limits, masked pixels unmasked."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return ["body is not JSON"]
    problems = _unknown(body, COMPUTE_PIXELS_REQUEST, "ComputePixelsRequest")
    if body.get("fileFormat") != "GEO_TIFF":
        problems.append(f"fileFormat {body.get('fileFormat')!r} is not GEO_TIFF")
    grid = body.get("grid")
    if not isinstance(grid, dict):
        return problems + ["no grid: the pixels would come in the image's native projection, not the export's"]
    problems += _unknown(grid, PIXEL_GRID, "PixelGrid") + _unknown(grid.get("affineTransform"), AFFINE_TRANSFORM,
                                                                    "AffineTransform")
    dims = grid.get("dimensions") or {}
    width, height = int(dims.get("width", 0)), int(dims.get("height", 0))
    bands = 2 if "clear_count" in json.dumps(body.get("expression")) else 1
    if not 0 < max(width, height) <= PIXELS_MAX_SIDE:
        problems.append(f"grid {width}x{height} is beyond computePixels' {PIXELS_MAX_SIDE} pixels a side")
    if width * height * bands * 5 > PIXELS_MAX_BYTES:
        problems.append(f"grid {width}x{height} of {bands} band(s) is beyond computePixels' 48 MB per request")
    try:
        root = decode(body.get("expression"))
    except (KeyError, TypeError):
        return problems + ["expression is not a serialized Earth Engine expression"]
    if not (isinstance(root, Call) and root.name == "Image.unmask" and root.args.get("sameFootprint") is False):
        problems.append("the image is not unmasked (sameFootprint false): its masked pixels would come back as 0")
    return problems


def _unknown(message: Any, allowed: set[str], name: str) -> list[str]:
    if not isinstance(message, dict):
        return [f"{name} is not an object"]
    return [f"{name} has no field {key!r}" for key in sorted(set(message) - allowed)]


def _export(request: Recorded, bodies: dict[str, bytes]) -> list[str]:
    try:
        body = json.loads(request.body)
    except ValueError:
        return ["body is not JSON"]
    problems = _unknown(body, EXPORT_IMAGE_REQUEST, "ExportImageRequest")
    request_id = body.get("requestId")
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        problems.append(f"requestId {request_id!r} is not 1-60 of [A-Za-z0-9-] (eetrend always sends one)")
    elif request_id in bodies and bodies[request_id] != request.body:
        problems.append(f"requestId {request_id} repeated with a different body")
    else:
        bodies[request_id] = request.body
    if not DESCRIPTION.fullmatch(str(body.get("description", ""))):
        problems.append(f"description {body.get('description')!r} is not 1-100 of [A-Za-z0-9.,:;_-]")
    max_pixels = body.get("maxPixels")
    if max_pixels is not None and not (isinstance(max_pixels, str) and max_pixels.isdigit()
                                       and 0 < int(max_pixels) < 2**63):
        problems.append(f"maxPixels {max_pixels!r} is not the documented string (Int64Value format)")
    options = body.get("fileExportOptions")
    if options is None:
        return problems + ["no fileExportOptions"]
    problems += _unknown(options, IMAGE_FILE_EXPORT_OPTIONS, "ImageFileExportOptions")
    if options.get("fileFormat") != "GEO_TIFF":
        problems.append(f"fileFormat {options.get('fileFormat')!r} is not GEO_TIFF")
    if "driveDestination" in options:
        drive = options["driveDestination"]
        problems += _unknown(drive, DRIVE_DESTINATION, "DriveDestination")
        prefix = drive.get("filenamePrefix", "")
        if not DRIVE_PREFIX.fullmatch(prefix):
            problems.append(f"Drive filenamePrefix {prefix!r} holds more than letters, digits, '-' and '_'")
        if drive.get("folder") == "root":
            problems.append("Drive folder 'root' would make a folder named root; leave folder out for the root")
    elif "cloudStorageDestination" in options:
        gcs = options["cloudStorageDestination"]
        problems += _unknown(gcs, CLOUD_STORAGE_DESTINATION, "CloudStorageDestination")
        if not gcs.get("bucket"):
            problems.append("CloudStorageDestination has no bucket")
    else:
        problems.append("neither driveDestination nor cloudStorageDestination")
    geotiff = options.get("geoTiffOptions", {})
    problems += _unknown(geotiff, GEOTIFF_OPTIONS, "GeoTiffImageExportOptions")
    nodata = geotiff.get("noData")
    if not (isinstance(nodata, dict) and list(nodata) in (["floatValue"], ["integerValue"])):
        problems.append(f"geoTiffOptions.noData {nodata!r} is not a declared Number: masked pixels would be 0")
    dims = geotiff.get("tileDimensions")
    if dims is not None and (int(dims.get("width", 0)) % 256 or int(dims.get("height", 0)) % 256):
        problems.append(f"tileDimensions {dims} are not multiples of the 256-pixel shard size")
    problems += _export_expression(body.get("expression"), nodata)
    return problems


def _export_expression(expression: Any, nodata: Any) -> list[str]:
    try:
        root = decode(expression)
    except (KeyError, TypeError):
        return ["expression is not a serialized Earth Engine expression"]
    problems = []
    if not isinstance(root, Call) or root.name not in ("Image.clipToBoundsAndScale", "Image.clip"):
        return [f"the exported image is not clipped to a region ({getattr(root, 'name', root)!r})"]
    if root.name == "Image.clipToBoundsAndScale":
        if "scale" not in root.args:
            problems.append("neither scale nor crsTransform: Earth Engine would use the image's own resolution")
    else:
        inner = root.args.get("input")
        if not (isinstance(inner, Call) and inner.name == "Image.reproject" and "crsTransform" in inner.args):
            problems.append("clipped without a scale and without a crsTransform")
        elif "scale" in inner.args:
            problems.append("scale and crsTransform are exclusive")
    node, unmask = root, None
    while isinstance(node, Call):
        if node.name == "Image.unmask":
            unmask = node
            break
        node = node.args.get("input", node.args.get("image"))
    if unmask is None:
        problems.append("the image is not unmasked: masked pixels would be written as 0")
    else:
        value = unmask.args.get("value")
        constant = value.args.get("value") if isinstance(value, Call) else value
        declared = (nodata or {}).get("floatValue", (nodata or {}).get("integerValue"))
        if declared is None or constant != declared:
            problems.append(f"unmasked to {constant!r} but geoTiffOptions.noData declares {declared!r}")
        if unmask.args.get("sameFootprint", True) is not False:
            problems.append("unmask keeps sameFootprint: pixels outside the footprint would stay masked (0)")
    return problems


# -- Drive ------------------------------------------------------------------------------------------
def _drive(request: Recorded) -> list[str]:
    problems = [] if request.headers.get("x-goog-user-project") else \
        ["no x-goog-user-project: user credentials need a quota project for Drive"]
    if request.query.get("supportsAllDrives") != "true":
        problems.append("supportsAllDrives=true is missing (items in shared drives would not be found)")
    if request.path == "/drive/v3/files":
        problems += _expect(request, "GET") + _params(request, DRIVE_LIST)
        if request.query.get("includeItemsFromAllDrives") != "true":
            problems.append("includeItemsFromAllDrives=true is missing on files.list")
        problems += _drive_fields(request.query.get("fields"), listing=True)
        problems += _drive_query(request.query.get("q", ""))
        return problems
    if not re.fullmatch(r"/drive/v3/files/[^/]+", request.path):
        return problems + [f"eetrend calls no such Drive method: {request.path}"]
    if request.method == "DELETE":
        return problems + _params(request, DRIVE_DELETE)
    problems += _expect(request, "GET") + _params(request, DRIVE_GET)
    if request.query.get("alt") != "media":
        problems += _drive_fields(request.query.get("fields"), listing=False)
    return problems


def _drive_fields(fields: str | None, listing: bool) -> list[str]:
    if not fields:
        return ["no fields: Drive v3 answers only id, name and mimeType without it (no size, no md5Checksum)"]
    names = set(re.findall(r"[A-Za-z0-9]+", fields))
    problems = []
    if listing and "nextPageToken" not in names:
        problems.append("fields lacks nextPageToken: later pages would be lost")
    for needed in ("id", "name", "size", "md5Checksum"):
        if needed not in names:
            problems.append(f"fields lacks {needed}")
    unknown = names - DRIVE_FILE_FIELDS - {"nextPageToken", "files", "incompleteSearch"}
    problems += [f"fields names unknown field {name!r}" for name in sorted(unknown)]
    return problems


def _drive_query(q: str) -> list[str]:
    if not q:
        return ["files.list without q lists the whole Drive"]
    problems = []
    for clause in re.split(r"\s+and\s+", q.strip()):
        if not QUERY_CLAUSE.fullmatch(clause.strip()):
            problems.append(f"q clause {clause!r} is not of a form eetrend means to send")
    if re.search(r"name\s*=\s*'root'", q):
        problems.append("searches for a folder named 'root'; the Drive root is 'root' in parents")
    return problems


# -- Cloud Storage ----------------------------------------------------------------------------------
def _storage(request: Recorded) -> list[str]:
    problems: list[str] = []  # a quota project is optional here (service accounts bill their own project)
    if re.fullmatch(r"/storage/v1/b/[^/]+/o", request.path):
        problems += _expect(request, "GET") + _params(request, GCS_LIST)
        if "prefix" not in request.query:
            problems.append("objects.list without prefix lists the whole bucket")
        return problems
    if re.fullmatch(r"/storage/v1/b/[^/]+/o/.+", request.path):
        if request.method == "DELETE":
            return problems + _params(request, GCS_GET)
        return problems + _expect(request, "GET") + _params(request, GCS_GET)
    return problems + [f"eetrend calls no such Storage method: {request.path}"]
