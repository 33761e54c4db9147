"""Finding servers for the API: one by uuid, or a sorted page across build requests and cells."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError
from kilonova.compute.cells import Cell
from kilonova.compute.db import build_requests, instances, mappings


@dataclass
class ServerRef:
    server: dict[str, Any]
    cell: Cell | None  # None while the server is only a build request

    @property
    def uuid(self) -> str:
        return self.server["uuid"]


def not_found(uuid: str) -> HTTPError:
    return HTTPError(404, f"Instance {uuid} could not be found.")


async def find(svc, ctx: RequestContext, uuid: str) -> ServerRef:
    """The server, or 404 when it does not exist or belongs to another project (for non-admins)."""
    for _attempt in range(3):
        mapping = await svc.api_db.read(mappings.get_instance_mapping, uuid)
        if mapping is None:
            raise not_found(uuid)
        if not ctx.is_admin and mapping.project_id != ctx.project_id:
            raise not_found(uuid)
        if mapping.cell_id is None:
            pending = await svc.api_db.read(build_requests.get, uuid)
            if pending is not None:
                return ServerRef(pending, None)
            continue  # scheduled meanwhile: the mapping now names its cell
        cell = svc.cells.by_id(mapping.cell_id)
        try:
            return ServerRef(await cell.db.read(instances.get, uuid), cell)
        except NotFound:
            raise not_found(uuid) from None
    raise not_found(uuid)


def _sort_key(server: dict[str, Any]) -> tuple[str, str]:
    return server["created_at"], server["uuid"]


async def page(svc, *, project_id: str | None, filters: dict[str, Any], limit: int | None,
               marker: str | None, ctx: RequestContext, read_deleted: bool = False,
               include_build_requests: bool = True) -> list[ServerRef]:
    """Servers newest first, merged from build requests and every cell, after ``marker``."""
    after = None
    if marker is not None:
        try:
            ref = await find(svc, ctx, marker)
        except HTTPError:
            raise HTTPError(400, f"marker [{marker}] not found") from None
        after = _sort_key(ref.server)

    async def from_cell(cell: Cell) -> list[ServerRef]:
        rows = await cell.db.read(instances.query, project_id=project_id, filters=filters, limit=limit,
                                  after=after, read_deleted=read_deleted)
        return [ServerRef(row, cell) for row in rows]

    results: list[ServerRef] = []
    for chunk in await asyncio.gather(*(from_cell(cell) for cell in svc.cells.all())):
        results.extend(chunk)
    if include_build_requests:
        pending = await svc.api_db.read(build_requests.list_for, project_id)
        for server in pending:
            if after is None or _sort_key(server) < after:
                results.append(ServerRef(server, None))
    # A server can briefly appear both as build request and cell row; keep the cell row.
    unique: dict[str, ServerRef] = {}
    for ref in results:
        if ref.uuid not in unique or unique[ref.uuid].cell is None:
            unique[ref.uuid] = ref
    ordered = sorted(unique.values(), key=lambda ref: _sort_key(ref.server), reverse=True)
    return ordered if limit is None else ordered[:limit]
