"""Flavor extra specs ``capabilities:<attribute>[:<key>...]`` against what the host reports, as upstream's
ComputeCapabilitiesFilter (``capabilities:hypervisor_type=s== QEMU``, ``capabilities:cpu_info:arch=x86_64``).

An unscoped extra spec that names a host attribute is read the same way; other scopes are left alone.
"""
from kilonova.compute.scheduler.filters import BaseFilter
from kilonova.compute.scheduler.filters.extra_specs_ops import match
from kilonova.compute.scheduler.host_state import HostState


class ComputeCapabilitiesFilter(BaseFilter):
    """Only hosts whose capabilities satisfy the flavor's ``capabilities:`` extra specs."""

    reason = "its capabilities do not satisfy the flavor's extra specs"

    def applies(self, spec):
        return any(True for _ in _capability_specs(spec))

    def host_passes(self, host, spec):
        for path, wanted in _capability_specs(spec):
            value = host.attribute(path[0])
            for key in path[1:]:
                value = value.get(key) if isinstance(value, dict) else None
            if value is None or not match(str(value), wanted):
                return False
        return True

    def explain(self, spec):
        wanted = ", ".join(f"capabilities:{':'.join(path)}={value}" for path, value in _capability_specs(spec))
        return f"{self.reason} ({wanted})"


def _capability_specs(spec):
    for key, wanted in ((spec.get("flavor") or {}).get("extra_specs") or {}).items():
        scope = key.split(":")
        if len(scope) == 1:
            if not HostState.has_attribute(key):
                continue
        elif scope[0] != "capabilities":
            continue
        else:
            scope = scope[1:]
        yield scope, wanted
