"""Helpers every identity handler uses: context, policy, data-layer calls, links, list bodies."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.db import Conflict, NotFound
from kilonova.common.http import HTTPError, bad_request, conflict, forbidden, not_found, read_json
from kilonova.identity import policy
from kilonova.identity.core import IdentityCore
from kilonova.identity.store import Invalid, NotAllowed
from kilonova.identity.validation import validate

T = TypeVar("T")


def core(request: Request) -> IdentityCore:
    return request.state.app.state["identity"]


def context(request: Request) -> RequestContext:
    return request.state.context


def client_address(request: Request) -> str:
    """Where a request came from, for limits per source (the peer's address; no proxy header is trusted)."""
    return request.client.host if request.client else "unknown"


def enforce(request: Request, action: str, **target: Any) -> None:
    policy.enforce(context(request), action, target, policy.enforcer_of(core(request)))


def _translate(exc: Exception) -> HTTPError:
    if isinstance(exc, NotFound):
        return not_found(str(exc))
    if isinstance(exc, NotAllowed):
        return forbidden(str(exc))
    if isinstance(exc, Invalid):
        return bad_request(str(exc))
    if isinstance(exc, Conflict):
        return conflict(str(exc))
    return conflict("Conflict occurred attempting to store the resource: it conflicts with an existing one.")


async def read(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await core(request).read(fn, *args, **kwargs)
    except (NotFound, NotAllowed, Conflict, Invalid) as exc:
        raise _translate(exc) from None


async def write(request: Request, fn: Callable[..., T], *args: Any, revokes: bool = False, **kwargs: Any) -> T:
    try:
        return await core(request).write(fn, *args, revokes=revokes, **kwargs)
    except (NotFound, NotAllowed, Conflict, Invalid, IntegrityError) as exc:
        raise _translate(exc) from None


async def body(request: Request, schema: dict) -> dict:
    document = await read_json(request)
    validate(document, schema)
    return document


def url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + path


def self_link(request: Request, path: str) -> dict[str, str]:
    return {"self": url(request, path)}


def collection(request: Request, key: str, items: list[dict]) -> dict[str, Any]:
    return {key: items, "links": {"self": str(request.url), "previous": None, "next": None}}


def flag(request: Request, name: str) -> bool | None:
    """A boolean query filter (``?enabled=false``); None when absent."""
    value = request.query_params.get(name)
    if value is None:
        return None
    return value.strip().lower() not in ("0", "false", "no", "off", "n", "f")


def present(request: Request, name: str) -> bool:
    """Keystone's flag parameters: ``?include_names`` or ``?include_names=true`` mean yes."""
    value = request.query_params.get(name)
    return value is not None and value.strip().lower() not in ("0", "false", "no", "off")


def split_extra(values: dict[str, Any], known: tuple[str, ...], ignored: tuple[str, ...] = (),
                immutable: tuple[str, ...] = ()) -> dict[str, Any]:
    """Known columns as they are, anything else (email, ...) under ``extra``, as Keystone stores them.

    ``immutable`` fields are passed on so that the data layer can refuse to change them."""
    result = {key: values[key] for key in known + immutable if key in values}
    extra = {key: value for key, value in values.items() if key not in known and key not in ignored}
    if extra:
        result["extra"] = extra
    return result


