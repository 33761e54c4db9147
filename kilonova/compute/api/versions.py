"""Version documents at ``/`` and ``/v2.1``."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import Router, json_response
from kilonova.compute.api import microversions

MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _v21(request: Request) -> dict:
    return {"id": "v2.1", "status": "CURRENT", "version": microversions.MAX_VERSION,
            "min_version": microversions.MIN_VERSION, "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": _base(request) + "/v2.1/"}]}


def _v20(request: Request) -> dict:
    return {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
            "updated": "2011-01-21T11:33:21Z", "links": [{"rel": "self", "href": _base(request) + "/v2/"}]}


@public
async def root(request: Request):
    return json_response({"versions": [_v20(request), _v21(request)]})


@public
async def v21(request: Request):
    doc = _v21(request)
    doc["links"].append({"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"})
    doc["media-types"] = MEDIA_TYPES
    return json_response({"version": doc})


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v2.1", v21)
