"""Importing every module of a package: the registries of server actions, agent operations and conductor
tasks fill themselves as their modules are imported, so a new module needs no list to join."""
from __future__ import annotations

import importlib
import pkgutil


def import_all(package: str, path) -> None:
    """Import each module of ``package`` (its ``__name__``, with ``__path__``); already imported ones are kept."""
    for module in sorted(m.name for m in pkgutil.iter_modules(path)):
        importlib.import_module(f"{package}.{module}")
