"""``POST /v3/{project_id}/volumes/{id}/action``: one handler per action, as clients send them —
``os-extend`` (in-use from 3.42), the admin actions ``os-force_delete`` and ``os-reset_status``,
``os-set_bootable``, ``os-update_readonly_flag``, ``os-set/unset/show_image_metadata``,
``os-volume_upload_image``, ``os-retype``, and the attach calls before the attachments API (``os-reserve``,
``os-unreserve``, ``os-initialize_connection``, ``os-attach``, ``os-begin_detaching``, ``os-roll_detaching``,
``os-terminate_connection``, ``os-detach``)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kilonova.common.http import Router, empty_response, json_response, read_json
from kilonova.volume import attach_repo, policy, repo, uploads, validation as V
from kilonova.volume.errors import bad_request
from kilonova.volume.lookup import context, service
from kilonova.volume.versions import at_least
from kilonova.volume.volumes import begin_delete

UPLOAD_VISIBILITY, EXTEND_IN_USE = (3, 1), (3, 42)
RESET_STATUSES = ("creating", "available", "deleting", "error", "error_deleting", "error_managing", "managing",
                  "attaching", "in-use", "detaching", "maintenance", "reserved", "error_extending")


def _args(body: Any, name: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"Missing required element '{name}' in request body.")
    return body


async def extend(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume:extend")
    args = _args(args, "os-extend")
    if "new_size" not in args:
        raise bad_request("Missing required element 'os-extend' in request body.")
    new_size = V.size(args["new_size"], "new_size")
    await service(request).extend(volume, new_size, in_use=at_least(request, EXTEND_IN_USE))
    return empty_response(202)


async def force_delete(request: Request, ctx, volume: dict, _args_):
    policy.check_admin(ctx, "volume_extension:volume_admin_actions:force_delete")
    await begin_delete(request, volume, force=True, cascade=False)
    return empty_response(202)


async def reset_status(request: Request, ctx, volume: dict, args: Any):
    policy.check_admin(ctx, "volume_extension:volume_admin_actions:reset_status")
    args = _args(args, "os-reset_status")
    values = {}
    if args.get("status") is not None:
        if str(args["status"]).lower() not in RESET_STATUSES:
            raise bad_request("Must specify a valid status")
        values["status"] = str(args["status"]).lower()
    if args.get("attach_status") is not None:
        if args["attach_status"] not in ("attached", "detached"):
            raise bad_request("Must specify a valid attach status")
        values["attach_status"] = args["attach_status"]
    if args.get("migration_status") is not None:
        raise bad_request("Volume migration is not supported: there is one backend.")
    if not values:
        raise bad_request("Must specify 'status', 'attach_status' or 'migration_status' for update.")
    await service(request).db.write(attach_repo.reset_status, volume["id"], values)
    return empty_response(202)


async def set_bootable(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:set_bootable")
    args = _args(args, "os-set_bootable")
    if "bootable" not in args:
        raise bad_request("Must specify bootable in request.")
    bootable = V.boolean(args["bootable"], "bootable")
    await service(request).db.write(repo.update_volume, volume["id"], {"bootable": bootable})
    return empty_response(200)


async def update_readonly_flag(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume:update_readonly_flag")
    args = _args(args, "os-update_readonly_flag")
    if "readonly" not in args:
        raise bad_request("Must specify readonly in request.")
    readonly = V.boolean(args["readonly"], "readonly")
    await service(request).db.write(repo.update_volume, volume["id"], {"readonly": readonly})
    return empty_response(202)


def _state_action(change, rule: str):
    """An action that only moves the volume's state (the legacy reserve/unreserve/detaching calls): 202."""
    async def handler(request: Request, ctx, volume: dict, _args_):
        policy.check_write(ctx, f"volume_extension:volume_actions:{rule}")
        await service(request).db.write(change, volume["id"])
        return empty_response(202)
    return handler


def _connector(args: Any, name: str) -> dict[str, Any]:
    connector = _args(args, name).get("connector")
    if not isinstance(connector, dict) or not connector:
        raise bad_request("Must specify 'connector'")
    return connector


