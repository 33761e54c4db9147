"""Version documents: ``/`` (every version), ``/v2.1`` and ``/v2.1/`` (the current one), ``/v2.1/versions/{id}``.

As upstream's deployment (api-paste.ini) serves them: ``/v2.1`` is its own unauthenticated application;
``/v2.1/`` and everything below it is the API, behind authentication, where the version document is the
route ``/`` and a URL naming a project without its slash (``/v2.1/{project_id}``) is a 302 to the one with.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse

from kilonova.common.auth import public, request_token
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import microversions
from kilonova.compute.api.app import URL_PROJECT

_DESCRIBED_BY = {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _v21(request: Request) -> dict:
    return {"id": "v2.1", "status": "CURRENT", "version": microversions.MAX_VERSION,
            "min_version": microversions.MIN_VERSION, "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": _base(request) + "/v2.1/"}]}


def _v20(request: Request) -> dict:
    return {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
            "updated": "2011-01-21T11:33:21Z", "links": [{"rel": "self", "href": _base(request) + "/v2/"}]}


_DOCUMENTS = {"v2.1": (_v21, "2.1"), "v2.0": (_v20, "2")}


def _document(request: Request, version_id: str) -> dict:
    """One version's document as served under /v2.1: its self link is this endpoint's, as upstream's."""
    build, media_version = _DOCUMENTS[version_id]
    doc = build(request)
    doc["links"] = [{"rel": "self", "href": _base(request) + "/v2.1/"}, _DESCRIBED_BY]
    doc["media-types"] = [{"base": "application/json",
                           "type": f"application/vnd.openstack.compute+json;version={media_version}"}]
    return {"version": doc}


@public
async def root(request: Request):
    return json_response({"versions": [_v20(request), _v21(request)]})


@public
async def v21(request: Request):
    project = request.scope.get(URL_PROJECT)
    if not request.url.path.endswith("/"):
        if project:
            return RedirectResponse(f"{_base(request)}/v2.1/{project}/", status_code=302)
        return json_response(_document(request, "v2.1"))
    await _authenticate(request)
    return json_response(_document(request, "v2.1"))


async def _authenticate(request: Request) -> None:
    """What the API's auth hook does for every other route (this one shares its path with the public one)."""
    await request.state.app.state["validator"].validate(request_token(request))


@public
async def show_version(request: Request, version_id: str):
    await _authenticate(request)
    if version_id not in _DOCUMENTS:
        raise HTTPError(404, "The resource could not be found.")
    return json_response(_document(request, version_id))


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v2.1", v21)
    router.add("GET", "/v2.1/versions/{version_id}", show_version)
