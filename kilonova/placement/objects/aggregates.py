"""The placement_aggregates and resource_provider_aggregates tables."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.models import Aggregate, ProviderAggregate

# Statements built once, run on SQLite's cursor (kilonova/common/prepared.py).
_AGG = Aggregate.__table__
_PA = ProviderAggregate.__table__
_UUIDS_OF = (sa.select(_AGG.c.uuid).join(_PA, _PA.c.aggregate_id == _AGG.c.id)
             .where(_PA.c.resource_provider_id == sa.bindparam("rp_id")))
_KNOWN = sa.select(_AGG.c.uuid, _AGG.c.id).where(_AGG.c.uuid.in_(sa.bindparam("uuids", expanding=True)))
_INSERT_AGGREGATE = _AGG.insert()
_MEMBER_OF = sa.select(_PA.c.aggregate_id).where(_PA.c.resource_provider_id == sa.bindparam("rp_id"))
_LEAVE = _PA.delete().where(_PA.c.resource_provider_id == sa.bindparam("rp_id"),
                            _PA.c.aggregate_id.in_(sa.bindparam("agg_ids", expanding=True)))
_JOIN = _PA.insert()
prepare(_UUIDS_OF, _KNOWN, _INSERT_AGGREGATE, _MEMBER_OF, _LEAVE, _JOIN)


def _uuids(session: Session, provider_id: int) -> list[str]:
    return sorted(session.scalars(_UUIDS_OF, {"rp_id": provider_id}))


def of_provider(session: Session, uuid: str) -> tuple[rps.Provider, list[str]]:
    provider = rps.get(session, uuid)
    return provider, _uuids(session, provider.id)


def set_for_provider(session: Session, uuid: str, aggregates: list[str], generation: int | None,
                     bump: bool) -> tuple[rps.Provider, list[str]]:
    """Replace a provider's aggregates; from 1.19 checks and bumps its generation."""
    provider = rps.get(session, uuid)
    if generation is not None and generation != provider.generation:
        raise exc.ConcurrentUpdate("Resource provider's generation already changed. Please update the "
                                   "generation and try again.")
    if bump:   # swapped first: a racing write waits for this row lock and conflicts, not on the rows below
        provider = rps.bump_generation(session, provider)
    wanted = set(aggregates)
    known = dict(session.execute(_KNOWN, {"uuids": sorted(wanted)}).all()) if wanted else {}
    for agg in sorted(wanted - set(known)):
        known[agg] = session.execute(_INSERT_AGGREGATE, {"uuid": agg}).inserted_primary_key[0]
    current = set(session.scalars(_MEMBER_OF, {"rp_id": provider.id}))
    target = {known[agg] for agg in wanted}
    if current - target:
        session.execute(_LEAVE, {"rp_id": provider.id, "agg_ids": sorted(current - target)})
    if target - current:
        session.execute(_JOIN, [{"resource_provider_id": provider.id, "aggregate_id": agg_id}
                                for agg_id in sorted(target - current)])
    return provider, _uuids(session, provider.id)
