"""Server bodies as upstream Nova renders them, per microversion."""
from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request

from kilonova.compute.api import common, disk_config, server_records
from kilonova.compute.api.microversions import want

# vm_state -> (default status, {task_state: status}), as Nova's API reports them.
_STATE_MAP: dict[str, tuple[str, dict[str, str]]] = {
    "active": ("ACTIVE", {"rebooting": "REBOOT", "reboot_pending": "REBOOT", "reboot_started": "REBOOT",
                          "rebooting_hard": "HARD_REBOOT", "reboot_pending_hard": "HARD_REBOOT",
                          "reboot_started_hard": "HARD_REBOOT", "rebuilding": "REBUILD",
                          "rebuild_block_device_mapping": "REBUILD", "rebuild_spawning": "REBUILD",
                          "migrating": "MIGRATING", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
                          "resize_migrated": "RESIZE", "resize_finish": "RESIZE",
                          "updating_password": "PASSWORD"}),
    "building": ("BUILD", {}),
    "stopped": ("SHUTOFF", {"resize_prep": "RESIZE", "resize_migrating": "RESIZE",
                            "resize_migrated": "RESIZE", "resize_finish": "RESIZE", "rebuilding": "REBUILD"}),
    "resized": ("VERIFY_RESIZE", {"resize_reverting": "REVERT_RESIZE"}),
    "paused": ("PAUSED", {"migrating": "MIGRATING"}),
    "suspended": ("SUSPENDED", {}),
    "rescued": ("RESCUE", {}),
    "error": ("ERROR", {"rebuilding": "REBUILD"}),
    "deleted": ("DELETED", {}),
    "soft-delete": ("SOFT_DELETED", {}),
    "shelved": ("SHELVED", {}),
    "shelved_offloaded": ("SHELVED_OFFLOADED", {}),
}
_PROGRESS_STATUSES = {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}  # as upstream

# Status names accepted by the ?status= filter, mapped back to vm_states.
STATUS_TO_VM_STATES = {
    "ACTIVE": ["active"], "BUILD": ["building"], "SHUTOFF": ["stopped"], "ERROR": ["error"],
    "PAUSED": ["paused"], "SUSPENDED": ["suspended"], "DELETED": ["deleted"], "RESCUE": ["rescued"],
    "SOFT_DELETED": ["soft-delete"], "SHELVED": ["shelved"], "SHELVED_OFFLOADED": ["shelved_offloaded"],
    "VERIFY_RESIZE": ["resized"], "REBOOT": ["active"], "HARD_REBOOT": ["active"], "REBUILD": ["active", "error"],
    "RESIZE": ["active", "stopped"], "MIGRATING": ["active", "paused"], "PASSWORD": ["active"],
    "UNKNOWN": [],
}


def status_of(vm_state: str, task_state: str | None) -> str:
    default, by_task = _STATE_MAP.get(vm_state, ("UNKNOWN", {}))
    return by_task.get(task_state or "", default)


