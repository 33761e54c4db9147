"""/resource_providers/{uuid}/usages and GET /usages (1.9)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import usages

def query_schema(request: Request) -> dict:
    return schemas.USAGES_QUERY_1_38 if want(request, "1.38") else schemas.USAGES_QUERY


@policy("placement:resource_providers:usages")
@util.json_only
async def list_usages(request: Request, uuid: str) -> Response:
    try:
        provider, used = await util.db(request).read(usages.of_provider, uuid)
    except exc.ProviderNotFound as error:
        raise HTTPError(404, f"No resource provider with uuid {uuid} found: {error}") from None
    body = {"resource_provider_generation": provider.generation, "usages": used}
    return util.json_response(request, body)


@versioned("1.9")
@policy("placement:usages")
@util.json_only
async def get_total_usages(request: Request) -> Response:
    params = util.query(request, query_schema(request))
    project, user = params["project_id"], params.get("user_id")
    if want(request, "1.38"):
        result = await util.db(request).read(usages.of_project_by_type, project, user, params.get("consumer_type"))
    else:
        result = await util.db(request).read(usages.of_project, project, user)
    return util.json_response(request, {"usages": result})


def register(router: Router) -> None:
    router.add("GET", "/resource_providers/{uuid}/usages", list_usages)
    router.add("GET", "/usages", get_total_usages)
