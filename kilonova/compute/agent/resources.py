"""Keeps one compute node's resource provider in Placement current: inventory and traits."""
from __future__ import annotations

import logging

from kilonova.compute.cleanup import release_allocations

LOG = logging.getLogger(__name__)


class ProviderReporter:
    def __init__(self, placement, conf):
        self.placement = placement
        self.conf = conf

    def inventory(self, resources: dict) -> dict[str, dict]:
        """VCPU, MEMORY_MB, DISK_GB; PCPU (pinned CPUs, never overcommitted) when the host has any.

        A host whose CPUs are all dedicated reports no VCPU, as Nova does.
        """
        inventory = self._inventory(resources)
        pcpus = resources.get("pcpus") or 0
        if pcpus:
            inventory["PCPU"] = {"total": pcpus, "reserved": 0, "min_unit": 1, "max_unit": pcpus, "step_size": 1,
                                 "allocation_ratio": 1.0}
        if not resources["vcpus"]:
            del inventory["VCPU"]
        return inventory

    def _inventory(self, resources: dict) -> dict[str, dict]:
        conf = self.conf
        return {
            "VCPU": {"total": resources["vcpus"], "reserved": conf.getint("DEFAULT", "reserved_host_cpus"),
                     "min_unit": 1, "max_unit": resources["vcpus"], "step_size": 1,
                     "allocation_ratio": conf.getfloat("DEFAULT", "cpu_allocation_ratio")},
            "MEMORY_MB": {"total": resources["memory_mb"],
                          "reserved": conf.getint("DEFAULT", "reserved_host_memory_mb"),
                          "min_unit": 1, "max_unit": resources["memory_mb"], "step_size": 1,
                          "allocation_ratio": conf.getfloat("DEFAULT", "ram_allocation_ratio")},
            "DISK_GB": {"total": resources["local_gb"],
                        "reserved": conf.getint("DEFAULT", "reserved_host_disk_mb") // 1024,
                        "min_unit": 1, "max_unit": resources["local_gb"], "step_size": 1,
                        "allocation_ratio": conf.getfloat("DEFAULT", "disk_allocation_ratio")},
        }

    async def _generation(self, uuid: str, name: str) -> int:
        response = await self.placement.get(f"/resource_providers/{uuid}")
        if response.status_code == 200:
            return response.json()["generation"]
        response = await self.placement.post("/resource_providers", json={"name": name, "uuid": uuid})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"could not create resource provider {name}: {response.status_code} {response.text}")
        return response.json()["generation"]

    async def sync(self, uuid: str, name: str, resources: dict, traits: list[str], attempts: int = 5) -> None:
        """Make the provider's inventory and traits match the host, retrying on generation conflicts."""
        for _ in range(attempts):
            generation = await self._generation(uuid, name)
            response = await self.placement.put(f"/resource_providers/{uuid}/inventories", json={
                "resource_provider_generation": generation, "inventories": self.inventory(resources)})
            if response.status_code == 409:
                continue
            if response.status_code != 200:
                raise RuntimeError(f"inventory update of {name} refused: {response.status_code} {response.text}")
            generation = response.json()["resource_provider_generation"]
            response = await self.placement.put(f"/resource_providers/{uuid}/traits", json={
                "resource_provider_generation": generation, "traits": sorted(traits)})
            if response.status_code == 409:
                continue
            if response.status_code != 200:
                raise RuntimeError(f"traits update of {name} refused: {response.status_code} {response.text}")
            return
        raise RuntimeError(f"could not update resource provider {name}: too many concurrent changes")

    async def set_trait(self, uuid: str, trait: str, present: bool, attempts: int = 5) -> None:
        """Add or remove one trait of the provider, keeping its others (COMPUTE_STATUS_DISABLED as upstream's
        compute manager keeps it in step with its service)."""
        for _ in range(attempts):
            response = await self.placement.get(f"/resource_providers/{uuid}/traits")
            if response.status_code != 200:
                raise RuntimeError(f"traits of provider {uuid} unreadable: {response.status_code}")
            current = response.json()
            traits = set(current["traits"]) | {trait} if present else set(current["traits"]) - {trait}
            if traits == set(current["traits"]):
                return
            response = await self.placement.put(f"/resource_providers/{uuid}/traits", json={
                "resource_provider_generation": current["resource_provider_generation"], "traits": sorted(traits)})
            if response.status_code == 200:
                return
            if response.status_code != 409:
                raise RuntimeError(f"traits update of provider {uuid} refused: {response.status_code}")
        raise RuntimeError(f"could not update the traits of provider {uuid}: too many concurrent changes")

    async def usage(self, uuid: str) -> dict:
        """{"resources": {class: amount claimed}, "consumers": how many consumers claim} on provider ``uuid``."""
        response = await self.placement.get(f"/resource_providers/{uuid}/allocations")
        if response.status_code != 200:
            raise RuntimeError(f"allocations of provider {uuid} unreadable: {response.status_code}")
        allocations = response.json().get("allocations", {})
        resources: dict[str, int] = {}
        for claim in allocations.values():
            for rc, amount in claim.get("resources", {}).items():
                resources[rc] = resources.get(rc, 0) + amount
        return {"resources": resources, "consumers": len(allocations)}

    async def release(self, consumer_uuid: str) -> None:
        await release_allocations(self.placement, consumer_uuid)
