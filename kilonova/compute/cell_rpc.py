"""RPC to compute hosts through the transport of their cell (cells v2), written for the host's version.

A compute host consumes its ``compute.<host>`` queue on the transport of its cell (its own
``[DEFAULT] transport_url``). The API and the conductor find the cell from the host mapping
and send there; clients per transport are created once and kept (``TransportPool``).

Each message is written for the compute RPC version the host speaks (rolling upgrades,
``kilonova.compute.versions``): the version its service record announces, or at most the
``[upgrade_levels] compute`` pin.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from kilonova.common.rpc import RemoteError, Transport, TransportPool
from kilonova.compute import versions
from kilonova.compute.cells import Cells
from kilonova.compute.db import mappings, services

LOG = logging.getLogger(__name__)

# How long a host's transport URL and version are kept: hosts move between cells only by an operator,
# and a host that was upgraded is written for at its old version until then (which it still understands).
HOST_CACHE_SECONDS = 60.0


class CellRouter:
    def __init__(self, cells: Cells, pool: TransportPool, timeout: float, *, compute_pin: str | None = None):
        self.cells = cells
        self.pool = pool
        self.timeout = timeout
        self.compute_pin = compute_pin  # [upgrade_levels] compute as X.Y, None for auto
        self._hosts: dict[str, tuple[str | None, str, float]] = {}

    async def route(self, host: str) -> tuple[str | None, str]:
        """(transport URL of the host's cell, the compute RPC version to write for it)."""
        cached = self._hosts.get(host)
        if cached is not None and cached[2] > time.monotonic():
            return cached[0], cached[1]
        mapping = await self.cells.api_db.read(mappings.get_host_mapping, host)
        if mapping is None:
            # An unmapped host (not discovered yet) is tried on the process's own transport.
            return None, self.compute_pin or versions.COMPUTE.latest
        cell = self.cells.by_id(mapping.cell_id)
        if cell is None:
            self.cells.load()  # a cell mapped after this process started
            cell = self.cells.by_id(mapping.cell_id)
        if cell is None:
            return None, self.compute_pin or versions.COMPUTE.latest
        pin = versions.COMPUTE.cap(self.compute_pin)
        try:
            announced = await cell.db.read(services.version_of, host, "nova-compute")
        except Exception:  # noqa: BLE001 - the cell's database is away: the message may still get through
            LOG.warning("cannot read the service version of %s; writing for %d.%d this time", host, *pin)
            return cell.transport_url, f"{pin[0]}.{pin[1]}"
        if announced is not None:  # no record: nothing to respect but the pin
            pin = min(pin, versions.COMPUTE.cap(versions.compute_rpc_of(announced)))
        cap = f"{pin[0]}.{pin[1]}"
        self._hosts[host] = (cell.transport_url, cap, time.monotonic() + HOST_CACHE_SECONDS)
        return cell.transport_url, cap

    def forget(self, host: str) -> None:
        self._hosts.pop(host, None)

    async def transport_url_of(self, host: str) -> str | None:
        return (await self.route(host))[0]

    async def transport_for(self, host: str) -> Transport:
        return self.pool.get(await self.transport_url_of(host))

    def client(self, host: str) -> "HostClient":
        return HostClient(self, host, self.timeout)


class HostClient:
    """``RPCClient`` for target ``compute.<host>``, on the transport of the host's cell, at the host's version."""

    def __init__(self, router: CellRouter, host: str, timeout: float):
        self.router = router
        self.host = host
        self.target = f"compute.{host}"
        self.timeout = timeout

    def prepare(self, timeout: float | None = None) -> "HostClient":
        return HostClient(self.router, self.host, timeout or self.timeout)

    async def _message(self, method: str, kwargs: dict) -> tuple[Transport, str, dict]:
        url, cap = await self.router.route(self.host)
        version, kwargs = versions.COMPUTE.prepare(method, kwargs, cap)
        return self.router.pool.get(url), version, kwargs

    async def call(self, method: str, **kwargs: Any) -> Any:
        transport, version, kwargs = await self._message(method, kwargs)
        try:
            return await transport.call(self.target, method, kwargs, self.timeout, version=version)
        except RemoteError as exc:
            if exc.exc_type == "UnsupportedVersion":
                self.router.forget(self.host)  # the host was downgraded: read its record again next time
            raise

    async def cast(self, method: str, **kwargs: Any) -> None:
        transport, version, kwargs = await self._message(method, kwargs)
        await transport.cast(self.target, method, kwargs, version=version)
