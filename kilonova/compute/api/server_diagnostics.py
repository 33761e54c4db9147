"""GET /v2.1/servers/{id}/diagnostics (admin): what the hypervisor says of a running guest.

From 2.48 the standard format (state, driver, hypervisor, uptime, cpu/nic/disk/memory details);
before, the driver's own dictionary, which upstream's libvirt driver fills with flat counters
(``cpu0_time``, ``vda_read``, ``vnet0_rx``, ``memory``...): derived here from the standard one,
as every driver here reports that. A server whose power state is not running is refused (409),
as upstream's compute manager refuses it; one without a host is not ready (409).
"""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError
from kilonova.compute.api import common
from kilonova.compute.api import lookup
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.virt import driver as power

# Nova's power_state.STATE_MAP, for the 409 of a guest that is not running.
_STATE_NAMES = {power.NOSTATE: "pending", power.RUNNING: "running", power.PAUSED: "paused",
                power.SHUTDOWN: "shutdown", power.CRASHED: "crashed", power.SUSPENDED: "suspended"}
_PRIMITIVES = ("state", "driver", "hypervisor", "hypervisor_os", "uptime", "config_drive", "num_cpus", "num_nics",
               "num_disks")
_CPU = ("id", "time", "utilisation")
_NIC = ("mac_address", "rx_octets", "rx_errors", "rx_drop", "rx_packets", "rx_rate", "tx_octets", "tx_errors",
        "tx_drop", "tx_packets", "tx_rate")
_DISK = ("read_bytes", "read_requests", "write_bytes", "write_requests", "errors_count")


def standard(diagnostics: dict) -> dict:
    """The 2.48 body: exactly upstream's fields (a missing one is null)."""
    body = {key: diagnostics.get(key) for key in _PRIMITIVES}
    body["cpu_details"] = [{key: cpu.get(key) for key in _CPU} for cpu in diagnostics.get("cpu_details") or []]
    body["nic_details"] = [{key: nic.get(key) for key in _NIC} for nic in diagnostics.get("nic_details") or []]
    body["disk_details"] = [{key: disk.get(key) for key in _DISK} for disk in diagnostics.get("disk_details") or []]
    memory = diagnostics.get("memory_details") or {}
    body["memory_details"] = {"maximum": memory.get("maximum"), "used": memory.get("used")}
    return body


def legacy(diagnostics: dict) -> dict:
    """The pre-2.48 body in the shape of upstream's libvirt driver (memory in KiB, disks vda, vdb, ...)."""
    body: dict = {}
    for cpu in diagnostics.get("cpu_details") or []:
        body[f"cpu{cpu.get('id')}_time"] = cpu.get("time")
    for index, disk in enumerate(diagnostics.get("disk_details") or []):
        name = f"vd{chr(ord('a') + index)}"
        body.update({f"{name}_read_req": disk.get("read_requests"), f"{name}_read": disk.get("read_bytes"),
                     f"{name}_write_req": disk.get("write_requests"), f"{name}_write": disk.get("write_bytes"),
                     f"{name}_errors": disk.get("errors_count")})
    for index, nic in enumerate(diagnostics.get("nic_details") or []):
        name = f"vnet{index}"
        body.update({f"{name}_rx": nic.get("rx_octets"), f"{name}_rx_packets": nic.get("rx_packets"),
                     f"{name}_rx_errors": nic.get("rx_errors"), f"{name}_rx_drop": nic.get("rx_drop"),
                     f"{name}_tx": nic.get("tx_octets"), f"{name}_tx_packets": nic.get("tx_packets"),
                     f"{name}_tx_errors": nic.get("tx_errors"), f"{name}_tx_drop": nic.get("tx_drop")})
    memory = diagnostics.get("memory_details") or {}
    if memory.get("maximum") is not None:
        body["memory"] = body["memory-actual"] = memory["maximum"] * 1024
    if memory.get("used") is not None:
        body["memory-rss"] = memory["used"] * 1024
    return body


async def server_diagnostics(request: Request, server_id: str):
    ctx = request.state.context
    svc = compute_api(request)
    ref = await lookup.find(svc, ctx, server_id)
    common.authorize(request, "os_compute_api:os-server-diagnostics", common.server_target(ref.server))
    server = ref.server
    if ref.cell is None or not server.get("host"):
        raise HTTPError(409, f"Instance {ref.uuid} is not ready")
    if server.get("power_state") != power.RUNNING:
        state = _STATE_NAMES.get(server.get("power_state"), "pending")
        raise HTTPError(409, f"Cannot 'get_diagnostics' instance {ref.uuid} while it is in power state {state}")
    try:
        diagnostics = await svc.compute_rpc(server["host"]).call("get_diagnostics", instance=server)
    except RemoteError as exc:
        if exc.exc_type == "NotImplementedError":
            raise HTTPError(501, "Action is not supported.") from None
        raise HTTPError(409, f"Diagnostics of instance {ref.uuid} are not available: {exc.message}") from None
    except NoSuchTarget:
        raise HTTPError(409, f"Compute host {server['host']} could not be reached.") from None
    except RPCError as exc:
        raise HTTPError(504, f"Compute host {server['host']} did not answer in time: {exc}") from None
    return json_response(standard(diagnostics) if want(request, "2.48") else legacy(diagnostics))


def register(router: Router) -> None:
    router.add("GET", "/v2.1/servers/{server_id}/diagnostics", server_diagnostics)
