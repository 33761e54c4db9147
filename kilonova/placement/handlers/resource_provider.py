"""/resource_providers and /resource_providers/{uuid}."""
from __future__ import annotations

import uuid as uuidlib

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import query as qs
from kilonova.placement.handlers import util
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_classes as rcs
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects import traits as traits_mod

POST_SCHEMA = schemas.PROVIDER_POST
POST_SCHEMA_1_14 = schemas.PROVIDER_POST_1_14
PUT_SCHEMA = schemas.PROVIDER_PUT
PUT_SCHEMA_1_14 = schemas.PROVIDER_PUT_1_14


def list_query_schema(request: Request) -> dict:
    return schemas.for_version(schemas.PROVIDER_LIST_QUERY, request.state.version)


def serialize(request: Request, provider: rps.Provider) -> dict:
    base = f"/resource_providers/{provider.uuid}"
    links = [{"rel": "self", "href": base}, {"rel": "inventories", "href": f"{base}/inventories"},
             {"rel": "usages", "href": f"{base}/usages"}]
    for version, rel in (("1.1", "aggregates"), ("1.6", "traits"), ("1.11", "allocations")):
        if want(request, version):
            links.append({"rel": rel, "href": f"{base}/{rel}"})
    data = {"uuid": provider.uuid, "name": provider.name, "generation": provider.generation, "links": links}
    if want(request, "1.14"):
        data["parent_provider_uuid"] = provider.parent_uuid
        data["root_provider_uuid"] = provider.root_uuid
    return data


def _modified(provider: rps.Provider):
    return provider.updated_at or provider.created_at


def provider_not_found(uuid: str, repeated_after: str = "") -> HTTPError:
    """The 404 for an unknown provider; a few upstream GETs say the message twice, joined by ``repeated_after``
    (their own prefix, then the lookup's error)."""
    message = f"No resource provider with uuid {uuid} found"
    if repeated_after:
        return HTTPError(404, f"{message}{repeated_after}{message}")
    return HTTPError(404, message, bare=True)   # upstream's NotFound raised past its handler: no Vary


