"""/resource_classes (1.2; PUT is a bodiless create-or-confirm from 1.7)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
from kilonova.placement.handlers import util
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_classes as rcs

SCHEMA = schemas.RESOURCE_CLASS


def serialize(name: str) -> dict:
    return {"name": name, "links": [{"rel": "self", "href": f"/resource_classes/{name}"}]}


@versioned("1.2")
@policy("placement:resource_classes:list")
@util.json_only
async def list_resource_classes(request: Request) -> Response:
    rows = await util.db(request).read(rcs.list_all)
    modified = util.newest(*(r.updated_at or r.created_at for r in rows))
    return util.json_response(request, {"resource_classes": [serialize(r.name) for r in rows]}, modified=modified)


@versioned("1.2")
@policy("placement:resource_classes:create")
async def create_resource_class(request: Request) -> Response:
    data = await util.body(request, SCHEMA)
    try:
        await util.db(request).write(rcs.create, data["name"])
    except exc.Duplicate as error:
        raise HTTPError(409, str(error), code=errors.DUPLICATE_NAME) from None
    return Response(status_code=201, headers=util.location(request, f"/resource_classes/{data['name']}"))


@versioned("1.2")
@policy("placement:resource_classes:show")
@util.json_only
async def get_resource_class(request: Request, name: str) -> Response:
    try:
        row = await util.db(request).read(rcs.get, name)
    except exc.ResourceClassNotFound:
        raise HTTPError(404, f"No such resource class {name}.", bare=True) from None
    return util.json_response(request, serialize(row.name), modified=row.updated_at or row.created_at)


@versioned("1.2")
@policy("placement:resource_classes:update")
async def update_resource_class(request: Request, name: str) -> Response:
    if want(request, "1.7"):
        util.validate({"name": name}, SCHEMA, "JSON does not validate")   # upstream checks the name as JSON
        created = await util.db(request).write(rcs.ensure, name)
        # no cache headers here, unlike PUT /traits/{name} (as upstream)
        return Response(status_code=201 if created else 204,
                        headers=util.location(request, f"/resource_classes/{name}"))
    data = await util.body(request, SCHEMA)
    try:
        row = await util.db(request).write(rcs.rename, name, data["name"])
    except exc.Invalid as error:
        raise HTTPError(400, str(error)) from None
    except exc.ResourceClassNotFound:
        raise HTTPError(404, f"No such resource class {name}.", bare=True) from None
    except exc.Duplicate as error:
        raise HTTPError(409, str(error), code=errors.DUPLICATE_NAME) from None
    return util.json_response(request, serialize(row.name))


@versioned("1.2")
@policy("placement:resource_classes:delete")
async def delete_resource_class(request: Request, name: str) -> Response:
    try:
        await util.db(request).write(rcs.delete, name)
    except exc.Invalid as error:
        raise HTTPError(400, f"Error in delete resource class: {error}") from None
    except exc.ResourceClassNotFound:
        raise HTTPError(404, f"No such resource class {name}.", bare=True) from None
    except exc.InUse as error:
        raise HTTPError(409, f"Error in delete resource class: {error}") from None
    return util.no_content()


def register(router: Router) -> None:
    router.add("GET", "/resource_classes", list_resource_classes)
    router.add("POST", "/resource_classes", create_resource_class)
    router.add("GET", "/resource_classes/{name}", get_resource_class)
    router.add("PUT", "/resource_classes/{name}", update_resource_class)
    router.add("DELETE", "/resource_classes/{name}", delete_resource_class)
