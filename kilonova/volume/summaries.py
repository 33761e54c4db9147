"""``GET /v3/{project_id}/volumes/summary`` (3.12; ``metadata`` from 3.36) and ``GET resource_filters``
(3.33): what a project's volumes add up to, and which list filters each resource takes."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import Router, json_response
from kilonova.volume import policy, query as Q, repo
from kilonova.volume.lookup import context, service
from kilonova.volume.versions import at_least, require

SUMMARY, SUMMARY_METADATA, RESOURCE_FILTERS = (3, 12), (3, 36), (3, 33)
# The filters each list of this service honours (Cinder's resource_filters.json, as far as it applies).
FILTERS = {"volume": ["name", "status", "metadata", "bootable", "availability_zone", "created_at", "updated_at"],
           "snapshot": ["name", "status", "volume_id"],
           "attachment": ["volume_id", "status", "instance_id", "attach_status"],
           "message": ["resource_uuid", "resource_type", "event_id", "message_level"]}


async def summary(request: Request, project_id: str):
    ctx = context(request, project_id)
    require(request, SUMMARY)
    policy.check_read(ctx, "volume:get_volume_summary")
    scope = ctx.project_id
    if ctx.is_admin and Q.boolean(request.query_params.get("all_tenants", "false"), "all_tenants"):
        scope = None
    volumes = await service(request).db.read(repo.list_volumes, scope)
    body = {"total_size": sum(v["size"] for v in volumes), "total_count": len(volumes)}
    if at_least(request, SUMMARY_METADATA):
        metadata: dict[str, list[str]] = {}
        for volume in volumes:
            for key, value in volume["metadata"].items():
                if value not in metadata.setdefault(key, []):
                    metadata[key].append(value)
        body["metadata"] = metadata
    return json_response({"volume-summary": body})


async def resource_filters(request: Request, project_id: str):
    context(request, project_id)
    require(request, RESOURCE_FILTERS)
    wanted = request.query_params.get("resource")
    return json_response({"resource_filters": [{"resource": name, "filters": filters}
                                               for name, filters in FILTERS.items()
                                               if wanted in (None, name)]})


def register(router: Router) -> None:
    router.add("GET", "/v3/{project_id}/volumes/summary", summary)
    router.add("GET", "/v3/{project_id}/resource_filters", resource_filters)
