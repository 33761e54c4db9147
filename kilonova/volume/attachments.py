"""``/v3/{project_id}/attachments`` (3.27+): reserve a volume for a server, connect it with a host's
connector, complete (3.44+), delete, list and show, as Nova drives Cinder's new attach flow."""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.volume import attach_repo, policy, repo, validation as V
from kilonova.volume.errors import bad_request
from kilonova.volume.lookup import context, owner_scope, service
from kilonova.volume.paging import page
from kilonova.volume.versions import at_least, require

NEW_ATTACH = (3, 27)
COMPLETION = (3, 44)
MODE_ARGUMENT = (3, 54)
SORT_KEYS = ("id", "created_at", "updated_at")
FILTERS = {"volume_id": "volume_id", "status": "attach_status", "attach_status": "attach_status",
           "instance_id": "instance_uuid"}


def summary(attachment: dict[str, Any]) -> dict[str, Any]:
    return {"id": attachment["id"], "status": attachment["attach_status"], "instance": attachment["instance_uuid"],
            "volume_id": attachment["volume_id"]}


def detail(attachment: dict[str, Any]) -> dict[str, Any]:
    return {**summary(attachment), "attached_at": attachment["attach_time"] or "",
            "detached_at": attachment["detach_time"] or "", "attach_mode": attachment["attach_mode"],
            "connection_info": attachment["connection_info"]}


def _uuid(value: Any, name: str) -> str:
    if value is None:
        raise bad_request(f"Invalid input for field/attribute attachment. '{name}' is a required property")
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}. '{value}' is not a "
                          f"'uuid'") from None
    if not isinstance(value, str):
        raise bad_request(f"Invalid input for field/attribute {name}. Value: {value}. {value!r} is not of type "
                          f"'string'")
    return value


def _connector(value: Any, required: bool) -> dict[str, Any] | None:
    """The host's connector; at create, none (or an empty one) only reserves the volume."""
    if value in (None, {}) and not required:
        return None
    if not isinstance(value, dict) or (required and not value):
        raise bad_request(f"Invalid input for field/attribute connector. Value: {value}. {value!r} is not of type "
                          f"'object'")
    return value


async def create(request: Request, project_id: str):
    ctx = context(request, project_id)
    require(request, NEW_ATTACH)
    policy.check_write(ctx, "volume:attachment_create")
    body = V.body_part(await read_json(request), "attachment")
    volume_id = _uuid(body.get("volume_uuid"), "volume_uuid")
    instance_uuid = _uuid(body.get("instance_uuid"), "instance_uuid")
    connector = _connector(body.get("connector"), required=False)
    mode = "null"
    if at_least(request, MODE_ARGUMENT) and body.get("mode") is not None:
        if body["mode"] not in ("rw", "ro"):
            raise bad_request(f"Invalid input for field/attribute mode. Value: {body['mode']}. "
                              f"'{body['mode']}' is not one of ['rw', 'ro']")
        mode = body["mode"]
    svc = service(request)
    volume = await svc.db.read(repo.get_volume, volume_id)
    policy.check_visible(ctx, volume)
    attachment = await svc.db.write(attach_repo.reserve, volume_id, instance_uuid, mode)
    if connector is None:
        return json_response({"attachment": {**detail(attachment), "connection_info": {}}})
    attachment = await svc.connect_attachment(attachment, connector)
    return json_response({"attachment": detail(attachment)})


async def update(request: Request, project_id: str, attachment_id: str):
    ctx = context(request, project_id)
    require(request, NEW_ATTACH)
    policy.check_write(ctx, "volume:attachment_update")
    body = V.body_part(await read_json(request), "attachment")
    if "connector" not in body:
        raise bad_request("Invalid input for field/attribute attachment. 'connector' is a required property")
    connector = _connector(body["connector"], required=True)
    svc = service(request)
    attachment = await svc.db.write(attach_repo.check_connectable, attachment_id, owner_scope(ctx))
    return json_response({"attachment": detail(await svc.connect_attachment(attachment, connector))})


async def action(request: Request, project_id: str, attachment_id: str):
    ctx = context(request, project_id)
    require(request, COMPLETION)
    body = await read_json(request)
    if not isinstance(body, dict) or "os-complete" not in body:
        raise bad_request("There is no such action: " + (next(iter(body), "") if isinstance(body, dict) and body
                                                          else ""))
    policy.check_write(ctx, "volume:attachment_complete")
    await service(request).db.write(attach_repo.complete, attachment_id, owner_scope(ctx))
    return empty_response(204)


async def delete(request: Request, project_id: str, attachment_id: str):
    ctx = context(request, project_id)
    require(request, NEW_ATTACH)
    policy.check_write(ctx, "volume:attachment_delete")
    left = await service(request).detach_attachment(attachment_id, owner_scope(ctx))
    return json_response({"attachments": [summary(a) for a in left]})


async def _listed(request: Request, project_id: str) -> list[dict[str, Any]]:
    ctx = context(request, project_id)
    require(request, NEW_ATTACH)
    policy.check_read(ctx, "volume:attachment_get_all")
    params = request.query_params
    scope = ctx.project_id
    if ctx.is_admin and "all_tenants" in params:
        scope = params.get("project_id")
    attachments = await service(request).db.read(attach_repo.list_attachments, scope)
    wanted = {FILTERS[name]: value for name, value in params.items() if name in FILTERS}
    attachments = [a for a in attachments if all(a[key] == value for key, value in wanted.items())]
    chunk, _links = page(request, attachments, "attachments", SORT_KEYS)
    return chunk


async def index(request: Request, project_id: str):
    return json_response({"attachments": [summary(a) for a in await _listed(request, project_id)]})


async def detail_list(request: Request, project_id: str):
    return json_response({"attachments": [detail(a) for a in await _listed(request, project_id)]})


async def show(request: Request, project_id: str, attachment_id: str):
    ctx = context(request, project_id)
    require(request, NEW_ATTACH)
    policy.check_read(ctx, "volume:attachment_get")
    attachment = await service(request).db.read(attach_repo.get_attachment, attachment_id, owner_scope(ctx))
    return json_response({"attachment": detail(attachment)})


def register(router: Router) -> None:
    prefix = "/v3/{project_id}/attachments"
    router.add("POST", prefix, create)
    router.add("GET", prefix, index)
    router.add("GET", f"{prefix}/detail", detail_list)
    router.add("GET", f"{prefix}/{{attachment_id}}", show)
    router.add("PUT", f"{prefix}/{{attachment_id}}", update)
    router.add("DELETE", f"{prefix}/{{attachment_id}}", delete)
    router.add("POST", f"{prefix}/{{attachment_id}}/action", action)
