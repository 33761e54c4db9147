"""``/v3/{project_id}/attachments`` (3.27+): reserve a volume for a server, connect it with a host's
connector, complete (3.44+), delete, list and show, as Nova drives Cinder's new attach flow."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.volume import attach_repo, policy, repo
from kilonova.volume.errors import bad_request
from kilonova.volume.schemas import attachments as schemas
from kilonova.volume.validation import validate
from kilonova.volume.lookup import context, owner_scope, service
from kilonova.volume.paging import page
from kilonova.volume.versions import require

NEW_ATTACH = (3, 27)
COMPLETION = (3, 44)
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


async def create(request: Request, project_id: str):
    ctx = context(request, project_id)
    require(request, NEW_ATTACH)
    policy.check_write(ctx, "volume:attachment_create")
    body = validate(request, await read_json(request), schemas.CREATE_BY_VERSION)["attachment"]
    volume_id, instance_uuid = body["volume_uuid"], body.get("instance_uuid")
    connector = body.get("connector") or None     # none (or an empty one): only a reservation
    # "null" when not given: the connector's own mode, if any, decides (as upstream)
    mode = body.get("mode", "null")
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
    connector = validate(request, await read_json(request), schemas.UPDATE)["attachment"]["connector"]
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
