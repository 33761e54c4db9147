"""The conductor side of the long-running operations: one module per operation (a *task*).

A task module registers its RPC methods with ``@remote`` (called as ``method(conductor, **kwargs)``,
``conductor`` being the ConductorManager with its shared context) and its reconcile passes with
``@reconcile`` (``await pass_(conductor)`` every ``[conductor] reconcile_interval``: it finds this
operation's own stuck states after a crash and finishes or undoes them). Every module of this
package is loaded by ``load()``; nothing else needs to list it.

Each task follows the same life (see kilonova/compute/operation.py): check the arguments, prechecks
that change nothing, claim, execute step by step (each step on the migration record and as an
event of the instance action), roll back what was done when a step fails.
"""
from __future__ import annotations

from typing import Awaitable, Callable

from kilonova.common.submodules import import_all

REMOTE: dict[str, Callable[..., Awaitable]] = {}
RECONCILERS: list[Callable[..., Awaitable]] = []


def remote(func):
    """Serve ``func(conductor, **kwargs)`` as the ``conductor`` RPC method of the same name."""
    assert func.__name__ not in REMOTE, f"conductor method {func.__name__} registered twice"
    REMOTE[func.__name__] = func
    return func


def reconcile(func):
    """Run ``await func(conductor)`` in the conductor's periodic reconcile loop."""
    RECONCILERS.append(func)
    return func


def load() -> None:
    import_all(__name__, __path__)
