"""What a server holds outside its cell database, given back: its ports, its volumes and its Placement claims.

Used by the compute agent when it deletes a server, and by the API and the
conductor when they have to finish a delete without it (its host is down, or
the delete is past its deadline). Every step may run twice: a port or a claim
already gone is not an error.
"""
from __future__ import annotations

import asyncio
import logging

import httpx

from kilonova.common.db import NotFound
from kilonova.compute.db import block_devices, instance_actions, instances
from kilonova.compute.volume_api import VolumeError, as_service

LOG = logging.getLogger(__name__)


async def release_ports(network, instance_uuid: str, network_info: list[dict]) -> None:
    """Delete the ports the server created, unbind the ones the user brought; find strays by device_id."""
    preexisting = {vif["port_id"] for vif in network_info if vif.get("preexisting")}
    listed = await _answered(lambda: network.get("/v2.0/ports", params={"device_id": instance_uuid}),
                             f"the ports of {instance_uuid}")
    port_ids = {vif["port_id"] for vif in network_info}
    if listed.status_code == 200:
        port_ids |= {port["id"] for port in listed.json().get("ports", [])}
    unbind = {"json": {"port": {"device_id": "", "device_owner": "", "binding:host_id": ""}}}
    for port_id in port_ids:
        method, body = ("PUT", unbind) if port_id in preexisting else ("DELETE", {})
        reply = await _answered(lambda: network.request(method, f"/v2.0/ports/{port_id}", **body),
                                f"port {port_id} of {instance_uuid}")
        if reply.status_code not in (200, 204, 404):
            LOG.error("could not release port %s of %s: %s", port_id, instance_uuid, reply.text[:200])


async def release_volumes(volumes, bdms: list[dict], patience: float = 30.0) -> None:
    """Detach the server's volumes (their attachments deleted: ``available`` again) and delete those it was
    to take with it (``delete_on_termination``), once the volume service has let them go."""
    for bdm in bdms:
        try:
            if bdm.get("attachment_id"):
                await volumes.attachment_delete(bdm["attachment_id"])
            if bdm.get("delete_on_termination") and bdm.get("volume_id"):
                await _delete_volume(volumes, bdm["volume_id"], patience)
        except VolumeError as exc:
            LOG.error("could not release volume %s of %s: %s", bdm.get("volume_id"), bdm["instance_uuid"],
                      exc.message)


async def release_prepared_volumes(volumes, instance_uuid: str, rows: list[dict]) -> None:
    """The volumes a create reserved or made for a server that will never run (``rows``: its
    ``block_devices`` of the request spec): reservations deleted, the volumes made for it deleted."""
    await release_volumes(volumes, [{**row, "instance_uuid": instance_uuid, "delete_on_termination":
                                     row.get("delete_on_termination") or bool(row.get("created"))} for row in rows])


async def _delete_volume(volumes, volume_id: str, patience: float) -> None:
    """Delete a volume just detached; the volume service may still be finishing the detach (400)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            await volumes.delete(volume_id)
            return
        except VolumeError as exc:
            if exc.status != 400 or loop.time() > deadline:
                raise
        await asyncio.sleep(0.5)


# How long a release keeps trying while the service fails (5xx) or cannot be reached: a claim or a port
# given up is capacity lost until an operator's audit, so a release outlasts a restart of the service
# or of what it depends on (its database, identity for tokens).
RELEASE_PATIENCE = 30.0


async def _answered(send, what: str, patience: float = RELEASE_PATIENCE) -> httpx.Response:
    """``await send()`` again while it fails with a 5xx or cannot reach the service, for ``patience`` seconds:
    the last answer. A service still unreachable then raises, as a single try did (the callers' callers keep
    the operation for a later attempt)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    wait = 0.25
    while True:
        try:
            response = await send()
        except httpx.TransportError as exc:
            if loop.time() + wait > deadline:
                raise
            failure = repr(exc)
        else:
            if response.status_code < 500 or loop.time() + wait > deadline:
                return response
            failure = f"{response.status_code} {response.text[:200]}"
        LOG.warning("releasing %s failed (%s); trying again in %.2fs", what, failure, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, 4.0)


async def release_allocations(placement, consumer: str, patience: float = RELEASE_PATIENCE) -> bool:
    """Delete the consumer's claims; True when they are gone (or never were)."""
    response = await _answered(lambda: placement.delete(f"/allocations/{consumer}"),
                               f"the allocations of {consumer}", patience)
    if response.status_code in (204, 404):
        return True
    LOG.error("could not release allocations of %s: %s %s", consumer, response.status_code, response.text[:200])
    return False


async def delete_locally(cell, placement, network, instance: dict, volumes=None) -> bool:
    """Finish a delete without the compute agent: ports, claims, then the instance row.

    The row goes last, so a crash half-way leaves the server DELETING for the next attempt
    (the stuck-delete sweep) instead of a deleted server still holding ports or capacity.
    False when the instance was already gone.
    """
    uuid = instance["uuid"]
    if network is not None:
        await release_ports(network, uuid, instance.get("network_info") or [])
    if volumes is not None:
        bdms = await cell.db.read(block_devices.for_instance, uuid)
        if bdms:
            await release_volumes(await as_service(volumes), bdms)
            await cell.db.write(block_devices.destroy_for_instance, uuid)
    await release_allocations(placement, uuid)
    try:
        await cell.db.write(_soft_delete_finished, uuid)
    except NotFound:
        return False
    return True


def _soft_delete_finished(session, uuid: str) -> None:
    instances.soft_delete(session, uuid)
    instance_actions.finish(session, uuid, "delete")
