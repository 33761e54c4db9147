"""The traits table (standard traits from os_traits plus CUSTOM_*) and provider traits."""
from __future__ import annotations

import os_traits
import sqlalchemy as sa
from sqlalchemy.orm import Session

from kilonova.common.prepared import prepare
from kilonova.placement.objects import capacity
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_providers as rps
from kilonova.placement.objects.models import ProviderTrait, Trait

STANDARD = frozenset(os_traits.get_traits())

_caches: dict[str, dict[str, int]] = {}

# A compute host sets its provider's traits at every start and on every change: statements built once,
# run on SQLite's cursor (kilonova/common/prepared.py).
_PT = ProviderTrait.__table__
_TRAITS = Trait.__table__
_TRAIT_IDS = sa.select(_PT.c.trait_id).where(_PT.c.resource_provider_id == sa.bindparam("rp_id"))
_DELETE = _PT.delete().where(_PT.c.resource_provider_id == sa.bindparam("rp_id"),
                             _PT.c.trait_id.in_(sa.bindparam("trait_ids", expanding=True)))
_INSERT = _PT.insert()
_NAMES_OF = (sa.select(_PT.c.resource_provider_id, _TRAITS.c.name)
             .join(_TRAITS, _TRAITS.c.id == _PT.c.trait_id)
             .where(_PT.c.resource_provider_id.in_(sa.bindparam("rp_ids", expanding=True))).order_by(_TRAITS.c.name))
prepare(_TRAIT_IDS, _DELETE, _INSERT, _NAMES_OF)


def _cache(session: Session) -> dict[str, int]:
    return _caches.setdefault(capacity.key(session), {})   # the URL rendered once per engine, not per call


def sync_standard(session: Session) -> None:
    """Insert the standard traits this os_traits release knows and the table lacks."""
    present = set(session.scalars(sa.select(Trait.name)))
    for name in sorted(STANDARD - present):
        session.add(Trait(name=name))
    session.flush()
    _cache(session).clear()


def ids_by_name(session: Session, names) -> dict[str, int]:
    """Ids of the traits among ``names`` that exist (unknown names are left out)."""
    cache = _cache(session)
    missing = [name for name in names if name not in cache]
    if missing:
        for row in session.execute(sa.select(Trait.name, Trait.id).where(Trait.name.in_(missing))):
            cache[row.name] = row.id
    return {name: cache[name] for name in names if name in cache}


def require(session: Session, names) -> dict[str, int]:
    """Ids of ``names``; ``TraitNotFound`` naming every unknown one."""
    found = ids_by_name(session, names)
    unknown = sorted(set(names) - set(found))
    if unknown:
        error = exc.TraitNotFound(f"No such trait(s): {', '.join(unknown)}.")
        error.names = unknown
        raise error
    return found


def list_names(session: Session, *, exact: list[str] | None = None, prefix: str | None = None,
               associated: bool | None = None) -> list[Trait]:
    query = sa.select(Trait)
    if exact is not None:
        query = query.where(Trait.name.in_(exact))
    if prefix is not None:
        query = query.where(Trait.name.startswith(prefix, autoescape=True))
    used = sa.select(ProviderTrait.trait_id)
    if associated is True:
        query = query.where(Trait.id.in_(used))
    elif associated is False:
        query = query.where(Trait.id.not_in(used))
    return list(session.scalars(query.order_by(Trait.name)))


def get(session: Session, name: str) -> Trait:
    row = session.scalar(sa.select(Trait).where(Trait.name == name))
    if row is None:
        raise exc.TraitNotFound(f"No such trait(s): {name}.")
    return row


def ensure(session: Session, name: str) -> bool:
    """Create a custom trait unless it exists; True when it was created."""
    if session.scalar(sa.select(Trait.id).where(Trait.name == name)) is not None:
        return False
    session.add(Trait(name=name))
    session.flush()
    return True


def delete(session: Session, name: str) -> None:
    if name in STANDARD or not name.startswith("CUSTOM_"):
        raise exc.Invalid(f"Cannot delete standard trait {name}.")
    row = get(session, name)
    if session.scalar(sa.select(ProviderTrait.trait_id).where(ProviderTrait.trait_id == row.id).limit(1)):
        raise exc.InUse(f"The trait {name} is in use by a resource provider.")
    session.delete(row)
    session.flush()
    _cache(session).pop(name, None)


def of_provider(session: Session, uuid: str) -> tuple[rps.Provider, list[str]]:
    provider = rps.get(session, uuid)
    return provider, names_of(session, [provider.id]).get(provider.id, [])


def names_of(session: Session, provider_ids) -> dict[int, list[str]]:
    """Sorted trait names of each provider id."""
    result: dict[int, list[str]] = {}
    for rp_id, name in session.execute(_NAMES_OF, {"rp_ids": list(provider_ids)}):
        result.setdefault(rp_id, []).append(name)
    return result


def set_for_provider(session: Session, uuid: str, generation: int, names: list[str]) -> tuple[rps.Provider, list[str]]:
    """Replace a provider's traits (all must exist), bumping its generation."""
    provider = rps.get(session, uuid)
    if provider.generation != generation:
        raise exc.ConcurrentUpdate("Resource provider's generation already changed. Please update the "
                                   "generation and try again.")
    ids = require(session, names)
    # swapped first: a racing write waits for this row lock and conflicts, not on the rows inserted here
    bumped = rps.bump_generation(session, provider)
    _replace(session, provider.id, set(ids.values()))
    return bumped, sorted(ids)


def _replace(session: Session, provider_id: int, trait_ids: set[int]) -> None:
    current = set(session.scalars(_TRAIT_IDS, {"rp_id": provider_id}))
    if current - trait_ids:
        session.execute(_DELETE, {"rp_id": provider_id, "trait_ids": sorted(current - trait_ids)})
    if trait_ids - current:
        session.execute(_INSERT, [{"resource_provider_id": provider_id, "trait_id": trait_id}
                                  for trait_id in sorted(trait_ids - current)])


def clear_for_provider(session: Session, uuid: str) -> None:
    provider = rps.get(session, uuid)
    _replace(session, provider.id, set())
    rps.bump_generation(session, provider)
