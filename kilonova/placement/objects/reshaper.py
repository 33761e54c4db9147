"""POST /reshaper (1.30): inventories and allocations of several providers changed in one transaction."""
from __future__ import annotations

from sqlalchemy.orm import Session

from kilonova.placement.objects import allocations
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import inventories
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.consumers import ConsumerRequest


class ProviderMissing(exc.Invalid):
    pass


def reshape(session: Session, new_inventories: dict[str, tuple[int, dict[str, dict]]],
            requests: list[ConsumerRequest]) -> None:
    """Inventories first (use is checked at the end), then the allocations, then generations."""
    providers = {}
    for uuid, (generation, _) in new_inventories.items():
        try:
            provider = rps.get(session, uuid)
        except exc.ProviderNotFound as error:
            raise ProviderMissing(f"Resource provider {uuid} in inventories not found: {error}") from None
        if provider.generation != generation:
            raise exc.ConcurrentUpdate(f"resource provider generation conflict for provider {uuid}: actual: "
                                       f"{provider.generation}, given: {generation}")
        providers[uuid] = provider
    for uuid, (_, records) in new_inventories.items():
        inventories.write_all(session, providers[uuid], records, check_in_use=False)
    allocations.replace(session, requests)
    for uuid in new_inventories:
        provider = rps.get(session, uuid)
        inventories.check_allocations_covered(session, provider)
        rps.bump_generation(session, provider)
