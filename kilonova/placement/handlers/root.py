"""GET /: the version document (public)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import Router
from kilonova.placement import microversion
from kilonova.placement.handlers.util import json_response


@public
async def home(request: Request):
    version = {"id": f"v{microversion.MIN_VERSION}", "max_version": microversion.MAX_VERSION,
               "min_version": microversion.MIN_VERSION, "status": "CURRENT",
               "links": [{"rel": "self", "href": ""}]}
    return json_response(request, {"versions": [version]})


def register(router: Router) -> None:
    router.add("GET", "/", home)
