"""Usage sums: per provider, and per project (and user, and consumer type from 1.38)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.placement.objects import consumers as consumers_mod
from kilonova.placement.objects import inventories as inventories_mod
from kilonova.placement.objects import resource_classes as rcs
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.models import Allocation, Consumer


def of_provider(session: Session, uuid: str) -> tuple[rps.Provider, dict[str, int]]:
    """Usage of every class the provider has inventory of (0 when nothing is allocated)."""
    provider, records = inventories_mod.of_provider(session, uuid)
    usage = rps.usage_subquery()
    used = dict(session.execute(sa.select(usage.c.rc_id, usage.c.used).where(usage.c.rp_id == provider.id)).all())
    result = {name: 0 for name in records}
    for rc_id, amount in used.items():
        result[rcs.name_of(session, rc_id)] = int(amount)
    return provider, result


def of_project(session: Session, project_id: str, user_id: str | None = None) -> dict[str, int]:
    query = (sa.select(Allocation.resource_class_id, sa.func.sum(Allocation.used))
             .join(Consumer, Consumer.uuid == Allocation.consumer_id)
             .where(Consumer.project_id == project_id).group_by(Allocation.resource_class_id))
    if user_id is not None:
        query = query.where(Consumer.user_id == user_id)
    return {rcs.name_of(session, rc_id): int(amount) for rc_id, amount in session.execute(query)}


def of_project_by_type(session: Session, project_id: str, user_id: str | None = None,
                       consumer_type: str | None = None) -> dict[str, dict[str, int]]:
    """1.38: usages grouped by consumer type, each with its consumer_count.

    ``consumer_type`` "all" groups everything under "all"; "unknown" selects the
    consumers without a type; any other name selects that type only.
    """
    names = consumers_mod.type_names(session)
    query = (sa.select(Consumer.consumer_type_id, Allocation.consumer_id, Allocation.resource_class_id,
                       Allocation.used)
             .join(Consumer, Consumer.uuid == Allocation.consumer_id).where(Consumer.project_id == project_id))
    if user_id is not None:
        query = query.where(Consumer.user_id == user_id)
    if consumer_type == "unknown":
        query = query.where(Consumer.consumer_type_id.is_(None))
    elif consumer_type not in (None, "all"):
        type_id = consumers_mod.type_id(session, consumer_type, create=False)
        query = query.where(Consumer.consumer_type_id == (type_id if type_id is not None else -1))
    groups: dict[str, dict[str, int]] = {}
    consumers: dict[str, set[str]] = {}
    for type_id, consumer, rc_id, used in session.execute(query):
        key = "all" if consumer_type == "all" else names.get(type_id, "unknown")
        entry = groups.setdefault(key, {})
        name = rcs.name_of(session, rc_id)
        entry[name] = entry.get(name, 0) + used
        consumers.setdefault(key, set()).add(consumer)
    for key, entry in groups.items():
        entry["consumer_count"] = len(consumers[key])
    return groups
