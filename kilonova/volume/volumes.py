"""``/v3/{project_id}/volumes``: create, list, show, update, delete and metadata (actions: volume_actions)."""
from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, empty_response, json_response, read_json
from kilonova.volume import policy, query as Q, repo
from kilonova.volume.schemas import metadata as metadata_schemas, volumes as schemas
from kilonova.volume.validation import is_true, stripped, validate
from kilonova.volume.errors import bad_request
from kilonova.volume.images import check_fits, volume_image_metadata
from kilonova.volume.lookup import context, service
from kilonova.volume.metadata_routes import MetadataOf
from kilonova.volume.paging import page
from kilonova.volume.versions import at_least

# Creating from these is issue 14's next step; until then a clear 400 rather than an empty volume.
NOT_YET = {"backup_id": "from a backup", "source_replica": "from a replica", "consistencygroup_id": "in a group",
           "group_id": "in a group", "scheduler_hints": "with scheduler hints"}
SERVICE_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://kilonova/volume-service/file"))
FORCE_DELETE, LIKE_FILTERS, WITH_COUNT, TIME_FILTERS = (3, 23), (3, 34), (3, 45), (3, 60)
DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
AVAILABILITY_ZONE = "nova"


def _links(request: Request, volume: dict) -> list[dict]:
    base = str(request.base_url).rstrip("/")
    return [{"rel": "self", "href": f"{base}/v3/{volume['project_id']}/volumes/{volume['id']}"},
            {"rel": "bookmark", "href": f"{base}/{volume['project_id']}/volumes/{volume['id']}"}]


def attachments_view(volume: dict) -> list[dict[str, Any]]:
    """The volume's completed attachments, as Cinder lists them in the volume."""
    return [{"id": volume["id"], "attachment_id": a["id"], "volume_id": volume["id"],
             "server_id": a["instance_uuid"], "host_name": a["attached_host"], "device": a["mountpoint"],
             "attached_at": a["attach_time"]}
            for a in volume["attachments"] if a["attach_status"] == "attached"]


def _metadata(volume: dict) -> dict[str, str]:
    """The user's metadata, and while the compute service grows the volume the size it is to have (Cinder's
    admin metadata key ``extend_new_size``, which shadows a user's key of that name)."""
    if volume.get("extend_new_size") is None:
        return volume["metadata"]
    return {**volume["metadata"], "extend_new_size": str(volume["extend_new_size"])}


def detail_view(request: Request, volume: dict, admin: bool) -> dict[str, Any]:
    view = {"id": volume["id"], "name": volume["name"], "description": volume["description"],
            "size": volume["size"], "status": volume["status"], "availability_zone": volume["availability_zone"],
            "created_at": volume["created_at"], "updated_at": volume["updated_at"],
            "volume_type": volume["volume_type"], "snapshot_id": volume["snapshot_id"],
            "source_volid": volume["source_volid"],
            "metadata": _metadata(volume), "bootable": "true" if volume["bootable"] else "false",
            "encrypted": False, "multiattach": volume["multiattach"], "replication_status": None,
            "consistencygroup_id": None, "user_id": volume["user_id"], "attachments": attachments_view(volume),
            "links": _links(request, volume),
            "os-vol-tenant-attr:tenant_id": volume["project_id"]}
    if admin:
        host = None if volume["status"] == "creating" else "kilonova@file#file"
        view.update({"migration_status": None, "os-vol-host-attr:host": host,
                     "os-vol-mig-status-attr:migstat": None, "os-vol-mig-status-attr:name_id": None})
    if volume["image_metadata"]:
        view["volume_image_metadata"] = volume["image_metadata"]
    _microversion_fields(request, view, volume, admin)
    return view


def _microversion_fields(request: Request, view: dict[str, Any], volume: dict, admin: bool) -> None:
    """What later microversions add to a volume's detail."""
    if at_least(request, (3, 13)):
        view["group_id"] = None
    if admin and at_least(request, (3, 21)):
        view["provider_id"] = None
    if at_least(request, (3, 48)):
        # Each attachment has its own connection (no target shared between volumes): nothing to lock.
        view["shared_targets"] = False
        view["service_uuid"] = SERVICE_UUID
    if admin and at_least(request, (3, 61)):
        view["cluster_name"] = None
    if at_least(request, (3, 63)):
        view["volume_type_id"] = volume["volume_type_id"]
    if at_least(request, (3, 65)):
        view["consumes_quota"] = True


