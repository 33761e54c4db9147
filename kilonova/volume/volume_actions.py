"""``POST /v3/{project_id}/volumes/{id}/action``: one handler per action, as clients send them —
``os-extend`` (in-use from 3.42), ``os-extend_volume_completion`` (3.71, the compute service's), the admin
actions ``os-force_delete`` and ``os-reset_status``, ``os-set_bootable``, ``os-update_readonly_flag``,
``os-set/unset/show_image_metadata``, ``os-volume_upload_image``, ``os-retype``, and the attach calls before the attachments API (``os-reserve``,
``os-unreserve``, ``os-initialize_connection``, ``os-attach``, ``os-begin_detaching``, ``os-roll_detaching``,
``os-terminate_connection``, ``os-detach``)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.volume import attach_repo, online_extend, policy, repo, uploads
from kilonova.volume.schemas import volume_actions as schemas
from kilonova.volume.validation import is_true, validate
from kilonova.volume.errors import bad_request
from kilonova.volume.lookup import context, service
from kilonova.volume.versions import at_least
from kilonova.volume.volumes import begin_delete

EXTEND_IN_USE, EXTEND_COMPLETION = (3, 42), (3, 71)


async def extend(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume:extend")
    new_size = int(args["new_size"])
    await service(request).extend(volume, new_size, in_use=at_least(request, EXTEND_IN_USE))
    return empty_response(202)


async def extend_completion(request: Request, ctx, volume: dict, args: Any):
    """3.71: the compute service's answer to an extend of an attached qcow2 volume (online_extend.py)."""
    if not at_least(request, EXTEND_COMPLETION):
        raise bad_request("There is no such action: os-extend_volume_completion")
    policy.check_admin(ctx, "volume:extend_volume_completion")
    await online_extend.complete(service(request), volume, is_true(args["error"]))
    return empty_response(202)


async def force_delete(request: Request, ctx, volume: dict, _args_):
    policy.check_admin(ctx, "volume_extension:volume_admin_actions:force_delete")
    await begin_delete(request, volume, force=True, cascade=False)
    return empty_response(202)


async def reset_status(request: Request, ctx, volume: dict, args: Any):
    policy.check_admin(ctx, "volume_extension:volume_admin_actions:reset_status")
    if args.get("migration_status"):
        raise bad_request("Volume migration is not supported: there is one backend.")
    values = {key: args[key].lower() for key in ("status", "attach_status") if args.get(key)}
    await service(request).db.write(attach_repo.reset_status, volume["id"], values)
    return empty_response(202)


