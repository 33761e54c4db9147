"""/traits (1.6) and /resource_providers/{uuid}/traits."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.resource_provider import provider_not_found
from kilonova.placement.handlers.util import policy
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import traits

LIST_QUERY = schemas.TRAIT_LIST_QUERY
CUSTOM_SCHEMA = schemas.TRAIT_NAME
PROVIDER_TRAITS_SCHEMA = schemas.PROVIDER_TRAITS


def _name_filter(value: str) -> dict:
    if value.startswith("in:"):
        return {"exact": [n.strip() for n in value[3:].split(",")]}
    if value.startswith("startswith:"):
        return {"prefix": value[len("startswith:"):]}
    raise HTTPError(400, "Badly formatted name parameter. Expected name query string parameter in form: "
                         f'?name=[in|startswith]:[name1,name2|prefix]. Got: "{value}"')


@versioned("1.6")
@policy("placement:traits:list")
@util.json_only
async def list_traits(request: Request) -> Response:
    params = util.query(request, LIST_QUERY)
    options = _name_filter(params["name"]) if "name" in params else {}
    if "associated" in params:
        if params["associated"] not in ("true", "false"):
            raise HTTPError(400, 'The query parameter "associated" only accepts "true" or "false"')
        options["associated"] = params["associated"] == "true"
    rows = await util.db(request).read(traits.list_names, **options)
    modified = util.newest(*(r.updated_at or r.created_at for r in rows))
    return util.json_response(request, {"traits": [r.name for r in rows]}, modified=modified)


@versioned("1.6")
@policy("placement:traits:show")
async def get_trait(request: Request, name: str) -> Response:
    try:
        row = await util.db(request).read(traits.get, name)
    except exc.TraitNotFound as error:
        raise HTTPError(404, str(error)) from None
    response = util.no_content()
    util.cache_headers(request, response, row.updated_at or row.created_at)
    return response


@versioned("1.6")
@policy("placement:traits:update")
async def put_trait(request: Request, name: str) -> Response:
    if util.schema_error(name, CUSTOM_SCHEMA) is not None:   # upstream names no detail
        raise HTTPError(400, "The trait is invalid. A valid trait must be no longer than 255 characters, start "
                             "with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" "
                             "and \"_\"")
    created = await util.db(request).write(traits.ensure, name)
    response = Response(status_code=201 if created else 204, headers=util.location(request, f"/traits/{name}"))
    util.cache_headers(request, response, None)
    return response


@versioned("1.6")
@policy("placement:traits:delete")
async def delete_trait(request: Request, name: str) -> Response:
    try:
        await util.db(request).write(traits.delete, name)
    except exc.Invalid as error:
        raise HTTPError(400, str(error)) from None
    except exc.TraitNotFound as error:
        raise HTTPError(404, str(error)) from None
    except exc.InUse as error:
        raise HTTPError(409, str(error)) from None
    return util.no_content()


def _body(provider, names: list[str]) -> dict:
    return {"traits": names, "resource_provider_generation": provider.generation}


@versioned("1.6")
@policy("placement:resource_providers:traits:list")
@util.json_only
async def list_provider_traits(request: Request, uuid: str) -> Response:
    try:
        provider, names = await util.db(request).read(traits.of_provider, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid, repeated_after=": ") from None
    return util.json_response(request, _body(provider, names))


@versioned("1.6")
@policy("placement:resource_providers:traits:update")
async def update_provider_traits(request: Request, uuid: str) -> Response:
    data = await util.body(request, PROVIDER_TRAITS_SCHEMA)
    try:
        provider, names = await util.db(request).write(traits.set_for_provider, uuid,
                                                       data["resource_provider_generation"], data["traits"])
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.TraitNotFound as error:   # upstream's own text here, not its exception's
        raise HTTPError(400, f"No such trait {', '.join(getattr(error, 'names', []))}") from None
    except exc.ConcurrentUpdate as error:
        raise HTTPError(409, str(error), code=errors.CONCURRENT_UPDATE) from None
    return util.json_response(request, _body(provider, names), modified=provider.updated_at)


@versioned("1.6")
@policy("placement:resource_providers:traits:delete")
async def delete_provider_traits(request: Request, uuid: str) -> Response:
    try:
        await util.db(request).write(traits.clear_for_provider, uuid)
    except exc.ProviderNotFound:
        raise provider_not_found(uuid) from None
    except exc.ConcurrentUpdate as error:
        raise HTTPError(409, str(error), code=errors.CONCURRENT_UPDATE) from None
    return util.no_content()


def register(router: Router) -> None:
    router.add("GET", "/traits", list_traits)
    router.add("GET", "/traits/{name}", get_trait)
    router.add("PUT", "/traits/{name}", put_trait)
    router.add("DELETE", "/traits/{name}", delete_trait)
    router.add("GET", "/resource_providers/{uuid}/traits", list_provider_traits)
    router.add("PUT", "/resource_providers/{uuid}/traits", update_provider_traits)
    router.add("DELETE", "/resource_providers/{uuid}/traits", delete_provider_traits)