def summary_view(request: Request, volume: dict) -> dict[str, Any]:
    return {"id": volume["id"], "name": volume["name"], "links": _links(request, volume)}


async def _visible(request: Request, ctx, volume_id: str) -> dict[str, Any]:
    volume = await service(request).db.read(repo.get_volume, volume_id)
    policy.check_visible(ctx, volume)
    return volume


def _create_values(ctx, body: dict) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """The new volume's fields from a schema-checked ``volume``; 400 for what the schema cannot say."""
    for field, what in NOT_YET.items():
        if body.get(field) not in (None, {}, ""):
            raise bad_request(f"Creating a volume {what} ('{field}') is not supported yet.")
    snapshot_id, source_volid = body.get("snapshot_id"), body.get("source_volid")
    image_ref = body.get("imageRef", body.get("image_id"))
    if sum(bool(x) for x in (snapshot_id, source_volid, image_ref)) > 1:
        raise bad_request("Invalid input received: a volume is made from a snapshot, a volume or an image, only "
                          "one of them")
    if body.get("size") is None and not (snapshot_id or source_volid):
        raise bad_request("Invalid input received: size is required when creating a new volume")
    zone = body.get("availability_zone") or AVAILABILITY_ZONE
    if zone != AVAILABILITY_ZONE:
        raise bad_request(f"Invalid input received: Availability zone '{zone}' is invalid.")
    values = {"project_id": ctx.project_id, "user_id": ctx.user_id,
              "size": None if body.get("size") is None else int(body["size"]),
              "snapshot_id": snapshot_id or None, "source_volid": source_volid or None, "image_ref": image_ref,
              "name": stripped(body.get("name", body.get("display_name"))),
              "description": stripped(body.get("description", body.get("display_description"))),
              "availability_zone": zone,
              # Deprecated in Cinder in favour of a multiattach volume type, but still honoured.
              "multiattach": is_true(body.get("multiattach"))}
    return values, body.get("metadata") or {}, body.get("volume_type")


async def create(request: Request, project_id: str):
    ctx = context(request, project_id)
    policy.check_write(ctx, "volume:create")
    body = validate(request, await read_json(request), schemas.CREATE_BY_VERSION)
    values, metadata, vtype = _create_values(ctx, body["volume"])
    svc = service(request)
    image_metadata = None
    image_ref = values.pop("image_ref")
    if image_ref:
        image = await svc.images.lookup(ctx.token, image_ref)
        check_fits(image, values["size"])
        image_metadata = volume_image_metadata(image)
    limits = await svc.quota_limits(ctx.project_id)
    volume = await svc.db.write(repo.create_volume, values, metadata, vtype, limits, ctx.is_admin, image_metadata)
    svc.spawn(svc.allocate(volume))
    return json_response({"volume": detail_view(request, volume, ctx.is_admin)}, status=202)


def _filters(request: Request, ctx) -> tuple[str | None, dict[str, Any]]:
    """Whose volumes (None: every project's) and the filters a volume must match."""
    params = request.query_params
    scope: str | None = ctx.project_id
    if ctx.is_admin and Q.boolean(params.get("all_tenants", "false"), "all_tenants"):
        scope = params.get("project_id")
    filters: dict[str, Any] = {}
    for name in ("name", "status", "availability_zone"):
        if name in params:
            filters[name] = params[name]
        if f"{name}~" in params and at_least(request, LIKE_FILTERS):
            filters[f"{name}~"] = params[f"{name}~"]
    if "bootable" in params:
        filters["bootable"] = Q.boolean(params["bootable"], "bootable")
    if "metadata" in params:
        filters["metadata"] = Q.metadata_filter(params["metadata"])
    if at_least(request, TIME_FILTERS):
        for name in ("created_at", "updated_at"):
            if name in params:
                filters[name] = Q.time_comparison(params[name], name)
    return scope, filters


