"""Version documents and microversions: ``OpenStack-API-Version: volume 3.x``, 3.0 up to ``MAX_VERSION``.

Only 3.0 is offered: the later microversions each add something (groups, attachments, filters by
operators, schema validation ...) that this service does not do yet, and a client told a higher maximum
would count on it.
"""
from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.auth import public
from kilonova.common.http import HTTPError, Router, json_response

MIN_VERSION = (3, 0)
MAX_VERSION = (3, 0)
HEADER = "OpenStack-API-Version"
_VERSION = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def _document(request: Request) -> dict:
    base = str(request.base_url).rstrip("/")
    return {"id": "v3.0", "status": "CURRENT", "version": text(MAX_VERSION), "min_version": text(MIN_VERSION),
            "updated": "2026-12-06T00:00:00Z",
            "links": [{"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{base}/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


@public
async def root(request: Request):
    return json_response({"versions": [_document(request)]}, status=300)


@public
async def v3(request: Request):
    return json_response({"versions": [_document(request)]})


def requested(request: Request) -> tuple[int, int]:
    """The microversion a v3 request asks for (3.0 without a header); 400 malformed, 406 out of range."""
    value = request.headers.get(HEADER, "").strip()
    if not value:
        return MIN_VERSION
    service, _, version = value.partition(" ")
    if service.lower() != "volume":
        return MIN_VERSION
    version = version.strip()
    if version.lower() == "latest":
        return MAX_VERSION
    match = _VERSION.match(version)
    if not match:
        raise HTTPError(400, f"Invalid API version format: {version!r}. Expected 'volume X.Y'.")
    asked = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= asked <= MAX_VERSION:
        raise HTTPError(406, f"Version {version} is not supported by the API. Minimum is {text(MIN_VERSION)} "
                             f"and maximum is {text(MAX_VERSION)}.")
    return asked


async def negotiate(request: Request, _handler) -> None:
    if request.url.path.startswith("/v3/"):
        request.state.volume_version = requested(request)


def annotate(request: Request, response: Response) -> None:
    """Every v3 answer says the microversion it was served at."""
    version = getattr(request.state, "volume_version", None)
    if version is not None:
        response.headers[HEADER] = f"volume {text(version)}"
        response.headers["Vary"] = HEADER


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v3", v3)