def _iso(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(".")[0].replace("+00:00", "") + "Z"


def _usg(value: str | None) -> str | None:
    # OS-SRV-USG timestamps are naive with microseconds, as upstream prints them.
    if not value:
        return None
    return value if "." in value else value + ".000000"


def host_id(project_id: str, host: str | None) -> str:
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


def base_url(request: Request) -> str:
    """The request's base URL without its trailing slash, worked out once per request (lists of many
    servers use it three times per server)."""
    base = getattr(request.state, "base_url_text", None)
    if base is None:
        base = request.state.base_url_text = str(request.base_url).rstrip("/")
    return base


def links(request: Request, collection: str, item_id: str) -> list[dict[str, str]]:
    base = base_url(request)
    return [{"rel": "self", "href": f"{base}/v2.1/{collection}/{item_id}"},
            {"rel": "bookmark", "href": f"{base}/{collection}/{item_id}"}]


def addresses(network_info: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    result: dict[str, list[dict[str, Any]]] = {}
    for vif in network_info or []:
        entries = result.setdefault(vif.get("network_label") or vif.get("network_id"), [])
        for ip in vif.get("fixed_ips", []):
            entries.append({"version": ip.get("version", 4), "addr": ip["ip_address"],
                            "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": vif.get("mac_address")})
            entries.extend({"version": 4, "addr": address, "OS-EXT-IPS:type": "floating",
                            "OS-EXT-IPS-MAC:mac_addr": vif.get("mac_address")} for address in ip.get("floating_ips", []))
    return result


def _flavor(request: Request, flavor: dict[str, Any]) -> dict[str, Any]:
    if want(request, "2.47"):  # embedded; its extra specs for those the policy lets see them
        shown = {"vcpus": flavor["vcpus"], "ram": flavor["memory_mb"], "disk": flavor["root_gb"],
                 "ephemeral": flavor.get("ephemeral_gb", 0), "swap": flavor.get("swap", 0),
                 "original_name": flavor["name"]}
        if _may(request, "os_compute_api:servers:show:flavor-extra-specs"):
            shown["extra_specs"] = flavor.get("extra_specs", {})
        return shown
    return {"id": flavor["id"], "links": [{"rel": "bookmark",
                                           "href": base_url(request) + f"/flavors/{flavor['id']}"}]}


def _image(request: Request, image_ref: str | None, properties: dict[str, Any] | None = None) -> Any:
    if not image_ref:
        return ""
    shown = {"id": image_ref, "links": [{"rel": "bookmark", "href": base_url(request) + f"/images/{image_ref}"}]}
    if properties is not None and want(request, "2.98"):  # the image's properties embedded (2.98)
        shown["properties"] = properties
    return shown


def minimal(request: Request, server: dict[str, Any]) -> dict[str, Any]:
    return {"id": server["uuid"], "name": server.get("display_name") or "",
            "links": links(request, "servers", server["uuid"])}


def volumes_attached(request: Request, bdms: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``os-extended-volumes:volumes_attached``: the server's volumes (``delete_on_termination`` from 2.3)."""
    shown = []
    for bdm in bdms or []:
        if bdm.get("volume_id"):
            item: dict[str, Any] = {"id": bdm["volume_id"]}
            if want(request, "2.3"):
                item["delete_on_termination"] = bool(bdm.get("delete_on_termination"))
            shown.append(item)
    return shown


def _may(request: Request, rule: str) -> bool:
    """Whether ``rule`` lets the caller see a part of every server of the request, asked once per request
    (a list renders a thousand servers)."""
    answers = getattr(request.state, "view_rules", None)
    if answers is None:
        answers = request.state.view_rules = {}
    if rule not in answers:
        answers[rule] = common.allowed(request, rule)
    return answers[rule]


def _extended(request: Request) -> bool:
    """Whether the caller sees the OS-EXT-SRV-ATTR fields (upstream's rule)."""
    return _may(request, "os_compute_api:os-extended-server-attributes")


def detail(request: Request, server: dict[str, Any], *, fault: dict[str, Any] | None = None,
           host_status: str | None = None, shape: str = "list",
           volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A server as in GET /servers/detail (``shape`` "list"), GET /servers/{id} ("show") or the answer
    to PUT /servers/{id} ("update"), which before 2.75 leaves out the extended attributes."""
    ctx = request.state.context
    status = status_of(server["vm_state"], server.get("task_state"))
    body: dict[str, Any] = {
        "id": server["uuid"],
        "name": server.get("display_name") or "",
        "status": status,
        "tenant_id": server["project_id"],
        "user_id": server["user_id"],
        "metadata": server.get("metadata") or {},
        "hostId": host_id(server["project_id"], server.get("host")),
        "image": _image(request, server.get("image_ref"), server_records.image_properties(server)),
        "flavor": _flavor(request, server["flavor"]),
        "created": _iso(server["created_at"]),
        "updated": _iso(server.get("updated_at") or server["created_at"]),
        "addresses": addresses(server.get("network_info") or []),
        "accessIPv4": server.get("access_ip_v4") or "",
        "accessIPv6": server.get("access_ip_v6") or "",
        "links": links(request, "servers", server["uuid"]),
        "OS-DCF:diskConfig": disk_config.shown(server),
        "key_name": server.get("key_name"),
        "config_drive": server.get("config_drive") or "",
        "OS-EXT-AZ:availability_zone": server.get("availability_zone") or "",
        "OS-EXT-STS:power_state": server.get("power_state") or 0,
        "OS-EXT-STS:task_state": server.get("task_state"),
        "OS-EXT-STS:vm_state": server["vm_state"],
        "OS-SRV-USG:launched_at": _usg(server.get("launched_at")),
        "OS-SRV-USG:terminated_at": _usg(server.get("terminated_at")),
        "os-extended-volumes:volumes_attached": volumes_attached(request, volumes),
    }
    groups = server.get("security_groups")
    if groups is None or groups:  # a server whose groups were all removed shows none, as upstream
        body["security_groups"] = [{"name": name} for name in groups or ["default"]]
    if status in _PROGRESS_STATUSES:
        body["progress"] = server.get("progress") or 0
    if _extended(request):
        body["OS-EXT-SRV-ATTR:host"] = server.get("host")
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = server.get("node")
        body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{server.get('id') or 0:08x}"
        if want(request, "2.3"):
            body.update({
                "OS-EXT-SRV-ATTR:reservation_id": server.get("reservation_id"),
                "OS-EXT-SRV-ATTR:launch_index": server.get("launch_index") or 0,
                "OS-EXT-SRV-ATTR:hostname": server.get("hostname"),
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda" if server.get("host") else None,
                "OS-EXT-SRV-ATTR:user_data": server.get("user_data"),
            })
    if want(request, "2.9"):
        body["locked"] = bool(server.get("locked"))
    if want(request, "2.16") and host_status is not None:
        body["host_status"] = host_status
    if want(request, "2.19"):
        body["description"] = server.get("display_description")
    if want(request, "2.26"):
        body["tags"] = server.get("tags") or []
    if fault and status in ("ERROR", "DELETED"):
        shown = {"code": fault["code"], "created": fault["created"], "message": fault["message"]}
        if ctx.is_admin or fault["code"] != 500:
            shown["details"] = fault.get("details") or ""
        body["fault"] = shown
    if want(request, "2.63"):
        body["trusted_image_certificates"] = server_records.trusted_certs(server)
    if shape != "list" and want(request, "2.71"):
        body["server_groups"] = server.get("_server_groups", [])  # set by server_groups.with_groups
    if want(request, "2.73"):
        body["locked_reason"] = server_records.locked_reason(server)
    if want(request, "2.90"):  # visible to every user from 2.90
        body["OS-EXT-SRV-ATTR:hostname"] = server.get("hostname")
    if want(request, "2.96"):
        body["pinned_availability_zone"] = server_records.pinned_az(server)
    if want(request, "2.100"):
        body["scheduler_hints"] = server_records.scheduler_hints(server)
    if shape == "update" and not want(request, "2.75"):
        _legacy_update(body)
    return body


# What PUT /servers/{id} answered before 2.75 left out of the server.
_NOT_IN_LEGACY_UPDATE = ("key_name", "config_drive", "OS-EXT-AZ:availability_zone", "OS-EXT-STS:power_state",
                         "OS-EXT-STS:task_state", "OS-EXT-STS:vm_state", "OS-SRV-USG:launched_at",
                         "OS-SRV-USG:terminated_at", "os-extended-volumes:volumes_attached", "security_groups",
                         "host_status")


def _legacy_update(body: dict[str, Any]) -> None:
    for key in _NOT_IN_LEGACY_UPDATE:
        body.pop(key, None)
    for key in [key for key in body if key.startswith("OS-EXT-SRV-ATTR:")]:
        del body[key]
    body["addresses"] = {net: [{"version": ip["version"], "addr": ip["addr"]} for ip in ips]
                         for net, ips in body["addresses"].items()}


# ---------------------------------------------------------------- servers of a cell that is down
# From microversion 2.69 upstream renders what the API database knows of them, with status UNKNOWN.

CELL_DOWN_VERSION = "2.69"


def minimal_down(request: Request, server: dict[str, Any]) -> dict[str, Any]:
    return {"id": server["uuid"], "status": "UNKNOWN", "links": links(request, "servers", server["uuid"])}


def detail_down(request: Request, server: dict[str, Any], *, full: bool = False) -> dict[str, Any]:
    """A listing shows id, status, tenant, creation time and links; ``full`` (one server) adds
    what its request spec recorded: flavor, image, zone, power state and user."""
    body: dict[str, Any] = {"id": server["uuid"], "status": "UNKNOWN", "tenant_id": server["project_id"],
                            "created": _iso(server["created_at"]), "links": links(request, "servers", server["uuid"])}
    if full:
        flavor = server.get("flavor")
        body.update({
            "image": _image(request, server.get("image_ref")),
            "flavor": _flavor(request, flavor) if flavor else {},
            "OS-EXT-AZ:availability_zone": server.get("availability_zone") or "UNKNOWN",
            "OS-EXT-STS:power_state": server.get("power_state") or 0,
            "user_id": server.get("user_id") or "UNKNOWN",
        })
        if want(request, "2.71"):
            body["server_groups"] = []
    return body
