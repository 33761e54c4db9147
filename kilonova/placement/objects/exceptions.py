"""Domain errors of Placement's data layer; handlers map them to HTTP answers."""
from __future__ import annotations

from kilonova.common.db import Conflict, DBError, NotFound


class ProviderNotFound(NotFound):
    pass


class ResourceClassNotFound(NotFound):
    pass


class TraitNotFound(NotFound):
    pass


class InventoryNotFound(NotFound):
    pass


class ConcurrentUpdate(Conflict):
    """A generation changed under us (provider or consumer)."""


class ProviderConcurrentUpdate(ConcurrentUpdate):
    """A provider generation moved while allocating: the whole write may simply be retried."""


class Duplicate(Conflict):
    pass


class InUse(Conflict):
    """Something still refers to the object (allocations, inventories, providers)."""


class CannotDeleteParent(Conflict):
    pass


class Invalid(DBError):
    """A request the data layer refuses as malformed (answered with 400); ``action`` is the object action
    upstream's text names (an update's unknown parent is refused as a 'create')."""

    def __init__(self, message: str = "", *, action: str | None = None):
        super().__init__(message)
        self.action = action


class InvalidInventory(Conflict):
    """An allocation the inventory cannot take (capacity, min/max unit, step size, missing class)."""


__all__ = ["NotFound", "Conflict", "DBError", "ProviderNotFound", "ResourceClassNotFound", "TraitNotFound",
           "InventoryNotFound", "ConcurrentUpdate", "ProviderConcurrentUpdate", "Duplicate", "InUse",
           "CannotDeleteParent", "Invalid", "InvalidInventory"]
