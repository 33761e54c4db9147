"""What every Kilonova service looks like to the process that runs it.

A service is built from the configuration, the endpoints of the other services
and the RPC transport. Its life has three steps:

* ``prepare()`` — synchronous, before the event loop serves anything: migrate
  its databases and create what must exist (default flavors, the admin user...).
  Idempotent: a restart on the same state directory runs it again harmlessly.
* ``start()`` — start RPC servers and periodic tasks on the running loop.
* ``after_start()`` — once every service of the process has started.
* ``stop()`` — stop them and release resources.

A service with an HTTP API exposes it as ``app`` (an ASGI application) and
names its catalog ``service_type``; the runner serves it on its port.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kilonova.common.clients import Endpoints
from kilonova.common.rpc import Transport
from kilonova.config import Config


@dataclass
class ServiceEnv:
    conf: Config
    endpoints: Endpoints
    transport: Transport


class Service:
    name: str = "service"
    service_type: str | None = None  # catalog type when the service has an HTTP API
    app: Any = None

    def __init__(self, env: ServiceEnv):
        self.env = env
        self.conf = env.conf

    @classmethod
    def lock_name(cls, conf: Config) -> str | None:
        """This service's lock in the state directory (kilonova/runtime.py), held by the process that runs it,
        when it owns files there that a second process running it would change too; None (most services)
        when several processes may run it on one state directory."""
        return None

    def prepare(self) -> None:
        """Migrate and bootstrap (synchronous, idempotent)."""

    async def start(self) -> None:
        """Start RPC servers and background tasks."""

    async def after_start(self) -> None:
        """Work that needs every service of the process running (recovery after a restart)."""

    async def stop(self) -> None:
        """Stop background work and close connections."""
