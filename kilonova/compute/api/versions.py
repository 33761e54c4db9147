"""Version documents: ``/`` (every version), ``/v2.1/`` (the current one) and ``/v2.1/versions/{id}``.

As upstream, ``/v2.1`` without its slash is a 302 to ``/v2.1/`` (upstream's route table redirects the empty
path to ``/``); clients that discover versions (keystoneauth) follow it.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse

from kilonova.common.auth import public
from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import microversions

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
    if not request.url.path.endswith("/"):
        return RedirectResponse(_base(request) + "/v2.1/", status_code=302)
    return json_response(_document(request, "v2.1"))


@public
async def show_version(request: Request, version_id: str):
    if version_id not in _DOCUMENTS:
        raise HTTPError(404, "The resource could not be found.")
    return json_response(_document(request, version_id))


def register(router: Router) -> None:
    router.add("GET", "/", root)
    router.add("GET", "/v2.1", v21)
    router.add("GET", "/v2.1/versions/{version_id}", show_version)
