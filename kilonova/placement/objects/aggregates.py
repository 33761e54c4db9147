"""The placement_aggregates and resource_provider_aggregates tables."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.models import Aggregate, ProviderAggregate


def _uuids(session: Session, provider_id: int) -> list[str]:
    return sorted(session.scalars(sa.select(Aggregate.uuid)
                                  .join(ProviderAggregate, ProviderAggregate.aggregate_id == Aggregate.id)
                                  .where(ProviderAggregate.resource_provider_id == provider_id)))


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
    wanted = set(aggregates)
    known = dict(session.execute(sa.select(Aggregate.uuid, Aggregate.id)
                                 .where(Aggregate.uuid.in_(list(wanted)))).all())
    for agg in sorted(wanted - set(known)):
        row = Aggregate(uuid=agg)
        session.add(row)
        session.flush()
        known[agg] = row.id
    current = set(session.scalars(sa.select(ProviderAggregate.aggregate_id)
                                  .where(ProviderAggregate.resource_provider_id == provider.id)))
    target = {known[agg] for agg in wanted}
    if current - target:
        session.execute(sa.delete(ProviderAggregate).where(
            ProviderAggregate.resource_provider_id == provider.id,
            ProviderAggregate.aggregate_id.in_(list(current - target))))
    for agg_id in target - current:
        session.add(ProviderAggregate(resource_provider_id=provider.id, aggregate_id=agg_id))
    session.flush()
    if bump:
        provider = rps.bump_generation(session, provider)
    return provider, _uuids(session, provider.id)