def _matches(volume: dict, filters: dict[str, Any]) -> bool:
    for name, wanted in filters.items():
        if name == "metadata":
            if any(volume["metadata"].get(k) != v for k, v in wanted.items()):
                return False
        elif name.endswith("~"):
            if wanted.lower() not in (volume[name[:-1]] or "").lower():
                return False
        elif name in ("created_at", "updated_at"):
            if not wanted(volume[name]):
                return False
        elif volume[name] != wanted:
            return False
    return True


async def _listed(request: Request, project_id: str, view) -> Any:
    ctx = context(request, project_id)
    policy.check_read(ctx, "volume:get_all")
    scope, filters = _filters(request, ctx)
    volumes = [v for v in await service(request).db.read(repo.list_volumes, scope) if _matches(v, filters)]
    chunk, links = page(request, volumes, "volumes")
    body: dict[str, Any] = {"volumes": [view(request, v, ctx.is_admin) for v in chunk]}
    if links:
        body["volumes_links"] = links
    if at_least(request, WITH_COUNT) and Q.boolean(request.query_params.get("with_count", "false"), "with_count"):
        body["count"] = len(volumes)
    return json_response(body)


async def index(request: Request, project_id: str):
    return await _listed(request, project_id, lambda request, volume, _admin: summary_view(request, volume))


async def detail(request: Request, project_id: str):
    return await _listed(request, project_id, detail_view)


async def show(request: Request, project_id: str, volume_id: str):
    ctx = context(request, project_id)
    policy.check_read(ctx, "volume:get")
    return json_response({"volume": detail_view(request, await _visible(request, ctx, volume_id), ctx.is_admin)})


async def update(request: Request, project_id: str, volume_id: str):
    ctx = context(request, project_id)
    policy.check_write(ctx, "volume:update")
    body = validate(request, await read_json(request), schemas.UPDATE_BY_VERSION)["volume"]
    values: dict[str, Any] = {}
    for name, legacy in (("name", "display_name"), ("description", "display_description")):
        for key in (name, legacy):
            if key in body:
                values[name] = stripped(body[key])
    metadata = body.get("metadata")
    await _visible(request, ctx, volume_id)
    db = service(request).db
    if metadata is not None:
        await db.write(repo.set_metadata, volume_id, metadata, True)
    volume = await db.write(repo.update_volume, volume_id, values)
    return json_response({"volume": detail_view(request, volume, ctx.is_admin)})


async def delete(request: Request, project_id: str, volume_id: str):
    ctx = context(request, project_id)
    policy.check_write(ctx, "volume:delete")
    params = request.query_params
    cascade = Q.boolean(params.get("cascade", "false"), "cascade")
    force = at_least(request, FORCE_DELETE) and Q.boolean(params.get("force", "false"), "force")
    if force:
        policy.check_admin(ctx, "volume:force_delete")
    await begin_delete(request, await _visible(request, ctx, volume_id), force, cascade)
    return empty_response(202)


async def begin_delete(request: Request, volume: dict, force: bool, cascade: bool) -> None:
    """Shared by DELETE and ``os-force_delete``: the volume ``deleting`` and its file removed after."""
    svc = service(request)
    snapshot_ids = await svc.db.write(repo.begin_delete, volume["id"], None if force else DELETABLE, cascade)
    if snapshot_ids is None:
        raise HTTPError(400, f"Invalid volume: Volume status must be available or error or error_restoring or "
                             f"error_extending or error_managing and must not be migrating, attached, belong to "
                             f"a group, have snapshots, awaiting a transfer, or be disassociated from snapshots "
                             f"after volume transfer. (current status: {volume['status']})")
    svc.spawn(svc.remove(volume["id"], snapshot_ids))


METADATA = MetadataOf("volume", _visible, repo.set_metadata, repo.delete_metadata, metadata_schemas.VOLUME_ALL,
                      metadata_schemas.VOLUME_ONE)


def register(router: Router) -> None:
    prefix = "/v3/{project_id}/volumes"
    router.add("POST", prefix, create)
    router.add("GET", prefix, index)
    router.add("GET", f"{prefix}/detail", detail)
    router.add("GET", f"{prefix}/{{volume_id}}", show)
    router.add("PUT", f"{prefix}/{{volume_id}}", update)
    router.add("DELETE", f"{prefix}/{{volume_id}}", delete)
    METADATA.register(router, prefix)
