"""Handlers of POST /v2.1/servers/{id}/action, one module per action or family of actions.

A module registers its handlers with ``@handles("resize", ...)``; a handler is called as
``handler(request, ref, key, body)`` after the server was found and the caller may write. It
usually validates the body for the request's microversion, calls ``server_actions.begin`` (policy,
lock, state rule and the instance action, from kilonova/compute/actions.py), and casts to the
conductor or the server's host. Every module of this package is loaded by ``load()``.
"""
from __future__ import annotations

from kilonova.common.submodules import import_all


HANDLERS: dict = {}


def handles(*keys: str):
    def register(func):
        for key in keys:
            assert key not in HANDLERS, f"server action {key} handled twice"
            HANDLERS[key] = func
        return func
    return register


def load() -> None:
    import_all(__name__, __path__)
