"""``os-quota-sets`` (with ``usage``) and ``limits``: Cinder's per-project limits and what a project uses."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.volume import policy, query as Q, repo
from kilonova.volume.schemas import quotas as schemas
from kilonova.volume.validation import validate
from kilonova.volume.errors import policy_denied
from kilonova.volume.lookup import context, service


def _show_check(request: Request, project_id: str, target: str):
    ctx = context(request, project_id)
    if not ctx.is_admin and target != ctx.project_id:
        raise policy_denied("volume_extension:quotas:show")
    return ctx


async def show(request: Request, project_id: str, target: str):
    _show_check(request, project_id, target)
    svc = service(request)
    limits = await svc.quota_limits(target)
    body: dict[str, Any] = {"id": target}
    if Q.boolean(request.query_params.get("usage", "false"), "usage"):
        used = await svc.db.read(repo.usage, target)
        body.update({name: {"limit": limit, "in_use": used.get(name, 0), "reserved": 0}
                     for name, limit in limits.items()})
    else:
        body.update(limits)
    return json_response({"quota_set": body})


async def defaults(request: Request, project_id: str, target: str):
    _show_check(request, project_id, target)
    return json_response({"quota_set": {"id": target, **service(request).default_quotas}})


async def update(request: Request, project_id: str, target: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:quotas:update")
    body = validate(request, await read_json(request), schemas.UPDATE)["quota_set"]
    # the schema's quota_set format has checked the keys and that each limit is a whole number from -1
    values = {name: int(str(value)) for name, value in body.items() if name not in schemas.NOT_QUOTAS}
    await service(request).db.write(repo.set_quotas, target, values)
    return json_response({"quota_set": await service(request).quota_limits(target)})


async def delete(request: Request, project_id: str, target: str):
    ctx = context(request, project_id)
    policy.check_admin(ctx, "volume_extension:quotas:delete")
    await service(request).db.write(repo.reset_quotas, target)
    return empty_response(200)


async def limits(request: Request, project_id: str):
    ctx = context(request, project_id)
    svc = service(request)
    quota = await svc.quota_limits(ctx.project_id or project_id)
    used = await svc.db.read(repo.usage, ctx.project_id or project_id)
    absolute = {"maxTotalVolumes": quota["volumes"], "maxTotalSnapshots": quota["snapshots"],
                "maxTotalVolumeGigabytes": quota["gigabytes"], "maxTotalBackups": quota["backups"],
                "maxTotalBackupGigabytes": quota["backup_gigabytes"], "totalVolumesUsed": used["volumes"],
                "totalGigabytesUsed": used["gigabytes"], "totalSnapshotsUsed": used["snapshots"],
                "totalBackupsUsed": used["backups"], "totalBackupGigabytesUsed": used["backup_gigabytes"]}
    return json_response({"limits": {"rate": [], "absolute": absolute}})


def register(router: Router) -> None:
    prefix = "/v3/{project_id}/os-quota-sets/{target}"
    router.add("GET", prefix, show)
    router.add("PUT", prefix, update)
    router.add("DELETE", prefix, delete)
    router.add("GET", f"{prefix}/defaults", defaults)
    router.add("GET", "/v3/{project_id}/limits", limits)
