"""``/v3/auth/tokens``: issue (POST), validate (GET), check (HEAD) and revoke (DELETE)."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.auth import public
from kilonova.common.http import Router, bad_request, empty_response, json_response, not_found, read_json, unauthorized
from kilonova.identity import revocation
from kilonova.identity.api.common import client_address, core, enforce
from kilonova.identity.authenticate import authenticate
from kilonova.identity.core import TokenError, TokenInvalid
from kilonova.identity.tokens import Payload


def _wants_catalog(request: Request) -> bool:
    return "nocatalog" not in request.query_params


@public
async def issue(request: Request):
    identity = core(request)
    payload = await authenticate(identity, await read_json(request), client_address(request))
    token = identity.formatter.seal(payload)
    try:
        _, body = await identity.validate(token, include_catalog=_wants_catalog(request))
    except (TokenError, TokenInvalid):
        raise unauthorized() from None
    return json_response(body, 201, {"X-Subject-Token": token})


async def _subject(request: Request, include_catalog: bool = False) -> tuple[str, Payload, dict]:
    token = request.headers.get("x-subject-token")
    if not token:
        raise bad_request("Expecting to find X-Subject-Token in the request headers.")
    try:
        payload, body = await core(request).validate(token, include_catalog=include_catalog)
    except (TokenError, TokenInvalid):
        raise not_found(f"Could not find token: {token}.") from None
    return token, payload, body


async def validate(request: Request):
    token, payload, body = await _subject(request, include_catalog=_wants_catalog(request))
    enforce(request, "identity:validate_token", user_id=payload.user_id)
    return json_response(body, 200, {"X-Subject-Token": token})


async def check(request: Request):
    token, payload, _ = await _subject(request)
    enforce(request, "identity:check_token", user_id=payload.user_id)
    return empty_response(200, {"X-Subject-Token": token})


async def revoke(request: Request):
    _, payload, _ = await _subject(request)
    enforce(request, "identity:revoke_token", user_id=payload.user_id)
    await core(request).write(revocation.record, audit_id=payload.audit_id, revokes=True)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/v3/auth/tokens", issue)
    router.add("GET", "/v3/auth/tokens", validate)
    router.add("HEAD", "/v3/auth/tokens", check)
    router.add("DELETE", "/v3/auth/tokens", revoke)
