"""Placement's gauges for ``/metrics``: resources allocated and usable capacity, per resource class."""
from __future__ import annotations

import sqlalchemy as sa

from kilonova.common import metrics
from kilonova.placement.objects.models import Allocation, Inventory, ResourceClass

_USAGE = (sa.select(ResourceClass.name, sa.func.sum(Allocation.used))
          .join(Allocation, Allocation.resource_class_id == ResourceClass.id).group_by(ResourceClass.name))
_CAPACITY = (sa.select(ResourceClass.name,
                       sa.func.sum((Inventory.total - Inventory.reserved) * Inventory.allocation_ratio))
             .join(Inventory, Inventory.resource_class_id == ResourceClass.id).group_by(ResourceClass.name))


def _read(session) -> tuple[dict[str, int], dict[str, float]]:
    return ({name: int(used or 0) for name, used in session.execute(_USAGE)},
            {name: float(total or 0) for name, total in session.execute(_CAPACITY)})


def refresher(db):
    async def refresh() -> None:
        usage, capacity = await db.read(_read)
        for name in set(capacity) | set(usage):   # a class whose last allocation went shows 0, not its old value
            metrics.PLACEMENT_USAGE.labels(name).set(usage.get(name, 0))
        for name, total in capacity.items():
            metrics.PLACEMENT_CAPACITY.labels(name).set(total)
    return refresh
