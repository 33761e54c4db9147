"""POST /servers: check everything the request names, then record build requests and hand off.

Every check happens before anything is written, so a refused request leaves
nothing behind. The conductor takes it from the build requests.
"""
from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid as uuidlib
from datetime import datetime
from typing import Any

from starlette.requests import Request

from kilonova.common.context import RequestContext
from kilonova.common.clients import segment
from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError
from kilonova.compute.api import server_records, validation
from kilonova.compute import quota
from kilonova.compute.db import flavors, keypairs
from kilonova.compute.quota import claims

GiB = 1024 ** 3


def _ref_id(ref: str) -> str:
    """flavorRef/imageRef may be an id or a URL ending in the id."""
    return ref.rstrip("/").rsplit("/", 1)[-1]


def hostname_for(name: str) -> str:
    host = re.sub(r"[^a-zA-Z0-9-]+", "-", name.strip()).strip("-").lower()[:63]
    return host or "server"


async def load_flavor(svc, ctx: RequestContext, flavor_ref: str) -> dict[str, Any]:
    flavor = await svc.api_db.read(lambda s: _flavor_snapshot(s, ctx, _ref_id(str(flavor_ref))))
    if flavor is None:
        raise HTTPError(400, f"Flavor {flavor_ref} could not be found.")
    if flavor.get("disabled"):
        raise HTTPError(400, f"Flavor {flavor_ref} is disabled and cannot be used.")
    return flavor


def _flavor_snapshot(session, ctx: RequestContext, flavorid: str) -> dict[str, Any] | None:
    """What the instance records of its flavor (as ``flavors.snapshot``); None when not visible."""
    row = flavors.visible_row(session, flavorid, project_id=ctx.project_id, is_admin=ctx.is_admin)
    if row is None:
        return None
    snapshot = {"id": row.flavorid, "name": row.name, "vcpus": row.vcpus, "memory_mb": row.memory_mb,
                "root_gb": row.root_gb, "ephemeral_gb": row.ephemeral_gb, "swap": row.swap,
                "rxtx_factor": row.rxtx_factor, "vcpu_weight": row.vcpu_weight, "is_public": row.is_public,
                "disabled": row.disabled, "description": row.description}
    snapshot["extra_specs"] = flavors.extra_specs(session, row.id)
    return snapshot


async def fetch_image(svc, ctx: RequestContext, image_ref: str) -> dict[str, Any]:
    """The image as the caller sees it; 400 when there is no such image."""
    image_id = _ref_id(str(image_ref))
    response = await svc.image.get(f"/v2/images/{segment(image_id)}", headers={"X-Auth-Token": ctx.token})
    if response.status_code in (400, 404):
        raise HTTPError(400, f"Image {image_id} could not be found.")
    if response.status_code != 200:
        raise HTTPError(503, f"The image service answered {response.status_code} looking up image {image_id}.")
    return response.json()


async def load_image(svc, ctx: RequestContext, image_ref: str, flavor: dict[str, Any],
                     volume_size: int | None = None, fetched: dict[str, Any] | None = None) -> dict[str, Any]:
    """The image, checked against the flavor (``volume_size``: the boot disk is a volume of that size, made
    from the image: checked against it instead of the flavor's root disk). ``fetched``: already looked up."""
    image = fetched if fetched is not None else await fetch_image(svc, ctx, image_ref)
    image_id = image.get("id") or _ref_id(str(image_ref))
    if image.get("status") != "active":
        raise HTTPError(400, f"Image {image_id} is not active.")
    if (image.get("min_ram") or 0) > flavor["memory_mb"]:
        raise HTTPError(400, "Flavor's memory is too small for requested image.")
    if volume_size is not None:
        if (image.get("min_disk") or 0) > volume_size or (image.get("size") or 0) > volume_size * 1024 ** 3:
            raise HTTPError(400, f"Volume is smaller than the minimum size specified in image metadata. Volume size "
                                 f"is {volume_size * 1024 ** 3} bytes, minimum size is "
                                 f"{max((image.get('min_disk') or 0) * 1024 ** 3, image.get('size') or 0)} bytes.")
        return image
    root_bytes = flavor["root_gb"] * GiB
    if flavor["root_gb"] and ((image.get("size") or 0) > root_bytes or (image.get("min_disk") or 0) > flavor["root_gb"]):
        raise HTTPError(400, "Flavor's disk is too small for requested image.")
    return image


async def resolve_networks(svc, ctx: RequestContext, request: Request, networks: Any) -> list[dict[str, Any]]:
    """The requested networks as [{"network_id"} | {"port_id"}], each checked with the network service."""
    if networks is None:
        networks = "auto"
    if networks == "none":
        return []
    if networks == "auto":
        return [{"network_id": await _only_available_network(svc, ctx)}]
    resolved = []
    for item in networks:
        if item.get("port"):
            port_id = item["port"]
            response = await svc.network.get(f"/v2.0/ports/{segment(port_id)}", headers={"X-Auth-Token": ctx.token})
            if response.status_code == 404:
                raise HTTPError(400, f"Port {port_id} could not be found.")
            port = response.json()["port"]
            if port.get("device_id"):
                raise HTTPError(409, f"Port {port_id} is still in use.")
            resolved.append({"port_id": port_id, "network_id": port["network_id"]})
            continue
        net_id = item["uuid"]
        response = await svc.network.get(f"/v2.0/networks/{segment(net_id)}", headers={"X-Auth-Token": ctx.token})
        if response.status_code == 404:
            raise HTTPError(400, f"Network {net_id} could not be found.")
        entry = {"network_id": net_id}
        if item.get("fixed_ip"):
            entry["fixed_ip"] = item["fixed_ip"]
        resolved.append(entry)
    return resolved


