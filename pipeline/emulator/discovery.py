"""A minimal Earth Engine REST v1 discovery document: only the methods eetrend's client uses.

``googleapiclient`` builds its resource objects from this document, so its shape matters:
paths are relative to the service root, ``operations.list`` must declare a
``nextPageToken`` in its response for the client to add ``list_next``, and request
bodies are declared as plain objects (the client does not validate them).
"""

from __future__ import annotations

from typing import Any

_ANY_OBJECT = {"type": "object", "additionalProperties": {"type": "any"}}


def _param(location: str, *, required: bool = False, kind: str = "string", pattern: str | None = None) -> dict:
    param: dict[str, Any] = {"location": location, "type": kind}
    if required:
        param["required"] = True
    if pattern:
        param["pattern"] = pattern
    return param


def _method(name: str, http: str, path: str, params: dict, body: bool, response: dict | None = None) -> dict:
    method: dict[str, Any] = {
        "id": f"earthengine.{name}",
        "httpMethod": http,
        "path": path,
        "flatPath": path,
        "parameters": params,
        "parameterOrder": [k for k, v in params.items() if v.get("required")],
        "response": response or _ANY_OBJECT,
    }
    if body:
        method["request"] = _ANY_OBJECT
    return method


def discovery_document(version: str = "v1") -> dict[str, Any]:
    """The document served at ``/$discovery/rest?version=v1``."""
    project = {"project": _param("path", required=True, pattern="^projects/[^/]+$")}
    parent = {
        "parent": _param("path", required=True, pattern="^projects/[^/]+$"),
    }
    operation = {"name": _param("path", required=True, pattern="^projects/[^/]+/operations/.*$")}
    listing = {
        "name": _param("path", required=True, pattern="^projects/[^/]+$"),
        "pageSize": _param("query", kind="integer"),
        "pageToken": _param("query"),
        "filter": _param("query"),
    }
    list_response = {
        "type": "object",
        "properties": {
            "operations": {"type": "array", "items": _ANY_OBJECT},
            "nextPageToken": {"type": "string"},
        },
    }
    asset = {"name": _param("path", required=True, pattern="^projects/[^/]+/assets/.*$")}
    asset_listing = {
        "parent": _param("path", required=True, pattern="^projects/[^/]+/assets/.*$"),
        "pageSize": _param("query", kind="integer"),
        "pageToken": _param("query"),
        "filter": _param("query"),
        "view": _param("query"),
    }
    assets_response = {
        "type": "object",
        "properties": {"assets": {"type": "array", "items": _ANY_OBJECT}, "nextPageToken": {"type": "string"}},
    }
    resources = {
        "projects": {
            "resources": {
                "assets": {
                    "methods": {
                        "get": _method("projects.assets.get", "GET", f"{version}/{{+name}}", asset, body=False),
                        "listAssets": _method("projects.assets.listAssets", "GET",
                                              f"{version}/{{+parent}}:listAssets", asset_listing, body=False,
                                              response=assets_response),
                    }
                },
                "algorithms": {
                    "methods": {
                        "list": _method("projects.algorithms.list", "GET", f"{version}/{{+parent}}/algorithms",
                                        parent, body=False)
                    }
                },
                "image": {
                    "methods": {
                        "export": _method("projects.image.export", "POST", f"{version}/{{+project}}/image:export",
                                          project, body=True),
                        # the answer is the file's bytes: ee reads it with its raw model (data.computePixels)
                        "computePixels": _method("projects.image.computePixels", "POST",
                                                 f"{version}/{{+project}}/image:computePixels", project, body=True),
                    }
                },
                "value": {
                    "methods": {
                        "compute": _method("projects.value.compute", "POST", f"{version}/{{+project}}/value:compute",
                                           project, body=True)
                    }
                },
                "operations": {
                    "methods": {
                        "get": _method("projects.operations.get", "GET", f"{version}/{{+name}}", operation, body=False),
                        "list": _method("projects.operations.list", "GET", f"{version}/{{+name}}/operations",
                                        listing, body=False, response=list_response),
                        "cancel": _method("projects.operations.cancel", "POST", f"{version}/{{+name}}:cancel",
                                          operation, body=True),
                    }
                },
            }
        }
    }
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": f"earthengine:{version}",
        "name": "earthengine",
        "canonicalName": "Earth Engine",
        "version": version,
        "title": "Google Earth Engine API (eetrend emulator)",
        "protocol": "rest",
        "rootUrl": "http://127.0.0.1/",
        "servicePath": "",
        "baseUrl": "http://127.0.0.1/",
        "basePath": "",
        "batchPath": "batch",
        "parameters": {
            "alt": {"type": "string", "location": "query", "default": "json", "enum": ["json", "media", "proto"]},
            "fields": _param("query"),
            "key": _param("query"),
            "prettyPrint": {"type": "boolean", "location": "query", "default": "true"},
            "quotaUser": _param("query"),
            "$.xgafv": _param("query"),
        },
        "schemas": {},
        "resources": resources,
    }
