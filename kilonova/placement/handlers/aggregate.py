"""/resource_providers/{uuid}/aggregates (1.1; generations from 1.19)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.resource_provider import provider_body, provider_not_found
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import aggregates
from kilonova.placement.objects import exceptions as exc

PUT_SCHEMA_1_1 = schemas.AGGREGATES_1_1
PUT_SCHEMA_1_19 = schemas.AGGREGATES_1_19


def _body(request: Request, provider, uuids: list[str]) -> dict:
    body = {"aggregates": uuids}
    if want(request, "1.19"):
        body["resource_provider_generation"] = provider.generation
    return body


@versioned("1.1")
@policy("placement:resource_providers:aggregates:list")
@util.json_only_before_version
async def get_aggregates(request: Request, uuid: str) -> Response:
    try:
        provider, uuids = await util.db(request).read(aggregates.of_provider, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    return util.json_response(request, _body(request, provider, uuids))


@versioned("1.1")
@policy("placement:resource_providers:aggregates:update")
async def set_aggregates(request: Request, uuid: str) -> Response:
    newer = want(request, "1.19")
    data = await provider_body(request, uuid, PUT_SCHEMA_1_19 if newer else PUT_SCHEMA_1_1)
    wanted = [util.normalize_uuid(a) for a in (data["aggregates"] if newer else data)]
    generation = data["resource_provider_generation"] if newer else None
    try:
        provider, uuids = await util.db(request).write(aggregates.set_for_provider, uuid, wanted, generation, newer)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.ConcurrentUpdate as error:
        raise HTTPError(409, str(error), code=errors.CONCURRENT_UPDATE) from None
    return util.json_response(request, _body(request, provider, uuids), modified=provider.updated_at)


def register(router: Router) -> None:
    router.add("GET", "/resource_providers/{uuid}/aggregates", get_aggregates)
    router.add("PUT", "/resource_providers/{uuid}/aggregates", set_aggregates)
