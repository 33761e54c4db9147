"""What the scheduler knows about one candidate host while it decides."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class HostState:
    uuid: str                 # compute node uuid == resource provider uuid
    host: str
    nodename: str
    cell_uuid: str
    availability_zone: str
    service_up: bool
    service_disabled: bool
    hypervisor_type: str = "fake"
    supported_instances: tuple[tuple[str, str, str], ...] | list = ()
    # capacity and usage per resource class, from Placement's provider summaries (shared between the host
    # states of several decisions: replaced, never changed in place)
    capacity: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    allocation_request: dict[str, Any] | None = None
    cpu_info: str = ""        # the compute node's cpu_info (JSON), as the driver reports it
    hypervisor_version: int | None = None
    host_ip: str | None = None
    # metadata of the host's aggregates: key -> values (comma-separated values split), when a filter reads them
    aggregates: dict[str, set[str]] = field(default_factory=dict)
    cell_name: str = ""
    num_instances: int = 0
    num_io_ops: int = 0       # instances building or in an I/O-heavy task (upstream's io_workload)
    failed_builds: int = 0    # consecutive builds that failed on the host, as its agent reports
    numa_topology: dict | None = None   # {"cells": [...]} as the agent reports it (see topology.py)
    pci_stats: list | None = None       # free PCI device pools
    instance_images: list[dict[str, str]] | None = None   # its instances' image properties, when weighed

    def free(self, resource_class: str) -> int:
        return self.capacity.get(resource_class, 0) - self.used.get(resource_class, 0)

    def attribute(self, name: str) -> Any:
        """One of upstream's host-state attributes by its name (``$free_ram_mb`` in a JsonFilter query,
        ``capabilities:hypervisor_type`` in a flavor extra spec); None when the host has no such thing."""
        read = _ATTRIBUTES.get(name)
        return read(self) if read else None

    @staticmethod
    def has_attribute(name: str) -> bool:
        return name in _ATTRIBUTES


def _cpu_info(host: HostState) -> Any:
    try:
        return json.loads(host.cpu_info) if host.cpu_info else None
    except ValueError:
        return None


_ATTRIBUTES = {
    "host": lambda h: h.host, "nodename": lambda h: h.nodename, "hypervisor_hostname": lambda h: h.nodename,
    "hypervisor_type": lambda h: h.hypervisor_type, "availability_zone": lambda h: h.availability_zone,
    "cpu_info": _cpu_info, "uuid": lambda h: h.uuid, "cell_uuid": lambda h: h.cell_uuid,
    "cell_name": lambda h: h.cell_name,
    "hypervisor_version": lambda h: h.hypervisor_version, "host_ip": lambda h: h.host_ip,
    "supported_instances": lambda h: [list(triple) for triple in h.supported_instances],
    "vcpus": lambda h: h.capacity.get("VCPU", 0), "memory_mb": lambda h: h.capacity.get("MEMORY_MB", 0),
    "local_gb": lambda h: h.capacity.get("DISK_GB", 0), "memory_mb_used": lambda h: h.used.get("MEMORY_MB", 0),
    "local_gb_used": lambda h: h.used.get("DISK_GB", 0), "disk_mb_used": lambda h: h.used.get("DISK_GB", 0) * 1024,
    "free_disk_gb": lambda h: h.free("DISK_GB"),
    "free_ram_mb": lambda h: h.free("MEMORY_MB"), "total_usable_ram_mb": lambda h: h.capacity.get("MEMORY_MB", 0),
    "free_disk_mb": lambda h: h.free("DISK_GB") * 1024, "total_usable_disk_gb": lambda h: h.capacity.get("DISK_GB", 0),
    "vcpus_total": lambda h: h.capacity.get("VCPU", 0), "vcpus_used": lambda h: h.used.get("VCPU", 0),
    "num_instances": lambda h: h.num_instances, "num_io_ops": lambda h: h.num_io_ops,
    "failed_builds": lambda h: h.failed_builds, "numa_topology": lambda h: h.numa_topology,
    "aggregates": lambda h: {k: sorted(v) for k, v in h.aggregates.items()},
}
