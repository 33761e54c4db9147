"""GET /v2.1/os-migrations (every cell's migration records) and GET
/v2.1/servers/{id}/migrations[/{migration_id}] (a server's live migrations under way), as upstream.

os-migrations by microversion: 2.23 adds ``migration_type`` and links to in-progress live migrations;
2.59 adds ``uuid``, pages newest first (``limit``, ``marker`` = a migration uuid, ``migrations_links``),
filters by ``changes-since`` and closes the query to the names its schema knows; 2.66 ``changes-before``;
2.80 ``user_id`` / ``project_id`` as filters and fields. Server migrations exist from 2.23 (2.59: uuid,
2.80: user and project).

Policy as Nova 2025.1: a project manager lists its own project's migrations (another project named: 403)
and an administrator every project's; the hosts (``*_compute``, ``*_node``, ``dest_host``) show as null
unless the ``:host`` rule allows them.
"""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from kilonova.common.http import HTTPError, Router, json_response
from kilonova.compute.api import common, lookup, query_params, views
from kilonova.compute.api.app import compute_api
from kilonova.compute.api.microversions import want
from kilonova.compute.cells import CellDown
from kilonova.compute.db import migrations

# The fields of a record os-migrations shows (upstream's Migration object without deleted, deleted_at, hidden,
# cross_cell_move and the progress counters), whatever else the table keeps for the operations.
_LISTED = ("created_at", "updated_at", "id", "uuid", "source_compute", "dest_compute", "source_node", "dest_node",
           "dest_host", "old_instance_type_id", "new_instance_type_id", "instance_uuid", "status", "migration_type",
           "user_id", "project_id")

_FILTERS = ("hidden", "host", "instance_uuid", "source_compute", "status", "migration_type")
_QUERY_2_59 = {**{name: query_params.MULTI_STRING for name in _FILTERS}, "limit": query_params.NON_NEGATIVE_INT,
               "marker": query_params.STRING, "changes-since": query_params.DATE_TIME}
_QUERY_2_66 = {**_QUERY_2_59, "changes-before": query_params.DATE_TIME}
_QUERY_2_80 = {**_QUERY_2_66, "user_id": query_params.MULTI_STRING, "project_id": query_params.MULTI_STRING}
# Before 2.59 upstream's schema is open and every filter its database layer knows is applied.
_OPEN_FILTERS = _FILTERS + ("uuid", "node", "user_id", "project_id")
_HOST_FIELDS = ("source_compute", "dest_compute", "source_node", "dest_node", "dest_host")


def _listed(request: Request, record: dict[str, Any], hosts: bool = True) -> dict[str, Any]:
    view = {key: record.get(key) for key in _LISTED}
    if not hosts:
        view.update(dict.fromkeys(_HOST_FIELDS))
    if not want(request, "2.59"):
        view.pop("uuid", None)
    if not want(request, "2.80"):
        view.pop("user_id", None)
        view.pop("project_id", None)
    if not want(request, "2.23"):
        view.pop("migration_type", None)
    elif record["migration_type"] == "live-migration" and record["status"] in migrations.LIVE_IN_PROGRESS:
        view["links"] = views.links(request, f"servers/{record['instance_uuid']}/migrations", record["id"])
    return view


def _query(request: Request) -> dict[str, Any]:
    if not want(request, "2.59"):
        return query_params.last_values(request, _OPEN_FILTERS)
    schema = _QUERY_2_80 if want(request, "2.80") else _QUERY_2_66 if want(request, "2.66") else _QUERY_2_59
    query_params.validate(request, schema)
    filters: dict[str, Any] = query_params.last_values(request, tuple(name for name in schema if name in
                                                                      _OPEN_FILTERS))
    since, before = query_params.time_range(request, with_before=want(request, "2.66"))
    filters.update({"changes-since": since, "changes-before": before})
    return filters


async def _every_cell(svc, fn, *args) -> list[list[dict[str, Any]]]:
    """``fn`` read in every cell but cell0 (where nothing ever moved); 503 when one is down."""
    cells = [cell for cell in svc.cells.all() if not cell.is_cell0]

    async def one(cell):
        try:
            return await cell.read(fn, *args)
        except CellDown:
            raise HTTPError(503, f"Cell {cell.uuid} is not responding and hence migrations are not "
                                 "available.") from None
    return list(await asyncio.gather(*(one(cell) for cell in cells)))


