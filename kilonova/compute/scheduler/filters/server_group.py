"""The hard server-group policies: affinity and anti-affinity (with 2.64's ``max_server_per_host``)."""
from kilonova.compute.scheduler.filters import BaseFilter


class _GroupFilter(BaseFilter):
    policy = ""

    def applies(self, spec):
        group = spec.get("instance_group")
        return bool(group) and group["policy"] == self.policy

    def explain(self, spec):
        group = spec.get("instance_group") or {}
        return f"{self.reason} (server group {group.get('uuid')})"


class ServerGroupAffinityFilter(_GroupFilter):
    """Only the hosts the group's servers are on, once any is placed (a new group may go anywhere)."""

    reason = "not the host of the affinity server group's other servers"
    policy = "affinity"

    def host_passes(self, host, spec):
        group = spec.get("instance_group")
        if not group or group["policy"] != "affinity" or not group["hosts"]:
            return True
        return host.host in group["hosts"]


class ServerGroupAntiAffinityFilter(_GroupFilter):
    """Only hosts with fewer than ``max_server_per_host`` (default 1) of the group's servers."""

    reason = "already holds as many servers of the anti-affinity server group as its rules allow"
    policy = "anti-affinity"

    def host_passes(self, host, spec):
        group = spec.get("instance_group")
        if not group or group["policy"] != "anti-affinity":
            return True
        allowed = int((group.get("rules") or {}).get("max_server_per_host", 1))
        return len(group["hosts"].get(host.host, [])) < allowed

    def filter_all(self, hosts, spec):
        group = spec.get("instance_group")
        if not group or group["policy"] != "anti-affinity":
            return hosts
        allowed = int((group.get("rules") or {}).get("max_server_per_host", 1))
        full = {name for name, members in group["hosts"].items() if len(members) >= allowed}
        return [host for host in hosts if host.host not in full] if full else list(hosts)
