"""The ``same_host`` and ``different_host`` scheduler hints: a server beside, or away from, given servers.

``spec["hint_hosts"]`` (set by the scheduler for a request with either hint) maps the hint to the hosts its
servers are on; a server that is not on any host (unknown, or not placed yet) is on none of them, as upstream.
"""
from kilonova.compute.scheduler.filters import BaseFilter


def hint_uuids(value) -> list[str]:
    """A hint's servers: one uuid or a list of them."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


class _ServersHintFilter(BaseFilter):
    hint = ""

    def hosts(self, spec):
        """The hosts of the hint's servers; None without the hint."""
        if not hint_uuids((spec.get("scheduler_hints") or {}).get(self.hint)):
            return None
        return (spec.get("hint_hosts") or {}).get(self.hint, set())

    def applies(self, spec):
        return bool((spec.get("scheduler_hints") or {}).get(self.hint))

    def explain(self, spec):
        servers = ", ".join(hint_uuids((spec.get("scheduler_hints") or {}).get(self.hint)))
        return f"{self.reason} {servers} ({self.hint} hint)"


class SameHostFilter(_ServersHintFilter):
    """Only hosts that hold at least one of the servers named by the ``same_host`` hint."""

    hint = "same_host"
    reason = "holds none of the servers"

    def host_passes(self, host, spec):
        hosts = self.hosts(spec)
        return hosts is None or host.host in hosts


class DifferentHostFilter(_ServersHintFilter):
    """Only hosts that hold none of the servers named by the ``different_host`` hint."""

    hint = "different_host"
    reason = "holds one of the servers"

    def host_passes(self, host, spec):
        hosts = self.hosts(spec)
        return hosts is None or host.host not in hosts
