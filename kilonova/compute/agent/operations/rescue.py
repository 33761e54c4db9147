"""Rescue and unrescue on this host.

The rescue image is the one asked for, else the server's own image (upstream's rule: with no
base image recorded, the instance's current image). A rescue the driver cannot do leaves the
server in ERROR with a fault, as upstream's InstanceNotRescuable; a rescue image that cannot be
read changes nothing but the task state (and says why in a fault).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from kilonova.compute.agent.operations import remote

if TYPE_CHECKING:
    from kilonova.compute.agent.manager import ComputeManager

LOG = logging.getLogger(__name__)


async def _image_meta(agent: ComputeManager, image_id: str) -> dict:
    if agent.images is None:
        return {"id": image_id}
    response = await agent.images.get(f"/v2/images/{image_id}")
    if response.status_code != 200:
        raise LookupError(f"Rescue image {image_id} could not be read: {response.status_code}")
    return response.json()


async def _fail(agent: ComputeManager, uuid: str, values: dict, expected: str, message: str) -> None:
    await agent._update(uuid, {"task_state": None, **values}, expected_task_state=[expected], fault=message)


@remote
async def rescue_instance(agent: ComputeManager, instance: dict, rescue_password: str | None = None,
                          rescue_image_ref: str | None = None, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_rescue_instance", finishes="rescue") as event:
        current = await agent._current(uuid) or instance
        image_id = rescue_image_ref or current.get("image_ref")
        try:
            image_meta = await _image_meta(agent, image_id)
        except Exception as exc:  # noqa: BLE001 - nothing changed yet: say why and leave the server as it was
            LOG.warning("rescue of %s on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await _fail(agent, uuid, {}, "rescuing", str(exc))
            return
        try:
            await agent.driver.rescue(current, image_meta, current.get("network_info") or [], rescue_password)
        except Exception as exc:  # noqa: BLE001 - the guest is in an unknown state: ERROR, as upstream
            LOG.warning("rescue of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await _fail(agent, uuid, {"vm_state": "error"}, "rescuing",
                        f"Instance {uuid} cannot be rescued: Driver Error: {exc}")
            return
        await agent._update(uuid, {"vm_state": "rescued", "task_state": None,
                                   "power_state": await agent.driver.get_power_state(current),
                                   "launched_at": datetime.utcnow().isoformat(timespec="microseconds")},
                            expected_task_state=["rescuing"])


@remote
async def unrescue_instance(agent: ComputeManager, instance: dict, request_id: str | None = None) -> None:
    uuid = instance["uuid"]
    async with agent._locks[uuid], agent.event(uuid, request_id, "compute_unrescue_instance", finishes="unrescue") as event:
        try:
            await agent.driver.unrescue(instance)
        except Exception as exc:  # noqa: BLE001
            LOG.warning("unrescue of %s failed on %s: %s", uuid, agent.host, exc)
            event.failed(exc)
            await _fail(agent, uuid, {"vm_state": "error"}, "unrescuing", f"Unrescue failed: {exc}")
            return
        await agent._update(uuid, {"vm_state": "active", "task_state": None,
                                   "power_state": await agent.driver.get_power_state(instance)},
                            expected_task_state=["unrescuing"])
