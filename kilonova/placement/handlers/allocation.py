"""/allocations/{consumer_uuid}, POST /allocations and /resource_providers/{uuid}/allocations."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import allocations as allocs
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects.consumers import MISSING, ConsumerRequest


def put_schema(request: Request) -> dict:
    return schemas.for_version(schemas.ALLOCATION_PUT, request.state.version)


def post_schema(request: Request) -> dict:
    return schemas.for_version(schemas.ALLOCATION_POST, request.state.version)


def consumer_request(request: Request, consumer: str, data: dict) -> ConsumerRequest:
    allocations = data["allocations"]
    if isinstance(allocations, list):
        allocations = {a["resource_provider"]["uuid"]: {"resources": a["resources"]} for a in allocations}
    return ConsumerRequest(
        uuid=consumer, project_id=data.get("project_id"), user_id=data.get("user_id"),
        allocations={util.normalize_uuid(rp): dict(a["resources"]) for rp, a in allocations.items()},
        generation=data.get("consumer_generation") if want(request, "1.28") else MISSING,
        consumer_type=data.get("consumer_type"))


async def write_allocations(request: Request, requests: list[ConsumerRequest], what: str) -> None:
    """The claim, retried while only provider generations moved under it (as upstream does)."""
    retries = util.state(request).conflict_retries   # [placement] allocation_conflict_retry_count
    for attempt in range(retries):
        try:
            await util.db(request).write(allocs.replace, requests)
            return
        except exc.ProviderConcurrentUpdate as error:
            if attempt == retries - 1:
                raise HTTPError(409, f"Inventory and/or allocations changed while attempting to allocate: {error}",
                                code=errors.CONCURRENT_UPDATE) from None
        except exc.ConcurrentUpdate as error:
            raise HTTPError(409, str(error), code=errors.CONCURRENT_UPDATE) from None
        except IntegrityError:
            raise HTTPError(409, "Inventory and/or allocations changed while attempting to allocate: a consumer "
                                 "was created concurrently", code=errors.CONCURRENT_UPDATE) from None
        except exc.Invalid as error:
            raise HTTPError(400, str(error)) from None
        except exc.NotFound as error:
            raise HTTPError(400, f"Unable to allocate inventory {what}{error}") from None
        except exc.InvalidInventory as error:
            raise HTTPError(409, f"Unable to allocate inventory: {error}") from None


@policy("placement:allocations:list")
@util.json_only
async def list_for_consumer(request: Request, consumer_uuid: str) -> Response:
    consumer, allocations, modified, type_name = await util.db(request).read(allocs.for_consumer, consumer_uuid)
    if not want(request, "1.12"):
        body = {"allocations": {rp: {"generation": a["generation"], "resources": a["resources"]}
                                for rp, a in allocations.items()}}
    else:
        body = {"allocations": allocations}
        if allocations and consumer is not None:
            body["project_id"] = consumer.project_id
            body["user_id"] = consumer.user_id
            if want(request, "1.28"):
                body["consumer_generation"] = consumer.generation
            if want(request, "1.38"):
                body["consumer_type"] = type_name or "unknown"
    return util.json_response(request, body, modified=modified)


@policy("placement:allocations:update")
async def set_for_consumer(request: Request, consumer_uuid: str) -> Response:
    if not util.is_uuid(consumer_uuid):
        raise HTTPError(400, f"Malformed consumer_uuid: {consumer_uuid}")
    consumer_uuid = util.normalize_uuid(consumer_uuid)
    data = await util.body(request, put_schema(request))
    await write_allocations(request, [consumer_request(request, consumer_uuid, data)],
                            f"for consumer {consumer_uuid}: ")
    return util.no_content()


@versioned("1.13")
@policy("placement:allocations:manage")
async def set_allocations(request: Request) -> Response:
    data = await util.body(request, post_schema(request))
    requests = [consumer_request(request, util.normalize_uuid(c), d) for c, d in data.items()]
    await write_allocations(request, requests, "")
    return util.no_content()


@policy("placement:allocations:delete")
async def delete_for_consumer(request: Request, consumer_uuid: str) -> Response:
    # no provider generation changes (as upstream): nothing to conflict with
    try:
        await util.db(request).write(allocs.delete_consumer, consumer_uuid)
    except exc.NotFound as error:
        raise HTTPError(404, str(error)) from None
    return util.no_content()


@policy("placement:resource_providers:allocations:list")
@util.json_only
async def list_for_provider(request: Request, uuid: str) -> Response:
    try:
        provider, allocations, modified = await util.db(request).read(allocs.for_provider, uuid)
    except exc.ProviderNotFound as error:
        raise HTTPError(404, f"Resource provider '{uuid}' not found: {error}") from None
    if not want(request, "1.28"):
        allocations = {c: {"resources": a["resources"]} for c, a in allocations.items()}
    body = {"allocations": allocations, "resource_provider_generation": provider.generation}
    return util.json_response(request, body, modified=modified)


def register(router: Router) -> None:
    router.add("GET", "/allocations/{consumer_uuid}", list_for_consumer)
    router.add("PUT", "/allocations/{consumer_uuid}", set_for_consumer)
    router.add("DELETE", "/allocations/{consumer_uuid}", delete_for_consumer)
    router.add("POST", "/allocations", set_allocations)
    router.add("GET", "/resource_providers/{uuid}/allocations", list_for_provider)
