"""Volumes on this host's servers (``os-volume_attachments``): connect one, disconnect it, swap it.

The compute API has reserved the volume for the server (a Cinder attachment without a connector, the
volume ``reserved``) and recorded its block device mapping. Here, as upstream's compute manager does
with the attachments API: this host's connector goes to the volume service (attachment update), whose
answer -- the ``connection_info`` -- the driver connects to the guest; then the attachment is completed
(the volume ``in-use``) and the mapping records the connection. A failure gives the reservation back
(attachment deleted, mapping removed), so the volume is ``available`` again. A detach disconnects the
guest, then deletes the attachment. ``release_all`` does that for every volume of a server deleted here.
"""
from __future__ import annotations

import asyncio
import logging
import platform
import sys
import time
from typing import TYPE_CHECKING

from kilonova.compute import volume_api, volume_reservations
from kilonova.compute.agent.operations import remote
from kilonova.compute.cleanup import release_volumes
from kilonova.compute.virt.driver import BuildFailure

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


class VolumeNotAttached(Exception):
    """The volume is not one of the server's (upstream's VolumeBDMNotFound)."""


def connector(agent: ComputeManager) -> dict:
    """This host as the volume service sees it (os-brick's connector properties)."""
    return {"host": agent.host, "ip": agent.conf.get("DEFAULT", "my_ip"), "initiator": None,
            "platform": platform.machine(), "os_type": sys.platform, "multipath": False,
            "do_local_attach": False}


async def _volumes(agent: ComputeManager) -> volume_api.VolumeAPI:
    return await volume_api.as_service(agent.volumes)


async def bdms(agent: ComputeManager, uuid: str) -> list[dict]:
    return await agent.conductor.call("bdm_list", instance_uuid=uuid)


async def _bdm(agent: ComputeManager, uuid: str, volume_id: str) -> dict:
    for bdm in await bdms(agent, uuid):
        if bdm["volume_id"] == volume_id:
            return bdm
    raise VolumeNotAttached(f"Instance {uuid} is not attached to volume {volume_id}")


async def _update(agent: ComputeManager, bdm: dict, values: dict) -> dict:
    return await agent.conductor.call("bdm_update", instance_uuid=bdm["instance_uuid"], bdm_uuid=bdm["uuid"],
                                      values=values)


async def initialize(agent: ComputeManager, volumes: volume_api.VolumeAPI, bdm: dict) -> dict:
    """This host's connector to the volume service: the connection_info of ``bdm``'s volume, with its
    ``serial`` (the volume's id), as upstream keeps it."""
    # As upstream, the device the volume is to be is the connector's mountpoint.
    attachment = await volumes.attachment_update(bdm["attachment_id"],
                                                 {**connector(agent), "mountpoint": bdm["device_name"]})
    connection_info = dict(attachment.get("connection_info") or {})
    connection_info["serial"] = bdm["volume_id"]
    return connection_info


async def connect(agent: ComputeManager, instance: dict, bdm: dict) -> dict:
    """Connect ``bdm``'s reserved volume to the (existing) guest; returns the mapping as recorded."""
    volumes = await _volumes(agent)
    connection_info = await initialize(agent, volumes, bdm)
    device = await agent.driver.attach_volume(instance, connection_info, bdm["device_name"])
    try:
        await volumes.attachment_complete(bdm["attachment_id"])
    except Exception:
        await agent.driver.detach_volume(instance, connection_info, device)
        raise
    return await _update(agent, bdm, {"status": "attached", "connection_info": connection_info,
                                      "device_name": device or bdm["device_name"]})


async def give_back(agent: ComputeManager, bdm: dict) -> None:
    """The reservation of a volume whose attach failed: attachment deleted (``available``), mapping gone."""
    try:
        volumes = await _volumes(agent)
        if bdm.get("attachment_id"):
            await volumes.attachment_delete(bdm["attachment_id"])
    finally:
        await agent.conductor.call("bdm_destroy", instance_uuid=bdm["instance_uuid"], bdm_uuid=bdm["uuid"])


