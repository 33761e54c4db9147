"""GET /v2.1/os-console-auth-tokens/{token} (admin): where a console URL's token leads, for a console proxy.

As upstream: the token is looked up, not used (a proxy still consumes it when it connects); before 2.31 only
RDP consoles' details are shown (there are none here: a 401 for any other type), from 2.31 every type's.
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.common import authorize
from kilonova.compute.api.microversions import want
from kilonova.compute.db import console_tokens


async def show_token(request: Request, token: str):
    authorize(request, "os_compute_api:os-console-auth-tokens")
    target = await compute_api(request).api_db.read(console_tokens.peek, token)
    if target is None:
        raise HTTPError(404, "Token not found")
    if not want(request, "2.31") and target.console_type != "rdp-html5":
        raise HTTPError(401, "The requested console type details are not accessible")
    return json_response({"console": {"instance_uuid": target.instance_uuid, "host": target.host,
                                      "port": target.port, "internal_access_path": None}})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-console-auth-tokens/{token}", show_token)
