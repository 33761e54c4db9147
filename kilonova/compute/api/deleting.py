"""Deleting a server wherever it is in its life: build request, cell0, or on a host."""
from __future__ import annotations

import logging

from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.common.rpc import NoSuchTarget
from kilonova.compute import shelved_images
from kilonova.compute.api import lookup, soft_deleting
from kilonova.compute.api.server_action_handlers import resize
from kilonova.compute.cleanup import delete_locally, release_allocations, release_prepared_volumes
from kilonova.compute.volume_api import as_service
from kilonova.compute.move_endings import RESIZE_TASK_STATES
from kilonova.compute.db import build_requests, instance_actions, instances, mappings, server_groups, services
from kilonova.compute.shelved_images import SHELVING_TASK_STATES, shelved_image_id

LOG = logging.getLogger(__name__)


class ServerDeleter:
    def __init__(self, svc):
        self.svc = svc

    async def delete(self, ctx: RequestContext, ref: lookup.ServerRef, force: bool = False) -> None:
        """Delete the server; with ``[DEFAULT] reclaim_instance_interval`` > 0 a soft delete when it can be
        one (``force``: never, as forceDelete)."""
        if ref.cell is not None:
            # As upstream, before the delete (soft or not): a shelved server's snapshot goes.
            await self._delete_shelved_image(ctx, ref.server)
        if not force and ref.cell is not None and await soft_deleting.soft_delete(self.svc, ctx, ref):
            return
        if ref.cell is None:
            spec = await self.svc.api_db.write(_forget_build_request, ref.uuid)
            if spec is not None:
                await release_allocations(self.svc.placement, ref.uuid)
                await self._give_back_volumes(ref.uuid, spec)
                return
            ref = await lookup.find(self.svc, ctx, ref.uuid)  # the conductor created it meanwhile
        await self.svc.api_db.write(_queue_for_delete, ref.uuid)
        server = ref.server
        if server.get("vm_state") == "resized" or server.get("task_state") in RESIZE_TASK_STATES:
            await resize.before_delete(self.svc, ref)  # the migration's claim on the source goes too
        if ref.cell.is_cell0 or not server.get("host"):
            await self.local_delete(ref.cell, server)
            return
        down_time = self.svc.conf.getfloat("DEFAULT", "service_down_time")
        host_up = await ref.cell.db.read(services.compute_is_up, server["host"], down_time)
        # As upstream: the "delete" action is recorded when the compute host is told (not for a delete
        # finished here without it, nor again for a server already being deleted).
        record = host_up and server.get("task_state") != "deleting"
        try:
            server = await ref.cell.db.write(_start_delete, ref.uuid, ctx.to_dict() if record else None)
        except NotFound:
            return
        if not host_up:
            # As Nova does: a message to a dead host would wait for it; the guest of a host that comes
            # back is removed by its agent's start-up clean-up.
            LOG.warning("compute service of %s is down; deleting %s locally", server["host"], ref.uuid)
            await self.local_delete(ref.cell, server)
            return
        try:
            await self.svc.compute_rpc(server["host"]).cast("terminate_instance", instance=server,
                                                            request_id=ctx.request_id if record else None)
        except NoSuchTarget:
            LOG.warning("compute host %s is not reachable; deleting %s locally", server["host"], ref.uuid)
            await self.local_delete(ref.cell, server)

    async def _give_back_volumes(self, uuid: str, spec: dict) -> None:
        """A server deleted before it reached a cell: the volumes reserved or made for it at its create."""
        rows = (spec.get("block_devices") or {}).get(uuid) or []
        if rows:
            await release_prepared_volumes(await as_service(self.svc.volume_admin), uuid, rows)

    async def _delete_shelved_image(self, ctx: RequestContext, server: dict) -> None:
        """As upstream, a shelved server's snapshot goes with it (as the caller; best effort); so does the
        snapshot of a shelve under way (its host, if alive, fails the shelve and discards it too)."""
        if server.get("vm_state") in ("shelved", "shelved_offloaded") or \
                server.get("task_state") in SHELVING_TASK_STATES:
            await shelved_images.delete(self.svc.image, shelved_image_id(server), headers={"X-Auth-Token": ctx.token})

    async def local_delete(self, cell, server: dict) -> None:
        """Delete without the compute agent: ports, allocations and the instance record."""
        await delete_locally(cell, self.svc.placement, self.svc.network_admin, server, self.svc.volume_admin)


def _start_delete(session, uuid: str, ctx: dict | None) -> dict:
    """task_state deleting, and with the caller's context ``ctx`` the "delete" action, together."""
    server = instances.update(session, uuid, {"task_state": "deleting"})
    if ctx is not None:
        instance_actions.start(session, uuid, "delete", ctx.get("request_id"), ctx.get("user_id"),
                               ctx.get("project_id"))
    return server


def _forget_build_request(session, uuid: str) -> dict | None:
    """The server's request spec once its build request is gone (this call removed it); None if not ours."""
    spec = build_requests.get_spec(session, uuid) or {}
    if not build_requests.delete(session, uuid):
        return None
    build_requests.delete_spec(session, uuid)
    mappings.delete_instance_mapping(session, uuid)
    server_groups.remove_member(session, uuid)
    return spec


def _queue_for_delete(session, uuid: str) -> None:
    mapping = mappings.get_instance_mapping(session, uuid)
    if mapping is not None:
        mapping.queued_for_delete = True
    server_groups.remove_member(session, uuid)  # no longer in its server group