async def set_bootable(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:set_bootable")
    await service(request).db.write(repo.update_volume, volume["id"], {"bootable": is_true(args["bootable"])})
    return empty_response(200)


async def update_readonly_flag(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume:update_readonly_flag")
    await service(request).db.write(repo.update_volume, volume["id"], {"readonly": is_true(args["readonly"])})
    return empty_response(202)


def _state_action(change, rule: str):
    """An action that only moves the volume's state (the legacy reserve/unreserve/detaching calls): 202."""
    async def handler(request: Request, ctx, volume: dict, _args_):
        policy.check_write(ctx, f"volume_extension:volume_actions:{rule}")
        await service(request).db.write(change, volume["id"])
        return empty_response(202)
    return handler


async def initialize_connection(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:initialize_connection")
    connector = args["connector"]
    if not isinstance(connector, dict) or not connector:   # the schema lets a string through; nothing reads it
        raise bad_request("Must specify 'connector'")
    if "error" in volume["status"]:
        raise attach_repo.invalid_volume(f"Volume {volume['id']} is in an error state ({volume['status']}).")
    return json_response({"connection_info": await service(request).connection(volume, None, connector)})


async def terminate_connection(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:terminate_connection")
    await service(request).release_export(volume["id"])   # a local connection has nothing to tear down
    return empty_response(202)


async def attach(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:attach")
    await service(request).db.write(attach_repo.legacy_attach, volume["id"], args.get("instance_uuid"),
                                    args.get("host_name"), args["mountpoint"], args.get("mode") or "rw")
    return empty_response(202)


async def detach(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:detach")
    await service(request).db.write(attach_repo.legacy_detach, volume["id"], (args or {}).get("attachment_id"))
    return empty_response(202)


async def set_image_metadata(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_image_metadata:set")
    shown = await service(request).db.write(repo.set_image_metadata, volume["id"], args["metadata"])
    return json_response({"metadata": shown})


async def unset_image_metadata(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_image_metadata:remove")
    await service(request).db.write(repo.delete_image_metadata, volume["id"], args["key"])
    return empty_response(200)


async def show_image_metadata(request: Request, ctx, volume: dict, _args_):
    policy.check_read(ctx, "volume_extension:volume_image_metadata:show")
    return json_response({"metadata": volume["image_metadata"]})


async def upload_image(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:upload_image")
    force = is_true(args.get("force", False))
    if volume["status"] != "available" and not (force and volume["status"] == "in-use"):
        raise attach_repo.invalid_volume(f"Volume {volume['id']} status must be available or in-use (with force), "
                                         f"but current status is: {volume['status']}.")
    values = uploads.image_values(volume, args)
    svc = service(request)
    image = await svc.images.create_image(ctx.token, values)
    if await svc.db.write(repo.set_status, volume["id"], "uploading", ("available", "in-use")) is None:
        await svc.images.delete_image(ctx.token, image["id"])
        raise attach_repo.invalid_volume(f"Volume {volume['id']} changed status while its image was made.")
    svc.spawn(uploads.upload(svc, volume, ctx.token, image))
    return json_response(uploads.answer(volume, image), status=202)


async def retype(request: Request, ctx, volume: dict, args: Any):
    """``os-retype`` (``openstack volume set --type``): one backend, so never a migration; the type (and
    what it says of multiattach) changes in place, as Cinder does when the backend stays the same."""
    policy.check_write(ctx, "volume:retype")
    if not args["new_type"]:
        raise bad_request("New volume type must be specified.")
    await service(request).db.write(repo.retype, volume["id"], args["new_type"])
    return empty_response(202)


# Each action's schema (the whole body), as upstream's; the others take anything.
SCHEMAS = {"os-extend": schemas.EXTEND, "os-extend_volume_completion": schemas.EXTEND_COMPLETION,
           "os-attach": schemas.ATTACH, "os-detach": schemas.DETACH,
           "os-retype": schemas.RETYPE, "os-set_bootable": schemas.SET_BOOTABLE,
           "os-update_readonly_flag": schemas.READONLY, "os-volume_upload_image": schemas.UPLOAD_IMAGE_BY_VERSION,
           "os-initialize_connection": schemas.INITIALIZE_CONNECTION,
           "os-terminate_connection": schemas.TERMINATE_CONNECTION, "os-reset_status": schemas.RESET_STATUS,
           "os-set_image_metadata": schemas.SET_IMAGE_METADATA,
           "os-unset_image_metadata": schemas.UNSET_IMAGE_METADATA,
           "os-show_image_metadata": schemas.SHOW_IMAGE_METADATA}
ACTIONS = {"os-extend": extend, "os-extend_volume_completion": extend_completion, "os-force_delete": force_delete,
           "os-reset_status": reset_status,
           "os-set_bootable": set_bootable, "os-update_readonly_flag": update_readonly_flag,
           "os-reserve": _state_action(attach_repo.legacy_reserve, "reserve"),
           "os-unreserve": _state_action(attach_repo.legacy_unreserve, "unreserve"),
           "os-begin_detaching": _state_action(attach_repo.begin_detaching, "begin_detaching"),
           "os-roll_detaching": _state_action(attach_repo.roll_detaching, "roll_detaching"),
           "os-initialize_connection": initialize_connection,
           "os-terminate_connection": terminate_connection, "os-attach": attach, "os-detach": detach,
           "os-set_image_metadata": set_image_metadata, "os-unset_image_metadata": unset_image_metadata,
           "os-show_image_metadata": show_image_metadata, "os-volume_upload_image": upload_image,
           "os-retype": retype}


async def action(request: Request, project_id: str, volume_id: str):
    ctx = context(request, project_id)
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise bad_request("Malformed request body")
    (name, args), = body.items()
    handler = ACTIONS.get(name)
    if handler is None:
        raise bad_request(f"There is no such action: {name}")
    if name in SCHEMAS:
        validate(request, body, SCHEMAS[name])
    volume = await service(request).db.read(repo.get_volume, volume_id)
    policy.check_visible(ctx, volume)
    return await handler(request, ctx, volume, args)


def register(router: Router) -> None:
    router.add("POST", "/v3/{project_id}/volumes/{volume_id}/action", action)
