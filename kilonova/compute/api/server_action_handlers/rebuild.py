"""POST /servers/{id}/action {"rebuild": ...}: the server gets a new root disk from an image, on its host.

Everything the request names is checked first (state, key pair, image against the flavor, quotas);
then, in one compare-and-set with the instance action, the server takes its new image, name,
metadata, ... and the task state ``rebuilding``; the conductor (tasks/rebuild.py) takes it from there.
The answer is 202 with the server as it is now, and the admin password (given or generated) when
``[api] enable_instance_password`` says so.
"""
from __future__ import annotations

import functools
import secrets
from typing import Any

from starlette.requests import Request

from kilonova.common.clients import segment
from kilonova.common.http import HTTPError, json_response
from kilonova.compute.actions import ACTIONS
from kilonova.compute.api import create as create_mod
from kilonova.compute.api import create_refusals
from kilonova.compute.api import server_groups
from kilonova.compute.api import disk_config, lookup, server_actions, server_records, server_schemas, validation, views
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.api.server_action_handlers import handles
from kilonova.compute import quota
from kilonova.compute.db import block_devices

GiB = 1024 ** 3


@functools.lru_cache(maxsize=None)
def schema(version: tuple[int, int]) -> dict:
    """The body of a rebuild at ``version`` (upstream's steps: 2.19, 2.54, 2.57, 2.63, 2.90)."""
    props: dict[str, Any] = {
        "imageRef": validation.UUID,
        "name": validation.NAME,
        "adminPass": {"type": "string"},
        "metadata": validation.METADATA,
        "preserve_ephemeral": server_schemas._BOOLEAN,
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
        "accessIPv4": {"type": "string", "format": "ipv4"},
        "accessIPv6": {"type": "string", "format": "ipv6"},
    }
    if version < (2, 57):
        props["personality"] = server_schemas.PERSONALITY
    if version >= (2, 19):
        props["description"] = validation.DESCRIPTION
    if version >= (2, 54):
        props["key_name"] = {"oneOf": [validation.NAME, {"type": "null"}]}
    if version >= (2, 57):
        props["user_data"] = {"type": ["string", "null"], "maxLength": 65535}
    if version >= (2, 63):
        props["trusted_image_certificates"] = server_schemas.TRUSTED_CERTS
    if version >= (2, 90):
        props["hostname"] = server_schemas.FQDN if version >= (2, 94) else server_schemas.HOSTNAME
    rebuild = {"type": "object", "properties": props, "required": ["imageRef"], "additionalProperties": False}
    return {"type": "object", "properties": {"rebuild": rebuild}, "required": ["rebuild"],
            "additionalProperties": False}


async def _image(svc, ctx, image_id: str, flavor: dict) -> dict:
    """The new image, checked against the server's flavor with upstream's 400s."""
    response = await svc.image.get(f"/v2/images/{segment(image_id)}", headers={"X-Auth-Token": ctx.token})
    if response.status_code in (400, 404):
        raise HTTPError(400, "Cannot find image for rebuild")
    if response.status_code != 200:
        raise HTTPError(503, f"The image service answered {response.status_code} looking up image {image_id}.")
    image = response.json()
    if image.get("status") != "active":
        raise HTTPError(400, f"Image {image_id} is not active.")
    if int(image.get("min_ram") or 0) > int(flavor.get("memory_mb") or 0):
        raise HTTPError(400, "Flavor's memory is too small for requested image.")
    disk = int(flavor.get("root_gb") or 0) * GiB
    if disk:  # a flavor without a root size takes any image (the disk grows to the image)
        size, min_disk = int(image.get("size") or 0), int(image.get("min_disk") or 0) * GiB
        if size > disk:
            raise HTTPError(400, f"Flavor's disk is too small for requested image. Flavor disk is {disk} bytes, "
                                 f"image is {size} bytes.")
        if min_disk > disk:
            raise HTTPError(400, "Flavor's disk is smaller than the minimum size specified in image metadata. "
                                 f"Flavor disk is {disk} bytes, minimum size is {min_disk} bytes.")
    return image


def _check_quotas(svc, limits: dict[str, int], metadata: dict | None, personality: list | None) -> None:
    """Metadata items and injected files within the project's limits (upstream's 403s)."""
    def check(resource: str, amount: int, classic: str) -> None:
        if 0 <= limits.get(resource, -1) < amount:
            raise quota.refusal(svc, resource, limits[resource], 0, amount, classic)

    if metadata is not None:
        check("metadata_items", len(metadata), "Maximum number of metadata items exceeds {limit}")
    check("injected_files", len(personality or []), "Personality file limit exceeded")
    for item in personality or []:
        check("injected_file_path_bytes", len(item.get("path") or ""), "Personality file path exceeds maximum {limit}")
        check("injected_file_content_bytes", len(item.get("contents") or ""),
              "Personality file content exceeds maximum {limit}")


