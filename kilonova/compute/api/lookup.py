"""Finding servers for the API: one by uuid, or a sorted page across build requests and cells.

A cell whose database cannot be reached does not fail the request: its servers
are known from the API database (instance mappings, request specs) and come
back as partial records marked ``down`` for the caller to render as upstream
does from microversion 2.69 (status ``UNKNOWN``), or to leave out before it.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kilonova.common.context import RequestContext
from kilonova.common.db import NotFound
from kilonova.common.http import HTTPError
from kilonova.compute.api import server_sort
from kilonova.compute.cells import Cell, CellDown
from kilonova.compute.db import build_requests, instances, mappings


@dataclass
class ServerRef:
    server: dict[str, Any]
    cell: Cell | None  # None while the server is only a build request
    down: bool = False  # the cell is unreachable: ``server`` holds only what the API database knows

    @property
    def uuid(self) -> str:
        return self.server["uuid"]


@dataclass
class Page:
    refs: list[ServerRef]
    down_cells: list[Cell] = field(default_factory=list)


def not_found(uuid: str) -> HTTPError:
    return HTTPError(404, f"Instance {uuid} could not be found.")


def cell_unavailable(cell: Cell) -> HTTPError:
    return HTTPError(503, f"Cell {cell.uuid} is not responding and hence instance info is not available.")


async def find(svc, ctx: RequestContext, uuid: str, *, allow_down: bool = False) -> ServerRef:
    """The server, or 404 when it does not exist or belongs to another project (for non-admins).

    When its cell is down: a partial record (``down=True``) if ``allow_down``, else 503.
    """
    for _attempt in range(3):
        mapping = await svc.api_db.read(mappings.instance_mapping_row, uuid)
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
        if cell is None:
            svc.cells.load()  # a cell mapped after this API started
            cell = svc.cells.by_id(mapping.cell_id)
        try:
            return ServerRef(await cell.read(instances.get, uuid), cell)
        except NotFound:
            raise not_found(uuid) from None
        except CellDown:
            if not allow_down:
                raise cell_unavailable(cell) from None
            spec = await svc.api_db.read(build_requests.get_spec, uuid) or {}
            return ServerRef(_partial_from_spec(mapping, spec), cell, down=True)
    raise not_found(uuid)


def _partial_from_spec(mapping, spec: dict[str, Any]) -> dict[str, Any]:
    """What the API database knows of a server whose cell is down (mapping + request spec)."""
    image = spec.get("image") or {}
    return {"uuid": mapping.instance_uuid, "project_id": mapping.project_id,
            "user_id": mapping.user_id or spec.get("user_id"),
            "created_at": mapping.created_at.isoformat(timespec="microseconds"),
            "flavor": spec.get("flavor"), "image_ref": image.get("id"),
            "availability_zone": spec.get("availability_zone"), "power_state": 0}


async def page(svc, *, project_id: str | None, filters: dict[str, Any], limit: int | None,
               marker: str | None, ctx: RequestContext, deleted: bool | None = False,
               include_build_requests: bool = True, include_down: bool = False,
               order: tuple[tuple[str, str], ...] = server_sort.DEFAULT,
               pending_filter=None) -> Page:
    """Servers in ``order`` (newest first by default), merged from build requests and every cell, after ``marker``.

    Cells that cannot be reached are listed in ``down_cells``; with ``include_down`` their
    servers (from the API database's instance mappings) are merged in as partial records.
    ``pending_filter`` decides which build requests match the filters (all of them when None).
    """
    after = None
    if marker is not None:
        try:
            ref = await find(svc, ctx, marker, allow_down=True)
        except HTTPError:
            raise HTTPError(400, f"marker [{marker}] not found") from None
        after = ref.server

    # Build requests first, then the cells: the conductor writes a server into its cell before it drops its
    # build request, so a server that moves between the two reads is in the second one. Read the other way
    # round, it is in neither (a multi-created set could vanish from a list right after its 202).
    results: list[ServerRef] = []
    if include_build_requests:
        for server in await svc.api_db.read(build_requests.list_for, project_id):
            if (after is None or server_sort.is_after(order, server, after)) and \
                    (pending_filter is None or pending_filter(server)):
                results.append(ServerRef(server, None))
    down: list[Cell] = []

    async def from_cell(cell: Cell) -> list[ServerRef]:
        try:
            rows = await cell.read(instances.query, project_id=project_id, filters=filters, limit=limit,
                                   order=order, marker=after, deleted=deleted)
        except CellDown:
            down.append(cell)
            return []
        return [ServerRef(row, cell) for row in rows]

    for chunk in await asyncio.gather(*(from_cell(cell) for cell in svc.cells.all())):
        results.extend(chunk)
    if down and include_down:
        results.extend(await _down_records(svc, down, project_id, order, after, limit))
    # A server that moved meanwhile is in both: keep its cell row, the newer.
    unique: dict[str, ServerRef] = {}
    for ref in results:
        if ref.uuid not in unique or unique[ref.uuid].cell is None:
            unique[ref.uuid] = ref
    sort_key, reverse = server_sort.sort_args(order)
    ordered = sorted(unique.values(), key=lambda ref: sort_key(ref.server), reverse=reverse)
    return Page(ordered if limit is None else ordered[:limit], down)


async def _down_records(svc, down: list[Cell], project_id: str | None, order: tuple[tuple[str, str], ...],
                        after: dict[str, Any] | None, limit: int | None) -> list[ServerRef]:
    """A down cell's servers as the API database knows them. Only their creation time and uuid are
    known, so in any other order they sort as servers whose other fields are empty (NULL)."""
    default = order == server_sort.DEFAULT
    marker = (after["created_at"], after["uuid"]) if default and after is not None else None
    known = await svc.api_db.read(mappings.list_in_cells, svc.cells.ids_of(down), project_id, marker,
                                  limit if default else None)
    refs = []
    for server in known:
        cell = svc.cells.by_id(server.pop("_cell_id"))
        if default or after is None or server_sort.is_after(order, server, after):
            refs.append(ServerRef(server, cell, down=True))
    return refs
