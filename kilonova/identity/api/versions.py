"""Version documents: ``GET /`` (300 Multiple Choices) and ``GET /v3``."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import Router, json_response
from kilonova.identity.api.common import url

MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def _v3(request: Request) -> dict:
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": url(request, "/v3/")}], "media-types": MEDIA_TYPES}


@public
async def root(request: Request):
    return json_response({"versions": {"values": [_v3(request)]}}, status=300)


@public
async def v3(request: Request):
    return json_response({"version": _v3(request)})


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v3", v3)