def _check_state(request: Request, ref: lookup.ServerRef, key: str) -> None:
    """Policy, lock and the state rule, before anything the request names is looked up (as upstream's
    decorators run first). ``server_actions.begin`` checks them again with the compare-and-set."""
    action = ACTIONS[key]
    server_actions.check_policy(request, ref, action)
    if ref.cell is None or ref.cell.is_cell0 or not ref.server.get("host") or \
            not action.allows(ref.server["vm_state"], ref.server.get("task_state")):
        raise HTTPError(409, action.conflict_message(ref.uuid, ref.server["vm_state"], ref.server.get("task_state")))


async def _volume_backed(ref: lookup.ServerRef) -> bool:
    bdms = await ref.cell.db.read(block_devices.for_instance, ref.uuid)
    return any(b.get("boot_index") == 0 and b.get("volume_id") for b in bdms)


@handles("rebuild")
async def rebuild(request: Request, ref: lookup.ServerRef, key: str, body: dict):
    validation.validate(schema(request.state.version), body)
    args = body["rebuild"]
    svc, ctx = compute_api(request), request.state.context
    password = args["adminPass"] if "adminPass" in args else secrets.token_urlsafe(9)
    _check_state(request, ref, key)
    if validation.is_true(args.get("preserve_ephemeral", False)):
        # Upstream's drivers without their own rebuild (libvirt) refuse it the same way, only later.
        raise HTTPError(400, "The current driver does not support preserving ephemeral partitions.")
    server = ref.server
    values: dict[str, Any] = {"progress": 0}
    if want(request, "2.54") and "key_name" in args:
        keypair = await create_mod.load_keypair(svc, ctx, args["key_name"]) if args["key_name"] else None
        values.update(key_name=keypair and keypair["name"], key_data=keypair and keypair["public_key"])
    if want(request, "2.57") and "user_data" in args:
        create_mod.check_user_data(args["user_data"])
        values["user_data"] = args["user_data"]
    if want(request, "2.63") and args.get("trusted_image_certificates"):
        recorded = dict(server.get("system_metadata") or {})
        recorded[server_records.TRUSTED_CERTS] = list(args["trusted_image_certificates"])
        values["system_metadata"] = recorded
    if want(request, "2.90") and "hostname" in args:
        values["hostname"] = args["hostname"]
    image = await _image(svc, ctx, args["imageRef"], server["flavor"])
    if await _volume_backed(ref):
        if want(request, "2.93"):
            # From 2.93 upstream reimages the root volume; nothing here can, so say so rather than respawn on
            # the old contents.
            raise HTTPError(400, "Rebuilding a volume-backed server (microversion 2.93 and later reimages its root "
                                 "volume) is not supported by this cloud; rebuild it with microversion 2.92 or "
                                 "earlier, which keeps the root volume and its image.")
        if image["id"] != server.get("image_ref"):
            # Upstream (until 2.93): the root volume holds the server's image; another cannot be put on it.
            raise HTTPError(400, f"Image {image['id']} is unacceptable: Unable to rebuild with a different image for "
                                 f"a volume-backed server.")
    recorded = dict(values.get("system_metadata") or server.get("system_metadata") or {})
    recorded.pop(server_records.IMAGE_PROPERTIES, None)  # the new image's, shown from 2.98
    recorded.update(server_records.system_metadata({}, az=None,
                                                   image_properties=create_mod.image_spec(image)["properties"]))
    values["system_metadata"] = disk_config.for_image(recorded, image, disk_config.requested(args))
    limits = await quota.limits(svc, server["project_id"])
    _check_quotas(svc, limits, args.get("metadata"), args.get("personality"))
    create_refusals.refuse_personality(args)
    for field, column in (("name", "display_name"), ("description", "display_description"),
                          ("metadata", "metadata"), ("accessIPv4", "access_ip_v4"), ("accessIPv6", "access_ip_v6")):
        if field in args:
            values[column] = args[field].strip() if field == "name" else \
                server_records.access_ip(args[field]) if field.startswith("accessIP") else args[field]
    orig_image_ref = server.get("image_ref")
    values["image_ref"] = image["id"]
    server = await server_actions.begin(request, ref, key, values)
    image_meta = create_mod.request_spec(ctx, server["flavor"], image, [], None, 1, {})["image"]
    await svc.conductor.cast("rebuild_instance", instance_uuid=ref.uuid, image_meta=image_meta,
                             orig_image_ref=orig_image_ref, admin_password=password,
                             request_id=ctx.request_id)
    shown = views.detail(request, await server_groups.with_groups(request, server), shape="update")
    if want(request, "2.54"):
        shown["key_name"] = server.get("key_name")
    if want(request, "2.57"):
        shown["user_data"] = server.get("user_data")
    if svc.conf.getbool("api", "enable_instance_password"):
        shown["adminPass"] = password
    location = views.links(request, "servers", ref.uuid)[0]["href"]
    return json_response({"server": shown}, status=202, headers={"Location": location})
