"""Asking a compute host itself (os-hosts' actions, os-hypervisors' uptime) as upstream's HostAPI does: the
host must be mapped to a cell (404), have a compute service (404) that is up (400), and its driver must do
what is asked (501 when it raises NotImplementedError)."""
from __future__ import annotations

from typing import Any

from kilonova.common.http import HTTPError
from kilonova.common.rpc import NoSuchTarget, RemoteError, RPCError, UnsupportedVersion
from kilonova.compute.api.services import all_services
from kilonova.compute.db import mappings, services

NOT_SUPPORTED = "The requested functionality is not supported."


async def cell_of(svc, host: str):
    """The cell ``host`` is mapped to; 404 with upstream's HostMappingNotFound message when it is in none."""
    mapping = await svc.api_db.read(mappings.get_host_mapping, host)
    cell = svc.cells.by_id(mapping.cell_id) if mapping is not None else None
    if cell is None:
        raise HTTPError(404, f"Host '{host}' is not mapped to any cell")
    return cell


async def ask(svc, host: str, method: str, **kwargs: Any) -> Any:
    await cell_of(svc, host)
    found = await all_services(svc, host=host, binary="nova-compute")
    if not found:
        raise HTTPError(404, f"Host {host} could not be found.")
    unavailable = HTTPError(400, f"Compute service of {host} is unavailable at this time.")
    if not services.is_up(found[0][1], svc.conf.getfloat("DEFAULT", "service_down_time")):
        raise unavailable
    try:
        return await svc.compute_rpc(host).call(method, **kwargs)
    except RemoteError as exc:
        if exc.exc_type in ("NotImplementedError", "UnsupportedVersion"):  # the driver's, or an older host
            raise HTTPError(501, NOT_SUPPORTED) from None
        raise HTTPError(400, exc.message) from None
    except UnsupportedVersion:  # a host of an older release, which has no such method
        raise HTTPError(501, NOT_SUPPORTED) from None
    except NoSuchTarget:
        raise unavailable from None
    except RPCError as exc:
        raise HTTPError(504, f"Compute host {host} did not answer in time: {exc}") from None


async def uptime_or_none(svc, host: str) -> str | None:
    """The host's uptime where 2.88 shows it in the hypervisor itself: null when it cannot be had."""
    try:
        return await ask(svc, host, "get_host_uptime")
    except HTTPError:
        return None
