"""What the quota engine counts in the API database, and its per-project generation.

A create reads a ``snapshot`` (the generation, the project's build requests and live instance mappings in
one transaction), counts the cells and Placement, and records its build requests only through ``advance``:
in the writing transaction the generation must still be the one it read, else another create recorded in
between and the count is done again. Reading build requests before the cells, and leaving out of a cell's
count the servers still counted as build requests, counts each server once while the conductor moves it
(it is written to its cell before its build request goes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepared

from kilonova.compute.db.api_models import BuildRequest, InstanceMapping, QuotaGeneration, RequestSpec
from kilonova.compute.db.cell_models import Instance


class GenerationMoved(Exception):
    """Another create of the project recorded since the snapshot."""


@dataclass
class Snapshot:
    generation: int
    pending: dict[str, dict[str, int]] = field(default_factory=dict)   # build request uuid -> vcpus, memory_mb
    servers: int = 0    # instance mappings not queued for delete (upstream's count from the API database)

    def pending_usage(self) -> dict[str, int]:
        """instances, cores and ram of the build requests."""
        sizes = list(self.pending.values())
        return {"instances": len(sizes), "cores": sum(int(f["vcpus"] or 0) for f in sizes),
                "ram": sum(int(f["memory_mb"] or 0) for f in sizes)}


# Built once, run on SQLite's cursor (kilonova/common/prepared.py): every create with a bounded quota reads
# these twice.
_PROJECT = sa.bindparam("project_id")
_GENERATION = prepared(sa.select(QuotaGeneration.generation).where(QuotaGeneration.project_id == _PROJECT))
# The size columns, not the build requests' JSON: every create reads them, however long the queue.
_PENDING = prepared(sa.select(BuildRequest.instance_uuid, BuildRequest.vcpus, BuildRequest.memory_mb)
                    .where(BuildRequest.project_id == _PROJECT))
_SERVERS = prepared(sa.select(sa.func.count()).select_from(InstanceMapping).where(
    InstanceMapping.project_id == _PROJECT, InstanceMapping.queued_for_delete.is_(False)))


def snapshot(session: Session, project_id: str) -> Snapshot:
    params = {"project_id": project_id}
    generation = session.scalar(_GENERATION, params) or 0
    pending = {uuid: {"vcpus": vcpus, "memory_mb": memory_mb}
               for uuid, vcpus, memory_mb in session.execute(_PENDING, params)}
    return Snapshot(generation, pending, int(session.scalar(_SERVERS, params) or 0))


def pending_flavors(session: Session, uuids: list[str]) -> dict[str, dict[str, Any]]:
    """Build request uuid -> its flavor, with ``is_bfv`` from its request spec (what it will claim)."""
    if not uuids:
        return {}
    rows = session.execute(sa.select(BuildRequest.instance_uuid, BuildRequest.instance, RequestSpec.spec).outerjoin(
        RequestSpec, RequestSpec.instance_uuid == BuildRequest.instance_uuid).where(
        BuildRequest.instance_uuid.in_(uuids)))
    return {uuid: dict((instance or {}).get("flavor") or {}, is_bfv=bool((spec or {}).get("is_bfv")))
            for uuid, instance, spec in rows}


def advance(session: Session, project_id: str, generation: int) -> None:
    """Move the project's generation on from ``generation``; GenerationMoved when it is not that any more."""
    table = QuotaGeneration.__table__
    moved = session.execute(table.update().where(table.c.project_id == project_id,
                                                 table.c.generation == generation)
                            .values(generation=generation + 1)).rowcount
    if moved:
        return
    if generation == 0 and session.scalar(sa.select(table.c.generation).where(
            table.c.project_id == project_id)) is None:
        session.execute(table.insert().values(project_id=project_id, generation=1))
        return
    raise GenerationMoved()


_INSTANCES = Instance.__table__


_CELL_USAGE = sa.select(sa.func.count(_INSTANCES.c.id), sa.func.coalesce(sa.func.sum(_INSTANCES.c.vcpus), 0),
                        sa.func.coalesce(sa.func.sum(_INSTANCES.c.memory_mb), 0)).where(
    _INSTANCES.c.project_id == sa.bindparam("project_id"), _INSTANCES.c.deleted == 0,
    _INSTANCES.c.vm_state != "soft-delete")
_CELL_USAGE_EXCLUDING = prepared(_CELL_USAGE.where(_INSTANCES.c.uuid.not_in(sa.bindparam("excluding", expanding=True))))
prepared(_CELL_USAGE)


def cell_usage(session: Session, project_id: str, excluding: list[str]) -> dict[str, int]:
    """instances, cores and ram of a project's live (not soft-deleted) instances in this cell, leaving out
    ``excluding`` (servers counted as build requests)."""
    if excluding:
        row = session.execute(_CELL_USAGE_EXCLUDING, {"project_id": project_id, "excluding": list(excluding)}).one()
    else:
        row = session.execute(_CELL_USAGE, {"project_id": project_id}).one()
    return {"instances": int(row[0]), "cores": int(row[1]), "ram": int(row[2])}
