"""The classic quota driver (upstream's DbQuotaDriver): ``[quota]`` defaults, per-project overrides from
os-quota-sets, usage counted from the cells and build requests (or, with ``[quota]
count_usage_from_placement``, instances from instance mappings and cores and ram from Placement)."""
from __future__ import annotations

from typing import Any

from kilonova.common.http import HTTPError
from kilonova.compute.db import quotas, server_groups
from kilonova.compute.db.quota_counts import Snapshot
from kilonova.compute.quota import counting

PER_SERVER = ("instances", "cores", "ram")


class ClassicDriver:
    settable = True

    def __init__(self, svc):
        self.svc = svc
        self.from_placement = svc.conf.getbool("quota", "count_usage_from_placement")

    async def limits(self, project_id: str) -> dict[str, int]:
        return await self.svc.api_db.read(quotas.get_limits, project_id, self.svc.conf)

    async def defaults(self) -> dict[str, int]:
        return await self.svc.api_db.read(quotas.default_limits, self.svc.conf)  # the "default" quota class's too

    async def _counted(self, project_id: str, snap: Snapshot, refine: bool = False) -> dict[str, int]:
        if not self.from_placement:
            return await counting.from_cells(self.svc, project_id, snap)
        placed = await counting.placement_usages(self.svc, project_id)
        pending = await counting.pending_resources(
            self.svc, snap, await counting.unallocated(self.svc, snap) if refine else None)
        used = counting.add(placed, pending)
        return {"instances": snap.servers, "cores": used.get("VCPU", 0) + used.get("PCPU", 0),
                "ram": used.get("MEMORY_MB", 0)}

    async def usage(self, project_id: str) -> dict[str, int]:
        """What the project uses of each quota-sets resource (for os-quota-sets detail and /limits)."""
        usage = dict.fromkeys(quotas.RESOURCES, 0)
        usage.update(await self._counted(project_id, await counting.snapshot(self.svc, project_id)))
        usage["server_groups"] = await self.svc.api_db.read(server_groups.count, project_id)
        return usage

    async def could_refuse(self, project_id: str, flavor: dict[str, Any], is_bfv: bool) -> bool:
        """Whether a limit bounds what servers of ``flavor`` use (when none does, nothing needs counting:
        upstream counts anyway, and can only ever find that they fit)."""
        limits = await self.limits(project_id)
        per_server = {"instances": 1, "cores": int(flavor["vcpus"]), "ram": int(flavor["memory_mb"])}
        return any(limits.get(resource, -1) >= 0 for resource, need in per_server.items() if need)

    async def servers_that_fit(self, project_id: str, flavor: dict[str, Any], is_bfv: bool, min_count: int,
                               max_count: int, snap: Snapshot) -> int:
        """How many of max_count servers fit (at least min_count, else upstream's 403)."""
        limits = await self.limits(project_id)
        per_server = {"instances": 1, "cores": int(flavor["vcpus"]), "ram": int(flavor["memory_mb"])}
        used = await self._counted(project_id, snap)
        fits = _fits(limits, used, per_server, max_count)
        if fits < min_count and self.from_placement:  # build requests already claimed were counted twice
            used = await self._counted(project_id, snap, refine=True)
            fits = _fits(limits, used, per_server, max_count)
        if fits < min_count:
            over = [r for r, need in per_server.items()
                    if limits.get(r, -1) >= 0 and used[r] + need * min_count > limits[r]]
            resource = over[0] if over else "instances"
            raise HTTPError(403, f"Quota exceeded for {resource}: Requested {per_server[resource] * min_count}, "
                                 f"but already used {used[resource]} of {limits[resource]} {resource}")
        return fits

    async def check_growth(self, project_id: str, deltas: dict[str, int]) -> None:
        """A resize's added cores and ram within the limits (upstream's 403 naming each one over)."""
        limits = await self.limits(project_id)
        if all(limits.get(key, -1) < 0 for key in deltas):
            return
        used = await self._counted(project_id, await counting.snapshot(self.svc, project_id))
        overs = [k for k, v in deltas.items() if limits.get(k, -1) >= 0 and used[k] + v > limits[k]]
        if overs:
            def joined(values) -> str:
                return ", ".join(str(v) for v in values)
            raise HTTPError(403, f"Quota exceeded for {joined(overs)}: Requested {joined(deltas[k] for k in overs)}"
                                 f", but already used {joined(used[k] for k in overs)} of "
                                 f"{joined(limits[k] for k in overs)} {joined(overs)}")

    async def check_unshelve(self, project_id: str, flavor: dict[str, Any], is_bfv: bool) -> None:
        """An offloaded server has no allocation: counted from Placement (only), its cores and RAM must fit
        again to unshelve it (upstream's check; its instance still counts, so none is added)."""
        if self.from_placement:
            await self.check_growth(project_id, {"cores": int(flavor["vcpus"]), "ram": int(flavor["memory_mb"])})

    def group_member_scope(self, user_id: str) -> str | None:
        """Upstream's DbQuotaDriver counts a group's members per user (a user's servers in the group)."""
        return user_id


def _fits(limits: dict[str, int], used: dict[str, int], per_server: dict[str, int], max_count: int) -> int:
    fits = max_count
    for resource, need in per_server.items():
        limit = limits.get(resource, -1)
        if limit < 0 or need == 0:
            continue
        fits = min(fits, (limit - used[resource]) // need)
    return fits


class NoopDriver(ClassicDriver):
    """upstream's NoopQuotaDriver: every limit -1 (unlimited), nothing counted, nothing settable."""

    settable = False

    async def limits(self, project_id: str) -> dict[str, int]:
        return dict.fromkeys(quotas.RESOURCES, -1)

    async def defaults(self) -> dict[str, int]:
        return dict.fromkeys(quotas.RESOURCES, -1)

    async def usage(self, project_id: str) -> dict[str, int]:
        return dict.fromkeys(quotas.RESOURCES, -1)

    async def could_refuse(self, project_id: str, flavor: dict[str, Any], is_bfv: bool) -> bool:
        return False

    async def servers_that_fit(self, project_id, flavor, is_bfv, min_count, max_count, snap) -> int:
        return max_count

    async def check_growth(self, project_id: str, deltas: dict[str, int]) -> None:
        return None

    async def check_unshelve(self, project_id: str, flavor: dict[str, Any], is_bfv: bool) -> None:
        return None
