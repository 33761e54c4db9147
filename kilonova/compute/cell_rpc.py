"""RPC to compute hosts through the transport of their cell (cells v2).

A compute host consumes its ``compute.<host>`` queue on the transport of its cell (its own
``[DEFAULT] transport_url``). The API and the conductor find the cell from the host mapping
and send there; clients per transport are created once and kept (``TransportPool``).
"""
from __future__ import annotations

import time
from typing import Any

from kilonova.common.rpc import Transport, TransportPool
from kilonova.compute.cells import Cells
from kilonova.compute.db import mappings

# How long a host -> transport URL answer is kept: hosts move between cells only by an operator.
HOST_CACHE_SECONDS = 60.0


class CellRouter:
    def __init__(self, cells: Cells, pool: TransportPool, timeout: float):
        self.cells = cells
        self.pool = pool
        self.timeout = timeout
        self._hosts: dict[str, tuple[str | None, float]] = {}

    async def transport_url_of(self, host: str) -> str | None:
        cached = self._hosts.get(host)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        mapping = await self.cells.api_db.read(mappings.get_host_mapping, host)
        url = None
        if mapping is not None:
            cell = self.cells.by_id(mapping.cell_id)
            if cell is None:
                self.cells.load()  # a cell mapped after this process started
                cell = self.cells.by_id(mapping.cell_id)
            url = cell.transport_url if cell is not None else None
            self._hosts[host] = (url, time.monotonic() + HOST_CACHE_SECONDS)
        # An unmapped host (not discovered yet) is tried on the process's own transport.
        return url

    async def transport_for(self, host: str) -> Transport:
        return self.pool.get(await self.transport_url_of(host))

    def client(self, host: str) -> "HostClient":
        return HostClient(self, host, self.timeout)


class HostClient:
    """``RPCClient`` for target ``compute.<host>``, on the transport of the host's cell."""

    def __init__(self, router: CellRouter, host: str, timeout: float):
        self.router = router
        self.host = host
        self.target = f"compute.{host}"
        self.timeout = timeout

    def prepare(self, timeout: float | None = None) -> "HostClient":
        return HostClient(self.router, self.host, timeout or self.timeout)

    async def call(self, method: str, **kwargs: Any) -> Any:
        transport = await self.router.transport_for(self.host)
        return await transport.call(self.target, method, kwargs, self.timeout)

    async def cast(self, method: str, **kwargs: Any) -> None:
        transport = await self.router.transport_for(self.host)
        await transport.cast(self.target, method, kwargs)
