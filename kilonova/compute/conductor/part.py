"""Base of the conductor's parts: each part serves some of the ``conductor`` RPC methods.

A part reads the conductor's shared context (configuration, cells, scheduler and compute RPC
clients, Placement, the network service, the cell lookups) as its own attributes.
"""
from __future__ import annotations


class ConductorPart:
    def __init__(self, conductor):
        self.conductor = conductor

    def __getattr__(self, name: str):
        # Only reached for what the part itself lacks: the conductor's shared context.
        if name == "conductor":
            raise AttributeError(name)
        return getattr(self.conductor, name)
