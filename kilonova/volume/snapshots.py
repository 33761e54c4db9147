"""``/v3/{project_id}/snapshots``: a point-in-time copy of a volume (create, list, show, update, delete)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.volume import policy, query as Q, repo
from kilonova.volume.schemas import metadata as metadata_schemas, snapshots as schemas
from kilonova.volume.validation import is_true, validate
from kilonova.volume.errors import bad_request
from kilonova.volume.lookup import context, service
from kilonova.volume.metadata_routes import MetadataOf
from kilonova.volume.paging import page
from kilonova.volume.versions import at_least

DELETABLE = ("available", "error")
IN_USE_WITHOUT_FORCE = (3, 66)


def view(request: Request, snapshot: dict[str, Any]) -> dict[str, Any]:
    shown = {"id": snapshot["id"], "name": snapshot["name"], "description": snapshot["description"],
            "volume_id": snapshot["volume_id"], "size": snapshot["size"], "status": snapshot["status"],
            "created_at": snapshot["created_at"], "updated_at": snapshot["updated_at"], "metadata": snapshot["metadata"],
            "os-extended-snapshot-attributes:project_id": snapshot["project_id"],
            "os-extended-snapshot-attributes:progress": "100%" if snapshot["status"] == "available" else
            service(request).progress.get(snapshot["id"], "0%")}
    if at_least(request, (3, 14)):
        shown["group_snapshot_id"] = None
    if at_least(request, (3, 41)):
        shown["user_id"] = snapshot["user_id"]
    if at_least(request, (3, 65)):
        shown["consumes_quota"] = True
    return shown


async def _visible(request: Request, ctx, snapshot_id: str) -> dict[str, Any]:
    snapshot = await service(request).db.read(repo.get_snapshot, snapshot_id)
    if not ctx.is_admin and snapshot["project_id"] != ctx.project_id:
        raise HTTPError(404, f"Snapshot {snapshot_id} could not be found.")
    return snapshot


async def create(request: Request, project_id: str):
    ctx = context(request, project_id)
    policy.check_write(ctx, "volume:create_snapshot")
    body = validate(request, await read_json(request), schemas.CREATE)["snapshot"]
    metadata = body.get("metadata") or {}
    volume_id = body["volume_id"]
    if not volume_id:
        raise bad_request("Invalid input received: 'volume_id' must be specified")
    force = is_true(body.get("force", False))
    if at_least(request, IN_USE_WITHOUT_FORCE):
        # 3.66: an in-use volume is snapshotted without asking; ``force`` may only still say true.
        if "force" in body and not force:
            raise bad_request("Invalid input received: The 'force' flag is not supported from microversion 3.66: "
                              "snapshots of in-use volumes are made without it (leave it out).")
        force = True
    volume = await service(request).db.read(repo.get_volume, volume_id)
    policy.check_visible(ctx, volume)
    values = {"project_id": volume["project_id"], "user_id": ctx.user_id, "volume_id": volume_id,
              "name": body.get("name", body.get("display_name")), "description": body.get("description")}
    svc = service(request)
    limits = await svc.quota_limits(volume["project_id"])
    allowed = ("available", "in-use") if force else ("available",)
    snapshot = await svc.db.write(repo.create_snapshot, values, limits, allowed, metadata)
    svc.spawn(svc.take_snapshot(snapshot["id"], volume_id))
    return json_response({"snapshot": view(request, snapshot)}, status=202)


async def _listed(request: Request, project_id: str):
    ctx = context(request, project_id)
    policy.check_read(ctx, "volume:get_all_snapshots")
    params = request.query_params
    scope: str | None = ctx.project_id
    if ctx.is_admin and Q.boolean(params.get("all_tenants", "false"), "all_tenants"):
        scope = params.get("project_id")
    wanted = Q.metadata_filter(params["metadata"]) if "metadata" in params and at_least(request, (3, 22)) else {}
    snapshots = [s for s in await service(request).db.read(repo.list_snapshots, scope)
                 if all(s[name] == params[name] for name in ("name", "status", "volume_id") if name in params)
                 and all(s["metadata"].get(k) == v for k, v in wanted.items())]
    chunk, links = page(request, snapshots, "snapshots")
    body: dict[str, Any] = {"snapshots": [view(request, s) for s in chunk]}
    if links:
        body["snapshots_links"] = links
    return json_response(body)


async def index(request: Request, project_id: str):
    return await _listed(request, project_id)


async def detail(request: Request, project_id: str):
    return await _listed(request, project_id)


async def show(request: Request, project_id: str, snapshot_id: str):
    ctx = context(request, project_id)
    policy.check_read(ctx, "volume:get_snapshot")
    return json_response({"snapshot": view(request, await _visible(request, ctx, snapshot_id))})


async def update(request: Request, project_id: str, snapshot_id: str):
    ctx = context(request, project_id)
    policy.check_write(ctx, "volume:update_snapshot")
    body = validate(request, await read_json(request), schemas.UPDATE)["snapshot"]
    values = {}
    for name, legacy in (("name", "display_name"), ("description", "display_description")):
        for key in (name, legacy):
            if key in body:
                values[name] = body[key]
    await _visible(request, ctx, snapshot_id)
    return json_response({"snapshot": view(request, await service(request).db.write(repo.update_snapshot, snapshot_id,
                                                                            values))})


async def delete(request: Request, project_id: str, snapshot_id: str):
    ctx = context(request, project_id)
    policy.check_write(ctx, "volume:delete_snapshot")
    snapshot = await _visible(request, ctx, snapshot_id)
    svc = service(request)
    if await svc.db.write(repo.set_snapshot_status, snapshot_id, "deleting", DELETABLE) is None:
        raise HTTPError(400, f"Invalid snapshot: Snapshot status must be available or error, but current status "
                             f"is: {snapshot['status']}.")
    svc.spawn(svc.remove_snapshot(snapshot_id))
    return empty_response(202)


METADATA = MetadataOf("snapshot", _visible, repo.set_snapshot_metadata, repo.delete_snapshot_metadata,
                      metadata_schemas.SNAPSHOT_ALL, metadata_schemas.SNAPSHOT_ONE)


def register(router: Router) -> None:
    prefix = "/v3/{project_id}/snapshots"
    router.add("POST", prefix, create)
    router.add("GET", prefix, index)
    router.add("GET", f"{prefix}/detail", detail)
    router.add("GET", f"{prefix}/{{snapshot_id}}", show)
    router.add("PUT", f"{prefix}/{{snapshot_id}}", update)
    router.add("DELETE", f"{prefix}/{{snapshot_id}}", delete)
    METADATA.register(router, prefix)
