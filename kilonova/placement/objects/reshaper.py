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
    """Upstream's three steps, each a generation of its own (a compute host reads them back):

    1. each provider given a non-empty inventory gets an interim one, its current classes with the new
       records laid over them (so allocations may move onto or off it in either order);
    2. the consumers' allocations are replaced, as POST /allocations (providers allocated from are bumped);
    3. each provider gets exactly its new inventory (an empty one deletes all), refusing to drop a class
       still allocated (``InUse``).
    """
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
        if records:
            interim = {name: record.as_dict() for name, record in inventories.of_provider(session, uuid)[1].items()}
            interim.update(records)
            inventories.write_all(session, providers[uuid], interim, check_in_use=False)
            rps.bump_generation(session, providers[uuid])
    allocations.replace(session, requests)
    for uuid, (_, records) in new_inventories.items():
        provider = rps.get(session, uuid)
        inventories.write_all(session, provider, records)
        rps.bump_generation(session, provider)