async def _page(svc, filters: dict[str, Any], limit: int, marker: str | None) -> list[dict[str, Any]]:
    """Newest first across the cells, after the record of uuid ``marker`` (400 when no cell has it)."""
    after = None
    if marker is not None:
        found = [pos for pos in await _every_cell(svc, migrations.marker_position, marker) if pos is not None]
        if not found:
            raise HTTPError(400, f"Marker {marker} could not be found.")
        after = found[0]
    merged = [row for rows in await _every_cell(svc, migrations.query_page, filters, limit, after) for row in rows]
    merged.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
    return merged[:limit]


async def list_migrations(request: Request):
    filters = _query(request)
    common.require_admin(request, "os_compute_api:os-migrations:index")
    ctx = request.state.context
    if not common.allowed(request, "os_compute_api:os-migrations:index:all_projects"):
        if filters.get("project_id") not in (None, ctx.project_id):
            common.authorize(request, "os_compute_api:os-migrations:index:all_projects")
        filters["project_id"] = ctx.project_id
    hosts = common.allowed(request, "os_compute_api:os-migrations:index:host")
    svc = compute_api(request)
    if want(request, "2.59"):
        limit, marker = common.limit_and_marker(request)
        records = await _page(svc, filters, limit, marker)
    else:
        records = [row for rows in await _every_cell(svc, migrations.query, filters) for row in rows]
    # Hidden records (a cross-cell move's other half) are never listed, even when asked for.
    shown = [_listed(request, record, hosts) for record in records if not record["hidden"]]
    body: dict[str, Any] = {"migrations": shown}
    if want(request, "2.59"):
        links = common.next_links(request, "os-migrations", [m["uuid"] for m in shown], limit)
        if links:
            body["migrations_links"] = links
    return json_response(body)


def _server_migration_view(request: Request, record: dict[str, Any], hosts: bool = True) -> dict[str, Any]:
    view = {"created_at": record["created_at"], "dest_compute": record["dest_compute"],
            "dest_host": record["dest_host"], "dest_node": record["dest_node"],
            "disk_processed_bytes": record["disk_processed"], "disk_remaining_bytes": record["disk_remaining"],
            "disk_total_bytes": record["disk_total"], "id": record["id"],
            "memory_processed_bytes": record["memory_processed"],
            "memory_remaining_bytes": record["memory_remaining"], "memory_total_bytes": record["memory_total"],
            "server_uuid": record["instance_uuid"], "source_compute": record["source_compute"],
            "source_node": record["source_node"], "status": record["status"], "updated_at": record["updated_at"]}
    if not hosts:
        view.update(dict.fromkeys(_HOST_FIELDS))
    if want(request, "2.59"):
        view["uuid"] = record["uuid"]
    if want(request, "2.80"):
        view["user_id"] = record["user_id"]
        view["project_id"] = record["project_id"]
    return view


async def _server(request: Request, server_id: str, rule: str) -> lookup.ServerRef:
    if not want(request, "2.23"):
        raise HTTPError(404, "The resource could not be found.")
    ref = await lookup.find(compute_api(request), request.state.context, server_id)
    common.require_admin(request, f"os_compute_api:servers:migrations:{rule}", common.server_target(ref.server))
    return ref


async def list_server_migrations(request: Request, server_id: str):
    ref = await _server(request, server_id, "index")
    records = [] if ref.cell is None else await ref.cell.read(migrations.live_in_progress, ref.uuid)
    hosts = common.allowed(request, "os_compute_api:servers:migrations:index:host", common.server_target(ref.server))
    return json_response({"migrations": [_server_migration_view(request, record, hosts) for record in records]})


async def show_server_migration(request: Request, server_id: str, migration_id: str):
    ref = await _server(request, server_id, "show")
    record = None
    if ref.cell is not None and migration_id.isdigit():
        record = await ref.cell.read(migrations.get_by_id, ref.uuid, int(migration_id))
    if record is None:
        raise HTTPError(404, f"In-progress live migration {migration_id} is not found for server {server_id}.")
    if record["migration_type"] != "live-migration":
        raise HTTPError(404, f"Migration {migration_id} for server {server_id} is not live-migration.")
    if record["status"] not in migrations.LIVE_IN_PROGRESS:
        raise HTTPError(404, f"Live migration {migration_id} for server {server_id} is not in progress.")
    return json_response({"migration": _server_migration_view(request, record)})


def register(router: Router) -> None:
    router.add("GET", "/v2.1/os-migrations", list_migrations)
    router.add("GET", "/v2.1/servers/{server_id}/migrations", list_server_migrations)
    router.add("GET", "/v2.1/servers/{server_id}/migrations/{migration_id}", show_server_migration)