async def unknown_provider_first(request: Request, uuid: str, refusal: HTTPError,
                                 generation: int | None = None) -> None:
    """Raise the 404 when provider ``uuid`` does not exist, the 409 when ``generation`` (if given) is stale,
    ``refusal`` (a 400 for the request's body or values) otherwise: upstream looks the provider up before it
    judges these writes. Looked up only once the request is refused, so a valid write costs no extra read."""
    try:
        provider = await util.db(request).read(rps.get, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    if generation is not None and provider.generation != generation:
        raise HTTPError(409, "resource provider generation conflict", code=errors.CONCURRENT_UPDATE) from None
    raise refusal


async def provider_body(request: Request, uuid: str, schema: dict):
    """The validated body of a write to provider ``uuid``, an unknown provider's 404 before any 400."""
    try:
        return await util.body(request, schema)
    except HTTPError as error:
        if error.status != 400:
            raise
        await unknown_provider_first(request, uuid, error)


@policy("placement:resource_providers:create")
async def create_resource_provider(request: Request) -> Response:
    data = await util.body(request, POST_SCHEMA_1_14 if want(request, "1.14") else POST_SCHEMA)
    uuid = util.normalize_uuid(data["uuid"]) if data.get("uuid") else str(uuidlib.uuid4())
    try:
        provider = await util.db(request).write(rps.create, data["name"], uuid, data.get("parent_provider_uuid"))
    except exc.Duplicate as error:
        raise HTTPError(409, str(error), code=errors.DUPLICATE_NAME) from None
    except exc.Invalid as error:
        raise HTTPError(400, f'Unable to create resource provider "{data["name"]}", {uuid}: Object action create '
                             f'failed because: {error}') from None
    location = util.location(request, f"/resource_providers/{provider.uuid}")
    if want(request, "1.20"):
        return util.json_response(request, serialize(request, provider), modified=_modified(provider),
                                  headers=location)
    return Response(status_code=201, headers=location)


@policy("placement:resource_providers:show")
@util.json_only
async def get_resource_provider(request: Request, uuid: str) -> Response:
    try:
        provider = await util.db(request).read(rps.get, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    return util.json_response(request, serialize(request, provider), modified=_modified(provider))


@policy("placement:resource_providers:update")
async def update_resource_provider(request: Request, uuid: str) -> Response:
    data = await provider_body(request, uuid, PUT_SCHEMA_1_14 if want(request, "1.14") else PUT_SCHEMA)
    parent = data.get("parent_provider_uuid", rps.UNSET)
    try:
        provider, before = await util.db(request).write(rps.update, uuid, data["name"], parent,
                                                        allow_reparent=want(request, "1.37"))
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.Duplicate:
        raise HTTPError(409, f"Conflicting resource provider {data['name']} already exists.",
                        code=errors.DUPLICATE_NAME) from None
    except exc.Invalid as error:
        raise HTTPError(400, f"Unable to save resource provider {uuid}: Object action {error.action or 'update'} "
                             f"failed because: {error}") from None
    # as upstream: Last-Modified is the provider's update time as read before this one (none if never)
    response = util.json_response(request, serialize(request, provider), cache=False)
    util.cache_headers(request, response, before, dated=before is not None)
    return response


@policy("placement:resource_providers:delete")
async def delete_resource_provider(request: Request, uuid: str) -> Response:
    try:
        await util.db(request).write(rps.delete, uuid)
    except exc.ProviderNotFound:
        raise HTTPError(404, f"No resource provider with uuid {uuid} found for delete") from None
    except exc.CannotDeleteParent as error:
        raise HTTPError(409, str(error), code=errors.PROVIDER_CANNOT_DELETE_PARENT) from None
    except exc.InUse as error:
        raise HTTPError(409, str(error), code=errors.PROVIDER_IN_USE) from None
    return util.no_content()


@policy("placement:resource_providers:list")
@util.json_only
async def list_resource_providers(request: Request) -> Response:
    params = util.query(request, list_query_schema(request))
    # as upstream, an empty name filters nothing
    filters = rps.ListFilters(name=params.get("name") or None, uuid=params.get("uuid"), in_tree=params.get("in_tree"))
    if "member_of" in params:
        filters.member_of, filters.forbidden_aggregates = qs.member_of(
            request.query_params.getlist("member_of"), request)
    resources = qs.resources(params["resources"]) if "resources" in params else None
    required = qs.traits(request.query_params.getlist("required"), request) if "required" in params else None
    providers = await util.db(request).read(_list, filters, resources, required)
    body = {"resource_providers": [serialize(request, p) for p in providers]}
    return util.json_response(request, body, modified=util.newest(*(_modified(p) for p in providers)))


def _list(session, filters: rps.ListFilters, resources, required):
    """Resolve class and trait names, then list (one read transaction)."""
    if resources is not None:
        ids = rcs.ids_by_name(session, list(resources))
        unknown = sorted(set(resources) - set(ids))
        if unknown:
            raise HTTPError(400, f"Invalid resource class in resources parameter: No such resource class "
                                 f"{unknown[0]}.")
        filters.resources = {ids[name]: amount for name, amount in resources.items()}
    if required is not None:
        any_of, forbidden = required
        names = set(forbidden).union(*any_of) if any_of else set(forbidden)
        try:
            ids = traits_mod.require(session, names)
        except exc.TraitNotFound as error:
            raise HTTPError(400, f'Invalid trait(s) in "required" parameter: {error}') from None
        filters.required_traits = [{ids[t] for t in group} for group in any_of]
        filters.forbidden_traits = {ids[t] for t in forbidden}
    return rps.list_providers(session, filters)


def register(router: Router) -> None:
    router.add("GET", "/resource_providers", list_resource_providers)
    router.add("POST", "/resource_providers", create_resource_provider)
    router.add("GET", "/resource_providers/{uuid}", get_resource_provider)
    router.add("DELETE", "/resource_providers/{uuid}", delete_resource_provider)
    router.add("PUT", "/resource_providers/{uuid}", update_resource_provider)
