"""The compute API's gauge for ``/metrics``: compute services up and down (as ``os-services`` shows them)."""
from __future__ import annotations

from kilonova.common import metrics
from kilonova.compute.api.services import all_services
from kilonova.compute.db import services


def refresher(svc):
    async def refresh() -> None:
        down_time = svc.conf.getfloat("DEFAULT", "service_down_time")
        states = [services.is_up(service, down_time)
                  for _cell, service in await all_services(svc, binary="nova-compute")]
        metrics.COMPUTE_HOSTS.labels("up").set(sum(states))
        metrics.COMPUTE_HOSTS.labels("down").set(len(states) - sum(states))
    return refresh
