"""What the scheduler knows about one candidate host while it decides."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HostState:
    uuid: str                 # compute node uuid == resource provider uuid
    host: str
    nodename: str
    cell_uuid: str
    availability_zone: str
    service_up: bool
    service_disabled: bool
    hypervisor_type: str = "fake"
    supported_instances: list[tuple[str, str, str]] = field(default_factory=list)
    # capacity and usage per resource class, from Placement's provider summaries
    capacity: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    allocation_request: dict[str, Any] | None = None

    def free(self, resource_class: str) -> int:
        return self.capacity.get(resource_class, 0) - self.used.get(resource_class, 0)