@remote
async def attach_volume(agent: ComputeManager, instance: dict, volume_id: str, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_attach_volume", finishes="attach_volume"):
        bdm = await _bdm(agent, uuid, volume_id)
        current = await agent._current(uuid) or instance
        try:
            await connect(agent, current, bdm)
        except Exception as exc:
            LOG.warning("attaching volume %s to %s on %s failed: %s", volume_id, uuid, agent.host, exc)
            await give_back(agent, bdm)
            raise
        LOG.info("volume %s attached to %s at %s on %s", volume_id, uuid, bdm["device_name"], agent.host)


@remote
async def detach_volume(agent: ComputeManager, instance: dict, volume_id: str, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_detach_volume", finishes="detach_volume"):
        bdm = await _bdm(agent, uuid, volume_id)
        current = await agent._current(uuid) or instance
        if bdm.get("connection_info") and agent.driver.supports_volumes:
            try:
                await agent.driver.detach_volume(current, bdm["connection_info"], bdm["device_name"])
            except Exception:
                await _update(agent, bdm, {"status": "attached"})  # still connected: in-use, as upstream
                raise
        volumes = await _volumes(agent)
        if bdm.get("attachment_id"):
            await volumes.attachment_delete(bdm["attachment_id"])
        await agent.conductor.call("bdm_destroy", instance_uuid=uuid, bdm_uuid=bdm["uuid"])
        LOG.info("volume %s detached from %s on %s", volume_id, uuid, agent.host)


@remote
async def swap_volume(agent: ComputeManager, instance: dict, old_volume_id: str, new_volume_id: str,
                      new_attachment_id: str, request_id: str | None = None) -> None:
    """Put ``new_volume_id`` (reserved by the API: ``new_attachment_id``) in the place of ``old_volume_id``,
    its data copied by the driver; the old volume's attachment then goes (``available``)."""
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_swap_volume", finishes="swap_volume"):
        bdm = await _bdm(agent, uuid, old_volume_id)
        current = await agent._current(uuid) or instance
        volumes = await _volumes(agent)
        new = {**bdm, "volume_id": new_volume_id, "attachment_id": new_attachment_id}
        try:
            new_info = await initialize(agent, volumes, new)
            await agent.driver.swap_volume(current, bdm.get("connection_info") or {}, new_info, bdm["device_name"])
            await volumes.attachment_complete(new_attachment_id)
        except Exception:
            await volumes.attachment_delete(new_attachment_id)
            await _update(agent, bdm, {"status": "attached"})
            raise
        await _update(agent, bdm, {"volume_id": new_volume_id, "attachment_id": new_attachment_id,
                                   "connection_info": new_info, "status": "attached"})
        if bdm.get("attachment_id"):
            await volumes.attachment_delete(bdm["attachment_id"])
        LOG.info("volume %s of %s swapped for %s on %s", old_volume_id, uuid, new_volume_id, agent.host)


async def release_all(agent: ComputeManager, uuid: str) -> None:
    """A server deleted here: its volumes detached (those to go with it deleted), its mappings removed."""
    mappings = await bdms(agent, uuid)
    if mappings and agent.volumes is not None:
        await release_volumes(await _volumes(agent), mappings)
    for bdm in mappings:
        await agent.conductor.call("bdm_destroy", instance_uuid=uuid, bdm_uuid=bdm["uuid"])


# ---------------------------------------------------------------- a server's volumes at its build

GIB = 1024 ** 3
VOLUME_WAIT = 180.0  # seconds a volume made for a build may take to become available (upstream's 60 x 3 s)


async def _wait_available(volumes: volume_api.VolumeAPI, volume_id: str) -> None:
    deadline = time.monotonic() + VOLUME_WAIT
    while True:
        volume = await volumes.get(volume_id)
        status = volume.get("status")
        if status == "available":
            return
        if status in ("error", "error_restoring") or time.monotonic() > deadline:
            raise BuildFailure(f"Volume {volume_id} did not finish being created after waiting "
                               f"{VOLUME_WAIT:g} seconds or 60 attempts. And its status is {status}.")
        await asyncio.sleep(0.5)


async def connect_for_spawn(agent: ComputeManager, uuid: str) -> list[dict]:
    """The server's volumes reserved (once made) and this host's connections to them, for the driver's spawn
    (or a moved guest's definition here): the mappings with their ``connection_info``, the boot volume
    (boot_index 0) first."""
    mappings = [b for b in await bdms(agent, uuid) if b.get("volume_id")]
    if not mappings:
        return []
    volumes = await _volumes(agent)
    connected = []
    for bdm in mappings:
        if not bdm.get("attachment_id"):
            await _wait_available(volumes, bdm["volume_id"])
            attachment = await volumes.attachment_create(bdm["volume_id"], uuid)
            bdm = await _update(agent, bdm, {"attachment_id": attachment["id"]})
        connection_info = await initialize(agent, volumes, bdm)
        connected.append(await _update(agent, bdm, {"connection_info": connection_info}))
    return connected


async def complete_for_spawn(agent: ComputeManager, connected: list[dict]) -> None:
    """The guest runs with its volumes: their attachments completed (``in-use``)."""
    if not connected:
        return
    volumes = await _volumes(agent)
    for bdm in connected:
        await volumes.attachment_complete(bdm["attachment_id"])
        await _update(agent, bdm, {"status": "attached"})


async def disconnect_after_failed_spawn(agent: ComputeManager, uuid: str) -> None:
    """A build that failed here: the volumes' attachments go (``available``), so that another host (a
    reschedule) reserves them again; the mappings (``disconnected``) and the volumes stay the server's, and
    go with it when it is deleted."""
    try:
        mappings = [b for b in await bdms(agent, uuid) if b.get("attachment_id")]
        if not mappings:
            return
        volumes = await _volumes(agent)
        for bdm in mappings:
            await volumes.attachment_delete(bdm["attachment_id"])
            await _update(agent, bdm, {"attachment_id": None, "connection_info": None, "status": "disconnected"})
    except Exception:  # noqa: BLE001 - the reconcile pass and the server's delete settle what is left
        LOG.warning("could not disconnect the volumes of failed build %s", uuid, exc_info=True)


# ---------------------------------------------------------------- a server's volumes when it leaves a host

async def disconnect_for_offload(agent: ComputeManager, uuid: str) -> None:
    """A server leaving this host (shelve offload, an unshelve that failed; the source of a resize or cold
    migration once its guest is off, a destination whose guest goes at a revert or a failed move), or taken
    over from a failed host by an evacuation (run on the destination: nothing is disconnected on the failed
    host, which is down): each volume's connection goes and the volume stays the server's, reserved for it
    (``volume_reservations``), to be connected wherever the server runs next (``connect_for_spawn``)."""
    mappings = [b for b in await bdms(agent, uuid) if b.get("volume_id")]
    if not mappings:
        return
    volumes = await _volumes(agent)
    for bdm in mappings:
        await volume_reservations.reserve_again(volumes, bdm, lambda b, values: _update(agent, b, values))


async def extend(agent: ComputeManager, instance: dict, volume_id: str) -> None:
    """``volume-extended`` from the volume service: the guest's disk of that volume grows to its new size.
    A volume still ``extending`` is one only the guest's hypervisor can grow (an attached qcow2 file): it grows
    it to the size in the volume's ``extend_new_size`` and tells the volume service how it went
    (``os-extend_volume_completion``, as the Cinder spec asks of Nova)."""
    uuid = instance["uuid"]
    volumes = await _volumes(agent)
    volume = await volumes.get(volume_id)
    waits = volume["status"] == "extending"
    try:
        async with agent._locks[uuid]:
            bdm = next((b for b in await bdms(agent, uuid) if b["volume_id"] == volume_id), None)
            if bdm is None or bdm["status"] != "attached" or not bdm.get("connection_info"):
                raise BuildFailure(f"volume-extended for {volume_id}: not connected to {uuid} here")
            size = int(volume["metadata"]["extend_new_size"]) if waits else volume["size"]
            if size < volume["size"]:
                raise BuildFailure(f"volume {volume_id}: extend_new_size {size} is below its size")
            await agent.driver.extend_volume(instance, bdm["connection_info"], size * GIB, bdm["device_name"])
            await _update(agent, bdm, {"volume_size": size})
            LOG.info("volume %s of %s extended to %s GiB on %s", volume_id, uuid, size, agent.host)
    except Exception as exc:  # noqa: BLE001 - the volume service is told, or it is an old-style event
        LOG.warning("volume %s of %s not extended on %s: %s", volume_id, uuid, agent.host, exc)
        if waits:
            await volumes.extend_volume_completion(volume_id, error=True)
        return
    if waits:
        await volumes.extend_volume_completion(volume_id, error=False)


# ---------------------------------------------------------------- a live-migrating server's volumes

async def connect_for_live_migration(agent: ComputeManager, uuid: str) -> dict[str, dict]:
    """Destination, before the guest comes: a second attachment of each of the server's volumes, connected
    with this host's connector (the source keeps its own until the guest has moved), as upstream's
    pre_live_migration: {volume id: {attachment_id, old_attachment_id, connection_info}}."""
    mappings = [b for b in await bdms(agent, uuid) if b.get("volume_id")]
    if not mappings:
        return {}
    volumes = await _volumes(agent)
    made: dict[str, dict] = {}
    try:
        for bdm in mappings:
            attachment = await volumes.attachment_create(bdm["volume_id"], uuid)
            made[bdm["volume_id"]] = {"attachment_id": attachment["id"], "old_attachment_id": bdm.get("attachment_id"),
                                      "connection_info": None}
            made[bdm["volume_id"]]["connection_info"] = await initialize(
                agent, volumes, {**bdm, "attachment_id": attachment["id"]})
    except Exception:
        await drop_live_migration_attachments(agent, made)
        raise
    return made


async def drop_live_migration_attachments(agent: ComputeManager, made: dict[str, dict]) -> None:
    """A live migration that did not happen: the destination's attachments go (the source's stay)."""
    if not made:
        return
    volumes = await _volumes(agent)
    for entry in made.values():
        try:
            await volumes.attachment_delete(entry["attachment_id"])
        except Exception as exc:  # noqa: BLE001 - the volume service's reaper removes what stays reserved
            LOG.warning("attachment %s of a cancelled live migration not deleted: %s", entry["attachment_id"], exc)


async def drop_unmapped_attachments(agent: ComputeManager, uuid: str) -> None:
    """Destination, rolling back a live migration its source could not undo (it died: the attachments
    pre_live_migration made here were known to it only): every attachment of the server's volumes that its
    mappings do not name goes -- the mappings still name the source's, as the guest never moved."""
    volumes = await _volumes(agent)
    for bdm in await bdms(agent, uuid):
        if not bdm.get("volume_id") or not bdm.get("attachment_id"):
            continue
        try:
            for attachment in await volumes.attachments_of(bdm["volume_id"], uuid):
                if attachment["id"] != bdm["attachment_id"]:
                    LOG.info("attachment %s of volume %s of %s, made for a live migration that did not happen: "
                             "deleted", attachment["id"], bdm["volume_id"], uuid)
                    await volumes.attachment_delete(attachment["id"])
        except Exception as exc:  # noqa: BLE001 - the volume service's reaper removes what stays unconnected
            LOG.warning("the attachments of volume %s of %s left by a live migration: %s", bdm["volume_id"], uuid,
                        exc)


async def switch_after_live_migration(agent: ComputeManager, uuid: str, made: dict[str, dict]) -> None:
    """Source, once the guest runs on the destination: the mappings take the destination's attachments and
    connections, the source's attachments go, and the new ones are completed (``in-use`` again)."""
    if not made:
        return
    volumes = await _volumes(agent)
    for bdm in await bdms(agent, uuid):
        entry = made.get(bdm.get("volume_id"))
        if entry is None:
            continue
        await _update(agent, bdm, {"attachment_id": entry["attachment_id"],
                                   "connection_info": entry["connection_info"], "status": "attached"})
        if entry.get("old_attachment_id"):
            await volumes.attachment_delete(entry["old_attachment_id"])
        await volumes.attachment_complete(entry["attachment_id"])