async def initialize_connection(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:initialize_connection")
    connector = _connector(args, "os-initialize_connection")
    if "error" in volume["status"]:
        raise attach_repo.invalid_volume(f"Volume {volume['id']} is in an error state ({volume['status']}).")
    return json_response({"connection_info": await service(request).connection(volume, None, connector)})


async def terminate_connection(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:terminate_connection")
    _connector(args, "os-terminate_connection")
    await service(request).release_export(volume["id"])   # a local connection has nothing to tear down
    return empty_response(202)


async def attach(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:attach")
    args = _args(args, "os-attach")
    instance_uuid, host_name = args.get("instance_uuid"), args.get("host_name")
    if not instance_uuid and not host_name:
        raise bad_request("Invalid request to attach volume to an invalid target")
    if "mountpoint" not in args:
        raise bad_request("Must specify 'mountpoint'")
    mode = args.get("mode") or "rw"
    if mode not in ("rw", "ro"):
        raise bad_request("Invalid request to attach volume with an invalid mode. Attaching mode should be 'rw' "
                          "or 'ro'")
    await service(request).db.write(attach_repo.legacy_attach, volume["id"],
                                    V.text(instance_uuid, "instance_uuid"), V.text(host_name, "host_name"),
                                    V.text(args["mountpoint"], "mountpoint"), mode)
    return empty_response(202)


async def detach(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:detach")
    attachment_id = V.text((args or {}).get("attachment_id") if isinstance(args, dict) else None,
                           "attachment_id")
    await service(request).db.write(attach_repo.legacy_detach, volume["id"], attachment_id)
    return empty_response(202)


async def set_image_metadata(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_image_metadata:set")
    metadata = V.metadata(_args(args, "os-set_image_metadata").get("metadata"))
    if not metadata:
        raise bad_request("Malformed request body. 'metadata' must be a non-empty dictionary.")
    shown = await service(request).db.write(repo.set_image_metadata, volume["id"], metadata)
    return json_response({"metadata": shown})


async def unset_image_metadata(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_image_metadata:remove")
    key = _args(args, "os-unset_image_metadata").get("key")
    if not isinstance(key, str) or not key:
        raise bad_request("Malformed request body. 'key' must be a string.")
    await service(request).db.write(repo.delete_image_metadata, volume["id"], key)
    return empty_response(200)


async def show_image_metadata(request: Request, ctx, volume: dict, _args_):
    policy.check_read(ctx, "volume_extension:volume_image_metadata:show")
    return json_response({"metadata": volume["image_metadata"]})


async def upload_image(request: Request, ctx, volume: dict, args: Any):
    policy.check_write(ctx, "volume_extension:volume_actions:upload_image")
    args = _args(args, "os-volume_upload_image")
    force = V.boolean(args.get("force", False), "force")
    if volume["status"] != "available" and not (force and volume["status"] == "in-use"):
        raise attach_repo.invalid_volume(f"Volume {volume['id']} status must be available or in-use (with force), "
                                         f"but current status is: {volume['status']}.")
    values = uploads.image_values(volume, args, at_least(request, UPLOAD_VISIBILITY))
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
    args = _args(args, "os-retype")
    new_type = args.get("new_type")
    if not isinstance(new_type, str) or not new_type:
        raise bad_request("New volume type must be specified.")
    policy_value = args.get("migration_policy", "never")
    if policy_value not in ("never", "on-demand", None):
        raise bad_request(f"Invalid input received: migration_policy must be 'never' or 'on-demand', not "
                          f"{policy_value!r}.")
    await service(request).db.write(repo.retype, volume["id"], new_type)
    return empty_response(202)


ACTIONS = {"os-extend": extend, "os-force_delete": force_delete, "os-reset_status": reset_status,
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
    volume = await service(request).db.read(repo.get_volume, volume_id)
    policy.check_visible(ctx, volume)
    return await handler(request, ctx, volume, args)


def register(router: Router) -> None:
    router.add("POST", "/v3/{project_id}/volumes/{volume_id}/action", action)
