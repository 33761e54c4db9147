"""What a compute agent does for the API and the conductor: one module per operation.

A module registers its RPC methods with ``@remote``; each is called as ``method(agent, **kwargs)``
where ``agent`` is the host's ComputeManager (driver, conductor client, ports, Placement reporter,
per-instance locks, ``agent.event(...)`` to record a step of the instance action). Every module of
this package is loaded by ``load()``; nothing else needs to list it. The ``compute.<host>`` RPC
interface (kilonova/compute/versions.py) says which version brought each method.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from kilonova.common.submodules import import_all

REMOTE: dict[str, Callable[..., Awaitable]] = {}


def remote(func):
    """Serve ``func(agent, **kwargs)`` as the ``compute.<host>`` RPC method of the same name."""
    assert func.__name__ not in REMOTE, f"compute method {func.__name__} registered twice"
    REMOTE[func.__name__] = func
    return func


def load() -> None:
    import_all(__name__, __path__)