async def _only_available_network(svc, ctx: RequestContext) -> str:
    response = await svc.network.get("/v2.0/networks", headers={"X-Auth-Token": ctx.token})
    nets = [n for n in response.json().get("networks", [])
            if not n.get("router:external") and (n.get("shared") or n.get("project_id") == ctx.project_id)]
    if not nets:
        raise HTTPError(400, "Unable to automatically allocate a network for project "
                             f"{ctx.project_id}: no network is available.")
    if len(nets) > 1:
        raise HTTPError(409, "Multiple possible networks found, use a Network ID to be more specific.")
    return nets[0]["id"]


async def load_keypair(svc, ctx: RequestContext, key_name: str | None) -> dict[str, Any] | None:
    if not key_name:
        return None
    keypair = await svc.api_db.read(lambda s: _keypair_values(s, ctx.user_id, key_name))
    if keypair is None:
        raise HTTPError(400, "Invalid key_name provided.")
    return keypair


def _keypair_values(session, user_id: str, name: str) -> dict[str, Any] | None:
    try:
        row = keypairs.get(session, user_id, name)
    except NotFound:
        return None
    return {"name": row.name, "public_key": row.public_key}


def check_user_data(user_data: str | None) -> None:
    if user_data is None:
        return
    try:
        base64.b64decode(user_data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, "User data needs to be valid base 64.") from None


async def allowed_count(svc, ctx: RequestContext, flavor: dict[str, Any], min_count: int, max_count: int, *,
                        metadata_items: int = 0, is_bfv: bool = False) -> int:
    """How many of the requested servers fit in the project's quota; 403 when not even min_count do, or when
    each would have more metadata items than the quota allows. (Counted again, atomically, when the build
    requests are recorded: ``quota.claims.record``.)"""
    await quota.check_local(svc, ctx.project_id, "metadata_items", 0, metadata_items,
                            "Maximum number of metadata items exceeds {limit}")
    return await claims.allowed(svc, ctx.project_id, flavor, is_bfv, min_count, max_count)


def build_instance(ctx: RequestContext, server: dict[str, Any], flavor: dict[str, Any], image: dict[str, Any],
                   keypair: dict[str, Any] | None, *, index: int, count: int, reservation_id: str,
                   az: str | None) -> dict[str, Any]:
    name = server["name"]
    if count > 1:
        name = f"{name}-{index + 1}"
    return {
        "uuid": str(uuidlib.uuid4()),
        "display_name": name,
        "display_description": server.get("description"),
        "project_id": ctx.project_id,
        "user_id": ctx.user_id,
        "hostname": hostname_for(name),
        "availability_zone": az,
        "flavor": flavor,
        "image_ref": image["id"],
        "vm_state": "building",
        "task_state": "scheduling",
        "power_state": 0,
        "key_name": keypair["name"] if keypair else None,
        "key_data": keypair["public_key"] if keypair else None,
        "user_data": server.get("user_data"),
        "config_drive": "True" if validation.is_true(server.get("config_drive")) else "",
        "access_ip_v4": server_records.access_ip(server.get("accessIPv4")),
        "access_ip_v6": server_records.access_ip(server.get("accessIPv6")),
        "reservation_id": reservation_id,
        "launch_index": index,
        "metadata": server.get("metadata") or {},
        "security_groups": [g["name"] for g in server.get("security_groups") or []] or ["default"],
        "tags": server.get("tags") or [],
        "network_info": [],
        "created_at": datetime.utcnow().isoformat(timespec="microseconds"),
    }


def image_spec(image: dict[str, Any]) -> dict[str, Any]:
    """What the scheduler reads of an image (Glance's v2 body): its formats and the properties filters read."""
    return {"id": image["id"], "name": image.get("name"), "min_ram": image.get("min_ram"),
            "min_disk": image.get("min_disk"), "size": image.get("size"),
            "disk_format": image.get("disk_format"), "container_format": image.get("container_format"),
            "properties": {k: v for k, v in image.items() if k.startswith(("hw_", "img_", "trait:", "os_"))
                           or k in ("architecture", "hypervisor_type", "vm_mode", "kernel_id", "ramdisk_id")}}


def request_spec(ctx: RequestContext, flavor: dict[str, Any], image: dict[str, Any], networks: list,
                 az: str | None, count: int, hints: dict[str, Any]) -> dict[str, Any]:
    return {
        "project_id": ctx.project_id, "user_id": ctx.user_id, "flavor": flavor, "image": image_spec(image),
        "requested_networks": networks, "availability_zone": az, "num_instances": count,
        "scheduler_hints": hints, "context": ctx.to_dict(),
    }


def admin_password(server: dict[str, Any]) -> str:
    return server.get("adminPass") or secrets.token_urlsafe(9)


