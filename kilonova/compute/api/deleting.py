"""Deleting a server wherever it is in its life: build request, cell0, or on a host."""
from __future__ import annotations

import logging

from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget
from kilonova.compute.api import lookup
from kilonova.compute.db import build_requests, instances, mappings
from kilonova.compute.db.instances import UnexpectedTaskState

LOG = logging.getLogger(__name__)


class ServerDeleter:
    def __init__(self, svc):
        self.svc = svc

    async def delete(self, ctx: RequestContext, ref: lookup.ServerRef) -> None:
        if ref.cell is None:
            if await self.svc.api_db.write(_forget_build_request, ref.uuid):
                await self.release_allocations(ref.uuid)
                return
            ref = await lookup.find(self.svc, ctx, ref.uuid)  # the conductor created it meanwhile
        await self.svc.api_db.write(_queue_for_delete, ref.uuid)
        server = ref.server
        if ref.cell.is_cell0 or not server.get("host"):
            await self.local_delete(ref)
            return
        try:
            server = await ref.cell.db.write(instances.update, ref.uuid, {"task_state": "deleting"})
        except (UnexpectedTaskState, NotFound):
            return
        try:
            await self.svc.compute_rpc(server["host"]).cast("terminate_instance", instance=server)
        except NoSuchTarget:
            LOG.warning("compute host %s is not reachable; deleting %s locally", server["host"], ref.uuid)
            await self.local_delete(ref)

    async def local_delete(self, ref: lookup.ServerRef) -> None:
        """Delete without the compute agent: records, ports and allocations."""
        for vif in ref.server.get("network_info") or []:
            await self.svc.network_admin.delete(f"/v2.0/ports/{vif['port_id']}")
        try:
            await ref.cell.db.write(instances.soft_delete, ref.uuid)
        except NotFound:
            pass
        await self.release_allocations(ref.uuid)

    async def release_allocations(self, uuid: str) -> None:
        response = await self.svc.placement.delete(f"/allocations/{uuid}")
        if response.status_code not in (204, 404):
            LOG.error("could not release allocations of %s: %s %s", uuid, response.status_code, response.text)


def _forget_build_request(session, uuid: str) -> bool:
    if not build_requests.delete(session, uuid):
        return False
    build_requests.delete_spec(session, uuid)
    mappings.delete_instance_mapping(session, uuid)
    return True


def _queue_for_delete(session, uuid: str) -> None:
    mapping = mappings.get_instance_mapping(session, uuid)
    if mapping is not None:
        mapping.queued_for_delete = True
