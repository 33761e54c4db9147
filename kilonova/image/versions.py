"""The version documents (``GET /`` answers 300 Multiple Choices, as Glance does)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import Router, json_response

CURRENT = "2.16"
SUPPORTED = [f"2.{minor}" for minor in range(15, -1, -1)]


def versions_document(request: Request) -> dict:
    base = str(request.base_url).rstrip("/")
    link = [{"rel": "self", "href": f"{base}/v2/"}]
    versions = [{"id": f"v{CURRENT}", "status": "CURRENT", "links": link}]
    versions += [{"id": f"v{v}", "status": "SUPPORTED", "links": link} for v in SUPPORTED]
    return {"versions": versions}


@public
async def root(request: Request):
    return json_response(versions_document(request), status=300)


@public
async def versions(request: Request):
    return json_response(versions_document(request))


async def import_info(request: Request):
    return json_response({"import-methods": {"description": "Import methods available.", "type": "array",
                                             "value": []}})


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/versions", versions)
    router.add("GET", "/v2", versions)
    router.add("GET", "/v2/info/import", import_info)
