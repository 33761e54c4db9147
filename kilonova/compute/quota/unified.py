"""The unified limits driver (upstream's ``nova.quota.UnifiedLimitsDriver``): limits from Keystone.

Limits are the compute service's registered limits and the project's limits (of the API's region, or of no
region), read with the service user's token; a resource with neither counts as a limit of 0, and is
enforced as oslo.limit and Nova do: always when some limit is explicitly 0, else as ``[quota]
unified_limits_resource_strategy`` says of ``unified_limits_resource_list``. Usage: servers from instance
mappings, resource classes (``class:VCPU``, ...) from Placement's allocations plus the build requests that
have none yet. The limits Nova checks itself (metadata items, key pairs, server groups, group members,
injected files) are the registered limits only, as upstream checks them with no project. The quota-sets API
shows the limits in its own names, as upstream converts them.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kilonova.common.clients import ServiceClient, segment
from kilonova.common.http import HTTPError
from kilonova.compute.db import quotas, server_groups
from kilonova.compute.db.quota_counts import Snapshot
from kilonova.compute.quota import counting

# Keystone resource name -> the quota-sets API's name.
LEGACY = {"servers": "instances", "class:VCPU": "cores", "class:MEMORY_MB": "ram",
          "server_metadata_items": "metadata_items", "server_injected_files": "injected_files",
          "server_injected_file_content_bytes": "injected_file_content_bytes",
          "server_injected_file_path_bytes": "injected_file_path_bytes", "server_key_pairs": "key_pairs",
          "server_groups": "server_groups", "server_group_members": "server_group_members"}
KEYSTONE_NAMES = {legacy: name for name, legacy in LEGACY.items()}
# What Nova enforces itself with no project (oslo.limit then reads only the registered limit).
LOCAL = {"server_metadata_items", "server_injected_files", "server_injected_file_content_bytes",
         "server_injected_file_path_bytes", "server_key_pairs", "server_groups", "server_group_members"}


@dataclass
class OverLimit:
    resource: str
    limit: int
    usage: int
    delta: int

    def __str__(self) -> str:
        return (f"Resource {self.resource} is over limit of {self.limit} due to current usage {self.usage} "
                f"and delta {self.delta}")

    __repr__ = __str__


@dataclass
class Limits:
    registered: dict[str, int]   # resource -> the service's default
    project: dict[str, int]      # resource -> the project's own

    def value(self, resource: str) -> int:
        """The limit enforced literally (oslo.limit: a resource with no limit at all is 0)."""
        return self.project.get(resource, self.registered.get(resource, 0))


class UnifiedLimitsDriver:
    settable = False   # os-quota-sets answers, changes nothing: the limits are Keystone's

    def __init__(self, svc):
        self.svc = svc
        self.keystone = ServiceClient(svc.identity, svc.placement.auth)
        self.region = svc.conf.get("DEFAULT", "region_name")
        self.strategy = svc.conf.get("quota", "unified_limits_resource_strategy").strip()
        self.listed = set(svc.conf.getlist("quota", "unified_limits_resource_list"))
        self._service_id: str | None = None

    async def _get(self, path: str) -> dict[str, Any]:
        response = await self.keystone.get(path)
        if response.status_code != 200:
            raise HTTPError(503, f"Failed to connect to keystone while enforcing quota limits "
                                 f"(identity answered {response.status_code}).")
        return response.json()

    async def service_id(self) -> str:
        if self._service_id is None:
            services = (await self._get("/v3/services?type=compute"))["services"]
            if not services:
                raise HTTPError(503, "The identity service's catalog has no compute service to read limits of.")
            self._service_id = services[0]["id"]
        return self._service_id

    def _by_resource(self, items: list[dict[str, Any]], key: str) -> dict[str, int]:
        """resource -> value, a limit of this region before one of no region."""
        found: dict[str, int] = {}
        for item in sorted(items, key=lambda i: i.get("region_id") is not None):
            if item.get("region_id") in (None, self.region):
                found[item["resource_name"]] = int(item[key])
        return found

    async def fetch(self, project_id: str | None) -> Limits:
        service = segment(await self.service_id())
        reads = [self._get(f"/v3/registered_limits?service_id={service}")]
        if project_id is not None:
            reads.append(self._get(f"/v3/limits?service_id={service}&project_id={segment(project_id)}"))
        answers = await asyncio.gather(*reads)   # side by side: every create reads them twice
        own = answers[1]["limits"] if project_id is not None else []
        return Limits(self._by_resource(answers[0]["registered_limits"], "default_limit"),
                      self._by_resource(own, "resource_limit"))

    @staticmethod
    def _legacy(limits: Limits) -> dict[str, int]:
        """Upstream's conversion: Keystone's names to the quota-sets API's (no limit shows as 0), -1 for the
        resources Keystone does not limit here."""
        shown = dict.fromkeys(quotas.RESOURCES, -1)
        for name, legacy in LEGACY.items():
            shown[legacy] = limits.registered.get(name, 0) if name in LOCAL else limits.value(name)
        return shown

    async def limits(self, project_id: str) -> dict[str, int]:
        return self._legacy(await self.fetch(project_id))

    async def defaults(self) -> dict[str, int]:
        return self._legacy(await self.fetch(None))

    async def usage(self, project_id: str) -> dict[str, int]:
        snap = await counting.snapshot(self.svc, project_id)
        placed = await counting.placement_usages(self.svc, project_id)
        usage = dict.fromkeys(quotas.RESOURCES, 0)
        usage.update(instances=snap.servers, cores=placed.get("VCPU", 0), ram=placed.get("MEMORY_MB", 0),
                     server_groups=await self.svc.api_db.read(server_groups.count, project_id))
        return usage

    def enforced(self, overs: list[OverLimit], limits: Limits) -> bool:
        """Nova's should_enforce: whether these exceeded limits refuse the request."""
        if any(o.limit > 0 for o in overs):
            return True
        if all(o.limit < 0 for o in overs):
            return False
        zero = {o.resource for o in overs if o.limit == 0}
        if zero & set(limits.registered):
            return True
        if self.strategy == "require":
            return bool(zero & self.listed)
        if self.strategy == "ignore":
            return bool(zero - self.listed)
        return bool(zero)

    @staticmethod
    def _overs(limits: Limits, usage: dict[str, int], deltas: dict[str, int]) -> list[OverLimit]:
        return [OverLimit(name, limits.value(name), usage.get(name, 0), delta)
                for name, delta in sorted(deltas.items())
                if usage.get(name, 0) + delta > limits.value(name)]

    async def _usage(self, project_id: str, snap: Snapshot, names: list[str], refine: bool) -> dict[str, int]:
        usage = {"servers": snap.servers}
        if any(n.startswith("class:") for n in names):
            pending = await counting.pending_resources(
                self.svc, snap, await counting.unallocated(self.svc, snap) if refine else None)
            placed = counting.add(await counting.placement_usages(self.svc, project_id), pending)
            usage.update({f"class:{rc}": amount for rc, amount in placed.items()})
        return usage

    async def could_refuse(self, project_id: str, flavor: dict[str, Any], is_bfv: bool) -> bool:
        return True  # which resources Keystone limits, and how strictly, is known only by counting

    async def servers_that_fit(self, project_id: str, flavor: dict[str, Any], is_bfv: bool, min_count: int,
                               max_count: int, snap: Snapshot) -> int:
        """The most servers, from max_count down to min_count, within the limits (upstream's 403 otherwise,
        with oslo.limit's words for the max_count attempt)."""
        per_server = {f"class:{rc}": amount for rc, amount in counting.flavor_resources(flavor, is_bfv).items()}
        limits = await self.fetch(project_id)
        names = ["servers", *per_server]
        usage = await self._usage(project_id, snap, names, refine=False)
        first: list[OverLimit] | None = None
        for refine in (False, True):
            if refine:
                usage = await self._usage(project_id, snap, names, refine=True)
            for count in range(max_count, min_count - 1, -1):
                deltas = {"servers": count, **{name: amount * count for name, amount in per_server.items()}}
                overs = self._overs(limits, usage, deltas)
                if not overs or not self.enforced(overs, limits):
                    return count
                if first is None:
                    first = overs
            if not snap.pending:
                break   # nothing counted twice: no need to ask Placement of each build request
        raise HTTPError(403, f"Project {project_id} is over a limit for {first}")

    async def check_growth(self, project_id: str, deltas: dict[str, int]) -> None:
        """A resize's added cores and ram (class:VCPU, class:MEMORY_MB) within the limits."""
        await self._check_classes(project_id, {{"cores": "class:VCPU", "ram": "class:MEMORY_MB"}[k]: v
                                               for k, v in deltas.items()})

    async def check_unshelve(self, project_id: str, flavor: dict[str, Any], is_bfv: bool) -> None:
        """An offloaded server's resource classes fit again (upstream: servers delta 0, the flavor's classes)."""
        await self._check_classes(project_id, {"servers": 0, **{
            f"class:{rc}": amount for rc, amount in counting.flavor_resources(flavor, is_bfv).items()}})

    async def _check_classes(self, project_id: str, wanted: dict[str, int]) -> None:
        limits = await self.fetch(project_id)
        placed = await counting.placement_usages(self.svc, project_id)
        usage = {f"class:{rc}": amount for rc, amount in placed.items()}
        if "servers" in wanted:
            usage["servers"] = (await counting.snapshot(self.svc, project_id)).servers
        overs = self._overs(limits, usage, wanted)
        if overs and self.enforced(overs, limits):
            raise HTTPError(403, f"Project {project_id} is over a limit for {overs}")

    def group_member_scope(self, user_id: str) -> str | None:
        """Unified limits count every member of the group (upstream dropped the per-user count)."""
        return None
